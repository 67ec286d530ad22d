// Tests of bench-settings.ts: the defaults, knobs read from the environment, a bad value refused
// with the variable's name, and the reproduce line repeating exactly the knobs of the run.
import { describe, expect, test } from 'vitest';
import { readBenchSettings, reproduceCommand } from './bench-settings.js';

describe('readBenchSettings', () => {
  test('defaults: 8 s runs, 5 rounds, 2 s warm-up, 1000 idle connections, scale 10', () => {
    const s = readBenchSettings({});
    expect(s).toMatchObject({ seconds: 8, rounds: 5, warmupSeconds: 2, idleConnections: 1000, scale: 10 });
    expect(s.workers).toBeGreaterThanOrEqual(1);
  });

  test('knobs from the environment, repeated by the reproduce line', () => {
    const s = readBenchSettings({ BENCH_SECONDS: '3', BENCH_ROUNDS: '2', BENCH_WORKERS: '4', BENCH_WARMUP_SECONDS: '0' });
    expect(reproduceCommand(s)).toBe(
      'BENCH_SECONDS=3 BENCH_ROUNDS=2 BENCH_WARMUP_SECONDS=0 BENCH_WORKERS=4 BENCH_IDLE_CONNECTIONS=1000 BENCH_SCALE=10 npm run bench:pg',
    );
  });

  test('a bad value is refused naming the variable', () => {
    expect(() => readBenchSettings({ BENCH_SECONDS: 'fast' })).toThrow(/bad benchmark setting: BENCH_SECONDS/);
    expect(() => readBenchSettings({ BENCH_ROUNDS: '0' })).toThrow(/BENCH_ROUNDS/);
  });
});
