// Bearer token authentication of HTTP clients: the token from `Authorization: Bearer …` is hashed
// with SHA-256 and compared with every client's stored hash in constant time, so neither the
// comparison nor the number of clients tried reveals how much of a token was right.
import { createHash, timingSafeEqual } from 'node:crypto';

export interface TokenClient {
  readonly name: string;
  /** SHA-256 of the client's token. */
  readonly hash: Buffer;
}

const BEARER = /^Bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i;

/** The client whose token `authorization` carries, or undefined (missing, malformed or unknown). */
export function authenticateBearer(authorization: string | undefined, clients: readonly TokenClient[]): TokenClient | undefined {
  if (authorization === undefined) return undefined;
  const m = BEARER.exec(authorization);
  if (m === null) return undefined;
  const hash = createHash('sha256').update(m[1]!).digest();
  let found: TokenClient | undefined;
  // Every client is compared, whichever matches, so the time does not depend on the match's position.
  for (const c of clients) {
    if (timingSafeEqual(hash, c.hash) && found === undefined) found = c;
  }
  return found;
}
