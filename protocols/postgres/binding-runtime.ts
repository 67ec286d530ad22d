// What one PostgreSQL binding needs at connection time, prepared once per config (re)load: the
// client credentials with parsed SCRAM verifiers, the TLS context and its channel-binding hash, and
// the upstream target with the service's credentials.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ClientAuthMethod, BindingConfig, ServiceConfig, SempipeConfig } from '../../control/config.js';
import type { StageFactory } from '../../proxy/stage.js';
import { scramMockSettings, type ScramMockSettings } from './auth/scram-mock.js';
import { tlsServerEndPoint } from './auth/scram-server.js';
import { parseScramVerifier, type ScramVerifier } from './auth/scram-verifier.js';
import type { UpstreamTarget } from './upstream-connect.js';
import type { IdleLimits } from './upstream-pool.js';

export interface PgClientCredential {
  password?: string;
  verifier?: string;
  scram?: ScramVerifier;
}

export interface PgBindingRuntime {
  fqn: string;
  serviceFqn: string;
  database: string;
  auth: ClientAuthMethod;
  allowPasswordWithoutTls: boolean;
  clients: Map<string, PgClientCredential>;
  /** How an unknown user's SCRAM exchange looks; absent without a salt secret (a per-process one is used). */
  scramMock?: ScramMockSettings;
  tls?: { context: SecureContext; required: boolean; endPoint: Buffer };
  upstream: UpstreamTarget;
  /** How long a reset upstream connection waits for the next session, how many wait per key, when one is checked (upstream-pool.ts). */
  upstreamIdle: IdleLimits;
  authTimeoutMs: number;
  /** How long the server has to answer a statement a limit cancelled before the session ends (relay.ts). */
  cancelGraceMs: number;
  maxMessageSize: number;
  stages: readonly StageFactory[];
}

export function createPgBindingRuntime(
  binding: BindingConfig,
  service: ServiceConfig,
  config: SempipeConfig,
  stages: readonly StageFactory[],
): PgBindingRuntime {
  const clients = new Map<string, PgClientCredential>();
  for (const c of binding.clients) {
    clients.set(c.user, { password: c.password, verifier: c.verifier, scram: c.verifier ? parseScramVerifier(c.verifier) : undefined });
  }
  const verifiers = [...clients.values()].flatMap((c) => (c.scram ? [c.scram] : []));
  const scramMock = config.saltSecret === undefined ? undefined : scramMockSettings(Buffer.from(config.saltSecret, 'utf8'), binding.fqn, verifiers);
  let tls: PgBindingRuntime['tls'];
  if (binding.tls) {
    const cert = readFileSync(binding.tls.cert);
    const key = readFileSync(binding.tls.key);
    tls = { context: createSecureContext({ cert, key }), required: binding.tls.required, endPoint: tlsServerEndPoint(cert) };
  }
  const up = service.upstream;
  return {
    fqn: binding.fqn,
    serviceFqn: service.fqn,
    database: binding.database,
    auth: binding.auth,
    allowPasswordWithoutTls: binding.allowPasswordWithoutTls,
    clients,
    ...(scramMock !== undefined && { scramMock }),
    tls,
    upstream: {
      host: up.host,
      port: up.port,
      database: up.database,
      user: up.user,
      password: up.password,
      tls: up.tls,
      tlsNegotiation: up.tlsNegotiation,
      ca: up.ca,
      connectTimeoutMs: config.limits.connectTimeoutMs,
      serviceFqn: service.fqn,
    },
    upstreamIdle: {
      timeoutMs: config.limits.upstreamIdleTimeoutMs,
      max: config.limits.upstreamIdleMax,
      checkDelayMs: config.limits.upstreamCheckDelayMs,
      checkTimeoutMs: config.limits.connectTimeoutMs,
    },
    authTimeoutMs: config.limits.authTimeoutMs,
    cancelGraceMs: config.limits.cancelGraceMs,
    maxMessageSize: config.limits.maxMessageSize,
    stages,
  };
}

const overUnixSockets = new WeakMap<PgBindingRuntime, PgBindingRuntime>();

/**
 * The binding as served through its Unix sockets: without TLS, as PostgreSQL answers N to an
 * SSLRequest on a Unix socket (libpq does not even ask there); so tls.required and the rule against
 * cleartext passwords without TLS, which guard the network, do not apply to a local connection.
 * Made once per runtime, on the first such connection.
 */
export function overUnixSocket(rt: PgBindingRuntime): PgBindingRuntime {
  let local = overUnixSockets.get(rt);
  if (local === undefined) {
    local = { ...rt, tls: undefined, allowPasswordWithoutTls: true };
    overUnixSockets.set(rt, local);
  }
  return local;
}
