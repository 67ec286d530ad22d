// caching_sha2_password (https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html):
// fast path: the client sends SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble) and
// the server checks it against SHA256(SHA256(password)). Full authentication: after the server's
// "perform full authentication" (0x04) the client sends the password in clear over TLS, or over
// plain TCP encrypted with the server's RSA public key (RSA-OAEP of password+NUL XOR scramble),
// which the client asks for with 0x02.
import { createHash, generateKeyPairSync, privateDecrypt, publicEncrypt, constants, timingSafeEqual, type KeyObject } from 'node:crypto';

export const CACHING_SHA2 = 'caching_sha2_password';
/** AuthMoreData bytes of the exchange. */
export const FAST_AUTH_OK = 0x03;
export const PERFORM_FULL_AUTH = 0x04;
export const REQUEST_PUBLIC_KEY = 0x02;

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** What sempipe keeps for a client: SHA256(SHA256(password)). */
export function sha2StoredHash(password: string): Buffer {
  return sha256(sha256(Buffer.from(password)));
}

/** The client's fast-path answer to `scramble` (empty for an empty password). */
export function sha2Scramble(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const stage1 = sha256(Buffer.from(password));
  const mask = sha256(sha256(stage1), scramble);
  for (let i = 0; i < stage1.length; i++) stage1[i]! ^= mask[i]!;
  return stage1;
}

/** Fast path: whether `response` proves the password behind `stored`; constant time for any input. */
export function verifySha2Scramble(stored: Buffer, scramble: Buffer, response: Buffer): boolean {
  const mask = sha256(stored, scramble);
  const candidate = Buffer.alloc(32);
  const n = Math.min(32, response.length);
  for (let i = 0; i < 32; i++) candidate[i] = (i < n ? response[i]! : 0) ^ mask[i]!;
  return timingSafeEqual(sha256(candidate), stored) && response.length === 32;
}

/** Full authentication: whether the clear password matches `stored`. */
export function verifySha2Password(stored: Buffer, password: Buffer): boolean {
  return timingSafeEqual(sha256(sha256(password)), stored);
}

/** The password+NUL XOR the scramble (repeated), as the RSA path encrypts it. */
function xorWithScramble(password: Buffer, scramble: Buffer): Buffer {
  const out = Buffer.concat([password, Buffer.from([0])]);
  for (let i = 0; i < out.length; i++) out[i]! ^= scramble[i % scramble.length]!;
  return out;
}

/** Client side of the RSA path: the encrypted password for the server's PEM public key. */
export function rsaEncryptPassword(password: string, scramble: Buffer, publicKeyPem: string): Buffer {
  return publicEncrypt({ key: publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING }, xorWithScramble(Buffer.from(password), scramble));
}

/** Server side of the RSA path: the clear password, or undefined when it does not decrypt. */
export function rsaDecryptPassword(privateKey: KeyObject, scramble: Buffer, encrypted: Buffer): Buffer | undefined {
  let plain: Buffer;
  try {
    plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, encrypted);
  } catch {
    return undefined;
  }
  for (let i = 0; i < plain.length; i++) plain[i]! ^= scramble[i % scramble.length]!;
  const nul = plain.indexOf(0);
  return nul < 0 ? plain : plain.subarray(0, nul);
}

export interface RsaKeyPair {
  privateKey: KeyObject;
  publicKeyPem: string;
}

let processKeys: RsaKeyPair | undefined;

/** This process's RSA key pair for the full-authentication path, made on first use. */
export function rsaKeys(): RsaKeyPair {
  if (processKeys === undefined) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    processKeys = { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
  }
  return processKeys;
}
