// The resource catalog of the primary process: the config file's services, bindings and policies
// merged with those created through the control API (kept in the state store). The file wins for
// its own FQNs: an API resource with the same FQN is shadowed, and the API refuses to change a
// file-defined one. `effective()` is the merged config the workers run; `onChange` fires after
// every committed change (API mutation or file reload) so the primary can push it to the workers.
// An API binding that a reloaded file makes impossible (its service gone, its address now taken
// by a file binding) is suspended, not fatal: the file always applies, and the binding is listed
// with the reason until the operator deletes it or the conflict goes away.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { formatHostPort, formatListenAddress, isUnixSocket, type AnyBindingConfig, type AnyServiceConfig, type BindingConfig, type BindingTls, type ClientAuthMethod, type HostPort, type SempipeConfig, type ServiceConfig, type UpstreamTlsNegotiation } from './config.js';
import { parseFqn, FqnError, type FqnType } from './fqn.js';
import { validatePolicy, type PolicyDocument } from './policy/policy-schema.js';
import { openStateStore, type ResourceKind, type StateStore, type StoredBinding, type StoredHttpBinding } from './state-store.js';
import { createScramVerifier } from '../protocols/postgres/auth/scram-verifier.js';
import { sha256Hex, type HttpBindingConfig } from '../protocols/http/config-schema.js';

export type Source = 'file' | 'api';

export type CatalogErrorCode = 'invalid' | 'not_found' | 'conflict';

