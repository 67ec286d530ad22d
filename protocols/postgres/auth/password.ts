// Server side of cleartext `password` authentication: the password a client sent, checked in
// constant time against what sempipe stores for the user, a plain password or a SCRAM verifier.
import { randomBytes } from 'node:crypto';
import { constantTimeEqual } from './constant-time.js';
import { saslprep } from './saslprep.js';
import { createScramVerifier, parseScramVerifier, verifyPasswordAgainstScram } from './scram-verifier.js';

export interface StoredCredential {
  password?: string;
  /** SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey> */
  verifier?: string;
}

// Checked against for unknown users so they cost the same PBKDF2 work as known ones.
const UNKNOWN_USER_VERIFIER = parseScramVerifier(createScramVerifier(randomBytes(16).toString('hex')))!;

/**
 * Passwords are compared after SASLprep, as PostgreSQL compares a cleartext password with the SCRAM
 * verifier it stores: a spelling that SCRAM accepts is accepted here too.
 */
export function verifyCleartext(given: string, cred: StoredCredential | undefined): boolean {
  if (cred?.password !== undefined) return constantTimeEqual(saslprep(given), saslprep(cred.password));
  const verifier = cred?.verifier !== undefined ? parseScramVerifier(cred.verifier) : undefined;
  const ok = verifyPasswordAgainstScram(given, verifier ?? UNKNOWN_USER_VERIFIER);
  return ok && verifier !== undefined;
}
