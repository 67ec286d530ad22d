// Unit tests of the policy engine with the real SQL classifier: realm coverage and order, every
// statement rule, precedence (deny wins, every allow list restricts), unknown-class handling,
// multi-statement texts, name matching, limits combining to the strictest, and the compile cache.
import { beforeAll, describe, expect, test } from 'vitest';
import { classifySql, initClassifier } from '../../protocols/postgres/sql-classify.js';
import { classifyForSession } from '../../protocols/postgres/replication-commands.js';
import { applicablePolicies, compileRules, decideStatements, replicationRefusal, type PolicySubject } from './engine.js';
import { PolicySet } from './policy-set.js';
import { policySchema, type PolicyDocument } from './policy-schema.js';

beforeAll(async () => {
  await initClassifier();
});

const SUBJECT: PolicySubject = { binding: 'binding::/prod/billing::api', service: 'service::/prod::orders' };

function policy(doc: Record<string, unknown>): PolicyDocument {
  return policySchema.parse(doc);
}

function decide(policies: PolicyDocument[], sql: string, subject = SUBJECT) {
  return decideStatements(compileRules(policies, subject), classifySql(sql).statements);
}

describe('applicable policies', () => {
  test('realms covering the binding, the service or the job apply, widest first', () => {
    const all = [
      policy({ fqn: 'policy::/p::binding-exact', realm: 'binding::/prod/billing::api' }),
      policy({ fqn: 'policy::/p::everything', realm: '::/' }),
      policy({ fqn: 'policy::/p::prod-bindings', realm: 'binding::/prod' }),
      policy({ fqn: 'policy::/p::service-ns', realm: 'service::/prod' }),
      policy({ fqn: 'policy::/p::other-binding', realm: 'binding::/prod/other' }),
      policy({ fqn: 'policy::/p::other-service', realm: 'service::/staging' }),
      policy({ fqn: 'policy::/p::job', realm: 'job::/prod/billing' }),
    ];
    expect(applicablePolicies(all, SUBJECT).map((p) => p.fqn)).toEqual([
      'policy::/p::everything',
      'policy::/p::prod-bindings',
      'policy::/p::service-ns',
      'policy::/p::binding-exact',
    ]);
    const withJob = applicablePolicies(all, { ...SUBJECT, job: 'job::/prod/billing::worker' }).map((p) => p.fqn);
    expect(withJob).toContain('policy::/p::job');
  });

  test('a realm of another type or namespace does not apply', () => {
    const rules = [policy({ fqn: 'policy::/p::x', realm: 'service::/staging', deny: { classes: ['select'] } })];
    expect(decide(rules, 'select 1')).toBeUndefined();
  });
});

describe('classes', () => {
  test('deny.classes refuses with 42501 naming rule and policy', () => {
    const d = decide([policy({ fqn: 'policy::/p::g', realm: '::/', deny: { classes: ['ddl'] } })], 'create table t (a int)');
    expect(d).toMatchObject({ action: 'error', code: '42501', rule: 'deny.classes', policy: 'policy::/p::g' });
    expect(d!.message).toBe('permission denied by sempipe policy policy::/p::g: statement class "ddl" is denied (rule deny.classes)');
  });

  test('allow.classes restricts; a class must be in every applicable allow list', () => {
    const wide = policy({ fqn: 'policy::/p::wide', realm: '::/', allow: { classes: ['select', 'insert', 'update'] } });
    const narrow = policy({ fqn: 'policy::/p::narrow', realm: 'binding::/prod', allow: { classes: ['select', 'insert', 'delete'] } });
    expect(decide([wide, narrow], 'select 1')).toBeUndefined();
    expect(decide([wide, narrow], 'insert into t values (1)')).toBeUndefined();
    expect(decide([wide, narrow], 'update t set a = 1')).toMatchObject({ rule: 'allow.classes', policy: 'policy::/p::narrow' });
    expect(decide([wide, narrow], 'delete from t')).toMatchObject({ rule: 'allow.classes', policy: 'policy::/p::wide' });
  });

  test('a deny anywhere wins over an allow elsewhere', () => {
    const allow = policy({ fqn: 'policy::/p::allow', realm: 'binding::/prod/billing::api', allow: { classes: ['select', 'ddl'] } });
    const deny = policy({ fqn: 'policy::/p::deny', realm: '::/', deny: { classes: ['ddl'] } });
    expect(decide([allow, deny], 'drop table t')).toMatchObject({ rule: 'deny.classes', policy: 'policy::/p::deny' });
  });

  test('unknown is denied by an allow list not naming it, let through by deny-only policies', () => {
    const allow = policy({ fqn: 'policy::/p::allow', realm: '::/', allow: { classes: ['select'] } });
    const denyOnly = policy({ fqn: 'policy::/p::deny', realm: '::/', deny: { classes: ['ddl'] } });
    expect(decide([allow], 'do $$ begin perform 1; end $$')).toMatchObject({ rule: 'allow.classes' });
    expect(decide([allow], 'not sql at all')).toMatchObject({ rule: 'allow.classes' });
    expect(decide([denyOnly], 'do $$ begin perform 1; end $$')).toBeUndefined();
    expect(decide([policy({ fqn: 'policy::/p::u', realm: '::/', allow: { classes: ['select', 'unknown'] } })], 'execute s')).toBeUndefined();
  });

  test('every statement of a multi-statement text must pass', () => {
    const rules = [policy({ fqn: 'policy::/p::g', realm: '::/', deny: { classes: ['delete'] } })];
    expect(decide(rules, 'select 1; select 2')).toBeUndefined();
    expect(decide(rules, 'select 1; delete from t; select 2')).toMatchObject({ rule: 'deny.classes' });
  });
});

