// The policy document: its YAML/JSON keys (the public interface shared by the config file and the
// control API), their validation with zod, and the normalized `PolicyDocument` the engine reads
// (camelCase, durations in milliseconds, rates per second). Checks across documents (duplicate
// FQNs) belong to whoever holds a set of them (config.ts, the state store).
// The rate parser ("200/s") is hand-written: it is one regular expression.
import { z } from 'zod';
import { FqnError, parseFqn, parseRealm } from '../fqn.js';
import { parseDuration } from '../units.js';
import { REPLICATION_COMMANDS, type ReplicationKind } from '../../protocols/postgres/replication-commands.js';

/** Statement classes a policy may name (protocol-neutral; PostgreSQL's classifier emits them). */
export const STATEMENT_CLASSES = [
  'select', 'insert', 'update', 'delete', 'merge', 'ddl', 'dcl', 'copy_in', 'copy_out',
  'transaction', 'set', 'call', 'utility', 'replication', 'unknown',
] as const;

/** Kinds of replication connection a policy may allow (`replication=true` is physical, `database` logical). */
export const REPLICATION_KINDS = ['physical', 'logical'] as const satisfies readonly ReplicationKind[];

export type PolicyReplicationKind = (typeof REPLICATION_KINDS)[number];

export type PolicyStatementClass = (typeof STATEMENT_CLASSES)[number];

/** Hooks and notifications may also name `all`. */
export type HookClass = PolicyStatementClass | 'all';

/**
 * Functions counted as writes under `read_only: true` in addition to a policy's own
 * `side_effect_functions`: they change data, server state or other sessions although a SELECT
 * calls them. Functions that only read (pg_read_file, dblink) are not here; deny them by name.
 */
export const DEFAULT_SIDE_EFFECT_FUNCTIONS: readonly string[] = [
  'nextval', 'setval',
  'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock', 'pg_try_advisory_xact_lock_shared',
  'lo_import', 'lo_export', 'lo_unlink', 'lo_create', 'lo_creat', 'lo_from_bytea', 'lo_put', 'lowrite', 'lo_truncate',
  'pg_terminate_backend', 'pg_cancel_backend', 'set_config', 'dblink_exec', 'pg_notify',
  'pg_reload_conf', 'pg_rotate_logfile', 'pg_switch_wal', 'pg_create_restore_point', 'pg_promote',
  'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot', 'pg_drop_replication_slot',
  'pg_stat_reset', 'pg_stat_reset_shared', 'pg_stat_reset_single_table_counters', 'pg_stat_reset_single_function_counters',
  'pg_file_write', 'pg_file_rename', 'pg_file_unlink',
];

export interface PolicyHook {
  classes: HookClass[];
  url: string;
  timeoutMs: number;
  /** deny = fail closed, allow = fail open, when the hook times out, errs or answers non-2xx. */
  onError: 'deny' | 'allow';
}

export interface PolicyNotification {
  classes: HookClass[];
  url: string;
}

export interface PolicyLimits {
  maxRows?: number;
  statementTimeoutMs?: number;
  /** Statements per second per session. */
  rate?: number;
  /** Statements per second per binding (each of N worker processes enforces rate/N). */
  bindingRate?: number;
  maxSessions?: number;
}

export interface PolicyDocument {
  fqn: string;
  realm: string;
  /**
   * `classes`: only these classes (absent: no restriction by class). `replication`: the kinds of
   * replication connection this policy grants (none is granted unless some policy lists it).
   * `methods`, `paths` (HTTP): only these methods and paths matching one of these patterns; an absent
   * list does not restrict.
   */
  allow?: { classes?: PolicyStatementClass[]; replication?: ReplicationKind[]; methods?: string[]; paths?: string[] };
  /**
   * `replicationCommands`: replication commands refused by keyword (absent: none). methods and paths
   * (HTTP) deny independently: a denied method anywhere, any method on a denied path.
   */
  deny: { classes: PolicyStatementClass[]; functions: string[]; tables: string[]; methods: string[]; paths: string[]; replicationCommands?: string[] };
  readOnly: boolean;
  /** The policy's own side-effect functions (DEFAULT_SIDE_EFFECT_FUNCTIONS always count too). */
  sideEffectFunctions: string[];
  limits: PolicyLimits;
  hooks: PolicyHook[];
  notifications: PolicyNotification[];
}

