// The audit log: one pino JSON line per event (statement, session_start, session_end,
// auth_failure), written off the hot path through a buffered sonic-boom destination that is flushed
// on a short timer, or pretty-printed synchronously when a human watches a terminal.
import { fstatSync, statSync } from 'node:fs';
import { isatty } from 'node:tty';
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
  /**
   * The batch that JSON lines go into, in the order they are logged (pino's lines and the
   * statement fast path's); undefined when lines are pretty-printed.
   */
  readonly batch: LineBatcher | undefined;
  readonly maxStatementLength: number;
  /** Writes what is buffered; resolves once it reached the destination. */
  flush(): Promise<void>;
  /** Flushes, stops the timer and closes the destination (stdout and stderr stay open). */
  close(): Promise<void>;
}

/** Buffered lines are written at least this often, so the log stays close to real time. */
const FLUSH_INTERVAL_MS = 200;
/**
 * Batch sizes in bytes. Several worker processes write to one destination. On a regular file (a
 * path opened with O_APPEND, or stdout redirected to a file, whose open file description the
 * workers share and whose position the kernel updates under a lock) each write lands whole, so
 * large batches amortise the write calls. On a pipe or socket only writes up to PIPE_BUF (4096
 * bytes) are atomic, so a batch holds at most that much and lines of different workers never mix
 * (a single longer line is written alone).
 */
const FILE_BATCH = 64 * 1024;
const PIPE_BATCH = 4096;
/** UTF-8 needs at most three bytes per UTF-16 unit. */
const MAX_UTF8_PER_UNIT = 3;

/**
 * Gathers whole lines (every event of the log, pino's and the statement fast path's, in order),
 * encoding each straight into a byte buffer, and hands full buffers to sonic-boom in buffer mode:
 * no concatenated string to flatten and convert per write, and sonic-boom does not measure the
 * byte length of what it holds on every line.
 */
export class LineBatcher {
  /** The batch being filled; a line composed in place goes at `used` (see reserve). */
  buffer: Buffer;
  used = 0;

  constructor(
    private readonly target: SonicBoomLike,
    private readonly size: number,
  ) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  write(line: string): boolean {
    if (!this.fits(line)) {
      this.flush();
      if (!this.fits(line)) return this.writeWhole(Buffer.from(line));
    }
    this.used += this.buffer.write(line, this.used);
    return true;
  }

  /**
   * Makes room for a line of at most `bytes` bytes that the caller encodes into `buffer` from
   * `used` on and then ends with `commit`; false when that bound exceeds a batch (encode the line
   * elsewhere and `append` it).
   */
  reserve(bytes: number): boolean {
    if (bytes <= this.size - this.used) return true;
    if (bytes > this.size) return false;
    this.flush();
    return true;
  }

  /** Adds an encoded line: copied into the batch when it fits, else written on its own. */
  append(line: Buffer): void {
    if (line.length > this.size - this.used) this.flush();
    if (line.length > this.size) {
      this.writeWhole(line);
      return;
    }
    this.buffer.set(line, this.used);
    this.used += line.length;
  }

  /** A line larger than any batch, written on its own after what is batched. */
  private writeWhole(line: Buffer): boolean {
    this.flush();
    this.target.write(line);
    return true;
  }

  /** Ends a line composed in place: `end` is the offset just past it. */
  commit(end: number): void {
    this.used = end;
  }

  flush(): void {
    if (this.used === 0) return;
    // The target may still hold the batch after write() returns (an asynchronous write): a new
    // buffer takes the next lines.
    this.target.write(this.buffer.subarray(0, this.used));
    this.buffer = Buffer.allocUnsafe(this.size);
    this.used = 0;
  }

  private fits(line: string): boolean {
    const room = this.size - this.used;
    return line.length * MAX_UTF8_PER_UNIT <= room || Buffer.byteLength(line) <= room;
  }
}

interface SonicBoomLike {
  write(data: Buffer): boolean;
}

/** A destination stream with the flush/close operations the audit log needs. */
interface AuditSink {
  readonly stream: DestinationStream;
  readonly batch: LineBatcher | undefined;
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

/**
 * How a destination is written: 'stream' for pipes, sockets and terminals (a reader may be slow,
 * and only PIPE_BUF writes are atomic), 'file' for regular files and other devices such as
 * /dev/null. Decided by what the descriptor or path is, not by its name: stdout redirected to a
 * file is a file.
 */
export function destinationKind(dest: number | string): 'stream' | 'file' {
  if (typeof dest === 'number') {
    const st = fstatSync(dest);
    return st.isFIFO() || st.isSocket() || isatty(dest) ? 'stream' : 'file';
  }
  const st = statSync(dest, { throwIfNoEntry: false });
  return st !== undefined && (st.isFIFO() || st.isSocket()) ? 'stream' : 'file';
}

function bufferedSink(dest: number | string): AuditSink {
  const pipe = destinationKind(dest) === 'stream';
  // minLength 1: sonic-boom writes each batch as it comes and its flush waits for the writes;
  // maxWrite bounds what it merges into one write (PIPE_BUF on pipes). A file is written
  // synchronously, a batch at a time, as nginx writes its buffered access log: appending to the
  // page cache costs less than handing each batch to the thread pool and back. A pipe's reader
  // may be slow, so there the writes stay asynchronous and never block the event loop.
  const stream = pino.destination({ dest, sync: !pipe, contentMode: 'buffer', minLength: 1, maxWrite: pipe ? PIPE_BATCH : FILE_BATCH, mkdir: true });
  // In buffer mode sonic-boom takes Buffers; its typings only declare the string form.
  const batcher = new LineBatcher(stream as unknown as SonicBoomLike, pipe ? PIPE_BATCH : FILE_BATCH);
  const timer = setInterval(() => batcher.flush(), FLUSH_INTERVAL_MS);
  timer.unref();
  let closed: Promise<void> | undefined;
  return {
    stream: batcher,
    batch: batcher,
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
    batch: undefined,
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
    batch: sink.batch,
    maxStatementLength: opts.maxStatementLength,
    flush: () => sink.flush(),
    close: () => sink.close(),
  };
}
