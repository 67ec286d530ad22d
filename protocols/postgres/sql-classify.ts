// Classifies the SQL a client sends (a Query string or the query of a Parse message) with
// PostgreSQL's own parser (libpg-query, WASM): one entry per statement with its class (metrics
// label, policy "deny class"), whether it writes or could write (read-only policies), and every
// table and function it references anywhere in its tree (denied tables/functions).
// Own code, with reasons:
// - The parser instances: libpg-query's parseSync uses one module-wide WASM instance, and a
//   statement nested deeply enough (e.g. `select 1+1+…` with ~10k terms) overflows the stack
//   inside it. The instance then leaks ~8 MB and, after a few dozen such statements, fails every
//   parse with "memory access out of bounds", with no way to replace it. So we create instances
//   with the package's own factory, call its C entry point the way parseSync does, and swap a
//   failed instance for a warm spare.
// - The tree walk and the table of statement classes: no library extracts these facts.
// - The result cache: a repeated statement must cost one Map lookup (lru-cache is not a
//   dependency and reorders on every hit).

import { classificationKey } from './sql-cache-key.js';
import type {
  A_Const,
  CopyStmt,
  DefElem,
  DropStmt,
  ExplainStmt,
  Node as PgNode,
  ParseResult,
  SelectStmt,
  TransactionStmt,
  VariableSetStmt,
} from 'libpg-query';

export type StatementClass =
  | 'select'
  | 'insert'
  | 'update'
  | 'delete'
  | 'merge'
  | 'ddl'
  | 'dcl'
  | 'copy_in'
  | 'copy_out'
  | 'transaction'
  | 'set'
  | 'call'
  | 'utility'
  | 'replication'
  | 'unknown';

/** One statement of a query string. Results are cached and shared, so they are frozen. */
export interface ClassifiedStatement {
  cls: StatementClass;
  /**
   * True when the statement writes or could write: DML, DDL, DCL, COPY FROM, COPY TO a server
   * file or program, SELECT … FOR UPDATE/SHARE, data-modifying CTEs, SELECT INTO, turning
   * transaction_read_only off, BEGIN/SET TRANSACTION READ WRITE, CALL, DO, EXECUTE, LOCK,
   * LOAD, REFRESH MATERIALIZED VIEW, and anything unknown.
   */
  writes: boolean;
  /** Relations referenced anywhere, "schema.name" or "name", as the parser folded them. */
  tables: string[];
  /** Functions called anywhere (FuncCall nodes, CALL), "schema.name" or "name". */
  functions: string[];
  /** For class replication: the command's keyword (replication-commands.ts), e.g. "DROP_REPLICATION_SLOT". */
  command?: string;
}

export interface Classification {
  /** One per statement of the text; none for an empty text or one holding only comments. */
  statements: ClassifiedStatement[];
  /** Why the text could not be classified; `statements` then holds one 'unknown' entry. */
  error?: string;
}

export interface ClassifierOptions {
  /** Most texts kept in the cache (default 10 000). */
  cacheEntries?: number;
  /** Most UTF-16 code units of text kept in the cache, summed over entries (default 8 Mi). */
  cacheChars?: number;
}

type Verdict = { readonly cls: StatementClass; readonly writes: boolean };

const DDL: Verdict = { cls: 'ddl', writes: true };
const DCL: Verdict = { cls: 'dcl', writes: true };
const UTILITY_READ: Verdict = { cls: 'utility', writes: false };
const UTILITY_WRITE: Verdict = { cls: 'utility', writes: true };
const UNKNOWN: Verdict = { cls: 'unknown', writes: true };

