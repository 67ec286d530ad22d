// Unit tests of CommandComplete tag decoding: the class of every tag PostgreSQL sends and the row
// count at its end.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { classFromCommandTag, rowsFromCommandTag } from './command-tag.js';
import type { StatementClass } from './sql-classify.js';

describe('classFromCommandTag', () => {
  const cases: [string, StatementClass][] = [
    ['SELECT 5', 'select'], ['INSERT 0 1', 'insert'], ['UPDATE 3', 'update'], ['DELETE 0', 'delete'],
    ['MERGE 2', 'merge'], ['COPY 10', 'copy_out'],
    ['BEGIN', 'transaction'], ['COMMIT', 'transaction'], ['ROLLBACK', 'transaction'],
    ['START TRANSACTION', 'transaction'], ['SAVEPOINT', 'transaction'], ['RELEASE', 'transaction'],
    ['PREPARE TRANSACTION', 'transaction'], ['COMMIT PREPARED', 'transaction'], ['ROLLBACK PREPARED', 'transaction'],
    ['SET', 'set'], ['RESET', 'set'], ['SHOW', 'set'], ['SET CONSTRAINTS', 'set'],
    ['CREATE TABLE', 'ddl'], ['CREATE INDEX', 'ddl'], ['CREATE USER MAPPING', 'ddl'], ['ALTER TABLE', 'ddl'],
    ['ALTER SYSTEM', 'ddl'], ['DROP TABLE', 'ddl'], ['TRUNCATE TABLE', 'ddl'], ['COMMENT', 'ddl'],
    ['SECURITY LABEL', 'ddl'], ['IMPORT FOREIGN SCHEMA', 'ddl'],
    ['GRANT', 'dcl'], ['REVOKE', 'dcl'], ['GRANT ROLE', 'dcl'], ['CREATE ROLE', 'dcl'], ['ALTER ROLE', 'dcl'],
    ['DROP ROLE', 'dcl'], ['ALTER DEFAULT PRIVILEGES', 'dcl'], ['REASSIGN OWNED', 'dcl'], ['DROP OWNED', 'dcl'],
    ['CALL', 'call'], ['DO', 'unknown'],
    ['VACUUM', 'utility'], ['ANALYZE', 'utility'], ['CLUSTER', 'utility'], ['REINDEX', 'utility'],
    ['CHECKPOINT', 'utility'], ['LISTEN', 'utility'], ['NOTIFY', 'utility'], ['UNLISTEN', 'utility'],
    ['LOCK TABLE', 'utility'], ['LOAD', 'utility'], ['REFRESH MATERIALIZED VIEW', 'utility'],
    ['DISCARD ALL', 'utility'], ['DEALLOCATE', 'utility'], ['DEALLOCATE ALL', 'utility'], ['PREPARE', 'utility'],
    ['MOVE 3', 'utility'], ['CLOSE CURSOR', 'utility'], ['CLOSE CURSOR ALL', 'utility'],
    ['FETCH 10', 'select'], ['DECLARE CURSOR', 'select'], ['EXPLAIN', 'select'],
    ['', 'unknown'], ['SELECTED 1', 'unknown'], ['select 1', 'unknown'], ['XYZ', 'unknown'], ['COMMITTED', 'unknown'],
  ];
  test.each(cases)('%j -> %s', (tag, cls) => {
    expect(classFromCommandTag(tag)).toBe(cls);
  });

  test('COPY is copy_in when the caller saw CopyInResponse', () => {
    expect(classFromCommandTag('COPY 3', true)).toBe('copy_in');
    expect(classFromCommandTag('COPY 3', false)).toBe('copy_out');
  });
});

describe('rowsFromCommandTag', () => {
  test.each([
    ['SELECT 5', 5], ['INSERT 0 1', 1], ['INSERT 0 12345', 12345], ['UPDATE 3', 3], ['DELETE 0', 0],
    ['MERGE 2', 2], ['COPY 10', 10], ['FETCH 10', 10], ['MOVE 7', 7], ['SELECT 9007199254740991', 9007199254740991],
    ['CREATE TABLE', 0], ['BEGIN', 0], ['', 0], ['5', 0], ['TABLE1', 0], ['SELECT ', 0],
  ] as [string, number][])('%j -> %d', (tag, rows) => {
    expect(rowsFromCommandTag(tag)).toBe(rows);
  });

  test('any count written after a tag word is read back', () => {
    fc.assert(
      fc.property(fc.constantFrom('SELECT', 'INSERT 0', 'UPDATE', 'DELETE', 'COPY', 'MERGE'), fc.nat(), (word, n) => {
        expect(rowsFromCommandTag(`${word} ${n}`)).toBe(n);
      }),
    );
  });

  test('arbitrary tags never throw and give a class and a non-negative count', () => {
    fc.assert(
      fc.property(fc.string(), (tag) => {
        expect(typeof classFromCommandTag(tag)).toBe('string');
        expect(rowsFromCommandTag(tag)).toBeGreaterThanOrEqual(0);
      }),
    );
  });
});
