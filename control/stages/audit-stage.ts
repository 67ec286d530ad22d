// Pipeline stage that writes the audit log: session_start, one statement line per completed
// statement, session_end, and auth_failure. The session's identifying fields live in a pino child
// logger made once in onStart, so each statement line serializes only the statement's own fields.
import type { Logger } from 'pino';
import type { AuditLog } from '../audit.js';
import type { CompletionEvent, SessionInfo, Stage, StageFactory } from '../../proxy/stage.js';

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

export function createAuditStage(log: AuditLog): StageFactory {
  const max = log.maxStatementLength;

  function logStatement(logger: Logger, c: CompletionEvent): void {
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
    logger.info(line);
  }

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
      return {
        onStart(session: SessionInfo) {
          logger = log.logger.child({
            binding: session.binding,
            user: session.user,
            client: session.clientAddress,
            session: session.id,
          });
          logger.info({ event: 'session_start', database: session.database });
        },
        onComplete(_session, completion) {
          if (logger !== undefined) logStatement(logger, completion);
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
        },
      };
    },
  };
}
