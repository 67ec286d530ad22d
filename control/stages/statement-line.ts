// Encodes the audit log's statement line (one per statement: the hot path of the audit stage)
// straight into the bytes of the audit batch, in exactly the shape pino writes for
// `logger.info({event: 'statement', …})`: constant parts, the time of the millisecond, the
// session's fields and a repeated statement with its class are copied as bytes encoded once, a
// new statement is written in place (plain ASCII as it is, anything else through JSON.stringify),
// numbers digit by digit. No line string is built, flattened and converted to UTF-8 per statement.
import type { LineBatcher } from '../audit.js';
import type { CompletionEvent } from '../../proxy/stage.js';

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');

const EVENT = ascii(',"event":"statement","statement":');
const CLASS = ascii(',"class":');
const DURATION = ascii(',"duration_ms":');
const ROWS = ascii(',"rows":');
const OUTCOME_OK = ascii(',"outcome":"ok"}\n');
/** Digits of a safe integer, and the decimal point of a duration. */
const NUMBER_BYTES = 24;

/** `{"level":"info","time":"…"` for the current millisecond (pino's isoTime), encoded once per millisecond. */
let headMs = 0;
let headBytes: Buffer = Buffer.alloc(0);
function timeHead(): Buffer {
  const now = Date.now();
  if (now !== headMs) {
    headMs = now;
    headBytes = ascii(`{"level":"info","time":"${new Date(now).toISOString()}"`);
  }
  return headBytes;
}

/** JSON of the statement classes seen so far (a handful of names), as bytes. */
const classJson = new Map<string, Buffer>();
function quotedClass(statementClass: string): Buffer {
  let json = classJson.get(statementClass);
  if (json === undefined) {
    json = Buffer.from(JSON.stringify(statementClass));
    classJson.set(statementClass, json);
  }
  return json;
}

/** Bytes up to this many are copied by a loop: cheaper than TypedArray.prototype.set's call. */
const SHORT_COPY = 48;

/** Copies `src` to `buf` at `at`; returns the offset past it. */
function put(buf: Buffer, at: number, src: Buffer): number {
  const n = src.length;
  if (n > SHORT_COPY) buf.set(src, at);
  else for (let i = 0; i < n; i++) buf[at + i] = src[i];
  return at + n;
}

/** Writes the decimal digits of a non-negative safe integer at `at`; returns the offset past them. */
function writeDigits(buf: Buffer, at: number, n: number): number {
  if (n < 10) {
    buf[at] = 0x30 + n;
    return at + 1;
  }
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  let p = at + digits;
  for (let x = n; p > at; x = Math.floor(x / 10)) buf[--p] = 0x30 + (x % 10);
  return at + digits;
}

/**
 * Nanoseconds as milliseconds rounded to the microsecond, written as JavaScript prints that number
 * (`Math.round(ns / 1e3) / 1e3`): no trailing zeros, no decimal point for whole milliseconds.
 */
function writeMilliseconds(buf: Buffer, at: number, ns: bigint): number {
  const us = Math.round(Number(ns) / 1e3);
  const p = writeDigits(buf, at, Math.floor(us / 1e3));
  const frac = us % 1e3;
  if (frac === 0) return p;
  buf[p] = 0x2e;
  buf[p + 1] = 0x30 + Math.floor(frac / 100);
  buf[p + 2] = 0x30 + (Math.floor(frac / 10) % 10);
  buf[p + 3] = 0x30 + (frac % 10);
  let end = p + 4;
  while (buf[end - 1] === 0x30) end--;
  return end;
}

/** Most bytes `text` can take as a JSON string: an escape (`\u001f`) is 6 bytes, UTF-8 at most 3. */
function jsonStringBound(text: string): number {
  return text.length * 6 + 2;
}

/**
 * Writes `text` as a JSON string at `at`, as JSON.stringify does. Plain ASCII that needs no escape
 * (most SQL) is copied as it is, without building the JSON string and transcoding it.
 */
function writeJsonString(buf: Buffer, at: number, text: string): number {
  const n = text.length;
  buf[at] = 0x22;
  // Copied while checked: one pass, no call, for the common case.
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7f || c === 0x22 || c === 0x5c) return at + buf.write(JSON.stringify(text), at);
    buf[at + 1 + i] = c;
  }
  buf[at + 1 + n] = 0x22;
  return at + n + 2;
}

