// Pipeline stage that writes the audit log: session_start, one statement line per completed
// statement, session_end, and auth_failure. The session's identifying fields live in a pino child
// logger made once in onStart. Statement lines are the hot path (one per statement): in JSON mode
// they are composed here, in exactly the shape pino writes, from the child's pre-serialized
// bindings and written to the child's own buffered destination, which skips pino's per-key
// serialization; pretty (terminal) mode goes through pino as usual.
import pino, { type Logger } from 'pino';
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

/** ISO time of the current millisecond, computed once per millisecond. */
let isoMs = 0;
let isoText = '';
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/** JSON strings of the statement classes seen so far (a handful of names). */
const classJson = new Map<string, string>();
function quotedClass(statementClass: string): string {
  let json = classJson.get(statementClass);
  if (json === undefined) {
    json = JSON.stringify(statementClass);
    classJson.set(statementClass, json);
  }
  return json;
}

interface PinoInternals {
  [key: symbol]: unknown;
}

/** One statement line as pino would write it for `logger.info({event: 'statement', …})`. */
function statementLine(chindings: string, c: CompletionEvent, max: number, quoted: (text: string) => string): string {
  const truncated = c.text.length > max;
  const statement = quoted(truncated ? truncateStatement(c.text, max) : c.text);
  let line = `{"level":"info","time":"${isoNow()}"${chindings},"event":"statement","statement":${statement},"class":${quotedClass(c.statementClass)},"duration_ms":${toMilliseconds(c.durationNs)},"rows":${c.rows},"outcome":"${c.outcome}"`;
  if (truncated) line += ',"statement_truncated":true';
  if (c.outcome !== 'ok') line += `,"sqlstate":${JSON.stringify(c.code)},"error":${JSON.stringify(c.message)}`;
  if (c.rule !== undefined) line += `,"rule":${JSON.stringify(c.rule)}`;
  if (c.policy !== undefined) line += `,"policy":${JSON.stringify(c.policy)}`;
  return line + '}\n';
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
    if (c.rule !== undefined) line.rule = c.rule;
    if (c.policy !== undefined) line.policy = c.policy;
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
      let chindings = '';
      let stream: { write(line: string): unknown } | undefined;
      // A session tends to repeat its statements (prepared ones are the very same string): keep the
      // JSON form of the last one.
      let lastText: string | undefined;
      let lastQuoted = '';
      const quoted = (text: string): string => {
        if (text !== lastText) {
          lastText = text;
          lastQuoted = JSON.stringify(text);
        }
        return lastQuoted;
      };
      return {
        onStart(session: SessionInfo) {
          logger = log.logger.child({
            binding: session.binding,
            user: session.user,
            client: session.clientAddress,
            session: session.id,
          });
          logger.info({ event: 'session_start', database: session.database });
          if (log.json) {
            const internals = logger as unknown as PinoInternals;
            chindings = internals[pino.symbols.chindingsSym] as string;
            stream = internals[pino.symbols.streamSym] as { write(line: string): unknown };
          }
        },
        onComplete(_session, completion) {
          if (stream !== undefined) stream.write(statementLine(chindings, completion, max, quoted));
          else if (logger !== undefined) logStatement(logger, completion);
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
          stream = undefined;
        },
      };
    },
  };
}
