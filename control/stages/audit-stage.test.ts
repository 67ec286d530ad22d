// Tests for the audit stage: the exact JSON line of each event (statement, session_start,
// session_end, auth_failure), statement truncation, and that error details appear only on failures.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAuditLog, type AuditLog } from '../audit.js';
import type { SessionInfo, StageFactory } from '../../proxy/stage.js';
import { createAuditStage, truncateStatement } from './audit-stage.js';

const SESSION: SessionInfo = {
  id: 'w1-42',
  binding: 'binding::/prod/billing::api-orders',
  service: 'service::/prod::orders',
  protocol: 'postgres',
  user: 'api',
  clientAddress: '10.0.0.7:51234',
  database: 'orders',
  startedAt: Date.now() - 1500,
};
const WHO = { binding: SESSION.binding, user: 'api', client: '10.0.0.7:51234', session: 'w1-42' };
const TIME = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

let dir: string;
let file: string;
let log: AuditLog;
let factory: StageFactory;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-audit-stage-'));
  file = join(dir, 'audit.log');
  log = createAuditLog({ destination: file, maxStatementLength: 20 });
  factory = createAuditStage(log);
});

afterEach(async () => {
  await log.close();
  rmSync(dir, { recursive: true, force: true });
});

async function written(): Promise<unknown[]> {
  await log.flush();
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);
}

describe('createAuditStage', () => {
  it('writes session_start, one statement line and session_end with stable fields', async () => {
    const stage = factory.create(SESSION);
    stage.onStart?.(SESSION);
    stage.onComplete?.(SESSION, {
      text: 'select * from t',
      statementClass: 'select',
      tag: 'SELECT 3',
      rows: 3,
      outcome: 'ok',
      durationNs: 1_234_567n,
      receivedAt: 0n,
      judgedNs: 0n,
    });
    stage.onEnd?.(SESSION, { reason: 'client', bytesIn: 120, bytesOut: 4096, statements: 1 });
    const [start, statement, end, ...rest] = await written();
    expect(rest).toEqual([]);
    expect(start).toStrictEqual({ level: 'info', time: TIME, ...WHO, event: 'session_start', database: 'orders' });
    expect(statement).toStrictEqual({
      level: 'info',
      time: TIME,
      ...WHO,
      event: 'statement',
      statement: 'select * from t',
      class: 'select',
      duration_ms: 1.235,
      rows: 3,
      outcome: 'ok',
    });
    expect(end).toStrictEqual({
      level: 'info',
      time: TIME,
      ...WHO,
      event: 'session_end',
      reason: 'client',
      duration_ms: expect.any(Number),
      statements: 1,
      bytes_in: 120,
      bytes_out: 4096,
    });
    expect((end as { duration_ms: number }).duration_ms).toBeGreaterThanOrEqual(1500);
  });

  it('adds sqlstate and error to failed and denied statements', async () => {
    const stage = factory.create(SESSION);
    stage.onStart?.(SESSION);
    stage.onComplete?.(SESSION, {
      text: 'select * from nope',
      statementClass: 'select',
      tag: '',
      rows: 0,
      outcome: 'error',
      code: '42P01',
      message: 'relation "nope" does not exist',
      durationNs: 800n,
      receivedAt: 0n,
      judgedNs: 0n,
    });
    stage.onComplete?.(SESSION, {
      text: 'drop table t',
      statementClass: 'ddl',
      tag: '',
      rows: 0,
      outcome: 'denied',
      code: '42501',
      message: 'denied by policy ddl-off',
      durationNs: 0n,
      receivedAt: 0n,
      judgedNs: 0n,
    });
    const [, failed, denied] = await written();
    expect(failed).toMatchObject({ outcome: 'error', sqlstate: '42P01', error: 'relation "nope" does not exist', duration_ms: 0.001 });
    expect(denied).toMatchObject({ event: 'statement', class: 'ddl', outcome: 'denied', sqlstate: '42501', duration_ms: 0 });
  });

  it('truncates long statements and flags them', async () => {
    const stage = factory.create(SESSION);
    stage.onStart?.(SESSION);
    const text = 'select 1 from generate_series(1, 1000000)';
    stage.onComplete?.(SESSION, { text, statementClass: 'select', tag: 'SELECT 1000000', rows: 1000000, outcome: 'ok', durationNs: 5n, receivedAt: 0n, judgedNs: 0n });
    const [, statement] = await written();
    expect(statement).toMatchObject({ statement: text.substring(0, 20), statement_truncated: true });
  });

  it('writes auth_failure without a session', async () => {
    factory.onAuthFailure?.({
      binding: SESSION.binding,
      protocol: 'postgres',
      user: 'mallory',
      clientAddress: '10.0.0.9:40000',
      reason: 'bad_password',
    });
    expect(await written()).toStrictEqual([
      {
        level: 'warn',
        time: TIME,
        event: 'auth_failure',
        binding: SESSION.binding,
        user: 'mallory',
        client: '10.0.0.9:40000',
        reason: 'bad_password',
      },
    ]);
  });

  it('session_end carries the end message when there is one, and is written once', async () => {
    const stage = factory.create(SESSION);
    stage.onStart?.(SESSION);
    stage.onEnd?.(SESSION, { reason: 'upstream', bytesIn: 0, bytesOut: 0, statements: 0, message: 'terminating connection' });
    stage.onEnd?.(SESSION, { reason: 'upstream', bytesIn: 0, bytesOut: 0, statements: 0 });
    const lines = await written();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ event: 'session_end', reason: 'upstream', error: 'terminating connection' });
  });
});

describe('truncateStatement', () => {
  it('keeps a prefix of at most max units and never splits a surrogate pair', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.nat(250), (text, max) => {
        const cut = truncateStatement(text, max);
        expect(text.startsWith(cut)).toBe(true);
        expect(cut.length).toBeLessThanOrEqual(max);
        if (text.length <= max) expect(cut).toBe(text);
        else expect(cut.length).toBeGreaterThanOrEqual(max - 1);
        expect(cut).not.toMatch(/[\uD800-\uDBFF]$/);
      }),
    );
  });
});
