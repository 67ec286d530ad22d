// Decoders of frontend messages with byte fixtures built by pg-protocol's own serializer (what a
// real client sends) and hand-made malformed variants; fast-check: no decoder throws on any bytes.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import {
  decodeBindNames,
  decodeClose,
  decodeExecutePortal,
  decodeParse,
  decodePasswordMessage,
  decodeQuery,
  decodeSaslInitialResponse,
  decodeSaslResponse,
  decodeStartupPacket,
  MAX_STARTUP_PACKET,
  startupPacketLength,
} from './frontend-messages.js';

/** An untyped startup-phase packet: length, 32-bit code, payload. */
function packet(code: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.alloc(8 + payload.length);
  buf.writeUInt32BE(buf.length, 0);
  buf.writeUInt32BE(code, 4);
  payload.copy(buf, 8);
  return buf;
}

function typed(type: string, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const buf = Buffer.alloc(5 + body.length);
  buf[0] = type.charCodeAt(0);
  buf.writeUInt32BE(4 + body.length, 1);
  body.copy(buf, 5);
  return buf;
}

const PROTOCOL_3 = 196608;
const SSL = 80877103;
const GSSENC = 80877104;
const CANCEL = 80877102;

describe('startup packets', () => {
  test('startupPacketLength: undefined under 4 bytes, -1 out of range, else the length', () => {
    expect(startupPacketLength(Buffer.from([0, 0, 0]))).toBeUndefined();
    expect(startupPacketLength(Buffer.from([0, 0, 0, 7]))).toBe(-1);
    expect(startupPacketLength(Buffer.from([0, 0, 0, 8]))).toBe(8);
    const big = Buffer.alloc(4);
    big.writeUInt32BE(MAX_STARTUP_PACKET + 1);
    expect(startupPacketLength(big)).toBe(-1);
    big.writeUInt32BE(MAX_STARTUP_PACKET);
    expect(startupPacketLength(big)).toBe(MAX_STARTUP_PACKET);
    expect(startupPacketLength(Buffer.from('GET / HTTP/1.1\r\n'))).toBe(-1);
  });

  test('a StartupMessage from pg-protocol decodes to its parameters', () => {
    const buf = serialize.startup({ user: 'api', database: 'orders', application_name: 'x', options: '-c a=b' });
    expect(startupPacketLength(buf)).toBe(buf.length);
    const p = decodeStartupPacket(buf);
    expect(p.kind).toBe('startup');
    if (p.kind !== 'startup') return;
    expect(Object.fromEntries(p.params)).toEqual({ user: 'api', database: 'orders', application_name: 'x', options: '-c a=b', client_encoding: 'UTF8' });
    expect(p.minor).toBe(0);
    expect(p.protocolOptions).toEqual([]);
  });

  test('a StartupMessage without a user decodes (the handshake refuses it after any protocol negotiation)', () => {
    const p = decodeStartupPacket(packet(PROTOCOL_3, Buffer.from('database\0orders\0\0')));
    expect(p).toEqual({ kind: 'startup', minor: 0, params: new Map([['database', 'orders']]), protocolOptions: [] });
  });

  test('a StartupMessage whose terminator is not its last byte has an invalid layout, as PostgreSQL reads it', () => {
    const cases: Array<[string, Buffer]> = [
      ['no parameters at all', packet(PROTOCOL_3)],
      ['missing final NUL', packet(PROTOCOL_3, Buffer.from('user\0api\0'))],
      ['unterminated name', packet(PROTOCOL_3, Buffer.from('user'))],
      ['name without value', packet(PROTOCOL_3, Buffer.from('user\0api'))],
      ['bytes after terminator', packet(PROTOCOL_3, Buffer.from('user\0api\0\0zz'))],
    ];
    for (const [name, buf] of cases) expect(decodeStartupPacket(buf), name).toEqual({ kind: 'invalid', problem: 'layout' });
  });

  test('protocol 3.1 and `_pq_.` options are decoded for NegotiateProtocolVersion; the options are not parameters', () => {
    const p = decodeStartupPacket(packet(0x00030001, Buffer.from('user\0api\0_pq_.foo\0bar\0\0')));
    expect(p).toEqual({ kind: 'startup', minor: 1, params: new Map([['user', 'api']]), protocolOptions: ['_pq_.foo'] });
  });

  test('SSLRequest and GSSENCRequest are recognised by their code whatever their length (PostgreSQL ignores extra bytes)', () => {
    expect(decodeStartupPacket(packet(SSL))).toEqual({ kind: 'ssl' });
    expect(decodeStartupPacket(packet(GSSENC))).toEqual({ kind: 'gssenc' });
    expect(decodeStartupPacket(packet(SSL, Buffer.alloc(4)))).toEqual({ kind: 'ssl' });
    expect(decodeStartupPacket(packet(GSSENC, Buffer.alloc(1)))).toEqual({ kind: 'gssenc' });
  });

  test('CancelRequest of 16 bytes carries signed process id and key; other lengths are invalid', () => {
    const payload = Buffer.alloc(8);
    payload.writeInt32BE(0x01000005, 0);
    payload.writeInt32BE(-123456789, 4);
    expect(decodeStartupPacket(packet(CANCEL, payload))).toEqual({ kind: 'cancel', processId: 0x01000005, secretKey: -123456789 });
    expect(decodeStartupPacket(packet(CANCEL, Buffer.alloc(4)))).toEqual({ kind: 'invalid', problem: 'cancel_length' });
    expect(decodeStartupPacket(packet(CANCEL, Buffer.alloc(12)))).toEqual({ kind: 'invalid', problem: 'cancel_length' });
  });

  test('protocol 2.0, 4.0 and unknown codes are unsupported, with the version', () => {
    expect(decodeStartupPacket(packet(0x00020000, Buffer.from('user\0api\0\0')))).toEqual({ kind: 'unsupported', major: 2, minor: 0 });
    expect(decodeStartupPacket(packet(0x00040000, Buffer.from('user\0api\0\0')))).toEqual({ kind: 'unsupported', major: 4, minor: 0 });
    expect(decodeStartupPacket(packet(1234))).toEqual({ kind: 'unsupported', major: 0, minor: 1234 });
  });
});

