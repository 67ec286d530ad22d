// The data plane of one process: a TCP listener per binding, the sessions it carries, cancel keys,
// and the live application of a new set of bindings (reload, revocation) without dropping the
// sessions of bindings that stay. Protocol-neutral: each binding names a protocol whose connection
// handler and prepared runtime are supplied from outside.
import { createServer, type Server, type Socket } from 'node:net';
import { CancelKeys, workerOfProcessId } from './cancel-keys.js';
import type { ConnectionHost } from './connection-host.js';
import { SessionRegistry } from './session-registry.js';

export interface BindingSpec {
  fqn: string;
  protocol: string;
  host: string;
  port: number;
  /** Whatever the protocol's handler needs per connection (credentials, TLS, upstream, stages). */
  runtime: unknown;
}

export type ConnectionHandler = (socket: Socket, runtime: unknown, host: ConnectionHost) => void | Promise<void>;

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
  address: string;
}

export interface ApplyResult {
  /** Listeners that could not be opened, with the reason. */
  failed: Array<{ fqn: string; address: string; error: string }>;
}

const ignore = (): void => {};

export class DataPlane implements ConnectionHost {
  readonly cancelKeys: CancelKeys;
  readonly registry = new SessionRegistry();
  private readonly listeners = new Map<string, Listener>();
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

  /** Makes the listeners match `specs`: new ones open, removed ones close with their sessions. */
  async apply(specs: readonly BindingSpec[]): Promise<ApplyResult> {
    const wanted = new Map(specs.map((s) => [s.fqn, s]));
    const failed: ApplyResult['failed'] = [];
    for (const [fqn, l] of [...this.listeners]) {
      const next = wanted.get(fqn);
      if (next === undefined) {
        this.closeListener(fqn, l);
        this.registry.closeWhere((s) => s.info.binding === fqn, 'revoked');
      } else if (next.host !== l.spec.host || next.port !== l.spec.port || next.protocol !== l.spec.protocol) {
        this.closeListener(fqn, l);
      } else {
        l.spec = next;
      }
    }
    for (const spec of specs) {
      if (this.listeners.has(spec.fqn) || this.draining) continue;
      try {
        this.listeners.set(spec.fqn, await this.listen(spec));
      } catch (err) {
        failed.push({ fqn: spec.fqn, address: `${spec.host}:${spec.port}`, error: err instanceof Error ? err.message : String(err) });
      }
    }
    return { failed };
  }

  private listen(spec: BindingSpec): Promise<Listener> {
    const server = createServer({ noDelay: true });
    const listener: Listener = { spec, server, address: `${spec.host}:${spec.port}` };
    server.on('connection', (socket) => this.accept(listener, socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: spec.host, port: spec.port }, () => {
        server.off('error', reject);
        server.on('error', (e) => this.opts.onError?.(`listener ${listener.address} failed`, e));
        const a = server.address();
        if (a && typeof a === 'object') listener.address = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
        resolve(listener);
      });
    });
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
    Promise.resolve(handler(socket, spec.runtime, this)).catch((err: unknown) => {
      this.opts.onError?.(`connection on ${listener.address} failed`, err);
      socket.destroy();
    });
  }

  /**
   * Stops accepting at once. Not awaited: server.close() calls back only once every accepted
   * connection has ended, which would block a revocation or a drain behind the very sessions it
   * is about to close.
   */
  private closeListener(fqn: string, l: Listener): void {
    this.listeners.delete(fqn);
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
    for (const [fqn, l] of [...this.listeners]) this.closeListener(fqn, l);
    for (const s of this.registry.all()) s.endWhenIdle?.();
    if (!(await this.registry.waitEmpty(timeoutMs))) {
      this.registry.closeWhere(() => true, 'shutdown');
      await this.registry.waitEmpty(2000);
    }
  }
}
