// Unix-domain socket listeners of the real sempipe binary (two workers) in front of a real
// PostgreSQL: psql, node-postgres and postgres.js find `.s.PGSQL.<port>` in a directory; a binding
// serves TCP and a socket file side by side; mode and group are applied; SSLRequest is answered N
// on the socket as PostgreSQL answers it; a stale file is replaced, a live one refused; reload,
// revocation and shutdown remove the file.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { makeCertificate, type Certificate } from '../harness/certs.js';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { run } from '../harness/run.js';
import { adminPortOf, reloadSempipe, startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { waitFor } from '../harness/wait.js';

const USER = 'app';
const PASSWORD = 'app-secret';
const DB = 'orders';

let server: PgServer;
let dir: string;
let runDir: string;
let cert: Certificate;
let tcpPort: number;
/** Only a number in the socket file's name: libpq looks for `<dir>/.s.PGSQL.<port>`. */
let unixPort: number;
let socketFile: string;
/** A group other than the process's own, so that applying it is visible. */
let group: { name: string; gid: number };
const processes: SempipeProcess[] = [];

beforeAll(async () => {
  // Short: a socket path must fit in 107 bytes.
  dir = mkdtempSync('/tmp/sp-unix-');
  runDir = join(dir, 'run');
  mkdirSync(runDir);
  cert = makeCertificate(dir, 'localhost');
  server = await startPostgres();
  [tcpPort, unixPort] = await Promise.all([freePort(), freePort()]);
  socketFile = join(runDir, `.s.PGSQL.${unixPort}`);
  const groups = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',') }));
  const me = process.getuid!() === 0 ? undefined : new Set(process.getgroups!());
  const found = groups.find((g) => g.gid !== process.getgid!() && (me === undefined || me.has(g.gid)));
  if (found === undefined) throw new Error('the test needs a group other than the process group that this user may give a file');
  group = found;
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await destroyPostgres(server);
  rmSync(dir, { recursive: true, force: true });
});

interface Shape {
  adminPort?: number;
  /** The binding's listen value as YAML. */
  listen: string;
  socketOptions?: string;
  withBinding?: boolean;
}

function yaml(s: Shape): string {
  const binding = `
  - fqn: binding::/test::app
    service: service::/test::db
    listen: ${s.listen}
${s.socketOptions ?? ''}
    database: ${DB}
    tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, required: true }
    clients: [ { user: ${USER}, password: ${PASSWORD} } ]`;
  return `admin:
  listen: 127.0.0.1:${s.adminPort ?? '${ADMIN_PORT}'}
limits: { auth_timeout: 5s, drain_timeout: 2s }
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }
bindings:${s.withBinding === false ? ' []' : binding}
`;
}

async function start(shape: Shape): Promise<SempipeProcess> {
  const p = await startSempipe({ yaml: yaml(shape), workers: 2, dir });
  processes.push(p);
  return p;
}

const psqlEnv = { PGPASSWORD: PASSWORD };

function psql(host: string, port: number, sql: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', host, '-p', String(port), '-U', USER, '-d', DB, '-c', sql], { env: { ...psqlEnv, ...env } });
}

const count = (text: string, needle: string): number => text.split(needle).length - 1;

/** Reloads `p` with the config of `shape` (on the admin port it has). */
async function reload(p: SempipeProcess, shape: Shape): Promise<void> {
  await reloadSempipe(p, yaml({ ...shape, adminPort: adminPortOf(p) }));
}

/** The one-byte answer to an SSLRequest (PostgreSQL's: S or N). */
function sslAnswer(options: { path: string } | { host: string; port: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(options);
    socket.once('error', reject);
    socket.once('connect', () => socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    socket.once('data', (d) => {
      socket.destroy();
      resolve(d.subarray(0, 1).toString('latin1'));
    });
  });
}

/** A socket file whose process died without closing it, as a crash leaves one. */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await new Promise((r) => child.once('exit', r));
  expect(statSync(path).isSocket()).toBe(true);
}

