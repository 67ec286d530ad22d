// Reads a relayed TCP connection into a reusable buffer (net.Socket's `onread`) instead of the
// Readable stream's 'data' events: no allocation, no stream bookkeeping and no nextTick per read,
// which is a measurable share of the relay's cost per round trip. A connection accepted by a
// server (or made for the upstream handshake) is adopted once authenticated: its handle moves to
// a new Socket created with `onread`, and bytes the old Socket had already read are handed over.
// Chunks are only valid during the callback: when a write still holds on to part of the buffer
// (the kernel did not take it all at once), `retain()` gives the reader a fresh buffer.
// TLS sockets keep the stream interface (their decrypted data comes from the TLS layer). Writes go
// through fd-writer.ts, straight to the descriptor when nothing is queued.
import { Socket, type SocketConstructorOpts } from 'node:net';
import { TLSSocket } from 'node:tls';
import { createSocketWriter, type SocketWriter } from './fd-writer.js';

const READ_BUFFER_BYTES = 64 * 1024;

export interface ChunkSource {
  readonly socket: Socket;
  /** Bytes the socket had read before it was adopted; relay them first. */
  readonly pending: Buffer[];
  /** Delivers chunks to `onChunk` from now on (replacing an earlier one): bytes [0, length) of `chunk`. */
  start(onChunk: (chunk: Buffer, length: number) => void): void;
  /** The last chunk is still referenced (by a queued write): read into a new buffer from now on. */
  retain(): void;
  /** Writes to the socket (see fd-writer.ts); false: wait for 'drain'. */
  readonly write: SocketWriter;
}

interface HandleOwner {
  _handle: unknown;
}

/** Takes over `old`'s connection; `old` must be paused, with none of our listeners left. */
export function adoptSocket(old: Socket): ChunkSource {
  const pending: Buffer[] = [];
  for (let b = old.read() as Buffer | null; b !== null; b = old.read() as Buffer | null) pending.push(b);
  if (old instanceof TLSSocket) return streamSource(old, pending);
  let buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  let replaced = true;
  let deliver: (chunk: Buffer, length: number) => void = () => {};
  function nextBuffer(): Buffer | undefined {
    if (!replaced) return undefined;
    replaced = false;
    return buffer;
  }
  const handle = (old as unknown as HandleOwner)._handle;
  (old as unknown as HandleOwner)._handle = null;
  old.destroy();
  // `handle` and `pauseOnCreate` are Socket constructor options Node supports but its typings omit.
  const options = {
    handle,
    pauseOnCreate: true,
    // Node asks for the next buffer after every read; undefined keeps the current one without
    // pointing the handle at it again.
    onread: { buffer: nextBuffer, callback: (n: number, buf: Uint8Array) => deliver(buf as Buffer, n) },
  };
  const socket = new Socket(options as SocketConstructorOpts);
  return {
    socket,
    pending,
    start(onChunk) {
      deliver = onChunk;
    },
    retain() {
      buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      replaced = true;
    },
    write: createSocketWriter(socket),
  };
}

function streamSource(socket: Socket, pending: Buffer[]): ChunkSource {
  let deliver: ((chunk: Buffer, length: number) => void) | undefined;
  return {
    socket,
    pending,
    start(onChunk) {
      if (deliver === undefined) socket.on('data', (chunk: Buffer) => deliver!(chunk, chunk.length));
      deliver = onChunk;
    },
    retain() {},
    write: createSocketWriter(socket),
  };
}
