// Where the primary's configuration comes from. A config file (with the state store beside it for
// resources created through the control API, which this source also serves), or a remote control
// plane followed over its watch stream (a sidecar data plane, which serves no API of its own).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Gauge, Registry } from 'prom-client';
import { assertApiExposure, resolveAdminToken } from '../control/api/auth.js';
import { createApiHandler, type SessionDirectory } from '../control/api/router.js';
import { openCatalog } from '../control/catalog.js';
import { defaultLimits, loadConfig, type HostPort, type SempipeConfig } from '../control/config.js';
import { loadSaltSecret } from '../control/salt-secret.js';
import { ControlPlaneClient } from './control-plane-client.js';
import { prepareCredentials } from './wiring.js';

export interface ConfigSource {
  /** The config to start the workers with. */
  readonly initial: SempipeConfig;
  /** Registers the listener of every later config (reload, API change, new snapshot). */
  onConfig(listener: (config: SempipeConfig) => void): void;
  /** SIGHUP. Throws (with the reason) when the new config is refused; the running one stays. */
  reload(): void;
  /** Routes served on the admin listener besides /metrics, /healthz, /readyz. */
  adminRoutes?(sessions: SessionDirectory): (req: IncomingMessage, res: ServerResponse) => boolean;
  /** Extra /readyz details and a veto. */
  readiness?(): { ready: boolean; [detail: string]: unknown };
  /** Extra metrics text rendered by the primary itself. */
  metrics?(): Promise<string>;
  close(): void;
}

/** `sempipe proxy --config FILE`: the file plus the durable API-created resources. */
export function fileSource(configFile: string, log: Logger): ConfigSource {
  const first = loadConfig(configFile);
  assertApiExposure(first.admin.listen, resolveAdminToken(first.admin));
  // Made once, before any worker starts, so that all of them get the same one.
  const storedSecret = loadSaltSecret(first.stateDir);
  const prepare = (c: SempipeConfig): SempipeConfig => prepareCredentials({ ...c, saltSecret: c.saltSecret ?? storedSecret });
  const fileConfig = prepare(first);
  const catalog = openCatalog({ stateDir: fileConfig.stateDir, fileConfig });
  const reportProblems = (): void => {
    for (const p of catalog.problems()) log.warn(p, 'API binding suspended');
  };
  reportProblems();
  let current = catalog.effective();
  return {
    initial: current,
    onConfig(listener) {
      catalog.onChange((c) => {
        current = c;
        reportProblems();
        listener(c);
      });
    },
    reload() {
      catalog.setFileConfig(prepare(loadConfig(configFile)));
    },
    adminRoutes: (sessions) => createApiHandler({ catalog, sessions, token: () => resolveAdminToken(current.admin) }),
    close: () => catalog.close(),
  };
}

export interface ControlPlaneOptions {
  url: string;
  token: string;
  realm: string;
  admin: HostPort;
  cacheDir?: string;
  workers?: number;
  auditDestination: string;
}

/** Settings of a data plane before its first snapshot: no bindings yet. */
function emptyConfig(o: ControlPlaneOptions, stateDir: string): SempipeConfig {
  return {
    admin: { listen: o.admin },
    workers: o.workers,
    stateDir,
    limits: defaultLimits(),
    audit: { enabled: true, maxStatementLength: 2048, destination: o.auditDestination },
    services: [],
    bindings: [],
    policies: [],
  };
}

/** `sempipe proxy --control-plane URL`: a remote data plane on its last good state when the control plane is away. */
export function controlPlaneSource(o: ControlPlaneOptions, log: Logger): ConfigSource {
  const stateDir = o.cacheDir ?? join(process.cwd(), 'sempipe-data');
  const registry = new Registry();
  const connected = new Gauge({ name: 'sempipe_control_plane_connected', help: 'Whether the watch stream to the control plane is up (1) or not (0).', registers: [registry] });
  let listener: ((config: SempipeConfig) => void) | undefined;
  let isConnected = false;
  let haveState = false;
  let stateFrom = 'none';
  const client = new ControlPlaneClient({
    url: o.url,
    token: o.token,
    realm: o.realm,
    cacheDir: join(stateDir, 'control-plane-cache'),
    local: { admin: { listen: o.admin }, workers: o.workers, stateDir, auditDestination: o.auditDestination },
    log,
    onConfig: (config, source) => {
      haveState = true;
      stateFrom = source;
      log.info({ bindings: config.bindings.length, source }, 'config from the control plane');
      listener?.(config);
    },
    onConnected: (up) => {
      if (up !== isConnected) log.info({ url: o.url }, up ? 'control plane connected' : 'control plane disconnected');
      isConnected = up;
      connected.set(up ? 1 : 0);
    },
  });
  const cached = client.loadCached();
  if (cached !== undefined) {
    haveState = true;
    stateFrom = 'cache';
    log.info({ bindings: cached.bindings.length }, 'serving the cached control-plane state until the control plane answers');
  }
  connected.set(0);
  return {
    initial: cached ?? emptyConfig(o, stateDir),
    onConfig(l) {
      listener = l;
      client.start();
    },
    reload() {
      log.info('SIGHUP ignored: a data plane follows its control plane');
    },
    readiness: () => ({
      ready: haveState,
      control_plane: isConnected ? 'connected' : 'disconnected',
      state: isConnected ? 'live' : haveState ? `last good state (${stateFrom})` : 'none yet',
    }),
    metrics: () => registry.metrics(),
    close: () => client.stop(),
  };
}
