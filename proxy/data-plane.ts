// The data plane of one process: a listener per address of each binding (TCP or a Unix socket
// file), the sessions it carries, cancel keys, and the live application of a new set of bindings
// (reload, revocation) without dropping the sessions of bindings that stay. Protocol-neutral: each
// binding names a protocol whose connection handler and prepared runtime are supplied from outside.
// It also bounds the connections that have not authenticated yet (limits.max_pending_auth): a
// flood of connections that never authenticate would otherwise hold descriptors and memory until
// their auth timeout. Past the cap a new connection is refused at once, after the protocol's own
// "too many connections" error when it has one; and a connection still unauthenticated after its
// deadline is destroyed here whatever its handler does, so a client that never closes its end
// cannot hold a slot (or a descriptor) after the handler has given up on it.
import { createServer, type Server, type Socket } from 'node:net';
import { CancelKeys, workerOfProcessId } from './cancel-keys.js';
import type { ConnectionHost } from './connection-host.js';
import { SessionRegistry, type SessionObserver } from './session-registry.js';
import { listenUnixSocket, setSocketAccess } from './unix-socket.js';

/** A TCP address, or a Unix socket file (an absolute path). */
export type ListenTarget = { host: string; port: number } | { path: string };

export interface BindingSpec {
  fqn: string;
  protocol: string;
  /** At least one address; each gets its own listener. */
  listen: readonly ListenTarget[];
  /** Mode and group of the Unix socket files (absent: 0777 and the process's group). */
  unixSocket?: { mode: number; group?: string };
  /** Whatever the protocol's handler needs per connection (credentials, TLS, upstream, stages). */
  runtime: unknown;
}

/** Who connected. */
export interface Peer {
  /** "host:port" ("[v6]:port") for TCP; "unix:PATH", the socket file it came through, for a Unix socket (which has no peer address). */
  address: string;
  /** True on a Unix socket: a local connection, where PostgreSQL for one offers no TLS. */
  unixSocket: boolean;
}

export type ConnectionHandler = (socket: Socket, runtime: unknown, host: ConnectionHost, peer: Peer) => void | Promise<void>;

export interface DataPlaneOptions extends SessionObserver {
  workerIndex: number;
  /**
   * Session ids are "<prefix>-<n>"; the prefix (default: the worker index) must differ between
   * the processes of one sempipe instance over its whole life, restarted workers included.
   */
  sessionIdPrefix?: string;
  handlers: Readonly<Record<string, ConnectionHandler>>;
  /**
   * What a protocol writes to a connection refused for load before closing it (PostgreSQL: FATAL
   * 53300, as a server out of connection slots answers); absent: the connection is closed silently.
   */
  refusalReplies?: Readonly<Record<string, Buffer>>;
  /** Cancel requests for keys another worker issued; absent in a single-process data plane. */
  forwardCancel?: (worker: number, processId: number, secretKey: number) => void;
  onConnection?: (binding: string, protocol: string) => void;
  /** A connection closed at accept; `reason` is `pending_auth` (limits.max_pending_auth was reached). */
  onRefused?: (binding: string, protocol: string, reason: 'pending_auth') => void;
  /** The count of a binding's connections not yet authenticated changed by `delta`. */
  onPendingAuth?: (binding: string, delta: 1 | -1) => void;
  onUpstreamError?: (binding: string, error: unknown) => void;
  onStartupRejected?: (binding: string, clientAddress: string, reason: string) => void;
  onError?: (message: string, error: unknown) => void;
}

interface Listener {
  spec: BindingSpec;
  server: Server;
  /** The address as configured ("host:port" or "unix:PATH"): its key among its binding's listeners. */
  key: string;
  /** The address as reported: for TCP, the one bound (the port chosen for port 0). */
  address: string;
  /** The socket file, for a Unix-socket listener. */
  path?: string;
}

const DEFAULT_UNIX_SOCKET_MODE = 0o777;

