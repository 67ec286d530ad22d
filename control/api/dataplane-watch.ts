// GET /v1/dataplane/watch?realm=REALM: the stream remote data planes (sidecars) follow. A
// server-sent event `snapshot` carries everything the data plane needs for the bindings of the
// realm (secrets included, hence a token is always required here) at connect time and again after
// every committed change; a comment line every 10 s keeps proxies and the client's silence timer
// from dropping an idle stream.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SempipeConfig } from '../config.js';
import { snapshotFor } from '../dataplane-snapshot.js';
import { FqnError, parseRealm } from '../fqn.js';
import { checkBearer } from './auth.js';

export interface WatchSource {
  effective(): SempipeConfig;
  sequence(): number;
  onChange(listener: () => void): () => void;
}

const HEARTBEAT_MS = 10_000;

function fail(res: ServerResponse, status: number, error: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error, message }));
}

export function handleDataPlaneWatch(req: IncomingMessage, res: ServerResponse, url: URL, source: WatchSource, token: string | undefined): void {
  if (token === undefined) return fail(res, 403, 'forbidden', 'remote data planes need admin.token (or SEMPIPE_ADMIN_TOKEN) on the control plane');
  const auth = checkBearer(req.headers.authorization, token);
  if (auth === 'missing') return fail(res, 401, 'unauthorized', 'missing bearer token');
  if (auth === 'wrong') return fail(res, 403, 'forbidden', 'wrong bearer token');
  const realm = url.searchParams.get('realm') ?? '::/';
  try {
    parseRealm(realm);
  } catch (err) {
    return fail(res, 400, 'invalid', err instanceof FqnError ? err.message : String(err));
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  const send = (): void => {
    const snapshot = snapshotFor(source.effective(), realm, source.sequence());
    res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`);
  };
  send();
  const unsubscribe = source.onChange(send);
  const heartbeat = setInterval(() => res.write(': keepalive\n\n'), HEARTBEAT_MS);
  const stop = (): void => {
    clearInterval(heartbeat);
    unsubscribe();
  };
  req.on('close', stop);
  res.on('error', stop);
}
