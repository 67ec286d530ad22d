// Server-side SCRAM driven by the real client code of pg (lib/crypto/sasl.js), plain and with
// channel binding over real TLS sockets, plus the attacks and malformed input it must refuse.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { makeCertificate, type Certificate } from '../../../test/harness/certs.js';
import { createScramServer, handleClientFinal, handleClientFirst, scramMechanisms, tlsServerEndPoint, type ScramServerOptions } from './scram-server.js';
import { scramMockSettings } from './scram-mock.js';
import { createScramVerifier, parseScramVerifier } from './scram-verifier.js';

interface SaslSession { mechanism: string; response: string }
const require = createRequire(import.meta.url);
const sasl = require('pg/lib/crypto/sasl.js') as {
  startSession(mechanisms: string[], stream?: tls.TLSSocket): SaslSession;
  continueSession(session: SaslSession, password: string, serverData: string, stream?: tls.TLSSocket): Promise<void>;
  finalizeSession(session: SaslSession, serverData: string): void;
};

const verifier = parseScramVerifier(createScramVerifier('correct horse', 4096))!;
const SERVER_FIRST = /^r=[\x21-\x2B\x2D-\x7E]+,s=[A-Za-z0-9+/]+=*,i=[0-9]+$/;

/** One exchange: pg's client on one side, our server steps on the other; `tamper` edits client-final. */
async function exchange(password: string, opts: ScramServerOptions, stream?: tls.TLSSocket, mechanisms = scramMechanisms(opts.channelBinding !== undefined), tamper = (m: string) => m) {
  const client = sasl.startSession(mechanisms, stream);
  const server = createScramServer(opts);
  const first = handleClientFirst(server, client.mechanism, Buffer.from(client.response));
  if (!first.ok) return { client, server, first };
  await sasl.continueSession(client, password, first.serverFirst, stream);
  const final = handleClientFinal(server, Buffer.from(tamper(client.response)));
  if (final.ok) sasl.finalizeSession(client, final.serverFinal);
  return { client, server, first, final };
}

