// The policy engine (pure, no I/O): which policies apply to a session's subject (binding, service,
// job), compiled once into lookup tables, and the decision on one classified statement text.
// Combination: every policy whose realm covers the binding, the service or the job applies, widest
// first; a deny anywhere wins; a class must be in every applicable `allow.classes` list; read_only
// from any policy applies; limits combine to the strictest. Names are matched case-insensitively.
// HTTP requests also carry a method and a path: deny.methods and deny.paths refuse independently,
// and a request must match every applicable allow.methods and allow.paths list.
// Replication connections are the exception to "a deny wins": none is served unless some applicable
// policy grants its kind (`allow.replication`), because reading a replication stream reads everything.
import { parseFqn, parseRealm, realmCovers, realmDepth, type Fqn } from '../fqn.js';
import {
  DEFAULT_SIDE_EFFECT_FUNCTIONS,
  STATEMENT_CLASSES,
  type HookClass,
  type PolicyDocument,
  type PolicyReplicationKind,
} from './policy-schema.js';

/** Who a session is, for the purpose of policy. */
export interface PolicySubject {
  binding: string;
  service: string;
  job?: string;
}

/** The facts the engine needs about one statement (PostgreSQL's classifier provides them). */
export interface StatementFacts {
  readonly cls: string;
  readonly writes: boolean;
  readonly tables: readonly string[];
  readonly functions: readonly string[];
  /** HTTP requests: the upper-case method and the normalized path (protocols/http/request-class.ts). */
  readonly method?: string;
  readonly path?: string;
  /** A replication command's keyword (class replication). */
  readonly command?: string;
}

export type PolicyRule =
  | 'allow.classes'
  | 'deny.classes'
  | 'deny.functions'
  | 'deny.tables'
  | 'deny.methods'
  | 'deny.paths'
  | 'allow.methods'
  | 'allow.paths'
  | 'allow.replication'
  | 'deny.replication_commands'
  | 'read_only'
  | 'rate'
  | 'binding_rate'
  | 'max_sessions'
  | 'max_rows'
  | 'statement_timeout'
  | 'hook';

/**
 * A refusal: SQLSTATE, the message the client sees, the rule and the policy that produced it.
 * Shaped as the pipeline's error verdict, so a precompiled denial is answered without allocating.
 */
export interface Denial {
  readonly action: 'error';
  readonly code: string;
  readonly message: string;
  readonly rule: PolicyRule;
  readonly policy: string;
}

/** A limit and the policy that set it (the strictest among the applicable ones). */
export interface BoundLimit {
  readonly value: number;
  readonly policy: string;
}

export interface CompiledHook {
  readonly url: string;
  readonly timeoutMs: number;
  readonly onError: 'deny' | 'allow';
  readonly policy: string;
}

export interface CompiledNotification {
  readonly url: string;
  readonly policy: string;
}

/** The rules of one subject under one policy generation, as lookup tables. */
export interface CompiledRules {
  /** Applicable policies, widest realm first. */
  readonly policies: readonly PolicyDocument[];
  /** False when no statement rule applies at all (the stage then forwards at once). */
  readonly judges: boolean;
  /** Per statement class: the denial of the class itself (allow.classes / deny.classes). */
  readonly classDenials: ReadonlyMap<string, Denial>;
  /** Class refused when the classifier emits a class not in STATEMENT_CLASSES. */
  readonly otherClassDenial: Denial | undefined;
  /** The kinds of replication connection granted, each with the first policy that grants it. */
  readonly replication: ReadonlyMap<PolicyReplicationKind, string>;
  /** Replication command keyword -> its denial (deny.replication_commands). */
  readonly deniedReplicationCommands: ReadonlyMap<string, Denial>;
  readonly readOnly: string | undefined;
  /** Lower-cased function name (full, and last part of qualified entries) -> policy. */
  readonly sideEffects: NameTable;
  readonly deniedFunctions: NameTable;
  readonly deniedTables: TableTable;
  /** Whether any function (denied or side-effect) or table must be looked up at all. */
  readonly checksFunctions: boolean;
  readonly checksTables: boolean;
  readonly maxRows: BoundLimit | undefined;
  readonly statementTimeout: BoundLimit | undefined;
  readonly rate: BoundLimit | undefined;
  readonly bindingRate: BoundLimit | undefined;
  readonly maxSessions: BoundLimit | undefined;
  /** Per statement class: the hooks to call (in policy order). */
  readonly hooks: ReadonlyMap<string, readonly CompiledHook[]>;
  /** Per statement class: where to notify after completion. */
  readonly notifications: ReadonlyMap<string, readonly CompiledNotification[]>;
  readonly hasHooks: boolean;
  readonly hasNotifications: boolean;
  /** HTTP rules; `checksRequests` is false when there are none. */
  readonly requests: RequestRules;
}

