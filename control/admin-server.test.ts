// Tests for the admin HTTP listener over real HTTP (Node's fetch): metrics scrape, health and
// readiness, 404/405, failing metric collection, the extra-route hook, and arbitrary requests.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer, type AdminServerOptions } from './admin-server.js';
import { createMetrics, localMetricsReader, METRICS_CONTENT_TYPE } from './metrics.js';

const servers: AdminServer[] = [];

async function start(overrides: Partial<AdminServerOptions> = {}): Promise<{ server: AdminServer; url: string }> {
  const metrics = createMetrics();
  const server = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    metrics: localMetricsReader(metrics),
    contentType: METRICS_CONTENT_TYPE,
    ready: () => true,
    ...overrides,
  });
  servers.push(server);
  return { server, url: `http://127.0.0.1:${server.address.port}` };
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('startAdminServer', () => {
  it('serves /metrics in Prometheus text format with current counter values', async () => {
    const metrics = createMetrics();
    const { url } = await start({ metrics: localMetricsReader(metrics) });
    metrics.connectionsTotal.inc({ binding: 'binding::/t::b', protocol: 'postgres' }, 3);
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(METRICS_CONTENT_TYPE);
    const body = await res.text();
    expect(body).toContain('# TYPE sempipe_connections_total counter');
    expect(body).toContain('sempipe_connections_total{binding="binding::/t::b",protocol="postgres"} 3');
    metrics.connectionsTotal.inc({ binding: 'binding::/t::b', protocol: 'postgres' });
    expect(await (await fetch(`${url}/metrics?x=1`)).text()).toContain('sempipe_connections_total{binding="binding::/t::b",protocol="postgres"} 4');
  });

  it('answers /healthz and flips /readyz with ready()', async () => {
    let ready = false;
    const { url } = await start({ ready: () => ready });
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toBe('application/json');
    expect(await health.json()).toEqual({ status: 'ok' });
    const notReady = await fetch(`${url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: 'not ready' });
    ready = true;
    const nowReady = await fetch(`${url}/readyz`);
    expect(nowReady.status).toBe(200);
    expect(await nowReady.json()).toEqual({ status: 'ready' });
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    const { url } = await start();
    const missing = await fetch(`${url}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'not found' });
    const post = await fetch(`${url}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
  });

  it('answers 500 when collecting metrics fails, and keeps serving', async () => {
    let fail = true;
    const { url } = await start({
      metrics: () => (fail ? Promise.reject(new Error('Operation timed out.')) : Promise.resolve('sempipe_up 1\n')),
    });
    const broken = await fetch(`${url}/metrics`);
    expect(broken.status).toBe(500);
    expect(await broken.json()).toEqual({ error: 'internal error' });
    fail = false;
    expect(await (await fetch(`${url}/metrics`)).text()).toBe('sempipe_up 1\n');
  });

  it('hands unknown paths to extra before answering 404, and survives a throwing extra', async () => {
    const { url } = await start({
      extra: (req, res) => {
        if (req.url === '/v1/bindings') {
          res.writeHead(201, { 'content-type': 'application/json' });
          res.end('{"created":true}');
          return true;
        }
        if (req.url === '/v1/boom') throw new Error('boom');
        return false;
      },
    });
    const created = await fetch(`${url}/v1/bindings`, { method: 'POST', body: '{}' });
    expect(created.status).toBe(201);
    expect(await created.json()).toEqual({ created: true });
    expect((await fetch(`${url}/v1/boom`)).status).toBe(500);
    expect((await fetch(`${url}/v1/other`)).status).toBe(404);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('answers every method and path with a defined status', async () => {
    const { url } = await start({ ready: () => false });
    const path = fc.oneof(
      fc.constantFrom('/metrics', '/healthz', '/readyz', '/', '//metrics', '/metrics/', '/%00'),
      fc.webPath(),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'), path, async (method, p) => {
        const res = await fetch(`${url}${p.startsWith('/') ? p : `/${p}`}`, { method });
        await res.arrayBuffer();
        expect([200, 404, 405, 503]).toContain(res.status);
      }),
      { numRuns: 60 },
    );
  });

  it('rejects when the port is taken and closes promptly with keep-alive clients connected', async () => {
    const { server, url } = await start();
    await expect(start({ port: server.address.port })).rejects.toThrow(/EADDRINUSE/);
    await fetch(`${url}/healthz`);
    const closing = Date.now();
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    expect(Date.now() - closing).toBeLessThan(1000);
  });
});
