#!/usr/bin/env node
// `npm run bench:pg`: pgbench -S throughput of PostgreSQL directly, through PgBouncer (session mode)
// and through sempipe (metrics and audit on), in simple and prepared query mode, interleaved over
// several rounds; prints the median TPS per target and mode, sempipe's ratios to direct and to
// PgBouncer with PASS/FAIL against the target, and the resident memory per idle authenticated
// connection. Starts and cleans up everything it uses; knobs in bench-settings.ts (BENCH_*).
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createScramVerifier } from '../protocols/postgres/auth/scram-verifier.js';
import { findBinary } from '../test/harness/binaries.js';
import { destroyPostgres, startPostgres, type PgServer } from '../test/harness/pg-server.js';
import { PGBENCH_CLIENTS, PGBENCH_THREADS, readBenchSettings, reproduceCommand, type BenchSettings } from './bench-settings.js';
import { openIdleConnections } from './pg-clients.js';
import { initPgbench, pgbenchArgs, QUERY_MODES, runPgbench, type PgTarget, type QueryMode } from './pgbench-run.js';
import { startPgbouncer } from './pgbouncer-process.js';
import { processTree, totalRss } from './process-rss.js';
import { formatBytes, formatRatio, formatTable, formatTps, median } from './report.js';
import { versionOf } from '../test/harness/run.js';
import { baseSempipeConfig, policySempipeConfig, startBenchSempipe, type SempipeVariant } from './sempipe-bench-process.js';
import { Teardown } from './teardown.js';

/** The sempipe rows of the table; another sempipe config is one more line here. */
const SEMPIPE_VARIANTS: readonly SempipeVariant[] = [
  { name: 'sempipe', config: baseSempipeConfig },
  { name: 'sempipe+policy', config: policySempipeConfig, versus: { row: 'sempipe', atLeast: 0.9 } },
];

/** sempipe must reach this share of PgBouncer's TPS in the same run, in every query mode. */
const TARGET_VS_PGBOUNCER = 0.8;
const PGBOUNCER_PATH = '/usr/sbin/pgbouncer';
const IDLE_SETTLE_MS = 2000;
const IDLE_PRIME_CONNECTIONS = 100;

interface BenchTarget {
  name: string;
  kind: 'direct' | 'pgbouncer' | 'sempipe';
  versus?: SempipeVariant['versus'];
  target: PgTarget;
  /** The processes whose memory counts for this target (none for direct). */
  pids?: () => number[];
  auditFile?: string;
}

type Results = Map<string, Map<QueryMode, number[]>>;

const say = (text = ''): void => void process.stdout.write(`${text}\n`);

/** A random password of hex digits (nothing to quote in SQL or connection strings). */
const secret = (): string => randomBytes(16).toString('hex');

function pgbouncerBinary(): { path?: string; reason?: string } {
  if (existsSync(PGBOUNCER_PATH)) return { path: PGBOUNCER_PATH };
  const found = findBinary('pgbouncer');
  return found !== undefined ? { path: found } : { reason: `${PGBOUNCER_PATH} not found and no pgbouncer in PATH (apt-get install pgbouncer)` };
}

async function printMachine(settings: BenchSettings, serverVersion: string, pgbouncerVersion: string): Promise<void> {
  const pgbench = findBinary('pgbench');
  say('== machine');
  say(`  nproc:      ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), ${formatBytes(totalmem())} memory, Linux ${release()}`);
  say(`  node:       ${process.version}`);
  say(`  postgresql: ${serverVersion}`);
  say(`  pgbench:    ${pgbench === undefined ? 'missing' : await versionOf(pgbench)}`);
  say(`  pgbouncer:  ${pgbouncerVersion}`);
  say(`  sempipe:    ${settings.workers} workers`);
  say();
  say('== reproduce');
  say(`  ${reproduceCommand(settings)}`);
  say();
}

