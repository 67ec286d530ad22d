// A worker killed with SIGKILL while clients keep connecting, with the real sempipe binary (2
// workers) in front of a real PostgreSQL, ten times over: every connection opened around the
// death gets an answer (a query result or a clean error) within auth_timeout + 1 s, the primary
// holds no client socket afterwards and its descriptor count is back at its baseline, the dead
// worker's sessions get session_end lines with reason worker_lost (counted in
// sempipe_sessions_closed_total), and no session id appears twice in the audit log.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import pg from 'pg';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { auditLinesOf, startSempipe, waitReady, type SempipeProcess } from '../harness/sempipe-process.js';
import { waitFor } from '../harness/wait.js';

const BINDING = 'binding::/test::app';
const AUTH_TIMEOUT_MS = 1000;
const TRIALS = 10;
/** A new connection this often while the worker dies. */
const STORM_INTERVAL_MS = 4;
const STORM_MS = 240;
/** When, after the first connection of the storm, the worker is killed. */
const KILL_AT_MS = 80;

let server: PgServer;
let sempipe: SempipeProcess;
let port: number;
const held: pg.Client[] = [];
/** Held clients whose connection has ended. */
const gone = new Set<pg.Client>();

beforeAll(async () => {
  server = await startPostgres();
  port = await freePort();
  // md5 keeps the clients' own work per login small, so a burst of logins measures sempipe.
  sempipe = await startSempipe({
    env: { UP_PW: server.password },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
  token: death-token
limits: { auth_timeout: ${AUTH_TIMEOUT_MS}ms, drain_timeout: 2s }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
bindings:
  - fqn: ${BINDING}
    service: service::/test::db
    listen: 127.0.0.1:${port}
    database: orders
    auth: md5
    clients: [ { user: api, password: api-secret } ]
`,
  });
});

afterAll(async () => {
  await Promise.all(held.map((c) => c.end().catch(() => {})));
  await sempipe?.stop();
  await destroyPostgres(server);
});

const options = (): pg.ClientConfig => ({ host: '127.0.0.1', port, user: 'api', password: 'api-secret', database: 'orders' });

interface AuditLine {
  event: string;
  session?: string;
  reason?: string;
  binding?: string;
}

const ADMIN_HEADERS = { authorization: 'Bearer death-token' };

async function liveSessions(): Promise<Array<{ id: string; client_address: string }>> {
  return ((await (await fetch(`${sempipe.adminUrl}/v1/sessions`, { headers: ADMIN_HEADERS })).json()) as { sessions: Array<{ id: string; client_address: string }> }).sessions;
}

const auditLines = (): AuditLine[] => auditLinesOf<AuditLine>(sempipe);

/** Rejects naming `what` when `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The worker processes of the primary, by worker slot (read from each one's environment). */
function workerPids(primary: number): Map<number, number> {
  const children = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const bySlot = new Map<number, number>();
  for (const pid of children) {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const slot = env.find((e) => e.startsWith('SEMPIPE_WORKER_INDEX='));
    if (slot !== undefined) bySlot.set(Number(slot.split('=')[1]), pid);
  }
  return bySlot;
}

/** Local ports of the process's TCP sockets, by socket inode (IPv4 and IPv6 tables of its namespace). */
function socketPorts(pid: number): Map<string, { port: number; listening: boolean }> {
  const ports = new Map<string, { port: number; listening: boolean }>();
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      ports.set(f[9]!, { port: parseInt(f[1]!.split(':')[1]!, 16), listening: f[3] === '0A' });
    }
  }
  return ports;
}

/**
 * The primary's open descriptors, without the connections to its admin port (the test's own
 * requests come and go), and how many of them are client connections of the binding.
 */
function primaryDescriptors(pid: number): { count: number; clientSockets: number } {
  const adminPort = Number(new URL(sempipe.adminUrl).port);
  const ports = socketPorts(pid);
  let count = 0;
  let clientSockets = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const tcp = inode === undefined ? undefined : ports.get(inode);
    if (tcp?.port === adminPort && !tcp.listening) continue;
    if (tcp?.port === port && !tcp.listening) clientSockets++;
    count++;
  }
  return { count, clientSockets };
}

interface Held {
  client: pg.Client;
  /** The worker slot that carries the session. */
  slot: number;
  /** The client's own address, as the session list shows it. */
  address: string;
}

/** Opens sessions until each worker holds at least one. */
async function holdSessionsOnBothWorkers(): Promise<Held[]> {
  const sessions: Held[] = [];
  for (let i = 0; i < 60 && new Set(sessions.map((s) => s.slot)).size < 2; i++) {
    const client = new pg.Client(options());
    client.on('error', () => {});
    client.once('end', () => gone.add(client));
    held.push(client);
    await within(client.connect(), AUTH_TIMEOUT_MS + 1000, 'a login between two trials');
    // sempipe's BackendKeyData carries the owning worker in the high bits of the process id.
    const { processID, connection } = client as unknown as { processID: number; connection: { stream: { localPort: number } } };
    sessions.push({ client, slot: processID >>> 24, address: `127.0.0.1:${connection.stream.localPort}` });
  }
  expect(new Set(sessions.map((s) => s.slot))).toEqual(new Set([1, 2]));
  return sessions;
}

interface Attempt {
  ms: number;
  outcome: 'ok' | 'error' | 'no answer';
  detail?: string;
}

/** One client arriving: log in and run a query; how long until it had its answer, and which. */
async function attempt(): Promise<Attempt> {
  const started = performance.now();
  const c = new pg.Client(options());
  c.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  const answer = (async (): Promise<Attempt> => {
    try {
      await c.connect();
      const r = await c.query('select 1 as one');
      if (r.rows[0].one !== 1) return { ms: performance.now() - started, outcome: 'error', detail: 'wrong result' };
      return { ms: performance.now() - started, outcome: 'ok' };
    } catch (e) {
      return { ms: performance.now() - started, outcome: 'error', detail: (e as Error).message };
    }
  })();
  const deadline = new Promise<Attempt>((resolve) => {
    timer = setTimeout(() => resolve({ ms: performance.now() - started, outcome: 'no answer' }), AUTH_TIMEOUT_MS + 1000);
  });
  const result = await Promise.race([answer, deadline]);
  clearTimeout(timer);
  // end() would wait for a server that may never answer: only a served client says goodbye.
  if (result.outcome === 'ok') await c.end().catch(() => {});
  else (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  return result;
}

test(`${TRIALS} workers killed while clients connect every ${STORM_INTERVAL_MS} ms: every client is answered, nothing leaks, lost sessions are audited`, async () => {
  const primary = sempipe.child.pid!;
  const baseline = primaryDescriptors(primary);
  expect(baseline.clientSockets).toBe(0);
  const served: number[] = [];

  for (let trial = 0; trial < TRIALS; trial++) {
    const sessions = await holdSessionsOnBothWorkers();
    const victimSlot = (trial % 2) + 1;
    const victims = sessions.filter((s) => s.slot === victimSlot);
    const victimEnds = victims.map(
      (s) => new Promise<void>((resolve) => s.client.once('end', () => resolve())),
    );
    const listed = await liveSessions();
    const victimIds = victims.map((v) => listed.find((l) => l.client_address === v.address)?.id);
    expect(victimIds.every((id) => id?.startsWith(`${victimSlot}.`))).toBe(true);
    const victimPid = workerPids(primary).get(victimSlot)!;

    const attempts: Array<Promise<Attempt>> = [];
    const stormStart = performance.now();
    let killed = false;
    while (performance.now() - stormStart < STORM_MS) {
      attempts.push(attempt());
      if (!killed && performance.now() - stormStart >= KILL_AT_MS) {
        process.kill(victimPid, 'SIGKILL');
        killed = true;
      }
      await new Promise((r) => setTimeout(r, STORM_INTERVAL_MS));
    }
    const results = await Promise.all(attempts);
    const late = results.filter((r) => r.outcome === 'no answer' || r.ms > AUTH_TIMEOUT_MS + 1000);
    expect(late, `trial ${trial}: clients without an answer within auth_timeout + 1 s`).toEqual([]);
    served.push(results.filter((r) => r.outcome === 'ok').length);

    // The killed worker's own sessions are closed with it, the other worker's stay usable.
    await within(Promise.all(victimEnds), 2000, `trial ${trial}: the end of the killed worker's sessions`);
    for (const s of sessions.filter((s) => s.slot !== victimSlot)) expect((await s.client.query('select 2 as two')).rows[0].two).toBe(2);

    const lostIds = (): Set<string | undefined> => new Set(auditLines().filter((l) => l.reason === 'worker_lost').map((l) => l.session));
    await waitFor(() => victimIds.every((id) => lostIds().has(id)), `trial ${trial}: a worker_lost line for each session of the killed worker`);
    await waitReady(sempipe);
    await waitFor(() => workerPids(primary).size === 2, `trial ${trial}: the replacement worker`);
    await waitFor(() => primaryDescriptors(primary).count === baseline.count, `trial ${trial}: the primary's descriptors back at ${baseline.count}`, 3000).catch(() => {
      throw new Error(`trial ${trial}: the primary holds ${JSON.stringify(primaryDescriptors(primary))} against ${JSON.stringify(baseline)}`);
    });
    expect(primaryDescriptors(primary).clientSockets).toBe(0);
  }

  // Every storm had clients served by a live worker, not only refused ones.
  expect(Math.min(...served)).toBeGreaterThan(0);

  const lines = auditLines();
  // Besides the held sessions, storm sessions the victim had started when it died are lost too.
  const lost = lines.filter((l) => l.event === 'session_end' && l.reason === 'worker_lost');
  for (const l of lost) expect(l).toMatchObject({ binding: BINDING, user: 'api', session: expect.stringMatching(/^[12]\.\d+-\d+$/) });
  const starts = lines.filter((l) => l.event === 'session_start').map((l) => l.session);
  expect(starts.length).toBeGreaterThan(0);
  expect(starts.length - new Set(starts).size, 'session ids used twice').toBe(0);
  const ends = lines.filter((l) => l.event === 'session_end').map((l) => l.session);
  expect(ends.length - new Set(ends).size, 'sessions ended twice').toBe(0);
  await waitFor(
    async () => (await sempipe.metric('sempipe_sessions_closed_total', { binding: BINDING, reason: 'worker_lost' })) === lost.length,
    'sempipe_sessions_closed_total{reason="worker_lost"}',
  );

  // Both worker slots now run a later process: their sessions are listed, and killed, by the new ids.
  const ids = (await liveSessions()).map((s) => s.id);
  expect(ids.length).toBeGreaterThan(0);
  expect(ids.filter((id) => !/^[12]\.([2-9]|\d\d+)-\d+$/.test(id))).toEqual([]);
  const survivors = held.filter((c) => !gone.has(c));
  expect(survivors.length).toBe(ids.length);
  const ended = survivors.map((c) => new Promise<void>((resolve) => c.once('end', () => resolve())));
  for (const id of ids) expect((await fetch(`${sempipe.adminUrl}/v1/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', headers: ADMIN_HEADERS })).status).toBe(204);
  await within(Promise.all(ended), 2000, 'the killed sessions');
});

test('a drain (SIGTERM) ends the open sessions as shutdown, none as worker_lost', async () => {
  const clients = await holdSessionsOnBothWorkers();
  const ids = (await liveSessions()).map((s) => s.id);
  expect(ids).toHaveLength(clients.length);
  const lostBefore = auditLines().filter((l) => l.reason === 'worker_lost').length;
  sempipe.signal('SIGTERM');
  expect(await sempipe.exited).toBe(0);
  const ends = auditLines().filter((l) => l.event === 'session_end' && ids.includes(l.session!));
  expect(ends.map((l) => l.reason)).toEqual(ids.map(() => 'shutdown'));
  expect(auditLines().filter((l) => l.reason === 'worker_lost')).toHaveLength(lostBefore);
});
