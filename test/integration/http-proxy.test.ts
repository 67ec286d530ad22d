// The HTTP pipeline against a real node:http upstream (and an https one), through the data plane
// and the binding server in this process, with undici, curl and raw sockets as clients: bearer
// auth, credential injection and stripping, hop-by-hop headers, streamed bodies, HEAD, chunked
// responses with trailers, 100-continue, smuggling attempts, SSE, 502/504/413 problems, client
// abort and slowloris, WebSocket upgrades.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { Client, request } from 'undici';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindingSpecs, createStages, protocolHandlers, retainProtocolState } from '../../bin/wiring.js';
import { parseConfig } from '../../control/config.js';
import { createMetrics } from '../../control/metrics.js';
import { PolicySet } from '../../control/policy/policy-set.js';
import { DataPlane } from '../../proxy/data-plane.js';
import { LocalSessionSlots } from '../../proxy/session-slots.js';
import { makeCertificate } from '../harness/certs.js';
import { startHttpUpstream, type HttpUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/ports.js';

const run = promisify(execFile);
const TOKEN = 'job-token-0123456789abcdef';
const SERVICE_KEY = 'service-secret-key';

let upstream: HttpUpstream;
let tlsUpstream: HttpUpstream;
let plane: DataPlane;
let dir: string;
let certs: { certFile: string; keyFile: string };
const ports: Record<'plain' | 'tls' | 'down' | 'slow' | 'small', number> = { plain: 0, tls: 0, down: 0, slow: 0, small: 0 };
const upstreamErrors: string[] = [];
const socketFile = (): string => join(dir, 'plain.sock');

function yaml(): string {
  const binding = (name: string, service: string, port: number, extra = ''): string => `
  - fqn: binding::/test::${name}
    service: service::/test::${service}
    listen: [ "127.0.0.1:${port}"${name === 'plain' ? `, "unix:${socketFile()}"` : ''} ]
    auth: bearer
    clients: [ { name: job, token: ${TOKEN} } ]
    header_timeout: 1s${extra}`;
  return `
services:
  - fqn: service::/test::api
    protocol: http
    upstream:
      url: ${upstream.url}
      headers: { X-Api-Key: ${SERVICE_KEY} }
  - fqn: service::/test::api-tls
    protocol: http
    upstream:
      url: https://127.0.0.1:${tlsUpstream.port}/
      ca: ${certs.certFile}
      bearer: upstream-bearer-credential
  - fqn: service::/test::down
    protocol: http
    upstream: { url: "http://127.0.0.1:${ports.down}" }
  - fqn: service::/test::slow
    protocol: http
    upstream: { url: "${upstream.url}", timeout: 500ms }
bindings:${binding('plain', 'api', ports.plain)}${binding('tls', 'api-tls', ports.tls, `\n    tls: { cert: ${certs.certFile}, key: ${certs.keyFile} }`)}${binding('down', 'down', ports.down + 1)}${binding('slow', 'slow', ports.slow)}${binding('small', 'api', ports.small, '\n    max_body_size: 1KiB')}
`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-http-'));
  certs = makeCertificate(dir, 'localhost');
  upstream = await startHttpUpstream();
  tlsUpstream = await startHttpUpstream({ tls: certs });
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
  const config = parseConfig(yaml(), join(dir, 'sempipe.yaml'), {});
  const stages = createStages(createMetrics(), undefined, { policies: new PolicySet(), slots: new LocalSessionSlots(), workerCount: 1 });
  plane = new DataPlane({ workerIndex: 1, handlers: protocolHandlers, onUpstreamError: (b, e) => upstreamErrors.push(`${b} ${(e as { code?: string }).code}`) });
  const specs = bindingSpecs(config, stages);
  const applied = await plane.apply(specs);
  expect(applied.failed).toEqual([]);
  retainProtocolState(specs);
});

