// mysql_native_password (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html):
// the client sends SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))). The server keeps only
// SHA1(SHA1(password)) and checks that the SHA1 of the recovered SHA1(password) matches it.
import { createHash, timingSafeEqual } from 'node:crypto';

export const NATIVE_PASSWORD = 'mysql_native_password';

const sha1 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** What the server stores: SHA1(SHA1(password)). */
export function nativeStoredHash(password: string): Buffer {
  return sha1(sha1(Buffer.from(password)));
}

/** The client's answer to `scramble` (empty for an empty password). */
export function nativeScramble(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const stage1 = sha1(Buffer.from(password));
  const mask = sha1(scramble, sha1(stage1));
  for (let i = 0; i < stage1.length; i++) stage1[i]! ^= mask[i]!;
  return stage1;
}

/** Whether `response` proves knowledge of the password behind `stored`; constant time for any input. */
export function verifyNative(stored: Buffer, scramble: Buffer, response: Buffer): boolean {
  const mask = sha1(scramble, stored);
  const candidate = Buffer.alloc(20);
  const n = Math.min(20, response.length);
  for (let i = 0; i < 20; i++) candidate[i] = (i < n ? response[i]! : 0) ^ mask[i]!;
  return timingSafeEqual(sha1(candidate), stored) && response.length === 20;
}
