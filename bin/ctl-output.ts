// How `sempipe ctl` shows answers: raw JSON with --json, otherwise aligned columns for lists and
// YAML for one resource. The column layout is hand-written: it is a padEnd per cell, and no table
// package is among our dependencies. Headers are bold only on a terminal (and never with NO_COLOR).
import { styleText } from 'node:util';
import { stringify } from 'yaml';

export interface Column<T> {
  readonly header: string;
  readonly value: (row: T) => unknown;
}

export interface Output {
  readonly json: boolean;
  line(text: string): void;
  /** A note for the human operator: stdout in table mode, stderr with --json (stdout stays JSON). */
  note(text: string): void;
  raw(body: unknown): void;
  table<T>(rows: readonly T[], columns: readonly Column<T>[], empty: string): void;
  resource(body: unknown): void;
}

export function createOutput(json: boolean): Output {
  const { stdout, stderr } = process;
  const color = stdout.isTTY === true && process.env.NO_COLOR === undefined;
  const line = (text: string): void => void stdout.write(`${text}\n`);
  return {
    json,
    line,
    note: (text) => void (json ? stderr : stdout).write(`${text}\n`),
    raw: (body) => line(JSON.stringify(body ?? null, null, 2)),
    table(rows, columns, empty) {
      if (rows.length === 0) {
        line(empty);
        return;
      }
      const cells = rows.map((row) => columns.map((c) => cellText(c.value(row))));
      const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
      const render = (texts: readonly string[]): string =>
        texts
          .map((t, i) => (i === texts.length - 1 ? t : t.padEnd(widths[i]!)))
          .join('   ')
          .trimEnd();
      const header = render(columns.map((c) => c.header));
      line(color ? styleText('bold', header) : header);
      for (const r of cells) line(render(r));
    },
    resource: (body) => void stdout.write(stringify(body ?? null)),
  };
}

function cellText(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.map(cellText).join(',');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v).replace(/\s+/g, ' ');
}
