// Messages between the primary and its worker processes (node:cluster IPC).
import type { SempipeConfig } from '../control/config.js';
import type { MetricsSnapshot } from '../control/metrics.js';
import type { SessionRecord } from '../control/stages/audit-stage.js';
import type { SessionSummary } from '../proxy/session-registry.js';

export type ToWorker =
  | { type: 'config'; generation: number; config: SempipeConfig }
  | { type: 'cancel'; processId: number; secretKey: number }
  | { type: 'drain'; timeoutMs: number }
  | { type: 'sessions'; requestId: number }
  | { type: 'kill'; requestId: number; id: string }
  | { type: 'slot-granted'; requestId: number; granted: boolean }
  | { type: 'metrics'; requestId: number };

export type ToPrimary =
  /** The worker listens for messages now (earlier ones would be lost): send it the config. */
  | { type: 'hello' }
  | { type: 'applied'; generation: number; failed: Array<{ fqn: string; address: string; error: string }> }
  | { type: 'cancel'; worker: number; processId: number; secretKey: number }
  | { type: 'sessions-reply'; requestId: number; sessions: SessionSummary[] }
  | { type: 'kill-reply'; requestId: number; found: boolean }
  | { type: 'slot-acquire'; requestId: number; binding: string; limit: number }
  | { type: 'slot-release'; binding: string }
  /** Sent once per session as it starts and ends (never per statement): the primary's record of live sessions. */
  | { type: 'session-start'; session: SessionRecord }
  | { type: 'session-end'; id: string }
  /** A draining worker's last message, sent to know that every earlier one has been written. */
  | { type: 'drained' }
  | { type: 'metrics-reply'; requestId: number; metrics: MetricsSnapshot };

/** prom-client's cluster aggregation uses the same channel; its messages are not ours. */
export function isOurs(msg: unknown): msg is { type: string } {
  if (typeof msg !== 'object' || msg === null) return false;
  const type = (msg as { type?: unknown }).type;
  return typeof type === 'string' && !type.startsWith('prom-client');
}
