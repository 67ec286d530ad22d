// The HTTP side of policies: synchronous hooks (POST the statement, the answer permits or refuses
// it, with a timeout and an explicit fail-open/fail-closed choice) and asynchronous notifications
// (POST after a statement completed, fire-and-forget with a bounded number in flight), on undici.
import { request } from 'undici';
import { denialMessage, type CompiledHook, type CompiledNotification, type Denial } from './engine.js';

/** The JSON body a hook receives. */
export interface HookRequest {
  binding: string;
  service: string;
  user: string;
  class: string;
  statement: string;
}

/** The JSON body a notification carries. */
export interface NotificationBody {
  binding: string;
  service: string;
  user: string;
  class: string;
  statement: string;
  outcome: 'ok' | 'error' | 'denied';
  sqlstate?: string;
  rows: number;
  latencies: { received_at: string; hook_ms: number; server_ms: number; total_ms: number };
}

/** Most characters of a hook's reason quoted in the client's error. */
const MAX_REASON = 200;

/**
 * Calls one hook; resolves with the denial to answer, or undefined when the statement may run.
 * A timeout, a transport error, a non-2xx status or an answer without a boolean `permitted` is a
 * failure, decided by the hook's on_error.
 */
export async function callHook(hook: CompiledHook, body: HookRequest): Promise<Denial | undefined> {
  let answer: unknown;
  try {
    const res = await request(hook.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(hook.timeoutMs),
      headersTimeout: hook.timeoutMs,
      bodyTimeout: hook.timeoutMs,
    });
    if (res.statusCode < 200 || res.statusCode > 299) {
      await res.body.dump();
      return failure(hook, `answered HTTP ${res.statusCode}`);
    }
    answer = await res.body.json();
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === 'TimeoutError' || /timeout/i.test(err.name));
    return failure(hook, timedOut ? `did not answer within ${hook.timeoutMs}ms` : 'could not be reached');
  }
  const permitted = (answer as { permitted?: unknown } | null)?.permitted;
  if (typeof permitted !== 'boolean') return failure(hook, 'answered without a boolean "permitted"');
  if (permitted) return undefined;
  const reason = (answer as { reason?: unknown }).reason;
  const why = typeof reason === 'string' && reason.length > 0 ? `: ${reason.substring(0, MAX_REASON)}` : '';
  return { action: 'error', code: '42501', message: denialMessage(hook.policy, `the policy's hook refused the statement${why}`, 'hook'), rule: 'hook', policy: hook.policy };
}

function failure(hook: CompiledHook, what: string): Denial | undefined {
  if (hook.onError === 'allow') return undefined;
  return { action: 'error', code: '42501', message: denialMessage(hook.policy, `the policy's hook ${what} (on_error: deny)`, 'hook'), rule: 'hook', policy: hook.policy };
}

export interface NotifierOptions {
  /** Most notifications in flight at once; more are dropped and counted (default 256). */
  maxInFlight?: number;
  /** Per-notification timeout (default 5 s). */
  timeoutMs?: number;
  /** Called once per dropped notification (queue full) with the binding it was for. */
  onDrop?: (binding: string) => void;
}

/** Posts notifications without ever blocking the caller; failures are dropped silently. */
export class Notifier {
  private inFlight = 0;
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;

  constructor(private readonly opts: NotifierOptions = {}) {
    this.maxInFlight = opts.maxInFlight ?? 256;
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  get pending(): number {
    return this.inFlight;
  }

  send(target: CompiledNotification, body: NotificationBody): void {
    if (this.inFlight >= this.maxInFlight) {
      this.opts.onDrop?.(body.binding);
      return;
    }
    this.inFlight++;
    request(target.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    })
      .then((res) => res.body.dump())
      .catch(() => undefined)
      .finally(() => this.inFlight--);
  }
}
