// Cancel keys of our own (PostgreSQL BackendKeyData, later MySQL connection ids for KILL): each
// session gets a key of ours, mapped to the real upstream key.
// The owning worker is encoded in the process id (like PgBouncer's `peers`), so a CancelRequest
// that lands on any worker can be routed to the one holding the session.
import { randomInt } from 'node:crypto';

/** Bits of the process id that carry the session counter; the bits above carry the worker. */
const COUNTER_BITS = 24;
const COUNTER_MASK = (1 << COUNTER_BITS) - 1;
export const MAX_WORKERS = 127;

export interface CancelTarget {
  secretKey: number;
  cancel(): void;
}

export class CancelKeys {
  private counter = 0;
  private readonly sessions = new Map<number, CancelTarget>();

  constructor(readonly workerIndex: number) {
    if (workerIndex < 0 || workerIndex > MAX_WORKERS) throw new Error(`worker index ${workerIndex} out of range`);
  }

  /** Issues a key for a new session; `cancel` runs when a matching CancelRequest arrives. */
  issue(cancel: () => void): { processId: number; secretKey: number } {
    let processId: number;
    do {
      this.counter = (this.counter + 1) & COUNTER_MASK;
      processId = (this.workerIndex << COUNTER_BITS) | this.counter;
    } while (this.counter === 0 || this.sessions.has(processId));
    const secretKey = randomInt(-0x80000000, 0x7fffffff);
    this.sessions.set(processId, { secretKey, cancel });
    return { processId, secretKey };
  }

  release(processId: number): void {
    this.sessions.delete(processId);
  }

  /** Runs the session's cancel when the key matches; unknown keys are dropped as PostgreSQL does. */
  cancel(processId: number, secretKey: number): boolean {
    const target = this.sessions.get(processId);
    // The secret is a 32-bit integer compared as one machine word: no data-dependent early exit.
    if (!target || (target.secretKey ^ secretKey) !== 0) return false;
    target.cancel();
    return true;
  }
}

/** Which worker issued a process id. */
export function workerOfProcessId(processId: number): number {
  return processId >>> COUNTER_BITS;
}
