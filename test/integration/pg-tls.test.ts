// TLS on both legs through the real sempipe binary: the client leg (sslmode=require, verify-full
// against the binding's certificate, SCRAM-SHA-256-PLUS with channel binding, a binding that
// requires TLS), the upstream leg against a real PostgreSQL that refuses plaintext (require,
// verify-full with a CA, disable refused by the server, a wrong CA), and an upstream that is down.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLSSocket } from 'node:tls';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeCertificate, type Certificate } from '../harness/certs.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePorts } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { run, type RunResult } from '../harness/run.js';

const PASSWORD = 'api-secret';
const SERVICES = {
  require: 'service::/test::tls-require',
  verifyFull: 'service::/test::tls-verify-full',
  wrongCa: 'service::/test::tls-wrong-ca',
  disable: 'service::/test::tls-disable',
  down: 'service::/test::down',
} as const;

type BindingName = 'clientTls' | 'clientTlsRequired' | 'upVerifyFull' | 'upWrongCa' | 'upDisable' | 'upDown';
const BINDINGS: Record<BindingName, { fqn: string; service: string; tls: 'optional' | 'required' | 'none' }> = {
  clientTls: { fqn: 'binding::/test::client-tls', service: SERVICES.require, tls: 'optional' },
  clientTlsRequired: { fqn: 'binding::/test::client-tls-required', service: SERVICES.require, tls: 'required' },
  upVerifyFull: { fqn: 'binding::/test::up-verify-full', service: SERVICES.verifyFull, tls: 'none' },
  upWrongCa: { fqn: 'binding::/test::up-wrong-ca', service: SERVICES.wrongCa, tls: 'none' },
  upDisable: { fqn: 'binding::/test::up-disable', service: SERVICES.disable, tls: 'none' },
  upDown: { fqn: 'binding::/test::up-down', service: SERVICES.down, tls: 'none' },
};