function printTargets(settings: BenchSettings, targets: readonly BenchTarget[]): void {
  say('== targets (each run; PGPASSWORD in the environment; the same with -M prepared)');
  for (const t of targets) say(`  ${t.name.padEnd(10)} pgbench ${pgbenchArgs(t.target, 'simple', settings.seconds).join(' ')}`);
  say();
}

function record(results: Results, target: string, mode: QueryMode, tps: number): void {
  const byMode = results.get(target) ?? new Map<QueryMode, number[]>();
  byMode.set(mode, [...(byMode.get(mode) ?? []), tps]);
  results.set(target, byMode);
}

async function runRounds(settings: BenchSettings, targets: readonly BenchTarget[], signal: AbortSignal): Promise<Results> {
  if (settings.warmupSeconds > 0) {
    say(`== warm-up: ${settings.warmupSeconds} s per target and mode (not counted)`);
    for (const mode of QUERY_MODES) for (const t of targets) await runPgbench(t.target, mode, settings.warmupSeconds, signal);
  }
  say(`== ${settings.rounds} rounds x ${QUERY_MODES.length} modes x ${targets.length} targets, ${settings.seconds} s each`);
  const results: Results = new Map();
  for (let round = 0; round < settings.rounds; round++) {
    // Rotate the order every round so that no target always runs right after the same neighbour.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const mode of QUERY_MODES) {
      for (const t of order) {
        const r = await runPgbench(t.target, mode, settings.seconds, signal);
        record(results, t.name, mode, r.tps);
        const failed = r.failed > 0 ? `, ${r.failed} failed transactions` : '';
        say(`  round ${round + 1}/${settings.rounds}  ${mode.padEnd(8)}  ${t.name.padEnd(10)}  ${formatTps(r.tps).padStart(8)} tps${failed}`);
      }
    }
  }
  say();
  return results;
}

function tpsOf(results: Results, target: string, mode: QueryMode): number {
  return median(results.get(target)?.get(mode) ?? []);
}

type Verdict = 'PASS' | 'FAIL' | 'not evaluated (no PgBouncer)';

function printThroughput(settings: BenchSettings, targets: readonly BenchTarget[], results: Results, skipped?: string): Verdict {
  say(`== pgbench -S, ${PGBENCH_CLIENTS} clients, ${PGBENCH_THREADS} threads: median TPS of ${settings.rounds} rounds (every round in parentheses)`);
  say(formatTable(
    ['target', ...QUERY_MODES.map((m) => `${m} TPS`)],
    targets.map((t) => [
      t.name,
      ...QUERY_MODES.map((m) => `${formatTps(tpsOf(results, t.name, m))} (${(results.get(t.name)?.get(m) ?? []).map(formatTps).join(' ')})`),
    ]),
  ));
  if (skipped !== undefined) say(`PgBouncer column skipped: ${skipped}`);
  say();
  const havePgbouncer = targets.some((t) => t.kind === 'pgbouncer');
  let allPass = true;
  const rows: string[][] = [];
  for (const t of targets.filter((x) => x.kind === 'sempipe')) {
    for (const mode of QUERY_MODES) {
      const own = tpsOf(results, t.name, mode);
      const vsPgbouncer = havePgbouncer ? own / tpsOf(results, 'pgbouncer', mode) : Number.NaN;
      const ratios = [t.name, mode, formatRatio(own / tpsOf(results, 'direct', mode)), formatRatio(vsPgbouncer)];
      // A row with its own target (another sempipe row) is judged by that target below.
      if (t.versus !== undefined) {
        rows.push([...ratios, `see ${t.versus.row} below`]);
        continue;
      }
      const pass = vsPgbouncer >= TARGET_VS_PGBOUNCER;
      allPass &&= pass;
      const verdict: Verdict = havePgbouncer ? (pass ? 'PASS' : 'FAIL') : 'not evaluated (no PgBouncer)';
      rows.push([...ratios, verdict]);
    }
  }
  say(`== ratios (target: sempipe >= ${TARGET_VS_PGBOUNCER.toFixed(2)}x PgBouncer in every mode)`);
  say(formatTable(['row', 'mode', '/ direct', '/ pgbouncer', `>= ${TARGET_VS_PGBOUNCER.toFixed(2)}x pgbouncer`], rows, 2));
  say();
  const versusRows: string[][] = [];
  for (const t of targets) {
    if (t.versus === undefined) continue;
    for (const mode of QUERY_MODES) {
      const ratio = tpsOf(results, t.name, mode) / tpsOf(results, t.versus.row, mode);
      const pass = ratio >= t.versus.atLeast;
      allPass &&= pass;
      versusRows.push([t.name, mode, `${formatRatio(ratio)} of ${t.versus.row}`, `>= ${t.versus.atLeast.toFixed(2)}x: ${pass ? 'PASS' : 'FAIL'}`]);
    }
  }
  if (versusRows.length > 0) {
    say('== rows that must keep up with another row of the same run');
    say(formatTable(['row', 'mode', 'ratio', 'target'], versusRows, 2));
    say();
  }
  return havePgbouncer ? (allPass ? 'PASS' : 'FAIL') : 'not evaluated (no PgBouncer)';
}

