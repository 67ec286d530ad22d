// Policies enforced in real time by the real sempipe binary (2 workers) between real clients (psql,
// pg, postgres.js) and a real PostgreSQL: allowed and denied classes, read-only bypass attempts,
// denied functions and tables anywhere in the tree, multi-statement texts, denial inside an
// extended-protocol pipeline and a transaction, max_rows and statement_timeout with the upstream
// statement cancelled, rate limits, max_sessions across workers, a policy change applied to an open
// session after SIGHUP, HTTP hooks (permit, deny, timeout fail-closed, fail-open), notifications
// with latencies, the denial metric and the audit lines.
import { createServer, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePorts } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { errorOf, run, type RunResult } from '../harness/run.js';

const USER = 'api';
const PASSWORD = 'api-secret';
const DB = 'orders';

type BindingName = 'classes' | 'ro' | 'rate' | 'sessions' | 'hooks' | 'live';
const BINDINGS: BindingName[] = ['classes', 'ro', 'rate', 'sessions', 'hooks', 'live'];
const fqnOf = (b: BindingName): string => `binding::/test/${b}::app`;

let server: PgServer;
let sempipe: SempipeProcess;
let ports: Record<BindingName, number>;
let hookServer: Server;
let hookUrl: string;
const hookCalls: Array<Record<string, unknown>> = [];
const notifications: Array<Record<string, unknown>> = [];

function policiesYaml(liveDeniesSelect: boolean): string {
  return `
policies:
  - fqn: policy::/test::guard
    realm: binding::/test/classes
    allow: { classes: [select, insert, update, delete, transaction, set] }
    deny:  { classes: [ddl, dcl], functions: [pg_read_file, dblink], tables: [secrets.*] }
    limits: { max_rows: 1000, statement_timeout: 1s }
  - fqn: policy::/test::read-only
    realm: binding::/test/ro::app
    read_only: true
    side_effect_functions: [bump]
  - fqn: policy::/test::rate
    realm: binding::/test/rate
    limits: { rate: 5/s }
  - fqn: policy::/test::sessions
    realm: binding::/test/sessions::app
    limits: { max_sessions: 2 }
  - fqn: policy::/test::hooks
    realm: binding::/test/hooks
    hooks:
      - { classes: [delete], url: "${hookUrl}/hook", timeout: 2s, on_error: deny }
      - { classes: [update], url: "${hookUrl}/slow", timeout: 300ms, on_error: deny }
      - { classes: [insert], url: "${hookUrl}/broken", timeout: 1s, on_error: allow }
    notifications:
      - { classes: [all], url: "${hookUrl}/notify" }
${liveDeniesSelect ? `  - fqn: policy::/test::live
    realm: binding::/test/live::app
    deny: { classes: [select] }
` : ''}`;
}

function configYaml(liveDeniesSelect: boolean): string {
  return `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 5s, drain_timeout: 2s }
audit: { max_statement_length: 500 }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
bindings:
${BINDINGS.map(
  (b) => `  - fqn: ${fqnOf(b)}
    service: service::/test::db
    listen: 127.0.0.1:${ports[b]}
    database: ${DB}
    clients: [ { user: ${USER}, password: ${PASSWORD} } ]
`,
).join('')}${policiesYaml(liveDeniesSelect)}`;
}

