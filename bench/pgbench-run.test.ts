// Unit tests of pgbench-run.ts: the arguments of a run, and reading pgbench 15's summary (fixture
// captured from a real `pgbench -n -S -M prepared` run), including arbitrary text that must either
// parse to finite figures or be refused with an error, never a NaN in the table.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { parsePgbenchOutput, pgbenchArgs } from './pgbench-run.js';

const PGBENCH_15_OUTPUT = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: prepared
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 47521
number of failed transactions: 0 (0.000%)
latency average = 0.041 ms
initial connection time = 35.399 ms
tps = 49126.554039 (without initial connection time)
`;

describe('parsePgbenchOutput', () => {
  test('reads tps, transactions and failures of a real run', () => {
    expect(parsePgbenchOutput(PGBENCH_15_OUTPUT)).toEqual({ tps: 49126.554039, transactions: 47521, failed: 0 });
  });

  test('counts failed transactions', () => {
    const out = PGBENCH_15_OUTPUT.replace('number of failed transactions: 0 (0.000%)', 'number of failed transactions: 12 (0.025%)');
    expect(parsePgbenchOutput(out).failed).toBe(12);
  });

  test('refuses output without the tps line (a run that was cut short)', () => {
    const cut = PGBENCH_15_OUTPUT.split('\n').filter((l) => !l.startsWith('tps')).join('\n');
    expect(() => parsePgbenchOutput(cut)).toThrow(/unexpected pgbench output/);
  });

  test('does not take the tps that includes connection time for the one without', () => {
    const old = PGBENCH_15_OUTPUT.replace('(without initial connection time)', '(including connections establishing)');
    expect(() => parsePgbenchOutput(old)).toThrow(/unexpected pgbench output/);
  });

  test('arbitrary text parses to finite figures or throws an Error', () => {
    const line = fc.oneof(fc.string(), fc.constantFrom(...PGBENCH_15_OUTPUT.split('\n')));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
        let parsed: ReturnType<typeof parsePgbenchOutput>;
        try {
          parsed = parsePgbenchOutput(lines.join('\n'));
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          return;
        }
        expect(Number.isFinite(parsed.tps)).toBe(true);
        expect(Number.isSafeInteger(parsed.transactions)).toBe(true);
        expect(Number.isSafeInteger(parsed.failed)).toBe(true);
      }),
    );
  });
});

describe('pgbenchArgs', () => {
  test('a select-only run with 16 clients on 2 threads, without vacuum, against the given target', () => {
    const args = pgbenchArgs({ host: '127.0.0.1', port: 6432, user: 'bench', database: 'appdb' }, 'prepared', 8);
    expect(args.join(' ')).toBe('-n -S -M prepared -c 16 -j 2 -T 8 -h 127.0.0.1 -p 6432 -U bench appdb');
  });
});
