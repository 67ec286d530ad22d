#!/usr/bin/env node
// The benchmark's calibration row: a plain Node.js TCP byte relay, what issue 3's target was
// derived from ("a bare Node.js byte relay with no framing ... in two worker processes"). It
// accepts a connection, opens one to the server and pipes bytes both ways with Node's streams: no
// framing, no authentication of its own (the client's SCRAM exchange goes through to the server),
// no metrics, no audit. Measured in the same run as sempipe, it tells how much of the distance to
// PgBouncer is this machine's cost of a Node event-loop relay and how much is sempipe's own work.
//   node dist/bench/node-relay.js LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT WORKERS
// Workers are node:cluster processes sharing the listener, as sempipe's are. SIGTERM stops it.
import cluster from 'node:cluster';
import { connect, createServer, type Socket } from 'node:net';

function relay(client: Socket, host: string, port: number): void {
  const upstream = connect({ host, port, noDelay: true });
  client.pipe(upstream);
  upstream.pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
}

function parseArgs(argv: readonly string[]): { listenPort: number; host: string; port: number; workers: number } {
  const [listenPort, host, port, workers] = argv;
  const whole = (v: string | undefined): number => (v !== undefined && /^\d+$/.test(v) ? Number(v) : Number.NaN);
  const parsed = { listenPort: whole(listenPort), host: host ?? '', port: whole(port), workers: whole(workers) };
  if ([parsed.listenPort, parsed.port, parsed.workers].some(Number.isNaN) || parsed.host === '' || parsed.workers < 1) {
    process.stderr.write('usage: node-relay.js LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT WORKERS\n');
    process.exit(2);
  }
  return parsed;
}

const args = parseArgs(process.argv.slice(2));
if (cluster.isPrimary) {
  let stopping = false;
  let ready = 0;
  for (let i = 0; i < args.workers; i++) {
    cluster.fork().on('listening', () => {
      if (++ready === args.workers) process.stdout.write(`listening on 127.0.0.1:${args.listenPort}\n`);
    });
  }
  cluster.on('exit', (_worker, code, signal) => {
    if (!stopping) {
      process.stderr.write(`node relay worker exited (${signal ?? code}); stopping\n`);
      process.exit(1);
    }
    // Exits once every worker has (and has been reaped), so that none outlives the primary.
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  });
} else {
  createServer({ noDelay: true }, (client) => relay(client, args.host, args.port)).listen(args.listenPort, '127.0.0.1');
}
