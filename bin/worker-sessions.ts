// The primary's record of the live sessions of one worker process, kept from the worker's
// session-start and session-end messages (two small messages per session, none per statement).
// When the process is gone and every message it sent has been read, the sessions still on record
// are the ones it lost: each gets its session_end audit line (reason worker_lost) and is counted,
// since no worker is left to do either.
import type { AuditLog } from '../control/audit.js';
import type { PrimaryMetrics } from '../control/metrics.js';
import { WORKER_LOST, writeLostSessionEnd, type SessionRecord } from '../control/stages/audit-stage.js';
import type { ToPrimary } from './ipc-messages.js';

export class WorkerSessions {
  private readonly live = new Map<string, SessionRecord>();

  /** Handles a session-start or session-end message; false for any other message. */
  onMessage(msg: ToPrimary): boolean {
    if (msg.type === 'session-start') this.live.set(msg.session.id, msg.session);
    else if (msg.type === 'session-end') this.live.delete(msg.id);
    else return false;
    return true;
  }

  /**
   * The worker process has exited and its IPC channel is closed: audits and counts the sessions it
   * never reported ended; returns how many.
   */
  reportLost(audit: AuditLog | undefined, metrics: PrimaryMetrics): number {
    const lost = [...this.live.values()];
    this.live.clear();
    for (const s of lost) {
      if (audit !== undefined) writeLostSessionEnd(audit, s);
      metrics.sessionsClosed.inc({ binding: s.binding, reason: WORKER_LOST });
    }
    return lost.length;
  }
}
