// The SQL classifier and the command-tag decoder checked against a real PostgreSQL server: a
// statement the server refuses in a read-only session must be classified as writing (and one it
// runs there as not writing), and the tag the server answers with must decode to the class the
// classifier gave the statement.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import pg from 'pg';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { classifySql, initClassifier } from '../../protocols/postgres/sql-classify.js';
import { classFromCommandTag } from '../../protocols/postgres/command-tag.js';

let server: PgServer;

beforeAll(async () => {
  [server] = await Promise.all([startPostgres(), initClassifier()]);
  server.sql(
    [
      'create table t (id int primary key, a int)',
      'create table u (id int, a int)',
      'insert into t values (1, 1), (2, 2)',
      'insert into u values (1, 10)',
      'create sequence sq',
      'create materialized view m as select * from t',
      'create procedure p_read() language plpgsql as $$ begin perform 1; end $$',
      'create role bob',
    ].join('; '),
    server.database,
  );
});
afterAll(async () => {
  await destroyPostgres(server);
});

function connect(options?: string): Promise<pg.Client> {
  const client = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database, options });
  return client.connect().then(() => client);
}

/** Runs `sql` in a session whose transactions are read-only; the SQLSTATE it failed with, if any. */
async function readOnlyOutcome(sql: string): Promise<string | undefined> {
  const client = await connect('-c default_transaction_read_only=on');
  try {
    await client.query(sql);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  } finally {
    await client.end();
  }
}

describe('writes agrees with what PostgreSQL refuses in a read-only session', () => {
  const refused = [
    'insert into t values (3, 3)',
    'update t set a = 5',
    'delete from u',
    'merge into t using u on t.id = u.id when matched then update set a = u.a',
    'with d as (delete from u returning *) select * from d',
    'select * from t for update',
    'select * from (select * from t for share) s',
    'select 1 as x into t2',
    'create table t3 (id int)',
    'alter table t add column b int',
    'drop table u',
    'truncate t',
    'create index on t (a)',
    "comment on table t is 'x'",
    'grant select on t to bob',
    'create role carol',
    'copy t from stdin',
    'copy (delete from u returning *) to stdout',
    'explain analyze delete from u',
    'refresh materialized view m',
    "select nextval('sq')", // a writing function: the classifier cannot know, see the assertion below
  ];
  const accepted = [
    'select * from t',
    'with a as (select * from t) select * from a join u using (id)',
    'explain delete from u',
    'explain update t set a = 1',
    'copy t to stdout',
    'copy (select * from t) to stdout',
    'show work_mem',
    'set work_mem = 1024',
    'set transaction_read_only = on',
    'begin read only',
    'vacuum t',
    'analyze t',
    'checkpoint',
    'listen ch',
    'notify ch',
    'discard all',
    'prepare q as select * from t',
  ];

  // Run by the server in a read-only session, yet counted as writing on purpose: a file or program
  // written on the server, locks that block writers, procedures and DO blocks that may write.
  const conservative = () => [
    `copy t to '${server.dataDir}/classify-test.csv'`,
    'begin; lock table t in access share mode; commit',
    'call p_read()',
    'do $$ begin perform 1; end $$',
  ];

  test('accepted by the server, yet writing by our rules', async () => {
    for (const sql of conservative()) {
      expect(await readOnlyOutcome(sql), sql).toBeUndefined();
      expect(classifySql(sql).statements.some((s) => s.writes), sql).toBe(true);
    }
  });

  test.each(refused)('refused: %s', async (sql) => {
    const code = await readOnlyOutcome(sql);
    expect(code).toBe('25006'); // read_only_sql_transaction
    const [s] = classifySql(sql).statements;
    // Functions that write are a policy matter (denied functions), not visible in the statement.
    expect(s.writes).toBe(!sql.includes('nextval'));
    if (sql.includes('nextval')) expect(s.functions).toEqual(['nextval']);
  });

  test.each(accepted)('accepted: %s', async (sql) => {
    expect(await readOnlyOutcome(sql)).toBeUndefined();
    expect(classifySql(sql).statements.map((s) => s.writes)).toEqual([false]);
  });

  test('turning read-only off is a write: the server then accepts writes', async () => {
    for (const sql of ['set transaction_read_only = off', 'set default_transaction_read_only = off', 'set session characteristics as transaction read write']) {
      expect(classifySql(sql).statements[0]).toMatchObject({ cls: 'set', writes: true });
      const client = await connect('-c default_transaction_read_only=on');
      try {
        await client.query('begin');
        await client.query(sql);
        if (sql.startsWith('set transaction')) {
          await client.query('update t set a = a');
        } else {
          await client.query('commit; begin');
          await client.query('update t set a = a');
        }
        await client.query('rollback');
      } finally {
        await client.end();
      }
    }
  });
});

describe('the command tag the server sends decodes to the classifier\'s class', () => {
  const statements = [
    'select * from t', 'values (1)', 'insert into u values (5, 5)', 'update u set a = 6', 'delete from u where id = 5',
    'merge into t using u on t.id = u.id when matched then update set a = t.a',
    'begin', 'savepoint s1', 'release savepoint s1', 'commit', 'start transaction', 'rollback',
    'set work_mem = 2048', 'reset work_mem', 'show work_mem',
    'create table t4 (id int)', 'alter table t4 add column b int', 'create index t4_i on t4 (id)', 'drop index t4_i',
    'truncate t4', "comment on table t4 is 'x'", 'create view v4 as select * from t4', 'drop view v4',
    'grant select on t4 to bob', 'revoke select on t4 from bob', 'create role dave', 'alter role dave login', 'drop role dave',
    'alter default privileges grant select on tables to bob', 'call p_read()', 'vacuum t4', 'analyze t4',
    'checkpoint', 'listen ch', 'notify ch', 'unlisten ch', 'discard all', 'begin', 'lock table t4', 'commit',
    'refresh materialized view m', 'drop table t4', 'copy t to stdout',
    'begin', 'declare c cursor for select * from t', 'fetch 1 from c', 'close c', 'commit', 'explain select 1',
    'create table t5 as select 1 as x', 'select 1 as x into t6',
  ];
  // The tag of CREATE TABLE AS and SELECT INTO is "SELECT n": only the text says they create a table.
  const tagSaysSelect = new Set(['create table t5 as select 1 as x', 'select 1 as x into t6']);

  test('every statement', async () => {
    const client = await connect();
    const tags: string[] = [];
    client.connection.on('commandComplete', (msg: { text: string }) => tags.push(msg.text));
    try {
      for (const sql of statements) {
        tags.length = 0;
        await client.query(sql);
        expect(tags, sql).toHaveLength(1);
        const cls = classifySql(sql).statements[0].cls;
        expect(classFromCommandTag(tags[0]), `${sql} -> ${tags[0]}`).toBe(tagSaysSelect.has(sql) ? 'select' : cls);
        if (tagSaysSelect.has(sql)) expect(cls).toBe('ddl');
      }
    } finally {
      await client.end();
    }
  });
});
