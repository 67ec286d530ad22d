// Client connections made with `pg` for the benchmark: a login check that waits until a target
// accepts its credentials, and many authenticated connections held idle for the memory measurement.
import pg from 'pg';
import type { PgTarget } from './pgbench-run.js';

function client(target: PgTarget): pg.Client {
  const c = new pg.Client({ ...target, ssl: false, application_name: 'sempipe-bench', connectionTimeoutMillis: 30_000 });
  // An idle connection that the server closes must not crash the benchmark.
  c.on('error', () => undefined);
  return c;
}

/** Resolves once `target` answers `select 1` for these credentials; throws after `timeoutMs`. */
export async function waitForLogin(target: PgTarget, timeoutMs: number, isDead: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = isDead();
    if (dead !== undefined) throw new Error(dead);
    const c = client(target);
    // end() of a client whose connect() failed never settles (pg closes that socket itself).
    let connected = false;
    try {
      await c.connect();
      connected = true;
      await c.query('select 1');
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`no login on ${target.host}:${target.port}: ${(err as Error).message}`);
    } finally {
      if (connected) await c.end().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface IdleConnections {
  readonly count: number;
  close(): Promise<void>;
}

/**
 * Opens `count` authenticated connections, `batch` at a time so that neither the upstream's
 * max_connections nor the accept backlog is flooded, and keeps them open and idle.
 */
export async function openIdleConnections(target: PgTarget, count: number, batch = 50): Promise<IdleConnections> {
  const open: pg.Client[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(open.splice(0).map((c) => c.end().catch(() => undefined)));
  };
  try {
    while (open.length < count) {
      const clients = Array.from({ length: Math.min(batch, count - open.length) }, () => client(target));
      const results = await Promise.allSettled(clients.map((c) => c.connect()));
      // pg closes the socket of a failed connect() itself; end() on such a client never settles.
      for (const [i, c] of clients.entries()) if (results[i]!.status === 'fulfilled') open.push(c);
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure !== undefined) throw new Error(`idle connection ${open.length + 1} of ${count} failed: ${(failure.reason as Error).message}`);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { count: open.length, close };
}
