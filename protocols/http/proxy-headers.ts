// Header rewriting of a reverse proxy (RFC 9110 section 7.6): hop-by-hop headers and the ones the
// client's Connection header names are dropped in both directions; the client's Authorization
// (sempipe's own token) and any header the service's credential sets never go upstream; Via and
// X-Forwarded-For/Proto/Host are added. Host is left out: undici sets it from the upstream URL.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Dropped from requests going upstream, besides the service's injected header names. */
export const REQUEST_STRIP: readonly string[] = [
  'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection',
  'proxy-authorization', 'proxy-authenticate', 'host', 'authorization', 'expect',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'via',
];

const RESPONSE_STRIP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
]);

export const VIA = '1.1 sempipe';

export interface ForwardContext {
  /** Lower-case names dropped from the client's request (REQUEST_STRIP plus injected names). */
  readonly strip: ReadonlySet<string>;
  /** The service's credential: flat [name, value, …]. */
  readonly injected: readonly string[];
  readonly clientIp: string;
  readonly proto: 'http' | 'https';
}

/** Names listed in Connection headers, lower-cased; usually none. */
function connectionTokens(values: readonly string[]): Set<string> {
  const tokens = new Set<string>();
  for (const v of values) for (const t of v.split(',')) tokens.add(t.trim().toLowerCase());
  return tokens;
}

/** The upstream request's headers as a flat [name, value, …] list, from the client's raw headers. */
export function upstreamRequestHeaders(raw: readonly string[], ctx: ForwardContext): string[] {
  const out: string[] = [];
  let named: Set<string> | undefined;
  let xff: string | undefined;
  let via: string | undefined;
  let host = '';
  const connection: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'connection') connection.push(raw[i + 1]!);
  }
  if (connection.length > 0) named = connectionTokens(connection);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') host = value;
    else if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
    else if (lower === 'via') via = via === undefined ? value : `${via}, ${value}`;
    if (ctx.strip.has(lower) || lower.startsWith('proxy-') || named?.has(lower) === true) continue;
    out.push(name, value);
  }
  out.push(...ctx.injected);
  out.push('x-forwarded-for', xff === undefined ? ctx.clientIp : `${xff}, ${ctx.clientIp}`);
  out.push('x-forwarded-proto', ctx.proto);
  if (host !== '') out.push('x-forwarded-host', host);
  out.push('via', via === undefined ? VIA : `${via}, ${VIA}`);
  return out;
}

/** The response headers for the client: hop-by-hop ones dropped, Via added. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const connection = headers.connection;
  const named = connection === undefined ? undefined : connectionTokens(Array.isArray(connection) ? connection : [connection]);
  for (const name in headers) {
    if (RESPONSE_STRIP.has(name) || named?.has(name) === true) continue;
    out[name] = headers[name];
  }
  const via = headers.via;
  out.via = via === undefined ? VIA : `${Array.isArray(via) ? via.join(', ') : via}, ${VIA}`;
  return out;
}
