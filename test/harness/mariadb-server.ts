// Starts a real MariaDB server from the installed binaries for tests and benchmarks:
// mariadb-install-db into a temporary directory (root authenticates by password, not unix_socket),
// its own free port and socket, an upstream user with a mysql_native_password password, optional
// TLS with a certificate generated on the spot. Never touches a server on 3306.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';
import { makeCertificate, type Certificate } from './certs.js';
import { freePort } from './ports.js';
import { createServerProcess, destroyServer } from './server-process.js';

export interface MariaDbServerOptions {
  tls?: boolean;
  user?: string;
  password?: string;
  database?: string;
  /** Extra [mysqld] settings, e.g. { max_allowed_packet: '64M' }. */
  settings?: Record<string, string>;
}

export interface MariaDbServer {
  host: string;
  port: number;
  socket: string;
  user: string;
  password: string;
  database: string;
  rootPassword: string;
  dataDir: string;
  cert?: Certificate;
  /** Runs SQL as root over the Unix socket; returns the `mariadb -N -B` output. */
  sql(query: string, database?: string): string;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
}

/** mariadbd refuses to run as root unless told which account to switch to. */
function serverAccount(): string[] {
  if (process.getuid?.() !== 0) return [];
  const r = spawnSync('id', ['-u', 'mysql'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('running as root needs a "mysql" system account (apt-get install mariadb-server)');
  return ['--user=mysql'];
}

const quote = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

export async function startMariaDb(opts: MariaDbServerOptions = {}): Promise<MariaDbServer> {
  const installDb = requireBinary('mariadb-install-db');
  const mariadbd = requireBinary('mariadbd');
  const client = requireBinary('mariadb');
  const account = serverAccount();
  const user = opts.user ?? 'upstream_owner';
  const password = opts.password ?? `pw-${Math.random().toString(36).slice(2)}`;
  const rootPassword = `root-${Math.random().toString(36).slice(2)}`;
  const database = opts.database ?? 'appdb';
  const base = mkdtempSync(join(tmpdir(), 'sempipe-maria-'));
  chmodSync(base, 0o755);
  const dataDir = join(base, 'data');
  const runDir = join(base, 'run');
  mkdirSync(runDir);
  const socket = join(runDir, 'mariadb.sock');
  if (account.length > 0) spawnSync('chown', ['-R', 'mysql:mysql', base]);

  const port = await freePort();
  const settings: Record<string, string> = {
    datadir: dataDir,
    port: String(port),
    'bind-address': '127.0.0.1',
    socket,
    'pid-file': join(runDir, 'mariadb.pid'),
    'log-error': join(base, 'error.log'),
    'skip-name-resolve': 'ON',
    'innodb_flush_log_at_trx_commit': '0',
    'innodb_buffer_pool_size': '32M',
    'innodb_log_file_size': '16M',
    'performance_schema': 'OFF',
    'max_connections': '300',
    ...opts.settings,
  };
  let cert: Certificate | undefined;
  if (opts.tls) {
    cert = makeCertificate(base, 'localhost');
    if (account.length > 0) spawnSync('chown', ['mysql:mysql', cert.certFile, cert.keyFile]);
    Object.assign(settings, { ssl_cert: cert.certFile, ssl_key: cert.keyFile });
  }
  const cnf = join(base, 'my.cnf');
  writeFileSync(cnf, `[mysqld]\n${Object.entries(settings).map(([k, v]) => `${k}=${v}`).join('\n')}\n`);
  chmodSync(cnf, 0o644);

  const install = spawnSync(installDb, [
    `--defaults-file=${cnf}`, `--datadir=${dataDir}`, ...account,
    '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve',
  ], { encoding: 'utf8' });
  if (install.status !== 0) throw new Error(`mariadb-install-db failed: ${install.stderr || install.stdout}`);

  let rootHasPassword = false;
  const clientArgs = (): string[] => [
    '--no-defaults', `--socket=${socket}`, '-uroot', ...(rootHasPassword ? [`-p${rootPassword}`] : []), '-N', '-B',
  ];
  const runSql = (query: string, db?: string): string => {
    const r = spawnSync(client, [...clientArgs(), ...(db ? [db] : []), '-e', query], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mariadb failed (${query}): ${r.stderr}`);
    return r.stdout.trim();
  };

  const { start, stop, restart } = createServerProcess({
    name: 'mariadbd',
    command: mariadbd,
    args: [`--defaults-file=${cnf}`, ...account],
    ready: () => spawnSync(client, [...clientArgs(), '-e', 'select 1'], { encoding: 'utf8' }).status === 0,
    stopSignal: 'SIGTERM',
  });

  await start();
  runSql([
    `CREATE DATABASE \`${database}\``,
    `CREATE USER ${quote(user)}@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD(${quote(password)})`,
    `GRANT ALL PRIVILEGES ON *.* TO ${quote(user)}@'%' WITH GRANT OPTION`,
    `ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD(${quote(rootPassword)})`,
  ].join('; '));
  rootHasPassword = true;

  return {
    host: '127.0.0.1',
    port,
    socket,
    user,
    password,
    database,
    rootPassword,
    dataDir,
    cert,
    sql: runSql,
    start,
    stop,
    restart,
  };
}

/** Stops the server and removes its directory. */
export const destroyMariaDb: (server: MariaDbServer | undefined) => Promise<void> = destroyServer;
