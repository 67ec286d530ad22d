// A remote data plane (sidecar) following a control plane, as two real sempipe processes with 2
// workers each, a real PostgreSQL and real clients. The control plane (a config file with
// `serve_bindings: binding::/team-b`) serves team-b's bindings itself and manages team-a's for the
// data plane (`sempipe proxy --control-plane URL --bindings binding::/team-a`), which listens on
// the same addresses. Covered: the data plane serves its realm only; readiness and the
// connected metric; API revocation and creation reach it within a second; with the control plane
// killed it keeps serving, restarts from its 0600 disk cache, and applies the changes made
// meanwhile once the control plane is back. The data plane's SCRAM salts (an unknown user's too)
// derive from the control plane's salt secret, received with the snapshot, also after a restart.
// B1 also listens on a Unix socket file: its listen list reaches the data plane through the
// snapshot and its cache.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePorts } from '../harness/ports.js';
import { SEMPIPE_BIN, spawnSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { run, type RunResult } from '../harness/run.js';
import { scramServerFirst } from '../harness/scram-probe.js';
import { deriveScramSalt } from '../../protocols/postgres/auth/scram-mock.js';

const TOKEN = 'sidecar-test-token-7d3e91';
const SERVICE = 'service::/shared::db';
const B1 = 'binding::/team-a::b1';
const B2 = 'binding::/team-b::b2';
const B3 = 'binding::/team-a::b3';
const B5 = 'binding::/team-a::b5';
const TEMP = 'binding::/team-a::temp';
const enc = encodeURIComponent;

interface Target {
  port: number;
  user: string;
  password: string;
}

let server: PgServer;
let dir: string;
let cacheDir: string;
let cpConfig: string;
let cpAdminPort: number;
let dpAdminPort: number;
let p1: number;
let p2: number;
let p5: number;
let cp: SempipeProcess;
let dp: SempipeProcess;
const targets = new Map<string, Target>();

function cpYaml(withB1: boolean, withB5: boolean): string {
  const binding = (fqn: string, port: number, user: string): string => `  - fqn: ${fqn}
    service: ${SERVICE}
    listen: ${fqn === B1 ? `[127.0.0.1:${port}, "unix:${b1Socket()}"]` : `127.0.0.1:${port}`}
    database: orders
    clients: [ { user: ${user}, password: ${user}-secret } ]
`;
  return `
admin:
  listen: 127.0.0.1:${cpAdminPort}
  token: ${TOKEN}
serve_bindings: binding::/team-b
limits: { auth_timeout: 5s, drain_timeout: 1s }
state_dir: ./state
services:
  - fqn: ${SERVICE}
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }
bindings:
${withB1 ? binding(B1, p1, 'one') : ''}${binding(B2, p2, 'two')}${withB5 ? binding(B5, p5, 'five') : ''}`;
}

const startControlPlane = (): Promise<SempipeProcess> => spawnSempipe(['proxy', '--config', cpConfig, '--workers', '2'], { adminPort: cpAdminPort, configFile: cpConfig });

const startDataPlane = (): Promise<SempipeProcess> =>
  spawnSempipe(
    ['proxy', '--control-plane', `http://127.0.0.1:${cpAdminPort}`, '--token', TOKEN, '--bindings', 'binding::/team-a', '--admin', `127.0.0.1:${dpAdminPort}`, '--cache-dir', cacheDir, '--workers', '2'],
    { adminPort: dpAdminPort },
  );

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(cp.adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

async function readyz(p: SempipeProcess): Promise<{ status: number; body: any }> {
  const r = await fetch(`${p.adminUrl}/readyz`);
  return { status: r.status, body: await r.json() };
}

interface Opened {
  client: pg.Client;
  failure: Promise<{ code?: string; message: string; at: number }>;
}

async function open(fqn: string): Promise<Opened> {
  const t = targets.get(fqn)!;
  const client = new pg.Client({ host: '127.0.0.1', port: t.port, user: t.user, password: t.password, database: 'orders' });
  const failure = new Promise<{ code?: string; message: string; at: number }>((r) =>
    client.on('error', (e) => r({ code: (e as { code?: string }).code, message: e.message, at: Date.now() })),
  );
  await client.connect();
  return { client, failure };
}

/** Connects and runs one statement; undefined on success, else the error. */
async function tryConnect(fqn: string): Promise<{ code?: string; message: string } | undefined> {
  const t = targets.get(fqn)!;
  const client = new pg.Client({ host: '127.0.0.1', port: t.port, user: t.user, password: t.password, database: 'orders' });
  client.on('error', () => {});
  try {
    await client.connect();
    const row = (await client.query('select current_user as u')).rows[0];
    expect(row.u).toBe(server.user);
    return undefined;
  } catch (err) {
    return err as { code?: string; message: string };
  } finally {
    await client.end().catch(() => {});
  }
}

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** B1's socket file, named so that libpq finds it from the directory and the port. */
const b1Socket = (): string => join(dir, `.s.PGSQL.${p1}`);

function psqlOverB1Socket(sql: string): Promise<RunResult> {
  return run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-h', dir, '-p', String(p1), '-U', 'one', '-d', 'orders', '-c', sql], { env: { PGPASSWORD: 'one-secret' } });
}

function psql(fqn: string, sql: string): Promise<RunResult> {
  const t = targets.get(fqn)!;
  return run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-h', '127.0.0.1', '-p', String(t.port), '-U', t.user, '-d', 'orders', '-c', sql], {
    env: { PGPASSWORD: t.password },
  });
}

