// Constant-time comparison of secrets (passwords, md5 responses, SCRAM keys) of any length: both
// sides are hashed to a fixed length first so crypto.timingSafeEqual never sees unequal lengths and
// the time taken does not depend on where, or whether, the inputs differ.
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(v: string | Buffer): Buffer {
  return createHash('sha256').update(v).digest();
}

/** True when `a` and `b` hold the same bytes (strings compared as UTF-8). */
export function constantTimeEqual(a: string | Buffer, b: string | Buffer): boolean {
  return timingSafeEqual(digest(a), digest(b));
}
