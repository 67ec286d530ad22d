// Runs the real sempipe binary (dist/bin/sempipe.js `proxy --config FILE --workers N`) for the
// benchmark: one process per sempipe row of the table, each with its own config built by that row's
// `config` function, metrics and audit on, the audit log written to a file as an operator would.
// The upstream password reaches sempipe through ${VAR} substitution, so it is never written to disk.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../test/harness/ports.js';
import type { PgTarget } from './pgbench-run.js';
import { watchChild } from './child-watch.js';
import { waitForLogin } from './pg-clients.js';

export const SEMPIPE_BIN = resolve(import.meta.dirname, '../bin/sempipe.js');

const UPSTREAM_PASSWORD_VAR = 'SEMPIPE_BENCH_UPSTREAM_PASSWORD';

/** What a sempipe row's config is built from. */
export interface SempipeConfigContext {
  adminPort: number;
  listenPort: number;
  /** The real server; its password is referenced as ${VAR}, not included. */
  upstream: Omit<PgTarget, 'password'>;
  upstreamPasswordRef: string;
  client: { user: string; verifier: string };
  auditFile: string;
}

/** One sempipe row of the benchmark table. */
export interface SempipeVariant {
  readonly name: string;
  /** The sempipe.yaml content (as an object) of this row. */
  config(ctx: SempipeConfigContext): Record<string, unknown>;
  /** A row this one must keep up with in the same run: its name and the least TPS ratio. */
  readonly versus?: { readonly row: string; readonly atLeast: number };
}

/** The plain proxy plus a read-only policy with a denied-function rule, applying to every statement. */
export function policySempipeConfig(ctx: SempipeConfigContext): Record<string, unknown> {
  return {
    ...baseSempipeConfig(ctx),
    policies: [
      {
        fqn: 'policy::/bench::read-only',
        realm: 'binding::/bench',
        read_only: true,
        deny: { functions: ['pg_read_file', 'dblink', 'lo_export'] },
      },
    ],
  };
}

/** The plain proxy: one service, one SCRAM binding, metrics and audit on, upstream without TLS. */
export function baseSempipeConfig(ctx: SempipeConfigContext): Record<string, unknown> {
  return {
    admin: { listen: `127.0.0.1:${ctx.adminPort}` },
    limits: { drain_timeout: '2s' },
    audit: { enabled: true, destination: ctx.auditFile },
    services: [
      {
        fqn: 'service::/bench::pg',
        protocol: 'postgres',
        upstream: {
          host: ctx.upstream.host,
          port: ctx.upstream.port,
          database: ctx.upstream.database,
          user: ctx.upstream.user,
          password: ctx.upstreamPasswordRef,
          // Fair against PgBouncer, which talks to the server without TLS here as well.
          tls: 'disable',
        },
      },
    ],
    bindings: [
      {
        fqn: 'binding::/bench::pgbench',
        service: 'service::/bench::pg',
        listen: `127.0.0.1:${ctx.listenPort}`,
        database: ctx.upstream.database,
        auth: 'scram-sha-256',
        clients: [{ user: ctx.client.user, verifier: ctx.client.verifier }],
      },
    ],
  };
}

export interface SempipeBenchOptions {
  variant: SempipeVariant;
  /** Directory for the config, the audit log and sempipe's stdout/stderr. */
  dir: string;
  workers: number;
  upstream: PgTarget;
  client: { user: string; password: string; verifier: string };
}

export interface SempipeBenchProcess {
  readonly name: string;
  /** The primary's pid; the workers are its children. */
  readonly pid: number;
  readonly target: PgTarget;
  readonly adminUrl: string;
  readonly auditFile: string;
  readonly stderrFile: string;
  stop(): Promise<void>;
}

async function waitReady(adminUrl: string, timeoutMs: number, isDead: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = isDead();
    if (dead !== undefined) throw new Error(dead);
    const status = await fetch(`${adminUrl}/readyz`).then((r) => r.status, () => 0);
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`sempipe not ready after ${timeoutMs} ms (${adminUrl}/readyz)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startBenchSempipe(opts: SempipeBenchOptions): Promise<SempipeBenchProcess> {
  const { variant, upstream, client } = opts;
  const dir = join(opts.dir, variant.name);
  mkdirSync(dir, { recursive: true });
  const [adminPort, listenPort] = [await freePort(), await freePort()];
  const auditFile = join(dir, 'audit.log');
  const stdoutFile = join(dir, 'stdout.log');
  const stderrFile = join(dir, 'stderr.log');
  const configFile = join(dir, 'sempipe.yaml');
  const ctx: SempipeConfigContext = {
    adminPort,
    listenPort,
    upstream: { host: upstream.host, port: upstream.port, user: upstream.user, database: upstream.database },
    upstreamPasswordRef: `\${${UPSTREAM_PASSWORD_VAR}}`,
    client: { user: client.user, verifier: client.verifier },
    auditFile,
  };
  writeFileSync(configFile, stringify(variant.config(ctx)), { mode: 0o600 });

  const out = openSync(stdoutFile, 'a');
  const err = openSync(stderrFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [SEMPIPE_BIN, 'proxy', '--config', configFile, '--workers', String(opts.workers)], {
      env: { ...process.env, [UPSTREAM_PASSWORD_VAR]: upstream.password },
      stdio: ['ignore', out, err],
    });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const watch = watchChild(child, 'sempipe', 15_000, () => readFileSync(stderrFile, 'utf8'));
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const target: PgTarget = { host: '127.0.0.1', port: listenPort, user: client.user, password: client.password, database: upstream.database };
  await watch.whenReady(async (isDead) => {
    await waitReady(adminUrl, 30_000, isDead);
    await waitForLogin(target, 15_000, isDead);
  });
  return { name: variant.name, pid: child.pid!, target, adminUrl, auditFile, stderrFile, stop: watch.stop };
}
