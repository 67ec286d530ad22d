// Lifecycle of the real sempipe binary in front of a real PostgreSQL: SIGHUP reloads (a changed
// password, a refused bad file, a removed binding, reloads under pgbench load) and SIGTERM drains
// (idle sessions closed with 57P01 after drain_timeout, early exit when sessions leave, new
// connections refused during the drain).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { requireBinary } from '../harness/binaries.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { adminPortOf, reloadSempipe, startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { waitFor } from '../harness/wait.js';

let server: PgServer;
let portA: number;
let portB: number;
let portC: number;
const clients: pg.Client[] = [];
const processes: SempipeProcess[] = [];

beforeAll(async () => {
  server = await startPostgres();
  [portA, portB, portC] = await Promise.all([freePort(), freePort(), freePort()]);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await Promise.all(processes.map((p) => p.stop()));
  await destroyPostgres(server);
});

interface Shape {
  adminPort?: number;
  password?: string;
  withB?: boolean;
  withC?: boolean;
  drain?: string;
  extra?: string;
}

function binding(name: string, port: number, password: string): string {
  return `
  - fqn: binding::/test::${name}
    service: service::/test::db
    listen: 127.0.0.1:${port}
    database: orders
    clients: [ { user: api, password: "${password}" } ]`;
}

function yaml(s: Shape): string {
  return `admin:
  listen: 127.0.0.1:${s.adminPort ?? '${ADMIN_PORT}'}
limits: { auth_timeout: 2s, drain_timeout: ${s.drain ?? '3s'} }
${s.extra ?? ''}
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }
bindings:${binding('a', portA, s.password ?? 'api-secret')}${s.withB ? binding('b', portB, 'b-secret') : ''}${s.withC ? binding('c', portC, 'c-secret') : ''}
`;
}

async function start(shape: Shape): Promise<SempipeProcess> {
  const p = await startSempipe({ yaml: yaml(shape) });
  processes.push(p);
  return p;
}

async function client(port: number, password: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'api', password, database: 'orders' });
  c.on('error', () => {});
  clients.push(c);
  await c.connect();
  return c;
}

async function connectError(port: number, password: string): Promise<{ code?: string; message: string } | undefined> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'api', password, database: 'orders', connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  return c.connect().then(
    async () => {
      await c.end();
      return undefined;
    },
    (e: unknown) => e as { code?: string; message: string },
  );
}

const count = (text: string, needle: string): number => text.split(needle).length - 1;

/** Reloads `p` with the config of `shape` (on the admin port it has). */
async function reload(p: SempipeProcess, shape: Shape): Promise<void> {
  await reloadSempipe(p, yaml({ ...shape, adminPort: adminPortOf(p) }));
}

