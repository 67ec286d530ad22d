// The HTTP pipeline's server side: one node:http Server per binding (without a listener of its
// own: the data plane accepts the TCP connection and hands the socket over, wrapped in TLS when
// the binding has a certificate), client authentication by bearer token on every request, and the
// session of each authenticated connection: its stages judge and observe every request (a
// `request` statement `METHOD path`), it is listed in the session registry, and revocation or a
// kill closes it. Config reloads swap the binding's runtime in place, so a new token, credential or
// limit applies to the next request of a kept-alive connection too.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { ConnectionHost } from '../../proxy/connection-host.js';
import type { Peer } from '../../proxy/data-plane.js';
import { SessionPipeline } from '../../proxy/pipeline.js';
import type { LiveSession } from '../../proxy/session-registry.js';
import type { CompletionEvent, EndReason, SessionInfo, StageFactory, StatementTracker, Verdict } from '../../proxy/stage.js';
import type { HttpBindingRuntime } from './binding-runtime.js';
import { forwardRequest, type ForwardOutcome } from './forward.js';
import { problemResponseBytes, PROBLEM_CODES, sendProblem, type Problem } from './problems.js';
import type { ForwardContext } from './proxy-headers.js';
import { relayUpgrade } from './upgrade.js';
import { classOfMethod, redactUrl } from './request-class.js';
import { authenticateBearer } from './token-auth.js';

/** How often node:http checks header and request timeouts (its default, 30 s, lets slowloris linger). */
const TIMEOUT_CHECK_MS = 1000;

interface BindingServer {
  readonly server: Server;
  runtime: HttpBindingRuntime;
  host: ConnectionHost;
  readonly connections: Set<HttpConnection>;
}

/** One client connection; a session exists once a request authenticated. */
interface HttpConnection {
  readonly socket: Socket;
  /** What node:http reads and writes: the socket, or the TLS stream over it. */
  stream?: Socket;
  /** Requests admitted and not yet completed. */
  inFlight: number;
  /** Set by a drain: the connection ends once no request is in flight. */
  draining: boolean;
  /** A request presented a valid token: the data plane no longer counts or times the connection as pending auth. */
  authenticated: boolean;
  readonly clientAddress: string;
  readonly clientIp: string;
  readonly proto: 'http' | 'https';
  session?: HttpSession;
  closeReason?: EndReason;
}

interface HttpSession extends LiveSession {
  readonly client: string;
  readonly pipeline: SessionPipeline;
  requests: number;
  bytesIn: number;
  bytesOut: number;
  ended: boolean;
}

const servers = new Map<string, BindingServer>();
const connectionOf = new WeakMap<object, HttpConnection>();

function applyTimeouts(bs: BindingServer): void {
  const rt = bs.runtime;
  bs.server.headersTimeout = rt.headerTimeoutMs;
  bs.server.keepAliveTimeout = rt.idleTimeoutMs;
}

function bindingServer(runtime: HttpBindingRuntime, host: ConnectionHost): BindingServer {
  let bs = servers.get(runtime.fqn);
  if (bs === undefined) {
    // requestTimeout 0: a large body may take long; headersTimeout cuts slow headers.
    const server = createServer({ requestTimeout: 0, connectionsCheckingInterval: TIMEOUT_CHECK_MS, noDelay: true });
    // node:http starts tracking connections for headersTimeout on 'listening'; this server never
    // listens itself (the data plane does), so it is told it does, or slow headers would never be cut.
    server.emit('listening');
    const created: BindingServer = { server, runtime, host, connections: new Set() };
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      void handleRequest(created, req, res);
    };
    server.on('request', onRequest);
    // Expect: 100-continue is answered by sempipe once the request passed auth and policy.
    server.on('checkContinue', onRequest);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      void handleUpgrade(created, req, socket, head);
    });
    bs = created;
    servers.set(runtime.fqn, bs);
  }
  bs.runtime = runtime;
  bs.host = host;
  applyTimeouts(bs);
  return bs;
}

