// Unit tests of the policy stage with the real classifier, real metrics, a real HTTP hook server and
// the pipeline that composes stages: the no-policy fast path, denials and their counting, the
// tracker reaching the relay through the pipeline, live policy swaps, rate limits, max_sessions
// slots taken and given back, hooks on the only asynchronous path, and notification drops.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createMetrics, type Metrics } from '../metrics.js';
import { PolicySet } from '../policy/policy-set.js';
import { policySchema } from '../policy/policy-schema.js';
import { Notifier } from '../policy/hooks.js';
import { createPolicyStage } from './policy-stage.js';
import { createMetricsStage } from './metrics-stage.js';
import { SessionPipeline } from '../../proxy/pipeline.js';
import { LocalSessionSlots } from '../../proxy/session-slots.js';
import { FORWARD, type CompletionEvent, type SessionInfo, type Verdict } from '../../proxy/stage.js';
import { classifySql, initClassifier } from '../../protocols/postgres/sql-classify.js';
import { classifyForSession } from '../../protocols/postgres/replication-commands.js';

const SESSION: SessionInfo = {
  id: 'w1-1',
  binding: 'binding::/t::b',
  service: 'service::/t::s',
  protocol: 'postgres',
  user: 'api',
  clientAddress: '127.0.0.1:1',
  database: 'db',
  startedAt: Date.now(),
};

let hookServer: Server;
let hookUrl: string;
let metrics: Metrics;

beforeAll(async () => {
  await initClassifier();
  metrics = createMetrics();
  hookServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const statement = String((JSON.parse(body) as { statement: string }).statement);
      if (req.url === '/never') return; // never answers
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ permitted: !statement.includes('nope'), reason: 'said no' }));
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  hookServer.closeAllConnections();
  await new Promise((r) => hookServer.close(r));
});

function setWith(...docs: Record<string, unknown>[]): PolicySet {
  return new PolicySet(docs.map((d) => policySchema.parse(d)));
}

function stageFor(policies: PolicySet, slots = new LocalSessionSlots(), notifier?: Notifier) {
  return createPolicyStage({ policies, slots, classify: classifySql, metrics, ...(notifier && { notifier }) });
}

const statement = (text: string) => ({ text, kind: 'simple' as const, receivedAt: process.hrtime.bigint() });

function completion(c: Partial<CompletionEvent>): CompletionEvent {
  return { text: 'x', statementClass: 'select', tag: '', rows: 0, outcome: 'ok', durationNs: 1_000_000n, receivedAt: process.hrtime.bigint(), judgedNs: 0n, ...c };
}