interface IdleMemory {
  target: string;
  processes: number;
  before: number;
  after: number;
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
const BACKENDS_POLL_MS = 500;
const BACKENDS_DEADLINE_MS = 120_000;

/**
 * Waits until the server's client backends have stopped going away: after an idle measurement up
 * to a thousand of them end, and on this kind of machine a pgbench run that starts meanwhile may
 * not get its connections within a short warm-up.
 */
async function backendsSettled(server: PgServer): Promise<void> {
  const count = (): number => Number(server.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"));
  const deadline = Date.now() + BACKENDS_DEADLINE_MS;
  let last = count();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, BACKENDS_POLL_MS));
    const now = count();
    if (now >= last) return;
    last = now;
  }
}

/**
 * RSS of each proxy before and with `n` authenticated idle connections. Measured on freshly started
 * processes, before any load: after the throughput runs the heap holds garbage that the collector
 * may return while the idle connections are opened, which hides their cost. A first batch of
 * connections, opened and closed, loads the connection code paths so that they are in `before`.
 */
async function measureIdleMemory(settings: BenchSettings, targets: readonly BenchTarget[], server: PgServer): Promise<IdleMemory[]> {
  const n = settings.idleConnections;
  say(`== measuring resident memory with ${n} authenticated idle connections ...`);
  const measured: IdleMemory[] = [];
  for (const t of targets) {
    if (t.pids === undefined) continue;
    await (await openIdleConnections(t.target, Math.min(IDLE_PRIME_CONNECTIONS, n))).close();
    await settle();
    const before = totalRss(t.pids());
    const idle = await openIdleConnections(t.target, n);
    await settle();
    const pids = t.pids();
    measured.push({ target: t.name, processes: pids.length, before, after: totalRss(pids) });
    await idle.close();
    // The server ends up to a thousand backends now; the next measurement or round waits for it.
    await settle();
    await backendsSettled(server);
  }
  say();
  return measured;
}

function printIdleMemory(settings: BenchSettings, measured: readonly IdleMemory[]): void {
  const n = settings.idleConnections;
  say(`== resident memory with ${n} authenticated idle connections (VmRSS summed over the processes, measured before the load)`);
  say(formatTable(
    ['target', 'processes', 'RSS before', `RSS with ${n} idle`, 'per connection'],
    measured.map((m) => [m.target, String(m.processes), formatBytes(m.before), formatBytes(m.after), formatBytes((m.after - m.before) / n)]),
  ));
  say('(sempipe holds one upstream connection per client session; PgBouncer in session mode gives a client a server connection only while it is active)');
  say();
}

