// The composition root shared by the primary, the workers and the demo: which protocols exist,
// which stages every session runs, and how a config becomes the data plane's binding specs.
import { isUnixSocket, type AnyBindingConfig, type HttpServiceConfig, type SempipeConfig, type ServiceConfig } from '../control/config.js';
import { parseFqn, parseRealm, realmCovers } from '../control/fqn.js';
import type { AuditLog } from '../control/audit.js';
import type { Metrics } from '../control/metrics.js';
import { createAuditStage } from '../control/stages/audit-stage.js';
import { createMetricsStage, recordUpstreamError } from '../control/stages/metrics-stage.js';
import type { PolicySet } from '../control/policy/policy-set.js';
import { createPolicyStage, type Classification } from '../control/stages/policy-stage.js';
import type { SessionSlots } from '../proxy/session-slots.js';
import { classifyForSession } from '../protocols/postgres/replication-commands.js';
import type { BindingSpec, ConnectionHandler, DataPlaneOptions, PendingAuthLimits } from '../proxy/data-plane.js';
import type { SessionInfo, StageFactory } from '../proxy/stage.js';
import { deriveScramSalt } from '../protocols/postgres/auth/scram-mock.js';
import { createScramVerifier, DEFAULT_SCRAM_ITERATIONS } from '../protocols/postgres/auth/scram-verifier.js';
import { createPgBindingRuntime, type PgBindingRuntime } from '../protocols/postgres/binding-runtime.js';
import { handlePgConnection, retainPooledUpstreams } from '../protocols/postgres/session.js';
import { errorResponse } from '../protocols/postgres/backend-messages.js';
import { UpstreamError } from '../protocols/postgres/upstream-connect.js';
import { pgErrors } from '../protocols/postgres/wire-errors.js';
import { createMysqlBindingRuntime, type MysqlBindingRuntime } from '../protocols/mysql/binding-runtime.js';
import { greetingErrPacket } from '../protocols/mysql/messages.js';
import { handleMysqlConnection } from '../protocols/mysql/session.js';
import { classifyMysql } from '../protocols/mysql/sql-classify.js';
import { MysqlUpstreamError } from '../protocols/mysql/upstream-connect.js';
import type { Logger } from 'pino';
import { createHttpBindingRuntime, retainHttpPools, type HttpBindingRuntime } from '../protocols/http/binding-runtime.js';
import { handleHttpConnection, retainHttpServers } from '../protocols/http/binding-server.js';
import { loadRefusalResponse } from '../protocols/http/problems.js';
import { classifyRequest } from '../protocols/http/request-class.js';

export const protocolHandlers: Record<string, ConnectionHandler> = {
  postgres: (socket, runtime, host, peer) => handlePgConnection(socket, runtime as PgBindingRuntime, host, peer),
  mysql: (socket, runtime, host, peer) => handleMysqlConnection(socket, runtime as MysqlBindingRuntime, host, peer),
  http: (socket, runtime, host, peer) => handleHttpConnection(socket, runtime as HttpBindingRuntime, host, peer),
};

/** What each protocol answers a connection refused for load (DataPlaneOptions.refusalReplies). */
export const protocolRefusalReplies: Record<string, Buffer> = {
  postgres: errorResponse(pgErrors.tooManyClients()),
  // MySQL's and MariaDB's answer at max_connections: ER_CON_COUNT_ERROR in place of the greeting.
  mysql: greetingErrPacket(1040, 'Too many connections'),
  http: loadRefusalResponse(),
};

/**
 * A connection still unauthenticated this long after its protocol's auth timeout is destroyed by
 * the data plane: time for the handler's own timeout error to reach a client that then closes.
 */
const PENDING_AUTH_GRACE_MS = 1000;

/** The data plane's bounds on unauthenticated connections, from the config's limits. */
export function pendingAuthLimits(config: SempipeConfig): PendingAuthLimits {
  return { max: config.limits.maxPendingAuth, deadlineMs: config.limits.authTimeoutMs + PENDING_AUTH_GRACE_MS };
}

/**
 * Derives a SCRAM verifier once for every client configured with a plain password, so all workers
 * share one salt and no worker repeats the key derivation. With a salt secret the salt derives from
 * it, the binding and the user, so it stays the same at every reload and restart (a random one would
 * tell real users from unknown ones, whose salts never change). The plain password stays only where
 * md5 or cleartext auth needs it.
 */
export function prepareCredentials(config: SempipeConfig): SempipeConfig {
  const secret = config.saltSecret === undefined ? undefined : Buffer.from(config.saltSecret, 'utf8');
  for (const b of config.bindings) {
    // MySQL's plugins check hashes of their own, derived from the password (protocols/mysql/binding-runtime.ts);
    // HTTP clients present tokens, kept as their SHA-256 only.
    if (b.protocol === 'mysql' || b.protocol === 'http') continue;
    for (const c of b.clients) {
      if (c.verifier === undefined && c.password !== undefined) {
        const salt = secret === undefined ? undefined : deriveScramSalt(secret, b.fqn, c.user);
        c.verifier = createScramVerifier(c.password, DEFAULT_SCRAM_ITERATIONS, salt);
        if (b.auth === 'scram-sha-256') delete c.password;
      }
    }
  }
  return config;
}

