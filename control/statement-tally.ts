// Per-statement metrics (sempipe_queries_total and sempipe_query_duration_seconds) kept as plain
// numbers and arrays and exported through prom-client's Registry as an ordinary counter and
// histogram. Own code because prom-client's Counter and Histogram hash the label set on every
// inc/observe (even through a bound child), about 1 µs each, and these two are updated for every
// statement on the relay's hot path; here a statement costs a few additions. prom-client still does
// the exposition, the registry and the cluster aggregation (the values it gets have its own shape).

type Labels = Record<string, string>;
type Value = { value: number; labels: Labels; metricName?: string };
type MetricData = { name: string; help: string; type: 'counter' | 'histogram'; values: Value[]; aggregator: 'sum' };

/** The counts of one (binding, protocol, class). */
export class StatementTally {
  ok = 0;
  error = 0;
  denied = 0;
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  record(outcome: 'ok' | 'error' | 'denied', seconds: number): void {
    if (outcome === 'ok') this.ok++;
    else if (outcome === 'error') this.error++;
    else this.denied++;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]) i++;
    this.buckets[i]++;
    this.sum += seconds;
    this.count++;
  }
}

interface MetricDefinition {
  readonly name: string;
  readonly help: string;
}

/** The two metrics, registered in a prom-client Registry by `register`. */
export class StatementTallies {
  private readonly tallies = new Map<string, StatementTally>();

  constructor(
    readonly queries: MetricDefinition,
    readonly duration: MetricDefinition,
    readonly bounds: readonly number[],
  ) {}

  /** The tally of one label set; callers keep it (one lookup per session and class). */
  tally(binding: string, protocol: string, statementClass: string): StatementTally {
    const key = `${binding}\u0000${protocol}\u0000${statementClass}`;
    let t = this.tallies.get(key);
    if (t === undefined) {
      t = new StatementTally({ binding, protocol, class: statementClass }, this.bounds);
      this.tallies.set(key, t);
    }
    return t;
  }

  /** Objects prom-client's Registry accepts in registerMetric. */
  metrics(): Array<{ name: string; help: string; type: string; aggregator: 'sum'; get(): Promise<MetricData>; reset(): void }> {
    const reset = (): void => this.tallies.clear();
    return [
      { ...this.queries, type: 'counter', aggregator: 'sum', get: async () => this.queriesData(), reset },
      { ...this.duration, type: 'histogram', aggregator: 'sum', get: async () => this.durationData(), reset },
    ];
  }

  private queriesData(): MetricData {
    const values: Value[] = [];
    for (const t of this.tallies.values()) {
      for (const outcome of ['ok', 'error', 'denied'] as const) {
        if (t[outcome] > 0) values.push({ value: t[outcome], labels: { ...t.labels, outcome } });
      }
    }
    return { name: this.queries.name, help: this.queries.help, type: 'counter', values, aggregator: 'sum' };
  }

  private durationData(): MetricData {
    const name = this.duration.name;
    const values: Value[] = [];
    for (const t of this.tallies.values()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += t.buckets[i];
        const le = i < this.bounds.length ? this.bounds[i] : '+Inf';
        values.push({ value: cumulative, labels: { le: le as unknown as string, ...t.labels }, metricName: `${name}_bucket` });
      }
      values.push({ value: t.sum, labels: t.labels, metricName: `${name}_sum` });
      values.push({ value: t.count, labels: t.labels, metricName: `${name}_count` });
    }
    return { name, help: this.duration.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
