// Reuse of upstream connections between sessions, as PgBouncer does in session mode: when a client
// ends its session cleanly (Terminate while the server is idle, outside a transaction), its upstream
// connection is reset with DISCARD ALL (prepared statements, temporary tables, settings, LISTEN,
// advisory locks, cursors: everything a new connection would not have) and waits for the next
// session that connects to the same server as the same role with the same startup parameters.
// A fresh PostgreSQL backend is costly: the fork and authentication, then every shared-buffer page
// it touches for the first time is a page fault of its own. One that waits longer than the idle
// timeout, that the server closes, or that says anything while idle is closed and forgotten.
// Each worker process has its own pool; nothing crosses processes.
import { serialize } from 'pg-protocol';
import type { ChunkSource } from '../../proxy/chunk-reader.js';
import { FrameScanner, frameTypeSet, ScanStatus, type FrameHandler } from './frame-scanner.js';
import { BackendCode, TransactionStatus } from './message-codes.js';

/** What a session needs of an upstream connection that is already past its startup. */
export interface PooledUpstream {
  readonly source: ChunkSource;
  /** The server's ParameterStatus frames of the connection's startup, replayed to each client. */
  readonly parameterStatus: readonly Buffer[];
  readonly backendKey: { processId: number; secretKey: number };
}

/** How long an idle connection is kept, and how many are kept per key; either 0: no reuse. */
export interface IdleLimits {
  readonly timeoutMs: number;
  readonly max: number;
}

/** Whether connections are reused at all under `limits`. */
export const reuses = (limits: IdleLimits): boolean => limits.timeoutMs > 0 && limits.max > 0;

interface Idle {
  readonly upstream: PooledUpstream;
  readonly timer: NodeJS.Timeout;
  readonly forget: () => void;
}

const RESET_FRAME = serialize.query('DISCARD ALL');
const TERMINATE = serialize.end();
/** A reset answers with a few small frames; anything this large is not a reset's answer. */
const MAX_RESET_REPLY = 64 * 1024;
/** Of the reset's answer only errors and its end matter. */
const RESET_REPLY_FRAMES = frameTypeSet([BackendCode.ErrorResponse, BackendCode.ReadyForQuery]);

/** The key of the sessions that may share an upstream connection: same target, same startup parameters. */
export function poolKey(target: string, startupParams: ReadonlyMap<string, string>): string {
  return JSON.stringify([target, [...startupParams].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
}

export class UpstreamPool {
  private readonly idle = new Map<string, Idle[]>();

  /** An idle connection for `key`, taken out of the pool, or undefined. */
  take(key: string): PooledUpstream | undefined {
    const list = this.idle.get(key);
    const entry = list?.pop();
    if (entry === undefined) return undefined;
    if (list!.length === 0) this.idle.delete(key);
    clearTimeout(entry.timer);
    entry.forget();
    return entry.upstream;
  }

  /**
   * Resets `upstream` (whose session has ended and removed its listeners, with no reply
   * outstanding) and keeps it for `limits.timeoutMs`; closes it instead when the reset fails or
   * `limits.max` connections already wait for `key`.
   */
  release(key: string, upstream: PooledUpstream, limits: IdleLimits): void {
    const { socket } = upstream.source;
    // The server closes its end on Terminate; the socket is destroyed when that arrives.
    const close = (): void => {
      if (!socket.destroyed) socket.end(TERMINATE);
    };
    if (!reuses(limits) || socket.destroyed || this.waiting(key) >= limits.max) {
      close();
      return;
    }
    const reply = resetReply();
    let idle: Idle | undefined;
    const drop = (): void => {
      if (idle !== undefined) this.remove(key, idle);
      socket.destroy();
    };
    socket.on('error', drop);
    socket.on('close', drop);
    upstream.source.start((chunk, length) => {
      if (idle !== undefined) {
        // An idle server speaks only to say it is going away (e.g. pg_terminate_backend).
        drop();
        return;
      }
      const outcome = reply(chunk, length);
      if (outcome === 'pending') return;
      if (outcome === 'failed') {
        close();
        return;
      }
      const forget = (): void => {
        socket.off('error', drop);
        socket.off('close', drop);
      };
      if (this.waiting(key) >= limits.max) {
        forget();
        close();
        return;
      }
      idle = { upstream, timer: setTimeout(() => this.expire(key, idle!, close), limits.timeoutMs), forget };
      idle.timer.unref();
      this.idle.set(key, [...(this.idle.get(key) ?? []), idle]);
    });
    upstream.source.write(RESET_FRAME, 0, RESET_FRAME.length);
    socket.resume();
  }

  private waiting(key: string): number {
    return this.idle.get(key)?.length ?? 0;
  }

  private expire(key: string, entry: Idle, close: () => void): void {
    this.remove(key, entry);
    entry.forget();
    close();
  }

  private remove(key: string, entry: Idle): void {
    clearTimeout(entry.timer);
    const list = this.idle.get(key);
    if (list === undefined) return;
    const rest = list.filter((e) => e !== entry);
    if (rest.length === 0) this.idle.delete(key);
    else this.idle.set(key, rest);
  }
}

/**
 * Follows the server's answer to the reset, chunk by chunk: 'idle' once it ended with ReadyForQuery
 * outside a transaction, with no error before it and nothing after it; 'failed' on an error, another
 * transaction state, or a malformed or oversized reply.
 */
export function resetReply(): (chunk: Buffer, length: number) => 'pending' | 'idle' | 'failed' {
  const scanner = new FrameScanner(RESET_REPLY_FRAMES, MAX_RESET_REPLY);
  let received = 0;
  let chunkLength = 0;
  let errored = false;
  let outcome: 'pending' | 'idle' | 'failed' = 'pending';
  const handler: FrameHandler = {
    onFrame(type, f) {
      if (type === BackendCode.ErrorResponse) {
        errored = true;
        return true;
      }
      const idle = !errored && f.length === 6 && f.buf[f.start + 5] === TransactionStatus.Idle && f.endInChunk === chunkLength;
      outcome = idle ? 'idle' : 'failed';
      return false;
    },
  };
  return (chunk, length) => {
    received += length;
    chunkLength = length;
    if (received > MAX_RESET_REPLY) return 'failed';
    if (!scanner.scan(chunk, handler, 0, length) && scanner.status !== ScanStatus.Ok) return 'failed';
    return outcome;
  };
}
