// Cleartext password auth, server side, against a stored password or a SCRAM verifier.
import { describe, expect, test } from 'vitest';
import { createScramVerifier } from './scram-verifier.js';
import { verifyCleartext } from './password.js';

describe('verifyCleartext', () => {
  test('against a stored plain password', () => {
    expect(verifyCleartext('s3cret', { password: 's3cret' })).toBe(true);
    expect(verifyCleartext('s3cre', { password: 's3cret' })).toBe(false);
    expect(verifyCleartext('s3crett', { password: 's3cret' })).toBe(false);
    expect(verifyCleartext('', { password: 's3cret' })).toBe(false);
  });

  test('against a SCRAM verifier', () => {
    const verifier = createScramVerifier('s3cret', 1024);
    expect(verifyCleartext('s3cret', { verifier })).toBe(true);
    expect(verifyCleartext('S3cret', { verifier })).toBe(false);
  });

  test('unknown user, an empty credential or a malformed verifier never match', () => {
    expect(verifyCleartext('anything', undefined)).toBe(false);
    expect(verifyCleartext('', undefined)).toBe(false);
    expect(verifyCleartext('anything', {})).toBe(false);
    expect(verifyCleartext('anything', { verifier: 'SCRAM-SHA-256$garbage' })).toBe(false);
  });
});
