// Unit tests of FQN and realm parsing and of realm coverage.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { FqnError, parseFqn, parseRealm, realmCovers, realmDepth } from './fqn.js';

describe('parseFqn', () => {
  test('good names', () => {
    expect(parseFqn('job::/prod/billing::api')).toEqual({ type: 'job', namespace: ['prod', 'billing'], name: 'api', text: 'job::/prod/billing::api' });
    expect(parseFqn('service::/prod::orders')).toMatchObject({ type: 'service', namespace: ['prod'], name: 'orders' });
    expect(parseFqn('binding::/::root-binding')).toMatchObject({ namespace: [], name: 'root-binding' });
    expect(parseFqn('policy::/a.b/c_d/E-9::x.y_z-1', 'policy')).toMatchObject({ namespace: ['a.b', 'c_d', 'E-9'], name: 'x.y_z-1' });
    for (const type of ['job', 'service', 'binding', 'package', 'stager', 'route', 'policy']) {
      expect(parseFqn(`${type}::/ns::n`).type).toBe(type);
    }
  });

  test.each([
    ['', /empty/],
    ['service', /expected type::\/namespace::name/],
    ['service::/prod', /expected type::\/namespace::name/],
    ['service::/prod::orders::x', /expected type::\/namespace::name/],
    ['svc::/prod::orders', /unknown type "svc"/],
    ['Service::/prod::orders', /unknown type "Service"/],
    ['::/prod::orders', /unknown type ""/],
    ['service::prod::orders', /must start with "\/"/],
    ['service::/prod/::orders', /segment ""/],
    ['service:://prod::orders', /segment ""/],
    ['service::/pr od::orders', /segment "pr od"/],
    ['service::/prod/../x::orders', /segment "\.\." is not allowed/],
    ['service::/prod::', /the name must be/],
    ['service::/prod::or/ders', /the name must be/],
    ['service::/prod::ördérs', /the name must be/],
    ['service::/prod::..', /the name must be/],
    ['service:::/prod::orders', /must start with "\/"/],
    [' service::/prod::orders', /unknown type/],
    ['service::/prod::orders\n', /the name must be/],
  ])('%j is refused: %s', (text, why) => {
    expect(() => parseFqn(text)).toThrow(FqnError);
    expect(() => parseFqn(text)).toThrow(why);
    expect(() => parseFqn(text)).toThrow(JSON.stringify(text));
  });

  test('expectedType refuses another type', () => {
    expect(() => parseFqn('job::/prod::api', 'service')).toThrow(/expected a service, got a job/);
  });

  test('arbitrary strings either parse to a name that round-trips or raise FqnError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^(job|service|x)?(::)?(\/[a-z.]{0,3}){0,3}(::)?[a-z.]{0,3}$/)), (text) => {
        try {
          const f = parseFqn(text);
          expect(`${f.type}::/${f.namespace.join('/')}::${f.name}`).toBe(text);
        } catch (err) {
          expect(err).toBeInstanceOf(FqnError);
        }
      }),
    );
  });
});

describe('realms', () => {
  const orders = parseFqn('service::/prod::orders');
  const cache = parseFqn('service::/prod/eu::cache');
  const production = parseFqn('service::/production::db');
  const job = parseFqn('job::/prod::api');
  const root = parseFqn('service::/::top');

  test('parseRealm forms', () => {
    expect(parseRealm('::/')).toEqual({ namespace: [], text: '::/' });
    expect(parseRealm('::/prod')).toEqual({ namespace: ['prod'], text: '::/prod' });
    expect(parseRealm('service::/prod')).toEqual({ type: 'service', namespace: ['prod'], text: 'service::/prod' });
    expect(parseRealm('service::/')).toEqual({ type: 'service', namespace: [], text: 'service::/' });
    expect(parseRealm('service::/prod::orders')).toEqual({ type: 'service', namespace: ['prod'], name: 'orders', text: 'service::/prod::orders' });
  });

  test.each(['', '::', 'service', 'service::prod', '::/prod::orders', 'svc::/prod', 'service::/prod/', '::/a::b::c'])('bad realm %j', (text) => {
    expect(() => parseRealm(text)).toThrow(FqnError);
  });

  test('a namespace realm covers its namespace and those under it, segment by segment', () => {
    const prod = parseRealm('service::/prod');
    expect(realmCovers(prod, orders)).toBe(true);
    expect(realmCovers(prod, cache)).toBe(true);
    expect(realmCovers(prod, production)).toBe(false);
    expect(realmCovers(prod, job)).toBe(false);
    expect(realmCovers(prod, root)).toBe(false);
    expect(realmCovers(parseRealm('service::/prod/eu'), orders)).toBe(false);
    expect(realmCovers(parseRealm('service::/prod/eu'), cache)).toBe(true);
  });

  test('::/ covers everything; ::/prod every type under /prod', () => {
    for (const f of [orders, cache, production, job, root]) expect(realmCovers(parseRealm('::/'), f)).toBe(true);
    expect(realmCovers(parseRealm('::/prod'), job)).toBe(true);
    expect(realmCovers(parseRealm('::/prod'), cache)).toBe(true);
    expect(realmCovers(parseRealm('::/prod'), production)).toBe(false);
    expect(realmCovers(parseRealm('service::/'), root)).toBe(true);
    expect(realmCovers(parseRealm('service::/'), job)).toBe(false);
  });

  test('a full FQN as a realm covers exactly that resource', () => {
    const r = parseRealm('service::/prod::orders');
    expect(realmCovers(r, orders)).toBe(true);
    expect(realmCovers(r, parseFqn('service::/prod::orders2'))).toBe(false);
    expect(realmCovers(r, parseFqn('service::/prod/orders::x'))).toBe(false);
    expect(realmCovers(r, parseFqn('job::/prod::orders'))).toBe(false);
  });

  test('realmDepth orders the realms covering one FQN from widest to most specific', () => {
    const texts = ['service::/prod/eu::cache', '::/prod', 'service::/prod/eu', '::/', 'service::/prod', 'service::/', '::/prod/eu'];
    const covering = texts.map(parseRealm).filter((r) => realmCovers(r, cache));
    expect(covering).toHaveLength(texts.length);
    const ordered = [...covering].sort((a, b) => realmDepth(a) - realmDepth(b)).map((r) => r.text);
    expect(ordered).toEqual(['::/', 'service::/', '::/prod', 'service::/prod', '::/prod/eu', 'service::/prod/eu', 'service::/prod/eu::cache']);
    expect(new Set(covering.map(realmDepth)).size).toBe(covering.length);
  });
});
