// Unit tests of report.ts: medians of rounds, byte and ratio formatting, and table alignment.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { formatBytes, formatRatio, formatTable, formatTps, median } from './report.js';

describe('median', () => {
  test('middle value of an odd count, mean of the two middle values of an even count', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  test('no rounds give NaN, printed as n/a', () => {
    expect(median([])).toBeNaN();
    expect(formatTps(median([]))).toBe('n/a');
    expect(formatRatio(Number.NaN)).toBe('n/a');
  });

  test('lies between the smallest and largest value and ignores order', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ noNaN: true, min: -1e9, max: 1e9 }), { minLength: 1, maxLength: 30 }), (xs) => {
        const m = median(xs);
        expect(m).toBeGreaterThanOrEqual(Math.min(...xs));
        expect(m).toBeLessThanOrEqual(Math.max(...xs));
        expect(median([...xs].reverse())).toBe(m);
      }),
    );
  });
});

describe('formatting', () => {
  test('bytes in binary units, negative deltas kept', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(65_331)).toBe('63.8 KiB');
    expect(formatBytes(254_000_000)).toBe('242.2 MiB');
    expect(formatBytes(-2048)).toBe('-2.0 KiB');
  });

  test('tps rounded with thousands separators, ratios with two decimals', () => {
    expect(formatTps(49126.554039)).toBe('49,127');
    expect(formatRatio(0.7949)).toBe('0.79x');
  });

  test('labels left-aligned, figures right-aligned, every line as wide as the rule', () => {
    const table = formatTable(['row', 'mode', 'tps'], [['sempipe', 'simple', '1,234'], ['pgbouncer', 'prepared', '56,789']], 2);
    expect(table.split('\n')).toEqual([
      'row       | mode     |    tps',
      '----------+----------+-------',
      'sempipe   | simple   |  1,234',
      'pgbouncer | prepared | 56,789',
    ]);
  });
});
