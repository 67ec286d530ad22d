// Reuse of upstream connections between sessions (protocols/postgres/upstream-pool.ts), with the real
// sempipe binary (one worker, so every session meets the same pool) in front of a real PostgreSQL:
// a clean session's backend serves the next session with nothing of its state left; a session that
// ends inside a transaction, with other startup parameters, or past the idle timeout gets its own
// backend; a pooled backend killed while idle is never handed out; the idle maximum holds; cancel
// reaches a reused backend; upstream_idle_timeout: 0 turns reuse off; past upstream_check_delay a
// backend must answer an empty query (a stopped one does not, and is replaced); a reload that
// changes the upstream role closes the old role's idle backends.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import postgres from 'postgres';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

let server: PgServer;
const processes: SempipeProcess[] = [];

beforeAll(async () => {
  server = await startPostgres();
  server.sql('CREATE TABLE reuse_marks (note text)', server.database);
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await destroyPostgres(server);
});

/** The config of a one-worker sempipe with `limits`, reaching the server as `role`. */
function config(limits: string, role = { user: server.user, password: server.password }): string {
  return `admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { ${limits} }
audit: { enabled: false }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${role.user}, password: "${role.password}", tls: disable }
bindings:
  - fqn: binding::/test::reuse
    service: service::/test::db
    listen: 127.0.0.1:\${PROXY_PORT}
    database: orders
    clients: [ { user: api, password: api-secret } ]
`;
}

/** A sempipe with one worker and the given limits; resolves with the port clients connect to. */
async function proxy(limits: string): Promise<number> {
  return (await proxyProcess(limits)).port;
}

async function proxyProcess(limits: string): Promise<{ port: number; p: SempipeProcess }> {
  const port = await freePort();
  const p = await startSempipe({ workers: 1, yaml: config(limits).replaceAll('${PROXY_PORT}', String(port)) });
  processes.push(p);
  return { port, p };
}

async function session<T>(port: number, work: (c: pg.Client) => Promise<T>, applicationName = 'reuse-test'): Promise<T> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'api', password: 'api-secret', database: 'orders', application_name: applicationName });
  c.on('error', () => {});
  await c.connect();
  try {
    return await work(c);
  } finally {
    await c.end();
  }
}

