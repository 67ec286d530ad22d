// Tests for the metrics table and registry: names, types, labels, buckets, default process
// metrics, isolation from prom-client's global registry, and how the workers' registries and the
// primary's own counter are merged.
import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics, createPrimaryMetrics, localMetricsReader, METRICS_CONTENT_TYPE, renderClusterMetrics, type Metrics, type MetricsSnapshot } from './metrics.js';

describe('createMetrics', () => {
  it('declares every sempipe metric with its type and labels', async () => {
    const metrics = createMetrics();
    const byName = new Map((await metrics.registry.getMetricsAsJSON()).map((m) => [m.name, m]));
    const expected: [string, string][] = [
      ['sempipe_connections_active', 'gauge'],
      ['sempipe_connections_total', 'counter'],
      ['sempipe_auth_failures_total', 'counter'],
      ['sempipe_queries_total', 'counter'],
      ['sempipe_query_duration_seconds', 'histogram'],
      ['sempipe_bytes_total', 'counter'],
      ['sempipe_upstream_errors_total', 'counter'],
      ['sempipe_sessions_closed_total', 'counter'],
    ];
    for (const [name, type] of expected) {
      expect(byName.get(name)?.type, name).toBe(type);
    }
    expect(() => metrics.connectionsTotal.inc({ binding: 'b', protocol: 'postgres' })).not.toThrow();
    expect(() => metrics.connectionsTotal.inc({ binding: 'b', sql: 'select 1' } as never)).toThrow();
  });

  it('exports statement tallies as a counter by outcome and a cumulative histogram', async () => {
    const metrics = createMetrics();
    const t = metrics.statements.tally('b', 'postgres', 'select');
    t.record('ok', 0.0002);
    t.record('ok', 0.002);
    t.record('error', 40);
    const text = await metrics.registry.metrics();
    expect(text).toContain('sempipe_queries_total{binding="b",protocol="postgres",class="select",outcome="ok"} 2');
    expect(text).toContain('sempipe_queries_total{binding="b",protocol="postgres",class="select",outcome="error"} 1');
    expect(text).not.toContain('outcome="denied"');
    expect(text).toContain('sempipe_query_duration_seconds_bucket{le="0.00025",binding="b",protocol="postgres",class="select"} 1');
    expect(text).toContain('sempipe_query_duration_seconds_bucket{le="0.0025",binding="b",protocol="postgres",class="select"} 2');
    expect(text).toContain('sempipe_query_duration_seconds_bucket{le="30",binding="b",protocol="postgres",class="select"} 2');
    expect(text).toContain('sempipe_query_duration_seconds_bucket{le="+Inf",binding="b",protocol="postgres",class="select"} 3');
    expect(text).toContain('sempipe_query_duration_seconds_sum{binding="b",protocol="postgres",class="select"} 40.0022');
    expect(text).toContain('sempipe_query_duration_seconds_count{binding="b",protocol="postgres",class="select"} 3');
  });

  it('buckets query durations from 100 µs to 30 s', async () => {
    const metrics = createMetrics();
    metrics.statements.tally('b', 'postgres', 'select').record('ok', 0.00005);
    const text = await metrics.registry.getSingleMetricAsString('sempipe_query_duration_seconds');
    const bounds = [...text.matchAll(/le="([^"]+)"/g)].map((m) => m[1]);
    expect(bounds[0]).toBe('0.0001');
    expect(bounds.at(-2)).toBe('30');
    expect(bounds.at(-1)).toBe('+Inf');
    expect(text).toContain('sempipe_query_duration_seconds_bucket{le="0.0001",binding="b",protocol="postgres",class="select"} 1');
  });

  it('collects process metrics with the sempipe_ prefix into its own registry, not the global one', async () => {
    const metrics = createMetrics();
    const text = await localMetricsReader(metrics)();
    expect(text).toMatch(/^sempipe_process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^sempipe_nodejs_eventloop_lag_seconds /m);
    expect(text).toMatch(/^sempipe_process_cpu_seconds_total /m);
    expect(globalRegistry.getSingleMetric('sempipe_connections_total')).toBeUndefined();
    expect(METRICS_CONTENT_TYPE).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('two instances do not share state', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.connectionsTotal.inc({ binding: 'x', protocol: 'postgres' });
    expect((await a.connectionsTotal.get()).values.map((v) => v.value)).toEqual([1]);
    expect((await b.connectionsTotal.get()).values).toEqual([]);
  });

  it('sums the workers\' snapshots, as they arrive over IPC, and the primary\'s own counter into one family each', async () => {
    const workerA = createMetrics();
    const workerB = createMetrics();
    const primary = createPrimaryMetrics();
    workerA.connectionsActive.inc({ binding: 'b', protocol: 'postgres' }, 2);
    workerB.connectionsActive.inc({ binding: 'b', protocol: 'postgres' }, 3);
    workerA.connectionsTotal.inc({ binding: 'b', protocol: 'postgres' }, 7);
    workerB.connectionsTotal.inc({ binding: 'b', protocol: 'postgres' }, 4);
    workerA.statements.tally('b', 'postgres', 'select').record('ok', 0.002);
    workerB.statements.tally('b', 'postgres', 'select').record('ok', 0.004);
    workerA.sessionsClosed.inc({ binding: 'b', reason: 'client' }, 5);
    workerB.sessionsClosed.inc({ binding: 'b', reason: 'client' }, 1);
    primary.sessionsClosed.inc({ binding: 'b', reason: 'worker_lost' }, 3);
    const overIpc = async (m: Metrics): Promise<MetricsSnapshot> => JSON.parse(JSON.stringify(await m.registry.getMetricsAsJSON())) as MetricsSnapshot;
    const text = await renderClusterMetrics([await overIpc(workerA), await overIpc(workerB)], primary);
    expect(text).toContain('sempipe_connections_active{binding="b",protocol="postgres"} 5');
    expect(text).toContain('sempipe_connections_total{binding="b",protocol="postgres"} 11');
    expect(text).toContain('sempipe_query_duration_seconds_count{binding="b",protocol="postgres",class="select"} 2');
    expect(text).toContain('sempipe_query_duration_seconds_bucket{le="0.005",binding="b",protocol="postgres",class="select"} 2');
    expect(text).toContain('sempipe_queries_total{binding="b",protocol="postgres",class="select",outcome="ok"} 2');
    expect(text).toContain('sempipe_sessions_closed_total{binding="b",reason="client"} 6');
    expect(text).toContain('sempipe_sessions_closed_total{binding="b",reason="worker_lost"} 3');
    expect(text.match(/^# TYPE sempipe_sessions_closed_total counter$/gm)).toHaveLength(1);
  });

  it('renders the primary\'s counter alone when no worker is up', async () => {
    const primary = createPrimaryMetrics();
    primary.sessionsClosed.inc({ binding: 'b', reason: 'worker_lost' });
    expect(await renderClusterMetrics([], primary)).toContain('sempipe_sessions_closed_total{binding="b",reason="worker_lost"} 1');
  });

});