interface PathRule {
  readonly pattern: string;
  readonly regex: RegExp;
  readonly policy: string;
}

export interface RequestRules {
  readonly checksRequests: boolean;
  /** Upper-case method -> the policy denying it. */
  readonly deniedMethods: ReadonlyMap<string, string>;
  readonly deniedPaths: readonly PathRule[];
  /** One entry per applicable policy with allow.methods: the request's method must be in each. */
  readonly allowedMethods: ReadonlyArray<{ readonly methods: ReadonlySet<string>; readonly policy: string }>;
  /** One entry per applicable policy with allow.paths: the path must match one pattern of each. */
  readonly allowedPaths: ReadonlyArray<{ readonly rules: readonly PathRule[]; readonly policy: string }>;
}

/** `*` matches any run of characters (slashes included); everything else literally; anchored. */
function pathRule(pattern: string, policy: string): PathRule {
  const source = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return { pattern, regex: new RegExp(`^${source}$`), policy };
}

function compileRequestRules(applicable: readonly PolicyDocument[]): RequestRules {
  const deniedMethods = new Map<string, string>();
  const deniedPaths: PathRule[] = [];
  const allowedMethods: Array<{ methods: ReadonlySet<string>; policy: string }> = [];
  const allowedPaths: Array<{ rules: readonly PathRule[]; policy: string }> = [];
  for (const p of applicable) {
    for (const m of p.deny.methods) if (!deniedMethods.has(m)) deniedMethods.set(m, p.fqn);
    for (const path of p.deny.paths) deniedPaths.push(pathRule(path, p.fqn));
    if (p.allow?.methods !== undefined) allowedMethods.push({ methods: new Set(p.allow.methods), policy: p.fqn });
    if (p.allow?.paths !== undefined) allowedPaths.push({ rules: p.allow.paths.map((path) => pathRule(path, p.fqn)), policy: p.fqn });
  }
  const checksRequests = deniedMethods.size > 0 || deniedPaths.length > 0 || allowedMethods.length > 0 || allowedPaths.length > 0;
  return { checksRequests, deniedMethods, deniedPaths, allowedMethods, allowedPaths };
}

function requestDenial(rules: RequestRules, method: string, path: string): Denial | undefined {
  const deniedBy = rules.deniedMethods.get(method);
  if (deniedBy !== undefined) return createDenial(deniedBy, `method ${method} is denied`, 'deny.methods');
  for (const r of rules.deniedPaths) {
    if (r.regex.test(path)) return createDenial(r.policy, `path ${path} is denied (pattern ${r.pattern})`, 'deny.paths');
  }
  for (const a of rules.allowedMethods) {
    if (!a.methods.has(method)) return createDenial(a.policy, `method ${method} is not allowed`, 'allow.methods');
  }
  for (const a of rules.allowedPaths) {
    if (!a.rules.some((r) => r.regex.test(path))) return createDenial(a.policy, `path ${path} is not allowed`, 'allow.paths');
  }
  return undefined;
}

/**
 * Names by which a function or table is matched: a qualified entry `s.n` matches `s.n` and also an
 * unqualified reference `n` (which the search path may resolve to `s.n`); an unqualified entry `n`
 * matches `n` in any schema.
 */
