// The control API's entry point: `createApiHandler` returns the admin server's `extra` hook. It
// serves /openapi.json openly, requires the bearer token on /v1/*, matches the path (FQNs arrive
// URL-encoded, or plain since a name never holds "/"), checks the method and runs the operation;
// every failure is a JSON error. Plain node:http and a route table: a dozen routes do not warrant
// a web framework, and the admin listener is already node:http.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bindingRoutes } from './bindings.js';
import { checkBearer, isLoopback } from './auth.js';
import { handleDataPlaneWatch } from './dataplane-watch.js';
import { ApiError, sendError } from './errors.js';
import { createOpenApiDocument } from './openapi.js';
import { policyRoutes } from './policies.js';
import type { ApiContext, Method, Route } from './route.js';
import { serviceRoutes } from './services.js';
import { sessionRoutes } from './sessions.js';

export type { ApiContext, SessionDirectory, SessionSummary } from './route.js';

export interface ApiHandlerOptions extends ApiContext {
  /** Shown in the OpenAPI document. */
  readonly version?: string;
}

/** The stream remote data planes follow (control/api/dataplane-watch.ts); it checks the token itself. */
const watchRoute: Route = {
  path: '/v1/dataplane/watch',
  methods: {
    GET: {
      summary: 'Server-sent events for remote data planes: a `snapshot` of the realm (query parameter realm, default ::/) now and after every change',
      responses: { 200: { description: 'text/event-stream of snapshot events' }, 400: { description: 'Invalid realm', schema: 'Error' } },
      handle: async (ctx, req, res) => handleDataPlaneWatch(req, res, new URL(req.url ?? '/', 'http://localhost'), ctx.catalog, ctx.token()),
    },
  },
};

/** Exact paths before templates; among templates, longer literal suffixes first ("/rotate"). */
export const API_ROUTES: readonly Route[] = [...serviceRoutes, ...bindingRoutes, ...policyRoutes, ...sessionRoutes, watchRoute];

interface Match {
  route: Route;
  param: string | undefined;
}

function match(path: string): Match | undefined {
  for (const route of API_ROUTES) {
    const open = route.path.indexOf('{');
    if (open === -1) {
      if (path === route.path) return { route, param: undefined };
      continue;
    }
    const prefix = route.path.slice(0, open);
    const suffix = route.path.slice(route.path.indexOf('}') + 1);
    if (path.length > prefix.length + suffix.length && path.startsWith(prefix) && path.endsWith(suffix)) {
      const raw = path.slice(prefix.length, path.length - suffix.length);
      try {
        return { route, param: decodeURIComponent(raw) };
      } catch {
        throw new ApiError('invalid', 'malformed percent-encoding in the path', route.path.slice(open + 1, route.path.indexOf('}')));
      }
    }
  }
  return undefined;
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const query = raw.indexOf('?');
  return query === -1 ? raw : raw.substring(0, query);
}

function authorize(req: IncomingMessage, token: string | undefined): void {
  if (token === undefined) {
    // Defence in depth behind assertApiExposure: without a token only loopback peers are served.
    if (!isLoopback(req.socket.localAddress ?? '')) throw new ApiError('forbidden', 'the control API needs a token (admin.token) when served on a non-loopback address');
    return;
  }
  const check = checkBearer(req.headers.authorization, token);
  if (check === 'missing') throw new ApiError('unauthorized', 'missing bearer token: send "Authorization: Bearer <token>"', undefined, { 'www-authenticate': 'Bearer' });
  if (check === 'wrong') throw new ApiError('forbidden', 'the bearer token is not valid');
}

async function serve(opts: ApiHandlerOptions, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  authorize(req, opts.token());
  const found = match(path);
  if (found === undefined) throw new ApiError('not_found', `no such API path: ${path}`);
  const op = found.route.methods[req.method as Method];
  if (op === undefined) {
    const allow = Object.keys(found.route.methods).join(', ');
    throw new ApiError('method_not_allowed', `${req.method ?? '?'} is not allowed on ${found.route.path} (allowed: ${allow})`, undefined, { allow });
  }
  await op.handle(opts, req, res, found.param);
}

/** The admin server's `extra` hook: true when the request was for the control API. */
export function createApiHandler(opts: ApiHandlerOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  let openApi: string | undefined;
  return (req, res) => {
    const path = pathOf(req.url);
    if (path === '/openapi.json') {
      if (req.method !== 'GET') {
        sendError(res, new ApiError('method_not_allowed', `${req.method ?? '?'} is not allowed on /openapi.json`, undefined, { allow: 'GET' }));
        return true;
      }
      openApi ??= JSON.stringify(createOpenApiDocument(API_ROUTES, opts.version ?? '0'));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(openApi) });
      res.end(openApi);
      return true;
    }
    if (path !== '/v1' && !path.startsWith('/v1/')) return false;
    serve(opts, req, res, path).catch((err: unknown) => {
      sendError(res, err);
      // An unread (e.g. too large) body is not drained: the answer says connection: close.
      if (!req.complete) res.once('finish', () => req.destroy());
    });
    return true;
  };
}
