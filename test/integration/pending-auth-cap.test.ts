// Regression test for issue 24 part 5: nothing bounded the connections that have not authenticated,
// so a flood could exhaust descriptors and memory before the auth timeout. Through the real sempipe
// binary (2 workers, `limits.max_pending_auth: 50` each) and a real PostgreSQL: 300 raw sockets that
// send nothing, a third of them never closing their end; past the cap connections get FATAL 53300
// at once and are counted in sempipe_connections_refused_total; a session opened before keeps
// working; a real client (pg) is refused with 53300 while the flood holds the slots and connects and
// queries again once the flood's connections time out; the workers' descriptors return to their
// count before the flood.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const BINDING = 'binding::/test::capped';
const PASSWORD = 'api-secret-91ab';
const CAP = 50;
const WORKERS = 2;
const AUTH_TIMEOUT_MS = 2000;
const FLOOD = 300;

let server: PgServer;
let sempipe: SempipeProcess;
let port: number;

beforeAll(async () => {
  server = await startPostgres();
  port = await freePort();
  sempipe = await startSempipe({
    workers: WORKERS,
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
# No upstream reuse: a session's upstream descriptor closes with it, so the count returns to its baseline.
limits: { max_pending_auth: ${CAP}, auth_timeout: ${AUTH_TIMEOUT_MS}ms, upstream_idle_timeout: 0, drain_timeout: 1s }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }
bindings:
  - fqn: ${BINDING}
    service: service::/test::db
    listen: 127.0.0.1:${port}
    database: orders
    clients: [ { user: api, password: ${PASSWORD} } ]
`,
  });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyPostgres(server);
});

const client = (): pg.Client => new pg.Client({ host: '127.0.0.1', port, user: 'api', password: PASSWORD, database: 'orders', connectionTimeoutMillis: 5000 });

/** Connects and queries; the SQLSTATE of the error when it fails. */
async function connectAndQuery(): Promise<{ ok: true } | { ok: false; code: string }> {
  const c = client();
  try {
    await c.connect();
    await c.query('select 1');
    return { ok: true };
  } catch (err) {
    return { ok: false, code: (err as { code?: string }).code ?? String(err) };
  } finally {
    await c.end().catch(() => {});
  }
}

/** Descriptors held by the worker processes (the primary's children). */
function workerDescriptors(): number {
  const pids = execFileSync('pgrep', ['-P', String(sempipe.child.pid)], { encoding: 'utf8' }).trim().split('\n');
  expect(pids).toHaveLength(WORKERS);
  return pids.reduce((n, pid) => n + readdirSync(`/proc/${pid}/fd`).length, 0);
}

interface FloodSocket {
  socket: Socket;
  received: () => Buffer;
  closedAt: () => number | undefined;
}

/** A socket that sends nothing; with `neverCloses` it also ignores the server's end and never closes its own. */
function floodSocket(neverCloses: boolean): Promise<FloodSocket> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: neverCloses });
  let bytes = Buffer.alloc(0);
  let closedAt: number | undefined;
  socket.on('data', (d: Buffer) => (bytes = Buffer.concat([bytes, d])));
  socket.on(neverCloses ? 'end' : 'close', () => (closedAt ??= Date.now()));
  socket.on('error', () => {});
  return new Promise((resolve) => socket.once('connect', () => resolve({ socket, received: () => bytes, closedAt: () => closedAt })));
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('limits.max_pending_auth', () => {
  test('a flood past the cap is refused at once and counted while sessions and, after the flood, new clients work', async () => {
    const held = client();
    // Its FATAL at shutdown must not hide a failed assertion when the test stops early.
    held.on('error', () => {});
    await held.connect();
    const baseline = workerDescriptors();
    const refusedBefore = await sempipe.metric('sempipe_connections_refused_total', { binding: BINDING, reason: 'pending_auth' });

    const floodStart = Date.now();
    const flood = await Promise.all(Array.from({ length: FLOOD }, (_, i) => floodSocket(i % 3 === 0)));
    // Every worker holds at most CAP of them; the others are answered and closed at once.
    await until(() => flood.filter((f) => f.closedAt() !== undefined).length >= FLOOD - CAP * WORKERS, 'the refusals', 3000);
    const refused = flood.filter((f) => f.received().includes('C53300\0'));
    expect(refused.length).toBe(FLOOD - CAP * WORKERS);
    expect(refused[0]!.received().toString('latin1')).toContain('sorry, too many clients already');
    expect(refused.every((f) => f.closedAt()! - floodStart < AUTH_TIMEOUT_MS)).toBe(true);
    expect(await sempipe.metric('sempipe_connections_pending_auth', { binding: BINDING })).toBe(CAP * WORKERS);

    // An authenticated session is not affected.
    expect((await held.query('select 2 as two')).rows[0].two).toBe(2);

    // A real client is refused while the flood holds the slots, then gets through once they time out.
    const attempts: Array<{ ok: boolean; code?: string }> = [];
    for (;;) {
      const r = await connectAndQuery();
      attempts.push(r);
      if (r.ok) break;
      expect(r.code).toBe('53300');
      expect(Date.now() - floodStart).toBeLessThan(AUTH_TIMEOUT_MS + 3000);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(attempts.length).toBeGreaterThan(1);
    for (let i = 0; i < 6; i++) expect(await connectAndQuery()).toEqual({ ok: true });

    const refusedClients = attempts.filter((a) => !a.ok).length;
    expect(await sempipe.metric('sempipe_connections_refused_total', { binding: BINDING, reason: 'pending_auth' })).toBe(refusedBefore + refused.length + refusedClients);

    // The accepted flood connections were closed at the auth timeout, without a word as PostgreSQL
    // closes them; even those whose client never closes are gone from the workers, whose
    // descriptors are back to where they were.
    await until(async () => (await sempipe.metric('sempipe_connections_pending_auth', { binding: BINDING })) === 0, 'no pending connection', AUTH_TIMEOUT_MS + 3000);
    const timedOut = flood.filter((f) => !refused.includes(f));
    expect(timedOut.every((f) => f.received().length === 0)).toBe(true);
    await until(() => workerDescriptors() === baseline, `worker descriptors back at ${baseline}`, 5000);
    expect((await held.query('select 3 as three')).rows[0].three).toBe(3);
    await held.end();
    flood.forEach((f) => f.socket.destroy());
  });
});
