// The HTTP pipeline's error catalogue: every answer sempipe itself gives an HTTP client (auth,
// policy, limits, upstream failures) as a status and an RFC 9457 `application/problem+json` body
// that names the binding, so a job can tell sempipe's refusals from the service's own errors.
import { STATUS_CODES, type ServerResponse } from 'node:http';

export const PROBLEM_CODES = {
  bad_request: { status: 400, title: 'malformed request' },
  unauthorized: { status: 401, title: 'missing or invalid bearer token' },
  forbidden: { status: 403, title: 'denied by policy' },
  too_many_requests: { status: 429, title: 'rate limit exceeded' },
  payload_too_large: { status: 413, title: 'request body too large' },
  bad_gateway: { status: 502, title: 'upstream unreachable or failed' },
  gateway_timeout: { status: 504, title: 'upstream did not answer in time' },
  service_unavailable: { status: 503, title: 'binding not accepting requests' },
} as const;

export type ProblemCode = keyof typeof PROBLEM_CODES;

export interface Problem {
  code: ProblemCode;
  detail: string;
  /** For policy refusals: the rule and the policy that refused. */
  rule?: string;
  policy?: string;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

function problemBody(binding: string, problem: Problem): string {
  const { status, title } = PROBLEM_CODES[problem.code];
  return JSON.stringify({
    type: `https://sempipe.dev/problems/${problem.code}`,
    title,
    status,
    detail: problem.detail,
    binding,
    ...(problem.rule !== undefined && { rule: problem.rule }),
    ...(problem.policy !== undefined && { policy: problem.policy }),
  });
}

function problemHeaders(binding: string, problem: Problem, body: string, close: boolean): Record<string, string | number> {
  const headers: Record<string, string | number> = {
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (problem.code === 'unauthorized') headers['www-authenticate'] = `Bearer realm="${binding}"`;
  if (close) headers.connection = 'close';
  return headers;
}

/** Writes `problem` as the whole response; the connection is closed afterwards when `close` is set. */
export function sendProblem(res: ServerResponse, binding: string, problem: Problem, close = false): void {
  const body = problemBody(binding, problem);
  res.writeHead(PROBLEM_CODES[problem.code].status, problemHeaders(binding, problem, body, close));
  res.end(body);
}

/** The problem as a complete HTTP/1.1 response, for a socket no ServerResponse owns (a refused upgrade). */
export function problemResponseBytes(binding: string, problem: Problem): string {
  const body = problemBody(binding, problem);
  const status = PROBLEM_CODES[problem.code].status;
  const lines = Object.entries(problemHeaders(binding, problem, body, true)).map(([k, v]) => `${k}: ${v}\r\n`);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${lines.join('')}\r\n${body}`;
}

/** Seconds a client refused for load is asked to wait before it connects again. */
const LOAD_REFUSAL_RETRY_AFTER_S = 1;

/**
 * The answer to a connection the data plane refuses for load (limits.max_pending_auth) before
 * reading anything from it, as PostgreSQL answers 53300: one write, the same for every binding, so
 * it names none. A TLS binding's client cannot read it (it expects a handshake) and sees a close.
 */
export function loadRefusalResponse(): Buffer {
  const status = 503;
  const body = JSON.stringify({
    type: 'https://sempipe.dev/problems/service_unavailable',
    title: 'too many connections waiting to authenticate',
    status,
    detail: 'sempipe refused the connection for load (limits.max_pending_auth); retry later',
  });
  const headers = [
    `content-type: ${PROBLEM_CONTENT_TYPE}`,
    `content-length: ${Buffer.byteLength(body)}`,
    'cache-control: no-store',
    `retry-after: ${LOAD_REFUSAL_RETRY_AFTER_S}`,
    'connection: close',
  ];
  return Buffer.from(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${headers.join('\r\n')}\r\n\r\n${body}`);
}
