// Policy on the MySQL pipeline through the real sempipe binary against a real MariaDB, with the
// same policy documents as PostgreSQL's: a denied class, table or function gets ERR 1142 SQLSTATE
// 42000 naming the rule and policy while the session stays usable; read_only; max_rows stops the
// result and kills the query upstream; statement_timeout kills a slow one; KILL QUERY with
// sempipe's connection id reaches the real upstream thread, ids of another binding are refused;
// revoking the binding closes live sessions. The upstream caching_sha2_password leg (with its RSA
// path) is tested against a second binding of sempipe's own client-facing side.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyMariaDb, startMariaDb, type MariaDbServer } from '../harness/mariadb-server.js';
import { freePorts } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const PASSWORD = 'web-secret';
const GUARDED = 'binding::/test/guarded::shop';
const READ_ONLY = 'binding::/test/ro::shop';
const OTHER = 'binding::/test/other::shop';
const CHAINED = 'binding::/test/chained::shop';
const HOOKED = 'binding::/test/hooked::shop';

let hookServer: Server;
const hookCalls: Array<Record<string, unknown>> = [];

let server: MariaDbServer;
let sempipe: SempipeProcess;
let dir: string;
const port: Record<string, number> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-mysql-policy-'));
  hookServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const parsed = JSON.parse(body) as Record<string, unknown>;
      hookCalls.push(parsed);
      const permitted = !String(parsed.statement).includes('hook_deny');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(permitted ? { permitted } : { permitted, reason: 'not on fridays' }));
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}`;
  server = await startMariaDb();
  server.sql('CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100)); CREATE TABLE secrets (v TEXT); INSERT INTO items SELECT seq, CONCAT("item ", seq) FROM seq_1_to_50', server.database);
  const [g, ro, other, chained, hooked] = await freePorts(5);
  Object.assign(port, { [GUARDED]: g, [READ_ONLY]: ro, [OTHER]: other, [CHAINED]: chained, [HOOKED]: hooked });
  const binding = (fqn: string, service = 'service::/test::shop', auth = 'mysql_native_password'): string => `  - fqn: ${fqn}
    service: ${service}
    listen: 127.0.0.1:${port[fqn]}
    database: shop
    auth: ${auth}
    clients: [ { user: web, password: ${PASSWORD} } ]`;
  // One worker: KILL from one session to another is resolved within the worker that owns both.
  sempipe = await startSempipe({
    workers: 1,
    env: { UP_PW: server.password, LOOP_PW: PASSWORD },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 3s, connect_timeout: 5s, drain_timeout: 2s }
services:
  - fqn: service::/test::shop
    protocol: mysql
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
  - fqn: service::/test::through-sempipe
    protocol: mysql
    upstream: { host: 127.0.0.1, port: ${other}, database: shop, user: web, password: "\${LOOP_PW}", tls: disable }
bindings:
${binding(GUARDED)}
${binding(READ_ONLY)}
${binding(OTHER, 'service::/test::shop', 'caching_sha2_password')}
${binding(CHAINED, 'service::/test::through-sempipe')}
${binding(HOOKED)}
policies:
  - fqn: policy::/test::hooks
    realm: binding::/test/hooked
    hooks:
      - { classes: [select], url: "${hookUrl}/hook", timeout: 2s, on_error: deny }
  - fqn: policy::/test::guard
    realm: binding::/test/guarded
    deny: { classes: [ddl], tables: [secrets], functions: [load_file] }
    limits: { max_rows: 10, statement_timeout: 1s }
  - fqn: policy::/test::read-only
    realm: binding::/test/ro
    read_only: true
`,
  });
});

afterAll(async () => {
  await sempipe?.stop();
  await new Promise((r) => hookServer?.close(r));
  await destroyMariaDb(server);
  rmSync(dir, { recursive: true, force: true });
});

const connect = (fqn: string, extra: mysql.ConnectionOptions = {}): Promise<mysql.Connection> =>
  mysql.createConnection({ host: '127.0.0.1', port: port[fqn], user: 'web', password: PASSWORD, database: 'shop', ...extra });

type SqlError = { errno: number; sqlState: string; message: string };
const failure = (p: Promise<unknown>): Promise<SqlError> => p.then(() => { throw new Error('the statement succeeded'); }, (e: SqlError) => e);

describe('denials', () => {
  test.each([
    ['a denied class', 'CREATE TABLE t2 (a INT)', /deny\.classes/],
    ['a denied table', 'SELECT * FROM secrets', /deny\.tables/],
    ['a denied function', "SELECT load_file('/etc/passwd')", /deny\.functions/],
  ])('%s gets ERR 1142 42000 naming the rule and policy; the session stays usable', async (_what, sql, rule) => {
    const c = await connect(GUARDED);
    const err = await failure(c.query(sql));
    expect(err).toMatchObject({ errno: 1142, sqlState: '42000' });
    expect(err.message).toMatch(rule);
    expect(err.message).toContain('policy::/test::guard');
    const [rows] = await c.query('SELECT COUNT(*) AS n FROM items WHERE id <= 5');
    expect(rows).toEqual([{ n: 5 }]);
    // A prepared statement is judged too.
    expect(await failure(c.execute('SELECT v FROM secrets WHERE v = ?', ['x']))).toMatchObject({ errno: 1142 });
    await c.end();
  });

  test('read_only refuses writes, reads pass', async () => {
    const c = await connect(READ_ONLY);
    expect(await failure(c.query("UPDATE items SET name = 'x' WHERE id = 1"))).toMatchObject({ errno: 1142, sqlState: '42000' });
    const [rows] = await c.query('SELECT name FROM items WHERE id = 1');
    expect(rows).toEqual([{ name: 'item 1' }]);
    await c.end();
  });
});