/** A refused catalog operation; `path` names the offending input field for `invalid`. */
export class CatalogError extends Error {
  override readonly name = 'CatalogError';
  constructor(
    readonly code: CatalogErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

/** The upstream of an HTTP service as the API shows it: the injected header names, never their values. */
export interface HttpUpstreamView {
  url: string;
  headers: string[];
  basic?: { user: string };
  bearer?: true;
  ca?: string;
  timeoutMs: number;
  bodyTimeoutMs: number;
  connections: number;
}

/** A service as the API shows it: never the upstream password or injected credential. */
export type ServiceView =
  | {
      fqn: string;
      protocol: ServiceConfig['protocol'];
      /** The keys as in sempipe.yaml. */
      upstream: Omit<ServiceConfig['upstream'], 'password' | 'tlsNegotiation'> & { tls_negotiation: UpstreamTlsNegotiation };
      source: Source;
    }
  | { fqn: string; protocol: 'http'; upstream: HttpUpstreamView; source: Source };

/** A binding as the API shows it: client users, never passwords or verifiers. */
export interface BindingView {
  fqn: string;
  service: string;
  /** As the file writes it: one address as a string, several as a list ("host:port", "unix:PATH"). */
  listen: string | string[];
  /** PostgreSQL and MySQL bindings only. */
  database?: string;
  auth: AnyBindingConfig['auth'];
  /** Client users (PostgreSQL, MySQL) or client names (HTTP). */
  users: string[];
  tls?: { required: boolean };
  source: Source;
  /** False for a suspended API binding (see `problem`): it has no listener. */
  active: boolean;
  problem?: string;
}

/** A policy in the shape of the file and the API bodies (snake_case keys, durations as text). */
export type PolicyView = Record<string, unknown> & { fqn: string; source: Source };

/** What the API accepts to create a binding; sempipe issues the client credentials (HTTP: a token). */
export interface BindingInput {
  fqn: string;
  service: string;
  /** Default: 127.0.0.1 on a free port chosen by sempipe. */
  listen?: HostPort;
  /** Default: the service's upstream database. */
  database?: string;
  /** "bearer" for an http service, a PostgreSQL method otherwise. */
  auth: ClientAuthMethod | 'bearer';
  /** HTTP: the client's name in the audit log (default: the binding's name). */
  client?: string;
  /** HTTP: the largest request body. */
  maxBodySize?: number;
  /** Default: the binding's name. */
  user?: string;
  allowPasswordWithoutTls: boolean;
  tls?: BindingTls;
}

/** Returned once, at creation and rotation: the password or token is not stored and cannot be read back. */
export type IssuedCredentials =
  | { fqn: string; user: string; password: string; uri: string }
  /** HTTP: the bearer token and the binding's base URL. */
  | { fqn: string; client: string; token: string; url: string };

/** A new credential for an HTTP service: replaces the injected headers, or the basic/bearer credential. */
export interface HttpCredentialInput {
  headers?: Record<string, string>;
  basic?: { user: string; password: string };
  bearer?: string;
}

export interface CatalogOptions {
  /** Directory of the state store (`state_dir`); created when absent. */
  stateDir: string;
  /** The loaded config file, client passwords already turned into verifiers (prepareCredentials). */
  fileConfig: SempipeConfig;
}

export type ChangeListener = (config: SempipeConfig) => void;

export interface Catalog {
  effective(): SempipeConfig;
  /** A reloaded config file; fires onChange. */
  setFileConfig(config: SempipeConfig): void;
  /** Called after every committed change; returns a function that unsubscribes. */
  onChange(listener: ChangeListener): () => void;
  /** API bindings left out of effective() and why. */
  problems(): { fqn: string; reason: string }[];
  /** Change sequence of the state store (grows with every committed API change). */
  sequence(): number;

  listServices(): ServiceView[];
  getService(fqn: string): ServiceView;
  createService(service: AnyServiceConfig): ServiceView;
  /** Replaces an API service; an absent upstream password keeps the current one. */
  updateService(fqn: string, service: AnyServiceConfig): ServiceView;
  deleteService(fqn: string): void;
  rotateService(fqn: string, password: string): void;
  /** Replaces the credential an HTTP service injects upstream; the next request carries it. */
  rotateServiceCredential(fqn: string, credential: HttpCredentialInput): void;

  listBindings(): BindingView[];
  getBinding(fqn: string): BindingView;
  createBinding(input: BindingInput): Promise<IssuedCredentials>;
  rotateBinding(fqn: string): IssuedCredentials;
  deleteBinding(fqn: string): void;

  listPolicies(): PolicyView[];
  getPolicy(fqn: string): PolicyView;
  /** Creates or replaces an API policy from its file-shaped JSON; `created` tells which. */
  putPolicy(fqn: string, document: unknown): { created: boolean; policy: PolicyView };
  deletePolicy(fqn: string): void;

  close(): void;
}

/** PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes. */
const MAX_USER_LENGTH = 63;
/** 24 random bytes: 192 bits, 32 URL-safe characters (passwords and HTTP tokens alike). */
const PASSWORD_BYTES = 24;
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);
/** The header and idle timeouts of an API-created HTTP binding (the config file's defaults). */
const HTTP_HEADER_TIMEOUT_MS = 10_000;
const HTTP_IDLE_TIMEOUT_MS = 60_000;

interface Merged {
  config: SempipeConfig;
  suspended: Map<string, string>;
  source: Map<string, Source>;
}

export function openCatalog(opts: CatalogOptions): Catalog {
  const store = openStateStore(opts.stateDir);
  let file = opts.fileConfig;
  const listeners = new Set<ChangeListener>();

  const merged = (): Merged => merge(file, store);
  const changed = (): void => {
    const config = merged().config;
    for (const listener of listeners) listener(config);
  };

  const fileOwns = (fqn: string): boolean =>
    file.services.some((s) => s.fqn === fqn) || file.bindings.some((b) => b.fqn === fqn) || file.policies.some((p) => p.fqn === fqn);
  const refuseFileDefined = (fqn: string): void => {
    if (fileOwns(fqn)) throw new CatalogError('conflict', `${fqn} is defined in the config file`);
  };
  const apiService = (fqn: string): AnyServiceConfig => {
    checkFqn(fqn, 'service');
    refuseFileDefined(fqn);
    const s = store.services().find((x) => x.fqn === fqn);
    if (s === undefined) throw new CatalogError('not_found', `${fqn} does not exist`);
    return s;
  };
  const apiBinding = (fqn: string): StoredBinding | StoredHttpBinding => {
    checkFqn(fqn, 'binding');
    refuseFileDefined(fqn);
    const b = [...store.bindings(), ...store.httpBindings()].find((x) => x.fqn === fqn);
    if (b === undefined) throw new CatalogError('not_found', `${fqn} does not exist`);
    return b;
  };
  const remove = (kind: ResourceKind, fqn: string): void => {
    checkFqn(fqn, kind);
    refuseFileDefined(fqn);
    if (store.delete(kind, fqn) === undefined) throw new CatalogError('not_found', `${fqn} does not exist`);
    changed();
  };

  const listBindings = (): BindingView[] => {
    const m = merged();
    const views = m.config.bindings.map((b) => bindingView(b, m.source.get(b.fqn)!));
    for (const b of [...store.bindings(), ...store.httpBindings()]) {
      const problem = m.suspended.get(b.fqn);
      if (problem !== undefined) views.push({ ...bindingView(storedToConfig(b), 'api'), active: false, problem });
    }
    return views;
  };

  const issueToken = (b: StoredHttpBinding): IssuedCredentials => {
    const token = randomBytes(PASSWORD_BYTES).toString('base64url');
    store.putHttpBinding({ ...b, tokenSha256: sha256Hex(token) });
    const host = WILDCARD_HOSTS.has(b.listen.host) ? '127.0.0.1' : b.listen.host;
    return { fqn: b.fqn, client: b.client, token, url: `${b.tls === undefined ? 'http' : 'https'}://${formatHostPort({ host, port: b.listen.port })}` };
  };

  const issue = (b: StoredBinding): { stored: StoredBinding; credentials: IssuedCredentials } => {
    const password = randomBytes(PASSWORD_BYTES).toString('base64url');
    const stored = { ...b, verifier: createScramVerifier(password) };
    return { stored, credentials: { fqn: b.fqn, user: b.user, password, uri: connectionUri(stored, password) } };
  };

  return {
    effective: () => merged().config,
    setFileConfig(config) {
      file = config;
      changed();
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    problems: () => [...merged().suspended].map(([fqn, reason]) => ({ fqn, reason })),
    sequence: () => store.sequence(),

    listServices() {
      const m = merged();
      return m.config.services.map((s) => serviceView(s, m.source.get(s.fqn)!));
    },
    getService(fqn) {
      checkFqn(fqn, 'service');
      const m = merged();
      const s = m.config.services.find((x) => x.fqn === fqn);
      if (s === undefined) throw new CatalogError('not_found', `${fqn} does not exist`);
      return serviceView(s, m.source.get(fqn)!);
    },
    createService(service) {
      refuseFileDefined(service.fqn);
      if (store.services().some((s) => s.fqn === service.fqn)) throw new CatalogError('conflict', `${service.fqn} already exists`);
      store.putService(service);
      changed();
      return serviceView(service, 'api');
    },
    updateService(fqn, service) {
      const current = apiService(fqn);
      if (service.fqn !== fqn) throw new CatalogError('invalid', `the body names ${service.fqn}, the path ${fqn}`, 'fqn');
      let next: AnyServiceConfig = service;
      if (service.protocol === 'postgres' && current.protocol === 'postgres') {
        const password = service.upstream.password ?? current.upstream.password;
        next = { ...service, upstream: { ...service.upstream, ...(password !== undefined && { password }) } };
      }
      store.putService(next);
      changed();
      return serviceView(next, 'api');
    },
    deleteService(fqn) {
      apiService(fqn);
      const users = [...file.bindings, ...store.bindings(), ...store.httpBindings()].filter((b) => b.service === fqn).map((b) => b.fqn);
      if (users.length > 0) throw new CatalogError('conflict', `${fqn} is used by ${users.join(', ')}; delete those bindings first`);
      remove('service', fqn);
    },
    rotateService(fqn, password) {
      const current = apiService(fqn);
      if (current.protocol !== 'postgres') throw new CatalogError('invalid', `${fqn} is an ${current.protocol} service; replace its upstream credential with PUT`, 'password');
      store.putService({ ...current, upstream: { ...current.upstream, password } });
      changed();
    },
    rotateServiceCredential(fqn, credential) {
      const current = apiService(fqn);
      if (current.protocol !== 'http') throw new CatalogError('invalid', `${fqn} is a ${current.protocol} service; rotate its password instead`, 'password');
      const { basic: _basic, bearer: _bearer, ...kept } = current.upstream;
      const upstream =
        credential.headers !== undefined
          ? { ...current.upstream, headers: credential.headers }
          : { ...kept, ...(credential.basic !== undefined && { basic: credential.basic }), ...(credential.bearer !== undefined && { bearer: credential.bearer }) };
      store.putService({ ...current, upstream });
      changed();
    },

    listBindings,
    getBinding(fqn) {
      checkFqn(fqn, 'binding');
      const found = listBindings().find((b) => b.fqn === fqn);
      if (found === undefined) throw new CatalogError('not_found', `${fqn} does not exist`);
      return found;
    },
    async createBinding(input) {
      refuseFileDefined(input.fqn);
      if ([...store.bindings(), ...store.httpBindings()].some((b) => b.fqn === input.fqn)) throw new CatalogError('conflict', `${input.fqn} already exists`);
      const user = input.user ?? parseFqn(input.fqn, 'binding').name;
      if (Buffer.byteLength(user) > MAX_USER_LENGTH) {
        throw new CatalogError('invalid', `the client user "${user}" is longer than ${MAX_USER_LENGTH} bytes; give a shorter user`, 'user');
      }
      const listen = input.listen ?? { host: '127.0.0.1', port: await freePort('127.0.0.1', usedPorts(merged().config)) };
      // Everything below is synchronous up to the commit: no other change can interleave.
      const m = merged();
      const service = m.config.services.find((s) => s.fqn === input.service);
      if (service === undefined) throw new CatalogError('invalid', `unknown service "${input.service}"`, 'service');
      if ((service.protocol === 'http') !== (input.auth === 'bearer')) {
        const reason = service.protocol === 'http' ? 'needs auth "bearer"' : 'cannot use auth "bearer" (it is for http services)';
        throw new CatalogError('invalid', `${input.service} is ${service.protocol === 'http' ? 'an http' : `a ${service.protocol}`} service: the binding ${reason}`, 'auth');
      }
      if (input.auth === 'bearer') {
        const credentials = issueToken({
          fqn: input.fqn,
          service: input.service,
          listen,
          auth: 'bearer',
          ...(input.tls !== undefined && { tls: { cert: input.tls.cert, key: input.tls.key } }),
          ...(input.maxBodySize !== undefined && { maxBodySize: input.maxBodySize }),
          headerTimeoutMs: HTTP_HEADER_TIMEOUT_MS,
          idleTimeoutMs: HTTP_IDLE_TIMEOUT_MS,
          client: input.client ?? parseFqn(input.fqn, 'binding').name,
          tokenSha256: '',
        });
        changed();
        return credentials;
      }
      if (service.protocol !== 'postgres') {
        throw new CatalogError('invalid', `${input.service} is a ${service.protocol} service: its bindings are defined in the config file (the API issues PostgreSQL and HTTP bindings)`, 'service');
      }
      const owner = listenerOwner(m.config, listen);
      if (owner !== undefined) throw new CatalogError('conflict', `address ${formatHostPort(listen)} is already used by ${owner}`);
      const { stored, credentials } = issue({
        fqn: input.fqn,
        service: input.service,
        listen,
        database: input.database ?? service.upstream.database,
        auth: input.auth,
        allowPasswordWithoutTls: input.allowPasswordWithoutTls,
        ...(input.tls !== undefined && { tls: input.tls }),
        user,
        verifier: '',
      });
      store.putBinding(stored);
      changed();
      return credentials;
    },
    rotateBinding(fqn) {
      const current = apiBinding(fqn);
      if ('tokenSha256' in current) {
        const credentials = issueToken(current);
        changed();
        return credentials;
      }
      const { stored, credentials } = issue(current);
      store.putBinding(stored);
      changed();
      return credentials;
    },
    deleteBinding(fqn) {
      remove('binding', fqn);
    },

    listPolicies() {
      const m = merged();
      return m.config.policies.map((p) => policyView(p, m.source.get(p.fqn)!));
    },
    getPolicy(fqn) {
      checkFqn(fqn, 'policy');
      const m = merged();
      const p = m.config.policies.find((x) => x.fqn === fqn);
      if (p === undefined) throw new CatalogError('not_found', `${fqn} does not exist`);
      return policyView(p, m.source.get(fqn)!);
    },
    putPolicy(fqn, document) {
      checkFqn(fqn, 'policy');
      refuseFileDefined(fqn);
      const body = typeof document === 'object' && document !== null && !Array.isArray(document) && !('fqn' in document) ? { fqn, ...document } : document;
      const result = validatePolicy(body);
      if (!result.success) {
        const [first] = result.issues;
        throw new CatalogError('invalid', first!.message, first!.path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join(''));
      }
      if (result.policy.fqn !== fqn) throw new CatalogError('invalid', `the body names ${result.policy.fqn}, the path ${fqn}`, 'fqn');
      const created = !store.policies().some((p) => p.fqn === fqn);
      store.putPolicy({ fqn, document: body });
      changed();
      return { created, policy: policyView(result.policy, 'api') };
    },
    deletePolicy(fqn) {
      remove('policy', fqn);
    },

    close: () => store.close(),
  };
}

function checkFqn(fqn: string, type: FqnType): void {
  try {
    parseFqn(fqn, type);
  } catch (err) {
    if (err instanceof FqnError) throw new CatalogError('invalid', err.message, 'fqn');
    throw err;
  }
}

function merge(file: SempipeConfig, store: StateStore): Merged {
  const source = new Map<string, Source>();
  const services = structuredClone(file.services);
  const bindings = structuredClone(file.bindings);
  const policies = structuredClone(file.policies);
  for (const r of [...services, ...bindings, ...policies]) source.set(r.fqn, 'file');
  const suspended = new Map<string, string>();

  for (const s of store.services()) {
    if (source.has(s.fqn)) continue;
    services.push(s);
    source.set(s.fqn, 'api');
  }
  const listeners = new Map<string, string>([[formatHostPort(file.admin.listen), 'the admin listener']]);
  for (const b of bindings) for (const a of b.listen) listeners.set(formatListenAddress(a), `${b.fqn} (config file)`);
  const serviceNames = new Set(services.map((s) => s.fqn));
  for (const b of [...store.bindings(), ...store.httpBindings()]) {
    if (source.has(b.fqn)) continue;
    const address = formatHostPort(b.listen);
    const owner = listeners.get(address);
    if (!serviceNames.has(b.service)) {
      suspended.set(b.fqn, `its service ${b.service} does not exist`);
    } else if (owner !== undefined) {
      suspended.set(b.fqn, `address ${address} is already used by ${owner}`);
    } else {
      bindings.push(storedToConfig(b));
      listeners.set(address, b.fqn);
      source.set(b.fqn, 'api');
    }
  }
  for (const p of store.policies()) {
    if (source.has(p.fqn)) continue;
    const result = validatePolicy(p.document);
    // Stored documents were validated when they were put; one that a newer schema refuses is left out.
    if (!result.success) continue;
    policies.push(result.policy);
    source.set(p.fqn, 'api');
  }
  return { config: { ...structuredClone(file), services, bindings, policies }, suspended, source };
}

function storedToConfig(b: StoredBinding | StoredHttpBinding): AnyBindingConfig {
  if (!('tokenSha256' in b)) return toBindingConfig(b);
  const { client, tokenSha256, listen, ...rest } = b;
  const config: HttpBindingConfig = { ...rest, protocol: 'http', listen: [listen], clients: [{ name: client, tokenSha256 }] };
  return config;
}

function toBindingConfig(b: StoredBinding): BindingConfig {
  return {
    fqn: b.fqn,
    service: b.service,
    listen: [b.listen],
    database: b.database,
    auth: b.auth,
    allowPasswordWithoutTls: b.allowPasswordWithoutTls,
    clients: [{ user: b.user, verifier: b.verifier }],
    ...(b.tls !== undefined && { tls: b.tls }),
  };
}

function listenerOwner(config: SempipeConfig, listen: HostPort): string | undefined {
  const address = formatHostPort(listen);
  if (formatHostPort(config.admin.listen) === address) return 'the admin listener';
  return config.bindings.find((b) => b.listen.some((a) => formatListenAddress(a) === address))?.fqn;
}

function usedPorts(config: SempipeConfig): Set<number> {
  return new Set([config.admin.listen.port, ...config.bindings.flatMap((b) => b.listen.flatMap((a) => (isUnixSocket(a) ? [] : [a.port])))]);
}

/** A port the OS says is free on `host` and that no configured listener names. */
async function freePort(host: string, taken: ReadonlySet<number>): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, host, () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
      });
    });
    if (!taken.has(port)) return port;
  }
}