// Statements whose class does not depend on their content. Utility statements follow
// PostgreSQL's own read-only rules (ClassifyUtilityCommandAsReadOnly in tcop/utility.c): VACUUM,
// ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LISTEN/NOTIFY are allowed in a read-only transaction.
// LOCK is counted as writing (it blocks writers like FOR UPDATE does), LOAD because it runs native
// code, REFRESH MATERIALIZED VIEW because it rewrites stored data.
const FIXED_CLASSES: ReadonlyMap<string, Verdict> = new Map<string, Verdict>([
  ...[
    'AlterCollationStmt', 'AlterDatabaseRefreshCollStmt', 'AlterDatabaseSetStmt', 'AlterDatabaseStmt',
    'AlterDomainStmt', 'AlterEnumStmt', 'AlterEventTrigStmt', 'AlterExtensionContentsStmt',
    'AlterExtensionStmt', 'AlterFdwStmt', 'AlterForeignServerStmt', 'AlterFunctionStmt',
    'AlterObjectDependsStmt', 'AlterObjectSchemaStmt', 'AlterOpFamilyStmt', 'AlterOperatorStmt',
    'AlterOwnerStmt', 'AlterPolicyStmt', 'AlterPublicationStmt', 'AlterSeqStmt', 'AlterStatsStmt',
    'AlterSubscriptionStmt', 'AlterSystemStmt', 'AlterTSConfigurationStmt', 'AlterTSDictionaryStmt',
    'AlterTableMoveAllStmt', 'AlterTableSpaceOptionsStmt', 'AlterTableStmt', 'AlterTypeStmt',
    'AlterUserMappingStmt', 'CommentStmt', 'CompositeTypeStmt', 'CreateAmStmt', 'CreateCastStmt',
    'CreateConversionStmt', 'CreateDomainStmt', 'CreateEnumStmt', 'CreateEventTrigStmt',
    'CreateExtensionStmt', 'CreateFdwStmt', 'CreateForeignServerStmt', 'CreateForeignTableStmt',
    'CreateFunctionStmt', 'CreateOpClassStmt', 'CreateOpFamilyStmt', 'CreatePLangStmt',
    'CreatePolicyStmt', 'CreatePublicationStmt', 'CreateRangeStmt', 'CreateSchemaStmt',
    'CreateSeqStmt', 'CreateStatsStmt', 'CreateStmt', 'CreateSubscriptionStmt', 'CreateTableAsStmt',
    'CreateTableSpaceStmt', 'CreateTransformStmt', 'CreateTrigStmt', 'CreateUserMappingStmt',
    'CreatedbStmt', 'DefineStmt', 'DropStmt', 'DropSubscriptionStmt', 'DropTableSpaceStmt',
    'DropUserMappingStmt', 'DropdbStmt', 'ImportForeignSchemaStmt', 'IndexStmt', 'RenameStmt',
    'ReplicaIdentityStmt', 'RuleStmt', 'SecLabelStmt', 'TruncateStmt', 'ViewStmt',
  ].map((k): [string, Verdict] => [k, DDL]),
  ...[
    'GrantStmt', 'GrantRoleStmt', 'CreateRoleStmt', 'AlterRoleStmt', 'AlterRoleSetStmt',
    'DropRoleStmt', 'AlterDefaultPrivilegesStmt', 'ReassignOwnedStmt', 'DropOwnedStmt',
  ].map((k): [string, Verdict] => [k, DCL]),
  ...[
    'VacuumStmt', 'ClusterStmt', 'ReindexStmt', 'CheckPointStmt', 'ListenStmt', 'NotifyStmt',
    'UnlistenStmt', 'DiscardStmt', 'DeallocateStmt', 'ClosePortalStmt',
  ].map((k): [string, Verdict] => [k, UTILITY_READ]),
  ...['LockStmt', 'LoadStmt', 'RefreshMatViewStmt'].map((k): [string, Verdict] => [k, UTILITY_WRITE]),
  ['InsertStmt', { cls: 'insert', writes: true }],
  ['UpdateStmt', { cls: 'update', writes: true }],
  ['DeleteStmt', { cls: 'delete', writes: true }],
  ['MergeStmt', { cls: 'merge', writes: true }],
  ['CallStmt', { cls: 'call', writes: true }],
  ['VariableShowStmt', { cls: 'set', writes: false }],
  ['ConstraintsSetStmt', { cls: 'set', writes: false }],
  ['DoStmt', UNKNOWN],
  ['ExecuteStmt', UNKNOWN],
]);

const DML_NODES: ReadonlySet<string> = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

/** DROP of these object types names relations (as lists of strings, not RangeVars). */
const RELATION_OBJECT_TYPES: ReadonlySet<string> = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE', 'OBJECT_SEQUENCE',
]);

const READ_ONLY_SETTINGS: ReadonlySet<string> = new Set(['transaction_read_only', 'default_transaction_read_only']);

let maxEntries = 10_000;
let maxChars = 8 * 1024 * 1024;

/** The part of an Emscripten instance of libpg-query that parsing uses (see its wasm/index.js). */
interface ParserInstance {
  lengthBytesUTF8(text: string): number;
  stringToUTF8(text: string, ptr: number, maxBytes: number): void;
  UTF8ToString(ptr: number): string;
  getValue(ptr: number, type: 'i32'): number;
  _malloc(size: number): number;
  _free(ptr: number): void;
  _wasm_parse_query_raw(queryPtr: number): number;
  _wasm_free_parse_result(resultPtr: number): void;
}