/** Node's timers fire at once for delays above 2^31-1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const RATE = /^(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)$/;
const RATE_UNITS_S: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600 };
/** Function or relation name as written in a policy: `name`, `schema.name`; tables also `schema.*`. */
const FUNCTION_NAME = /^[^\s.*]+(\.[^\s.*]+)?$/;
const TABLE_PATTERN = /^[^\s.*]+(\.([^\s.*]+|\*))?$/;
/** An HTTP method (RFC 9110 token). */
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function fail(ctx: { addIssue: (issue: { code: 'custom'; message: string }) => void }, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
}

function scalar(expected: string) {
  return z.custom<string | number>((v) => typeof v === 'string' || typeof v === 'number', { error: `expected ${expected}` });
}

const policyFqn = z.string().transform((v, ctx) => {
  try {
    return parseFqn(v, 'policy').text;
  } catch (err) {
    if (err instanceof FqnError) return fail(ctx, err.message);
    throw err;
  }
});

const realm = z.string().transform((v, ctx) => {
  try {
    return parseRealm(v).text;
  } catch (err) {
    if (err instanceof FqnError) return fail(ctx, err.message);
    throw err;
  }
});

function duration(minMs: number) {
  return scalar('a duration such as "500ms", "5s" or a number of seconds').transform((v, ctx) => {
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch (err) {
      return fail(ctx, (err as Error).message);
    }
    if (ms < minMs) return fail(ctx, `must be at least ${minMs}ms`);
    if (ms > MAX_TIMER_MS) return fail(ctx, `must be at most ${MAX_TIMER_MS}ms (about 24.8 days)`);
    return ms;
  });
}

const positiveInteger = scalar('a whole number of at least 1').transform((v, ctx) => {
  const n = typeof v === 'number' ? v : /^\d+$/.test(v.trim()) ? Number(v) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 1 ? n : fail(ctx, `expected a whole number of at least 1, got ${JSON.stringify(v)}`);
});

/** "200/s", "6000/m", "10/h" or a number (per second), as statements per second. */
export function parseRate(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v <= 0) throw new Error(`invalid rate ${v}: expected a positive number per second`);
    return v;
  }
  const m = RATE.exec(v.trim());
  if (m === null) throw new Error(`invalid rate "${v}": expected a count per unit such as "200/s", "6000/m" or "10/h"`);
  const perSecond = Number(m[1]) / RATE_UNITS_S[m[2]!]!;
  if (perSecond <= 0) throw new Error(`invalid rate "${v}": must be more than 0`);
  return perSecond;
}

const rate = scalar('a rate such as "200/s", "6000/m" or a number per second').transform((v, ctx) => {
  try {
    return parseRate(v);
  } catch (err) {
    return fail(ctx, (err as Error).message);
  }
});

const statementClass = z.enum(STATEMENT_CLASSES);
const replicationKind = z.enum(REPLICATION_KINDS);
/** Written as the server spells them (upper case); any case is accepted. */
const replicationCommand = z.preprocess((v) => (typeof v === 'string' ? v.toUpperCase() : v), z.enum(REPLICATION_COMMANDS));
const hookClass = z.enum([...STATEMENT_CLASSES, 'all']);

const functionName = z
  .string()
  .refine((v) => FUNCTION_NAME.test(v), { error: 'expected a function name such as "pg_read_file" or "pg_catalog.pg_read_file"' })
  .transform((v) => v.toLowerCase());

const tablePattern = z
  .string()
  .refine((v) => TABLE_PATTERN.test(v), { error: 'expected "table", "schema.table" or "schema.*"' })
  .transform((v) => v.toLowerCase());

const httpMethod = z
  .string()
  .refine((v) => METHOD.test(v), { error: 'expected an HTTP method such as "GET" or "DELETE"' })
  .transform((v) => v.toUpperCase());

/** A path pattern: starts with "/", `*` matches any run of characters (slashes included). */
const pathPattern = z.string().refine((v) => v.startsWith('/') && !/[\s?#]/.test(v), { error: 'expected a path pattern starting with "/" such as "/admin/*" (no spaces, query or fragment)' });

const httpUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  },
  { error: 'expected an http:// or https:// URL' },
);

