// The `protocol: mysql` half of the config union: the example normalizes (binding database
// mapped, defaults filled in), and keys of the wrong protocol are refused with line, path and reason.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, type ServiceConfig } from '../../control/config.js';

const EXAMPLE = `services:
  - fqn: service::/prod::shop
    protocol: mysql
    upstream: { host: 127.0.0.1, database: appdb, user: shop_owner, password: "\${SHOP_PASSWORD}", tls: disable }
  - fqn: service::/prod::orders
    protocol: postgres
    upstream: { host: 127.0.0.1, database: orders, user: owner }
bindings:
  - fqn: binding::/prod/web::shop
    service: service::/prod::shop
    listen: 127.0.0.1:3307
    database: shop
    auth: mysql_native_password
    clients: [ { user: web, password: web-secret } ]
  - fqn: binding::/prod/web::shop-default
    service: service::/prod::shop
    listen: 127.0.0.1:3308
    clients: [ { user: web, password: web-secret } ]
  - fqn: binding::/prod/web::orders
    service: service::/prod::orders
    listen: 127.0.0.1:6432
    clients: [ { user: api, password: api-secret } ]
`;

function refused(text: string): ConfigError {
  try {
    parseConfig(text, '/etc/sempipe.yaml', { SHOP_PASSWORD: 's3cret' });
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('the config was accepted');
}

describe('protocol: mysql', () => {
  it('normalizes the example: the binding takes its service\'s protocol, port 3306 and caching_sha2_password by default', () => {
    const config = parseConfig(EXAMPLE, '/etc/sempipe.yaml', { SHOP_PASSWORD: 's3cret' });
    expect(config.services[0]).toEqual({
      fqn: 'service::/prod::shop',
      protocol: 'mysql',
      upstream: { host: '127.0.0.1', port: 3306, database: 'appdb', user: 'shop_owner', password: 's3cret', tls: 'disable' },
    });
    expect((config.services[1] as ServiceConfig).upstream.port).toBe(5432);
    expect(config.bindings[0]).toEqual({
      protocol: 'mysql',
      fqn: 'binding::/prod/web::shop',
      service: 'service::/prod::shop',
      listen: [{ host: '127.0.0.1', port: 3307 }],
      database: 'shop',
      auth: 'mysql_native_password',
      clients: [{ user: 'web', password: 'web-secret' }],
    });
    expect(config.bindings[1]).toMatchObject({ protocol: 'mysql', database: 'appdb', auth: 'caching_sha2_password' });
    expect(config.bindings[2]).toMatchObject({ fqn: 'binding::/prod/web::orders', auth: 'scram-sha-256' });
    expect(config.bindings[2]!.protocol).toBeUndefined();
  });

  it.each([
    ['a PostgreSQL auth method on a MySQL binding', 'auth: mysql_native_password', 'auth: scram-sha-256', 13, 'bindings[0].auth', 'expected "caching_sha2_password" | "mysql_native_password", got "scram-sha-256"'],
    ['a MySQL auth method on a PostgreSQL binding', "clients: [ { user: api, password: api-secret } ]", "auth: caching_sha2_password\n    clients: [ { user: api, password: api-secret } ]", 22, 'bindings[2].auth', 'expected "scram-sha-256" | "md5" | "password", got "caching_sha2_password"'],
    ['a stored SCRAM verifier on a MySQL binding', 'clients: [ { user: web, password: web-secret } ]\n  - fqn: binding::/prod/web::shop-default', 'clients: [ { user: web, verifier: x } ]\n  - fqn: binding::/prod/web::shop-default', 14, 'bindings[0].clients[0]', 'unknown key "verifier"'],
    ['a binding protocol that differs from nothing sempipe speaks', 'database: shop', 'protocol: oracle', 12, 'bindings[0].protocol', 'expected "postgres" | "mysql" | "http", got "oracle"'],
    ['a user name longer than MySQL allows', 'user: shop_owner', `user: ${'u'.repeat(65)}`, 4, 'services[0].upstream.user', 'must be at most 64 characters'],
    ['verify-full without a CA', 'tls: disable', 'tls: verify-full', 4, 'services[0].upstream.tls', 'tls "verify-full" needs ca: (the CA certificate file that signed the server\'s certificate)'],
  ])('refuses %s', (_what, from, to, line, path, reason) => {
    const err = refused(EXAMPLE.replace(from, to));
    expect({ line: err.line, path: err.path, reason: err.reason }).toEqual({ line, path, reason });
  });

  it('refuses a binding whose explicit protocol differs from its service\'s keys', () => {
    const err = refused(EXAMPLE.replace('    database: shop\n', '    protocol: postgres\n'));
    expect(err.path).toBe('bindings[0].auth');
  });
});
