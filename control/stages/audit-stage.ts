// Pipeline stage that writes the audit log: session_start, one statement line per completed
// statement, session_end, and auth_failure. The session's identifying fields live in a pino child
// logger made once in onStart. Statement lines are the hot path (one per statement): in JSON mode
// they are encoded straight into the audit batch (statement-line.ts), in exactly the shape pino
// writes, from the child's pre-serialized bindings, which skips pino's per-key serialization;
// pretty (terminal) mode goes through pino as usual.
import pino, { type Logger } from 'pino';
import type { AuditLog } from '../audit.js';
import type { CompletionEvent, SessionInfo, Stage, StageFactory } from '../../proxy/stage.js';
import { StatementLineEncoder } from './statement-line.js';

/** Statement text cut to at most max UTF-16 units, never splitting a surrogate pair. */
export function truncateStatement(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = max > 0 && isHighSurrogate(text.charCodeAt(max - 1)) ? max - 1 : max;
  return text.substring(0, end);
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** Nanoseconds to milliseconds with microsecond precision. */
function toMilliseconds(ns: bigint): number {
  return Math.round(Number(ns) / 1e3) / 1e3;
}

interface PinoInternals {
  [key: symbol]: unknown;
}

/** The fields of a statement line, as pino logs them (the fast path in statement-line.ts writes the same). */
export function statementFields(c: CompletionEvent, max: number): Record<string, unknown> {
  const truncated = c.text.length > max;
  const line: Record<string, unknown> = {
    event: 'statement',
    statement: truncated ? truncateStatement(c.text, max) : c.text,
    class: c.statementClass,
    duration_ms: toMilliseconds(c.durationNs),
    rows: c.rows,
    outcome: c.outcome,
  };
  if (truncated) line.statement_truncated = true;
  if (c.outcome !== 'ok') {
    line.sqlstate = c.code;
    line.error = c.message;
  }
  if (c.rule !== undefined) line.rule = c.rule;
  if (c.policy !== undefined) line.policy = c.policy;
  if (c.status !== undefined) {
    line.status = c.status;
    line.bytes_in = c.bytesIn;
    line.bytes_out = c.bytesOut;
  }
  return line;
}

/** A session's who and when: what the primary keeps of each live session of its workers. */
export interface SessionRecord {
  readonly id: string;
  readonly binding: string;
  readonly user: string;
  readonly client: string;
  readonly startedAt: number;
}

/** The session_end reason of the sessions of a worker process that died. */
export const WORKER_LOST = 'worker_lost';

/**
 * The session_end line of a session whose worker died, written by the primary: the same fields in
 * the same order as a worker's line, except the statement and byte counts, which died with the
 * worker (the statement lines it wrote are in the log).
 */
export function writeLostSessionEnd(log: AuditLog, s: SessionRecord): void {
  log.logger.info({
    binding: s.binding,
    user: s.user,
    client: s.client,
    session: s.id,
    event: 'session_end',
    reason: WORKER_LOST,
    duration_ms: Date.now() - s.startedAt,
  });
}

export function createAuditStage(log: AuditLog): StageFactory {
  const max = log.maxStatementLength;

  return {
    name: 'audit',
    onAuthFailure(event) {
      log.logger.warn({
        event: 'auth_failure',
        binding: event.binding,
        user: event.user,
        client: event.clientAddress,
        reason: event.reason,
      });
    },
    create(): Stage {
      let logger: Logger | undefined;
      let encoder: StatementLineEncoder | undefined;
      return {
        onStart(session: SessionInfo) {
          logger = log.logger.child({
            binding: session.binding,
            user: session.user,
            client: session.clientAddress,
            session: session.id,
          });
          logger.info({ event: 'session_start', database: session.database, ...(session.replication !== undefined && { replication: session.replication }) });
          if (log.batch !== undefined) {
            const chindings = (logger as unknown as PinoInternals)[pino.symbols.chindingsSym] as string;
            encoder = new StatementLineEncoder(chindings, max, truncateStatement);
          }
        },
        onComplete(_session, completion) {
          // The byte encoder writes the SQL statement line; HTTP lines carry more fields.
          if (encoder !== undefined && completion.status === undefined) encoder.write(log.batch!, completion);
          else if (logger !== undefined) logger.info(statementFields(completion, max));
        },
        onEnd(session, end) {
          if (logger === undefined) return;
          const line: Record<string, unknown> = {
            event: 'session_end',
            reason: end.reason,
            duration_ms: Date.now() - session.startedAt,
            statements: end.statements,
            bytes_in: end.bytesIn,
            bytes_out: end.bytesOut,
          };
          if (end.message !== undefined) line.error = end.message;
          logger.info(line);
          logger = undefined;
          encoder = undefined;
        },
      };
    },
  };
}
