// The composed pipeline: whether the relay must judge statements follows the stages' own answer,
// and the first refusal in chain order wins.
import { expect, test } from 'vitest';
import { SessionPipeline } from './pipeline.js';
import { FORWARD, type SessionInfo, type Stage, type StageFactory } from './stage.js';

const session: SessionInfo = {
  id: '1-1',
  binding: 'binding::/t::b',
  service: 'service::/t::s',
  protocol: 'postgres',
  user: 'u',
  clientAddress: '127.0.0.1:1',
  database: 'd',
  startedAt: 0,
};
const factory = (stage: Stage): StageFactory => ({ name: 'test', create: () => stage });
const event = { text: 'select 1', kind: 'simple' as const, receivedAt: 0n };

test('judgesStatements asks the stages: no statement hook, or every stage idle, means no judging', () => {
  let active = false;
  const observing = new SessionPipeline(session, [factory({ onComplete: () => {} })]);
  expect(observing.judgesStatements).toBe(false);
  const policy = new SessionPipeline(session, [factory({ judges: () => active, onStatement: () => FORWARD })]);
  expect(policy.judgesStatements).toBe(false);
  active = true;
  expect(policy.judgesStatements).toBe(true);
  const always = new SessionPipeline(session, [factory({ onStatement: () => undefined })]);
  expect(always.judgesStatements).toBe(true);
});

test('the first refusal in chain order wins, later stages are not asked', async () => {
  const asked: string[] = [];
  const pipeline = new SessionPipeline(session, [
    factory({ onStatement: () => (asked.push('a'), undefined) }),
    factory({ onStatement: () => (asked.push('b'), Promise.resolve({ action: 'error', code: '42501', message: 'no' })) }),
    factory({ onStatement: () => (asked.push('c'), FORWARD) }),
  ]);
  expect(await pipeline.statement(event)).toMatchObject({ action: 'error', code: '42501' });
  expect(asked).toEqual(['a', 'b']);
});
