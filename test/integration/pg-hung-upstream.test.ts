// An upstream that stops answering, with the real sempipe binary (one worker, so every session meets
// the same pool of upstream connections) in front of a real PostgreSQL whose processes are stopped
// with SIGSTOP, and a TCP server that accepts connections and never sends a byte. A statement's
// limit (statement_timeout, max_rows) answers the client within the limit plus a second even when
// the server takes no cancel, and then ends the session with FATAL 08006 naming the service (never
// its address) and destroys that upstream connection; authentication and the reset between
// sessions (DISCARD ALL) are given up after connect_timeout. Other sessions keep working. A client
// that reads slowly does not make a healthy server look hung.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { readBackendMessages, type BackendMsg as Msg } from '../harness/backend-reader.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { errorOf } from '../harness/run.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const BINDING = 'binding::/test::hung';
const SERVICE = 'service::/test::db';
const SILENT_SERVICE = 'service::/test::silent';
const POLICY = 'policy::/test::limits';
const SLOW_BINDING = 'binding::/test::slow';
let server: PgServer;
let sempipe: SempipeProcess;
let port: number;
let slowPort: number;
let silentPort: number;
let silentUpstreamPort: number;
let silent: Server;
const silentSockets: Socket[] = [];
const clients: pg.Client[] = [];
/** Opened before anything is stopped; its own backend never is, so it must keep working. */
let keeper: pg.Client;

beforeAll(async () => {
  server = await startPostgres();
  // Accepts and never answers: a hung server as sempipe sees it (it speaks no protocol at all).
  silent = createServer((s) => {
    s.on('error', () => {});
    silentSockets.push(s);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  silentUpstreamPort = (silent.address() as AddressInfo).port;
  [port, slowPort, silentPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const binding = (fqn: string, service: string, listen: number): string => `  - fqn: ${fqn}
    service: ${service}
    listen: 127.0.0.1:${listen}
    database: orders
    auth: password
    allow_password_without_tls: true
    clients: [ { user: api, password: api-secret } ]
`;
  sempipe = await startSempipe({
    workers: 1,
    env: { UP_PW: server.password },
    yaml: `admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { connect_timeout: 1s, cancel_grace: 300ms, auth_timeout: 5s, drain_timeout: 1s, upstream_idle_timeout: 30s }
audit: { enabled: false }
services:
  - fqn: ${SERVICE}
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
  - fqn: ${SILENT_SERVICE}
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${silentUpstreamPort}, database: appdb, user: nobody, password: nothing, tls: disable }
bindings:
${binding(BINDING, SERVICE, port)}${binding(SLOW_BINDING, SERVICE, slowPort)}${binding('binding::/test::silent', SILENT_SERVICE, silentPort)}
policies:
  - fqn: ${POLICY}
    realm: ${BINDING}
    limits: { statement_timeout: 1s, max_rows: 1000 }
  - fqn: policy::/test::timeout-only
    realm: ${SLOW_BINDING}
    limits: { statement_timeout: 1s }
`,
  });
  keeper = await pgClient('hung-keeper');
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await sempipe?.stop();
  for (const s of silentSockets) s.destroy();
  await new Promise((r) => silent?.close(r));
  await destroyPostgres(server);
});

async function pgClient(applicationName: string, listen = port): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: listen, user: 'api', password: 'api-secret', database: 'orders', application_name: applicationName });
  c.on('error', () => {});
  clients.push(c);
  await c.connect();
  return c;
}

