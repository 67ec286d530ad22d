// Runs pgbench against one target: `pgbench -i` to create the tables, and timed select-only runs
// (-S) in simple or prepared query mode, returning the TPS pgbench reports.
import { PGBENCH_CLIENTS, PGBENCH_THREADS } from './bench-settings.js';
import { run } from '../test/harness/run.js';

/** Where and as whom a client logs in. */
export interface PgTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export type QueryMode = 'simple' | 'prepared';
export const QUERY_MODES: readonly QueryMode[] = ['simple', 'prepared'];

export interface PgbenchResult {
  /** Transactions per second without the initial connection time. */
  tps: number;
  transactions: number;
  failed: number;
}

/** pgbench's arguments for one select-only run (no vacuum: the tables are vacuumed once by -i). */
export function pgbenchArgs(target: Omit<PgTarget, 'password'>, mode: QueryMode, seconds: number): string[] {
  return [
    '-n', '-S', '-M', mode,
    '-c', String(PGBENCH_CLIENTS), '-j', String(PGBENCH_THREADS), '-T', String(seconds),
    '-h', target.host, '-p', String(target.port), '-U', target.user, target.database,
  ];
}

function env(target: PgTarget): Record<string, string> {
  return { PGPASSWORD: target.password, PGSSLMODE: 'disable', PGAPPNAME: 'sempipe-bench' };
}

/** Creates and fills pgbench's tables (pgbench -i -s scale), directly against the server. */
export async function initPgbench(target: PgTarget, scale: number, signal: AbortSignal): Promise<void> {
  const args = ['-i', '-q', '-s', String(scale), '-h', target.host, '-p', String(target.port), '-U', target.user, target.database];
  const r = await run('pgbench', args, { env: env(target), signal, timeoutMs: 30 * 60_000 });
  if (r.code !== 0) throw new Error(`pgbench -i failed (exit ${r.code}): ${r.stderr.trim()}`);
}

/** Reads the figures pgbench prints at the end of a run; throws when the run did not finish cleanly. */
export function parsePgbenchOutput(stdout: string): PgbenchResult {
  const tps = /^tps = ([0-9.]+) \(without initial connection time\)$/m.exec(stdout);
  const transactions = /^number of transactions actually processed: (\d+)/m.exec(stdout);
  if (tps === null || transactions === null) throw new Error(`unexpected pgbench output:\n${stdout}`);
  const failed = /^number of failed transactions: (\d+)/m.exec(stdout);
  return { tps: Number(tps[1]), transactions: Number(transactions[1]), failed: failed === null ? 0 : Number(failed[1]) };
}

export async function runPgbench(target: PgTarget, mode: QueryMode, seconds: number, signal: AbortSignal): Promise<PgbenchResult> {
  const r = await run('pgbench', pgbenchArgs(target, mode, seconds), {
    env: env(target),
    signal,
    timeoutMs: (seconds + 120) * 1000,
  });
  if (r.code !== 0) throw new Error(`pgbench -M ${mode} against ${target.host}:${target.port} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return parsePgbenchOutput(r.stdout);
}