describe('read_only', () => {
  const ro = [policy({ fqn: 'policy::/p::ro', realm: 'service::/prod::orders', read_only: true, side_effect_functions: ['app.bump'] })];

  test.each([
    ['insert into t values (1)'],
    ['with d as (delete from t returning *) select * from d'],
    ['select * from t for update'],
    ['set transaction_read_only = off'],
    ['begin read write'],
    ['select nextval(\'s\')'],
    ['select pg_catalog.setval(\'s\', 1)'],
    ['select pg_advisory_lock(1)'],
    ['select app.bump()'],
    ['select bump()'],
    ['do $$ begin delete from t; end $$'],
  ])('%s is denied', (sql) => {
    expect(decide(ro, sql)).toMatchObject({ code: '42501', rule: 'read_only', policy: 'policy::/p::ro' });
  });

  test.each([['select * from t'], ['begin'], ['set transaction_read_only = on'], ['select pg_read_file(\'x\')'], ['show all']])(
    '%s is allowed',
    (sql) => {
      expect(decide(ro, sql)).toBeUndefined();
    },
  );
});

describe('functions and tables', () => {
  const rules = [
    policy({
      fqn: 'policy::/p::f',
      realm: '::/',
      deny: { functions: ['pg_read_file', 'public.danger', 'DBLink'], tables: ['secrets.*', 'audit.log', 'Payroll'] },
    }),
  ];

  test.each([
    ['select pg_read_file(\'/etc/passwd\')', 'deny.functions'],
    ['select pg_catalog.pg_read_file(\'/etc/passwd\')', 'deny.functions'],
    ['select * from t where a in (select length(pg_read_file(\'x\')))', 'deny.functions'],
    ['select danger()', 'deny.functions'],
    ['select public.danger()', 'deny.functions'],
    ['select * from dblink(\'c\', \'q\') as x(a int)', 'deny.functions'],
    ['select * from secrets.keys', 'deny.tables'],
    ['select * from t join "SECRETS".keys k on true', 'deny.tables'],
    ['select * from audit.log', 'deny.tables'],
    ['select * from log', 'deny.tables'],
    ['select * from hr.payroll', 'deny.tables'],
    ['select * from payroll', 'deny.tables'],
    ['with x as (select * from secrets.keys) select * from x', 'deny.tables'],
  ])('%s -> %s', (sql, rule) => {
    expect(decide(rules, sql)).toMatchObject({ rule, policy: 'policy::/p::f' });
  });

  test.each([['select * from other.danger'], ['select other.danger()'], ['select * from public.keys'], ['select * from audit.other']])('%s passes', (sql) => {
    expect(decide(rules, sql)).toBeUndefined();
  });
});

describe('limits and compiled rules', () => {
  test('limits combine to the strictest, naming the policy that set each', () => {
    const a = policy({ fqn: 'policy::/p::a', realm: '::/', limits: { max_rows: 100, statement_timeout: '5s', rate: '10/s', max_sessions: 3 } });
    const b = policy({ fqn: 'policy::/p::b', realm: 'binding::/prod', limits: { max_rows: 50, statement_timeout: '10s', rate: '600/m', binding_rate: 20 } });
    const r = compileRules([a, b], SUBJECT);
    expect(r.maxRows).toEqual({ value: 50, policy: 'policy::/p::b' });
    expect(r.statementTimeout).toEqual({ value: 5000, policy: 'policy::/p::a' });
    expect(r.rate).toEqual({ value: 10, policy: 'policy::/p::a' });
    expect(r.bindingRate).toEqual({ value: 20, policy: 'policy::/p::b' });
    expect(r.maxSessions).toEqual({ value: 3, policy: 'policy::/p::a' });
    expect(r.judges).toBe(true);
  });

  test('no applicable policy: nothing to judge', () => {
    expect(compileRules([], SUBJECT).judges).toBe(false);
    const onlySessions = compileRules([policy({ fqn: 'policy::/p::s', realm: '::/', limits: { max_sessions: 2 } })], SUBJECT);
    expect(onlySessions.judges).toBe(false);
    expect(onlySessions.maxSessions?.value).toBe(2);
  });

  test('hooks and notifications are indexed by class, "all" meaning every class', () => {
    const r = compileRules(
      [
        policy({
          fqn: 'policy::/p::h',
          realm: '::/',
          hooks: [{ classes: ['delete'], url: 'http://127.0.0.1:1/hook', timeout: '200ms', on_error: 'deny' }],
          notifications: [{ classes: ['all'], url: 'http://127.0.0.1:1/n' }],
        }),
      ],
      SUBJECT,
    );
    expect(r.hooks.get('delete')).toEqual([{ url: 'http://127.0.0.1:1/hook', timeoutMs: 200, onError: 'deny', policy: 'policy::/p::h' }]);
    expect(r.hooks.get('select')).toBeUndefined();
    expect(r.notifications.get('select')).toHaveLength(1);
    expect(r.notifications.get('unknown')).toHaveLength(1);
  });

  test('a PolicySet compiles once per generation and subject, and recompiles after an update', () => {
    const set = new PolicySet([policy({ fqn: 'policy::/p::a', realm: '::/', deny: { classes: ['ddl'] } })]);
    const first = set.rulesFor(SUBJECT);
    expect(set.rulesFor({ ...SUBJECT })).toBe(first);
    const generation = set.generation;
    set.update([policy({ fqn: 'policy::/p::a', realm: '::/', deny: { classes: ['select'] } })]);
    expect(set.generation).toBe(generation + 1);
    const second = set.rulesFor(SUBJECT);
    expect(second).not.toBe(first);
    expect(decideStatements(second, classifySql('select 1').statements)).toMatchObject({ rule: 'deny.classes' });
  });
});

