// connectUpstream and sendCancelRequest against real PostgreSQL servers: every upstream auth method,
// every TLS mode, refusals and unreachable servers, a usable socket afterwards, cancellation. Also
// checks that our SCRAM verifiers and PostgreSQL's are interchangeable, with psql and pg as clients.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage, DatabaseError, DataRowMessage } from 'pg-protocol/dist/messages.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { requireBinary } from '../harness/binaries.js';
import { makeCertificate } from '../harness/certs.js';
import { freePort } from '../harness/ports.js';
import { connectUpstream, sendCancelRequest, UpstreamError, type UpstreamConnection, type UpstreamTarget } from '../../protocols/postgres/upstream-connect.js';
import { createScramVerifier, parseScramVerifier, verifyPasswordAgainstScram } from '../../protocols/postgres/auth/scram-verifier.js';

const FQN = 'service::/prod::orders';
let scramTls: PgServer;
let md5: PgServer;
let cleartext: PgServer;
let trust: PgServer;
const open: UpstreamConnection[] = [];

beforeAll(async () => {
  [scramTls, md5, cleartext, trust] = await Promise.all([
    startPostgres({ tls: true }),
    startPostgres({ auth: 'md5' }),
    startPostgres({ auth: 'password' }),
    startPostgres({ auth: 'trust' }),
  ]);
});
afterAll(async () => {
  for (const c of open) c.socket.destroy();
  await Promise.all([scramTls, md5, cleartext, trust].map((s) => destroyPostgres(s)));
});

function target(s: PgServer, extra: Partial<UpstreamTarget> = {}): UpstreamTarget {
  return { host: s.host, port: s.port, database: s.database, user: s.user, password: s.password, tls: 'disable', connectTimeoutMs: 5000, serviceFqn: FQN, ...extra };
}

async function connect(t: UpstreamTarget): Promise<UpstreamConnection> {
  const c = await connectUpstream(t);
  open.push(c);
  c.socket.on('error', () => undefined);
  return c;
}

async function failure(t: UpstreamTarget): Promise<UpstreamError> {
  const err = await connectUpstream(t).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(UpstreamError);
  return err as UpstreamError;
}

/** The client-facing message names neither host nor port; the operator's `address` does. */
function expectNoAddress(err: UpstreamError, port: number): void {
  expect(err.message).not.toContain('127.0.0.1');
  expect(err.message).not.toContain(String(port));
  expect(err.address).toBe(`127.0.0.1:${port}`);
}

/**
 * A TCP server that accepts connections and never sends a byte: a hung server as a client sees
 * it (not a stand-in for PostgreSQL; it speaks no protocol at all).
 */
