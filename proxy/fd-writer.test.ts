// The direct socket writer over real TCP connections: bytes arrive whole and in order whether the
// kernel takes a write at once or only in part (the rest queued in the stream, with backpressure),
// and a peer that went away destroys the socket with its error instead of throwing.
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { createSocketWriter } from './fd-writer.js';

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A connected pair: `writer` is the client side, `reader` the accepted side. */
async function pair(): Promise<{ writer: Socket; reader: Socket }> {
  const server = createServer();
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const writer = connect(port, '127.0.0.1');
  await once(writer, 'connect');
  const [reader] = await accepted;
  sockets.push(writer, reader);
  return { writer, reader };
}

function collect(socket: Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= bytes) resolve(Buffer.concat(chunks));
    });
  });
}

const pattern = (n: number, seed: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

test('small writes go straight to the descriptor: nothing is queued in the stream', async () => {
  const { writer, reader } = await pair();
  const write = createSocketWriter(writer);
  const received = collect(reader, 3000);
  const parts = [pattern(1000, 1), pattern(1000, 2), pattern(1000, 3)];
  for (const p of parts) {
    expect(write(p, 0, p.length)).toBe(true);
    expect(writer.writableLength).toBe(0);
  }
  expect(await received).toEqual(Buffer.concat(parts));
  // Written past the stream, so the stream's own byte count did not move.
  expect(writer.bytesWritten).toBe(0);
});

test('what the kernel does not take is queued in order, with backpressure and drain', async () => {
  const { writer, reader } = await pair();
  reader.pause();
  const write = createSocketWriter(writer);
  const parts = Array.from({ length: 12 }, (_, i) => pattern(1 << 20, i));
  const results = parts.map((p) => write(p, 0, p.length));
  // The socket buffers fill: later writes are queued and report backpressure.
  expect(writer.writableLength).toBeGreaterThan(0);
  expect(results).toContain(false);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const received = collect(reader, total);
  const drained = once(writer, 'drain');
  reader.resume();
  expect((await received).equals(Buffer.concat(parts))).toBe(true);
  await drained;
  expect(writer.writableLength).toBe(0);
});

test('writing to a peer that went away never throws and ends with the socket closed', async () => {
  const { writer, reader } = await pair();
  const write = createSocketWriter(writer);
  const errors: NodeJS.ErrnoException[] = [];
  writer.on('error', (e) => errors.push(e));
  const closed = once(writer, 'close');
  reader.destroy();
  await once(reader, 'close');
  for (let i = 0; i < 100 && !writer.destroyed; i++) {
    expect(() => write(pattern(1000, i), 0, 1000)).not.toThrow();
    await new Promise((r) => setTimeout(r, 5));
  }
  await closed;
  // Whichever noticed first (the read side or a write), only a connection error is reported.
  for (const e of errors) expect(['EPIPE', 'ECONNRESET']).toContain(e.code);
  expect(() => write(pattern(10, 0), 0, 10)).not.toThrow();
});

test('a range of a larger buffer is written, nothing before or after it', async () => {
  const { writer, reader } = await pair();
  const write = createSocketWriter(writer);
  const big = pattern(4096, 7);
  const received = collect(reader, 1000);
  expect(write(big, 100, 1100)).toBe(true);
  expect(await received).toEqual(big.subarray(100, 1100));
});