describe('SCRAM-SHA-256 without channel binding', () => {
  test('pg client with the right password completes and accepts our server signature', async () => {
    const r = await exchange('correct horse', { verifier });
    expect(r.client.mechanism).toBe('SCRAM-SHA-256');
    expect(r.first.ok && r.first.serverFirst).toMatch(SERVER_FIRST);
    expect(r.final).toMatchObject({ ok: true });
    expect(r.server.step).toBe('done');
  });

  test('the server nonce extends the client nonce by 18 random bytes (24 base64 characters)', () => {
    const nonces = [1, 2].map(() => {
      const r = handleClientFirst(createScramServer({ verifier }), 'SCRAM-SHA-256', Buffer.from('n,,n=,r=clientnonce'));
      return r.ok ? /^r=([^,]+),/.exec(r.serverFirst)![1] : '';
    });
    for (const n of nonces) expect(n).toMatch(/^clientnonce[A-Za-z0-9+/]{24}$/);
    expect(nonces[0]).not.toBe(nonces[1]);
  });

  test('wrong password: ok false, badPassword true', async () => {
    const r = await exchange('wrong horse', { verifier });
    expect(r.final).toMatchObject({ ok: false, badPassword: true });
    expect(r.server.step).toBe('failed');
  });

  test('unknown user: a mock exchange that fails like a wrong password, with a stable salt per user', async () => {
    const mock = scramMockSettings(Buffer.alloc(32, 7), 'binding::/t::b', [verifier]);
    const a = await exchange('whatever', { verifier: undefined, user: 'ghost', mock });
    const b = await exchange('whatever', { verifier: undefined, user: 'ghost', mock: { ...mock, secret: Buffer.alloc(32, 7) } });
    const c = await exchange('whatever', { verifier: undefined, user: 'phantom', mock });
    expect(a.final).toMatchObject({ ok: false, badPassword: true });
    const salt = (r: typeof a) => (r.first.ok ? /,s=([^,]+),i=4096$/.exec(r.first.serverFirst)?.[1] : undefined);
    expect(salt(a)).toBeDefined();
    expect(salt(a)).toBe(salt(b));
    expect(salt(a)).not.toBe(salt(c));
    expect(Buffer.from(salt(a)!, 'base64').length).toBe(verifier.salt.length);
  });

  test('unknown user: the server-first message has the shape of a real user\'s (nonce, salt length, iterations)', () => {
    const real = parseScramVerifier(createScramVerifier('pw', 10_000, Buffer.alloc(20, 1)))!;
    const mock = scramMockSettings(Buffer.alloc(32, 7), 'binding::/t::b', [real]);
    const shape = (opts: ScramServerOptions) => {
      const r = handleClientFirst(createScramServer(opts), 'SCRAM-SHA-256', Buffer.from('n,,n=,r=clientnonce'));
      const m = r.ok ? /^r=clientnonce([^,]+),s=([^,]+),i=(\d+)$/.exec(r.serverFirst) : null;
      return m ? { nonce: m[1]!.length, salt: Buffer.from(m[2]!, 'base64').length, iterations: Number(m[3]) } : undefined;
    };
    const known = shape({ verifier: real, user: 'api', mock });
    expect(known).toEqual({ nonce: 24, salt: 20, iterations: 10_000 });
    expect(shape({ verifier: undefined, user: 'ghost', mock })).toEqual(known);
  });

  test('the user name in client-first is ignored (PostgreSQL takes it from the startup packet)', () => {
    const s = createScramServer({ verifier });
    expect(handleClientFirst(s, 'SCRAM-SHA-256', Buffer.from('n,,n=somebody-else,r=abcdef'))).toMatchObject({ ok: true });
  });

  test('tampered nonce in client-final is refused before the proof is looked at', async () => {
    const r = await exchange('correct horse', { verifier }, undefined, undefined, (m) => m.replace(/,r=([^,]+)/, ',r=$1x'));
    expect(r.final).toMatchObject({ ok: false, badPassword: false });
    expect(r.final!.ok === false && r.final!.reason).toMatch(/client-final-message: nonce/);
  });

  test('client-final claiming channel binding data that client-first did not announce is refused', async () => {
    const r = await exchange('correct horse', { verifier }, undefined, undefined, (m) => m.replace('c=biws', 'c=eSws'));
    expect(r.final!.ok === false && r.final!.reason).toMatch(/channel binding/);
  });

  test('steps out of order fail and name their step', () => {
    const s = createScramServer({ verifier });
    expect(handleClientFinal(s, Buffer.from('c=biws,r=x,p=AAAA'))).toMatchObject({ ok: false, reason: 'SCRAM client-final-message: unexpected at step client-first' });
    const t = createScramServer({ verifier });
    expect(handleClientFirst(t, 'SCRAM-SHA-256', Buffer.from('n,,n=,r=abc')).ok).toBe(true);
    expect(handleClientFirst(t, 'SCRAM-SHA-256', Buffer.from('n,,n=,r=abc'))).toMatchObject({ ok: false, reason: 'SCRAM client-first-message: unexpected at step client-final' });
  });

  test.each([
    ['SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=,r=abc', /not offered/],
    ['SCRAM-SHA-1', 'n,,n=,r=abc', /not offered/],
    ['SCRAM-SHA-256', 'p=tls-server-end-point,,n=,r=abc', /includes channel binding data/],
    ['SCRAM-SHA-256', 'n,a=admin,n=,r=abc', /authorization identity/],
    ['SCRAM-SHA-256', 'n,,m=ext,n=,r=abc', /extension/],
    ['SCRAM-SHA-256', 'n,,n=,r=', /nonce/],
    ['SCRAM-SHA-256', 'n,,n=,r=ab\u00e9', /nonce/],
    ['SCRAM-SHA-256', 'n,,r=abc', /expected n= and r=/],
    ['SCRAM-SHA-256', 'x,,n=,r=abc', /flag/],
    ['SCRAM-SHA-256', 'n,n=,r=abc', /GS2 header/],
    ['SCRAM-SHA-256', '', /GS2 header/],
  ])('client-first refused: %s %j', (mechanism, message, reason) => {
    const r = handleClientFirst(createScramServer({ verifier }), mechanism, Buffer.from(message));
    expect(r.ok).toBe(false);
    expect(r.ok === false && r.reason).toMatch(reason);
  });
});