describe('statements', () => {
  test('without applicable policies a statement is not judged', () => {
    const s = stageFor(setWith({ fqn: 'policy::/x::p', realm: 'binding::/other', deny: { classes: ['select'] } })).create(SESSION);
    expect(s.onStatement!(SESSION, statement('select 1'))).toBeUndefined();
  });

  test('a denial is an error verdict; its completion is counted per binding and rule', async () => {
    const s = stageFor(setWith({ fqn: 'policy::/x::p', realm: '::/', deny: { classes: ['ddl'] } })).create(SESSION);
    const v = s.onStatement!(SESSION, statement('drop table t')) as Verdict;
    expect(v).toMatchObject({ action: 'error', code: '42501', rule: 'deny.classes', policy: 'policy::/x::p' });
    const before = (await metrics.policyDenials.get()).values.find((x) => x.labels.rule === 'deny.classes')?.value ?? 0;
    s.onComplete!(SESSION, completion({ outcome: 'denied', rule: 'deny.classes', policy: 'policy::/x::p', code: '42501' }));
    const after = (await metrics.policyDenials.get()).values.find((x) => x.labels.rule === 'deny.classes' && x.labels.binding === SESSION.binding)?.value;
    expect(after).toBe(before + 1);
  });

  test('limits travel as a tracker through the pipeline to the relay (regression: the pipeline dropped trackers)', () => {
    const policies = setWith({ fqn: 'policy::/x::p', realm: '::/', limits: { max_rows: 10, statement_timeout: '2s' } });
    const pipeline = new SessionPipeline(SESSION, [createMetricsStage(metrics), stageFor(policies)]);
    const v = pipeline.statement(statement('select 1')) as Verdict;
    expect(v.action).toBe('forward');
    const tracker = v.action === 'forward' ? v.tracker : undefined;
    expect(tracker).toMatchObject({ maxRows: 10, timeoutMs: 2000 });
    expect(tracker!.limitMessage!('max_rows')).toEqual({
      code: '54000',
      rule: 'max_rows',
      policy: 'policy::/x::p',
      message: 'statement stopped by sempipe policy policy::/x::p: the result has more than 10 rows (rule max_rows)',
    });
    expect(tracker!.limitMessage!('statement_timeout')).toMatchObject({ code: '57014', rule: 'statement_timeout' });
  });

  test('a policy update applies to the next statement of an open session', () => {
    const policies = setWith({ fqn: 'policy::/x::p', realm: '::/', deny: { classes: ['ddl'] } });
    const s = stageFor(policies).create(SESSION);
    expect(s.onStatement!(SESSION, statement('select 1'))).toBe(FORWARD);
    policies.update([policySchema.parse({ fqn: 'policy::/x::p', realm: '::/', deny: { classes: ['select'] } })]);
    expect(s.onStatement!(SESSION, statement('select 1'))).toMatchObject({ action: 'error', rule: 'deny.classes' });
  });

  test('per-session rate and per-binding rate shared by sessions', () => {
    const stage = stageFor(setWith({ fqn: 'policy::/x::p', realm: '::/', limits: { rate: '2/s', binding_rate: '3/s' } }));
    const a = stage.create(SESSION);
    const b = stage.create({ ...SESSION, id: 'w1-2' });
    const at = process.hrtime.bigint();
    const run = (s: typeof a) => s.onStatement!(SESSION, { text: 'select 1', kind: 'simple', receivedAt: at }) as Verdict;
    expect(run(a).action).toBe('forward');
    expect(run(a).action).toBe('forward');
    expect(run(a)).toMatchObject({ action: 'error', rule: 'rate' });
    expect(run(b).action).toBe('forward');
    expect(run(b)).toMatchObject({ action: 'error', rule: 'binding_rate' });
  });
});

describe('admission', () => {
  test('max_sessions takes a slot per session, refuses with 53300 when full and gives slots back on end', async () => {
    const slots = new LocalSessionSlots();
    const stage = stageFor(setWith({ fqn: 'policy::/x::p', realm: '::/', limits: { max_sessions: 1 } }), slots);
    const first = stage.create(SESSION);
    expect(await first.admit!(SESSION)).toBe(FORWARD);
    const second = stage.create(SESSION);
    const refused = await second.admit!(SESSION);
    expect(refused).toMatchObject({ action: 'close', code: '53300' });
    expect(refused.action === 'close' && refused.message).toContain('too many sessions for binding binding::/t::b');
    second.onEnd!(SESSION, { reason: 'error', bytesIn: 0, bytesOut: 0, statements: 0 });
    expect(slots.count(SESSION.binding)).toBe(1);
    first.onEnd!(SESSION, { reason: 'client', bytesIn: 0, bytesOut: 0, statements: 0 });
    expect(slots.count(SESSION.binding)).toBe(0);
    expect(await stage.create(SESSION).admit!(SESSION)).toBe(FORWARD);
  });
});

