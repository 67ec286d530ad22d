// Real PostgreSQL clients (psql, pgbench, pg, postgres.js) through the real sempipe binary to a real
// PostgreSQL server: simple and extended protocol, prepared statements, transactions, pipelining,
// large values and results, COPY both ways, LISTEN/NOTIFY and query cancellation across workers.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { run, type RunResult } from '../harness/run.js';

const CLIENT_USER = 'api';
const CLIENT_PASSWORD = 'api-secret';
const CLIENT_DB = 'orders';
const BINDING = 'binding::/test::app';

let server: PgServer;
let sempipe: SempipeProcess;
let port: number;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-clients-'));
  server = await startPostgres();
  port = await freePort();
  sempipe = await startSempipe({
    workers: 2,
    env: { UP_PW: server.password },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { max_message_size: 16MiB, auth_timeout: 5s, drain_timeout: 3s }
audit: { max_statement_length: 200 }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
bindings:
  - fqn: ${BINDING}
    service: service::/test::db
    listen: 127.0.0.1:${port}
    database: ${CLIENT_DB}
    auth: scram-sha-256
    clients: [ { user: ${CLIENT_USER}, password: ${CLIENT_PASSWORD} } ]
`,
  });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyPostgres(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const viaSempipe = (): string[] => ['-h', '127.0.0.1', '-p', String(port), '-U', CLIENT_USER, '-d', CLIENT_DB];
const direct = (): string[] => ['-h', server.host, '-p', String(server.port), '-U', server.user, '-d', server.database];
const sempipeEnv = (): Record<string, string> => ({ PGPASSWORD: CLIENT_PASSWORD, PGSSLMODE: 'disable' });
const directEnv = (): Record<string, string> => ({ PGPASSWORD: server.password, PGSSLMODE: 'disable' });

function psql(sql: string): Promise<RunResult> {
  return run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', ...viaSempipe(), '-c', sql], { env: sempipeEnv() });
}

const pgConfig = (): pg.ClientConfig => ({ host: '127.0.0.1', port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: CLIENT_DB });

async function pgClient(): Promise<pg.Client> {
  const c = new pg.Client(pgConfig());
  await c.connect();
  return c;
}

/** A direct connection to the upstream, the reference for what the server itself sees. */
async function upstreamClient(): Promise<pg.Client> {
  const c = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database });
  await c.connect();
  return c;
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

describe('psql', () => {
  test('runs simple queries against the upstream database with the upstream role', async () => {
    const r = await psql('select current_database(), current_user, 1 + 1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`${server.database}|${server.user}|2`);
  });

  test('runs a multi-statement query as one simple Query', async () => {
    const r = await psql('create table multi(x int); insert into multi values (1), (2), (39); select sum(x) from multi; drop table multi');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['CREATE TABLE', 'INSERT 0 3', '42', 'DROP TABLE']);
  });

  test('reports a statement error with its SQLSTATE and keeps running later statements', async () => {
    const r = await run('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose', ...viaSempipe(), '-c', 'select 1/0', '-c', 'select 7'], { env: sempipeEnv() });
    expect(r.stderr).toMatch(/ERROR:\s+22012: division by zero/);
    expect(r.stdout.trim()).toBe('7');
  });
});

describe('pgbench', () => {
  beforeAll(async () => {
    const init = await run('pgbench', ['-i', '-s', '1', '-q', ...direct()], { env: directEnv() });
    expect(init.code, init.stderr).toBe(0);
  });

  test.each(['simple', 'extended', 'prepared'])('select-only run with -M %s has no failures', async (mode) => {
    const r = await run('pgbench', ['-S', '-T', '2', '-c', '4', '-j', '2', '-M', mode, ...viaSempipe()], { env: sempipeEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/number of failed transactions: 0 \(/);
    const processed = /number of transactions actually processed: (\d+)/.exec(r.stdout);
    expect(Number(processed?.[1])).toBeGreaterThan(0);
    const tps = /tps = ([\d.]+)/.exec(r.stdout);
    expect(Number(tps?.[1])).toBeGreaterThan(0);
  });
});

describe('pg (node-postgres)', () => {
  test('parameterised queries use the extended protocol', async () => {
    const c = await pgClient();
    try {
      const r = await c.query('select $1::int + $2::int as sum, $3::text as t, $4::text is null as n', [40, 2, 'ü€𝄞', null]);
      expect(r.rows).toEqual([{ sum: 42, t: 'ü€𝄞', n: true }]);
    } finally {
      await c.end();
    }
  });

  test('named prepared statements are parsed once and executed repeatedly', async () => {
    const c = await pgClient();
    try {
      for (const n of [1, 2, 3]) {
        const r = await c.query({ name: 'square', text: 'select $1::int * $1::int as sq', values: [n] });
        expect(r.rows[0].sq).toBe(n * n);
      }
      const stmts = await c.query("select count(*)::int as n from pg_prepared_statements where name = 'square'");
      expect(stmts.rows[0].n).toBe(1);
    } finally {
      await c.end();
    }
  });

  test('BEGIN/COMMIT keeps the row and BEGIN/ROLLBACK discards it', async () => {
    const c = await pgClient();
    const other = await pgClient();
    try {
      await c.query('create table tx_test(id int primary key, v text)');
      await c.query('BEGIN');
      await c.query('insert into tx_test values ($1, $2)', [1, 'kept']);
      expect((await other.query('select count(*)::int as n from tx_test')).rows[0].n).toBe(0);
      await c.query('COMMIT');
      await c.query('BEGIN');
      await c.query('insert into tx_test values ($1, $2)', [2, 'discarded']);
      await expect(c.query('insert into tx_test values (1, $1)', ['duplicate'])).rejects.toMatchObject({ code: '23505' });
      await expect(c.query('select 1')).rejects.toMatchObject({ code: '25P02' });
      await c.query('ROLLBACK');
      expect((await other.query('select id, v from tx_test order by id')).rows).toEqual([{ id: 1, v: 'kept' }]);
      await c.query('drop table tx_test');
    } finally {
      await c.end();
      await other.end();
    }
  });
});

describe('postgres (postgres.js)', () => {
  const connectJs = (opts: postgres.Options<Record<string, postgres.PostgresType>> = {}) =>
    postgres({ host: '127.0.0.1', port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: CLIENT_DB, ssl: false, onnotice: () => {}, ...opts });

  test('queries with parameters', async () => {
    const sql = connectJs();
    try {
      const [row] = await sql`select ${20}::int + ${22}::int as sum, ${'x'}::text || ${'y'}::text as s`;
      expect(row).toEqual({ sum: 42, s: 'xy' });
    } finally {
      await sql.end();
    }
  });

  test('pipelined queries on one connection all return their own results in order', async () => {
    const sql = connectJs({ max: 1 });
    try {
      const queries = Array.from({ length: 200 }, (_, i) => sql`select ${i}::int as i, repeat('x', ${i}) as pad`);
      const results = await Promise.all(queries);
      results.forEach((r, i) => {
        expect(r[0]!.i).toBe(i);
        expect(r[0]!.pad).toHaveLength(i);
      });
      const [{ pid }] = await sql`select count(distinct pg_backend_pid())::int as pid`;
      expect(pid).toBe(1);
    } finally {
      await sql.end();
    }
  });

  test('sql.begin commits on success and rolls back on a thrown error', async () => {
    const sql = connectJs();
    try {
      await sql`create table js_tx(id int primary key)`;
      await sql.begin(async (tx) => {
        await tx`insert into js_tx values (1)`;
        await tx`insert into js_tx values (2)`;
      });
      await expect(
        sql.begin(async (tx) => {
          await tx`insert into js_tx values (3)`;
          await tx`insert into js_tx values (1)`;
        }),
      ).rejects.toMatchObject({ code: '23505' });
      const rows = await sql`select id from js_tx order by id`;
      expect(rows.map((r) => r.id)).toEqual([1, 2]);
      await sql`drop table js_tx`;
    } finally {
      await sql.end();
    }
  });
});

describe('large values and results', () => {
  test('a 5 MB text value makes the round trip intact both as a parameter and from a table', async () => {
    const c = await pgClient();
    try {
      const value = createHash('sha256').update('seed').digest('hex').repeat((5 * 1024 * 1024) / 64);
      expect(value.length).toBe(5 * 1024 * 1024);
      const echoed = await c.query('select $1::text as v', [value]);
      expect(echoed.rows[0].v === value).toBe(true);
      await c.query('create table big_value(v text)');
      await c.query('insert into big_value values ($1)', [value]);
      const stored = await c.query('select v, length(v) as len, md5(v) as h from big_value');
      expect(stored.rows[0].len).toBe(value.length);
      expect(stored.rows[0].h).toBe(createHash('md5').update(value).digest('hex'));
      expect(stored.rows[0].v === value).toBe(true);
      await c.query('drop table big_value');
    } finally {
      await c.end();
    }
  });

  test('a result of 100k rows arrives complete', async () => {
    const c = await pgClient();
    try {
      const r = await c.query('select g, md5(g::text) as h from generate_series(1, 100000) g');
      expect(r.rowCount).toBe(100000);
      expect(r.rows).toHaveLength(100000);
      expect(r.rows[99999]).toEqual({ g: 100000, h: createHash('md5').update('100000').digest('hex') });
      expect(r.rows.every((row: { g: number }, i: number) => row.g === i + 1)).toBe(true);
    } finally {
      await c.end();
    }
  }, 20_000);
});

describe('COPY', () => {
  test('~30 MB COPY FROM STDIN and COPY TO STDOUT through sempipe match the input and the direct COPY', async () => {
    const input = join(dir, 'copy-in.tsv');
    const lines: string[] = [];
    for (let i = 1; i <= 400_000; i++) lines.push(`${i}\t${createHash('md5').update(String(i)).digest('hex')}${'abcdefghij'.repeat(4)}\n`);
    writeFileSync(input, lines.join(''));
    const inputSize = statSync(input).size;
    expect(inputSize).toBeGreaterThan(28 * 1024 * 1024);

    expect((await psql('create table copy_t(id int primary key, payload text)')).code).toBe(0);
    const copyIn = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...viaSempipe(), '-c', 'copy copy_t from stdin'], { env: sempipeEnv(), stdinFile: input });
    expect(copyIn.stderr).toBe('');
    expect(copyIn.stdout.trim()).toBe('COPY 400000');

    const copyOut = 'copy (select * from copy_t order by id) to stdout';
    const viaFile = join(dir, 'copy-out-sempipe.tsv');
    const directFile = join(dir, 'copy-out-direct.tsv');
    const outSempipe = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...viaSempipe(), '-c', copyOut], { env: sempipeEnv(), stdoutFile: viaFile });
    const outDirect = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...direct(), '-c', copyOut], { env: directEnv(), stdoutFile: directFile });
    expect(outSempipe.code, outSempipe.stderr).toBe(0);
    expect(outDirect.code, outDirect.stderr).toBe(0);
    expect(statSync(viaFile).size).toBe(statSync(directFile).size);
    expect(sha256(viaFile)).toBe(sha256(directFile));
    expect(sha256(viaFile)).toBe(sha256(input));
    expect((await psql('drop table copy_t')).code).toBe(0);
  }, 30_000);
});

describe('LISTEN/NOTIFY', () => {
  test('a notification sent by one client reaches a listening client with its payload', async () => {
    const listener = await pgClient();
    const notifier = await pgClient();
    try {
      await listener.query('LISTEN sempipe_chan');
      const received = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
      await notifier.query("select pg_notify('sempipe_chan', $1)", ['payload with ü']);
      const n = await received;
      expect(n.channel).toBe('sempipe_chan');
      expect(n.payload).toBe('payload with ü');
      const second = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
      await notifier.query("NOTIFY sempipe_chan, 'second'");
      expect((await second).payload).toBe('second');
    } finally {
      await listener.end();
      await notifier.end();
    }
  });
});

describe('cancel', () => {
  interface KeyedClient {
    processID: number;
    secretKey: number;
  }

  /** A CancelRequest (length 16, code 80877102) on a fresh connection, as libpq sends it. */
  function sendCancel(processId: number, secretKey: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        const msg = Buffer.alloc(16);
        msg.writeInt32BE(16, 0);
        msg.writeInt32BE(80877102, 4);
        msg.writeInt32BE(processId, 8);
        msg.writeInt32BE(secretKey, 12);
        s.end(msg);
      });
      s.on('error', reject);
      s.on('close', () => resolve());
      s.resume();
    });
  }

  /** Waits until `count` backends run pg_sleep upstream, so that a cancel cannot arrive too early. */
  async function waitForSleepers(count: number): Promise<void> {
    const ref = await upstreamClient();
    try {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const r = await ref.query("select count(*)::int as n from pg_stat_activity where state = 'active' and query like 'select pg_sleep(%'");
        if (r.rows[0].n >= count) return;
        if (Date.now() > deadline) throw new Error(`only ${r.rows[0].n} of ${count} sleeps started`);
        await new Promise((r2) => setTimeout(r2, 50));
      }
    } finally {
      await ref.end();
    }
  }

  test('a raw CancelRequest with the key sempipe issued cancels a pg query (57014) and the session stays usable', async () => {
    const c = await pgClient();
    try {
      const key = c as unknown as KeyedClient;
      const upstreamPid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      expect(key.processID).not.toBe(upstreamPid);
      const started = Date.now();
      const sleeping = c.query('select pg_sleep(20)');
      await waitForSleepers(1);
      await sendCancel(key.processID, key.secretKey);
      await expect(sleeping).rejects.toMatchObject({ code: '57014' });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await c.query('select 5 as five')).rows[0].five).toBe(5);
    } finally {
      await c.end();
    }
  });

  test('a CancelRequest with a wrong secret is ignored', async () => {
    const c = await pgClient();
    try {
      const key = c as unknown as KeyedClient;
      const r = c.query('select pg_sleep(1.5) as slept');
      await waitForSleepers(1);
      await sendCancel(key.processID, key.secretKey ^ 1);
      expect((await r).rows).toHaveLength(1);
    } finally {
      await c.end();
    }
  });

  test('postgres.js query.cancel() cancels (57014) and the connection stays usable', async () => {
    const sql = postgres({ host: '127.0.0.1', port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: CLIENT_DB, ssl: false, max: 1 });
    try {
      await sql`select 1`;
      const q = sql`select pg_sleep(20)`;
      const outcome = q.then(
        () => undefined,
        (e: unknown) => e,
      );
      await waitForSleepers(1);
      q.cancel();
      expect(await outcome).toMatchObject({ code: '57014' });
      const [{ ok }] = await sql`select true as ok`;
      expect(ok).toBe(true);
    } finally {
      await sql.end();
    }
  });

  test('with 2 workers, cancels of sessions on both workers reach the owning worker wherever they land', async () => {
    // sempipe encodes the owning worker in the high bits of the process id it hands out. The
    // kernel gives each connection to whichever worker accepts first: connect until both have some.
    const clients: pg.Client[] = [];
    const owners = (): Set<number> => new Set(clients.map((c) => (c as unknown as KeyedClient).processID >>> 24));
    while (clients.length < 8 || (owners().size < 2 && clients.length < 40)) clients.push(await pgClient());
    try {
      const keys = clients.map((c) => c as unknown as KeyedClient);
      expect(owners().size).toBe(2);
      const sleeps = clients.map((c) =>
        c.query('select pg_sleep(20)').then(
          () => undefined,
          (e: unknown) => e,
        ),
      );
      await waitForSleepers(clients.length);
      // The cancel connections land on either worker too: with sessions on both, some of them
      // reach the worker that does not own the session and must be routed to the owner.
      for (const k of keys) await sendCancel(k.processID, k.secretKey);
      const errors = await Promise.all(sleeps);
      expect(errors.map((e) => (e as { code?: string } | undefined)?.code)).toEqual(Array(clients.length).fill('57014'));
      for (const c of clients) expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });
});

describe('protocol corners', () => {
  test('postgres.js cursors fetch in batches (Execute with a row limit, PortalSuspended)', async () => {
    const sql = postgres({ host: '127.0.0.1', port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: CLIENT_DB, ssl: false, max: 1 });
    try {
      const seen: number[] = [];
      let batches = 0;
      await sql`select g from generate_series(1, 2500) g`.cursor(1000, (rows) => {
        batches++;
        for (const r of rows) seen.push(r.g as number);
      });
      expect(batches).toBe(3);
      expect(seen).toEqual(Array.from({ length: 2500 }, (_, i) => i + 1));
      const [{ ok }] = await sql`select 'after' as ok`;
      expect(ok).toBe('after');
    } finally {
      await sql.end();
    }
  }, 15_000);

  test('an error in the middle of a pipeline fails only its own query', async () => {
    const sql = postgres({ host: '127.0.0.1', port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: CLIENT_DB, ssl: false, max: 1 });
    try {
      const settled = await Promise.allSettled([sql`select 1 as n`, sql`select 1/0 as n`, sql`select 3 as n`, sql`select * from no_such_table`, sql`select 5 as n`]);
      expect(settled.map((s) => (s.status === 'fulfilled' ? s.value[0]!.n : (s.reason as { code: string }).code))).toEqual([1, '22012', 3, '42P01', 5]);
    } finally {
      await sql.end();
    }
  });

  test('an empty query, notices and a multi-statement sql.unsafe behave as on the server', async () => {
    const notices: string[] = [];
    const sql = postgres({
      host: '127.0.0.1', port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: CLIENT_DB, ssl: false, max: 1,
      onnotice: (n) => notices.push(n.message),
    });
    try {
      const empty = await sql.unsafe('');
      expect(empty.count).toBe(null);
      await sql`do $$ begin raise notice 'hello from plpgsql'; end $$`;
      expect(notices).toContain('hello from plpgsql');
      const multi = await sql.unsafe('select 1 as a; select 2 as b');
      expect(multi.map((r) => r[0])).toEqual([{ a: 1 }, { b: 2 }]);
    } finally {
      await sql.end();
    }
  });

  test('startup parameters of the client (application_name, options, client_encoding) reach the upstream', async () => {
    const r = await run(
      'psql',
      ['-X', '-At', '-v', 'ON_ERROR_STOP=1', `host=127.0.0.1 port=${port} user=${CLIENT_USER} dbname=${CLIENT_DB} application_name=my-app options='-c search_path=custom_schema'`,
        '-c', "select current_setting('application_name'), current_setting('search_path'), current_setting('client_encoding')"],
      { env: { ...sempipeEnv(), PGCLIENTENCODING: 'LATIN1' } },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('my-app|custom_schema|LATIN1');
  });

  test('a COPY FROM STDIN that fails midway leaves the session usable', async () => {
    const c = await pgClient();
    try {
      await c.query('create table copy_bad(id int)');
      const file = join(dir, 'copy-bad.txt');
      writeFileSync(file, '1\n2\nnot-a-number\n4\n');
      const r = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...viaSempipe(), '-c', 'copy copy_bad from stdin', '-c', 'select 1'], { env: sempipeEnv(), stdinFile: file });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/invalid input syntax for type integer: "not-a-number"/);
      expect((await c.query('select count(*)::int as n from copy_bad')).rows[0].n).toBe(0);
      const retry = await c.query('select 1 as one');
      expect(retry.rows[0].one).toBe(1);
      await c.query('drop table copy_bad');
    } finally {
      await c.end();
    }
  });

  test('a cancel inside a transaction aborts it and ROLLBACK recovers the session', async () => {
    const sql = postgres({ host: '127.0.0.1', port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: CLIENT_DB, ssl: false, max: 1 });
    try {
      const outcome = sql
        .begin(async (tx) => {
          await tx`select 1`;
          const q = tx`select pg_sleep(20)`;
          setTimeout(() => q.cancel(), 500);
          await q;
        })
        .then(() => undefined, (e: unknown) => e);
      expect(await outcome).toMatchObject({ code: '57014' });
      const [{ s }] = await sql`select 'usable' as s`;
      expect(s).toBe('usable');
    } finally {
      await sql.end();
    }
  });
});
