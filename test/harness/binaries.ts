// Finds the server and client binaries the tests need, and fails with the Debian package to install
// when one is missing, so a fresh machine says what it lacks instead of a cryptic ENOENT.
import { existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const pgBinDirs = (): string[] => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(root, v, 'bin'));
};

const packages: Record<string, string> = {
  initdb: 'postgresql',
  postgres: 'postgresql',
  psql: 'postgresql-client',
  pgbench: 'postgresql-contrib (or postgresql)',
  pgbouncer: 'pgbouncer',
  openssl: 'openssl',
  'mariadb-install-db': 'mariadb-server',
  mariadbd: 'mariadb-server',
  mariadb: 'mariadb-client',
  sysbench: 'sysbench',
  haproxy: 'haproxy',
};

/** Absolute path of `name`, searched in PATH and in PostgreSQL's versioned bin directories. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', ...pgBinDirs()];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** Like findBinary, but throws an error naming the package that provides the binary. */
export function requireBinary(name: string): string {
  const found = findBinary(name);
  if (!found) {
    const pkg = packages[name] ?? name;
    throw new Error(`required binary "${name}" not found: install the Debian package ${pkg} (apt-get install ${pkg.split(' ')[0]})`);
  }
  return found;
}
