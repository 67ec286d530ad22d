// Tests of the HTTP service and binding keys as the config loader reads them: the documented
// example normalizes (tokens kept only as SHA-256), and each bad value is refused with its line,
// path and reason, never quoting a token or an injected credential.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../control/config.js';

let dir: string;
let file: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-http-config-'));
  file = join(dir, 'sempipe.yaml');
  writeFileSync(join(dir, 'ca.crt'), 'placeholder\n');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE_LINES = [
  'services:', //                                        1
  '  - fqn: service::/prod::inventory', //               2
  '    protocol: http', //                               3
  '    upstream:', //                                    4
  '      url: https://inventory.internal:8443', //       5
  '      headers: { X-Api-Key: "${INVENTORY_KEY}" }', // 6
  '      ca: ca.crt', //                                 7
  'bindings:', //                                        8
  '  - fqn: binding::/prod/web::inventory', //           9
  '    service: service::/prod::inventory', //           10
  '    listen: 127.0.0.1:8081', //                       11
  '    auth: bearer', //                                 12
  '    clients: [ { token: job-token-1234567890 } ]', // 13
];

const ENV = { INVENTORY_KEY: 'k3y-v4lue' };

function edit(replacements: Record<number, string>, ...appended: string[]): string {
  return [...BASE_LINES.map((line, i) => replacements[i + 1] ?? line), ...appended].join('\n') + '\n';
}