async function silentServer(): Promise<{ port: number; accepted(): number; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    s.on('error', () => undefined);
    sockets.push(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    accepted: () => sockets.length,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Sends a simple Query over the relay socket and reads until ReadyForQuery. */
function query(c: UpstreamConnection, sql: string): Promise<{ rows: unknown[][]; error?: DatabaseError; status: string }> {
  return new Promise((resolve, reject) => {
    const parser = new Parser();
    const rows: unknown[][] = [];
    let error: DatabaseError | undefined;
    const onMessage = (m: BackendMessage): void => {
      if (m.name === 'dataRow') rows.push((m as DataRowMessage).fields);
      if (m.name === 'error') error = m as DatabaseError;
      if (m.name === 'readyForQuery') {
        c.socket.off('data', onData);
        c.socket.pause();
        resolve({ rows, error, status: (m as unknown as { status: string }).status });
      }
    };
    const onData = (chunk: Buffer): void => parser.parse(chunk, onMessage);
    c.socket.once('close', () => reject(new Error('upstream closed')));
    if (c.leftover.length > 0) parser.parse(c.leftover, onMessage);
    c.socket.on('data', onData);
    c.socket.resume();
    c.socket.write(serialize.query(sql));
  });
}

function parameters(c: UpstreamConnection): Map<string, string> {
  const map = new Map<string, string>();
  for (const frame of c.parameterStatus) {
    expect(frame[0]).toBe(0x53);
    expect(frame.readUInt32BE(1)).toBe(frame.length - 1);
    const [name, value] = frame.subarray(5, frame.length - 1).toString('utf8').split('\0');
    map.set(name, value);
  }
  return map;
}

describe('authentication methods', () => {
  test('scram-sha-256: connects, the socket runs select 1, startup data is complete', async () => {
    const c = await connect(target(scramTls));
    expect(c.authMethod).toBe('scram-sha-256');
    expect(c.transactionStatus).toBe('I');
    expect(c.leftover.length).toBe(0);
    expect(c.socket.isPaused()).toBe(true);
    expect(c.socket.listenerCount('data')).toBe(0);
    expect(c.backendKey.processId).toBeGreaterThan(0);
    expect(parameters(c).get('server_version')).toMatch(/^\d+/);
    const r = await query(c, 'select 1 as one, pg_backend_pid() as pid');
    expect(r.rows).toEqual([['1', String(c.backendKey.processId)]]);
    expect(r.status).toBe('I');
  });

  test('md5', async () => {
    const c = await connect(target(md5));
    expect(c.authMethod).toBe('md5');
    expect((await query(c, 'select current_user')).rows).toEqual([[md5.user]]);
  });

  test('cleartext password', async () => {
    const c = await connect(target(cleartext));
    expect(c.authMethod).toBe('password');
    expect((await query(c, 'select 1')).rows).toEqual([['1']]);
  });

  test('trust, without any password configured', async () => {
    const c = await connect(target(trust, { password: undefined }));
    expect(c.authMethod).toBe('trust');
    expect((await query(c, 'select 1')).rows).toEqual([['1']]);
  });

  test.each([
    ['scram', () => scramTls],
    ['md5', () => md5],
    ['password', () => cleartext],
  ])('%s: wrong password gives 08006 with the upstream SQLSTATE, and the message holds no password', async (_name, server) => {
    const s = server();
    const err = await failure(target(s, { password: 'not-the-password-x9' }));
    expect(err.code).toBe('08006');
    expect(err.upstreamSqlState).toBe('28P01');
    expect(err.message).toBe(`upstream for ${FQN} refused sempipe's credentials (28P01)`);
    expectNoAddress(err, s.port);
    expect(err.message).not.toContain('not-the-password-x9');
    expect(err.message).not.toContain(s.password);
  });

  test('a server asking for a password when the service has none: 08006 naming the cause', async () => {
    const err = await failure(target(scramTls, { password: undefined }));
    expect(err.code).toBe('08006');
    expect(err.message).toMatch(/has none configured/);
  });

  test('missing database: 08006 with 3D000', async () => {
    const err = await failure(target(md5, { database: 'no_such_db' }));
    expect(err).toMatchObject({ code: '08006', upstreamSqlState: '3D000' });
  });
});

describe('startup parameters', () => {
  test("the client's client_encoding and DateStyle reach the server (not forced to UTF8); application_name falls back", async () => {
    const c = await connect(target(md5, { extraStartupParams: { client_encoding: 'LATIN1', DateStyle: 'German, DMY' }, applicationName: 'sempipe' }));
    const p = parameters(c);
    expect(p.get('client_encoding')).toBe('LATIN1');
    expect(p.get('DateStyle')).toBe('German, DMY');
    expect(p.get('application_name')).toBe('sempipe');
  });

  test("the client's own application_name wins; user and database come from the target only", async () => {
    const c = await connect(target(md5, { extraStartupParams: { application_name: 'billing', user: 'intruder', database: 'postgres' }, applicationName: 'sempipe' }));
    expect(parameters(c).get('application_name')).toBe('billing');
    expect((await query(c, 'select current_user, current_database()')).rows).toEqual([[md5.user, md5.database]]);
  });
});

describe('TLS modes', () => {
  test('prefer against a TLS server: TLS, and scram uses channel binding (SCRAM-SHA-256-PLUS)', async () => {
    const c = await connect(target(scramTls, { tls: 'prefer' }));
    expect(c.authMethod).toBe('scram-sha-256-plus');
    expect((await query(c, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows).toEqual([['t']]);
  });

  test('prefer against a server without TLS: plain', async () => {
    const c = await connect(target(md5, { tls: 'prefer' }));
    expect(c.socket.constructor.name).toBe('Socket');
    expect((await query(c, 'select 1')).rows).toEqual([['1']]);
  });

  test('require against a TLS server: TLS without checking the chain', async () => {
    const c = await connect(target(scramTls, { tls: 'require' }));
    expect((await query(c, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows).toEqual([['t']]);
  });

  test('verify-full with the server certificate as CA', async () => {
    const c = await connect(target(scramTls, { tls: 'verify-full', ca: scramTls.cert!.certFile }));
    expect((await query(c, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows).toEqual([['t']]);
  });

  test('verify-full with the wrong CA: 08001', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sempipe-ca-'));
    const other = makeCertificate(dir, 'localhost');
    const err = await failure(target(scramTls, { tls: 'verify-full', ca: other.certFile })).finally(() => rmSync(dir, { recursive: true }));
    expect(err.code).toBe('08001');
    expect(err.message).toMatch(new RegExp(`^upstream for ${FQN} is unreachable: TLS handshake failed \\([A-Z_]+\\)$`));
    expectNoAddress(err, scramTls.port);
    expect(err.reason).toContain('self-signed certificate');
  });

  test('verify-full with an unreadable CA file: 08001; the file is named to the operator only', async () => {
    const err = await failure(target(scramTls, { tls: 'verify-full', ca: '/nonexistent/ca.pem' }));
    expect(err).toMatchObject({ code: '08001', message: `upstream for ${FQN} is unreachable: its TLS CA file cannot be read` });
    expect(err.reason).toContain('/nonexistent/ca.pem');
  });

  test('require against a server without TLS: 08001', async () => {
    const err = await failure(target(md5, { tls: 'require' }));
    expect(err.code).toBe('08001');
    expect(err.message).toMatch(/does not accept TLS/);
  });
});

describe('unreachable and slow servers', () => {
  test('a closed port fails fast with 08001 naming the service and the kind of failure; the address is for the operator', async () => {
    const port = await freePort();
    const started = Date.now();
    const err = await failure({ ...target(md5), port });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.code).toBe('08001');
    expect(err.message).toBe(`upstream for ${FQN} is unreachable: connection refused`);
    expectNoAddress(err, port);
    expect(err.reason).toBe(`connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  test.each([
    ['disable', 'authenticating'],
    ['require', 'negotiating TLS'],
  ] as const)('a TCP server that accepts but never answers (tls: %s) times out with 08001 while %s', async (mode, phase) => {
    const silent = await silentServer();
    try {
      const started = Date.now();
      const err = await failure({ ...target(md5, { connectTimeoutMs: 300, tls: mode }), port: silent.port });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(err).toMatchObject({ code: '08001', message: `upstream for ${FQN} is unreachable: timed out after 300 ms while ${phase}` });
      expectNoAddress(err, silent.port);
      expect(silent.accepted()).toBe(1);
    } finally {
      await silent.close();
    }
  });

  test('a server that accepts but never answers (postmaster stopped with SIGSTOP) times out with 08001', async () => {
    const pid = Number(readFileSync(`${trust.dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGSTOP');
    try {
      const started = Date.now();
      const err = await failure(target(trust, { connectTimeoutMs: 300 }));
      expect(Date.now() - started).toBeLessThan(2000);
      expect(err.code).toBe('08001');
      expect(err.message).toBe(`upstream for ${FQN} is unreachable: timed out after 300 ms while authenticating`);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });
});

describe('cancel', () => {
  test.each([
    ['plain', () => target(md5)],
    ['TLS', () => target(scramTls, { tls: 'require' })],
  ])('sendCancelRequest (%s) cancels a running pg_sleep with 57014', async (_name, make) => {
    const t = make();
    const c = await connect(t);
    const running = query(c, 'select pg_sleep(10)');
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await sendCancelRequest({ host: t.host, port: t.port, tls: t.tls, serviceFqn: FQN }, c.backendKey);
    const r = await running;
    expect(r.error?.code).toBe('57014');
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await query(c, 'select 2')).rows).toEqual([['2']]);
  });

  test('sendCancelRequest to a closed port rejects with 08001', async () => {
    const port = await freePort();
    await expect(sendCancelRequest({ host: '127.0.0.1', port, serviceFqn: FQN }, { processId: 1, secretKey: 2 })).rejects.toMatchObject({ code: '08001' });
  });
});

describe('SCRAM verifiers are interchangeable with PostgreSQL', () => {
  const unicodePassword = 'I\u00a0love\u2168 caf\u00e9';

  test("PostgreSQL's stored verifier (pg_authid) checks cleartext passwords with verifyPasswordAgainstScram", () => {
    const stored = scramTls.sql(`select rolpassword from pg_authid where rolname = '${scramTls.user}'`);
    const v = parseScramVerifier(stored);
    expect(v).toBeDefined();
    expect(verifyPasswordAgainstScram(scramTls.password, v!)).toBe(true);
    expect(verifyPasswordAgainstScram(scramTls.password + 'x', v!)).toBe(false);
    scramTls.sql(`create role made_by_pg login password '${unicodePassword}'`);
    const unicode = parseScramVerifier(scramTls.sql(`select rolpassword from pg_authid where rolname = 'made_by_pg'`))!;
    expect(verifyPasswordAgainstScram(unicodePassword, unicode)).toBe(true);
  });

  test('a verifier from createScramVerifier set as a role password lets pg (via connectUpstream) and psql log in', async () => {
    const verifier = createScramVerifier(unicodePassword);
    scramTls.sql(`create role ours_made login password '${verifier}'`);
    expect(scramTls.sql(`select rolpassword from pg_authid where rolname = 'ours_made'`)).toBe(verifier);
    const c = await connect(target(scramTls, { user: 'ours_made', password: unicodePassword, database: 'postgres' }));
    expect((await query(c, 'select current_user')).rows).toEqual([['ours_made']]);
    const psql = spawnSync(requireBinary('psql'), ['-h', scramTls.host, '-p', String(scramTls.port), '-U', 'ours_made', '-d', 'postgres', '-XAtc', 'select current_user'], {
      encoding: 'utf8',
      env: { ...process.env, PGPASSWORD: unicodePassword, PGSSLMODE: 'disable' },
    });
    expect(psql.stderr).toBe('');
    expect(psql.stdout.trim()).toBe('ours_made');
    const wrong = await failure(target(scramTls, { user: 'ours_made', password: 'I love', database: 'postgres' }));
    expect(wrong.upstreamSqlState).toBe('28P01');
  });
});
