// Incremental framing of a MySQL packet stream (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html):
// a 3-byte little-endian payload length and a 1-byte sequence id, then the payload. A payload of
// exactly 0xFFFFFF bytes continues in the next packet; a message is the packets up to the first
// shorter one. The scanner keeps partial headers and partial payloads between chunks, hands out
// subarrays of the chunk (no copies) for packets the caller wants to read, and only counts the
// bytes of the others. A message longer than the configured maximum is refused (TooLarge), never
// buffered without bound. No I/O here: the session decides what a sequence id out of order means.

export const HEADER_BYTES = 4;
/** A payload of this length is continued by the next packet. */
export const MAX_PACKET_PAYLOAD = 0xffffff;

export const enum ScanStatus {
  Ok = 0,
  /** A message (packets joined by continuation) is longer than the configured maximum. */
  TooLarge = 1,
}

/**
 * One packet as the scanner hands it out; reused for every packet, valid only during the call.
 * `payload` is set for packets the caller asked to read (a subarray of the chunk, or an assembled
 * buffer when the packet was split across chunks); undefined for the others.
 */
export interface PacketRef {
  seq: number;
  length: number;
  /** The payload's first byte, or -1 for an empty payload. */
  firstByte: number;
  /** True when the payload is MAX_PACKET_PAYLOAD bytes: the message continues in the next packet. */
  continues: boolean;
  payload: Buffer | undefined;
  /** Offset in the current chunk just past the packet. */
  endInChunk: number;
  /** Offset in the current chunk where the packet's header began; -1 when it began in an earlier chunk. */
  startInChunk: number;
}

export interface PacketHandler {
  /** Whether to hand out the payload of a packet of `length` bytes starting with `firstByte` (-1: empty). */
  wants(length: number, firstByte: number, seq: number): boolean;
  onPacket(packet: PacketRef): void;
}

export class PacketScanner {
  private readonly header = Buffer.allocUnsafe(HEADER_BYTES);
  private headerFill = 0;
  private readonly ref: PacketRef = { seq: 0, length: 0, firstByte: -1, continues: false, payload: undefined, endInChunk: 0, startInChunk: -1 };
  /** The packet whose payload is being read or skipped. */
  private remaining = 0;
  private partial: Buffer | undefined;
  private partialFill = 0;
  /** Waiting for the first payload byte to decide whether the packet is wanted. */
  private awaitingFirstByte = false;
  private messageBytes = 0;
  status: ScanStatus = ScanStatus.Ok;
  /** Where the last scan stopped after `stop()`; -1 when it ran to the end. */
  stoppedAt = -1;
  private stopRequested = false;

  constructor(
    private readonly maxMessageSize: number,
    private readonly handler: PacketHandler,
  ) {}

  /** Bytes of the current message so far, including packets already handed out. */
  get messageLength(): number {
    return this.messageBytes;
  }

  /** True between packets (no partial header or payload held). */
  get idle(): boolean {
    return this.headerFill === 0 && this.remaining === 0 && !this.awaitingFirstByte;
  }

  /** Called from onPacket: the scan returns after this packet, with `stoppedAt` just past it. */
  stop(): void {
    this.stopRequested = true;
  }

