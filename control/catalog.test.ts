// Tests of the catalog's merge rules on a real state store: the file wins for its FQNs, API
// resources persist beside it, mutations are validated against the merged config, change
// listeners see committed state, bindings carry verifiers only, and a reloaded file that makes
// an API binding impossible suspends it instead of failing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CatalogError, openCatalog, type Catalog, type IssuedCredentials } from './catalog.js';
import { parseConfig, type BindingConfig, type HostPort, type SempipeConfig, type ServiceConfig } from './config.js';
import { validatePolicy } from './policy/policy-schema.js';
import { openStateStore } from './state-store.js';
import { createScramVerifier, parseScramVerifier, verifyPasswordAgainstScram } from '../protocols/postgres/auth/scram-verifier.js';

const dirs: string[] = [];
const catalogs: Catalog[] = [];
afterEach(() => {
  for (const c of catalogs.splice(0)) c.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The credentials of a PostgreSQL binding (user, password, URI). */
function pgCredentials(c: IssuedCredentials): Extract<IssuedCredentials, { password: string }> {
  if (!('password' in c)) throw new Error('expected PostgreSQL credentials');
  return c;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sempipe-catalog-'));
  dirs.push(d);
  return d;
}

const FILE_VERIFIER = createScramVerifier('file-client-pw', 16);

function fileConfig(extra = ''): SempipeConfig {
  return parseConfig(
    `admin: { listen: "127.0.0.1:19187" }
services:
  - fqn: service::/prod::orders
    protocol: postgres
    upstream: { host: 127.0.0.1, port: 5432, database: orders, user: owner, password: file-up-pw, tls: disable }
bindings:
  - fqn: binding::/prod::file-api
    service: service::/prod::orders
    listen: 127.0.0.1:16432
    clients: [ { user: app, verifier: "${FILE_VERIFIER}" } ]
${extra}`,
    '/tmp/sempipe-catalog-test.yaml',
  );
}

function open(dir = tempDir(), file = fileConfig()): Catalog {
  const c = openCatalog({ stateDir: dir, fileConfig: file });
  catalogs.push(c);
  return c;
}

const apiService: ServiceConfig = {
  fqn: 'service::/prod::cache',
  protocol: 'postgres',
  upstream: { host: '127.0.0.1', port: 5433, database: 'cache', user: 'cacher', password: 'api-up-pw', tls: 'disable' },
};

function refusal(fn: () => unknown): CatalogError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CatalogError) return err;
    throw err;
  }
  throw new Error('expected a CatalogError');
}

async function asyncRefusal(fn: () => Promise<unknown>): Promise<CatalogError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof CatalogError) return err;
    throw err;
  }
  throw new Error('expected a CatalogError');
}

function policy(fqn: string, realm: string, extra: object = {}) {
  const r = validatePolicy({ fqn, realm, ...extra });
  if (!r.success) throw new Error(JSON.stringify(r.issues));
  return r.policy;
}