afterAll(async () => {
  await plane?.drain(0);
  retainProtocolState([]);
  await upstream?.close();
  await tlsUpstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

const base = (name: keyof typeof ports): string => `http://127.0.0.1:${ports[name]}`;
const auth = { authorization: `Bearer ${TOKEN}` };

/** Sends raw bytes and returns everything the server answered until it closed or `ms` passed. */
function raw(port: number, text: string, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => {});
    s.write(text);
    const timer = setTimeout(() => s.destroy(), ms);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe('bearer auth', () => {
  it('answers 401 with WWW-Authenticate and a problem naming the binding when the token is missing or wrong', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }]) {
      const r = await request(`${base('plain')}/json`, { headers });
      expect(r.statusCode).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer realm="binding::/test::plain"');
      expect(r.headers['content-type']).toBe('application/problem+json');
      expect(await r.body.json()).toMatchObject({ status: 401, binding: 'binding::/test::plain' });
    }
    expect(upstream.seen.filter((s) => s.url === '/json')).toHaveLength(0);
  });

  it('forwards with a valid token', async () => {
    const r = await request(`${base('plain')}/json`, { headers: auth });
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toEqual({ ok: true, items: [1, 2, 3] });
  });
});

describe('headers', () => {
  it('injects the service credential, strips the token, client copies and hop-by-hop headers, sets Via and X-Forwarded-*', async () => {
    const r = await request(`${base('plain')}/echo?q=1`, {
      headers: { ...auth, 'x-api-key': 'forged', 'proxy-authorization': 'Basic eA==', 'x-forwarded-for': '203.0.113.9', accept: 'application/json' },
    });
    expect(r.statusCode).toBe(200);
    const seen = (await r.body.json()) as { url: string; headers: Record<string, string> };
    // undici will not send these, curl will.
    const { stdout } = await run('curl', ['-sS', '-H', `Authorization: Bearer ${TOKEN}`, '-H', 'Connection: keep-alive, X-Private', '-H', 'X-Private: p', '-H', 'TE: trailers', '-H', 'Keep-Alive: timeout=1', `${base('plain')}/echo`]);
    const hop = (JSON.parse(stdout) as { headers: Record<string, string> }).headers;
    expect([hop['x-private'], hop.te, hop['keep-alive'], hop.connection]).toEqual([undefined, undefined, undefined, 'keep-alive']);
    expect(seen.url).toBe('/echo?q=1');
    expect(seen.headers['x-api-key']).toBe(SERVICE_KEY);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    expect(seen.headers.host).toBe(`127.0.0.1:${upstream.port}`);
    expect(seen.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe(`127.0.0.1:${ports.plain}`);
    expect(seen.headers.via).toBe('1.1 sempipe');
    expect(seen.headers.accept).toBe('application/json');
    // The upstream's hop-by-hop response headers stay on its own hop.
    expect(r.headers['x-hop']).toBeUndefined();
    expect(r.headers['keep-alive']).not.toBe('timeout=5');
    expect(r.headers.via).toBe('1.1 sempipe');
  });

  it('serves a Unix socket in the binding\'s listen list like its TCP address; X-Forwarded-For says "unknown"', async () => {
    const { stdout } = await run('curl', ['-sS', '--unix-socket', socketFile(), '-H', `Authorization: Bearer ${TOKEN}`, 'http://localhost/echo']);
    const seen = JSON.parse(stdout) as { headers: Record<string, string> };
    expect(seen.headers['x-api-key']).toBe(SERVICE_KEY);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-forwarded-for']).toBe('unknown');
    const { stdout: refused } = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--unix-socket', socketFile(), 'http://localhost/echo']);
    expect(refused).toBe('401');
  });

  it('serves TLS to the client and verifies the https upstream against its ca, injecting a bearer credential', async () => {
    const { stdout } = await run('curl', ['-sS', '--cacert', certs.certFile, '-H', `Authorization: Bearer ${TOKEN}`, `https://localhost:${ports.tls}/echo`]);
    const seen = JSON.parse(stdout) as { headers: Record<string, string> };
    expect(seen.headers.authorization).toBe('Bearer upstream-bearer-credential');
    expect(seen.headers['x-forwarded-proto']).toBe('https');
  });
});

describe('bodies', () => {
  it('streams a 64 MB upload and download through', async () => {
    const size = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 0x62);
    async function* body(): AsyncGenerator<Buffer> {
      for (let i = 0; i < size / chunk.length; i++) yield chunk;
    }
    const up = await request(`${base('plain')}/echo`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: Readable.from(body()) });
    expect(((await up.body.json()) as { bytes: number }).bytes).toBe(size);
    const down = await request(`${base('plain')}/download?bytes=${size}`, { headers: auth });
    let received = 0;
    for await (const c of down.body) received += (c as Buffer).length;
    expect(received).toBe(size);
  });

  it('answers HEAD with the headers and no body', async () => {
    const { stdout } = await run('curl', ['-sS', '-I', '-H', `Authorization: Bearer ${TOKEN}`, `${base('plain')}/json`]);
    expect(stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(stdout).toMatch(/content-length: 27\r\n/i);
    expect(upstream.seen.at(-1)?.method).toBe('HEAD');
  });

  it('relays a chunked response with its trailers', async () => {
    const out = await raw(ports.plain, `GET /trailers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTE: trailers\r\nConnection: close\r\n\r\n`);
    expect(out).toMatch(/transfer-encoding: chunked/i);
    expect(out).toContain('part one;');
    expect(out).toMatch(/\r\n0\r\nx-checksum: abc123\r\n\r\n$/i);
  });

  it('answers 100 Continue only after auth, and forwards the body', async () => {
    const { stderr, stdout } = await run('curl', ['-sS', '-v', '-H', `Authorization: Bearer ${TOKEN}`, '-H', 'Expect: 100-continue', '--data-binary', 'x'.repeat(2048), `${base('plain')}/echo`]);
    expect(stderr).toContain('HTTP/1.1 100 Continue');
    expect((JSON.parse(stdout) as { bytes: number }).bytes).toBe(2048);
    const refused = await raw(ports.plain, 'POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n');
    expect(refused).toMatch(/^HTTP\/1\.1 401/);
    expect(refused).not.toContain('100 Continue');
  });

  it('refuses a body over max_body_size with 413, declared or streamed', async () => {
    const declared = await request(`${base('small')}/echo`, { method: 'POST', headers: auth, body: 'y'.repeat(2000) });
    expect(declared.statusCode).toBe(413);
    expect(await declared.body.json()).toMatchObject({ status: 413, binding: 'binding::/test::small' });
    async function* chunked(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 4; i++) yield Buffer.alloc(512, 0x63);
    }
    const client = new Client(base('small'));
    const streamed = await client.request({ path: '/echo', method: 'POST', headers: auth, body: Readable.from(chunked()) });
    expect(streamed.statusCode).toBe(413);
    await streamed.body.dump();
    await client.close();
  });
});

