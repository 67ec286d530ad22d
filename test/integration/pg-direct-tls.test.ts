// Direct TLS (PostgreSQL 17's sslnegotiation=direct, issue 22 part 3) on both legs. Client leg:
// node-postgres with `sslnegotiation: 'direct'` (and SCRAM-SHA-256-PLUS channel binding) against a
// binding with TLS; a handshake without the `postgresql` ALPN protocol closed unanswered and one
// offering another protocol refused with the no_application_protocol alert, as PostgreSQL 17
// does; a binding without TLS closing such a connection. Upstream leg (`tls_negotiation: direct`):
// Debian's PostgreSQL is 15 and has no direct TLS, so a second sempipe's service points at the
// first sempipe's TLS binding; one pointed at a binding without TLS shows the first bytes were TLS.
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeCertificate, type Certificate } from '../harness/certs.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePorts } from '../harness/ports.js';
import { run } from '../harness/run.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const PASSWORD = 'api-secret';
const A = { tls: 'binding::/test::direct-tls', plain: 'binding::/test::direct-plain' } as const;
const B = { direct: 'binding::/test::via-direct', toPlain: 'binding::/test::via-direct-to-plain' } as const;

let server: PgServer;
/** The sempipe whose client side is tested; also the "PostgreSQL 17" upstream of `front`. */
let edge: SempipeProcess;
/** The sempipe whose services reach `edge` with tls_negotiation: direct. */
let front: SempipeProcess;
let dir: string;
let cert: Certificate;
const ports = { aTls: 0, aPlain: 0, bDirect: 0, bToPlain: 0 };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-direct-tls-'));
  server = await startPostgres();
  cert = makeCertificate(dir, 'localhost');
  [ports.aTls, ports.aPlain, ports.bDirect, ports.bToPlain] = await freePorts(4);
  const binding = (fqn: string, service: string, port: number, tls = ''): string => `  - fqn: ${fqn}
    service: ${service}
    listen: 127.0.0.1:${port}
    database: orders
    clients: [ { user: api, password: ${PASSWORD} } ]${tls}`;
  edge = await startSempipe({
    workers: 1,
    env: { UP_PW: server.password },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 5s, connect_timeout: 5s, drain_timeout: 1s }
services:
  - { fqn: service::/test::pg, protocol: postgres, upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable } }
bindings:
${binding(A.tls, 'service::/test::pg', ports.aTls, `\n    tls: { cert: ${cert.certFile}, key: ${cert.keyFile} }`)}
${binding(A.plain, 'service::/test::pg', ports.aPlain)}
`,
  });
  const viaEdge = (port: number): string =>
    `{ host: 127.0.0.1, port: ${port}, database: orders, user: api, password: ${PASSWORD}, tls: verify-full, ca: ${cert.certFile}, tls_negotiation: direct }`;
  front = await startSempipe({
    workers: 1,
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 5s, connect_timeout: 5s, drain_timeout: 1s, upstream_idle_timeout: 0 }
services:
  - { fqn: service::/test::edge-direct, protocol: postgres, upstream: ${viaEdge(ports.aTls)} }
  - { fqn: service::/test::edge-plain, protocol: postgres, upstream: ${viaEdge(ports.aPlain)} }
bindings:
${binding(B.direct, 'service::/test::edge-direct', ports.bDirect)}
${binding(B.toPlain, 'service::/test::edge-plain', ports.bToPlain)}
`,
  });
}, 60_000);

afterAll(async () => {
  await Promise.all([front?.stop(), edge?.stop()]);
  await destroyPostgres(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const rejected = (binding: string, reason: string): Promise<number> => edge.metric('sempipe_startup_rejected_total', { binding, reason });

function directClient(port: number, extra: Record<string, unknown> = {}): pg.Client {
  return new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'api',
    password: PASSWORD,
    database: 'orders',
    ssl: { ca: readFileSync(cert.certFile) },
    sslnegotiation: 'direct',
    ...extra,
  } as pg.ClientConfig);
}

/** A TLS handshake as the very first bytes, offering `alpn` (none when undefined). */
async function handshake(port: number, alpn?: string[]): Promise<{ socket: TLSSocket; error?: NodeJS.ErrnoException }> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(cert.certFile), ...(alpn && { ALPNProtocols: alpn }) });
  try {
    await once(socket, 'secureConnect');
    return { socket };
  } catch (error) {
    return { socket, error: error as NodeJS.ErrnoException };
  }
}

