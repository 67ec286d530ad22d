// The benchmark's reference Node.js relay against a real PostgreSQL server and the real `pg` client:
// logins and queries pass through it unchanged, a result far larger than a socket buffer arrives
// whole while the client reads slowly, several clients work at once, and stop() ends its processes.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../test/harness/pg-server.js';
import { startNodeRelay, type NodeRelayProcess } from './node-relay-process.js';
import { processTree } from './process-rss.js';

let server: PgServer;
let relay: NodeRelayProcess;

beforeAll(async () => {
  server = await startPostgres({ auth: 'scram-sha-256' });
  relay = await startNodeRelay({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database }, 2);
});

afterAll(async () => {
  await relay?.stop();
  await destroyPostgres(server);
});

function client(): pg.Client {
  const t = relay.target;
  return new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database });
}

describe('node relay (bench reference)', () => {
  test('relays a SCRAM login and a large result to a slow reader', async () => {
    const c = client();
    await c.connect();
    try {
      const stream = c.query(new pg.Query({ text: "SELECT i, repeat('x', 200) AS pad FROM generate_series(1, 100000) AS i", rowMode: 'array' }));
      let rows = 0;
      let sum = 0;
      stream.on('row', (row: [number, string]) => {
        rows++;
        sum += row[0];
        if (rows % 20000 === 0) {
          // Stop reading for a moment so the relay meets a full socket and must hold back.
          const socket = (c as unknown as { connection: { stream: { pause(): void; resume(): void } } }).connection.stream;
          socket.pause();
          setTimeout(() => socket.resume(), 50);
        }
      });
      await new Promise<void>((resolve, reject) => {
        stream.on('end', () => resolve());
        stream.on('error', reject);
      });
      expect(rows).toBe(100000);
      expect(sum).toBe((100000 * 100001) / 2);
    } finally {
      await c.end();
    }
  });

  test('carries several sessions at once, across its workers', async () => {
    const clients = Array.from({ length: 8 }, client);
    await Promise.all(clients.map((c) => c.connect()));
    try {
      const answers = await Promise.all(clients.map((c, i) => c.query('SELECT $1::int * 2 AS n, pg_backend_pid() AS pid', [i])));
      expect(answers.map((a) => a.rows[0].n)).toEqual(clients.map((_, i) => i * 2));
      expect(new Set(answers.map((a) => a.rows[0].pid)).size).toBe(8);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  test('stop() ends the primary and its workers', async () => {
    const other = await startNodeRelay({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database }, 2);
    const tree = processTree(other.pid);
    expect(tree.length).toBe(3);
    await other.stop();
    for (const pid of tree) expect(() => process.kill(pid, 0)).toThrow();
  });
});