/** `postgres://user:password@host:port/database`, with sslmode=require when the binding demands TLS. */
function connectionUri(b: StoredBinding, password: string): string {
  const host = WILDCARD_HOSTS.has(b.listen.host) ? '127.0.0.1' : b.listen.host;
  const hostPort = formatHostPort({ host, port: b.listen.port });
  const query = b.tls?.required === true ? '?sslmode=require' : '';
  return `postgres://${encodeURIComponent(b.user)}:${encodeURIComponent(password)}@${hostPort}/${encodeURIComponent(b.database)}${query}`;
}

function serviceView(s: AnyServiceConfig, source: Source): ServiceView {
  if (s.protocol === 'http') {
    const { url, headers, basic, bearer, ca, timeoutMs, bodyTimeoutMs, connections } = s.upstream;
    const upstream: HttpUpstreamView = {
      url,
      headers: Object.keys(headers),
      ...(basic !== undefined && { basic: { user: basic.user } }),
      ...(bearer !== undefined && { bearer: true as const }),
      ...(ca !== undefined && { ca }),
      timeoutMs,
      bodyTimeoutMs,
      connections,
    };
    return { fqn: s.fqn, protocol: 'http', upstream, source };
  }
  const { password: _password, tlsNegotiation, ...upstream } = s.upstream;
  return { fqn: s.fqn, protocol: s.protocol, upstream: { ...upstream, tls_negotiation: tlsNegotiation ?? 'postgres' }, source };
}

