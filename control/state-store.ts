// The durable store of resources created through the control API: services, bindings (client
// user and SCRAM verifier, never a client password; HTTP bindings: the client's name and the
// SHA-256 of its token, never the token), policies (JSON documents) and a change log
// whose sequence only grows. One SQLite file `<stateDir>/state.db` (better-sqlite3), WAL journal
// with synchronous = FULL so that a write acknowledged by the API survives a crash or power loss.
// The schema is versioned: `schema_migrations` records every migration applied, and a file written
// by a newer sempipe (unknown version) is refused rather than misread.
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { AnyServiceConfig, BindingConfig, HostPort, HttpBindingConfig } from './config.js';

/** A binding created through the API, with the one client sempipe issued for it and its one TCP address. */
export interface StoredBinding extends Omit<BindingConfig, 'clients' | 'listen' | 'unixSocket'> {
  listen: HostPort;
  user: string;
  /** SCRAM-SHA-256 verifier in PostgreSQL's stored format; the password itself is never stored. */
  verifier: string;
}

/** An HTTP binding created through the API, with the one client sempipe issued a token for and its one TCP address. */
export interface StoredHttpBinding extends Omit<HttpBindingConfig, 'protocol' | 'clients' | 'listen' | 'unixSocket'> {
  listen: HostPort;
  client: string;
  /** SHA-256 (hex) of the issued token; the token itself is never stored. */
  tokenSha256: string;
}

/** A policy document as the API received it (the YAML shape, in JSON). */
export interface StoredPolicy {
  fqn: string;
  document: unknown;
}

export type ResourceKind = 'service' | 'binding' | 'policy';

export interface StateStore {
  services(): AnyServiceConfig[];
  bindings(): StoredBinding[];
  httpBindings(): StoredHttpBinding[];
  policies(): StoredPolicy[];
  /** Each mutation commits in its own transaction and returns the change sequence it was given. */
  putService(service: AnyServiceConfig): number;
  putBinding(binding: StoredBinding): number;
  putHttpBinding(binding: StoredHttpBinding): number;
  putPolicy(policy: StoredPolicy): number;
  /** Returns the change sequence, or undefined when there was no such resource. */
  delete(kind: ResourceKind, fqn: string): number | undefined;
  /** The last change sequence committed (0 for a new store). */
  sequence(): number;
  close(): void;
}

