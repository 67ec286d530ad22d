// Pipeline stage that enforces policies in real time: each statement is classified (cached) and
// decided against the CURRENT policy set, so a config push applies to the next statement of open
// sessions; rate limits per session and per binding; max_sessions per binding at admission through
// the injected SessionSlots; max_rows and statement_timeout as a tracker the relay enforces; hooks
// (the only asynchronous path) and notifications over HTTP; denials counted per binding and rule.
// A replication session is admitted only when a policy grants its kind (allow.replication); its
// commands are judged like statements, without max_rows and statement_timeout (a stream has no end).
// With no applicable policy a statement costs a generation check and one flag test.
import { createDenial, decideStatements, replicationRefusal, type CompiledRules, type Denial, type PolicySubject, type StatementFacts } from '../policy/engine.js';
import { callHook, Notifier, type NotificationBody } from '../policy/hooks.js';
import type { PolicySet } from '../policy/policy-set.js';
import { TokenBucket } from '../policy/rate-limiter.js';
import type { Metrics } from '../metrics.js';
import type { SessionSlots } from '../../proxy/session-slots.js';
import { FORWARD, type CompletionEvent, type SessionInfo, type Stage, type StageFactory, type StatementEvent, type StatementTracker, type Verdict } from '../../proxy/stage.js';

/** The statements of one text as the session's protocol classifies them. */
export interface Classification {
  readonly statements: readonly StatementFacts[];
}

export interface PolicyStageOptions {
  /** The process's current policies; swapped by the worker on every config push. */
  policies: PolicySet;
  /** Session counting for max_sessions (cross-worker in a multi-process sempipe). */
  slots: SessionSlots;
  /** Classifies a statement text of a session in its protocol (PostgreSQL: classifySql, or replication commands on a replication session). */
  classify: (text: string, session: SessionInfo) => Classification;
  metrics?: Metrics;
  /**
   * Worker processes sharing each binding's traffic: each enforces binding_rate / workerCount
   * (default 1), which assumes the sessions of a binding spread evenly over the workers.
   */
  workerCount?: number;
  notifier?: Notifier;
}

/** What a session derives from one compiled rule set; rebuilt when the policy generation changes. */
interface SessionPlan {
  readonly rules: CompiledRules;
  /** FORWARD, or a forward carrying the limits the relay enforces. */
  readonly forward: Verdict;
}

const LIMIT_CODES = { max_rows: '54000', statement_timeout: '57014' } as const;

function limitTracker(rules: CompiledRules): StatementTracker | undefined {
  const { maxRows, statementTimeout } = rules;
  if (maxRows === undefined && statementTimeout === undefined) return undefined;
  const messages = {
    max_rows:
      maxRows &&
      { code: LIMIT_CODES.max_rows, rule: 'max_rows', policy: maxRows.policy, message: `statement stopped by sempipe policy ${maxRows.policy}: the result has more than ${maxRows.value} rows (rule max_rows)` },
    statement_timeout:
      statementTimeout &&
      {
        code: LIMIT_CODES.statement_timeout,
        rule: 'statement_timeout',
        policy: statementTimeout.policy,
        message: `statement stopped by sempipe policy ${statementTimeout.policy}: it ran longer than ${statementTimeout.value}ms (rule statement_timeout)`,
      },
  };
  return {
    ...(maxRows !== undefined && { maxRows: maxRows.value }),
    ...(statementTimeout !== undefined && { timeoutMs: statementTimeout.value }),
    limitMessage: (limit) => messages[limit] ?? { code: LIMIT_CODES[limit], rule: limit, message: `statement stopped by ${limit}` },
  };
}

function planOf(rules: CompiledRules): SessionPlan {
  const tracker = limitTracker(rules);
  return { rules, forward: tracker === undefined ? FORWARD : { action: 'forward', tracker } };
}

function ms(ns: bigint): number {
  return Math.round(Number(ns) / 1e3) / 1e3;
}