/** The salts 10 SCRAM starts for `user` on `fqn` were shown, all open at once (so both workers answer). */
async function saltsOf(fqn: string, user: string): Promise<Set<string>> {
  const firsts = await Promise.all(Array.from({ length: 10 }, () => scramServerFirst(targets.get(fqn)!.port, user, 'orders')));
  firsts.forEach((f) => f.close());
  return new Set(firsts.map((f) => f.salt));
}

/** The salt the control plane's secret (its state_dir's key file) gives `user` on `fqn`. */
function controlPlaneSalt(fqn: string, user: string): string {
  const secret = Buffer.from(readFileSync(join(dir, 'state', 'salt-secret.key'), 'utf8').trim());
  return deriveScramSalt(secret, fqn, user).toString('base64');
}

async function createApiBinding(fqn: string): Promise<void> {
  const r = await api('POST', '/v1/bindings', { fqn, service: SERVICE, database: 'orders' });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  targets.set(fqn, { port: Number(new URL(r.body.uri).port), user: r.body.user, password: r.body.password });
}

beforeAll(async () => {
  server = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'sempipe-sidecar-'));
  cacheDir = join(dir, 'dp-cache');
  cpConfig = join(dir, 'control-plane.yaml');
  [cpAdminPort, dpAdminPort, p1, p2, p5] = await freePorts(5);
  targets.set(B1, { port: p1, user: 'one', password: 'one-secret' });
  targets.set(B2, { port: p2, user: 'two', password: 'two-secret' });
  targets.set(B5, { port: p5, user: 'five', password: 'five-secret' });
  writeFileSync(cpConfig, cpYaml(true, false));
  cp = await startControlPlane();
  dp = await startDataPlane();
});

afterAll(async () => {
  await Promise.all([dp?.stop(), cp?.stop()]);
  await destroyPostgres(server);
  rmSync(dir, { recursive: true, force: true });
});

