// The harness itself: a real server starts on its own port with password auth and stops again.
import { afterAll, beforeAll, expect, test } from 'vitest';
import pg from 'pg';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';

let server: PgServer;
beforeAll(async () => { server = await startPostgres({ tls: true }); });
afterAll(async () => { await destroyPostgres(server); });

test('the harness server accepts the upstream role with its password and refuses a wrong one', async () => {
  const ok = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database });
  await ok.connect();
  expect((await ok.query('select current_user')).rows[0].current_user).toBe(server.user);
  await ok.end();
  const bad = new pg.Client({ host: server.host, port: server.port, user: server.user, password: 'wrong', database: server.database });
  await expect(bad.connect()).rejects.toThrow(/password authentication failed/);
  expect(server.port).not.toBe(5432);
});
