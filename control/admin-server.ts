// The admin HTTP listener: /metrics (Prometheus text), /healthz (process alive), /readyz (ready
// to take sessions), plus a hook for the control API. Plain node:http: four fixed routes do not
// warrant a web framework. A failing route answers 500; it never takes the process down.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AdminServerOptions {
  readonly host: string;
  /** 0 picks a free port; read it back from `address`. */
  readonly port: number;
  /** Renders the metrics text (see control/metrics.ts readers). */
  readonly metrics: () => Promise<string>;
  /** Content type of that text, e.g. METRICS_CONTENT_TYPE. */
  readonly contentType: string;
  /** Readiness, optionally with details for the /readyz body (e.g. the control plane's state). */
  readonly ready: () => boolean | { ready: boolean; [detail: string]: unknown };
  /** Further routes (the control API); returns true when it handled the request. */
  readonly extra?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export interface AdminServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

type Route = (res: ServerResponse, opts: AdminServerOptions) => void | Promise<void>;

const ROUTES: ReadonlyMap<string, Route> = new Map<string, Route>([
  ['/metrics', serveMetrics],
  ['/healthz', (res) => sendJson(res, 200, { status: 'ok' })],
  ['/readyz', serveReadiness],
]);

function sendJson(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function serveReadiness(res: ServerResponse, opts: AdminServerOptions): void {
  const r = opts.ready();
  const { ready, ...details } = typeof r === 'boolean' ? { ready: r } : r;
  sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', ...details });
}

async function serveMetrics(res: ServerResponse, opts: AdminServerOptions): Promise<void> {
  const text = await opts.metrics();
  res.writeHead(200, { 'content-type': opts.contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const query = raw.indexOf('?');
  return query === -1 ? raw : raw.substring(0, query);
}

function sendError(res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, 500, { error: 'internal error' });
}

async function handleRequest(req: IncomingMessage, res: ServerResponse, opts: AdminServerOptions): Promise<void> {
  const route = ROUTES.get(pathOf(req.url));
  if (route !== undefined) {
    if (req.method !== 'GET') {
      sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET' });
      return;
    }
    await route(res, opts);
    return;
  }
  if (opts.extra?.(req, res)) return;
  sendJson(res, 404, { error: 'not found' });
}

export function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const server = createServer((req, res) => {
    handleRequest(req, res, opts).catch(() => sendError(res));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve({
        address: server.address() as AddressInfo,
        close: () =>
          new Promise((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}
