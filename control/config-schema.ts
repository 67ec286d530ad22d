// The shape of sempipe.yaml as one zod schema: key names (the file's public interface), types,
// defaults, and the checks that concern a single object. Checks across resources (service
// references, listener conflicts, duplicate FQNs) and file-system checks live in config.ts.
// To add a top-level key (e.g. `policies:`, `state_dir:`), add it to `configSchema` here and map it
// in config.ts's `normalize`.
// The host:port parser and the SCRAM verifier check are hand-written: each is one regular
// expression, and no library validates PostgreSQL's stored-verifier format.
import { z } from 'zod';
import { FqnError, parseFqn, parseRealm, type FqnType } from './fqn.js';
import { policySchema } from './policy/policy-schema.js';
import { createHttpConfigSchemas } from '../protocols/http/config-schema.js';
import { parseDuration, parseSize } from './units.js';

export const UPSTREAM_TLS_MODES = ['disable', 'prefer', 'require', 'verify-full'] as const;
export const CLIENT_AUTH_METHODS = ['scram-sha-256', 'md5', 'password'] as const;

export interface HostPort {
  host: string;
  port: number;
}

export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:9187';

/** Node's timers fire at once for delays above 2^31-1 ms, so longer durations are refused. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Parses "host:port" or "[v6address]:port" with port 1..65535; undefined when malformed. */
export function parseHostPort(v: string): HostPort | undefined {
  const m = /^\[([0-9A-Fa-f:.%\w-]+)\]:(\d{1,5})$/.exec(v) ?? /^([^\s:[\]/]+):(\d{1,5})$/.exec(v);
  if (m === null) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!, port };
}

/** The canonical "host:port" text of an address ("[::1]:6432" for IPv6). */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const SHA256_BYTES = 32;

/**
 * Why `v` is not a SCRAM-SHA-256 verifier as PostgreSQL stores it in pg_authid
 * (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5803), or undefined.
 * The reason never quotes the verifier itself.
 */
export function verifierProblem(v: string): string | undefined {
  const m = /^SCRAM-SHA-256\$(\d+):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(v);
  const expected = 'expected SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>';
  if (m === null) return `malformed verifier: ${expected}`;
  const [, iterations, salt, storedKey, serverKey] = m as unknown as [string, string, string, string, string];
  if (!Number.isSafeInteger(Number(iterations)) || Number(iterations) < 1) return 'malformed verifier: iterations must be a positive whole number';
  if (!BASE64.test(salt)) return 'malformed verifier: the salt is not base64';
  for (const [name, key] of [['StoredKey', storedKey], ['ServerKey', serverKey]] as const) {
    if (!BASE64.test(key) || Buffer.from(key, 'base64').length !== SHA256_BYTES) {
      return `malformed verifier: ${name} must be ${SHA256_BYTES} bytes of base64`;
    }
  }
  return undefined;
}

function fail(ctx: { addIssue: (issue: { code: 'custom'; message: string }) => void }, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
}

// A scalar that may arrive as a string after ${VAR} substitution even where a number is meant.
function scalar(expected: string) {
  return z.custom<string | number>((v) => typeof v === 'string' || typeof v === 'number', { error: `expected ${expected}` });
}

const nonEmpty = z.string().min(1, 'must not be empty');

function fqn(type: FqnType) {
  return z.string().transform((v, ctx) => {
    try {
      return parseFqn(v, type).text;
    } catch (err) {
      if (err instanceof FqnError) return fail(ctx, err.message);
      throw err;
    }
  });
}

// "none", or a realm of bindings (`binding::/team-a`, `::/` for all); a realm of another type covers no binding.
const serveBindings = z.string().transform((v, ctx) => {
  if (v === 'none') return v;
  try {
    const realm = parseRealm(v);
    if (realm.type !== undefined && realm.type !== 'binding') return fail(ctx, `expected "none" or a realm of bindings (binding::/namespace or ::/), got ${JSON.stringify(v)}`);
    return realm.text;
  } catch (err) {
    if (err instanceof FqnError) return fail(ctx, err.message);
    throw err;
  }
});