interface NameTable {
  /** Qualified entries by full name. */
  readonly qualified: Map<string, string>;
  /** Unqualified entries by name. */
  readonly anySchema: Map<string, string>;
  /** Qualified entries by their last part, for unqualified references. */
  readonly byLastPart: Map<string, string>;
}

interface TableTable extends NameTable {
  /** `schema.*` entries by schema. */
  readonly schemas: Map<string, string>;
}

const INSUFFICIENT_PRIVILEGE = '42501';
const KNOWN_CLASSES: ReadonlySet<string> = new Set(STATEMENT_CLASSES);

function emptyNames(): NameTable {
  return { qualified: new Map(), anySchema: new Map(), byLastPart: new Map() };
}

function addName(table: NameTable, name: string, policy: string): void {
  const dot = name.indexOf('.');
  if (dot < 0) {
    if (!table.anySchema.has(name)) table.anySchema.set(name, policy);
    return;
  }
  if (!table.qualified.has(name)) table.qualified.set(name, policy);
  const last = name.substring(dot + 1);
  if (!table.byLastPart.has(last)) table.byLastPart.set(last, policy);
}

function isEmpty(table: NameTable): boolean {
  return table.qualified.size === 0 && table.anySchema.size === 0;
}

/** The policy FQN that denies `name` ("schema.name" or "name", lower-cased here), or undefined. */
function lookupName(table: NameTable, name: string): string | undefined {
  const lower = name.toLowerCase();
  const dot = lower.lastIndexOf('.');
  if (dot < 0) return table.anySchema.get(lower) ?? table.byLastPart.get(lower);
  return table.qualified.get(lower) ?? table.anySchema.get(lower.substring(dot + 1));
}

function lookupTable(table: TableTable, name: string): string | undefined {
  const found = lookupName(table, name);
  if (found !== undefined || table.schemas.size === 0) return found;
  const dot = name.lastIndexOf('.');
  return dot < 0 ? undefined : table.schemas.get(name.substring(0, dot).toLowerCase());
}

export function denialMessage(policy: string, what: string, rule: PolicyRule): string {
  return `permission denied by sempipe policy ${policy}: ${what} (rule ${rule})`;
}

export function createDenial(policy: string, what: string, rule: PolicyRule): Denial {
  return { action: 'error', code: INSUFFICIENT_PRIVILEGE, message: denialMessage(policy, what, rule), rule, policy };
}

/** Policies whose realm covers the subject's binding, service or job, widest first. */
export function applicablePolicies(policies: readonly PolicyDocument[], subject: PolicySubject): PolicyDocument[] {
  const targets: Fqn[] = [parseFqn(subject.binding, 'binding'), parseFqn(subject.service, 'service')];
  if (subject.job !== undefined) targets.push(parseFqn(subject.job, 'job'));
  const found: Array<{ policy: PolicyDocument; depth: number }> = [];
  for (const policy of policies) {
    const realm = parseRealm(policy.realm);
    if (targets.some((t) => realmCovers(realm, t))) found.push({ policy, depth: realmDepth(realm) });
  }
  found.sort((a, b) => a.depth - b.depth || (a.policy.fqn < b.policy.fqn ? -1 : a.policy.fqn > b.policy.fqn ? 1 : 0));
  return found.map((f) => f.policy);
}

function stricter(current: BoundLimit | undefined, value: number | undefined, policy: string): BoundLimit | undefined {
  if (value === undefined) return current;
  return current === undefined || value < current.value ? { value, policy } : current;
}

function classesOf(list: readonly HookClass[]): readonly string[] {
  return list.includes('all') ? STATEMENT_CLASSES : list;
}