function refused(text: string, line: number, path: string, reason: string | RegExp): ConfigError {
  let caught: unknown;
  try {
    parseConfig(text, file, ENV);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const err = caught as ConfigError;
  expect({ line: err.line, path: err.path }).toEqual({ line, path });
  if (typeof reason === 'string') expect(err.reason).toBe(reason);
  else expect(err.reason).toMatch(reason);
  return err;
}

describe('HTTP services and bindings in sempipe.yaml', () => {
  it('normalizes the documented example; the token is kept only as its SHA-256', () => {
    const config = parseConfig(edit({}), file, ENV);
    expect(config.services[0]).toEqual({
      fqn: 'service::/prod::inventory',
      protocol: 'http',
      upstream: {
        url: 'https://inventory.internal:8443/',
        headers: { 'X-Api-Key': 'k3y-v4lue' },
        ca: join(dir, 'ca.crt'),
        timeoutMs: 30_000,
        bodyTimeoutMs: 30_000,
        connections: 128,
      },
    });
    expect(config.bindings[0]).toEqual({
      protocol: 'http',
      fqn: 'binding::/prod/web::inventory',
      service: 'service::/prod::inventory',
      listen: [{ host: '127.0.0.1', port: 8081 }],
      auth: 'bearer',
      clients: [{ name: 'client-1', tokenSha256: createHash('sha256').update('job-token-1234567890').digest('hex') }],
      headerTimeoutMs: 10_000,
      idleTimeoutMs: 60_000,
    });
    expect(JSON.stringify(config)).not.toContain('job-token-1234567890');
  });

  it('takes the documented policy keys for HTTP (deny methods and paths)', () => {
    const config = parseConfig(
      edit({}, 'policies:', '  - fqn: policy::/prod::inventory-guard', '    realm: binding::/prod/web', '    deny: { methods: [DELETE], paths: ["/admin/*"] }'),
      file,
      ENV,
    );
    expect(config.policies[0]).toMatchObject({ deny: { methods: ['DELETE'], paths: ['/admin/*'] } });
  });

  it('takes basic or bearer credentials, token_sha256 clients, TLS and limits', () => {
    const hash = 'a'.repeat(64);
    const config = parseConfig(
      edit({
        6: '      basic: { user: svc, password: "${INVENTORY_KEY}" }',
        13: `    clients: [ { name: web, token_sha256: "${hash}" } ]\n    tls: { cert: ca.crt, key: ca.crt }\n    max_body_size: 1MiB\n    header_timeout: 2s\n    idle_timeout: 5s`,
      }),
      file,
      ENV,
    );
    expect(config.services[0]!.upstream).toMatchObject({ basic: { user: 'svc', password: 'k3y-v4lue' } });
    expect(config.bindings[0]).toMatchObject({
      clients: [{ name: 'web', tokenSha256: hash }],
      tls: { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.crt') },
      maxBodySize: 1024 * 1024,
      headerTimeoutMs: 2000,
      idleTimeoutMs: 5000,
    });
  });

  it('refuses a URL that is not http(s), carries credentials or a query', () => {
    refused(edit({ 5: '      url: ftp://inventory.internal' }), 5, 'services[0].upstream.url', 'the URL must start with http:// or https://');
    const err = refused(edit({ 5: '      url: https://u:s3cret@inventory.internal' }), 5, 'services[0].upstream.url', /must not carry credentials/);
    expect(err.message).not.toContain('s3cret');
    refused(edit({ 5: '      url: https://inventory.internal/?key=1' }), 5, 'services[0].upstream.url', 'the URL must not have a query or fragment');
  });

  it('refuses headers sempipe sets itself and values that could split a header, without quoting them', () => {
    refused(edit({ 6: '      headers: { Host: other }' }), 6, 'services[0].upstream.headers.Host', '"Host" is set by sempipe itself and cannot be injected');
    const err = refused(edit({ 6: '      headers: { X-Api-Key: "s3cret\\r\\nX-Evil: 1" }' }), 6, 'services[0].upstream.headers.X-Api-Key', 'the header value must not contain line breaks or control characters');
    expect(err.message).not.toContain('s3cret');
    refused(edit({ 6: '      basic: { user: a, password: b }\n      bearer: t' }), 7, 'services[0].upstream.bearer', 'use one of basic: or bearer:, not both');
  });

  it('refuses ca: for a plain http upstream', () => {
    refused(edit({ 5: '      url: http://inventory.internal' }), 7, 'services[0].upstream.ca', 'ca: applies to https:// upstreams only');
  });

  it('refuses bad clients without quoting tokens', () => {
    const short = refused(edit({ 13: '    clients: [ { token: sh0rt } ]' }), 13, 'bindings[0].clients[0].token', 'a token must have at least 16 characters');
    expect(short.message).not.toContain('sh0rt');
    refused(edit({ 13: '    clients: [ { token_sha256: "xyz" } ]' }), 13, 'bindings[0].clients[0].token_sha256', 'expected 64 lower-case hex digits (the SHA-256 of the token)');
    refused(edit({ 13: '    clients: [ { name: a } ]' }), 13, 'bindings[0].clients[0]', 'a client needs exactly one of token or token_sha256');
    const dup = refused(
      edit({ 13: '    clients: [ { name: a, token: job-token-1234567890 }, { name: b, token: job-token-1234567890 } ]' }),
      13,
      'bindings[0].clients[1]',
      'two clients have the same token',
    );
    expect(dup.message).not.toContain('job-token');
  });

  it('takes its protocol from the service: auth defaults to bearer, other auth methods and a bearer PostgreSQL binding are refused', () => {
    expect(parseConfig(edit({ 12: '' }), file, ENV).bindings[0]).toMatchObject({ protocol: 'http', auth: 'bearer' });
    refused(edit({ 12: '    auth: scram-sha-256' }), 12, 'bindings[0].auth', 'expected "bearer", got "scram-sha-256"');
    refused(edit({ 12: '    auth: oauth' }), 12, 'bindings[0].auth', 'expected "bearer", got "oauth"');
    refused(edit({ 3: '    protocol: postgres' }, ), 5, 'services[0].upstream', 'unknown key "url"');
    refused(edit({ 3: '    protocol: gopher' }), 3, 'services[0].protocol', 'expected "postgres" | "mysql" | "http", got "gopher"');
  });

  it('takes a list of listen addresses, Unix sockets among them, as PostgreSQL and MySQL bindings do', () => {
    const config = parseConfig(edit({ 11: `    listen: [ "127.0.0.1:8081", "unix:${join(dir, 'http.sock')}" ]\n    unix_socket_mode: "0770"` }), file, ENV);
    expect(config.bindings[0]).toMatchObject({ listen: [{ host: '127.0.0.1', port: 8081 }, { path: join(dir, 'http.sock') }], unixSocket: { mode: 0o770 } });
  });

  it('refuses PostgreSQL keys on an HTTP binding', () => {
    refused(edit({ 13: '    clients: [ { token: job-token-1234567890 } ]\n    database: appdb' }), 14, 'bindings[0]', 'unknown key "database"');
  });
});
