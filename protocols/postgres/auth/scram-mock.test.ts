// The salts sempipe derives from its salt secret: stable for one secret, binding and user, different
// for another of any of the three, and the mock verifier shaped like the binding's real ones.
import { describe, expect, test } from 'vitest';
import { deriveScramSalt, mockVerifier, scramMockSettings } from './scram-mock.js';
import { createScramVerifier, parseScramVerifier } from './scram-verifier.js';

const secret = Buffer.from('a'.repeat(43));
const verifier = (iterations: number, saltLength: number) => parseScramVerifier(createScramVerifier('pw', iterations, Buffer.alloc(saltLength, 3)))!;

describe('deriveScramSalt', () => {
  test('is a function of secret, binding and user only', () => {
    const salt = deriveScramSalt(secret, 'binding::/a::b', 'ghost');
    expect(salt).toHaveLength(16);
    expect(deriveScramSalt(Buffer.from('a'.repeat(43)), 'binding::/a::b', 'ghost')).toEqual(salt);
    expect(deriveScramSalt(Buffer.from('b'.repeat(43)), 'binding::/a::b', 'ghost')).not.toEqual(salt);
    expect(deriveScramSalt(secret, 'binding::/a::c', 'ghost')).not.toEqual(salt);
    expect(deriveScramSalt(secret, 'binding::/a::b', 'ghost2')).not.toEqual(salt);
    // The separator keeps scope and user apart: ("a", "\0b") is not ("a\0", "b").
    expect(deriveScramSalt(secret, 'x', 'yz')).not.toEqual(deriveScramSalt(secret, 'xy', 'z'));
  });

  test('takes any user name and any salt length a verifier may have', () => {
    expect(deriveScramSalt(secret, 's', 'u'.repeat(5000), 64)).toHaveLength(64);
    expect(deriveScramSalt(secret, 's', 'u', 1)).toHaveLength(1);
  });
});

describe('scramMockSettings and mockVerifier', () => {
  test('an unknown user gets the iteration count and salt length most of the binding\'s users have', () => {
    const settings = scramMockSettings(secret, 'binding::/a::b', [verifier(10_000, 20), verifier(4096, 16), verifier(10_000, 20)]);
    expect(settings).toMatchObject({ iterations: 10_000, saltLength: 20 });
    const mock = mockVerifier(settings, 'ghost');
    expect(mock.iterations).toBe(10_000);
    expect(mock.salt).toEqual(deriveScramSalt(secret, 'binding::/a::b', 'ghost', 20));
    expect(mock.storedKey).toHaveLength(32);
    expect(mock.serverKey).toHaveLength(32);
  });

  test('PostgreSQL\'s defaults for a binding without SCRAM verifiers', () => {
    expect(scramMockSettings(secret, 's', [])).toMatchObject({ iterations: 4096, saltLength: 16 });
  });

  test('the same for every call: one unknown user always sees one salt', () => {
    const settings = scramMockSettings(secret, 'binding::/a::b', []);
    expect(mockVerifier(settings, 'ghost')).toEqual(mockVerifier({ ...settings, secret: Buffer.from(secret) }, 'ghost'));
  });
});
