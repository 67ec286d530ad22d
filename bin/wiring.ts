// The composition root shared by the primary, the workers and the demo: which protocols exist,
// which stages every session runs, and how a config becomes the data plane's binding specs.
import type { BindingConfig, HttpServiceConfig, PgServiceConfig, SempipeConfig } from '../control/config.js';
import { parseFqn, parseRealm, realmCovers } from '../control/fqn.js';
import type { AuditLog } from '../control/audit.js';
import type { Metrics } from '../control/metrics.js';
import { createAuditStage } from '../control/stages/audit-stage.js';
import { createMetricsStage, recordUpstreamError } from '../control/stages/metrics-stage.js';
import type { PolicySet } from '../control/policy/policy-set.js';
import { createPolicyStage, type Classification } from '../control/stages/policy-stage.js';
import type { SessionSlots } from '../proxy/session-slots.js';
import { classifySql } from '../protocols/postgres/sql-classify.js';
import type { BindingSpec, ConnectionHandler, DataPlaneOptions } from '../proxy/data-plane.js';
import type { StageFactory } from '../proxy/stage.js';
import { createScramVerifier } from '../protocols/postgres/auth/scram-verifier.js';
import { createPgBindingRuntime, type PgBindingRuntime } from '../protocols/postgres/binding-runtime.js';
import { handlePgConnection, retainPooledUpstreams } from '../protocols/postgres/session.js';
import { UpstreamError } from '../protocols/postgres/upstream-connect.js';
import type { Logger } from 'pino';
import { createHttpBindingRuntime, retainHttpPools, type HttpBindingRuntime } from '../protocols/http/binding-runtime.js';
import { handleHttpConnection, retainHttpServers } from '../protocols/http/binding-server.js';
import { classifyRequest } from '../protocols/http/request-class.js';

export const protocolHandlers: Record<string, ConnectionHandler> = {
  postgres: (socket, runtime, host) => handlePgConnection(socket, runtime as PgBindingRuntime, host),
  http: (socket, runtime, host) => handleHttpConnection(socket, runtime as HttpBindingRuntime, host),
};

/**
 * Derives a SCRAM verifier once for every client configured with a plain password, so all workers
 * share one salt and no worker repeats the key derivation. The plain password stays only where
 * md5 or cleartext auth needs it.
 */
export function prepareCredentials(config: SempipeConfig): SempipeConfig {
  for (const b of config.bindings) {
    if (b.auth === 'bearer') continue;
    for (const c of b.clients) {
      if (c.verifier === undefined && c.password !== undefined) {
        c.verifier = createScramVerifier(c.password);
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
  const classify = (text: string, protocol: string): Classification => (protocol === 'http' ? { statements: [classifyRequest(text)] } : classifySql(text));
  stages.push(createPolicyStage({ ...policy, classify, metrics }));
  return stages;
}

/** The bindings `serve_bindings` lets this process's own workers listen for. */
export function servedBindings(config: SempipeConfig): BindingConfig[] {
  const serve = config.serveBindings ?? '::/';
  if (serve === 'none') return [];
  const realm = parseRealm(serve);
  return config.bindings.filter((b) => realmCovers(realm, parseFqn(b.fqn)));
}

export function bindingSpecs(config: SempipeConfig, stages: readonly StageFactory[]): BindingSpec[] {
  const services = new Map(config.services.map((s) => [s.fqn, s]));
  return servedBindings(config).map((b) => {
    const service = services.get(b.service)!;
    // The config loader guarantees that a bearer binding names an http service and no other does.
    const runtime =
      b.auth === 'bearer'
        ? createHttpBindingRuntime(b, service as HttpServiceConfig, config.limits.connectTimeoutMs, stages)
        : createPgBindingRuntime(b, service as PgServiceConfig, config, stages);
    return { fqn: b.fqn, protocol: service.protocol, host: b.listen.host, port: b.listen.port, runtime };
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

/** Data-plane callbacks that report to metrics and the operator log. */
export function dataPlaneReporting(metrics: Metrics, log: Logger): Pick<DataPlaneOptions, 'onUpstreamError' | 'onError'> {
  return {
    onUpstreamError: (binding, error) => {
      const code = error instanceof UpstreamError ? (error.upstreamSqlState ?? error.code) : ((error as { code?: unknown }).code?.toString() ?? 'unknown');
      recordUpstreamError(metrics, binding, code);
      const detail = error instanceof UpstreamError ? error.upstreamMessage : undefined;
      log.warn({ binding, code, detail, err: error instanceof Error ? error.message : String(error) }, 'upstream error');
    },
    onError: (message, error) => log.error({ err: error instanceof Error ? error.message : String(error) }, message),
  };
}
