// The connection-phase codec and the auth plugins with byte fixtures: sempipe's greeting parses as
// a server handshake, a HandshakeResponse41 round-trips, the plugins agree with mysql2's own
// computations; fast-check: the handshake parsers never throw on arbitrary bytes.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rsaDecryptPassword, rsaEncryptPassword, rsaKeys, sha2Scramble, sha2StoredHash, verifySha2Password, verifySha2Scramble } from './auth/caching-sha2.js';
import { nativeScramble, nativeStoredHash, verifyNative } from './auth/native-password.js';
import { Cap, SERVER_CAPABILITIES } from './constants.js';
import {
  errPacket,
  handshakeResponse,
  handshakeV10,
  isSslRequest,
  parseErr,
  parseHandshakeResponse,
  parseServerHandshake,
  readLenenc,
  lenencInt,
  sslRequest,
  statusOfTerminator,
} from './messages.js';

// mysql2 does not export its auth helpers; the file is loaded by path to cross-check ours against it.
const require = createRequire(import.meta.url);
const auth41 = require(join(dirname(require.resolve('mysql2')), 'lib/auth_41.js')) as { calculateToken(password: string, scramble1: Buffer, scramble2: Buffer): Buffer };
const SCRAMBLE = Buffer.from('0123456789abcdefghij');

describe('handshake packets', () => {
  it('sempipe\'s HandshakeV10 parses back with its id, 20-byte scramble, capabilities and plugin', () => {
    const packet = handshakeV10({ serverVersion: '8.0.36-sempipe', connectionId: 0x01000007, scramble: SCRAMBLE, capabilities: SERVER_CAPABILITIES | Cap.Ssl, collation: 45, plugin: 'caching_sha2_password' });
    expect(packet.readUIntLE(0, 3)).toBe(packet.length - 4);
    expect(packet[3]).toBe(0);
    expect(parseServerHandshake(packet.subarray(4))).toEqual({
      serverVersion: '8.0.36-sempipe',
      connectionId: 0x01000007,
      scramble: SCRAMBLE,
      capabilities: (SERVER_CAPABILITIES | Cap.Ssl) >>> 0,
      collation: 45,
      plugin: 'caching_sha2_password',
    });
  });

  it('a HandshakeResponse41 round-trips; its SSLRequest prefix is recognised', () => {
    const caps = Cap.Protocol41 | Cap.SecureConnection | Cap.PluginAuth | Cap.PluginAuthLenencClientData | Cap.ConnectWithDb | Cap.ConnectAttrs;
    const attributes = Buffer.concat([lenencInt(6), lenencInt(2), Buffer.from('ab'), lenencInt(2), Buffer.from('cd')]);
    const packet = handshakeResponse({ capabilities: caps, collation: 33, user: 'web', authResponse: Buffer.from([1, 2, 3]), database: 'shop', plugin: 'mysql_native_password', attributes }, 1);
    expect(packet[3]).toBe(1);
    expect(parseHandshakeResponse(packet.subarray(4))).toEqual({
      capabilities: caps,
      maxPacket: 0x1000000,
      collation: 33,
      user: 'web',
      authResponse: Buffer.from([1, 2, 3]),
      database: 'shop',
      plugin: 'mysql_native_password',
      attributes,
    });
    expect(isSslRequest(sslRequest(caps, 33, 1).subarray(4))).toBe(true);
    expect(isSslRequest(packet.subarray(4))).toBe(false);
  });

  it('refuses a truncated response and one from a pre-4.1 client', () => {
    const packet = handshakeResponse({ capabilities: Cap.Protocol41 | Cap.PluginAuthLenencClientData, collation: 33, user: 'web', authResponse: Buffer.alloc(20), database: '', plugin: '', attributes: undefined }, 1).subarray(4);
    expect(parseHandshakeResponse(packet.subarray(0, 40))).toBeUndefined();
    const old = Buffer.from(packet);
    old.writeUInt32LE(Cap.SecureConnection, 0);
    expect(parseHandshakeResponse(old)).toBeUndefined();
  });

  it('ERR packets carry number, SQLSTATE and message', () => {
    expect(parseErr(errPacket(1142, '42000', 'denied', 1).subarray(4))).toEqual({ errno: 1142, sqlState: '42000', message: 'denied' });
  });

  it('reads the status flags of an EOF and of an OK used as terminator', () => {
    expect(statusOfTerminator(Buffer.from([0xfe, 0, 0, 0x0a, 0]))).toBe(0x0a);
    expect(statusOfTerminator(Buffer.from([0xfe, 0, 0, 0x08, 0, 0, 0]))).toBe(0x08);
    expect(readLenenc(Buffer.from([0xfc, 0x34, 0x12]), 0)).toEqual({ value: 0x1234, next: 3 });
    expect(readLenenc(Buffer.from([0xfc, 0x34]), 0)).toBeUndefined();
  });

  it('fast-check: arbitrary bytes never make the handshake parsers throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const b = Buffer.from(bytes);
        parseHandshakeResponse(b);
        parseServerHandshake(b);
        parseErr(b);
        isSslRequest(b);
        statusOfTerminator(b);
      }),
      { numRuns: 2000 },
    );
  });

  it('fast-check: a valid response with random fields round-trips, and every truncation is refused or shorter', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !s.includes('\0')), fc.uint8Array({ maxLength: 40 }), (user, token) => {
        const caps = Cap.Protocol41 | Cap.SecureConnection | Cap.PluginAuth | Cap.PluginAuthLenencClientData | Cap.ConnectWithDb;
        const payload = handshakeResponse({ capabilities: caps, collation: 45, user, authResponse: Buffer.from(token), database: 'db', plugin: 'p', attributes: undefined }, 1).subarray(4);
        const parsed = parseHandshakeResponse(payload);
        expect(parsed?.user).toBe(user);
        expect(parsed?.authResponse.equals(Buffer.from(token))).toBe(true);
        for (let cut = 0; cut < payload.length; cut += 7) parseHandshakeResponse(payload.subarray(0, cut));
      }),
    );
  });
});

