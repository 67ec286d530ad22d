// Decoders for the frontend (client to server) messages sempipe must read: the untyped startup
// packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), authentication responses, and
// the statement-carrying Query and Parse. Own code because pg-protocol parses only backend messages.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { StartupCode } from './message-codes.js';

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: number }
  /**
   * Protocol 3.x. `params` holds every name/value pair (user and database included; the user may
   * be missing, which the caller refuses after answering `minor` and `protocolOptions`);
   * `protocolOptions` are the `_pq_.` names, which PostgreSQL does not take as settings.
   */
  | { kind: 'startup'; minor: number; params: Map<string, string>; protocolOptions: string[] }
  | { kind: 'unsupported'; major: number; minor: number }
  /** A CancelRequest of the wrong length, or a 3.x packet whose parameters do not end at its end. */
  | { kind: 'invalid'; problem: 'cancel_length' | 'layout' };

/** Largest startup packet PostgreSQL accepts: MAX_STARTUP_PACKET_LENGTH bounds what follows the length word. */
export const MAX_STARTUP_PACKET = 10000 + 4;

/**
 * Length of the startup packet at the head of `buf`: a number when its length field is readable,
 * undefined when fewer than 4 bytes arrived, -1 when the length is out of range.
 */
export function startupPacketLength(buf: Buffer): number | undefined {
  if (buf.length < 4) return undefined;
  const len = buf.readUInt32BE(0);
  if (len < 8 || len > MAX_STARTUP_PACKET) return -1;
  return len;
}

/**
 * Decodes one whole startup packet (length field included) as PostgreSQL's ProcessStartupPacket
 * reads it: SSLRequest and GSSENCRequest are recognised by their code alone (the server ignores
 * extra bytes), a CancelRequest must be exactly 16 bytes.
 */
export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const code = packet.readUInt32BE(4);
  switch (code) {
    case StartupCode.SSLRequest:
      return { kind: 'ssl' };
    case StartupCode.GSSENCRequest:
      return { kind: 'gssenc' };
    case StartupCode.CancelRequest:
      if (packet.length !== 16) return { kind: 'invalid', problem: 'cancel_length' };
      return { kind: 'cancel', processId: packet.readInt32BE(8), secretKey: packet.readInt32BE(12) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) return { kind: 'unsupported', major, minor };
  return decodeStartupParams(packet, minor);
}

/** End of the C string at `pos`: its NUL, or the packet's end (PostgreSQL reads a NUL past the end). */
function stringEnd(packet: Buffer, pos: number): number {
  const nul = packet.indexOf(0, pos);
  return nul < 0 ? packet.length : nul;
}

/** PostgreSQL's loop: pairs until an empty name; the terminator must be the packet's last byte. */
function decodeStartupParams(packet: Buffer, minor: number): StartupPacket {
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let pos = 8;
  while (pos < packet.length) {
    if (packet[pos] === 0) break;
    const keyEnd = stringEnd(packet, pos);
    const valueStart = keyEnd + 1;
    if (valueStart >= packet.length) break;
    const valueEnd = stringEnd(packet, valueStart);
    const name = packet.toString('utf8', pos, keyEnd);
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else params.set(name, packet.toString('utf8', valueStart, valueEnd));
    pos = valueEnd + 1;
  }
  if (pos !== packet.length - 1) return { kind: 'invalid', problem: 'layout' };
  return { kind: 'startup', minor, params, protocolOptions };
}

/** Offset just past the string the last successful `cstring` call read. */
let cstringNext = 0;

/**
 * Reads a NUL-terminated string that starts at `pos` and ends before `end`; undefined when it is
 * unterminated. Leaves the offset after it in `cstringNext` (a module variable rather than a result
 * object, so the relay's decoding of a statement allocates nothing but the strings).
 */
function cstring(frame: Buffer, pos: number, end: number): string | undefined {
  // Unnamed portals and statements are the common case: no search, no decoding.
  if (pos < end && frame[pos] === 0) {
    cstringNext = pos + 1;
    return '';
  }
  const nul = frame.indexOf(0, pos);
  if (nul < 0 || nul >= end) return undefined;
  cstringNext = nul + 1;
  return frame.toString('utf8', pos, nul);
}

// The statement decoders read the frame at [start, end) of `frame` (type byte first), so the relay
// can decode a frame in place in the received chunk.

/** Query ('Q'): the SQL text; undefined when malformed. */
export function decodeQuery(frame: Buffer, start = 0, end = frame.length): string | undefined {
  return cstring(frame, start + 5, end);
}

/** Parse ('P'): prepared statement name and query text; undefined when malformed. */
export function decodeParse(frame: Buffer, start = 0, end = frame.length): { name: string; query: string } | undefined {
  const name = cstring(frame, start + 5, end);
  if (name === undefined) return undefined;
  const query = cstring(frame, cstringNext, end);
  if (query === undefined) return undefined;
  return { name, query };
}

/** Bind ('B'): destination portal and source statement names; undefined when malformed. */
export function decodeBindNames(frame: Buffer, start = 0, end = frame.length): { portal: string; statement: string } | undefined {
  const portal = cstring(frame, start + 5, end);
  if (portal === undefined) return undefined;
  const statement = cstring(frame, cstringNext, end);
  if (statement === undefined) return undefined;
  return { portal, statement };
}

/** Execute ('E'): the portal name; undefined when malformed. */
export function decodeExecutePortal(frame: Buffer, start = 0, end = frame.length): string | undefined {
  return cstring(frame, start + 5, end);
}

/** Close ('C'): 'S' statement or 'P' portal and its name. */
export function decodeClose(frame: Buffer, start = 0, end = frame.length): { target: number; name: string } | undefined {
  if (end - start < 7) return undefined;
  const name = cstring(frame, start + 6, end);
  return name === undefined ? undefined : { target: frame[start + 5], name };
}

/** PasswordMessage ('p') carrying a cleartext or md5 password. */
export function decodePasswordMessage(frame: Buffer): string | undefined {
  const s = cstring(frame, 5, frame.length);
  return s !== undefined && cstringNext === frame.length ? s : undefined;
}

/** SASLInitialResponse ('p'): mechanism and the client-first message. */
export function decodeSaslInitialResponse(frame: Buffer): { mechanism: string; data: Buffer } | undefined {
  const mechanism = cstring(frame, 5, frame.length);
  if (mechanism === undefined || cstringNext + 4 > frame.length) return undefined;
  const len = frame.readInt32BE(cstringNext);
  const start = cstringNext + 4;
  if (len === -1) return { mechanism, data: Buffer.alloc(0) };
  if (len < 0 || start + len !== frame.length) return undefined;
  return { mechanism, data: frame.subarray(start, start + len) };
}

/** SASLResponse ('p'): the raw client-final message. */
export function decodeSaslResponse(frame: Buffer): Buffer {
  return frame.subarray(5);
}