describe('hooks and notifications', () => {
  test('a hook is the only asynchronous path; it permits, refuses with its reason, and fails closed or open', async () => {
    const stage = stageFor(
      setWith({
        fqn: 'policy::/x::h',
        realm: '::/',
        hooks: [
          { classes: ['delete'], url: `${hookUrl}/hook`, timeout: '1s', on_error: 'deny' },
          { classes: ['update'], url: `${hookUrl}/never`, timeout: '100ms', on_error: 'deny' },
          { classes: ['insert'], url: `${hookUrl}/never`, timeout: '100ms', on_error: 'allow' },
        ],
      }),
    );
    const s = stage.create(SESSION);
    expect(s.onStatement!(SESSION, statement('select 1'))).toBe(FORWARD);
    const permitted = s.onStatement!(SESSION, statement('delete from t'));
    expect(permitted).toBeInstanceOf(Promise);
    expect(await permitted).toBe(FORWARD);
    expect(await s.onStatement!(SESSION, statement('delete from t where a = \'nope\''))).toMatchObject({ action: 'error', rule: 'hook', message: expect.stringContaining('said no') });
    expect(await s.onStatement!(SESSION, statement('update t set a = 1'))).toMatchObject({ action: 'error', rule: 'hook', message: expect.stringContaining('within 100ms') });
    expect(await s.onStatement!(SESSION, statement('insert into t values (1)'))).toBe(FORWARD);
  });

  test('notifications beyond the in-flight bound are dropped and counted', async () => {
    const notifier = new Notifier({ maxInFlight: 2, onDrop: (binding) => metrics.policyNotificationsDropped.inc({ binding }) });
    const stage = stageFor(setWith({ fqn: 'policy::/x::n', realm: '::/', notifications: [{ classes: ['select'], url: `${hookUrl}/never` }] }), undefined, notifier);
    const s = stage.create(SESSION);
    for (let i = 0; i < 5; i++) s.onComplete!(SESSION, completion({ statementClass: 'select' }));
    s.onComplete!(SESSION, completion({ statementClass: 'insert' }));
    expect(notifier.pending).toBe(2);
    const dropped = (await metrics.policyNotificationsDropped.get()).values.find((v) => v.labels.binding === SESSION.binding)?.value;
    expect(dropped).toBe(3);
  });
});

describe('replication sessions', () => {
  const LOGICAL: SessionInfo = { ...SESSION, replication: 'logical' };
  const replicationStage = (policies: PolicySet) =>
    createPolicyStage({ policies, slots: new LocalSessionSlots(), classify: (text, s) => classifyForSession(text, s.replication), metrics });

  test('admitted only when a policy grants the kind; the refusal closes with 42501 and is counted', async () => {
    const before = (await metrics.policyDenials.get()).values.find((x) => x.labels.rule === 'allow.replication')?.value ?? 0;
    const refused = await replicationStage(setWith({ fqn: 'policy::/x::p', realm: '::/', deny: { classes: ['ddl'] } })).create(LOGICAL).admit!(LOGICAL);
    expect(refused).toMatchObject({ action: 'close', code: '42501' });
    expect((refused as { message: string }).message).toContain('need a policy with allow.replication: [logical]');
    expect((await metrics.policyDenials.get()).values.find((x) => x.labels.rule === 'allow.replication')?.value).toBe(before + 1);
    const granted = replicationStage(setWith({ fqn: 'policy::/x::p', realm: '::/', allow: { replication: ['logical'] } }));
    expect(await granted.create(LOGICAL).admit!(LOGICAL)).toBe(FORWARD);
    // A normal session needs no grant.
    expect(await replicationStage(setWith()).create(SESSION).admit!(SESSION)).toBe(FORWARD);
  });

  test('replication commands carry no row or time limit; SQL on the same session does', () => {
    const s = replicationStage(setWith({ fqn: 'policy::/x::p', realm: '::/', allow: { replication: ['logical'] }, limits: { statement_timeout: '1s', max_rows: 5 } })).create(LOGICAL);
    expect(s.onStatement!(LOGICAL, statement('START_REPLICATION SLOT "s" LOGICAL 0/0'))).toBe(FORWARD);
    expect(s.onStatement!(LOGICAL, statement('select 1'))).toMatchObject({ action: 'forward', tracker: { timeoutMs: 1000, maxRows: 5 } });
  });
});
