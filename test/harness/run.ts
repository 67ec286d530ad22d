// Runs client binaries (psql, pgbench, the sempipe CLI) for the integration suites and the
// benchmarks, asynchronously: sempipe's workers write their logs to pipes this process must keep
// draining, so a synchronous spawn could stall them. Also the small assertion helper the suites
// share for expected failures.
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { requireBinary } from './binaries.js';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Written to the command's standard input (else stdinFile, else nothing). */
  input?: string;
  stdinFile?: string;
  /** Standard output goes to this file instead of `stdout`; the result waits until it is written. */
  stdoutFile?: string;
  /** Aborting kills the command (a benchmark stopped with Ctrl-C leaves no pgbench behind). */
  signal?: AbortSignal;
  /** Killed (SIGKILL) when still running after this long. */
  timeoutMs?: number;
}

/** `cmd` is a path, or a binary name found the way the harness finds PostgreSQL's binaries. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const path = cmd.includes('/') ? cmd : requireBinary(cmd);
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, {
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: opts.signal,
      timeout: opts.timeoutMs,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    let written: Promise<void> = Promise.resolve();
    if (opts.stdoutFile !== undefined) {
      const file = createWriteStream(opts.stdoutFile);
      written = new Promise((r) => file.once('finish', () => r()));
      child.stdout.pipe(file);
    } else child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // A command that exits before it has read its input (EPIPE) is judged by its exit status.
    child.stdin.on('error', () => {});
    if (opts.stdinFile !== undefined) createReadStream(opts.stdinFile).pipe(child.stdin);
    else child.stdin.end(opts.input);
    child.once('error', reject);
    child.once('close', (code) => void written.then(() => resolve({ code, stdout, stderr })));
  });
}

/** The error a promise rejects with; fails the test when it resolves instead. */
export async function errorOf(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected the statement to fail');
}

/** First line of `command --version`, or a note that it could not be run. */
export async function versionOf(command: string): Promise<string> {
  try {
    const r = await run(command, ['--version'], { timeoutMs: 10_000 });
    return (r.stdout || r.stderr).split('\n')[0]!.trim();
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}