async function main(teardown: Teardown): Promise<void> {
  const settings = readBenchSettings(process.env);
  const signal = teardown.abort.signal;
  const started = Date.now();

  say('starting PostgreSQL (scram-sha-256, max_connections = 1100) ...');
  const server = await startPostgres({ auth: 'scram-sha-256', settings: { max_connections: '1100' } });
  teardown.add('PostgreSQL', () => destroyPostgres(server));
  const dir = mkdtempSync(join(tmpdir(), 'sempipe-bench-'));
  teardown.add('temporary directory', () => rmSync(dir, { recursive: true, force: true }));
  // PgBouncer runs as the postgres account when we are root and must reach its files in here.
  chmodSync(dir, 0o755);
  say(`pgbench -i -s ${settings.scale} directly against PostgreSQL on port ${server.port} ...`);
  await initPgbench(
    { host: server.host, port: server.port, user: server.user, password: server.password, database: server.database },
    settings.scale,
    signal,
  );
  // Every target reaches the server as the same unprivileged role; pgbench -S only reads.
  // Created from its SCRAM verifier, so the password never appears on a command line; PgBouncer's
  // auth_file gets the same verifier.
  const role = { user: 'bench', password: secret() };
  const roleVerifier = createScramVerifier(role.password);
  server.sql(`CREATE ROLE ${role.user} LOGIN PASSWORD '${roleVerifier}'`);
  server.sql(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role.user}`, server.database);
  const direct: PgTarget = { host: server.host, port: server.port, database: server.database, ...role };
  // sempipe issues its own credentials to its client; the role's password stays with sempipe.
  const clientPassword = secret();
  const client = { user: 'bench', password: clientPassword, verifier: createScramVerifier(clientPassword) };
  const targets: BenchTarget[] = [{ name: 'direct', kind: 'direct', target: direct }];

  const bouncer = pgbouncerBinary();
  let pgbouncerVersion = `skipped: ${bouncer.reason}`;
  if (bouncer.path !== undefined) {
    pgbouncerVersion = await versionOf(bouncer.path);
    const pgbDir = join(dir, 'pgbouncer');
    mkdirSync(pgbDir);
    say(`starting PgBouncer (session mode) ...`);
    const pgb = await startPgbouncer({ binary: bouncer.path, dir: pgbDir, upstream: direct, verifier: roleVerifier });
    teardown.add('PgBouncer', () => pgb.stop());
    targets.push({ name: 'pgbouncer', kind: 'pgbouncer', target: pgb.target, pids: () => [pgb.pid] });
  }
  for (const variant of SEMPIPE_VARIANTS) {
    say(`starting ${variant.name} (${settings.workers} workers, metrics and audit on) ...`);
    const sp = await startBenchSempipe({ variant, dir, workers: settings.workers, upstream: direct, client });
    teardown.add(variant.name, () => sp.stop());
    targets.push({ name: variant.name, kind: 'sempipe', versus: variant.versus, target: sp.target, pids: () => processTree(sp.pid), auditFile: sp.auditFile });
  }
  say();

  await printMachine(settings, server.sql('show server_version'), pgbouncerVersion);
  printTargets(settings, targets);
  const memory = await measureIdleMemory(settings, targets, server);
  const results = await runRounds(settings, targets, signal);
  const verdict = printThroughput(settings, targets, results, bouncer.reason);
  printIdleMemory(settings, memory);

  say('== audit log (sempipe audit destination: a file, as an operator would run it)');
  for (const t of targets) if (t.auditFile !== undefined) say(`  ${t.name}: ${formatBytes(statSync(t.auditFile).size)} (${t.auditFile}, removed at exit)`);
  say();
  say(`finished in ${Math.round((Date.now() - started) / 1000)} s; overall ${verdict} (sempipe >= ${TARGET_VS_PGBOUNCER.toFixed(2)}x PgBouncer in every mode, and each row's own target)`);
}

const teardown = new Teardown();
teardown.onSignals();
teardown.onCrash();
try {
  await main(teardown);
} catch (err) {
  if (!teardown.abort.signal.aborted) {
    process.stderr.write(`bench:pg failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
} finally {
  await teardown.run();
}
