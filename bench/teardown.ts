// Teardown for the benchmark: every started resource registers how to stop it, and the steps run in
// reverse order exactly once: at the normal end, after an error, on Ctrl-C / SIGTERM, or after an
// uncaught exception (which would otherwise leave PostgreSQL and PgBouncer running). The abort
// signal stops a pgbench that is still running.
type Step = { name: string; run: () => Promise<void> | void };

export class Teardown {
  readonly abort = new AbortController();
  private readonly steps: Step[] = [];
  private running: Promise<void> | undefined;

  add(name: string, run: Step['run']): void {
    this.steps.push({ name, run });
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      this.abort.abort();
      for (const step of this.steps.splice(0).reverse()) {
        try {
          await step.run();
        } catch (err) {
          process.stderr.write(`cleanup of ${step.name} failed: ${(err as Error).message}\n`);
        }
      }
    })();
    return this.running;
  }

  /** Cleans up and exits with 128 + signal number on SIGINT or SIGTERM. */
  onSignals(): void {
    const codes: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };
    for (const [signal, code] of Object.entries(codes) as [NodeJS.Signals, number][]) {
      process.once(signal, () => this.stopAndExit(`${signal}: `, code));
    }
  }

  /** Cleans up and exits with 1 after an exception nothing caught (an unhandled rejection included). */
  onCrash(): void {
    process.once('uncaughtException', (err) => this.stopAndExit(`crashed: ${err.stack ?? String(err)}\n`, 1));
  }

  /** Says why (`notice` leads the line), runs the steps and exits with `code`. */
  private stopAndExit(notice: string, code: number): void {
    process.stderr.write(`\n${notice}stopping sempipe, PgBouncer and PostgreSQL, removing temporary files\n`);
    void this.run().finally(() => process.exit(code));
  }
}
