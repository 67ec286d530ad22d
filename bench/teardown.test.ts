// Teardown in a real process: after an uncaught exception or a signal the registered steps still
// run (in reverse order, once) and the process exits with a failing status, so a crashed benchmark
// leaves no PostgreSQL or PgBouncer behind. Runs the compiled module, as `npm run bench:pg` does.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, expect, test } from 'vitest';

const MODULE = resolve(import.meta.dirname, '../dist/bench/teardown.js');
const dir = mkdtempSync(join(tmpdir(), 'sempipe-teardown-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a script with a Teardown of two steps that append to `log`, then `trigger`; `sigtermAfterMs`: then SIGTERM it. */
function runScript(log: string, trigger: string, sigtermAfterMs?: number): Promise<{ code: number | null; stderr: string; steps: string }> {
  const script = `
    import { appendFileSync } from 'node:fs';
    import { Teardown } from ${JSON.stringify(MODULE)};
    const t = new Teardown();
    t.onSignals();
    t.onCrash();
    t.add('first', () => appendFileSync(${JSON.stringify(log)}, 'first\\n'));
    t.add('second', async () => { await new Promise((r) => setTimeout(r, 50)); appendFileSync(${JSON.stringify(log)}, 'second\\n'); });
    setInterval(() => {}, 1000);
    ${trigger}
  `;
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (sigtermAfterMs !== undefined) setTimeout(() => child.kill('SIGTERM'), sigtermAfterMs);
    child.once('exit', (code) => done({ code, stderr, steps: existsSync(log) ? readFileSync(log, 'utf8') : '' }));
  });
}

test('an exception thrown from an event handler runs the steps in reverse order, then exits 1', async () => {
  const r = await runScript(join(dir, 'crash.log'), "setTimeout(() => { throw new Error('EPIPE from nowhere'); }, 100);");
  expect(r.steps).toBe('second\nfirst\n');
  expect(r.code).toBe(1);
  expect(r.stderr).toContain('crashed: Error: EPIPE from nowhere');
});

test('an unhandled rejection counts as a crash too', async () => {
  const r = await runScript(join(dir, 'reject.log'), "setTimeout(() => void Promise.reject(new Error('lost promise')), 100);");
  expect(r.steps).toBe('second\nfirst\n');
  expect(r.code).toBe(1);
  expect(r.stderr).toContain('lost promise');
});

test('SIGTERM runs the steps and exits 143', async () => {
  const r = await runScript(join(dir, 'term.log'), '', 500);
  expect(r.steps).toBe('second\nfirst\n');
  expect(r.code).toBe(143);
});
