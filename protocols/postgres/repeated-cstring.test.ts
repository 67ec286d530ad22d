// RepeatedCString: a remembered string is recognised only when its bytes and its NUL terminator
// both lie within the message; a prefix, a longer string, a truncated message or a forgotten
// string is not a match.
import { expect, test } from 'vitest';
import { RepeatedCString } from './repeated-cstring.js';

const msg = (s: string): Buffer => Buffer.from(`XX${s}\0YY`, 'utf8');

test('matches the remembered string in place, nothing else', () => {
  const memo = new RepeatedCString<number>(16);
  expect(memo.match(msg('P0_1'), 2, 9)).toBeUndefined();
  memo.remember('P0_1', 7, 'utf8');
  expect(memo.match(msg('P0_1'), 2, 9)).toBe(7);
  expect(memo.match(msg('P0_12'), 2, 10)).toBeUndefined();
  expect(memo.match(msg('P0_'), 2, 8)).toBeUndefined();
  expect(memo.match(msg('P0_2'), 2, 9)).toBeUndefined();
  memo.remember('sélect', 8, 'utf8');
  expect(memo.match(msg('sélect'), 2, 11)).toBe(8);
  memo.forget();
  expect(memo.match(msg('sélect'), 2, 11)).toBeUndefined();
});

test('a terminator at or past the end of the message is not a match (truncated message)', () => {
  const memo = new RepeatedCString<number>(16);
  memo.remember('P0_1', 1, 'utf8');
  // "XXP0_1\0YY": the NUL is at offset 6; a message ending there or earlier does not hold it.
  expect(memo.match(msg('P0_1'), 2, 6)).toBeUndefined();
  expect(memo.match(msg('P0_1'), 2, 5)).toBeUndefined();
  expect(memo.match(msg('P0_1'), 2, 7)).toBe(1);
});

test('a string longer than the capacity is not remembered and keeps the last one', () => {
  const memo = new RepeatedCString<number>(4);
  memo.remember('abc', 1, 'latin1');
  memo.remember('abcdefgh', 2, 'latin1');
  expect(memo.match(msg('abc'), 2, 8)).toBe(1);
  expect(memo.match(msg('abcdefgh'), 2, 13)).toBeUndefined();
});
