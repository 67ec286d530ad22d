// Token bucket for the statements/second limits of a policy (per session and per binding).
// Hand-written: a bucket is a few lines of arithmetic, and the libraries that offer one add timers
// or promises where the relay needs one synchronous yes/no per statement.

export class TokenBucket {
  private tokens: number;
  private last: number;

  /**
   * `ratePerSecond` tokens are added per second up to `burst` (default: one second's worth, at
   * least 1); the bucket starts full. `nowMs` is any monotonic clock in milliseconds.
   */
  constructor(
    readonly ratePerSecond: number,
    nowMs: number,
    readonly burst: number = Math.max(1, ratePerSecond),
  ) {
    this.tokens = burst;
    this.last = nowMs;
  }

  /** Takes one token when there is one; false when the rate is exceeded. */
  take(nowMs: number): boolean {
    const elapsed = nowMs - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
      this.last = nowMs;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
