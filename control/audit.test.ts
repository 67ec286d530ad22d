// Tests for the audit log's output plumbing: JSON lines to a file, explicit and timed flushes,
// close, batches of lines of any size, whole lines when several processes share a pipe, and the
// pretty format for terminals.
import { execFile } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuditLog, destinationKind, type AuditLog } from './audit.js';

const dirs: string[] = [];
const logs: AuditLog[] = [];

function tempFile(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sempipe-audit-'));
  dirs.push(dir);
  return join(dir, name);
}

function open(destination: string, pretty?: boolean): AuditLog {
  const log = createAuditLog({ destination, maxStatementLength: 100, ...(pretty === undefined ? {} : { pretty }) });
  logs.push(log);
  return log;
}

function lines(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
}

const WRITES = 5000;

/**
 * Runs three processes (writers a, b, c) that each write WRITES audit lines to the stdout they share,
 * which `redirect` (shell text after the group) sends to a pipe or a file.
 */
async function threeWritersToStdout(redirect: string): Promise<{ stdout: string; stderr: string }> {
  const audit = resolve(import.meta.dirname, '../dist/control/audit.js');
  const child = tempFile('writer.mjs');
  writeFileSync(
    child,
    `const { createAuditLog } = await import(${JSON.stringify(audit)});
    const log = createAuditLog({ destination: 'stdout', pretty: false, maxStatementLength: 100 });
    for (let i = 0; i < ${WRITES}; i++) log.logger.info({ event: 'statement', writer: process.argv[2], n: i, pad: 'é'.repeat(i % 300) });
    await log.close();`,
  );
  const node = (id: string): string => `"${process.execPath}" "${child}" ${id}`;
  return promisify(execFile)('sh', ['-c', `(${node('a')} & ${node('b')} & ${node('c')} & wait) ${redirect}`], { maxBuffer: 64 * 1024 * 1024 });
}

/** Every line is whole JSON, and each writer's lines are all there, in order. */
function expectWholeLinesOfThreeWriters(written: string[]): void {
  const parsed = written.map((l) => JSON.parse(l) as { writer: string; n: number });
  for (const writer of ['a', 'b', 'c']) {
    expect(parsed.filter((l) => l.writer === writer).map((l) => l.n)).toEqual(Array.from({ length: WRITES }, (_, i) => i));
  }
}

afterEach(async () => {
  await Promise.all(logs.splice(0).map((l) => l.close()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('createAuditLog', () => {
  it('buffers lines until flushed, then writes one JSON object per line without pid or hostname', async () => {
    const file = tempFile('nested/dir/audit.log');
    const log = open(file);
    log.logger.info({ event: 'session_start', binding: 'b', session: 'w1-1' });
    log.logger.info({ event: 'session_end', binding: 'b', session: 'w1-1' });
    await log.flush();
    const written = lines(file).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(written.map((l) => l.event)).toEqual(['session_start', 'session_end']);
    const first = written[0] as Record<string, unknown>;
    expect(Object.keys(first).sort()).toEqual(['binding', 'event', 'level', 'session', 'time']);
    expect(first.level).toBe('info');
    expect(new Date(first.time as string).toISOString()).toBe(first.time);
  });

  it('writes buffered lines on its own within a short time', async () => {
    const file = tempFile('audit.log');
    const log = open(file);
    await log.flush();
    log.logger.info({ event: 'statement', statement: 'select 1' });
    expect(lines(file)).toEqual([]);
    await expect.poll(() => lines(file).length, { timeout: 2000, interval: 25 }).toBe(1);
  });

  it('close writes what is left, and flush or close after close do not throw', async () => {
    const file = tempFile('audit.log');
    const log = open(file);
    for (let i = 0; i < 3; i++) log.logger.info({ event: 'statement', n: i });
    await log.close();
    expect(lines(file)).toHaveLength(3);
    await log.flush();
    await log.close();
  });

  it('keeps every line whole and in order across batches, with multi-byte text and a line longer than a batch', async () => {
    const file = tempFile('audit.log');
    const log = open(file);
    const texts = Array.from({ length: 3000 }, (_, i) => (i % 7 === 0 ? `wähle ✓ ${i} 😀` : `select ${i}`));
    texts[1500] = 'x'.repeat(200_000);
    for (const [i, text] of texts.entries()) log.logger.info({ event: 'statement', n: i, text });
    await log.close();
    const written = lines(file).map((l) => JSON.parse(l) as { n: number; text: string });
    expect(written.map((l) => l.n)).toEqual(texts.map((_, i) => i));
    expect(written.map((l) => l.text)).toEqual(texts);
  });

  it('writes whole lines when several processes share one pipe as stdout', async () => {
    const { stdout, stderr } = await threeWritersToStdout('| (sleep 0.3; dd bs=512 2>/dev/null)');
    expect(stderr).toBe('');
    expectWholeLinesOfThreeWriters(stdout.split('\n').filter((l) => l !== ''));
  });

  it('writes whole lines when several processes share stdout redirected to one file', async () => {
    const out = tempFile('stdout.log');
    await threeWritersToStdout(`> "${out}"`);
    expectWholeLinesOfThreeWriters(lines(out));
  });

  it('pretty output is human-readable text, not JSON', async () => {
    const file = tempFile('pretty.log');
    const log = open(file, true);
    log.logger.info({ event: 'statement', binding: 'b', statement: 'select 1' });
    await log.close();
    const [line] = lines(file);
    expect(line).toMatch(/INFO.*statement.*"statement":"select 1"/);
    expect(() => JSON.parse(line as string)).toThrow();
  });
});

describe('destinationKind', () => {
  it('writes pipes and FIFOs as streams, and regular files (stdout redirected included) and /dev/null as files', async () => {
    const kind = async (shell: string): Promise<string> => {
      const audit = resolve(import.meta.dirname, '../dist/control/audit.js');
      const script = `const { destinationKind } = await import(${JSON.stringify(audit)}); process.stderr.write(destinationKind(1));`;
      const { stderr } = await promisify(execFile)('sh', ['-c', `"${process.execPath}" --input-type=module -e '${script}' ${shell}`]);
      return stderr;
    };
    expect(await kind('| cat')).toBe('stream');
    expect(await kind('> /dev/null')).toBe('file');
    expect(await kind(`> "${tempFile('out.log')}"`)).toBe('file');
    const fifo = tempFile('audit.fifo');
    await promisify(execFile)('mkfifo', [fifo]);
    expect(destinationKind(fifo)).toBe('stream');
    expect(destinationKind(tempFile('not-yet.log'))).toBe('file');
    const file = tempFile('exists.log');
    writeFileSync(file, '');
    const fd = openSync(file, 'a');
    try {
      expect(destinationKind(fd)).toBe('file');
    } finally {
      closeSync(fd);
    }
  });
});
