// Reuse of upstream connections between sessions, as PgBouncer does in session mode: when a client
// ends its session cleanly (Terminate while the server is idle, outside a transaction), its upstream
// connection is reset with DISCARD ALL (prepared statements, temporary tables, settings, LISTEN,
// advisory locks, cursors: everything a new connection would not have) and waits for the next
// session that connects to the same server as the same role with the same startup parameters.
// A fresh PostgreSQL backend is costly: the fork and authentication, then every shared-buffer page
// it touches for the first time is a page fault of its own. One that waits longer than the idle
// timeout, that the server closes, or that says anything while idle is closed and forgotten. One
// that waited longer than the check delay first answers an empty query before a session gets it
// (PgBouncer's server_check_delay and server_check_query): a connection a firewall or the network
// dropped without a word would otherwise fail the session's first statement. After a config reload
// only the servers and credentials still in use keep their idle connections.
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
  /** A connection idle for longer is checked with an empty query before it is handed out (0: always). */
  readonly checkDelayMs: number;
  /** How long the reset or the check may take before the connection counts as dead. */
  readonly checkTimeoutMs: number;
}

/** Which sessions may share a connection: the same `target` (server, role, credentials, TLS) and `id`. */
export interface PoolKey {
  readonly target: string;
  /** The target and the startup parameters. */
  readonly id: string;
}

/** Whether connections are reused at all under `limits`. */
export const reuses = (limits: Pick<IdleLimits, 'timeoutMs' | 'max'>): boolean => limits.timeoutMs > 0 && limits.max > 0;

interface Idle {
  readonly upstream: PooledUpstream;
  readonly timer: NodeJS.Timeout;
  /** Date.now() when the reset was answered. */
  readonly since: number;
  /** Removes the pool's listeners from the socket. */
  readonly forget: () => void;
  /** Closes the connection (a Terminate, or at once when the socket is gone). */
  readonly close: () => void;
}

interface KeyIdle {
  readonly target: string;
  readonly entries: Idle[];
}

const RESET_FRAME = serialize.query('DISCARD ALL');
/** The check of a connection that waited long: the cheapest round trip (EmptyQueryResponse, ReadyForQuery). */
const CHECK_FRAME = serialize.query('');
const TERMINATE = serialize.end();
/** A reset answers with a few small frames; anything this large is not a reset's answer. */
const MAX_RESET_REPLY = 64 * 1024;
/** Of the reset's answer only errors and its end matter. */
const RESET_REPLY_FRAMES = frameTypeSet([BackendCode.ErrorResponse, BackendCode.ReadyForQuery]);

/** The key of the sessions that may share an upstream connection: same target, same startup parameters. */
export function poolKey(target: string, startupParams: ReadonlyMap<string, string>): PoolKey {
  return { target, id: JSON.stringify([target, [...startupParams].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]) };
}

export class UpstreamPool {
  private readonly idle = new Map<string, KeyIdle>();
  /** The targets the current config uses with reuse on; undefined until the first `retainTargets`. */
  private retained: ReadonlySet<string> | undefined;

  /**
   * An idle connection for `key`, taken out of the pool, or undefined when none is left. The most
   * recently reset one comes first; one idle for longer than `limits.checkDelayMs` is handed out
   * only once it answered an empty query within `limits.checkTimeoutMs` (else it is closed and the
   * next one is tried).
   */
  async take(key: PoolKey, limits: IdleLimits): Promise<PooledUpstream | undefined> {
    for (;;) {
      const entry = this.pop(key.id);
      if (entry === undefined) return undefined;
      if (Date.now() - entry.since <= limits.checkDelayMs) return entry.upstream;
      if (await answersCheck(entry.upstream, limits.checkTimeoutMs)) return entry.upstream;
    }
  }

  /**
   * After a config (re)load: closes the idle connections of every target not in `targets`, and
   * from now on keeps no connection of such a target (a session still running with the old
   * settings closes its upstream at its end).
   */
  retainTargets(targets: ReadonlySet<string>): void {
    this.retained = targets;
    for (const [id, list] of [...this.idle]) {
      if (targets.has(list.target)) continue;
      this.idle.delete(id);
      for (const entry of list.entries) {
        detach(entry);
        entry.close();
      }
    }
  }

