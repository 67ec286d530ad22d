// What one HTTP binding needs per request, prepared once per config (re)load: the clients' token
// hashes, the TLS context of the listener, and the upstream: a shared undici Pool per service
// (keep-alive connections reused by every binding and session of the worker), the base path, the
// service's injected credential and the headers that are therefore never taken from a client.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import { Pool } from 'undici';
import type { StageFactory } from '../../proxy/stage.js';
import type { HttpBindingConfig, HttpServiceConfig } from './config-schema.js';
import { REQUEST_STRIP } from './proxy-headers.js';
import type { TokenClient } from './token-auth.js';

export interface HttpUpstream {
  readonly pool: Pool;
  /** Identifies the pool among the worker's pools (retainHttpPools). */
  readonly poolKey: string;
  /** Path prefix of the upstream URL without its trailing slash ('' for the root). */
  readonly basePath: string;
  /** The service's credential as flat [name, value, …]. */
  readonly injected: readonly string[];
  /** Lower-case request header names never forwarded from a client. */
  readonly strip: ReadonlySet<string>;
}

export interface HttpBindingRuntime {
  readonly fqn: string;
  readonly serviceFqn: string;
  readonly clients: readonly TokenClient[];
  readonly tls?: SecureContext;
  readonly upstream: HttpUpstream;
  readonly maxBodySize?: number;
  readonly headerTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly stages: readonly StageFactory[];
}

/** Pools by what they connect to and how; a reload that changes none of it keeps the pool. */
const pools = new Map<string, Pool>();

function poolFor(service: HttpServiceConfig, connectTimeoutMs: number): { key: string; pool: Pool } {
  const u = service.upstream;
  const url = new URL(u.url);
  const ca = u.ca === undefined ? undefined : readFileSync(u.ca, 'utf8');
  const key = JSON.stringify([url.origin, ca, u.connections, u.timeoutMs, u.bodyTimeoutMs, connectTimeoutMs]);
  let pool = pools.get(key);
  if (pool === undefined) {
    pool = new Pool(url.origin, {
      connections: u.connections,
      headersTimeout: u.timeoutMs,
      bodyTimeout: u.bodyTimeoutMs,
      connect: { timeout: connectTimeoutMs, ...(ca !== undefined && { ca }) },
    });
    pools.set(key, pool);
  }
  return { key, pool };
}

function injectedHeaders(u: HttpServiceConfig['upstream']): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(u.headers)) out.push(name, value);
  if (u.basic !== undefined) out.push('authorization', `Basic ${Buffer.from(`${u.basic.user}:${u.basic.password}`).toString('base64')}`);
  if (u.bearer !== undefined) out.push('authorization', `Bearer ${u.bearer}`);
  return out;
}

export function createHttpBindingRuntime(
  binding: HttpBindingConfig,
  service: HttpServiceConfig,
  connectTimeoutMs: number,
  stages: readonly StageFactory[],
): HttpBindingRuntime {
  const { key, pool } = poolFor(service, connectTimeoutMs);
  const injected = injectedHeaders(service.upstream);
  const strip = new Set(REQUEST_STRIP);
  for (let i = 0; i < injected.length; i += 2) strip.add(injected[i]!.toLowerCase());
  const path = new URL(service.upstream.url).pathname;
  return {
    fqn: binding.fqn,
    serviceFqn: service.fqn,
    clients: binding.clients.map((c) => ({ name: c.name, hash: Buffer.from(c.tokenSha256, 'hex') })),
    ...(binding.tls !== undefined && { tls: createSecureContext({ cert: readFileSync(binding.tls.cert), key: readFileSync(binding.tls.key) }) }),
    upstream: { pool, poolKey: key, basePath: path === '/' ? '' : path.replace(/\/$/, ''), injected, strip },
    ...(binding.maxBodySize !== undefined && { maxBodySize: binding.maxBodySize }),
    headerTimeoutMs: binding.headerTimeoutMs,
    idleTimeoutMs: binding.idleTimeoutMs,
    stages,
  };
}

/** Closes the pools no runtime of the applied bindings uses any more (their requests finish first). */
export function retainHttpPools(runtimes: readonly HttpBindingRuntime[]): void {
  const used = new Set(runtimes.map((r) => r.upstream.poolKey));
  for (const [key, pool] of pools) {
    if (used.has(key)) continue;
    pools.delete(key);
    void pool.close().catch(() => {});
  }
}
