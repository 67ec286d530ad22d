// SASLprep (RFC 4013) of passwords the way PostgreSQL's pg_saslprep and libpq use it for SCRAM:
// pure ASCII passes through unchanged; otherwise non-ASCII spaces map to U+0020, the characters
// "commonly mapped to nothing" are removed and the result is NFKC-normalized; when the result is
// empty or holds prohibited or unassigned code points, the raw password is used instead (PostgreSQL's
// fallback). Own code because no SASLprep package is installed (@mongodb-js/saslprep would do);
// known gaps: the bidirectional check of RFC 3454 section 6 is skipped (JavaScript regular
// expressions cannot test Bidi_Class), and "unassigned" follows the running Unicode version, not 3.2.

// RFC 3454 Table C.1.2: non-ASCII space characters.
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
// RFC 3454 Table B.1: commonly mapped to nothing.
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
// RFC 3454 Tables C.2.1, C.2.2, C.3, C.5, C.6, C.7, C.8, C.9 (C.4 non-characters are tested below).
const PROHIBITED =
  /[\u0000-\u001F\u007F-\u009F\u0340\u0341\u06DD\u070F\u180E\u200C-\u200F\u2028-\u202E\u2060-\u2063\u206A-\u206F\u2FF0-\u2FFB\uE000-\uF8FF\uFDD0-\uFDEF\uFEFF\uFFF9-\uFFFF\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\u{F0000}-\u{FFFFD}\u{100000}-\u{10FFFD}]|[\uD800-\uDFFF]|\p{Cn}/u;

function isAscii(s: string): boolean {
  return /^[\x00-\x7F]*$/.test(s);
}

function hasNonCharacter(s: string): boolean {
  for (const ch of s) {
    if (((ch.codePointAt(0) as number) & 0xfffe) === 0xfffe) return true;
  }
  return false;
}

/** The string PostgreSQL feeds into PBKDF2 for this password. */
export function saslprep(password: string): string {
  if (isAscii(password)) return password;
  const prepared = password.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (prepared === '' || PROHIBITED.test(prepared) || hasNonCharacter(prepared)) return password;
  return prepared;
}
