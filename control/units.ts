// Parses the human-friendly durations ("500ms", "10s", "2m") and sizes ("512KiB", "64MiB", "100kB")
// of the config file into milliseconds and bytes.
// Hand-written rather than a library (ms, bytes, parse-duration): the grammar is two regular
// expressions, and those libraries accept more than we want (e.g. "1 KB" as 1024, negative values,
// or return undefined instead of saying what is wrong).

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

// SI units are powers of 1000, IEC units powers of 1024. "KB"/"MB"/"GB" are refused because
// readers disagree on whether they mean 1000 or 1024.
const SIZE_UNITS_BYTES: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

const NUMBER_WITH_UNIT = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/;

/** A duration as milliseconds: a number of seconds, or a string such as "500ms", "10s", "2m", "1h", "1d" ("10" means seconds). */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw new Error(`invalid duration ${v}: expected a non-negative number of seconds`);
    return checkedResult(Math.round(v * 1000), v);
  }
  const m = NUMBER_WITH_UNIT.exec(v.trim());
  if (m === null) throw new Error(`invalid duration "${v}": expected a number with a unit, e.g. "500ms", "10s", "2m"`);
  const unit = m[2] === '' ? 's' : m[2]!;
  const factor = DURATION_UNITS_MS[unit];
  if (factor === undefined) throw new Error(`invalid duration "${v}": unknown unit "${unit}" (use ms, s, m, h or d)`);
  return checkedResult(Math.round(Number(m[1]) * factor), v);
}

/** A size as bytes: a number of bytes, or a string such as "512KiB", "64MiB", "1GiB", "100kB" ("1024" means bytes). */
export function parseSize(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0) throw new Error(`invalid size ${v}: expected a non-negative whole number of bytes`);
    return checkedResult(v, v);
  }
  const m = NUMBER_WITH_UNIT.exec(v.trim());
  if (m === null) throw new Error(`invalid size "${v}": expected a number with a unit, e.g. "512KiB", "64MiB", "100kB"`);
  const unit = m[2] === '' ? 'B' : m[2]!;
  const factor = SIZE_UNITS_BYTES[unit];
  if (factor === undefined) {
    const hint = /^[KMGT]B$/i.test(unit) ? ' (ambiguous: write kB/MB/GB for powers of 1000 or KiB/MiB/GiB for powers of 1024)' : ' (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)';
    throw new Error(`invalid size "${v}": unknown unit "${unit}"${hint}`);
  }
  return checkedResult(Math.round(Number(m[1]) * factor), v);
}

function checkedResult(result: number, input: string | number): number {
  if (!Number.isSafeInteger(result)) throw new Error(`invalid value ${JSON.stringify(input)}: too large`);
  return result;
}