const pidOf = async (c: pg.Client): Promise<number> => (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;

/** Runs `sql` on a direct connection to the server (not through sempipe). */
async function direct<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** Waits until `check` holds (the server and the pool act asynchronously after a client leaves). */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Waits until backend `pid` has run the pool's reset and waits idle: a session that arrives while
 * the reset is still under way gets a new connection, which is right but not what a test of reuse
 * wants to see.
 */
const pooled = (pid: number): Promise<void> =>
  until(async () => (await direct("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle' AND query = 'DISCARD ALL'", [pid])).length === 1, `backend ${pid} to wait in the pool`);

const backends = async (applicationName: string): Promise<number[]> =>
  (await direct<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid', [applicationName])).map((r) => r.pid);

describe('upstream connection reuse', () => {
  let port: number;
  beforeAll(async () => {
    port = await proxy('upstream_idle_timeout: 30s, upstream_idle_max: 2');
  });

  test("the next session gets the same backend, with nothing left of the last session's state", async () => {
    const first = await session(port, async (c) => {
      await c.query("SET work_mem = '77MB'");
      await c.query('PREPARE left_over AS SELECT 1');
      await c.query('CREATE TEMP TABLE scratch (x int)');
      await c.query('LISTEN reuse_channel');
      await c.query('SELECT pg_advisory_lock(4242)');
      await c.query('BEGIN');
      await c.query('DECLARE held CURSOR WITH HOLD FOR SELECT 1');
      await c.query('COMMIT');
      return pidOf(c);
    });
    await pooled(first);
    const state = await session(port, async (c) => ({
      pid: await pidOf(c),
      row: (
        await c.query(`SELECT current_setting('work_mem') AS work_mem,
          (SELECT count(*)::int FROM pg_prepared_statements) AS prepared,
          (SELECT count(*)::int FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't') AS temp_tables,
          (SELECT count(*)::int FROM pg_listening_channels()) AS channels,
          (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks,
          (SELECT count(*)::int FROM pg_cursors) AS cursors`)
      ).rows[0],
    }));
    expect(state.pid).toBe(first);
    expect(state.row).toEqual({ work_mem: '4MB', prepared: 0, temp_tables: 0, channels: 0, advisory_locks: 0, cursors: 0 });
  });

  test('one backend serves many sessions in turn, and nothing piles up on its socket', async () => {
    const pids = new Set<number>();
    for (let i = 0; i < 15; i++) {
      const pid = await session(port, pidOf, 'reuse-many');
      pids.add(pid);
      await pooled(pid);
    }
    expect(pids.size).toBe(1);
    expect(processes[0]!.stderr()).not.toContain('MaxListenersExceededWarning');
  });

  test('a session that ends inside a transaction does not hand its backend on, and its work is rolled back', async () => {
    const name = 'reuse-open-txn';
    const open = new pg.Client({ host: '127.0.0.1', port, user: 'api', password: 'api-secret', database: 'orders', application_name: name });
    await open.connect();
    await open.query('BEGIN');
    await open.query("INSERT INTO reuse_marks VALUES ('uncommitted')");
    const pid = await pidOf(open);
    await open.end();
    await until(async () => !(await backends(name)).includes(pid), 'the backend of the open transaction to end');
    expect(await session(port, pidOf, name)).not.toBe(pid);
    expect(await direct("SELECT * FROM reuse_marks WHERE note = 'uncommitted'")).toEqual([]);
  });

  test('sessions with other startup parameters get their own backend', async () => {
    const a = await session(port, pidOf, 'reuse-params-a');
    await pooled(a);
    const b = await session(port, pidOf, 'reuse-params-b');
    expect(b).not.toBe(a);
    expect(await session(port, pidOf, 'reuse-params-a')).toBe(a);
    expect(await session(port, async (c) => (await c.query("SELECT current_setting('application_name') AS n")).rows[0].n, 'reuse-params-b')).toBe('reuse-params-b');
  });

  test('a pooled backend killed while idle is not handed out', async () => {
    const name = 'reuse-killed';
    const pid = await session(port, pidOf, name);
    await pooled(pid);
    await direct('SELECT pg_terminate_backend($1)', [pid]);
    await until(async () => !(await backends(name)).includes(pid), 'the killed backend to go');
    const next = await session(port, async (c) => ({ pid: await pidOf(c), one: (await c.query('SELECT 1 AS one')).rows[0].one }), name);
    expect(next.pid).not.toBe(pid);
    expect(next.one).toBe(1);
  });

  test('no more than upstream_idle_max backends wait per key; the rest are closed', async () => {
    const name = 'reuse-max';
    const clients = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = new pg.Client({ host: '127.0.0.1', port, user: 'api', password: 'api-secret', database: 'orders', application_name: name });
        await c.connect();
        return c;
      }),
    );
    expect(await backends(name)).toHaveLength(4);
    await Promise.all(clients.map((c) => c.end()));
    await until(async () => (await backends(name)).length === 2, 'two backends to remain');
    await new Promise((r) => setTimeout(r, 300));
    expect(await backends(name)).toHaveLength(2);
  });

  test('a cancel reaches a reused backend', async () => {
    const options = { host: '127.0.0.1', port, user: 'api', password: 'api-secret', database: 'orders', max: 1, onnotice: () => {}, connection: { application_name: 'reuse-cancel' } };
    const firstSql = postgres(options);
    const first = (await firstSql`SELECT pg_backend_pid() AS pid`)[0]!.pid as number;
    await firstSql.end();
    await pooled(first);
    const sql = postgres(options);
    try {
      expect((await sql`SELECT pg_backend_pid() AS pid`)[0]!.pid).toBe(first);
      const sleeping = sql`SELECT pg_sleep(20)`;
      const outcome = sleeping.then(() => undefined, (e: unknown) => e);
      await until(async () => (await direct("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'", [first])).length === 1, 'the sleep to start');
      sleeping.cancel();
      expect(await outcome).toMatchObject({ code: '57014' });
      expect((await sql`SELECT 5 AS five`)[0]!.five).toBe(5);
    } finally {
      await sql.end();
    }
  });
});

