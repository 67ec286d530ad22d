// `npm run bench:http`: wrk (50 connections) against a small JSON answer of a Node upstream,
// directly, through nginx (one worker, keep-alive upstream) and through sempipe (its workers, a
// bearer binding, metrics and audit on), and through sempipe with a policy that judges every
// request (deny methods and paths, read_only). Warm-up first, then interleaved rounds so that
// drift of the machine hits every row alike; the table shows the median req/s, p99 and ratios.
// Settings from the environment: BENCH_HTTP_SECONDS (per round, default 10), BENCH_HTTP_ROUNDS
// (default 3), BENCH_HTTP_WORKERS (sempipe's workers, default one per core).
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from '../test/harness/binaries.js';
import { startHttpUpstream } from '../test/harness/http-upstream.js';
import { freePort } from '../test/harness/ports.js';
import { startSempipe } from '../test/harness/sempipe-process.js';
import { startNginx } from './nginx-process.js';
import { formatRatio, formatTable, formatTps, median } from './report.js';
import { Teardown } from './teardown.js';
import { runWrk, type WrkResult } from './wrk-run.js';

const CONNECTIONS = 50;
const THREADS = 2;
const WARMUP_SECONDS = 3;
const TOKEN = 'bench-token-0123456789abcdef';

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number of at least 1, got ${JSON.stringify(raw)}`);
  return n;
}

interface Row {
  name: string;
  url: string;
  headers?: Record<string, string>;
  results: WrkResult[];
}

async function main(): Promise<void> {
  const seconds = positive('BENCH_HTTP_SECONDS', 10);
  const rounds = positive('BENCH_HTTP_ROUNDS', 3);
  const workers = positive('BENCH_HTTP_WORKERS', availableParallelism());
  const wrk = findBinary('wrk');
  const nginx = findBinary('nginx');
  if (wrk === undefined || nginx === undefined) throw new Error('bench:http needs wrk and nginx (Debian: apt-get install wrk nginx-light)');

  const teardown = new Teardown();
  teardown.onSignals();
  teardown.onCrash();
  const dir = mkdtempSync(join(tmpdir(), 'sempipe-bench-http-'));
  teardown.add('temporary files', () => rmSync(dir, { recursive: true, force: true }));
  try {
    const upstream = await startHttpUpstream();
    teardown.add('upstream', () => upstream.close());
    const nginxPort = await freePort();
    const proxy = await startNginx(nginx, join(dir, 'nginx'), nginxPort, upstream.port);
    teardown.add('nginx', () => proxy.stop());
    const [plainPort, policyPort] = [await freePort(), await freePort()];
    const sempipe = await startSempipe({
      workers,
      yaml: `admin: { listen: "127.0.0.1:\${ADMIN_PORT}" }
audit: { destination: ${join(dir, 'audit.log')} }
services:
  - fqn: service::/bench::api
    protocol: http
    upstream: { url: "${upstream.url}", headers: { X-Api-Key: bench-service-key } }
bindings:
  - { fqn: "binding::/bench::plain", service: "service::/bench::api", listen: "127.0.0.1:${plainPort}", auth: bearer, clients: [ { token: ${TOKEN} } ] }
  - { fqn: "binding::/bench/guarded::api", service: "service::/bench::api", listen: "127.0.0.1:${policyPort}", auth: bearer, clients: [ { token: ${TOKEN} } ] }
policies:
  - fqn: policy::/bench::guard
    realm: binding::/bench/guarded
    read_only: true
    deny: { methods: [DELETE], paths: ["/admin/*", "/internal/*"] }
`,
    });
    teardown.add('sempipe', async () => void (await sempipe.stop()));

    const auth = { authorization: `Bearer ${TOKEN}` };
    const rows: Row[] = [
      { name: 'direct', url: `${upstream.url}/json`, results: [] },
      { name: 'nginx (1 worker)', url: `http://127.0.0.1:${nginxPort}/json`, results: [] },
      { name: `sempipe (${workers} workers)`, url: `http://127.0.0.1:${plainPort}/json`, headers: auth, results: [] },
      { name: 'sempipe + policy', url: `http://127.0.0.1:${policyPort}/json`, headers: auth, results: [] },
    ];
    process.stdout.write(`warm-up ${WARMUP_SECONDS}s per row, then ${rounds} interleaved rounds of ${seconds}s, wrk -t${THREADS} -c${CONNECTIONS}\n`);
    for (const row of rows) await runWrk(wrk, { url: row.url, headers: row.headers, connections: CONNECTIONS, threads: THREADS, seconds: WARMUP_SECONDS });
    for (let round = 1; round <= rounds; round++) {
      for (const row of rows) {
        const r = await runWrk(wrk, { url: row.url, headers: row.headers, connections: CONNECTIONS, threads: THREADS, seconds });
        if (r.errors > 0) throw new Error(`${row.name}: ${r.errors} failed requests in round ${round}`);
        row.results.push(r);
        process.stdout.write(`round ${round} ${row.name}: ${formatTps(r.requestsPerSecond)} req/s, p99 ${(r.p99 * 1000).toFixed(2)} ms\n`);
      }
    }
    const rps = (row: Row): number => median(row.results.map((r) => r.requestsPerSecond));
    const [direct, reference] = [rps(rows[0]!), rps(rows[1]!)];
    const table = rows.map((row) => [
      row.name,
      formatTps(rps(row)),
      `${(median(row.results.map((r) => r.p99)) * 1000).toFixed(2)} ms`,
      formatRatio(rps(row) / direct),
      formatRatio(rps(row) / reference),
    ]);
    process.stdout.write(`\n${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, Node ${process.version}\n`);
    process.stdout.write(`${formatTable(['row', 'req/s (median)', 'p99', 'vs direct', 'vs nginx'], table)}\n`);
    const goal = rps(rows[2]!) / reference;
    process.stdout.write(`goal sempipe >= 0.50x nginx: ${formatRatio(goal)} ${goal >= 0.5 ? 'met' : 'NOT met'}\n`);
  } finally {
    await teardown.run();
  }
}

await main();
