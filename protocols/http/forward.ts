// One request relayed upstream through the service's undici Pool with `dispatch`: the client's
// body streams up as it arrives (undici reads it with backpressure), the response streams down
// chunk by chunk, pausing the upstream while the client's socket is full, trailers included. Nothing
// is buffered, so a body of any size costs the same memory. The client going away aborts the
// upstream request; an upstream failure becomes 502/504 while the response has not started, and
// cuts the client's connection once it has (the only honest signal left mid-body).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HttpUpstream } from './binding-runtime.js';
import { clientResponseHeaders, upstreamRequestHeaders, type ForwardContext } from './proxy-headers.js';
import type { Problem } from './problems.js';

export type ForwardOutcome =
  | { kind: 'response'; status: number }
  /** Failed before the response started: the caller answers with the problem. */
  | { kind: 'problem'; problem: Problem; error: Error; upstream: boolean }
  /** Failed mid-response (upstream error) or the client left: the connection is already cut. */
  | { kind: 'cut'; status: number; error: Error; upstream: boolean };

export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  readonly code = 'SEMPIPE_BODY_TOO_LARGE';
}

/** Yields the request body while it stays within `max` bytes; past it, throws. */
async function* limitedBody(req: IncomingMessage, max: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) throw new BodyTooLargeError(`the request body is larger than ${max} bytes`);
    yield chunk;
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export function problemOfUpstreamError(err: Error, binding: string): Problem {
  const code = (err as { code?: string }).code ?? 'unknown';
  if (err instanceof BodyTooLargeError) return { code: 'payload_too_large', detail: err.message };
  if (TIMEOUT_CODES.has(code)) return { code: 'gateway_timeout', detail: `the upstream of ${binding} did not answer in time (${code})` };
  return { code: 'bad_gateway', detail: `the upstream of ${binding} failed: ${code}` };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: HttpUpstream,
  ctx: ForwardContext,
  binding: string,
  maxBodySize: number | undefined,
): Promise<ForwardOutcome> {
  return new Promise((resolve) => {
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let settled = false;
    let clientGone = false;
    const settle = (outcome: ForwardOutcome): void => {
      if (settled) return;
      settled = true;
      res.off('close', onClose);
      resolve(outcome);
    };
    const onClose = (): void => {
      if (res.writableFinished) return;
      clientGone = true;
      const error = new Error('the client closed the connection');
      controller?.abort(error);
      settle({ kind: 'cut', status, error, upstream: false });
    };
    res.on('close', onClose);
    const onDrain = (): void => controller?.resume();

    let body: Readable | null = null;
    if (hasBody(req)) body = maxBodySize === undefined ? req : Readable.from(limitedBody(req, maxBodySize), { objectMode: false });
    upstream.pool.dispatch(
      {
        path: upstream.basePath + req.url!,
        method: req.method as Dispatcher.HttpMethod,
        headers: upstreamRequestHeaders(req.rawHeaders, ctx),
        body,
      },
      {
        onRequestStart(c) {
          controller = c;
          if (clientGone) c.abort(new Error('the client closed the connection'));
        },
        onResponseStart(_c, statusCode, headers, statusMessage) {
          // 1xx interim responses (e.g. 103 Early Hints) are not relayed; 100 Continue is sempipe's own.
          if (statusCode < 200) return;
          status = statusCode;
          res.writeHead(statusCode, statusMessage ?? '', clientResponseHeaders(headers));
        },
        onResponseData(c, chunk) {
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', onDrain);
          }
        },
        onResponseEnd(_c, trailers) {
          if (trailers !== undefined && Object.keys(trailers).length > 0) res.addTrailers(trailers as Record<string, string>);
          res.end();
          settle({ kind: 'response', status });
        },
        onResponseError(_c, error) {
          if (clientGone) return;
          const upstreamFault = !(error instanceof BodyTooLargeError) && (req.readableEnded || !req.destroyed);
          if (!res.headersSent) {
            settle({ kind: 'problem', problem: problemOfUpstreamError(error, binding), error, upstream: upstreamFault });
          } else {
            res.destroy(error);
            settle({ kind: 'cut', status, error, upstream: upstreamFault });
          }
        },
      },
    );
  });
}
