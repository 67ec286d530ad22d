// runClientHandshake over real TCP socket pairs on 127.0.0.1, with a binding runtime built by hand:
// a full SCRAM login with pg's own SASL client code, the refusals PostgreSQL gives (garbage before
// startup, protocol 2.0, GSSENCRequest), and fast-check fuzzing of the startup packet and of both
// SASL messages: the handshake always resolves undefined and closes the socket within the timeout.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createRequire } from 'node:module';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { runClientHandshake, type AuthenticatedClient } from './client-handshake.js';
import type { PgBindingRuntime } from './binding-runtime.js';
import { createScramVerifier, parseScramVerifier } from './auth/scram-verifier.js';
import { tlsServerEndPoint } from './auth/scram-server.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { makeCertificate } from '../../test/harness/certs.js';

interface PgSasl {
  startSession(mechanisms: string[], stream?: unknown): { mechanism: string; response: string };
  continueSession(session: object, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(session: object, serverData: string): void;
}
const sasl = createRequire(import.meta.url)('pg/lib/crypto/sasl.js') as PgSasl;

const AUTH_TIMEOUT_MS = 300;

function runtime(): PgBindingRuntime {
  return {
    fqn: 'binding::/test::hs',
    serviceFqn: 'service::/test::db',
    database: 'orders',
    auth: 'scram-sha-256',
    allowPasswordWithoutTls: false,
    clients: new Map([['api', { scram: parseScramVerifier(createScramVerifier('api-secret', 4096)) }]]),
    upstream: { host: '127.0.0.1', port: 1, database: 'appdb', user: 'u', tls: 'disable', connectTimeoutMs: 1000, serviceFqn: 'service::/test::db' },
    authTimeoutMs: AUTH_TIMEOUT_MS,
    cancelGraceMs: 500,
    maxMessageSize: 1 << 20,
    upstreamIdle: { timeoutMs: 60_000, max: 0, checkDelayMs: 0, checkTimeoutMs: 1000 },
    stages: [],
  };
}

let server: Server;
let port: number;
const rt = runtime();
/** Handshake results of accepted sockets, in accept order. */
const results: Array<Promise<{ client: AuthenticatedClient | undefined; failures: string[] }>> = [];

beforeAll(async () => {
  server = createServer((socket) => {
    const failures: string[] = [];
    socket.on('error', () => {});
    results.push(
      runClientHandshake(socket, rt, {
        onCancel: () => {},
        onAuthFailure: (_u, reason) => failures.push(reason),
        onStartupRejected: (reason) => failures.push(`startup:${reason}`),
      }).then((client) => {
        client?.socket.destroy();
        return { client, failures };
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

interface Conn {
  socket: Socket;
  /** Resolves with everything the server sent once it closed the connection. */
  closed: Promise<Buffer>;
  /** Next server message (parsed), waiting for it. */
  next(): Promise<BackendMessage & Record<string, unknown>>;
  raw: () => Buffer;
  result: Promise<{ client: AuthenticatedClient | undefined; failures: string[] }>;
}

async function open(): Promise<Conn> {
  const accepted = results.length;
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise<void>((r) => socket.once('connect', () => r()));
  while (results.length === accepted) await new Promise((r) => setTimeout(r, 1));
  const chunks: Buffer[] = [];
  const queue: Array<BackendMessage & Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  const parser = new Parser();
  let parsing = true;
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    if (parsing && d[0] !== 0x4e) {
      parser.parse(d, (m) => {
        queue.push(m as BackendMessage & Record<string, unknown>);
        waiters.splice(0).forEach((w) => w());
      });
    } else if (parsing) {
      // A lone 'N' answers SSLRequest/GSSENCRequest; it is no typed message.
      queue.push({ name: 'N' } as unknown as BackendMessage & Record<string, unknown>);
      waiters.splice(0).forEach((w) => w());
      if (d.length > 1) parsing = false;
    }
  });
  const closed = new Promise<Buffer>((r) => socket.once('close', () => r(Buffer.concat(chunks))));
  return {
    socket,
    closed,
    raw: () => Buffer.concat(chunks),
    result: results[accepted],
    next: async () => {
      while (queue.length === 0) await new Promise<void>((r) => waiters.push(r));
      return queue.shift()!;
    },
  };
}

function messages(buf: Buffer): Array<BackendMessage & Record<string, unknown>> {
  const out: Array<BackendMessage & Record<string, unknown>> = [];
  new Parser().parse(buf, (m) => out.push(m as BackendMessage & Record<string, unknown>));
  return out;
}

function startupCode(code: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.alloc(8 + payload.length);
  buf.writeUInt32BE(buf.length, 0);
  buf.writeUInt32BE(code, 4);
  payload.copy(buf, 8);
  return buf;
}

function typedP(payload: Buffer): Buffer {
  const buf = Buffer.alloc(5 + payload.length);
  buf[0] = 0x70;
  buf.writeUInt32BE(4 + payload.length, 1);
  payload.copy(buf, 5);
  return buf;
}

/** Waits for the handshake to give up and for the socket to be closed, within the auth timeout. */
async function expectClosedWithin(c: Conn, ms = AUTH_TIMEOUT_MS + 1000): Promise<Buffer> {
  const timer = new Promise<never>((_r, reject) => setTimeout(() => reject(new Error('handshake hung')), ms));
  const [{ client }, bytes] = await Promise.race([Promise.all([c.result, c.closed]), timer]);
  expect(client).toBeUndefined();
  return bytes;
}

describe('client handshake', () => {
  test('a full SCRAM-SHA-256 login with pg\'s SASL client resolves the authenticated client', async () => {
    const c = await open();
    c.socket.write(serialize.startup({ user: 'api', database: 'orders', application_name: 'hs-test' }));
    const req = await c.next();
    expect(req.name).toBe('authenticationSASL');
    const session = sasl.startSession(req.mechanisms as string[]);
    c.socket.write(serialize.sendSASLInitialResponseMessage(session.mechanism, session.response));
    const cont = await c.next();
    expect(cont.name).toBe('authenticationSASLContinue');
    await sasl.continueSession(session, 'api-secret', cont.data as string);
    c.socket.write(serialize.sendSCRAMClientFinalMessage((session as { response: string }).response));
    const fin = await c.next();
    expect(fin.name).toBe('authenticationSASLFinal');
    sasl.finalizeSession(session, fin.data as string);
    const { client } = await c.result;
    expect(client).toMatchObject({ user: 'api', database: 'orders', tls: false });
    expect(client!.params.get('application_name')).toBe('hs-test');
    c.socket.destroy();
  });

  test('a wrong password gets FATAL 28P01 and the failure is reported as bad_password', async () => {
    const c = await open();
    c.socket.write(serialize.startup({ user: 'api', database: 'orders' }));
    const req = await c.next();
    const session = sasl.startSession(req.mechanisms as string[]);
    c.socket.write(serialize.sendSASLInitialResponseMessage(session.mechanism, session.response));
    const cont = await c.next();
    await sasl.continueSession(session, 'wrong', cont.data as string);
    c.socket.write(serialize.sendSCRAMClientFinalMessage((session as { response: string }).response));
    const err = await c.next();
    expect(err).toMatchObject({ name: 'error', severity: 'FATAL', code: '28P01' });
    await expectClosedWithin(c);
    expect((await c.result).failures).toEqual(['bad_password']);
  });

  test('garbage before the startup packet (an invalid length) is closed without a word and reported', async () => {
    const c = await open();
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await expectClosedWithin(c)).toEqual(Buffer.alloc(0));
    expect((await c.result).failures).toEqual(['startup:invalid_length']);
  });

  test('protocol version 2.0 gets FATAL in the 2.0 format, 4.0 an ErrorResponse 0A000', async () => {
    const c = await open();
    c.socket.write(startupCode(0x00020000, Buffer.from('user\0api\0\0')));
    expect((await expectClosedWithin(c)).toString()).toBe('EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0');
    const d = await open();
    d.socket.write(startupCode(0x00040000, Buffer.from('user\0api\0\0')));
    const msgs = messages(await expectClosedWithin(d));
    expect(msgs[0]).toMatchObject({ name: 'error', severity: 'FATAL', code: '0A000', message: 'unsupported frontend protocol 4.0: server supports 3.0 to 3.0' });
    expect((await d.result).failures).toEqual(['startup:unsupported_protocol']);
  });

  test('GSSENCRequest gets a single N and the startup can follow on the same connection', async () => {
    const c = await open();
    c.socket.write(startupCode(80877104));
    expect((await c.next()).name).toBe('N');
    expect(c.raw()).toEqual(Buffer.from('N'));
    c.socket.write(serialize.startup({ user: 'api', database: 'orders' }));
    expect((await c.next()).name).toBe('authenticationSASL');
    c.socket.destroy();
    expect((await c.result).client).toBeUndefined();
  });

  test('a silent client is dropped without a word at the auth timeout, as PostgreSQL drops it', async () => {
    const c = await open();
    const t0 = Date.now();
    expect(await expectClosedWithin(c)).toEqual(Buffer.alloc(0));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(AUTH_TIMEOUT_MS - 20);
    expect((await c.result).failures).toEqual(['timeout']);
  });
});

describe('fuzzing the handshake', () => {
  const bytes = fc.uint8Array({ minLength: 1, maxLength: 120 }).map((a) => Buffer.from(a));

  test('arbitrary bytes as the startup packet never crash or hang', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytes, bytes.map((b) => startupCode(196608, b))), async (payload) => {
        const c = await open();
        c.socket.write(payload);
        await expectClosedWithin(c);
      }),
      { numRuns: 40 },
    );
  });

  test('arbitrary SASLInitialResponse bodies never crash or hang', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytes, bytes.map((b) => Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), b]))), async (payload) => {
        const c = await open();
        c.socket.write(serialize.startup({ user: 'api', database: 'orders' }));
        await c.next();
        c.socket.write(typedP(payload));
        await expectClosedWithin(c);
      }),
      { numRuns: 40 },
    );
  });

  test('arbitrary SASLResponse bodies after a valid client-first never crash or hang', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytes, bytes.map((b) => Buffer.concat([Buffer.from('c=biws,r='), b]))), async (payload) => {
        const c = await open();
        c.socket.write(serialize.startup({ user: 'api', database: 'orders' }));
        const req = await c.next();
        const session = sasl.startSession(req.mechanisms as string[]);
        c.socket.write(serialize.sendSASLInitialResponseMessage(session.mechanism, session.response));
        expect((await c.next()).name).toBe('authenticationSASLContinue');
        c.socket.write(typedP(payload));
        await expectClosedWithin(c);
      }),
      { numRuns: 40 },
    );
  });

  test('arbitrary bytes after the startup message never crash or hang', async () => {
    await fc.assert(
      fc.asyncProperty(bytes, async (payload) => {
        const c = await open();
        c.socket.write(serialize.startup({ user: 'api', database: 'orders' }));
        await c.next();
        c.socket.write(payload);
        await expectClosedWithin(c);
      }),
      { numRuns: 40 },
    );
  });
});