/** Compiles the rules that apply to `subject` into lookup tables. */
export function compileRules(policies: readonly PolicyDocument[], subject: PolicySubject): CompiledRules {
  const applicable = applicablePolicies(policies, subject);
  const classDenials = new Map<string, Denial>();
  let otherClassDenial: Denial | undefined;
  // Explicit denials first, so a class both denied and missing from an allow list names deny.classes.
  for (const p of applicable) {
    for (const cls of p.deny.classes) {
      if (!classDenials.has(cls)) classDenials.set(cls, createDenial(p.fqn, `statement class "${cls}" is denied`, 'deny.classes'));
    }
  }
  const replication = new Map<PolicyReplicationKind, string>();
  const deniedReplicationCommands = new Map<string, Denial>();
  for (const p of applicable) {
    for (const kind of p.allow?.replication ?? []) if (!replication.has(kind)) replication.set(kind, p.fqn);
    for (const command of p.deny.replicationCommands ?? []) {
      if (!deniedReplicationCommands.has(command)) {
        deniedReplicationCommands.set(command, createDenial(p.fqn, `replication command ${command} is denied`, 'deny.replication_commands'));
      }
    }
  }
  for (const p of applicable) {
    if (p.allow?.classes === undefined) continue;
    const allowed = new Set<string>(p.allow.classes);
    for (const cls of STATEMENT_CLASSES) {
      if (!allowed.has(cls) && !classDenials.has(cls)) {
        classDenials.set(cls, createDenial(p.fqn, `statement class "${cls}" is not allowed`, 'allow.classes'));
      }
    }
    otherClassDenial ??= createDenial(p.fqn, 'statement class is not allowed', 'allow.classes');
  }

  let readOnly: string | undefined;
  const sideEffects = emptyNames();
  const deniedFunctions = emptyNames();
  const deniedTables: TableTable = { ...emptyNames(), schemas: new Map() };
  let maxRows: BoundLimit | undefined;
  let statementTimeout: BoundLimit | undefined;
  let rate: BoundLimit | undefined;
  let bindingRate: BoundLimit | undefined;
  let maxSessions: BoundLimit | undefined;
  const hooks = new Map<string, CompiledHook[]>();
  const notifications = new Map<string, CompiledNotification[]>();
  for (const p of applicable) {
    if (p.readOnly && readOnly === undefined) {
      readOnly = p.fqn;
      for (const f of DEFAULT_SIDE_EFFECT_FUNCTIONS) addName(sideEffects, f, p.fqn);
    }
    for (const f of p.deny.functions) addName(deniedFunctions, f, p.fqn);
    for (const t of p.deny.tables) {
      if (t.endsWith('.*')) {
        const schema = t.substring(0, t.length - 2);
        if (!deniedTables.schemas.has(schema)) deniedTables.schemas.set(schema, p.fqn);
      } else {
        addName(deniedTables, t, p.fqn);
      }
    }
    maxRows = stricter(maxRows, p.limits.maxRows, p.fqn);
    statementTimeout = stricter(statementTimeout, p.limits.statementTimeoutMs, p.fqn);
    rate = stricter(rate, p.limits.rate, p.fqn);
    bindingRate = stricter(bindingRate, p.limits.bindingRate, p.fqn);
    maxSessions = stricter(maxSessions, p.limits.maxSessions, p.fqn);
    for (const h of p.hooks) {
      const hook: CompiledHook = { url: h.url, timeoutMs: h.timeoutMs, onError: h.onError, policy: p.fqn };
      for (const cls of classesOf(h.classes)) hooks.set(cls, [...(hooks.get(cls) ?? []), hook]);
    }
    for (const n of p.notifications) {
      const note: CompiledNotification = { url: n.url, policy: p.fqn };
      for (const cls of classesOf(n.classes)) notifications.set(cls, [...(notifications.get(cls) ?? []), note]);
    }
  }
  // A policy's own side-effect functions count once any applicable policy is read-only.
  if (readOnly !== undefined) {
    for (const p of applicable) for (const f of p.sideEffectFunctions) addName(sideEffects, f, readOnly);
  }
  const requests = compileRequestRules(applicable);
  const judges =
    requests.checksRequests ||
    classDenials.size > 0 ||
    readOnly !== undefined ||
    !isEmpty(deniedFunctions) ||
    !isEmpty(deniedTables) ||
    deniedTables.schemas.size > 0 ||
    deniedReplicationCommands.size > 0 ||
    maxRows !== undefined ||
    statementTimeout !== undefined ||
    rate !== undefined ||
    bindingRate !== undefined ||
    hooks.size > 0;
  return {
    policies: applicable,
    judges,
    checksFunctions: !isEmpty(deniedFunctions) || readOnly !== undefined,
    checksTables: !isEmpty(deniedTables) || deniedTables.schemas.size > 0,
    classDenials,
    otherClassDenial,
    replication,
    deniedReplicationCommands,
    readOnly,
    sideEffects,
    deniedFunctions,
    deniedTables,
    maxRows,
    statementTimeout,
    rate,
    bindingRate,
    maxSessions,
    hooks,
    notifications,
    hasHooks: hooks.size > 0,
    hasNotifications: notifications.size > 0,
    requests,
  };
}

