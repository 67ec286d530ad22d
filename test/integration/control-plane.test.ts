// The control plane end to end: the real sempipe binary (2 workers) with admin.token, a real
// PostgreSQL and real clients (pg, psql, postgres.js). Services and bindings created through the
// API serve at once; sessions of both workers are listed and killed; revocation, credential and
// upstream-password rotation, and policy changes reach every worker's open sessions; a restart keeps
// the API-created state; /metrics sums the workers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { errorOf, run, type RunResult } from '../harness/run.js';

const TOKEN = 'cp-test-token-5b1f0c2a9e';
const SERVICE = 'service::/cp::db';
const APP = 'binding::/cp::app';
const OTHER = 'binding::/cp::other';
const DOOMED = 'binding::/cp::doomed';
const enc = encodeURIComponent;

interface Issued {
  fqn: string;
  user: string;
  password: string;
  uri: string;
}

interface Opened {
  client: pg.Client;
  /** The first error the client reports while idle (a FATAL from sempipe), with when it arrived. */
  failure: Promise<{ code?: string; message: string; at: number }>;
  /** The client's own port: sessions list it as their client address. */
  localPort: number;
}

let server: PgServer;
let sempipe: SempipeProcess;
let dir: string;
let upstreamPassword: string;
const issued = new Map<string, Issued>();

function configYaml(): string {
  return `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
  token: ${TOKEN}
limits: { auth_timeout: 5s, drain_timeout: 1s }
state_dir: ./state
`;
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(sempipe.adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

function portOf(b: Issued): number {
  return Number(new URL(b.uri).port);
}

async function open(b: Issued, password = b.password): Promise<Opened> {
  const client = new pg.Client({ host: '127.0.0.1', port: portOf(b), user: b.user, password, database: new URL(b.uri).pathname.slice(1) });
  const failure = new Promise<{ code?: string; message: string; at: number }>((r) =>
    client.on('error', (e) => r({ code: (e as { code?: string }).code, message: e.message, at: Date.now() })),
  );
  await client.connect();
  const localPort = (client as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
  return { client, failure, localPort };
}

/**
 * Opens at least `min` sessions, and more until both workers carry some: the kernel gives each
 * connection to whichever worker accepts first (sempipe's BackendKeyData names it in the high bits
 * of the process id).
 */
async function openOnBothWorkers(b: Issued, min: number): Promise<Opened[]> {
  const opened: Opened[] = [];
  const workers = (): Set<number> => new Set(opened.map((o) => (o.client as unknown as { processID: number }).processID >>> 24));
  while (opened.length < min || (workers().size < 2 && opened.length < 40)) opened.push(await open(b));
  return opened;
}

async function connectError(b: Issued, password: string): Promise<{ code?: string; message: string } | undefined> {
  const client = new pg.Client({ host: '127.0.0.1', port: portOf(b), user: b.user, password, database: new URL(b.uri).pathname.slice(1) });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
    return undefined;
  } catch (err) {
    return err as { code?: string; message: string };
  } finally {
    await client.end().catch(() => {});
  }
}

function psql(uri: string, sql: string): Promise<RunResult> {
  return run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql, uri]);
}