describe('fuzzing a direct TLS start on a binding with TLS', () => {
  let tlsServer: Server;
  let tlsPort: number;
  let certDir: string;
  const outcomes: Array<Promise<AuthenticatedClient | undefined>> = [];

  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'sempipe-hs-tls-'));
    const cert = makeCertificate(certDir, 'localhost');
    const pem = readFileSync(cert.certFile);
    const tlsRt: PgBindingRuntime = {
      ...runtime(),
      tls: { context: createSecureContext({ cert: pem, key: readFileSync(cert.keyFile) }), required: false, endPoint: tlsServerEndPoint(pem) },
    };
    tlsServer = createServer((socket) => {
      socket.on('error', () => {});
      outcomes.push(runClientHandshake(socket, tlsRt, { onCancel: () => {}, onAuthFailure: () => {}, onStartupRejected: () => {} }));
    });
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    tlsPort = (tlsServer.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise<void>((r) => tlsServer.close(() => r()));
    rmSync(certDir, { recursive: true, force: true });
  });

  test('arbitrary bytes after a TLS handshake record byte never crash or hang', async () => {
    const record = fc.uint8Array({ minLength: 0, maxLength: 200 }).map((a) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), Buffer.from(a)]));
    await fc.assert(
      fc.asyncProperty(record, async (payload) => {
        const socket = connect(tlsPort, '127.0.0.1');
        socket.on('error', () => {});
        // Flowing, so that a TLS alert is read and the close after it seen.
        socket.resume();
        const closed = new Promise<void>((r) => socket.once('close', () => r()));
        await new Promise<void>((r) => socket.once('connect', () => r()));
        socket.write(payload);
        const timer = new Promise<never>((_r, reject) => setTimeout(() => reject(new Error('handshake hung')), AUTH_TIMEOUT_MS + 1000));
        await Promise.race([closed, timer]);
        expect(await outcomes[outcomes.length - 1]).toBeUndefined();
      }),
      { numRuns: 30 },
    );
  });
});