/** Migration N (1-based) is MIGRATIONS[N-1]; append only, never edit an applied one. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE services (
     fqn TEXT PRIMARY KEY,
     doc TEXT NOT NULL,
     seq INTEGER NOT NULL
   );
   CREATE TABLE bindings (
     fqn TEXT PRIMARY KEY,
     service TEXT NOT NULL,
     doc TEXT NOT NULL,
     client_user TEXT NOT NULL,
     verifier TEXT NOT NULL CHECK (verifier LIKE 'SCRAM-SHA-256$%'),
     seq INTEGER NOT NULL
   );
   CREATE TABLE policies (
     fqn TEXT PRIMARY KEY,
     doc TEXT NOT NULL,
     seq INTEGER NOT NULL
   );
   CREATE TABLE changes (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     at TEXT NOT NULL,
     kind TEXT NOT NULL,
     fqn TEXT NOT NULL,
     op TEXT NOT NULL CHECK (op IN ('put', 'delete'))
   );`,
  `CREATE TABLE http_bindings (
     fqn TEXT PRIMARY KEY,
     service TEXT NOT NULL,
     doc TEXT NOT NULL,
     client TEXT NOT NULL,
     token_sha256 TEXT NOT NULL CHECK (length(token_sha256) = 64),
     seq INTEGER NOT NULL
   );`,
];

export class StateStoreError extends Error {
  override readonly name = 'StateStoreError';
}

type BindingDoc = Omit<StoredBinding, 'fqn' | 'service' | 'user' | 'verifier'>;

interface BindingRow {
  fqn: string;
  service: string;
  doc: string;
  client_user: string;
  verifier: string;
}

/** Opens (creating when absent) `<stateDir>/state.db` and brings its schema up to date. */
export function openStateStore(stateDir: string): StateStore {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, 'state.db');
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw new StateStoreError(`cannot open the state store ${file}: ${(err as Error).message}`);
  }
  // It holds upstream passwords of API-created services: owner only. SQLite gives the -wal and
  // -shm files the database file's mode.
  chmodSync(file, 0o600);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  migrate(db, file);

  const record = db.prepare<[string, ResourceKind, string, 'put' | 'delete']>('INSERT INTO changes (at, kind, fqn, op) VALUES (?, ?, ?, ?)');
  const change = (kind: ResourceKind, fqn: string, op: 'put' | 'delete'): number =>
    Number(record.run(new Date().toISOString(), kind, fqn, op).lastInsertRowid);

  const upsertService = db.prepare<[string, string, number]>(
    'INSERT INTO services (fqn, doc, seq) VALUES (?, ?, ?) ON CONFLICT (fqn) DO UPDATE SET doc = excluded.doc, seq = excluded.seq',
  );
  const upsertBinding = db.prepare<[string, string, string, string, string, number]>(
    `INSERT INTO bindings (fqn, service, doc, client_user, verifier, seq) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (fqn) DO UPDATE SET service = excluded.service, doc = excluded.doc, client_user = excluded.client_user,
       verifier = excluded.verifier, seq = excluded.seq`,
  );
  const upsertPolicy = db.prepare<[string, string, number]>(
    'INSERT INTO policies (fqn, doc, seq) VALUES (?, ?, ?) ON CONFLICT (fqn) DO UPDATE SET doc = excluded.doc, seq = excluded.seq',
  );
  const upsertHttpBinding = db.prepare<[string, string, string, string, string, number]>(
    `INSERT INTO http_bindings (fqn, service, doc, client, token_sha256, seq) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (fqn) DO UPDATE SET service = excluded.service, doc = excluded.doc, client = excluded.client,
       token_sha256 = excluded.token_sha256, seq = excluded.seq`,
  );
  // A binding FQN lives in one of the two binding tables; deleting it tries both.
  const deletes: Record<ResourceKind, Database.Statement<[string]>[]> = {
    service: [db.prepare('DELETE FROM services WHERE fqn = ?')],
    binding: [db.prepare('DELETE FROM bindings WHERE fqn = ?'), db.prepare('DELETE FROM http_bindings WHERE fqn = ?')],
    policy: [db.prepare('DELETE FROM policies WHERE fqn = ?')],
  };
  const lastSeq = db.prepare<[], { seq: number | null }>('SELECT max(seq) AS seq FROM changes');

  const putService = db.transaction((s: AnyServiceConfig): number => {
    const seq = change('service', s.fqn, 'put');
    upsertService.run(s.fqn, JSON.stringify(s), seq);
    return seq;
  });
  const putBinding = db.transaction((b: StoredBinding): number => {
    const { fqn, service, user, verifier, ...rest } = b;
    const doc: BindingDoc = rest;
    const seq = change('binding', fqn, 'put');
    upsertBinding.run(fqn, service, JSON.stringify(doc), user, verifier, seq);
    return seq;
  });
  const putPolicy = db.transaction((p: StoredPolicy): number => {
    const seq = change('policy', p.fqn, 'put');
    upsertPolicy.run(p.fqn, JSON.stringify(p.document), seq);
    return seq;
  });
  const putHttpBinding = db.transaction((b: StoredHttpBinding): number => {
    const { fqn, service, client, tokenSha256, ...doc } = b;
    const seq = change('binding', fqn, 'put');
    upsertHttpBinding.run(fqn, service, JSON.stringify(doc), client, tokenSha256, seq);
    return seq;
  });
  const remove = db.transaction((kind: ResourceKind, fqn: string): number | undefined => {
    if (deletes[kind].reduce((n, d) => n + d.run(fqn).changes, 0) === 0) return undefined;
    return change(kind, fqn, 'delete');
  });

  return {
    services: () => db.prepare<[], { doc: string }>('SELECT doc FROM services ORDER BY fqn').all().map((r) => JSON.parse(r.doc) as AnyServiceConfig),
    bindings: () =>
      db
        .prepare<[], BindingRow>('SELECT fqn, service, doc, client_user, verifier FROM bindings ORDER BY fqn')
        .all()
        .map((r) => ({ fqn: r.fqn, service: r.service, ...(JSON.parse(r.doc) as BindingDoc), user: r.client_user, verifier: r.verifier })),
    httpBindings: () =>
      db
        .prepare<[], { fqn: string; service: string; doc: string; client: string; token_sha256: string }>('SELECT fqn, service, doc, client, token_sha256 FROM http_bindings ORDER BY fqn')
        .all()
        .map((r) => ({ fqn: r.fqn, service: r.service, ...(JSON.parse(r.doc) as Omit<StoredHttpBinding, 'fqn' | 'service' | 'client' | 'tokenSha256'>), client: r.client, tokenSha256: r.token_sha256 })),
    policies: () =>
      db
        .prepare<[], { fqn: string; doc: string }>('SELECT fqn, doc FROM policies ORDER BY fqn')
        .all()
        .map((r) => ({ fqn: r.fqn, document: JSON.parse(r.doc) as unknown })),
    putService: (s) => putService(s),
    putBinding: (b) => putBinding(b),
    putHttpBinding: (b) => putHttpBinding(b),
    putPolicy: (p) => putPolicy(p),
    delete: (kind, fqn) => remove(kind, fqn),
    sequence: () => lastSeq.get()?.seq ?? 0,
    close: () => db.close(),
  };
}

function migrate(db: Database.Database, file: string): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
  const current = db.prepare<[], { v: number | null }>('SELECT max(version) AS v FROM schema_migrations').get()?.v ?? 0;
  if (current > MIGRATIONS.length) {
    db.close();
    throw new StateStoreError(`the state store ${file} has schema version ${current}, newer than this sempipe knows (${MIGRATIONS.length}); use a newer sempipe`);
  }
  const apply = db.transaction(() => {
    for (let version = current + 1; version <= MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version - 1]!);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(version, new Date().toISOString());
    }
  });
  apply.immediate();
}
