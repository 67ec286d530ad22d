// The embedded database of `sempipe demo`: an in-process PostgreSQL (PGlite) served over TCP on
// loopback by pglite-socket, seeded with a small sample schema (customers and their orders).
//
// What the server is (measured against @electric-sql/pglite 0.5.14 / pglite-socket 0.2.17):
// - Trust authentication: any user, database and password are accepted, and every session runs
//   as user `postgres` in database `postgres`.
// - One PostgreSQL backend shared by all connections through a message queue: session state
//   (SET, temporary tables, named prepared statements) is shared; an open transaction holds the
//   queue until it ends; extended-protocol messages of one connection stay together only when
//   they arrive in one write.
// - SSLRequest is answered 'N'; CancelRequest is ignored; COPY FROM STDIN kills the backend.
// - Statements run synchronously on this thread, so a slow query blocks the event loop.
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface DemoDatabase {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
  stop(): Promise<void>;
}

export interface DemoDatabaseOptions {
  /** TCP port on 127.0.0.1; default: a free port chosen by the OS. */
  port?: number;
  /** Directory that keeps the data between runs; default: in memory. */
  dataDir?: string;
}

const HOST = '127.0.0.1';

/** pglite-socket accepts one connection unless told otherwise; sempipe opens one per session. */
const MAX_CONNECTIONS = 16;

const SAMPLE_SCHEMA = `
begin;
create table public.customers (
  id serial primary key,
  name text not null,
  email text not null unique,
  country text not null,
  created_at timestamptz not null default now()
);
create table public.orders (
  id serial primary key,
  customer_id integer not null references public.customers (id),
  amount numeric(10,2) not null check (amount >= 0),
  status text not null check (status in ('pending', 'paid', 'shipped', 'refunded')),
  created_at timestamptz not null default now()
);
create index orders_customer_id_idx on public.orders (customer_id);
insert into public.customers (name, email, country, created_at) values
  ('Ada Lovelace',     'ada@example.com',     'GB', '2025-01-03 09:12:00+00'),
  ('Grace Hopper',     'grace@example.com',   'US', '2025-01-04 14:30:00+00'),
  ('Edsger Dijkstra',  'edsger@example.com',  'NL', '2025-01-06 08:05:00+00'),
  ('Barbara Liskov',   'barbara@example.com', 'US', '2025-01-09 16:45:00+00'),
  ('Niklaus Wirth',    'niklaus@example.com', 'CH', '2025-01-11 11:20:00+00'),
  ('Frances Allen',    'frances@example.com', 'US', '2025-01-15 10:00:00+00');
insert into public.orders (customer_id, amount, status, created_at) values
  (1,  129.90, 'shipped',  '2025-02-01 10:15:00+00'),
  (2,   42.00, 'paid',     '2025-02-01 12:40:00+00'),
  (3,  310.50, 'shipped',  '2025-02-02 09:05:00+00'),
  (1,   18.75, 'refunded', '2025-02-03 17:30:00+00'),
  (4,   99.99, 'shipped',  '2025-02-04 08:55:00+00'),
  (5,  250.00, 'paid',     '2025-02-05 13:10:00+00'),
  (6,   12.30, 'pending',  '2025-02-06 15:25:00+00'),
  (2,  480.00, 'shipped',  '2025-02-07 11:00:00+00'),
  (3,   65.40, 'paid',     '2025-02-08 19:45:00+00'),
  (4,    7.95, 'shipped',  '2025-02-09 07:30:00+00'),
  (5,  149.00, 'refunded', '2025-02-10 10:10:00+00'),
  (6,  220.25, 'shipped',  '2025-02-11 16:20:00+00'),
  (1,   75.00, 'paid',     '2025-02-12 12:00:00+00'),
  (2,   33.10, 'pending',  '2025-02-13 09:40:00+00'),
  (3,  999.00, 'shipped',  '2025-02-14 14:55:00+00'),
  (4,   54.60, 'paid',     '2025-02-15 18:05:00+00'),
  (5,   21.99, 'shipped',  '2025-02-16 08:15:00+00'),
  (6,  305.00, 'pending',  '2025-02-17 11:35:00+00'),
  (1,   88.80, 'shipped',  '2025-02-18 13:50:00+00'),
  (2,  160.00, 'paid',     '2025-02-19 17:25:00+00');
commit;
`;

/** Creates the sample tables unless a persistent data directory already holds them. */
async function seedSampleSchema(db: PGlite): Promise<void> {
  const found = await db.query<{ present: boolean }>(
    "select to_regclass('public.orders') is not null as present",
  );
  if (found.rows[0]?.present) return;
  await db.exec(SAMPLE_SCHEMA);
}

/** Resolves with the port the server bound, which differs from the requested one when that is 0. */
function listen(server: PGLiteSocketServer): Promise<number> {
  return new Promise((resolve, reject) => {
    server.addEventListener(
      'listening',
      (event) => resolve((event as CustomEvent<{ port: number }>).detail.port),
      { once: true },
    );
    server.start().catch(reject);
  });
}

export async function startDemoDatabase(opts: DemoDatabaseOptions = {}): Promise<DemoDatabase> {
  const db = await PGlite.create(opts.dataDir);
  let server: PGLiteSocketServer;
  let port: number;
  try {
    await seedSampleSchema(db);
    server = new PGLiteSocketServer({ db, host: HOST, port: opts.port ?? 0, maxConnections: MAX_CONNECTIONS });
    port = await listen(server);
  } catch (err) {
    await db.close();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    host: HOST,
    port,
    user: 'postgres',
    database: 'postgres',
    stop() {
      stopping ??= server.stop().then(() => db.close());
      return stopping;
    },
  };
}
