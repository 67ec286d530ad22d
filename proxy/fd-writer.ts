// Writes to a plain TCP connection straight through its file descriptor: one write(2) by
// fs.writeSync when the socket has nothing queued, instead of the Writable stream's path (a
// WriteWrap object, stream state, a nextTick per write), which is most of the relay's JavaScript
// cost per round trip. What the kernel does not take at once (EAGAIN, a short write) goes through
// `socket.write()` as usual, so ordering, backpressure ('drain') and errors keep the stream's
// semantics. Node has no public API for a synchronous socket write, hence this module: it reads the
// handle's `fd`, which Node's TCP handles expose on Unix; without one (TLS, Windows) every write
// takes the stream path.
import { writeSync } from 'node:fs';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

interface FdHandle {
  _handle: { fd?: number } | null;
}

/**
 * Writes bytes [start, end) of `buf` (a range, so a read buffer is written without a view of it);
 * false means the socket queued bytes past its high-water mark (wait for 'drain').
 */
export type SocketWriter = (buf: Buffer, start: number, end: number) => boolean;

const range = (buf: Buffer, start: number, end: number): Buffer => (start === 0 && end === buf.length ? buf : buf.subarray(start, end));

/** The descriptor of `socket`'s TCP handle, or -1 when it has none we may write to directly. */
function directFd(socket: Socket): number {
  if (socket instanceof TLSSocket) return -1;
  const fd = (socket as unknown as FdHandle)._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

export function createSocketWriter(socket: Socket): SocketWriter {
  const fd = directFd(socket);
  if (fd < 0) return (buf, start, end) => socket.write(range(buf, start, end));
  return (buf, start, end) => {
    // Bytes still queued in the stream must leave first; a destroyed socket's fd may be reused.
    if (socket.writableLength > 0 || socket.destroyed) return socket.write(range(buf, start, end));
    let written: number;
    try {
      written = writeSync(fd, buf, start, end - start);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        socket.destroy(err as Error);
        return true;
      }
      written = 0;
    }
    return written === end - start ? true : socket.write(range(buf, start + written, end));
  };
}
