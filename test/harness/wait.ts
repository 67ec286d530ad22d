// Polling for the integration suites: what sempipe does across processes (workers, the primary, the
// audit log's timed flush) shows up a little later, so the suites wait for it with a deadline.

/** Resolves once `check` is true; rejects naming `what` after `ms`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
