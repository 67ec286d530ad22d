// The demo database (PGlite behind pglite-socket) with real clients: concurrent pg sessions using
// the extended protocol, the SSLRequest answer the upstream connector relies on, an abrupt close
// inside a transaction, and a persistent data directory that is seeded only once.
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import pg from 'pg';
import { startDemoDatabase, type DemoDatabase } from '../../bin/demo-database.js';

let demo: DemoDatabase;
beforeAll(async () => { demo = await startDemoDatabase(); });
afterAll(async () => { await demo.stop(); });

function client(user = demo.user): pg.Client {
  return new pg.Client({ host: demo.host, port: demo.port, user, database: demo.database });
}

test('four concurrent pg clients query the sample orders with parameters at the same time', async () => {
  const clients = [0, 1, 2, 3].map(() => client());
  await Promise.all(clients.map((c) => c.connect()));
  try {
    const expected = await clients[0]!.query<{ customer_id: number; n: string; total: string }>(
      'select customer_id, count(*) as n, sum(amount) as total from orders group by customer_id order by customer_id',
    );
    expect(expected.rows).toHaveLength(6);
    const byCustomer = new Map(expected.rows.map((r) => [r.customer_id, r]));
    // Each client uses its own statement text, so a mixed-up unnamed statement would show.
    await Promise.all(clients.map(async (c, ci) => {
      for (let i = 0; i < 30; i++) {
        const customerId = 1 + ((i + ci) % 6);
        const res = await c.query<{ n: string; total: string; client: number }>(
          `select count(*) as n, sum(o.amount) as total, $2::int as client
             from orders o join customers c on c.id = o.customer_id
            where o.customer_id = $1 /* client ${ci} */`,
          [customerId, ci],
        );
        expect(res.rows).toEqual([{ n: byCustomer.get(customerId)!.n, total: byCustomer.get(customerId)!.total, client: ci }]);
      }
    }));
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
});

test('the sample schema has 6 customers and 20 orders, and any user name is let in as postgres', async () => {
  const c = client('someone-else');
  await c.connect();
  try {
    const res = await c.query(
      'select current_user as who, (select count(*)::int from customers) as customers, (select count(*)::int from orders) as orders',
    );
    expect(res.rows[0]).toEqual({ who: 'postgres', customers: 6, orders: 20 });
  } finally {
    await c.end();
  }
});

test('an SSLRequest is answered with N and the connection stays open for a plain startup', async () => {
  const socket = connect(demo.port, demo.host);
  try {
    const answer = await new Promise<Buffer>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('data', resolve);
      const sslRequest = Buffer.alloc(8);
      sslRequest.writeInt32BE(8, 0);
      sslRequest.writeInt32BE(80877103, 4);
      socket.write(sslRequest);
    });
    expect(answer.toString('latin1')).toBe('N');
    expect(socket.destroyed).toBe(false);
  } finally {
    socket.destroy();
  }
});

test('a client closing abruptly inside a transaction is rolled back and does not block the others', async () => {
  const abrupt = client();
  abrupt.on('error', () => {});
  await abrupt.connect();
  await abrupt.query('begin');
  await abrupt.query("insert into customers (name, email, country) values ('Gone', 'gone@example.com', 'XX')");
  abrupt.connection.stream.destroy();

  const other = client();
  await other.connect();
  try {
    const res = await other.query("select count(*)::int as n from customers where email = $1", ['gone@example.com']);
    expect(res.rows[0]).toEqual({ n: 0 });
  } finally {
    await other.end();
  }
});

test('a data directory keeps its rows across restarts and is seeded only once', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'sempipe-demo-'));
  try {
    const first = await startDemoDatabase({ dataDir });
    const c1 = new pg.Client({ host: first.host, port: first.port, user: first.user, database: first.database });
    await c1.connect();
    await c1.query("insert into orders (customer_id, amount, status) values (1, 1.00, 'pending')");
    await c1.end();
    await first.stop();

    const second = await startDemoDatabase({ dataDir });
    const c2 = new pg.Client({ host: second.host, port: second.port, user: second.user, database: second.database });
    await c2.connect();
    try {
      const res = await c2.query('select (select count(*)::int from orders) as orders, (select count(*)::int from customers) as customers');
      expect(res.rows[0]).toEqual({ orders: 21, customers: 6 });
    } finally {
      await c2.end();
      await second.stop();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
