// Incremental framing of a PostgreSQL v3 message stream: cuts frames by type byte and length only.
// Own code because pg-protocol's Parser decodes every message it frames (DataRow fields and all) and
// only knows backend messages; the relay needs a scanner that decodes nothing unless asked, keeps
// state across chunk boundaries, and hands out subarrays of the received chunk (no copies) for the
// few frame types a stage wants. Partial wanted frames are assembled into one buffer; unwanted ones
// are skipped by count. Frames over the configured maximum are refused (MessageTooLarge), never
// buffered without bound.

export const enum ScanStatus {
  Ok = 0,
  /** A length field below 4 (the length counts itself). */
  InvalidLength = 1,
  /** A frame declares more bytes than the configured maximum. */
  TooLarge = 2,
}

/**
 * The frame a scanner hands to its handler: bytes [start, end) of `buf`. The scanner fills one
 * FrameRef per frame and reuses it, so a frame costs no allocation; it is valid only during the
 * handler call (`view()` or a copy keeps it longer).
 */
export class FrameRef {
  buf: Buffer = Buffer.alloc(0);
  start = 0;
  end = 0;
  /** Offset just past the frame in the current chunk. */
  endInChunk = 0;
  /** The frame was split across chunks and assembled into a buffer of its own (`buf` is just the frame). */
  assembled = false;

  get length(): number {
    return this.end - this.start;
  }

  /** The frame as a Buffer of its own (a subarray of the chunk unless assembled). */
  view(): Buffer {
    return this.assembled ? this.buf : this.buf.subarray(this.start, this.end);
  }
}

/** Receives the frames of the types a scanner was asked for. */
export interface FrameHandler {
  /**
   * A complete wanted frame (see FrameRef; when not assembled, `buf` is the chunk). Return false to
   * stop scanning this chunk (the caller resumes with `stoppedAt`).
   */
  onFrame(type: number, frame: FrameRef): boolean;
  /** A frame of an uncaptured type started (header complete); `length` counts the payload + 4. */
  onFrameHeader?(type: number, length: number): void;
  /**
   * The header of an uncaptured frame was split across chunks and is now complete: its 5 bytes
   * (valid only during the call) and the offset just past it in the current chunk. A relay that
   * holds back partial headers forwards them here and continues from `endInChunk`.
   */
  onHeldHeader?(header: Buffer, endInChunk: number): void;
}

/** Marks the message types to capture: a 256-entry lookup table. */
export function frameTypeSet(types: readonly number[]): Uint8Array {
  const set = new Uint8Array(256);
  for (const t of types) set[t] = 1;
  return set;
}

/**
 * One direction of one connection. Holds at most one partial header (5 bytes) and, for wanted
 * frames, one partial frame.
 */
export class FrameScanner {
  private readonly header = Buffer.allocUnsafe(5);
  private readonly frame = new FrameRef();
  private headerFill = 0;
  /** Payload bytes of the current unwanted frame still to skip. */
  private skip = 0;
  /** Partial wanted frame being assembled, and how much of it is filled. */
  private partial: Buffer | undefined;
  private partialFill = 0;
  /**
   * After a scan that consumed the whole chunk: the offset where the trailing bytes of an incomplete
   * wanted frame or an incomplete header begin (the scan's end when there are none). A relay that
   * may still refuse that frame forwards only the bytes before it.
   */
  heldFrom = 0;
  /** Offset in the chunk where scanning stopped after a handler returned false. */
  stoppedAt = 0;
  status: ScanStatus = ScanStatus.Ok;
  /** Type and declared length of the frame that failed, for the error message. */
  badType = 0;
  badLength = 0;

  constructor(
    /** The frame types to capture; may be swapped between frames (e.g. to start dropping rows). */
    public wanted: Uint8Array,
    private readonly maxFrame: number,
    private readonly headerTypes?: Uint8Array,
  ) {}

