// Reads whole MySQL messages from a socket during a connection phase (the client handshake, the
// upstream login), one at a time and in order, with the sequence id of their first packet. The
// relay does not use it: it scans chunks in place (relay.ts). Bytes are scanned only as far as the
// message asked for, so what follows it stays raw: after an SSLRequest that is the start of the
// TLS handshake, which `takeRaw()` hands to the TLS layer. Neither peer may send anything after
// the last message of a connection phase until it has the answer, so bytes left at the end of a
// phase are a protocol error (`hasMore`).
import type { Socket } from 'node:net';
import { MessageAssembler, PacketScanner, ScanStatus, type PacketRef } from './packet-scanner.js';

export interface Message {
  seq: number;
  payload: Buffer;
}

export class PacketReaderError extends Error {
  constructor(readonly kind: 'too_large' | 'closed') {
    super(kind === 'too_large' ? 'message larger than the limit' : 'connection closed');
  }
}

export class PacketReader {
  private readonly raw: Buffer[] = [];
  private waiter: { resolve: (m: Message) => void; reject: (e: Error) => void } | undefined;
  private failure: PacketReaderError | undefined;
  private readonly assembler = new MessageAssembler();
  private firstSeq = -1;
  private ready: Message | undefined;
  private readonly scanner: PacketScanner;
  private socket: Socket | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.raw.push(chunk);
    this.pump();
  };
  private readonly onGone = (): void => this.fail(new PacketReaderError('closed'));

  constructor(maxMessageSize: number) {
    this.scanner = new PacketScanner(maxMessageSize, {
      wants: () => true,
      onPacket: (p: PacketRef) => {
        if (this.firstSeq < 0) this.firstSeq = p.seq;
        const message = this.assembler.add(p);
        if (message === undefined) return;
        this.ready = { seq: this.firstSeq, payload: Buffer.from(message) };
        this.firstSeq = -1;
        this.scanner.stop();
      },
    });
  }

  attach(socket: Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('close', this.onGone);
    socket.on('error', this.onGone);
  }

  /** Stops reading from the socket (and pauses it). */
  detach(): void {
    const s = this.socket;
    if (s !== undefined) {
      s.pause();
      s.off('data', this.onData);
      s.off('close', this.onGone);
      s.off('error', this.onGone);
    }
    this.socket = undefined;
  }

  /** True when bytes beyond the messages read so far have arrived. */
  get hasMore(): boolean {
    return this.raw.length > 0 || !this.scanner.idle;
  }

  /** The bytes received but not scanned (they are not MySQL packets, e.g. a TLS ClientHello). */
  takeRaw(): Buffer {
    const rest = Buffer.concat(this.raw);
    this.raw.length = 0;
    return rest;
  }

  next(): Promise<Message> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.pump();
    });
  }

  /** Scans raw bytes until one message is complete, for a waiting reader only. */
  private pump(): void {
    while (this.waiter !== undefined && this.raw.length > 0 && this.failure === undefined) {
      const chunk = this.raw[0]!;
      if (!this.scanner.scan(chunk) && this.scanner.status === ScanStatus.TooLarge) {
        this.fail(new PacketReaderError('too_large'));
        return;
      }
      const stopped = this.scanner.stoppedAt;
      if (stopped >= 0 && stopped < chunk.length) this.raw[0] = chunk.subarray(stopped);
      else this.raw.shift();
      const m = this.ready;
      if (m !== undefined) {
        this.ready = undefined;
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(m);
      }
    }
  }

  private fail(err: PacketReaderError): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }
}