describe('replication', () => {
  const decideReplication = (policies: PolicyDocument[], text: string) =>
    decideStatements(compileRules(policies, SUBJECT), classifyForSession(text, 'logical').statements);

  test('no connection of a kind is served unless an applicable policy grants it; the refusal names the permission', () => {
    expect(replicationRefusal(compileRules([], SUBJECT), 'logical', SUBJECT.binding)).toEqual({
      code: '42501',
      message: `permission denied by sempipe: logical replication connections to binding ${SUBJECT.binding} need a policy with allow.replication: [logical] (rule allow.replication)`,
    });
    const grants = [
      policy({ fqn: 'policy::/p::cdc', realm: 'binding::/prod', allow: { replication: ['logical'] } }),
      policy({ fqn: 'policy::/p::other', realm: 'binding::/staging', allow: { replication: ['physical'] } }),
    ];
    const rules = compileRules(grants, SUBJECT);
    expect(replicationRefusal(rules, 'logical', SUBJECT.binding)).toBeUndefined();
    expect(replicationRefusal(rules, 'physical', SUBJECT.binding)?.message).toContain('allow.replication: [physical]');
    expect([...rules.replication]).toEqual([['logical', 'policy::/p::cdc']]);
  });

  test('deny.replication_commands refuses a command by keyword; other commands and SQL pass', () => {
    const rules = [policy({ fqn: 'policy::/p::cdc', realm: '::/', allow: { replication: ['logical'] }, deny: { replication_commands: ['DROP_REPLICATION_SLOT'] } })];
    expect(decideReplication(rules, 'DROP_REPLICATION_SLOT "s" WAIT')).toMatchObject({
      code: '42501',
      rule: 'deny.replication_commands',
      policy: 'policy::/p::cdc',
      message: 'permission denied by sempipe policy policy::/p::cdc: replication command DROP_REPLICATION_SLOT is denied (rule deny.replication_commands)',
    });
    expect(compileRules(rules, SUBJECT).judges).toBe(true);
    expect(decideReplication(rules, 'CREATE_REPLICATION_SLOT "s" LOGICAL "pgoutput"')).toBeUndefined();
    expect(decideReplication(rules, 'select 1')).toBeUndefined();
  });

  test('class replication follows the class rules: an allow list must name it, deny.classes and read_only apply', () => {
    const allowList = [policy({ fqn: 'policy::/p::list', realm: '::/', allow: { classes: ['select'], replication: ['logical'] } })];
    expect(decideReplication(allowList, 'IDENTIFY_SYSTEM')).toMatchObject({ rule: 'allow.classes' });
    const named = [policy({ fqn: 'policy::/p::list', realm: '::/', allow: { classes: ['select', 'replication'] } })];
    expect(decideReplication(named, 'IDENTIFY_SYSTEM')).toBeUndefined();
    const denied = [policy({ fqn: 'policy::/p::no', realm: '::/', deny: { classes: ['replication'] } })];
    expect(decideReplication(denied, 'START_REPLICATION SLOT "s" LOGICAL 0/0')).toMatchObject({ rule: 'deny.classes' });
    const readOnly = [policy({ fqn: 'policy::/p::ro', realm: '::/', read_only: true })];
    expect(decideReplication(readOnly, 'CREATE_REPLICATION_SLOT "s" LOGICAL "pgoutput"')).toMatchObject({ rule: 'read_only' });
    expect(decideReplication(readOnly, 'START_REPLICATION SLOT "s" LOGICAL 0/0')).toBeUndefined();
  });
});
