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
import { createMysqlConfigSchemas } from '../protocols/mysql/config-schema.js';

export const UPSTREAM_TLS_MODES = ['disable', 'prefer', 'require', 'verify-full'] as const;
/** How TLS starts upstream: SSLRequest first (`postgres`), or a TLS handshake at once (`direct`, PostgreSQL 17+). */
export const UPSTREAM_TLS_NEGOTIATIONS = ['postgres', 'direct'] as const;
export const CLIENT_AUTH_METHODS = ['scram-sha-256', 'md5', 'password'] as const;

export interface HostPort {
  host: string;
  port: number;
}

/** A Unix-domain socket file a binding listens on (`unix:PATH` in the file). */
export interface UnixSocketAddress {
  path: string;
}

/** One address of a binding's `listen`: TCP host and port, or a Unix socket file. */
export type ListenAddress = HostPort | UnixSocketAddress;

export const UNIX_PREFIX = 'unix:';
/** PostgreSQL's unix_socket_permissions default: anyone may connect, authentication still applies. */
export const DEFAULT_UNIX_SOCKET_MODE = 0o777;

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

export function isUnixSocket(a: ListenAddress): a is UnixSocketAddress {
  return 'path' in a;
}

/** "host:port", "[v6]:port" or "unix:PATH" (PATH as written: relative paths are resolved later); undefined when malformed. */
export function parseListenAddress(v: string): ListenAddress | undefined {
  if (!v.startsWith(UNIX_PREFIX)) return parseHostPort(v);
  const path = v.slice(UNIX_PREFIX.length);
  return path === '' || path.includes('\0') ? undefined : { path };
}

/** The canonical text of a listen address, as the file writes it. */
export function formatListenAddress(a: ListenAddress): string {
  return isUnixSocket(a) ? `${UNIX_PREFIX}${a.path}` : formatHostPort(a);
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

const LISTEN_SHAPE = 'expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432") or "unix:PATH" (a socket file)';

// One address, or a list of them (TCP and Unix sockets side by side); always a list once parsed.
const bindingListen = z
  .custom<string | unknown[]>((v) => typeof v === 'string' || Array.isArray(v), { error: `${LISTEN_SHAPE}, or a list of them` })
  .transform((v, ctx) => {
    if (typeof v === 'string') return [parseListenAddress(v) ?? fail(ctx, `${LISTEN_SHAPE}, got ${JSON.stringify(v)}`)];
    if (v.length === 0) return fail(ctx, 'a binding needs at least one listen address');
    const addresses: ListenAddress[] = [];
    v.forEach((item, i) => {
      const a = typeof item === 'string' ? parseListenAddress(item) : undefined;
      if (a !== undefined) addresses.push(a);
      else ctx.addIssue({ code: 'custom', path: [i], message: typeof item === 'string' ? `${LISTEN_SHAPE}, got ${JSON.stringify(item)}` : `${LISTEN_SHAPE}; got a ${typeof item} (quote the value to make it a string)` });
    });
    return addresses;
  });

// Octal as in chmod: "0770" or 0770. YAML reads an unquoted 0770 as the number 770, so a number's
// decimal digits are read as octal digits.
const unixSocketMode = scalar('an octal mode such as "0770"').transform((v, ctx) => {
  const text = String(v).trim();
  if (!/^0?[0-7]{1,4}$/.test(text)) return fail(ctx, `expected an octal mode 0000..0777 such as "0770", got ${JSON.stringify(v)}`);
  const mode = Number.parseInt(text, 8);
  return mode <= 0o777 ? mode : fail(ctx, `expected an octal mode 0000..0777 (no setuid, setgid or sticky bits), got ${JSON.stringify(v)}`);
});

// A group name, or a numeric group id (also unquoted in YAML).
const unixSocketGroup = scalar('a group name or id').transform((v, ctx) => {
  const text = String(v).trim();
  return /^(?:\d+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/.test(text) ? text : fail(ctx, `expected a group name or a numeric group id, got ${JSON.stringify(v)}`);
});

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
  cancel_grace: duration(1).default(500),
  drain_timeout: duration(0).default(30_000),
  upstream_idle_timeout: duration(0).default(60_000),
  upstream_idle_max: integer(0, 100_000).default(20),
  upstream_check_delay: duration(0).default(30_000),
  max_pending_auth: integer(0, 10_000_000).default(2048),
});

