// The primary process of `sempipe proxy`: owns the config (from a file and the state store, or from
// a remote control plane), the admin listener (/metrics aggregated over all workers, /healthz,
// /readyz, the control API) and the worker processes. It pushes every config change to the
// workers, routes cancel requests to the worker that owns the key, gathers session lists, restarts
// a worker that died (its sessions are lost, never others', and audited as lost by the primary),
// reloads on SIGHUP and drains on SIGTERM/SIGINT.
//
// Connections are spread by the kernel (cluster.SCHED_NONE), not handed over by the primary. With
// node:cluster's default round-robin the primary accepts each connection and sends its descriptor
// to a worker; one sent to a worker that dies before it answers is neither closed nor sent again
// (Node waits for a reply that never comes): the client hangs until its own timeout, no auth
// timeout applies, and the primary leaks the descriptor. With SCHED_NONE the primary only creates
// each listening socket and every worker accepts from it: a connection is either still queued in
// the kernel, where a live worker accepts it, or owned by one worker, whose death closes it at once.
// The primary never holds a client socket, and connection setup skips a hop through the primary
// (TCP connect to first answer, 2 workers on a loaded 2-core VM: median 250-350 µs instead of
// 430-630 µs; the primary's ~150 µs of CPU per connection goes, and a session's start and end
// messages cost it about as much). The price: every worker is woken and the first to call
// accept() wins, so sessions spread less evenly (pgbench's 16 connections split 10/6 rather than
// 8/8; no difference in TPS measurable on 2 cores).
// Per-worker SO_REUSEPORT listeners would spread evenly, but Node 20's net has no reusePort, and the
// kernel resets the connections queued on a dying worker's own listener instead of passing them
// on; a hand-off timeout would have to reach into Node's private round-robin handle.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { startAdminServer, type AdminServer } from '../control/admin-server.js';
import { ConfigError, formatListenAddress, type HostPort, type SempipeConfig } from '../control/config.js';
import { createAuditLog } from '../control/audit.js';
import { createPrimaryMetrics, METRICS_CONTENT_TYPE, renderClusterMetrics } from '../control/metrics.js';
import { createOpsLog } from '../control/ops-log.js';
import { MAX_WORKERS } from '../proxy/cancel-keys.js';
import { removeStaleSockets } from '../proxy/unix-socket.js';
import { isOurs, type ToPrimary, type ToWorker } from './ipc-messages.js';
import { controlPlaneSource, fileSource, type ConfigSource } from './config-sources.js';
import { PrimaryControl, type WorkerChannel } from './primary-control.js';
import { servedBindings, unixSocketPaths } from './wiring.js';
import { WorkerSessions } from './worker-sessions.js';

export type ProxyOptions =
  | { configFile: string; workers?: number }
  | { controlPlane: string; token: string; realm: string; admin: HostPort; cacheDir?: string; workers?: number };

interface WorkerSlot {
  index: number;
  /** How many processes have held this slot, this one included. */
  processGeneration: number;
  worker: Worker;
  appliedGeneration: number;
  failed: boolean;
  sessions: WorkerSessions;
  /** Settles once the process has exited and its lost sessions are audited (see fork). */
  closed: Promise<void>;
}

