// The salt secret's key file in the state directory: made once with mode 0600, read unchanged at
// every later start, refused with a clear reason when damaged.
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { loadSaltSecret, SALT_SECRET_FILE, SaltSecretError } from './salt-secret.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-salt-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('loadSaltSecret', () => {
  test('makes the file once, owner-only, and returns the same secret afterwards', () => {
    const stateDir = join(dir, 'state');
    const first = loadSaltSecret(stateDir);
    expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(join(stateDir, SALT_SECRET_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(loadSaltSecret(stateDir)).toBe(first);
    expect(readdirSync(stateDir)).toEqual([SALT_SECRET_FILE]);
  });

  test('a different state directory gets a different secret', () => {
    expect(loadSaltSecret(join(dir, 'a'))).not.toBe(loadSaltSecret(join(dir, 'b')));
  });

  test('a damaged file is refused, never replaced', () => {
    writeFileSync(join(dir, SALT_SECRET_FILE), 'not a secret\n');
    expect(() => loadSaltSecret(dir)).toThrow(SaltSecretError);
    expect(() => loadSaltSecret(dir)).toThrow(`${join(dir, SALT_SECRET_FILE)} is not a salt secret (expected 43 base64url characters)`);
  });
});