  /** True when the scanner sits between frames (nothing partial). */
  get atBoundary(): boolean {
    return this.headerFill === 0 && this.skip === 0 && this.partial === undefined;
  }

  /**
   * True while an uncaptured frame is partly scanned: a relay that forwards as it scans has sent its
   * beginning but not its end, so nothing may be inserted into the stream now. (A partial header or
   * a partial captured frame has not been forwarded yet.)
   */
  get passingThrough(): boolean {
    return this.skip > 0;
  }

  /**
   * Scans bytes [start, end) of `chunk`. Returns true when all of them were consumed, false when a
   * handler asked to stop (see `stoppedAt`) or the stream is invalid (see `status`).
   */
  scan(chunk: Buffer, handler: FrameHandler, start = 0, end = chunk.length): boolean {
    let pos = start;
    let frameBegin = start;
    while (pos < end) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, end - pos);
        this.skip -= n;
        pos += n;
        continue;
      }
      if (this.partial !== undefined) {
        const n = Math.min(this.partial.length - this.partialFill, end - pos);
        chunk.copy(this.partial, this.partialFill, pos, pos + n);
        this.partialFill += n;
        pos += n;
        if (this.partialFill === this.partial.length) {
          const frame = this.partial;
          this.partial = undefined;
          this.partialFill = 0;
          if (!handler.onFrame(frame[0], this.assembled(frame, pos))) {
            this.stoppedAt = pos;
            return false;
          }
        }
        continue;
      }
      let type: number;
      let length: number;
      let frameStart: number;
      if (this.headerFill === 0) frameBegin = pos;
      if (this.headerFill === 0 && end - pos >= 5) {
        type = chunk[pos];
        length = chunk.readUInt32BE(pos + 1);
        frameStart = pos;
        pos += 5;
      } else {
        const n = Math.min(5 - this.headerFill, end - pos);
        chunk.copy(this.header, this.headerFill, pos, pos + n);
        this.headerFill += n;
        pos += n;
        if (this.headerFill < 5) break;
        this.headerFill = 0;
        type = this.header[0];
        length = this.header.readUInt32BE(1);
        frameStart = -1;
      }
      if (length < 4 || length > 0x7fffffff) return this.fail(ScanStatus.InvalidLength, type, length);
      if (length + 1 > this.maxFrame) return this.fail(ScanStatus.TooLarge, type, length);
      const body = length - 4;
      if (this.wanted[type] === 1) {
        if (frameStart >= 0 && end - pos >= body) {
          pos += body;
          const ref = this.frame;
          ref.buf = chunk;
          ref.start = frameStart;
          ref.end = pos;
          ref.endInChunk = pos;
          ref.assembled = false;
          if (!handler.onFrame(type, ref)) {
            this.stoppedAt = pos;
            return false;
          }
          continue;
        }
        const frame = Buffer.allocUnsafe(length + 1);
        frame[0] = type;
        frame.writeUInt32BE(length, 1);
        this.partial = frame;
        this.partialFill = 5;
        if (this.partialFill === frame.length) {
          this.partial = undefined;
          this.partialFill = 0;
          if (!handler.onFrame(type, this.assembled(frame, pos))) {
            this.stoppedAt = pos;
            return false;
          }
        }
        continue;
      }
      if (frameStart < 0) handler.onHeldHeader?.(this.header, pos);
      if (this.headerTypes !== undefined && this.headerTypes[type] === 1) handler.onFrameHeader?.(type, length);
      this.skip = body;
    }
    this.heldFrom = this.partial !== undefined || this.headerFill > 0 ? frameBegin : end;
    return true;
  }

  private assembled(frame: Buffer, endInChunk: number): FrameRef {
    const ref = this.frame;
    ref.buf = frame;
    ref.start = 0;
    ref.end = frame.length;
    ref.endInChunk = endInChunk;
    ref.assembled = true;
    return ref;
  }

  private fail(status: ScanStatus, type: number, length: number): false {
    this.status = status;
    this.badType = type;
    this.badLength = length;
    return false;
  }
}
