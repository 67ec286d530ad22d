// What one PostgreSQL binding needs at connection time, prepared once per config (re)load: the
// client credentials with parsed SCRAM verifiers, the TLS context and its channel-binding hash, and
// the upstream target with the service's credentials.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ClientAuthMethod, PgBindingConfig, PgServiceConfig, SempipeConfig } from '../../control/config.js';
import type { StageFactory } from '../../proxy/stage.js';
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
  tls?: { context: SecureContext; required: boolean; endPoint: Buffer };
  upstream: UpstreamTarget;
  /** How long a reset upstream connection waits for the next session, how many wait per key, when one is checked (upstream-pool.ts). */
  upstreamIdle: IdleLimits;
  authTimeoutMs: number;
  maxMessageSize: number;
  stages: readonly StageFactory[];
}

export function createPgBindingRuntime(
  binding: PgBindingConfig,
  service: PgServiceConfig,
  config: SempipeConfig,
  stages: readonly StageFactory[],
): PgBindingRuntime {
  const clients = new Map<string, PgClientCredential>();
  for (const c of binding.clients) {
    clients.set(c.user, { password: c.password, verifier: c.verifier, scram: c.verifier ? parseScramVerifier(c.verifier) : undefined });
  }
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
    tls,
    upstream: {
      host: up.host,
      port: up.port,
      database: up.database,
      user: up.user,
      password: up.password,
      tls: up.tls,
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
    maxMessageSize: config.limits.maxMessageSize,
    stages,
  };
}
