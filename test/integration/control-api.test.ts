// The control API end to end over real HTTP: the admin server with the API router on port 0 and a
// Catalog on a temporary state directory. Every resource and error code, bearer auth, secrets
// returned once and never stored, restart with a new Catalog on the same directory, and a sempipe
// API process killed with SIGKILL right after it acknowledged a write.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../control/admin-server.js';
import { assertApiExposure, ApiExposureError, resolveAdminToken } from '../../control/api/auth.js';
import { API_ROUTES, createApiHandler, type SessionDirectory, type SessionSummary } from '../../control/api/router.js';
import { openCatalog, type Catalog } from '../../control/catalog.js';
import { parseConfig, type BindingConfig, type HostPort, type SempipeConfig, type ServiceConfig } from '../../control/config.js';
import { openStateStore } from '../../control/state-store.js';
import { parseScramVerifier, verifyPasswordAgainstScram } from '../../protocols/postgres/auth/scram-verifier.js';

const TOKEN = 'test-admin-token-0123456789';
const enc = encodeURIComponent;

/** Sessions as the primary would report them: here a fixed table the test can kill from. */
function sessionTable(rows: SessionSummary[]): SessionDirectory & { killed: string[] } {
  const killed: string[] = [];
  return {
    killed,
    list: async () => rows.filter((r) => !killed.includes(r.id)),
    kill: async (id) => {
      if (!rows.some((r) => r.id === id) || killed.includes(id)) return false;
      killed.push(id);
      return true;
    },
  };
}

function fileConfig(): SempipeConfig {
  return parseConfig(
    `services:
  - fqn: service::/prod::orders
    protocol: postgres
    upstream: { host: 127.0.0.1, port: 5432, database: orders, user: owner, password: file-pw, tls: disable }
bindings:
  - fqn: binding::/prod::file-api
    service: service::/prod::orders
    listen: ["unix:/tmp/sempipe-control-api/.s.PGSQL.16499", 127.0.0.1:16499]
    clients: [ { user: app, password: app-pw } ]
`,
    '/tmp/sempipe-control-api.yaml',
  );
}

interface Api {
  url: string;
  catalog: Catalog;
  server: AdminServer;
  sessions: ReturnType<typeof sessionTable>;
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  stop(): Promise<void>;
}

async function startApi(stateDir: string, token: string | undefined = TOKEN): Promise<Api> {
  const catalog = openCatalog({ stateDir, fileConfig: fileConfig() });
  const sessions = sessionTable([
    { id: 'w1-1', binding: 'binding::/prod::file-api', service: 'service::/prod::file-svc', protocol: 'postgres', user: 'app', database: 'app', clientAddress: '127.0.0.1:50000', startedAt: Date.UTC(2025, 0, 2, 3, 4, 5), statements: 7, bytesIn: 100, bytesOut: 2000 },
  ]);
  const server = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    metrics: async () => '',
    contentType: 'text/plain',
    ready: () => true,
    extra: createApiHandler({ catalog, sessions, token: () => token, version: 'test' }),
  });
  const url = `http://127.0.0.1:${server.address.port}`;
  return {
    url,
    catalog,
    server,
    sessions,
    async call(method, path, body, headers = {}) {
      const res = await fetch(url + path, {
        method,
        headers: { ...(token !== undefined && { authorization: `Bearer ${token}` }), ...(body !== undefined && { 'content-type': 'application/json' }), ...headers },
        ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text === '' ? undefined : JSON.parse(text), headers: res.headers };
    },
    async stop() {
      await server.close();
      catalog.close();
    },
  };
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sempipe-api-'));
  dirs.push(d);
  return d;
}

const SERVICE = {
  fqn: 'service::/prod::cache',
  protocol: 'postgres',
  upstream: { host: '127.0.0.1', port: 5433, database: 'cache', user: 'cacher', password: 'upstream-secret-1', tls: 'disable' },
};

