// The primary process of `sempipe proxy`: owns the config (from a file and the state store, or from
// a remote control plane), the admin listener (/metrics aggregated over all workers, /healthz,
// /readyz, the control API) and the worker processes. It pushes every config change to the
// workers, routes cancel requests to the worker that owns the key, gathers session lists, restarts
// a worker that died (its sessions are lost, never others'), reloads on SIGHUP and drains on
// SIGTERM/SIGINT.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { startAdminServer, type AdminServer } from '../control/admin-server.js';
import { ConfigError, formatListenAddress, type HostPort, type SempipeConfig } from '../control/config.js';
import { createClusterMetricsReader, METRICS_CONTENT_TYPE } from '../control/metrics.js';
import { createOpsLog } from '../control/ops-log.js';
import { MAX_WORKERS } from '../proxy/cancel-keys.js';
import { removeStaleSockets } from '../proxy/unix-socket.js';
import { isOurs, type ToPrimary, type ToWorker } from './ipc-messages.js';
import { controlPlaneSource, fileSource, type ConfigSource } from './config-sources.js';
import { PrimaryControl, type WorkerChannel } from './primary-control.js';
import { servedBindings, unixSocketPaths } from './wiring.js';

export type ProxyOptions =
  | { configFile: string; workers?: number }
  | { controlPlane: string; token: string; realm: string; admin: HostPort; cacheDir?: string; workers?: number };

interface WorkerSlot {
  index: number;
  worker: Worker;
  appliedGeneration: number;
  failed: boolean;
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

  const send = (slot: WorkerSlot, msg: ToWorker): void => {
    if (slot.worker.isConnected()) slot.worker.send(msg);
  };
  const broadcast = (msg: ToWorker): void => slots.forEach((s) => send(s, msg));
  const channel = (slot: WorkerSlot): WorkerChannel => ({ index: slot.index, send: (m) => send(slot, m) });
  const control = new PrimaryControl(() => [...slots.values()].filter((s) => s.worker.isConnected()).map(channel));

  const fork = (index: number): void => {
    const worker = cluster.fork({ SEMPIPE_WORKER_INDEX: String(index), SEMPIPE_WORKER_COUNT: String(count) });
    const slot: WorkerSlot = { index, worker, appliedGeneration: 0, failed: false };
    slots.set(index, slot);
    worker.on('message', (msg: unknown) => {
      if (!isOurs(msg)) return;
      const m = msg as ToPrimary;
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
      control.onWorkerExit(index);
      if (shuttingDown || slots.get(index) !== slot) return;
      log.error({ worker: index, code, signal }, 'worker died; restarting it');
      fork(index);
    });
  };

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
  const clusterMetrics = createClusterMetricsReader();
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
    const exits = [...slots.values()].map((s) => new Promise<void>((r) => (s.worker.isDead() ? r() : s.worker.once('exit', () => r()))));
    broadcast({ type: 'drain', timeoutMs: config.limits.drainTimeoutMs });
    const killTimer = setTimeout(() => slots.forEach((s) => s.worker.kill('SIGKILL')), config.limits.drainTimeoutMs + 5000);
    await Promise.all(exits);
    clearTimeout(killTimer);
    await admin.close();
    source.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
