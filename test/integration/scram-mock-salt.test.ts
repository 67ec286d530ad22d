// Regression test for issue 24 part 3: the salt of an unknown user told it apart from a real one,
// since each worker made its own secret at every start. Through the real sempipe binary with two
// workers and a real PostgreSQL: SCRAM starts read with a raw socket (test/harness/scram-probe.ts)
// show one salt per user across both workers and a restart, for an unknown user exactly as for real
// ones (a plain-password client of the file and a stored verifier), with the same iteration count
// and nonce length; the salt secret is a 0600 file in state_dir, and `auth.salt_secret` gives two
// instances with separate state directories the same salts.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyPostgres, startPostgres, type PgServer } from '../harness/pg-server.js';
import { freePort } from '../harness/ports.js';
import { scramServerFirst, type ServerFirst } from '../harness/scram-probe.js';
import { startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';
import { createScramVerifier } from '../../protocols/postgres/auth/scram-verifier.js';

const BINDING = 'binding::/test::salts';
const PASSWORD = 'api-secret-4c1d';

let server: PgServer;
let dir: string;
let port: number;
let yaml: string;
const running: SempipeProcess[] = [];

const config = (listen: number, extra = ''): string => `
admin:
  listen: 127.0.0.1:\${ADMIN_PORT}
limits: { drain_timeout: 1s }
state_dir: ./state
${extra}
services:
  - fqn: service::/test::db
    protocol: postgres
    upstream: { host: 127.0.0.1, port: ${server.port}, database: ${server.database}, user: ${server.user}, password: "${server.password}", tls: disable }
bindings:
  - fqn: ${BINDING}
    service: service::/test::db
    listen: 127.0.0.1:${listen}
    database: orders
    clients:
      - { user: api, password: ${PASSWORD} }
      - { user: stored, verifier: "${createScramVerifier('stored-secret')}" }
`;

async function start(configDir: string, text: string): Promise<SempipeProcess> {
  const p = await startSempipe({ workers: 2, dir: configDir, yaml: text });
  running.push(p);
  return p;
}

async function stop(p: SempipeProcess): Promise<void> {
  await p.stop();
  running.splice(running.indexOf(p), 1);
}

/** The pids of the processes that hold accepted connections on `listenPort` (from `ss -p`). */
function ownersOfConnections(listenPort: number): Set<number> {
  const out = spawnSync('ss', ['-tnpH', 'state', 'established', `( sport = :${listenPort} )`], { encoding: 'utf8' }).stdout;
  return new Set([...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])));
}

/** `count` SCRAM starts for `user`, all open at once (so every worker answers some), then closed. */
async function starts(listenPort: number, user: string, count: number): Promise<{ firsts: ServerFirst[]; owners: Set<number> }> {
  const firsts = await Promise.all(Array.from({ length: count }, () => scramServerFirst(listenPort, user, 'orders')));
  const owners = ownersOfConnections(listenPort);
  for (const f of firsts) f.close();
  return { firsts, owners };
}

const salts = (firsts: ServerFirst[]): Set<string> => new Set(firsts.map((f) => f.salt));

async function login(listenPort: number): Promise<number> {
  const c = new pg.Client({ host: '127.0.0.1', port: listenPort, user: 'api', password: PASSWORD, database: 'orders' });
  await c.connect();
  try {
    return (await c.query('select 1 as one')).rows[0].one as number;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  server = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'sempipe-salts-'));
  port = await freePort();
  yaml = config(port);
});

afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await destroyPostgres(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('an unknown user\'s SCRAM salt is as stable as a real user\'s', () => {
  test('200 starts for an unknown user over 2 workers and a restart show one salt; real users\' salts stay too', async () => {
    let sempipe = await start(dir, yaml);
    const workers = new Set<number>();
    const before = await starts(port, 'ghost', 100);
    before.owners.forEach((pid) => workers.add(pid));
    const apiBefore = await starts(port, 'api', 20);
    const storedBefore = await starts(port, 'stored', 20);
    apiBefore.owners.forEach((pid) => workers.add(pid));
    expect(workers.size, 'both workers answered').toBe(2);
    const secretFile = join(dir, 'state', 'salt-secret.key');
    const made = existsSync(secretFile) ? statSync(secretFile) : undefined;

    await stop(sempipe);
    sempipe = await start(dir, yaml);
    const after = await starts(port, 'ghost', 100);
    const apiAfter = await starts(port, 'api', 20);
    const storedAfter = await starts(port, 'stored', 20);
    after.owners.forEach((pid) => workers.add(pid));
    expect(workers.size, 'two other workers after the restart').toBe(4);

    const ghost = [...before.firsts, ...after.firsts];
    expect(ghost).toHaveLength(200);
    expect(salts(ghost).size).toBe(1);
    expect(salts([...apiBefore.firsts, ...apiAfter.firsts]).size).toBe(1);
    expect(salts([...storedBefore.firsts, ...storedAfter.firsts]).size).toBe(1);
    expect(salts([ghost[0]!, apiBefore.firsts[0]!, storedBefore.firsts[0]!]).size, 'each user has a salt of its own').toBe(3);
    // Nothing else in the server-first message tells them apart either.
    const shape = (f: ServerFirst) => ({ iterations: f.iterations, nonce: f.serverNonce.length, salt: Buffer.from(f.salt, 'base64').length });
    expect(new Set([...ghost, ...apiAfter.firsts, ...storedAfter.firsts].map((f) => JSON.stringify(shape(f)))).size).toBe(1);
    expect(shape(ghost[0]!)).toEqual({ iterations: 4096, nonce: 24, salt: 16 });
    // The plain-password client's verifier, now derived from the secret, still logs in.
    expect(await login(port)).toBe(1);
    expect(made?.mode ?? 0, 'the secret file is owner-only').toBe(0o100600);
    expect(statSync(secretFile).mtimeMs, 'the secret is made once').toBe(made?.mtimeMs);
  });

  test('auth.salt_secret gives two instances with separate state directories the same salts', async () => {
    const secret = 'shared-salt-secret-0123456789abcdef';
    const salt = async (): Promise<{ ghost: string; api: string }> => {
      const p = await freePort();
      const sempipe = await start(mkdtempSync(join(dir, 'instance-')), config(p, `auth: { salt_secret: "${secret}" }`));
      const ghost = await scramServerFirst(p, 'ghost', 'orders');
      const api = await scramServerFirst(p, 'api', 'orders');
      ghost.close();
      api.close();
      await stop(sempipe);
      return { ghost: ghost.salt, api: api.salt };
    };
    const [a, b] = [await salt(), await salt()];
    expect(a).toEqual(b);
    expect(a.ghost).not.toBe(a.api);
  });
});