describe('typed frontend messages', () => {
  test('Query, Parse, Bind, Execute and Close as pg-protocol serializes them', () => {
    expect(decodeQuery(serialize.query('select 1'))).toBe('select 1');
    expect(decodeParse(serialize.parse({ name: 's1', text: 'select $1', types: [23] }))).toEqual({ name: 's1', query: 'select $1' });
    expect(decodeBindNames(serialize.bind({ portal: 'p1', statement: 's1', values: ['1', null, 'x'] }))).toEqual({ portal: 'p1', statement: 's1' });
    expect(decodeExecutePortal(serialize.execute({ portal: 'p1', rows: 10 }))).toBe('p1');
    expect(decodeClose(serialize.close({ type: 'S', name: 's1' }))).toEqual({ target: 0x53, name: 's1' });
    expect(decodeClose(serialize.close({ type: 'P', name: '' }))).toEqual({ target: 0x50, name: '' });
  });

  test('unterminated strings are undefined, not garbage', () => {
    expect(decodeQuery(typed('Q', 'select 1'))).toBeUndefined();
    expect(decodeParse(typed('P', 's1\0select 1'))).toBeUndefined();
    expect(decodeParse(typed('P', 's1'))).toBeUndefined();
    expect(decodeBindNames(typed('B', 'p1\0s1'))).toBeUndefined();
    expect(decodeExecutePortal(typed('E', 'p1'))).toBeUndefined();
    expect(decodeClose(typed('C', 'S'))).toBeUndefined();
    expect(decodeClose(typed('C', 'Sname'))).toBeUndefined();
  });

  test('a frame decoded in place inside a larger chunk reads only its own bytes', () => {
    const before = serialize.query('select 0');
    const frames = [
      serialize.parse({ name: 's1', text: 'select $1' }),
      serialize.bind({ portal: 'p1', statement: 's1', values: ['1'] }),
      serialize.execute({ portal: 'p1' }),
      serialize.close({ type: 'S', name: 's1' }),
      serialize.query('select 2'),
    ];
    const chunk = Buffer.concat([before, ...frames]);
    let start = before.length;
    const at = frames.map((f) => {
      const range = [start, start + f.length] as const;
      start += f.length;
      return range;
    });
    expect(decodeParse(chunk, ...at[0])).toEqual({ name: 's1', query: 'select $1' });
    expect(decodeBindNames(chunk, ...at[1])).toEqual({ portal: 'p1', statement: 's1' });
    expect(decodeExecutePortal(chunk, ...at[2])).toBe('p1');
    expect(decodeClose(chunk, ...at[3])).toEqual({ target: 0x53, name: 's1' });
    expect(decodeQuery(chunk, ...at[4])).toBe('select 2');
    // An unterminated string does not run on into the next frame's NUL bytes.
    const open = Buffer.concat([typed('Q', 'select 1'), serialize.sync()]);
    expect(decodeQuery(open, 0, open.length - 5)).toBeUndefined();
    const openBind = Buffer.concat([typed('B', 'p1\0s1'), serialize.execute({ portal: '' })]);
    expect(decodeBindNames(openBind, 0, openBind.length - serialize.execute({ portal: '' }).length)).toBeUndefined();
  });

  test('PasswordMessage: the password, or undefined when unterminated or followed by bytes', () => {
    expect(decodePasswordMessage(serialize.password('s3cret'))).toBe('s3cret');
    expect(decodePasswordMessage(typed('p', 's3cret'))).toBeUndefined();
    expect(decodePasswordMessage(typed('p', 's3cret\0extra'))).toBeUndefined();
  });

  test('SASLInitialResponse: mechanism and data; bad lengths are undefined', () => {
    const good = serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=,r=abc');
    const r = decodeSaslInitialResponse(good);
    expect(r?.mechanism).toBe('SCRAM-SHA-256');
    expect(r?.data.toString()).toBe('n,,n=,r=abc');
    const withLength = (mech: string, len: number, data: string): Buffer => {
      const l = Buffer.alloc(4);
      l.writeInt32BE(len);
      return typed('p', Buffer.concat([Buffer.from(`${mech}\0`), l, Buffer.from(data)]));
    };
    expect(decodeSaslInitialResponse(withLength('SCRAM-SHA-256', -1, ''))?.data.length).toBe(0);
    expect(decodeSaslInitialResponse(withLength('SCRAM-SHA-256', 5, 'abc'))).toBeUndefined();
    expect(decodeSaslInitialResponse(withLength('SCRAM-SHA-256', 2, 'abc'))).toBeUndefined();
    expect(decodeSaslInitialResponse(withLength('SCRAM-SHA-256', -2, ''))).toBeUndefined();
    expect(decodeSaslInitialResponse(typed('p', 'SCRAM-SHA-256\0\0\0'))).toBeUndefined();
    expect(decodeSaslInitialResponse(typed('p', 'SCRAM-SHA-256'))).toBeUndefined();
  });

  test('SASLResponse: the raw payload', () => {
    expect(decodeSaslResponse(serialize.sendSCRAMClientFinalMessage('c=biws,r=x,p=y')).toString()).toBe('c=biws,r=x,p=y');
  });
});