function bindingView(b: AnyBindingConfig, source: Source): BindingView {
  if (b.protocol === 'http') {
    return {
      fqn: b.fqn,
      service: b.service,
      listen: b.listen.length === 1 ? formatListenAddress(b.listen[0]!) : b.listen.map(formatListenAddress),
      auth: b.auth,
      users: b.clients.map((c) => c.name),
      ...(b.tls !== undefined && { tls: { required: true } }),
      source,
      active: true,
    };
  }
  return {
    fqn: b.fqn,
    service: b.service,
    listen: b.listen.length === 1 ? formatListenAddress(b.listen[0]!) : b.listen.map(formatListenAddress),
    database: b.database,
    auth: b.auth,
    users: b.clients.map((c) => c.user),
    ...(b.tls !== undefined && { tls: { required: b.tls.required } }),
    source,
    active: true,
  };
}

/** The inverse of the policy schema's normalization, so that GET returns what PUT accepts. */
function policyView(p: PolicyDocument, source: Source): PolicyView {
  const limits: Record<string, unknown> = {};
  if (p.limits.maxRows !== undefined) limits.max_rows = p.limits.maxRows;
  if (p.limits.statementTimeoutMs !== undefined) limits.statement_timeout = `${p.limits.statementTimeoutMs}ms`;
  if (p.limits.rate !== undefined) limits.rate = p.limits.rate;
  if (p.limits.bindingRate !== undefined) limits.binding_rate = p.limits.bindingRate;
  if (p.limits.maxSessions !== undefined) limits.max_sessions = p.limits.maxSessions;
  return {
    fqn: p.fqn,
    realm: p.realm,
    ...(p.allow !== undefined && { allow: p.allow }),
    deny: {
      classes: p.deny.classes,
      functions: p.deny.functions,
      tables: p.deny.tables,
      methods: p.deny.methods,
      paths: p.deny.paths,
      ...(p.deny.replicationCommands !== undefined && { replication_commands: p.deny.replicationCommands }),
    },
    read_only: p.readOnly,
    side_effect_functions: p.sideEffectFunctions,
    limits,
    hooks: p.hooks.map((h) => ({ classes: h.classes, url: h.url, timeout: `${h.timeoutMs}ms`, on_error: h.onError })),
    notifications: p.notifications,
    source,
  };
}
