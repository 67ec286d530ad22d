// The worker side of the control messages that concern sessions: answering the primary's session
// list and kill requests, and asking the primary for a binding's session slot (max_sessions counts
// every worker's sessions, so only the primary can grant one).
import type { DataPlane } from '../proxy/data-plane.js';
import type { SessionSlots } from '../proxy/session-slots.js';
import type { ToPrimary, ToWorker } from './ipc-messages.js';

type Send = (m: ToPrimary) => void;

const SLOT_TIMEOUT_MS = 2000;

/** Session slots granted by the primary over IPC. */
export class IpcSessionSlots implements SessionSlots {
  private nextId = 1;
  private readonly waiting = new Map<number, (granted: boolean) => void>();
  /** Bindings of requests given up on, so a grant arriving late is handed back. */
  private readonly abandoned = new Map<number, string>();

  constructor(private readonly send: Send) {}

  /** Fails closed: no answer from the primary within the timeout means no slot. */
  acquire(binding: string, limit: number): Promise<boolean> {
    const requestId = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(requestId);
        this.abandoned.set(requestId, binding);
        resolve(false);
      }, SLOT_TIMEOUT_MS);
      this.waiting.set(requestId, (granted) => {
        clearTimeout(timer);
        resolve(granted);
      });
      this.send({ type: 'slot-acquire', requestId, binding, limit });
    });
  }

  release(binding: string): void {
    this.send({ type: 'slot-release', binding });
  }

  granted(requestId: number, granted: boolean): void {
    const waiter = this.waiting.get(requestId);
    this.waiting.delete(requestId);
    if (waiter !== undefined) {
      waiter(granted);
      return;
    }
    const binding = this.abandoned.get(requestId);
    this.abandoned.delete(requestId);
    if (granted && binding !== undefined) this.release(binding);
  }
}

/** Handles the session-related messages; returns false for messages it does not know. */
export function handleSessionMessage(msg: ToWorker, plane: DataPlane, slots: IpcSessionSlots, send: Send): boolean {
  switch (msg.type) {
    case 'sessions':
      send({ type: 'sessions-reply', requestId: msg.requestId, sessions: plane.registry.summaries() });
      return true;
    case 'kill':
      send({ type: 'kill-reply', requestId: msg.requestId, found: plane.killSession(msg.id) });
      return true;
    case 'slot-granted':
      slots.granted(msg.requestId, msg.granted);
      return true;
    default:
      return false;
  }
}
