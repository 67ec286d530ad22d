// Classifies the SQL a MySQL client sends (COM_QUERY text, COM_STMT_PREPARE text) into the same
// statement classes as protocols/postgres/sql-classify.ts, so that one policy governs both
// protocols: class, whether it writes, the tables and functions it references.
// Parser: node-sql-parser (MIT, maintained, pure JavaScript, MySQL and MariaDB grammars). The other
// maintained option, a WASM build of a real MySQL grammar, does not exist on npm; sqlparser-rs
// builds are generic. Its speed: a first parse of a short statement takes some 0.1-1 ms, so the
// result is cached by statement text exactly like the PostgreSQL classifier (a repeated statement
// costs one Map lookup). Its limits: it is a PEG grammar of common MySQL, not the server's own, so
// some valid statements fail to parse (e.g. `SET NAMES`, `KILL QUERY n`, many SHOW and admin
// forms); those are class `unknown`, counted as writing, and a policy that denies `unknown` denies
// them. Only `SET NAMES/CHARACTER SET` and `KILL` are recognised by hand, because every client
// sends the first and the second must stay possible (it is mapped to sempipe's connection ids).
import { createRequire } from 'node:module';
import type { Classification, ClassifiedStatement, StatementClass } from '../postgres/sql-classify.js';

interface SqlParser {
  parse(sql: string, opt: { database: string }): { ast: AstNode | AstNode[]; tableList: string[] };
}
type AstNode = { type?: string; [key: string]: unknown };

// node-sql-parser ships CommonJS; its ESM entry re-exports a build for the browser.
const { Parser } = createRequire(import.meta.url)('node-sql-parser') as { Parser: new () => SqlParser };
const parser = new Parser();
const OPTIONS = { database: 'MariaDB' };

const CACHE_ENTRIES = 10_000;
const CACHE_CHARS = 8 * 1024 * 1024;
const cache = new Map<string, Classification>();
let cachedChars = 0;

const CLASSES: Readonly<Record<string, { cls: StatementClass; writes: boolean }>> = {
  select: { cls: 'select', writes: false },
  insert: { cls: 'insert', writes: true },
  replace: { cls: 'insert', writes: true },
  update: { cls: 'update', writes: true },
  delete: { cls: 'delete', writes: true },
  create: { cls: 'ddl', writes: true },
  alter: { cls: 'ddl', writes: true },
  drop: { cls: 'ddl', writes: true },
  truncate: { cls: 'ddl', writes: true },
  rename: { cls: 'ddl', writes: true },
  grant: { cls: 'dcl', writes: true },
  revoke: { cls: 'dcl', writes: true },
  transaction: { cls: 'transaction', writes: false },
  set: { cls: 'set', writes: false },
  call: { cls: 'call', writes: true },
  show: { cls: 'utility', writes: false },
  desc: { cls: 'utility', writes: false },
  explain: { cls: 'utility', writes: false },
  use: { cls: 'utility', writes: false },
  lock: { cls: 'utility', writes: true },
  unlock: { cls: 'utility', writes: false },
  load_data: { cls: 'copy_in', writes: true },
};

const SET_NAMES = /^\s*set\s+(names|character\s+set|charset)\s/i;
const KILL = /^\s*kill\s+(?:(query|connection)\s+)?(\d+)\s*;?\s*$/i;

/** `KILL [QUERY|CONNECTION] <id>`: the id and whether only the running query is meant. */
export function parseKill(text: string): { id: number; queryOnly: boolean } | undefined {
  const m = KILL.exec(text);
  if (m === null) return undefined;
  const id = Number(m[2]);
  return Number.isSafeInteger(id) ? { id, queryOnly: m[1]?.toLowerCase() === 'query' } : undefined;
}

function freeze(statements: ClassifiedStatement[], error?: string): Classification {
  for (const s of statements) Object.freeze(s);
  return Object.freeze({ statements: Object.freeze(statements) as ClassifiedStatement[], ...(error !== undefined && { error }) });
}

function unknown(error: string): Classification {
  return freeze([{ cls: 'unknown', writes: true, tables: [], functions: [] }], error);
}

/** Function names called anywhere in `node` ("name" or "schema.name", lower case). */
function collectFunctions(node: unknown, out: Set<string>): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const n of node) collectFunctions(n, out);
    return;
  }
  const n = node as AstNode;
  if (n.type === 'function' && n.name !== null && typeof n.name === 'object') {
    const parts = ((n.name as { name?: Array<{ value: string }> }).name ?? []).map((p) => p.value);
    const schema = (n.name as { schema?: { value: string } }).schema?.value;
    if (parts.length > 0) out.add([...(schema ? [schema] : []), ...parts].join('.').toLowerCase());
  } else if (n.type === 'aggr_func' && typeof n.name === 'string') {
    out.add(n.name.toLowerCase());
  }
  for (const key in n) if (key !== 'type') collectFunctions(n[key], out);
}

function classifyNode(ast: AstNode, tables: string[]): ClassifiedStatement {
  const known = CLASSES[ast.type ?? ''];
  const functions = new Set<string>();
  collectFunctions(ast, functions);
  if (known === undefined) return { cls: 'unknown', writes: true, tables, functions: [...functions] };
  // SELECT … INTO OUTFILE/DUMPFILE/@var and SELECT … FOR UPDATE write or lock.
  const writes = known.writes || (ast.type === 'select' && ((ast.into as { position?: unknown } | undefined)?.position != null || ast.locking_read != null));
  return { cls: known.cls, writes, tables, functions: [...functions] };
}

/** "type::db::table" entries of node-sql-parser's tableList as "db.table" or "table". */
function tableNames(list: readonly string[]): string[] {
  const names = new Set<string>();
  for (const entry of list) {
    const [, db, table] = entry.split('::');
    if (table === undefined || table === 'null') continue;
    names.add((db && db !== 'null' ? `${db}.${table}` : table).toLowerCase());
  }
  return [...names];
}

function classifyUncached(text: string): Classification {
  if (SET_NAMES.test(text)) return freeze([{ cls: 'set', writes: false, tables: [], functions: [] }]);
  if (parseKill(text) !== undefined) return freeze([{ cls: 'utility', writes: false, tables: [], functions: [] }]);
  let parsed: ReturnType<SqlParser['parse']>;
  try {
    parsed = parser.parse(text, OPTIONS);
  } catch (err) {
    return unknown(err instanceof Error ? err.message.split('\n')[0]! : String(err));
  }
  const asts = (Array.isArray(parsed.ast) ? parsed.ast : [parsed.ast]).filter((a) => a !== null && typeof a === 'object');
  // The table list covers the whole text; with several statements every one gets all of them.
  const tables = tableNames(parsed.tableList);
  return freeze(asts.map((a) => classifyNode(a, tables)));
}

/** Classifies every statement of `text`; never throws. Results are cached and frozen. */
export function classifyMysql(text: string): Classification {
  const hit = cache.get(text);
  if (hit !== undefined) return hit;
  const value = classifyUncached(text);
  if (text.length <= CACHE_CHARS / 16) {
    while (cache.size >= CACHE_ENTRIES || cachedChars + text.length > CACHE_CHARS) {
      const oldest = cache.keys().next().value as string;
      cache.delete(oldest);
      cachedChars -= oldest.length;
    }
    cache.set(text, value);
    cachedChars += text.length;
  }
  return value;
}
