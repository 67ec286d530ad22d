// One PostgreSQL client connection from accept to close: the client handshake, the upstream
// connection with the service's own credentials (a reset one left by an earlier session when the
// pool has one, see upstream-pool.ts), the greeting (the server's ParameterStatus, sempipe's own
// BackendKeyData), then the relay with the binding's pipeline. A replication session (admitted only
// when a policy grants it) gets a dedicated upstream connection, made anew and closed at its end.
import type { Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import type { ConnectionHost } from '../../proxy/connection-host.js';
import type { Peer } from '../../proxy/data-plane.js';
import { adoptSocket } from '../../proxy/chunk-reader.js';
import { endBeforeRelay, openSession } from '../../proxy/session-opening.js';
import type { LiveSession } from '../../proxy/session-registry.js';
import type { EndReason } from '../../proxy/stage.js';
import { authenticationOk, backendKeyData, errorResponse, readyForQuery, type ErrorFields } from './backend-messages.js';
import { overUnixSocket, type PgBindingRuntime } from './binding-runtime.js';
import { runClientHandshake } from './client-handshake.js';
import { PgRelay } from './relay.js';
import { replicationRelayOptions, reportBytesWhileStreaming } from './replication-session.js';
import { connectUpstream, sendCancelRequest, UpstreamError, type UpstreamTarget } from './upstream-connect.js';
import { poolKey, reuses, UpstreamPool, type PooledUpstream, type PoolKey } from './upstream-pool.js';
import { pgErrors } from './wire-errors.js';

const PROTOCOL = 'postgres';

/** This process's idle upstream connections, shared by all bindings (keyed by server, role and parameters). */
const upstreamPool = new UpstreamPool();

/** Sessions may share an upstream connection only with the same server, role, password and TLS. */
function targetKey(u: UpstreamTarget): string {
  return JSON.stringify([u.host, u.port, u.database, u.user, u.password ?? '', u.tls, u.ca ?? '']);
}

interface SessionUpstream extends PooledUpstream {
  /** NoticeResponse frames of the server's startup, the first ReadyForQuery's status, bytes after it. */
  readonly notices: readonly Buffer[];
  readonly transactionStatus: string;
  readonly leftover: Buffer;
}

/** An upstream connection for the session: a pooled one when `reusable` and there is one, else a new one. */
async function openUpstream(rt: PgBindingRuntime, key: PoolKey, params: Map<string, string>, reusable: boolean): Promise<SessionUpstream> {
  const pooled = reusable ? await upstreamPool.take(key, rt.upstreamIdle) : undefined;
  if (pooled !== undefined) return { ...pooled, notices: [], transactionStatus: 'I', leftover: Buffer.alloc(0) };
  const upstream = await connectUpstream({ ...rt.upstream, extraStartupParams: Object.fromEntries(params) });
  const source = adoptSocket(upstream.socket);
  // Stays for the connection's life, over every session that reuses it: an error is never unhandled.
  source.socket.on('error', ignore);
  source.socket.setNoDelay(true);
  return {
    source,
    parameterStatus: upstream.parameterStatus,
    backendKey: upstream.backendKey,
    notices: upstream.noticeFrames,
    transactionStatus: upstream.transactionStatus,
    leftover: upstream.leftover,
  };
}

/**
 * After a config (re)load: this process's idle upstream connections stay only for the servers and
 * credentials that `runtimes` (its bindings now) use with reuse on; the others are closed.
 */
export function retainPooledUpstreams(runtimes: readonly PgBindingRuntime[]): void {
  upstreamPool.retainTargets(new Set(runtimes.filter((rt) => reuses(rt.upstreamIdle)).map((rt) => targetKey(rt.upstream))));
}

export async function handlePgConnection(socket: Socket, bindingRuntime: PgBindingRuntime, host: ConnectionHost, peer: Peer): Promise<void> {
  const rt = peer.unixSocket ? overUnixSocket(bindingRuntime) : bindingRuntime;
  const clientAddress = peer.address;
  const client = await runClientHandshake(socket, rt, {
    onCancel: (processId, secretKey) => host.routeCancel(processId, secretKey),
    onAuthFailure: (user, reason) => {
      for (const f of rt.stages) f.onAuthFailure?.({ binding: rt.fqn, protocol: PROTOCOL, user, clientAddress, reason });
    },
    onStartupRejected: (reason) => host.onStartupRejected(rt.fqn, clientAddress, reason),
  });
  if (client === undefined) return;
  host.authenticated(socket);

  const { info, pipeline, admission } = await openSession(host, {
    binding: rt.fqn,
    service: rt.serviceFqn,
    protocol: PROTOCOL,
    user: client.user,
    clientAddress,
    database: client.database,
    ...(client.replication !== undefined && { replication: client.replication }),
  }, rt.stages);
  const refuse = (fields: ErrorFields, reason: EndReason): void => {
    endBeforeRelay(pipeline, reason, fields.message);
    if (!client.socket.destroyed) client.socket.end(errorResponse(fields));
  };
  if (admission.action !== 'forward') {
    refuse({ severity: 'FATAL', code: admission.code, message: admission.message }, 'error');
    return;
  }

  const key = poolKey(targetKey(rt.upstream), client.params);
  // A replication connection is never pooled: it is a walsender, not a backend another session could use.
  const reusable = client.replication === undefined && reuses(rt.upstreamIdle);
  let upstream: SessionUpstream;
  try {
    upstream = await openUpstream(rt, key, client.params, reusable);
  } catch (err) {
    const e = err instanceof UpstreamError ? err : new UpstreamError('08001', `upstream for ${rt.serviceFqn} failed`, `${rt.upstream.host}:${rt.upstream.port}`, String(err));
    host.onUpstreamError(rt.fqn, e);
    refuse(pgErrors.upstream(e.code, e.message), 'upstream');
    return;
  }
  if (client.socket.destroyed) {
    if (reusable) upstreamPool.release(key, upstream, rt.upstreamIdle);
    else upstream.source.socket.end(terminateFrame);
    endBeforeRelay(pipeline, 'client');
    return;
  }

  const upstreamKey = upstream.backendKey;
  const cancelKey = host.cancelKeys.issue(() => void cancelUpstream());
  const live: LiveSession = {
    info,
    stats: () => ({ statements: relay.statementCount, bytesIn: relay.bytesIn, bytesOut: relay.bytesOut }),
    close: (reason: EndReason) => relay.close(reason, reason === 'revoked' ? pgErrors.bindingRevoked(rt.fqn) : pgErrors.adminShutdown()),
  };
  const cancelUpstream = (): Promise<void> =>
    sendCancelRequest({ ...rt.upstream }, upstreamKey).catch((e: unknown) => host.onUpstreamError(rt.fqn, e));
  const clientSource = adoptSocket(client.socket);
  const clientSocket = clientSource.socket;
  clientSocket.on('error', ignore);
  const relay: PgRelay = new PgRelay(clientSource, upstream.source, pipeline, {
    maxMessageSize: rt.maxMessageSize,
    serviceFqn: rt.serviceFqn,
    cancelUpstream,
    cancelGraceMs: rt.cancelGraceMs,
    onEnd: (reason, message) => {
      stopBytesReport?.();
      host.registry.remove(live);
      host.cancelKeys.release(cancelKey.processId);
      pipeline.end({ reason, bytesIn: relay.bytesIn, bytesOut: relay.bytesOut, statements: relay.statementCount, message });
    },
    ...(reusable && { releaseUpstream: () => upstreamPool.release(key, upstream, rt.upstreamIdle) }),
    ...(client.replication !== undefined && replicationRelayOptions),
  });
  const stopBytesReport = client.replication === undefined ? undefined : reportBytesWhileStreaming(relay);

  clientSocket.cork();
  clientSocket.write(authenticationOk());
  for (const frame of upstream.parameterStatus) clientSocket.write(frame);
  for (const frame of upstream.notices) clientSocket.write(frame);
  clientSocket.write(backendKeyData(cancelKey.processId, cancelKey.secretKey));
  clientSocket.write(readyForQuery(upstream.transactionStatus as 'I' | 'T' | 'E'));
  if (upstream.leftover.length > 0) clientSocket.write(upstream.leftover);
  clientSocket.uncork();

  host.registry.add(live);
  pipeline.start();
  relay.start(client.leftover);
}

const ignore = (): void => {};
const terminateFrame = serialize.end();
