// Tests for the primary's record of a worker's sessions: only the sessions still open when the
// worker is gone are reported, each with a session_end line of the workers' shape (reason
// worker_lost) in the audit log and a count in sempipe_sessions_closed_total; a second report
// finds nothing.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { createAuditLog, type AuditLog } from '../control/audit.js';
import { createPrimaryMetrics } from '../control/metrics.js';
import { WorkerSessions } from './worker-sessions.js';

const dirs: string[] = [];
const logs: AuditLog[] = [];

afterEach(async () => {
  await Promise.all(logs.splice(0).map((l) => l.close()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function auditFile(): { file: string; audit: AuditLog } {
  const dir = mkdtempSync(join(tmpdir(), 'sempipe-lost-'));
  dirs.push(dir);
  const file = join(dir, 'audit.log');
  const audit = createAuditLog({ destination: file, maxStatementLength: 100 });
  logs.push(audit);
  return { file, audit };
}

const session = (id: string, binding = 'binding::/t::a') => ({ id, binding, user: 'api', client: '127.0.0.1:50000', startedAt: Date.now() - 1500 });

it('reports the sessions that never ended, once, as worker_lost lines and counts', async () => {
  const { file, audit } = auditFile();
  const metrics = createPrimaryMetrics();
  const sessions = new WorkerSessions();
  expect(sessions.onMessage({ type: 'session-start', session: session('1.2-1') })).toBe(true);
  expect(sessions.onMessage({ type: 'session-start', session: session('1.2-2') })).toBe(true);
  expect(sessions.onMessage({ type: 'session-start', session: session('1.2-3', 'binding::/t::b') })).toBe(true);
  expect(sessions.onMessage({ type: 'session-end', id: '1.2-2' })).toBe(true);
  expect(sessions.onMessage({ type: 'hello' })).toBe(false);

  expect(sessions.reportLost(audit, metrics)).toBe(2);
  expect(sessions.reportLost(audit, metrics)).toBe(0);
  await audit.flush();

  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines.map((l) => l.session)).toEqual(['1.2-1', '1.2-3']);
  expect(Object.keys(lines[0]!)).toEqual(['level', 'time', 'binding', 'user', 'client', 'session', 'event', 'reason', 'duration_ms']);
  expect(lines[0]).toMatchObject({ level: 'info', binding: 'binding::/t::a', user: 'api', client: '127.0.0.1:50000', event: 'session_end', reason: 'worker_lost' });
  expect(lines[0]!.duration_ms).toBeGreaterThanOrEqual(1500);

  const text = await metrics.registry.metrics();
  expect(text).toContain('sempipe_sessions_closed_total{binding="binding::/t::a",reason="worker_lost"} 1');
  expect(text).toContain('sempipe_sessions_closed_total{binding="binding::/t::b",reason="worker_lost"} 1');
});

it('counts lost sessions when the audit log is off', async () => {
  const metrics = createPrimaryMetrics();
  const sessions = new WorkerSessions();
  sessions.onMessage({ type: 'session-start', session: session('2.1-1') });
  expect(sessions.reportLost(undefined, metrics)).toBe(1);
  expect(await metrics.registry.metrics()).toContain('sempipe_sessions_closed_total{binding="binding::/t::a",reason="worker_lost"} 1');
});
