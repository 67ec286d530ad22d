// Reads the statement class and the row count out of a CommandComplete tag ("INSERT 0 5",
// "SELECT 3", "CREATE TABLE") on the relay's hot path (tens of thousands of calls a second).
// Hand-written because no library maps tags to classes; it allocates nothing: a switch on the
// first character, prefix checks, and a scan from the end for the number.
// Tags: https://www.postgresql.org/docs/current/protocol-message-formats.html (CommandComplete)
// and src/include/tcop/cmdtaglist.h.
//
// A tag says less than the statement text: CREATE TABLE AS and SELECT INTO answer "SELECT n",
// PREPARE and EXECUTE answer with their own or the inner tag. Prefer sql-classify's class when
// the statement text is at hand; this is for completions whose statement was not classified.

import type { StatementClass } from './sql-classify.js';

const SPACE = 0x20;

/** The class of the statement that produced `tag`; `copyIn` tells a COPY FROM apart. */
export function classFromCommandTag(tag: string, copyIn = false): StatementClass {
  switch (tag.charCodeAt(0)) {
    case 0x41: // A
      if (word(tag, 'ALTER')) return word(tag, 'ALTER ROLE') || word(tag, 'ALTER DEFAULT PRIVILEGES') ? 'dcl' : 'ddl';
      return word(tag, 'ANALYZE') ? 'utility' : 'unknown';
    case 0x42: // B
      return word(tag, 'BEGIN') ? 'transaction' : 'unknown';
    case 0x43: // C
      if (word(tag, 'COMMIT')) return 'transaction'; // COMMIT, COMMIT PREPARED
      if (word(tag, 'COPY')) return copyIn ? 'copy_in' : 'copy_out';
      if (word(tag, 'CREATE')) return word(tag, 'CREATE ROLE') ? 'dcl' : 'ddl';
      if (word(tag, 'CALL')) return 'call';
      if (word(tag, 'COMMENT')) return 'ddl';
      if (word(tag, 'CLOSE') || word(tag, 'CLUSTER') || word(tag, 'CHECKPOINT')) return 'utility';
      return 'unknown';
    case 0x44: // D
      if (word(tag, 'DELETE')) return 'delete';
      if (word(tag, 'DROP')) return word(tag, 'DROP ROLE') || word(tag, 'DROP OWNED') ? 'dcl' : 'ddl';
      if (word(tag, 'DECLARE')) return 'select'; // DECLARE CURSOR: as sql-classify, the cursor's query
      if (word(tag, 'DISCARD') || word(tag, 'DEALLOCATE')) return 'utility';
      return 'unknown'; // DO: whatever its block did is unknown
    case 0x45: // E
      if (word(tag, 'EXPLAIN')) return 'select';
      return 'unknown'; // EXECUTE: the server answers with the prepared statement's own tag
    case 0x46: // F
      return word(tag, 'FETCH') ? 'select' : 'unknown';
    case 0x47: // G
      return word(tag, 'GRANT') ? 'dcl' : 'unknown'; // GRANT, GRANT ROLE
    case 0x49: // I
      if (word(tag, 'INSERT')) return 'insert';
      return word(tag, 'IMPORT') ? 'ddl' : 'unknown'; // IMPORT FOREIGN SCHEMA
    case 0x4c: // L
      return word(tag, 'LISTEN') || word(tag, 'LOCK') || word(tag, 'LOAD') ? 'utility' : 'unknown';
    case 0x4d: // M
      if (word(tag, 'MERGE')) return 'merge';
      return word(tag, 'MOVE') ? 'utility' : 'unknown';
    case 0x4e: // N
      return word(tag, 'NOTIFY') ? 'utility' : 'unknown';
    case 0x50: // P
      if (word(tag, 'PREPARE TRANSACTION')) return 'transaction';
      return word(tag, 'PREPARE') ? 'utility' : 'unknown';
    case 0x52: // R
      if (word(tag, 'ROLLBACK') || word(tag, 'RELEASE')) return 'transaction'; // incl. ROLLBACK PREPARED
      if (word(tag, 'RESET')) return 'set';
      if (word(tag, 'REVOKE') || word(tag, 'REASSIGN OWNED')) return 'dcl';
      return word(tag, 'REINDEX') || word(tag, 'REFRESH') ? 'utility' : 'unknown';
    case 0x53: // S
      if (word(tag, 'SELECT')) return 'select';
      if (word(tag, 'SET') || word(tag, 'SHOW')) return 'set'; // SET, SET CONSTRAINTS
      if (word(tag, 'START TRANSACTION') || word(tag, 'SAVEPOINT')) return 'transaction';
      return word(tag, 'SECURITY LABEL') ? 'ddl' : 'unknown';
    case 0x54: // T
      return word(tag, 'TRUNCATE') ? 'ddl' : 'unknown';
    case 0x55: // U
      if (word(tag, 'UPDATE')) return 'update';
      return word(tag, 'UNLISTEN') ? 'utility' : 'unknown';
    case 0x56: // V
      return word(tag, 'VACUUM') ? 'utility' : 'unknown';
    default:
      return 'unknown';
  }
}

/** The trailing row count of `tag` ("INSERT 0 5" → 5, "SELECT 3" → 3); 0 when there is none. */
export function rowsFromCommandTag(tag: string): number {
  let start = tag.length;
  while (start > 0) {
    const c = tag.charCodeAt(start - 1);
    if (c < 0x30 || c > 0x39) break;
    start--;
  }
  // The digits must form their own word: "SELECT 3", not a name ending in a digit.
  if (start === tag.length || start === 0 || tag.charCodeAt(start - 1) !== SPACE) return 0;
  let rows = 0;
  for (let i = start; i < tag.length; i++) rows = rows * 10 + (tag.charCodeAt(i) - 0x30);
  return rows;
}

/** `tag` starts with the words `w`, followed by the end or a space. */
function word(tag: string, w: string): boolean {
  return tag.startsWith(w) && (tag.length === w.length || tag.charCodeAt(w.length) === SPACE);
}