describe('no decoder throws on arbitrary bytes', () => {
  const bytes = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
  /** A typed frame header of the right length around arbitrary payload, and raw arbitrary bytes. */
  const frames = fc.oneof(
    bytes.map((b) => typed('p', b)),
    fc.tuple(fc.constantFrom('SCRAM-SHA-256\0', '', '\0', 'x'), fc.integer({ min: -3, max: 300 }), bytes).map(([m, len, data]) => {
      const l = Buffer.alloc(4);
      l.writeInt32BE(len);
      return typed('p', Buffer.concat([Buffer.from(m), l, data]));
    }),
    bytes.filter((b) => b.length >= 5),
  );
  test('startup packets (with a consistent length field and at least 8 bytes)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), bytes, (code, payload) => {
        const p = packet(code, payload);
        const r = decodeStartupPacket(p);
        expect(['ssl', 'gssenc', 'cancel', 'startup', 'unsupported', 'invalid']).toContain(r.kind);
        startupPacketLength(payload);
      }),
      { numRuns: 3000 },
    );
  });
  test('startup packets that look like protocol 3.0', () => {
    fc.assert(
      fc.property(bytes, (payload) => {
        const r = decodeStartupPacket(packet(PROTOCOL_3, payload));
        expect(['startup', 'invalid']).toContain(r.kind);
        if (r.kind === 'startup') expect(r.minor).toBe(0);
      }),
      { numRuns: 3000 },
    );
  });
  test('typed message decoders', () => {
    fc.assert(
      fc.property(frames, (f) => {
        decodeQuery(f);
        decodeParse(f);
        decodeBindNames(f);
        decodeExecutePortal(f);
        decodeClose(f);
        decodePasswordMessage(f);
        const sasl = decodeSaslInitialResponse(f);
        if (sasl !== undefined) expect(sasl.data.length).toBeLessThanOrEqual(f.length);
        decodeSaslResponse(f);
      }),
      { numRuns: 3000 },
    );
  });
});
