// Unit tests of the policy engine on HTTP requests (classified by protocols/http/request-class.ts):
// deny.methods and deny.paths refuse independently, allow.methods and allow.paths must both match
// in every policy that has them, read_only lets only GET/HEAD/OPTIONS through, path spellings do
// not escape a rule, and SQL statements are untouched by the HTTP keys.
import { describe, expect, test } from 'vitest';
import { classifyRequest } from '../../protocols/http/request-class.js';
import { compileRules, decideStatements, type PolicySubject } from './engine.js';
import { policySchema, type PolicyDocument } from './policy-schema.js';

const SUBJECT: PolicySubject = { binding: 'binding::/prod/web::inventory', service: 'service::/prod::inventory' };
const policy = (doc: Record<string, unknown>): PolicyDocument => policySchema.parse({ realm: 'binding::/prod/web', ...doc });
const decide = (policies: PolicyDocument[], text: string) => decideStatements(compileRules(policies, SUBJECT), [classifyRequest(text)]);

describe('HTTP request rules', () => {
  const guard = policy({ fqn: 'policy::/prod::inventory-guard', deny: { methods: ['delete'], paths: ['/admin/*'] } });

  test('deny.methods denies the method anywhere, deny.paths any method on the path', () => {
    expect(decide([guard], 'DELETE /items/1')).toMatchObject({ rule: 'deny.methods', policy: 'policy::/prod::inventory-guard', message: expect.stringContaining('method DELETE is denied') });
    expect(decide([guard], 'GET /admin/users')).toMatchObject({ rule: 'deny.paths', message: expect.stringContaining('path /admin/users is denied (pattern /admin/*)') });
    expect(decide([guard], 'GET /items/1')).toBeUndefined();
    expect(decide([guard], 'POST /items')).toBeUndefined();
    expect(decide([guard], 'GET /administrator')).toBeUndefined();
  });

  test('no spelling of a denied path escapes: encoded, doubled slashes, dot segments, query', () => {
    for (const text of ['GET /%61dmin/users', 'GET //admin/users', 'GET /public/../admin/users', 'GET /admin/users?x=/public', 'GET /./admin/x']) {
      expect(decide([guard], text)).toMatchObject({ rule: 'deny.paths' });
    }
  });

  test('allow lists must both match, in every policy that has them', () => {
    const allow = policy({ fqn: 'policy::/prod::allow', allow: { methods: ['GET', 'POST'], paths: ['/items', '/items/*'] } });
    expect(decide([allow], 'GET /items/3')).toBeUndefined();
    expect(decide([allow], 'POST /items')).toBeUndefined();
    expect(decide([allow], 'PUT /items/3')).toMatchObject({ rule: 'allow.methods' });
    expect(decide([allow], 'GET /orders')).toMatchObject({ rule: 'allow.paths' });
    const narrower = policy({ fqn: 'policy::/prod::narrower', realm: 'binding::/prod/web::inventory', allow: { methods: ['GET'] } });
    expect(decide([allow, narrower], 'POST /items')).toMatchObject({ rule: 'allow.methods', policy: 'policy::/prod::narrower' });
  });

  test('read_only lets GET, HEAD and OPTIONS through and nothing else', () => {
    const ro = policy({ fqn: 'policy::/prod::ro', read_only: true });
    for (const m of ['GET', 'HEAD', 'OPTIONS']) expect(decide([ro], `${m} /x`)).toBeUndefined();
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'PROPFIND']) expect(decide([ro], `${m} /x`)).toMatchObject({ rule: 'read_only' });
  });

  test('HTTP keys make the rules judge; SQL statements (no method) ignore them', () => {
    expect(compileRules([guard], SUBJECT).judges).toBe(true);
    expect(decideStatements(compileRules([guard], SUBJECT), [{ cls: 'delete', writes: true, tables: [], functions: [] }])).toBeUndefined();
  });

  test('the schema refuses a path pattern without a leading slash and an empty allow', () => {
    expect(policySchema.safeParse({ fqn: 'policy::/p::x', realm: '::/', deny: { paths: ['admin/*'] } }).success).toBe(false);
    expect(policySchema.safeParse({ fqn: 'policy::/p::x', realm: '::/', deny: { methods: ['GET /'] } }).success).toBe(false);
    expect(policySchema.safeParse({ fqn: 'policy::/p::x', realm: '::/', allow: {} }).success).toBe(false);
  });
});
