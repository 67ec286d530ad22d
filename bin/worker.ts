// A worker process: carries sessions on the listeners it shares with the other workers, applies
// every config the primary pushes, forwards cancel requests for other workers' keys, tells the
// primary of each session's start and end (so a session of a worker that dies is still audited),
// answers for its metrics, and drains when told to. Signals are the primary's business: a Ctrl-C
// reaching the whole process group must not kill sessions before the primary orders the drain.
import type { AuditLog } from '../control/audit.js';
import { createAuditLog } from '../control/audit.js';
import { createMetrics } from '../control/metrics.js';
import { createOpsLog } from '../control/ops-log.js';
import { PolicySet } from '../control/policy/policy-set.js';
import { DataPlane } from '../proxy/data-plane.js';
import type { StageFactory } from '../proxy/stage.js';
import { initClassifier } from '../protocols/postgres/sql-classify.js';
import { isOurs, type ToPrimary, type ToWorker } from './ipc-messages.js';
import { handleSessionMessage, IpcSessionSlots } from './worker-control.js';
import { bindingSpecs, createStages, dataPlaneReporting, pendingAuthLimits, protocolHandlers, protocolRefusalReplies, retainProtocolState } from './wiring.js';

export async function runWorker(): Promise<void> {
  const workerIndex = Number(process.env.SEMPIPE_WORKER_INDEX ?? '1');
  // How many processes held this worker slot before, this one included: session ids stay unique
  // across restarts.
  const generation = Number(process.env.SEMPIPE_WORKER_GENERATION ?? '1');
  const log = createOpsLog(`worker-${workerIndex}`);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => {});
  process.on('disconnect', () => process.exit(0));
  const send = (m: ToPrimary): void => {
    process.send?.(m);
  };
  const metrics = createMetrics();
  let audit: AuditLog | undefined;
  let stages: StageFactory[] | undefined;
  const policies = new PolicySet();
  // max_sessions counts every worker's sessions: the primary grants the slots.
  const slots = new IpcSessionSlots(send);
  const workerCount = Number(process.env.SEMPIPE_WORKER_COUNT ?? '1');
  const plane = new DataPlane({
    workerIndex,
    sessionIdPrefix: `${workerIndex}.${generation}`,
    onSessionStart: (s) => send({ type: 'session-start', session: { id: s.id, binding: s.binding, user: s.user, client: s.clientAddress, startedAt: s.startedAt } }),
    onSessionEnd: (s) => send({ type: 'session-end', id: s.id }),
    handlers: protocolHandlers,
    refusalReplies: protocolRefusalReplies,
    forwardCancel: (worker, processId, secretKey) => send({ type: 'cancel', worker, processId, secretKey }),
    onConnection: (binding, protocol) => {
      for (const s of stages ?? []) s.onConnection?.(binding, protocol);
    },
    ...dataPlaneReporting(metrics, log),
  });

  // Messages are handled in order, after the SQL parser has loaded; the handler is registered at
  // once so the primary's first config is not lost while the parser loads.
  let queue: Promise<void> = initClassifier();
  const handle = async (msg: ToWorker): Promise<void> => {
    switch (msg.type) {
      case 'config': {
        if (stages === undefined) {
          const a = msg.config.audit;
          audit = a.enabled ? createAuditLog({ destination: a.destination, maxStatementLength: a.maxStatementLength }) : undefined;
          stages = createStages(metrics, audit, { policies, slots, workerCount });
        }
        policies.update(msg.config.policies);
        const specs = bindingSpecs(msg.config, stages);
        plane.setPendingAuthLimits(pendingAuthLimits(msg.config));
        const result = await plane.apply(specs);
        retainProtocolState(specs);
        send({ type: 'applied', generation: msg.generation, failed: result.failed });
        break;
      }
      case 'cancel':
        plane.cancelKeys.cancel(msg.processId, msg.secretKey);
        break;
      case 'drain':
        await plane.drain(msg.timeoutMs);
        await audit?.close();
        // Messages to the primary are written in order: once this one is out, so is the end of
        // every session, and none of them is taken for lost.
        await new Promise<void>((resolve) => process.send?.({ type: 'drained' } satisfies ToPrimary, undefined, {}, () => resolve()) ?? resolve());
        process.exit(0);
    }
  };
  process.on('message', (msg: unknown) => {
    if (!isOurs(msg)) return;
    // Session list, kill and slot answers are served at once, not behind a config being applied.
    if (handleSessionMessage(msg as ToWorker, plane, slots, send)) return;
    if (msg.type === 'metrics') {
      const { requestId } = msg as Extract<ToWorker, { type: 'metrics' }>;
      metrics.registry.getMetricsAsJSON().then(
        (snapshot) => send({ type: 'metrics-reply', requestId, metrics: snapshot }),
        (err: unknown) => log.error({ err: String(err) }, 'metrics failed'),
      );
      return;
    }
    queue = queue.then(() => handle(msg as ToWorker)).catch((err: unknown) => log.error({ err: String(err) }, 'worker message failed'));
  });
  send({ type: 'hello' });
}
