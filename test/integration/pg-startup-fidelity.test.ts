// Before authentication sempipe answers what PostgreSQL answers, silence included (issue 22, part 1):
// each case sends the same bytes over raw sockets to a real PostgreSQL 15 and to a sempipe binding,
// collects everything each sends until it closes, and compares. ErrorResponse fields that name the
// server's source code (F file, L line, R routine) are stripped from both sides first; everything
// else (severity, SQLSTATE, message, the 2.0-format error, NegotiateProtocolVersion, silence) must
// be byte for byte the same. Also node-postgres's `connect(); end()` back to back (its issue #320),
// and the differences the README's "through sempipe vs directly" table states: the process id in
// BackendKeyData (sempipe's own; pg_backend_pid() is the server's), database names (only the
// binding's), a server-side pg_terminate_backend (the client sees what it sees directly).
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeCertificate } from '../harness/certs.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePorts } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BINDINGS = { plain: 'binding::/test::fidelity-plain', tls: 'binding::/test::fidelity-tls' } as const;
/** Longer than any answer takes, shorter than the 1 s authentication timeout on both sides. */
const SETTLE_MS = 5000;

let plainServer: PgServer;
let tlsServer: PgServer;
let sempipe: SempipeProcess;
let dir: string;
const ports = { plain: 0, tls: 0 };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-fidelity-'));
  const settings = { authentication_timeout: '1s' };
  [plainServer, tlsServer] = await Promise.all([startPostgres({ settings }), startPostgres({ tls: true, settings })]);
  const cert = makeCertificate(dir, 'localhost');
  [ports.plain, ports.tls] = await freePorts(2);
  const upstream = `{ host: 127.0.0.1, port: ${plainServer.port}, database: ${plainServer.database}, user: ${plainServer.user}, password: "\${UP_PW}", tls: disable }`;
  sempipe = await startSempipe({
    workers: 1,
    env: { UP_PW: plainServer.password, SEMPIPE_LOG_LEVEL: 'debug' },
    yaml: `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 1s, connect_timeout: 5s, drain_timeout: 1s }
services:
  - { fqn: service::/test::fidelity, protocol: postgres, upstream: ${upstream} }
bindings:
  - fqn: ${BINDINGS.plain}
    service: service::/test::fidelity
    listen: 127.0.0.1:${ports.plain}
    database: ${plainServer.database}
    clients: [ { user: api, password: api-secret } ]
  - fqn: ${BINDINGS.tls}
    service: service::/test::fidelity
    listen: 127.0.0.1:${ports.tls}
    database: ${plainServer.database}
    clients: [ { user: api, password: api-secret } ]
    tls: { cert: ${cert.certFile}, key: ${cert.keyFile} }
`,
  });
}, 60_000);

afterAll(async () => {
  await sempipe?.stop();
  await Promise.all([destroyPostgres(plainServer), destroyPostgres(tlsServer)]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  /** Everything the server sent. */
  bytes: Buffer;
  /** Whether the server closed the connection (rather than us giving up after SETTLE_MS). */
  closedByServer: boolean;
}

/** Collects what `socket` delivers until the peer closes it. */
function collect(socket: Socket): Promise<Answer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let capped = false;
    const cap = setTimeout(() => {
      capped = true;
      socket.destroy();
    }, SETTLE_MS);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(cap);
      resolve({ bytes: Buffer.concat(chunks), closedByServer: !capped });
    });
  });
}

/** Sends `bytes` on a fresh connection (then half-closes unless `keepOpen`) and collects the answer. */
async function exchange(port: number, bytes: Buffer, keepOpen = false): Promise<Answer> {
  const socket = connect(port, '127.0.0.1');
  const answer = collect(socket);
  await once(socket, 'connect');
  if (keepOpen) socket.write(bytes);
  else socket.end(bytes);
  return answer;
}

