// Runs wrk (HTTP load generator) against one URL and reads its summary: requests per second and
// the 99th percentile latency from `--latency`'s distribution. The parser is a few regular
// expressions over wrk's fixed output format.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WrkResult {
  requestsPerSecond: number;
  /** Seconds. */
  p99: number;
  /** Non-2xx/3xx answers and socket errors; a row with any is not a valid measurement. */
  errors: number;
}

const UNIT_SECONDS: Readonly<Record<string, number>> = { us: 1e-6, ms: 1e-3, s: 1, m: 60 };

/** The summary of wrk's output (with --latency). */
export function parseWrk(output: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(output);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(output);
  if (rps === null || p99 === null) throw new Error(`cannot read wrk's summary:\n${output}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((n, v) => n + Number(v), 0);
  return {
    requestsPerSecond: Number(rps[1]),
    p99: Number(p99[1]) * UNIT_SECONDS[p99[2]!]!,
    errors: Number(non2xx?.[1] ?? 0) + socketErrors,
  };
}

export interface WrkOptions {
  url: string;
  connections: number;
  threads: number;
  seconds: number;
  headers?: Record<string, string>;
}

export async function runWrk(wrk: string, o: WrkOptions): Promise<WrkResult> {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.seconds}s`, '--latency'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  const { stdout } = await run(wrk, [...args, o.url]);
  return parseWrk(stdout);
}