type InstanceFactory = () => Promise<ParserInstance>;

// The package exports only its singleton API; its Emscripten factory is this file, whose typings
// the package does not ship (hence the non-literal specifier).
const FACTORY_MODULE: string = 'libpg-query/wasm/libpg-query.js';

let factory: InstanceFactory | undefined;
let active: ParserInstance | undefined;
let spare: ParserInstance | undefined;
let spareLoading = false;
let instanceError: string | undefined;
let initialized = false;

/** Loads the parser (a WASM instance and a spare) once; classifySql may be used after this. */
export async function initClassifier(options: ClassifierOptions = {}): Promise<void> {
  if (options.cacheEntries !== undefined) maxEntries = Math.max(1, options.cacheEntries);
  if (options.cacheChars !== undefined) maxChars = Math.max(1, options.cacheChars);
  cache.clear();
  cachedChars = 0;
  if (factory === undefined) {
    const loaded = (await import(FACTORY_MODULE)) as { default: InstanceFactory };
    factory = loaded.default;
  }
  active ??= await factory();
  spare ??= await factory();
  initialized = true;
}

/** Whether initClassifier() has resolved in this process. */
export function classifierReady(): boolean {
  return initialized;
}

/** A failed instance is dropped: the spare takes over and a new spare loads in the background. */
function retireActive(): void {
  active = spare;
  spare = undefined;
  replenish();
}

/** Loads instances until there is an active one and a spare; a load failure waits for the next trap. */
function replenish(): void {
  if (spareLoading || factory === undefined || (active !== undefined && spare !== undefined)) return;
  spareLoading = true;
  factory().then(
    (instance) => {
      if (active === undefined) active = instance;
      else spare = instance;
      instanceError = undefined;
      spareLoading = false;
      replenish();
    },
    (err: unknown) => {
      instanceError = err instanceof Error ? err.message : String(err);
      spareLoading = false;
    },
  );
}

/** Thrown out of parseText when the statement is not valid SQL (the parser's own error). */
class SqlSyntaxError extends Error {}

/**
 * Parses `text` the way libpg-query's parseSync does (wasm/index.js). Throws SqlSyntaxError for
 * invalid SQL; any other exception means the instance itself failed (e.g. stack overflow).
 */
function parseText(parser: ParserInstance, text: string): ParseResult {
  const size = parser.lengthBytesUTF8(text) + 1;
  const queryPtr = parser._malloc(size);
  if (queryPtr === 0) throw new Error('SQL parser out of memory');
  parser.stringToUTF8(text, queryPtr, size);
  const resultPtr = parser._wasm_parse_query_raw(queryPtr);
  if (resultPtr === 0) throw new Error('SQL parser out of memory');
  try {
    const treePtr = parser.getValue(resultPtr, 'i32');
    const errorPtr = parser.getValue(resultPtr + 8, 'i32');
    if (errorPtr !== 0) {
      const messagePtr = parser.getValue(errorPtr, 'i32');
      throw new SqlSyntaxError(messagePtr === 0 ? 'invalid SQL' : parser.UTF8ToString(messagePtr));
    }
    if (treePtr === 0) throw new SqlSyntaxError('no parse tree');
    return JSON.parse(parser.UTF8ToString(treePtr)) as ParseResult;
  } finally {
    parser._free(queryPtr);
    parser._wasm_free_parse_result(resultPtr);
  }
}

interface CacheEntry {
  readonly value: Classification;
  /** Set on a hit; eviction gives such an entry a second chance instead of dropping it. */
  used: boolean;
}

const cache = new Map<string, CacheEntry>();
let cachedChars = 0;

/** Classifies every statement of `text`; never throws once initClassifier() has resolved. */
export function classifySql(text: string): Classification {
  const exact = cache.get(text);
  if (exact !== undefined) {
    exact.used = true;
    return exact.value;
  }
  const key = classificationKey(text);
  const hit = key === text ? undefined : cache.get(key);
  if (hit !== undefined) {
    hit.used = true;
    return hit.value;
  }
  if (!initialized) throw new Error('classifySql called before initClassifier() resolved');
  const parser = active;
  if (parser === undefined) {
    // Between a parser failure and its replacement loading (milliseconds): fail closed, uncached.
    return deepFreeze(failed(`SQL parser is restarting after a failure${instanceError === undefined ? '' : `: ${instanceError}`}`));
  }
  const value = deepFreeze(classifyUncached(parser, key));
  remember(key, value);
  return value;
}

