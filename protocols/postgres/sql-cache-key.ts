// The classification cache key of a statement text: numeric literals replaced by 0. Clients that
// send literals inline (pgbench -M simple, ORMs without bind parameters) then hit the cache instead
// of paying a full parse per statement, and the key is still valid SQL of the same structure, so it
// is what gets parsed on a miss. Numbers never change a statement's class, tables or functions,
// with one exception kept out: a SET/RESET statement (`SET transaction_read_only = 0` means off),
// whose numbers stay. Own code, a small lexer rather than a regular expression, because it must
// skip string literals, quoted identifiers, dollar quotes, comments and $n parameters exactly as
// PostgreSQL's scanner does; libpg-query's own normalize would cost the parse it is meant to save.

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isIdentStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 128;
const isIdentChar = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 36;

/** Index just past the closing quote of a '…' literal starting at `i` (the quote); backslashes escape when `escapes`. */
function skipQuoted(s: string, i: number, quote: number, escapes: boolean): number {
  let j = i + 1;
  while (j < s.length) {
    const c = s.charCodeAt(j);
    if (escapes && c === 92) j += 2;
    else if (c === quote) {
      if (s.charCodeAt(j + 1) === quote) j += 2;
      else return j + 1;
    } else j++;
  }
  return j;
}

/** Dollar quote `$tag$…$tag$` starting at `i`; returns its end, or -1 when `$` does not open one. */
function skipDollarQuote(s: string, i: number): number {
  let j = i + 1;
  if (j < s.length && isDigit(s.charCodeAt(j))) return -1;
  while (j < s.length && isIdentChar(s.charCodeAt(j)) && s.charCodeAt(j) !== 36) j++;
  if (s.charCodeAt(j) !== 36) return -1;
  const tag = s.slice(i, j + 1);
  const close = s.indexOf(tag, j + 1);
  return close < 0 ? s.length : close + tag.length;
}

function skipBlockComment(s: string, i: number): number {
  let depth = 0;
  let j = i;
  while (j < s.length) {
    if (s.charCodeAt(j) === 47 && s.charCodeAt(j + 1) === 42) {
      depth++;
      j += 2;
    } else if (s.charCodeAt(j) === 42 && s.charCodeAt(j + 1) === 47) {
      depth--;
      j += 2;
      if (depth === 0) return j;
    } else j++;
  }
  return j;
}

function skipNumber(s: string, i: number): number {
  let j = i;
  while (j < s.length) {
    const c = s.charCodeAt(j);
    if (isDigit(c) || c === 46 || c === 95 || isIdentStart(c)) {
      const exponent = c === 101 || c === 69;
      j++;
      if (exponent && (s.charCodeAt(j) === 43 || s.charCodeAt(j) === 45)) j++;
    } else break;
  }
  return j;
}

/** `text` with every numeric literal outside SET/RESET statements replaced by 0 (the same string when none). */
export function classificationKey(text: string): string {
  let out = '';
  let copied = 0;
  let atStatementStart = true;
  let keepNumbers = false;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 39) {
      const escapes = i > 0 && (text.charCodeAt(i - 1) === 69 || text.charCodeAt(i - 1) === 101) && (i < 2 || !isIdentChar(text.charCodeAt(i - 2)));
      i = skipQuoted(text, i, 39, escapes);
    } else if (c === 34) {
      i = skipQuoted(text, i, 34, false);
    } else if (c === 45 && text.charCodeAt(i + 1) === 45) {
      const eol = text.indexOf('\n', i);
      i = eol < 0 ? n : eol + 1;
    } else if (c === 47 && text.charCodeAt(i + 1) === 42) {
      i = skipBlockComment(text, i);
    } else if (c === 36) {
      const end = skipDollarQuote(text, i);
      if (end < 0) {
        i++;
        while (i < n && isDigit(text.charCodeAt(i))) i++;
      } else i = end;
    } else if (c === 59) {
      atStatementStart = true;
      keepNumbers = false;
      i++;
    } else if (isIdentStart(c)) {
      const start = i;
      while (i < n && isIdentChar(text.charCodeAt(i))) i++;
      if (atStatementStart) {
        const word = text.slice(start, i).toLowerCase();
        keepNumbers = word === 'set' || word === 'reset';
        atStatementStart = false;
      }
    } else if (isDigit(c) || (c === 46 && isDigit(text.charCodeAt(i + 1)))) {
      const end = skipNumber(text, i);
      atStatementStart = false;
      if (!keepNumbers && !(end - i === 1 && c === 48)) {
        out += text.slice(copied, i) + '0';
        copied = end;
      }
      i = end;
    } else {
      i++;
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
}
