// Loads sempipe.yaml: parses it with `yaml` (keeping line numbers), substitutes ${VAR} from the
// environment, validates it with the zod schema of config-schema.ts, runs the checks that span
// resources (service references, listener conflicts, duplicate FQNs, files that must exist), and
// returns the normalized config: milliseconds, bytes, absolute paths, defaults filled in.
// Every refusal is a ConfigError naming the file, the line and the reason; values that may be
// secrets (passwords, verifiers, tokens) never appear in a reason.
// ${VAR} substitution is hand-written rather than a text-level envsubst library: it runs on parsed
// string scalars, so a value can never change the YAML structure and an unset variable names its key.
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import type { PolicyDocument } from './policy/policy-schema.js';
import {
  configSchema,
  DEFAULT_UNIX_SOCKET_MODE,
  formatHostPort,
  formatListenAddress,
  isUnixSocket,
  limitsSchema,
  type CLIENT_AUTH_METHODS,
  type HostPort,
  type ListenAddress,
  type RawConfig,
  type UnixSocketAddress,
  type UPSTREAM_TLS_MODES,
  type UPSTREAM_TLS_NEGOTIATIONS,
} from './config-schema.js';
import { normalizeHttpBinding, normalizeHttpService, type HttpBindingConfig, type HttpServiceConfig } from '../protocols/http/config-schema.js';

import type { MysqlAuthMethod } from '../protocols/mysql/config-schema.js';

export { formatHostPort, formatListenAddress, isUnixSocket, type HostPort, type HttpBindingConfig, type HttpServiceConfig, type ListenAddress, type UnixSocketAddress };

/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;

/** 'disable' | 'prefer' | 'require' | 'verify-full' */
export type UpstreamTlsMode = (typeof UPSTREAM_TLS_MODES)[number];
/** 'postgres' (SSLRequest first) | 'direct' (TLS at once, PostgreSQL 17+) */
export type UpstreamTlsNegotiation = (typeof UPSTREAM_TLS_NEGOTIATIONS)[number];
/** 'scram-sha-256' | 'md5' | 'password' */
export type ClientAuthMethod = (typeof CLIENT_AUTH_METHODS)[number];

export type ServiceProtocol = 'postgres' | 'mysql';

/** A service of any protocol; `protocol` tells which. */
export type AnyServiceConfig = ServiceConfig | HttpServiceConfig;

/** The SQL protocols' services share the `upstream` keys; only the port's default differs. */
export interface ServiceConfig {
  fqn: string;
  protocol: ServiceProtocol;
  upstream: {
    host: string;
    port: number;
    database: string;
    user: string;
    password?: string;
    tls: UpstreamTlsMode;
    /** Absent (services stored before it existed) means 'postgres'. */
    tlsNegotiation?: UpstreamTlsNegotiation;
    /** Absolute path. */
    ca?: string;
  };
}

export interface ClientCredential {
  user: string;
  password?: string;
  verifier?: string;
}

/** Absolute paths. */
export interface BindingTls {
  cert: string;
  key: string;
  required: boolean;
}

export interface UnixSocketOptions {
  /** Permission bits, e.g. 0o777 (the default, as PostgreSQL's unix_socket_permissions). */
  mode: number;
  /** Group name or numeric id; absent: the process's group. */
  group?: string;
}

/** A PostgreSQL binding (`protocol` is absent where bindings were PostgreSQL's only, e.g. the state store). */
export interface BindingConfig {
  protocol?: 'postgres';
  fqn: string;
  service: string;
  /** TCP addresses and Unix socket files (absolute paths), in the file's order; at least one. */
  listen: ListenAddress[];
  /** Mode and group of the binding's Unix socket files; present when it has one. */
  unixSocket?: UnixSocketOptions;
  database: string;
  auth: ClientAuthMethod;
  allowPasswordWithoutTls: boolean;
  clients: ClientCredential[];
  tls?: BindingTls;
}

export interface MysqlBindingConfig {
  protocol: 'mysql';
  fqn: string;
  service: string;
  listen: ListenAddress[];
  unixSocket?: UnixSocketOptions;
  database: string;
  auth: MysqlAuthMethod;
  /** Each with its password (MySQL's challenges need it, or a hash derived from it). */
  clients: ClientCredential[];
  tls?: BindingTls;
}

/** A binding of any protocol; `protocol` tells which (absent: PostgreSQL). */
export type AnyBindingConfig = BindingConfig | MysqlBindingConfig | HttpBindingConfig;

