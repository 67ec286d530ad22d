// The HTTP pipeline in the real sempipe binary (2 workers) in front of a real node:http upstream:
// policies (deny methods/paths, allow lists, read_only, rate limit) answered 403/429 with problem
// bodies, a policy change and a revocation applied to an open keep-alive connection after SIGHUP,
// the metrics and audit lines of each request, and a 200 MB upload and download that do not grow
// the workers' memory with the body.
import { writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { Client, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { processTree, rssBytes } from '../../bench/process-rss.js';
import { startHttpUpstream, type HttpUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/ports.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const TOKEN = 'pipeline-token-0123456789';
type Name = 'open' | 'guard' | 'ro' | 'rate' | 'live';
const NAMES: Name[] = ['open', 'guard', 'ro', 'rate', 'live'];
const fqnOf = (n: Name): string => `binding::/test/${n}::api`;

let upstream: HttpUpstream;
let sempipe: SempipeProcess;
const ports = {} as Record<Name, number>;

function configYaml(opts: { liveDenied: boolean; revokeOpen: boolean }): string {
  const bindings = NAMES.filter((n) => !(opts.revokeOpen && n === 'open'))
    .map((n) => `
  - fqn: ${fqnOf(n)}
    service: service::/test::api
    listen: 127.0.0.1:${ports[n]}
    auth: bearer
    clients: [ { name: job-${n}, token: ${TOKEN} } ]`)
    .join('');
  return `
admin: { listen: "127.0.0.1:\${ADMIN_PORT}" }
services:
  - fqn: service::/test::api
    protocol: http
    upstream: { url: "${upstream.url}", headers: { X-Api-Key: svc-key } }
bindings:${bindings}
policies:
  - fqn: policy::/test::guard
    realm: binding::/test/guard
    deny: { methods: [DELETE], paths: ["/admin/*"] }
    allow: { methods: [GET, POST, DELETE], paths: ["/json", "/echo", "/admin/*", "/status"] }
  - fqn: policy::/test::ro
    realm: binding::/test/ro
    read_only: true
  - fqn: policy::/test::rate
    realm: binding::/test/rate
    limits: { rate: 3/s }
${opts.liveDenied ? `  - fqn: policy::/test::live
    realm: binding::/test/live
    deny: { paths: ["/json"] }
` : ''}`;
}

beforeAll(async () => {
  upstream = await startHttpUpstream();
  for (const n of NAMES) ports[n] = await freePort();
  sempipe = await startSempipe({ yaml: configYaml({ liveDenied: false, revokeOpen: false }), workers: 2 });
});

afterAll(async () => {
  await sempipe?.stop();
  await upstream?.close();
});

const url = (n: Name, path: string): string => `http://127.0.0.1:${ports[n]}${path}`;
const auth = { authorization: `Bearer ${TOKEN}` };

async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function statusOf(n: Name, method: string, path: string): Promise<{ status: number; body: Record<string, unknown> | string }> {
  const r = await request(url(n, path), { method: method as 'GET', headers: auth });
  const text = await r.body.text();
  return { status: r.statusCode, body: r.headers['content-type'] === 'application/problem+json' ? (JSON.parse(text) as Record<string, unknown>) : text };
}

describe('policy', () => {
  test('deny.methods and deny.paths refuse independently with 403 naming rule and policy; allow lists restrict', async () => {
    expect((await statusOf('guard', 'GET', '/json')).status).toBe(200);
    const del = await statusOf('guard', 'DELETE', '/json');
    expect(del).toMatchObject({ status: 403, body: { rule: 'deny.methods', policy: 'policy::/test::guard', binding: fqnOf('guard') } });
    expect(await statusOf('guard', 'GET', '/admin/users')).toMatchObject({ status: 403, body: { rule: 'deny.paths' } });
    expect(await statusOf('guard', 'GET', '/%61dmin/users')).toMatchObject({ status: 403, body: { rule: 'deny.paths' } });
    expect(await statusOf('guard', 'PUT', '/json')).toMatchObject({ status: 403, body: { rule: 'allow.methods' } });
    expect(await statusOf('guard', 'GET', '/download?bytes=1')).toMatchObject({ status: 403, body: { rule: 'allow.paths' } });
    expect(upstream.seen.some((s) => s.method === 'DELETE' || s.url.includes('admin'))).toBe(false);
  });

  test('read_only lets GET, HEAD and OPTIONS through only', async () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS']) expect((await statusOf('ro', m, '/json')).status).toBe(200);
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) expect(await statusOf('ro', m, '/json')).toMatchObject({ status: 403, body: { rule: 'read_only' } });
  });

  test('a rate limit answers 429 past the rate', async () => {
    const client = new Client(url('rate', ''));
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await client.request({ path: '/json', method: 'GET', headers: auth });
      await r.body.dump();
      statuses.push(r.statusCode);
    }
    await client.close();
    expect(statuses).toContain(429);
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
  });

  test('a policy change applies to the next request of an open keep-alive connection, and revoke closes it', async () => {
    const live = new Client(url('live', ''), { keepAliveTimeout: 60_000 });
    const open = new Client(url('open', ''), { keepAliveTimeout: 60_000 });
    const get = async (c: Client): Promise<number> => {
      const r = await c.request({ path: '/json', method: 'GET', headers: auth });
      await r.body.dump();
      return r.statusCode;
    };
    expect(await get(live)).toBe(200);
    expect(await get(open)).toBe(200);
    let openClosed = false;
    open.on('disconnect', () => (openClosed = true));
    writeFileSync(sempipe.configFile, configYaml({ liveDenied: true, revokeOpen: true }).replaceAll('${ADMIN_PORT}', new URL(sempipe.adminUrl).port));
    sempipe.signal('SIGHUP');
    await eventually(async () => (await get(live)) === 403);
    await eventually(async () => openClosed);
    await expect(request(url('open', '/json'), { headers: auth })).rejects.toThrow();
    await live.close();
    await open.close();
  });
});

