// One MySQL client connection from accept to close: sempipe's greeting with its own connection id,
// the client handshake, the upstream login with the service's credentials and the capability flags
// the client negotiated, the OK that ends the connection phase, then the relay with the binding's
// pipeline. The connection id comes from the data plane's cancel-key table (proxy/cancel-keys.ts),
// so it also tells which worker owns the session; `KILL [QUERY] <id>` names these ids.
import type { Socket } from 'node:net';
import { adoptSocket } from '../../proxy/chunk-reader.js';
import type { ConnectionHost } from '../../proxy/connection-host.js';
import type { Peer } from '../../proxy/data-plane.js';
import { endBeforeRelay, openSession } from '../../proxy/session-opening.js';
import type { LiveSession } from '../../proxy/session-registry.js';
import type { EndReason } from '../../proxy/stage.js';
import type { MysqlBindingRuntime } from './binding-runtime.js';
import { runMysqlClientHandshake } from './client-handshake.js';
import { ServerStatus } from './constants.js';
import { okPacket } from './messages.js';
import { MysqlRelay } from './relay.js';
import { connectMysqlUpstream, killUpstream, MysqlUpstreamError } from './upstream-connect.js';
import { errorPacket, fromVerdict, mysqlErrors } from './wire-errors.js';

const PROTOCOL = 'mysql';

/** This process's MySQL sessions by sempipe's connection id, for KILL. */
interface Killable {
  binding: string;
  killQuery(): Promise<void>;
  close(reason: EndReason): void;
}
const sessionsById = new Map<number, Killable>();

export async function handleMysqlConnection(socket: Socket, rt: MysqlBindingRuntime, host: ConnectionHost, peer: Peer): Promise<void> {
  const clientAddress = peer.address;
  let killQuery = (): Promise<void> => Promise.resolve();
  const { processId: connectionId } = host.cancelKeys.issue(() => void killQuery());
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    host.cancelKeys.release(connectionId);
    sessionsById.delete(connectionId);
  };

  const client = await runMysqlClientHandshake(socket, rt, connectionId, {
    onAuthFailure: (user, reason) => {
      for (const f of rt.stages) f.onAuthFailure?.({ binding: rt.fqn, protocol: PROTOCOL, user, clientAddress, reason });
    },
  }).catch((err: unknown) => {
    release();
    throw err;
  });
  if (client === undefined) {
    release();
    return;
  }
  host.authenticated(socket);

  const { info, pipeline, admission } = await openSession(host, {
    binding: rt.fqn,
    service: rt.serviceFqn,
    protocol: PROTOCOL,
    user: client.user,
    clientAddress,
    database: client.database,
  }, rt.stages);
  const refuse = (err: ReturnType<typeof fromVerdict>, reason: EndReason): void => {
    release();
    endBeforeRelay(pipeline, reason, err.message);
    if (!client.socket.destroyed) client.socket.end(errorPacket(err, client.nextSeq));
  };
  if (admission.action !== 'forward') {
    refuse(fromVerdict(admission.code, admission.message), 'error');
    return;
  }

  let upstream: Awaited<ReturnType<typeof connectMysqlUpstream>>;
  try {
    upstream = await connectMysqlUpstream(rt.upstream, { capabilities: client.capabilities, collation: client.collation, attributes: client.attributes });
  } catch (err) {
    const e = err instanceof MysqlUpstreamError ? err : new MysqlUpstreamError('the upstream login failed', undefined, undefined, String(err));
    host.onUpstreamError(rt.fqn, e);
    refuse(mysqlErrors.upstream(`sempipe could not connect to ${rt.serviceFqn}: ${e.message}`), 'upstream');
    return;
  }
  if (client.socket.destroyed) {
    release();
    upstream.socket.destroy();
    endBeforeRelay(pipeline, 'client');
    return;
  }

  killQuery = () => killUpstream(rt.upstream, upstream.connectionId, true).catch((e: unknown) => host.onUpstreamError(rt.fqn, e));
  const upstreamSource = adoptSocket(upstream.socket);
  upstreamSource.socket.on('error', ignore);
  upstreamSource.socket.setNoDelay(true);
  const clientSource = adoptSocket(client.socket);
  clientSource.socket.on('error', ignore);
  const live: LiveSession = {
    info,
    stats: () => ({ statements: relay.statementCount, bytesIn: relay.bytesIn, bytesOut: relay.bytesOut }),
    close: (reason: EndReason) => relay.close(reason, reason === 'revoked' ? mysqlErrors.bindingRevoked(rt.fqn) : mysqlErrors.shutdown()),
  };
  sessionsById.set(connectionId, { binding: rt.fqn, killQuery: () => killQuery(), close: live.close });
  const relay: MysqlRelay = new MysqlRelay(clientSource, upstreamSource, pipeline, {
    maxMessageSize: rt.maxMessageSize,
    serviceFqn: rt.serviceFqn,
    database: rt.database,
    upstreamDatabase: rt.upstream.database,
    capabilities: upstream.capabilities,
    killQuery: () => killQuery(),
    killSession: async (id, queryOnly) => {
      const target = sessionsById.get(id);
      if (target === undefined || target.binding !== rt.fqn) return false;
      if (queryOnly) await target.killQuery();
      else target.close('killed');
      return true;
    },
    onEnd: (reason, message) => {
      host.registry.remove(live);
      release();
      pipeline.end({ reason, bytesIn: relay.bytesIn, bytesOut: relay.bytesOut, statements: relay.statementCount, message });
    },
  });

  const ok = okPacket(client.nextSeq, ServerStatus.Autocommit);
  clientSource.write(ok, 0, ok.length);
  host.registry.add(live);
  pipeline.start();
  relay.start();
}

const ignore = (): void => {};
