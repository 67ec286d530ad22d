// The audit log: one pino JSON line per event (statement, session_start, session_end,
// auth_failure), written off the hot path through a buffered sonic-boom destination that is flushed
// on a short timer, or pretty-printed synchronously when a human watches a terminal.
import pino, { type DestinationStream, type Logger } from 'pino';
import PinoPretty from 'pino-pretty';

export interface AuditLogOptions {
  /** 'stdout', 'stderr' or a file path (appended to, parent directories created). */
  readonly destination: 'stdout' | 'stderr' | string;
  /** Human-readable output; defaults to whether the destination is a terminal. */
  readonly pretty?: boolean;
  /** Statement text longer than this many characters is cut and flagged statement_truncated. */
  readonly maxStatementLength: number;
}

export interface AuditLog {
  readonly logger: Logger;
  /** True when lines are written as JSON (not pretty-printed): the statement fast path applies. */
  readonly json: boolean;
  readonly maxStatementLength: number;
  /** Writes what is buffered; resolves once it reached the destination. */
  flush(): Promise<void>;
  /** Flushes, stops the timer and closes the destination (stdout and stderr stay open). */
  close(): Promise<void>;
}

/** Buffered lines are written at least this often, so the log stays close to real time. */
const FLUSH_INTERVAL_MS = 200;
/**
 * Write sizes. Several worker processes append to one destination. A file is opened with O_APPEND,
 * where each write lands whole, so larger writes amortise the syscalls (not too large: sonic-boom
 * measures its pending buffer on every line). On stdout/stderr (often a pipe) only writes up to
 * PIPE_BUF (4096 bytes) are atomic: each write then holds whole lines and stays within it
 * (sonic-boom never splits a line shorter than maxWrite), so lines of different workers never mix.
 */
const FILE_WRITES = { minLength: 8 * 1024, maxWrite: 16 * 1024 };
const PIPE_WRITES = { minLength: 2048, maxWrite: 4096 };

/** A destination stream with the flush/close operations the audit log needs. */
interface AuditSink {
  readonly stream: DestinationStream;
  flush(): Promise<void>;
  close(): Promise<void>;
}

function fdOf(destination: string): number | string {
  if (destination === 'stdout') return 1;
  if (destination === 'stderr') return 2;
  return destination;
}

function isTerminal(destination: string): boolean {
  if (destination === 'stdout') return process.stdout.isTTY === true;
  if (destination === 'stderr') return process.stderr.isTTY === true;
  return false;
}

function bufferedSink(dest: number | string): AuditSink {
  const sizes = typeof dest === 'number' ? PIPE_WRITES : FILE_WRITES;
  const stream = pino.destination({ dest, sync: false, ...sizes, periodicFlush: FLUSH_INTERVAL_MS, mkdir: true });
  let closed: Promise<void> | undefined;
  return {
    stream,
    flush: () =>
      closed !== undefined
        ? closed
        : new Promise((resolve, reject) => stream.flush((err) => (err ? reject(err) : resolve()))),
    close() {
      closed ??= new Promise((resolve, reject) => {
        stream.once('close', () => resolve());
        stream.once('error', reject);
        stream.end();
      });
      return closed;
    },
  };
}

function prettySink(dest: number | string, colorize: boolean): AuditSink {
  const stream = PinoPretty({ colorize, sync: true, destination: dest, mkdir: true, singleLine: true, messageFormat: '{event}', ignore: 'event' });
  let closed: Promise<void> | undefined;
  return {
    stream,
    flush: () => Promise.resolve(),
    close() {
      closed ??= new Promise((resolve) => stream.end(() => resolve()));
      return closed;
    },
  };
}

export function createAuditLog(opts: AuditLogOptions): AuditLog {
  const dest = fdOf(opts.destination);
  const pretty = opts.pretty ?? isTerminal(opts.destination);
  const sink = pretty ? prettySink(dest, typeof dest === 'number') : bufferedSink(dest);
  const logger = pino(
    {
      base: undefined,
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    sink.stream,
  );
  return {
    logger,
    json: !pretty,
    maxStatementLength: opts.maxStatementLength,
    flush: () => sink.flush(),
    close: () => sink.close(),
  };
}
