// Tests of child-watch.ts with real processes: a running one stops on SIGTERM, one that ignores
// SIGTERM is killed after the grace period, one that exits reports its code and log, one that never
// gets ready is stopped, and a binary that does not exist reports that it did not start.
import { spawn } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { watchChild } from './child-watch.js';

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe('watchChild', () => {
  test('a running process is alive, and stop() ends it with SIGTERM', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const watch = watchChild(child, 'sleeper', 5000, () => '');
    expect(watch.isDead()).toBeUndefined();
    await watch.stop();
    expect(child.signalCode).toBe('SIGTERM');
    await watch.stop();
  });

  test('a process that ignores SIGTERM is killed once the grace period is over', async () => {
    const child = spawn('sh', ['-c', 'trap "" TERM; echo ready; sleep 30 & wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise((r) => child.stdout!.once('data', r));
    const started = Date.now();
    await watchChild(child, 'stubborn', 300, () => '').stop();
    expect(child.signalCode).toBe('SIGKILL');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  test('an exited process is reported with its code and the tail of its log', async () => {
    const child = spawn('sh', ['-c', 'exit 3'], { stdio: 'ignore' });
    const watch = watchChild(child, 'quitter', 5000, () => `${'x'.repeat(5000)}the reason`);
    await until(() => watch.isDead() !== undefined);
    const dead = watch.isDead()!;
    expect(dead).toMatch(/^quitter exited with 3: x+the reason$/);
    expect(dead.length).toBeLessThan(2100);
  });

  test('whenReady stops a process that never gets ready and passes the failure on', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const watch = watchChild(child, 'sleeper', 5000, () => '');
    await expect(watch.whenReady(() => Promise.reject(new Error('not listening')))).rejects.toThrow('not listening');
    expect(child.signalCode).toBe('SIGTERM');
  });

  test('whenReady hands the check a way to see that the process died', async () => {
    const child = spawn('sh', ['-c', 'exit 7'], { stdio: 'ignore' });
    const watch = watchChild(child, 'quitter', 5000, () => 'bad config');
    const check = async (isDead: () => string | undefined): Promise<void> => {
      await until(() => isDead() !== undefined);
      throw new Error(isDead());
    };
    await expect(watch.whenReady(check)).rejects.toThrow('quitter exited with 7: bad config');
  });

  test('a binary that does not exist did not start', async () => {
    const child = spawn('/nonexistent/sempipe-test-binary', [], { stdio: 'ignore' });
    const watch = watchChild(child, 'ghost', 5000, () => '');
    await until(() => watch.isDead() !== undefined);
    expect(watch.isDead()).toMatch(/^ghost did not start: .*ENOENT/);
    await watch.stop();
  });
});