export async function runSupervisor(opts: ProxyOptions): Promise<void> {
  const log = createOpsLog('primary');
  let source: ConfigSource;
  try {
    source =
      'configFile' in opts
        ? fileSource(opts.configFile, log)
        : controlPlaneSource({ url: opts.controlPlane, token: opts.token, realm: opts.realm, admin: opts.admin, cacheDir: opts.cacheDir, workers: opts.workers, auditDestination: 'stdout' }, log);
  } catch (err) {
    process.stderr.write(`sempipe: ${err instanceof ConfigError ? err.message : err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  let config: SempipeConfig = source.initial;
  const count = Math.min(MAX_WORKERS, Math.max(1, opts.workers ?? config.workers ?? availableParallelism()));
  let generation = 1;
  let shuttingDown = false;
  const slots = new Map<number, WorkerSlot>();
  // The audit lines of sessions lost with a worker go where the workers' lines go.
  const audit = config.audit.enabled ? createAuditLog({ destination: config.audit.destination, maxStatementLength: config.audit.maxStatementLength }) : undefined;
  const primaryMetrics = createPrimaryMetrics();

  const send = (slot: WorkerSlot, msg: ToWorker): void => {
    if (slot.worker.isConnected()) slot.worker.send(msg);
  };
  const broadcast = (msg: ToWorker): void => slots.forEach((s) => send(s, msg));
  const channel = (slot: WorkerSlot): WorkerChannel => ({
    index: slot.index,
    sessionIdPrefix: `${slot.index}.${slot.processGeneration}`,
    send: (m) => send(slot, m),
  });
  const control = new PrimaryControl(() => [...slots.values()].filter((s) => s.worker.isConnected()).map(channel));

  const fork = (index: number): void => {
    const processGeneration = (slots.get(index)?.processGeneration ?? 0) + 1;
    const worker = cluster.fork({
      SEMPIPE_WORKER_INDEX: String(index),
      SEMPIPE_WORKER_GENERATION: String(processGeneration),
      SEMPIPE_WORKER_COUNT: String(count),
    });
    const sessions = new WorkerSessions();
    // 'close' comes once the process has exited and every message it sent has been read, so a
    // session it ended just before dying is not taken for lost.
    const closed = new Promise<void>((resolve) => worker.process.once('close', () => resolve())).then(() => {
      const lost = sessions.reportLost(audit, primaryMetrics);
      if (lost > 0) log.warn({ worker: index, sessions: lost }, 'sessions lost with their worker');
    });
    const slot: WorkerSlot = { index, processGeneration, worker, appliedGeneration: 0, failed: false, sessions, closed };
    slots.set(index, slot);
    worker.on('message', (msg: unknown) => {
      if (!isOurs(msg)) return;
      const m = msg as ToPrimary;
      if (slot.sessions.onMessage(m)) return;
      if (control.onWorkerMessage(channel(slot), m)) return;
      if (m.type === 'hello') {
        send(slot, { type: 'config', generation, config });
      } else if (m.type === 'applied') {
        slot.appliedGeneration = m.generation;
        slot.failed = m.failed.length > 0;
        for (const f of m.failed) log.error({ binding: f.fqn, address: f.address, err: f.error }, 'listener failed');
      } else if (m.type === 'cancel') {
        const target = slots.get(m.worker);
        if (target) send(target, { type: 'cancel', processId: m.processId, secretKey: m.secretKey });
      }
    });
    worker.on('exit', (code, signal) => {
      control.onWorkerExit(channel(slot));
      if (shuttingDown || slots.get(index) !== slot) return;
      log.error({ worker: index, code, signal }, 'worker died; restarting it');
      fork(index);
    });
  };

  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // The primary binds the Unix sockets the workers share: a file a crashed run left goes first.
  await removeStaleSockets(unixSocketPaths(config));
  cluster.setupPrimary({ silent: false });
  for (let i = 1; i <= count; i++) fork(i);

  let configsSent = Promise.resolve();
  source.onConfig((next) => {
    // Sockets the workers already listen on are ours: probing them would only knock on our own door.
    const held = new Set(unixSocketPaths(config));
    config = next;
    generation++;
    const msg: ToWorker = { type: 'config', generation, config };
    const added = unixSocketPaths(next).filter((path) => !held.has(path));
    configsSent = configsSent.then(() => removeStaleSockets(added)).then(() => broadcast(msg));
  });

  const workersReady = (): boolean => !shuttingDown && [...slots.values()].every((s) => s.appliedGeneration === generation && !s.failed);
  const ready = (): { ready: boolean; [detail: string]: unknown } => {
    const extra = source.readiness?.() ?? { ready: true };
    return { ...extra, ready: workersReady() && extra.ready };
  };
  const clusterMetrics = async (): Promise<string> => renderClusterMetrics(await control.gatherMetrics(), primaryMetrics);
  const sessions = { list: () => control.listSessions(), kill: (id: string) => control.killSession(id) };
  let admin: AdminServer;
  try {
    admin = await startAdminServer({
      host: config.admin.listen.host,
      port: config.admin.listen.port,
      metrics: async () => (await clusterMetrics()) + (source.metrics ? `\n${await source.metrics()}` : ''),
      contentType: METRICS_CONTENT_TYPE,
      ready,
      extra: source.adminRoutes?.(sessions),
    });
  } catch (err) {
    log.error({ err: String(err) }, 'admin listener failed');
    shuttingDown = true;
    for (const s of slots.values()) s.worker.kill();
    process.exit(1);
  }
  log.info(
    { workers: count, admin: `${config.admin.listen.host}:${admin.address.port}`, bindings: servedBindings(config).map((b) => `${b.fqn} on ${b.listen.map(formatListenAddress).join(', ')}`) },
    'sempipe proxy started',
  );

  process.on('SIGHUP', () => {
    try {
      source.reload();
      log.info({ generation }, 'config reloaded');
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'config reload refused; keeping the running config');
    }
  });

  const shutdown = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal, drainTimeoutMs: config.limits.drainTimeoutMs }, 'draining');
    // The audit lines of sessions lost in the drain (a worker killed after drain_timeout) come first.
    const exits = [...slots.values()].map((s) => s.closed);
    broadcast({ type: 'drain', timeoutMs: config.limits.drainTimeoutMs });
    const killTimer = setTimeout(() => slots.forEach((s) => s.worker.kill('SIGKILL')), config.limits.drainTimeoutMs + 5000);
    await Promise.all(exits);
    clearTimeout(killTimer);
    await admin.close();
    source.close();
    await audit?.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
