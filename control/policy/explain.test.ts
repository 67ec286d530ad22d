// Unit tests of the dry run: applicable policies in order, the rules they add up to, the verdict.
import { beforeAll, expect, test } from 'vitest';
import { classifySql, initClassifier } from '../../protocols/postgres/sql-classify.js';
import { explain } from './explain.js';
import { policySchema } from './policy-schema.js';

beforeAll(async () => {
  await initClassifier();
});

const POLICIES = [
  policySchema.parse({
    fqn: 'policy::/prod::guard',
    realm: 'binding::/prod/billing',
    allow: { classes: ['select', 'delete'] },
    deny: { functions: ['pg_read_file'] },
    limits: { max_rows: 100 },
    hooks: [{ classes: ['delete'], url: 'http://127.0.0.1:9/hook', on_error: 'deny' }],
  }),
  policySchema.parse({ fqn: 'policy::/::base', realm: '::/', read_only: true, limits: { max_rows: 500, rate: '10/s' } }),
  policySchema.parse({ fqn: 'policy::/staging::other', realm: 'service::/staging', deny: { classes: ['select'] } }),
];
const SUBJECT = { binding: 'binding::/prod/billing::api', service: 'service::/prod::orders' };

test('an allowed statement: policies widest first, rules, limits and the hooks that would run', () => {
  const e = explain(POLICIES, SUBJECT, 'select * from items', classifySql);
  expect(e.policies).toEqual([
    { fqn: 'policy::/::base', realm: '::/' },
    { fqn: 'policy::/prod::guard', realm: 'binding::/prod/billing' },
  ]);
  expect(e.rules.readOnly).toBe('policy::/::base');
  expect(e.rules.limits).toEqual({ maxRows: { value: 100, policy: 'policy::/prod::guard' }, rate: { value: 10, policy: 'policy::/::base' } });
  expect(e.rules.deniedFunctions).toEqual(['pg_read_file']);
  expect(e.rules.deniedClasses).toContainEqual({ class: 'insert', rule: 'allow.classes', policy: 'policy::/prod::guard' });
  expect(e.statements).toEqual([{ class: 'select', writes: false, tables: ['items'], functions: [] }]);
  expect(e.verdict).toEqual({ action: 'allow', hooks: [] });
});

test('a denied statement names rule and policy', () => {
  expect(explain(POLICIES, SUBJECT, 'delete from items', classifySql).verdict).toMatchObject({ action: 'deny', code: '42501', rule: 'read_only', policy: 'policy::/::base' });
  expect(explain(POLICIES, SUBJECT, "select pg_read_file('x')", classifySql).verdict).toMatchObject({ rule: 'deny.functions', policy: 'policy::/prod::guard' });
  const bad = explain(POLICIES, SUBJECT, 'selec 1', classifySql);
  expect(bad.parseError).toBeDefined();
  expect(bad.verdict).toMatchObject({ action: 'deny', rule: 'allow.classes' });
});

test('hooks that would be called are listed for an allowed statement', () => {
  const noRo = POLICIES.filter((p) => p.fqn !== 'policy::/::base');
  expect(explain(noRo, SUBJECT, 'delete from items', classifySql).verdict).toEqual({ action: 'allow', hooks: ['http://127.0.0.1:9/hook'] });
});