export interface SempipeConfig {
  /** Absolute path of the file it came from. */
  file?: string;
  admin: { listen: HostPort; token?: string };
  /** undefined = one worker per CPU core. */
  workers?: number;
  limits: {
    maxMessageSize: number;
    authTimeoutMs: number;
    connectTimeoutMs: number;
    /** How long the server has to answer a statement a limit cancelled before the session ends with FATAL 08006. */
    cancelGraceMs: number;
    drainTimeoutMs: number;
    /** How long a reset upstream connection waits for the next session before it is closed; 0: no reuse. */
    upstreamIdleTimeoutMs: number;
    /** Most idle upstream connections a worker keeps per server, role and startup parameters. */
    upstreamIdleMax: number;
    /** An idle upstream connection that waited longer is checked with an empty query before reuse; 0: always. */
    upstreamCheckDelayMs: number;
    /** Connections not yet authenticated that one process holds at most; past it new ones are refused at once. 0: no cap. */
    maxPendingAuth: number;
  };
  /** destination: 'stdout' | 'stderr' | an absolute path. */
  audit: { enabled: boolean; maxStatementLength: number; destination: string };
  services: AnyServiceConfig[];
  bindings: AnyBindingConfig[];
  /** Policies of the file, validated and normalized (see control/policy/policy-schema.ts). */
  policies: PolicyDocument[];
  /** Absolute path of the state directory (`state_dir`, default ./sempipe-data beside the file). */
  stateDir: string;
  /**
   * The secret the SCRAM salts sempipe makes up derive from (protocols/postgres/auth/scram-mock.ts):
   * `auth.salt_secret`, else filled in by the primary from the state directory's key file, or sent
   * by the control plane to its data planes. One for all workers and across restarts.
   */
  saltSecret?: string;
  /**
   * `serve_bindings`: the realm of bindings this process's workers listen for, or 'none' for a pure
   * control plane whose bindings remote data planes serve. Absent: every binding.
   */
  serveBindings?: string;
}

