// Starts and stops node-relay.ts (the benchmark's calibration row) in front of the real server, on a
// free port, with its output in a log file, and waits until a client can log in through it.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort } from '../test/harness/ports.js';
import { watchChild } from './child-watch.js';
import { waitForLogin } from './pg-clients.js';
import type { PgTarget } from './pgbench-run.js';

/** The compiled script, whether this file runs compiled (dist/bench) or from source (bench/, in tests). */
const NODE_RELAY_SCRIPT = import.meta.dirname.split('/').includes('dist')
  ? resolve(import.meta.dirname, 'node-relay.js')
  : resolve(import.meta.dirname, '../dist/bench/node-relay.js');

export interface NodeRelayProcess {
  /** The primary's pid; the workers are its children. */
  readonly pid: number;
  /** The server's own credentials, through the relay's port. */
  readonly target: PgTarget;
  stop(): Promise<void>;
}

export async function startNodeRelay(opts: { dir: string; upstream: PgTarget; workers: number }): Promise<NodeRelayProcess> {
  const port = await freePort();
  const logFile = join(opts.dir, 'node-relay.log');
  const log = openSync(logFile, 'a');
  let child;
  try {
    child = spawn(process.execPath, [NODE_RELAY_SCRIPT, String(port), opts.upstream.host, String(opts.upstream.port), String(opts.workers)], {
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  const watch = watchChild(child, 'node relay', 5000, () => readFileSync(logFile, 'utf8'));
  const target: PgTarget = { ...opts.upstream, host: '127.0.0.1', port };
  await watch.whenReady((isDead) => waitForLogin(target, 15_000, isDead));
  return { pid: child.pid!, target, stop: watch.stop };
}
