// `sempipe ctl` end to end: the real binary (dist/bin/sempipe.js) as a child process against the
// real control API (admin server + API router + catalog with its SQLite store on a temp dir,
// config file naming a real PostgreSQL), every command in table and --json form, the API's errors
// (400 with the field, 401/403, 404, 409), connection refused and usage mistakes. Live sessions
// belong to worker processes, so `sessions list|kill` run against a real `sempipe proxy`.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startAdminServer, type AdminServer } from '../../control/admin-server.js';
import { createApiHandler } from '../../control/api/router.js';
import { openCatalog, type Catalog } from '../../control/catalog.js';
import { loadConfig, type ServiceConfig } from '../../control/config.js';
import { initClassifier } from '../../protocols/postgres/sql-classify.js';
import { prepareCredentials } from '../../bin/wiring.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { SEMPIPE_BIN, startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const TOKEN = 'ctl-test-token-9f2c1e';
const FILE_SERVICE = 'service::/file::db';
const API_SERVICE = 'service::/ops::orders';
const API_SERVICE_2 = 'service::/ops/eu::cache';
const BINDING = 'binding::/ops/billing::api-orders';

let server: PgServer;
let dir: string;
let catalog: Catalog;
let admin: AdminServer;
let adminUrl: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `sempipe ctl …` with the test API in the environment unless `env` says otherwise. */
function ctl(args: string[], opts: { env?: Record<string, string | undefined>; input?: string } = {}): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, SEMPIPE_ADMIN_URL: adminUrl, SEMPIPE_ADMIN_TOKEN: TOKEN, NO_COLOR: undefined, ...opts.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const child = spawn(process.execPath, [SEMPIPE_BIN, 'ctl', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(opts.input ?? '');
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Data rows of a table by their first column. */
function tableRow(stdout: string, first: string): string[] | undefined {
  return stdout
    .split('\n')
    .map((l) => l.split(/\s{3,}/))
    .find((cells) => cells[0] === first);
}

beforeAll(async () => {
  server = await startPostgres();
  await initClassifier();
  dir = mkdtempSync(join(tmpdir(), 'sempipe-ctl-'));
  const configFile = file(
    'sempipe.yaml',
    `admin: { listen: 127.0.0.1:9187 }
services:
  - fqn: ${FILE_SERVICE}
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }
`,
  );
  catalog = openCatalog({ stateDir: join(dir, 'state'), fileConfig: prepareCredentials(loadConfig(configFile)) });
  admin = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    metrics: async () => '',
    contentType: 'text/plain',
    ready: () => true,
    extra: createApiHandler({
      catalog,
      token: () => TOKEN,
      // Sessions live in worker processes: the `sessions` suite below runs against `sempipe proxy`.
      sessions: {
        list: () => Promise.reject(new Error('no data plane in this suite')),
        kill: () => Promise.reject(new Error('no data plane in this suite')),
      },
    }),
  });
  adminUrl = `http://127.0.0.1:${admin.address.port}`;
});