describe('Catalog merge rules', () => {
  it('effective() holds the file resources and the API ones beside them', async () => {
    const c = open();
    c.createService(apiService);
    const issued = pgCredentials(await c.createBinding({ fqn: 'binding::/prod::cache-job', service: apiService.fqn, auth: 'scram-sha-256', allowPasswordWithoutTls: false }));
    const eff = c.effective();
    expect(eff.services.map((s) => s.fqn)).toEqual(['service::/prod::orders', 'service::/prod::cache']);
    expect(eff.bindings.map((b) => b.fqn)).toEqual(['binding::/prod::file-api', 'binding::/prod::cache-job']);
    const b = eff.bindings[1]!;
    expect((b as BindingConfig).database).toBe('cache');
    expect(b.clients).toEqual([{ user: 'cache-job', verifier: expect.stringMatching(/^SCRAM-SHA-256\$/) }]);
    expect(verifyPasswordAgainstScram(issued.password, parseScramVerifier((b as BindingConfig).clients[0]!.verifier!)!)).toBe(true);
    expect(eff.admin).toEqual(fileConfig().admin);
    expect(c.listServices().map((s) => [s.fqn, s.source])).toEqual([
      ['service::/prod::orders', 'file'],
      ['service::/prod::cache', 'api'],
    ]);
  });

  it('refuses API changes to file-defined resources with a conflict naming the file', async () => {
    const c = open();
    const expectFileConflict = (e: CatalogError): void => {
      expect(e.code).toBe('conflict');
      expect(e.message).toMatch(/ is defined in the config file$/);
    };
    expectFileConflict(refusal(() => c.createService({ ...apiService, fqn: 'service::/prod::orders' })));
    expectFileConflict(refusal(() => c.updateService('service::/prod::orders', { ...apiService, fqn: 'service::/prod::orders' })));
    expectFileConflict(refusal(() => c.rotateService('service::/prod::orders', 'x')));
    expectFileConflict(refusal(() => c.deleteService('service::/prod::orders')));
    expectFileConflict(refusal(() => c.rotateBinding('binding::/prod::file-api')));
    expectFileConflict(refusal(() => c.deleteBinding('binding::/prod::file-api')));
    expectFileConflict(
      await asyncRefusal(() => c.createBinding({ fqn: 'binding::/prod::file-api', service: 'service::/prod::orders', auth: 'scram-sha-256', allowPasswordWithoutTls: false })),
    );
    const withPolicy = { ...fileConfig(), policies: [policy('policy::/prod::guard', '::/prod', { read_only: true })] };
    c.setFileConfig(withPolicy);
    expectFileConflict(refusal(() => c.putPolicy('policy::/prod::guard', { realm: '::/' })));
    expectFileConflict(refusal(() => c.deletePolicy('policy::/prod::guard')));
  });

  it('shadows an API resource when the file later defines the same FQN, and shows it again when the file drops it', () => {
    const c = open();
    c.createService(apiService);
    c.putPolicy('policy::/prod::p', { realm: '::/prod', deny: { classes: ['ddl'] } });
    const fileService = `  - fqn: service::/prod::cache
    protocol: postgres
    upstream: { host: 10.0.0.9, port: 6000, database: filecache, user: u }`;
    const withCache = parseConfig(
      `admin: { listen: "127.0.0.1:19187" }
services:
${fileService}
`,
      '/tmp/x.yaml',
    );
    c.setFileConfig({ ...withCache, policies: [policy('policy::/prod::p', '::/prod', { read_only: true })] });
    expect(c.effective().services).toEqual(withCache.services);
    expect(c.getService(apiService.fqn).source).toBe('file');
    expect(c.effective().policies).toEqual([policy('policy::/prod::p', '::/prod', { read_only: true })]);
    expect(c.getPolicy('policy::/prod::p')).toMatchObject({ read_only: true, source: 'file' });

    c.setFileConfig(fileConfig());
    expect(c.getService(apiService.fqn)).toMatchObject({ source: 'api', upstream: { port: 5433 } });
    expect(c.getPolicy('policy::/prod::p')).toMatchObject({ deny: { classes: ['ddl'] }, read_only: false, source: 'api' });
  });

  it('suspends an API binding whose address a reloaded file takes, or whose service the file drops', async () => {
    const c = open();
    const onFile = pgCredentials(await c.createBinding({ fqn: 'binding::/prod::a', service: 'service::/prod::orders', listen: { host: '127.0.0.1', port: 17000 }, auth: 'scram-sha-256', allowPasswordWithoutTls: false }));
    expect(onFile.uri).toMatch(/@127\.0\.0\.1:17000\/orders$/);
    c.setFileConfig(
      fileConfig(`  - fqn: binding::/prod::b
    service: service::/prod::orders
    listen: 127.0.0.1:17000
    clients: [ { user: b, verifier: "${FILE_VERIFIER}" } ]`),
    );
    expect(c.effective().bindings.map((b) => b.fqn)).toEqual(['binding::/prod::file-api', 'binding::/prod::b']);
    expect(c.problems()).toEqual([{ fqn: 'binding::/prod::a', reason: 'address 127.0.0.1:17000 is already used by binding::/prod::b (config file)' }]);
    expect(c.getBinding('binding::/prod::a')).toMatchObject({ active: false, source: 'api' });

    c.setFileConfig(parseConfig('admin: { listen: "127.0.0.1:19187" }\n', '/tmp/y.yaml'));
    expect(c.effective().bindings).toEqual([]);
    expect(c.problems()).toEqual([{ fqn: 'binding::/prod::a', reason: 'its service service::/prod::orders does not exist' }]);

    c.setFileConfig(fileConfig());
    expect(c.problems()).toEqual([]);
    expect(c.effective().bindings.map((b) => b.fqn)).toEqual(['binding::/prod::file-api', 'binding::/prod::a']);
  });

  it('validates a new binding against the merged config: unknown service, taken address, taken FQN', async () => {
    const c = open();
    const base = { auth: 'scram-sha-256' as const, allowPasswordWithoutTls: false };
    const unknown = await asyncRefusal(() => c.createBinding({ ...base, fqn: 'binding::/x::a', service: 'service::/x::nope' }));
    expect([unknown.code, unknown.path, unknown.message]).toEqual(['invalid', 'service', 'unknown service "service::/x::nope"']);
    const onFile = await asyncRefusal(() => c.createBinding({ ...base, fqn: 'binding::/x::a', service: 'service::/prod::orders', listen: { host: '127.0.0.1', port: 16432 } }));
    expect([onFile.code, onFile.message]).toEqual(['conflict', 'address 127.0.0.1:16432 is already used by binding::/prod::file-api']);
    const onAdmin = await asyncRefusal(() => c.createBinding({ ...base, fqn: 'binding::/x::a', service: 'service::/prod::orders', listen: { host: '127.0.0.1', port: 19187 } }));
    expect(onAdmin.message).toBe('address 127.0.0.1:19187 is already used by the admin listener');
    await c.createBinding({ ...base, fqn: 'binding::/x::a', service: 'service::/prod::orders' });
    const again = await asyncRefusal(() => c.createBinding({ ...base, fqn: 'binding::/x::a', service: 'service::/prod::orders' }));
    expect([again.code, again.message]).toEqual(['conflict', 'binding::/x::a already exists']);
    const long = await asyncRefusal(() => c.createBinding({ ...base, fqn: `binding::/x::${'n'.repeat(64)}`, service: 'service::/prod::orders' }));
    expect([long.code, long.path]).toEqual(['invalid', 'user']);
  });

  it('refuses an API binding of a mysql service with the reason, instead of making a PostgreSQL one', async () => {
    const file = parseConfig(
      `admin: { listen: "127.0.0.1:19187" }
services:
  - { fqn: service::/prod::shop, protocol: mysql, upstream: { host: 127.0.0.1, port: 3306, database: shop, user: owner, password: up-pw, tls: disable } }
`,
      '/tmp/sempipe-catalog-test.yaml',
    );
    const c = open(tempDir(), file);
    const refused = await asyncRefusal(() => c.createBinding({ fqn: 'binding::/x::shop', service: 'service::/prod::shop', auth: 'scram-sha-256', allowPasswordWithoutTls: false }));
    expect([refused.code, refused.path]).toEqual(['invalid', 'service']);
    expect(refused.message).toBe('service::/prod::shop is a mysql service: its bindings are defined in the config file (the API issues PostgreSQL and HTTP bindings)');
    expect(c.effective().bindings).toEqual([]);
  });

  it('chooses a free loopback port that no listener names when listen is absent', async () => {
    const c = open();
    const ports = new Set<number>();
    for (let i = 0; i < 5; i++) {
      await c.createBinding({ fqn: `binding::/p::b${i}`, service: 'service::/prod::orders', auth: 'scram-sha-256', allowPasswordWithoutTls: false });
    }
    for (const b of c.effective().bindings) {
      const [address] = b.listen as [HostPort];
      expect(address.host).toBe('127.0.0.1');
      ports.add(address.port);
    }
    expect(ports.size).toBe(6);
    expect(ports.has(19187)).toBe(false);
  });

  it('rotates a binding: a new verifier for a new password, the old password stops matching', async () => {
    const c = open();
    const first = pgCredentials(await c.createBinding({ fqn: 'binding::/p::r', service: 'service::/prod::orders', user: 'reporter', auth: 'scram-sha-256', allowPasswordWithoutTls: false }));
    expect(first.user).toBe('reporter');
    const second = pgCredentials(c.rotateBinding('binding::/p::r'));
    expect(second.password).not.toBe(first.password);
    expect(second.uri).toBe(`postgres://reporter:${second.password}@${c.getBinding('binding::/p::r').listen}/orders`);
    const verifier = parseScramVerifier((c.effective().bindings.find((b) => b.fqn === 'binding::/p::r') as BindingConfig).clients[0]!.verifier!)!;
    expect(verifyPasswordAgainstScram(second.password, verifier)).toBe(true);
    expect(verifyPasswordAgainstScram(first.password, verifier)).toBe(false);
    expect(refusal(() => c.rotateBinding('binding::/p::missing')).code).toBe('not_found');
  });

  it('updates, rotates and deletes API services; a service in use cannot be deleted', async () => {
    const c = open();
    c.createService(apiService);
    expect(refusal(() => c.createService(apiService)).message).toBe('service::/prod::cache already exists');
    const { password: _p, ...noPassword } = apiService.upstream;
    c.updateService(apiService.fqn, { ...apiService, upstream: { ...noPassword, port: 6543 } });
    expect(c.effective().services[1]!.upstream).toMatchObject({ port: 6543, password: 'api-up-pw' });
    c.rotateService(apiService.fqn, 'rotated-up-pw');
    expect((c.effective().services[1] as ServiceConfig).upstream.password).toBe('rotated-up-pw');
    expect(c.getService(apiService.fqn).upstream).not.toHaveProperty('password');
    expect(refusal(() => c.updateService(apiService.fqn, { ...apiService, fqn: 'service::/prod::other' })).path).toBe('fqn');

    await c.createBinding({ fqn: 'binding::/p::user', service: apiService.fqn, auth: 'scram-sha-256', allowPasswordWithoutTls: false });
    const inUse = refusal(() => c.deleteService(apiService.fqn));
    expect([inUse.code, inUse.message]).toEqual(['conflict', 'service::/prod::cache is used by binding::/p::user; delete those bindings first']);
    c.deleteBinding('binding::/p::user');
    c.deleteService(apiService.fqn);
    expect(refusal(() => c.getService(apiService.fqn)).code).toBe('not_found');
    expect(refusal(() => c.deleteService(apiService.fqn)).code).toBe('not_found');
    expect(refusal(() => c.getService('service::nope')).code).toBe('invalid');
  });

  it('puts policies (created, then replaced), validates them with the policy schema, and returns what PUT accepts', () => {
    const c = open();
    const doc = { realm: 'binding::/prod', deny: { classes: ['ddl'], functions: ['pg_read_file'] }, limits: { max_rows: 10, statement_timeout: '5s', rate: '200/s' }, hooks: [{ classes: ['delete'], url: 'http://127.0.0.1:9/h', timeout: '500ms', on_error: 'deny' }] };
    const first = c.putPolicy('policy::/prod::g', doc);
    expect(first.created).toBe(true);
    expect(c.putPolicy('policy::/prod::g', { ...doc, read_only: true }).created).toBe(false);
    const view = c.getPolicy('policy::/prod::g');
    const { source, ...asBody } = view;
    expect(source).toBe('api');
    expect(asBody).toMatchObject({ read_only: true, limits: { max_rows: 10, statement_timeout: '5000ms', rate: 200 } });
    // Putting back what GET returned changes nothing.
    c.putPolicy('policy::/prod::g', asBody);
    expect(c.getPolicy('policy::/prod::g')).toEqual(view);
    expect(c.effective().policies).toEqual([policy('policy::/prod::g', 'binding::/prod', { ...doc, read_only: true })]);

    const bad = refusal(() => c.putPolicy('policy::/prod::g', { realm: '::/', deny: { classes: ['ddl', 'drop-everything'] } }));
    expect([bad.code, bad.path]).toEqual(['invalid', 'deny.classes[1]']);
    const mismatch = refusal(() => c.putPolicy('policy::/prod::g', { fqn: 'policy::/prod::h', realm: '::/' }));
    expect([mismatch.code, mismatch.path]).toEqual(['invalid', 'fqn']);
    c.deletePolicy('policy::/prod::g');
    expect(c.listPolicies()).toEqual([]);
    expect(refusal(() => c.deletePolicy('policy::/prod::g')).code).toBe('not_found');
  });

  it('fires onChange after the commit, with the new effective config, for API changes and file reloads', async () => {
    const dir = tempDir();
    const c = open(dir);
    const seen: { config: SempipeConfig; storedBindings: number }[] = [];
    const off = c.onChange((config) => {
      // A second connection sees the change: it is committed before listeners run.
      const reader = openStateStore(dir);
      seen.push({ config, storedBindings: reader.bindings().length });
      reader.close();
    });
    await c.createBinding({ fqn: 'binding::/p::l', service: 'service::/prod::orders', auth: 'scram-sha-256', allowPasswordWithoutTls: false });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.storedBindings).toBe(1);
    expect(seen[0]!.config.bindings.map((b) => b.fqn)).toContain('binding::/p::l');
    c.setFileConfig(fileConfig());
    expect(seen).toHaveLength(2);
    c.deleteBinding('binding::/p::l');
    expect(seen[2]!.storedBindings).toBe(0);
    expect(seen[2]!.config.bindings.map((b) => b.fqn)).toEqual(['binding::/prod::file-api']);
    off();
    c.putPolicy('policy::/::x', { realm: '::/' });
    expect(seen).toHaveLength(3);
    // A refused change fires nothing.
    expect(() => c.deleteBinding('binding::/p::l')).toThrow(CatalogError);
    expect(seen).toHaveLength(3);
  });

  it('keeps API bindings, rotated secrets and policies across a restart', async () => {
    const dir = tempDir();
    const c = open(dir);
    c.createService(apiService);
    await c.createBinding({ fqn: 'binding::/p::keep', service: apiService.fqn, auth: 'scram-sha-256', allowPasswordWithoutTls: false });
    const rotated = pgCredentials(c.rotateBinding('binding::/p::keep'));
    c.rotateService(apiService.fqn, 'after-rotation');
    c.putPolicy('policy::/p::keep', { realm: 'binding::/p', read_only: true });
    const before = c.effective();
    c.close();
    catalogs.splice(catalogs.indexOf(c), 1);

    const again = open(dir);
    expect(again.effective()).toEqual(before);
    const verifier = parseScramVerifier((again.effective().bindings.find((b) => b.fqn === 'binding::/p::keep') as BindingConfig).clients[0]!.verifier!)!;
    expect(verifyPasswordAgainstScram(rotated.password, verifier)).toBe(true);
    expect((again.effective().services.find((s) => s.fqn === apiService.fqn) as ServiceConfig).upstream.password).toBe('after-rotation');
    expect(again.sequence()).toBe(5);
  });
});
