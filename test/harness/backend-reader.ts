// Reads PostgreSQL backend messages from a raw socket, for suites that speak the protocol by hand
// (to send what no client library would, or to see exactly what sempipe answers): the messages one
// at a time as they come, all of them so far, and all of them once the connection has closed.
import type { Socket } from 'node:net';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';

export type BackendMsg = BackendMessage & Record<string, unknown>;

export interface BackendReader {
  /** The next message not taken yet; rejects once the connection closed with none left. */
  next(): Promise<BackendMsg>;
  /** Every message received so far. */
  all: BackendMsg[];
  /** `all` once the connection has closed. */
  closed: Promise<BackendMsg[]>;
}

export function readBackendMessages(socket: Socket): BackendReader {
  const parser = new Parser();
  const all: BackendMsg[] = [];
  const queue: BackendMsg[] = [];
  const waiters: Array<() => void> = [];
  socket.on('error', () => {});
  socket.on('data', (d: Buffer) =>
    parser.parse(d, (m) => {
      all.push(m as BackendMsg);
      queue.push(m as BackendMsg);
      waiters.splice(0).forEach((w) => w());
    }),
  );
  const closed = new Promise<BackendMsg[]>((r) => socket.once('close', () => r(all)));
  const next = async (): Promise<BackendMsg> => {
    while (queue.length === 0) await Promise.race([new Promise<void>((r) => waiters.push(r)), closed.then(() => Promise.reject(new Error('closed')))]);
    return queue.shift()!;
  };
  return { next, all, closed };
}
