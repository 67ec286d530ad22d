// Client authentication through the real sempipe binary with real clients (psql, pg): SCRAM-SHA-256,
// md5 and cleartext bindings, a client configured with a verifier made by `sempipe hash-password`,
// the errors PostgreSQL itself gives (28P01 alike for a wrong password and an unknown user, 3D000,
// 28000), the auth timeout, the auth-failure metric and audit lines, that no secret leaks into logs
// or client errors, and the `check-config` command.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireBinary } from '../harness/binaries.js';
import { makeCertificate } from '../harness/certs.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePorts } from '../harness/ports.js';
import { auditLinesOf, SEMPIPE_BIN, startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { run, type RunResult } from '../harness/run.js';

const SERVICE = 'service::/test::db';
const BAD_SERVICE = 'service::/test::wrong-upstream-password';
const BAD_UPSTREAM_PASSWORD = 'wrong-upstream-pw-7f3a9c';
const PASSWORD = 'api-secret';
const VERIFIER_PASSWORD = 'verifier-only-secret';
/** Not in SASLprep's normal form: the "ﬁ" ligature (U+FB01) and a no-break space map to "fi" and " ". */
const UNICODE_USER = 'jürgen';
const UNICODE_PASSWORD = 'ﬁsh\u00a0pässwörd';

type Method = 'scram' | 'md5' | 'password' | 'tlsPassword' | 'badUpstream';
const BINDINGS: Record<Method, string> = {
  scram: 'binding::/test::scram',
  md5: 'binding::/test::md5',
  password: 'binding::/test::cleartext',
  tlsPassword: 'binding::/test::cleartext-tls',
  badUpstream: 'binding::/test::bad-upstream',
};

let server: PgServer;
let sempipe: SempipeProcess;
let dir: string;
let verifier: string;
const ports = {} as Record<Method, number>;

const sempipeCli = (args: string[], opts: { env?: Record<string, string>; input?: string } = {}): Promise<RunResult> =>
  run(process.execPath, [SEMPIPE_BIN, ...args], opts);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-auth-'));
  const hashed = await sempipeCli(['hash-password'], { input: `${VERIFIER_PASSWORD}\n` });
  expect(hashed.code, hashed.stderr).toBe(0);
  verifier = hashed.stdout.trim();
  server = await startPostgres();
  const methods = Object.keys(BINDINGS) as Method[];
  const bindingPorts = await freePorts(methods.length);
  methods.forEach((m, i) => (ports[m] = bindingPorts[i]!));
  const cert = makeCertificate(dir, 'localhost');
  const clients = `[ { user: api, password: ${PASSWORD} }, { user: vuser, verifier: "${verifier}" }, { user: ${UNICODE_USER}, password: "${UNICODE_PASSWORD}" } ]`;
  // The references on the upstream server: the same password with SCRAM, and with cleartext auth.
  server.sql(`CREATE ROLE "${UNICODE_USER}" LOGIN PASSWORD '${UNICODE_PASSWORD}'`);
  server.sql(`CREATE ROLE "${UNICODE_USER}_cleartext" LOGIN PASSWORD '${UNICODE_PASSWORD}'`);
  const hba = join(server.dataDir, 'pg_hba.conf');
  writeFileSync(hba, `host all "${UNICODE_USER}_cleartext" 127.0.0.1/32 password\n${readFileSync(hba, 'utf8')}`);
  server.sql('select pg_reload_conf()');
  sempipe = await startSempipe({
    workers: 2,
    env: { UP_PW: server.password, BAD_PW: BAD_UPSTREAM_PASSWORD },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 1s, drain_timeout: 2s }
services:
  - fqn: ${SERVICE}
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
  - fqn: ${BAD_SERVICE}
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${BAD_PW}", tls: disable }
bindings:
  - fqn: ${BINDINGS.scram}
    service: ${SERVICE}
    listen: 127.0.0.1:${ports.scram}
    database: orders
    auth: scram-sha-256
    clients: ${clients}
  - fqn: ${BINDINGS.md5}
    service: ${SERVICE}
    listen: 127.0.0.1:${ports.md5}
    database: orders
    auth: md5
    clients: [ { user: api, password: ${PASSWORD} } ]
  - fqn: ${BINDINGS.password}
    service: ${SERVICE}
    listen: 127.0.0.1:${ports.password}
    database: orders
    auth: password
    allow_password_without_tls: true
    clients: ${clients}
  - fqn: ${BINDINGS.tlsPassword}
    service: ${SERVICE}
    listen: 127.0.0.1:${ports.tlsPassword}
    database: orders
    auth: password
    clients: [ { user: api, password: ${PASSWORD} } ]
    tls: { cert: ${cert.certFile}, key: ${cert.keyFile} }
  - fqn: ${BINDINGS.badUpstream}
    service: ${BAD_SERVICE}
    listen: 127.0.0.1:${ports.badUpstream}
    database: orders
    clients: [ { user: api, password: ${PASSWORD} } ]
`,
  });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyPostgres(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Login {
  method: Method;
  user?: string;
  password?: string;
  database?: string;
  ssl?: boolean;
}

function pgClient(l: Login): pg.Client {
  return new pg.Client({
    host: '127.0.0.1',
    port: ports[l.method],
    user: l.user ?? 'api',
    password: l.password ?? PASSWORD,
    database: l.database ?? 'orders',
    ssl: l.ssl ? { rejectUnauthorized: false } : false,
  });
}

/** Logs in with pg and returns the upstream's current_user, or the error the client saw. */
async function pgLogin(l: Login): Promise<{ user?: string; error?: pg.DatabaseError }> {
  const c = pgClient(l);
  try {
    await c.connect();
    return { user: (await c.query('select current_user as u')).rows[0].u };
  } catch (err) {
    return { error: err as pg.DatabaseError };
  } finally {
    await c.end().catch(() => {});
  }
}

function psqlLogin(l: Login): Promise<RunResult> {
  return run(
    requireBinary('psql'),
    ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(ports[l.method]), '-U', l.user ?? 'api', '-d', l.database ?? 'orders', '-c', 'select current_user'],
    { env: { PGPASSWORD: l.password ?? PASSWORD, PGSSLMODE: l.ssl ? 'require' : 'disable', PGCONNECT_TIMEOUT: '5' } },
  );
}

/** How much `sempipe_auth_failures_total{binding, reason}` grew while `work` ran. */
async function authFailuresDuring(method: Method, reason: string, work: () => Promise<void>): Promise<number> {
  const labels = { binding: BINDINGS[method], reason };
  const before = await sempipe.metric('sempipe_auth_failures_total', labels);
  await work();
  return (await sempipe.metric('sempipe_auth_failures_total', labels)) - before;
}

interface AuditLine {
  event?: string;
  binding?: string;
  user?: string;
  reason?: string;
}

/** The audit log's lines so far (stdout is the audit log; it is flushed on a short timer). */
function auditLines(): AuditLine[] {
  return auditLinesOf<AuditLine>(sempipe);
}

async function waitForAudit(match: (l: AuditLine) => boolean): Promise<AuditLine> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = auditLines().find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error('audit line not found');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('hash-password', () => {
  test('prints a SCRAM-SHA-256 verifier of the password read from stdin, salted anew each time', async () => {
    expect(verifier).toMatch(/^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(verifier).not.toContain(VERIFIER_PASSWORD);
    const again = await sempipeCli(['hash-password'], { input: `${VERIFIER_PASSWORD}\n` });
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).not.toBe(verifier);
  });

  test('refuses an empty password with exit code 2', async () => {
    const r = await sempipeCli(['hash-password'], { input: '' });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/empty password/);
  });
});

describe('successful logins', () => {
  const cases: Array<[string, Login]> = [
    ['scram-sha-256 with a password', { method: 'scram' }],
    ['scram-sha-256 with a verifier from hash-password', { method: 'scram', user: 'vuser', password: VERIFIER_PASSWORD }],
    ['md5', { method: 'md5' }],
    ['cleartext password allowed without TLS', { method: 'password' }],
    ['cleartext password with a verifier', { method: 'password', user: 'vuser', password: VERIFIER_PASSWORD }],
    ['cleartext password over TLS', { method: 'tlsPassword', ssl: true }],
  ];

  test.each(cases)('%s works with psql', async (_name, login) => {
    const r = await psqlLogin(login);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(server.user);
  });

  test.each(cases)('%s works with pg', async (_name, login) => {
    const r = await pgLogin(login);
    expect(r.error).toBeUndefined();
    expect(r.user).toBe(server.user);
  });
});

describe('SASLprep', () => {
  // PostgreSQL itself is the reference: the same role and password exist on the upstream server.
  const candidates = [UNICODE_PASSWORD, 'fish pässwörd', 'fish\u00a0pa\u0308sswörd', 'ﬁsh pässword', 'FISH pässwörd'];

  const reference = { scram: UNICODE_USER, password: `${UNICODE_USER}_cleartext` } as const;
  const directLogin = (method: keyof typeof reference, password: string): Promise<RunResult> =>
    run(
      requireBinary('psql'),
      ['-X', '-At', '-h', server.host, '-p', String(server.port), '-U', reference[method], '-d', server.database, '-c', 'select 1'],
      { env: { PGPASSWORD: password, PGSSLMODE: 'disable' } },
    );

  test.each(['scram', 'password'] as const)('the %s reference accepts the equivalent spellings and refuses the others', async (method) => {
    const outcomes = await Promise.all(candidates.map(async (password) => (await directLogin(method, password)).code === 0));
    expect(outcomes).toEqual([true, true, true, false, false]);
  });

  test.each(candidates)('psql with password %j is accepted through sempipe exactly when PostgreSQL accepts it', async (password) => {
    for (const method of ['scram', 'password'] as const) {
      const direct = await directLogin(method, password);
      const via = await psqlLogin({ method, user: UNICODE_USER, password });
      expect({ method, accepted: via.code === 0 }).toEqual({ method, accepted: direct.code === 0 });
    }
  });
});

describe('refused logins', () => {
  test.each<Method>(['scram', 'md5', 'password'])('%s: a wrong password and an unknown user get the same FATAL 28P01', async (method) => {
    let wrong: Awaited<ReturnType<typeof pgLogin>> | undefined;
    let unknown: Awaited<ReturnType<typeof pgLogin>> | undefined;
    const badPassword = await authFailuresDuring(method, 'bad_password', async () => {
      wrong = await pgLogin({ method, password: 'not-the-password' });
    });
    const unknownUser = await authFailuresDuring(method, 'unknown_user', async () => {
      unknown = await pgLogin({ method, user: 'nobody', password: 'whatever' });
    });
    expect(wrong!.error).toMatchObject({ code: '28P01', severity: 'FATAL', message: 'password authentication failed for user "api"' });
    expect(unknown!.error).toMatchObject({ code: '28P01', severity: 'FATAL', message: 'password authentication failed for user "nobody"' });
    expect(badPassword).toBe(1);
    expect(unknownUser).toBe(1);
    await waitForAudit((l) => l.event === 'auth_failure' && l.binding === BINDINGS[method] && l.user === 'nobody' && l.reason === 'unknown_user');
    await waitForAudit((l) => l.event === 'auth_failure' && l.binding === BINDINGS[method] && l.user === 'api' && l.reason === 'bad_password');
  });

  test('psql shows the same message for a wrong password as PostgreSQL does', async () => {
    const viaSempipe = await psqlLogin({ method: 'scram', password: 'not-the-password' });
    expect(viaSempipe.code).toBe(2);
    expect(viaSempipe.stderr).toMatch(/FATAL: {2}password authentication failed for user "api"/);
    const directly = await run(
      requireBinary('psql'),
      ['-X', '-h', server.host, '-p', String(server.port), '-U', server.user, '-d', server.database, '-c', 'select 1'],
      { env: { PGPASSWORD: 'not-the-password', PGSSLMODE: 'disable' } },
    );
    expect(directly.stderr).toMatch(new RegExp(`FATAL: {2}password authentication failed for user "${server.user}"`));
  });

  test('a wrong database gets FATAL 3D000 after a correct password', async () => {
    let result: Awaited<ReturnType<typeof pgLogin>> | undefined;
    const counted = await authFailuresDuring('scram', 'bad_database', async () => {
      result = await pgLogin({ method: 'scram', database: 'no_such_db' });
    });
    expect(result!.error).toMatchObject({ code: '3D000', severity: 'FATAL', message: 'database "no_such_db" does not exist' });
    expect(counted).toBe(1);
    const wrongPasswordToo = await pgLogin({ method: 'scram', database: 'no_such_db', password: 'nope' });
    expect(wrongPasswordToo.error).toMatchObject({ code: '28P01' });
    await waitForAudit((l) => l.event === 'auth_failure' && l.binding === BINDINGS.scram && l.reason === 'bad_database');
  });

  test('cleartext password without TLS on a binding that does not allow it gets FATAL 28000', async () => {
    let result: Awaited<ReturnType<typeof pgLogin>> | undefined;
    const counted = await authFailuresDuring('tlsPassword', 'tls_required', async () => {
      result = await pgLogin({ method: 'tlsPassword', ssl: false });
    });
    expect(result!.error).toMatchObject({ code: '28000', severity: 'FATAL' });
    expect(result!.error!.message).toMatch(/unencrypted/);
    expect(counted).toBe(1);
    const r = await psqlLogin({ method: 'tlsPassword', ssl: false });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/FATAL: {2}password authentication over an unencrypted connection is refused/);
    await waitForAudit((l) => l.event === 'auth_failure' && l.binding === BINDINGS.tlsPassword && l.reason === 'tls_required');
  });

  test('a connection that sends nothing is closed after auth_timeout (1s)', async () => {
    let elapsed = 0;
    const counted = await authFailuresDuring('scram', 'timeout', async () => {
      const started = Date.now();
      await new Promise<void>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port: ports.scram });
        s.on('error', reject);
        s.on('close', () => resolve());
        s.resume();
      });
      elapsed = Date.now() - started;
    });
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3000);
    expect(counted).toBe(1);
    await waitForAudit((l) => l.event === 'auth_failure' && l.binding === BINDINGS.scram && l.reason === 'timeout');
  });

  test('a connection that stops halfway through SCRAM is closed after auth_timeout too', async () => {
    const started = Date.now();
    const received = await new Promise<Buffer>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: ports.scram }, () => {
        const body = Buffer.from('user\0api\0database\0orders\0\0');
        const startup = Buffer.alloc(8 + body.length);
        startup.writeInt32BE(startup.length, 0);
        startup.writeInt32BE(196608, 4);
        body.copy(startup, 8);
        s.write(startup);
      });
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('error', reject);
      s.on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(String.fromCharCode(received[0]!)).toBe('R');
    expect(received.toString('latin1')).toContain('SCRAM-SHA-256');
  });
});

describe('secrets', () => {
  test('an upstream that refuses sempipe\'s credentials gives the client FATAL 08006 naming the service, without the password', async () => {
    const before = await sempipe.metric('sempipe_upstream_errors_total', { binding: BINDINGS.badUpstream });
    const r = await pgLogin({ method: 'badUpstream' });
    expect(r.error).toMatchObject({ code: '08006', severity: 'FATAL' });
    expect(r.error!.message).toContain(BAD_SERVICE);
    expect(JSON.stringify(r.error)).not.toContain(BAD_UPSTREAM_PASSWORD);
    expect(await sempipe.metric('sempipe_upstream_errors_total', { binding: BINDINGS.badUpstream })).toBe(before + 1);
    const viaPsql = await psqlLogin({ method: 'badUpstream' });
    expect(viaPsql.code).toBe(2);
    expect(viaPsql.stderr).toContain(BAD_SERVICE);
    expect(viaPsql.stderr).not.toContain(BAD_UPSTREAM_PASSWORD);
  });

  test('no upstream password, client password or verifier appears in sempipe\'s stdout, stderr or metrics', async () => {
    await pgLogin({ method: 'scram', password: 'wrong' });
    await pgLogin({ method: 'badUpstream' });
    await new Promise((r) => setTimeout(r, 400));
    const everything = sempipe.stdout() + sempipe.stderr() + (await sempipe.metrics());
    expect(everything.length).toBeGreaterThan(0);
    for (const secret of [server.password, BAD_UPSTREAM_PASSWORD, PASSWORD, VERIFIER_PASSWORD, verifier]) {
      expect(everything).not.toContain(secret);
    }
  });
});

describe('check-config', () => {
  test('prints ok for the running config file', async () => {
    const r = await sempipeCli(['check-config', sempipe.configFile], { env: { UP_PW: server.password, BAD_PW: BAD_UPSTREAM_PASSWORD } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${sempipe.configFile}: ok (2 services, 5 bindings)\n`);
  });

  test('prints file:line: path: reason and exits with 2 for a bad file, without quoting secrets', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'services:',
        '  - fqn: service::/test::db',
        '    protocol: postgres',
        '    upstream: { host: 127.0.0.1, port: 5432, database: appdb, user: u, password: "s3cret-in-file" }',
        'bindings:',
        '  - fqn: binding::/test::app',
        '    service: service::/test::db',
        '    listen: 127.0.0.1:99999',
        '    clients: [ { user: api, password: api-secret } ]',
        '',
      ].join('\n'),
    );
    const r = await sempipeCli(['check-config', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:8: bindings\\[0\\]\\.listen: .*port 1\\.\\.65535`));
    expect(r.stderr).not.toContain('s3cret-in-file');
  });

  test('names the unset environment variable of a password', async () => {
    const r = await sempipeCli(['check-config', sempipe.configFile], { env: { UP_PW: server.password } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/:\d+: services\[1\]\.upstream\.password: environment variable BAD_PW is not set/);
  });
});