  private pop(id: string): Idle | undefined {
    const list = this.idle.get(id);
    const entry = list?.entries.pop();
    if (entry === undefined) return undefined;
    if (list!.entries.length === 0) this.idle.delete(id);
    detach(entry);
    return entry;
  }

  /**
   * Resets `upstream` (whose session has ended and removed its listeners, with no reply
   * outstanding) and keeps it for `limits.timeoutMs`; closes it instead when the reset fails,
   * `limits.max` connections already wait for `key`, or the config no longer uses its target.
   * A server that does not answer the reset within `limits.checkTimeoutMs` is given up (the
   * connection destroyed), like one that does not answer the check.
   */
  release(key: PoolKey, upstream: PooledUpstream, limits: IdleLimits): void {
    const { socket } = upstream.source;
    // The server closes its end on Terminate; the socket is destroyed when that arrives.
    const close = (): void => {
      if (!socket.destroyed) socket.end(TERMINATE);
    };
    if (!reuses(limits) || socket.destroyed || !this.hasRoom(key, limits)) {
      close();
      return;
    }
    const reply = resetReply();
    let idle: Idle | undefined;
    const drop = (): void => {
      clearTimeout(unanswered);
      if (idle !== undefined) this.remove(key, idle);
      socket.destroy();
    };
    const unanswered = setTimeout(drop, limits.checkTimeoutMs);
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
      clearTimeout(unanswered);
      if (outcome === 'failed') {
        close();
        return;
      }
      const forget = (): void => {
        socket.off('error', drop);
        socket.off('close', drop);
      };
      if (!this.hasRoom(key, limits)) {
        forget();
        close();
        return;
      }
      idle = { upstream, timer: setTimeout(() => this.expire(key, idle!), limits.timeoutMs), since: Date.now(), forget, close };
      idle.timer.unref();
      const list = this.idle.get(key.id);
      if (list === undefined) this.idle.set(key.id, { target: key.target, entries: [idle] });
      else list.entries.push(idle);
    });
    upstream.source.write(RESET_FRAME, 0, RESET_FRAME.length);
    socket.resume();
  }

  /** Whether one more connection for `key` may wait: the config uses its target and there is room. */
  private hasRoom(key: PoolKey, limits: IdleLimits): boolean {
    return this.retained?.has(key.target) !== false && (this.idle.get(key.id)?.entries.length ?? 0) < limits.max;
  }

  private expire(key: PoolKey, entry: Idle): void {
    this.remove(key, entry);
    detach(entry);
    entry.close();
  }

  private remove(key: PoolKey, entry: Idle): void {
    clearTimeout(entry.timer);
    const list = this.idle.get(key.id);
    const at = list?.entries.indexOf(entry) ?? -1;
    if (at < 0) return;
    list!.entries.splice(at, 1);
    if (list!.entries.length === 0) this.idle.delete(key.id);
  }
}

/** Ends an entry's time in the pool: its timer and the pool's listeners go. */
function detach(entry: Idle): void {
  clearTimeout(entry.timer);
  entry.forget();
}

/**
 * Sends the check and follows its answer: true once the server answered it as an idle connection
 * should; false (and the connection destroyed) on anything else, the connection's end, or no answer
 * within `timeoutMs`. Bytes after the answer wait in `pending` for the session's relay.
 */
function answersCheck(upstream: PooledUpstream, timeoutMs: number): Promise<boolean> {
  const { source } = upstream;
  const { socket } = source;
  return new Promise((resolve) => {
    const reply = resetReply();
    let settled = false;
    const finish = (alive: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('close', dead).off('error', dead);
      if (!alive) socket.destroy();
      resolve(alive);
    };
    const dead = (): void => finish(false);
    const timer = setTimeout(dead, timeoutMs);
    socket.on('close', dead).on('error', dead);
    source.start((chunk, length) => {
      if (settled) {
        source.pending.push(Buffer.from(chunk.subarray(0, length)));
        return;
      }
      const outcome = reply(chunk, length);
      if (outcome !== 'pending') finish(outcome === 'idle');
    });
    if (socket.destroyed) dead();
    else source.write(CHECK_FRAME, 0, CHECK_FRAME.length);
  });
}

/**
 * Follows the server's answer to the reset (or the check), chunk by chunk: 'idle' once it ended
 * with ReadyForQuery outside a transaction, with no error before it and nothing after it; 'failed'
 * on an error, another transaction state, or a malformed or oversized reply.
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
