// The MariaDB harness itself: a real server starts on its own port and socket, the upstream user
// logs in with its password over TCP (mysql_native_password) and a wrong password is refused.
import { afterAll, beforeAll, expect, test } from 'vitest';
import mysql from 'mysql2/promise';
import { destroyMariaDb, startMariaDb, type MariaDbServer } from '../harness/mariadb-server.js';

let server: MariaDbServer;
beforeAll(async () => { server = await startMariaDb({ tls: true }); });
afterAll(async () => { await destroyMariaDb(server); });

test('the harness server accepts the upstream user with its password and refuses a wrong one', async () => {
  expect(server.port).not.toBe(3306);
  const ok = await mysql.createConnection({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database });
  const [rows] = await ok.query('select current_user() as u, @@port as p');
  expect(rows).toEqual([{ u: `${server.user}@%`, p: server.port }]);
  await ok.end();
  await expect(mysql.createConnection({ host: server.host, port: server.port, user: server.user, password: 'wrong', database: server.database }))
    .rejects.toThrow(/Access denied/);
  expect(server.sql("select plugin from mysql.user where user = 'root'")).toBe('mysql_native_password');
});

test('the harness server speaks TLS with its generated certificate', async () => {
  const c = await mysql.createConnection({ host: server.host, port: server.port, user: server.user, password: server.password, ssl: { rejectUnauthorized: false } });
  const [rows] = await c.query("show status like 'Ssl_cipher'");
  expect((rows as Array<{ Value: string }>)[0]!.Value).not.toBe('');
  await c.end();
});
