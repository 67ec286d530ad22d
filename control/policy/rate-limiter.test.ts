// Unit tests of the token bucket: burst, refill by elapsed time, cap, and a clock going backwards.
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { TokenBucket } from './rate-limiter.js';

test('a full bucket allows one second of burst, then refills at the rate', () => {
  const b = new TokenBucket(5, 0);
  for (let i = 0; i < 5; i++) expect(b.take(0)).toBe(true);
  expect(b.take(0)).toBe(false);
  expect(b.take(199)).toBe(false);
  expect(b.take(200)).toBe(true);
  expect(b.take(200)).toBe(false);
  expect(b.take(10_000)).toBe(true);
  let n = 1;
  while (b.take(10_000)) n++;
  expect(n).toBe(5);
});

test('rates below one per second still allow one statement', () => {
  const b = new TokenBucket(0.5, 0);
  expect(b.take(0)).toBe(true);
  expect(b.take(1000)).toBe(false);
  expect(b.take(2000)).toBe(true);
});

test('a clock going backwards adds no tokens', () => {
  const b = new TokenBucket(1, 1000);
  expect(b.take(1000)).toBe(true);
  expect(b.take(0)).toBe(false);
});

test('over any period no more than burst + rate * seconds statements pass', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1000 }), fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 300 }), (rate, gaps) => {
      const b = new TokenBucket(rate, 0);
      let now = 0;
      let passed = 0;
      for (const gap of gaps) {
        now += gap;
        if (b.take(now)) passed++;
      }
      expect(passed).toBeLessThanOrEqual(Math.max(1, rate) + (rate * now) / 1000 + 1e-9);
    }),
  );
});
