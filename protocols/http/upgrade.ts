// WebSocket (and any other `Upgrade:`) relayed both ways: once the request passed auth and policy
// it goes upstream through the service's Pool with undici's upgrade support, the upstream's 101
// and its headers go back to the client, and from then on the two sockets are piped to each other
// with stream backpressure; either side closing closes the other. A refused upgrade is answered with
// the upstream's failure as a problem response on the raw socket.
import { STATUS_CODES, type IncomingMessage, type IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HttpUpstream } from './binding-runtime.js';
import { problemOfUpstreamError } from './forward.js';
import { problemResponseBytes, PROBLEM_CODES } from './problems.js';
import { clientResponseHeaders, upstreamRequestHeaders, type ForwardContext } from './proxy-headers.js';

export type UpgradeOutcome = { kind: 'tunnel'; closed: Promise<void> } | { kind: 'failed'; status: number; error: Error; upstream: boolean };

function headerLines(headers: IncomingHttpHeaders): string {
  let out = '';
  for (const [name, value] of Object.entries(clientResponseHeaders(headers))) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out += `${name}: ${v}\r\n`;
  }
  return out;
}

export function relayUpgrade(req: IncomingMessage, client: Duplex, head: Buffer, upstream: HttpUpstream, ctx: ForwardContext, binding: string): Promise<UpgradeOutcome> {
  const protocol = req.headers.upgrade ?? 'websocket';
  return new Promise((resolve) => {
    upstream.pool.dispatch(
      {
        path: upstream.basePath + req.url!,
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: upstreamRequestHeaders(req.rawHeaders, ctx),
        upgrade: protocol,
      },
      {
        // Also what tells undici this handler speaks its controller API.
        onRequestStart(controller) {
          const abort = (): void => controller.abort(new Error('the client closed the connection'));
          if (client.destroyed) abort();
          else client.once('close', abort);
        },
        onRequestUpgrade(_c, statusCode, headers, socket) {
          const upgradeHeaders = `connection: upgrade\r\nupgrade: ${protocol}\r\n`;
          client.write(`HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? ''}\r\n${upgradeHeaders}${headerLines(headers)}\r\n`);
          if (head.length > 0) socket.write(head);
          const closed = new Promise<void>((done) => {
            let open = 2;
            const end = (): void => {
              if (--open === 0) done();
            };
            socket.once('close', end);
            client.once('close', end);
          });
          socket.on('error', () => client.destroy());
          client.on('error', () => socket.destroy());
          socket.once('close', () => client.destroy());
          client.once('close', () => socket.destroy());
          socket.pipe(client);
          client.pipe(socket);
          resolve({ kind: 'tunnel', closed });
        },
        onResponseError(_c, error) {
          const problem = problemOfUpstreamError(error, binding);
          if (client.writable) client.end(problemResponseBytes(binding, problem));
          resolve({ kind: 'failed', status: PROBLEM_CODES[problem.code].status, error, upstream: true });
        },
      },
    );
  });
}
