// The MySQL classifier gives PostgreSQL's class names, tables and functions for MySQL SQL, and
// 'unknown' (writing) for what node-sql-parser cannot parse.
import { describe, expect, it } from 'vitest';
import { classifyMysql, parseKill } from './sql-classify.js';

describe('classifyMysql', () => {
  it.each([
    ['select a from t', 'select', false],
    ['SELECT * FROM t FOR UPDATE', 'select', true],
    ['insert into t values (1)', 'insert', true],
    ['replace into t values (1)', 'insert', true],
    ['update t set a = 1', 'update', true],
    ['delete from t', 'delete', true],
    ['create table t (a int)', 'ddl', true],
    ['drop table t', 'ddl', true],
    ['begin', 'transaction', false],
    ['commit', 'transaction', false],
    ['set autocommit = 1', 'set', false],
    ['SET NAMES utf8mb4', 'set', false],
    ['show tables', 'utility', false],
    ['kill query 7', 'utility', false],
    ['load data local infile "x" into table t', 'copy_in', true],
    ['this is not sql', 'unknown', true],
  ])('%s -> %s', (sql, cls, writes) => {
    const [s] = classifyMysql(sql).statements;
    expect({ cls: s!.cls, writes: s!.writes }).toEqual({ cls, writes });
  });

  it('lists tables (with their database) and functions, aggregates included', () => {
    const [s] = classifyMysql('select sum(a), now(), db2.f(1) from t join db2.u on 1').statements;
    expect(s!.tables.sort()).toEqual(['db2.u', 't']);
    expect(s!.functions.sort()).toEqual(['db2.f', 'now', 'sum']);
  });

  it('gives one entry per statement of a multi-statement text', () => {
    expect(classifyMysql('select 1; delete from t').statements.map((s) => s.cls)).toEqual(['select', 'delete']);
  });

  it('returns the cached result for a repeated text', () => {
    expect(classifyMysql('select 42')).toBe(classifyMysql('select 42'));
  });

  it('parses KILL [QUERY|CONNECTION] <id>', () => {
    expect(parseKill('KILL QUERY 12')).toEqual({ id: 12, queryOnly: true });
    expect(parseKill('kill 5;')).toEqual({ id: 5, queryOnly: false });
    expect(parseKill('kill connection 5')).toEqual({ id: 5, queryOnly: false });
    expect(parseKill('kill me')).toBeUndefined();
  });
});
