// The lifecycle of a process the benchmark starts (PgBouncer, sempipe): waiting
// until it is ready (stopping it when it never gets there), whether it died or never started, with
// the tail of its log, and a stop that sends SIGTERM and, past a grace period, SIGKILL, resolving
// once the process has exited.
import type { ChildProcess } from 'node:child_process';

export interface ChildWatch {
  /** Why the process is gone (it failed to spawn or exited), or undefined while it runs. */
  isDead(): string | undefined;
  stop(): Promise<void>;
  /** Runs `check` (which gives up once isDead says why); when it fails the process is stopped. */
  whenReady(check: (isDead: () => string | undefined) => Promise<void>): Promise<void>;
}

/** Last characters of a process's log quoted when it died. */
const LOG_TAIL = 2000;

export function watchChild(child: ChildProcess, name: string, killAfterMs: number, log: () => string): ChildWatch {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let failedToSpawn: string | undefined;
  child.once('error', (err) => (failedToSpawn = err.message));
  const watch: ChildWatch = {
    isDead() {
      if (failedToSpawn !== undefined) return `${name} did not start: ${failedToSpawn}`;
      if (child.exitCode !== null) return `${name} exited with ${child.exitCode}: ${log().slice(-LOG_TAIL)}`;
      return undefined;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null || failedToSpawn !== undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      await exited;
      clearTimeout(timer);
    },
    async whenReady(check) {
      try {
        await check(() => watch.isDead());
      } catch (err) {
        await watch.stop();
        throw err;
      }
    },
  };
  return watch;
}
