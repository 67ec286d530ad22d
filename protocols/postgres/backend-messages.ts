// Serializers for the backend (server to client) messages sempipe itself sends: authentication
// requests, ParameterStatus, BackendKeyData, ReadyForQuery, ErrorResponse and NoticeResponse. Own
// code because pg-protocol serializes only frontend messages.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { AuthCode, BackendCode } from './message-codes.js';

function frame(type: number, payloadLength: number): Buffer {
  const buf = Buffer.allocUnsafe(5 + payloadLength);
  buf[0] = type;
  buf.writeUInt32BE(4 + payloadLength, 1);
  return buf;
}

function authRequest(code: number, extra: Buffer | undefined): Buffer {
  const buf = frame(BackendCode.Authentication, 4 + (extra?.length ?? 0));
  buf.writeUInt32BE(code, 5);
  extra?.copy(buf, 9);
  return buf;
}

/** AuthenticationOk. */
export const authenticationOk = (): Buffer => authRequest(AuthCode.Ok, undefined);

/** AuthenticationCleartextPassword. */
export const authenticationCleartext = (): Buffer => authRequest(AuthCode.CleartextPassword, undefined);

/** AuthenticationMD5Password with its 4-byte salt. */
export const authenticationMd5 = (salt: Buffer): Buffer => authRequest(AuthCode.MD5Password, salt);

/** AuthenticationSASL listing the mechanisms offered. */
export function authenticationSasl(mechanisms: readonly string[]): Buffer {
  return authRequest(AuthCode.SASL, Buffer.from(mechanisms.map((m) => `${m}\0`).join('') + '\0', 'utf8'));
}

/** AuthenticationSASLContinue carrying the server-first message. */
export const authenticationSaslContinue = (data: string): Buffer => authRequest(AuthCode.SASLContinue, Buffer.from(data, 'utf8'));

/** AuthenticationSASLFinal carrying the server-final message. */
export const authenticationSaslFinal = (data: string): Buffer => authRequest(AuthCode.SASLFinal, Buffer.from(data, 'utf8'));

/** BackendKeyData with the key a client uses to cancel. */
export function backendKeyData(processId: number, secretKey: number): Buffer {
  const buf = frame(BackendCode.BackendKeyData, 8);
  buf.writeInt32BE(processId, 5);
  buf.writeInt32BE(secretKey, 9);
  return buf;
}

/** ParameterStatus. */
export function parameterStatus(name: string, value: string): Buffer {
  const payload = Buffer.from(`${name}\0${value}\0`, 'utf8');
  const buf = frame(BackendCode.ParameterStatus, payload.length);
  payload.copy(buf, 5);
  return buf;
}

/** ReadyForQuery with the transaction status: 'I' idle, 'T' in transaction, 'E' failed transaction. */
export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  const buf = frame(BackendCode.ReadyForQuery, 1);
  buf[5] = status.charCodeAt(0);
  return buf;
}

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

export interface ErrorFields {
  severity: Severity;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fieldsMessage(type: number, f: ErrorFields): Buffer {
  const parts: string[] = [`S${f.severity}`, `V${f.severity}`, `C${f.code}`, `M${f.message}`];
  if (f.detail !== undefined) parts.push(`D${f.detail}`);
  if (f.hint !== undefined) parts.push(`H${f.hint}`);
  const payload = Buffer.from(parts.join('\0') + '\0\0', 'utf8');
  const buf = frame(type, payload.length);
  payload.copy(buf, 5);
  return buf;
}

/** ErrorResponse with severity, SQLSTATE, message and optional detail/hint. */
export const errorResponse = (f: ErrorFields): Buffer => fieldsMessage(BackendCode.ErrorResponse, f);

/** NoticeResponse, same fields as ErrorResponse. */
export const noticeResponse = (f: ErrorFields): Buffer => fieldsMessage(BackendCode.NoticeResponse, f);

/**
 * NegotiateProtocolVersion ('v'): the newest protocol version sempipe speaks (3.0) and the `_pq_.`
 * options it does not know, sent when a client asks for a newer 3.x minor version or such options.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-NEGOTIATEPROTOCOLVERSION
 */
export function negotiateProtocolVersion(newestVersion: number, unknownOptions: readonly string[]): Buffer {
  const names = Buffer.from(unknownOptions.map((o) => `${o}\0`).join(''), 'utf8');
  const buf = frame(BackendCode.NegotiateProtocolVersion, 8 + names.length);
  buf.writeUInt32BE(newestVersion, 5);
  buf.writeUInt32BE(unknownOptions.length, 9);
  names.copy(buf, 13);
  return buf;
}

/**
 * An error in the format of protocol 2.0 ('E', then "SEVERITY:  message\n" and a NUL, no length),
 * which PostgreSQL still uses to tell a client asking for a protocol older than 3.0 that it is not
 * supported (elog.c, send_message_to_frontend).
 */
export function errorResponseV2(severity: Severity, message: string): Buffer {
  return Buffer.from(`E${severity}:  ${message}\n\0`, 'utf8');
}
