// Failure handling of the PostgreSQL pipeline with a real PostgreSQL and the real sempipe binary
// (2 workers): malformed frames on a raw socket after a real login, garbage before startup (closed
// silently, as by PostgreSQL), an
// oversized message, an unreachable upstream, a restarted upstream and a terminated backend. Each
// failure must end only its own connection with PostgreSQL's SQLSTATE, never another session.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { readBackendMessages, type BackendMsg as Msg } from '../harness/backend-reader.js';
import { requireBinary } from '../harness/binaries.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { waitFor } from '../harness/wait.js';

const APP = 'binding::/test::app';
let server: PgServer;
let sempipe: SempipeProcess;
let appPort: number;
let downPort: number;
/** The port of service::/test::down, where nothing listens. */
let unusedUpstream: number;
/** A session opened before every bad connection; it must keep working. */
let keeper: pg.Client;
const clients: pg.Client[] = [];

beforeAll(async () => {
  server = await startPostgres();
  [appPort, downPort] = await Promise.all([freePort(), freePort()]);
  unusedUpstream = await freePort();
  sempipe = await startSempipe({
    env: { UP_PW: server.password },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { max_message_size: 1MiB, auth_timeout: 2s, connect_timeout: 2s, drain_timeout: 3s }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
  - fqn: service::/test::down
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${unusedUpstream}, database: appdb, user: nobody, password: nothing, tls: disable }
bindings:
  - fqn: ${APP}
    service: service::/test::db
    listen: 127.0.0.1:${appPort}
    database: orders
    auth: password
    allow_password_without_tls: true
    clients: [ { user: api, password: api-secret } ]
  - fqn: binding::/test::down
    service: service::/test::down
    listen: 127.0.0.1:${downPort}
    database: orders
    auth: password
    allow_password_without_tls: true
    clients: [ { user: api, password: api-secret } ]
`,
  });
  keeper = await pgClient();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await sempipe?.stop();
  await destroyPostgres(server);
});

async function pgClient(port = appPort): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'api', password: 'api-secret', database: 'orders' });
  c.on('error', () => {});
  clients.push(c);
  await c.connect();
  return c;
}

async function expectKeeperWorks(): Promise<void> {
  expect((await keeper.query('select 41 + 1 as n')).rows[0].n).toBe(42);
}

interface Raw {
  socket: Socket;
  next(): Promise<Msg>;
  /** Every message received until the server closed the connection. */
  closed: Promise<Msg[]>;
}

function rawConnect(port = appPort): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const { next, closed } = readBackendMessages(socket);
    socket.once('connect', () =>
      resolve({
        socket,
        closed,
        next,
      }),
    );
    socket.once('error', reject);
  });
}

/** Logs in over a raw socket with a PasswordMessage (binding auth: password) and waits for ReadyForQuery. */
async function rawLogin(): Promise<Raw> {
  const raw = await rawConnect();
  raw.socket.write(serialize.startup({ user: 'api', database: 'orders' }));
  expect((await raw.next()).name).toBe('authenticationCleartextPassword');
  raw.socket.write(serialize.password('api-secret'));
  for (;;) {
    const m = await raw.next();
    if (m.name === 'error') throw new Error(`login failed: ${String(m.message)}`);
    if (m.name === 'readyForQuery') return raw;
  }
}

async function fatalAfter(raw: Raw, bytes: Buffer): Promise<Msg> {
  raw.socket.write(bytes);
  const msgs = await raw.closed;
  const errors = msgs.filter((m) => m.name === 'error');
  expect(errors).toHaveLength(1);
  expect(errors[0].severity).toBe('FATAL');
  return errors[0];
}

test('a raw login works and a query on it answers (positive control)', async () => {
  const raw = await rawLogin();
  raw.socket.write(serialize.query('select 1'));
  const names: string[] = [];
  for (let m = await raw.next(); m.name !== 'readyForQuery'; m = await raw.next()) names.push(m.name);
  expect(names).toEqual(['rowDescription', 'dataRow', 'commandComplete']);
  raw.socket.end(serialize.end());
  await raw.closed;
});

test('a statement name prepared again after Close is audited with its new text at every later Bind', async () => {
  // Regression guard for the relay's repeated-Bind shortcut: a Close or Parse must end it.
  const raw = await rawLogin();
  const tagged = (tag: string) => `select '${tag}' as t`;
  const execBound = (): Buffer => Buffer.concat([serialize.bind({ statement: 'reused' }), serialize.execute({})]);
  raw.socket.write(
    Buffer.concat([
      serialize.parse({ name: 'reused', text: tagged('first-text') }),
      execBound(),
      execBound(),
      serialize.close({ type: 'S', name: 'reused' }),
      serialize.parse({ name: 'reused', text: tagged('second-text') }),
      execBound(),
      execBound(),
      serialize.sync(),
    ]),
  );
  const rows: string[] = [];
  for (let m = await raw.next(); m.name !== 'readyForQuery'; m = await raw.next()) {
    if (m.name === 'error') throw new Error(String(m.message));
    if (m.name === 'dataRow') rows.push(String((m.fields as unknown[])[0]));
  }
  expect(rows).toEqual(['first-text', 'first-text', 'second-text', 'second-text']);
  raw.socket.end(serialize.end());
  await raw.closed;
  const audited = (): string[] =>
    sempipe
      .stdout()
      .split('\n')
      .filter((l) => l.includes('-text') && l.startsWith('{'))
      .map((l) => String((JSON.parse(l) as { statement: string }).statement));
  await waitFor(async () => audited().length === 4, 'four audit lines');
  expect(audited()).toEqual([tagged('first-text'), tagged('first-text'), tagged('second-text'), tagged('second-text')]);
});

test('a frame with a length below 4 gets FATAL 08P01; the other session keeps working', async () => {
  const raw = await rawLogin();
  const err = await fatalAfter(raw, Buffer.from([0x51, 0, 0, 0, 2]));
  expect(err.code).toBe('08P01');
  expect(err.message).toMatch(/invalid message length/);
  await expectKeeperWorks();
});

test('an absurd length (0x7fffffff) gets FATAL 08P01 at once, nothing is buffered', async () => {
  const raw = await rawLogin();
  const err = await fatalAfter(raw, Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff, 0x73]));
  expect(err.code).toBe('08P01');
  expect(err.message).toMatch(/exceeds the maximum/);
  await expectKeeperWorks();
});

test('a truncated frame followed by close ends that session only', async () => {
  const before = await sempipe.metric('sempipe_sessions_closed_total', { binding: APP });
  const raw = await rawLogin();
  const partial = Buffer.alloc(15);
  partial[0] = 0x51;
  partial.writeUInt32BE(100, 1);
  raw.socket.end(partial);
  await raw.closed;
  await waitFor(async () => (await sempipe.metric('sempipe_sessions_closed_total', { binding: APP })) === before + 1, 'the session to close');
  expect(await sempipe.metric('sempipe_connections_active', { binding: APP })).toBe(1);
  await expectKeeperWorks();
});

test('garbage before the startup packet is closed without a word, as PostgreSQL closes it', async () => {
  const raw = await rawConnect();
  raw.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
  expect(await raw.closed).toEqual([]);
  await expectKeeperWorks();
});

test('a 2 MB query over max_message_size 1MiB gets FATAL 08P01 on that connection only', async () => {
  const big = await pgClient();
  const err = await big.query(`select '${'x'.repeat(2 * 1024 * 1024)}'`).then(() => undefined, (e: unknown) => e as { code?: string; severity?: string });
  expect(err?.code).toBe('08P01');
  expect(err?.severity).toBe('FATAL');
  await expectKeeperWorks();
});

test('an unreachable upstream gets FATAL 08001 naming the service and the kind of failure, not its address (which the operator log has)', async () => {
  const t0 = Date.now();
  const c = new pg.Client({ host: '127.0.0.1', port: downPort, user: 'api', password: 'api-secret', database: 'orders' });
  c.on('error', () => {});
  const err = await c.connect().then(() => undefined, (e: unknown) => e as { code?: string; message: string });
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(err?.code).toBe('08001');
  expect(err?.message).toBe('upstream for service::/test::down is unreachable: connection refused');
  await waitFor(async () => sempipe.stderr().includes(`"upstream":"127.0.0.1:${unusedUpstream}"`), 'the operator log to name the address');
  await expectKeeperWorks();
});

test('a large COPY FROM STDIN (many CopyData frames across chunks) arrives intact', async () => {
  server.sql('create table copy_target (id int, payload text)', server.database);
  const rows = 60_000;
  const input = Array.from({ length: rows }, (_, i) => `${i}\t${'p'.repeat(i % 97)}`).join('\n') + '\n';
  const psql = spawnSync(
    requireBinary('psql'),
    ['-X', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(appPort), '-U', 'api', '-d', 'orders', '-c', '\\copy copy_target from stdin'],
    { input, env: { ...process.env, PGPASSWORD: 'api-secret', PGSSLMODE: 'disable' }, encoding: 'utf8', timeout: 30_000 },
  );
  expect(psql.stderr).toBe('');
  expect(psql.stdout.trim()).toBe(`COPY ${rows}`);
  expect(server.sql('select count(*), sum(length(payload)) from copy_target', server.database)).toBe(
    `${rows}|${Array.from({ length: rows }, (_, i) => i % 97).reduce((a, b) => a + b, 0)}`,
  );
  await expectKeeperWorks();
});

test('a CopyData frame whose header arrives in two TCP segments is relayed exactly once', async () => {
  server.sql('create table split_copy (line text)', server.database);
  const raw = await rawLogin();
  raw.socket.setNoDelay(true);
  raw.socket.write(serialize.query('copy split_copy from stdin'));
  expect((await raw.next()).name).toBe('copyInResponse');
  const data = Buffer.from('split-header-row\n');
  const copyData = Buffer.alloc(5 + data.length);
  copyData[0] = 0x64;
  copyData.writeUInt32BE(4 + data.length, 1);
  data.copy(copyData, 5);
  raw.socket.write(copyData.subarray(0, 3));
  await new Promise((r) => setTimeout(r, 100));
  raw.socket.write(copyData.subarray(3));
  await new Promise((r) => setTimeout(r, 100));
  raw.socket.write(serialize.copyDone());
  const seen: Msg[] = [];
  for (let m = await raw.next(); m.name !== 'readyForQuery'; m = await raw.next()) seen.push(m);
  expect(seen.map((m) => (m.name === 'error' ? `error ${String(m.code)}: ${String(m.message)}` : m.name))).toEqual(['commandComplete']);
  expect(seen[0].text).toBe('COPY 1');
  expect(server.sql('select line from split_copy', server.database)).toBe('split-header-row');
  raw.socket.end(serialize.end());
  await expectKeeperWorks();
});

test('pg_terminate_backend on a session\'s backend: that client gets FATAL 57P01 and is closed, another keeps working', async () => {
  const victim = await pgClient();
  const other = await pgClient();
  const pid = (await victim.query('select pg_backend_pid() as pid')).rows[0].pid as number;
  const gotError = new Promise<{ code?: string }>((r) => victim.on('error', (e) => r(e as { code?: string })));
  const ended = new Promise<void>((r) => victim.once('end', () => r()));
  expect(server.sql(`select pg_terminate_backend(${pid})`)).toBe('t');
  expect((await gotError).code).toBe('57P01');
  await ended;
  expect((await other.query('select 7 as n')).rows[0].n).toBe(7);
  await expectKeeperWorks();
});

test('an upstream restart: existing sessions get an error and close, new sessions afterwards work', async () => {
  const existing = await pgClient();
  const ended = new Promise<void>((r) => existing.once('end', () => r()));
  await server.restart();
  const err = await existing.query('select 1').then(() => undefined, (e: unknown) => e as Error);
  expect(err).toBeInstanceOf(Error);
  await ended;
  const fresh = await pgClient();
  expect((await fresh.query('select 3 as n')).rows[0].n).toBe(3);
  await waitFor(async () => (await sempipe.metric('sempipe_connections_active', { binding: APP })) === 1, 'only the fresh session to remain');
});