/** The data plane's connection handler for `protocol: http` bindings. */
export function handleHttpConnection(socket: Socket, runtime: HttpBindingRuntime, host: ConnectionHost, peer: Peer): void {
  const bs = bindingServer(runtime, host);
  const conn: HttpConnection = {
    socket,
    clientAddress: peer.address,
    // A Unix socket has no peer address; X-Forwarded-For then says so as RFC 7239's "unknown".
    clientIp: peer.unixSocket ? 'unknown' : (socket.remoteAddress ?? 'unknown'),
    proto: runtime.tls === undefined ? 'http' : 'https',
    inFlight: 0,
    draining: false,
    authenticated: false,
  };
  bs.connections.add(conn);
  socket.once('close', () => {
    bs.connections.delete(conn);
    if (conn.session !== undefined) endSession(bs, conn.session, conn.closeReason ?? 'client');
  });
  let stream: Socket = socket;
  if (runtime.tls !== undefined) {
    stream = new TLSSocket(socket, { isServer: true, secureContext: runtime.tls });
    stream.on('error', () => socket.destroy());
  }
  conn.stream = stream;
  connectionOf.set(stream, conn);
  bs.server.emit('connection', stream);
}

/**
 * Follows a newly applied set of bindings: kept bindings get their new runtime (tokens, upstream
 * credential, limits) for the next request; connections of bindings that are gone are closed.
 */
export function retainHttpServers(runtimes: readonly HttpBindingRuntime[]): void {
  const current = new Map(runtimes.map((r) => [r.fqn, r]));
  for (const [fqn, bs] of servers) {
    const next = current.get(fqn);
    if (next !== undefined) {
      bs.runtime = next;
      applyTimeouts(bs);
      continue;
    }
    servers.delete(fqn);
    for (const conn of bs.connections) closeConnection(conn, 'revoked');
    bs.server.close();
  }
}

/** Ends the connection gracefully (pending writes flushed) when a drain asked for it and it is idle. */
function endIfDrained(conn: HttpConnection): void {
  if (!conn.draining || conn.inFlight > 0) return;
  conn.closeReason ??= 'shutdown';
  (conn.stream ?? conn.socket).end();
}

function closeConnection(conn: HttpConnection, reason: EndReason): void {
  conn.closeReason ??= reason;
  conn.socket.destroy();
}

function startSession(bs: BindingServer, conn: HttpConnection, client: string): HttpSession {
  const rt = bs.runtime;
  const info: SessionInfo = {
    id: bs.host.nextSessionId(),
    binding: rt.fqn,
    service: rt.serviceFqn,
    protocol: 'http',
    user: client,
    clientAddress: conn.clientAddress,
    database: '',
    startedAt: Date.now(),
  };
  const session: HttpSession = {
    info,
    client,
    pipeline: new SessionPipeline(info, rt.stages),
    requests: 0,
    bytesIn: 0,
    bytesOut: 0,
    ended: false,
    stats: () => ({ statements: session.requests, bytesIn: session.bytesIn, bytesOut: session.bytesOut }),
    close: (reason) => closeConnection(conn, reason),
    endWhenIdle: () => {
      conn.draining = true;
      endIfDrained(conn);
    },
  };
  return session;
}

function endSession(bs: BindingServer, s: HttpSession, reason: EndReason): void {
  if (s.ended) return;
  s.ended = true;
  bs.host.registry.remove(s);
  s.pipeline.end({ reason, bytesIn: s.bytesIn, bytesOut: s.bytesOut, statements: s.requests });
}

function reportAuthFailure(stages: readonly StageFactory[], binding: string, conn: HttpConnection, reason: string): void {
  for (const f of stages) f.onAuthFailure?.({ binding, protocol: 'http', user: '', clientAddress: conn.clientAddress, reason });
}