  /** Scans bytes [start, end) of `chunk`; returns false (and sets `status`) when the stream is invalid. */
  scan(chunk: Buffer, start = 0, end = chunk.length): boolean {
    let pos = start;
    this.stoppedAt = -1;
    // A packet carried over from the previous chunk began before this one.
    if (!this.idle) this.ref.startInChunk = -1;
    while (pos < end) {
      if (this.stopRequested) {
        this.stopRequested = false;
        this.stoppedAt = pos;
        return true;
      }
      if (this.remaining === 0 && !this.awaitingFirstByte) {
        if (this.headerFill === 0 && end - pos >= HEADER_BYTES) {
          const length = chunk[pos]! | (chunk[pos + 1]! << 8) | (chunk[pos + 2]! << 16);
          if (!this.begin(length, chunk[pos + 3]!)) return false;
          this.ref.startInChunk = pos;
          pos += HEADER_BYTES;
        } else {
          const n = Math.min(HEADER_BYTES - this.headerFill, end - pos);
          chunk.copy(this.header, this.headerFill, pos, pos + n);
          this.headerFill += n;
          pos += n;
          if (this.headerFill < HEADER_BYTES) return true;
          this.headerFill = 0;
          if (!this.begin(this.header.readUIntLE(0, 3), this.header[3]!)) return false;
          this.ref.startInChunk = -1;
        }
        if (this.ref.length === 0) {
          this.emit(undefined, pos);
          continue;
        }
        this.awaitingFirstByte = true;
        if (pos === end) return true;
      }
      if (this.awaitingFirstByte) {
        this.awaitingFirstByte = false;
        const ref = this.ref;
        ref.firstByte = chunk[pos]!;
        if (this.handler.wants(ref.length, ref.firstByte, ref.seq)) {
          if (end - pos >= ref.length) {
            this.emit(chunk.subarray(pos, pos + ref.length), pos + ref.length);
            pos += ref.length;
            continue;
          }
          this.partial = Buffer.allocUnsafe(ref.length);
          this.partialFill = 0;
        } else {
          this.partial = undefined;
        }
        this.remaining = ref.length;
      }
      const n = Math.min(this.remaining, end - pos);
      if (this.partial !== undefined) {
        chunk.copy(this.partial, this.partialFill, pos, pos + n);
        this.partialFill += n;
      }
      this.remaining -= n;
      pos += n;
      if (this.remaining === 0) {
        const payload = this.partial;
        this.partial = undefined;
        this.emit(payload, pos);
      }
    }
    if (this.stopRequested) {
      this.stopRequested = false;
      this.stoppedAt = pos;
    }
    return true;
  }

  private begin(length: number, seq: number): boolean {
    this.messageBytes += length;
    if (this.messageBytes > this.maxMessageSize) {
      this.status = ScanStatus.TooLarge;
      return false;
    }
    const ref = this.ref;
    ref.length = length;
    ref.seq = seq;
    ref.firstByte = -1;
    ref.continues = length === MAX_PACKET_PAYLOAD;
    return true;
  }

  private emit(payload: Buffer | undefined, endInChunk: number): void {
    const ref = this.ref;
    ref.payload = payload;
    ref.endInChunk = endInChunk;
    if (!ref.continues) this.messageBytes = 0;
    this.handler.onPacket(ref);
    ref.payload = undefined;
  }
}

/** A packet header for `length` payload bytes with sequence id `seq`, written at `offset`. */
export function writeHeader(buf: Buffer, offset: number, length: number, seq: number): void {
  buf[offset] = length & 0xff;
  buf[offset + 1] = (length >>> 8) & 0xff;
  buf[offset + 2] = (length >>> 16) & 0xff;
  buf[offset + 3] = seq & 0xff;
}

/**
 * `payload` framed as one message starting at sequence id `seq`: split into 0xFFFFFF-byte packets,
 * with an empty last packet when the payload is an exact multiple.
 */
export function framePackets(payload: Buffer, seq: number): Buffer {
  const count = Math.floor(payload.length / MAX_PACKET_PAYLOAD) + 1;
  const out = Buffer.allocUnsafe(payload.length + count * HEADER_BYTES);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const from = i * MAX_PACKET_PAYLOAD;
    const n = Math.min(MAX_PACKET_PAYLOAD, payload.length - from);
    writeHeader(out, at, n, seq + i);
    payload.copy(out, at + HEADER_BYTES, from, from + n);
    at += HEADER_BYTES + n;
  }
  return out;
}

/** Joins the payloads of a message's packets as they arrive (continuations of 0xFFFFFF bytes). */
export class MessageAssembler {
  private parts: Buffer[] = [];

  /** Adds a packet's payload (copied: it is only valid during the scanner's call); returns the message once complete. */
  add(packet: PacketRef): Buffer | undefined {
    if (!packet.continues && this.parts.length === 0) return packet.payload ?? Buffer.alloc(0);
    this.parts.push(Buffer.from(packet.payload ?? Buffer.alloc(0)));
    if (packet.continues) return undefined;
    const message = Buffer.concat(this.parts);
    this.parts = [];
    return message;
  }
}
