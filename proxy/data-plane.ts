// The data plane of one process: a listener per address of each binding (TCP or a Unix socket
// file), the sessions it carries, cancel keys, and the live application of a new set of bindings
// (reload, revocation) without dropping the sessions of bindings that stay. Protocol-neutral: each
// binding names a protocol whose connection handler and prepared runtime are supplied from outside.
import { createServer, type Server, type Socket } from 'node:net';
import { CancelKeys, workerOfProcessId } from './cancel-keys.js';
import type { ConnectionHost } from './connection-host.js';
import { SessionRegistry } from './session-registry.js';
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

export interface DataPlaneOptions {
  workerIndex: number;
  handlers: Readonly<Record<string, ConnectionHandler>>;
  /** Cancel requests for keys another worker issued; absent in a single-process data plane. */
  forwardCancel?: (worker: number, processId: number, secretKey: number) => void;
  onConnection?: (binding: string, protocol: string) => void;
  onUpstreamError?: (binding: string, error: unknown) => void;
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
  readonly registry = new SessionRegistry();
  /** Per binding FQN, its listeners by address key. */
  private readonly listeners = new Map<string, Map<string, Listener>>();
  private sessionCounter = 0;
  private draining = false;

  constructor(private readonly opts: DataPlaneOptions) {
    this.cancelKeys = new CancelKeys(opts.workerIndex);
  }

  nextSessionId(): string {
    return `${this.opts.workerIndex}-${++this.sessionCounter}`;
  }

  routeCancel(processId: number, secretKey: number): void {
    const owner = workerOfProcessId(processId);
    if (owner === this.opts.workerIndex || this.opts.forwardCancel === undefined) this.cancelKeys.cancel(processId, secretKey);
    else this.opts.forwardCancel(owner, processId, secretKey);
  }

  onUpstreamError(binding: string, error: unknown): void {
    this.opts.onUpstreamError?.(binding, error);
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
    if (!(await this.registry.waitEmpty(timeoutMs))) {
      this.registry.closeWhere(() => true, 'shutdown');
      await this.registry.waitEmpty(2000);
    }
  }
}