describe('control API over HTTP', () => {
  let dir: string;
  let api: Api;
  beforeAll(async () => {
    dir = tempDir();
    api = await startApi(dir);
  });
  afterAll(async () => {
    await api.stop();
  });

  it('requires the bearer token on /v1 (401 missing, 403 wrong) and leaves probes and /openapi.json open', async () => {
    for (const path of ['/v1/services', '/v1/bindings', '/v1/policies', '/v1/sessions', '/v1/nope']) {
      const missing = await fetch(api.url + path);
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toBe('Bearer');
      expect(await missing.json()).toMatchObject({ error: 'unauthorized' });
      const wrong = await fetch(api.url + path, { headers: { authorization: 'Bearer not-the-token' } });
      expect(wrong.status).toBe(403);
      expect(await wrong.json()).toMatchObject({ error: 'forbidden' });
    }
    expect((await fetch(api.url + '/v1/services', { headers: { authorization: `Basic ${TOKEN}` } })).status).toBe(401);
    expect((await fetch(api.url + '/healthz')).status).toBe(200);
    expect((await fetch(api.url + '/readyz')).status).toBe(200);
    expect((await fetch(api.url + '/metrics')).status).toBe(200);
    expect((await fetch(api.url + '/openapi.json')).status).toBe(200);
  });

  it('serves an OpenAPI 3.1 document describing every route, method and request body', async () => {
    const doc = (await (await fetch(api.url + '/openapi.json')).json()) as any;
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/v1/bindings',
      '/v1/bindings/{fqn}',
      '/v1/bindings/{fqn}/rotate',
      '/v1/dataplane/watch',
      '/v1/policies',
      '/v1/policies/explain',
      '/v1/policies/{fqn}',
      '/v1/services',
      '/v1/services/{fqn}',
      '/v1/services/{fqn}/rotate',
      '/v1/sessions',
      '/v1/sessions/{id}',
    ]);
    for (const route of API_ROUTES) {
      for (const [method, op] of Object.entries(route.methods)) {
        const described = doc.paths[route.path][method.toLowerCase()];
        expect(described.summary).toBe(op.summary);
        expect(Object.keys(described.responses)).toEqual(expect.arrayContaining(['401', '403', ...Object.keys(op.responses)]));
        if (op.body !== undefined) {
          // A service body is one object per protocol (oneOf); every other body is one object.
          const schema = described.requestBody.content['application/json'].schema as { type?: string; oneOf?: Array<{ type: string }> };
          for (const alternative of schema.oneOf ?? [schema]) expect(alternative.type).toBe('object');
        }
      }
    }
    const bindingBody = doc.paths['/v1/bindings'].post.requestBody.content['application/json'].schema;
    expect(bindingBody.required).toEqual(['fqn', 'service']);
    expect(Object.keys(bindingBody.properties)).toEqual(expect.arrayContaining(['fqn', 'service', 'listen', 'database', 'auth']));
    expect(doc.paths['/v1/policies/{fqn}'].put.requestBody.content['application/json'].schema.properties).toHaveProperty('read_only');
  });

  it('services: create, list, get without the password, replace, rotate, delete; 400/404/409/405', async () => {
    const created = await api.call('POST', '/v1/services', SERVICE);
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/v1/services/${enc(SERVICE.fqn)}`);
    expect(created.body).toEqual({ fqn: SERVICE.fqn, protocol: 'postgres', upstream: { host: '127.0.0.1', port: 5433, database: 'cache', user: 'cacher', tls: 'disable', tls_negotiation: 'postgres' }, source: 'api' });
    expect(JSON.stringify(created.body)).not.toContain('upstream-secret-1');

    const list = await api.call('GET', '/v1/services');
    expect(list.body.services.map((s: any) => [s.fqn, s.source])).toEqual([
      ['service::/prod::orders', 'file'],
      ['service::/prod::cache', 'api'],
    ]);
    expect(JSON.stringify(list.body)).not.toMatch(/password|file-pw|upstream-secret/);
    expect((await api.call('GET', `/v1/services/${enc(SERVICE.fqn)}`)).body.fqn).toBe(SERVICE.fqn);
    // A plain (unencoded) FQN in the path works too: a name never holds "/".
    expect((await api.call('GET', `/v1/services/${SERVICE.fqn}`)).status).toBe(200);

    const invalid = await api.call('POST', '/v1/services', { ...SERVICE, fqn: 'service::/prod::other', upstream: { ...SERVICE.upstream, port: 70000 } });
    expect(invalid.status).toBe(400);
    expect(invalid.body).toMatchObject({ error: 'invalid', path: 'upstream.port' });
    expect((await api.call('POST', '/v1/services', { ...SERVICE, fqn: 'binding::/x::y' })).body).toMatchObject({ error: 'invalid', path: 'fqn' });
    expect((await api.call('POST', '/v1/services', { ...SERVICE, fqn: 'service::/a::b', colour: 'red' })).body).toEqual({ error: 'invalid', message: 'unknown key "colour"', path: 'colour' });
    expect((await api.call('POST', '/v1/services', { ...SERVICE, fqn: 'service::/a::b', upstream: { ...SERVICE.upstream, host: undefined } })).body).toEqual({
      error: 'invalid',
      message: 'required field is missing',
      path: 'upstream.host',
    });
    expect((await api.call('POST', '/v1/services', { ...SERVICE, fqn: 'service::/a::b', upstream: { ...SERVICE.upstream, tls: 'verify-full', ca: 'relative.crt' } })).body).toMatchObject({ path: 'upstream.ca' });
    expect((await api.call('POST', '/v1/services', '{"fqn": "service::/a::b", "upstream": {"password": "s3cr3t-in-bad-json"')).body).toEqual({ error: 'invalid', message: 'the request body is not valid JSON' });
    expect((await api.call('POST', '/v1/services', '[1]')).body).toEqual({ error: 'invalid', message: 'the request body must be a JSON object' });
    expect((await api.call('POST', '/v1/services', SERVICE)).status).toBe(409);
    const fileDefined = await api.call('POST', '/v1/services', { ...SERVICE, fqn: 'service::/prod::orders' });
    expect(fileDefined).toMatchObject({ status: 409, body: { error: 'conflict', message: 'service::/prod::orders is defined in the config file' } });

    const replaced = await api.call('PUT', `/v1/services/${enc(SERVICE.fqn)}`, { protocol: 'postgres', upstream: { host: '127.0.0.2', database: 'cache', user: 'cacher' } });
    expect(replaced).toMatchObject({ status: 200, body: { upstream: { host: '127.0.0.2', port: 5432 } } });
    expect((api.catalog.effective().services[1] as ServiceConfig).upstream.password).toBe('upstream-secret-1');
    expect((await api.call('PUT', `/v1/services/${enc('service::/prod::orders')}`, SERVICE)).status).toBe(409);
    expect((await api.call('PUT', `/v1/services/${enc('service::/none::x')}`, { ...SERVICE, fqn: 'service::/none::x' })).status).toBe(404);
    expect((await api.call('PUT', `/v1/services/${enc(SERVICE.fqn)}`, { ...SERVICE, fqn: 'service::/none::x' })).body).toMatchObject({ error: 'invalid', path: 'fqn' });

    expect((await api.call('POST', `/v1/services/${enc(SERVICE.fqn)}/rotate`, { password: 'upstream-secret-2' })).status).toBe(204);
    expect((api.catalog.effective().services[1] as ServiceConfig).upstream.password).toBe('upstream-secret-2');
    expect((await api.call('POST', `/v1/services/${enc(SERVICE.fqn)}/rotate`, {})).body).toMatchObject({ error: 'invalid', path: 'password' });
    expect((await api.call('POST', `/v1/services/${enc('service::/prod::orders')}/rotate`, { password: 'x' })).status).toBe(409);
    expect((await api.call('POST', `/v1/services/${enc('service::/none::x')}/rotate`, { password: 'x' })).status).toBe(404);

    const patch = await api.call('PATCH', `/v1/services/${enc(SERVICE.fqn)}`, {});
    expect(patch.status).toBe(405);
    expect(patch.headers.get('allow')).toBe('GET, PUT, DELETE');
    expect(patch.body.error).toBe('method_not_allowed');
    expect((await api.call('GET', `/v1/services/${enc('service::/none::x')}`)).status).toBe(404);
    expect((await api.call('GET', `/v1/services/${enc('service::bad')}`)).body).toMatchObject({ error: 'invalid', path: 'fqn' });
    expect((await api.call('GET', '/v1/services/%E0%A4%A')).body).toMatchObject({ error: 'invalid', path: 'fqn' });
    expect((await api.call('GET', '/v1/nothing-here')).status).toBe(404);
  });

  it('bindings: create returns credentials once and stores only a verifier; get/list never show secrets; rotate; revoke', async () => {
    const created = await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod/billing::cache-job', service: SERVICE.fqn });
    expect(created.status).toBe(201);
    expect(created.headers.get('cache-control')).toBe('no-store');
    const { user, password, uri } = created.body;
    expect(created.body.fqn).toBe('binding::/prod/billing::cache-job');
    expect(user).toBe('cache-job');
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const [address] = api.catalog.effective().bindings.find((b) => b.fqn === 'binding::/prod/billing::cache-job')!.listen as [HostPort];
    const port = address.port;
    expect(uri).toBe(`postgres://cache-job:${password}@127.0.0.1:${port}/cache`);
    const parsed = new URL(uri);
    expect([parsed.protocol, parsed.username, decodeURIComponent(parsed.password), parsed.hostname, parsed.pathname]).toEqual(['postgres:', 'cache-job', password, '127.0.0.1', '/cache']);

    const got = await api.call('GET', `/v1/bindings/${enc('binding::/prod/billing::cache-job')}`);
    expect(got.body).toEqual({
      fqn: 'binding::/prod/billing::cache-job',
      service: SERVICE.fqn,
      listen: `127.0.0.1:${port}`,
      database: 'cache',
      auth: 'scram-sha-256',
      users: ['cache-job'],
      source: 'api',
      active: true,
    });
    const list = await api.call('GET', '/v1/bindings');
    expect(list.body.bindings.map((b: any) => b.fqn)).toEqual(['binding::/prod::file-api', 'binding::/prod/billing::cache-job']);
    // Several addresses show as the file's list; one as a string.
    expect(list.body.bindings.map((b: any) => b.listen)).toEqual([['unix:/tmp/sempipe-control-api/.s.PGSQL.16499', '127.0.0.1:16499'], `127.0.0.1:${port}`]);
    expect(JSON.stringify(list.body)).not.toMatch(/SCRAM|app-pw|verifier|password/);

    // The stored row holds a SCRAM verifier for that password, and the password is nowhere in the files.
    const db = new Database(join(dir, 'state.db'), { readonly: true });
    const row = db.prepare('SELECT * FROM bindings WHERE fqn = ?').get('binding::/prod/billing::cache-job') as Record<string, unknown>;
    db.close();
    expect(Object.values(row).some((v) => String(v).includes(password))).toBe(false);
    expect(verifyPasswordAgainstScram(password, parseScramVerifier(row.verifier as string)!)).toBe(true);
    for (const f of readdirSync(dir)) expect(readFileSync(join(dir, f)).includes(password)).toBe(false);

    const rotated = await api.call('POST', `/v1/bindings/${enc('binding::/prod/billing::cache-job')}/rotate`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.password).not.toBe(password);
    expect(rotated.body.uri).toBe(`postgres://cache-job:${rotated.body.password}@127.0.0.1:${port}/cache`);
    const verifier = parseScramVerifier((api.catalog.effective().bindings.find((b) => b.fqn === 'binding::/prod/billing::cache-job') as BindingConfig).clients[0]!.verifier!)!;
    expect(verifyPasswordAgainstScram(rotated.body.password, verifier)).toBe(true);
    expect(verifyPasswordAgainstScram(password, verifier)).toBe(false);

    const explicit = await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod::explicit', service: 'service::/prod::orders', listen: '127.0.0.1:16498', database: 'reports', user: 'rep', auth: 'password', allow_password_without_tls: true });
    expect(explicit.status).toBe(201);
    expect(explicit.body.uri).toBe(`postgres://rep:${explicit.body.password}@127.0.0.1:16498/reports`);

    expect((await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod::x', service: 'service::/prod::nope' })).body).toEqual({ error: 'invalid', message: 'unknown service "service::/prod::nope"', path: 'service' });
    expect((await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod::x', service: SERVICE.fqn, listen: 'nowhere' })).body).toMatchObject({ error: 'invalid', path: 'listen' });
    expect((await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod::x', service: SERVICE.fqn, auth: 'md5' })).body).toMatchObject({ error: 'invalid', path: 'auth' });
    expect((await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod::x', service: SERVICE.fqn, auth: 'password' })).body).toMatchObject({ error: 'invalid', path: 'auth' });
    expect((await api.call('POST', '/v1/bindings', { service: SERVICE.fqn })).body).toEqual({ error: 'invalid', message: 'required field is missing', path: 'fqn' });
    const taken = await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod::x', service: SERVICE.fqn, listen: '127.0.0.1:16499' });
    expect(taken).toMatchObject({ status: 409, body: { error: 'conflict', message: 'address 127.0.0.1:16499 is already used by binding::/prod::file-api' } });
    expect((await api.call('POST', '/v1/bindings', { fqn: 'binding::/prod::explicit', service: SERVICE.fqn })).status).toBe(409);
    expect((await api.call('POST', `/v1/bindings/${enc('binding::/prod::file-api')}/rotate`)).body).toEqual({ error: 'conflict', message: 'binding::/prod::file-api is defined in the config file' });
    expect((await api.call('DELETE', `/v1/bindings/${enc('binding::/prod::file-api')}`)).status).toBe(409);
    expect((await api.call('GET', `/v1/bindings/${enc('binding::/prod::none')}`)).status).toBe(404);
    expect((await api.call('PUT', `/v1/bindings/${enc('binding::/prod::explicit')}`, {})).status).toBe(405);

    const inUse = await api.call('DELETE', `/v1/services/${enc(SERVICE.fqn)}`);
    expect(inUse).toMatchObject({ status: 409, body: { error: 'conflict', message: 'service::/prod::cache is used by binding::/prod/billing::cache-job; delete those bindings first' } });

    expect((await api.call('DELETE', `/v1/bindings/${enc('binding::/prod::explicit')}`)).status).toBe(204);
    expect((await api.call('DELETE', `/v1/bindings/${enc('binding::/prod::explicit')}`)).status).toBe(404);
    expect(api.catalog.effective().bindings.map((b) => b.fqn)).not.toContain('binding::/prod::explicit');
  });

  it('policies: put creates (201) then replaces (200), get, list, 400 with the field path, delete, explain', async () => {
    const fqn = 'policy::/prod::billing-guard';
    const doc = {
      fqn,
      realm: 'binding::/prod/billing',
      allow: { classes: ['select', 'insert', 'update', 'delete', 'transaction', 'set'] },
      deny: { classes: ['ddl', 'dcl'], functions: ['pg_read_file', 'dblink'], tables: ['secrets.*'] },
      read_only: false,
      limits: { max_rows: 10000, statement_timeout: '5s', rate: '200/s', max_sessions: 20 },
      hooks: [{ classes: ['delete'], url: 'http://127.0.0.1:9000/hook', timeout: '500ms', on_error: 'deny' }],
      notifications: [{ classes: ['all'], url: 'http://127.0.0.1:9000/notify' }],
    };
    const created = await api.call('PUT', `/v1/policies/${enc(fqn)}`, doc);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ fqn, realm: 'binding::/prod/billing', limits: { max_rows: 10000, statement_timeout: '5000ms', rate: 200, max_sessions: 20 }, source: 'api' });
    const replaced = await api.call('PUT', `/v1/policies/${enc(fqn)}`, { ...doc, read_only: true });
    expect(replaced.status).toBe(200);
    expect((await api.call('GET', `/v1/policies/${enc(fqn)}`)).body.read_only).toBe(true);
    expect((await api.call('GET', '/v1/policies')).body.policies.map((p: any) => p.fqn)).toEqual([fqn]);
    expect(api.catalog.effective().policies.map((p) => [p.fqn, p.readOnly])).toEqual([[fqn, true]]);

    const bad = await api.call('PUT', `/v1/policies/${enc(fqn)}`, { ...doc, limits: { max_rows: -1 } });
    expect(bad).toMatchObject({ status: 400, body: { error: 'invalid', path: 'limits.max_rows' } });
    expect((await api.call('PUT', `/v1/policies/${enc(fqn)}`, { ...doc, realm: 'nonsense' })).body).toMatchObject({ path: 'realm' });
    expect((await api.call('PUT', `/v1/policies/${enc('policy::/prod::other')}`, doc)).body).toMatchObject({ error: 'invalid', path: 'fqn' });
    expect((await api.call('GET', `/v1/policies/${enc('policy::/prod::none')}`)).status).toBe(404);
    expect((await api.call('POST', '/v1/policies', doc)).status).toBe(405);

    const denied = await api.call('POST', '/v1/policies/explain', { binding: 'binding::/prod/billing::cache-job', sql: 'select 1; drop table orders' });
    expect(denied.status).toBe(200);
    expect(denied.body.subject).toEqual({ binding: 'binding::/prod/billing::cache-job', service: SERVICE.fqn });
    expect(denied.body.policies).toEqual([{ fqn, realm: 'binding::/prod/billing' }]);
    expect(denied.body.statements.map((s: any) => s.class)).toEqual(['select', 'ddl']);
    expect(denied.body.verdict).toMatchObject({ action: 'deny', code: '42501', policy: fqn });
    const allowed = await api.call('POST', '/v1/policies/explain', { binding: 'binding::/prod::file-api', sql: 'select 1' });
    expect(allowed.body).toMatchObject({ policies: [], verdict: { action: 'allow' } });
    const replication = await api.call('POST', '/v1/policies/explain', { binding: 'binding::/prod::file-api', sql: 'IDENTIFY_SYSTEM', replication: 'logical' });
    expect(replication.body.statements).toEqual([{ class: 'replication', writes: false, tables: [], functions: [], command: 'IDENTIFY_SYSTEM' }]);
    expect(replication.body.verdict).toMatchObject({ action: 'deny', code: '42501', rule: 'allow.replication' });
    const cdc = { realm: 'binding::/prod', allow: { replication: ['logical'] }, deny: { replication_commands: ['drop_replication_slot'] } };
    expect((await api.call('PUT', `/v1/policies/${enc('policy::/prod::cdc')}`, cdc)).status).toBe(201);
    expect((await api.call('GET', `/v1/policies/${enc('policy::/prod::cdc')}`)).body).toMatchObject({
      allow: { replication: ['logical'] },
      deny: { replication_commands: ['DROP_REPLICATION_SLOT'] },
    });
    const dropSlot = await api.call('POST', '/v1/policies/explain', { binding: 'binding::/prod::file-api', sql: 'DROP_REPLICATION_SLOT s', replication: 'logical' });
    expect(dropSlot.body.rules.replication).toEqual([{ kind: 'logical', policy: 'policy::/prod::cdc' }]);
    expect(dropSlot.body.verdict).toMatchObject({ action: 'deny', rule: 'deny.replication_commands', policy: 'policy::/prod::cdc' });
    expect((await api.call('DELETE', `/v1/policies/${enc('policy::/prod::cdc')}`)).status).toBe(204);
    expect((await api.call('POST', '/v1/policies/explain', { binding: 'binding::/prod::none', sql: 'select 1' })).status).toBe(404);
    expect((await api.call('POST', '/v1/policies/explain', { binding: 'nope', sql: 'select 1' })).body).toMatchObject({ error: 'invalid', path: 'binding' });

    expect((await api.call('DELETE', `/v1/policies/${enc(fqn)}`)).status).toBe(204);
    expect((await api.call('DELETE', `/v1/policies/${enc(fqn)}`)).status).toBe(404);
    await api.call('PUT', `/v1/policies/${enc('policy::/prod::kept')}`, { realm: '::/prod', deny: { functions: ['lo_export'] } });
  });

  it('sessions: list with binding, user, address, start, statements and bytes; kill one; 404 for an unknown id', async () => {
    const list = await api.call('GET', '/v1/sessions');
    expect(list.body).toEqual({
      sessions: [{ id: 'w1-1', binding: 'binding::/prod::file-api', user: 'app', client_address: '127.0.0.1:50000', started_at: '2025-01-02T03:04:05.000Z', statements: 7, bytes_in: 100, bytes_out: 2000 }],
    });
    expect((await api.call('DELETE', '/v1/sessions/w1-1')).status).toBe(204);
    expect(api.sessions.killed).toEqual(['w1-1']);
    expect((await api.call('DELETE', '/v1/sessions/w1-1')).body).toEqual({ error: 'not_found', message: 'session w1-1 does not exist' });
    expect((await api.call('GET', '/v1/sessions')).body).toEqual({ sessions: [] });
    expect((await api.call('GET', '/v1/sessions/w1-1')).status).toBe(405);
  });

  it('routes GET /v1/dataplane/watch to the data-plane stream: a snapshot now and after each change', async () => {
    const controller = new AbortController();
    const res = await fetch(`${api.url}/v1/dataplane/watch?realm=${enc('binding::/prod')}`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const nextEvent = async (): Promise<any> => {
      let text = '';
      while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
      return JSON.parse(/^data: (.*)$/m.exec(text)![1]!);
    };
    const first = await nextEvent();
    expect(first.sequence).toBe(api.catalog.sequence());
    await api.call('PUT', `/v1/policies/${enc('policy::/prod::watched')}`, { realm: '::/prod' });
    const second = await nextEvent();
    expect(second.sequence).toBe(first.sequence + 1);
    expect(second.policies.map((p: any) => p.fqn)).toContain('policy::/prod::watched');
    controller.abort();
    expect((await api.call('DELETE', `/v1/policies/${enc('policy::/prod::watched')}`)).status).toBe(204);
    expect((await fetch(`${api.url}/v1/dataplane/watch`)).status).toBe(401);
  });

  it('refuses bodies over 1 MiB with 413', async () => {
    const big = await api.call('POST', '/v1/services', JSON.stringify({ fqn: 'service::/a::b', pad: 'x'.repeat(1024 * 1024) }));
    expect(big.status).toBe(413);
    expect(big.body.error).toBe('payload_too_large');
  });

  it('answers arbitrary JSON bodies and paths with a JSON 4xx or success, never a 500', async () => {
    const answered = new Set([200, 201, 204, 400, 404, 405, 409]);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('POST /v1/services', 'POST /v1/bindings', 'PUT /v1/policies/policy%3A%3A%2Fprop%3A%3Ap', 'POST /v1/policies/explain'), fc.jsonValue(), async (route, body) => {
        const [method, path] = route.split(' ') as [string, string];
        const res = await api.call(method, path, JSON.stringify(body));
        expect(answered.has(res.status)).toBe(true);
        if (res.status >= 400) expect(typeof res.body.message).toBe('string');
      }),
      { numRuns: 150 },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), fc.string({ unit: 'binary' }), async (method, tail) => {
        const res = await fetch(`${api.url}/v1/${encodeURIComponent(tail)}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
        expect(answered.has(res.status)).toBe(true);
        expect(res.headers.get('content-type') ?? 'application/json').toBe('application/json');
      }),
      { numRuns: 150 },
    );
  });

  it('keeps every API-created binding, rotated secret and policy after a restart on the same state directory', async () => {
    const before = api.catalog.effective();
    await api.stop();
    api = await startApi(dir);
    expect(api.catalog.effective()).toEqual(before);
    const bindings = (await api.call('GET', '/v1/bindings')).body.bindings.map((b: any) => b.fqn);
    expect(bindings).toEqual(['binding::/prod::file-api', 'binding::/prod/billing::cache-job']);
    expect((await api.call('GET', `/v1/policies/${enc('policy::/prod::kept')}`)).body).toMatchObject({ deny: { functions: ['lo_export'] } });
    expect((api.catalog.effective().services.find((s) => s.fqn === SERVICE.fqn) as ServiceConfig).upstream.password).toBe('upstream-secret-2');
  });
});

describe('API exposure', () => {
  it('without a token serves loopback only, and refuses a non-loopback admin address at start', async () => {
    expect(() => assertApiExposure({ host: '0.0.0.0', port: 9187 }, undefined)).toThrow(ApiExposureError);
    expect(() => assertApiExposure({ host: '10.1.2.3', port: 9187 }, undefined)).toThrow(/without a token: set admin\.token/);
    expect(() => assertApiExposure({ host: '0.0.0.0', port: 9187 }, 't')).not.toThrow();
    for (const host of ['127.0.0.1', '127.9.9.9', '::1', 'localhost']) expect(() => assertApiExposure({ host, port: 9187 }, undefined)).not.toThrow();
    expect(resolveAdminToken({ token: 'file' }, { SEMPIPE_ADMIN_TOKEN: 'env' })).toBe('file');
    expect(resolveAdminToken({}, { SEMPIPE_ADMIN_TOKEN: 'env' })).toBe('env');
    expect(resolveAdminToken({}, {})).toBeUndefined();

    const open = await startApi(tempDir(), undefined);
    try {
      expect((await open.call('GET', '/v1/services')).status).toBe(200);
    } finally {
      await open.stop();
    }
  });
});

describe('durability of acknowledged API writes', () => {
  it('keeps a binding whose 201 arrived just before the API process was killed with SIGKILL', async () => {
    const dir = tempDir();
    const dist = (p: string): string => pathToFileURL(resolve(import.meta.dirname, '../../dist', p)).href;
    const script = join(dir, 'api.mjs');
    writeFileSync(
      script,
      `import { openCatalog } from ${JSON.stringify(dist('control/catalog.js'))};
       import { createApiHandler } from ${JSON.stringify(dist('control/api/router.js'))};
       import { startAdminServer } from ${JSON.stringify(dist('control/admin-server.js'))};
       import { parseConfig } from ${JSON.stringify(dist('control/config.js'))};
       const fileConfig = parseConfig(process.env.CONFIG_YAML, '/tmp/crash.yaml');
       const catalog = openCatalog({ stateDir: process.argv[2], fileConfig });
       const server = await startAdminServer({ host: '127.0.0.1', port: 0, metrics: async () => '', contentType: 'text/plain', ready: () => true,
         extra: createApiHandler({ catalog, sessions: { list: async () => [], kill: async () => false }, token: () => 'crash-token' }) });
       process.stdout.write(server.address.port + '\\n');`,
    );
    const yaml = `services:
  - fqn: service::/c::db
    protocol: postgres
    upstream: { host: 127.0.0.1, database: d, user: u, tls: disable }
`;
    const stateDir = join(dir, 'state');
    const child = spawn(process.execPath, [script, stateDir], { env: { ...process.env, CONFIG_YAML: yaml }, stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise<number>((r) => child.stdout.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
    const exited = new Promise((r) => child.once('exit', r));
    const headers = { authorization: 'Bearer crash-token', 'content-type': 'application/json' };
    const issued: { fqn: string; password: string }[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/v1/bindings`, { method: 'POST', headers, body: JSON.stringify({ fqn: `binding::/c::b${i}`, service: 'service::/c::db' }) });
      expect(res.status).toBe(201);
      issued.push((await res.json()) as { fqn: string; password: string });
    }
    const last = await fetch(`http://127.0.0.1:${port}/v1/policies/${enc('policy::/c::last')}`, { method: 'PUT', headers, body: JSON.stringify({ realm: '::/c', read_only: true }) });
    expect(last.status).toBe(201);
    child.kill('SIGKILL');
    await exited;

    const store = openStateStore(stateDir);
    const stored = new Map(store.bindings().map((b) => [b.fqn, b]));
    for (const b of issued) expect(verifyPasswordAgainstScram(b.password, parseScramVerifier(stored.get(b.fqn)!.verifier)!)).toBe(true);
    expect(store.policies().map((p) => p.fqn)).toEqual(['policy::/c::last']);
    store.close();
  });
});
