// The primary side of the session-related control messages: gathering the session list and the
// metrics of every worker, routing a kill to the worker that owns the session, and granting
// max_sessions slots from one count kept for all workers (a dead worker's slots are given back, its
// unanswered requests are answered without it).
import type { MetricsSnapshot } from '../control/metrics.js';
import type { SessionSummary } from '../proxy/session-registry.js';
import { LocalSessionSlots } from '../proxy/session-slots.js';
import type { ToPrimary, ToWorker } from './ipc-messages.js';

export interface WorkerChannel {
  index: number;
  /** The prefix of the session ids this worker process hands out ("<index>.<generation>"). */
  sessionIdPrefix: string;
  send(msg: ToWorker): void;
}

interface PendingReply {
  /** The session id prefix of the worker process asked: unique to that process. */
  worker: string;
  answer(msg: ToPrimary | undefined): void;
}

const REPLY_TIMEOUT_MS = 2000;
/** As long as prom-client's own cluster aggregation waited: a busy worker renders a large registry. */
const METRICS_TIMEOUT_MS = 5000;

export class PrimaryControl {
  private nextId = 1;
  private readonly replies = new Map<number, PendingReply>();
  private readonly slots = new LocalSessionSlots();
  /** Slots held per worker and binding, to give back when a worker dies. */
  private readonly held = new Map<number, Map<string, number>>();

  constructor(private readonly workers: () => WorkerChannel[]) {}

  /** Handles a worker's message; false for messages this class does not know. */
  onWorkerMessage(worker: WorkerChannel, msg: ToPrimary): boolean {
    switch (msg.type) {
      case 'sessions-reply':
      case 'kill-reply':
      case 'metrics-reply':
        this.replies.get(msg.requestId)?.answer(msg);
        return true;
      case 'slot-acquire': {
        const granted = this.slots.tryAcquire(msg.binding, msg.limit);
        if (granted) this.adjustHeld(worker.index, msg.binding, 1);
        worker.send({ type: 'slot-granted', requestId: msg.requestId, granted });
        return true;
      }
      case 'slot-release':
        if (this.adjustHeld(worker.index, msg.binding, -1)) this.slots.release(msg.binding);
        return true;
      default:
        return false;
    }
  }

  /** A worker exited: the slots its sessions held are free again, and it will answer nothing more. */
  onWorkerExit(worker: WorkerChannel): void {
    for (const [binding, n] of this.held.get(worker.index) ?? []) this.slots.release(binding, n);
    this.held.delete(worker.index);
    for (const r of [...this.replies.values()]) if (r.worker === worker.sessionIdPrefix) r.answer(undefined);
  }

  /** Every live worker's metrics; rejects when one of them does not answer in time. */
  async gatherMetrics(): Promise<MetricsSnapshot[]> {
    const workers = this.workers();
    const snapshots = await Promise.all(
      workers.map((w) => this.ask<MetricsSnapshot>(w, (requestId) => ({ type: 'metrics', requestId }), (m) => (m.type === 'metrics-reply' ? m.metrics : []), METRICS_TIMEOUT_MS)),
    );
    const live = new Set(this.workers().map((w) => w.sessionIdPrefix));
    const silent = workers.filter((w, i) => snapshots[i] === undefined && live.has(w.sessionIdPrefix));
    if (silent.length > 0) throw new Error(`worker ${silent.map((w) => w.index).join(', ')} did not send its metrics`);
    return snapshots.filter((s) => s !== undefined);
  }

  async listSessions(): Promise<SessionSummary[]> {
    const lists = await Promise.all(
      this.workers().map((w) =>
        this.ask<SessionSummary[]>(w, (requestId) => ({ type: 'sessions', requestId }), (m) => (m.type === 'sessions-reply' ? m.sessions : [])),
      ),
    );
    return lists.flatMap((l) => l ?? []);
  }

  /** Session ids are "<prefix>-<n>": the kill goes to the worker process with that prefix only. */
  async killSession(id: string): Promise<boolean> {
    const owner = this.workers().find((w) => id.startsWith(`${w.sessionIdPrefix}-`));
    if (owner === undefined) return false;
    const found = await this.ask<boolean>(owner, (requestId) => ({ type: 'kill', requestId, id }), (m) => m.type === 'kill-reply' && m.found);
    return found === true;
  }

  /** Resolves with the worker's answer, or undefined when it exited or did not answer in time. */
  private ask<T>(w: WorkerChannel, request: (requestId: number) => ToWorker, read: (m: ToPrimary) => T, timeoutMs = REPLY_TIMEOUT_MS): Promise<T | undefined> {
    const requestId = this.nextId++;
    return new Promise((resolve) => {
      const answer = (m: ToPrimary | undefined): void => {
        clearTimeout(timer);
        this.replies.delete(requestId);
        resolve(m === undefined ? undefined : read(m));
      };
      const timer = setTimeout(() => answer(undefined), timeoutMs);
      this.replies.set(requestId, { worker: w.sessionIdPrefix, answer });
      w.send(request(requestId));
    });
  }

  private adjustHeld(worker: number, binding: string, delta: number): boolean {
    const perBinding = this.held.get(worker) ?? new Map<string, number>();
    const n = (perBinding.get(binding) ?? 0) + delta;
    if (n < 0) return false;
    if (n === 0) perBinding.delete(binding);
    else perBinding.set(binding, n);
    this.held.set(worker, perBinding);
    return true;
  }
}
