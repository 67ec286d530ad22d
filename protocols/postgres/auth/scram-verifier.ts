// SCRAM-SHA-256 verifiers in PostgreSQL's stored format
// `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`, and the key
// arithmetic of RFC 5802 section 3 that the server side needs (client proof check, server signature).
// Passwords go through SASLprep first, as PostgreSQL does (see saslprep.ts for what is covered).
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { saslprep } from './saslprep.js';

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** PostgreSQL's defaults: scram_iterations = 4096, SCRAM_DEFAULT_SALT_LEN = 16. */
export const DEFAULT_SCRAM_ITERATIONS = 4096;
export const DEFAULT_SALT_LENGTH = 16;
const KEY_LENGTH = 32;
const MAX_ITERATIONS = 0x7fffffff;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

/** Strict base64 decoding (Buffer.from accepts garbage); undefined when `s` is not canonical base64. */
export function decodeBase64(s: string): Buffer | undefined {
  return BASE64.test(s) ? Buffer.from(s, 'base64') : undefined;
}

/** StoredKey and ServerKey of a password (RFC 5802 section 3). */
export function scramKeys(password: string, salt: Buffer, iterations: number): { storedKey: Buffer; serverKey: Buffer } {
  const salted = pbkdf2Sync(saslprep(password), salt, iterations, KEY_LENGTH, 'sha256');
  return { storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') };
}

export function createScramVerifier(password: string, iterations = DEFAULT_SCRAM_ITERATIONS, salt: Buffer = randomBytes(DEFAULT_SALT_LENGTH)): string {
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
    throw new RangeError(`SCRAM iteration count must be an integer from 1 to ${MAX_ITERATIONS}`);
  }
  if (salt.length === 0) throw new RangeError('SCRAM salt must not be empty');
  const { storedKey, serverKey } = scramKeys(password, salt, iterations);
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

export function parseScramVerifier(s: string): ScramVerifier | undefined {
  const m = /^SCRAM-SHA-256\$([1-9][0-9]{0,9}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(s);
  if (!m) return undefined;
  const iterations = Number(m[1]);
  const salt = decodeBase64(m[2]);
  const storedKey = decodeBase64(m[3]);
  const serverKey = decodeBase64(m[4]);
  if (iterations > MAX_ITERATIONS || !salt || salt.length === 0) return undefined;
  if (storedKey?.length !== KEY_LENGTH || serverKey?.length !== KEY_LENGTH) return undefined;
  return { iterations, salt, storedKey, serverKey };
}

/** Cleartext password against a verifier, so `password` auth works for users stored as SCRAM. */
export function verifyPasswordAgainstScram(password: string, verifier: ScramVerifier): boolean {
  const { storedKey } = scramKeys(password, verifier.salt, verifier.iterations);
  return timingSafeEqual(storedKey, verifier.storedKey);
}

/**
 * The client proof check of RFC 5802 section 3: ClientKey = proof XOR HMAC(StoredKey, AuthMessage)
 * must hash to StoredKey. Compared in constant time.
 */
export function scramClientProofMatches(storedKey: Buffer, authMessage: string, proof: Buffer): boolean {
  if (proof.length !== KEY_LENGTH) return false;
  const signature = hmac(storedKey, authMessage);
  const clientKey = Buffer.allocUnsafe(KEY_LENGTH);
  for (let i = 0; i < KEY_LENGTH; i++) clientKey[i] = proof[i] ^ signature[i];
  return timingSafeEqual(sha256(clientKey), storedKey);
}

/** ServerSignature = HMAC(ServerKey, AuthMessage), sent back as `v=`. */
export function scramServerSignature(serverKey: Buffer, authMessage: string): Buffer {
  return hmac(serverKey, authMessage);
}