/** SSLRequest, the TLS handshake after 'S', then `bytes` inside TLS; collects the decrypted answer. */
async function exchangeInTls(port: number, bytes: Buffer): Promise<Answer> {
  const raw = connect(port, '127.0.0.1');
  raw.on('error', () => {});
  await once(raw, 'connect');
  raw.write(packet(SSL_REQUEST));
  const [answer] = (await once(raw, 'data')) as [Buffer];
  expect(answer.toString()).toBe('S');
  const secure = tlsConnect({ socket: raw, rejectUnauthorized: false });
  const collected = collect(secure);
  await once(secure, 'secureConnect');
  secure.write(bytes);
  return collected;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

/** An untyped startup-phase packet: length, 32-bit code, payload. */
function packet(code: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = Buffer.from(payload);
  const buf = Buffer.alloc(8 + body.length);
  buf.writeUInt32BE(buf.length, 0);
  buf.writeUInt32BE(code >>> 0, 4);
  body.copy(buf, 8);
  return buf;
}

const SOURCE_FIELDS = new Set(['F', 'L', 'R']);

const wholeMessageAt = (buf: Buffer, pos: number): boolean => pos + 5 <= buf.length && buf.readUInt32BE(pos + 1) >= 4 && pos + 1 + buf.readUInt32BE(pos + 1) <= buf.length;

/**
 * The answer with the F/L/R fields (PostgreSQL's source file, line and function) removed from every
 * protocol-3 ErrorResponse; the one-byte answers to SSLRequest/GSSENCRequest in front, other
 * messages, and bytes that are not whole messages stay as they are.
 */
function withoutSourceFields(buf: Buffer): string {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length && 'NSG'.includes(String.fromCharCode(buf[pos])) && !wholeMessageAt(buf, pos)) pos++;
  out.push(buf.subarray(0, pos));
  while (pos + 5 <= buf.length) {
    const type = buf[pos];
    const len = buf.readUInt32BE(pos + 1);
    if (len < 4 || pos + 1 + len > buf.length) break;
    const body = buf.subarray(pos + 5, pos + 1 + len);
    if (type === 0x45) {
      const fields = body.toString('latin1').split('\0').filter((f) => f !== '' && !SOURCE_FIELDS.has(f[0]));
      const kept = Buffer.from(fields.map((f) => `${f}\0`).join('') + '\0', 'latin1');
      const head = Buffer.alloc(5);
      head[0] = type;
      head.writeUInt32BE(4 + kept.length, 1);
      out.push(head, kept);
    } else {
      out.push(buf.subarray(pos, pos + 1 + len));
    }
    pos += 1 + len;
  }
  out.push(buf.subarray(pos));
  return Buffer.concat(out).toString('latin1');
}

/** Sends the same bytes to PostgreSQL and to sempipe and expects the same answer, and both to close. */
async function expectSameAnswer(direct: Promise<Answer>, viaSempipe: Promise<Answer>): Promise<string> {
  const [d, s] = await Promise.all([direct, viaSempipe]);
  expect(d.closedByServer, 'PostgreSQL closed the connection').toBe(true);
  expect(s.closedByServer, 'sempipe closed the connection').toBe(true);
  expect(withoutSourceFields(s.bytes)).toBe(withoutSourceFields(d.bytes));
  return withoutSourceFields(d.bytes);
}

const same = (bytes: Buffer, keepOpen = false): Promise<string> =>
  expectSameAnswer(exchange(plainServer.port, bytes, keepOpen), exchange(ports.plain, bytes, keepOpen));

