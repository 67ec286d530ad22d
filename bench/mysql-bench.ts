#!/usr/bin/env node
// `npm run bench:mysql`: sysbench oltp_point_select (16 threads) against MariaDB directly, through
// HAProxy in TCP mode (one thread: the L4 proxy people put in front of MySQL today), through
// sempipe (metrics and audit on) and through sempipe with a policy applying to every statement;
// a warm-up, then interleaved rounds in one run; prints the median queries/s per target and the
// ratios against the targets (sempipe >= 0.7x HAProxy, policy row >= 0.9x sempipe). Starts and
// cleans up everything it uses. Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_WORKERS (2).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBinary } from '../test/harness/binaries.js';
import { destroyMariaDb, startMariaDb, type MariaDbServer } from '../test/harness/mariadb-server.js';
import { freePort } from '../test/harness/ports.js';
import { startSempipe, type SempipeProcess } from '../test/harness/sempipe-process.js';
import { formatRatio, formatTable, formatTps, median } from './report.js';

const THREADS = 16;
const TABLE_SIZE = 10_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const CLIENT_PASSWORD = 'bench-secret';

interface Target {
  name: string;
  port: number;
  user: string;
  password: string;
  database: string;
  versus?: { row: string; atLeast: number };
}

const say = (text = ''): void => void process.stdout.write(`${text}\n`);

function sysbenchArgs(t: Target, command: 'prepare' | 'run', seconds: number): string[] {
  return [
    'oltp_point_select', '--db-driver=mysql', '--mysql-host=127.0.0.1', `--mysql-port=${t.port}`, `--mysql-user=${t.user}`,
    `--mysql-password=${t.password}`, `--mysql-db=${t.database}`, '--tables=1', `--table-size=${TABLE_SIZE}`,
    `--threads=${THREADS}`, `--time=${seconds}`, '--report-interval=0', command,
  ];
}

function runSysbench(t: Target, seconds: number): number {
  const r = spawnSync(requireBinary('sysbench'), sysbenchArgs(t, 'run', seconds), { encoding: 'utf8' });
  const m = /queries:\s+\d+\s+\((\d+(?:\.\d+)?) per sec\.\)/.exec(r.stdout);
  if (r.status !== 0 || m === null) throw new Error(`sysbench against ${t.name} failed: ${r.stderr || r.stdout}`);
  return Number(m[1]);
}

async function startHaproxy(dir: string, upstreamPort: number): Promise<{ port: number; stop(): void }> {
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, `global\n  nbthread 1\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\nlisten mysql\n  bind 127.0.0.1:${port}\n  server db 127.0.0.1:${upstreamPort}\n`);
  const child = spawn(requireBinary('haproxy'), ['-f', cfg, '-db'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  if (child.exitCode !== null) throw new Error('haproxy exited at start');
  return { port, stop: () => void child.kill('SIGTERM') };
}

function sempipeYaml(server: MariaDbServer, port: number, auditFile: string, policy: boolean): string {
  return `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
audit: { enabled: true, destination: ${auditFile} }
services:
  - { fqn: service::/bench::maria, protocol: mysql, upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable } }
bindings:
  - { fqn: binding::/bench::sysbench, service: service::/bench::maria, listen: 127.0.0.1:${port}, database: ${server.database}, auth: mysql_native_password, clients: [ { user: bench, password: ${CLIENT_PASSWORD} } ] }
${policy ? `policies:
  - { fqn: policy::/bench::read-only, realm: binding::/bench, read_only: true, deny: { functions: [load_file, sys_exec] } }` : ''}
`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sempipe-bench-mysql-'));
  let server: MariaDbServer | undefined;
  let haproxy: { port: number; stop(): void } | undefined;
  const sempipes: SempipeProcess[] = [];
  try {
    server = await startMariaDb({ settings: { max_connections: '500' } });
    const direct: Target = { name: 'direct', port: server.port, user: server.user, password: server.password, database: server.database };
    spawnSync(requireBinary('sysbench'), sysbenchArgs(direct, 'prepare', 1), { encoding: 'utf8' });
    haproxy = await startHaproxy(dir, server.port);
    const targets: Target[] = [direct, { ...direct, name: 'haproxy', port: haproxy.port }];
    for (const [name, policy] of [['sempipe', false], ['sempipe+policy', true]] as const) {
      const port = await freePort();
      sempipes.push(await startSempipe({ workers: WORKERS, env: { UP_PW: server.password }, yaml: sempipeYaml(server, port, join(dir, `${name}.audit.log`), policy) }));
      targets.push({ name, port, user: 'bench', password: CLIENT_PASSWORD, database: server.database, ...(policy && { versus: { row: 'sempipe', atLeast: 0.9 } }) });
    }
    say(`sysbench oltp_point_select, ${THREADS} threads, ${SECONDS}s x ${ROUNDS} interleaved rounds after a warm-up; sempipe with ${WORKERS} workers, metrics and audit on`);
    for (const t of targets) runSysbench(t, 2);
    const results = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < ROUNDS; round++) for (const t of targets) results.get(t.name)!.push(runSysbench(t, SECONDS));
    const qps = (name: string): number => median(results.get(name)!);
    const rows = targets.map((t) => {
      const q = qps(t.name);
      const check = t.name === 'sempipe' ? q / qps('haproxy') >= 0.7 : t.versus !== undefined ? q / qps(t.versus.row) >= t.versus.atLeast : undefined;
      return [t.name, formatTps(q), formatRatio(q / qps('direct')), formatRatio(q / qps('haproxy')), formatRatio(q / qps('sempipe')), check === undefined ? '' : check ? 'PASS' : 'FAIL'];
    });
    say(formatTable(['target', 'queries/s', 'vs direct', 'vs haproxy', 'vs sempipe', 'target met'], rows));
  } finally {
    for (const s of sempipes) await s.stop();
    haproxy?.stop();
    await destroyMariaDb(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:mysql failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
