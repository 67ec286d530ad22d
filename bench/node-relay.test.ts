// Tests of the benchmark's calibration row against a real PostgreSQL: the plain byte relay carries a
// whole session (the client's SCRAM login to the server, queries, a result larger than a socket
// buffer) through two cluster workers, stop() ends the primary and its workers, and bad arguments
// are refused with the usage line.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../test/harness/pg-server.js';
import { startNodeRelay, type NodeRelayProcess } from './node-relay-process.js';
import { processTree } from './process-rss.js';

let server: PgServer;
let relay: NodeRelayProcess;
let dir: string;

beforeAll(async () => {
  server = await startPostgres({ auth: 'scram-sha-256' });
  dir = mkdtempSync(join(tmpdir(), 'sempipe-node-relay-'));
  const upstream = { host: server.host, port: server.port, user: server.user, password: server.password, database: server.database };
  relay = await startNodeRelay({ dir, upstream, workers: 2 });
});

afterAll(async () => {
  await relay?.stop();
  await destroyPostgres(server);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('node relay (calibration row)', () => {
  test('carries SCRAM login, queries and a large result to and from the real server', async () => {
    const c = new pg.Client({ ...relay.target, ssl: false });
    await c.connect();
    try {
      const who = await c.query('select current_user, inet_server_port() as port');
      expect(who.rows[0]).toEqual({ current_user: server.user, port: server.port });
      const big = await c.query("select repeat('x', 1000) as s from generate_series(1, 2000)");
      expect(big.rows).toHaveLength(2000);
      expect(big.rows[1999].s).toHaveLength(1000);
    } finally {
      await c.end();
    }
  });

  test('runs two workers, and stop() ends them with the primary', async () => {
    const tree = processTree(relay.pid);
    expect(tree.length).toBe(3);
    await relay.stop();
    const alive = tree.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    expect(alive).toEqual([]);
  });

  test('refuses bad arguments with its usage line', () => {
    const script = resolve(import.meta.dirname, '../dist/bench/node-relay.js');
    const r = spawnSync(process.execPath, [script, '5432', '127.0.0.1'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/usage: node-relay\.js LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT WORKERS/);
  });
});
