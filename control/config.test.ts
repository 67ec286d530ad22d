// Tests of the config loader: the documented example normalizes as specified, and every kind of bad
// file is refused with the exact line, path and reason, without quoting secrets.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, formatHostPort, loadConfig, parseConfig, type ServiceConfig, type SempipeConfig } from './config.js';

/** A real SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802 key derivation). */
function scramVerifier(password: string, iterations = 4096): string {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const storedKey = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

let dir: string;
let file: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-config-'));
  file = join(dir, 'sempipe.yaml');
  // The loader only checks that these exist and are readable; it does not parse them.
  for (const name of ['ca.crt', 'server.crt', 'server.key']) writeFileSync(join(dir, name), `${name} placeholder\n`);
  mkdirSync(join(dir, 'certs'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

// Line numbers of BASE are the array index + 1; tests replace whole lines so that the expected line
// of each error can be read off this listing.
const BASE_LINES = [
  'services:', //                                   1
  '  - fqn: service::/prod::orders', //             2
  '    protocol: postgres', //                      3
  '    upstream:', //                               4
  '      host: 127.0.0.1', //                       5
  '      port: 5432', //                            6
  '      database: appdb', //                       7
  '      user: owner', //                           8
  'bindings:', //                                   9
  '  - fqn: binding::/prod/billing::api-orders', // 10
  '    service: service::/prod::orders', //         11
  '    listen: 127.0.0.1:6432', //                  12
  '    clients:', //                                13
  '      - user: api', //                           14
  '        password: api-secret', //                15
];

/** BASE with the given 1-based lines replaced (a replacement may span lines) and lines appended. */
function edit(replacements: Record<number, string>, ...appended: string[]): string {
  const lines = BASE_LINES.map((line, i) => replacements[i + 1] ?? line);
  return [...lines, ...appended].join('\n') + '\n';
}

const SECOND_BINDING = [
  '  - fqn: binding::/prod/billing::api-orders-2', // 16
  '    service: service::/prod::orders', //           17
  '    listen: 127.0.0.1:6433', //                    18
  '    clients:', //                                  19
  '      - user: api', //                             20
  '        password: other-secret', //                21
];

function refusal(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(text, file, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('the config was accepted');
}

function expectRefused(text: string, line: number | undefined, path: string, reason: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  const err = refusal(text, env);
  expect({ file: err.file, line: err.line, path: err.path, reason: err.reason }).toEqual({ file, line, path, reason });
  const where = line === undefined ? file : `${file}:${line}`;
  expect(err.message).toBe(path === '' ? `${where}: ${reason}` : `${where}: ${path}: ${reason}`);
  expect(err.name).toBe('ConfigError');
  return err;
}

describe('a valid file', () => {
  it('normalizes the documented example, with ${VAR} from the environment', () => {
    const example = `admin:
  listen: 127.0.0.1:9187            # /metrics, /healthz, /readyz (and the control API later)
  token: \${ADMIN_TOKEN}             # optional
workers: 2                          # optional; default: number of CPU cores ("auto" also allowed)
limits:                             # optional, all have defaults
  max_message_size: 64MiB           # default 64MiB; bytes as a number or "512KiB"/"64MiB"/"1GiB"/"100kB"
  auth_timeout: 10s                 # default 10s; durations as "500ms", "10s", "2m", or a number of seconds
  connect_timeout: 10s              # default 10s (upstream connect + auth)
  cancel_grace: 500ms               # default 500ms; a statement a limit cancelled must be answered within this, else FATAL 08006
  drain_timeout: 30s                # default 30s (SIGTERM drain)
  upstream_idle_timeout: 60s        # default 60s; a reset upstream connection waits this long for the next session (0: no reuse)
  upstream_idle_max: 20             # default 20 idle upstream connections per worker, server, role and startup parameters
  upstream_check_delay: 30s         # default 30s; a connection idle longer answers an empty query before reuse (0: always)
audit:                              # optional
  enabled: true                     # default true
  max_statement_length: 2048        # default 2048 characters; longer statements are truncated
  destination: stdout               # "stdout" (default) | "stderr" | a file path (relative to the config file)
services:
  - fqn: service::/prod::orders
    protocol: postgres
    upstream:
      host: 127.0.0.1
      port: 5432
      database: appdb
      user: upstream_owner
      password: \${ORDERS_PASSWORD}  # \${VAR} is read from the environment; unset -> refuse to start
      tls: prefer                   # disable | prefer | require | verify-full (with ca: file)
      ca: ca.crt                    # optional; path relative to the config file's directory
bindings:
  - fqn: binding::/prod/billing::api-orders
    service: service::/prod::orders
    listen: 127.0.0.1:6432
    database: orders                # the name clients connect to; default: the upstream database
    auth: scram-sha-256             # scram-sha-256 | md5 | password ; default scram-sha-256
    allow_password_without_tls: false   # cleartext \`password\` auth is refused on a non-TLS connection unless true
    clients:
      - user: api
        password: api-secret        # or \`verifier: SCRAM-SHA-256$4096:<salt>$<stored>:<server>\`
    tls: { cert: server.crt, key: server.key, required: false }   # optional; paths relative to the config file
`;
    writeFileSync(file, example);
    const config = loadConfig(file, { ADMIN_TOKEN: 'admin-token-1', ORDERS_PASSWORD: 'upstream-secret' });
    const expected: SempipeConfig = {
      file,
      admin: { listen: { host: '127.0.0.1', port: 9187 }, token: 'admin-token-1' },
      workers: 2,
      limits: { maxMessageSize: 64 * 1024 * 1024, authTimeoutMs: 10_000, connectTimeoutMs: 10_000, cancelGraceMs: 500, drainTimeoutMs: 30_000, upstreamIdleTimeoutMs: 60_000, upstreamIdleMax: 20, upstreamCheckDelayMs: 30_000, maxPendingAuth: 2048 },
      audit: { enabled: true, maxStatementLength: 2048, destination: 'stdout' },
      services: [
        {
          fqn: 'service::/prod::orders',
          protocol: 'postgres',
          upstream: {
            host: '127.0.0.1',
            port: 5432,
            database: 'appdb',
            user: 'upstream_owner',
            password: 'upstream-secret',
            tls: 'prefer',
            tlsNegotiation: 'postgres',
            ca: join(dir, 'ca.crt'),
          },
        },
      ],
      bindings: [
        {
          fqn: 'binding::/prod/billing::api-orders',
          service: 'service::/prod::orders',
          listen: [{ host: '127.0.0.1', port: 6432 }],
          database: 'orders',
          auth: 'scram-sha-256',
          allowPasswordWithoutTls: false,
          clients: [{ user: 'api', password: 'api-secret' }],
          tls: { cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), required: false },
        },
      ],
      policies: [],
      stateDir: join(dir, 'sempipe-data'),
    };
    expect(config).toEqual(expected);
  });

  it('fills in every default', () => {
    const config = parseConfig(edit({}), file, {});
    expect(config.admin).toEqual({ listen: { host: '127.0.0.1', port: 9187 } });
    expect('workers' in config).toBe(false);
    expect(config.limits).toEqual({ maxMessageSize: 67_108_864, authTimeoutMs: 10_000, connectTimeoutMs: 10_000, cancelGraceMs: 500, drainTimeoutMs: 30_000, upstreamIdleTimeoutMs: 60_000, upstreamIdleMax: 20, upstreamCheckDelayMs: 30_000, maxPendingAuth: 2048 });
    expect(config.audit).toEqual({ enabled: true, maxStatementLength: 2048, destination: 'stdout' });
    expect(config.services[0]!.upstream).toEqual({ host: '127.0.0.1', port: 5432, database: 'appdb', user: 'owner', tls: 'prefer', tlsNegotiation: 'postgres' });
    expect(config.bindings[0]).toEqual({
      fqn: 'binding::/prod/billing::api-orders',
      service: 'service::/prod::orders',
      listen: [{ host: '127.0.0.1', port: 6432 }],
      database: 'appdb',
      auth: 'scram-sha-256',
      allowPasswordWithoutTls: false,
      clients: [{ user: 'api', password: 'api-secret' }],
    });
  });

  it('reads Unix socket addresses beside TCP ones, relative paths against the config file, mode and group', () => {
    const text = edit({ 12: '    listen: [127.0.0.1:6432, "unix:run/.s.PGSQL.6432", "unix:/tmp/other/.s.PGSQL.7000"]' }, '    unix_socket_mode: 0770', '    unix_socket_group: sempipe');
    const config = parseConfig(text, file, {});
    expect(config.bindings[0]).toMatchObject({
      listen: [{ host: '127.0.0.1', port: 6432 }, { path: join(dir, 'run/.s.PGSQL.6432') }, { path: '/tmp/other/.s.PGSQL.7000' }],
      unixSocket: { mode: 0o770, group: 'sempipe' },
    });
    const quoted = parseConfig(edit({ 12: '    listen: "unix:/tmp/s/.s.PGSQL.6432"' }, '    unix_socket_mode: "0660"', '    unix_socket_group: 1234'), file, {});
    expect(quoted.bindings[0]).toMatchObject({ listen: [{ path: '/tmp/s/.s.PGSQL.6432' }], unixSocket: { mode: 0o660, group: '1234' } });
    // Defaults: PostgreSQL's 0777 (authentication still applies), the process's group.
    expect(parseConfig(edit({ 12: '    listen: unix:/tmp/s/.s.PGSQL.6432' }), file, {}).bindings[0]!.unixSocket).toEqual({ mode: 0o777 });
  });

  it('reads other units, file destinations, verifiers, IPv6 listeners and values from the environment', () => {
    const verifier = scramVerifier('pw');
    const text = edit(
      { 6: '      port: ${PG_PORT}', 12: '    listen: "[::1]:6432"', 15: `        verifier: ${verifier}` },
      ...SECOND_BINDING.map((line) => line.replace('127.0.0.1:6433', 'localhost:6432')),
      '    auth: md5',
      '    database: "${DB_PREFIX}-orders"',
      '    tls: { cert: "${CERT_DIR}/../server.crt", key: server.key, required: "${TLS_REQUIRED}" }',
      'workers: auto',
      'limits:',
      '  max_message_size: 100kB',
      '  auth_timeout: 500ms',
      '  connect_timeout: 2',
      '  cancel_grace: 250ms',
      '  drain_timeout: 0',
      '  upstream_idle_timeout: 2m',
      '  upstream_idle_max: 0',
      '  upstream_check_delay: 0',
      '  max_pending_auth: "${PENDING}"',
      'audit:',
      '  enabled: false',
      '  max_statement_length: "${AUDIT_LEN}"',
      '  destination: logs/audit.jsonl',
      'admin:',
      '  token: "pre-${TOKEN}-$${NOT_A_VAR}"',
    );
    const config = parseConfig(text, file, {
      PG_PORT: '5433',
      DB_PREFIX: 'eu',
      CERT_DIR: 'certs',
      TLS_REQUIRED: 'true',
      AUDIT_LEN: '100',
      TOKEN: 'abc',
      PENDING: '0',
    });
    expect((config.services[0] as ServiceConfig).upstream.port).toBe(5433);
    expect(config.bindings[0]!.listen).toEqual([{ host: '::1', port: 6432 }]);
    expect(config.bindings[0]!.clients).toEqual([{ user: 'api', verifier }]);
    // localhost:6432 and [::1]:6432 are compared literally, so they do not conflict.
    expect(config.bindings[1]).toMatchObject({
      listen: [{ host: 'localhost', port: 6432 }],
      auth: 'md5',
      database: 'eu-orders',
      tls: { cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), required: true },
    });
    expect('workers' in config).toBe(false);
    expect(config.limits).toEqual({ maxMessageSize: 100_000, authTimeoutMs: 500, connectTimeoutMs: 2000, cancelGraceMs: 250, drainTimeoutMs: 0, upstreamIdleTimeoutMs: 120_000, upstreamIdleMax: 0, upstreamCheckDelayMs: 0, maxPendingAuth: 0 });
    expect(config.audit).toEqual({ enabled: false, maxStatementLength: 100, destination: join(dir, 'logs/audit.jsonl') });
    expect(config.admin).toEqual({ listen: { host: '127.0.0.1', port: 9187 }, token: 'pre-abc-${NOT_A_VAR}' });
  });

  it('reads auth.salt_secret, from the environment too; absent, the config has none (the primary fills it in)', () => {
    const secret = 'x'.repeat(31) + 'y';
    expect(parseConfig(edit({}, 'auth:', '  salt_secret: "${SALT}"'), file, { SALT: secret }).saltSecret).toBe(secret);
    expect('saltSecret' in parseConfig(edit({}), file, {})).toBe(false);
  });

  it('follows YAML aliases, substituting ${VAR} once in the anchored value', () => {
    const second = SECOND_BINDING.slice(0, 3).concat('    clients: *clients');
    const config = parseConfig(edit({ 13: '    clients: &clients', 15: '        password: ${API_PASSWORD}' }, ...second), file, { API_PASSWORD: 'from-env' });
    expect(config.bindings.map((b) => b.clients)).toEqual([[{ user: 'api', password: 'from-env' }], [{ user: 'api', password: 'from-env' }]]);
  });

  it('accepts cleartext password auth without TLS only when allowed explicitly', () => {
    const config = parseConfig(edit({}, '    auth: password', '    allow_password_without_tls: true'), file, {});
    expect(config.bindings[0]).toMatchObject({ auth: 'password', allowPasswordWithoutTls: true });
  });

  it('accepts the root namespace and every allowed FQN character', () => {
    const text = edit({ 2: '  - fqn: service::/::orders.v2_x-y', 11: '    service: service::/::orders.v2_x-y', 10: '  - fqn: binding::/a.b/c_d/E-9::api' });
    expect(parseConfig(text, file, {}).bindings[0]).toMatchObject({ fqn: 'binding::/a.b/c_d/E-9::api', service: 'service::/::orders.v2_x-y' });
  });

  it('formats addresses the way listeners are compared', () => {
    expect(formatHostPort({ host: '127.0.0.1', port: 6432 })).toBe('127.0.0.1:6432');
    expect(formatHostPort({ host: '::1', port: 6432 })).toBe('[::1]:6432');
  });
});

describe('a bad file is refused with file, line, path and reason', () => {
  it('YAML syntax error', () => {
    expectRefused(edit({ 5: '      host: 127.0.0.1: 5432' }), 5, '', 'Nested mappings are not allowed in compact mappings');
  });

  it('YAML syntax error does not quote the offending token', () => {
    const err = expectRefused(edit({}, ']s3cret'), 16, '', 'Unexpected flow-seq-end token in YAML stream');
    expect(err.message).not.toContain('s3cret');
  });

  it('YAML duplicate key', () => {
    expectRefused(edit({ 7: '      database: appdb\n      database: other' }), 8, '', 'Map keys must be unique');
  });

  it('empty file', () => {
    expectRefused('# nothing here\n', undefined, '', 'the file is empty; expected a mapping with services: and bindings:');
  });

  it('a list at the top level', () => {
    expectRefused('- services\n', 1, '', 'expected a mapping, got a list');
  });

  it('unknown key', () => {
    const err = expectRefused(edit({ 12: '    listn: 127.0.0.1:6432' }), 12, 'bindings[0]', 'unknown key "listn"');
    expect(err.message).toBe(`${file}:12: bindings[0]: unknown key "listn"`);
  });

  it('unknown key at the top level', () => {
    expectRefused(edit({}, 'polices: []'), 16, '', 'unknown key "polices"');
  });

  it('unknown key inside a flow mapping', () => {
    expectRefused(edit({}, '    tls: { cert: server.crt, key: server.key, requird: true }'), 16, 'bindings[0].tls', 'unknown key "requird"');
  });

  it('missing required key', () => {
    expectRefused(edit({ 8: '      password: pw' }), 4, 'services[0].upstream.user', 'required key is missing');
  });

  it('reports the earliest line among several problems of the schema', () => {
    expectRefused(edit({ 6: '      port: abc', 15: '        password: 12' }, 'polices: []'), 6, 'services[0].upstream.port', 'expected a whole number 1..65535, got "abc"');
  });

  it('reports unset variables before problems of the schema, since values come from them', () => {
    expectRefused(edit({ 6: '      port: abc', 15: '        password: ${UNSET}' }), 15, 'bindings[0].clients[0].password', 'environment variable UNSET is not set');
  });

  describe('wrong type', () => {
    it.each([
      [{ 13: '    clients: api', 14: '', 15: '' }, 13, 'bindings[0].clients', 'expected a list, got a string'],
      [{ 1: 'services: 3', 2: '', 3: '', 4: '', 5: '', 6: '', 7: '', 8: '' }, 1, 'services', 'expected a list, got a number'],
      [{ 4: '    upstream: [a]', 5: '', 6: '', 7: '', 8: '' }, 4, 'services[0].upstream', 'expected a mapping, got a list'],
      [{ 4: '    upstream:', 5: '', 6: '', 7: '', 8: '' }, 4, 'services[0].upstream', 'expected a mapping, got an empty value'],
      [{ 6: '      port: [5432]' }, 6, 'services[0].upstream.port', 'expected a whole number 1..65535'],
      [{ 6: '      port: 70000' }, 6, 'services[0].upstream.port', 'expected a whole number 1..65535, got 70000'],
      [{ 3: '    protocol: oracle' }, 3, 'services[0].protocol', 'expected "postgres" | "mysql" | "http", got "oracle"'],
      [{ 5: '      host: 127' }, 5, 'services[0].upstream.host', 'expected a string, got a number (quote the value to make it a string)'],
      [{ 5: '      host: ""' }, 5, 'services[0].upstream.host', 'must not be empty'],
    ])('%j', (replacements, line, path, reason) => {
      expectRefused(edit(replacements), line, path, reason);
    });

    it.each([
      ['workers: many', 'workers', 'expected "auto" or a whole number 1..1024, got "many"'],
      ['workers: 0', 'workers', 'expected "auto" or a whole number 1..1024, got 0'],
      ['limits: { auth_timeout: soon }', 'limits.auth_timeout', 'invalid duration "soon": expected a number with a unit, e.g. "500ms", "10s", "2m"'],
      ['limits: { auth_timeout: 0 }', 'limits.auth_timeout', 'must be at least 1ms'],
      ['limits: { connect_timeout: 30d }', 'limits.connect_timeout', 'must be at most 2147483647ms (about 24.8 days)'],
      ['limits: { drain_timeout: true }', 'limits.drain_timeout', 'expected a duration such as "500ms", "10s", "2m" or a number of seconds'],
      ['limits: { max_message_size: 64KB }', 'limits.max_message_size', 'invalid size "64KB": unknown unit "KB" (ambiguous: write kB/MB/GB for powers of 1000 or KiB/MiB/GiB for powers of 1024)'],
      ['limits: { max_message_size: 0 }', 'limits.max_message_size', 'must be more than 0 bytes'],
      ['limits: { max_pending_auth: -1 }', 'limits.max_pending_auth', 'expected a whole number 0..10000000, got -1'],
      ['limits: { max_pending_auth: lots }', 'limits.max_pending_auth', 'expected a whole number 0..10000000, got "lots"'],
      ['auth: { salt_secret: short }', 'auth.salt_secret', 'must be at least 32 characters (e.g. the output of `openssl rand -base64 32`)'],
      ['auth: { mock_secret: abc }', 'auth', 'unknown key "mock_secret"'],
      ['audit: { enabled: yes }', 'audit.enabled', 'expected true or false'],
      ['audit: { max_statement_length: -1 }', 'audit.max_statement_length', 'expected a whole number 1..1000000, got -1'],
      ['admin: { token: "" }', 'admin.token', 'must not be empty'],
    ])('%s', (line16, path, reason) => {
      expectRefused(edit({}, line16), 16, path, reason);
    });

    it('never quotes a password of the wrong type', () => {
      const err = expectRefused(edit({ 15: '        password: 12345' }), 15, 'bindings[0].clients[0].password', 'expected a string, got a number (quote the value to make it a string)');
      expect(err.message).not.toContain('12345');
    });
  });

  describe('environment variables', () => {
    it('unset variable', () => {
      expectRefused(edit({ 15: '        password: ${API_PASSWORD}' }), 15, 'bindings[0].clients[0].password', 'environment variable API_PASSWORD is not set');
    });

    it('unset variable inside a quoted string', () => {
      expectRefused(edit({ 5: '      host: "db-${REGION}.internal"' }), 5, 'services[0].upstream.host', 'environment variable REGION is not set', { OTHER: 'x' });
    });

    it('malformed reference', () => {
      expectRefused(
        edit({ 15: '        password: "pa${ss"' }),
        15,
        'bindings[0].clients[0].password',
        'malformed variable reference (expected ${NAME} with NAME of A-Z a-z 0-9 _, or $${ for a literal ${)',
      );
    });

    it('an unquoted reference in a flow mapping is a YAML error', () => {
      expectRefused(edit({}, '    tls: { cert: ${CERT}, key: server.key }'), 16, '', 'Unexpected flow-map-start at node end', { CERT: 'server.crt' });
    });

    it('a variable set to a value of the wrong kind is refused like a literal one', () => {
      expectRefused(edit({ 6: '      port: ${PG_PORT}' }), 6, 'services[0].upstream.port', 'expected a whole number 1..65535, got "5432x"', { PG_PORT: '5432x' });
    });

    it('comments and keys are not substituted', () => {
      expectRefused(edit({}, '${KEY}: 1   # ${COMMENT}'), 16, '', 'unknown key "${KEY}"', { KEY: 'workers' });
    });
  });

  it('binding naming an unknown service', () => {
    expectRefused(edit({ 11: '    service: service::/prod::order' }), 11, 'bindings[0].service', 'unknown service "service::/prod::order"');
  });

  describe('two listeners on one address', () => {
    it('two bindings', () => {
      const second = SECOND_BINDING.map((line) => line.replace('127.0.0.1:6433', '127.0.0.1:6432'));
      expectRefused(edit({}, ...second), 18, 'bindings[1].listen', 'address 127.0.0.1:6432 is already used by bindings[0].listen, line 12');
    });

    it('two bindings on the same IPv6 address written the same way', () => {
      const second = SECOND_BINDING.map((line) => line.replace('127.0.0.1:6433', '"[::1]:6432"'));
      expectRefused(edit({ 12: '    listen: "[::1]:6432"' }, ...second), 18, 'bindings[1].listen', 'address [::1]:6432 is already used by bindings[0].listen, line 12');
    });

    it('a binding on the admin address', () => {
      expectRefused(edit({}, 'admin:', '  listen: 127.0.0.1:6432'), 12, 'bindings[0].listen', 'address 127.0.0.1:6432 is already used by admin.listen, line 17');
    });

    it('two bindings on one socket file, one of them written relative to the config file', () => {
      const second = SECOND_BINDING.map((line) => line.replace('127.0.0.1:6433', `[127.0.0.1:6433, "unix:${dir}/run/.s.PGSQL.6432"]`));
      const text = edit({ 12: '    listen: unix:run/.s.PGSQL.6432' }, ...second);
      expectRefused(text, 18, 'bindings[1].listen[1]', `address unix:${dir}/run/.s.PGSQL.6432 is already used by bindings[0].listen, line 12`);
    });

    it('a binding listing one address twice', () => {
      expectRefused(edit({ 12: '    listen: [127.0.0.1:6432, 127.0.0.1:6432]' }), 12, 'bindings[0].listen[1]', 'address 127.0.0.1:6432 is already used by bindings[0].listen[0], line 12');
    });

    it('a binding on the default admin address', () => {
      expectRefused(edit({ 12: '    listen: 127.0.0.1:9187' }), 12, 'bindings[0].listen', 'address 127.0.0.1:9187 is already used by admin.listen (default)');
    });
  });

  describe('duplicate FQNs', () => {
    it('two services', () => {
      const second = '      user: owner\n  - fqn: service::/prod::orders\n    protocol: postgres\n    upstream: { host: h, database: d, user: u }';
      expectRefused(edit({ 8: second }), 9, 'services[1].fqn', 'duplicate FQN "service::/prod::orders" (first defined at services[0].fqn, line 2)');
    });

    it('two bindings', () => {
      const second = SECOND_BINDING.map((line) => line.replace('api-orders-2', 'api-orders'));
      expectRefused(edit({}, ...second), 16, 'bindings[1].fqn', 'duplicate FQN "binding::/prod/billing::api-orders" (first defined at bindings[0].fqn, line 10)');
    });
  });

  describe('malformed FQN (grammar of control/fqn.ts)', () => {
    const letters = 'must be letters, digits, ".", "_" or "-"';
    it.each([
      ['service::prod::orders', 'invalid FQN "service::prod::orders": the namespace must start with "/"'],
      ['service::/prod/::orders', `invalid FQN "service::/prod/::orders": namespace segment "" ${letters}`],
      ['service:://prod::orders', `invalid FQN "service:://prod::orders": namespace segment "" ${letters}`],
      ['service::/pr*d::orders', `invalid FQN "service::/pr*d::orders": namespace segment "pr*d" ${letters}`],
      ['"service::/prod::ord ers"', `invalid FQN "service::/prod::ord ers": the name ${letters} (not "." or "..")`],
      ['"service::/prod::"', `invalid FQN "service::/prod::": the name ${letters} (not "." or "..")`],
      ['service::/prod', 'invalid FQN "service::/prod": expected type::/namespace::name'],
      ['widget::/prod::orders', 'invalid FQN "widget::/prod::orders": unknown type "widget" (expected one of job, service, binding, package, stager, route, policy)'],
      ['Service::/prod::orders', 'invalid FQN "Service::/prod::orders": unknown type "Service" (expected one of job, service, binding, package, stager, route, policy)'],
      ['binding::/prod::orders', 'invalid FQN "binding::/prod::orders": expected a service, got a binding'],
    ])('service fqn %s', (fqn, reason) => {
      expectRefused(edit({ 2: `  - fqn: ${fqn}` }), 2, 'services[0].fqn', reason);
    });

    it('a binding fqn of another type', () => {
      expectRefused(edit({ 10: '  - fqn: job::/prod/billing::api' }), 10, 'bindings[0].fqn', 'invalid FQN "job::/prod/billing::api": expected a binding, got a job');
    });

    it('a binding referring to something that is not a service FQN', () => {
      expectRefused(edit({ 11: '    service: orders' }), 11, 'bindings[0].service', 'invalid FQN "orders": expected type::/namespace::name');
    });
  });

  describe('client credentials', () => {
    it('neither password nor verifier', () => {
      expectRefused(edit({ 15: '' }), 14, 'bindings[0].clients[0]', 'a client needs exactly one of password or verifier');
    });

    it('both password and verifier', () => {
      expectRefused(edit({ 15: `        password: pw\n        verifier: ${scramVerifier('pw')}` }), 14, 'bindings[0].clients[0]', 'a client needs exactly one of password or verifier');
    });

    it('no clients', () => {
      expectRefused(edit({ 13: '    clients: []', 14: '', 15: '' }), 13, 'bindings[0].clients', 'a binding needs at least one client');
    });

    it('duplicate client user', () => {
      expectRefused(edit({}, '      - user: api', '        password: again'), 16, 'bindings[0].clients[1].user', 'duplicate client user "api"');
    });

    const verifier = scramVerifier('pw');
    const [, iterationsAndSalt, keys] = verifier.split('$') as [string, string, string];
    const [, salt] = iterationsAndSalt.split(':') as [string, string];
    const [storedKey, serverKey] = keys.split(':') as [string, string];
    it.each([
      ['md5abcdef0123456789abcdef0123456789', 'malformed verifier: expected SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>'],
      [`SCRAM-SHA-1$4096:${salt}$${storedKey}:${serverKey}`, 'malformed verifier: expected SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>'],
      [`SCRAM-SHA-256$4096:${salt}$${storedKey}`, 'malformed verifier: expected SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>'],
      [`SCRAM-SHA-256$0:${salt}$${storedKey}:${serverKey}`, 'malformed verifier: iterations must be a positive whole number'],
      [`SCRAM-SHA-256$4096:s@lt!$${storedKey}:${serverKey}`, 'malformed verifier: the salt is not base64'],
      [`SCRAM-SHA-256$4096:${salt}$${storedKey.slice(4)}:${serverKey}`, 'malformed verifier: StoredKey must be 32 bytes of base64'],
      [`SCRAM-SHA-256$4096:${salt}$${storedKey}:c2hvcnQ=`, 'malformed verifier: ServerKey must be 32 bytes of base64'],
    ])('malformed verifier %s', (bad, reason) => {
      const err = expectRefused(edit({ 15: `        verifier: "${bad}"` }), 15, 'bindings[0].clients[0].verifier', reason);
      expect(err.message).not.toContain(bad);
    });

    it('md5 binding with a client that only has a SCRAM verifier', () => {
      expectRefused(
        edit({ 15: `        verifier: ${verifier}` }, '    auth: md5'),
        14,
        'bindings[0].clients[0]',
        "md5 auth needs the client's password; a SCRAM verifier cannot answer an md5 challenge",
      );
    });

    it('cleartext password auth on a binding without TLS', () => {
      const reason = 'cleartext "password" auth needs tls: on the binding (or allow_password_without_tls: true, or Unix-socket addresses only)';
      expectRefused(edit({}, '    auth: password'), 16, 'bindings[0].auth', reason);
      expectRefused(edit({ 12: '    listen: [127.0.0.1:6432, "unix:/tmp/s/.s.PGSQL.6432"]' }, '    auth: password'), 16, 'bindings[0].auth', reason);
      // Only local connections: no password crosses a network.
      expect(parseConfig(edit({ 12: '    listen: "unix:/tmp/s/.s.PGSQL.6432"' }, '    auth: password'), file, {}).bindings[0]!.auth).toBe('password');
    });

    it('auth method not in the enum', () => {
      expectRefused(edit({}, '    auth: trust'), 16, 'bindings[0].auth', 'expected "scram-sha-256" | "md5" | "password", got "trust"');
      expectRefused(edit({}, '    auth: bearer'), 16, 'bindings[0].auth', 'expected "scram-sha-256" | "md5" | "password", got "bearer"');
    });
  });

  describe('listen address', () => {
    const shape = 'expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432") or "unix:PATH" (a socket file)';
    it.each([
      ['127.0.0.1', `${shape}, got "127.0.0.1"`],
      ['127.0.0.1:0', `${shape}, got "127.0.0.1:0"`],
      ['127.0.0.1:65536', `${shape}, got "127.0.0.1:65536"`],
      ['127.0.0.1:64x', `${shape}, got "127.0.0.1:64x"`],
      ['":6432"', `${shape}, got ":6432"`],
      ['"::1:6432"', `${shape}, got "::1:6432"`],
      ['"[::1]"', `${shape}, got "[::1]"`],
      ['6432', `${shape}, or a list of them`],
      ['"unix:"', `${shape}, got "unix:"`],
      ['[]', 'a binding needs at least one listen address'],
    ])('%s', (listen, reason) => {
      expectRefused(edit({ 12: `    listen: ${listen}` }), 12, 'bindings[0].listen', reason);
    });

    it('an item of a list, by its index', () => {
      expectRefused(edit({ 12: '    listen: [127.0.0.1:6432, "unix:"]' }), 12, 'bindings[0].listen[1]', `${shape}, got "unix:"`);
      expectRefused(edit({ 12: '    listen: [127.0.0.1:6432, 6433]' }), 12, 'bindings[0].listen[1]', `${shape}; got a number (quote the value to make it a string)`);
    });

    it('on the admin listener, which takes no socket file', () => {
      expectRefused(edit({}, 'admin: { listen: "localhost" }'), 16, 'admin.listen', 'expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432"), got "localhost"');
      expectRefused(edit({}, 'admin: { listen: "unix:/tmp/admin.sock" }'), 16, 'admin.listen', 'expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432"), got "unix:/tmp/admin.sock"');
    });

    it('a socket path longer than the system allows', () => {
      const long = `/tmp/${'d'.repeat(90)}/.s.PGSQL.6432`;
      expectRefused(edit({ 12: `    listen: "unix:${long}"` }), 12, 'bindings[0].listen', `the socket path ${long} is ${Buffer.byteLength(long)} bytes; the system allows at most 107`);
    });
  });

  describe('Unix socket options', () => {
    it.each([
      ['unix_socket_mode: 0888', 'bindings[0].unix_socket_mode', 'expected an octal mode 0000..0777 such as "0770", got 888'],
      ['unix_socket_mode: "01777"', 'bindings[0].unix_socket_mode', 'expected an octal mode 0000..0777 (no setuid, setgid or sticky bits), got "01777"'],
      ['unix_socket_mode: rwx', 'bindings[0].unix_socket_mode', 'expected an octal mode 0000..0777 such as "0770", got "rwx"'],
      ['unix_socket_group: "a b"', 'bindings[0].unix_socket_group', 'expected a group name or a numeric group id, got "a b"'],
    ])('%s', (line, path, reason) => {
      expectRefused(edit({ 12: '    listen: unix:/tmp/s/.s.PGSQL.6432' }, `    ${line}`), 16, path, reason);
    });

    it('refused on a binding without a socket file, where they would do nothing', () => {
      expectRefused(edit({}, '    unix_socket_mode: "0770"'), 16, 'bindings[0].unix_socket_mode', 'unix_socket_mode applies to "unix:PATH" listen addresses; this binding has none');
      expectRefused(edit({}, '    unix_socket_group: sempipe'), 16, 'bindings[0].unix_socket_group', 'unix_socket_group applies to "unix:PATH" listen addresses; this binding has none');
    });
  });

  describe('upstream TLS', () => {
    it('mode not in the enum', () => {
      expectRefused(edit({ 6: '      tls: preferred' }), 6, 'services[0].upstream.tls', 'expected "disable" | "prefer" | "require" | "verify-full", got "preferred"');
    });

    it('verify-full without ca', () => {
      expectRefused(edit({ 6: '      tls: verify-full' }), 6, 'services[0].upstream.tls', 'tls "verify-full" needs ca: (the CA certificate file that signed the server\'s certificate)');
    });

    it('ca file that does not exist', () => {
      expectRefused(edit({ 6: '      tls: verify-full\n      ca: certs/ca.crt' }), 7, 'services[0].upstream.ca', `file not found: ${join(dir, 'certs/ca.crt')}`);
    });

    it('tls_negotiation not in the enum', () => {
      expectRefused(edit({ 6: '      tls: require\n      tls_negotiation: alpn' }), 7, 'services[0].upstream.tls_negotiation', 'expected "postgres" | "direct", got "alpn"');
    });

    it('direct TLS negotiation with a mode that could fall back to plaintext', () => {
      expectRefused(edit({ 6: '      tls: prefer\n      tls_negotiation: direct' }), 7, 'services[0].upstream.tls_negotiation', 'tls_negotiation "direct" needs tls: require or verify-full (got "prefer")');
    });

    it('direct TLS negotiation with tls: require is taken; postgres is the default', () => {
      expect((parseConfig(edit({ 6: '      tls: require\n      tls_negotiation: direct' }), file, {}).services[0] as ServiceConfig).upstream.tlsNegotiation).toBe('direct');
      expect((parseConfig(edit({}), file, {}).services[0] as ServiceConfig).upstream.tlsNegotiation).toBe('postgres');
    });
  });

  describe('binding TLS files', () => {
    it('certificate that does not exist', () => {
      expectRefused(edit({}, '    tls: { cert: missing.crt, key: server.key }'), 16, 'bindings[0].tls.cert', `file not found: ${join(dir, 'missing.crt')}`);
    });

    it('key that does not exist', () => {
      expectRefused(edit({}, '    tls:', '      cert: server.crt', '      key: ../nope/server.key'), 18, 'bindings[0].tls.key', `file not found: ${join(dir, '../nope/server.key')}`);
    });

    it('a directory instead of a file', () => {
      expectRefused(edit({}, '    tls: { cert: certs, key: server.key }'), 16, 'bindings[0].tls.cert', `${join(dir, 'certs')} is not a file`);
    });

    it('missing key in the tls mapping', () => {
      expectRefused(edit({}, '    tls: { cert: server.crt }'), 16, 'bindings[0].tls.key', 'required key is missing');
    });
  });

  it('unreadable file', () => {
    const missing = join(dir, 'absent.yaml');
    const err = (() => {
      try {
        loadConfig(missing, {});
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('accepted');
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect({ file: err.file, line: err.line, path: err.path }).toEqual({ file: missing, line: undefined, path: '' });
    expect(err.reason).toBe(`cannot read the config file: ENOENT: no such file or directory, open '${missing}'`);
    expect(err.message).toBe(`${missing}: ${err.reason}`);
  });
});

describe('arbitrary input', () => {
  const base = edit({});
  const lineCount = base.split('\n').length;
  // A mutation: a span of the valid file replaced by arbitrary text (which may be YAML syntax).
  const mutated = fc
    .tuple(fc.nat({ max: base.length }), fc.nat({ max: 40 }), fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom(':', '- ', '\n  ', '{', '[', '"', '${X}', '&a', '*a', '!!int', '#')))
    .map(([at, remove, insert]) => base.slice(0, at) + insert + base.slice(at + remove));

  it('is either accepted or refused with a ConfigError whose line lies in the file', () => {
    fc.assert(
      fc.property(fc.oneof(mutated, fc.string()), (text) => {
        try {
          parseConfig(text, file, {});
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          const { line } = err as ConfigError;
          if (line !== undefined) expect(line >= 1 && line <= Math.max(lineCount, text.split('\n').length)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});
