// Unit tests of the policy document schema: the documented example normalizes, every kind of bad
// input is refused with its field path (validatePolicy for the API, ConfigError with file:line for
// the config file), duplicate policy FQNs are refused, and state_dir resolves beside the file.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { ConfigError, parseConfig } from '../config.js';
import { parseRate, validatePolicy } from './policy-schema.js';

const EXAMPLE = {
  fqn: 'policy::/prod::billing-guard',
  realm: 'binding::/prod/billing',
  allow: { classes: ['select', 'insert', 'update', 'delete', 'transaction', 'set'] },
  deny: { classes: ['ddl', 'dcl'], functions: ['pg_read_file', 'dblink'], tables: ['secrets.*'] },
  read_only: false,
  limits: { max_rows: 10000, statement_timeout: '5s', rate: '200/s', max_sessions: 20 },
  hooks: [{ classes: ['delete'], url: 'http://127.0.0.1:9000/hook', timeout: '500ms', on_error: 'deny' }],
  notifications: [{ classes: ['all'], url: 'http://127.0.0.1:9000/notify' }],
};

describe('validatePolicy', () => {
  test('the documented example normalizes to camelCase, milliseconds and rates per second', () => {
    const v = validatePolicy(EXAMPLE);
    expect(v).toEqual({
      success: true,
      policy: {
        fqn: 'policy::/prod::billing-guard',
        realm: 'binding::/prod/billing',
        allow: { classes: ['select', 'insert', 'update', 'delete', 'transaction', 'set'] },
        deny: { classes: ['ddl', 'dcl'], functions: ['pg_read_file', 'dblink'], tables: ['secrets.*'], methods: [], paths: [] },
        readOnly: false,
        sideEffectFunctions: [],
        limits: { maxRows: 10000, statementTimeoutMs: 5000, rate: 200, maxSessions: 20 },
        hooks: [{ classes: ['delete'], url: 'http://127.0.0.1:9000/hook', timeoutMs: 500, onError: 'deny' }],
        notifications: [{ classes: ['all'], url: 'http://127.0.0.1:9000/notify' }],
      },
    });
  });

  test('a minimal policy gets empty rules', () => {
    const v = validatePolicy({ fqn: 'policy::/::all', realm: '::/' });
    expect(v.success && v.policy).toMatchObject({ deny: { classes: [], functions: [], tables: [] }, readOnly: false, limits: {}, hooks: [] });
  });

  test.each([
    [{ ...EXAMPLE, extra: 1 }, ['extra'], 'unknown key "extra"'],
    [{ ...EXAMPLE, deny: { classes: ['ddl', 'dropping'] } }, ['deny', 'classes', 1], ''],
    [{ ...EXAMPLE, fqn: 'service::/prod::x' }, ['fqn'], 'expected a policy'],
    [{ ...EXAMPLE, realm: 'binding:/prod' }, ['realm'], 'invalid realm'],
    [{ ...EXAMPLE, limits: { rate: 'fast' } }, ['limits', 'rate'], 'invalid rate'],
    [{ ...EXAMPLE, limits: { max_rows: 0 } }, ['limits', 'max_rows'], 'at least 1'],
    [{ ...EXAMPLE, limits: { statement_timeout: '5 parsecs' } }, ['limits', 'statement_timeout'], 'invalid duration'],
    [{ ...EXAMPLE, hooks: [{ classes: ['delete'], url: 'ftp://x', on_error: 'deny' }] }, ['hooks', 0, 'url'], 'http'],
    [{ ...EXAMPLE, hooks: [{ classes: ['delete'], url: 'http://x/' }] }, ['hooks', 0, 'on_error'], ''],
    [{ ...EXAMPLE, deny: { tables: ['a.b.c'] } }, ['deny', 'tables', 0], 'schema.*'],
    [{ ...EXAMPLE, allow: { classes: ['select'], tables: [] } }, ['allow', 'tables'], 'unknown key'],
    [{ ...EXAMPLE, allow: {} }, ['allow'], 'name "classes", "replication", "methods" or "paths"'],
    [{ ...EXAMPLE, allow: { replication: ['streaming'] } }, ['allow', 'replication', 0], ''],
    [{ ...EXAMPLE, deny: { replication_commands: ['DROP_SLOT'] } }, ['deny', 'replication_commands', 0], ''],
  ])('refuses %j at its path', (input, path, message) => {
    const v = validatePolicy(input);
    expect(v.success).toBe(false);
    if (v.success) return;
    expect(v.issues.map((i) => i.path)).toContainEqual(path);
    expect(v.issues.find((i) => JSON.stringify(i.path) === JSON.stringify(path))!.message).toContain(message);
  });

  test('replication: allow.replication alone restricts no class; deny.replication_commands are upper-cased', () => {
    const v = validatePolicy({
      fqn: 'policy::/prod::cdc',
      realm: 'binding::/prod/cdc',
      allow: { replication: ['logical'] },
      deny: { replication_commands: ['drop_replication_slot', 'BASE_BACKUP'] },
    });
    expect(v.success && v.policy.allow).toEqual({ replication: ['logical'] });
    expect(v.success && v.policy.deny).toEqual({ classes: [], functions: [], tables: [], methods: [], paths: [], replicationCommands: ['DROP_REPLICATION_SLOT', 'BASE_BACKUP'] });
    const both = validatePolicy({ fqn: 'policy::/prod::cdc', realm: '::/', allow: { classes: ['select', 'replication'], replication: ['physical', 'logical'] } });
    expect(both.success && both.policy.allow).toEqual({ classes: ['select', 'replication'], replication: ['physical', 'logical'] });
  });

  test('arbitrary input never throws', () => {
    fc.assert(
      fc.property(fc.anything(), (input) => {
        expect(typeof validatePolicy(input).success).toBe('boolean');
      }),
    );
  });

  test('rates', () => {
    expect(parseRate('200/s')).toBe(200);
    expect(parseRate('600/m')).toBe(10);
    expect(parseRate('36/h')).toBe(0.01);
    expect(parseRate(2.5)).toBe(2.5);
    expect(() => parseRate('0/s')).toThrow(/more than 0/);
    expect(() => parseRate(-1)).toThrow();
  });
});

