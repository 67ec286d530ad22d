// The HTTP side of `sempipe ctl`: one JSON request to the control API with the bearer token, and
// the two ways it can fail for an operator: the API answered with an error (its JSON body
// `{error, message, path?}` and the status), or the admin listener could not be reached at all.
import { request } from 'undici';

export interface AdminClientOptions {
  /** Base URL of the admin listener, e.g. http://127.0.0.1:9187. */
  readonly url: string;
  readonly token?: string;
}

/** The API refused the request; `message` is the API's own, `path` the input field it names. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly path?: string,
    /** The resource of a multi-resource command (e.g. one policy of a file) the request was for. */
    readonly subject?: string,
  ) {
    super(message);
  }
}

/** No HTTP answer: connection refused, unknown host, reset, timeout. */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError';
}

export interface ApiResponse {
  readonly status: number;
  /** The parsed JSON body; undefined for an empty body (204). */
  readonly body: unknown;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface AdminClient {
  call(method: HttpMethod, path: string, body?: unknown): Promise<ApiResponse>;
}

const TIMEOUT_MS = 30_000;

export function createAdminClient(opts: AdminClientOptions): AdminClient {
  const base = opts.url.replace(/\/+$/, '');
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  return {
    async call(method, path, body) {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      let res;
      try {
        res = await request(`${base}${path}`, {
          method,
          headers: payload === undefined ? headers : { ...headers, 'content-type': 'application/json' },
          body: payload,
          headersTimeout: TIMEOUT_MS,
          bodyTimeout: TIMEOUT_MS,
        });
      } catch (err) {
        throw new UnreachableError(unreachableMessage(opts.url, err));
      }
      const text = await res.body.text();
      const parsed = parseBody(text);
      if (res.statusCode >= 400) throw apiError(res.statusCode, parsed, text);
      return { status: res.statusCode, body: parsed };
    },
  };
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function apiError(status: number, body: unknown, text: string): ApiError {
  if (typeof body === 'object' && body !== null) {
    const b = body as { error?: unknown; message?: unknown; path?: unknown };
    const message = typeof b.message === 'string' ? b.message : typeof b.error === 'string' ? b.error : text;
    return new ApiError(message, status, typeof b.path === 'string' && b.path !== '' ? b.path : undefined);
  }
  return new ApiError(text.trim() === '' ? 'empty error response' : text.trim(), status);
}

function unreachableMessage(url: string, err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const why =
    code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOTFOUND'
        ? 'unknown host'
        : err instanceof Error
          ? err.message
          : String(err);
  return `cannot reach the admin API at ${url}: ${why} (is sempipe running? set --admin URL or SEMPIPE_ADMIN_URL)`;
}
