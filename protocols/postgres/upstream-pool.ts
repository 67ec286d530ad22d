// Reuse of upstream connections between sessions, as PgBouncer does in session mode: when a client
// ends its session cleanly (Terminate while the server is idle, outside a transaction), its upstream
// connection is reset with DISCARD ALL (prepared statements, temporary tables, settings, LISTEN,
// advisory locks, cursors: everything a new connection would not have) and waits for the next
// session that connects to the same server as the same role with the same startup parameters.
// A fresh PostgreSQL backend is costly: the fork and authentication, then every shared-buffer page
// it touches for the first time is a page fault of its own. One that waits longer than the idle
// timeout, that the server closes, or that says anything while idle is closed and forgotten.
// Each worker process has its own pool; nothing crosses processes.
import type { ChunkSource } from '../../proxy/chunk-reader.js';
import { FrontendCode } from './message-codes.js';

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

const RESET_SQL = 'DISCARD ALL';
const TERMINATE = Buffer.from([FrontendCode.Terminate, 0, 0, 0, 4]);
/** A reset answers with a few small frames; anything this large is not a reset's answer. */
const MAX_RESET_REPLY = 64 * 1024;

/** The reset as a Query frame. */
const RESET_FRAME = ((): Buffer => {
  const body = Buffer.from(`${RESET_SQL}\0`);
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = FrontendCode.Query;
  frame.writeUInt32BE(4 + body.length, 1);
  body.copy(frame, 5);
  return frame;
})();

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

  /** Connections waiting for a session, over all keys. */
  get size(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
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
    if (!reuses(limits) || socket.destroyed || (this.idle.get(key)?.length ?? 0) >= limits.max) {
      close();
      return;
    }
    let reply = Buffer.alloc(0);
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
      reply = Buffer.concat([reply, chunk.subarray(0, length)]);
      const outcome = resetOutcome(reply);
      if (outcome === 'pending') return;
      if (outcome === 'failed') {
        close();
        return;
      }
      const forget = (): void => {
        socket.off('error', drop);
        socket.off('close', drop);
      };
      if ((this.idle.get(key)?.length ?? 0) >= limits.max) {
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
 * Where the server's answer to the reset stands: 'idle' once it ended with ReadyForQuery outside a
 * transaction and without an error, 'failed' on an error, an unexpected state or a malformed reply.
 */
function resetOutcome(reply: Buffer): 'pending' | 'idle' | 'failed' {
  if (reply.length > MAX_RESET_REPLY) return 'failed';
  let failed = false;
  let at = 0;
  while (reply.length - at >= 5) {
    const type = reply[at]!;
    const length = reply.readUInt32BE(at + 1);
    if (length < 4) return 'failed';
    const end = at + 1 + length;
    if (end > reply.length) return 'pending';
    if (type === 0x45 /* ErrorResponse */) failed = true;
    if (type === 0x5a /* ReadyForQuery */) {
      if (end !== reply.length) return 'failed';
      return !failed && length === 5 && reply[at + 5] === 0x49 /* 'I' */ ? 'idle' : 'failed';
    }
    at = end;
  }
  return 'pending';
}
