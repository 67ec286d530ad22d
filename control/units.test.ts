// Unit and property tests for the duration and size parsers of the config file.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDuration, parseSize } from './units.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    ['10', 10_000],
    [' 3 s ', 3000],
    ['0s', 0],
    [10, 10_000],
    [0.25, 250],
    [0, 0],
  ] as const)('reads %j as %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([
    ['', 'invalid duration "": expected a number with a unit, e.g. "500ms", "10s", "2m"'],
    ['ten seconds', 'invalid duration "ten seconds": expected a number with a unit, e.g. "500ms", "10s", "2m"'],
    ['-5s', 'invalid duration "-5s": expected a number with a unit, e.g. "500ms", "10s", "2m"'],
    ['10 sec', 'invalid duration "10 sec": unknown unit "sec" (use ms, s, m, h or d)'],
    ['5S', 'invalid duration "5S": unknown unit "S" (use ms, s, m, h or d)'],
    ['1e3s', 'invalid duration "1e3s": expected a number with a unit, e.g. "500ms", "10s", "2m"'],
  ])('refuses %j', (input, reason) => {
    expect(() => parseDuration(input)).toThrow(reason);
  });

  it.each([
    [-1, 'invalid duration -1: expected a non-negative number of seconds'],
    [Number.NaN, 'invalid duration NaN: expected a non-negative number of seconds'],
    [Number.POSITIVE_INFINITY, 'invalid duration Infinity: expected a non-negative number of seconds'],
    [1e300, 'invalid value 1e+300: too large'],
  ])('refuses the number %d', (input, reason) => {
    expect(() => parseDuration(input)).toThrow(reason);
  });

  it('reads every whole number of milliseconds back', () => {
    fc.assert(fc.property(fc.nat(), (n) => parseDuration(`${n}ms`) === n && parseDuration(`${n}s`) === n * 1000));
  });
});

describe('parseSize', () => {
  it.each([
    ['512KiB', 512 * 1024],
    ['64MiB', 64 * 1024 ** 2],
    ['1GiB', 1024 ** 3],
    ['2TiB', 2 * 1024 ** 4],
    ['100kB', 100_000],
    ['3MB', 3_000_000],
    ['1GB', 1_000_000_000],
    ['1.5KiB', 1536],
    ['42B', 42],
    ['1024', 1024],
    [' 8 MiB ', 8 * 1024 ** 2],
    [4096, 4096],
    [0, 0],
  ] as const)('reads %j as %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it.each([
    ['', 'invalid size "": expected a number with a unit, e.g. "512KiB", "64MiB", "100kB"'],
    ['lots', 'invalid size "lots": expected a number with a unit, e.g. "512KiB", "64MiB", "100kB"'],
    ['-1KiB', 'invalid size "-1KiB": expected a number with a unit, e.g. "512KiB", "64MiB", "100kB"'],
    ['64KB', 'invalid size "64KB": unknown unit "KB" (ambiguous: write kB/MB/GB for powers of 1000 or KiB/MiB/GiB for powers of 1024)'],
    ['64mb', 'invalid size "64mb": unknown unit "mb" (ambiguous: write kB/MB/GB for powers of 1000 or KiB/MiB/GiB for powers of 1024)'],
    ['64M', 'invalid size "64M": unknown unit "M" (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)'],
    ['9999999999TiB', 'invalid value "9999999999TiB": too large'],
  ])('refuses %j', (input, reason) => {
    expect(() => parseSize(input)).toThrow(reason);
  });

  it.each([
    [1.5, 'invalid size 1.5: expected a non-negative whole number of bytes'],
    [-2, 'invalid size -2: expected a non-negative whole number of bytes'],
    [Number.NaN, 'invalid size NaN: expected a non-negative whole number of bytes'],
  ])('refuses the number %d', (input, reason) => {
    expect(() => parseSize(input)).toThrow(reason);
  });

  it('reads every whole number of KiB back', () => {
    fc.assert(fc.property(fc.nat({ max: 2 ** 40 }), (n) => parseSize(`${n}KiB`) === n * 1024 && parseSize(n) === n));
  });
});

describe('arbitrary input', () => {
  it('either yields a safe non-negative integer or throws an Error with a reason', () => {
    const input = fc.oneof(fc.string(), fc.double(), fc.stringMatching(/^\d{1,20}(\.\d{1,5})?\s?[A-Za-z]{0,4}$/));
    fc.assert(
      fc.property(input, (v) => {
        for (const parse of [parseDuration, parseSize]) {
          try {
            const n = parse(v);
            expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
          } catch (err) {
            expect(err).toBeInstanceOf(Error);
            expect((err as Error).message).toMatch(/^invalid (duration|size|value) /);
          }
        }
      }),
    );
  });
});
