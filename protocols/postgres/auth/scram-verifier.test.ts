// Verifier format, key arithmetic (RFC 7677 test vector), SASLprep and cleartext checks against it.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { createScramVerifier, parseScramVerifier, scramClientProofMatches, scramKeys, scramServerSignature, verifyPasswordAgainstScram } from './scram-verifier.js';
import { saslprep } from './saslprep.js';

// RFC 7677 section 3: user "user", password "pencil".
const RFC = {
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  clientFirstBare: 'n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  finalWithoutProof: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  proof: 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverSignature: '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const rfcAuthMessage = `${RFC.clientFirstBare},${RFC.serverFirst},${RFC.finalWithoutProof}`;

describe('RFC 7677 test vector', () => {
  const verifier = parseScramVerifier(createScramVerifier('pencil', 4096, RFC.salt))!;

  test('the client proof of the RFC matches the verifier made from "pencil"', () => {
    expect(scramClientProofMatches(verifier.storedKey, rfcAuthMessage, Buffer.from(RFC.proof, 'base64'))).toBe(true);
  });

  test('the server signature is the one of the RFC', () => {
    expect(scramServerSignature(verifier.serverKey, rfcAuthMessage).toString('base64')).toBe(RFC.serverSignature);
  });

  test('a proof with one bit flipped, or a verifier of another password, does not match', () => {
    const proof = Buffer.from(RFC.proof, 'base64');
    proof[7] ^= 1;
    expect(scramClientProofMatches(verifier.storedKey, rfcAuthMessage, proof)).toBe(false);
    const other = parseScramVerifier(createScramVerifier('pencil2', 4096, RFC.salt))!;
    expect(scramClientProofMatches(other.storedKey, rfcAuthMessage, Buffer.from(RFC.proof, 'base64'))).toBe(false);
  });
});

describe('verifier format', () => {
  test('createScramVerifier writes PostgreSQL format and parseScramVerifier reads it back', () => {
    const salt = Buffer.from('0123456789abcdef');
    const text = createScramVerifier('secret', 4096, salt);
    expect(text).toMatch(/^SCRAM-SHA-256\$4096:MDEyMzQ1Njc4OWFiY2RlZg==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    const v = parseScramVerifier(text)!;
    expect(v.iterations).toBe(4096);
    expect(v.salt.equals(salt)).toBe(true);
    expect(v).toEqual({ iterations: 4096, salt, ...scramKeys('secret', salt, 4096) });
  });

  test('a fresh random salt of 16 bytes by default, so two verifiers of one password differ', () => {
    const a = parseScramVerifier(createScramVerifier('same'))!;
    const b = parseScramVerifier(createScramVerifier('same'))!;
    expect(a.salt.length).toBe(16);
    expect(a.salt.equals(b.salt)).toBe(false);
  });

  test.each([
    '',
    'md5abcdef',
    'SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA',
    'SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA',
    'SCRAM-SHA-256$4096:not base64!$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=',
    'SCRAM-SHA-256$4096:$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=',
    'SCRAM-SHA-256$99999999999:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=',
    'SCRAM-SHA-1$4096:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=',
  ])('parseScramVerifier refuses %j', (s) => {
    expect(parseScramVerifier(s)).toBeUndefined();
  });

  test('parseScramVerifier never throws on arbitrary text', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => {
      const v = parseScramVerifier(s);
      return v === undefined || (v.storedKey.length === 32 && v.serverKey.length === 32 && v.iterations >= 1);
    }));
  });

  test('createScramVerifier refuses nonsense iteration counts', () => {
    expect(() => createScramVerifier('x', 0)).toThrow(RangeError);
    expect(() => createScramVerifier('x', 1.5)).toThrow(RangeError);
  });
});

describe('cleartext password against a verifier', () => {
  const verifier = parseScramVerifier(createScramVerifier('right one', 1024))!;
  test('the right password matches, a wrong one or a prefix does not', () => {
    expect(verifyPasswordAgainstScram('right one', verifier)).toBe(true);
    expect(verifyPasswordAgainstScram('right on', verifier)).toBe(false);
    expect(verifyPasswordAgainstScram('wrong', verifier)).toBe(false);
    expect(verifyPasswordAgainstScram('', verifier)).toBe(false);
  });

  test('SASLprep: a password typed with a no-break space or a compatibility form matches', () => {
    const v = parseScramVerifier(createScramVerifier('I\u00a0love\u2168', 1024))!;
    expect(verifyPasswordAgainstScram('I loveIX', v)).toBe(true);
  });
});

describe('saslprep', () => {
  test.each([
    ['plain ascii', 'plain ascii'],
    ['a\u00a0b', 'a b'],
    ['soft\u00adhyphen', 'softhyphen'],
    ['\u2168', 'IX'],
    ['\ufb01', 'fi'],
    ['caf\u0065\u0301', 'caf\u00e9'],
    // Prohibited output (a control character, private use): PostgreSQL falls back to the raw string.
    ['\u00e9\u0007', '\u00e9\u0007'],
    ['\u00e9\ue000', '\u00e9\ue000'],
    // Mapped to nothing entirely: empty output, raw string used.
    ['\u00ad', '\u00ad'],
    // ASCII is never touched, not even its control characters.
    ['tab\there', 'tab\there'],
  ])('%j -> %j', (input, output) => {
    expect(saslprep(input)).toBe(output);
  });
});