export function createPolicyStage(opts: PolicyStageOptions): StageFactory {
  const { policies, slots, classify, metrics } = opts;
  const workerCount = Math.max(1, opts.workerCount ?? 1);
  const notifier =
    opts.notifier ?? new Notifier({ onDrop: (binding) => metrics?.policyNotificationsDropped.inc({ binding }) });
  const bindingBuckets = new Map<string, TokenBucket>();
  const denialCounters = new Map<string, { inc(): void }>();
  const plans = new WeakMap<CompiledRules, SessionPlan>();

  function countDenial(binding: string, rule: string): void {
    if (metrics === undefined) return;
    const key = `${binding}\n${rule}`;
    let counter = denialCounters.get(key);
    if (counter === undefined) {
      counter = metrics.policyDenials.labels({ binding, rule });
      denialCounters.set(key, counter);
    }
    counter.inc();
  }

  function planFor(subject: PolicySubject): SessionPlan {
    const rules = policies.rulesFor(subject);
    let plan = plans.get(rules);
    if (plan === undefined) {
      plan = planOf(rules);
      plans.set(rules, plan);
    }
    return plan;
  }

  function bindingBucket(binding: string, perSecond: number, nowMs: number): TokenBucket {
    let bucket = bindingBuckets.get(binding);
    if (bucket === undefined || bucket.ratePerSecond !== perSecond) {
      bucket = new TokenBucket(perSecond, nowMs);
      bindingBuckets.set(binding, bucket);
    }
    return bucket;
  }

  return {
    name: 'policy',
    create(session: SessionInfo): Stage {
      const subject: PolicySubject = { binding: session.binding, service: session.service };
      let generation = -1;
      let plan: SessionPlan | undefined;
      let sessionBucket: TokenBucket | undefined;
      let holdsSlot = false;

      const current = (): SessionPlan => {
        if (generation !== policies.generation || plan === undefined) {
          plan = planFor(subject);
          generation = policies.generation;
        }
        return plan;
      };

      const rateDenial = (rules: CompiledRules, nowMs: number): Denial | undefined => {
        const { rate, bindingRate } = rules;
        if (rate !== undefined) {
          if (sessionBucket === undefined || sessionBucket.ratePerSecond !== rate.value) sessionBucket = new TokenBucket(rate.value, nowMs);
          if (!sessionBucket.take(nowMs)) return createDenial(rate.policy, `more than ${rate.value} statements per second in this session`, 'rate');
        }
        if (bindingRate !== undefined && !bindingBucket(session.binding, bindingRate.value / workerCount, nowMs).take(nowMs)) {
          return createDenial(bindingRate.policy, `more than ${bindingRate.value} statements per second on binding ${session.binding}`, 'binding_rate');
        }
        return undefined;
      };

      const withHooks = (rules: CompiledRules, event: StatementEvent, classification: Classification, forward: Verdict): Promise<Verdict> | undefined => {
        const calls: Promise<Denial | undefined>[] = [];
        const called = new Set<object>();
        for (const s of classification.statements) {
          for (const hook of rules.hooks.get(s.cls) ?? []) {
            if (called.has(hook)) continue;
            called.add(hook);
            calls.push(callHook(hook, { binding: session.binding, service: session.service, user: session.user, class: s.cls, statement: event.text }));
          }
        }
        if (calls.length === 0) return undefined;
        return Promise.all(calls).then((results) => results.find((d) => d !== undefined) ?? forward);
      };

      const notify = (rules: CompiledRules, c: CompletionEvent): void => {
        const targets = rules.notifications.get(c.statementClass);
        if (targets === undefined) return;
        const receivedAt = new Date(Date.now() - Number(process.hrtime.bigint() - c.receivedAt) / 1e6).toISOString();
        const body: NotificationBody = {
          binding: session.binding,
          service: session.service,
          user: session.user,
          class: c.statementClass,
          statement: c.text,
          outcome: c.outcome,
          ...(c.code !== undefined && { sqlstate: c.code }),
          rows: c.rows,
          latencies: { received_at: receivedAt, hook_ms: ms(c.judgedNs), server_ms: ms(c.durationNs - c.judgedNs), total_ms: ms(c.durationNs) },
        };
        for (const target of targets) notifier.send(target, body);
      };

      return {
        admit(): Verdict | Promise<Verdict> {
          if (session.replication !== undefined) {
            const refusal = replicationRefusal(current().rules, session.replication, session.binding);
            if (refusal !== undefined) {
              countDenial(session.binding, 'allow.replication');
              return { action: 'close', ...refusal };
            }
          }
          const max = current().rules.maxSessions;
          if (max === undefined) return FORWARD;
          return slots.acquire(session.binding, max.value).then((ok): Verdict => {
            if (ok) {
              holdsSlot = true;
              return FORWARD;
            }
            countDenial(session.binding, 'max_sessions');
            return {
              action: 'close',
              code: '53300',
              message: `too many sessions for binding ${session.binding}: at most ${max.value} (rule max_sessions of sempipe policy ${max.policy})`,
            };
          });
        },
        judges: () => current().rules.judges,
        onStatement(s, event): Verdict | Promise<Verdict> | undefined {
          const { rules, forward } = current();
          if (!rules.judges) return undefined;
          const classification = classify(event.text, s);
          const denial = decideStatements(rules, classification.statements) ?? rateDenial(rules, Number(event.receivedAt) / 1e6);
          if (denial !== undefined) return denial;
          // A replication command may stream for as long as the session lasts: no row or time limit.
          const verdict = classification.statements[0]?.cls === 'replication' ? FORWARD : forward;
          if (rules.hasHooks) return withHooks(rules, event, classification, verdict) ?? verdict;
          return verdict;
        },
        onComplete(_s, c) {
          if (c.outcome === 'denied' && c.policy !== undefined && c.rule !== undefined) countDenial(session.binding, c.rule);
          const { rules } = current();
          if (rules.hasNotifications) notify(rules, c);
        },
        onEnd() {
          if (!holdsSlot) return;
          holdsSlot = false;
          slots.release(session.binding);
        },
      };
    },
  };
}
