// The SCRAM parameters sempipe makes up rather than stores: the salt it derives for a user from the
// installation's salt secret, and the mock verifier an unknown user is answered with. An unknown
// user must look like a real one from outside: the same salt at every attempt, on every worker and
// after a restart (the secret is shared and durable), and the iteration count and salt length of
// the binding's real users. A plain password from the config file gets its salt the same way, so a
// real user's salt does not change at a restart or a reload either, and a user added to or removed
// from the file keeps the salt it was shown before.
import { createHmac, hkdfSync } from 'node:crypto';
import { DEFAULT_SALT_LENGTH, DEFAULT_SCRAM_ITERATIONS, type ScramVerifier } from './scram-verifier.js';

export interface ScramMockSettings {
  /** The salt secret (`auth.salt_secret`, or the key file in the state directory). */
  secret: Buffer;
  /** The binding's FQN: one name gets different salts on different bindings, as real users do. */
  scope: string;
  /** What the binding's real users have, so the mock verifier looks like theirs. */
  iterations: number;
  saltLength: number;
}

/** HKDF-SHA-256 cannot produce more than 255 blocks of 32 bytes. */
const MAX_DERIVED_SALT = 255 * 32;

/** A per-user key: HMAC rather than HKDF's `info`, which is limited to 1024 bytes and a user name is not. */
function userSeed(secret: Buffer, scope: string, user: string): Buffer {
  return createHmac('sha256', secret).update(`${scope}\0${user}`).digest();
}

/** The salt of `user` on the binding `scope`: a stable function of the secret, never stored. */
export function deriveScramSalt(secret: Buffer, scope: string, user: string, length = DEFAULT_SALT_LENGTH): Buffer {
  return Buffer.from(hkdfSync('sha256', userSeed(secret, scope, user), Buffer.alloc(0), 'sempipe scram salt', Math.min(length, MAX_DERIVED_SALT)));
}

/** The most common value, ties going to the first seen; `fallback` for an empty list. */
function mostCommon(values: readonly number[], fallback: number): number {
  const counts = new Map<number, number>();
  let best = fallback;
  let bestCount = 0;
  for (const v of values) {
    const n = (counts.get(v) ?? 0) + 1;
    counts.set(v, n);
    if (n > bestCount) {
      best = v;
      bestCount = n;
    }
  }
  return best;
}

/** Mock settings shaped like the binding's real verifiers (PostgreSQL's defaults when it has none). */
export function scramMockSettings(secret: Buffer, scope: string, verifiers: readonly ScramVerifier[]): ScramMockSettings {
  return {
    secret,
    scope,
    iterations: mostCommon(verifiers.map((v) => v.iterations), DEFAULT_SCRAM_ITERATIONS),
    saltLength: mostCommon(verifiers.map((v) => v.salt.length), DEFAULT_SALT_LENGTH),
  };
}

/**
 * The verifier an unknown user is answered with. Its keys are as unguessable as a real one's, so
 * the exchange runs to its end and fails at the proof like a wrong password does.
 */
export function mockVerifier(settings: ScramMockSettings, user: string): ScramVerifier {
  const seed = userSeed(settings.secret, settings.scope, user);
  return {
    iterations: settings.iterations,
    salt: deriveScramSalt(settings.secret, settings.scope, user, settings.saltLength),
    storedKey: createHmac('sha256', seed).update('StoredKey').digest(),
    serverKey: createHmac('sha256', seed).update('ServerKey').digest(),
  };
}
