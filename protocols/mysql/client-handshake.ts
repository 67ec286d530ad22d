// The client leg's connection phase as sempipe's own server: HandshakeV10 with the capabilities
// sempipe supports, SSLRequest -> TLS when the binding has a certificate, then local authentication
// with the credentials sempipe issued (caching_sha2_password with its fast path and its full
// authentication over TLS or RSA, mysql_native_password; an auth switch when the client starts
// with another plugin), then the database check. Resolves with the authenticated client (the OK
// is the session's to send, once the upstream is connected) or undefined once the connection has
// been answered and closed.
// Own code rather than mysql2's server classes: those hard-code mysql_native_password and cannot
// start TLS on an accepted connection.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket, type SecureContext } from 'node:tls';
import {
  FAST_AUTH_OK,
  PERFORM_FULL_AUTH,
  REQUEST_PUBLIC_KEY,
  rsaDecryptPassword,
  rsaKeys,
  verifySha2Password,
  verifySha2Scramble,
} from './auth/caching-sha2.js';
import { NATIVE_PASSWORD, verifyNative } from './auth/native-password.js';
import { UNKNOWN_USER, type MysqlBindingRuntime, type MysqlClientCredential } from './binding-runtime.js';
import { Cap, DEFAULT_COLLATION, SCRAMBLE_BYTES, SERVER_CAPABILITIES } from './constants.js';
import { authMoreData, authSwitchRequest, handshakeV10, isSslRequest, parseHandshakeResponse, type HandshakeResponse } from './messages.js';
import { PacketReader, PacketReaderError, type Message } from './packet-reader.js';
import { errorPacket, mysqlErrors, type MysqlError } from './wire-errors.js';

/** The version sempipe announces; clients only look at it to pick features, which the upstream leg then agrees to. */
export const SERVER_VERSION = '8.0.36-sempipe';

/** Largest connection-phase message accepted (a handshake response with attributes is a few hundred bytes). */
const HANDSHAKE_MAX = 64 * 1024;

export interface AuthenticatedMysqlClient {
  socket: Socket;
  user: string;
  database: string;
  /** The capabilities the client asked for, limited to what sempipe offered. */
  capabilities: number;
  collation: number;
  attributes: Buffer | undefined;
  tls: boolean;
  /** Sequence id for the OK that completes the connection phase. */
  nextSeq: number;
}

export interface MysqlHandshakeHooks {
  onAuthFailure(user: string, reason: string): void;
}

/** A connection-phase failure: the client gets `error` and the connection closes. */
class HandshakeFailure extends Error {
  constructor(
    readonly error: MysqlError,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export async function runMysqlClientHandshake(
  socket: Socket,
  rt: MysqlBindingRuntime,
  connectionId: number,
  hooks: MysqlHandshakeHooks,
): Promise<AuthenticatedMysqlClient | undefined> {
  const reader = new PacketReader(HANDSHAKE_MAX);
  reader.attach(socket);
  let current: Socket = socket;
  let user = '';
  let seq = 0;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.detach();
    hooks.onAuthFailure(user, 'timeout');
    if (!current.destroyed) current.end(errorPacket(mysqlErrors.authTimeout(), seq & 0xff));
  }, rt.authTimeoutMs);

  /** The client's next message, which must carry the next sequence id. */
  const read = async (): Promise<Message> => {
    const m = await reader.next();
    if (m.seq !== (seq & 0xff)) throw new HandshakeFailure(mysqlErrors.packetsOutOfOrder(), 'protocol');
    seq = m.seq + 1;
    return m;
  };
  /** Writes the packet `build` makes for the next sequence id. */
  const send = (build: (seq: number) => Buffer): void => {
    current.write(build(seq & 0xff));
    seq++;
  };

