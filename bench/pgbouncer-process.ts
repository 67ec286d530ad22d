// Runs PgBouncer in session mode as the benchmark's reference pooler: writes pgbouncer.ini and an
// auth_file into a directory, starts /usr/sbin/pgbouncer on a free port (as the postgres account when
// we are root, since PgBouncer refuses to run as root), and stops it. Its log goes to a file there.
// Clients log in as the server role itself, with the role's SCRAM verifier from pg_authid in the
// auth_file, and PgBouncer passes their SCRAM keys through to the server: PgBouncer's usual setup.
// A forced user (user=/password= in [databases]) with a different client verifier does not work
// in PgBouncer 1.18 (pgbouncer/pgbouncer#944, #1461: the client's SCRAM keys replace the forced
// user's password and the server login fails).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/harness/ports.js';
import type { PgTarget } from './pgbench-run.js';
import { watchChild } from './child-watch.js';
import { waitForLogin } from './pg-clients.js';

export interface PgbouncerOptions {
  binary: string;
  /** Directory for pgbouncer.ini, the auth_file and the log; must be traversable by `postgres`. */
  dir: string;
  /** The real server, and the role that clients log in as (through PgBouncer). */
  upstream: PgTarget;
  /** The role's SCRAM verifier as the server stores it (pg_authid.rolpassword). */
  verifier: string;
}

export interface PgbouncerProcess {
  readonly pid: number;
  /** Where clients connect: PgBouncer's port, the role's credentials, the same database name. */
  readonly target: PgTarget;
  readonly logFile: string;
  stop(): Promise<void>;
}

interface Ids {
  uid?: number;
  gid?: number;
}

function unprivilegedIds(): Ids {
  if (process.getuid?.() !== 0) return {};
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) throw new Error('PgBouncer refuses to run as root and there is no "postgres" account to run it as');
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** A value in PgBouncer's libpq-style connection string, single-quoted. */
function connValue(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

function writePrivate(path: string, text: string, ids: Ids): void {
  writeFileSync(path, text, { mode: 0o600 });
  if (ids.uid !== undefined) chownSync(path, ids.uid, ids.gid!);
}

export async function startPgbouncer(opts: PgbouncerOptions): Promise<PgbouncerProcess> {
  const ids = unprivilegedIds();
  const port = await freePort();
  const { upstream } = opts;
  // PgBouncer 1.18's ini parser takes only plain names as [databases] keys.
  if (!/^\w+$/.test(upstream.database)) throw new Error(`database name ${JSON.stringify(upstream.database)} cannot be a PgBouncer [databases] key`);
  const iniFile = join(opts.dir, 'pgbouncer.ini');
  const authFile = join(opts.dir, 'userlist.txt');
  const logFile = join(opts.dir, 'pgbouncer.log');
  chmodSync(opts.dir, 0o755);
  writePrivate(authFile, `"${upstream.user.replace(/"/g, '""')}" "${opts.verifier}"\n`, ids);
  const server = [`host=${connValue(upstream.host)}`, `port=${upstream.port}`, `dbname=${connValue(upstream.database)}`].join(' ');
  const ini = [
    '[databases]',
    `${upstream.database} = ${server}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'pool_mode = session',
    'auth_type = scram-sha-256',
    `auth_file = ${authFile}`,
    'max_client_conn = 2000',
    'default_pool_size = 20',
    'server_tls_sslmode = disable',
    'client_tls_sslmode = disable',
    'ignore_startup_parameters = extra_float_digits',
    '',
  ].join('\n');
  writePrivate(iniFile, ini, ids);

  const logFd = openSync(logFile, 'a', 0o644);
  let child: ChildProcess;
  try {
    child = spawn(opts.binary, [iniFile], { ...ids, stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  // stop() sends SIGTERM, PgBouncer's immediate shutdown; SIGINT would wait for clients to leave.
  const watch = watchChild(child, 'pgbouncer', 5000, () => readFileSync(logFile, 'utf8'));
  const target: PgTarget = { ...upstream, host: '127.0.0.1', port };
  await watch.whenReady((isDead) => waitForLogin(target, 15_000, isDead));
  return { pid: child.pid!, target, logFile, stop: watch.stop };
}