describe('malformed startup packets: silence, as from PostgreSQL', () => {
  test('a length under 8', async () => {
    expect(await same(Buffer.from([0, 0, 0, 4]))).toBe('');
  });

  test('a length over 10000 after the length word (10005 bytes); 10004 bytes are read', async () => {
    expect(await same(packet(0x30000, Buffer.alloc(10005 - 8)))).toBe('');
    expect(await same(packet(0x30000, Buffer.alloc(10004 - 8)))).toMatch(/C08P01\0Minvalid startup packet layout/);
  });

  test("node-postgres's Terminate queued before its startup packet (X 00 00 00 04, then the StartupMessage)", async () => {
    expect(await same(Buffer.concat([serialize.end(), serialize.startup({ user: 'api', database: 'x' })]))).toBe('');
  });

  test('a length word cut short, and a packet cut short, then the client leaves', async () => {
    expect(await same(Buffer.from([0, 0]))).toBe('');
    expect(await same(packet(0x30000, 'user\0api\0\0').subarray(0, 12))).toBe('');
  });

  test('a packet cut short, the client staying: closed at the authentication timeout without a word', async () => {
    expect(await same(packet(0x30000, 'user\0api\0\0').subarray(0, 12), true)).toBe('');
  });

  test('a client that stops in the middle of SCRAM: closed at the authentication timeout without a word', async () => {
    const answer = await same(serialize.startup({ user: 'api', database: 'x' }), true);
    expect(answer).toMatch(/^R.*SCRAM-SHA-256\0\0$/s);
  });

  test('a direct TLS ClientHello on a listener without TLS', async () => {
    const hello = Buffer.from('160301002e0100002a0303', 'hex');
    expect(await same(Buffer.concat([hello, Buffer.alloc(40)]))).toBe('');
  });

  test('CancelRequests of the wrong length, and one with an unknown key', async () => {
    expect(await same(packet(CANCEL_REQUEST, Buffer.alloc(4)))).toBe('');
    expect(await same(packet(CANCEL_REQUEST, Buffer.alloc(12)))).toBe('');
    expect(await same(packet(CANCEL_REQUEST, Buffer.from('0000000100000002', 'hex')))).toBe('');
  });
});

