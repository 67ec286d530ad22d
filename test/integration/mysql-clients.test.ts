// The MySQL pipeline through the real sempipe binary against a real MariaDB: mysql2 (text and
// prepared statements, with and without TLS, both client auth plugins) and the `mariadb` CLI log in
// with sempipe's credentials while sempipe logs in upstream with the service's; wrong password and
// unknown user get the same ERR 1045, another database ERR 1044; multi-statement results and
// COM_INIT_DB relay; metrics and audit lines carry protocol="mysql".
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireBinary } from '../harness/binaries.js';
import { makeCertificate, type Certificate } from '../harness/certs.js';
import { destroyMariaDb, startMariaDb, type MariaDbServer } from '../harness/mariadb-server.js';
import { freePorts } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const PASSWORD = 'web-secret';
const SHA2 = 'binding::/test::shop-sha2';
const NATIVE = 'binding::/test::shop-native';
const TLS_REQUIRED = 'binding::/test::shop-tls';

let server: MariaDbServer;
let sempipe: SempipeProcess;
let dir: string;
let cert: Certificate;
let sha2Port: number;
let nativePort: number;
let tlsPort: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-mysql-'));
  cert = makeCertificate(dir, 'localhost');
  server = await startMariaDb({ tls: true, settings: { max_allowed_packet: '64M' } });
  server.sql('CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100)); INSERT INTO items VALUES (1, "one"), (2, "two"), (3, "three")', server.database);
  [sha2Port, nativePort, tlsPort] = await freePorts(3);
  const tls = `{ cert: ${cert.certFile}, key: ${cert.keyFile} }`;
  sempipe = await startSempipe({
    workers: 2,
    env: { UP_PW: server.password },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 3s, connect_timeout: 5s, drain_timeout: 2s }
services:
  - fqn: service::/test::shop
    protocol: mysql
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: require }
bindings:
  - fqn: ${SHA2}
    service: service::/test::shop
    listen: 127.0.0.1:${sha2Port}
    database: shop
    clients: [ { user: web, password: ${PASSWORD} } ]
    tls: ${tls}
  - fqn: ${NATIVE}
    service: service::/test::shop
    listen: 127.0.0.1:${nativePort}
    database: shop
    auth: mysql_native_password
    clients: [ { user: web, password: ${PASSWORD} } ]
  - fqn: ${TLS_REQUIRED}
    service: service::/test::shop
    listen: 127.0.0.1:${tlsPort}
    database: shop
    clients: [ { user: web, password: ${PASSWORD} } ]
    tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, required: true }
