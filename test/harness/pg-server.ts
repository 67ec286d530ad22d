// Starts a real PostgreSQL server from the installed binaries for tests and benchmarks: initdb into a
// temporary directory, its own free port, password auth in pg_hba.conf, an upstream role with a
// password, optional TLS with a certificate generated on the spot, optionally ready for replication
// (wal_level=logical, `replication` lines in pg_hba.conf, the upstream role WITH REPLICATION). Also
// starts a server on a data directory made elsewhere (a base backup). Never touches a server on 5432.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';
import { freePort } from './ports.js';
import { makeCertificate, type Certificate } from './certs.js';
import { createServerProcess, destroyServer } from './server-process.js';

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
  /**
   * Ready for physical and logical replication: wal_level=logical, room for WAL senders and slots,
   * pg_hba.conf `replication` lines with the same auth, and the upstream role WITH REPLICATION.
   */
  replication?: boolean;
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
  if (opts.replication) hba.push(`host replication all 127.0.0.1/32 ${auth}`);
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
    ...(opts.replication && { wal_level: 'logical', max_wal_senders: '10', max_replication_slots: '10' }),
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

  const control = serverControl({ dataDir, socketDir, port, superuser, ids, args: [] });
  await control.start();
  const quotedPw = password.replace(/'/g, "''");
  control.sql(`CREATE ROLE ${user} LOGIN SUPERUSER${opts.replication ? ' REPLICATION' : ''} PASSWORD '${quotedPw}'`);
  control.sql(`CREATE DATABASE ${database} OWNER ${user}`);

  return { host: '127.0.0.1', port, user, password, database, dataDir, socketDir, cert, ...control };
}

/** A server on a data directory made elsewhere (e.g. by pg_basebackup), as the original's superuser. */
export interface ClusterCopy {
  port: number;
  dataDir: string;
  sql(query: string, database?: string): string;
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL on `dataDir`, a copy of `original`'s cluster, on its own port and socket
 * directory (the copied postgresql.conf names the original's). The caller removes `dataDir`.
 */
export async function startClusterCopy(dataDir: string, original: PgServer): Promise<ClusterCopy> {
  const ids = serverIds();
  const superuser = ids.uid !== undefined ? 'postgres' : userInfo().username;
  const socketDir = mkdtempSync(join(tmpdir(), 'sempipe-pg-copy-'));
  chmodSync(dataDir, 0o700);
  ownTree(dataDir, ids);
  ownTree(socketDir, ids);
  const port = await freePort();
  const control = serverControl({
    dataDir,
    socketDir,
    port,
    superuser,
    ids,
    args: ['-c', `port=${port}`, '-c', `unix_socket_directories=${socketDir}`, '-c', `listen_addresses=${original.host}`],
  });
  try {
    await control.start();
  } catch (err) {
    rmSync(socketDir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    dataDir,
    sql: control.sql,
    stop: async () => {
      await control.stop();
      rmSync(socketDir, { recursive: true, force: true });
    },
  };
}

interface ServerSetup {
  dataDir: string;
  socketDir: string;
  port: number;
  superuser: string;
  ids: Ids;
  /** Extra arguments of the postgres command. */
  args: string[];
}

/** Starting, stopping and querying one server process on a data directory. */
function serverControl(setup: ServerSetup): Pick<PgServer, 'sql' | 'start' | 'stop' | 'restart'> {
  const postgresBin = requireBinary('postgres');
  const psql = requireBinary('psql');
  const { dataDir, socketDir, port, superuser, ids } = setup;
  const runSql = (query: string, db = 'postgres'): string => {
    const r = spawnSync(psql, ['-h', socketDir, '-p', String(port), '-U', superuser, '-d', db, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`psql failed (${query}): ${r.stderr}`);
    return r.stdout.trim();
  };

  const { start, stop, restart } = createServerProcess({
    name: 'postgres',
    command: postgresBin,
    args: ['-D', dataDir, ...setup.args],
    spawnOptions: ids,
    ready: () => spawnSync(psql, ['-h', socketDir, '-p', String(port), '-U', superuser, '-d', 'postgres', '-XAtqc', 'select 1'], { encoding: 'utf8' }).status === 0,
    stopSignal: 'SIGINT',
  });

  return {
    sql: runSql,
    start,
    stop,
    restart,
  };
}

/** Stops the server and removes its directory. */
export const destroyPostgres: (server: PgServer | undefined) => Promise<void> = destroyServer;
