// The statement line encoded in place must be byte for byte what pino itself writes for the same
// fields (time aside, which both take from the clock): checked against a real pino logger for
// arbitrary texts, durations, row counts and outcomes, in batches that fill and flush.
import fc from 'fast-check';
import pino from 'pino';
import { expect, test } from 'vitest';
import { LineBatcher } from '../audit.js';
import type { CompletionEvent } from '../../proxy/stage.js';
import { statementFields, truncateStatement } from './audit-stage.js';
import { StatementLineEncoder } from './statement-line.js';

const WHO = { binding: 'binding::/prod/billing::api-orders', user: 'api', client: '10.0.0.7:51234', session: 'w1-42' };
const MAX = 40;

/** pino configured as the audit log configures it, writing into `lines`. */
function pinoChild(lines: string[]): pino.Logger {
  const root = pino(
    { base: undefined, messageKey: 'msg', timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    { write: (line: string) => void lines.push(line) },
  );
  return root.child(WHO);
}

/** What pino writes for the completion, as the audit stage's slow path logs it. */
function pinoLine(logger: pino.Logger, lines: string[], c: CompletionEvent): string {
  logger.info(statementFields(c, MAX));
  return lines.pop()!;
}

/** Collects the batches a LineBatcher hands on. */
function capture(size: number): { batch: LineBatcher; text: () => string; writes: () => number } {
  const out: Buffer[] = [];
  const batch = new LineBatcher({ write: (b: Buffer) => out.push(Buffer.from(b)) > 0 }, size);
  return {
    batch,
    text: () => {
      batch.flush();
      return Buffer.concat(out).toString();
    },
    writes: () => out.length,
  };
}

const withoutTime = (line: string): string => line.replace(/"time":"[^"]*"/, '"time":"T"');

const completion = fc.record({
  text: fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.string({ unit: 'grapheme', maxLength: 60 }),
    // Any character of the basic plane: control characters, DEL, quotes, backslashes. Not lone
    // surrogates: text decoded from the wire never holds one (pino would write it raw, the
    // encoder escapes it as JSON.stringify does).
    fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).filter((c) => c < 0xd800 || c > 0xdfff).map((c) => String.fromCharCode(c)), maxLength: 30 }),
    fc.constant('SELECT abalance FROM pgbench_accounts WHERE aid = $1;'),
  ),
  statementClass: fc.constantFrom('select', 'insert', 'unknown', 'utility'),
  durationNs: fc.oneof(fc.bigInt({ min: 0n, max: 10n ** 13n }), fc.constantFrom(0n, 499n, 500n, 1_000_000n, 1_230_000n, 1_234_567n, 999_999_999n)),
  rows: fc.oneof(fc.nat(), fc.constantFrom(0, 9, 10, 99, 100, Number.MAX_SAFE_INTEGER - 1)),
  outcome: fc.constantFrom('ok', 'error', 'denied'),
  code: fc.option(fc.constantFrom('42501', '57014', '22P02'), { nil: undefined }),
  message: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }),
  rule: fc.option(fc.constantFrom('read_only', 'deny.functions'), { nil: undefined }),
  policy: fc.option(fc.constant('policy::/prod::guard'), { nil: undefined }),
});

test('every encoded line equals what pino writes for the same statement', () => {
  const lines: string[] = [];
  const logger = pinoChild(lines);
  const chindings = (logger as unknown as Record<symbol, string>)[pino.symbols.chindingsSym];
  fc.assert(
    fc.property(fc.array(completion, { minLength: 1, maxLength: 20 }), (events) => {
      // A small batch so that lines also land right at, and across, the flush boundary.
      const { batch, text } = capture(1024);
      const encoder = new StatementLineEncoder(chindings, MAX, truncateStatement);
      const expected: string[] = [];
      // Each statement twice in a row (other numbers), as prepared statements come: the cached path.
      for (const e of events.flatMap((x) => [x, { ...x, durationNs: x.durationNs + 1n, rows: x.rows + 1 }])) {
        const c = { ...e, tag: '', receivedAt: 0n, judgedNs: 0n } as CompletionEvent;
        encoder.write(batch, c);
        expected.push(withoutTime(pinoLine(logger, lines, c)));
      }
      const written = text().split('\n').slice(0, -1).map(withoutTime);
      expect(written).toEqual(expected.map((l) => l.replace(/\n$/, '')));
    }),
    { numRuns: 300 },
  );
});

test('a line larger than any batch is written whole, after the lines before it', () => {
  const lines: string[] = [];
  const logger = pinoChild(lines);
  const chindings = (logger as unknown as Record<symbol, string>)[pino.symbols.chindingsSym];
  const { batch, text } = capture(256);
  const encoder = new StatementLineEncoder(chindings, 10_000, truncateStatement);
  const base = { statementClass: 'select', tag: '', rows: 1, outcome: 'ok', durationNs: 1000n, receivedAt: 0n, judgedNs: 0n } as const;
  encoder.write(batch, { ...base, text: 'select 1' });
  encoder.write(batch, { ...base, text: `select '${'x'.repeat(2000)}'` });
  encoder.write(batch, { ...base, text: 'select 2' });
  const parsed = text()
    .split('\n')
    .slice(0, -1)
    .map((l) => JSON.parse(l) as { statement: string });
  expect(parsed.map((l) => l.statement.length)).toEqual([8, 2009, 8]);
});

test('a line whose bound exceeds a batch but whose bytes fit still joins the batch', () => {
  const lines: string[] = [];
  const chindings = (pinoChild(lines) as unknown as Record<symbol, string>)[pino.symbols.chindingsSym];
  const { batch, text, writes } = capture(2048);
  const encoder = new StatementLineEncoder(chindings, 10_000, truncateStatement);
  const base = { statementClass: 'select', tag: '', rows: 1, outcome: 'ok', durationNs: 1000n, receivedAt: 0n, judgedNs: 0n } as const;
  // 6 bytes of bound per character: 400 characters are bounded past 2048 bytes, but take about 600.
  encoder.write(batch, { ...base, text: 'select 1' });
  encoder.write(batch, { ...base, text: `select '${'y'.repeat(390)}'` });
  encoder.write(batch, { ...base, text: 'select 2' });
  expect(text().split('\n').length).toBe(4);
  expect(writes()).toBe(1);
});
