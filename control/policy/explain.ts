// The dry run behind the control API's `POST /v1/policies/explain`: which policies apply to a
// subject, in order, what rules they add up to, and the verdict the engine would give one statement
// text (rate limits and hooks are named but not exercised: they depend on traffic and on a server).
// With `replication`, the text is judged as sent on a replication connection of that kind, which
// must first be granted.
import { compileRules, decideStatements, replicationRefusal, type BoundLimit, type PolicySubject } from './engine.js';
import type { PolicyDocument, PolicyReplicationKind } from './policy-schema.js';
import type { Classification } from '../../protocols/postgres/sql-classify.js';

export interface ExplainedLimit {
  value: number;
  policy: string;
}

export interface Explanation {
  subject: PolicySubject;
  /** Applicable policies, widest realm first. */
  policies: Array<{ fqn: string; realm: string }>;
  rules: {
    deniedClasses: Array<{ class: string; rule: 'allow.classes' | 'deny.classes'; policy: string }>;
    readOnly?: string;
    deniedFunctions: string[];
    deniedTables: string[];
    /** The kinds of replication connection granted, and by which policy. */
    replication: Array<{ kind: PolicyReplicationKind; policy: string }>;
    deniedReplicationCommands: Array<{ command: string; policy: string }>;
    limits: { maxRows?: ExplainedLimit; statementTimeoutMs?: ExplainedLimit; rate?: ExplainedLimit; bindingRate?: ExplainedLimit; maxSessions?: ExplainedLimit };
    hooks: Array<{ classes: string[]; url: string; timeoutMs: number; onError: 'deny' | 'allow'; policy: string }>;
    notifications: Array<{ classes: string[]; url: string; policy: string }>;
  };
  statements: Array<{ class: string; writes: boolean; tables: string[]; functions: string[]; command?: string }>;
  /** Why the text could not be parsed, when it could not (it is then classified `unknown`). */
  parseError?: string;
  verdict:
    | { action: 'allow'; hooks: string[] }
    /** `policy` is absent when no policy grants a replication connection (rule allow.replication). */
    | { action: 'deny'; code: string; message: string; rule: string; policy?: string };
}

function limit(l: BoundLimit | undefined): ExplainedLimit | undefined {
  return l === undefined ? undefined : { value: l.value, policy: l.policy };
}

export function explain(
  policies: readonly PolicyDocument[],
  subject: PolicySubject,
  sql: string,
  classify: (text: string) => Classification,
  replication?: PolicyReplicationKind,
): Explanation {
  const rules = compileRules(policies, subject);
  const classification = classify(sql);
  const refusal = replication === undefined ? undefined : replicationRefusal(rules, replication, subject.binding);
  const denial = decideStatements(rules, classification.statements);
  const hooksToCall = new Set<string>();
  for (const s of classification.statements) for (const h of rules.hooks.get(s.cls) ?? []) hooksToCall.add(h.url);
  const limits: Explanation['rules']['limits'] = {};
  for (const [key, value] of [
    ['maxRows', rules.maxRows],
    ['statementTimeoutMs', rules.statementTimeout],
    ['rate', rules.rate],
    ['bindingRate', rules.bindingRate],
    ['maxSessions', rules.maxSessions],
  ] as const) {
    const l = limit(value);
    if (l !== undefined) limits[key] = l;
  }
  return {
    subject,
    policies: rules.policies.map((p) => ({ fqn: p.fqn, realm: p.realm })),
    rules: {
      deniedClasses: [...rules.classDenials].map(([cls, d]) => ({ class: cls, rule: d.rule as 'allow.classes' | 'deny.classes', policy: d.policy })),
      ...(rules.readOnly !== undefined && { readOnly: rules.readOnly }),
      deniedFunctions: rules.policies.flatMap((p) => p.deny.functions),
      deniedTables: rules.policies.flatMap((p) => p.deny.tables),
      replication: [...rules.replication].map(([kind, policy]) => ({ kind, policy })),
      deniedReplicationCommands: [...rules.deniedReplicationCommands].map(([command, d]) => ({ command, policy: d.policy })),
      limits,
      hooks: rules.policies.flatMap((p) => p.hooks.map((h) => ({ ...h, policy: p.fqn }))),
      notifications: rules.policies.flatMap((p) => p.notifications.map((n) => ({ ...n, policy: p.fqn }))),
    },
    statements: classification.statements.map((s) => ({
      class: s.cls,
      writes: s.writes,
      tables: [...s.tables],
      functions: [...s.functions],
      ...(s.command !== undefined && { command: s.command }),
    })),
    ...(classification.error !== undefined && { parseError: classification.error }),
    verdict:
      refusal !== undefined
        ? { action: 'deny', code: refusal.code, message: refusal.message, rule: 'allow.replication' }
        : denial === undefined
          ? { action: 'allow', hooks: [...hooksToCall] }
          : { action: 'deny', code: denial.code, message: denial.message, rule: denial.rule, policy: denial.policy },
  };
}