/** Long enough to be unguessable whatever its alphabet: `openssl rand -base64 32` gives 44 characters. */
const MIN_SALT_SECRET_LENGTH = 32;

const authSchema = z.strictObject({
  /** The secret sempipe derives the SCRAM salts it makes up from; absent: a key file in state_dir. */
  salt_secret: z.string().min(MIN_SALT_SECRET_LENGTH, `must be at least ${MIN_SALT_SECRET_LENGTH} characters (e.g. the output of \`openssl rand -base64 32\`)`).optional(),
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
    tls_negotiation: z.enum(UPSTREAM_TLS_NEGOTIATIONS).default('postgres'),
    ca: nonEmpty.optional(),
  })
  .superRefine((u, ctx) => {
    // As libpq's sslnegotiation=direct: with a weaker mode a server without direct TLS would make
    // the connection fall back to plaintext.
    if (u.tls_negotiation === 'direct' && u.tls !== 'require' && u.tls !== 'verify-full') {
      ctx.addIssue({ code: 'custom', path: ['tls_negotiation'], message: `tls_negotiation "direct" needs tls: require or verify-full (got "${u.tls}")` });
    }
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
    protocol: z.literal('postgres'),
    service: fqn('service'),
    listen: bindingListen,
    unix_socket_mode: unixSocketMode.optional(),
    unix_socket_group: unixSocketGroup.optional(),
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
    if (!b.listen.some(isUnixSocket)) {
      for (const key of ['unix_socket_mode', 'unix_socket_group'] as const) {
        if (b[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `${key} applies to "unix:PATH" listen addresses; this binding has none` });
      }
    }
    // A binding on Unix sockets only carries no password over a network.
    if (b.auth === 'password' && b.tls === undefined && !b.allow_password_without_tls && !b.listen.every(isUnixSocket)) {
      ctx.addIssue({
        code: 'custom',
        path: ['auth'],
        message: 'cleartext "password" auth needs tls: on the binding (or allow_password_without_tls: true, or Unix-socket addresses only)',
      });
    }
  });

const mysql = createMysqlConfigSchemas({
  serviceFqn: fqn('service'),
  bindingFqn: fqn('binding'),
  listen: bindingListen,
  unixSocketMode,
  unixSocketGroup,
  bindingTls: bindingTlsSchema,
  port: integer(1, 65535),
});

const http = createHttpConfigSchemas({
  serviceFqn: fqn('service'),
  bindingFqn: fqn('binding'),
  listen: bindingListen,
  unixSocketMode,
  unixSocketGroup,
  nonEmpty,
  duration,
  size,
});

export const configSchema = z.strictObject({
  admin: adminSchema.prefault({}),
  workers: workersSchema.optional(),
  limits: limitsSchema.prefault({}),
  auth: authSchema.prefault({}),
  audit: auditSchema.prefault({}),
  services: z.array(z.discriminatedUnion('protocol', [serviceSchema, mysql.service, http.service])).default([]),
  /** A binding's `protocol` is its service's; config.ts fills it in before validation. */
  bindings: z.array(z.discriminatedUnion('protocol', [bindingSchema, mysql.binding, http.binding])).default([]),
  policies: z.array(policySchema).default([]),
  /** Where the state store keeps its data; relative to the config file's directory. */
  state_dir: nonEmpty.default('./sempipe-data'),
  /** The bindings this process's own workers listen for (absent: all, as "::/"); "none" for a pure control plane. */
  serve_bindings: serveBindings.optional(),
});

/** The validated file, still with the file's key names and unresolved relative paths. */
export type RawConfig = z.output<typeof configSchema>;
