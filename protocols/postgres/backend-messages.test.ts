// Serializers of backend messages round-trip through pg-protocol's Parser (what the pg driver uses
// to read a real server): every message sempipe sends must decode to the values it was built from.
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import {
  authenticationCleartext,
  authenticationMd5,
  authenticationOk,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  backendKeyData,
  errorResponse,
  errorResponseV2,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  readyForQuery,
  type Severity,
} from './backend-messages.js';

/** Parses `buf` (possibly several messages) with a fresh pg-protocol Parser. */
function parse(buf: Buffer): Array<BackendMessage & Record<string, unknown>> {
  const out: Array<BackendMessage & Record<string, unknown>> = [];
  new Parser().parse(buf, (m) => out.push(m as BackendMessage & Record<string, unknown>));
  return out;
}

function one(buf: Buffer): BackendMessage & Record<string, unknown> {
  const msgs = parse(buf);
  expect(msgs).toHaveLength(1);
  expect(msgs[0].length + 1).toBe(buf.length);
  return msgs[0];
}

test('authentication requests', () => {
  expect(one(authenticationOk()).name).toBe('authenticationOk');
  expect(one(authenticationCleartext()).name).toBe('authenticationCleartextPassword');
  const salt = Buffer.from([1, 2, 3, 250]);
  const md5 = one(authenticationMd5(salt));
  expect(md5.name).toBe('authenticationMD5Password');
  expect(Buffer.compare(md5.salt as Buffer, salt)).toBe(0);
  const sasl = one(authenticationSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']));
  expect(sasl.name).toBe('authenticationSASL');
  expect(sasl.mechanisms).toEqual(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
  const cont = one(authenticationSaslContinue('r=abc,s=c2FsdA==,i=4096'));
  expect(cont.name).toBe('authenticationSASLContinue');
  expect(cont.data).toBe('r=abc,s=c2FsdA==,i=4096');
  const fin = one(authenticationSaslFinal('v=c2lnbmF0dXJl'));
  expect(fin.name).toBe('authenticationSASLFinal');
  expect(fin.data).toBe('v=c2lnbmF0dXJl');
});

test('BackendKeyData with negative and large ids', () => {
  for (const [pid, key] of [[1, 2], [0x7f000001, -1], [0x01000000, -2147483648]]) {
    const m = one(backendKeyData(pid, key));
    expect(m.name).toBe('backendKeyData');
    expect(m.processID).toBe(pid);
    expect(m.secretKey).toBe(key);
  }
});

test('ParameterStatus and ReadyForQuery', () => {
  const ps = one(parameterStatus('server_version', '15.2 (sempipe) é'));
  expect(ps).toMatchObject({ name: 'parameterStatus', parameterName: 'server_version', parameterValue: '15.2 (sempipe) é' });
  for (const s of ['I', 'T', 'E'] as const) expect(one(readyForQuery(s))).toMatchObject({ name: 'readyForQuery', status: s });
});

test('ErrorResponse and NoticeResponse carry severity, SQLSTATE, message, detail and hint', () => {
  const e = one(errorResponse({ severity: 'FATAL', code: '08P01', message: 'invalid message length for message type "Q"', detail: 'd', hint: 'h' }));
  expect(e).toMatchObject({ name: 'error', severity: 'FATAL', code: '08P01', message: 'invalid message length for message type "Q"', detail: 'd', hint: 'h' });
  const bare = one(errorResponse({ severity: 'ERROR', code: '42501', message: 'denied' }));
  expect(bare).toMatchObject({ name: 'error', severity: 'ERROR', code: '42501', message: 'denied' });
  expect(bare.detail).toBeUndefined();
  expect(bare.hint).toBeUndefined();
  expect(one(noticeResponse({ severity: 'WARNING', code: '01000', message: 'careful' }))).toMatchObject({ name: 'notice', severity: 'WARNING', code: '01000', message: 'careful' });
});

test('several messages in one buffer parse in order (the greeting sempipe sends)', () => {
  const greeting = Buffer.concat([authenticationOk(), parameterStatus('a', 'b'), backendKeyData(7, 9), readyForQuery('I')]);
  expect(parse(greeting).map((m) => m.name)).toEqual(['authenticationOk', 'parameterStatus', 'backendKeyData', 'readyForQuery']);
});

test('property: any text fields round-trip through ErrorResponse and ParameterStatus', () => {
  const text = fc.string({ unit: 'grapheme', maxLength: 60 }).filter((s) => !s.includes('\0'));
  const severity = fc.constantFrom<Severity>('ERROR', 'FATAL', 'PANIC', 'WARNING', 'NOTICE', 'DEBUG', 'INFO', 'LOG');
  fc.assert(
    fc.property(severity, fc.stringMatching(/^[0-9A-Z]{5}$/), text, fc.option(text, { nil: undefined }), fc.option(text, { nil: undefined }), (sev, code, message, detail, hint) => {
      const m = one(errorResponse({ severity: sev, code, message, detail, hint }));
      expect(m).toMatchObject({ severity: sev, code, message });
      expect(m.detail).toBe(detail);
      expect(m.hint).toBe(hint);
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(text, text, (name, value) => {
      expect(one(parameterStatus(name, value))).toMatchObject({ parameterName: name, parameterValue: value });
    }),
    { numRuns: 500 },
  );
});

// Byte fixtures from PostgreSQL 15's own answers (pg-startup-fidelity.test.ts compares them live).
test('NegotiateProtocolVersion: the newest version and the unknown _pq_ options', () => {
  expect(negotiateProtocolVersion(0x30000, [])).toEqual(Buffer.from('760000000c0003000000000000', 'hex'));
  expect(negotiateProtocolVersion(0x30000, ['_pq_.foo'])).toEqual(Buffer.from('76000000150003000000000001' + Buffer.from('_pq_.foo\0').toString('hex'), 'hex'));
});

test('an error in the 2.0 format: E, the text, newline and NUL, no length', () => {
  expect(errorResponseV2('FATAL', 'unsupported frontend protocol 2.0: server supports 3.0 to 3.0').toString('latin1')).toBe(
    'EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0',
  );
});