describe('request smuggling', () => {
  it('rejects Content-Length with Transfer-Encoding and two different Content-Lengths before anything goes upstream', async () => {
    const before = upstream.seen.length;
    const clte = await raw(ports.plain, `POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(clte).toMatch(/^HTTP\/1\.1 400/);
    const twoCl = await raw(ports.plain, `POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 4\r\nContent-Length: 10\r\n\r\nabcd`);
    expect(twoCl).toMatch(/^HTTP\/1\.1 400/);
    expect(upstream.seen.length).toBe(before);
  });
});

describe('WebSocket', () => {
  it('relays an authenticated upgrade both ways, with the service credential and without the token upstream', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${ports.plain}/ws`, { headers: auth });
    const messages: Array<string | Buffer> = [];
    const next = (): Promise<string | Buffer> =>
      new Promise((resolve) => {
        if (messages.length > 0) resolve(messages.shift()!);
        else ws.once('message', () => resolve(messages.shift()!));
      });
    ws.on('message', (data, isBinary) => messages.push(isBinary ? (data as Buffer) : String(data)));
    const greeting = JSON.parse(String(await next())) as { headers: Record<string, string> };
    expect(greeting.headers['x-api-key']).toBe(SERVICE_KEY);
    expect(greeting.headers.authorization).toBeUndefined();
    expect(greeting.headers.via).toBe('1.1 sempipe');
    ws.send('hello');
    expect(await next()).toBe('echo: hello');
    const binary = Buffer.from([0, 1, 2, 250]);
    ws.send(binary);
    expect(Buffer.compare((await next()) as Buffer, binary)).toBe(0);
    const closed = new Promise((r) => ws.once('close', r));
    ws.close();
    await closed;
  });

  it('refuses an upgrade without a valid token with 401', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${ports.plain}/ws`);
    ws.on('error', () => {});
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
    });
    ws.terminate();
    expect(status).toBe(401);
  });
});

describe('streaming and failures', () => {
  it('delivers Server-Sent Events one by one', async () => {
    const r = await request(`${base('plain')}/sse`, { headers: auth });
    expect(r.headers['content-type']).toBe('text/event-stream');
    const it = r.body[Symbol.asyncIterator]();
    const first = await it.next();
    expect(String(first.value)).toBe('data: first\n\n');
    upstream.releaseSse();
    let rest = '';
    for (let n = await it.next(); !n.done; n = await it.next()) rest += String(n.value);
    expect(rest).toBe('data: second\n\n');
  });

  it('answers 502 when the upstream is down and 504 when it is too slow, and counts upstream errors', async () => {
    const down = await request(`${base('down').replace(String(ports.down), String(ports.down + 1))}/json`, { headers: auth });
    expect(down.statusCode).toBe(502);
    const downBody = await down.body.text();
    expect(JSON.parse(downBody)).toMatchObject({ status: 502, binding: 'binding::/test::down', detail: expect.stringContaining('ECONNREFUSED') });
    const slow = await request(`${base('slow')}/slow?ms=3000`, { headers: auth });
    expect(slow.statusCode).toBe(504);
    expect(slow.headers['content-type']).toBe('application/problem+json');
    const slowBody = await slow.body.text();
    expect(JSON.parse(slowBody)).toMatchObject({ status: 504, binding: 'binding::/test::slow' });
    // Where the upstream is goes to the operator log only, never to the client (issue 24 part 4).
    for (const [body, upstreamPort] of [[downBody, ports.down], [slowBody, upstream.port]] as const) {
      expect(body).not.toContain('127.0.0.1');
      expect(body).not.toContain(String(upstreamPort));
      expect(body).not.toContain('http://');
    }
    expect(upstreamErrors).toEqual(expect.arrayContaining(['binding::/test::down ECONNREFUSED', 'binding::/test::slow UND_ERR_HEADERS_TIMEOUT']));
    // Other bindings keep working.
    expect((await request(`${base('plain')}/json`, { headers: auth })).statusCode).toBe(200);
  });

  it('aborts the upstream request when the client goes away', async () => {
    const reached = upstream.reached('/hang');
    const ac = new AbortController();
    const pending = request(`${base('plain')}/hang`, { headers: auth, signal: ac.signal }).catch((e: unknown) => e);
    const seen = await reached;
    ac.abort();
    await pending;
    for (let i = 0; i < 50 && !seen.aborted; i++) await new Promise((r) => setTimeout(r, 20));
    expect(seen.aborted).toBe(true);
  });

  it('cuts a client that sends its headers too slowly (slowloris)', async () => {
    const started = Date.now();
    const s = connect(ports.plain, '127.0.0.1');
    s.on('error', () => {});
    s.write('GET /json HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => s.write('X-Slow: 1\r\n'), 200);
    let answer = '';
    s.on('data', (d) => (answer += d.toString()));
    await new Promise((r) => s.once('close', r));
    clearInterval(trickle);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });
});