describe('auth plugins', () => {
  it('mysql_native_password: our scramble equals mysql2\'s and verifies against the stored hash only', () => {
    const token = nativeScramble('s3cret', SCRAMBLE);
    expect(token.equals(auth41.calculateToken('s3cret', SCRAMBLE.subarray(0, 8), SCRAMBLE.subarray(8)))).toBe(true);
    expect(verifyNative(nativeStoredHash('s3cret'), SCRAMBLE, token)).toBe(true);
    expect(verifyNative(nativeStoredHash('other'), SCRAMBLE, token)).toBe(false);
    expect(verifyNative(nativeStoredHash('s3cret'), SCRAMBLE, token.subarray(0, 19))).toBe(false);
  });

  it('caching_sha2_password: fast path, full authentication and the RSA exchange', () => {
    const stored = sha2StoredHash('s3cret');
    expect(verifySha2Scramble(stored, SCRAMBLE, sha2Scramble('s3cret', SCRAMBLE))).toBe(true);
    expect(verifySha2Scramble(stored, SCRAMBLE, sha2Scramble('wrong', SCRAMBLE))).toBe(false);
    expect(verifySha2Password(stored, Buffer.from('s3cret'))).toBe(true);
    const keys = rsaKeys();
    const encrypted = rsaEncryptPassword('s3cret', SCRAMBLE, keys.publicKeyPem);
    expect(rsaDecryptPassword(keys.privateKey, SCRAMBLE, encrypted)?.toString()).toBe('s3cret');
    expect(rsaDecryptPassword(keys.privateKey, SCRAMBLE, Buffer.alloc(256, 7))).toBeUndefined();
  });
});
