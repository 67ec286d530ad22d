// Replication connections through the real sempipe binary (2 workers) to a real PostgreSQL 15 with
// wal_level=logical, with real clients: pg_recvlogical (test_decoding) streams an INSERT another
// client makes; pg_basebackup -X stream makes a backup that starts as a server; postgres.js
// subscribe() sees an insert; without allow.replication each is refused with 42501; a denied
// DROP_REPLICATION_SLOT is refused and the session goes on; a reload that removes a binding closes
// its live stream and keeps the others; SIGTERM closes a stream at the end of the drain. Each
// replication session has its own upstream walsender, gone when the session ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireBinary } from '../harness/binaries.js';
import { destroyPostgres, startClusterCopy, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePorts } from '../harness/ports.js';
import { auditLinesOf, startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { errorOf, run, type RunResult } from '../harness/run.js';

const USER = 'api';
const PASSWORD = 'api-secret';
const DB = 'orders';

/** full: physical and logical; logical: logical only, DROP_REPLICATION_SLOT denied; plain: none; doomed: removed by a reload. */
type BindingName = 'full' | 'logical' | 'plain' | 'doomed';
const BINDINGS: BindingName[] = ['full', 'logical', 'plain', 'doomed'];
const fqnOf = (b: BindingName): string => `binding::/test/${b}::app`;

let server: PgServer;
let sempipe: SempipeProcess;
let ports: Record<BindingName, number>;
let dir: string;

function configYaml(withDoomed: boolean): string {
  const bindings = withDoomed ? BINDINGS : BINDINGS.filter((b) => b !== 'doomed');
  return `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { auth_timeout: 5s, drain_timeout: 2s }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "\${UP_PW}", tls: disable }
bindings:
${bindings
  .map(
    (b) => `  - fqn: ${fqnOf(b)}
    service: service::/test::db
    listen: 127.0.0.1:${ports[b]}
    database: ${DB}
    clients: [ { user: ${USER}, password: ${PASSWORD} } ]
`,
  )
  .join('')}policies:
  - fqn: policy::/test::full
    realm: binding::/test/full
    allow: { replication: [physical, logical] }
    limits: { statement_timeout: 1s }
  - fqn: policy::/test::logical
    realm: binding::/test/logical::app
    allow: { replication: [logical] }
    deny: { replication_commands: [DROP_REPLICATION_SLOT] }
  - fqn: policy::/test::plain
    realm: binding::/test/plain
    deny: { classes: [ddl] }
  - fqn: policy::/test::doomed
    realm: binding::/test/doomed
    allow: { replication: [logical] }
`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sempipe-replication-'));
  // The backup's copy runs as the server's account, which must reach into it.
  chmodSync(dir, 0o755);
  server = await startPostgres({ replication: true });
  db(`
    set role ${server.user};
    create table events (id int primary key, note text);
    create publication alltables for all tables;
  `);
  const free = await freePorts(BINDINGS.length);
  ports = Object.fromEntries(BINDINGS.map((b, i) => [b, free[i]])) as Record<BindingName, number>;
  sempipe = await startSempipe({ workers: 2, env: { UP_PW: server.password }, yaml: configYaml(true) });
});

