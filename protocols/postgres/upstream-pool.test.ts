// Unit tests of the pool's keys and limits and of how it reads the server's answer to the reset
// (whole, split, refused, malformed, oversized); the reuse itself is tested against a real server in
// test/integration/pg-upstream-reuse.test.ts.
import { describe, expect, test } from 'vitest';
import { poolKey, resetReply, reuses } from './upstream-pool.js';

/** A backend frame: type byte, length, payload. */
function frame(type: string, payload: Buffer | string = ''): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeUInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

const commandComplete = frame('C', 'DISCARD ALL\0');
const ready = (status: string): Buffer => frame('Z', status);
const error = frame('E', 'SERROR\0C25001\0Mcannot run inside a transaction block\0\0');

/** Feeds `chunks` to a fresh reader; the outcome after each. */
function feed(...chunks: Buffer[]): string[] {
  const reply = resetReply();
  return chunks.map((c) => {
    // Chunks arrive in a larger reusable read buffer with stale bytes past their length.
    const buf = Buffer.concat([c, Buffer.from('stale bytes')]);
    return reply(buf, c.length);
  });
}

describe('poolKey', () => {
  const id = (target: string, params: Map<string, string>): string => poolKey(target, params).id;

  test('the order of the startup parameters does not matter, their values do', () => {
    const a = new Map([['application_name', 'pgbench'], ['client_encoding', 'UTF8']]);
    const b = new Map([['client_encoding', 'UTF8'], ['application_name', 'pgbench']]);
    expect(id('t', a)).toBe(id('t', b));
    expect(id('t', a)).not.toBe(id('t', new Map([['application_name', 'psql'], ['client_encoding', 'UTF8']])));
    expect(id('t', a)).not.toBe(id('t', new Map([['application_name', 'pgbench']])));
  });

  test('another target is another key, and no name or value can pass for another split', () => {
    const params = new Map([['a', 'b']]);
    expect(id('t1', params)).not.toBe(id('t2', params));
    expect(id('t', new Map([['a', 'b,c']]))).not.toBe(id('t', new Map([['a', 'b'], ['c', '']])));
  });

  test('keeps its target, by which a reload retains or closes idle connections', () => {
    expect(poolKey('t1', new Map([['a', 'b']])).target).toBe('t1');
  });
});

describe('reuses', () => {
  test('needs both a timeout and room for one connection', () => {
    expect(reuses({ timeoutMs: 60_000, max: 20 })).toBe(true);
    expect(reuses({ timeoutMs: 0, max: 20 })).toBe(false);
    expect(reuses({ timeoutMs: 60_000, max: 0 })).toBe(false);
  });
});

describe('resetReply', () => {
  test('idle once ReadyForQuery says idle, also when the answer comes in pieces', () => {
    expect(feed(Buffer.concat([commandComplete, ready('I')]))).toEqual(['idle']);
    const whole = Buffer.concat([frame('S', 'DateStyle\0ISO, MDY\0'), commandComplete, ready('I')]);
    for (let cut = 1; cut < whole.length; cut++) expect(feed(whole.subarray(0, cut), whole.subarray(cut))).toEqual(['pending', 'idle']);
  });

  test('failed on an error, another transaction state, or bytes after the end', () => {
    expect(feed(Buffer.concat([error, ready('I')]))).toEqual(['failed']);
    expect(feed(error, ready('I'))).toEqual(['pending', 'failed']);
    expect(feed(Buffer.concat([commandComplete, ready('T')]))).toEqual(['failed']);
    expect(feed(Buffer.concat([commandComplete, ready('E')]))).toEqual(['failed']);
    expect(feed(Buffer.concat([commandComplete, ready('I'), frame('N', 'late')]))).toEqual(['failed']);
    expect(feed(Buffer.concat([commandComplete, frame('Z', 'II')]))).toEqual(['failed']);
  });

  test('failed on a malformed or oversized answer', () => {
    const badLength = Buffer.from([0x43, 0, 0, 0, 2]);
    expect(feed(badLength)).toEqual(['failed']);
    const huge = Buffer.from([0x43, 0, 0x10, 0, 0]);
    expect(feed(huge)).toEqual(['failed']);
    const many = Array.from({ length: 70 }, () => frame('N', Buffer.alloc(1000)));
    expect(feed(...many).at(-1)).toBe('failed');
  });

  test('a truncated answer stays pending', () => {
    expect(feed(commandComplete.subarray(0, 3))).toEqual(['pending']);
    expect(feed(Buffer.concat([commandComplete, ready('I').subarray(0, 5)]))).toEqual(['pending']);
  });
});
