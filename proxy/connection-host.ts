// What a protocol's connection handler gets from the data plane that accepted the connection:
// session ids, the cancel-key table, the live-session registry, cancel routing across workers,
// the report of upstream failures, and the notice that a connection has authenticated.
import type { Socket } from 'node:net';
import type { CancelKeys } from './cancel-keys.js';
import type { SessionRegistry } from './session-registry.js';

export interface ConnectionHost {
  nextSessionId(): string;
  readonly cancelKeys: CancelKeys;
  readonly registry: SessionRegistry;
  /** Delivers a cancel request to the worker that owns the key (this one or another). */
  routeCancel(processId: number, secretKey: number): void;
  onUpstreamError(binding: string, error: unknown): void;
  /**
   * The connection accepted as `socket` has authenticated: it no longer counts against
   * limits.max_pending_auth, nor is it closed at the data plane's auth deadline (auth_timeout plus
   * a grace). Every handler must call it once its client is authenticated; a connection that ends
   * before is noticed by the data plane itself.
   */
  authenticated(socket: Socket): void;
  /** A connection refused before its startup was accepted (malformed, unsupported), with a bounded reason. */
  onStartupRejected(binding: string, clientAddress: string, reason: string): void;
}