/** A refused config file. `path` is like `bindings[0].listen` ('' for the file as a whole). */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${file}${line === undefined ? '' : `:${line}`}: ${path === '' ? '' : `${path}: `}${reason}`);
    this.name = 'ConfigError';
  }
}

type Path = readonly PropertyKey[];

/**
 * One problem found in the file; `at` is where to look for its line when it differs from `path`.
 * A missing key is `secondary`: it is reported only when nothing else is wrong, because it is
 * often the consequence of a misspelt (unknown) key in the same mapping.
 */
interface Problem {
  path: Path;
  reason: string;
  at?: Path;
  secondary?: boolean;
}

/** Reads and parses a config file; an unreadable file is a ConfigError carrying the OS reason. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): SempipeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, undefined, '', `cannot read the config file: ${(err as Error).message}`);
  }
  return parseConfig(text, file, env);
}

/** Parses config text; `file` names it in errors and anchors its relative paths. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): SempipeConfig {
  const lineCounter = new LineCounter();
  // prettyErrors off: the pretty form quotes source lines, which may hold secrets.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
  const [syntaxError] = doc.errors;
  if (syntaxError !== undefined) {
    // Some messages end with the offending token (`… in YAML stream: "s3cret"`); it may be a secret.
    throw new ConfigError(file, lineAt(syntaxError.pos[0]), '', syntaxError.message.replace(/: ".*"$/s, ''));
  }
  if (doc.contents === null) throw new ConfigError(file, undefined, '', 'the file is empty; expected a mapping with services: and bindings:');

  const refuse = (problems: readonly Problem[]): never => {
    const located = problems.map((p) => ({ ...p, line: lineOf(doc, lineAt, p.at ?? p.path) }));
    located.sort((a, b) => Number(a.secondary ?? false) - Number(b.secondary ?? false) || (a.line ?? Infinity) - (b.line ?? Infinity));
    const first = located[0]!;
    throw new ConfigError(file, first.line, formatPath(first.path), first.reason);
  };

  const unset = substituteEnv(doc, env);
  if (unset.length > 0) refuse(unset);

  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    throw new ConfigError(file, undefined, '', (err as Error).message);
  }
  inferBindingProtocols(data);
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) return refuse(parsed.error.issues.flatMap((issue) => describeIssue(issue, data)));
  const raw = parsed.data;

  const baseDir = dirname(resolve(file));
  const where = (path: Path): string =>
    valueAt(data, path) === undefined ? `${formatPath(path)} (default)` : `${formatPath(path)}, line ${lineOf(doc, lineAt, path) ?? '?'}`;
  const crossProblems = checkAcrossResources(raw, baseDir, where, (path) => Array.isArray(valueAt(data, path)));
  if (crossProblems.length > 0) refuse(crossProblems);
  const fileProblems = checkFiles(raw, baseDir);
  if (fileProblems.length > 0) refuse(fileProblems);
  return normalize(raw, resolve(file), baseDir);
}

/**
 * A binding's `protocol` is its service's, so that the binding is validated against that protocol's
 * keys; a binding of an unknown service is checked as PostgreSQL's and then refused by name.
 */
function inferBindingProtocols(data: unknown): void {
  const root = data as { services?: unknown; bindings?: unknown } | null;
  if (root === null || typeof root !== 'object' || !Array.isArray(root.bindings)) return;
  const protocols = new Map<unknown, unknown>();
  if (Array.isArray(root.services)) {
    for (const s of root.services as unknown[]) if (s !== null && typeof s === 'object') protocols.set((s as Record<string, unknown>).fqn, (s as Record<string, unknown>).protocol);
  }
  for (const b of root.bindings as unknown[]) {
    if (b === null || typeof b !== 'object' || Array.isArray(b)) continue;
    const binding = b as Record<string, unknown>;
    if (binding.protocol === undefined) binding.protocol = protocols.get(binding.service) ?? 'postgres';
  }
}

// ${NAME} is replaced by env.NAME; $${NAME} stays as the literal text ${NAME}; any other "${" is an
// error, so that a typo never reaches a password unnoticed. Only string values are substituted,
// never keys. A value in a `{ … }` flow mapping must be quoted for YAML to parse it.
const REFERENCE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function substituteEnv(doc: Document, env: NodeJS.ProcessEnv): Problem[] {
  const problems: Problem[] = [];
  const visit = (node: unknown, path: PropertyKey[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) visit(pair.value, [...path, keyName(pair.key)]);
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => visit(item, [...path, i]));
    } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
      node.value = node.value.replace(REFERENCE, (match: string, name: string | undefined) => {
        if (match === '$${') return '${';
        if (name === undefined || !VARIABLE_NAME.test(name)) {
          problems.push({ path, reason: `malformed variable reference (expected \${NAME} with NAME of A-Z a-z 0-9 _, or $\${ for a literal \${)` });
          return match;
        }
        const value = env[name];
        if (value === undefined) {
          problems.push({ path, reason: `environment variable ${name} is not set` });
          return match;
        }
        return value;
      });
    }
  };
  visit(doc.contents, []);
  return problems;
}

function keyName(key: unknown): string {
  return String(isScalar(key) ? key.value : key);
}

/** The line of the key (or list item) that `path` names; the nearest existing ancestor's when it is missing. */
function lineOf(doc: Document, lineAt: (offset: number) => number, path: Path): number | undefined {
  const lineOfNode = (node: unknown): number | undefined => {
    const range = (node as Node | null)?.range;
    return range ? lineAt(range[0]) : undefined;
  };
  let node: unknown = doc.contents;
  let line = lineOfNode(node);
  for (const segment of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => keyName(p.key) === String(segment));
      if (pair === undefined) return line;
      line = lineOfNode(pair.key) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && node.items[segment] !== undefined) {
      node = node.items[segment];
      line = lineOfNode(node) ?? line;
    } else {
      return line;
    }
  }
  return line;
}

function formatPath(path: Path): string {
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? String(s) : `.${String(s)}`)).join('');
}

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const segment of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[segment];
  }
  return v;
}

function describeValue(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `a ${typeof v}`;
}

const EXPECTED: Readonly<Record<string, string>> = { object: 'a mapping', array: 'a list', string: 'a string', number: 'a number', boolean: 'true or false' };

/** Turns a zod issue into problems with reasons in the file's terms; never quotes a value of the wrong type. */
function describeIssue(issue: z.core.$ZodIssue, data: unknown): Problem[] {
  const path = issue.path;
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ path, at: [...path, key], reason: `unknown key "${key}"` }));
  }
  const value = valueAt(data, path);
  if (value === undefined && path.length > 0) return [{ path, reason: 'required key is missing', secondary: true }];
  switch (issue.code) {
    case 'invalid_type': {
      const quoteHint = issue.expected === 'string' && (typeof value === 'number' || typeof value === 'boolean') ? ' (quote the value to make it a string)' : '';
      return [{ path, reason: `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeValue(value)}${quoteHint}` }];
    }
    case 'invalid_union':
      if (issue.discriminator !== undefined && 'options' in issue && issue.options !== undefined) {
        return [{ path, reason: `expected ${issue.options.map((v) => JSON.stringify(v)).join(' | ')}, got ${typeof value === 'string' ? JSON.stringify(value) : describeValue(value)}` }];
      }
      return [{ path, reason: issue.message }];
    case 'invalid_value':
      return [{ path, reason: `expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${typeof value === 'string' ? JSON.stringify(value) : describeValue(value)}` }];
    default:
      return [{ path, reason: issue.message }];
  }
}

/** References between resources, listener conflicts and duplicate FQNs; `where` names an earlier definition. */
function checkAcrossResources(raw: RawConfig, baseDir: string, where: (path: Path) => string, isList: (path: Path) => boolean): Problem[] {
  const problems: Problem[] = [];
  const fqns = new Map<string, Path>();
  const claimFqn = (fqn: string, path: Path): void => {
    const first = fqns.get(fqn);
    if (first !== undefined) problems.push({ path, reason: `duplicate FQN "${fqn}" (first defined at ${where(first)})` });
    else fqns.set(fqn, path);
  };
  raw.services.forEach((s, i) => claimFqn(s.fqn, ['services', i, 'fqn']));
  const services = new Set(raw.services.map((s) => s.fqn));
  const listeners = new Map<string, Path>([[formatHostPort(raw.admin.listen), ['admin', 'listen']]]);
  raw.policies.forEach((p, i) => claimFqn(p.fqn, ['policies', i, 'fqn']));
  raw.bindings.forEach((b, i) => {
    claimFqn(b.fqn, ['bindings', i, 'fqn']);
    if (!services.has(b.service)) problems.push({ path: ['bindings', i, 'service'], reason: `unknown service "${b.service}"` });
    b.listen.forEach((a, j) => {
      const path: Path = isList(['bindings', i, 'listen']) ? ['bindings', i, 'listen', j] : ['bindings', i, 'listen'];
      const resolved = resolveListenAddress(a, baseDir);
      const address = formatListenAddress(resolved);
      const owner = listeners.get(address);
      if (owner !== undefined) problems.push({ path, reason: `address ${address} is already used by ${where(owner)}` });
      else listeners.set(address, path);
      if (isUnixSocket(resolved) && Buffer.byteLength(resolved.path) > MAX_UNIX_SOCKET_PATH_BYTES) {
        problems.push({ path, reason: `the socket path ${resolved.path} is ${Buffer.byteLength(resolved.path)} bytes; the system allows at most ${MAX_UNIX_SOCKET_PATH_BYTES}` });
      }
    });
  });
  return problems;
}

/** Files the proxy will read (CA, certificate, key) must exist now, not at the first connection. */
function checkFiles(raw: RawConfig, baseDir: string): Problem[] {
  const problems: Problem[] = [];
  const check = (relative: string | undefined, path: Path): void => {
    if (relative === undefined) return;
    const absolute = resolve(baseDir, relative);
    try {
      if (!statSync(absolute).isFile()) {
        problems.push({ path, reason: `${absolute} is not a file` });
        return;
      }
      accessSync(absolute, constants.R_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push({ path, reason: code === 'ENOENT' ? `file not found: ${absolute}` : `cannot read ${absolute}: ${code ?? (err as Error).message}` });
    }
  };
  raw.services.forEach((s, i) => check(s.upstream.ca, ['services', i, 'upstream', 'ca']));
  raw.bindings.forEach((b, i) => {
    check(b.tls?.cert, ['bindings', i, 'tls', 'cert']);
    check(b.tls?.key, ['bindings', i, 'tls', 'key']);
  });
  return problems;
}

/** A Unix socket path relative to the config file's directory becomes absolute; TCP addresses stay. */
function resolveListenAddress(a: ListenAddress, baseDir: string): ListenAddress {
  return isUnixSocket(a) ? { path: resolve(baseDir, a.path) } : a;
}

function normalizeLimits(raw: RawConfig['limits']): SempipeConfig['limits'] {
  return {
    maxMessageSize: raw.max_message_size,
    authTimeoutMs: raw.auth_timeout,
    connectTimeoutMs: raw.connect_timeout,
    cancelGraceMs: raw.cancel_grace,
    drainTimeoutMs: raw.drain_timeout,
    upstreamIdleTimeoutMs: raw.upstream_idle_timeout,
    upstreamIdleMax: raw.upstream_idle_max,
    upstreamCheckDelayMs: raw.upstream_check_delay,
    maxPendingAuth: raw.max_pending_auth,
  };
}

/** The limits a config without a `limits:` section gets (the schema's defaults). */
export function defaultLimits(): SempipeConfig['limits'] {
  return normalizeLimits(limitsSchema.parse({}));
}

/**
 * A service as the rest of sempipe sees it; `resolvePath` makes a file path absolute (relative to
 * the config file, or as it is where the control API only takes absolute paths).
 */
export function normalizeService(s: RawConfig['services'][number], resolvePath: (p: string) => string): AnyServiceConfig {
  if (s.protocol === 'http') return normalizeHttpService(s, resolvePath);
  return {
    fqn: s.fqn,
    protocol: s.protocol,
    upstream: {
      host: s.upstream.host,
      port: s.upstream.port,
      database: s.upstream.database,
      user: s.upstream.user,
      ...(s.upstream.password !== undefined && { password: s.upstream.password }),
      tls: s.upstream.tls,
      ...('tls_negotiation' in s.upstream && { tlsNegotiation: s.upstream.tls_negotiation }),
      ...(s.upstream.ca !== undefined && { ca: resolvePath(s.upstream.ca) }),
    },
  };
}

/** A binding's addresses (socket paths resolved against the file's directory) and its socket files' access. */
function listenOf(
  b: { listen: ListenAddress[]; unix_socket_mode?: number; unix_socket_group?: string },
  baseDir: string,
): { listen: ListenAddress[]; unixSocket?: UnixSocketOptions } {
  return {
    listen: b.listen.map((a) => resolveListenAddress(a, baseDir)),
    ...(b.listen.some(isUnixSocket) && {
      unixSocket: { mode: b.unix_socket_mode ?? DEFAULT_UNIX_SOCKET_MODE, ...(b.unix_socket_group !== undefined && { group: b.unix_socket_group }) },
    }),
  };
}

function normalize(raw: RawConfig, file: string, baseDir: string): SempipeConfig {
  const upstreamDatabase = new Map(raw.services.flatMap((s) => (s.protocol !== 'http' ? [[s.fqn, s.upstream.database] as const] : [])));
  const destination = raw.audit.destination;
  return {
    file,
    admin: { listen: raw.admin.listen, ...(raw.admin.token !== undefined && { token: raw.admin.token }) },
    ...(raw.workers !== undefined && { workers: raw.workers }),
    limits: normalizeLimits(raw.limits),
    audit: {
      enabled: raw.audit.enabled,
      maxStatementLength: raw.audit.max_statement_length,
      destination: destination === 'stdout' || destination === 'stderr' ? destination : resolve(baseDir, destination),
    },
    services: raw.services.map((s): AnyServiceConfig => normalizeService(s, (p) => resolve(baseDir, p))),
    bindings: raw.bindings.map((b): AnyBindingConfig => b.protocol === 'http' ? normalizeHttpBinding(b, listenOf(b, baseDir), (p) => resolve(baseDir, p)) : b.protocol === 'mysql' ? {
      protocol: 'mysql',
      fqn: b.fqn,
      service: b.service,
      ...listenOf(b, baseDir),
      database: b.database ?? upstreamDatabase.get(b.service)!,
      auth: b.auth,
      clients: b.clients.map((c) => ({ user: c.user, password: c.password })),
      ...(b.tls !== undefined && {
        tls: { cert: resolve(baseDir, b.tls.cert), key: resolve(baseDir, b.tls.key), required: b.tls.required },
      }),
    } : {
      fqn: b.fqn,
      service: b.service,
      ...listenOf(b, baseDir),
      database: b.database ?? upstreamDatabase.get(b.service)!,
      auth: b.auth,
      allowPasswordWithoutTls: b.allow_password_without_tls,
      clients: b.clients.map((c) => ({
        user: c.user,
        ...(c.password !== undefined && { password: c.password }),
        ...(c.verifier !== undefined && { verifier: c.verifier }),
      })),
      ...(b.tls !== undefined && {
        tls: { cert: resolve(baseDir, b.tls.cert), key: resolve(baseDir, b.tls.key), required: b.tls.required },
      }),
    }),
    policies: raw.policies,
    stateDir: resolve(baseDir, raw.state_dir),
    ...(raw.auth.salt_secret !== undefined && { saltSecret: raw.auth.salt_secret }),
    ...(raw.serve_bindings !== undefined && { serveBindings: raw.serve_bindings }),
  };
}
