// Lazy decoding of the few backend messages the relay looks into. ErrorResponse goes through
// pg-protocol's parser (it is rare, and pg-protocol knows every field); the CommandComplete tag is
// read in place because it is on the hot path and is just one C string.
import type { BackendMessage, DatabaseError } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import { RepeatedCString } from './repeated-cstring.js';

const parser = new Parser();

export interface DecodedError {
  severity: string;
  code: string;
  message: string;
}

/** Decodes one complete ErrorResponse frame. */
export function decodeErrorResponse(frame: Buffer): DecodedError {
  let decoded: DecodedError = { severity: 'ERROR', code: 'XX000', message: 'malformed ErrorResponse' };
  parser.parse(frame, (msg: BackendMessage) => {
    if (msg.name === 'error') {
      const err = msg as DatabaseError;
      decoded = { severity: err.severity ?? 'ERROR', code: err.code ?? 'XX000', message: err.message };
    }
  });
  return decoded;
}

/** The tag of a CommandComplete frame, e.g. "SELECT 3". */
export function decodeCommandTag(frame: Buffer, start = 0, end = frame.length): string {
  const nul = frame.indexOf(0, start + 5);
  return frame.toString('latin1', start + 5, nul < 0 || nul > end ? end : nul);
}

/**
 * Decodes CommandComplete tags and hands back the previous string when a tag's bytes repeat, as
 * they mostly do (a session completes the same few statements: "SELECT 1").
 */
export class CommandTagDecoder {
  private readonly last = new RepeatedCString<string>(32);

  decode(frame: Buffer, start: number, end: number): string {
    const repeated = this.last.match(frame, start + 5, end);
    if (repeated !== undefined) return repeated;
    const tag = decodeCommandTag(frame, start, end);
    this.last.remember(tag, tag, 'latin1');
    return tag;
  }
}
