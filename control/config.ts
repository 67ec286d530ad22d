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
  formatHostPort,
  limitsSchema,
  type CLIENT_AUTH_METHODS,
  type HostPort,
  type RawConfig,
  type UPSTREAM_TLS_MODES,
} from './config-schema.js';
import { normalizeHttpBinding, normalizeHttpService, type HttpBindingConfig, type HttpServiceConfig } from '../protocols/http/config-schema.js';

export { formatHostPort, type HostPort, type HttpBindingConfig, type HttpServiceConfig };

/** 'disable' | 'prefer' | 'require' | 'verify-full' */
export type UpstreamTlsMode = (typeof UPSTREAM_TLS_MODES)[number];
/** 'scram-sha-256' | 'md5' | 'password' */
export type ClientAuthMethod = (typeof CLIENT_AUTH_METHODS)[number];

/** A service of any protocol; `protocol` tells which. */
export type ServiceConfig = PgServiceConfig | HttpServiceConfig;
/** A binding of any protocol; `auth` tells which ("bearer": HTTP). */
export type BindingConfig = PgBindingConfig | HttpBindingConfig;

export interface PgServiceConfig {
  fqn: string;
  protocol: 'postgres';
  upstream: {
    host: string;
    port: number;
    database: string;
    user: string;
    password?: string;
    tls: UpstreamTlsMode;
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

export interface PgBindingConfig {
  fqn: string;
  service: string;
  listen: HostPort;
  database: string;
  auth: ClientAuthMethod;
  allowPasswordWithoutTls: boolean;
  clients: ClientCredential[];
  tls?: BindingTls;
}

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
    drainTimeoutMs: number;
    /** How long a reset upstream connection waits for the next session before it is closed; 0: no reuse. */
    upstreamIdleTimeoutMs: number;
    /** Most idle upstream connections a worker keeps per server, role and startup parameters. */
    upstreamIdleMax: number;
    /** An idle upstream connection that waited longer is checked with an empty query before reuse; 0: always. */
    upstreamCheckDelayMs: number;
  };
  /** destination: 'stdout' | 'stderr' | an absolute path. */
  audit: { enabled: boolean; maxStatementLength: number; destination: string };
  services: ServiceConfig[];
  bindings: BindingConfig[];
  /** Policies of the file, validated and normalized (see control/policy/policy-schema.ts). */
  policies: PolicyDocument[];
  /** Absolute path of the state directory (`state_dir`, default ./sempipe-data beside the file). */
  stateDir: string;
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
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) return refuse(parsed.error.issues.flatMap((issue) => describeIssue(issue, data)));
  const raw = parsed.data;

  const baseDir = dirname(resolve(file));
  const where = (path: Path): string =>
    valueAt(data, path) === undefined ? `${formatPath(path)} (default)` : `${formatPath(path)}, line ${lineOf(doc, lineAt, path) ?? '?'}`;
  const crossProblems = checkAcrossResources(raw, where);
  if (crossProblems.length > 0) refuse(crossProblems);
  const fileProblems = checkFiles(raw, baseDir);
  if (fileProblems.length > 0) refuse(fileProblems);
  return normalize(raw, resolve(file), baseDir);
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
      // The protocol unions (services by `protocol:`, bindings by `auth:`) name their valid keys.
      // zod adds `options` (the discriminator's values) to the issue without typing it.
      const { options } = issue as { options?: unknown };
      if (Array.isArray(options)) {
        const valid = options.filter((o): o is string => typeof o === 'string');
        return [{ path, reason: `expected ${valid.map((o) => JSON.stringify(o)).join(' | ')}, got ${typeof value === 'string' ? JSON.stringify(value) : describeValue(value)}` }];
      }
      return [{ path, reason: issue.message }];
    case 'invalid_value':
      return [{ path, reason: `expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${typeof value === 'string' ? JSON.stringify(value) : describeValue(value)}` }];
    default:
      return [{ path, reason: issue.message }];
  }
}

/** References between resources, listener conflicts and duplicate FQNs; `where` names an earlier definition. */
function checkAcrossResources(raw: RawConfig, where: (path: Path) => string): Problem[] {
  const problems: Problem[] = [];
  const fqns = new Map<string, Path>();
  const claimFqn = (fqn: string, path: Path): void => {
    const first = fqns.get(fqn);
    if (first !== undefined) problems.push({ path, reason: `duplicate FQN "${fqn}" (first defined at ${where(first)})` });
    else fqns.set(fqn, path);
  };
  raw.services.forEach((s, i) => claimFqn(s.fqn, ['services', i, 'fqn']));
  const protocols = new Map(raw.services.map((s) => [s.fqn, s.protocol]));
  const listeners = new Map<string, Path>([[formatHostPort(raw.admin.listen), ['admin', 'listen']]]);
  raw.policies.forEach((p, i) => claimFqn(p.fqn, ['policies', i, 'fqn']));
  raw.bindings.forEach((b, i) => {
    claimFqn(b.fqn, ['bindings', i, 'fqn']);
    const protocol = protocols.get(b.service);
    if (protocol === undefined) problems.push({ path: ['bindings', i, 'service'], reason: `unknown service "${b.service}"` });
    else if ((protocol === 'http') !== (b.auth === 'bearer')) {
      const reason = protocol === 'http' ? 'needs auth: bearer' : `cannot use auth: bearer (bearer is for http services)`;
      problems.push({ path: ['bindings', i, 'auth'], reason: `the binding's service ${b.service} is ${protocol} and ${reason}` });
    }
    const address = formatHostPort(b.listen);
    const owner = listeners.get(address);
    if (owner !== undefined) problems.push({ path: ['bindings', i, 'listen'], reason: `address ${address} is already used by ${where(owner)}` });
    else listeners.set(address, ['bindings', i, 'listen']);
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

function normalizeLimits(raw: RawConfig['limits']): SempipeConfig['limits'] {
  return {
    maxMessageSize: raw.max_message_size,
    authTimeoutMs: raw.auth_timeout,
    connectTimeoutMs: raw.connect_timeout,
    drainTimeoutMs: raw.drain_timeout,
    upstreamIdleTimeoutMs: raw.upstream_idle_timeout,
    upstreamIdleMax: raw.upstream_idle_max,
    upstreamCheckDelayMs: raw.upstream_check_delay,
  };
}

/** The limits a config without a `limits:` section gets (the schema's defaults). */
export function defaultLimits(): SempipeConfig['limits'] {
  return normalizeLimits(limitsSchema.parse({}));
}

function normalize(raw: RawConfig, file: string, baseDir: string): SempipeConfig {
  const upstreamDatabase = new Map(raw.services.flatMap((s) => (s.protocol === 'postgres' ? [[s.fqn, s.upstream.database] as const] : [])));
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
    services: raw.services.map((s): ServiceConfig => {
      if (s.protocol === 'http') return normalizeHttpService(s, (p) => resolve(baseDir, p));
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
          ...(s.upstream.ca !== undefined && { ca: resolve(baseDir, s.upstream.ca) }),
        },
      };
    }),
    bindings: raw.bindings.map((b): BindingConfig => {
      if (b.auth === 'bearer') return normalizeHttpBinding(b, (p) => resolve(baseDir, p));
      return {
        fqn: b.fqn,
        service: b.service,
        listen: b.listen,
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
      };
    }),
    policies: raw.policies,
    stateDir: resolve(baseDir, raw.state_dir),
    ...(raw.serve_bindings !== undefined && { serveBindings: raw.serve_bindings }),
  };
}
