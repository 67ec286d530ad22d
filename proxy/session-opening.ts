// The protocol-neutral start of a session, shared by every protocol once its client handshake has
// authenticated someone: the session's identity (id and start time added here), its pipeline of the
// binding's stages, the stages' admission verdict, and the end event of a session that closes before
// its relay started (refused, upstream failed, client gone), which has moved no bytes.
import type { ConnectionHost } from './connection-host.js';
import { SessionPipeline } from './pipeline.js';
import type { EndReason, SessionInfo, StageFactory, Verdict } from './stage.js';

/** What the handshake learned about the session: everything in SessionInfo but its id and start. */
export type SessionIdentity = Omit<SessionInfo, 'id' | 'startedAt'>;

export interface OpenedSession {
  info: SessionInfo;
  pipeline: SessionPipeline;
  /** Forward: the session may go on; else the first refusal of a stage. */
  admission: Verdict;
}

export async function openSession(host: ConnectionHost, who: SessionIdentity, stages: readonly StageFactory[]): Promise<OpenedSession> {
  const info: SessionInfo = {
    id: host.nextSessionId(),
    binding: who.binding,
    service: who.service,
    protocol: who.protocol,
    user: who.user,
    clientAddress: who.clientAddress,
    database: who.database,
    startedAt: Date.now(),
    ...(who.replication !== undefined && { replication: who.replication }),
  };
  const pipeline = new SessionPipeline(info, stages);
  return { info, pipeline, admission: await pipeline.admit() };
}

/** Ends a session whose relay never started. */
export function endBeforeRelay(pipeline: SessionPipeline, reason: EndReason, message?: string): void {
  pipeline.end({ reason, bytesIn: 0, bytesOut: 0, statements: 0, ...(message !== undefined && { message }) });
}