beforeAll(async () => {
  hookServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const parsed = JSON.parse(body) as Record<string, unknown>;
      const reply = (status: number, answer: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      };
      switch (req.url) {
        case '/hook':
          hookCalls.push(parsed);
          return String(parsed.statement).includes('hook_deny') ? reply(200, { permitted: false, reason: 'not on fridays' }) : reply(200, { permitted: true });
        case '/slow':
          hookCalls.push(parsed);
          setTimeout(() => reply(200, { permitted: true }), 2000).unref();
          return;
        case '/broken':
          hookCalls.push(parsed);
          return reply(500, { error: 'down' });
        case '/notify':
          notifications.push(parsed);
          return reply(204, null);
        default:
          return reply(404, {});
      }
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}`;

  server = await startPostgres();
  db(`
    set role ${server.user};
    create table items (id int primary key, v text);
    insert into items select g, 'v' || g from generate_series(1, 10) g;
    create sequence seq;
    create schema secrets;
    create table secrets.keys (k text);
    create table bumps (n int);
    create function bump() returns int language plpgsql as $$ begin insert into bumps values (1); return 1; end $$;
  `);
  const free = await freePorts(BINDINGS.length);
  ports = Object.fromEntries(BINDINGS.map((b, i) => [b, free[i]])) as Record<BindingName, number>;
  sempipe = await startSempipe({ workers: 2, env: { UP_PW: server.password }, yaml: configYaml(false) });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyPostgres(server);
  await new Promise((r) => hookServer?.close(r));
});

/** Runs SQL on the upstream database as the superuser (psql over the Unix socket). */
function db(sql: string): string {
  return server.sql(sql, server.database);
}

function pgClient(b: BindingName): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: ports[b], user: USER, password: PASSWORD, database: DB });
}

async function withClient<T>(b: BindingName, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = pgClient(b);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function psql(b: BindingName, sql: string): Promise<RunResult> {
  return run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-h', '127.0.0.1', '-p', String(ports[b]), '-U', USER, '-d', DB, '-c', sql], {
    env: { PGPASSWORD: PASSWORD },
  });
}

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Statements running on the upstream server other than the one asking. */
function activeUpstreamQueries(like: string): string {
  return db(`select count(*) from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and query like '${like}'`).trim();
}

describe('statement classes, functions and tables', () => {
  test('allowed classes run; denied classes get 42501 naming rule and policy; the session stays usable', async () => {
    await withClient('classes', async (c) => {
      expect((await c.query('select count(*)::int as n from items')).rows[0].n).toBe(10);
      await c.query("update items set v = 'x' where id = 1");
      const err = await errorOf(c.query('create table evil (a int)'));
      expect(err.code).toBe('42501');
      expect(err.message).toBe('permission denied by sempipe policy policy::/test::guard: statement class "ddl" is denied (rule deny.classes)');
      const notAllowed = await errorOf(c.query('vacuum items'));
      expect(notAllowed.code).toBe('42501');
      expect(notAllowed.message).toContain('(rule allow.classes)');
      const dcl = await errorOf(c.query('grant select on items to public'));
      expect(dcl.message).toContain('statement class "dcl" is denied');
      expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    });
    expect(db("select count(*) from pg_tables where tablename = 'evil'").trim()).toBe('0');
  });

  test('psql gets the same 42501 error and exit status', async () => {
    const r = await psql('classes', 'drop table items');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('permission denied by sempipe policy policy::/test::guard');
    expect(db("select count(*) from pg_tables where tablename = 'items'").trim()).toBe('1');
  });

  test('a denied function hidden in a subquery and a denied schema are refused', async () => {
    await withClient('classes', async (c) => {
      const fn = await errorOf(c.query("select * from items where id in (select length(pg_read_file('postgresql.conf')))"));
      expect(fn.code).toBe('42501');
      expect(fn.message).toContain('function "pg_read_file" is denied (rule deny.functions)');
      const tbl = await errorOf(c.query('select k from (select * from secrets.keys) s'));
      expect(tbl.code).toBe('42501');
      expect(tbl.message).toContain('table "secrets.keys" is denied (rule deny.tables)');
      expect((await c.query('select count(*)::int as n from items')).rows[0].n).toBe(10);
    });
  });

  test('a multi-statement query mixing allowed and denied statements runs nothing', async () => {
    const r = await psql('classes', "insert into items values (100, 'multi'); create table evil2 (a int); select 1");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('statement class "ddl" is denied (rule deny.classes)');
    expect(db('select count(*) from items where id = 100').trim()).toBe('0');
    expect(db("select count(*) from pg_tables where tablename = 'evil2'").trim()).toBe('0');
  });
});

describe('read_only', () => {
  test.each([
    ['a data-modifying CTE', 'with d as (delete from items returning *) select count(*) from d'],
    ['SELECT … FOR UPDATE', 'select * from items for update'],
    ['SET transaction_read_only = off', 'set transaction_read_only = off'],
    ['a built-in side-effect function', "select nextval('seq')"],
    ['a side-effect function declared in the policy', 'select bump()'],
    ['a plain insert', "insert into items values (200, 'ro')"],
  ])('%s is refused with rule read_only', async (_name, sql) => {
    await withClient('ro', async (c) => {
      const err = await errorOf(c.query(sql));
      expect(err.code).toBe('42501');
      expect(err.message).toContain('policy::/test::read-only');
      expect(err.message).toContain('(rule read_only)');
      expect((await c.query('select count(*)::int as n from items')).rows[0].n).toBeGreaterThan(0);
    });
    expect(db('select count(*) from bumps').trim()).toBe('0');
    expect(db("select last_value || ':' || is_called from seq").trim()).toBe('1:false');
    expect(db('select count(*) from items where id = 200').trim()).toBe('0');
  });
});

describe('extended protocol', () => {
  test('a denied statement mid-pipeline errors alone; earlier and later queries succeed', async () => {
    const sql = postgres({ host: '127.0.0.1', port: ports.classes, user: USER, password: PASSWORD, database: DB, max: 1, onnotice: () => {} });
    try {
      const results = await Promise.allSettled([
        sql`select 1 as a`,
        sql`select count(*)::int as n from items where id > ${0}`,
        sql.unsafe('create table evil3 (a int)'),
        sql`select 3 as c`,
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
      const reason = (results[2] as PromiseRejectedResult).reason as { code: string; message: string };
      expect(reason.code).toBe('42501');
      expect(reason.message).toContain('(rule deny.classes)');
      expect(((results[3] as unknown as PromiseFulfilledResult<Array<{ c: number }>>).value)[0]!.c).toBe(3);
      expect((await sql`select ${5}::int as x`)[0]!.x).toBe(5);
    } finally {
      await sql.end();
    }
  });

  test('a denied named prepared statement is refused at its Parse and leaves no statement of that name behind', async () => {
    await withClient('classes', async (c) => {
      const name = 'refused_named_statement_with_a_rather_long_name';
      const err = await errorOf(c.query({ name, text: 'create table evil5 (a int)' }));
      expect(err.code).toBe('42501');
      expect(err.message).toContain('(rule deny.classes)');
      expect((await c.query({ name, text: 'select 6 as six' })).rows[0].six).toBe(6);
    });
    expect(db("select count(*) from pg_tables where tablename = 'evil5'").trim()).toBe('0');
    expect(sempipe.stderr()).not.toContain('Warning!');
  });

  test('inside BEGIN the denial puts the transaction in the failed state, as PostgreSQL does', async () => {
    const sql = postgres({ host: '127.0.0.1', port: ports.classes, user: USER, password: PASSWORD, database: DB, max: 1 });
    try {
      let afterDenial: { code?: string } | undefined;
      const err = await errorOf(
        sql.begin(async (tx) => {
          await tx`select 1`;
          await tx.unsafe('create table evil4 (a int)').catch(async (e: unknown) => {
            afterDenial = await errorOf(tx`select 2`);
            throw e;
          });
        }),
      );
      expect(err.code).toBe('42501');
      expect(afterDenial?.code).toBe('25P02');
      expect((await sql`select 7 as x`)[0]!.x).toBe(7);
    } finally {
      await sql.end();
    }
  });

  // With pg's parameterised query (Parse/Bind/Execute/Sync). postgres.js is not used here: after a
  // query fails mid-result it hands the rows received before the error to the next query's result,
  // against PostgreSQL directly just the same.
  test('max_rows applies to extended-protocol queries too', async () => {
    await withClient('classes', async (c) => {
      const err = await errorOf(c.query('select a.oid from pg_class a, pg_class b, pg_class c limit $1', [200000]));
      expect(err.code).toBe('54000');
      expect(err.message).toContain('(rule max_rows)');
      expect((await c.query('select $1::int as x', [1])).rows).toEqual([{ x: 1 }]);
      const prepared = { name: 'big', text: 'select a.oid from pg_class a, pg_class b, pg_class c limit $1', values: [5000] };
      expect((await errorOf(c.query(prepared))).code).toBe('54000');
      expect((await c.query({ ...prepared, values: [10] })).rows).toHaveLength(10);
    });
  });
});

describe('limits', () => {
  test('max_rows stops a large result, cancels it upstream and keeps the session usable', async () => {
    // A cross join of the catalog streams its tens of millions of rows from the first moment (a
    // generate_series would first be materialised, which under load can outlast statement_timeout).
    await withClient('classes', async (c) => {
      const err = await errorOf(c.query("select a.oid, repeat('x', 100) from pg_class a, pg_class b, pg_class c"));
      expect(err.code).toBe('54000');
      expect(err.message).toBe('statement stopped by sempipe policy policy::/test::guard: the result has more than 1000 rows (rule max_rows)');
      expect((await c.query('select 2 as two')).rows[0].two).toBe(2);
    });
    await eventually(() => activeUpstreamQueries('%from pg_class a, pg_class b, pg_class c%') === '0');
  });

  test('statement_timeout cancels pg_sleep upstream after 1s', async () => {
    await withClient('classes', async (c) => {
      const started = Date.now();
      const err = await errorOf(c.query('select pg_sleep(10)'));
      const took = Date.now() - started;
      expect(err.code).toBe('57014');
      expect(err.message).toContain('(rule statement_timeout)');
      expect(took).toBeGreaterThanOrEqual(900);
      expect(took).toBeLessThan(5000);
      expect(activeUpstreamQueries('%pg_sleep(10)%')).toBe('0');
      expect((await c.query('select 3 as three')).rows[0].three).toBe(3);
    });
  });

  test('the per-session rate limit refuses statements beyond 5/s, then recovers', async () => {
    await withClient('rate', async (c) => {
      let ok = 0;
      const denied: string[] = [];
      for (let i = 0; i < 20; i++) {
        try {
          await c.query('select 1');
          ok++;
        } catch (err) {
          expect((err as { code: string }).code).toBe('42501');
          denied.push((err as Error).message);
        }
      }
      expect(ok).toBeGreaterThanOrEqual(5);
      expect(ok).toBeLessThan(10);
      expect(denied[0]).toContain('(rule rate)');
      await new Promise((r) => setTimeout(r, 1100));
      await c.query('select 1');
    });
  });

  test('max_sessions: the third session of a binding limited to 2 gets FATAL 53300, across workers', async () => {
    const open = [pgClient('sessions'), pgClient('sessions')];
    for (const c of open) await c.connect();
    try {
      const third = pgClient('sessions');
      third.on('error', () => {});
      const err = await errorOf(third.connect().then(() => open.push(third)));
      expect(err.code).toBe('53300');
      expect(err.message).toContain('too many sessions for binding binding::/test/sessions::app');
      await open.pop()!.end();
      await eventually(async () => {
        const c = pgClient('sessions');
        try {
          await c.connect();
          open.push(c);
          return true;
        } catch {
          return false;
        }
      });
    } finally {
      for (const c of open) await c.end();
    }
  });
});

describe('hooks and notifications', () => {
  test('a hook permits or denies with its reason; a slow hook fails closed; a broken one fails open', async () => {
    await withClient('hooks', async (c) => {
      await c.query("insert into items values (300, 'hooked')");
      await c.query('delete from items where id = 300');
      expect(db('select count(*) from items where id = 300').trim()).toBe('0');
      const denied = await errorOf(c.query('/* hook_deny */ delete from items where id = 1'));
      expect(denied.code).toBe('42501');
      expect(denied.message).toBe('permission denied by sempipe policy policy::/test::hooks: the policy\'s hook refused the statement: not on fridays (rule hook)');
      const slow = await errorOf(c.query("update items set v = 'slow' where id = 2"));
      expect(slow.code).toBe('42501');
      expect(slow.message).toContain('did not answer within 300ms');
      expect(db("select count(*) from items where v = 'slow'").trim()).toBe('0');
      expect((await c.query('select count(*)::int as n from items where id = 1')).rows[0].n).toBe(1);
    });
    const deleteCall = hookCalls.find((h) => String(h.statement).startsWith('delete from items where id = 300'));
    expect(deleteCall).toEqual({ binding: fqnOf('hooks'), service: 'service::/test::db', user: USER, class: 'delete', statement: 'delete from items where id = 300' });
    expect(hookCalls.some((h) => h.class === 'insert')).toBe(true);
  });

  test('notifications arrive after each statement with their latencies', async () => {
    await withClient('hooks', async (c) => {
      await c.query('select pg_sleep(0.05), 42 as answer');
    });
    await eventually(() => notifications.some((n) => String(n.statement).includes('42 as answer')));
    const n = notifications.find((x) => String(x.statement).includes('42 as answer'))!;
    expect(n).toMatchObject({ binding: fqnOf('hooks'), service: 'service::/test::db', user: USER, class: 'select', outcome: 'ok', rows: 1 });
    const lat = n.latencies as { received_at: string; hook_ms: number; server_ms: number; total_ms: number };
    expect(Math.abs(Date.parse(lat.received_at) - Date.now())).toBeLessThan(10_000);
    expect(lat.server_ms).toBeGreaterThanOrEqual(45);
    expect(lat.total_ms).toBeGreaterThanOrEqual(lat.server_ms);
    expect(lat.hook_ms).toBeGreaterThanOrEqual(0);
    const deniedNote = notifications.find((x) => String(x.statement).includes('hook_deny'));
    expect(deniedNote).toMatchObject({ outcome: 'denied', sqlstate: '42501' });
  });
});

describe('real time and observability', () => {
  test('a policy change applies to the next statement of an open session after SIGHUP', async () => {
    const c = pgClient('live');
    await c.connect();
    try {
      const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      const prepared = { name: 'live_one', text: 'select 1 as one' };
      expect((await c.query(prepared)).rows[0].one).toBe(1);
      writeFileSync(sempipe.configFile, configYaml(true).replaceAll('${ADMIN_PORT}', new URL(sempipe.adminUrl).port));
      sempipe.signal('SIGHUP');
      let denial: { code?: string; message: string } | undefined;
      await eventually(async () => {
        try {
          await c.query('select 1');
          return false;
        } catch (err) {
          denial = err as { code?: string; message: string };
          return true;
        }
      });
      expect(denial?.code).toBe('42501');
      expect(denial?.message).toContain('policy::/test::live');
      // A statement prepared before the change is judged again at its Bind.
      const atBind = await errorOf(c.query(prepared));
      expect(atBind.code).toBe('42501');
      expect(atBind.message).toContain('policy::/test::live');
      // The same session: its backend is still there, and statements of other classes still run.
      expect((await c.query('show server_version_num')).rows).toHaveLength(1);
      expect(db(`select count(*) from pg_stat_activity where pid = ${pid}`).trim()).toBe('1');
    } finally {
      await c.end();
    }
  });

  test('denials are counted per binding and rule and audited with rule and policy', async () => {
    await withClient('classes', async (c) => {
      await errorOf(c.query('create table evil5 (a int)'));
    });
    expect(await sempipe.metric('sempipe_policy_denials_total', { binding: fqnOf('classes'), rule: 'deny.classes' })).toBeGreaterThanOrEqual(1);
    expect(await sempipe.metric('sempipe_policy_denials_total', { binding: fqnOf('ro'), rule: 'read_only' })).toBeGreaterThanOrEqual(6);
    expect(await sempipe.metric('sempipe_policy_denials_total', { binding: fqnOf('classes'), rule: 'max_rows' })).toBeGreaterThanOrEqual(1);
    await eventually(() => sempipe.stdout().includes('create table evil5'));
    const line = sempipe
      .stdout()
      .split('\n')
      .filter((l) => l.includes('create table evil5'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    expect(line).toMatchObject({ event: 'statement', outcome: 'denied', sqlstate: '42501', rule: 'deny.classes', policy: 'policy::/test::guard', binding: fqnOf('classes') });
  });
});
