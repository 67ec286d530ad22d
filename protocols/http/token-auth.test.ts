// Tests of bearer token matching: the right token finds its client, anything else finds none.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { authenticateBearer, type TokenClient } from './token-auth.js';

const client = (name: string, token: string): TokenClient => ({ name, hash: createHash('sha256').update(token).digest() });
const clients = [client('a', 'token-a-0123456789'), client('b', 'token-b-0123456789')];

describe('authenticateBearer', () => {
  it('finds the client whose token is presented, with any case of the scheme', () => {
    expect(authenticateBearer('Bearer token-b-0123456789', clients)?.name).toBe('b');
    expect(authenticateBearer('bearer  token-a-0123456789 ', clients)?.name).toBe('a');
  });

  it('finds none for a missing, malformed, other-scheme or unknown token', () => {
    for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Basic dG9rZW4tYS0wMTIzNDU2Nzg5', 'token-a-0123456789', 'Bearer token-a-012345678', 'Bearer token-a-0123456789x', 'Bearer token a']) {
      expect(authenticateBearer(header, clients)).toBeUndefined();
    }
  });
});