describe('policies in the config file', () => {
  const base = `services:
  - fqn: service::/prod::orders
    protocol: postgres
    upstream: { host: 127.0.0.1, database: orders, user: owner }
policies:
  - fqn: policy::/prod::a
    realm: service::/prod
    deny: { classes: [ddl] }
`;

  test('policies are normalized and state_dir defaults beside the file', () => {
    const c = parseConfig(base, '/etc/sempipe/sempipe.yaml');
    expect(c.policies).toHaveLength(1);
    expect(c.policies[0]).toMatchObject({ fqn: 'policy::/prod::a', deny: { classes: ['ddl'] } });
    expect(c.stateDir).toBe('/etc/sempipe/sempipe-data');
    expect(parseConfig(`${base}state_dir: /var/lib/sempipe\n`, '/etc/sempipe/sempipe.yaml').stateDir).toBe('/var/lib/sempipe');
    expect(parseConfig(`${base}state_dir: data\n`, '/etc/sempipe/sempipe.yaml').stateDir).toBe('/etc/sempipe/data');
  });

  function refusal(text: string): ConfigError {
    try {
      parseConfig(text, '/etc/sempipe/sempipe.yaml');
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error('expected a ConfigError');
  }

  test('a bad class is refused with file, line and path', () => {
    const err = refusal(base.replace('classes: [ddl]', 'classes: [ddl, nope]'));
    expect(err.line).toBe(8);
    expect(err.path).toBe('policies[0].deny.classes[1]');
  });

  test('an unknown key and a malformed realm are refused with their lines', () => {
    expect(refusal(base.replace('    deny:', '    deni:'))).toMatchObject({ line: 8, path: 'policies[0]', reason: 'unknown key "deni"' });
    const realm = refusal(base.replace('realm: service::/prod', 'realm: service:/prod'));
    expect(realm).toMatchObject({ line: 7, path: 'policies[0].realm' });
    expect(realm.reason).toContain('invalid realm');
  });

  test('duplicate policy FQNs are refused', () => {
    const err = refusal(`${base}  - fqn: policy::/prod::a\n    realm: ::/\n`);
    expect(err).toMatchObject({ line: 9, path: 'policies[1].fqn' });
    expect(err.reason).toContain('duplicate FQN "policy::/prod::a"');
  });
});
