// Tests of the state store on real SQLite files: round trips, the change sequence, schema
// versioning, file mode, durability across close/reopen, and across a process killed (SIGKILL)
// right after it reported a commit.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceConfig } from './config.js';
import { openStateStore, StateStoreError, type StoredBinding } from './state-store.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sempipe-state-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const service: ServiceConfig = {
  fqn: 'service::/prod::orders',
  protocol: 'postgres',
  upstream: { host: '127.0.0.1', port: 5432, database: 'app', user: 'owner', password: 'up-secret', tls: 'disable' },
};
const binding: StoredBinding = {
  fqn: 'binding::/prod::api',
  service: 'service::/prod::orders',
  listen: { host: '127.0.0.1', port: 16432 },
  database: 'app',
  auth: 'scram-sha-256',
  allowPasswordWithoutTls: false,
  user: 'api',
  verifier: 'SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
};

describe('openStateStore', () => {
  it('round-trips services, bindings and policies through a close and reopen', () => {
    const dir = tempDir();
    const store = openStateStore(dir);
    expect(store.sequence()).toBe(0);
    store.putService(service);
    store.putBinding(binding);
    store.putPolicy({ fqn: 'policy::/prod::ro', document: { realm: '::/prod', read_only: true } });
    store.close();

    const again = openStateStore(dir);
    expect(again.services()).toEqual([service]);
    expect(again.bindings()).toEqual([binding]);
    expect(again.policies()).toEqual([{ fqn: 'policy::/prod::ro', document: { realm: '::/prod', read_only: true } }]);
    expect(again.sequence()).toBe(3);
    again.close();
  });

  it('gives every change a larger sequence, never reusing one after deletes and reopen', () => {
    const dir = tempDir();
    const store = openStateStore(dir);
    const seqs = [store.putService(service), store.putService({ ...service, upstream: { ...service.upstream, port: 5433 } })];
    seqs.push(store.delete('service', service.fqn)!);
    expect(store.delete('service', service.fqn)).toBeUndefined();
    store.close();
    const again = openStateStore(dir);
    seqs.push(again.putPolicy({ fqn: 'policy::/::p', document: {} }));
    expect(seqs).toEqual([1, 2, 3, 4]);
    expect(again.services()).toEqual([]);
    again.close();
  });

  it('replaces a binding on put (rotation) and deletes it', () => {
    const store = openStateStore(tempDir());
    store.putBinding(binding);
    const rotated = { ...binding, verifier: binding.verifier.replace('c2FsdHNhbHRzYWx0c2FsdA==', 'b3RoZXJzYWx0b3RoZXJzYQ==') };
    store.putBinding(rotated);
    expect(store.bindings()).toEqual([rotated]);
    expect(store.delete('binding', binding.fqn)).toBe(3);
    expect(store.bindings()).toEqual([]);
    store.close();
  });

  it('refuses to store a binding whose verifier is not a SCRAM verifier (e.g. a password)', () => {
    const store = openStateStore(tempDir());
    expect(() => store.putBinding({ ...binding, verifier: 'plain-password' })).toThrow(/CHECK constraint/);
    expect(store.sequence()).toBe(0);
    store.close();
  });

  it('uses WAL, records the schema version, and keeps the file private to its owner', () => {
    const dir = tempDir();
    openStateStore(dir).close();
    const file = join(dir, 'state.db');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const db = new Database(file, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.prepare('SELECT version FROM schema_migrations').all()).toEqual([{ version: 1 }, { version: 2 }]);
    db.close();
    openStateStore(dir).close();
    const db2 = new Database(file, { readonly: true });
    expect(db2.prepare('SELECT count(*) AS n FROM schema_migrations').get()).toEqual({ n: 2 });
    db2.close();
  });

  it('refuses a store written by a newer schema version', () => {
    const dir = tempDir();
    openStateStore(dir).close();
    const db = new Database(join(dir, 'state.db'));
    db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'x')").run();
    db.close();
    expect(() => openStateStore(dir)).toThrow(StateStoreError);
    expect(() => openStateStore(dir)).toThrow(/schema version 99, newer than this sempipe knows \(2\)/);
  });

  it('loses no acknowledged write when the process is killed with SIGKILL mid-stream', async () => {
    const dir = tempDir();
    const script = join(dir, 'writer.mjs');
    const storeModule = pathToFileURL(resolve(import.meta.dirname, '../dist/control/state-store.js')).href;
    writeFileSync(
      script,
      `import { openStateStore } from ${JSON.stringify(storeModule)};
       const store = openStateStore(process.argv[2]);
       for (let i = 0; ; i++) {
         const seq = store.putPolicy({ fqn: 'policy::/crash::p' + i, document: { i } });
         process.stdout.write(seq + '\\n');
       }`,
    );
    const child = spawn(process.execPath, [script, join(dir, 'data')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acknowledged = 0;
    let buffered = '';
    await new Promise<void>((done) => {
      child.stdout.on('data', (d: Buffer) => {
        buffered += d.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        if (lines.length > 0) acknowledged = Number(lines.at(-1));
        if (acknowledged >= 200) {
          child.kill('SIGKILL');
          done();
        }
      });
    });
    await new Promise((r) => child.once('exit', r));
    const store = openStateStore(join(dir, 'data'));
    expect(store.sequence()).toBeGreaterThanOrEqual(acknowledged);
    const names = new Set(store.policies().map((p) => p.fqn));
    for (let i = 0; i < acknowledged; i++) expect(names.has(`policy::/crash::p${i}`)).toBe(true);
    store.close();
  });
});
