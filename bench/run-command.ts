// Runs an external command (pgbench, version probes) to completion and collects its output; an
// AbortSignal kills it, so Ctrl-C never leaves a pgbench running behind the benchmark.
import { spawn } from 'node:child_process';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Killed (SIGKILL) when still running after this long. */
  timeoutMs?: number;
}

export function runCommand(command: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: opts.env ?? process.env,
      signal: opts.signal,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: opts.timeoutMs,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** First line of `command --version`, or a note that it could not be run. */
export async function versionOf(command: string): Promise<string> {
  try {
    const r = await runCommand(command, ['--version'], { timeoutMs: 10_000 });
    return (r.stdout || r.stderr).split('\n')[0]!.trim();
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}
