// What an operator sees of PostgreSQL traffic through the real sempipe binary (2 workers): exact
// Prometheus counters for a known workload, connection gauges aggregated over both workers,
// /healthz and /readyz, and the audit log lines on stdout (statement, error, truncation,
// session_start and session_end).
import { afterAll, beforeAll, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { requireBinary } from '../harness/binaries.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { auditLinesOf, startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { waitFor } from '../harness/wait.js';

const OBS = 'binding::/test::obs';
const SPREAD = 'binding::/test::spread';
let server: PgServer;
let sempipe: SempipeProcess;
let obsPort: number;
let spreadPort: number;
const clients: pg.Client[] = [];

beforeAll(async () => {
  server = await startPostgres();
  server.sql('create table obs (id int)', server.database);
  [obsPort, spreadPort] = await Promise.all([freePort(), freePort()]);
  const b = (fqn: string, port: number): string => `
  - fqn: ${fqn}
    service: service::/test::db
    listen: 127.0.0.1:${port}
    database: orders
    clients: [ { user: api, password: api-secret } ]`;
  sempipe = await startSempipe({
    env: { UP_PW: server.password },
    yaml: `admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
audit: { max_statement_length: 200 }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
bindings:${b(OBS, obsPort)}${b(SPREAD, spreadPort)}
`,
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await sempipe?.stop();
  await destroyPostgres(server);
});

async function client(port: number): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'api', password: 'api-secret', database: 'orders' });
  c.on('error', () => {});
  clients.push(c);
  await c.connect();
  return c;
}

type AuditLine = Record<string, unknown>;
const auditLines = (): AuditLine[] => auditLinesOf<AuditLine>(sempipe);

async function auditLine(match: (l: AuditLine) => boolean, what: string): Promise<AuditLine> {
  let found: AuditLine | undefined;
  await waitFor(() => (found = auditLines().find(match)) !== undefined, `audit line: ${what}`);
  return found!;
}

test('/healthz and /readyz answer 200', async () => {
  expect((await fetch(`${sempipe.adminUrl}/healthz`)).status).toBe(200);
  expect((await fetch(`${sempipe.adminUrl}/readyz`)).status).toBe(200);
});

test('a known workload through psql gives exact query, connection and duration counters', async () => {
  const statements = [
    ...Array.from({ length: 5 }, (_, i) => `select ${i}`),
    'insert into obs values (1)',
    'insert into obs values (2)',
    'select * from no_such_table',
    'copy obs to stdout',
  ];
  const psql = spawnSync(
    requireBinary('psql'),
    ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=0', '-h', '127.0.0.1', '-p', String(obsPort), '-U', 'api', '-d', 'orders', ...statements.flatMap((s) => ['-c', s])],
    { env: { ...process.env, PGPASSWORD: 'api-secret', PGSSLMODE: 'disable' }, encoding: 'utf8', timeout: 20_000 },
  );
  expect(psql.stdout.trim().split('\n')).toEqual(['0', '1', '2', '3', '4', '1', '2']);
  expect(psql.stderr).toMatch(/relation "no_such_table" does not exist/);

  const q = (cls: string, outcome: string): Promise<number> => sempipe.metric('sempipe_queries_total', { binding: OBS, protocol: 'postgres', class: cls, outcome });
  await waitFor(async () => (await sempipe.metric('sempipe_connections_active', { binding: OBS })) === 0, 'the session to end');
  expect(await q('select', 'ok')).toBe(5);
  expect(await q('insert', 'ok')).toBe(2);
  expect(await q('select', 'error')).toBe(1);
  expect(await q('copy_out', 'ok')).toBe(1);
  expect(await sempipe.metric('sempipe_queries_total', { binding: OBS })).toBe(9);
  expect(await sempipe.metric('sempipe_query_duration_seconds_count', { binding: OBS })).toBe(9);
  expect(await sempipe.metric('sempipe_connections_total', { binding: OBS, protocol: 'postgres' })).toBe(1);
  expect(await sempipe.metric('sempipe_bytes_total', { binding: OBS, direction: 'in' })).toBeGreaterThan(0);
  expect(await sempipe.metric('sempipe_bytes_total', { binding: OBS, direction: 'out' })).toBeGreaterThan(0);

  const start = await auditLine((l) => l.event === 'session_start' && l.binding === OBS, 'session_start');
  expect(start).toMatchObject({ user: 'api', database: 'orders' });
  const end = await auditLine((l) => l.event === 'session_end' && l.session === start.session, 'session_end');
  expect(end).toMatchObject({ reason: 'client', statements: 9 });
  const failed = await auditLine((l) => l.event === 'statement' && l.statement === 'select * from no_such_table', 'the failed statement');
  expect(failed).toMatchObject({ binding: OBS, user: 'api', session: start.session, class: 'select', outcome: 'error', sqlstate: '42P01', rows: 0 });
});

test('the audit line of a known statement has every field; long statements are truncated at max_statement_length', async () => {
  const c = await client(obsPort);
  await c.query("select 'audit-marker' as m from generate_series(1, 3)");
  const line = await auditLine((l) => l.event === 'statement' && String(l.statement).includes('audit-marker'), 'the marker statement');
  expect(line).toMatchObject({
    event: 'statement',
    binding: OBS,
    user: 'api',
    statement: "select 'audit-marker' as m from generate_series(1, 3)",
    class: 'select',
    rows: 3,
    outcome: 'ok',
  });
  expect(line.client).toMatch(/^127\.0\.0\.1:\d+$/);
  // <worker slot>.<process generation>-<n>: unique over restarts of a worker.
  expect(line.session).toMatch(/^\d+\.\d+-\d+$/);
  expect(typeof line.duration_ms).toBe('number');
  expect(line.sqlstate).toBeUndefined();

  const long = `select '${'L'.repeat(300)}' as long_marker`;
  await c.query(long);
  const cut = await auditLine((l) => l.event === 'statement' && String(l.statement).startsWith("select 'LLL"), 'the long statement');
  expect(cut.statement).toBe(long.slice(0, 200));
  expect(cut.statement_truncated).toBe(true);
});

test('connections spread over both workers are aggregated: the open sessions of both in connections_active, then 0', async () => {
  // The kernel hands each connection to whichever worker accepts first: connect until both have
  // some (sempipe's BackendKeyData names the worker in the high bits of the process id).
  const open: pg.Client[] = [];
  const slots = new Set<number>();
  while (open.length < 6 || (slots.size < 2 && open.length < 40)) {
    const c = await client(spreadPort);
    await c.query('select 1');
    open.push(c);
    slots.add((c as unknown as { processID: number }).processID >>> 24);
  }
  expect(slots).toEqual(new Set([1, 2]));
  expect(await sempipe.metric('sempipe_connections_active', { binding: SPREAD })).toBe(open.length);
  expect(await sempipe.metric('sempipe_connections_total', { binding: SPREAD })).toBe(open.length);
  const starts = (): AuditLine[] => auditLines().filter((l) => l.event === 'session_start' && l.binding === SPREAD);
  await waitFor(() => starts().length === open.length, 'a session_start line per session');
  expect(new Set(starts().map((l) => String(l.session).split('.')[0]))).toEqual(new Set(['1', '2']));
  await Promise.all(open.map((c) => c.end()));
  await waitFor(async () => (await sempipe.metric('sempipe_connections_active', { binding: SPREAD })) === 0, 'active back to 0');
});