afterAll(async () => {
  await admin?.close();
  catalog?.close();
  if (server) await destroyPostgres(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('services', () => {
  test('create -f with a services: list, then list as a table and as JSON', async () => {
    const upstream = `{ host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }`;
    const f = file('services.yaml', `services:\n  - { fqn: "${API_SERVICE}", protocol: postgres, upstream: ${upstream} }\n  - { fqn: "${API_SERVICE_2}", protocol: postgres, upstream: ${upstream} }\n`);
    const created = await ctl(['services', 'create', '-f', f]);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toBe(`${API_SERVICE} created\n${API_SERVICE_2} created\n`);

    const table = await ctl(['services', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^FQN\s+PROTOCOL\s+UPSTREAM\s+DATABASE\s+USER\s+TLS\s+SOURCE$/);
    expect(tableRow(table.stdout, FILE_SERVICE)).toEqual([FILE_SERVICE, 'postgres', `127.0.0.1:${server.port}`, server.database, server.user, 'disable', 'file']);
    expect(tableRow(table.stdout, API_SERVICE)?.at(-1)).toBe('api');
    expect(table.stdout).not.toContain(server.password);

    const json = await ctl(['services', '--json']);
    const body = JSON.parse(json.stdout) as { services: Array<{ fqn: string; source: string }> };
    expect(body.services.map((s) => s.fqn).sort()).toEqual([API_SERVICE_2, API_SERVICE, FILE_SERVICE].sort());
  });

  test('get shows one service as YAML, or as JSON', async () => {
    const yaml = await ctl(['services', 'get', API_SERVICE]);
    expect(yaml.code).toBe(0);
    expect(yaml.stdout).toContain(`fqn: ${API_SERVICE}`);
    expect(yaml.stdout).toContain(`port: ${server.port}`);
    const json = await ctl(['services', 'get', API_SERVICE, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ fqn: API_SERVICE, source: 'api', upstream: { database: server.database } });
  });

  test('rotate reads the new password from stdin; without --password-stdin it refuses', async () => {
    const ok = await ctl(['services', 'rotate', API_SERVICE, '--password-stdin'], { input: 'n3w-upstream-pw\n' });
    expect(ok).toMatchObject({ code: 0, stdout: `${API_SERVICE}: upstream password rotated; new upstream connections use it\n` });
    expect((catalog.effective().services.find((s) => s.fqn === API_SERVICE) as ServiceConfig | undefined)?.upstream.password).toBe('n3w-upstream-pw');
    const refused = await ctl(['services', 'rotate', API_SERVICE], { input: 'x\n' });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--password-stdin');
    const json = await ctl(['services', 'rotate', API_SERVICE, '--password-stdin', '--json'], { input: server.password });
    expect(JSON.parse(json.stdout)).toEqual({ fqn: API_SERVICE, rotated: true });
  });

  test('delete: an API service goes; a file-defined one is refused with 409', async () => {
    const del = await ctl(['services', 'delete', API_SERVICE_2]);
    expect(del).toMatchObject({ code: 0, stdout: `${API_SERVICE_2} deleted\n` });
    const again = await ctl(['services', 'delete', API_SERVICE_2]);
    expect(again).toMatchObject({ code: 1, stderr: `sempipe ctl: ${API_SERVICE_2} does not exist (HTTP 404)\n` });
    const fileDefined = await ctl(['services', 'delete', FILE_SERVICE]);
    expect(fileDefined).toMatchObject({ code: 1, stderr: `sempipe ctl: ${FILE_SERVICE} is defined in the config file (HTTP 409)\n` });
  });

  test('an invalid service file: the API names the field (400)', async () => {
    const f = file('bad-service.json', JSON.stringify({ fqn: 'service::/ops::bad', protocol: 'postgres', upstream: { host: '127.0.0.1', port: 70000, database: 'd', user: 'u' } }));
    const r = await ctl(['services', 'create', '-f', f]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sempipe ctl: service::\/ops::bad: upstream\.port: .+ \(HTTP 400\)\n$/);
  });
});

describe('bindings', () => {
  let firstPassword = '';

  test('create prints the credentials once with the URI and the not-stored hint', async () => {
    const port = await freePort();
    const r = await ctl(['bindings', 'create', BINDING, '--service', API_SERVICE, '--listen', `127.0.0.1:${port}`, '--database', 'orders']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`${BINDING} created`);
    firstPassword = tableRow(r.stdout, 'password')![1]!;
    expect(firstPassword.length).toBeGreaterThanOrEqual(24);
    expect(tableRow(r.stdout, 'user')).toEqual(['user', 'api-orders']);
    expect(tableRow(r.stdout, 'uri')).toEqual(['uri', `postgres://api-orders:${encodeURIComponent(firstPassword)}@127.0.0.1:${port}/orders`]);
    expect(r.stdout).toContain('Shown only this once');
    expect(JSON.stringify(catalog.listBindings())).not.toContain(firstPassword);
  });

  test('create --json prints the API answer; the hint goes to stderr', async () => {
    const fqn = 'binding::/ops/billing::reports';
    const r = await ctl(['bindings', 'create', fqn, '--service', API_SERVICE, '--auth', 'scram-sha-256', '--json']);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout) as { fqn: string; user: string; password: string; uri: string };
    expect(body).toMatchObject({ fqn, user: 'reports' });
    expect(body.uri).toContain(encodeURIComponent(body.password));
    expect(r.stderr).toContain('Shown only this once');
  });

  test('list and get never show a secret', async () => {
    const table = await ctl(['bindings', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^FQN\s+SERVICE\s+LISTEN\s+DATABASE\s+AUTH\s+USERS\s+SOURCE\s+STATUS$/);
    expect(tableRow(table.stdout, BINDING)).toEqual([BINDING, API_SERVICE, expect.stringMatching(/^127\.0\.0\.1:\d+$/), 'orders', 'scram-sha-256', 'api-orders', 'api', 'active']);
    expect(table.stdout).not.toContain(firstPassword);
    const json = JSON.parse((await ctl(['bindings', 'list', '--json'])).stdout) as { bindings: Array<{ fqn: string }> };
    expect(json.bindings.map((b) => b.fqn)).toContain(BINDING);
    const get = await ctl(['bindings', 'get', BINDING]);
    expect(get.stdout).toContain(`service: ${API_SERVICE}`);
    expect(get.stdout).not.toContain(firstPassword);
    expect(JSON.parse((await ctl(['bindings', 'get', BINDING, '--json'])).stdout)).toMatchObject({ fqn: BINDING, users: ['api-orders'] });
  });

  test('a service in use cannot be deleted (409)', async () => {
    const r = await ctl(['services', 'delete', API_SERVICE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is used by binding::\/ops\/billing::api-orders.* \(HTTP 409\)\n$/);
  });

  test('rotate issues a new password, shown once', async () => {
    const r = await ctl(['bindings', 'rotate', BINDING]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`${BINDING} rotated`);
    const password = tableRow(r.stdout, 'password')![1]!;
    expect(password).not.toBe(firstPassword);
    expect(r.stdout).toContain('Shown only this once');
    const json = JSON.parse((await ctl(['bindings', 'rotate', BINDING, '--json'])).stdout) as { password: string };
    expect(json.password).not.toBe(password);
  });

  test('revoke removes it; afterwards get is a 404', async () => {
    const r = await ctl(['bindings', 'revoke', BINDING]);
    expect(r).toMatchObject({ code: 0, stdout: `${BINDING} revoked: its listener and live sessions are closed\n` });
    const get = await ctl(['bindings', 'get', BINDING]);
    expect(get).toMatchObject({ code: 1, stderr: `sempipe ctl: ${BINDING} does not exist (HTTP 404)\n` });
    const json = await ctl(['bindings', 'revoke', 'binding::/ops/billing::reports', '--json']);
    expect(JSON.parse(json.stdout)).toEqual({ fqn: 'binding::/ops/billing::reports', deleted: true });
  });

  test('the API\'s 400 names the field: an unknown service, an auth method it refuses', async () => {
    const r = await ctl(['bindings', 'create', 'binding::/ops::x', '--service', 'service::/ops::nope']);
    expect(r).toMatchObject({ code: 1, stderr: 'sempipe ctl: service: unknown service "service::/ops::nope" (HTTP 400)\n' });
    const md5 = await ctl(['bindings', 'create', 'binding::/ops::x', '--service', API_SERVICE, '--auth', 'md5']);
    expect(md5.code).toBe(1);
    expect(md5.stderr).toMatch(/^sempipe ctl: auth: .+ \(HTTP 400\)\n$/);
  });
});

describe('policy', () => {
  const GUARD = 'policy::/ops::guard';
  const RO = 'policy::/ops::read-only';
  const EXPLAINED = 'binding::/ops/billing::explained';

  beforeAll(async () => {
    const r = await ctl(['bindings', 'create', EXPLAINED, '--service', API_SERVICE]);
    expect(r.code).toBe(0);
  });

  test('apply -f with a policies: list creates, a second apply updates', async () => {
    const f = file(
      'policies.yaml',
      `policies:
  - fqn: ${GUARD}
    realm: binding::/ops/billing
    deny: { classes: [ddl, dcl], functions: [pg_read_file] }
  - fqn: ${RO}
    realm: service::/ops
    read_only: true
    limits: { max_rows: 100 }
`,
    );
    const first = await ctl(['policy', 'apply', '-f', f]);
    expect(first).toMatchObject({ code: 0, stdout: `${GUARD} created\n${RO} created\n` });
    const second = await ctl(['policy', 'apply', '-f', f, '--json']);
    expect(second.code).toBe(0);
    expect((JSON.parse(second.stdout) as Array<{ fqn: string }>).map((p) => p.fqn)).toEqual([GUARD, RO]);
    const single = file('one-policy.json', JSON.stringify({ fqn: RO, realm: 'service::/ops', read_only: true }));
    expect(await ctl(['policy', 'apply', '-f', single])).toMatchObject({ code: 0, stdout: `${RO} updated\n` });
  });

  test('list, get', async () => {
    const table = await ctl(['policy', 'list']);
    expect(table.stdout.split('\n')[0]).toMatch(/^FQN\s+REALM\s+ALLOW\s+DENY\s+READ-ONLY\s+SOURCE$/);
    expect(tableRow(table.stdout, GUARD)).toEqual([GUARD, 'binding::/ops/billing', '-', 'ddl,dcl,pg_read_file', 'no', 'api']);
    expect(tableRow(table.stdout, RO)).toEqual([RO, 'service::/ops', '-', '-', 'yes', 'api']);
    const json = JSON.parse((await ctl(['policy', 'list', '--json'])).stdout) as { policies: Array<{ fqn: string }> };
    expect(json.policies.map((p) => p.fqn).sort()).toEqual([RO, GUARD].sort());
    const get = await ctl(['policy', 'get', GUARD]);
    expect(get.stdout).toContain('realm: binding::/ops/billing');
    expect(get.stdout).toContain('- pg_read_file');
    expect(JSON.parse((await ctl(['policy', 'get', RO, '--json'])).stdout)).toMatchObject({ fqn: RO, read_only: true });
  });

  test('explain: the verdict, the statements and the policies that apply', async () => {
    const denied = await ctl(['policy', 'explain', '--binding', EXPLAINED, '--sql', 'drop table orders']);
    expect(denied.code).toBe(0);
    expect(denied.stdout.split('\n')[0]).toMatch(/^verdict: deny \(42501\) .*\[rule deny\.classes, policy::\/ops::guard\]$/);
    expect(tableRow(denied.stdout, 'ddl')).toEqual(['ddl', 'yes', 'orders', '-']);
    expect(tableRow(denied.stdout, RO)).toEqual([RO, 'service::/ops']);
    expect(tableRow(denied.stdout, GUARD)).toEqual([GUARD, 'binding::/ops/billing']);
    const allowed = await ctl(['policy', 'explain', '--binding', EXPLAINED, '--sql', 'select 1', '--json']);
    expect(JSON.parse(allowed.stdout)).toMatchObject({ verdict: { action: 'allow' }, statements: [{ class: 'select' }] });
    const replication = await ctl(['policy', 'explain', '--binding', EXPLAINED, '--sql', 'IDENTIFY_SYSTEM', '--replication', 'logical']);
    expect(replication.stdout.split('\n')[0]).toMatch(/^verdict: deny \(42501\) permission denied by sempipe: logical replication .*\[rule allow\.replication\]$/);
    expect(tableRow(replication.stdout, 'replication (IDENTIFY_SYSTEM)')).toEqual(['replication (IDENTIFY_SYSTEM)', 'no', '-', '-']);
  });

  test('an invalid policy is refused with the field path (400); delete', async () => {
    const bad = file('bad-policy.yaml', `fqn: policy::/ops::bad\nrealm: binding::/ops\ndeny: { classes: [nonsense] }\n`);
    const r = await ctl(['policy', 'apply', '-f', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sempipe ctl: policy::\/ops::bad: deny\.classes\[0\]: .+ \(HTTP 400\)\n$/);
    expect(await ctl(['policy', 'delete', GUARD])).toMatchObject({ code: 0, stdout: `${GUARD} deleted\n` });
    expect((await ctl(['policy', 'get', GUARD])).code).toBe(1);
  });
});

describe('reaching the API', () => {
  test('a wrong token is 403, no token is 401 with a hint', async () => {
    const wrong = await ctl(['services', 'list', '--token', 'not-the-token']);
    expect(wrong).toMatchObject({ code: 1, stdout: '', stderr: 'sempipe ctl: the bearer token is not valid (HTTP 403)\n' });
    const none = await ctl(['services', 'list'], { env: { SEMPIPE_ADMIN_TOKEN: undefined } });
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('sempipe ctl: missing bearer token: send "Authorization: Bearer <token>"; set --token or SEMPIPE_ADMIN_TOKEN (HTTP 401)\n');
    expect(none.stderr).not.toContain(TOKEN);
  });

  test('--admin wins over SEMPIPE_ADMIN_URL; connection refused names the URL', async () => {
    const port = await freePort();
    const refused = await ctl(['services', 'list', '--admin', `http://127.0.0.1:${port}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`sempipe ctl: cannot reach the admin API at http://127.0.0.1:${port}: connection refused`);
    const viaFlag = await ctl(['services', 'list', '--admin', adminUrl], { env: { SEMPIPE_ADMIN_URL: `http://127.0.0.1:${port}` } });
    expect(viaFlag.code).toBe(0);
  });

  test('usage mistakes exit 2', async () => {
    const cases: Array<[string[], string]> = [
      [['frobnicate'], 'unknown command "frobnicate"'],
      [['services', 'frobnicate'], 'unknown command "services frobnicate"'],
      [['services', 'get', 'service:/bad'], 'invalid FQN "service:/bad"'],
      [['services', 'get', 'binding::/a::b'], 'expected a service, got a binding'],
      [['bindings', 'create', BINDING], 'bindings create needs --service'],
      [['sessions', 'list', '--sql', 'x'], 'sessions list has no option --sql'],
      [['policy', 'apply', '-f', join(dir, 'missing.yaml')], 'missing.yaml: no such file'],
      [['services', 'list', '--admin', 'ftp://x'], '--admin takes an http:// or https:// URL'],
    ];
    for (const [args, message] of cases) {
      const r = await ctl(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toContain(message);
    }
    const help = await ctl(['help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('policy explain --binding FQN --sql TEXT');
  });
});

describe('sessions (against sempipe proxy)', () => {
  let proc: SempipeProcess;
  let client: pg.Client;
  const LIVE = 'binding::/live::app';

  beforeAll(async () => {
    const port = await freePort();
    proc = await startSempipe({
      workers: 2,
      yaml: `admin: { listen: "127.0.0.1:\${ADMIN_PORT}", token: ${TOKEN} }
state_dir: ${join(dir, 'proxy-state')}
services:
  - fqn: service::/live::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }
bindings:
  - fqn: ${LIVE}
    service: service::/live::db
    listen: 127.0.0.1:${port}
    database: app
    clients: [ { user: app, password: app-secret } ]
`,
    });
    client = new pg.Client({ host: '127.0.0.1', port, user: 'app', password: 'app-secret', database: 'app' });
    await client.connect();
    await client.query('select 1');
  });

  afterAll(async () => {
    await client?.end().catch(() => {});
    await proc?.stop();
  });

  test('list (table, JSON, by binding) and kill', async () => {
    const env = { SEMPIPE_ADMIN_URL: proc.adminUrl };
    const table = await ctl(['sessions', 'list'], { env });
    expect(table).toMatchObject({ code: 0, stderr: '' });
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+BINDING\s+USER\s+CLIENT\s+STARTED\s+STATEMENTS\s+BYTES-IN\s+BYTES-OUT$/);
    const row = table.stdout.split('\n')[1]!.split(/\s{3,}/);
    expect(row[1]).toBe(LIVE);
    expect(row[2]).toBe('app');
    const json = JSON.parse((await ctl(['sessions', 'list', '--json', '--binding', LIVE], { env })).stdout) as { sessions: Array<{ id: string; statements: number }> };
    expect(json.sessions).toHaveLength(1);
    expect(json.sessions[0]!.statements).toBeGreaterThanOrEqual(1);
    const other = await ctl(['sessions', 'list', '--binding', 'binding::/live::other'], { env });
    expect(other.stdout).toBe('no sessions\n');

    // pg reports the FATAL, then the closed connection: both land here, the first one counts.
    const ended = new Promise<Error>((resolve) => client.on('error', resolve));
    const kill = await ctl(['sessions', 'kill', json.sessions[0]!.id], { env });
    expect(kill).toMatchObject({ code: 0, stdout: `session ${json.sessions[0]!.id} killed\n` });
    expect(((await ended) as Error & { code?: string }).code).toBe('57P01');
    const again = await ctl(['sessions', 'kill', json.sessions[0]!.id], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('(HTTP 404)');
  });
});