/** The session of this connection for `client`: the current one, or a new one admitted by the stages. */
async function sessionFor(bs: BindingServer, conn: HttpConnection, client: string): Promise<HttpSession | Verdict> {
  const existing = conn.session;
  if (existing !== undefined && existing.client === client && !existing.ended) return existing;
  // Another client on the same connection starts a session of its own.
  if (existing !== undefined) endSession(bs, existing, 'client');
  const session = startSession(bs, conn, client);
  const verdict = await session.pipeline.admit();
  if (verdict.action !== 'forward') {
    session.pipeline.end({ reason: 'error', bytesIn: 0, bytesOut: 0, statements: 0, message: verdict.message });
    return verdict;
  }
  conn.session = session;
  session.pipeline.start();
  bs.host.registry.add(session);
  if (conn.socket.destroyed) endSession(bs, session, conn.closeReason ?? 'client');
  return session;
}

function denialProblem(v: Exclude<Verdict, { action: 'forward' }>): Problem {
  if (v.action === 'close') return { code: 'service_unavailable', detail: v.message };
  const rate = v.rule === 'rate' || v.rule === 'binding_rate';
  return { code: rate ? 'too_many_requests' : 'forbidden', detail: v.message, ...(v.rule !== undefined && { rule: v.rule }), ...(v.policy !== undefined && { policy: v.policy }) };
}

/** How a refusal reaches the client: a ServerResponse, or the raw socket of an upgrade request. */
type Answer = (problem: Problem, close: boolean) => void;

/** A request that passed auth and the stages, with the way to report its completion. */
interface Admitted {
  readonly rt: HttpBindingRuntime;
  readonly conn: HttpConnection;
  readonly judgedAt: bigint;
  complete(status: number, outcome: CompletionEvent['outcome'], extra?: Partial<CompletionEvent>): void;
}

/**
 * Authenticates the request, finds its session and asks the stages; answers a refusal itself and
 * returns undefined then.
 */
async function admitRequest(bs: BindingServer, req: IncomingMessage, answer: Answer): Promise<Admitted | undefined> {
  const receivedAt = process.hrtime.bigint();
  const rt = bs.runtime;
  const conn = connectionOf.get(req.socket);
  if (conn === undefined) {
    req.socket.destroy();
    return undefined;
  }
  const client = authenticateBearer(req.headers.authorization, rt.clients);
  if (client === undefined) {
    reportAuthFailure(rt.stages, rt.fqn, conn, req.headers.authorization === undefined ? 'missing_token' : 'bad_token');
    answer({ code: 'unauthorized', detail: `binding ${rt.fqn} needs a valid bearer token` }, false);
    return undefined;
  }
  // Until now the connection counted against limits.max_pending_auth and would be closed at the auth
  // deadline; an authenticated keep-alive connection or WebSocket may then last as long as it is used.
  if (!conn.authenticated) {
    conn.authenticated = true;
    bs.host.authenticated(conn.socket);
  }
  const session = await sessionFor(bs, conn, client.name);
  if (!('pipeline' in session)) {
    answer(denialProblem(session as Exclude<Verdict, { action: 'forward' }>), true);
    return undefined;
  }
  const method = req.method ?? 'GET';
  const text = `${method} ${redactUrl(req.url ?? '/')}`;
  const { socket } = conn;
  const readAtStart = socket.bytesRead;
  const writtenAtStart = socket.bytesWritten;
  session.requests++;
  conn.inFlight++;

  let tracker: StatementTracker | undefined;
  let judgedAt = receivedAt;
  const complete = (status: number, outcome: CompletionEvent['outcome'], extra: Partial<CompletionEvent> = {}): void => {
    const bytesIn = socket.bytesRead - readAtStart;
    const bytesOut = socket.bytesWritten - writtenAtStart;
    session.bytesIn += bytesIn;
    session.bytesOut += bytesOut;
    session.pipeline.bytes(bytesIn, bytesOut);
    const event: CompletionEvent = {
      text,
      statementClass: classOfMethod(method),
      tag: status === 0 ? '' : String(status),
      rows: 0,
      outcome,
      durationNs: process.hrtime.bigint() - receivedAt,
      receivedAt,
      judgedNs: judgedAt - receivedAt,
      status,
      bytesIn,
      bytesOut,
      ...extra,
    };
    session.pipeline.complete(event);
    tracker?.onComplete?.(event);
    conn.inFlight--;
    endIfDrained(conn);
  };

  if (!req.url?.startsWith('/')) {
    answer({ code: 'bad_request', detail: 'the request target must be a path (origin-form)' }, true);
    complete(400, 'error', { code: '400', message: 'bad request target' });
    return undefined;
  }
  let verdict: Verdict | undefined;
  if (session.pipeline.judgesStatements) {
    const v = session.pipeline.statement({ text, kind: 'request', receivedAt });
    verdict = v instanceof Promise ? await v : v;
  }
  judgedAt = process.hrtime.bigint();
  if (verdict?.action === 'forward') tracker = verdict.tracker;
  if (verdict !== undefined && verdict.action !== 'forward') {
    const problem = denialProblem(verdict);
    answer(problem, verdict.action === 'close');
    complete(PROBLEM_CODES[problem.code].status, 'denied', {
      code: verdict.code,
      message: verdict.message,
      ...(verdict.action === 'error' && verdict.rule !== undefined && { rule: verdict.rule }),
      ...(verdict.action === 'error' && verdict.policy !== undefined && { policy: verdict.policy }),
    });
    if (verdict.action === 'close') closeConnection(conn, 'killed');
    return undefined;
  }
  return { rt, conn, judgedAt, complete };
}

