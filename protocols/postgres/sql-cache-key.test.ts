// The classification cache key: numbers become 0 outside quotes, comments, identifiers, parameters
// and SET/RESET statements; everything else stays byte for byte.
import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { classificationKey } from './sql-cache-key.js';
import { classifySql, initClassifier } from './sql-classify.js';

describe('classificationKey', () => {
  test.each([
    ['SELECT abalance FROM pgbench_accounts WHERE aid = 12345;', 'SELECT abalance FROM pgbench_accounts WHERE aid = 0;'],
    ['select 1.5e-3, .25, 7', 'select 0, 0, 0'],
    ["select '123', E'\\'42', \"col9\", t1.c2 from t1 where x = 3", "select '123', E'\\'42', \"col9\", t1.c2 from t1 where x = 0"],
    ['select $1, $2 + 5', 'select $1, $2 + 0'],
    ['select $q$ 99 $q$, $$ 7 $$, 8', 'select $q$ 99 $q$, $$ 7 $$, 0'],
    ['select 5 -- 6\n, /* 7 /* 8 */ 9 */ 10', 'select 0 -- 6\n, /* 7 /* 8 */ 9 */ 0'],
    ['set transaction_read_only = 0', 'set transaction_read_only = 0'],
    ['SET default_transaction_read_only = 1; select 2', 'SET default_transaction_read_only = 1; select 0'],
    ['select 1; reset x; update t set a = 4', 'select 0; reset x; update t set a = 0'],
    ['select 0', 'select 0'],
  ])('%s', (input, key) => {
    expect(classificationKey(input)).toBe(key);
  });

  test('returns the very same string when there is nothing to replace', () => {
    const s = "select a from t where b = 'x'";
    expect(classificationKey(s)).toBe(s);
  });

  test('never throws and never touches text without digits', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const k = classificationKey(s);
        if (!/[0-9]/.test(s)) expect(k).toBe(s);
      }),
    );
  });
});

describe('classification through the key', () => {
  beforeAll(async () => {
    await initClassifier();
  });

  test('statements differing only in numbers share one cached classification', () => {
    const a = classifySql('select * from pgbench_accounts where aid = 17');
    const b = classifySql('select * from pgbench_accounts where aid = 99123');
    expect(b).toBe(a);
    expect(a.statements[0]).toMatchObject({ cls: 'select', writes: false, tables: ['pgbench_accounts'] });
  });

  test('SET of a read-only setting keeps its value: 0 and 1 classify differently', () => {
    expect(classifySql('set transaction_read_only = 0').statements[0].writes).toBe(true);
    expect(classifySql('set transaction_read_only = 1').statements[0].writes).toBe(false);
  });
});