let server: PgServer;
let sempipe: SempipeProcess;
let dir: string;
let clientCert: Certificate;
let otherCert: Certificate;
const ports = {} as Record<BindingName, number>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-tls-'));
  server = await startPostgres({ tls: true, tlsOnly: true });
  clientCert = makeCertificate(dir, 'localhost');
  const otherDir = mkdtempSync(join(dir, 'other-'));
  otherCert = makeCertificate(otherDir, 'localhost');
  const names = Object.keys(BINDINGS) as BindingName[];
  const [downPort, ...bindingPorts] = await freePorts(names.length + 1);
  names.forEach((b, i) => (ports[b] = bindingPorts[i]!));
  const upstream = (tls: string, extra = '', port = server.port): string =>
    `{ host: 127.0.0.1, port: ${port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: ${tls}${extra} }`;
  const bindingTls = (mode: 'optional' | 'required' | 'none'): string =>
    mode === 'none' ? '' : `\n    tls: { cert: ${clientCert.certFile}, key: ${clientCert.keyFile}, required: ${mode === 'required'} }`;
  sempipe = await startSempipe({
    workers: 2,
    env: { UP_PW: server.password },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 5s, connect_timeout: 5s, drain_timeout: 2s }
services:
  - { fqn: ${SERVICES.require}, protocol: postgres, upstream: ${upstream('require')} }
  - { fqn: ${SERVICES.verifyFull}, protocol: postgres, upstream: ${upstream('verify-full', `, ca: ${server.cert!.certFile}`)} }
  - { fqn: ${SERVICES.wrongCa}, protocol: postgres, upstream: ${upstream('verify-full', `, ca: ${otherCert.certFile}`)} }
  - { fqn: ${SERVICES.disable}, protocol: postgres, upstream: ${upstream('disable')} }
  - { fqn: ${SERVICES.down}, protocol: postgres, upstream: ${upstream('require', '', downPort)} }
bindings:
${(Object.keys(BINDINGS) as BindingName[])
  .map(
    (name) => `  - fqn: ${BINDINGS[name].fqn}
    service: ${BINDINGS[name].service}
    listen: 127.0.0.1:${ports[name]}
    database: orders
    auth: scram-sha-256
    clients: [ { user: api, password: ${PASSWORD} } ]${bindingTls(BINDINGS[name].tls)}`,
  )
  .join('\n')}
`,
  });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyPostgres(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** psql with a libpq connection string; asynchronous so that sempipe's log pipe keeps draining. */
function psql(binding: BindingName, conn: string, sql: string): Promise<RunResult> {
  const conninfo = `host=127.0.0.1 port=${ports[binding]} user=api dbname=orders connect_timeout=5 ${conn}`;
  return run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', conninfo, '-c', sql], { env: { PGPASSWORD: PASSWORD } });
}

/** Whether the upstream leg of the session is TLS, as the upstream server itself reports it. */
const UPSTREAM_SSL = 'select ssl from pg_stat_ssl where pid = pg_backend_pid()';

async function pgConnect(binding: BindingName, opts: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: ports[binding], user: 'api', password: PASSWORD, database: 'orders', ssl: false, ...opts });
  await c.connect();
  return c;
}

async function pgError(binding: BindingName, opts: Partial<pg.ClientConfig> = {}): Promise<pg.DatabaseError> {
  const c = new pg.Client({ host: '127.0.0.1', port: ports[binding], user: 'api', password: PASSWORD, database: 'orders', ssl: false, ...opts });
  try {
    await c.connect();
  } catch (err) {
    return err as pg.DatabaseError;
  } finally {
    await c.end().catch(() => {});
  }
  throw new Error('the connection was accepted');
}

describe('client leg', () => {
  test('psql with sslmode=require gets a TLS connection', async () => {
    const r = await psql('clientTls', 'sslmode=require', 'select 1');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('1');
    const info = await psql('clientTls', 'sslmode=require', '\\conninfo');
    expect(info.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
  });

  test('psql with sslmode=verify-full and the binding certificate as root verifies the server', async () => {
    const r = await psql('clientTls', `sslmode=verify-full sslrootcert=${clientCert.certFile}`, 'select current_user');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(server.user);
  });

  test('psql with sslmode=verify-full and an unrelated root refuses the server', async () => {
    const r = await psql('clientTls', `sslmode=verify-full sslrootcert=${otherCert.certFile}`, 'select 1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/certificate verify failed/);
  });

  test('psql with channel_binding=require authenticates with SCRAM-SHA-256-PLUS', async () => {
    const r = await psql('clientTls', 'sslmode=require channel_binding=require', 'select current_user');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(server.user);
  });

  test('pg with enableChannelBinding authenticates over TLS with SCRAM-SHA-256-PLUS', async () => {
    const c = await pgConnect('clientTls', { ssl: { ca: readFileSync(clientCert.certFile) }, enableChannelBinding: true } as Partial<pg.ClientConfig>);
    try {
      const stream = (c as unknown as { connection: { stream: unknown } }).connection.stream;
      expect(stream).toBeInstanceOf(TLSSocket);
      expect((stream as TLSSocket).authorized).toBe(true);
      expect((await c.query('select 40 + 2 as n')).rows[0].n).toBe(42);
    } finally {
      await c.end();
    }
  });

  test('the plain connection still works on a binding whose TLS is optional', async () => {
    const r = await psql('clientTls', 'sslmode=disable', 'select 1');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('1');
  });

  test('a binding with required: true refuses sslmode=disable with FATAL 28000 and accepts TLS', async () => {
    const before = await sempipe.metric('sempipe_auth_failures_total', { binding: BINDINGS.clientTlsRequired.fqn, reason: 'tls_required' });
    const err = await pgError('clientTlsRequired');
    expect(err).toMatchObject({ code: '28000', severity: 'FATAL' });
    expect(err.message).toContain(BINDINGS.clientTlsRequired.fqn);
    const r = await psql('clientTlsRequired', 'sslmode=disable', 'select 1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/FATAL: {2}SSL\/TLS is required/);
    expect(await sempipe.metric('sempipe_auth_failures_total', { binding: BINDINGS.clientTlsRequired.fqn, reason: 'tls_required' })).toBe(before + 2);
    const ok = await psql('clientTlsRequired', 'sslmode=require channel_binding=require', 'select 1');
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('1');
  });
});

describe('upstream leg', () => {
  test('tls: require connects to a server that refuses plaintext, over TLS', async () => {
    const c = await pgConnect('clientTls');
    try {
      expect((await c.query(UPSTREAM_SSL)).rows[0].ssl).toBe(true);
    } finally {
      await c.end();
    }
  });

  test('tls: verify-full with the server certificate as CA connects over TLS', async () => {
    const c = await pgConnect('upVerifyFull');
    try {
      expect((await c.query(UPSTREAM_SSL)).rows[0].ssl).toBe(true);
    } finally {
      await c.end();
    }
  });

  test('tls: verify-full with a CA that did not sign the server certificate fails with FATAL 08001 naming the service', async () => {
    const err = await pgError('upWrongCa');
    expect(err).toMatchObject({ code: '08001', severity: 'FATAL' });
    expect(err.message).toContain(SERVICES.wrongCa);
  });

  test('tls: disable against a TLS-only server fails with FATAL 08006 naming the service', async () => {
    const err = await pgError('upDisable');
    expect(err).toMatchObject({ code: '08006', severity: 'FATAL' });
    expect(err.message).toContain(SERVICES.disable);
    expect(err.message).not.toContain(server.password);
    const r = await psql('upDisable', 'sslmode=disable', 'select 1');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(SERVICES.disable);
  });

  test('an upstream with nothing listening gives FATAL 08001 naming the service quickly and counts an upstream error', async () => {
    const labels = { binding: BINDINGS.upDown.fqn };
    const before = await sempipe.metric('sempipe_upstream_errors_total', labels);
    const started = Date.now();
    const err = await pgError('upDown');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err).toMatchObject({ code: '08001', severity: 'FATAL' });
    expect(err.message).toContain(SERVICES.down);
    expect(await sempipe.metric('sempipe_upstream_errors_total', labels)).toBe(before + 1);
    const r = await psql('upDown', 'sslmode=disable', 'select 1');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(SERVICES.down);
    expect(await sempipe.metric('sempipe_upstream_errors_total', labels)).toBe(before + 2);
  });
});
