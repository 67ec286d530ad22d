// Pipeline stage that feeds sempipe's Prometheus metrics from session events. Label children are
// bound once per binding (and per statement class) and shared by that binding's sessions, so the
// per-statement path does no label-object building and no key concatenation.
import type { Metrics } from '../metrics.js';
import type { CompletionEvent, SessionInfo, Stage, StageFactory } from '../../proxy/stage.js';

interface Increment {
  inc(value?: number): void;
}

interface Observe {
  observe(value: number): void;
}

/** Children of one statement class within one binding and protocol. */
interface ClassChildren {
  readonly ok: Increment;
  readonly error: Increment;
  readonly denied: Increment;
  readonly duration: Observe;
}

/** Children shared by every session of one binding and protocol. */
interface BindingChildren {
  readonly active: { inc(): void; dec(): void };
  readonly bytesIn: Increment;
  readonly bytesOut: Increment;
  readonly classes: Map<string, ClassChildren>;
}

/** Counts an error the upstream reported or reaching it failed with (SQLSTATE, errno name, HTTP status). */
export function recordUpstreamError(metrics: Metrics, binding: string, code: string): void {
  metrics.upstreamErrors.inc({ binding, code });
}

export function createMetricsStage(metrics: Metrics): StageFactory {
  const bindings = new Map<string, BindingChildren>();

  function bindingChildren(binding: string, protocol: string): BindingChildren {
    const key = `${binding}|${protocol}`;
    let children = bindings.get(key);
    if (children === undefined) {
      children = {
        active: metrics.connectionsActive.labels({ binding, protocol }),
        bytesIn: metrics.bytes.labels({ binding, direction: 'in' }),
        bytesOut: metrics.bytes.labels({ binding, direction: 'out' }),
        classes: new Map(),
      };
      bindings.set(key, children);
    }
    return children;
  }

  function classChildren(session: SessionInfo, classes: Map<string, ClassChildren>, statementClass: string): ClassChildren {
    let children = classes.get(statementClass);
    if (children === undefined) {
      const { binding, protocol } = session;
      children = {
        ok: metrics.queries.labels({ binding, protocol, class: statementClass, outcome: 'ok' }),
        error: metrics.queries.labels({ binding, protocol, class: statementClass, outcome: 'error' }),
        denied: metrics.queries.labels({ binding, protocol, class: statementClass, outcome: 'denied' }),
        duration: metrics.queryDuration.labels({ binding, protocol, class: statementClass }),
      };
      classes.set(statementClass, children);
    }
    return children;
  }

  return {
    name: 'metrics',
    onConnection(binding, protocol) {
      metrics.connectionsTotal.inc({ binding, protocol });
    },
    onAuthFailure(event) {
      metrics.authFailures.inc({ binding: event.binding, reason: event.reason });
    },
    create(session): Stage {
      const children = bindingChildren(session.binding, session.protocol);
      // onEnd may follow a session that failed before onStart; the gauge must not go below zero.
      let started = false;
      return {
        onStart() {
          started = true;
          children.active.inc();
        },
        onComplete(s, completion: CompletionEvent) {
          const byClass = classChildren(s, children.classes, completion.statementClass);
          byClass[completion.outcome].inc();
          byClass.duration.observe(Number(completion.durationNs) / 1e9);
        },
        onBytes(_s, bytesIn, bytesOut) {
          if (bytesIn > 0) children.bytesIn.inc(bytesIn);
          if (bytesOut > 0) children.bytesOut.inc(bytesOut);
        },
        onEnd(s, end) {
          if (started) children.active.dec();
          started = false;
          metrics.sessionsClosed.inc({ binding: s.binding, reason: end.reason });
        },
      };
    },
  };
}