/** Everything the server sends until it closes the connection. */
function untilClosed(socket: TLSSocket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', () => {});
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks))));
}

describe('client leg', () => {
  test("node-postgres with sslnegotiation: 'direct' connects over TLS and runs queries", async () => {
    const c = directClient(ports.aTls);
    await c.connect();
    try {
      const r = await c.query('select current_user as u, 40 + 2 as n');
      expect(r.rows).toEqual([{ u: server.user, n: 42 }]);
    } finally {
      await c.end();
    }
  });

  test('SCRAM-SHA-256-PLUS is offered inside direct TLS and node-postgres authenticates with channel binding', async () => {
    const { socket, error } = await handshake(ports.aTls, ['postgresql']);
    expect(error).toBeUndefined();
    expect(socket.alpnProtocol).toBe('postgresql');
    const closed = untilClosed(socket);
    socket.end(serialize.startup({ user: 'api', database: 'orders' }));
    expect((await closed).toString('latin1')).toMatch(/^R.*SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0$/s);
    const c = directClient(ports.aTls, { enableChannelBinding: true });
    await c.connect();
    await c.end();
  });

  test('a direct handshake without ALPN completes and is then closed without a word (PostgreSQL 17)', async () => {
    const before = await rejected(A.tls, 'no_alpn');
    const { socket, error } = await handshake(ports.aTls);
    expect(error).toBeUndefined();
    expect(socket.alpnProtocol).toBe(false);
    socket.write(serialize.startup({ user: 'api', database: 'orders' }));
    expect(await untilClosed(socket)).toEqual(Buffer.alloc(0));
    expect(await rejected(A.tls, 'no_alpn')).toBe(before + 1);
  });

  test('a direct handshake offering only another protocol is refused with the no_application_protocol alert', async () => {
    const { socket, error } = await handshake(ports.aTls, ['http/1.1']);
    socket.destroy();
    expect(error?.code).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
  });

  test('a binding without TLS closes a direct TLS connection', async () => {
    const before = await rejected(A.plain, 'direct_tls_unavailable');
    const c = directClient(ports.aPlain);
    c.on('error', () => {});
    await expect(c.connect()).rejects.toThrow();
    expect(await rejected(A.plain, 'direct_tls_unavailable')).toBe(before + 1);
  });

  test('the SSLRequest way keeps working on the same binding', async () => {
    const r = await run('psql', ['-X', '-At', `host=127.0.0.1 port=${ports.aTls} user=api dbname=orders sslmode=require`, '-c', 'select 1'], {
      env: { PGPASSWORD: PASSWORD },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('1');
  });
});

describe('upstream leg: tls_negotiation: direct', () => {
  test('psql through a sempipe whose service reaches another sempipe with direct TLS (verify-full)', async () => {
    const r = await run('psql', ['-X', '-At', `host=127.0.0.1 port=${ports.bDirect} user=api dbname=orders`, '-c', 'select current_user'], {
      env: { PGPASSWORD: PASSWORD },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(server.user);
  });

  test('the upstream connection starts with a TLS handshake: a listener without TLS closes it, the client gets 08001', async () => {
    const before = await rejected(A.plain, 'direct_tls_unavailable');
    const c = new pg.Client({ host: '127.0.0.1', port: ports.bToPlain, user: 'api', password: PASSWORD, database: 'orders' });
    c.on('error', () => {});
    const err = (await c.connect().then(
      () => undefined,
      (e: unknown) => e,
    )) as pg.DatabaseError | undefined;
    await c.end().catch(() => {});
    expect(err).toMatchObject({ severity: 'FATAL', code: '08001' });
    expect(await rejected(A.plain, 'direct_tls_unavailable')).toBe(before + 1);
  });
});