describe('SIGHUP reload', () => {
  let p: SempipeProcess;
  beforeAll(async () => {
    p = await start({ withC: true });
  });
  // The drain tests below listen on the same port A.
  afterAll(async () => {
    expect(await p.stop()).toBe(0);
  });

  test('a changed password: new connections need the new one, an open session keeps working', async () => {
    const open = await client(portA, 'api-secret');
    await reload(p, { password: 'new-secret', withC: true });
    expect((await connectError(portA, 'api-secret'))?.code).toBe('28P01');
    expect(await connectError(portA, 'new-secret')).toBeUndefined();
    expect((await open.query('select 5 as n')).rows[0].n).toBe(5);
  });

  test('a bad file (unknown key) is refused with file:line on stderr and the old config keeps serving', async () => {
    const before = count(p.stderr(), 'config reload refused');
    const bad = yaml({ adminPort: adminPortOf(p), password: 'other-secret', withC: true, extra: 'bogus_key: 1' });
    writeFileSync(p.configFile, bad);
    const line = bad.split('\n').findIndex((l) => l.startsWith('bogus_key')) + 1;
    p.signal('SIGHUP');
    await waitFor(() => count(p.stderr(), 'config reload refused') === before + 1, 'the refusal');
    const refusal = JSON.parse(p.stderr().split('\n').filter((l) => l.includes('config reload refused')).at(-1)!) as { err: string };
    expect(refusal.err).toContain(`${p.configFile}:${line}`);
    expect(refusal.err).toContain('unknown key "bogus_key"');
    expect(p.stderr()).not.toContain('other-secret');
    expect((await fetch(`${p.adminUrl}/readyz`)).status).toBe(200);
    expect(await connectError(portA, 'new-secret')).toBeUndefined();
    expect((await connectError(portA, 'other-secret'))?.code).toBe('28P01');
  });

  test('a removed binding closes its listener and its sessions (57P01); another binding is untouched', async () => {
    const onA = await client(portA, 'new-secret');
    const onC = await client(portC, 'c-secret');
    expect((await onC.query('select 1 as n')).rows[0].n).toBe(1);
    const cError = new Promise<{ code?: string; message: string }>((r) => onC.on('error', (e) => r(e as { code?: string; message: string })));
    const cEnded = new Promise<void>((r) => onC.once('end', () => r()));
    await reload(p, { password: 'new-secret' });
    const err = await cError;
    expect(err.code).toBe('57P01');
    expect(err.message).toContain('binding::/test::c');
    await cEnded;
    expect((await connectError(portC, 'c-secret'))?.message).toMatch(/ECONNREFUSED/);
    expect((await onA.query('select 2 as n')).rows[0].n).toBe(2);
  });

  test('untouched sessions are not dropped under load: pgbench through A while B is added and removed 3 times', async () => {
    const init = spawnSync(requireBinary('pgbench'), ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(server.port), '-U', server.user, server.database], {
      env: { ...process.env, PGPASSWORD: server.password },
      encoding: 'utf8',
    });
    expect(init.status, init.stderr).toBe(0);
    const bench = spawn(requireBinary('pgbench'), ['-T', '4', '-c', '4', '-n', '-h', '127.0.0.1', '-p', String(portA), '-U', 'api', 'orders'], {
      env: { ...process.env, PGPASSWORD: 'new-secret', PGSSLMODE: 'disable' },
    });
    let out = '';
    bench.stdout.on('data', (d: Buffer) => (out += d.toString()));
    bench.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => bench.once('exit', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 500));
    for (const withB of [true, false, true]) {
      await reload(p, { password: 'new-secret', withB });
      await new Promise((r) => setTimeout(r, 700));
    }
    expect(await exited, out).toBe(0);
    expect(out).toMatch(/number of failed transactions: 0 \(/);
    expect(out).not.toMatch(/aborted/);
    expect(Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1])).toBeGreaterThan(0);
    expect(await connectError(portB, 'b-secret')).toBeUndefined();
  });
});

describe('SIGTERM drain', () => {
  test('an idle session is closed with 57P01 after drain_timeout, new connections are refused, exit code 0', async () => {
    const p = await start({});
    const idle = await client(portA, 'api-secret');
    const err = new Promise<{ code?: string }>((r) => idle.on('error', (e) => r(e as { code?: string })));
    const t0 = Date.now();
    p.signal('SIGTERM');
    await waitFor(() => count(p.stderr(), '"draining"') === 1, 'the drain to start');
    await new Promise((r) => setTimeout(r, 300));
    expect(await connectError(portA, 'api-secret')).toBeDefined();
    expect((await err).code).toBe('57P01');
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(2900);
    expect(waited).toBeLessThan(6000);
    expect(await p.exited).toBe(0);
  });

  test('a session that disconnects during the drain lets the process exit early', async () => {
    const p = await start({ drain: '20s' });
    const leaving = await client(portA, 'api-secret');
    const t0 = Date.now();
    p.signal('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    expect((await leaving.query('select 1 as n')).rows[0].n).toBe(1);
    await leaving.end();
    expect(await p.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
