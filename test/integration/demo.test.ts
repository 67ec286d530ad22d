// `sempipe demo` as a new user runs it: the real binary starts an embedded PostgreSQL behind a
// binding, prints how to connect, serves queries and /metrics, audits them on stdout, refuses the
// one statement PGlite cannot take (COPY FROM STDIN), and stops cleanly on Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import pg from 'pg';
import { freePorts } from '../harness/ports.js';
import { SEMPIPE_BIN } from '../harness/sempipe-process.js';

let child: ReturnType<typeof spawn>;
let stdout = '';
let stderr = '';
let url = '';
let adminPort = 0;

beforeAll(async () => {
  const [port, admin] = await freePorts(2);
  adminPort = admin;
  child = spawn(process.execPath, [SEMPIPE_BIN, 'demo', '--port', String(port), '--admin-port', String(admin)], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 60_000;
  while (!/psql '([^']+)'/.test(stderr)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`demo did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  url = /psql '([^']+)'/.exec(stderr)![1];
}, 90_000);

afterAll(() => {
  if (child.exitCode === null) child.kill('SIGKILL');
});

test('`npx sempipe`, as the README has a new user run it, starts the package\'s binary', () => {
  // As from a shell: without the npm_* settings of the `npm test` that runs this suite.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  const r = spawnSync('npx', ['sempipe', '--help'], { cwd: resolve(import.meta.dirname, '../..'), encoding: 'utf8', env });
  expect(r.stderr).not.toContain('Permission denied');
  expect(r.stdout).toContain('usage: sempipe <command>');
});

test('prints a psql command that works, with the metrics URL', async () => {
  expect(url).toMatch(/^postgresql:\/\/demo:[^@]+@127\.0\.0\.1:\d+\/shop$/);
  expect(stderr).toContain(`http://127.0.0.1:${adminPort}/metrics`);
  const r = spawnSync('psql', ['-XAtc', 'select count(*) from orders', url], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.stdout.trim()).toBe('20');
});

test('queries through pg are audited on stdout and counted in /metrics', async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const r = await c.query('select name from customers where country = $1 order by name', ['GB']);
  expect(r.rows.length).toBeGreaterThan(0);
  await c.end();
  await expect.poll(() => stdout, { timeout: 5000 }).toContain('"statement":"select name from customers where country = $1 order by name"');
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  expect(metrics).toMatch(/sempipe_queries_total\{binding="binding::\/demo::shop",protocol="postgres",class="select",outcome="ok"\} \d+/);
});

test('COPY FROM STDIN, which would break the embedded database, is refused and the database keeps working', async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await expect(c.query('copy orders from stdin')).rejects.toMatchObject({ code: '42501' });
  expect((await c.query('select count(*)::int as n from orders')).rows[0].n).toBe(20);
  await c.end();
});

test('Ctrl-C stops it cleanly', async () => {
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGINT');
  expect(await exited).toBe(0);
});
