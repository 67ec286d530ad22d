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
 * Batch sizes, in UTF-16 units of whole lines. Several worker processes append to one destination.
 * A file is opened with O_APPEND, where each write lands whole, so large batches amortise the write
 * calls. On stdout/stderr (often a pipe) only writes up to PIPE_BUF (4096 bytes) are atomic: a batch
 * of at most 1365 units is at most 4095 bytes of UTF-8, so lines of different workers never mix
 * (a single longer line is written alone).
 */
const FILE_BATCH = 32 * 1024;
const PIPE_BATCH = 1365;

/**
 * Gathers whole lines (every event of the log, pino's and the statement fast path's, in order) and
 * hands them to sonic-boom in batches: sonic-boom measures the byte length of what it is given and
 * of its pending buffer on every write, which per line would cost more than the line itself.
 */
class LineBatcher {
  private pending = '';

  constructor(
    private readonly target: SonicBoomLike,
    private readonly limit: number,
  ) {}

  write(line: string): boolean {
    if (this.pending.length > 0 && this.pending.length + line.length > this.limit) this.flush();
    this.pending += line;
    if (this.pending.length >= this.limit) this.flush();
    return true;
  }

  flush(): void {
    if (this.pending.length === 0) return;
    this.target.write(this.pending);
    this.pending = '';
  }
}

interface SonicBoomLike {
  write(data: string): boolean;
}

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
  const pipe = typeof dest === 'number';
  // minLength 1: sonic-boom writes each batch as it comes and its flush waits for the writes;
  // maxWrite bounds what it merges into one write (PIPE_BUF on pipes).
  const stream = pino.destination({ dest, sync: false, minLength: 1, maxWrite: pipe ? 4096 : 64 * 1024, mkdir: true });
  const batcher = new LineBatcher(stream, pipe ? PIPE_BATCH : FILE_BATCH);
  const timer = setInterval(() => batcher.flush(), FLUSH_INTERVAL_MS);
  timer.unref();
  let closed: Promise<void> | undefined;
  return {
    stream: batcher,
    flush: () => {
      if (closed !== undefined) return closed;
      batcher.flush();
      return new Promise((resolve, reject) => stream.flush((err) => (err ? reject(err) : resolve())));
    },
    close() {
      closed ??= new Promise((resolve, reject) => {
        clearInterval(timer);
        batcher.flush();
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
