// md5 authentication, server side: our expected answer is the one pg's client computes.
import { describe, expect, test } from 'vitest';
import { createRequire } from 'node:module';
import { md5Expected, md5Salt, verifyMd5Response } from './md5.js';

const require = createRequire(import.meta.url);
const { postgresMd5PasswordHash } = require('pg/lib/crypto/utils.js') as {
  postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
};

describe('md5', () => {
  test('salts are 4 random bytes', () => {
    const a = md5Salt();
    expect(a.length).toBe(4);
    expect(md5Salt().equals(a) && md5Salt().equals(a)).toBe(false);
  });

  test('md5Expected equals what pg sends for the same user, password and salt', async () => {
    for (const [user, password] of [['alice', 'secret'], ['bob', 'p\u00e4ss w\u00f6rd'], ['x', '']]) {
      const salt = md5Salt();
      expect(md5Expected(user, password, salt)).toBe(await postgresMd5PasswordHash(user, password, salt));
    }
  });

  test('a known answer, computed independently with Python hashlib', () => {
    expect(md5Expected('alice', 'secret', Buffer.from([1, 2, 3, 4]))).toBe('md598a0412b9c31436fc53776e863350083');
  });

  test('verifyMd5Response accepts the pg client answer and refuses others', async () => {
    const salt = md5Salt();
    const answer = await postgresMd5PasswordHash('alice', 'secret', salt);
    expect(verifyMd5Response(answer, 'alice', 'secret', salt)).toBe(true);
    expect(verifyMd5Response(answer, 'alice', 'Secret', salt)).toBe(false);
    expect(verifyMd5Response(answer, 'alicia', 'secret', salt)).toBe(false);
    expect(verifyMd5Response(answer, 'alice', 'secret', md5Salt())).toBe(false);
    expect(verifyMd5Response('', 'alice', 'secret', salt)).toBe(false);
    expect(verifyMd5Response(answer.slice(0, -1), 'alice', 'secret', salt)).toBe(false);
  });

  test('an unknown user (no password) is refused whatever the answer', () => {
    const salt = md5Salt();
    expect(verifyMd5Response(md5Expected('ghost', '', salt), 'ghost', undefined, salt)).toBe(false);
    expect(verifyMd5Response('md5', 'ghost', undefined, salt)).toBe(false);
  });
});