test('a hook decides asynchronously: its refusal is ERR 1142 with its reason, its permit lets text and prepared statements run', async () => {
  const c = await connect(HOOKED);
  const [rows] = await c.query('SELECT 1 AS a');
  expect(rows).toEqual([{ a: 1 }]);
  const err = await failure(c.query("SELECT 'hook_deny' AS b"));
  expect(err).toMatchObject({ errno: 1142, sqlState: '42000' });
  expect(err.message).toContain('not on fridays');
  const [prepared] = await c.execute('SELECT ? AS c', [7]);
  expect(prepared).toEqual([{ c: 7 }]);
  expect(hookCalls.map((h) => h.statement)).toEqual(expect.arrayContaining(['SELECT 1 AS a', "SELECT 'hook_deny' AS b", 'SELECT ? AS c']));
  expect(hookCalls[0]).toMatchObject({ binding: HOOKED, user: 'web', class: 'select' });
  await c.end();
});

describe('limits', () => {
  test('max_rows stops the result with an ERR naming the rule; the session stays usable', async () => {
    const c = await connect(GUARDED);
    const err = await failure(c.query('SELECT id FROM items ORDER BY id'));
    expect(err.message).toMatch(/max_rows/);
    const [small] = await c.query('SELECT id FROM items WHERE id <= 3 ORDER BY id');
    expect(small).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
    const [prepared] = await c.execute('SELECT id FROM items WHERE id <= ? ORDER BY id', [2]);
    expect(prepared).toEqual([{ id: 1 }, { id: 2 }]);
    await c.end();
  });

  test('statement_timeout kills a slow statement upstream; the session stays usable', async () => {
    const c = await connect(GUARDED);
    const started = Date.now();
    const err = await failure(c.query('SELECT SLEEP(5)'));
    expect(Date.now() - started).toBeLessThan(4000);
    expect(err.message).toMatch(/statement_timeout/);
    const [rows] = await c.query('SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
    await c.end();
  });
});

describe('KILL', () => {
  test('KILL QUERY with sempipe\'s connection id stops the other session\'s statement; ids of another binding are refused', async () => {
    const victim = await connect(READ_ONLY);
    const killer = await connect(READ_ONLY);
    const outsider = await connect(OTHER, { allowPublicKeyRetrieval: true });
    const running = failure(victim.query('SELECT SLEEP(10)'));
    await new Promise((r) => setTimeout(r, 300));
    expect(await failure(outsider.query(`KILL QUERY ${victim.threadId}`))).toMatchObject({ errno: 1094 });
    await killer.query(`KILL QUERY ${victim.threadId}`);
    const err = await running;
    expect(err.errno).toBe(1317);
    const [rows] = await victim.query('SELECT 2 AS two');
    expect(rows).toEqual([{ two: 2 }]);
    // The id the client sees is sempipe's own, not the upstream thread id.
    const [ids] = await victim.query('SELECT CONNECTION_ID() AS id');
    expect((ids as Array<{ id: number }>)[0]!.id).not.toBe(victim.threadId);
    await Promise.all([victim.end(), killer.end(), outsider.end()]);
  });
});

test('the upstream caching_sha2_password leg (RSA path, then fast path) logs in to a caching_sha2 binding of sempipe itself', async () => {
  for (let round = 0; round < 2; round++) {
    const c = await connect(CHAINED);
    const [rows] = await c.query('SELECT COUNT(*) AS n FROM items');
    expect(rows).toEqual([{ n: 50 }]);
    await c.end();
  }
});

test('revoking a binding closes its live sessions with an error naming it', async () => {
  const c = await connect(OTHER, { allowPublicKeyRetrieval: true });
  await c.query('SELECT 1');
  const closed = new Promise<Error>((resolve) => c.on('error', resolve));
  const yaml = (await import('node:fs')).readFileSync(sempipe.configFile, 'utf8');
  writeFileSync(sempipe.configFile, yaml.replace(/  - fqn: binding::\/test\/chained::shop[\s\S]*?clients: \[[^\]]*\]\n/, '').replace(/  - fqn: binding::\/test\/other::shop[\s\S]*?clients: \[[^\]]*\]\n/, ''));
  sempipe.signal('SIGHUP');
  const err = await closed;
  expect(err.message).toContain('binding::/test/other::shop was revoked');
});