describe('upstream connection reuse limits', () => {
  test('past upstream_idle_timeout the waiting backend is closed and the next session gets a new one', async () => {
    const port = await proxy('upstream_idle_timeout: 300ms');
    const name = 'reuse-timeout';
    const pid = await session(port, pidOf, name);
    await until(async () => !(await backends(name)).includes(pid), 'the idle backend to be closed');
    expect(await session(port, pidOf, name)).not.toBe(pid);
  });

  test('upstream_idle_timeout: 0 gives every session its own backend', async () => {
    const port = await proxy('upstream_idle_timeout: 0');
    const name = 'reuse-off';
    const pid = await session(port, pidOf, name);
    await until(async () => (await backends(name)).length === 0, 'the backend to end with its session');
    expect(await session(port, pidOf, name)).not.toBe(pid);
  });
});

describe('checks of long-idle upstream connections', () => {
  /** A sempipe with `limits` and the backend of one session `name` ran, waiting in its pool. */
  async function pooledBackend(limits: string, name: string): Promise<{ port: number; pid: number }> {
    const port = await proxy(limits);
    const pid = await session(port, pidOf, name);
    await pooled(pid);
    return { port, pid };
  }

  /** Stops backend `pid` (it answers nothing, as behind a dead network path) until the returned function resumes it. */
  function freeze(pid: number): () => void {
    process.kill(pid, 'SIGSTOP');
    return () => process.kill(pid, 'SIGCONT');
  }

  test('past upstream_check_delay a backend that answers the empty query is handed out', async () => {
    const name = 'check-alive';
    const { port, pid } = await pooledBackend('upstream_idle_timeout: 30s, upstream_check_delay: 0', name);
    expect(await session(port, pidOf, name)).toBe(pid);
  });

  test('past upstream_check_delay a backend that does not answer within connect_timeout is closed, and the session gets a new one', async () => {
    const name = 'check-dead';
    const { port, pid } = await pooledBackend('upstream_idle_timeout: 30s, upstream_check_delay: 0, connect_timeout: 1s', name);
    const thaw = freeze(pid);
    try {
      const started = Date.now();
      const next = await session(port, async (c) => ({ pid: await pidOf(c), one: (await c.query('SELECT 1 AS one')).rows[0].one }), name);
      expect(next.pid).not.toBe(pid);
      expect(next.one).toBe(1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      thaw();
    }
    // sempipe closed its end: the resumed backend finds the connection gone and exits.
    await until(async () => !(await backends(name)).includes(pid), 'the unanswering backend to end');
  });

  test('within upstream_check_delay a pooled backend is handed out without a check', async () => {
    const name = 'check-within';
    const { port, pid } = await pooledBackend('upstream_idle_timeout: 30s, upstream_check_delay: 1h', name);
    const thaw = freeze(pid);
    let answered = false;
    try {
      const next = session(port, async (c) => {
        const p = await pidOf(c);
        answered = true;
        return p;
      }, name);
      // The session starts (its greeting is sempipe's) but its first statement waits for the stopped backend.
      await new Promise((r) => setTimeout(r, 500));
      expect(answered).toBe(false);
      thaw();
      expect(await next).toBe(pid);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });
});

describe('idle upstream connections across a reload', () => {
  test('a reload that changes the upstream role closes the idle connections of the old one; the next session gets the new role', async () => {
    const other = { user: 'reuse_rotated', password: 'rotated-secret' };
    server.sql(`CREATE ROLE ${other.user} LOGIN PASSWORD '${other.password}'`);
    server.sql(`GRANT ALL ON DATABASE ${server.database} TO ${other.user}`);
    const { port, p } = await proxyProcess('upstream_idle_timeout: 30s');
    const name = 'reload-prune';
    const pid = await session(port, pidOf, name);
    await pooled(pid);

    const reloads = p.stderr().split('config reloaded').length;
    const adminPort = new URL(p.adminUrl).port;
    writeFileSync(p.configFile, config('upstream_idle_timeout: 30s', other).replaceAll('${PROXY_PORT}', String(port)).replaceAll('${ADMIN_PORT}', adminPort));
    p.signal('SIGHUP');
    await until(async () => p.stderr().split('config reloaded').length > reloads, 'the reload');

    await until(async () => !(await backends(name)).includes(pid), 'the idle backend of the old role to be closed');
    const next = await session(port, async (c) => ({ pid: await pidOf(c), user: (await c.query('SELECT current_user AS u')).rows[0].u }), name);
    expect(next.pid).not.toBe(pid);
    expect(next.user).toBe(other.user);
  });
});