const pidOf = async (c: pg.Client): Promise<number> => (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;

async function expectKeeperWorks(): Promise<void> {
  expect((await keeper.query('select 41 + 1 as n')).rows[0].n).toBe(42);
}

/** The backend's pid as long as it is connected, seen through the keeper (the postmaster may be stopped). */
const backendAlive = async (pid: number): Promise<boolean> =>
  (await keeper.query('select count(*)::int as n from pg_stat_activity where pid = $1', [pid])).rows[0].n === 1;

/** Stops `pids` with SIGSTOP (they answer nothing, not even TCP-level closes); the result resumes them. */
function freeze(pids: number[]): () => void {
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  return () => {
    for (const pid of pids) process.kill(pid, 'SIGCONT');
  };
}

const postmasterPid = (): number => Number(readFileSync(`${server.dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);

/** `p`, or a rejection after `ms`: a test of a hang must fail rather than hang itself. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A client-facing message names the service, never where the server is. */
function expectNoAddress(message: unknown, upstreamPort: number): void {
  expect(String(message)).not.toContain('127.0.0.1');
  expect(String(message)).not.toContain(String(upstreamPort));
}

interface Raw {
  socket: Socket;
  next(): Promise<Msg>;
  /** Every message received after the login so far. */
  received: Msg[];
  /** `received` once sempipe closed the connection. */
  closed: Promise<Msg[]>;
}

/** Logs in over a raw socket (binding auth: password) and waits for ReadyForQuery. */
async function rawLogin(applicationName: string, listen = port): Promise<Raw> {
  const socket = connect(listen, '127.0.0.1');
  const { next, all, closed } = readBackendMessages(socket);
  socket.write(serialize.startup({ user: 'api', database: 'orders', application_name: applicationName }));
  expect((await next()).name).toBe('authenticationCleartextPassword');
  socket.write(serialize.password('api-secret'));
  for (let m = await next(); m.name !== 'readyForQuery'; m = await next()) if (m.name === 'error') throw new Error(String(m.message));
  all.splice(0);
  return { socket, next, received: all, closed };
}

async function rawPid(raw: Raw): Promise<number> {
  raw.socket.write(serialize.query('select pg_backend_pid()'));
  let pid = 0;
  for (let m = await raw.next(); m.name !== 'readyForQuery'; m = await raw.next()) if (m.name === 'dataRow') pid = Number((m.fields as string[])[0]);
  return pid;
}

const describeError = (m: Msg): string => (m.name === 'error' ? `${String(m.severity)} ${String(m.code)}` : m.name);

test('statement_timeout with the server stopped: 57014 within the limit + 1 s, then FATAL 08006 naming the service; the backend is never reused', async () => {
  const raw = await rawLogin('hung-timeout');
  const pid = await rawPid(raw);
  const closedBefore = await sempipe.metric('sempipe_sessions_closed_total', { binding: BINDING, reason: 'upstream' });
  const thaw = freeze([postmasterPid(), pid]);
  try {
    const started = Date.now();
    const from = raw.received.length;
    // The stopped backend does not even read it; the limit counts from its receipt by sempipe.
    raw.socket.write(serialize.query('select pg_sleep(2)'));
    const received = (await within(raw.closed, 6000, 'answer')).slice(from);
    const took = Date.now() - started;
    // The limit's error, then the end of the session: no ReadyForQuery, nothing of the server's.
    expect(received.map(describeError)).toEqual(['ERROR 57014', 'FATAL 08006']);
    expect(received[0]!.message).toBe(`statement stopped by sempipe policy ${POLICY}: it ran longer than 1000ms (rule statement_timeout)`);
    expect(received[1]!.message).toBe(`terminating connection: the upstream of ${SERVICE} did not answer the cancel of a statement stopped by statement_timeout within 300 ms`);
    expectNoAddress(received[1]!.message, server.port);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(1000 + 1000);
    await expectKeeperWorks();
  } finally {
    thaw();
  }
  expect(await sempipe.metric('sempipe_sessions_closed_total', { binding: BINDING, reason: 'upstream' })).toBe(closedBefore + 1);
  // sempipe destroyed its end: the resumed backend reads the statement (a cancel that reaches an idle
  // backend is dropped), runs it, finds the connection gone and ends.
  await until(async () => !(await backendAlive(pid)), 'the stopped backend to end', 15_000);
  const next = await pgClient('hung-timeout');
  expect(await pidOf(next)).not.toBe(pid);
  await next.end();
});

test('max_rows while the server takes no cancel (postmaster stopped): 54000 at once, then FATAL 08006; the backend loses its connection', async () => {
  const victim = await pgClient('hung-rows');
  const pid = await pidOf(victim);
  const fatal = new Promise<{ code?: string; severity?: string; message: string }>((r) => victim.on('error', r));
  const thaw = freeze([postmasterPid()]);
  try {
    const started = Date.now();
    // Streams rows from the first moment; the backend itself is not stopped and keeps sending them.
    const err = await within(errorOf(victim.query("select a.oid, repeat('x', 100) from pg_class a, pg_class b, pg_class c")), 6000, 'error');
    const took = Date.now() - started;
    expect(err.code).toBe('54000');
    expect(err.message).toBe(`statement stopped by sempipe policy ${POLICY}: the result has more than 1000 rows (rule max_rows)`);
    expect(await within(fatal, 2000, 'FATAL')).toMatchObject({
      code: '08006',
      severity: 'FATAL',
      message: `terminating connection: the upstream of ${SERVICE} did not answer the cancel of a statement stopped by max_rows within 300 ms`,
    });
    // A thousand rows arrive in a fraction of a second; the error follows within the grace (cancel_grace).
    expect(took).toBeLessThan(2500);
    // The upstream connection was destroyed, not kept: the streaming backend hits the closed socket and ends.
    await until(async () => !(await backendAlive(pid)), 'the streaming backend to end');
    await expectKeeperWorks();
  } finally {
    thaw();
  }
});

test('a new session while the postmaster is stopped gets FATAL 08001 after connect_timeout, naming the service and not its address', async () => {
  const thaw = freeze([postmasterPid()]);
  try {
    const started = Date.now();
    // Its own application_name: no idle upstream connection of an earlier session may serve it.
    const err = await within(errorOf(pgClient('hung-auth')), 6000, 'error');
    const took = Date.now() - started;
    expect(err).toMatchObject({ code: '08001', message: `upstream for ${SERVICE} is unreachable: timed out after 1000 ms while authenticating` });
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(3000);
    await expectKeeperWorks();
  } finally {
    thaw();
  }
  await pgClient('hung-auth');
});

test('a server that accepts TCP and never answers: FATAL 08001 after connect_timeout; the address goes to the operator log only', async () => {
  const started = Date.now();
  const err = await within(errorOf(pgClient('silent', silentPort)), 6000, 'error');
  const took = Date.now() - started;
  expect(err).toMatchObject({ code: '08001', message: `upstream for ${SILENT_SERVICE} is unreachable: timed out after 1000 ms while authenticating` });
  expectNoAddress(err.message, silentUpstreamPort);
  expect(took).toBeGreaterThanOrEqual(900);
  expect(took).toBeLessThan(3000);
  await until(async () => sempipe.stderr().includes(`"upstream":"127.0.0.1:${silentUpstreamPort}"`), 'the operator log to name the address');
  await expectKeeperWorks();
});

test('a backend that does not answer the reset (DISCARD ALL) within connect_timeout is given up, never pooled', async () => {
  const name = 'hung-reset';
  const c = await pgClient(name);
  const pid = await pidOf(c);
  const thaw = freeze([pid]);
  try {
    await c.end();
    // connect_timeout is 1s: by now sempipe has given the reset up and closed the connection.
    await new Promise((r) => setTimeout(r, 1500));
  } finally {
    thaw();
  }
  // Resumed, the backend answers the reset on a connection that is gone, and ends; had sempipe
  // still waited, it would have pooled it and handed it to the next session.
  await until(async () => !(await backendAlive(pid)), 'the backend to end');
  const next = await pgClient(name);
  expect(await pidOf(next)).not.toBe(pid);
  await expectKeeperWorks();
});

test('statement_timeout while the client reads slowly: the server, blocked on its writes, still answers the cancel in time, and the session stays', async () => {
  const raw = await rawLogin('slow-reader', slowPort);
  const from = raw.received.length;
  raw.socket.pause();
  // About 170 MB of rows: the client's buffers fill at once, and the server blocks on its writes,
  // where PostgreSQL takes no cancel. sempipe reads on past the limit, dropping the rows.
  raw.socket.write(serialize.query("select repeat('x', 1000) from pg_class a, pg_class b"));
  // Past the limit (1s) and its grace (300ms).
  await new Promise((r) => setTimeout(r, 2000));
  raw.socket.resume();
  for (let m = await raw.next(); m.name !== 'readyForQuery'; m = await raw.next());
  const outcome = raw.received.slice(from).filter((m) => m.name !== 'dataRow').map(describeError);
  expect(outcome).toEqual(['rowDescription', 'ERROR 57014', 'readyForQuery']);
  raw.socket.write(serialize.query('select 1'));
  const next: string[] = [];
  for (let m = await raw.next(); m.name !== 'readyForQuery'; m = await raw.next()) next.push(describeError(m));
  expect(next).toEqual(['rowDescription', 'dataRow', 'commandComplete']);
  raw.socket.end(serialize.end());
});