describe('a binding on TCP and a Unix socket', () => {
  let p: SempipeProcess;
  let shape: Shape;

  beforeAll(async () => {
    // The socket path is relative: resolved against the config file's directory.
    shape = { listen: `[127.0.0.1:${tcpPort}, "unix:run/.s.PGSQL.${unixPort}"]`, socketOptions: `    unix_socket_mode: "0660"\n    unix_socket_group: ${group.name}` };
    // A crash left the file behind: the start replaces it.
    await staleSocket(socketFile);
    p = await start(shape);
  });

  test('psql -h DIR -p PORT finds .s.PGSQL.PORT; the session runs on the upstream as the service role', async () => {
    const r = await psql(runDir, unixPort, 'select current_database(), current_user, 6 * 7');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`${server.database}|${server.user}|42`);
  });

  test('the socket file has the configured mode and group', () => {
    const st = statSync(socketFile);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    expect(st.gid).toBe(group.gid);
  });

  test('the TCP address of the same binding still requires TLS; the socket answers N to SSLRequest, as PostgreSQL does there', async () => {
    expect((await psql('127.0.0.1', tcpPort, 'select 1', { PGSSLMODE: 'disable' })).stderr).toContain('SSL/TLS is required by binding');
    const tls = await psql('127.0.0.1', tcpPort, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()', { PGSSLMODE: 'require' });
    expect(tls.stderr).toBe('');
    expect(await sslAnswer({ host: '127.0.0.1', port: tcpPort })).toBe('S');
    expect(await sslAnswer({ path: socketFile })).toBe('N');
    expect(await sslAnswer({ path: join(server.socketDir, `.s.PGSQL.${server.port}`) })).toBe('N');
  });

  test('node-postgres with host: DIR, port: PORT', async () => {
    const c = new pg.Client({ host: runDir, port: unixPort, user: USER, password: PASSWORD, database: DB });
    await c.connect();
    try {
      expect((await c.query('select $1::int + 1 as n', [41])).rows[0].n).toBe(42);
    } finally {
      await c.end();
    }
  });

  test('postgres.js with host: DIR and with path', async () => {
    for (const options of [{ host: runDir, port: unixPort }, { path: socketFile }]) {
      const sql = postgres({ ...options, user: USER, password: PASSWORD, database: DB, max: 1, onnotice: () => {} });
      try {
        const [row] = await sql`select ${'through'}::text || ' the socket' as t`;
        expect(row!.t).toBe('through the socket');
      } finally {
        await sql.end();
      }
    }
  });

  test('both workers serve the socket; sessions and audit lines name the socket file as the client address', async () => {
    // The kernel gives each connection to whichever worker accepts first: connect until both have
    // some (at least four, at most forty).
    const clients: pg.Client[] = [];
    const socketSessions = async (): Promise<Array<{ id: string; client_address: string }>> => {
      const { sessions } = (await (await fetch(`${p.adminUrl}/v1/sessions`)).json()) as { sessions: Array<{ id: string; client_address: string }> };
      return sessions.filter((s) => s.client_address === `unix:${socketFile}`);
    };
    const workers = (sessions: Array<{ id: string }>): Set<string> => new Set(sessions.map((s) => s.id.split('.')[0]!));
    try {
      while (clients.length < 40) {
        const c = new pg.Client({ host: runDir, port: unixPort, user: USER, password: PASSWORD, database: DB });
        c.on('error', () => {});
        await c.connect();
        clients.push(c);
        await c.query('select 1 as unix_audit_probe');
        if (clients.length >= 4 && workers(await socketSessions()).size === 2) break;
      }
      const viaSocket = await socketSessions();
      expect(viaSocket).toHaveLength(clients.length);
      expect(workers(viaSocket)).toEqual(new Set(['1', '2']));
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    await waitFor(() => count(p.stdout(), 'unix_audit_probe') >= clients.length, 'the audit lines');
    const lines = p.stdout().split('\n').filter((l) => l.includes('unix_audit_probe'));
    for (const line of lines) expect((JSON.parse(line) as { client: string }).client).toBe(`unix:${socketFile}`);
    expect(p.stdout()).not.toContain('undefined');
  });

  test('a failed login over the socket is logged with the socket file as the client', async () => {
    const r = await run('psql', ['-X', '-h', runDir, '-p', String(unixPort), '-U', USER, '-d', DB, '-c', 'select 1'], { env: { PGPASSWORD: 'wrong' } });
    expect(r.stderr).toContain('password authentication failed');
    const failure = (): string | undefined => p.stdout().split('\n').find((l) => l.includes('"event":"auth_failure"') && l.includes('"bad_password"'));
    await waitFor(() => failure() !== undefined, 'the audit line of the failure');
    expect(JSON.parse(failure()!)).toMatchObject({ user: USER, client: `unix:${socketFile}` });
  });

  test('a second sempipe on the same socket file is refused with the path named, and the first keeps serving', async () => {
    const other = await startSempipe({ yaml: yaml({ listen: `"unix:${socketFile}"` }), workers: 1, waitReady: false });
    processes.push(other);
    await waitFor(() => other.stderr().includes('listener failed'), 'the refusal');
    expect(other.stderr()).toContain(`cannot listen on unix:${socketFile}: another server is listening on this socket file`);
    expect((await fetch(`${other.adminUrl}/readyz`)).status).toBe(503);
    expect(await other.stop()).toBe(0);
    expect((await psql(runDir, unixPort, 'select 7')).stdout.trim()).toBe('7');
  });

  test('reload: removing the socket address closes it and removes the file, TCP and open sessions stay; adding it back (over a stale file) serves again', async () => {
    const open = new pg.Client({ host: runDir, port: unixPort, user: USER, password: PASSWORD, database: DB });
    open.on('error', () => {});
    await open.connect();
    await reload(p, { listen: `127.0.0.1:${tcpPort}` });
    await waitFor(() => !existsSync(socketFile), 'the socket file to go');
    expect((await psql(runDir, unixPort, 'select 1')).code).not.toBe(0);
    expect((await psql('127.0.0.1', tcpPort, 'select 1', { PGSSLMODE: 'require' })).stdout.trim()).toBe('1');
    expect((await open.query('select 8 as n')).rows[0].n).toBe(8);
    await open.end();

    // Meanwhile a crashed process left a socket file there: the reload that adds the address replaces it.
    await staleSocket(socketFile);
    await reload(p, shape);
    expect((await psql(runDir, unixPort, 'select 9')).stdout.trim()).toBe('9');
    expect(statSync(socketFile).mode & 0o777).toBe(0o660);
  });

  test('reload: a changed mode is applied to the socket that stays', async () => {
    await reload(p, { ...shape, socketOptions: '    unix_socket_mode: "0600"' });
    expect(statSync(socketFile).mode & 0o777).toBe(0o600);
    await reload(p, shape);
    expect(statSync(socketFile).mode & 0o777).toBe(0o660);
  });

  test('revoking the binding closes its sessions over the socket (57P01) and removes the file', async () => {
    const c = new pg.Client({ host: runDir, port: unixPort, user: USER, password: PASSWORD, database: DB });
    const closed = new Promise<{ code?: string; message: string }>((resolve) => c.on('error', (e) => resolve(e as { code?: string; message: string })));
    await c.connect();
    await reload(p, { listen: shape.listen, withBinding: false });
    const err = await closed;
    expect(err.code).toBe('57P01');
    expect(err.message).toContain('binding "binding::/test::app" was removed');
    await waitFor(() => !existsSync(socketFile), 'the socket file to go');
    await c.end().catch(() => {});
  });

  test('a clean stop removes the socket file', async () => {
    await reload(p, shape);
    expect(existsSync(socketFile)).toBe(true);
    expect(await p.stop()).toBe(0);
    expect(existsSync(socketFile)).toBe(false);
  });
});
