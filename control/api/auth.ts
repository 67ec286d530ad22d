// Who may use the control API: a bearer token from `admin.token` or SEMPIPE_ADMIN_TOKEN, compared
// in constant time; without a token the API is served on a loopback admin address only, and the
// primary refuses to start otherwise (assertApiExposure).
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { HostPort } from '../config.js';

export type BearerCheck = 'ok' | 'missing' | 'wrong';

/** The configured token: the file's `admin.token`, else the environment's SEMPIPE_ADMIN_TOKEN. */
export function resolveAdminToken(admin: { token?: string }, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const token = admin.token ?? env.SEMPIPE_ADMIN_TOKEN;
  return token === undefined || token === '' ? undefined : token;
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x.y.z and "localhost". */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice('::ffff:'.length) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

export class ApiExposureError extends Error {
  override readonly name = 'ApiExposureError';
}

/** Throws when the admin listener is not loopback-only and no token protects the API. */
export function assertApiExposure(listen: HostPort, token: string | undefined): void {
  if (token === undefined && !isLoopback(listen.host)) {
    throw new ApiExposureError(
      `the control API would be served on ${listen.host} without a token: set admin.token (or SEMPIPE_ADMIN_TOKEN) or listen on a loopback address such as 127.0.0.1`,
    );
  }
}

const digest = (v: string): Buffer => createHash('sha256').update(v, 'utf8').digest();

/** Checks an Authorization header against the token; both sides are hashed so lengths never leak. */
export function checkBearer(header: string | undefined, token: string): BearerCheck {
  const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (m === null) return 'missing';
  return timingSafeEqual(digest(m[1]!), digest(token)) ? 'ok' : 'wrong';
}
