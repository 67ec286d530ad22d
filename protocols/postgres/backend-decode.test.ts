// The CommandComplete tag decoder: a repeated tag comes back as the same string, and a tag that
// merely shares a prefix with the last one, is longer than what is kept, or sits inside a larger
// chunk is decoded afresh and correctly.
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { CommandTagDecoder, decodeCommandTag } from './backend-decode.js';

function commandComplete(tag: string): Buffer {
  const body = Buffer.from(`${tag}\0`, 'latin1');
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = 0x43;
  frame.writeUInt32BE(4 + body.length, 1);
  body.copy(frame, 5);
  return frame;
}

test('a repeated tag is the same string; prefixes and longer tags are decoded afresh', () => {
  const tags = new CommandTagDecoder();
  const first = tags.decode(commandComplete('SELECT 1'), 0, 14);
  expect(first).toBe('SELECT 1');
  expect(tags.decode(commandComplete('SELECT 1'), 0, 14)).toBe(first);
  expect(tags.decode(commandComplete('SELECT 10'), 0, 15)).toBe('SELECT 10');
  expect(tags.decode(commandComplete('SELECT 1'), 0, 14)).toBe('SELECT 1');
  const long = `CREATE ${'X'.repeat(40)}`;
  expect(tags.decode(commandComplete(long), 0, 6 + long.length)).toBe(long);
  expect(tags.decode(commandComplete(long), 0, 6 + long.length)).toBe(long);
  expect(tags.decode(commandComplete('INSERT 0 5'), 0, 16)).toBe('INSERT 0 5');
});

test('tags inside a chunk of several frames decode as decodeCommandTag does', () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[A-Z]{1,8}( [0-9]{1,12}){0,2}$/), { minLength: 1, maxLength: 30 }), (list) => {
      const frames = list.map(commandComplete);
      const chunk = Buffer.concat(frames);
      const tags = new CommandTagDecoder();
      let at = 0;
      for (const f of frames) {
        expect(tags.decode(chunk, at, at + f.length)).toBe(decodeCommandTag(chunk, at, at + f.length));
        at += f.length;
      }
    }),
  );
});
