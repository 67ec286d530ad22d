// limits.max_pending_auth and the auth deadline for HTTP bindings, through a real data plane and a
// real node:http upstream: a connection counts as pending until a request presents a valid token,
// so one that never does is closed at the deadline, while an authenticated keep-alive connection
// and a WebSocket outlive it; a connection refused for load gets a 503 problem with Retry-After.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindingSpecs, createStages, protocolHandlers, protocolRefusalReplies, retainProtocolState } from '../../bin/wiring.js';
import { parseConfig } from '../../control/config.js';
import { createMetrics } from '../../control/metrics.js';
import { PolicySet } from '../../control/policy/policy-set.js';
import { DataPlane } from '../../proxy/data-plane.js';
import { LocalSessionSlots } from '../../proxy/session-slots.js';
import { startHttpUpstream, type HttpUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/ports.js';

const TOKEN = 'job-token-0123456789abcdef';
const DEADLINE_MS = 600;
const MAX_PENDING = 2;

let upstream: HttpUpstream;
let plane: DataPlane;
let dir: string;
let port: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-http-pending-'));
  upstream = await startHttpUpstream();
  port = await freePort();
  const config = parseConfig(
    `
services:
  - fqn: service::/test::api
    protocol: http
    upstream: { url: "${upstream.url}" }
bindings:
  - fqn: binding::/test::api
    service: service::/test::api
    listen: 127.0.0.1:${port}
    clients: [ { name: job, token: ${TOKEN} } ]
`,
    join(dir, 'sempipe.yaml'),
    {},
  );
  const stages = createStages(createMetrics(), undefined, { policies: new PolicySet(), slots: new LocalSessionSlots(), workerCount: 1 });
  plane = new DataPlane({ workerIndex: 1, handlers: protocolHandlers, refusalReplies: protocolRefusalReplies });
  plane.setPendingAuthLimits({ max: MAX_PENDING, deadlineMs: DEADLINE_MS });
  const specs = bindingSpecs(config, stages);
  expect((await plane.apply(specs)).failed).toEqual([]);
  retainProtocolState(specs);
});

afterAll(async () => {
  await plane?.drain(0);
  retainProtocolState([]);
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A raw keep-alive connection: send a request, read until a whole response (headers plus content-length bytes) arrived. */
class RawClient {
  readonly socket: Socket;
  buffered = '';
  closed = false;
  private readonly closedAt: Promise<void>;

  constructor() {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => (this.buffered += d));
    this.socket.on('error', () => {});
    this.closedAt = new Promise((resolve) => this.socket.once('close', () => resolve()));
    void this.closedAt.then(() => (this.closed = true));
  }

  async request(headers: string): Promise<string> {
    this.socket.write(`GET /json HTTP/1.1\r\nhost: localhost\r\n${headers}\r\n`);
    for (let i = 0; i < 200; i++) {
      const end = this.buffered.indexOf('\r\n\r\n');
      if (end >= 0) {
        const length = Number(/content-length: (\d+)/i.exec(this.buffered.slice(0, end))?.[1] ?? 0);
        if (this.buffered.length >= end + 4 + length) {
          const response = this.buffered.slice(0, end + 4 + length);
          this.buffered = this.buffered.slice(end + 4 + length);
          return response;
        }
      }
      if (this.closed) break;
      await sleep(10);
    }
    throw new Error(`no whole response; got ${JSON.stringify(this.buffered)}`);
  }

  /** Resolves true when the server closed the connection within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    return Promise.race([this.closedAt.then(() => true), sleep(ms).then(() => false)]);
  }
}

describe('HTTP connections and limits.max_pending_auth', () => {
  it('keeps an authenticated keep-alive connection past the auth deadline, and closes one that never presented a valid token', async () => {
    const good = new RawClient();
    const bad = new RawClient();
    expect(await good.request(`authorization: Bearer ${TOKEN}\r\n`)).toMatch(/^HTTP\/1\.1 200 /);
    expect(await bad.request('authorization: Bearer wrong-token-0123456789\r\n')).toMatch(/^HTTP\/1\.1 401 /);
    expect(plane.pendingAuthCount).toBe(1);
    expect(await bad.closedWithin(DEADLINE_MS * 3)).toBe(true);
    expect(good.closed).toBe(false);
    // The same connection carries another request after the deadline.
    expect(await good.request(`authorization: Bearer ${TOKEN}\r\n`)).toMatch(/^HTTP\/1\.1 200 /);
    expect(plane.pendingAuthCount).toBe(0);
    good.socket.destroy();
  });

  it('keeps a WebSocket open past the auth deadline', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(String(data)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await sleep(DEADLINE_MS * 2);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.send('still here');
    for (let i = 0; i < 100 && !messages.includes('echo: still here'); i++) await sleep(20);
    expect(messages).toContain('echo: still here');
    ws.close();
  });

  it('answers a connection refused for load with 503, Retry-After and a problem, and serves again once the pending ones are gone', async () => {
    const idle = [new RawClient(), new RawClient()];
    for (let i = 0; i < 100 && plane.pendingAuthCount < MAX_PENDING; i++) await sleep(10);
    expect(plane.pendingAuthCount).toBe(MAX_PENDING);
    const refused = new RawClient();
    expect(await refused.closedWithin(2000)).toBe(true);
    const answer = refused.buffered;
    expect(answer).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    expect(answer).toMatch(/\r\nretry-after: \d+\r\n/i);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer).toMatch(/\r\ncontent-type: application\/problem\+json\r\n/i);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { status: number };
    expect(body.status).toBe(503);
    for (const c of idle) c.socket.destroy();
    for (let i = 0; i < 100 && plane.pendingAuthCount > 0; i++) await sleep(10);
    const after = new RawClient();
    expect(await after.request(`authorization: Bearer ${TOKEN}\r\n`)).toMatch(/^HTTP\/1\.1 200 /);
    after.socket.destroy();
  });
});
