// Pipeline stage that feeds sempipe's Prometheus metrics from session events. Label children are
// bound once per binding and shared by that binding's sessions; per-statement counts go to plain
// tallies (statement-tally.ts) looked up once per session and class, so a statement costs no label
// hashing.
import type { Metrics } from '../metrics.js';
import type { StatementTally } from '../statement-tally.js';
import type { CompletionEvent, SessionInfo, Stage, StageFactory } from '../../proxy/stage.js';
import { KNOWN_METHODS } from '../../protocols/http/request-class.js';

interface Increment {
  inc(value?: number): void;
}

/** Children shared by every session of one binding and protocol. */
interface BindingChildren {
  readonly active: { inc(): void; dec(): void };
  readonly bytesIn: Increment;
  readonly bytesOut: Increment;
  /** Bytes relayed since the last flush into the counters above. */
  pendingIn: number;
  pendingOut: number;
  readonly classes: Map<string, StatementTally>;
  /** HTTP: request counters by "METHOD status-class". */
  readonly requests: Map<string, Increment>;
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
        pendingIn: 0,
        pendingOut: 0,
        classes: new Map(),
        requests: new Map(),
      };
      bindings.set(key, children);
    }
    return children;
  }

  function classTally(session: SessionInfo, classes: Map<string, StatementTally>, statementClass: string): StatementTally {
    let tally = classes.get(statementClass);
    if (tally === undefined) {
      tally = metrics.statements.tally(session.binding, session.protocol, statementClass);
      classes.set(statementClass, tally);
    }
    return tally;
  }

  /** Counts an HTTP request by method and status class (bounded labels: known methods, five classes). */
  function countRequest(binding: string, children: BindingChildren, c: CompletionEvent): void {
    const space = c.text.indexOf(' ');
    const verb = space < 0 ? c.text : c.text.substring(0, space);
    const method = KNOWN_METHODS.has(verb) ? verb : 'other';
    const status = `${Math.floor((c.status ?? 0) / 100)}xx`;
    const key = `${method} ${status}`;
    let counter = children.requests.get(key);
    if (counter === undefined) {
      counter = metrics.httpRequests.labels({ binding, method, status });
      children.requests.set(key, counter);
    }
    counter.inc();
  }

  metrics.onBytesCollect(() => {
    for (const c of bindings.values()) {
      if (c.pendingIn > 0) c.bytesIn.inc(c.pendingIn);
      if (c.pendingOut > 0) c.bytesOut.inc(c.pendingOut);
      c.pendingIn = 0;
      c.pendingOut = 0;
    }
  });

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
          classTally(s, children.classes, completion.statementClass).record(completion.outcome, Number(completion.durationNs) / 1e9);
          if (completion.status !== undefined) countRequest(s.binding, children, completion);
        },
        onBytes(_s, bytesIn, bytesOut) {
          children.pendingIn += bytesIn;
          children.pendingOut += bytesOut;
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
