// Server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677, channel binding
// tls-server-end-point of RFC 5929) as sempipe runs it towards its clients: pure steps over a
// session object, no I/O, in the shape of pg's lib/crypto/sasl.js (client side). Every failure names
// the step it happened in. Reasons are for logs only: the client gets PostgreSQL's generic errors.
// Follows PostgreSQL's auth-scram.c: the user name in client-first is ignored (the startup message
// decides), authzid and mandatory extensions are refused, an unknown user runs a mock exchange with
// a salt derived from the user name so it cannot be told apart from a wrong password (scram-mock.ts).
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { mockVerifier, type ScramMockSettings } from './scram-mock.js';
import { decodeBase64, DEFAULT_SALT_LENGTH, DEFAULT_SCRAM_ITERATIONS, scramClientProofMatches, scramServerSignature, type ScramVerifier } from './scram-verifier.js';

const require = createRequire(import.meta.url);
const { signatureAlgorithmHashFromCertificate } = require('pg/lib/crypto/cert-signatures.js') as {
  signatureAlgorithmHashFromCertificate(der: Buffer): string;
};

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';
const CHANNEL_BINDING_TYPE = 'tls-server-end-point';
/** PostgreSQL's SCRAM_RAW_NONCE_LEN. */
const SERVER_NONCE_BYTES = 18;
/**
 * For a process given no salt secret (the single-process demo): its unknown users' salts are stable
 * only while it runs. `sempipe proxy` always passes the installation's shared secret.
 */
const PROCESS_MOCK: ScramMockSettings = { secret: randomBytes(32), scope: '', iterations: DEFAULT_SCRAM_ITERATIONS, saltLength: DEFAULT_SALT_LENGTH };

export interface ScramServerOptions {
  /** undefined = unknown user: run a mock exchange with a deterministic fake salt, then fail. */
  verifier: ScramVerifier | undefined;
  /** tls-server-end-point hash of our certificate when the client leg is TLS; offers PLUS. */
  channelBinding?: Buffer;
  /** The startup user name; keys the mock salt so one unknown user always sees the same salt. */
  user?: string;
  /** The binding's mock settings, with the secret all workers share so they hand out the same fake salt. */
  mock?: ScramMockSettings;
}

export type ScramStep = 'client-first' | 'client-final' | 'done' | 'failed';

export interface ScramServerSession {
  step: ScramStep;
  readonly verifier: ScramVerifier;
  /** True for an unknown user: the exchange runs to the end and then fails. */
  readonly mock: boolean;
  readonly channelBinding: Buffer | undefined;
  /** The GS2 header exactly as the client sent it, e.g. `n,,` or `p=tls-server-end-point,,`. */
  gs2Header: string;
  clientFirstBare: string;
  serverFirst: string;
  /** Client nonce followed by ours. */
  nonce: string;
}

/** The mechanisms to offer in AuthenticationSASL: PLUS first when the client leg is TLS. */
export function scramMechanisms(tls: boolean): string[] {
  return tls ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256];
}

export function createScramServer(opts: ScramServerOptions): ScramServerSession {
  // Derived for a known user too, so that answering a startup costs the same work whether the user exists.
  const mock = mockVerifier(opts.mock ?? PROCESS_MOCK, opts.user ?? '');
  return {
    step: 'client-first',
    verifier: opts.verifier ?? mock,
    mock: opts.verifier === undefined,
    channelBinding: opts.channelBinding,
    gs2Header: '',
    clientFirstBare: '',
    serverFirst: '',
    nonce: '',
  };
}

/** printable = %x21-2B / %x2D-7E (RFC 5802 section 7): printable ASCII except ','. */
function isPrintable(s: string): boolean {
  return /^[\x21-\x2B\x2D-\x7E]+$/.test(s);
}

/** Splits `a=value,b=value` into [name, value] pairs; undefined when a pair is malformed. */
function attributes(text: string): [string, string][] | undefined {
  const pairs: [string, string][] = [];
  for (const part of text.split(',')) {
    if (!/^[A-Za-z]=/.test(part)) return undefined;
    pairs.push([part[0], part.substring(2)]);
  }
  return pairs;
}

type FirstResult = { ok: true; serverFirst: string } | { ok: false; reason: string };
type FinalResult = { ok: true; serverFinal: string } | { ok: false; reason: string; badPassword: boolean };

function failFirst(s: ScramServerSession, why: string): FirstResult {
  s.step = 'failed';
  return { ok: false, reason: `SCRAM client-first-message: ${why}` };
}

/** Parses the GS2 header and checks it against the mechanism; returns an error text or the header. */
function checkGs2Header(s: ScramServerSession, mechanism: string, text: string): { header: string; rest: string } | string {
  const plus = mechanism === SCRAM_SHA_256_PLUS;
  const first = text.indexOf(',');
  const second = first < 0 ? -1 : text.indexOf(',', first + 1);
  if (second < 0) return 'malformed GS2 header';
  const flag = text.substring(0, first);
  const authzid = text.substring(first + 1, second);
  if (flag === 'n' || flag === 'y') {
    if (plus) return `client selected ${SCRAM_SHA_256_PLUS} but sent no channel binding data`;
    // 'y': the client supports channel binding but thinks we do not. We offered PLUS, so someone
    // removed it from the mechanism list on the way: a downgrade attack (RFC 5802 section 6).
    if (flag === 'y' && s.channelBinding !== undefined) return 'channel binding negotiation error: client supports it but thinks the server does not';
  } else if (flag.startsWith('p=')) {
    if (!plus) return `client selected ${SCRAM_SHA_256} but the message includes channel binding data`;
    if (flag.substring(2) !== CHANNEL_BINDING_TYPE) return `unsupported channel binding type ${JSON.stringify(flag.substring(2, 66))}`;
  } else {
    return 'malformed GS2 channel binding flag';
  }
  if (authzid.startsWith('a=')) return 'authorization identity is not supported';
  if (authzid !== '') return 'malformed GS2 header';
  return { header: text.substring(0, second + 1), rest: text.substring(second + 1) };
}