function forwardContext(rt: HttpBindingRuntime, conn: HttpConnection): ForwardContext {
  return { strip: rt.upstream.strip, injected: rt.upstream.injected, clientIp: conn.clientIp, proto: conn.proto };
}

async function handleRequest(bs: BindingServer, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const admitted = await admitRequest(bs, req, (problem, close) => sendProblem(res, bs.runtime.fqn, problem, close));
  if (admitted === undefined) return;
  const { rt, conn, complete } = admitted;
  const maxBody = rt.maxBodySize;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (maxBody !== undefined && declared > maxBody) {
    sendProblem(res, rt.fqn, { code: 'payload_too_large', detail: `the request body is larger than ${maxBody} bytes` }, true);
    complete(413, 'error', { code: '413', message: 'request body too large' });
    return;
  }
  if (req.headers.expect?.toLowerCase() === '100-continue') res.writeContinue();

  const outcome: ForwardOutcome = await forwardRequest(
    req,
    res,
    rt.upstream,
    forwardContext(rt, conn),
    rt.fqn,
    maxBody,
  );
  switch (outcome.kind) {
    case 'response': {
      const failed = outcome.status >= 500;
      complete(outcome.status, failed ? 'error' : 'ok', failed ? { code: String(outcome.status), message: `upstream answered ${outcome.status}` } : {});
      break;
    }
    case 'problem': {
      const p = outcome.problem;
      // A body over the limit leaves unread bytes on the connection: it cannot carry another request.
      sendProblem(res, rt.fqn, p, p.code === 'payload_too_large');
      if (outcome.upstream) bs.host.onUpstreamError(rt.fqn, outcome.error);
      const status = PROBLEM_CODES[p.code].status;
      complete(status, 'error', { code: String(status), message: p.detail });
      break;
    }
    case 'cut':
      if (outcome.upstream) bs.host.onUpstreamError(rt.fqn, outcome.error);
      complete(outcome.status, 'error', { code: outcome.upstream ? 'upstream_cut' : 'client_closed', message: outcome.error.message });
      break;
  }
}

/** An `Upgrade:` request (WebSocket): judged like any request, then tunnelled both ways. */
async function handleUpgrade(bs: BindingServer, req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  const admitted = await admitRequest(bs, req, (problem) => client.end(problemResponseBytes(bs.runtime.fqn, problem)));
  if (admitted === undefined) return;
  const { rt, conn, complete } = admitted;
  const outcome = await relayUpgrade(req, client, head, rt.upstream, forwardContext(rt, conn), rt.fqn);
  if (outcome.kind === 'failed') {
    if (outcome.upstream) bs.host.onUpstreamError(rt.fqn, outcome.error);
    complete(outcome.status, 'error', { code: String(outcome.status), message: outcome.error.message });
    return;
  }
  await outcome.closed;
  complete(101, 'ok');
}
