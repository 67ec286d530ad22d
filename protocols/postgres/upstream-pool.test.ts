// Unit tests of the pool's keys and limits; the reuse itself is tested against a real server in
// test/integration/pg-upstream-reuse.test.ts.
import { describe, expect, test } from 'vitest';
import { poolKey, reuses } from './upstream-pool.js';

describe('poolKey', () => {
  test('the order of the startup parameters does not matter, their values do', () => {
    const a = new Map([['application_name', 'pgbench'], ['client_encoding', 'UTF8']]);
    const b = new Map([['client_encoding', 'UTF8'], ['application_name', 'pgbench']]);
    expect(poolKey('t', a)).toBe(poolKey('t', b));
    expect(poolKey('t', a)).not.toBe(poolKey('t', new Map([['application_name', 'psql'], ['client_encoding', 'UTF8']])));
    expect(poolKey('t', a)).not.toBe(poolKey('t', new Map([['application_name', 'pgbench']])));
  });

  test('another target is another key, and no name or value can pass for another split', () => {
    const params = new Map([['a', 'b']]);
    expect(poolKey('t1', params)).not.toBe(poolKey('t2', params));
    expect(poolKey('t', new Map([['a', 'b,c']]))).not.toBe(poolKey('t', new Map([['a', 'b'], ['c', '']])));
  });
});

describe('reuses', () => {
  test('needs both a timeout and room for one connection', () => {
    expect(reuses({ timeoutMs: 60_000, max: 20 })).toBe(true);
    expect(reuses({ timeoutMs: 0, max: 20 })).toBe(false);
    expect(reuses({ timeoutMs: 60_000, max: 0 })).toBe(false);
  });
});
