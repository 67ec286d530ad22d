// Runs the benchmark's reference Node.js byte relay (node-relay.ts) on a free port in front of the
// real server, with as many worker processes as sempipe, and stops it. Clients log in through it
// with the server role's own credentials (the relay does not look at the bytes).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { freePort } from '../test/harness/ports.js';
import type { PgTarget } from './pgbench-run.js';
import { watchChild } from './child-watch.js';
import { waitForLogin } from './pg-clients.js';

/** The compiled relay, whether this file runs from source (bench/) or compiled (dist/bench/). */
const ROOT = resolve(import.meta.dirname, import.meta.dirname.split('/').includes('dist') ? '../..' : '..');
const RELAY_SCRIPT = resolve(ROOT, 'dist/bench/node-relay.js');

export interface NodeRelayProcess {
  readonly pid: number;
  readonly target: PgTarget;
  stop(): Promise<void>;
}

export async function startNodeRelay(upstream: PgTarget, workers: number): Promise<NodeRelayProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [RELAY_SCRIPT, String(port), upstream.host, String(upstream.port), String(workers)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const watch = watchChild(child, 'node relay', 5000, () => stderr);
  const target: PgTarget = { ...upstream, host: '127.0.0.1', port };
  await watch.whenReady((isDead) => waitForLogin(target, 15_000, isDead));
  return { pid: child.pid!, target, stop: watch.stop };
}