function remember(text: string, value: Classification): void {
  if (text.length > maxChars) return;
  while (cache.size >= maxEntries || cachedChars + text.length > maxChars) evictOne();
  cache.set(text, { value, used: false });
  cachedChars += text.length;
}

// Second-chance ("clock") eviction in Map insertion order: an entry hit since it was last looked
// at moves to the back once; the first one not hit is dropped. Amortised O(1), and a hit costs no
// reordering.
function evictOne(): void {
  for (const [key, entry] of cache) {
    cache.delete(key);
    if (entry.used) {
      entry.used = false;
      cache.set(key, entry);
      continue;
    }
    cachedChars -= key.length;
    return;
  }
}

function classifyUncached(parser: ParserInstance, text: string): Classification {
  if (text.length === 0) return { statements: [] };
  // The parser reads a C string: it would stop at a NUL and classify only the text before it.
  if (text.includes('\0')) return failed('statement text contains a NUL character');
  let parsed: ParseResult;
  try {
    parsed = parseText(parser, text);
  } catch (err) {
    if (err instanceof SqlSyntaxError) return failed(err.message);
    retireActive();
    return failed(`statement too complex for the SQL parser: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return { statements: (parsed.stmts ?? []).map((raw) => classifyStatement(raw.stmt)) };
  } catch (err) {
    // The relay relies on classifySql not throwing; a tree we cannot read is classified unknown.
    return failed(`cannot classify the parse tree: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function failed(error: string): Classification {
  return { statements: [{ ...UNKNOWN, tables: [], functions: [] }], error };
}

function classifyStatement(stmt: PgNode | undefined): ClassifiedStatement {
  if (stmt === undefined) return { ...UNKNOWN, tables: [], functions: [] };
  const facts = collectFacts(stmt);
  const verdict = verdictOf(stmt, facts);
  return { cls: verdict.cls, writes: verdict.writes, tables: [...facts.tables], functions: [...facts.functions] };
}

/** What the walk of a whole statement tree found. */
interface Facts {
  tables: Set<string>;
  functions: Set<string>;
  /** An INSERT/UPDATE/DELETE/MERGE node somewhere (for a SELECT: a data-modifying CTE). */
  dml: boolean;
  /** A FOR UPDATE/SHARE clause somewhere, including in subqueries. */
  locking: boolean;
}

/**
 * The class of one statement node. Facts are those of the whole statement, which for EXPLAIN,
 * PREPARE and DECLARE CURSOR are the facts of the query they wrap.
 */
function verdictOf(node: PgNode, facts: Facts): Verdict {
  const kind = nodeKind(node);
  const body = nodeBody(node);
  switch (kind) {
    case 'SelectStmt':
      // The top-level class stays 'select' for a data-modifying CTE so class metrics describe
      // what the client asked for; `writes` carries the danger for read-only policies.
      if ((body as SelectStmt).intoClause !== undefined) return DDL;
      return { cls: 'select', writes: facts.dml || facts.locking };
    case 'CopyStmt': {
      const copy = body as CopyStmt;
      if (copy.is_from === true) return { cls: 'copy_in', writes: true };
      // COPY … TO 'file' / PROGRAM writes on the server; COPY (DELETE … RETURNING) TO writes rows.
      const serverSide = copy.filename !== undefined || copy.is_program === true;
      return { cls: 'copy_out', writes: serverSide || facts.dml || facts.locking };
    }
    case 'ExplainStmt': {
      const explain = body as ExplainStmt;
      if (explain.query === undefined) return UNKNOWN;
      const inner = verdictOf(explain.query, facts);
      return explainAnalyzes(explain) && inner.writes ? inner : { cls: 'select', writes: false };
    }
    case 'PrepareStmt':
    case 'DeclareCursorStmt': {
      const query = (body as { query?: PgNode }).query;
      return query === undefined ? UNKNOWN : verdictOf(query, facts);
    }
    case 'FetchStmt':
      return (body as { ismove?: boolean }).ismove === true ? UTILITY_READ : { cls: 'select', writes: false };
    case 'TransactionStmt':
      return { cls: 'transaction', writes: setsReadWrite((body as TransactionStmt).options) };
    case 'VariableSetStmt':
      return { cls: 'set', writes: variableSetWrites(body as VariableSetStmt) };
    default:
      return FIXED_CLASSES.get(kind) ?? UNKNOWN;
  }
}

function nodeKind(node: object): string {
  for (const key in node) return key;
  return '';
}

function nodeBody(node: PgNode): unknown {
  return (node as Record<string, unknown>)[nodeKind(node)];
}

function explainAnalyzes(explain: ExplainStmt): boolean {
  for (const option of explain.options ?? []) {
    const def = (option as { DefElem?: DefElem }).DefElem;
    // A bare ANALYZE means true; anything but a recognisable false counts as analyzing.
    if (def?.defname === 'analyze') return def.arg === undefined || parseBool(constText(def.arg)) !== false;
  }
  return false;
}

/** BEGIN/START TRANSACTION, SET TRANSACTION and SET SESSION CHARACTERISTICS options. */
function setsReadWrite(options: PgNode[] | undefined): boolean {
  for (const option of options ?? []) {
    const def = (option as { DefElem?: DefElem }).DefElem;
    if (def?.defname === 'transaction_read_only') return parseBool(constText(def.arg)) !== true;
  }
  return false;
}

// SET … TO DEFAULT and RESET return to the session's reset value (the one sent at startup), so
// only an explicit value that is not "true" can turn read-only off.
function variableSetWrites(set: VariableSetStmt): boolean {
  if (set.kind === 'VAR_SET_MULTI') return setsReadWrite(set.args);
  if (set.kind !== 'VAR_SET_VALUE' || !READ_ONLY_SETTINGS.has(set.name ?? '')) return false;
  const args = set.args ?? [];
  return args.length !== 1 || parseBool(constText(args[0])) !== true;
}

/** The text PostgreSQL would hand to a GUC or option parser for a constant node. */
function constText(node: PgNode | undefined): string | undefined {
  if (node === undefined) return undefined;
  const c = (node as { A_Const?: A_Const }).A_Const;
  if (c !== undefined) {
    if (c.sval !== undefined) return c.sval.sval ?? '';
    // Protobuf-style JSON leaves out zero values: {"ival":{}} is 0, {"boolval":{}} is false.
    if (c.ival !== undefined) return String(c.ival.ival ?? 0);
    if (c.boolval !== undefined) return c.boolval.boolval === true ? 'true' : 'false';
    if (c.fval !== undefined) return c.fval.fval;
    return undefined;
  }
  const s = (node as { String?: { sval?: string } }).String;
  if (s !== undefined) return s.sval ?? '';
  const i = (node as { Integer?: { ival?: number } }).Integer;
  if (i !== undefined) return String(i.ival ?? 0);
  const b = (node as { Boolean?: { boolval?: boolean } }).Boolean;
  if (b !== undefined) return b.boolval === true ? 'true' : 'false';
  return undefined;
}

/**
 * PostgreSQL's parse_bool (utils/adt/bool.c): case-insensitive prefixes of true/false/yes/no,
 * "on"/"off" (at least two letters), "1"/"0"; undefined when the server would reject the value.
 */
function parseBool(value: string | undefined): boolean | undefined {
  if (value === undefined || value.length === 0) return undefined;
  switch (value.charCodeAt(0) | 0x20) {
    case 0x74: return isPrefixOf(value, 'true', 1) ? true : undefined; // t
    case 0x66: return isPrefixOf(value, 'false', 1) ? false : undefined; // f
    case 0x79: return isPrefixOf(value, 'yes', 1) ? true : undefined; // y
    case 0x6e: return isPrefixOf(value, 'no', 1) ? false : undefined; // n
    case 0x6f: // o
      if (isPrefixOf(value, 'on', 2)) return true;
      return isPrefixOf(value, 'off', 2) ? false : undefined;
    default:
      if (value === '1') return true;
      return value === '0' ? false : undefined;
  }
}

/** ASCII case-insensitive: `value` is a prefix of lower-case `word`, at least `min` long. */
function isPrefixOf(value: string, word: string, min: number): boolean {
  if (value.length < min || value.length > word.length) return false;
  for (let i = 0; i < value.length; i++) {
    // OR-ing 0x20 lower-cases ASCII letters and never turns a non-letter into one.
    if ((value.charCodeAt(i) | 0x20) !== word.charCodeAt(i)) return false;
  }
  return true;
}

interface Frame {
  readonly value: unknown;
  /** The property that held the value: the node type for a wrapped node, else the field name. */
  readonly key: string;
  /** CTE names visible here (unqualified FROM items with these names are not tables). */
  readonly ctes: ReadonlySet<string> | undefined;
}

/**
 * Walks the whole tree generically (with an explicit stack, so deep expressions cannot overflow
 * the call stack) and collects tables, functions and the write hints.
 */
function collectFacts(root: PgNode): Facts {
  const facts: Facts = { tables: new Set(), functions: new Set(), dml: false, locking: false };
  const stack: Frame[] = [{ value: root, key: '', ctes: undefined }];
  for (let frame = stack.pop(); frame !== undefined; frame = stack.pop()) {
    const { value, key, ctes } = frame;
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], key, ctes });
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    const obj = value as Record<string, unknown>;
    // Only RangeVar has `relname`; it arrives wrapped ({"RangeVar": …}) where a FROM item may
    // be, bare in typed fields (INSERT target, CREATE TABLE name …), which never name a CTE.
    if (typeof obj.relname === 'string') {
      const schema = typeof obj.schemaname === 'string' ? obj.schemaname : undefined;
      if (schema !== undefined || key !== 'RangeVar' || ctes?.has(obj.relname) !== true) {
        facts.tables.add(schema === undefined ? obj.relname : `${schema}.${obj.relname}`);
      }
      continue;
    }
    if (key === 'FuncCall' || key === 'funccall') {
      const name = qualifiedName(obj.funcname);
      if (name !== undefined) facts.functions.add(name);
    } else if (DML_NODES.has(key)) {
      facts.dml = true;
    } else if (key === 'DropStmt') {
      collectDroppedRelations(obj as DropStmt, facts.tables);
    }
    pushChildren(obj, ctes, stack, facts);
  }
  return facts;
}

