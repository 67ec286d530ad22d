// Builders and parsers of the MySQL connection-phase and generic packets sempipe sends or reads
// itself (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html).
// Builders return whole packets (header included); parsers take a payload and return undefined
// for a malformed one, never throw. No I/O here.
import { Cap, Header, ServerStatus } from './constants.js';
import { HEADER_BYTES, writeHeader } from './packet-scanner.js';

/** A packet with sequence id `seq` around `payload`. */
export function packet(payload: Buffer, seq: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  writeHeader(out, 0, payload.length, seq);
  payload.copy(out, HEADER_BYTES);
  return out;
}

export function lenencInt(n: number): Buffer {
  if (n < 0xfb) return Buffer.from([n]);
  if (n < 0x10000) return Buffer.from([0xfc, n & 0xff, n >>> 8]);
  if (n < 0x1000000) return Buffer.from([0xfd, n & 0xff, (n >>> 8) & 0xff, n >>> 16]);
  const b = Buffer.alloc(9);
  b[0] = 0xfe;
  b.writeBigUInt64LE(BigInt(n), 1);
  return b;
}

/** A length-encoded integer at `at`: its value and the offset after it; undefined when truncated or NULL (0xfb). */
export function readLenenc(buf: Buffer, at: number, end = buf.length): { value: number; next: number } | undefined {
  if (at >= end) return undefined;
  const first = buf[at]!;
  if (first < 0xfb) return { value: first, next: at + 1 };
  const size = first === 0xfc ? 2 : first === 0xfd ? 3 : first === 0xfe ? 8 : 0;
  if (size === 0 || at + 1 + size > end) return undefined;
  const value = size === 8 ? Number(buf.readBigUInt64LE(at + 1)) : buf.readUIntLE(at + 1, size);
  return { value, next: at + 1 + size };
}

function cstring(buf: Buffer, at: number): { value: Buffer; next: number } | undefined {
  const nul = buf.indexOf(0, at);
  if (nul < 0) return undefined;
  return { value: buf.subarray(at, nul), next: nul + 1 };
}

/** Protocol::HandshakeV10 as sempipe greets a client. */
export function handshakeV10(o: { serverVersion: string; connectionId: number; scramble: Buffer; capabilities: number; collation: number; plugin: string }): Buffer {
  const version = Buffer.from(o.serverVersion + '\0');
  const plugin = Buffer.from(o.plugin + '\0');
  const payload = Buffer.alloc(1 + version.length + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10 + 13 + plugin.length);
  let at = 0;
  payload[at++] = 10;
  version.copy(payload, at);
  at += version.length;
  payload.writeUInt32LE(o.connectionId >>> 0, at);
  at += 4;
  o.scramble.copy(payload, at, 0, 8);
  at += 9;
  payload.writeUInt16LE(o.capabilities & 0xffff, at);
  at += 2;
  payload[at++] = o.collation;
  payload.writeUInt16LE(ServerStatus.Autocommit, at);
  at += 2;
  payload.writeUInt16LE(o.capabilities >>> 16, at);
  at += 2;
  payload[at++] = o.scramble.length + 1;
  at += 10;
  o.scramble.copy(payload, at, 8);
  at += 13;
  plugin.copy(payload, at);
  return packet(payload, 0);
}

export interface HandshakeResponse {
  capabilities: number;
  maxPacket: number;
  collation: number;
  user: string;
  authResponse: Buffer;
  database: string | undefined;
  plugin: string | undefined;
  /** The raw connection attributes (lenenc length + pairs), relayed as they came. */
  attributes: Buffer | undefined;
}

/** The payload is an SSLRequest (the short first part of a HandshakeResponse41 with CLIENT_SSL). */
export function isSslRequest(payload: Buffer): boolean {
  return payload.length === 32 && (payload.readUInt32LE(0) & Cap.Ssl) !== 0;
}

