// Starts and stops one database server process for the harnesses (PostgreSQL, MariaDB): spawn it,
// keep the tail of its stderr for the error message, poll until it answers, and on stop send the
// server's own shutdown signal with a SIGKILL fallback so a hung server never hangs the suite; and
// the removal of a server's directory once a suite is done with it.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

export interface ServerProcessSetup {
  /** Names the server in errors ("postgres exited: ..."). */
  name: string;
  command: string;
  args: readonly string[];
  /** Extra spawn options (uid/gid); stdio is set here. */
  spawnOptions?: SpawnOptions;
  /** True once the server accepts queries; polled every 100 ms for up to 30 s. */
  ready: () => boolean;
  /** The signal that shuts the server down cleanly. */
  stopSignal: NodeJS.Signals;
}

export interface ServerProcess {
  start: () => Promise<void>;
  stop: () => Promise<void>;
  restart: () => Promise<void>;
}

export function createServerProcess(setup: ServerProcessSetup): ServerProcess {
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const proc = spawn(setup.command, setup.args, { ...setup.spawnOptions, stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let log = '';
    proc.stderr!.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`${setup.name} exited: ${log}`);
      if (setup.ready()) return;
      if (Date.now() > deadline) throw new Error(`${setup.name} did not become ready: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(setup.stopSignal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  const restart = async (): Promise<void> => {
    await stop();
    await start();
  };

  return { start, stop, restart };
}

/** Stops a server the harness started and removes its directory (the data directory's parent). */
export async function destroyServer(server: { stop(): Promise<void>; dataDir: string } | undefined): Promise<void> {
  if (!server) return;
  await server.stop();
  rmSync(join(server.dataDir, '..'), { recursive: true, force: true });
}
