// run(): a command's exit status and output come back; one that exits without reading its input
// is a result, not an unhandled EPIPE that takes the benchmark or the suite down with it.
import { expect, test } from 'vitest';
import { run } from './run.js';

test('a command that exits without reading a large input resolves with its exit status', async () => {
  for (let i = 0; i < 5; i++) {
    const r = await run('/bin/sh', ['-c', 'exit 3'], { input: 'x'.repeat(4 * 1024 * 1024) });
    expect(r.code).toBe(3);
  }
});

test('input reaches the command and its output comes back; without input it reads end of file', async () => {
  expect((await run('/bin/cat', [], { input: 'hello' })).stdout).toBe('hello');
  const r = await run('/bin/cat', []);
  expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
});