/** Protocol::HandshakeResponse41; undefined when malformed or from a pre-4.1 client. */
export function parseHandshakeResponse(payload: Buffer): HandshakeResponse | undefined {
  if (payload.length < 33) return undefined;
  const capabilities = payload.readUInt32LE(0);
  if ((capabilities & Cap.Protocol41) === 0) return undefined;
  const user = cstring(payload, 32);
  if (user === undefined) return undefined;
  let at = user.next;
  let authResponse: Buffer;
  if (capabilities & Cap.PluginAuthLenencClientData) {
    const len = readLenenc(payload, at);
    if (len === undefined || len.next + len.value > payload.length) return undefined;
    authResponse = payload.subarray(len.next, len.next + len.value);
    at = len.next + len.value;
  } else if (capabilities & Cap.SecureConnection) {
    if (at >= payload.length) return undefined;
    const len = payload[at]!;
    if (at + 1 + len > payload.length) return undefined;
    authResponse = payload.subarray(at + 1, at + 1 + len);
    at += 1 + len;
  } else {
    const s = cstring(payload, at);
    if (s === undefined) return undefined;
    authResponse = s.value;
    at = s.next;
  }
  let database: string | undefined;
  if (capabilities & Cap.ConnectWithDb && at < payload.length) {
    const s = cstring(payload, at);
    if (s === undefined) return undefined;
    database = s.value.toString('utf8');
    at = s.next;
  }
  let plugin: string | undefined;
  if (capabilities & Cap.PluginAuth && at < payload.length) {
    const s = cstring(payload, at);
    if (s === undefined) return undefined;
    plugin = s.value.toString('utf8');
    at = s.next;
  }
  let attributes: Buffer | undefined;
  if (capabilities & Cap.ConnectAttrs && at < payload.length) {
    const len = readLenenc(payload, at);
    if (len === undefined || len.next + len.value > payload.length) return undefined;
    attributes = payload.subarray(at, len.next + len.value);
  }
  return {
    capabilities,
    maxPacket: payload.readUInt32LE(4),
    collation: payload[8]!,
    user: user.value.toString('utf8'),
    authResponse,
    database: database === '' ? undefined : database,
    plugin,
    attributes,
  };
}

export function okPacket(seq: number, status = ServerStatus.Autocommit, affectedRows = 0): Buffer {
  return packet(Buffer.concat([Buffer.from([Header.Ok]), lenencInt(affectedRows), lenencInt(0), Buffer.from([status & 0xff, status >>> 8, 0, 0])]), seq);
}

export function errPacket(errno: number, sqlState: string, message: string, seq: number): Buffer {
  const msg = Buffer.from(message);
  const payload = Buffer.allocUnsafe(9 + msg.length);
  payload[0] = Header.Err;
  payload.writeUInt16LE(errno, 1);
  payload.write('#', 3);
  payload.write(sqlState.padEnd(5, '0').slice(0, 5), 4, 'latin1');
  msg.copy(payload, 9);
  return packet(payload, seq);
}

/**
 * An ERR packet sent instead of the server's greeting (no capabilities agreed yet, so without the
 * `#` SQLSTATE marker of protocol 4.1), as the server sends "Too many connections".
 */
export function greetingErrPacket(errno: number, message: string): Buffer {
  const msg = Buffer.from(message);
  const payload = Buffer.allocUnsafe(3 + msg.length);
  payload[0] = Header.Err;
  payload.writeUInt16LE(errno, 1);
  msg.copy(payload, 3);
  return packet(payload, 0);
}

/** An ERR payload's number, SQLSTATE and message; undefined when it is not one. */
export function parseErr(payload: Buffer): { errno: number; sqlState: string; message: string } | undefined {
  if (payload.length < 3 || payload[0] !== Header.Err) return undefined;
  const errno = payload.readUInt16LE(1);
  if (payload.length >= 9 && payload[3] === 0x23) return { errno, sqlState: payload.toString('latin1', 4, 9), message: payload.toString('utf8', 9) };
  return { errno, sqlState: 'HY000', message: payload.toString('utf8', 3) };
}

