// What a protocol's connection handler gets from the data plane that accepted the connection:
// session ids, the cancel-key table, the live-session registry, cancel routing across workers
// and the report of upstream failures.
import type { CancelKeys } from './cancel-keys.js';
import type { SessionRegistry } from './session-registry.js';

export interface ConnectionHost {
  nextSessionId(): string;
  readonly cancelKeys: CancelKeys;
  readonly registry: SessionRegistry;
  /** Delivers a cancel request to the worker that owns the key (this one or another). */
  routeCancel(processId: number, secretKey: number): void;
  onUpstreamError(binding: string, error: unknown): void;
  /** A connection refused before its startup was accepted (malformed, unsupported), with a bounded reason. */
  onStartupRejected(binding: string, clientAddress: string, reason: string): void;
}