const hookSchema = z.strictObject({
  classes: z.array(hookClass).min(1, 'name at least one class (or "all")'),
  url: httpUrl,
  timeout: duration(1).default(1000),
  on_error: z.enum(['deny', 'allow']),
});

const notificationSchema = z.strictObject({
  classes: z.array(hookClass).min(1, 'name at least one class (or "all")'),
  url: httpUrl,
});

const limitsSchema = z.strictObject({
  max_rows: positiveInteger.optional(),
  statement_timeout: duration(1).optional(),
  rate: rate.optional(),
  binding_rate: rate.optional(),
  max_sessions: positiveInteger.optional(),
});

/** One policy with the file's key names; parsing yields the normalized PolicyDocument. */
export const policySchema = z
  .strictObject({
    fqn: policyFqn,
    realm,
    allow: z
      .strictObject({
        classes: z.array(statementClass).optional(),
        replication: z.array(replicationKind).optional(),
        methods: z.array(httpMethod).optional(),
        paths: z.array(pathPattern).optional(),
      })
      .refine((a) => a.classes !== undefined || a.replication !== undefined || a.methods !== undefined || a.paths !== undefined, {
        error: 'name "classes", "replication", "methods" or "paths"',
      })
      .optional(),
    deny: z
      .strictObject({
        classes: z.array(statementClass).default([]),
        functions: z.array(functionName).default([]),
        tables: z.array(tablePattern).default([]),
        methods: z.array(httpMethod).default([]),
        paths: z.array(pathPattern).default([]),
        replication_commands: z.array(replicationCommand).optional(),
      })
      .prefault({}),
    read_only: z.boolean().default(false),
    side_effect_functions: z.array(functionName).default([]),
    limits: limitsSchema.prefault({}),
    hooks: z.array(hookSchema).default([]),
    notifications: z.array(notificationSchema).default([]),
  })
  .transform(
    (p): PolicyDocument => ({
      fqn: p.fqn,
      realm: p.realm,
      ...(p.allow !== undefined && {
        allow: {
          ...(p.allow.classes !== undefined && { classes: p.allow.classes }),
          ...(p.allow.replication !== undefined && { replication: p.allow.replication }),
          ...(p.allow.methods !== undefined && { methods: p.allow.methods }),
          ...(p.allow.paths !== undefined && { paths: p.allow.paths }),
        },
      }),
      deny: {
        classes: p.deny.classes,
        functions: p.deny.functions,
        tables: p.deny.tables,
        methods: p.deny.methods,
        paths: p.deny.paths,
        ...(p.deny.replication_commands !== undefined && { replicationCommands: p.deny.replication_commands }),
      },
      readOnly: p.read_only,
      sideEffectFunctions: p.side_effect_functions,
      limits: {
        ...(p.limits.max_rows !== undefined && { maxRows: p.limits.max_rows }),
        ...(p.limits.statement_timeout !== undefined && { statementTimeoutMs: p.limits.statement_timeout }),
        ...(p.limits.rate !== undefined && { rate: p.limits.rate }),
        ...(p.limits.binding_rate !== undefined && { bindingRate: p.limits.binding_rate }),
        ...(p.limits.max_sessions !== undefined && { maxSessions: p.limits.max_sessions }),
      },
      hooks: p.hooks.map((h) => ({ classes: h.classes, url: h.url, timeoutMs: h.timeout, onError: h.on_error })),
      notifications: p.notifications.map((n) => ({ classes: n.classes, url: n.url })),
    }),
  );

export interface PolicyIssue {
  /** Path of the offending field inside the policy, e.g. ["deny", "classes", 1]. */
  path: (string | number)[];
  message: string;
}

export type PolicyValidation = { success: true; policy: PolicyDocument } | { success: false; issues: PolicyIssue[] };

/** Validates one policy object (e.g. an API request body); issues name the field path. */
export function validatePolicy(input: unknown): PolicyValidation {
  const parsed = policySchema.safeParse(input);
  if (parsed.success) return { success: true, policy: parsed.data };
  const issues: PolicyIssue[] = [];
  for (const issue of parsed.error.issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.push({ path: [...path, key], message: `unknown key "${key}"` });
    } else {
      issues.push({ path, message: issue.message });
    }
  }
  return { success: false, issues };
}
