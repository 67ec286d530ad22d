// Free TCP ports on loopback for servers the tests and benchmarks start. Ports are drawn at random
// below the kernel's ephemeral range (32768 and up on Linux), so neither the outgoing connections
// of a busy test run nor another test process probing at the same moment take the port between the
// probe and the server's own bind; ports already given out by this process are never returned again.
import { createServer } from 'node:net';

const handedOut = new Set<number>();

const LOW = 20000;
const HIGH = 32767;

/** Whether `port` can be bound on loopback right now. */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  for (;;) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    if (handedOut.has(port)) continue;
    if (await probe(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** `n` distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  return ports;
}
