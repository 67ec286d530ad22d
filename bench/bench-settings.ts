// The PostgreSQL benchmark's knobs, read from the environment (BENCH_SECONDS, BENCH_ROUNDS, ...) and
// checked with zod, and the command line that reproduces a run with the same knobs.
import { availableParallelism } from 'node:os';
import { z } from 'zod';

/** pgbench's client and thread counts: fixed so that runs on different days stay comparable. */
export const PGBENCH_CLIENTS = 16;
export const PGBENCH_THREADS = 2;

const whole = (fallback: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(fallback);

const envSchema = z.object({
  /** Length of one measured pgbench run (-T). */
  BENCH_SECONDS: whole(8, 1, 3600),
  /** Rounds of (every target x every mode); the table shows the median per cell. */
  BENCH_ROUNDS: whole(5, 1, 100),
  /** Unmeasured run per target and mode before the first round; 0 skips it. */
  BENCH_WARMUP_SECONDS: whole(2, 0, 600),
  /** sempipe worker processes (--workers). */
  BENCH_WORKERS: whole(availableParallelism(), 1, 1024),
  /** Authenticated idle connections opened for the memory measurement. */
  BENCH_IDLE_CONNECTIONS: whole(1000, 1, 1000),
  /** pgbench -i scale factor. */
  BENCH_SCALE: whole(10, 1, 10_000),
});

export interface BenchSettings {
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  workers: number;
  idleConnections: number;
  scale: number;
}

/** The settings from `env`; throws a readable error naming the variable that is wrong. */
export function readBenchSettings(env: NodeJS.ProcessEnv): BenchSettings {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`bad benchmark setting: ${problems}`);
  }
  const e = parsed.data;
  return {
    seconds: e.BENCH_SECONDS,
    rounds: e.BENCH_ROUNDS,
    warmupSeconds: e.BENCH_WARMUP_SECONDS,
    workers: e.BENCH_WORKERS,
    idleConnections: e.BENCH_IDLE_CONNECTIONS,
    scale: e.BENCH_SCALE,
  };
}

/** The exact command that repeats this run with the same knobs. */
export function reproduceCommand(s: BenchSettings): string {
  return [
    `BENCH_SECONDS=${s.seconds}`,
    `BENCH_ROUNDS=${s.rounds}`,
    `BENCH_WARMUP_SECONDS=${s.warmupSeconds}`,
    `BENCH_WORKERS=${s.workers}`,
    `BENCH_IDLE_CONNECTIONS=${s.idleConnections}`,
    `BENCH_SCALE=${s.scale}`,
    'npm run bench:pg',
  ].join(' ');
}