export function handleClientFirst(s: ScramServerSession, mechanism: string, clientFirst: Buffer): FirstResult {
  if (s.step !== 'client-first') return failFirst(s, `unexpected at step ${s.step}`);
  const offered = scramMechanisms(s.channelBinding !== undefined);
  if (!offered.includes(mechanism)) return failFirst(s, `mechanism ${JSON.stringify(mechanism.slice(0, 64))} was not offered`);
  const text = clientFirst.toString('utf8');
  const gs2 = checkGs2Header(s, mechanism, text);
  if (typeof gs2 === 'string') return failFirst(s, gs2);
  const attrs = attributes(gs2.rest);
  if (!attrs) return failFirst(s, 'malformed attribute');
  if (attrs[0][0] === 'm') return failFirst(s, 'client requires an unsupported SCRAM extension');
  if (attrs.length < 2 || attrs[0][0] !== 'n' || attrs[1][0] !== 'r') return failFirst(s, 'expected n= and r= attributes');
  const clientNonce = attrs[1][1];
  if (!isPrintable(clientNonce)) return failFirst(s, 'nonce missing or not printable');
  s.gs2Header = gs2.header;
  s.clientFirstBare = gs2.rest;
  s.nonce = clientNonce + randomBytes(SERVER_NONCE_BYTES).toString('base64');
  s.serverFirst = `r=${s.nonce},s=${s.verifier.salt.toString('base64')},i=${s.verifier.iterations}`;
  s.step = 'client-final';
  return { ok: true, serverFirst: s.serverFirst };
}

function failFinal(s: ScramServerSession, why: string, badPassword = false): FinalResult {
  s.step = 'failed';
  return { ok: false, reason: `SCRAM client-final-message: ${why}`, badPassword };
}

export function handleClientFinal(s: ScramServerSession, clientFinal: Buffer): FinalResult {
  if (s.step !== 'client-final') return failFinal(s, `unexpected at step ${s.step}`);
  const text = clientFinal.toString('utf8');
  const proofAt = text.lastIndexOf(',p=');
  if (proofAt < 0) return failFinal(s, 'proof missing');
  const withoutProof = text.substring(0, proofAt);
  const attrs = attributes(withoutProof);
  if (!attrs || attrs.length < 2 || attrs[0][0] !== 'c' || attrs[1][0] !== 'r') return failFinal(s, 'expected c= and r= attributes');
  const cbind = decodeBase64(attrs[0][1]);
  const expected = Buffer.concat([Buffer.from(s.gs2Header, 'utf8'), s.gs2Header.startsWith('p=') && s.channelBinding ? s.channelBinding : Buffer.alloc(0)]);
  if (!cbind || !cbind.equals(expected)) return failFinal(s, 'channel binding data does not match');
  if (attrs[1][1] !== s.nonce) return failFinal(s, 'nonce does not match');
  const proof = decodeBase64(text.substring(proofAt + 3));
  if (!proof || proof.length !== 32) return failFinal(s, 'malformed proof');
  const authMessage = `${s.clientFirstBare},${s.serverFirst},${withoutProof}`;
  const proofOk = scramClientProofMatches(s.verifier.storedKey, authMessage, proof);
  if (s.mock) return failFinal(s, 'unknown user', true);
  if (!proofOk) return failFinal(s, 'client proof does not match (wrong password)', true);
  s.step = 'done';
  return { ok: true, serverFinal: `v=${scramServerSignature(s.verifier.serverKey, authMessage).toString('base64')}` };
}

// Node's names for the hashes pg's cert-signatures reports.
const NODE_HASH: Record<string, string> = {
  'SHA-224': 'sha224',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA512-224': 'sha512-224',
  'SHA512-256': 'sha512-256',
};

/**
 * tls-server-end-point channel binding data (RFC 5929 section 4.1): the hash of our DER certificate
 * with the hash of its signature algorithm, SHA-256 in place of MD5 and SHA-1. Accepts DER or PEM.
 * Node 20's X509Certificate does not name the signature algorithm, so pg's parser picks the hash.
 */
export function tlsServerEndPoint(cert: Buffer | string): Buffer {
  const der = new X509Certificate(cert).raw;
  const algorithm = signatureAlgorithmHashFromCertificate(der);
  const hash = algorithm === 'MD5' || algorithm === 'SHA-1' ? 'sha256' : NODE_HASH[algorithm];
  if (!hash) throw new Error(`SCRAM channel binding: no hash for certificate signature algorithm ${algorithm}`);
  return createHash(hash).update(der).digest();
}
