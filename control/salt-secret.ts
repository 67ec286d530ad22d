// The installation's salt secret when the config sets no `auth.salt_secret`: a key file in the state
// directory, made once and read at every later start, so that every worker and every restart derive
// the same SCRAM salts (protocols/postgres/auth/scram-mock.ts). Its text can be copied into
// `auth.salt_secret` to give several sempipe instances the same salts.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const SALT_SECRET_FILE = 'salt-secret.key';
/** 32 random bytes as base64url: 43 characters. */
const SECRET_BYTES = 32;
const SECRET_TEXT = /^[A-Za-z0-9_-]{43}$/;

export class SaltSecretError extends Error {
  override readonly name = 'SaltSecretError';
}

/** The secret of `<stateDir>/salt-secret.key`, made (mode 0600) when there is none yet. */
export function loadSaltSecret(stateDir: string): string {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, SALT_SECRET_FILE);
  try {
    return readSecret(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Written completely under a temporary name, then linked into place: link() fails when the file
  // already exists, so two processes starting at once agree on one secret and no reader ever sees
  // a half-written one.
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${randomBytes(SECRET_BYTES).toString('base64url')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  // The new name must survive a crash too, or the next start would make another secret.
  const dir = openSync(stateDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return readSecret(file);
}

function readSecret(file: string): string {
  const text = readFileSync(file, 'utf8').trim();
  if (!SECRET_TEXT.test(text)) {
    throw new SaltSecretError(`${file} is not a salt secret (expected 43 base64url characters); restore it, or remove it to make a new one (unknown users' salts and those of plain-password clients change then)`);
  }
  return text;
}
