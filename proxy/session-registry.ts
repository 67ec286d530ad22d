// Live sessions of this process: listed by the control plane, closed on revocation, kill and drain.
import type { EndReason, SessionInfo } from './stage.js';

export interface SessionStats {
  statements: number;
  bytesIn: number;
  bytesOut: number;
}

/** One session as the control plane lists it. */
export interface SessionSummary {
  id: string;
  binding: string;
  service: string;
  protocol: string;
  user: string;
  clientAddress: string;
  database: string;
  /** Date.now() when the session started. */
  startedAt: number;
  statements: number;
  bytesIn: number;
  bytesOut: number;
}

export interface LiveSession {
  readonly info: SessionInfo;
  stats(): SessionStats;
  /** Closes the session, telling the client why in its own protocol. */
  close(reason: EndReason): void;
  /**
   * A drain began: end as soon as nothing is in flight (HTTP: between requests). Absent: the
   * session ends when its client leaves or the drain times out.
   */
  endWhenIdle?(): void;
}

/** Told of every session that starts and ends here (e.g. to keep the primary's record of them). */
export interface SessionObserver {
  onSessionStart?(info: SessionInfo): void;
  onSessionEnd?(info: SessionInfo): void;
}

export class SessionRegistry {
  private readonly sessions = new Map<string, LiveSession>();
  private readonly emptyWaiters: Array<() => void> = [];

  constructor(private readonly observer: SessionObserver = {}) {}

  add(s: LiveSession): void {
    this.sessions.set(s.info.id, s);
    this.observer.onSessionStart?.(s.info);
  }

  remove(s: LiveSession): void {
    if (this.sessions.delete(s.info.id)) this.observer.onSessionEnd?.(s.info);
    if (this.sessions.size === 0) for (const w of this.emptyWaiters.splice(0)) w();
  }

  get(id: string): LiveSession | undefined {
    return this.sessions.get(id);
  }

  all(): LiveSession[] {
    return [...this.sessions.values()];
  }

  summaries(): SessionSummary[] {
    return this.all().map(({ info, stats }) => {
      const st = stats();
      return {
        id: info.id,
        binding: info.binding,
        service: info.service,
        protocol: info.protocol,
        user: info.user,
        clientAddress: info.clientAddress,
        database: info.database,
        startedAt: info.startedAt,
        statements: st.statements,
        bytesIn: st.bytesIn,
        bytesOut: st.bytesOut,
      };
    });
  }

  closeWhere(predicate: (s: LiveSession) => boolean, reason: EndReason): number {
    let n = 0;
    for (const s of this.all()) {
      if (predicate(s)) {
        s.close(reason);
        n++;
      }
    }
    return n;
  }

  /** Resolves when no session is left or after `timeoutMs`; true when empty. */
  waitEmpty(timeoutMs: number): Promise<boolean> {
    if (this.sessions.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.sessions.size === 0), timeoutMs);
      this.emptyWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
