// Tests of process-rss.ts against real processes: our own RSS as the kernel reports it, a spawned
// child found as a descendant, and a pid that does not exist.
import { spawn } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { processTree, rssBytes, totalRss } from './process-rss.js';

describe('process-rss', () => {
  test('reads our own VmRSS, close to what Node reports', () => {
    const ours = rssBytes(process.pid);
    const node = process.memoryUsage().rss;
    expect(ours).toBeGreaterThan(node * 0.5);
    expect(ours).toBeLessThan(node * 2);
  });

  test('finds a child and a grandchild, and sums their RSS', async () => {
    // sh starts sleep as its own child (two commands, so sh does not exec into sleep).
    const child = spawn('sh', ['-c', 'sleep 30; true'], { stdio: 'ignore' });
    try {
      let tree: number[] = [];
      for (let i = 0; i < 50 && tree.length < 3; i++) {
        tree = processTree(process.pid);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(tree[0]).toBe(process.pid);
      expect(tree).toContain(child.pid);
      expect(tree.length).toBeGreaterThanOrEqual(3);
      expect(totalRss(tree)).toBeGreaterThan(rssBytes(process.pid));
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a process that does not exist has no memory and no children', () => {
    const gone = 2 ** 22 + 1; // above the kernel's pid_max limit
    expect(rssBytes(gone)).toBe(0);
    expect(processTree(gone)).toEqual([gone]);
  });
});
