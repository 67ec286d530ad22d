// The data plane's bound on connections not yet authenticated (limits.max_pending_auth), with real
// TCP sockets and a minimal line protocol whose handler authenticates a connection when it sends
// "auth": past the cap a new connection gets the protocol's refusal reply and is closed at once;
// authenticating or closing frees a slot; a connection still unauthenticated at the deadline is
// destroyed even if its client never closes its end; 0 means no cap.
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { freePort } from '../test/harness/ports.js';
import { DataPlane, type ConnectionHandler } from './data-plane.js';

const BINDING = 'binding::/t::line';
const REFUSAL = Buffer.from('busy\n');

const lineHandler: ConnectionHandler = (socket, _runtime, host) => {
  socket.on('data', (d: Buffer) => {
    if (d.toString().trim() === 'auth') {
      host.authenticated(socket);
      socket.write('ok\n');
    }
  });
};

let plane: DataPlane | undefined;
const clients: Socket[] = [];
type PlaneEvent = { kind: 'refused' | 'pending'; binding: string; value: string | number };
/** What the current plane reported (each plane its own list: an earlier one's late reports go elsewhere). */
let events: PlaneEvent[] = [];

afterEach(async () => {
  clients.splice(0).forEach((c) => c.destroy());
  await plane?.drain(100);
  plane = undefined;
});

async function startPlane(max: number, deadlineMs = 0): Promise<number> {
  const port = await freePort();
  const reported: PlaneEvent[] = [];
  events = reported;
  plane = new DataPlane({
    workerIndex: 1,
    handlers: { line: lineHandler },
    refusalReplies: { line: REFUSAL },
    onRefused: (binding, _protocol, reason) => reported.push({ kind: 'refused', binding, value: reason }),
    onPendingAuth: (binding, delta) => reported.push({ kind: 'pending', binding, value: delta }),
  });
  plane.setPendingAuthLimits({ max, deadlineMs });
  const result = await plane.apply([{ fqn: BINDING, protocol: 'line', listen: [{ host: '127.0.0.1', port }], runtime: undefined }]);
  expect(result.failed).toEqual([]);
  return port;
}

interface Client {
  socket: Socket;
  received: () => string;
  closed: Promise<void>;
}

/** A client that reads what it gets; with `halfOpen` it never closes its own end when the server does. */
async function open(port: number, halfOpen = false): Promise<Client> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: halfOpen });
  clients.push(socket);
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once(halfOpen ? 'end' : 'close', () => r()));
  await new Promise<void>((r) => socket.once('connect', () => r()));
  return { socket, received: () => text, closed };
}

const until = async (cond: () => boolean, what: string, ms = 2000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('limits.max_pending_auth', () => {
  test('past the cap a connection gets the refusal reply and is closed at once, and is reported', async () => {
    const port = await startPlane(3);
    const held = [await open(port), await open(port), await open(port)];
    await until(() => plane!.pendingAuthCount === 3, 'three pending');
    const refused = [await open(port), await open(port)];
    await Promise.all(refused.map((c) => c.closed));
    expect(refused.map((c) => c.received())).toEqual(['busy\n', 'busy\n']);
    expect(events.filter((e) => e.kind === 'refused')).toEqual([
      { kind: 'refused', binding: BINDING, value: 'pending_auth' },
      { kind: 'refused', binding: BINDING, value: 'pending_auth' },
    ]);
    expect(plane!.pendingAuthCount).toBe(3);
    expect(held.every((c) => !c.socket.destroyed)).toBe(true);
  });

  test('authenticating or closing frees a slot; authenticated connections do not count', async () => {
    const port = await startPlane(2);
    const a = await open(port);
    const b = await open(port);
    await until(() => plane!.pendingAuthCount === 2, 'two pending');
    a.socket.write('auth\n');
    await until(() => a.received() === 'ok\n', 'a authenticated');
    expect(plane!.pendingAuthCount).toBe(1);
    b.socket.destroy();
    await until(() => plane!.pendingAuthCount === 0, 'b gone');
    const more = [await open(port), await open(port)];
    await until(() => plane!.pendingAuthCount === 2, 'two new pending');
    more[0]!.socket.write('auth\n');
    await until(() => more[0]!.received() === 'ok\n', 'the new one authenticated');
    const pendingSum = events.filter((e) => e.kind === 'pending').reduce((n, e) => n + Number(e.value), 0);
    expect(pendingSum).toBe(plane!.pendingAuthCount);
    expect(events.some((e) => e.kind === 'refused')).toBe(false);
  });

  test('a connection unauthenticated at the deadline is destroyed even when its client never closes; authenticated ones stay', async () => {
    const port = await startPlane(10, 300);
    const silent = await open(port, true);
    const authed = await open(port, true);
    authed.socket.write('auth\n');
    await until(() => authed.received() === 'ok\n', 'authenticated');
    const started = Date.now();
    await silent.closed;
    expect(Date.now() - started).toBeLessThan(2000);
    await until(() => plane!.pendingAuthCount === 0, 'no pending connection');
    await new Promise((r) => setTimeout(r, 400));
    authed.socket.write('auth\n');
    await until(() => authed.received() === 'ok\nok\n', 'the authenticated connection still answers');
  });

  test('0: no cap', async () => {
    const port = await startPlane(0);
    const many = await Promise.all(Array.from({ length: 20 }, () => open(port)));
    await until(() => plane!.pendingAuthCount === 20, 'twenty pending');
    expect(many.every((c) => c.received() === '')).toBe(true);
    expect(events.some((e) => e.kind === 'refused')).toBe(false);
  });
});