/** Status flags of an OK or EOF payload (0xfe header, either shape); 0 when truncated. */
export function statusOfTerminator(payload: Buffer): number {
  if (payload[0] === Header.Eof && payload.length < 9) return payload.length >= 5 ? payload.readUInt16LE(3) : 0;
  const affected = readLenenc(payload, 1);
  if (affected === undefined) return 0;
  const insertId = readLenenc(payload, affected.next);
  if (insertId === undefined || insertId.next + 2 > payload.length) return 0;
  return payload.readUInt16LE(insertId.next);
}

/** Rows affected of an OK payload; 0 when truncated. */
export function affectedRowsOfOk(payload: Buffer): number {
  return readLenenc(payload, 1)?.value ?? 0;
}

export function authSwitchRequest(plugin: string, data: Buffer, seq: number): Buffer {
  return packet(Buffer.concat([Buffer.from([Header.Eof]), Buffer.from(plugin + '\0'), data, Buffer.from([0])]), seq);
}

export function authMoreData(data: Buffer, seq: number): Buffer {
  return packet(Buffer.concat([Buffer.from([Header.AuthMoreData]), data]), seq);
}

export interface ServerHandshake {
  serverVersion: string;
  connectionId: number;
  scramble: Buffer;
  capabilities: number;
  collation: number;
  plugin: string;
}

/** Protocol::HandshakeV10 from a server; undefined when malformed or another protocol version. */
export function parseServerHandshake(payload: Buffer): ServerHandshake | undefined {
  if (payload[0] !== 10) return undefined;
  const version = cstring(payload, 1);
  if (version === undefined) return undefined;
  let at = version.next;
  if (at + 4 + 8 + 1 + 2 > payload.length) return undefined;
  const connectionId = payload.readUInt32LE(at);
  at += 4;
  const part1 = payload.subarray(at, at + 8);
  at += 9;
  let capabilities = payload.readUInt16LE(at);
  at += 2;
  let collation = 0;
  let plugin = 'mysql_native_password';
  let part2: Buffer = Buffer.alloc(0);
  if (at + 16 <= payload.length) {
    collation = payload[at]!;
    at += 3;
    capabilities |= payload.readUInt16LE(at) << 16;
    capabilities >>>= 0;
    at += 2;
    const authLen = payload[at]!;
    at += 11;
    if (capabilities & Cap.SecureConnection) {
      const len = Math.max(13, authLen - 8);
      part2 = payload.subarray(at, Math.min(payload.length, at + len));
      at += len;
      // The scramble's last byte is a NUL terminator, not part of it.
      if (part2.length > 0 && part2[part2.length - 1] === 0) part2 = part2.subarray(0, part2.length - 1);
    }
    if (capabilities & Cap.PluginAuth && at < payload.length) {
      const p = cstring(payload, at);
      plugin = (p?.value ?? payload.subarray(at)).toString('utf8');
    }
  }
  return { serverVersion: version.value.toString('utf8'), connectionId, scramble: Buffer.concat([part1, part2]), capabilities, collation, plugin };
}

/** Protocol::HandshakeResponse41 as sempipe sends it upstream (with CLIENT_SSL it is cut to the SSLRequest). */
export function handshakeResponse(o: {
  capabilities: number;
  collation: number;
  user: string;
  authResponse: Buffer;
  database: string;
  plugin: string;
  attributes: Buffer | undefined;
}, seq: number): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32LE(o.capabilities >>> 0, 0);
  head.writeUInt32LE(0x1000000, 4);
  head[8] = o.collation;
  const parts = [head, Buffer.from(o.user + '\0'), lenencInt(o.authResponse.length), o.authResponse, Buffer.from(o.database + '\0'), Buffer.from(o.plugin + '\0')];
  if (o.capabilities & Cap.ConnectAttrs) parts.push(o.attributes ?? Buffer.from([0]));
  return packet(Buffer.concat(parts), seq);
}

/** The SSLRequest that starts TLS on the upstream leg. */
export function sslRequest(capabilities: number, collation: number, seq: number): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32LE((capabilities | Cap.Ssl) >>> 0, 0);
  head.writeUInt32LE(0x1000000, 4);
  head[8] = collation;
  return packet(head, seq);
}
