// The primary side of the session-related control messages: gathering the session list from every
// worker, routing a kill to the worker that owns the session, and granting max_sessions slots from
// one count kept for all workers (a dead worker's slots are given back).
import type { SessionSummary } from '../proxy/session-registry.js';
import { LocalSessionSlots } from '../proxy/session-slots.js';
import type { ToPrimary, ToWorker } from './ipc-messages.js';

export interface WorkerChannel {
  index: number;
  send(msg: ToWorker): void;
}

const REPLY_TIMEOUT_MS = 2000;

export class PrimaryControl {
  private nextId = 1;
  private readonly replies = new Map<number, (msg: ToPrimary) => void>();
  private readonly slots = new LocalSessionSlots();
  /** Slots held per worker and binding, to give back when a worker dies. */
  private readonly held = new Map<number, Map<string, number>>();

  constructor(private readonly workers: () => WorkerChannel[]) {}

  /** Handles a worker's message; false for messages this class does not know. */
  onWorkerMessage(worker: WorkerChannel, msg: ToPrimary): boolean {
    switch (msg.type) {
      case 'sessions-reply':
      case 'kill-reply':
        this.replies.get(msg.requestId)?.(msg);
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

  /** A worker exited: the slots its sessions held are free again. */
  onWorkerExit(index: number): void {
    for (const [binding, n] of this.held.get(index) ?? []) this.slots.release(binding, n);
    this.held.delete(index);
  }

  async listSessions(): Promise<SessionSummary[]> {
    const lists = await Promise.all(
      this.workers().map((w) =>
        this.ask<SessionSummary[]>(w, (requestId) => ({ type: 'sessions', requestId }), (m) => (m.type === 'sessions-reply' ? m.sessions : [])),
      ),
    );
    return lists.flatMap((l) => l ?? []);
  }

  /** Session ids are "<worker>-<n>": the kill goes to that worker only. */
  async killSession(id: string): Promise<boolean> {
    const owner = this.workers().find((w) => id.startsWith(`${w.index}-`));
    if (owner === undefined) return false;
    const found = await this.ask<boolean>(owner, (requestId) => ({ type: 'kill', requestId, id }), (m) => m.type === 'kill-reply' && m.found);
    return found === true;
  }

  private ask<T>(w: WorkerChannel, request: (requestId: number) => ToWorker, read: (m: ToPrimary) => T): Promise<T | undefined> {
    const requestId = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.replies.delete(requestId);
        resolve(undefined);
      }, REPLY_TIMEOUT_MS);
      this.replies.set(requestId, (m) => {
        clearTimeout(timer);
        this.replies.delete(requestId);
        resolve(read(m));
      });
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
