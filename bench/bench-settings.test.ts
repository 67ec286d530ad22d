// Tests of bench-settings.ts: the defaults, a knob read from the environment, a bad value refused
// with the variable's name, and the reproduce line repeating exactly the knobs of the run.
import { describe, expect, test } from 'vitest';
import { readBenchSettings, reproduceCommand } from './bench-settings.js';

describe('readBenchSettings', () => {
  test('defaults: 8 s runs, 5 rounds, no calibration row', () => {
    const s = readBenchSettings({});
    expect(s).toMatchObject({ seconds: 8, rounds: 5, warmupSeconds: 2, idleConnections: 1000, scale: 10, nodeRelay: false });
    expect(s.workers).toBeGreaterThanOrEqual(1);
  });

  test('BENCH_NODE_RELAY=1 adds the node relay row, and the reproduce line keeps it', () => {
    const s = readBenchSettings({ BENCH_NODE_RELAY: '1', BENCH_WORKERS: '2' });
    expect(s.nodeRelay).toBe(true);
    expect(reproduceCommand(s)).toBe(
      'BENCH_SECONDS=8 BENCH_ROUNDS=5 BENCH_WARMUP_SECONDS=2 BENCH_WORKERS=2 BENCH_IDLE_CONNECTIONS=1000 BENCH_SCALE=10 BENCH_NODE_RELAY=1 npm run bench:pg',
    );
    expect(reproduceCommand(readBenchSettings({ BENCH_WORKERS: '2' }))).not.toContain('BENCH_NODE_RELAY');
  });

  test('a bad value is refused naming the variable', () => {
    expect(() => readBenchSettings({ BENCH_NODE_RELAY: '2' })).toThrow(/bad benchmark setting: BENCH_NODE_RELAY/);
    expect(() => readBenchSettings({ BENCH_SECONDS: 'fast' })).toThrow(/BENCH_SECONDS/);
  });
});