`,
  });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyMariaDb(server);
  rmSync(dir, { recursive: true, force: true });
});

const connect = (port: number, extra: mysql.ConnectionOptions = {}): Promise<mysql.Connection> =>
  mysql.createConnection({ host: '127.0.0.1', port, user: 'web', password: PASSWORD, database: 'shop', ...extra });

describe('mysql2', () => {
  test.each([
    ['caching_sha2_password over plain TCP (full authentication through RSA, then the fast path)', () => sha2Port, { allowPublicKeyRetrieval: true }],
    ['caching_sha2_password over TLS', () => sha2Port, { ssl: { rejectUnauthorized: false } }],
    ['mysql_native_password', () => nativePort, {}],
  ])('%s: text and prepared statements reach the upstream as the service user', async (_name, port, extra) => {
    for (let round = 0; round < 2; round++) {
      const c = await connect(port(), extra as mysql.ConnectionOptions);
      const [rows] = await c.query('SELECT id, name FROM items ORDER BY id');
      expect(rows).toEqual([{ id: 1, name: 'one' }, { id: 2, name: 'two' }, { id: 3, name: 'three' }]);
      const [who] = await c.query('SELECT current_user() AS u, database() AS d');
      expect(who).toEqual([{ u: `${server.user}@%`, d: server.database }]);
      const [prepared] = await c.execute('SELECT name FROM items WHERE id = ?', [2]);
      expect(prepared).toEqual([{ name: 'two' }]);
      const [again] = await c.execute('SELECT name FROM items WHERE id = ?', [3]);
      expect(again).toEqual([{ name: 'three' }]);
      await c.ping();
      await c.end();
    }
  });

  test('wrong password and unknown user get the same ERR 1045; another database ERR 1044', async () => {
    const refusal = (opts: mysql.ConnectionOptions): Promise<{ errno: number; sqlState: string; message: string }> =>
      connect(nativePort, opts).then(
        () => { throw new Error('connected'); },
        (e: { errno: number; sqlState: string; message: string }) => e,
      );
    const wrong = await refusal({ password: 'nope' });
    const unknown = await refusal({ user: 'nobody' });
    expect(wrong).toMatchObject({ errno: 1045, sqlState: '28000' });
    expect(unknown).toMatchObject({ errno: 1045, sqlState: '28000' });
    expect(wrong.message.replace("'web'", 'U')).toBe(unknown.message.replace("'nobody'", 'U'));
    const otherDb = await connect(sha2Port, { database: server.database, ssl: { rejectUnauthorized: false } }).catch((e: { errno: number }) => e);
    expect(otherDb).toMatchObject({ errno: 1044, sqlState: '42000' });
  });

  test('a binding with required TLS refuses a plain client and serves a TLS one', async () => {
    await expect(connect(tlsPort)).rejects.toMatchObject({ errno: 3159 });
    const c = await connect(tlsPort, { ssl: { rejectUnauthorized: false } });
    const [rows] = await c.query("SHOW STATUS LIKE 'Ssl_cipher'");
    // The upstream leg is TLS too (tls: require).
    expect((rows as Array<{ Value: string }>)[0]!.Value).not.toBe('');
    await c.end();
  });

  test('multi-statement queries return every result set; USE only reaches the binding\'s database', async () => {
    const c = await connect(nativePort, { multipleStatements: true });
    const [results] = await c.query('SELECT 1 AS a; SELECT id FROM items WHERE id < 3 ORDER BY id; UPDATE items SET name = name WHERE id = 1');
    expect((results as unknown[])[0]).toEqual([{ a: 1 }]);
    expect((results as unknown[])[1]).toEqual([{ id: 1 }, { id: 2 }]);
    expect((results as Array<{ affectedRows?: number }>)[2]!.affectedRows).toBe(1);
    await c.changeUser({ database: 'shop' }).catch(() => undefined);
    await c.end();
  });
});

test('a prepared statement with a value over 16 MiB (continuation packets both ways) round-trips', async () => {
  const c = await connect(nativePort);
  const big = 'x'.repeat(17 * 1024 * 1024);
  const [rows] = await c.execute('SELECT LENGTH(?) AS n, ? AS v', [big, big]);
  const [row] = rows as Array<{ n: number; v: string }>;
  expect(row!.n).toBe(big.length);
  expect(row!.v === big).toBe(true);
  const [after] = await c.query('SELECT 1 AS ok');
  expect(after).toEqual([{ ok: 1 }]);
  await c.end();
});

describe('the mariadb CLI', () => {
  test('logs in with caching_sha2_password and mysql_native_password, USE of another database is refused', () => {
    const cli = requireBinary('mariadb');
    for (const port of [sha2Port, nativePort]) {
      const r = spawnSync(cli, ['--no-defaults', '-h', '127.0.0.1', '-P', String(port), '-u', 'web', `-p${PASSWORD}`, '--skip-ssl', 'shop', '-N', '-B', '-e', 'select count(*) from items; use shop; select database()'], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim().split('\n')).toEqual(['3', server.database]);
    }
    const denied = spawnSync(cli, ['--no-defaults', '-h', '127.0.0.1', '-P', String(nativePort), '-u', 'web', `-p${PASSWORD}`, 'shop', '-e', 'use mysql'], { encoding: 'utf8' });
    expect(denied.stderr).toMatch(/ERROR 1044 .*to database 'mysql'/);
  });
});

/** Waits until `check` holds: workers report metrics and audit lines asynchronously. */
async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('metrics carry protocol="mysql"; audit lines name the binding, statement, class and rows', async () => {
  await eventually(async () => (await sempipe.metric('sempipe_connections_total', { binding: NATIVE, protocol: 'mysql' })) > 0);
  await eventually(async () => (await sempipe.metric('sempipe_queries_total', { binding: NATIVE, protocol: 'mysql', class: 'select', outcome: 'ok' })) > 0);
  await eventually(() =>
    sempipe.stdout().split('\n').some((l) => l.includes(`"binding":"${NATIVE}"`) && l.includes('"statement":"SELECT id, name FROM items ORDER BY id","class":"select"') && l.includes('"rows":3')),
  );
});
