// sempipe's Prometheus metrics: one table declaring every metric (like Envoy's
// ALL_POSTGRES_PROXY_STATS), a registry of our own built from it, and the readers that render it
// for /metrics, either from this process or merged from the snapshots of all workers (which the
// primary gathers over its own IPC messages, so that a worker dying mid-scrape is simply left out)
// and the primary's own counters.
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import { StatementTallies } from './statement-tally.js';

/** Query latency buckets in seconds, 100 µs to 30 s. */
const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Every metric sempipe exports. Label sets are bounded: binding, protocol, statement class, outcome,
 * reason and error code; never SQL text or user input. Gauges are summed across workers (the
 * aggregator prom-client applies in the primary), so connections_active is the instance total.
 */
const METRIC_TABLE = {
  connectionsActive: {
    type: 'gauge',
    name: 'sempipe_connections_active',
    help: 'Client sessions currently open.',
    labels: ['binding', 'protocol'],
  },
  connectionsTotal: {
    type: 'counter',
    name: 'sempipe_connections_total',
    help: 'Client connections accepted.',
    labels: ['binding', 'protocol'],
  },
  connectionsRefused: {
    type: 'counter',
    name: 'sempipe_connections_refused_total',
    help: 'Client connections closed at accept, by reason (pending_auth: limits.max_pending_auth was reached).',
    labels: ['binding', 'reason'],
  },
  connectionsPendingAuth: {
    type: 'gauge',
    name: 'sempipe_connections_pending_auth',
    help: 'Client connections accepted and not yet authenticated.',
    labels: ['binding'],
  },
  authFailures: {
    type: 'counter',
    name: 'sempipe_auth_failures_total',
    help: 'Failed client authentications, by reason.',
    labels: ['binding', 'reason'],
  },
  startupRejected: {
    type: 'counter',
    name: 'sempipe_startup_rejected_total',
    help: 'Connections refused before a startup packet was accepted (malformed, unsupported protocol, direct TLS refused), by reason.',
    labels: ['binding', 'reason'],
  },
  bytes: {
    type: 'counter',
    name: 'sempipe_bytes_total',
    help: 'Bytes relayed; direction "in" is client to upstream, "out" is upstream to client.',
    labels: ['binding', 'direction'],
  },
  upstreamErrors: {
    type: 'counter',
    name: 'sempipe_upstream_errors_total',
    help: 'Errors reported by or while reaching the upstream service, by error code.',
    labels: ['binding', 'code'],
  },
  sessionsClosed: {
    type: 'counter',
    name: 'sempipe_sessions_closed_total',
    help: 'Sessions closed, by reason.',
    labels: ['binding', 'reason'],
  },
  policyDenials: {
    type: 'counter',
    name: 'sempipe_policy_denials_total',
    help: 'Statements and sessions refused or stopped by a policy, by rule (e.g. deny.classes, read_only, max_rows).',
    labels: ['binding', 'rule'],
  },
  httpRequests: {
    type: 'counter',
    name: 'sempipe_http_requests_total',
    help: 'HTTP requests answered, by method (GET, POST, …, other) and status class (2xx, 4xx, …; 0xx when the client left first).',
    labels: ['binding', 'method', 'status'],
  },
  policyNotificationsDropped: {
    type: 'counter',
    name: 'sempipe_policy_notifications_dropped_total',
    help: 'Policy notifications dropped because too many were in flight.',
    labels: ['binding'],
  },
} as const;

type MetricTable = typeof METRIC_TABLE;
type LabelsOf<K extends keyof MetricTable> = MetricTable[K]['labels'][number];
type HandleOf<K extends keyof MetricTable> = MetricTable[K]['type'] extends 'counter' ? Counter<LabelsOf<K>> : Gauge<LabelsOf<K>>;

/** The per-statement metrics, updated on the hot path without label hashing (statement-tally.ts). */
const STATEMENT_METRICS = {
  queries: { name: 'sempipe_queries_total', help: 'Statements completed, by statement class and outcome (ok, error, denied).' },
  duration: { name: 'sempipe_query_duration_seconds', help: 'Time from receipt of a statement to its completion.' },
} as const;

/** The registry, one typed handle per metric of the table, and the per-statement tallies. */
export type Metrics = {
  readonly registry: Registry;
  readonly statements: StatementTallies;
  /** Runs `flush` whenever sempipe_bytes_total is read, so hot-path byte counts can be kept in plain numbers. */
  onBytesCollect(flush: () => void): void;
} & {
  readonly [K in keyof MetricTable]: HandleOf<K>;
};

/** Content type of the text that every reader below returns (Prometheus text format 0.0.4). */
export const METRICS_CONTENT_TYPE: string = Registry.PROMETHEUS_CONTENT_TYPE;

function createMetric(registry: Registry, key: keyof MetricTable): Counter | Gauge {
  const def = METRIC_TABLE[key];
  const config = { name: def.name, help: def.help, labelNames: def.labels, registers: [registry], aggregator: 'sum' as const };
  switch (def.type) {
    case 'counter':
      return new Counter(config);
    case 'gauge':
      return new Gauge(config);
  }
}

/** A fresh registry (never prom-client's global one) with sempipe's metrics and Node's process metrics. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sempipe_' });
  const handles: Record<string, Counter | Gauge> = {};
  for (const key of Object.keys(METRIC_TABLE) as (keyof MetricTable)[]) {
    handles[key] = createMetric(registry, key);
  }
  const statements = new StatementTallies(STATEMENT_METRICS.queries, STATEMENT_METRICS.duration, DURATION_BUCKETS);
  for (const m of statements.metrics()) registry.registerMetric(m as unknown as Metric);
  const bytesFlushes: Array<() => void> = [];
  // prom-client calls a metric's `collect` before every read of it (scrape or cluster request).
  (handles.bytes as unknown as { collect: () => void }).collect = () => bytesFlushes.forEach((f) => f());
  const onBytesCollect = (flush: () => void): void => {
    bytesFlushes.push(flush);
  };
  return { registry, statements, onBytesCollect, ...handles } as unknown as Metrics;
}

/** Renders this process's registry; for a single-process sempipe. */
export function localMetricsReader(metrics: Metrics): () => Promise<string> {
  return () => metrics.registry.metrics();
}

/** One registry's samples as prom-client's getMetricsAsJSON() renders them (sent by a worker over IPC). */
export type MetricsSnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/**
 * The metrics the primary counts itself: sessions of a worker that died (reason worker_lost),
 * which no worker is left to count. The same declaration as the workers' counter, so the two
 * merge into one sempipe_sessions_closed_total.
 */
export interface PrimaryMetrics {
  readonly registry: Registry;
  readonly sessionsClosed: HandleOf<'sessionsClosed'>;
}

export function createPrimaryMetrics(): PrimaryMetrics {
  const registry = new Registry();
  return { registry, sessionsClosed: createMetric(registry, 'sessionsClosed') as HandleOf<'sessionsClosed'> };
}

/**
 * Renders the workers' snapshots and the primary's own registry as one text, each metric merged
 * by its aggregator (sum for all of ours: gauges give the instance total).
 */
export async function renderClusterMetrics(workers: readonly MetricsSnapshot[], primary: PrimaryMetrics): Promise<string> {
  return AggregatorRegistry.aggregate([...workers, await primary.registry.getMetricsAsJSON()]).metrics();
}
