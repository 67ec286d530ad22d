// A real HTTP service for the HTTP pipeline's tests and benchmark: node:http (or https with a
// certificate), answering on fixed routes with what it received, large streamed bodies, trailers,
// slow answers, Server-Sent Events and a WebSocket echo on /ws, and recording each request it saw.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  /** Raw header names as sent, to check what was stripped. */
  rawHeaders: string[];
  /** Set when the request ended because the caller aborted it. */
  aborted: boolean;
}

export interface HttpUpstream {
  server: Server;
  port: number;
  url: string;
  seen: SeenRequest[];
  /** Resolves the next SSE stream's second event (the test says when it may be sent). */
  releaseSse(): void;
  /** Resolves when a request reaches `path`. */
  reached(path: string): Promise<SeenRequest>;
  close(): Promise<void>;
}

export interface UpstreamOptions {
  tls?: { certFile: string; keyFile: string };
}

const SMALL_JSON = JSON.stringify({ ok: true, items: [1, 2, 3] });

export async function startHttpUpstream(opts: UpstreamOptions = {}): Promise<HttpUpstream> {
  const seen: SeenRequest[] = [];
  const waiters = new Map<string, Array<(s: SeenRequest) => void>>();
  let sseRelease: (() => void) | undefined;
  let ssePending = false;

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const record: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, aborted: false };
    seen.push(record);
    res.on('close', () => {
      if (!res.writableFinished) record.aborted = true;
    });
    for (const w of waiters.get(url.pathname)?.splice(0) ?? []) w(record);
    switch (url.pathname) {
      case '/json':
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(SMALL_JSON) });
        res.end(SMALL_JSON);
        return;
      case '/echo': {
        let bytes = 0;
        req.on('data', (c: Buffer) => (bytes += c.length));
        req.on('end', () => {
          const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bytes, trailers: req.trailers });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'keep-alive': 'timeout=5', connection: 'keep-alive, x-hop', 'x-hop': 'secret' });
          res.end(body);
        });
        return;
      }
      case '/download': {
        const total = Number(url.searchParams.get('bytes') ?? '0');
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let sent = 0;
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
        const pump = (): void => {
          while (sent < total) {
            const n = Math.min(chunk.length, total - sent);
            sent += n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        pump();
        return;
      }
      case '/trailers':
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part one;');
        res.write('part two');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
        return;
      case '/slow':
        setTimeout(() => {
          if (!res.destroyed) res.end('late');
        }, Number(url.searchParams.get('ms') ?? '2000')).unref();
        return;
      case '/hang':
        return;
      case '/sse':
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: first\n\n');
        ssePending = true;
        sseRelease = () => {
          res.write('data: second\n\n');
          res.end();
        };
        return;
      case '/status': {
        const code = Number(url.searchParams.get('code') ?? '200');
        res.writeHead(code, { 'content-type': 'text/plain' });
        res.end(`status ${code}`);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
    }
  };

  const server: Server = opts.tls
    ? createHttpsServer({ cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) }, handler)
    : createHttpServer(handler);
  server.keepAliveTimeout = 30_000;
  // /ws echoes every message back prefixed with "echo: ", after greeting with the upgrade's headers.
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws, req) => {
    ws.send(JSON.stringify({ headers: req.headers }));
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo: ${String(data)}`, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    seen,
    releaseSse: () => {
      if (ssePending) sseRelease?.();
      ssePending = false;
    },
    reached: (path) => new Promise((resolve) => waiters.set(path, [...(waiters.get(path) ?? []), resolve])),
    close: () =>
      new Promise((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
