// Runs the real `sempipe` binary (the compiled dist/bin/sempipe.js) as a child process with a
// config file written for the test, waits until /readyz says its listeners are bound, and stops it
// with a signal like an operator would.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

/** The package root, whether this file runs from source (test/harness) or compiled (dist/test/harness). */
const ROOT = resolve(import.meta.dirname, import.meta.dirname.split('/').includes('dist') ? '../../..' : '../..');
export const SEMPIPE_BIN = resolve(ROOT, 'dist/bin/sempipe.js');

export interface SempipeProcess {
  child: ChildProcess;
  configFile: string;
  adminUrl: string;
  /** Everything written to stdout (the audit log) and stderr (the operator log) so far. */
  stdout(): string;
  stderr(): string;
  metrics(): Promise<string>;
  /** Value of one sample, e.g. metric('sempipe_connections_total', {binding: 'b'}); 0 when absent. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

export interface SempipeStartOptions {
  /** Config YAML; `${ADMIN_PORT}` is replaced with a free port before writing. */
  yaml: string;
  workers?: number;
  env?: Record<string, string>;
  /** Wait for /readyz (default true). */
  waitReady?: boolean;
  dir?: string;
}

/** Starts `sempipe proxy`; a config directory it made itself is removed once the process has exited. */
export async function startSempipe(opts: SempipeStartOptions): Promise<SempipeProcess> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'sempipe-cfg-'));
  const adminPort = await freePort();
  const configFile = join(dir, 'sempipe.yaml');
  writeFileSync(configFile, opts.yaml.replaceAll('${ADMIN_PORT}', String(adminPort)));
  const removeDir = (): void => {
    if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
  };
  const proc = await spawnSempipe(['proxy', '--config', configFile, '--workers', String(opts.workers ?? 2)], {
    adminPort,
    configFile,
    env: opts.env,
    waitReady: opts.waitReady,
  }).catch((err: unknown) => {
    removeDir();
    throw err;
  });
  void proc.exited.then(removeDir);
  return proc;
}

export interface SpawnOptions {
  /** The admin port the process serves /readyz and /metrics on. */
  adminPort: number;
  configFile?: string;
  env?: Record<string, string>;
  /** Wait for /readyz (default true). */
  waitReady?: boolean;
}

/** Runs `sempipe ARGS…` (any mode, e.g. a data plane following a control plane). */
export async function spawnSempipe(args: string[], opts: SpawnOptions): Promise<SempipeProcess> {
  const child = spawn(process.execPath, [SEMPIPE_BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const adminUrl = `http://127.0.0.1:${opts.adminPort}`;
  const metrics = async (): Promise<string> => (await fetch(`${adminUrl}/metrics`)).text();
  const proc: SempipeProcess = {
    child,
    configFile: opts.configFile ?? '',
    adminUrl,
    stdout: () => out,
    stderr: () => err,
    metrics,
    metric: async (name, labels = {}) => sampleValue(await metrics(), name, labels),
    signal: (sig) => child.kill(sig),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  if (opts.waitReady !== false) await waitReady(proc);
  return proc;
}

export async function waitReady(p: SempipeProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`sempipe exited with ${p.child.exitCode}: ${p.stderr()}`);
    try {
      const r = await fetch(`${p.adminUrl}/readyz`);
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`sempipe not ready: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sum of the samples of `name` whose labels include `labels` (Prometheus text format). */
export function sampleValue(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const labelText = rest[0] === '{' ? rest.slice(1, rest.indexOf('}')) : '';
    const ok = Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`));
    if (ok) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** The audit lines `p` wrote so far (stdout is the audit log; it is flushed on a short timer). */
export function auditLinesOf<T = Record<string, unknown>>(p: SempipeProcess): T[] {
  return p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as T);
}

/** The port of `p`'s admin API (a config written for a reload must keep it). */
export const adminPortOf = (p: SempipeProcess): number => Number(new URL(p.adminUrl).port);

/** Writes `yaml` as `p`'s config file, sends SIGHUP and waits until every worker applied it. */
export async function reloadSempipe(p: SempipeProcess, yaml: string): Promise<void> {
  const reloads = (): number => p.stderr().split('config reloaded').length - 1;
  const before = reloads();
  writeFileSync(p.configFile, yaml);
  p.signal('SIGHUP');
  await waitFor(() => reloads() === before + 1, 'the reload');
  await waitReady(p);
}