function pushChildren(obj: Record<string, unknown>, ctes: ReadonlySet<string> | undefined, stack: Frame[], facts: Facts): void {
  const withClause = obj.withClause as { ctes?: unknown[]; recursive?: boolean } | undefined;
  const cteList = withClause?.ctes ?? [];
  const names = cteList.map((cte) => cteName(cte));
  const inner = names.length === 0 ? ctes : new Set([...(ctes ?? []), ...names]);
  const keys = Object.keys(obj);
  for (let i = keys.length - 1; i >= 0; i--) {
    const k = keys[i];
    const child = obj[k];
    // FOR UPDATE OF a names FROM items (often aliases), never a further relation.
    if (k === 'withClause' || k === 'lockedRels') continue;
    if (k === 'lockingClause' && Array.isArray(child) && child.length > 0) facts.locking = true;
    stack.push({ value: child, key: k, ctes: inner });
  }
  // A CTE of a plain WITH sees only the CTEs before it; in WITH RECURSIVE it sees them all.
  for (let i = cteList.length - 1; i >= 0; i--) {
    const visible = withClause?.recursive === true ? inner : new Set([...(ctes ?? []), ...names.slice(0, i)]);
    stack.push({ value: cteList[i], key: 'ctes', ctes: visible });
  }
}

