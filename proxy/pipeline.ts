// Composes the stages of one session into a single object the protocol relay calls. Hooks run in
// chain order; the first non-forward verdict wins. Verdicts stay synchronous unless a stage really
// returns a Promise, in which case the rest of the chain runs after it settles.
import {
  FORWARD,
  type CompletionEvent,
  type EndEvent,
  type SessionInfo,
  type Stage,
  type StageFactory,
  type StatementEvent,
  type Verdict,
} from './stage.js';

export class SessionPipeline {
  private readonly stages: Stage[];
  private readonly statementStages: Stage[];
  private readonly bytesStages: Stage[];
  private readonly completeStages: Stage[];

  constructor(
    readonly session: SessionInfo,
    factories: readonly StageFactory[],
  ) {
    this.stages = factories.map((f) => f.create(session));
    this.statementStages = this.stages.filter((s) => s.onStatement !== undefined);
    this.bytesStages = this.stages.filter((s) => s.onBytes !== undefined);
    this.completeStages = this.stages.filter((s) => s.onComplete !== undefined);
  }

  /** True when some stage may refuse statements now (so the relay must look before it forwards). */
  get judgesStatements(): boolean {
    for (const s of this.statementStages) if (s.judges === undefined || s.judges()) return true;
    return false;
  }

  /** Asks every stage whether the session may open; the first refusal wins. */
  async admit(): Promise<Verdict> {
    for (const s of this.stages) {
      if (s.admit === undefined) continue;
      const v = await s.admit(this.session);
      if (v.action !== 'forward') return v;
    }
    return FORWARD;
  }

  start(): void {
    for (const s of this.stages) s.onStart?.(this.session);
  }

  statement(event: StatementEvent): Verdict | Promise<Verdict> {
    return runFrom(this.statementStages, 0, this.session, event);
  }

  complete(event: CompletionEvent): void {
    for (const s of this.completeStages) s.onComplete!(this.session, event);
  }

  bytes(bytesIn: number, bytesOut: number): void {
    if (bytesIn === 0 && bytesOut === 0) return;
    for (const s of this.bytesStages) s.onBytes!(this.session, bytesIn, bytesOut);
  }

  end(event: EndEvent): void {
    for (const s of this.stages) s.onEnd?.(this.session, event);
  }
}

// A forward verdict carrying a tracker (limits, follow-up) is kept and returned when no later stage
// refuses; with several, the last one wins.
function runFrom(stages: Stage[], from: number, session: SessionInfo, event: StatementEvent, carried: Verdict = FORWARD): Verdict | Promise<Verdict> {
  let result = carried;
  for (let i = from; i < stages.length; i++) {
    const v = stages[i].onStatement!(session, event);
    if (v === undefined || v === FORWARD) continue;
    if (v instanceof Promise) {
      const before = result;
      return v.then((settled) =>
        settled.action !== 'forward' ? settled : runFrom(stages, i + 1, session, event, settled.tracker === undefined ? before : settled),
      );
    }
    if (v.action !== 'forward') return v;
    if (v.tracker !== undefined) result = v;
  }
  return result;
}