describe('SCRAM-SHA-256-PLUS over real TLS', () => {
  let dir: string;
  let cert: Certificate;
  let otherCert: Certificate;
  let server: tls.Server;
  let client: tls.TLSSocket;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sempipe-scram-'));
    cert = makeCertificate(dir, 'localhost');
    otherCert = makeCertificate(mkdtempSync(join(dir, 'other-')), 'localhost');
    server = tls.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) }, (s) => s.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    client = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, rejectUnauthorized: false });
    await new Promise<void>((r) => client.once('secureConnect', r));
  });
  afterAll(async () => {
    client?.destroy();
    await new Promise((r) => server?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  test('tlsServerEndPoint is the SHA-256 of the DER certificate for an RSA-SHA256 certificate', () => {
    const der = client.getPeerCertificate().raw;
    expect(tlsServerEndPoint(der).equals(createHash('sha256').update(der).digest())).toBe(true);
    expect(tlsServerEndPoint(readFileSync(cert.certFile, 'utf8')).equals(tlsServerEndPoint(der))).toBe(true);
  });

  test('tlsServerEndPoint uses SHA-384 for an ECDSA-SHA384 certificate', () => {
    const key = join(dir, 'ec.key');
    const crt = join(dir, 'ec.crt');
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-sha384', '-nodes', '-days', '1', '-subj', '/CN=ec', '-keyout', key, '-out', crt]);
    expect(r.status).toBe(0);
    const der = new X509Certificate(readFileSync(crt)).raw;
    expect(tlsServerEndPoint(der).equals(createHash('sha384').update(der).digest())).toBe(true);
  });

  test('pg client with channel binding completes SCRAM-SHA-256-PLUS', async () => {
    const r = await exchange('correct horse', { verifier, channelBinding: tlsServerEndPoint(readFileSync(cert.certFile)) }, client);
    expect(r.client.mechanism).toBe('SCRAM-SHA-256-PLUS');
    expect(r.client.response.startsWith('c=' + Buffer.from('p=tls-server-end-point,,').toString('base64').slice(0, 28))).toBe(true);
    expect(r.final).toMatchObject({ ok: true });
  });

  test('a man in the middle: the client saw another certificate than ours, so the binding data differs', async () => {
    const r = await exchange('correct horse', { verifier, channelBinding: tlsServerEndPoint(readFileSync(otherCert.certFile)) }, client);
    expect(r.final).toMatchObject({ ok: false, badPassword: false });
    expect(r.final!.ok === false && r.final!.reason).toMatch(/channel binding data does not match/);
  });

  test('tampered channel binding data in client-final is refused', async () => {
    const cb = tlsServerEndPoint(readFileSync(cert.certFile));
    const forged = Buffer.concat([Buffer.from('p=tls-server-end-point,,'), Buffer.alloc(32)]).toString('base64');
    const r = await exchange('correct horse', { verifier, channelBinding: cb }, client, undefined, (m) => m.replace(/^c=[^,]+/, `c=${forged}`));
    expect(r.final!.ok === false && r.final!.reason).toMatch(/channel binding data does not match/);
  });

  test('downgrade: PLUS stripped from the offer, the client answers "y", and we refuse', async () => {
    const r = await exchange('correct horse', { verifier, channelBinding: tlsServerEndPoint(readFileSync(cert.certFile)) }, client, ['SCRAM-SHA-256']);
    expect(r.client.response.startsWith('y,,')).toBe(true);
    expect(r.first).toMatchObject({ ok: false });
    expect(r.first.ok === false && r.first.reason).toMatch(/channel binding negotiation/);
  });

  test('wrong password with PLUS is still a bad password', async () => {
    const r = await exchange('wrong', { verifier, channelBinding: tlsServerEndPoint(readFileSync(cert.certFile)) }, client);
    expect(r.final).toMatchObject({ ok: false, badPassword: true });
  });

  test('a TLS client facing a server that offers no channel binding says "y" and is accepted', async () => {
    const r = await exchange('correct horse', { verifier }, client);
    expect(r.client.mechanism).toBe('SCRAM-SHA-256');
    expect(r.client.response.startsWith('c=eSws')).toBe(true);
    expect(r.final).toMatchObject({ ok: true });
  });

  test('scramMechanisms offers PLUS first on TLS only', () => {
    expect(scramMechanisms(true)).toEqual(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    expect(scramMechanisms(false)).toEqual(['SCRAM-SHA-256']);
  });
});

describe('malformed input never throws', () => {
  const cb = createHash('sha256').update('cert').digest();
  const scramish = fc
    .array(fc.constantFrom('n', 'y', 'p', ',', '=', 'n=', 'r=', 'a=', 'm=', 'c=', 'p=', 's=', 'tls-server-end-point', 'biws', 'eSws', 'abc', 'AAAA', '\u00e9', '\0'), { maxLength: 20 })
    .map((parts) => parts.join(''));
  const mechanism = fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', '', 'x');
  const input = fc.oneof(fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), scramish.map((s) => Buffer.from(s)));

  test('arbitrary client-first: ok false with a reason, or a well-formed server-first', () => {
    fc.assert(fc.property(mechanism, input, fc.boolean(), (mech, data, plus) => {
      const r = handleClientFirst(createScramServer({ verifier, channelBinding: plus ? cb : undefined }), mech, data);
      return r.ok ? SERVER_FIRST.test(r.serverFirst) : r.reason.startsWith('SCRAM client-first-message: ');
    }), { numRuns: 2000 });
  });

  test('arbitrary client-final after a valid client-first: never ok, never throws', () => {
    fc.assert(fc.property(input, fc.boolean(), (data, prefixNonce) => {
      const s = createScramServer({ verifier });
      if (!handleClientFirst(s, 'SCRAM-SHA-256', Buffer.from('n,,n=,r=abc')).ok) return false;
      const message = prefixNonce ? Buffer.concat([Buffer.from(`c=biws,r=${s.nonce},p=`), data]) : data;
      const r = handleClientFinal(s, message);
      return !r.ok && r.reason.startsWith('SCRAM client-final-message: ') && s.step === 'failed';
    }), { numRuns: 2000 });
  });
});