function cteName(cte: unknown): string {
  const name = (cte as { CommonTableExpr?: { ctename?: unknown } }).CommonTableExpr?.ctename;
  return typeof name === 'string' ? name : '';
}

function collectDroppedRelations(drop: DropStmt, tables: Set<string>): void {
  if (!RELATION_OBJECT_TYPES.has(drop.removeType ?? '')) return;
  for (const object of drop.objects ?? []) {
    const name = qualifiedName((object as { List?: { items?: unknown } }).List?.items);
    if (name !== undefined) tables.add(name);
  }
}

/** A list of String nodes as "schema.name" or "name"; a leading catalog name is dropped. */
function qualifiedName(parts: unknown): string | undefined {
  if (!Array.isArray(parts) || parts.length === 0) return undefined;
  const names: string[] = [];
  for (const part of parts.slice(-2)) {
    const sval = (part as { String?: { sval?: unknown } }).String?.sval;
    if (typeof sval !== 'string') return undefined;
    names.push(sval);
  }
  return names.join('.');
}

function deepFreeze(c: Classification): Classification {
  for (const s of c.statements) {
    Object.freeze(s.tables);
    Object.freeze(s.functions);
    Object.freeze(s);
  }
  Object.freeze(c.statements);
  return Object.freeze(c);
}