test('serve_bindings takes "none" or a realm of bindings; anything else is refused naming the key', () => {
  const check = (value: string): { status: number | null; out: string } => {
    const file = join(dir, `check-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, `serve_bindings: "${value}"\n`);
    const r = spawnSync(process.execPath, [SEMPIPE_BIN, 'check-config', file], { encoding: 'utf8' });
    return { status: r.status, out: r.stdout + r.stderr };
  };
  for (const ok of ['none', '::/', 'binding::/team-a', 'binding::/team-a::b1']) expect(check(ok).status, ok).toBe(0);
  for (const bad of ['service::/team-a', 'all', 'binding::team-a']) {
    const r = check(bad);
    expect(r.status, bad).toBe(2);
    expect(r.out).toContain('serve_bindings');
  }
});

describe('a data plane following a control plane', () => {
  test('the data plane serves team-a (B1) and the control plane only team-b (B2): no listener collides', async () => {
    const ready = await readyz(dp);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', control_plane: 'connected', state: 'live' });
    expect(await dp.metric('sempipe_control_plane_connected')).toBe(1);
    expect((await readyz(cp)).status).toBe(200);

    expect(await tryConnect(B1)).toBeUndefined();
    expect((await psql(B1, 'select current_database()')).stdout.trim()).toBe(server.database);
    expect((await psqlOverB1Socket('select current_user')).stdout.trim()).toBe(server.user);
    expect(await tryConnect(B2)).toBeUndefined();
    // Which process carries which session: the control plane lists its own workers' sessions only.
    const one = await open(B1);
    const two = await open(B2);
    const listed = ((await api('GET', '/v1/sessions')).body.sessions as Array<{ binding: string }>).map((s) => s.binding);
    expect(listed).toEqual([B2]);
    expect(await dp.metric('sempipe_connections_active', { binding: B1 })).toBe(1);
    expect(await dp.metric('sempipe_connections_total', { binding: B2 })).toBe(0);
    expect(await cp.metric('sempipe_connections_total', { binding: B1 })).toBe(0);
    await Promise.all([one.client.end(), two.client.end()]);

    const cache = join(cacheDir, 'control-plane-cache', 'snapshot.json');
    expect(statSync(cache).mode & 0o777).toBe(0o600);
    expect(statSync(join(cacheDir, 'control-plane-cache')).mode & 0o777).toBe(0o700);
    const cached = JSON.parse(readFileSync(cache, 'utf8')) as { bindings: Array<{ fqn: string; listen: unknown }> };
    expect(cached.bindings.map((b) => b.fqn)).toEqual([B1]);
    expect(cached.bindings[0]!.listen).toEqual([{ host: '127.0.0.1', port: p1 }, { path: b1Socket() }]);
  });

  test('the data plane\'s SCRAM salts, an unknown user\'s included, derive from the control plane\'s salt secret', async () => {
    expect(await saltsOf(B1, 'ghost')).toEqual(new Set([controlPlaneSalt(B1, 'ghost')]));
    expect(await saltsOf(B1, 'one')).toEqual(new Set([controlPlaneSalt(B1, 'one')]));
    const cached = JSON.parse(readFileSync(join(cacheDir, 'control-plane-cache', 'snapshot.json'), 'utf8')) as { saltSecret?: string };
    expect(cached.saltSecret).toBe(readFileSync(join(dir, 'state', 'salt-secret.key'), 'utf8').trim());
  });

  test('a binding created in team-a through the API is served by the data plane within a second', async () => {
    const t0 = Date.now();
    await createApiBinding(B3);
    await eventually(async () => (await tryConnect(B3)) === undefined, 1000);
    expect(Date.now() - t0).toBeLessThan(1000);
    // A team-b binding created through the API is the control plane's own.
    await createApiBinding('binding::/team-b::b4');
    await eventually(async () => (await tryConnect('binding::/team-b::b4')) === undefined, 1000);
    expect(await cp.metric('sempipe_connections_total', { binding: 'binding::/team-b::b4' })).toBeGreaterThanOrEqual(1);
    expect(await dp.metric('sempipe_connections_total', { binding: 'binding::/team-b::b4' })).toBe(0);
  });

  test('revoking a team-a binding on the control plane closes its data-plane sessions within a second, and its listener', async () => {
    await createApiBinding(TEMP);
    await eventually(async () => (await tryConnect(TEMP)) === undefined, 1000);
    const sessions = [await open(TEMP), await open(TEMP), await open(TEMP)];
    const bystander = await open(B1);
    for (const s of sessions) await s.client.query('select 1');
    const t0 = Date.now();
    expect((await api('DELETE', `/v1/bindings/${enc(TEMP)}`)).status).toBe(204);
    for (const s of sessions) {
      const err = await s.failure;
      expect(err.code).toBe('57P01');
      expect(err.at - t0).toBeLessThan(1500);
    }
    await eventually(async () => /ECONNREFUSED/.test((await tryConnect(TEMP))?.message ?? ''), 1000);
    expect((await bystander.client.query('select 3 as n')).rows[0].n).toBe(3);
    await bystander.client.end();
  });

  test('control plane away: the data plane keeps serving, says so, restarts from its cache, and catches up when the control plane is back', async () => {
    const onB1 = await open(B1);
    const onB3 = await open(B3);
    cp.signal('SIGKILL');
    await cp.exited;

    await eventually(async () => (await dp.metric('sempipe_control_plane_connected')) === 0, 3000);
    const away = await readyz(dp);
    expect(away.status).toBe(200);
    expect(away.body).toMatchObject({ status: 'ready', control_plane: 'disconnected', state: 'last good state (control-plane)' });
    expect((await onB1.client.query('select 1 as n')).rows[0].n).toBe(1);
    expect((await onB3.client.query('select 2 as n')).rows[0].n).toBe(2);
    expect(await tryConnect(B1)).toBeUndefined();
    expect(await tryConnect(B3)).toBeUndefined();
    // B2 was the control plane's own: gone with it; the data plane never served it.
    await eventually(async () => /ECONNREFUSED/.test((await tryConnect(B2))?.message ?? ''), 3000);
    await Promise.all([onB1.client.end(), onB3.client.end()]);

    // A restart while the control plane is still down serves the cached state.
    expect(await dp.stop()).toBe(0);
    dp = await startDataPlane();
    const fromCache = await readyz(dp);
    expect(fromCache.status).toBe(200);
    expect(fromCache.body).toMatchObject({ status: 'ready', control_plane: 'disconnected', state: 'last good state (cache)' });
    expect(await dp.metric('sempipe_control_plane_connected')).toBe(0);
    expect(await tryConnect(B1)).toBeUndefined();
    expect((await psqlOverB1Socket('select 1')).stdout.trim()).toBe('1');
    expect(await tryConnect(B3)).toBeUndefined();
    expect(statSync(join(cacheDir, 'control-plane-cache', 'snapshot.json')).mode & 0o777).toBe(0o600);
    expect(await saltsOf(B1, 'ghost')).toEqual(new Set([controlPlaneSalt(B1, 'ghost')]));
    const stillOnB1 = await open(B1);

    // Meanwhile the operator removes B1 from the control plane's file and adds B5 to team-a.
    writeFileSync(cpConfig, cpYaml(false, true));
    cp = await startControlPlane();
    await eventually(async () => (await dp.metric('sempipe_control_plane_connected')) === 1, 15_000);
    const err = await stillOnB1.failure;
    expect(err.code).toBe('57P01');
    await eventually(async () => (await tryConnect(B5)) === undefined, 2000);
    await eventually(async () => /ECONNREFUSED/.test((await tryConnect(B1))?.message ?? ''), 2000);
    await eventually(() => !existsSync(b1Socket()), 2000);
    expect(await tryConnect(B3)).toBeUndefined();
    expect(await tryConnect(B2)).toBeUndefined();
    expect((await readyz(dp)).body).toMatchObject({ status: 'ready', control_plane: 'connected', state: 'live' });
  });
});
