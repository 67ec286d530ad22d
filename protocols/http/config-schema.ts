// The HTTP protocol's part of sempipe.yaml: the keys of a `protocol: http` service (`upstream.url`,
// the credential injected upstream, `ca`, timeouts) and of a binding with `auth: bearer` (`clients`
// with a token or its SHA-256, `tls`, request limits), and their normalized form. control/ composes
// these into the config's `protocol:` unions (a binding's `protocol` is filled in from its service)
// and hands in its shared value parsers (FQNs, listen lists, durations, sizes), so this file never
// imports control/.
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** A TCP address or a Unix socket file, as control/config-schema.ts parses `listen:`. */
export type ListenAddress = { host: string; port: number } | { path: string };

/** The value parsers of control/config-schema.ts this shape is built from. */
export interface ConfigPrimitives {
  serviceFqn: z.ZodType<string, string>;
  bindingFqn: z.ZodType<string, string>;
  /** A binding's listen addresses (TCP and `unix:PATH`), as PostgreSQL and MySQL bindings take them. */
  listen: z.ZodType<ListenAddress[], unknown>;
  unixSocketMode: z.ZodType<number, unknown>;
  unixSocketGroup: z.ZodType<string, unknown>;
  nonEmpty: z.ZodType<string, string>;
  duration(minMs: number): z.ZodType<number, string | number>;
  size: z.ZodType<number, string | number>;
}

/** An RFC 9110 field name (token). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value: visible characters, spaces and tabs; no CR, LF or NUL that could split a header. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** Headers sempipe sets or removes itself; a service cannot inject them. */
const RESERVED_HEADERS = new Set([
  'host', 'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length',
  'proxy-authorization', 'proxy-connection', 'via', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded',
]);

export function createHttpConfigSchemas(p: ConfigPrimitives) {
  const url = z.string().transform((v, ctx) => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected an http:// or https:// URL, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    const problem =
      u.protocol !== 'http:' && u.protocol !== 'https:' ? 'the URL must start with http:// or https://'
      : u.username !== '' || u.password !== '' ? 'the URL must not carry credentials; use headers:, basic: or bearer:'
      : u.search !== '' || u.hash !== '' ? 'the URL must not have a query or fragment'
      : undefined;
    if (problem !== undefined) {
      ctx.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }
    return u;
  });

  const headers = z.record(z.string(), z.string()).superRefine((h, ctx) => {
    for (const [name, value] of Object.entries(h)) {
      if (!HEADER_NAME.test(name)) ctx.addIssue({ code: 'custom', path: [name], message: `"${name}" is not a valid header name` });
      else if (RESERVED_HEADERS.has(name.toLowerCase())) ctx.addIssue({ code: 'custom', path: [name], message: `"${name}" is set by sempipe itself and cannot be injected` });
      // The value may be a secret: the reason never quotes it.
      if (!HEADER_VALUE.test(value)) ctx.addIssue({ code: 'custom', path: [name], message: 'the header value must not contain line breaks or control characters' });
    }
  });

  const upstream = z
    .strictObject({
      url,
      headers: headers.default({}),
      basic: z.strictObject({ user: p.nonEmpty, password: z.string() }).optional(),
      bearer: p.nonEmpty.optional(),
      ca: p.nonEmpty.optional(),
      /** Longest wait for the response headers before 504. */
      timeout: p.duration(1).default(30_000),
      /** Longest silence inside a response body before the exchange is cut. */
      body_timeout: p.duration(1).default(30_000),
      /** Idle keep-alive connections per worker kept to the service. */
      connections: z.number().int().min(1).max(10_000).default(128),
    })
    .superRefine((u, ctx) => {
      if (u.basic !== undefined && u.bearer !== undefined) ctx.addIssue({ code: 'custom', path: ['bearer'], message: 'use one of basic: or bearer:, not both' });
      const injectsAuthorization = Object.keys(u.headers).some((n) => n.toLowerCase() === 'authorization');
      if (injectsAuthorization && (u.basic !== undefined || u.bearer !== undefined)) {
        ctx.addIssue({ code: 'custom', path: ['headers'], message: 'headers: sets Authorization and so does basic:/bearer:; keep one' });
      }
      if (u.ca !== undefined && u.url.protocol !== 'https:') ctx.addIssue({ code: 'custom', path: ['ca'], message: 'ca: applies to https:// upstreams only' });
    });

  const service = z.strictObject({
    fqn: p.serviceFqn,
    protocol: z.literal('http'),
    upstream,
  });

  const client = z
    .strictObject({
      /** Names the client in the audit log and the session list (default client-<n>). */
      name: p.nonEmpty.optional(),
      token: z.string().min(16, 'a token must have at least 16 characters').optional(),
      token_sha256: z.string().optional(),
    })
    .superRefine((c, ctx) => {
      if ((c.token === undefined) === (c.token_sha256 === undefined)) ctx.addIssue({ code: 'custom', message: 'a client needs exactly one of token or token_sha256' });
      if (c.token_sha256 !== undefined && !SHA256_HEX.test(c.token_sha256)) {
        ctx.addIssue({ code: 'custom', path: ['token_sha256'], message: 'expected 64 lower-case hex digits (the SHA-256 of the token)' });
      }
    });

  const binding = z
    .strictObject({
      fqn: p.bindingFqn,
      /** Filled in from the service when absent; written out it must match the service's. */
      protocol: z.literal('http'),
      service: p.serviceFqn,
      listen: p.listen,
      unix_socket_mode: p.unixSocketMode.optional(),
      unix_socket_group: p.unixSocketGroup.optional(),
      auth: z.literal('bearer').default('bearer'),
      clients: z.array(client).min(1, 'a binding needs at least one client'),
      tls: z.strictObject({ cert: p.nonEmpty, key: p.nonEmpty }).optional(),
      /** Largest request body; a larger one is answered 413. Absent: no limit. */
      max_body_size: p.size.optional(),
      /** Time a client has to send a request's headers (slowloris). */
      header_timeout: p.duration(1).default(10_000),
      /** A client connection with no request for this long is closed. */
      idle_timeout: p.duration(1).default(60_000),
    })
    .superRefine((b, ctx) => {
      const names = new Set<string>();
      const hashes = new Set<string>();
      b.clients.forEach((c, i) => {
        const name = c.name ?? `client-${i + 1}`;
        if (names.has(name)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'name'], message: `duplicate client name "${name}"` });
        names.add(name);
        const hash = c.token !== undefined ? sha256Hex(c.token) : c.token_sha256;
        if (hash !== undefined && hashes.has(hash)) ctx.addIssue({ code: 'custom', path: ['clients', i], message: 'two clients have the same token' });
        if (hash !== undefined) hashes.add(hash);
      });
    });

  return { service, binding };
}

