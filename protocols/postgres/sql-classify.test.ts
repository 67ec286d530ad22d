// Unit tests of the SQL classifier: classes, write detection, tables and functions found anywhere
// in the tree, CTE scoping, parse errors, the cache, and arbitrary input never throwing.
import { beforeAll, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { classifySql, initClassifier, type ClassifiedStatement, type StatementClass } from './sql-classify.js';

beforeAll(async () => {
  await initClassifier();
});

function one(sql: string): ClassifiedStatement {
  const c = classifySql(sql);
  expect(c.error).toBeUndefined();
  expect(c.statements).toHaveLength(1);
  return c.statements[0];
}

describe('statement classes', () => {
  const cases: [string, StatementClass, boolean][] = [
    ['select 1', 'select', false],
    ['values (1), (2)', 'select', false],
    ['table t', 'select', false],
    ['select * from a union select * from b', 'select', false],
    ['insert into t values (1)', 'insert', true],
    ['update t set a = 1', 'update', true],
    ['delete from t', 'delete', true],
    ['merge into t using s on t.id = s.id when matched then delete', 'merge', true],
    ['create table t (id int)', 'ddl', true],
    ['alter table t add column b int', 'ddl', true],
    ['drop table t', 'ddl', true],
    ['truncate t', 'ddl', true],
    ['create index on t (a)', 'ddl', true],
    ['create view v as select 1', 'ddl', true],
    ['create function f() returns int language sql as $$ select 1 $$', 'ddl', true],
    ['alter table t rename to u', 'ddl', true],
    ["comment on table t is 'x'", 'ddl', true],
    ['create schema s', 'ddl', true],
    ['create table x as select 1', 'ddl', true],
    ['alter system set work_mem = 1', 'ddl', true],
    ['grant select on t to bob', 'dcl', true],
    ['revoke select on t from bob', 'dcl', true],
    ['grant admin to bob', 'dcl', true],
    ["create role bob login password 'x'", 'dcl', true],
    ['alter role bob superuser', 'dcl', true],
    ['alter role bob set work_mem = 1', 'dcl', true],
    ['drop role bob', 'dcl', true],
    ['alter default privileges grant select on tables to bob', 'dcl', true],
    ['reassign owned by bob to alice', 'dcl', true],
    ['drop owned by bob', 'dcl', true],
    ['copy t from stdin', 'copy_in', true],
    ['copy t to stdout', 'copy_out', false],
    ['copy (select 1) to stdout', 'copy_out', false],
    ["copy t to '/tmp/x'", 'copy_out', true],
    ["copy t to program 'cat'", 'copy_out', true],
    ['copy (delete from t returning *) to stdout', 'copy_out', true],
    ['begin', 'transaction', false],
    ['start transaction isolation level serializable, read only', 'transaction', false],
    ['begin read write', 'transaction', true],
    ['commit', 'transaction', false],
    ['rollback', 'transaction', false],
    ['savepoint s', 'transaction', false],
    ['release savepoint s', 'transaction', false],
    ["prepare transaction 'x'", 'transaction', false],
    ["commit prepared 'x'", 'transaction', false],
    ['set work_mem = 1', 'set', false],
    ['set role bob', 'set', false],
    ['reset all', 'set', false],
    ['show all', 'set', false],
    ['set constraints all deferred', 'set', false],
    ['set transaction_read_only = off', 'set', true],
    ['set transaction_read_only = false', 'set', true],
    ['set transaction_read_only = 0', 'set', true],
    ["set transaction_read_only to 'of'", 'set', true],
    ['set local transaction_read_only = off', 'set', true],
    ['set default_transaction_read_only = off', 'set', true],
    ['set default_transaction_read_only = nonsense', 'set', true],
    ['set default_transaction_read_only = on', 'set', false],
    ['set transaction_read_only = true', 'set', false],
    ["set transaction_read_only = 'Y'", 'set', false],
    ['set transaction_read_only = 1', 'set', false],
    ['set default_transaction_read_only to default', 'set', false],
    ['reset default_transaction_read_only', 'set', false],
    ['set transaction read write', 'set', true],
    ['set transaction read only', 'set', false],
    ['set session characteristics as transaction read write', 'set', true],
    ['set session characteristics as transaction read only', 'set', false],
    ['call p(1)', 'call', true],
    ['do $$ begin end $$', 'unknown', true],
    ['execute p(1)', 'unknown', true],
    ['prepare p as select 1', 'select', false],
    ['prepare p as insert into t values ($1)', 'insert', true],
    ['explain select 1', 'select', false],
    ['explain delete from t', 'select', false],
    ['explain analyze select 1', 'select', false],
    ['explain analyze delete from t', 'delete', true],
    ['explain (analyze false) delete from t', 'select', false],
    ['explain (analyze off) update t set a = 1', 'select', false],
    ['explain (analyze on, format json) update t set a = 1', 'update', true],
    ['explain analyze create table x as select 1', 'ddl', true],
    ['declare c cursor for select 1', 'select', false],
    ['declare c cursor for select * from t for update', 'select', true],
    ['fetch 10 from c', 'select', false],
    ['move 1 in c', 'utility', false],
    ['close c', 'utility', false],
    ['vacuum t', 'utility', false],
    ['analyze t', 'utility', false],
    ['cluster t using i', 'utility', false],
    ['reindex table t', 'utility', false],
    ['checkpoint', 'utility', false],
    ["load 'x'", 'utility', true],
    ['listen ch', 'utility', false],
    ['notify ch', 'utility', false],
    ['unlisten *', 'utility', false],
    ['discard all', 'utility', false],
    ['deallocate all', 'utility', false],
    ['lock table t', 'utility', true],
    ['refresh materialized view m', 'utility', true],
  ];
  test.each(cases)('%s -> %s (writes %s)', (sql, cls, writes) => {
    const s = one(sql);
    expect(s.cls).toBe(cls);
    expect(s.writes).toBe(writes);
  });
});

describe('write detection inside SELECT', () => {
  test('FOR UPDATE / FOR SHARE, also in a subquery, writes', () => {
    expect(one('select * from t for update')).toMatchObject({ cls: 'select', writes: true });
    expect(one('select * from t for key share')).toMatchObject({ cls: 'select', writes: true });
    expect(one('select * from (select * from t for share) s')).toMatchObject({ cls: 'select', writes: true });
  });

  test('a data-modifying CTE keeps the top-level class and writes', () => {
    expect(one('with d as (delete from x returning *) select * from d')).toMatchObject({ cls: 'select', writes: true });
    expect(one('with i as (insert into log values (1) returning id) update t set a = 1')).toMatchObject({ cls: 'update', writes: true });
  });

  test('SELECT INTO creates a table: ddl that writes', () => {
    expect(one('select 1 into t2')).toMatchObject({ cls: 'ddl', writes: true, tables: ['t2'] });
  });

  test('a read-only CTE does not write', () => {
    expect(one('with a as (select 1) select * from a')).toMatchObject({ cls: 'select', writes: false });
  });
});

describe('tables', () => {
  test('schema-qualified and quoted names keep what the parser saw; the catalog is dropped', () => {
    expect(one('select * from Public.Orders o join "Sales"."Items" i on true, "db".s.t').tables).toEqual([
      'public.orders',
      'Sales.Items',
      's.t',
    ]);
  });

  test('tables in subqueries, EXISTS, CTEs, DML targets and USING/FROM are all found, once each', () => {
    expect(one('select (select max(a) from b) from c where exists (select 1 from d where d.x = c.x) and c.y in (select y from b)').tables.slice().sort()).toEqual(['b', 'c', 'd']);
    expect(one('update t set a = u.a from u where t.id = u.id').tables).toEqual(['t', 'u']);
    expect(one('delete from t using u where t.id = u.id').tables).toEqual(['t', 'u']);
    expect(one('insert into t select * from s').tables).toEqual(['t', 's']);
    expect(one('merge into t using s on t.id = s.id when matched then delete').tables).toEqual(['t', 's']);
  });

  test('CTE names are not tables, but a real table of the same name outside their scope is', () => {
    expect(one('with d as (delete from x returning *) select * from d').tables).toEqual(['x']);
    expect(one('select * from secret, (with secret as (select 1) select * from secret) s').tables).toEqual(['secret']);
    // a plain WITH sees only earlier CTEs: b inside a is the table b
    expect(one('with a as (select * from b), b as (select 1) select * from a, b').tables).toEqual(['b']);
    expect(one('with recursive r as (select 1 union all select * from r) select * from r').tables).toEqual([]);
    // a DML target never names a CTE
    expect(one('with t as (select 1) delete from t').tables).toEqual(['t']);
    // a qualified name never names a CTE
    expect(one('with t as (select 1) select * from public.t').tables).toEqual(['public.t']);
  });

  test('FOR UPDATE OF an alias does not add the alias as a table', () => {
    expect(one('select * from orders o for update of o').tables).toEqual(['orders']);
  });

  test('DDL, DCL, COPY, LOCK and DROP name their relations', () => {
    expect(one('create table s.n (id int references parent(id))').tables).toEqual(['s.n', 'parent']);
    expect(one('drop table a.b, c').tables).toEqual(['a.b', 'c']);
    expect(one('drop function f(int)').tables).toEqual([]);
    expect(one('grant select on t to bob').tables).toEqual(['t']);
    expect(one('copy (select * from t) to stdout').tables).toEqual(['t']);
    expect(one('copy t from stdin').tables).toEqual(['t']);
    expect(one('lock table a, b').tables).toEqual(['a', 'b']);
    expect(one('truncate a, b').tables).toEqual(['a', 'b']);
  });
});

describe('functions', () => {
  test('functions hidden in subqueries, FROM, CTEs, VALUES, DEFAULT, CHECK and ORDER BY', () => {
    expect(one("select * from (select pg_read_file('x')) s").functions).toEqual(['pg_read_file']);
    expect(one("select * from pg_ls_dir('.')").functions).toEqual(['pg_ls_dir']);
    expect(one("insert into t values (dblink('host=x', 'select 1'))").functions).toEqual(['dblink']);
    expect(one("select lo_export(1, '/tmp/x')").functions).toEqual(['lo_export']);
    expect(one("with a as (select pg_sleep(1)) select * from a").functions).toEqual(['pg_sleep']);
    expect(one("create table t (id int default nextval('s'), c text check (f(c)))").functions).toEqual(['nextval', 'f']);
    expect(one('select a from t order by g(a)').functions).toEqual(['g']);
    expect(one('select count(*) from t where x = any(select h(y) from u)').functions).toEqual(['count', 'h']);
  });

  test('schema-qualified and quoted function names', () => {
    expect(one('select pg_catalog.PG_READ_FILE(\'x\'), "MySchema"."Fn"()').functions).toEqual(['pg_catalog.pg_read_file', 'MySchema.Fn']);
  });

  test('CALL names its procedure; SQL syntax that is a function call is reported as one', () => {
    expect(one('call myschema.proc(now())').functions).toEqual(['myschema.proc', 'now']);
    expect(one("select 'a' at time zone 'b'").functions).toEqual(['pg_catalog.timezone']);
  });

  test('functions under EXPLAIN and PREPARE are found', () => {
    expect(one("explain select pg_read_file('x')").functions).toEqual(['pg_read_file']);
    expect(one("prepare p as select lo_import('/etc/passwd')").functions).toEqual(['lo_import']);
  });
});

describe('multi-statement texts and errors', () => {
  test('one entry per statement', () => {
    const c = classifySql('select 1; delete from t; commit');
    expect(c.error).toBeUndefined();
    expect(c.statements.map((s) => [s.cls, s.writes])).toEqual([
      ['select', false],
      ['delete', true],
      ['transaction', false],
    ]);
  });

  test('an empty text, blanks, or only comments and semicolons have no statements', () => {
    for (const text of ['', '   ', '-- nothing', ' ; ; ']) expect(classifySql(text)).toEqual({ statements: [] });
  });

  test('a syntax error gives one unknown writing statement and the parser message', () => {
    const c = classifySql('selec 1; delete from t');
    expect(c.statements).toEqual([{ cls: 'unknown', writes: true, tables: [], functions: [] }]);
    expect(c.error).toMatch(/syntax error at or near "selec"/);
  });

  test('a NUL character cannot hide a statement from the parser', () => {
    const c = classifySql('select 1\0; delete from t');
    expect(c.statements).toEqual([{ cls: 'unknown', writes: true, tables: [], functions: [] }]);
    expect(c.error).toMatch(/NUL/);
  });

  test('a deep expression is classified without overflowing the stack', () => {
    const s = one(`select ${Array.from({ length: 3000 }, (_, i) => `f${i % 3}(1)`).join(' + ')} from t`);
    expect(s.functions).toEqual(['f0', 'f1', 'f2']);
    expect(s.tables).toEqual(['t']);
  });

  // Regression: libpg-query's own singleton leaked ~8 MB per parser stack overflow and, after ~30,
  // failed every parse with "memory access out of bounds".
  test('statements that overflow the parser are unknown, and the parser keeps working after many', async () => {
    for (let round = 0; round < 40; round++) {
      const deep = `select ${Array.from({ length: 20_000 }, () => '1').join(' + ')} + ${round}`;
      const c = classifySql(deep);
      expect(c.statements).toEqual([{ cls: 'unknown', writes: true, tables: [], functions: [] }]);
      expect(c.error).toMatch(/too complex|restarting/);
      const probe = `select * from recovered_${round}`;
      for (let wait = 0; classifySql(probe).error !== undefined && wait < 200; wait++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(one(probe).tables).toEqual([`recovered_${round}`]);
    }
  });

  test('results are frozen, since the cache shares them', () => {
    const c = classifySql('select * from frozen_t');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.statements[0].tables)).toBe(true);
    expect(() => c.statements[0].tables.push('x')).toThrow(TypeError);
  });

  test('arbitrary text never throws: it is classified or reported as unknown with an error', () => {
    const sqlish = fc.array(
      fc.constantFrom('select', 'from', 'with', 'as', '(', ')', ';', 'delete', 't', '1', ',', "'x'", 'for update', 'into', '$$', '"', '--', '/*', '*/'),
      { maxLength: 12 },
    ).map((words) => words.join(' '));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), sqlish), (text) => {
        const c = classifySql(text);
        if (c.error !== undefined) expect(c.statements).toEqual([{ cls: 'unknown', writes: true, tables: [], functions: [] }]);
        for (const s of c.statements) expect(typeof s.writes).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('cache', () => {
  test('a repeated text returns the very same object', () => {
    const a = classifySql('select * from cached where id = $1');
    expect(classifySql('select * from cached where id = $1')).toBe(a);
  });

  test('eviction drops the oldest entry not used since, and keeps within the bounds', async () => {
    await initClassifier({ cacheEntries: 2, cacheChars: 1000 });
    try {
      const a = classifySql('select a');
      const b = classifySql('select b');
      expect(classifySql('select a')).toBe(a); // a used: gets a second chance
      classifySql('select c'); // evicts b, the oldest not used
      expect(classifySql('select a')).toBe(a);
      const b2 = classifySql('select b');
      expect(b2).not.toBe(b);
      expect(b2).toEqual(b);

      await initClassifier({ cacheEntries: 100, cacheChars: 20 });
      const long = classifySql('select abcdefghij, klmnopqrst');
      expect(classifySql('select abcdefghij, klmnopqrst')).not.toBe(long); // longer than the budget
      const short = classifySql('select z');
      expect(classifySql('select z')).toBe(short);
    } finally {
      await initClassifier({ cacheEntries: 10_000, cacheChars: 8 * 1024 * 1024 });
    }
  });
});