/** The part after `"rows":N` of a line whose outcome is not a plain ok, as a string. */
function unusualTail(c: CompletionEvent, truncated: boolean): string {
  let tail = `,"outcome":"${c.outcome}"`;
  if (truncated) tail += ',"statement_truncated":true';
  // pino leaves out fields whose value is undefined.
  if (c.outcome !== 'ok' && c.code !== undefined) tail += `,"sqlstate":${JSON.stringify(c.code)}`;
  if (c.outcome !== 'ok' && c.message !== undefined) tail += `,"error":${JSON.stringify(c.message)}`;
  if (c.rule !== undefined) tail += `,"rule":${JSON.stringify(c.rule)}`;
  if (c.policy !== undefined) tail += `,"policy":${JSON.stringify(c.policy)}`;
  return tail + '}\n';
}

/** The statement line of one session: its identifying fields and its last statement. */
export class StatementLineEncoder {
  private readonly chindings: Buffer;
  private lastText: string | undefined;
  private lastClass = '';
  /**
   * The part from the session's fields to `"duration_ms":` of a statement that came twice in a
   * row with the same class (prepared statements, a repeated query), encoded once: a line is then
   * the time, this, two numbers and the outcome.
   */
  private middle: Buffer | undefined;

  constructor(
    /** pino's serialized bindings of the session's child logger (`,"binding":…,"session":…`). */
    chindings: string,
    private readonly maxStatementLength: number,
    private readonly truncate: (text: string, max: number) => string,
  ) {
    this.chindings = Buffer.from(chindings);
  }

  /** Appends the line of `c` to `batch`. */
  write(batch: LineBatcher, c: CompletionEvent): void {
    const truncated = c.text.length > this.maxStatementLength;
    const text = truncated ? this.truncate(c.text, this.maxStatementLength) : c.text;
    const cls = quotedClass(c.statementClass);
    let middle: Buffer | undefined;
    if (text === this.lastText && c.statementClass === this.lastClass) {
      middle = this.middle ??= this.encodeMiddleAlone(text, cls);
    } else {
      this.lastText = text;
      this.lastClass = c.statementClass;
      this.middle = undefined;
    }
    const plain = c.outcome === 'ok' && !truncated && c.rule === undefined && c.policy === undefined;
    const tail = plain ? undefined : unusualTail(c, truncated);
    const head = timeHead();
    const bytes =
      head.length + (middle?.length ?? this.middleBound(text, cls)) + ROWS.length + 2 * NUMBER_BYTES +
      (tail === undefined ? OUTCOME_OK.length : tail.length * 3);
    if (batch.reserve(bytes)) {
      batch.commit(this.encode(batch.buffer, batch.used, c, head, middle, text, cls, tail));
    } else {
      const own = Buffer.allocUnsafe(bytes);
      batch.append(own.subarray(0, this.encode(own, 0, c, head, middle, text, cls, tail)));
    }
  }

  private middleBound(text: string, cls: Buffer): number {
    return this.chindings.length + EVENT.length + jsonStringBound(text) + CLASS.length + cls.length + DURATION.length;
  }

  private encodeMiddleAlone(text: string, cls: Buffer): Buffer {
    const buf = Buffer.allocUnsafe(this.middleBound(text, cls));
    return buf.subarray(0, this.encodeMiddle(buf, 0, text, cls));
  }

  /** Writes `,"binding":…,"event":"statement","statement":…,"class":…,"duration_ms":` at `at`. */
  private encodeMiddle(buf: Buffer, at: number, text: string, cls: Buffer): number {
    let p = put(buf, at, this.chindings);
    p = writeJsonString(buf, put(buf, p, EVENT), text);
    p = put(buf, p, CLASS);
    p = put(buf, p, cls);
    return put(buf, p, DURATION);
  }

  private encode(buf: Buffer, at: number, c: CompletionEvent, head: Buffer, middle: Buffer | undefined, text: string, cls: Buffer, tail: string | undefined): number {
    let p = put(buf, at, head);
    p = middle !== undefined ? put(buf, p, middle) : this.encodeMiddle(buf, p, text, cls);
    p = writeMilliseconds(buf, p, c.durationNs);
    p = writeDigits(buf, put(buf, p, ROWS), c.rows);
    return tail === undefined ? put(buf, p, OUTCOME_OK) : p + buf.write(tail, p);
  }
}
