// Messages between the primary and its worker processes (node:cluster IPC).
import type { SempipeConfig } from '../control/config.js';

export type ToWorker =
  | { type: 'config'; generation: number; config: SempipeConfig }
  | { type: 'cancel'; processId: number; secretKey: number }
  | { type: 'drain'; timeoutMs: number };

export type ToPrimary =
  /** The worker listens for messages now (earlier ones would be lost): send it the config. */
  | { type: 'hello' }
  | { type: 'applied'; generation: number; failed: Array<{ fqn: string; address: string; error: string }> }
  | { type: 'cancel'; worker: number; processId: number; secretKey: number };

/** prom-client's cluster aggregation uses the same channel; its messages are not ours. */
export function isOurs(msg: unknown): msg is { type: string } {
  return typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string';
}