/** `v` as a whole number in min..max (also from a string of digits), or undefined. */
function wholeNumber(v: string | number, min: number, max: number): number | undefined {
  const n = typeof v === 'number' ? v : /^\d+$/.test(v.trim()) ? Number(v) : Number.NaN;
  return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

function integer(min: number, max: number) {
  return scalar(`a whole number ${min}..${max}`).transform((v, ctx) => wholeNumber(v, min, max) ?? fail(ctx, `expected a whole number ${min}..${max}, got ${JSON.stringify(v)}`));
}

// true/false, also as the strings "true"/"false" so that `enabled: ${AUDIT}` works.
const boolean = z
  .custom<boolean | string>((v) => typeof v === 'boolean' || v === 'true' || v === 'false', { error: 'expected true or false' })
  .transform((v) => v === true || v === 'true');

const listen = z.string().transform((v, ctx) => parseHostPort(v) ?? fail(ctx, `expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432"), got ${JSON.stringify(v)}`));

function duration(minMs: number) {
  return scalar('a duration such as "500ms", "10s", "2m" or a number of seconds').transform((v, ctx) => {
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch (err) {
      return fail(ctx, (err as Error).message);
    }
    if (ms < minMs) return fail(ctx, minMs === 0 ? 'must not be negative' : `must be at least ${minMs}ms`);
    if (ms > MAX_TIMER_MS) return fail(ctx, `must be at most ${MAX_TIMER_MS}ms (about 24.8 days)`);
    return ms;
  });
}

const size = scalar('a size such as "512KiB", "64MiB" or a number of bytes').transform((v, ctx) => {
  let bytes: number;
  try {
    bytes = parseSize(v);
  } catch (err) {
    return fail(ctx, (err as Error).message);
  }
  return bytes > 0 ? bytes : fail(ctx, 'must be more than 0 bytes');
});

const adminSchema = z.strictObject({
  listen: listen.default(() => parseHostPort(DEFAULT_ADMIN_LISTEN)!),
  token: nonEmpty.optional(),
});

// "auto" (or absent) means one worker per CPU core, represented as undefined.
const workersSchema = scalar('"auto" or a whole number 1..1024').transform((v, ctx) => {
  if (v === 'auto') return undefined;
  return wholeNumber(v, 1, 1024) ?? fail(ctx, `expected "auto" or a whole number 1..1024, got ${JSON.stringify(v)}`);
});

export const limitsSchema = z.strictObject({
  max_message_size: size.default(64 * 1024 * 1024),
  auth_timeout: duration(1).default(10_000),
  connect_timeout: duration(1).default(10_000),
  drain_timeout: duration(0).default(30_000),
  upstream_idle_timeout: duration(0).default(60_000),
  upstream_idle_max: integer(0, 100_000).default(20),
  upstream_check_delay: duration(0).default(30_000),
});

const auditSchema = z.strictObject({
  enabled: boolean.default(true),
  max_statement_length: integer(1, 1_000_000).default(2048),
  destination: nonEmpty.default('stdout'),
});

const upstreamSchema = z
  .strictObject({
    host: nonEmpty,
    port: integer(1, 65535).default(5432),
    database: nonEmpty,
    user: nonEmpty,
    password: z.string().optional(),
    tls: z.enum(UPSTREAM_TLS_MODES).default('prefer'),
    ca: nonEmpty.optional(),
  })
  .superRefine((u, ctx) => {
    if (u.tls === 'verify-full' && u.ca === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'tls "verify-full" needs ca: (the CA certificate file that signed the server\'s certificate)' });
    }
  });

const serviceSchema = z.strictObject({
  fqn: fqn('service'),
  protocol: z.literal('postgres'),
  upstream: upstreamSchema,
});

const clientSchema = z
  .strictObject({
    user: nonEmpty,
    password: nonEmpty.optional(),
    verifier: z
      .string()
      .transform((v, ctx) => {
        const problem = verifierProblem(v);
        return problem === undefined ? v : fail(ctx, problem);
      })
      .optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.password === undefined) === (c.verifier === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'a client needs exactly one of password or verifier' });
    }
  });

const bindingTlsSchema = z.strictObject({
  cert: nonEmpty,
  key: nonEmpty,
  required: boolean.default(false),
});

const bindingSchema = z
  .strictObject({
    fqn: fqn('binding'),
    service: fqn('service'),
    listen,
    database: nonEmpty.optional(),
    auth: z.enum(CLIENT_AUTH_METHODS).default('scram-sha-256'),
    allow_password_without_tls: boolean.default(false),
    clients: z.array(clientSchema).min(1, 'a binding needs at least one client'),
    tls: bindingTlsSchema.optional(),
  })
  .superRefine((b, ctx) => {
    const seen = new Set<string>();
    b.clients.forEach((c, i) => {
      if (seen.has(c.user)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'user'], message: `duplicate client user "${c.user}"` });
      seen.add(c.user);
      if (b.auth === 'md5' && c.password === undefined) {
        ctx.addIssue({ code: 'custom', path: ['clients', i], message: 'md5 auth needs the client\'s password; a SCRAM verifier cannot answer an md5 challenge' });
      }
    });
    if (b.auth === 'password' && b.tls === undefined && !b.allow_password_without_tls) {
      ctx.addIssue({
        code: 'custom',
        path: ['auth'],
        message: 'cleartext "password" auth needs tls: on the binding (or allow_password_without_tls: true)',
      });
    }
  });

// Each protocol owns its service and binding keys; a binding's `auth:` tells its protocol.
const http = createHttpConfigSchemas({ serviceFqn: fqn('service'), bindingFqn: fqn('binding'), listen, nonEmpty, duration, size });

export const configSchema = z.strictObject({
  admin: adminSchema.prefault({}),
  workers: workersSchema.optional(),
  limits: limitsSchema.prefault({}),
  audit: auditSchema.prefault({}),
  services: z.array(z.discriminatedUnion('protocol', [serviceSchema, http.service])).default([]),
  bindings: z.array(z.discriminatedUnion('auth', [bindingSchema, http.binding])).default([]),
  policies: z.array(policySchema).default([]),
  /** Where the state store keeps its data; relative to the config file's directory. */
  state_dir: nonEmpty.default('./sempipe-data'),
  /** The bindings this process's own workers listen for (absent: all, as "::/"); "none" for a pure control plane. */
  serve_bindings: serveBindings.optional(),
});

/** The validated file, still with the file's key names and unresolved relative paths. */
export type RawConfig = z.output<typeof configSchema>;
