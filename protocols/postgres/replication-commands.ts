// Replication connections of PostgreSQL, as the server itself reads them: the startup parameter
// `replication` (physical or logical, or an error), and which texts on such a connection are
// commands of the replication grammar (IDENTIFY_SYSTEM, START_REPLICATION, BASE_BACKUP, …).
//
// Replication commands are classified by their leading keyword, not with libpg-query: they are not
// SQL (`START_REPLICATION SLOT "s" LOGICAL 0/0`), the server parses them with a small grammar of its
// own (repl_gram.y) that libpg-query does not include, and the server decides that a text is a
// replication command from its first token alone (replication_scanner_is_replication_command in
// repl_scanner.l): after whitespace, one of the upper-case keywords below as a whole token. Anything
// else is SQL: run as such on a logical (`replication=database`) connection, refused by the server
// on a physical one. Deciding exactly as the server does means a text is judged as a replication
// command exactly when the server will run it as one: no comment, case or spacing trick moves a
// command past a deny rule.
// https://www.postgresql.org/docs/current/protocol-replication.html
import { classifySql, type Classification, type ClassifiedStatement } from './sql-classify.js';

export type ReplicationKind = 'physical' | 'logical';

/** Every command of the replication grammar (PostgreSQL 15; ALTER_REPLICATION_SLOT and UPLOAD_MANIFEST are 17's). */
export const REPLICATION_COMMANDS = [
  'IDENTIFY_SYSTEM',
  'SHOW',
  'TIMELINE_HISTORY',
  'CREATE_REPLICATION_SLOT',
  'ALTER_REPLICATION_SLOT',
  'READ_REPLICATION_SLOT',
  'DROP_REPLICATION_SLOT',
  'START_REPLICATION',
  'BASE_BACKUP',
  'UPLOAD_MANIFEST',
] as const;

export type ReplicationCommand = (typeof REPLICATION_COMMANDS)[number];

/**
 * Commands that change the server's state: a slot made, changed or dropped (a slot holds back WAL
 * and vacuum). Streaming only reads, although it confirms positions of the slot it reads from.
 */
const WRITING_COMMANDS: ReadonlySet<ReplicationCommand> = new Set(['CREATE_REPLICATION_SLOT', 'ALTER_REPLICATION_SLOT', 'DROP_REPLICATION_SLOT']);

/** One frozen classification per command; classifying a command allocates nothing. */
const CLASSIFICATIONS: ReadonlyMap<string, Classification> = new Map(
  REPLICATION_COMMANDS.map((command): [string, Classification] => {
    const statement: ClassifiedStatement = { cls: 'replication', writes: WRITING_COMMANDS.has(command), tables: [], functions: [], command };
    Object.freeze(statement.tables);
    Object.freeze(statement.functions);
    const classification: Classification = { statements: [Object.freeze(statement)] };
    Object.freeze(classification.statements);
    return [command, Object.freeze(classification)];
  }),
);

/** The kind of replication connection a startup parameter asks for (see below). */
export type ReplicationRequest = { kind: ReplicationKind } | { kind: undefined } | { invalid: string };

/**
 * What the server makes of the startup parameter `replication` (ProcessStartupPacket in
 * postmaster.c): exactly `database` is logical; a boolean as parse_bool reads it (true, on, yes, 1
 * and their unambiguous prefixes, any case) is physical; false, off, no, 0 (or no parameter) is a
 * normal session; anything else is an error.
 */
export function replicationRequest(value: string | undefined): ReplicationRequest {
  if (value === undefined) return { kind: undefined };
  if (value === 'database') return { kind: 'logical' };
  const b = parseBool(value);
  if (b === undefined) return { invalid: value };
  return { kind: b ? 'physical' : undefined };
}

/** parse_bool_with_len of PostgreSQL's utils/adt/bool.c. */
function parseBool(value: string): boolean | undefined {
  const v = value.replace(/[A-Z]/g, (c) => c.toLowerCase());
  const prefixOf = (word: string, minLength = 1): boolean => v.length >= minLength && v.length <= word.length && word.startsWith(v);
  switch (v[0]) {
    case 't':
      return prefixOf('true') ? true : undefined;
    case 'f':
      return prefixOf('false') ? false : undefined;
    case 'y':
      return prefixOf('yes') ? true : undefined;
    case 'n':
      return prefixOf('no') ? false : undefined;
    case 'o': // "o" alone is ambiguous
      return prefixOf('on', 2) ? true : prefixOf('off', 2) ? false : undefined;
    case '1':
      return v.length === 1 ? true : undefined;
    case '0':
      return v.length === 1 ? false : undefined;
    default:
      return undefined;
  }
}

/** repl_scanner.l's {space}: space, tab, newline, carriage return, form feed, vertical tab. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** repl_scanner.l's {ident_cont}: letters, digits, _, $ and every byte of a multi-byte character. */
function isIdentChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x24 || c >= 0x80;
}

/** The replication command `text` is, or undefined when the server will take it for SQL. */
export function replicationCommandOf(text: string): ReplicationCommand | undefined {
  let start = 0;
  while (start < text.length && isSpace(text.charCodeAt(start))) start++;
  let end = start;
  while (end < text.length && isIdentChar(text.charCodeAt(end))) end++;
  // Every keyword starts with a letter, so a token that equals one is an identifier-shaped token.
  const word = text.substring(start, end);
  return CLASSIFICATIONS.has(word) ? (word as ReplicationCommand) : undefined;
}

/** The classification of a replication command (class `replication`), or undefined for SQL. */
export function classifyReplicationCommand(text: string): Classification | undefined {
  const command = replicationCommandOf(text);
  return command === undefined ? undefined : CLASSIFICATIONS.get(command);
}

/** A statement text of a session: a replication command on a replication session, else SQL. */
export function classifyForSession(text: string, replication: ReplicationKind | undefined): Classification {
  return (replication === undefined ? undefined : classifyReplicationCommand(text)) ?? classifySql(text);
}
