#!/usr/bin/env node
// The benchmark's reference for what Node.js itself costs: a byte relay with no framing, no
// authentication and no stages, in as many worker processes as sempipe (node:cluster, sharing one
// listener), reading and writing through sempipe's own I/O layer (proxy/chunk-reader.ts and
// proxy/fd-writer.ts). Every byte from a client goes to a new connection to the upstream and back.
// sempipe's distance to this row is what framing, decoding, metrics and audit cost; this row's
// distance to PgBouncer is what the runtime costs on the machine at hand.
// Usage: node node-relay.js LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT WORKERS
import cluster from 'node:cluster';
import { connect, createServer, type Socket } from 'node:net';
import { adoptSocket, type ChunkSource } from '../proxy/chunk-reader.js';

const [listenPort, upstreamHost, upstreamPort, workers] = process.argv.slice(2);

/** Relays `from`'s bytes to `to`, pausing `from` while `to` is past its high-water mark. */
function pump(from: ChunkSource, to: ChunkSource): void {
  from.start((chunk, length) => {
    const flushed = to.write(chunk, 0, length);
    // A write the kernel did not take at once still points into `from`'s read buffer.
    if (to.socket.writableLength > 0) from.retain();
    if (!flushed) from.socket.pause();
  });
  to.socket.on('drain', () => from.socket.resume());
  for (const chunk of from.pending) to.write(chunk, 0, chunk.length);
}

function relay(client: Socket): void {
  const upstream = connect({ host: upstreamHost, port: Number(upstreamPort), noDelay: true });
  const closeBoth = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', closeBoth);
  upstream.on('error', closeBoth);
  upstream.once('connect', () => {
    upstream.pause();
    client.removeAllListeners('error');
    upstream.removeAllListeners('error');
    const c = adoptSocket(client);
    const u = adoptSocket(upstream);
    for (const s of [c.socket, u.socket]) {
      s.on('error', () => {});
      s.on('close', () => {
        c.socket.destroy();
        u.socket.destroy();
      });
    }
    pump(c, u);
    pump(u, c);
    c.socket.resume();
    u.socket.resume();
  });
}

if (cluster.isPrimary) {
  let stopping = false;
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  cluster.on('exit', (w, code) => {
    if (!stopping) {
      process.stderr.write(`node relay worker ${w.process.pid} exited with ${code}\n`);
      process.exit(1);
    }
    // The workers are reaped here before the primary goes, so none is left behind.
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  });
} else {
  createServer({ noDelay: true, pauseOnConnect: true }, relay).listen(Number(listenPort), '127.0.0.1');
}