describe('observability', () => {
  test('metrics count requests by method and status class, bytes and connections with protocol="http"', async () => {
    const b = fqnOf('guard');
    expect(await sempipe.metric('sempipe_http_requests_total', { binding: b, method: 'GET', status: '2xx' })).toBeGreaterThanOrEqual(1);
    expect(await sempipe.metric('sempipe_http_requests_total', { binding: b, method: 'DELETE', status: '4xx' })).toBe(1);
    expect(await sempipe.metric('sempipe_queries_total', { binding: b, protocol: 'http', class: 'select' })).toBeGreaterThanOrEqual(1);
    expect(await sempipe.metric('sempipe_query_duration_seconds_count', { binding: b, protocol: 'http' })).toBeGreaterThanOrEqual(1);
    expect(await sempipe.metric('sempipe_connections_total', { binding: b, protocol: 'http' })).toBeGreaterThanOrEqual(1);
    expect(await sempipe.metric('sempipe_bytes_total', { binding: b, direction: 'out' })).toBeGreaterThan(0);
    expect(await sempipe.metric('sempipe_policy_denials_total', { binding: b, rule: 'deny.paths' })).toBe(2);
  });

  test('an audit line per request with method and path, status, bytes, duration, binding and client; secrets redacted', async () => {
    const r = await request(url('guard', '/json?access_token=s3cr3t-value&page=2'), { headers: auth });
    await r.body.dump();
    await eventually(async () => sempipe.stdout().includes('page=2'));
    const line = sempipe
      .stdout()
      .split('\n')
      .filter((l) => l.includes('page=2'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0]!;
    expect(line).toMatchObject({
      event: 'statement',
      statement: 'GET /json?access_token=REDACTED&page=2',
      class: 'select',
      status: 200,
      binding: fqnOf('guard'),
      user: 'job-guard',
      outcome: 'ok',
    });
    expect(line.bytes_out).toBeGreaterThan(0);
    expect(typeof line.duration_ms).toBe('number');
    expect(sempipe.stdout()).not.toContain('s3cr3t-value');
    expect(sempipe.stdout()).not.toContain(TOKEN);
    expect(sempipe.stderr()).not.toContain(TOKEN);
    expect(sempipe.stdout()).toContain('"rule":"deny.methods"');
  });
});

describe('streaming', () => {
  test('a 200 MB upload and download pass without the workers growing with the body', async () => {
    const size = 200 * 1024 * 1024;
    const workers = (): number[] => processTree(sempipe.child.pid!).filter((p) => p !== sempipe.child.pid);
    const rss = (): number => Math.max(...workers().map(rssBytes));
    const warm = await request(url('guard', '/json'), { headers: auth });
    await warm.body.dump();
    const before = rss();
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rss())), 50);
    try {
      const chunk = Buffer.alloc(1024 * 1024, 0x62);
      async function* body(): AsyncGenerator<Buffer> {
        for (let i = 0; i < size / chunk.length; i++) yield chunk;
      }
      const up = await request(url('guard', '/echo'), { method: 'POST', headers: auth, body: Readable.from(body()) });
      expect(((await up.body.json()) as { bytes: number }).bytes).toBe(size);
      const down = await request(url('live', '/download?bytes=' + size), { headers: auth });
      let received = 0;
      for await (const c of down.body) received += (c as Buffer).length;
      expect(received).toBe(size);
    } finally {
      clearInterval(sampler);
    }
    // A worker that buffered the body would grow by hundreds of MB; streaming stays within tens.
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
  });
});

describe('drain', () => {
  test('SIGTERM ends idle keep-alive connections at once instead of waiting for drain_timeout', async () => {
    const client = new Client(url('guard', ''), { keepAliveTimeout: 60_000 });
    const r = await client.request({ path: '/json', method: 'GET', headers: auth });
    await r.body.dump();
    let disconnected = false;
    client.on('disconnect', () => (disconnected = true));
    const started = Date.now();
    expect(await sempipe.stop()).toBe(0);
    // drain_timeout is 30 s by default; an idle HTTP connection has nothing to wait for.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(disconnected).toBe(true);
    expect(sempipe.stdout()).toMatch(/"event":"session_end","reason":"shutdown"/);
    await client.close();
  });
});
