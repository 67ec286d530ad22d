// Unit tests of replication connections as the server reads them: the `replication` startup
// parameter (parse_bool's spellings and prefixes, "database", invalid values), which texts are
// replication commands (the first token, upper case, whole, after the scanner's whitespace), and
// the session classifier that sends everything else to the SQL parser.
import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { classifyForSession, classifyReplicationCommand, replicationCommandOf, replicationRequest, REPLICATION_COMMANDS } from './replication-commands.js';
import { initClassifier } from './sql-classify.js';

beforeAll(async () => {
  await initClassifier();
});

describe('replicationRequest', () => {
  test.each([
    ['database', 'logical'],
    ['true', 'physical'],
    ['on', 'physical'],
    ['yes', 'physical'],
    ['1', 'physical'],
    ['TRUE', 'physical'],
    ['t', 'physical'],
    ['tr', 'physical'],
    ['Y', 'physical'],
    ['false', undefined],
    ['off', undefined],
    ['of', undefined],
    ['no', undefined],
    ['0', undefined],
    ['f', undefined],
  ])('%j asks for %s', (value, kind) => {
    expect(replicationRequest(value)).toEqual({ kind });
  });

  test('no parameter is a normal session', () => {
    expect(replicationRequest(undefined)).toEqual({ kind: undefined });
  });

  test.each(['Database', 'DATABASE', 'o', 'truee', 'yess', '10', '', ' true', 'maybe', 'onn'])('%j is invalid', (value) => {
    expect(replicationRequest(value)).toEqual({ invalid: value });
  });
});

describe('replicationCommandOf', () => {
  test.each([
    ['IDENTIFY_SYSTEM', 'IDENTIFY_SYSTEM'],
    ['IDENTIFY_SYSTEM;', 'IDENTIFY_SYSTEM'],
    [' \t\n\r\f\vDROP_REPLICATION_SLOT "s" WAIT', 'DROP_REPLICATION_SLOT'],
    ['CREATE_REPLICATION_SLOT "s" LOGICAL "test_decoding" (SNAPSHOT \'nothing\')', 'CREATE_REPLICATION_SLOT'],
    ['START_REPLICATION SLOT "s" LOGICAL 0/0', 'START_REPLICATION'],
    ['BASE_BACKUP ( LABEL \'x\', CHECKPOINT \'fast\' )', 'BASE_BACKUP'],
    ['TIMELINE_HISTORY 2', 'TIMELINE_HISTORY'],
    ['READ_REPLICATION_SLOT s', 'READ_REPLICATION_SLOT'],
    ['SHOW wal_segment_size', 'SHOW'],
    ['SHOW"x"', 'SHOW'],
  ])('%j is %s', (text, command) => {
    expect(replicationCommandOf(text)).toBe(command);
  });

  // The server runs each of these as SQL (or refuses it as such): judging them as SQL is no bypass.
  test.each([
    'drop_replication_slot s',
    'Drop_Replication_Slot s',
    'DROP_REPLICATION_SLOTS s',
    'DROP_REPLICATION_SLOT$ s',
    'DROP_REPLICATION_SLOT1 s',
    '/* c */ DROP_REPLICATION_SLOT s',
    '-- c\nDROP_REPLICATION_SLOT s',
    '"DROP_REPLICATION_SLOT" s',
    '(IDENTIFY_SYSTEM)',
    'select 1',
    'SHOWé',
    '',
  ])('%j is not a replication command', (text) => {
    expect(replicationCommandOf(text)).toBeUndefined();
  });

  test('every command classifies as class replication; only the slot-changing ones write', () => {
    const writes = REPLICATION_COMMANDS.filter((c) => classifyReplicationCommand(`${c} x`)!.statements[0]!.writes);
    expect(writes).toEqual(['CREATE_REPLICATION_SLOT', 'ALTER_REPLICATION_SLOT', 'DROP_REPLICATION_SLOT']);
    for (const c of REPLICATION_COMMANDS) {
      expect(classifyReplicationCommand(c)!.statements).toEqual([{ cls: 'replication', writes: expect.any(Boolean), tables: [], functions: [], command: c }]);
    }
  });

  test('arbitrary text never throws', () => {
    fc.assert(fc.property(fc.string(), (text) => {
      const command = replicationCommandOf(text);
      expect(command === undefined || (REPLICATION_COMMANDS as readonly string[]).includes(command)).toBe(true);
    }));
  });
});

describe('classifyForSession', () => {
  test('on a replication session commands are class replication, other text is SQL', () => {
    expect(classifyForSession('DROP_REPLICATION_SLOT s', 'logical').statements[0]).toMatchObject({ cls: 'replication', command: 'DROP_REPLICATION_SLOT' });
    expect(classifyForSession('SHOW wal_segment_size', 'physical').statements[0]!.cls).toBe('replication');
    expect(classifyForSession('insert into t values (1)', 'logical').statements[0]!.cls).toBe('insert');
  });

  test('on a normal session the same text is SQL: SHOW is a setting, a replication keyword does not parse', () => {
    expect(classifyForSession('SHOW wal_segment_size', undefined).statements[0]!.cls).toBe('set');
    expect(classifyForSession('DROP_REPLICATION_SLOT s', undefined).statements[0]!.cls).toBe('unknown');
  });
});