/** /readyz answers 200 only once every worker has applied the latest config generation. */
async function workersApplied(timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await fetch(`${sempipe.adminUrl}/readyz`)).status !== 200) {
    if (Date.now() > deadline) throw new Error('the workers did not apply the change in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function sessions(): Promise<Array<Record<string, any>>> {
  const r = await api('GET', '/v1/sessions');
  expect(r.status).toBe(200);
  return r.body.sessions;
}

const workerOf = (id: string): string => id.split('-')[0]!;

async function createBinding(fqn: string): Promise<Issued> {
  const r = await api('POST', '/v1/bindings', { fqn, service: SERVICE, database: 'orders' });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  issued.set(fqn, r.body);
  return r.body as Issued;
}

async function closeAll(list: Opened[]): Promise<void> {
  await Promise.all(list.map((o) => o.client.end().catch(() => {})));
}

beforeAll(async () => {
  server = await startPostgres();
  upstreamPassword = server.password;
  server.sql(`set role ${server.user}; create table notes (id serial primary key, body text);`, server.database);
  dir = mkdtempSync(join(tmpdir(), 'sempipe-cp-'));
  sempipe = await startSempipe({ workers: 2, dir, yaml: configYaml() });
  const svc = await api('POST', '/v1/services', {
    fqn: SERVICE,
    protocol: 'postgres',
    upstream: { host: '127.0.0.1', port: server.port, database: server.database, user: server.user, password: upstreamPassword, tls: 'disable' },
  });
  expect(svc.status, JSON.stringify(svc.body)).toBe(201);
  for (const fqn of [APP, OTHER, DOOMED]) await createBinding(fqn);
  await workersApplied();
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyPostgres(server);
  rmSync(dir, { recursive: true, force: true });
});

describe('bindings created through the API', () => {
  test('the issued URI works with psql and pg; the session runs as the upstream role; the upstream password never reaches the client', async () => {
    const app = issued.get(APP)!;
    expect(app.user).toBe('app');
    expect(app.uri).toMatch(/^postgres:\/\/app:[^@]+@127\.0\.0\.1:\d+\/orders$/);
    expect(app.password.length).toBeGreaterThanOrEqual(32);
    for (const text of [JSON.stringify(issued.get(APP)), JSON.stringify((await api('GET', `/v1/services/${enc(SERVICE)}`)).body), JSON.stringify((await api('GET', '/v1/bindings')).body)]) {
      expect(text).not.toContain(upstreamPassword);
    }
    expect(JSON.stringify((await api('GET', '/v1/bindings')).body)).not.toContain(app.password);

    const viaPsql = await psql(app.uri, 'select current_user, current_database()');
    expect(viaPsql.stderr).toBe('');
    expect(viaPsql.stdout.trim()).toBe(`${server.user}|${server.database}`);

    const { client } = await open(app);
    const row = (await client.query('select current_user as u, session_user as s')).rows[0];
    expect(row).toEqual({ u: server.user, s: server.user });
    await client.end();

    const sql = postgres(app.uri, { max: 1, onnotice: () => {} });
    expect((await sql`select current_user as u`)[0]!.u).toBe(server.user);
    await sql.end();

    // The issued credentials are sempipe's own: they do not work against the service directly.
    const direct = new pg.Client({ host: '127.0.0.1', port: server.port, user: app.user, password: app.password, database: server.database });
    expect((await errorOf(direct.connect())).code).toBe('28P01');
  });
});

describe('sessions', () => {
  test('GET /v1/sessions lists the sessions of both workers; DELETE closes exactly one with 57P01; unknown ids are 404', async () => {
    const app = issued.get(APP)!;
    const opened = await openOnBothWorkers(app, 6);
    for (const [i, o] of opened.entries()) for (let k = 0; k <= i; k++) await o.client.query('select $1::int as k', [k]);

    const list = (await sessions()).filter((s) => s.binding === APP);
    expect(list).toHaveLength(opened.length);
    expect(new Set(list.map((s) => workerOf(s.id))).size).toBe(2);
    for (const [i, o] of opened.entries()) {
      const s = list.find((x) => x.client_address === `127.0.0.1:${o.localPort}`);
      expect(s, `session of client ${i}`).toBeDefined();
      expect(s).toMatchObject({ binding: APP, user: 'app' });
      expect(s!.statements).toBe(i + 1);
      expect(s!.bytes_in).toBeGreaterThan(0);
      expect(s!.bytes_out).toBeGreaterThan(0);
      expect(Date.now() - Date.parse(s!.started_at)).toBeLessThan(60_000);
    }

    const victim = opened[3]!;
    const victimId = list.find((x) => x.client_address === `127.0.0.1:${victim.localPort}`)!.id;
    expect((await api('DELETE', `/v1/sessions/${enc(victimId)}`)).status).toBe(204);
    const err = await victim.failure;
    expect(err.code).toBe('57P01');
    for (const [i, o] of opened.entries()) {
      if (i !== 3) expect((await o.client.query('select 7 as n')).rows[0].n).toBe(7);
    }
    await eventually(async () => !(await sessions()).some((s) => s.id === victimId));
    expect((await sessions()).filter((s) => s.binding === APP)).toHaveLength(opened.length - 1);

    const unknown = await api('DELETE', `/v1/sessions/${enc(victimId)}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ error: 'not_found' });
    expect((await api('DELETE', '/v1/sessions/9-424242')).status).toBe(404);
    expect((await api('DELETE', '/v1/sessions/nonsense')).status).toBe(404);
    await closeAll(opened);
  });

  test('/metrics sums both workers: connections_active equals the open sessions spread over the two', async () => {
    const app = issued.get(APP)!;
    await eventually(async () => (await sempipe.metric('sempipe_connections_active', { binding: APP })) === 0);
    const opened = await openOnBothWorkers(app, 5);
    const n = opened.length;
    const list = (await sessions()).filter((s) => s.binding === APP);
    expect(list).toHaveLength(n);
    expect(new Set(list.map((s) => workerOf(s.id))).size).toBe(2);
    expect(await sempipe.metric('sempipe_connections_active', { binding: APP })).toBe(n);
    const before = await sempipe.metric('sempipe_connections_total', { binding: APP });
    await closeAll(opened.splice(0, 2));
    await eventually(async () => (await sempipe.metric('sempipe_connections_active', { binding: APP })) === n - 2);
    expect(await sempipe.metric('sempipe_connections_total', { binding: APP })).toBe(before);
    await closeAll(opened);
  });
});

describe('real-time changes', () => {
  test('DELETE /v1/bindings/{fqn} closes its sessions on every worker within a second and its listener; others are untouched', async () => {
    const doomed = issued.get(DOOMED)!;
    const other = issued.get(OTHER)!;
    const victims = await openOnBothWorkers(doomed, 4);
    const bystanders: Opened[] = [];
    for (let i = 0; i < 2; i++) bystanders.push(await open(other));
    expect(new Set((await sessions()).filter((s) => s.binding === DOOMED).map((s) => workerOf(s.id))).size).toBe(2);

    const t0 = Date.now();
    expect((await api('DELETE', `/v1/bindings/${enc(DOOMED)}`)).status).toBe(204);
    for (const v of victims) {
      const err = await v.failure;
      expect(err.code).toBe('57P01');
      expect(err.at - t0).toBeLessThan(1000);
    }
    await workersApplied();
    expect((await connectError(doomed, doomed.password))?.message).toMatch(/ECONNREFUSED/);
    for (const b of bystanders) expect((await b.client.query('select 1 as n')).rows[0].n).toBe(1);
    expect((await api('GET', `/v1/bindings/${enc(DOOMED)}`)).status).toBe(404);
    await closeAll([...victims, ...bystanders]);
  });

  test('POST /v1/bindings/{fqn}/rotate: the old password fails for new connections (28P01), the new one works, an open session keeps working', async () => {
    const other = issued.get(OTHER)!;
    const openBefore = await open(other);
    const r = await api('POST', `/v1/bindings/${enc(OTHER)}/rotate`);
    expect(r.status).toBe(200);
    const rotated = r.body as Issued;
    expect(rotated.password).not.toBe(other.password);
    expect(rotated.uri).toBe(other.uri.replace(enc(other.password), enc(rotated.password)));
    await workersApplied();
    // Several new connections, which land on either worker.
    for (let i = 0; i < 4; i++) {
      expect((await connectError(other, other.password))?.code).toBe('28P01');
      expect(await connectError(other, rotated.password)).toBeUndefined();
    }
    expect((await psql(rotated.uri, 'select 5')).stdout.trim()).toBe('5');
    expect((await openBefore.client.query('select 2 as n')).rows[0].n).toBe(2);
    issued.set(OTHER, rotated);
    await openBefore.client.end();
  });

  test('POST /v1/services/{fqn}/rotate with the upstream\'s new password: new sessions work again, open sessions are not dropped', async () => {
    const app = issued.get(APP)!;
    const openBefore = await open(app);
    upstreamPassword = `rotated-${Math.random().toString(36).slice(2)}`;
    server.sql(`alter role ${server.user} password '${upstreamPassword}'`);
    // Upstream connections waiting for reuse stay logged in, as PgBouncer's do; the refusal shows on
    // a new one, so the server closes the waiting ones (all but the open session's).
    const keep = (await openBefore.client.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    server.sql(`select pg_terminate_backend(pid) from pg_stat_activity where usename = '${server.user}' and pid <> ${keep} and pid <> pg_backend_pid() and backend_type = 'client backend'`);
    // sempipe tells the client its upstream leg failed (08006), not that the client's password is wrong.
    const refused = await connectError(app, app.password);
    expect(refused?.code).toBe('08006');
    expect(refused?.message).toContain('refused sempipe\'s credentials');
    expect(refused?.message).not.toContain(upstreamPassword);
    const r = await api('POST', `/v1/services/${enc(SERVICE)}/rotate`, { password: upstreamPassword });
    expect(r.status).toBe(204);
    await workersApplied();
    for (let i = 0; i < 4; i++) expect(await connectError(app, app.password)).toBeUndefined();
    expect((await openBefore.client.query('select current_user as u')).rows[0].u).toBe(server.user);
    expect(JSON.stringify((await api('GET', `/v1/services/${enc(SERVICE)}`)).body)).not.toContain(upstreamPassword);
    await openBefore.client.end();
  });

  test('a policy PUT applies to the next statement of open sessions on both workers; explain gives the same verdict; DELETE lifts it', async () => {
    const app = issued.get(APP)!;
    const opened = await openOnBothWorkers(app, 4);
    expect(new Set((await sessions()).filter((s) => s.binding === APP).map((s) => workerOf(s.id))).size).toBe(2);
    for (const o of opened) await o.client.query(`insert into notes (body) values ('before')`);

    const policy = 'policy::/cp::no-inserts';
    const put = await api('PUT', `/v1/policies/${enc(policy)}`, { realm: APP, deny: { classes: ['insert'] } });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    await workersApplied();
    const insert = `insert into notes (body) values ('during')`;
    const explained = await api('POST', '/v1/policies/explain', { binding: APP, sql: insert });
    expect(explained.status).toBe(200);
    expect(explained.body.verdict).toMatchObject({ action: 'deny', code: '42501', policy });
    for (const o of opened) {
      const err = await errorOf(o.client.query(insert));
      expect(err.code).toBe('42501');
      expect(err.message).toBe(explained.body.verdict.message);
      expect((await o.client.query('select count(*)::int as n from notes')).rows[0].n).toBeGreaterThanOrEqual(opened.length);
    }
    const select = await api('POST', '/v1/policies/explain', { binding: APP, sql: 'select 1' });
    expect(select.body.verdict.action).toBe('allow');
    expect(server.sql(`select count(*) from notes where body = 'during'`, server.database).trim()).toBe('0');

    expect((await api('DELETE', `/v1/policies/${enc(policy)}`)).status).toBe(204);
    await workersApplied();
    for (const o of opened) await o.client.query(insert);
    expect(server.sql(`select count(*) from notes where body = 'during'`, server.database).trim()).toBe(String(opened.length));
    expect((await api('POST', '/v1/policies/explain', { binding: APP, sql: insert })).body.verdict.action).toBe('allow');
    await closeAll(opened);
  });
});

describe('restart', () => {
  test('after SIGTERM and a start on the same config and state_dir, API bindings (same port), rotated secrets and policies are back', async () => {
    const keep = 'policy::/cp::no-dir-listing';
    expect((await api('PUT', `/v1/policies/${enc(keep)}`, { realm: 'binding::/cp', deny: { functions: ['pg_ls_dir'] } })).status).toBe(201);
    const bindingsBefore = (await api('GET', '/v1/bindings')).body.bindings;
    expect(await sempipe.stop()).toBe(0);

    sempipe = await startSempipe({ workers: 2, dir, yaml: configYaml() });
    expect((await api('GET', '/v1/bindings')).body.bindings).toEqual(bindingsBefore);
    expect((await api('GET', `/v1/policies/${enc(keep)}`)).body).toMatchObject({ fqn: keep, source: 'api' });
    const app = issued.get(APP)!;
    const other = issued.get(OTHER)!;
    // The issued password of APP and the rotated one of OTHER; the rotated upstream password.
    const { client } = await open(app);
    expect((await client.query('select current_user as u')).rows[0].u).toBe(server.user);
    expect((await errorOf(client.query(`select pg_ls_dir('.')`))).code).toBe('42501');
    await client.end();
    expect((await psql(other.uri, 'select 9')).stdout.trim()).toBe('9');
    expect((await connectError(issued.get(DOOMED)!, issued.get(DOOMED)!.password))?.message).toMatch(/ECONNREFUSED/);
  });
});