type Schemas = ReturnType<typeof createHttpConfigSchemas>;
export type RawHttpService = z.output<Schemas['service']>;
export type RawHttpBinding = z.output<Schemas['binding']>;

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A `protocol: http` service after loading: paths absolute, durations in ms. */
export interface HttpServiceConfig {
  fqn: string;
  protocol: 'http';
  upstream: {
    /** The upstream base URL as written (origin plus an optional path prefix). */
    url: string;
    /** Headers injected into every upstream request (the service's credential), names as written. */
    headers: Record<string, string>;
    basic?: { user: string; password: string };
    bearer?: string;
    /** Absolute path of the CA file to trust for an https upstream. */
    ca?: string;
    timeoutMs: number;
    bodyTimeoutMs: number;
    connections: number;
  };
}

/** A client of a bearer binding; only the token's SHA-256 is kept. */
export interface HttpClientCredential {
  name: string;
  tokenSha256: string;
}

export interface HttpBindingConfig {
  protocol: 'http';
  fqn: string;
  service: string;
  /** TCP addresses and Unix socket files (absolute paths); at least one. */
  listen: ListenAddress[];
  /** Mode and group of the binding's Unix socket files; present when it has one. */
  unixSocket?: { mode: number; group?: string };
  auth: 'bearer';
  clients: HttpClientCredential[];
  /** Absolute paths. */
  tls?: { cert: string; key: string };
  maxBodySize?: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
}

export function normalizeHttpService(s: RawHttpService, resolvePath: (p: string) => string): HttpServiceConfig {
  const u = s.upstream;
  return {
    fqn: s.fqn,
    protocol: 'http',
    upstream: {
      url: u.url.href,
      headers: u.headers,
      ...(u.basic !== undefined && { basic: u.basic }),
      ...(u.bearer !== undefined && { bearer: u.bearer }),
      ...(u.ca !== undefined && { ca: resolvePath(u.ca) }),
      timeoutMs: u.timeout,
      bodyTimeoutMs: u.body_timeout,
      connections: u.connections,
    },
  };
}

/** `listen`: the binding's addresses as control/config.ts resolves them for every protocol. */
export function normalizeHttpBinding(
  b: RawHttpBinding,
  listen: Pick<HttpBindingConfig, 'listen' | 'unixSocket'>,
  resolvePath: (p: string) => string,
): HttpBindingConfig {
  return {
    protocol: 'http',
    fqn: b.fqn,
    service: b.service,
    ...listen,
    auth: 'bearer',
    clients: b.clients.map((c, i) => ({ name: c.name ?? `client-${i + 1}`, tokenSha256: c.token !== undefined ? sha256Hex(c.token) : c.token_sha256! })),
    ...(b.tls !== undefined && { tls: { cert: resolvePath(b.tls.cert), key: resolvePath(b.tls.key) } }),
    ...(b.max_body_size !== undefined && { maxBodySize: b.max_body_size }),
    headerTimeoutMs: b.header_timeout,
    idleTimeoutMs: b.idle_timeout,
  };
}