describe('what PostgreSQL answers, sempipe answers', () => {
  test('protocol 2.0: FATAL in the 2.0 format', async () => {
    expect(await same(packet(0x20000, 'user\0api\0\0'))).toBe('EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0');
  });

  test('an unknown code under 3.0: FATAL in the 2.0 format', async () => {
    expect(await same(packet(1234))).toBe('EFATAL:  unsupported frontend protocol 0.1234: server supports 3.0 to 3.0\n\0');
  });

  test('protocol 4.0: ErrorResponse 0A000', async () => {
    expect(await same(packet(0x40000, 'user\0api\0\0'))).toMatch(/C0A000\0Munsupported frontend protocol 4\.0: server supports 3\.0 to 3\.0\0/);
  });

  test('a StartupMessage that does not end with its terminator: 08P01', async () => {
    expect(await same(packet(0x30000, 'user\0api\0'))).toMatch(/C08P01\0Minvalid startup packet layout: expected terminator as last byte\0/);
  });

  test('a StartupMessage without a user: 28000', async () => {
    expect(await same(packet(0x30000, 'database\0x\0\0'))).toMatch(/C28000\0Mno PostgreSQL user name specified in startup packet\0/);
  });

  test('protocol 3.1 with a _pq_ option: NegotiateProtocolVersion (3.0, the option), then authentication', async () => {
    const answer = await same(packet(0x30001, 'user\0api\0_pq_.compression\0on\0\0'));
    expect(answer.startsWith('v\0\0\0\x1d\0\x03\0\0\0\0\0\x01_pq_.compression\0R')).toBe(true);
  });

  test('protocol 3.1 without a user: NegotiateProtocolVersion, then 28000', async () => {
    expect(await same(packet(0x30001, '\0'))).toMatch(/^v.*C28000/s);
  });

  test("SSLRequest without TLS: 'N'; an SSLRequest again: refused as an unknown protocol version", async () => {
    const again = async (port: number): Promise<Answer> => {
      const socket = connect(port, '127.0.0.1');
      const answer = collect(socket);
      await once(socket, 'connect');
      socket.write(packet(SSL_REQUEST));
      await once(socket, 'data');
      socket.write(packet(SSL_REQUEST));
      return answer;
    };
    const answer = await expectSameAnswer(again(plainServer.port), again(ports.plain));
    expect(answer).toMatch(/^NE.*C0A000\0Munsupported frontend protocol 1234\.5679: server supports 3\.0 to 3\.0\0/s);
  });

  test("bytes sent with the SSLRequest, before its answer: 'N', then 08P01 (CVE-2021-23214)", async () => {
    const answer = await same(Buffer.concat([packet(SSL_REQUEST, Buffer.alloc(4)), packet(0x30000, 'user\0api\0\0')]));
    expect(answer).toMatch(/^NE.*C08P01\0Mreceived unencrypted data after SSL request\0DThis could be/s);
  });

  test("bytes sent with the SSLRequest to a TLS listener: 'S', and the refusal comes inside TLS after the handshake", async () => {
    const early = async (port: number): Promise<Answer> => {
      const raw = connect(port, '127.0.0.1');
      raw.on('error', () => {});
      await once(raw, 'connect');
      raw.write(Buffer.concat([packet(SSL_REQUEST), serialize.startup({ user: 'api', database: 'x' })]));
      const [s] = (await once(raw, 'data')) as [Buffer];
      expect(s.toString()).toBe('S');
      const secure = tlsConnect({ socket: raw, rejectUnauthorized: false });
      const collected = collect(secure);
      await once(secure, 'secureConnect');
      return collected;
    };
    expect(await expectSameAnswer(early(tlsServer.port), early(ports.tls))).toMatch(/^E.*C08P01\0Mreceived unencrypted data after SSL request/s);
  });

  test('inside TLS, SSLRequest and GSSENCRequest are refused as unknown protocol versions', async () => {
    const ssl = await expectSameAnswer(exchangeInTls(tlsServer.port, packet(SSL_REQUEST)), exchangeInTls(ports.tls, packet(SSL_REQUEST)));
    expect(ssl).toMatch(/C0A000\0Munsupported frontend protocol 1234\.5679/);
    const gss = await expectSameAnswer(exchangeInTls(tlsServer.port, packet(GSSENC_REQUEST)), exchangeInTls(ports.tls, packet(GSSENC_REQUEST)));
    expect(gss).toMatch(/C0A000\0Munsupported frontend protocol 1234\.5680/);
  });

  test('inside TLS the startup and SCRAM-SHA-256-PLUS offer follow as from the server', async () => {
    const startup = serialize.startup({ user: 'api', database: 'x' });
    const answer = await expectSameAnswer(exchangeInTls(tlsServer.port, startup), exchangeInTls(ports.tls, startup));
    expect(answer).toMatch(/SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0$/);
  });

  // Debian's PostgreSQL is built with GSSAPI and answers 'G' even without a keytab; sempipe has no
  // GSSAPI encryption and answers what a server built without it answers: 'N', after which the
  // client may still ask for SSL, and a second GSSENCRequest is refused like a second SSLRequest.
  test("GSSENCRequest: 'N', then SSLRequest gets 'S'; a second GSSENCRequest is refused", async () => {
    const gssThenSsl = await exchange(ports.tls, Buffer.concat([packet(GSSENC_REQUEST), packet(SSL_REQUEST)]), true);
    expect(gssThenSsl.bytes.toString('latin1')).toBe('NS');
    const twice = await exchange(ports.plain, Buffer.concat([packet(GSSENC_REQUEST), packet(GSSENC_REQUEST)]));
    expect(withoutSourceFields(twice.bytes)).toMatch(/^NE.*C0A000\0Munsupported frontend protocol 1234\.5680/s);
  });
});