/** The denial of one statement, or undefined when the statement rules let it through. */
export function decideStatement(rules: CompiledRules, s: StatementFacts): Denial | undefined {
  if (s.method !== undefined && rules.requests.checksRequests) {
    const denial = requestDenial(rules.requests, s.method, s.path ?? '/');
    if (denial !== undefined) return denial;
  }
  const classDenial = rules.classDenials.get(s.cls);
  if (classDenial !== undefined) return classDenial;
  if (rules.otherClassDenial !== undefined && !KNOWN_CLASSES.has(s.cls)) return rules.otherClassDenial;
  if (s.command !== undefined && rules.deniedReplicationCommands.size > 0) {
    const commandDenial = rules.deniedReplicationCommands.get(s.command);
    if (commandDenial !== undefined) return commandDenial;
  }
  if (rules.readOnly !== undefined && s.writes) {
    return createDenial(rules.readOnly, `the statement (class "${s.cls}") writes and the session is read-only`, 'read_only');
  }
  return (rules.checksFunctions ? functionDenial(rules, s) : undefined) ?? tableDenial(rules, s);
}

function functionDenial(rules: CompiledRules, s: StatementFacts): Denial | undefined {
  if (rules.readOnly !== undefined) {
    for (const f of s.functions) {
      if (lookupName(rules.sideEffects, f) !== undefined) {
        return createDenial(rules.readOnly, `function "${f}" has side effects and the session is read-only`, 'read_only');
      }
    }
  }
  for (const f of s.functions) {
    const policy = lookupName(rules.deniedFunctions, f);
    if (policy !== undefined) return createDenial(policy, `function "${f}" is denied`, 'deny.functions');
  }
  return undefined;
}

function tableDenial(rules: CompiledRules, s: StatementFacts): Denial | undefined {
  if (!rules.checksTables) return undefined;
  for (const t of s.tables) {
    const policy = lookupTable(rules.deniedTables, t);
    if (policy !== undefined) return createDenial(policy, `table "${t}" is denied`, 'deny.tables');
  }
  return undefined;
}

/**
 * Why a replication connection of `kind` on `binding` is refused (42501, naming the permission it
 * lacks), or undefined when an applicable policy grants it.
 */
export function replicationRefusal(rules: CompiledRules, kind: PolicyReplicationKind, binding: string): { code: string; message: string } | undefined {
  if (rules.replication.has(kind)) return undefined;
  return {
    code: INSUFFICIENT_PRIVILEGE,
    message: `permission denied by sempipe: ${kind} replication connections to binding ${binding} need a policy with allow.replication: [${kind}] (rule allow.replication)`,
  };
}

/** Every statement of a text must pass; the first denial is the text's. */
export function decideStatements(rules: CompiledRules, statements: readonly StatementFacts[]): Denial | undefined {
  for (let i = 0; i < statements.length; i++) {
    const d = decideStatement(rules, statements[i]!);
    if (d !== undefined) return d;
  }
  return undefined;
}