/** What the policy stage needs from its process: the live policy set and session counting. */
export interface PolicyWiring {
  policies: PolicySet;
  slots: SessionSlots;
  /** Worker processes sharing the listeners (binding_rate is split between them). */
  workerCount: number;
}

export function createStages(metrics: Metrics, audit: AuditLog | undefined, policy: PolicyWiring): StageFactory[] {
  const stages = [createMetricsStage(metrics)];
  if (audit !== undefined) stages.push(createAuditStage(audit));
  const classify = (text: string, session: SessionInfo): Classification =>
    session.protocol === 'http' ? { statements: [classifyRequest(text)] }
    : session.protocol === 'mysql' ? classifyMysql(text)
    : classifyForSession(text, session.replication);
  stages.push(createPolicyStage({ ...policy, classify, metrics }));
  return stages;
}

/** The bindings `serve_bindings` lets this process's own workers listen for. */
export function servedBindings(config: SempipeConfig): AnyBindingConfig[] {
  const serve = config.serveBindings ?? '::/';
  if (serve === 'none') return [];
  const realm = parseRealm(serve);
  return config.bindings.filter((b) => realmCovers(realm, parseFqn(b.fqn)));
}

/** The Unix socket files of the bindings this process serves. */
export function unixSocketPaths(config: SempipeConfig): string[] {
  return servedBindings(config).flatMap((b) => b.listen.flatMap((a) => (isUnixSocket(a) ? [a.path] : [])));
}

export function bindingSpecs(config: SempipeConfig, stages: readonly StageFactory[]): BindingSpec[] {
  const services = new Map(config.services.map((s) => [s.fqn, s]));
  return servedBindings(config).map((b) => {
    const service = services.get(b.service)!;
    // The config loader fills in each binding's protocol from its service, so the two agree.
    const runtime =
      b.protocol === 'http' ? createHttpBindingRuntime(b, service as HttpServiceConfig, config.limits.connectTimeoutMs, stages)
      : b.protocol === 'mysql' ? createMysqlBindingRuntime(b, service as ServiceConfig, config, stages)
      : createPgBindingRuntime(b, service as ServiceConfig, config, stages);
    return { fqn: b.fqn, protocol: service.protocol, listen: b.listen, ...(b.unixSocket !== undefined && { unixSocket: b.unixSocket }), runtime };
  });
}

/**
 * What the protocols keep between sessions follows a newly applied set of bindings: PostgreSQL's
 * idle upstream connections stay only for the servers and credentials the bindings still use.
 */
export function retainProtocolState(specs: readonly BindingSpec[]): void {
  retainPooledUpstreams(specs.filter((s) => s.protocol === 'postgres').map((s) => s.runtime as PgBindingRuntime));
  const http = specs.filter((s) => s.protocol === 'http').map((s) => s.runtime as HttpBindingRuntime);
  retainHttpServers(http);
  retainHttpPools(http);
}

/** Refusals are logged at most this often per process; the metric counts every one. */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

/** Data-plane callbacks that report to metrics and the operator log. */
export function dataPlaneReporting(metrics: Metrics, log: Logger): Pick<DataPlaneOptions, 'onUpstreamError' | 'onStartupRejected' | 'onError' | 'onRefused' | 'onPendingAuth'> {
  let refusalLoggedAt = -Infinity;
  let refusedSinceLog = 0;
  return {
    onRefused: (binding, _protocol, reason) => {
      metrics.connectionsRefused.inc({ binding, reason });
      refusedSinceLog++;
      const now = Date.now();
      if (now - refusalLoggedAt < REFUSAL_LOG_INTERVAL_MS) return;
      log.warn({ binding, reason, refused: refusedSinceLog }, 'connections refused: limits.max_pending_auth reached');
      refusalLoggedAt = now;
      refusedSinceLog = 0;
    },
    onPendingAuth: (binding, delta) => metrics.connectionsPendingAuth.inc({ binding }, delta),
    // At debug only: port scanners and health checks produce these, and PostgreSQL itself answers them with silence.
    onStartupRejected: (binding, client, reason) => {
      metrics.startupRejected.inc({ binding, reason });
      log.debug({ binding, client, reason }, 'startup packet rejected');
    },
    onUpstreamError: (binding, error) => {
      const code =
        error instanceof UpstreamError ? (error.upstreamSqlState ?? error.code)
        : error instanceof MysqlUpstreamError ? String(error.upstreamErrno ?? 'connect')
        // HTTP: Node's or undici's error code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...).
        : ((error as { code?: unknown }).code?.toString() ?? 'unknown');
      recordUpstreamError(metrics, binding, code);
      // The client was told the service and the kind of failure; where the server is and what Node or
      // the server said about it goes here only.
      const where =
        error instanceof UpstreamError || error instanceof MysqlUpstreamError ? { upstream: error.address, reason: error.reason, detail: error.upstreamMessage } : {};
      log.warn({ binding, code, ...where, err: error instanceof Error ? error.message : String(error) }, 'upstream error');
    },
    onError: (message, error) => log.error({ err: error instanceof Error ? error.message : String(error) }, message),
  };
}
