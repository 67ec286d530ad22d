// Bad input and failures on the MySQL pipeline through the real sempipe binary: malformed packets
// (a length over the limit, sequence ids out of order, a truncated or garbage handshake) close only
// that connection with an ERR; an upstream that is down or killed mid-session reaches the client
// as an ERR, never a hang; other connections keep working throughout.
import net from 'node:net';
import fc from 'fast-check';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { nativeScramble } from '../../protocols/mysql/auth/native-password.js';
import { Cap } from '../../protocols/mysql/constants.js';
import { handshakeResponse, packet, parseErr, parseServerHandshake } from '../../protocols/mysql/messages.js';
import { destroyMariaDb, startMariaDb, type MariaDbServer } from '../harness/mariadb-server.js';
import { freePorts } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const PASSWORD = 'web-secret';
let server: MariaDbServer;
let sempipe: SempipeProcess;
let shopPort: number;
let downPort: number;

beforeAll(async () => {
  server = await startMariaDb();
  let deadPort: number;
  [shopPort, downPort, deadPort] = await freePorts(3);
  const binding = (fqn: string, service: string, p: number): string =>
    `  - { fqn: ${fqn}, service: ${service}, listen: 127.0.0.1:${p}, database: shop, auth: mysql_native_password, clients: [ { user: web, password: ${PASSWORD} } ] }`;
  sempipe = await startSempipe({
    workers: 1,
    env: { UP_PW: server.password },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 1s, connect_timeout: 2s, drain_timeout: 1s, max_message_size: 1MiB }
services:
  - { fqn: service::/test::shop, protocol: mysql, upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable } }
  - { fqn: service::/test::down, protocol: mysql, upstream: { host: 127.0.0.1, port: ${deadPort}, database: x, user: u, password: p, tls: disable } }
bindings:
${binding('binding::/test::shop', 'service::/test::shop', shopPort)}
${binding('binding::/test::down', 'service::/test::down', downPort)}
`,
  });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyMariaDb(server);
});

const connect = (port = shopPort): Promise<mysql.Connection> =>
  mysql.createConnection({ host: '127.0.0.1', port, user: 'web', password: PASSWORD, database: 'shop' });

/** A raw connection: reads whole packets; `login` runs mysql_native_password with the right password. */
async function raw(): Promise<{ socket: net.Socket; next(): Promise<{ seq: number; payload: Buffer } | undefined>; login(): Promise<void> }> {
  const socket = net.connect(shopPort, '127.0.0.1');
  let buffered = Buffer.alloc(0);
  let closed = false;
  const waiters: Array<() => void> = [];
  socket.on('data', (d: Buffer) => { buffered = Buffer.concat([buffered, d]); waiters.splice(0).forEach((w) => w()); });
  socket.on('close', () => { closed = true; waiters.splice(0).forEach((w) => w()); });
  socket.on('error', () => {});
  const next = async (): Promise<{ seq: number; payload: Buffer } | undefined> => {
    for (;;) {
      if (buffered.length >= 4 && buffered.length >= 4 + buffered.readUIntLE(0, 3)) {
        const len = buffered.readUIntLE(0, 3);
        const p = { seq: buffered[3]!, payload: buffered.subarray(4, 4 + len) };
        buffered = buffered.subarray(4 + len);
        return p;
      }
      if (closed) return undefined;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  const login = async (): Promise<void> => {
    const hs = parseServerHandshake((await next())!.payload)!;
    const caps = Cap.Protocol41 | Cap.SecureConnection | Cap.PluginAuth | Cap.PluginAuthLenencClientData | Cap.ConnectWithDb | Cap.DeprecateEof;
    socket.write(handshakeResponse({ capabilities: caps, collation: 45, user: 'web', authResponse: nativeScramble(PASSWORD, hs.scramble), database: 'shop', plugin: 'mysql_native_password', attributes: undefined }, 1));
    expect((await next())!.payload[0]).toBe(0);
  };
  return { socket, next, login };
}

test.each([
  ['a command longer than max_message_size', (s: net.Socket) => s.write(Buffer.from([0xff, 0xff, 0x7f, 0, 3])), 1153],
  ['a command with a sequence id out of order', (s: net.Socket) => s.write(packet(Buffer.from('\x03select 1'), 5)), 1156],
  ['a continuation packet with the wrong sequence id', (s: net.Socket) => s.write(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0]), Buffer.alloc(0xffffff, 0x20), packet(Buffer.from('x'), 7)])), 1153],
])('%s closes only that connection with an ERR', async (_what, send, errno) => {
  const bystander = await connect();
  const c = await raw();
  await c.login();
  send(c.socket);
  const reply = await c.next();
  expect(parseErr(reply!.payload)?.errno).toBe(errno);
  expect(await c.next()).toBeUndefined();
  const [rows] = await bystander.query('SELECT 1 AS ok');
  expect(rows).toEqual([{ ok: 1 }]);
  await bystander.end();
});

test('a garbage handshake response gets ERR 1043; a truncated one times out with ERR; neither affects others', async () => {
  const bystander = await connect();
  const garbage = await raw();
  await garbage.next();
  garbage.socket.write(packet(Buffer.from('not a handshake response at all, not even close'), 1));
  expect(parseErr((await garbage.next())!.payload)?.errno).toBe(1043);
  const truncated = await raw();
  await truncated.next();
  truncated.socket.write(Buffer.from([0x40, 0, 0, 1, 0x0d, 0xa2]));
  expect(parseErr((await truncated.next())!.payload)?.message).toMatch(/timed out/);
  expect(await truncated.next()).toBeUndefined();
  const [rows] = await bystander.query('SELECT 2 AS ok');
  expect(rows).toEqual([{ ok: 2 }]);
  await bystander.end();
});

test('fast-check: arbitrary bytes as the handshake response never crash sempipe or hang the connection', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.boolean(), async (bytes, framed) => {
      const c = await raw();
      await c.next();
      c.socket.end(framed ? packet(Buffer.from(bytes), 1) : Buffer.from(bytes));
      for (let p = await c.next(); p !== undefined; p = await c.next()) expect(p.payload[0]).toBe(0xff);
    }),
    { numRuns: 40 },
  );
  const bystander = await connect();
  const [rows] = await bystander.query('SELECT 4 AS ok');
  expect(rows).toEqual([{ ok: 4 }]);
  await bystander.end();
});

test('an upstream that is down gets the client an ERR naming the service, not a hang', async () => {
  const err = await connect(downPort).then(() => undefined, (e: { errno: number; message: string }) => e);
  expect(err?.errno).toBe(2013);
  expect(err?.message).toContain('service::/test::down');
});

test('an upstream connection killed mid-session ends that session with an ERR; new sessions work', async () => {
  const victim = await connect();
  const [ids] = await victim.query('SELECT CONNECTION_ID() AS id');
  const upstreamId = (ids as Array<{ id: number }>)[0]!.id;
  server.sql(`KILL ${upstreamId}`);
  const err = await victim.query('SELECT 1').then(() => undefined, (e: Error) => e);
  expect(err).toBeDefined();
  const fresh = await connect();
  const [rows] = await fresh.query('SELECT 3 AS ok');
  expect(rows).toEqual([{ ok: 3 }]);
  await fresh.end();
  victim.destroy();
});
