// What a replication session (pg_basebackup, pg_recvlogical, logical-decoding clients) does
// differently from others in the relay: its commands count as class replication in metrics and the
// audit log; a stream still running when the session ends (clients stop streaming by closing the
// connection) gets its statement line then; and the bytes of its stream reach the byte counters
// while it streams (a stream may last for days without the ReadyForQuery at which other sessions
// report them). Its upstream connection
// is its own (session.ts never takes one from the pool nor gives it back), and the CopyBoth stream
// is relayed as any other frames: cut by length, not decoded, with backpressure both ways.
import type { PgRelay, RelayOptions } from './relay.js';
import { replicationCommandOf } from './replication-commands.js';

/** How often a streaming replication session reports its bytes. */
const BYTES_REPORT_INTERVAL_MS = 1000;

/** The relay options of a replication session. */
export const replicationRelayOptions: Pick<RelayOptions, 'classOf' | 'reportUnfinished'> = {
  classOf: (text) => (replicationCommandOf(text) === undefined ? undefined : 'replication'),
  reportUnfinished: true,
};

/** Reports the relay's bytes every second until the returned function is called. */
export function reportBytesWhileStreaming(relay: PgRelay): () => void {
  const timer = setInterval(() => relay.flushBytes(), BYTES_REPORT_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