/** The key of a listen address within its binding: its text as configured. */
function targetKey(t: ListenTarget): string {
  return 'path' in t ? `unix:${t.path}` : hostPort(t.host, t.port);
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The bounds on connections not yet authenticated, from the process's config. */
export interface PendingAuthLimits {
  /** Most connections this process holds unauthenticated; 0: no cap. */
  max: number;
  /** How long after accept an unauthenticated connection is destroyed, whatever its handler does; 0: never. */
  deadlineMs: number;
}

interface PendingConnection {
  binding: string;
  timer: NodeJS.Timeout | undefined;
  onClose: () => void;
}

export interface ApplyResult {
  /** Listeners that could not be opened, with the reason. */
  failed: Array<{ fqn: string; address: string; error: string }>;
}

const ignore = (): void => {};

function peerOf(listener: Listener, socket: Socket): Peer {
  if (listener.path !== undefined) return { address: listener.address, unixSocket: true };
  const { remoteAddress, remotePort } = socket;
  // Undefined once the client has already gone (reset before the accept was handled).
  return { address: remoteAddress === undefined ? 'unknown' : hostPort(remoteAddress, remotePort ?? 0), unixSocket: false };
}

export class DataPlane implements ConnectionHost {
  readonly cancelKeys: CancelKeys;
  readonly registry: SessionRegistry;
  /** Per binding FQN, its listeners by address key. */
  private readonly listeners = new Map<string, Map<string, Listener>>();
  private readonly sessionIdPrefix: string;
  private readonly pending = new Map<Socket, PendingConnection>();
  private pendingLimits: PendingAuthLimits = { max: 0, deadlineMs: 0 };
  private sessionCounter = 0;
  private draining = false;

  constructor(private readonly opts: DataPlaneOptions) {
    this.cancelKeys = new CancelKeys(opts.workerIndex);
    this.registry = new SessionRegistry(opts);
    this.sessionIdPrefix = opts.sessionIdPrefix ?? String(opts.workerIndex);
  }

  nextSessionId(): string {
    return `${this.sessionIdPrefix}-${++this.sessionCounter}`;
  }

  routeCancel(processId: number, secretKey: number): void {
    const owner = workerOfProcessId(processId);
    if (owner === this.opts.workerIndex || this.opts.forwardCancel === undefined) this.cancelKeys.cancel(processId, secretKey);
    else this.opts.forwardCancel(owner, processId, secretKey);
  }

  onUpstreamError(binding: string, error: unknown): void {
    this.opts.onUpstreamError?.(binding, error);
  }

  /** New bounds apply to connections accepted from now on. */
  setPendingAuthLimits(limits: PendingAuthLimits): void {
    this.pendingLimits = limits;
  }

  /** Connections accepted and not yet authenticated, over all listeners. */
  get pendingAuthCount(): number {
    return this.pending.size;
  }

  authenticated(socket: Socket): void {
    const p = this.pending.get(socket);
    if (p === undefined) return;
    socket.off('close', p.onClose);
    this.settle(socket, p);
  }

  private settle(socket: Socket, p: PendingConnection): void {
    clearTimeout(p.timer);
    this.pending.delete(socket);
    this.opts.onPendingAuth?.(p.binding, -1);
  }

  /** Counts `socket` as pending until its handler reports it authenticated or it closes. */
  private trackPending(binding: string, socket: Socket): void {
    const { deadlineMs } = this.pendingLimits;
    const p: PendingConnection = {
      binding,
      timer: deadlineMs > 0 ? setTimeout(() => socket.destroy(), deadlineMs).unref() : undefined,
      onClose: () => this.settle(socket, p),
    };
    this.pending.set(socket, p);
    socket.once('close', p.onClose);
    this.opts.onPendingAuth?.(binding, 1);
  }

  /** Closes a connection at once; the reply, when the protocol has one, is a single small write the kernel takes whole. */
  private refuse(spec: BindingSpec, socket: Socket): void {
    const reply = this.opts.refusalReplies?.[spec.protocol];
    if (reply !== undefined) socket.write(reply);
    socket.destroy();
    this.opts.onRefused?.(spec.fqn, spec.protocol, 'pending_auth');
  }

  onStartupRejected(binding: string, clientAddress: string, reason: string): void {
    this.opts.onStartupRejected?.(binding, clientAddress, reason);
  }

  /** Makes the listeners match `specs`: new ones open, removed ones close (a revoked binding's sessions with them). */
  async apply(specs: readonly BindingSpec[]): Promise<ApplyResult> {
    const wanted = new Map(specs.map((s) => [s.fqn, s]));
    const failed: ApplyResult['failed'] = [];
    for (const [fqn, listeners] of [...this.listeners]) {
      const next = wanted.get(fqn);
      if (next === undefined) {
        for (const l of [...listeners.values()]) this.closeListener(l);
        this.registry.closeWhere((s) => s.info.binding === fqn, 'revoked');
        continue;
      }
      const keys = new Set(next.listen.map(targetKey));
      for (const [key, l] of [...listeners]) {
        if (!keys.has(key) || next.protocol !== l.spec.protocol) this.closeListener(l);
        else l.spec = next;
      }
    }
    if (this.draining) return { failed };
    for (const spec of specs) {
      for (const target of spec.listen) {
        const key = targetKey(target);
        const existing = this.listeners.get(spec.fqn)?.get(key);
        try {
          if (existing === undefined) this.addListener(await this.listen(spec, target));
          // A reload may change the mode or group of a socket that stays.
          else if (existing.path !== undefined) await this.setAccess(existing);
        } catch (err) {
          failed.push({ fqn: spec.fqn, address: key, error: err instanceof Error ? err.message : String(err) });
        }
      }
    }
    return { failed };
  }

  private addListener(l: Listener): void {
    // A drain that began while this listener was being opened: it must not outlive the drain.
    if (this.draining) {
      l.server.close();
      return;
    }
    const listeners = this.listeners.get(l.spec.fqn) ?? new Map<string, Listener>();
    listeners.set(l.key, l);
    this.listeners.set(l.spec.fqn, listeners);
  }

  private async listen(spec: BindingSpec, target: ListenTarget): Promise<Listener> {
    const server = createServer({ noDelay: true });
    const key = targetKey(target);
    const listener: Listener = { spec, server, key, address: key, ...('path' in target && { path: target.path }) };
    server.on('connection', (socket) => this.accept(listener, socket));
    const onError = (e: Error): void => this.opts.onError?.(`listener ${listener.address} failed`, e);
    if ('path' in target) {
      await listenUnixSocket(server, target.path);
      server.on('error', onError);
      try {
        await this.setAccess(listener);
      } catch (err) {
        server.close();
        throw err;
      }
    } else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: target.host, port: target.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', onError);
      const a = server.address();
      if (a && typeof a === 'object') listener.address = hostPort(a.address, a.port);
    }
    return listener;
  }

  private setAccess(l: Listener): Promise<void> {
    const unix = l.spec.unixSocket;
    return setSocketAccess(l.path!, unix?.mode ?? DEFAULT_UNIX_SOCKET_MODE, unix?.group);
  }

  private accept(listener: Listener, socket: Socket): void {
    socket.on('error', ignore);
    if (this.draining) {
      socket.destroy();
      return;
    }
    const { spec } = listener;
    const handler = this.opts.handlers[spec.protocol];
    if (handler === undefined) {
      socket.destroy();
      return;
    }
    const { max } = this.pendingLimits;
    if (max > 0 && this.pending.size >= max) {
      this.refuse(spec, socket);
      return;
    }
    this.trackPending(spec.fqn, socket);
    this.opts.onConnection?.(spec.fqn, spec.protocol);
    Promise.resolve(handler(socket, spec.runtime, this, peerOf(listener, socket))).catch((err: unknown) => {
      this.opts.onError?.(`connection on ${listener.address} failed`, err);
      socket.destroy();
    });
  }

  /**
   * Stops accepting at once. Not awaited: server.close() calls back only once every accepted
   * connection has ended, which would block a revocation or a drain behind the very sessions it
   * is about to close.
   */
  private closeListener(l: Listener): void {
    const listeners = this.listeners.get(l.spec.fqn);
    listeners?.delete(l.key);
    if (listeners?.size === 0) this.listeners.delete(l.spec.fqn);
    l.server.close();
  }

  /** Closes one session by id; false when unknown here. */
  killSession(id: string): boolean {
    const s = this.registry.get(id);
    if (s === undefined) return false;
    s.close('killed');
    return true;
  }

  /**
   * Graceful stop: no new connections, sessions may finish for up to `timeoutMs`, then the rest
   * are closed with the protocol's shutdown error.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    for (const listeners of [...this.listeners.values()]) for (const l of [...listeners.values()]) this.closeListener(l);
    for (const s of this.registry.all()) s.endWhenIdle?.();
    if (!(await this.registry.waitEmpty(timeoutMs))) {
      this.registry.closeWhere(() => true, 'shutdown');
      await this.registry.waitEmpty(2000);
    }
  }
}
