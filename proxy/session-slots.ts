// Counting of open sessions per binding for limits such as a policy's max_sessions. With several
// worker processes the count must be global, so the data plane asks through this interface: the
// local implementation serves a single process, the primary serves the workers over IPC.

export interface SessionSlots {
  /** Takes a slot of `binding` when fewer than `limit` are taken; false when full. */
  acquire(binding: string, limit: number): Promise<boolean>;
  /** Gives back a slot taken by acquire. */
  release(binding: string): void;
}

/** Counts the sessions of one process (or, in the primary, of all workers). */
export class LocalSessionSlots implements SessionSlots {
  private readonly taken = new Map<string, number>();

  tryAcquire(binding: string, limit: number): boolean {
    const n = this.taken.get(binding) ?? 0;
    if (n >= limit) return false;
    this.taken.set(binding, n + 1);
    return true;
  }

  acquire(binding: string, limit: number): Promise<boolean> {
    return Promise.resolve(this.tryAcquire(binding, limit));
  }

  release(binding: string, count = 1): void {
    const n = (this.taken.get(binding) ?? 0) - count;
    if (n > 0) this.taken.set(binding, n);
    else this.taken.delete(binding);
  }

  count(binding: string): number {
    return this.taken.get(binding) ?? 0;
  }
}