  try {
    const scramble = randomScramble();
    const offered = SERVER_CAPABILITIES | (rt.tls ? Cap.Ssl : 0);
    send(() => handshakeV10({ serverVersion: SERVER_VERSION, connectionId, scramble, capabilities: offered, collation: DEFAULT_COLLATION, plugin: rt.auth }));

    let first = await read();
    let tls = false;
    if (rt.tls && isSslRequest(first.payload)) {
      // Clients start the TLS handshake right after the SSLRequest without waiting: bytes already
      // received go to the TLS layer, never to the MySQL parser.
      reader.detach();
      const secure = secureSocket(current, reader.takeRaw(), rt.tls.context);
      secure.on('error', ignore);
      current = secure;
      tls = true;
      reader.attach(secure);
      secure.resume();
      first = await read();
    }
    const response = parseHandshakeResponse(first.payload);
    if (response === undefined) throw new HandshakeFailure(mysqlErrors.handshakeError(), 'protocol');
    user = response.user;
    if (rt.tls?.required && !tls) throw new HandshakeFailure(mysqlErrors.tlsRequired(), 'tls_required');

    const credential = rt.clients.get(user);
    const ok = await authenticate(rt, credential ?? UNKNOWN_USER, response, scramble, tls, read, send);
    const host = socket.remoteAddress ?? 'unknown';
    if (!ok || credential === undefined) {
      throw new HandshakeFailure(mysqlErrors.accessDenied(user, host, true), credential === undefined ? 'unknown_user' : 'bad_password');
    }
    if (response.database !== undefined && response.database !== rt.database) {
      throw new HandshakeFailure(mysqlErrors.databaseDenied(user, host, response.database), 'bad_database');
    }
    if (reader.hasMore) throw new HandshakeFailure(mysqlErrors.handshakeError(), 'protocol');
    reader.detach();
    clearTimeout(timer);
    if (timedOut) return undefined;
    return {
      socket: current,
      user,
      database: rt.database,
      capabilities: response.capabilities & offered,
      collation: response.collation,
      attributes: response.attributes,
      tls,
      nextSeq: seq,
    };
  } catch (err) {
    clearTimeout(timer);
    reader.detach();
    if (timedOut) return undefined;
    if (err instanceof HandshakeFailure) {
      hooks.onAuthFailure(user, err.reason);
      if (!current.destroyed) current.end(errorPacket(err.error, seq & 0xff));
      return undefined;
    }
    if (err instanceof PacketReaderError) {
      if (err.kind === 'too_large') hooks.onAuthFailure(user, 'protocol');
      if (current.destroyed) return undefined;
      if (err.kind === 'too_large') current.end(errorPacket(mysqlErrors.packetTooLarge(HANDSHAKE_MAX), seq & 0xff));
      else current.destroy();
      return undefined;
    }
    throw err;
  }
}

/**
 * Runs the binding's plugin, switching the client to it when it started with another one. Every
 * path does the same work for an unknown user (checked against UNKNOWN_USER) as for a known one.
 */
async function authenticate(
  rt: MysqlBindingRuntime,
  credential: MysqlClientCredential,
  response: HandshakeResponse,
  scramble: Buffer,
  tls: boolean,
  read: () => Promise<Message>,
  send: (build: (seq: number) => Buffer) => void,
): Promise<boolean> {
  let answer = response.authResponse;
  if (response.plugin !== rt.auth) {
    // A client without CLIENT_PLUGIN_AUTH cannot be switched; it can only speak the old native scheme.
    if ((response.capabilities & Cap.PluginAuth) === 0) return false;
    send((seq) => authSwitchRequest(rt.auth, scramble, seq));
    answer = (await read()).payload;
  }
  if (rt.auth === NATIVE_PASSWORD) return verifyNative(credential.native, scramble, answer);
  // caching_sha2_password: the fast path once this process has seen the user's full authentication.
  if (rt.sha2Cache.has(response.user)) {
    if (!verifySha2Scramble(credential.sha2, scramble, answer)) return false;
    send((seq) => authMoreData(Buffer.from([FAST_AUTH_OK]), seq));
    return true;
  }
  send((seq) => authMoreData(Buffer.from([PERFORM_FULL_AUTH]), seq));
  let message = (await read()).payload;
  let password: Buffer | undefined;
  if (tls) {
    password = message[message.length - 1] === 0 ? message.subarray(0, message.length - 1) : message;
  } else {
    if (message.length === 1 && message[0] === REQUEST_PUBLIC_KEY) {
      send((seq) => authMoreData(Buffer.from(rsaKeys().publicKeyPem), seq));
      message = (await read()).payload;
    }
    password = rsaDecryptPassword(rsaKeys().privateKey, scramble, message);
  }
  const ok = verifySha2Password(credential.sha2, password ?? Buffer.alloc(0)) && password !== undefined;
  if (ok) rt.sha2Cache.add(response.user);
  return ok;
}

/** A server-side TLS socket over `socket`, fed first with the handshake bytes already read from it. */
function secureSocket(socket: Socket, received: Buffer, secureContext: SecureContext): TLSSocket {
  if (received.length === 0) return new TLSSocket(socket, { isServer: true, secureContext });
  const carrier = new Duplex({
    read: () => {
      socket.resume();
    },
    write: (chunk: Buffer, _encoding, callback) => {
      socket.write(chunk, callback);
    },
    final: (callback) => {
      socket.end();
      callback();
    },
    destroy: (err, callback) => {
      socket.destroy();
      callback(err);
    },
  });
  carrier.push(received);
  socket.on('data', (d: Buffer) => {
    if (!carrier.push(d)) socket.pause();
  });
  socket.on('end', () => carrier.push(null));
  socket.on('close', () => carrier.destroy());
  socket.resume();
  return new TLSSocket(carrier as unknown as Socket, { isServer: true, secureContext });
}

function randomScramble(): Buffer {
  // Printable bytes without NUL, as servers send them (some clients treat the scramble as a C string).
  const bytes = randomBytes(SCRAMBLE_BYTES);
  for (let i = 0; i < bytes.length; i++) bytes[i] = 0x21 + (bytes[i]! % 94);
  return bytes;
}

const ignore = (): void => {};
