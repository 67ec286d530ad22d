// `sempipe demo`: the embedded default for a new user with nothing installed. An in-process
// PostgreSQL (PGlite) with a sample schema, a sempipe binding in front of it with generated client
// credentials, the admin listener with /metrics, and the audit log on stdout as statements arrive.
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { createAuditLog } from '../control/audit.js';
import { startAdminServer } from '../control/admin-server.js';
import { defaultLimits, type SempipeConfig } from '../control/config.js';
import { createMetrics, localMetricsReader, METRICS_CONTENT_TYPE } from '../control/metrics.js';
import { policySchema } from '../control/policy/policy-schema.js';
import { createOpsLog } from '../control/ops-log.js';
import { PolicySet } from '../control/policy/policy-set.js';
import { DataPlane } from '../proxy/data-plane.js';
import { LocalSessionSlots } from '../proxy/session-slots.js';
import { initClassifier } from '../protocols/postgres/sql-classify.js';
import { startDemoDatabase } from './demo-database.js';
import { bindingSpecs, createStages, dataPlaneReporting, pendingAuthLimits, prepareCredentials, protocolHandlers, protocolRefusalReplies } from './wiring.js';

export interface DemoOptions {
  port?: number;
  adminPort?: number;
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const log = createOpsLog('demo');
  const port = opts.port ?? 6432;
  const adminPort = opts.adminPort ?? 9187;
  const [db] = await Promise.all([startDemoDatabase(), initClassifier()]);
  const user = 'demo';
  const password = randomBytes(9).toString('base64url');
  const config: SempipeConfig = prepareCredentials({
    admin: { listen: { host: '127.0.0.1', port: adminPort } },
    // PGlite's socket multiplexer runs every connection in one backend: a reset (DISCARD ALL) for
    // reuse would reach the others' sessions, so upstream connections are not reused here.
    limits: { ...defaultLimits(), drainTimeoutMs: 2_000, upstreamIdleTimeoutMs: 0, upstreamIdleMax: 0 },
    audit: { enabled: true, maxStatementLength: 2048, destination: 'stdout' },
    services: [
      {
        fqn: 'service::/demo::shop',
        protocol: 'postgres',
        upstream: { host: db.host, port: db.port, database: db.database, user: db.user, password: db.password, tls: 'disable' },
      },
    ],
    bindings: [
      {
        fqn: 'binding::/demo::shop',
        service: 'service::/demo::shop',
        listen: [{ host: '127.0.0.1', port }],
        database: 'shop',
        auth: 'scram-sha-256',
        allowPasswordWithoutTls: false,
        clients: [{ user, password }],
      },
    ],
    // PGlite's socket server loses its backend on COPY FROM STDIN; refuse it with a clear error.
    policies: [policySchema.parse({ fqn: 'policy::/demo::pglite-limits', realm: 'binding::/demo', deny: { classes: ['copy_in'] } })],
    stateDir: resolve('sempipe-data'),
  });

  const metrics = createMetrics();
  const audit = createAuditLog({ destination: 'stdout', maxStatementLength: config.audit.maxStatementLength });
  const stages = createStages(metrics, audit, { policies: new PolicySet(config.policies), slots: new LocalSessionSlots(), workerCount: 1 });
  const plane = new DataPlane({
    workerIndex: 0,
    handlers: protocolHandlers,
    refusalReplies: protocolRefusalReplies,
    onConnection: (binding, protocol) => stages.forEach((s) => s.onConnection?.(binding, protocol)),
    ...dataPlaneReporting(metrics, log),
  });
  plane.setPendingAuthLimits(pendingAuthLimits(config));
  const applied = await plane.apply(bindingSpecs(config, stages));
  if (applied.failed.length > 0) {
    await db.stop();
    throw new Error(`cannot listen on ${applied.failed[0].address}: ${applied.failed[0].error} (choose another with --port)`);
  }
  const admin = await startAdminServer({
    host: '127.0.0.1',
    port: adminPort,
    metrics: localMetricsReader(metrics),
    contentType: METRICS_CONTENT_TYPE,
    ready: () => true,
  }).catch(async (err: unknown) => {
    await plane.drain(0);
    await db.stop();
    throw new Error(`cannot listen on 127.0.0.1:${adminPort}: ${String(err)} (choose another with --admin-port)`);
  });

  process.stderr.write(
    [
      '',
      'sempipe demo is running: an embedded PostgreSQL behind a sempipe binding.',
      '',
      `  connect:  psql 'postgresql://${user}:${password}@127.0.0.1:${port}/shop'`,
      `  try:      select * from orders order by amount desc limit 5;`,
      `  metrics:  http://127.0.0.1:${adminPort}/metrics`,
      '',
      'The audit log of every statement follows below. Press Ctrl-C to stop.',
      '',
      '',
    ].join('\n'),
  );

  const stop = async (): Promise<void> => {
    process.stderr.write('\nstopping sempipe demo\n');
    await plane.drain(config.limits.drainTimeoutMs);
    await Promise.all([admin.close(), audit.close()]);
    await db.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
