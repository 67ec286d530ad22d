// What one MySQL binding needs at connection time, prepared once per config (re)load: the client
// credentials as the hashes each auth plugin checks against, the TLS context, and the upstream
// target with the service's credentials.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { MysqlBindingConfig, SempipeConfig, ServiceConfig } from '../../control/config.js';
import type { StageFactory } from '../../proxy/stage.js';
import { sha2StoredHash } from './auth/caching-sha2.js';
import { nativeStoredHash } from './auth/native-password.js';
import type { MysqlAuthMethod } from './config-schema.js';
import type { MysqlUpstreamTarget } from './upstream-connect.js';

export interface MysqlClientCredential {
  /** SHA1(SHA1(password)) for mysql_native_password. */
  native: Buffer;
  /** SHA256(SHA256(password)) for caching_sha2_password. */
  sha2: Buffer;
}

export interface MysqlBindingRuntime {
  fqn: string;
  serviceFqn: string;
  /** The database name clients use; the upstream's is `upstream.database`. */
  database: string;
  auth: MysqlAuthMethod;
  clients: Map<string, MysqlClientCredential>;
  tls?: { context: SecureContext; required: boolean };
  upstream: MysqlUpstreamTarget;
  /**
   * Users whose caching_sha2_password full authentication succeeded in this process with these
   * credentials: later logins take the fast path, as with MySQL's own cache (a new runtime, i.e. a
   * reload or rotation, starts empty).
   */
  sha2Cache: Set<string>;
  authTimeoutMs: number;
  maxMessageSize: number;
  stages: readonly StageFactory[];
}

/** Checked in place of an unknown user's hashes, so that a wrong user costs what a wrong password costs. */
export const UNKNOWN_USER: MysqlClientCredential = (() => {
  const password = randomBytes(16).toString('hex');
  return { native: nativeStoredHash(password), sha2: sha2StoredHash(password) };
})();

export function createMysqlBindingRuntime(
  binding: MysqlBindingConfig,
  service: ServiceConfig,
  config: SempipeConfig,
  stages: readonly StageFactory[],
): MysqlBindingRuntime {
  const clients = new Map<string, MysqlClientCredential>();
  for (const c of binding.clients) {
    if (c.password !== undefined) clients.set(c.user, { native: nativeStoredHash(c.password), sha2: sha2StoredHash(c.password) });
  }
  let tls: MysqlBindingRuntime['tls'];
  if (binding.tls) {
    tls = { context: createSecureContext({ cert: readFileSync(binding.tls.cert), key: readFileSync(binding.tls.key) }), required: binding.tls.required };
  }
  const up = service.upstream;
  return {
    fqn: binding.fqn,
    serviceFqn: service.fqn,
    database: binding.database,
    auth: binding.auth,
    clients,
    tls,
    upstream: {
      host: up.host,
      port: up.port,
      database: up.database,
      user: up.user,
      password: up.password ?? '',
      tls: up.tls,
      ca: up.ca,
      connectTimeoutMs: config.limits.connectTimeoutMs,
      maxMessageSize: config.limits.maxMessageSize,
    },
    sha2Cache: new Set(),
    authTimeoutMs: config.limits.authTimeoutMs,
    maxMessageSize: config.limits.maxMessageSize,
    stages,
  };
}