afterAll(async () => {
  await sempipe?.stop();
  await destroyPostgres(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs SQL on the upstream database as the superuser (psql over the Unix socket). */
function db(sql: string): string {
  return server.sql(sql, server.database);
}

const clientEnv = { PGPASSWORD: PASSWORD, PGCONNECT_TIMEOUT: '10' };
const via = (b: BindingName): string[] => ['-h', '127.0.0.1', '-p', String(ports[b]), '-U', USER];

function recvlogical(b: BindingName, args: string[]): Promise<RunResult> {
  return run('pg_recvlogical', [...via(b), '-d', DB, ...args], { env: clientEnv, timeoutMs: 30_000 });
}

/** pg_recvlogical streaming slot `slot` to its stdout, with the text received so far. */
function startStream(b: BindingName, slot: string): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(requireBinary('pg_recvlogical'), [...via(b), '-d', DB, '--slot', slot, '--start', '--no-loop', '-f', '-', '-F', '0'], {
    env: { ...process.env, ...clientEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

function basebackup(b: BindingName, target: string): Promise<RunResult> {
  return run('pg_basebackup', [...via(b), '-D', target, '-X', 'stream', '-c', 'fast', '--no-sync', '--no-manifest'], { env: clientEnv, timeoutMs: 60_000 });
}

function replicationClient(b: BindingName): postgres.Sql {
  return postgres({
    host: '127.0.0.1',
    port: ports[b],
    user: USER,
    password: PASSWORD,
    database: DB,
    max: 1,
    fetch_types: false,
    onnotice: () => {},
    connection: { replication: 'database' },
  } as postgres.Options<Record<string, never>>);
}

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Upstream WAL sender processes (each replication session's dedicated connection). */
const walSenders = (): number => Number(db(`select count(*) from pg_stat_activity where backend_type = 'walsender'`));
const slotActive = (slot: string): boolean => db(`select coalesce(bool_or(active), false) from pg_replication_slots where slot_name = '${slot}'`) === 't';

/** The audit lines of `event` (statement lines of class replication unless told otherwise). */
function auditLines(filter: (line: Record<string, unknown>) => boolean): Array<Record<string, unknown>> {
  return auditLinesOf(sempipe).filter(filter);
}

describe('replication allowed by policy', () => {
  test('pg_recvlogical with test_decoding streams an INSERT made by another client, on its own upstream walsender', async () => {
    const created = await recvlogical('full', ['--slot', 'recv', '--create-slot', '--plugin', 'test_decoding']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const stream = startStream('full', 'recv');
    try {
      await eventually(() => slotActive('recv'));
      // Longer than the binding's statement_timeout (1s): a stream has no time limit.
      await new Promise((r) => setTimeout(r, 1300));
      db(`insert into events values (1, 'streamed through sempipe')`);
      await eventually(() => stream.output().includes(`table public.events: INSERT: id[integer]:1 note[text]:'streamed through sempipe'`));
      expect(walSenders()).toBe(1);
    } finally {
      stream.child.kill('SIGINT');
    }
    expect(await stream.exited).toBe(0);
    // Its upstream connection was its own: closed with the session, not kept for reuse.
    await eventually(() => walSenders() === 0);
    expect(slotActive('recv')).toBe(false);

    const commands = (): string[] =>
      auditLines((l) => l.event === 'statement' && l.class === 'replication' && l.binding === fqnOf('full')).map((l) => String(l.statement));
    await eventually(() => commands().some((s) => s.startsWith('START_REPLICATION SLOT "recv" LOGICAL')));
    expect(commands().some((s) => s.startsWith('CREATE_REPLICATION_SLOT "recv" LOGICAL "test_decoding"'))).toBe(true);
    const starts = auditLines((l) => l.event === 'session_start' && l.binding === fqnOf('full'));
    expect(starts.some((l) => l.replication === 'logical')).toBe(true);
    expect(await sempipe.metric('sempipe_queries_total', { binding: fqnOf('full'), class: 'replication', outcome: 'ok' })).toBeGreaterThanOrEqual(3);
    expect(await sempipe.metric('sempipe_bytes_total', { binding: fqnOf('full'), direction: 'out' })).toBeGreaterThan(0);

    const dropped = await recvlogical('full', ['--slot', 'recv', '--drop-slot']);
    expect(dropped.code).toBe(0);
    expect(db(`select count(*) from pg_replication_slots`)).toBe('0');
  });

  test('pg_basebackup -X stream through sempipe makes a backup that starts as a server', async () => {
    db(`insert into events values (2, 'in the backup')`);
    const target = join(dir, 'backup');
    const r = await basebackup('full', target);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const copy = await startClusterCopy(target, server);
    try {
      expect(copy.sql(`select note from events where id = 2`, server.database)).toBe('in the backup');
    } finally {
      await copy.stop();
      rmSync(target, { recursive: true, force: true });
    }
    const starts = auditLines((l) => l.event === 'session_start' && l.binding === fqnOf('full') && l.replication === 'physical');
    expect(starts.length).toBe(2); // the backup and its WAL stream
    const commands = auditLines((l) => l.event === 'statement' && l.class === 'replication').map((l) => String(l.statement));
    expect(commands.some((s) => s.startsWith('BASE_BACKUP'))).toBe(true);
    await eventually(() => walSenders() === 0);
  });

  test('postgres.js subscribe() sees an insert', async () => {
    const sql = postgres({ host: '127.0.0.1', port: ports.logical, user: USER, password: PASSWORD, database: DB, max: 1, onnotice: () => {} });
    try {
      let resolveSeen: (row: Record<string, unknown>) => void;
      const seen = new Promise<Record<string, unknown>>((r) => (resolveSeen = r));
      const { unsubscribe } = await sql.subscribe('insert:events', (row) => {
        if (row?.note === 'seen by subscribe') resolveSeen(row as Record<string, unknown>);
      });
      db(`insert into events values (3, 'seen by subscribe')`);
      const row = await seen;
      expect(row.id).toBe(3);
      await unsubscribe();
    } finally {
      await sql.end({ timeout: 5 });
    }
    await eventually(() => walSenders() === 0);
  });
});

describe('replication refused without the permission', () => {
  test('pg_recvlogical, pg_basebackup and postgres.js subscribe() get 42501 naming allow.replication', async () => {
    const denialsBefore = await sempipe.metric('sempipe_policy_denials_total', { rule: 'allow.replication' });
    const recv = await recvlogical('plain', ['--slot', 'nope', '--create-slot', '--plugin', 'test_decoding']);
    expect(recv.code).not.toBe(0);
    expect(recv.stderr).toContain(`permission denied by sempipe: logical replication connections to binding ${fqnOf('plain')} need a policy with allow.replication: [logical]`);

    const target = join(dir, 'refused');
    const backup = await basebackup('plain', target);
    rmSync(target, { recursive: true, force: true });
    expect(backup.code).not.toBe(0);
    expect(backup.stderr).toContain('permission denied by sempipe: physical replication connections');

    // Logical granted, physical not.
    const physical = await basebackup('logical', target);
    rmSync(target, { recursive: true, force: true });
    expect(physical.code).not.toBe(0);
    expect(physical.stderr).toContain(`physical replication connections to binding ${fqnOf('logical')} need a policy with allow.replication: [physical]`);

    const sql = postgres({ host: '127.0.0.1', port: ports.plain, user: USER, password: PASSWORD, database: DB, max: 1, onnotice: () => {} });
    try {
      const err = await errorOf(sql.subscribe('insert:events', () => {}));
      // subscribe() reconnects whenever its connection closes until its own sql ends; end it at once.
      void (sql.subscribe as unknown as { sql: postgres.Sql }).sql.end({ timeout: 0 });
      expect(err.code).toBe('42501');
      expect(err.message).toContain('allow.replication: [logical]');
      // The same binding serves normal sessions.
      expect((await sql`select 1 as one`)[0]!.one).toBe(1);
    } finally {
      await sql.end({ timeout: 5 });
    }
    expect(await sempipe.metric('sempipe_policy_denials_total', { rule: 'allow.replication' })).toBe(denialsBefore + 4);
    expect(db(`select count(*) from pg_replication_slots`)).toBe('0');
    expect(walSenders()).toBe(0);
  });

  test('an invalid replication value is refused before authentication, as PostgreSQL refuses it', async () => {
    const r = await run('psql', ['-X', '-At', '-d', `host=127.0.0.1 port=${ports.full} user=${USER} dbname=${DB} replication=maybe`, '-c', 'IDENTIFY_SYSTEM'], {
      env: clientEnv,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('invalid value for parameter "replication": "maybe"');
  });
});

describe('replication commands under deny rules', () => {
  test('a denied DROP_REPLICATION_SLOT is refused with 42501 and the session goes on', async () => {
    const sql = replicationClient('logical');
    try {
      await sql.unsafe('CREATE_REPLICATION_SLOT keep_me LOGICAL test_decoding');
      const err = await errorOf(sql.unsafe('DROP_REPLICATION_SLOT keep_me'));
      expect(err.code).toBe('42501');
      expect(err.message).toBe('permission denied by sempipe policy policy::/test::logical: replication command DROP_REPLICATION_SLOT is denied (rule deny.replication_commands)');
      const [system] = await sql.unsafe('IDENTIFY_SYSTEM');
      expect(system!.systemid).toBe(db('select system_identifier from pg_control_system()'));
      // Plain SQL on a logical replication connection is classified and judged as SQL.
      expect((await sql.unsafe('select current_database() as name'))[0]!.name).toBe(server.database);
    } finally {
      await sql.end({ timeout: 5 });
    }
    expect(db(`select count(*) from pg_replication_slots where slot_name = 'keep_me'`)).toBe('1');
    // Ended with Terminate while idle, its walsender is closed, not kept for another session.
    await eventually(() => walSenders() === 0);
    const denied = (): Array<Record<string, unknown>> => auditLines((l) => l.event === 'statement' && l.outcome === 'denied' && l.binding === fqnOf('logical'));
    await eventually(() => denied().length === 1);
    expect(denied()[0]).toMatchObject({ class: 'replication', rule: 'deny.replication_commands', policy: 'policy::/test::logical', sqlstate: '42501' });
    expect(new Set(auditLines((l) => l.event === 'statement' && l.binding === fqnOf('logical') && String(l.statement).includes('keep_me')).map((l) => l.session)).size).toBe(1);
    db(`select pg_drop_replication_slot('keep_me')`);
  });
});

describe('reload, revoke and drain', () => {
  test('a reload that removes a binding closes its live stream and walsender; a stream of a binding kept goes on', async () => {
    for (const [b, slot] of [['doomed', 'doomed'], ['full', 'kept']] as const) {
      expect((await recvlogical(b, ['--slot', slot, '--create-slot', '--plugin', 'test_decoding'])).code).toBe(0);
    }
    const doomed = startStream('doomed', 'doomed');
    const kept = startStream('full', 'kept');
    try {
      await eventually(() => slotActive('doomed') && slotActive('kept'));
      writeFileSync(sempipe.configFile, configYaml(false).replaceAll('${ADMIN_PORT}', new URL(sempipe.adminUrl).port));
      sempipe.signal('SIGHUP');
      expect(await doomed.exited).not.toBe(0);
      expect(doomed.output()).toContain('terminating connection');
      db(`insert into events values (10, 'after the reload')`);
      await eventually(() => kept.output().includes(`id[integer]:10 note[text]:'after the reload'`));
      expect(slotActive('kept')).toBe(true);
      await eventually(() => walSenders() === 1);
    } finally {
      doomed.child.kill('SIGKILL');
      kept.child.kill('SIGINT');
    }
    expect(await kept.exited).toBe(0);
    await eventually(() => walSenders() === 0);
    await eventually(() => auditLines((l) => l.event === 'session_end' && l.binding === fqnOf('doomed') && l.reason === 'revoked').length === 1);
    const stopped = auditLines((l) => l.event === 'statement' && l.binding === fqnOf('doomed') && String(l.statement).startsWith('START_REPLICATION'));
    expect(stopped).toHaveLength(1);
    expect(stopped[0]).toMatchObject({ class: 'replication', outcome: 'error', sqlstate: '57P01' });
    db(`select pg_drop_replication_slot('doomed')`);
  });

  // Last: it stops sempipe.
  test('SIGTERM drains: a live stream is closed with 57P01 at the end of drain_timeout and sempipe exits 0', async () => {
    const stream = startStream('full', 'kept');
    try {
      await eventually(() => slotActive('kept'));
      sempipe.signal('SIGTERM');
      expect(await stream.exited).not.toBe(0);
    } finally {
      stream.child.kill('SIGKILL');
    }
    expect(stream.output()).toContain('terminating connection due to administrator command');
    expect(await sempipe.exited).toBe(0);
    await eventually(() => walSenders() === 0);
    const ends = auditLines((l) => l.event === 'session_end' && l.binding === fqnOf('full') && l.reason === 'shutdown');
    expect(ends).toHaveLength(1);
    db(`select pg_drop_replication_slot('kept')`);
  });
});