describe('reporting', () => {
  test('refused startups are counted in sempipe_startup_rejected_total by binding and reason, and logged at debug', async () => {
    const count = (reason: string): Promise<number> => sempipe.metric('sempipe_startup_rejected_total', { binding: BINDINGS.plain, reason });
    const before = { length: await count('invalid_length'), cancel: await count('cancel_length'), version: await count('unsupported_protocol') };
    await exchange(ports.plain, Buffer.from([0, 0, 0, 1]));
    await exchange(ports.plain, packet(CANCEL_REQUEST, Buffer.alloc(9)));
    await exchange(ports.plain, packet(0x20000, 'user\0api\0\0'));
    expect(await count('invalid_length')).toBe(before.length + 1);
    expect(await count('cancel_length')).toBe(before.cancel + 1);
    expect(await count('unsupported_protocol')).toBe(before.version + 1);
    const logged = sempipe
      .stderr()
      .split('\n')
      .filter((l) => l.includes('startup packet rejected'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toContainEqual(expect.objectContaining({ level: 20, binding: BINDINGS.plain, reason: 'cancel_length', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) }));
  });
});

describe('node-postgres: client.connect(); client.end() back to back (its issue #320)', () => {
  /** What the application sees: the connect promise's outcome and any 'error' event. */
  async function connectThenEnd(port: number, user: string, password: string, database: string): Promise<{ connect: string; errors: string[] }> {
    const client = new pg.Client({ host: '127.0.0.1', port, user, password, database });
    const errors: string[] = [];
    client.on('error', (e: Error) => errors.push(e.message));
    const connect = client.connect().then(
      () => 'connected',
      (e: Error) => `rejected: ${e.message}`,
    );
    await client.end();
    const outcome = await Promise.race([connect, new Promise<string>((r) => setTimeout(() => r('pending'), 1000))]);
    return { connect: outcome, errors };
  }

  test('through sempipe it behaves as directly: no rejected connect, no error event', async () => {
    const [direct, through] = await Promise.all([
      connectThenEnd(plainServer.port, plainServer.user, plainServer.password, plainServer.database),
      connectThenEnd(ports.plain, 'api', 'api-secret', plainServer.database),
    ]);
    // Directly, the connect promise stays pending; before the fix sempipe's FATAL rejected it.
    expect(through).toEqual(direct);
    expect(through.errors).toEqual([]);
    expect(through.connect).not.toMatch(/^rejected/);
  });
});

const direct = (database = plainServer.database): pg.ClientConfig => ({ host: '127.0.0.1', port: plainServer.port, user: plainServer.user, password: plainServer.password, database });
const through = (database = plainServer.database): pg.ClientConfig => ({ host: '127.0.0.1', port: ports.plain, user: 'api', password: 'api-secret', database });

/** The process id node-postgres got in BackendKeyData. */
const keyProcessId = (c: pg.Client): number => (c as unknown as { processID: number }).processID;

// What the README's "through sempipe vs directly" table states, against the same server.
describe('through sempipe vs directly', () => {
  test("BackendKeyData carries sempipe's own process id; pg_backend_pid() still returns the server's", async () => {
    for (const [config, same] of [[direct(), true], [through(), false]] as const) {
      const c = new pg.Client(config);
      await c.connect();
      try {
        const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
        expect(keyProcessId(c) === pid, `key process id ${keyProcessId(c)}, backend ${pid}`).toBe(same);
        expect(plainServer.sql(`select count(*) from pg_stat_activity where pid = ${pid}`).trim()).toBe('1');
      } finally {
        await c.end();
      }
    }
  });

  test("only the binding's database name is served, though the server has others", async () => {
    const d = new pg.Client(direct('postgres'));
    await d.connect();
    await d.end();
    const c = new pg.Client(through('postgres'));
    c.on('error', () => {});
    await expect(c.connect()).rejects.toMatchObject({ severity: 'FATAL', code: '3D000', message: 'database "postgres" does not exist' });
  });

  test('pg_terminate_backend on the server: the client sees what it sees directly, and the session ends as "upstream"', async () => {
    /** What an application sees when its backend is terminated, in order. */
    async function terminated(config: pg.ClientConfig): Promise<string[]> {
      const c = new pg.Client(config);
      const seen: string[] = [];
      c.on('error', (e: Error & { code?: string; severity?: string }) => seen.push(`error ${e.severity ?? '-'} ${e.code ?? '-'} ${e.message}`));
      c.on('end', () => seen.push('end'));
      await c.connect();
      const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const ended = new Promise((r) => c.once('end', r));
      plainServer.sql(`select pg_terminate_backend(${pid})`);
      await ended;
      await c.query('select 1').then(
        () => seen.push('query ok'),
        (e: Error) => seen.push(`query refused: ${e.message}`),
      );
      return seen;
    }
    const directly = await terminated(direct());
    expect(directly[0]).toBe('error FATAL 57P01 terminating connection due to administrator command');
    expect(await terminated(through())).toEqual(directly);
    await expect.poll(() => sempipe.stdout().split('\n').some((l) => l.includes('"event":"session_end"') && l.includes('"reason":"upstream"'))).toBe(true);
  });
});
