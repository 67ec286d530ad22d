// Server side of PostgreSQL's md5 password authentication (AuthenticationMD5Password): the salt we
// send and the check of the client's answer, 'md5' + md5(md5(password + user) + salt) in hex.
// Synchronous node:crypto here because pg's postgresMd5PasswordHash (used upstream) is async.
// https://www.postgresql.org/docs/current/auth-password.html
import { createHash, randomBytes } from 'node:crypto';
import { constantTimeEqual } from './constant-time.js';

/** A fresh 4-byte salt for AuthenticationMD5Password. */
export function md5Salt(): Buffer {
  return randomBytes(4);
}

/** What a client that knows `password` answers to `salt`. */
export function md5Expected(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user, 'utf8').digest('hex');
  return 'md5' + createHash('md5').update(inner, 'utf8').update(salt).digest('hex');
}

/**
 * Checks a PasswordMessage answering an md5 request, in constant time. `password` undefined means an
 * unknown user: the same work is done against a random password and the answer is false.
 */
export function verifyMd5Response(response: string, user: string, password: string | undefined, salt: Buffer): boolean {
  const expected = md5Expected(user, password ?? randomBytes(16).toString('hex'), salt);
  return constantTimeEqual(response, expected) && password !== undefined;
}
