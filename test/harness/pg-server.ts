// Starts a real PostgreSQL server from the installed binaries for tests and benchmarks: initdb into a
// temporary directory, its own free port, password auth in pg_hba.conf, an upstream role with a
// password, optional TLS with a certificate generated on the spot. Never touches a server on 5432.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';
import { freePort } from './ports.js';
import { makeCertificate, type Certificate } from './certs.js';

export type PgAuthMethod = 'scram-sha-256' | 'md5' | 'password' | 'trust';

export interface PgServerOptions {
  auth?: PgAuthMethod;
  tls?: boolean;
  /** Refuse non-TLS TCP connections (hostnossl reject). */
  tlsOnly?: boolean;
  user?: string;
  password?: string;
  database?: string;
  settings?: Record<string, string>;
}

export interface PgServer {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  dataDir: string;
  socketDir: string;
  cert?: Certificate;
  /** Runs SQL as the superuser over the Unix socket; returns psql's unaligned output. */
  sql(query: string, database?: string): string;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
}

interface Ids { uid?: number; gid?: number }

/** initdb and postgres refuse to run as root: drop to the postgres account when we are root. */
function serverIds(): Ids {
  if (process.getuid?.() !== 0) return {};
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('running as root needs a "postgres" system account (apt-get install postgresql)');
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

function ownTree(path: string, ids: Ids): void {
  if (ids.uid === undefined) return;
  spawnSync('chown', ['-R', `${ids.uid}:${ids.gid}`, path]);
}

export async function startPostgres(opts: PgServerOptions = {}): Promise<PgServer> {
  const initdb = requireBinary('initdb');
  const postgresBin = requireBinary('postgres');
  const psql = requireBinary('psql');
  const ids = serverIds();
  const superuser = ids.uid !== undefined ? 'postgres' : userInfo().username;
  const auth = opts.auth ?? 'scram-sha-256';
  const user = opts.user ?? 'upstream_owner';
  const password = opts.password ?? `pw-${Math.random().toString(36).slice(2)}`;
  const database = opts.database ?? 'appdb';
  const base = mkdtempSync(join(tmpdir(), 'sempipe-pg-'));
  chmodSync(base, 0o755);
  const dataDir = join(base, 'data');
  const socketDir = join(base, 'sock');
  spawnSync('mkdir', ['-p', socketDir]);
  ownTree(base, ids);

  const init = spawnSync(initdb, ['-D', dataDir, '-U', superuser, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ...ids,
    encoding: 'utf8',
  });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);

  const port = await freePort();
  const hba = [`local all all trust`];
  if (opts.tls && opts.tlsOnly) hba.push(`hostnossl all all 127.0.0.1/32 reject`);
  hba.push(`host all ${superuser} 127.0.0.1/32 trust`);
  hba.push(`host all all 127.0.0.1/32 ${auth}`);
  writeFileSync(join(dataDir, 'pg_hba.conf'), hba.join('\n') + '\n');
  const conf: Record<string, string> = {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    unix_socket_directories: `'${socketDir}'`,
    max_connections: '300',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    password_encryption: auth === 'md5' ? 'md5' : 'scram-sha-256',
    ...opts.settings,
  };
  let cert: Certificate | undefined;
  if (opts.tls) {
    cert = makeCertificate(base, 'localhost');
    for (const f of [cert.certFile, cert.keyFile]) {
      if (ids.uid !== undefined) chownSync(f, ids.uid, ids.gid!);
      chmodSync(f, 0o600);
    }
    Object.assign(conf, { ssl: 'on', ssl_cert_file: `'${cert.certFile}'`, ssl_key_file: `'${cert.keyFile}'` });
  }
  appendFileSync(join(dataDir, 'postgresql.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');

  let child: ChildProcess | undefined;
  const runSql = (query: string, db = 'postgres'): string => {
    const r = spawnSync(psql, ['-h', socketDir, '-p', String(port), '-U', superuser, '-d', db, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`psql failed (${query}): ${r.stderr}`);
    return r.stdout.trim();
  };

  const start = async (): Promise<void> => {
    const proc = spawn(postgresBin, ['-D', dataDir], { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let log = '';
    proc.stderr!.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`postgres exited: ${log}`);
      const r = spawnSync(psql, ['-h', socketDir, '-p', String(port), '-U', superuser, '-d', 'postgres', '-XAtqc', 'select 1'], { encoding: 'utf8' });
      if (r.status === 0) return;
      if (Date.now() > deadline) throw new Error(`postgres did not become ready: ${log}`);
      await new Promise((r2) => setTimeout(r2, 100));
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGINT');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  await start();
  const quotedPw = password.replace(/'/g, "''");
  runSql(`CREATE ROLE ${user} LOGIN SUPERUSER PASSWORD '${quotedPw}'`);
  runSql(`CREATE DATABASE ${database} OWNER ${user}`);

  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    database,
    dataDir,
    socketDir,
    cert,
    sql: runSql,
    start,
    stop: async () => {
      await stop();
    },
    restart: async () => {
      await stop();
      await start();
    },
  };
}

/** Stops the server and removes its directory. */
export async function destroyPostgres(server: PgServer | undefined): Promise<void> {
  if (!server) return;
  await server.stop();
  rmSync(join(server.dataDir, '..'), { recursive: true, force: true });
}
