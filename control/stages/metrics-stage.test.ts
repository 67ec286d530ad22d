// Tests for the metrics stage: session events drive the right counters, gauge and histogram in a
// real prom-client registry, and sessions of one binding share the same label children.
import { describe, expect, it } from 'vitest';
import { createMetrics, type Metrics } from '../metrics.js';
import type { CompletionEvent, SessionInfo } from '../../proxy/stage.js';
import { createMetricsStage, recordUpstreamError } from './metrics-stage.js';

const BINDING = 'binding::/prod/billing::api-orders';

function session(id: string, binding = BINDING): SessionInfo {
  return {
    id,
    binding,
    service: 'service::/prod::orders',
    protocol: 'postgres',
    user: 'api',
    clientAddress: '10.0.0.7:51234',
    database: 'orders',
    startedAt: Date.now(),
  };
}

function completion(statementClass: string, outcome: CompletionEvent['outcome'], durationNs: bigint): CompletionEvent {
  return { text: 'select 1', statementClass, tag: outcome === 'ok' ? 'SELECT 1' : '', rows: 1, outcome, durationNs, receivedAt: 0n, judgedNs: 0n };
}

async function value(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const match = values.find(
    (v) => Object.keys(labels).every((k) => v.labels[k] === labels[k]) && Object.keys(v.labels).length === Object.keys(labels).length,
  );
  return match?.value;
}

describe('createMetricsStage', () => {
  it('counts connections and auth failures at the factory level', async () => {
    const metrics = createMetrics();
    const factory = createMetricsStage(metrics);
    factory.onConnection?.(BINDING, 'postgres');
    factory.onConnection?.(BINDING, 'postgres');
    factory.onAuthFailure?.({ binding: BINDING, protocol: 'postgres', user: 'api', clientAddress: '10.0.0.7:1', reason: 'bad_password' });
    expect(await value(metrics, 'sempipe_connections_total', { binding: BINDING, protocol: 'postgres' })).toBe(2);
    expect(await value(metrics, 'sempipe_auth_failures_total', { binding: BINDING, reason: 'bad_password' })).toBe(1);
  });

  it('tracks a session from start to end', async () => {
    const metrics = createMetrics();
    const factory = createMetricsStage(metrics);
    const s = session('w1-1');
    const stage = factory.create(s);
    stage.onStart?.(s);
    expect(await value(metrics, 'sempipe_connections_active', { binding: BINDING, protocol: 'postgres' })).toBe(1);

    stage.onComplete?.(s, completion('select', 'ok', 1_500_000n));
    stage.onComplete?.(s, completion('select', 'ok', 3_000_000n));
    stage.onComplete?.(s, completion('select', 'error', 200_000n));
    stage.onComplete?.(s, completion('ddl', 'denied', 50_000n));
    stage.onBytes?.(s, 120, 4096);
    stage.onBytes?.(s, 30, 0);
    stage.onEnd?.(s, { reason: 'client', bytesIn: 150, bytesOut: 4096, statements: 4 });

    const q = { binding: BINDING, protocol: 'postgres' };
    expect(await value(metrics, 'sempipe_queries_total', { ...q, class: 'select', outcome: 'ok' })).toBe(2);
    expect(await value(metrics, 'sempipe_queries_total', { ...q, class: 'select', outcome: 'error' })).toBe(1);
    expect(await value(metrics, 'sempipe_queries_total', { ...q, class: 'ddl', outcome: 'denied' })).toBe(1);
    expect(await value(metrics, 'sempipe_bytes_total', { binding: BINDING, direction: 'in' })).toBe(150);
    expect(await value(metrics, 'sempipe_bytes_total', { binding: BINDING, direction: 'out' })).toBe(4096);
    expect(await value(metrics, 'sempipe_connections_active', q)).toBe(0);
    expect(await value(metrics, 'sempipe_sessions_closed_total', { binding: BINDING, reason: 'client' })).toBe(1);

    const histogram = await metrics.registry.getSingleMetricAsString('sempipe_query_duration_seconds');
    const labels = `binding="${BINDING}",protocol="postgres",class="select"`;
    expect(histogram).toContain(`sempipe_query_duration_seconds_count{${labels}} 3`);
    expect(histogram).toContain(`sempipe_query_duration_seconds_sum{${labels}} 0.0047`);
    expect(histogram).toContain(`sempipe_query_duration_seconds_bucket{le="0.001",${labels}} 1`);
    expect(histogram).toContain(`sempipe_query_duration_seconds_bucket{le="0.0025",${labels}} 2`);
  });

  it('keeps concurrent sessions of several bindings apart and sums those of one binding', async () => {
    const metrics = createMetrics();
    const factory = createMetricsStage(metrics);
    const other = 'binding::/prod/billing::api-cache';
    const sessions = [session('w1-1'), session('w1-2'), session('w1-3', other)];
    const stages = sessions.map((s) => factory.create(s));
    sessions.forEach((s, i) => stages[i]?.onStart?.(s));
    sessions.forEach((s, i) => stages[i]?.onComplete?.(s, completion('insert', 'ok', 10_000n)));
    expect(await value(metrics, 'sempipe_connections_active', { binding: BINDING, protocol: 'postgres' })).toBe(2);
    expect(await value(metrics, 'sempipe_connections_active', { binding: other, protocol: 'postgres' })).toBe(1);
    expect(await value(metrics, 'sempipe_queries_total', { binding: BINDING, protocol: 'postgres', class: 'insert', outcome: 'ok' })).toBe(2);
    const first = sessions[0] as SessionInfo;
    stages[0]?.onEnd?.(first, { reason: 'revoked', bytesIn: 0, bytesOut: 0, statements: 1 });
    expect(await value(metrics, 'sempipe_connections_active', { binding: BINDING, protocol: 'postgres' })).toBe(1);
  });

  it('does not decrement the active gauge for a session that never started or ends twice', async () => {
    const metrics = createMetrics();
    const factory = createMetricsStage(metrics);
    const s = session('w1-9');
    const stage = factory.create(s);
    stage.onEnd?.(s, { reason: 'error', bytesIn: 0, bytesOut: 0, statements: 0, message: 'upstream refused' });
    stage.onStart?.(s);
    stage.onEnd?.(s, { reason: 'client', bytesIn: 0, bytesOut: 0, statements: 0 });
    stage.onEnd?.(s, { reason: 'client', bytesIn: 0, bytesOut: 0, statements: 0 });
    expect(await value(metrics, 'sempipe_connections_active', { binding: BINDING, protocol: 'postgres' })).toBe(0);
  });

  it('records upstream errors by code', async () => {
    const metrics = createMetrics();
    recordUpstreamError(metrics, BINDING, '57P01');
    recordUpstreamError(metrics, BINDING, '57P01');
    recordUpstreamError(metrics, BINDING, 'ECONNREFUSED');
    expect(await value(metrics, 'sempipe_upstream_errors_total', { binding: BINDING, code: '57P01' })).toBe(2);
    expect(await value(metrics, 'sempipe_upstream_errors_total', { binding: BINDING, code: 'ECONNREFUSED' })).toBe(1);
  });
});
