// The client leg's connection phases as an explicit state machine: startup packets (SSLRequest with
// the TLS upgrade, GSSENCRequest, CancelRequest, StartupMessage), then local authentication with
// the credentials sempipe issued (SCRAM-SHA-256[-PLUS], md5, cleartext), then the database check.
// Resolves with the authenticated client or undefined once the connection has been answered and
// closed. Upstream authentication is a separate machine (upstream-connect.ts).
// Before authentication it answers what PostgreSQL's ProcessStartupPacket answers, silence
// included: a malformed startup packet or a timeout closes the connection without a word (drivers
// such as node-postgres take an ErrorResponse there for a failed connect), and every such refusal
// is reported with a bounded reason (StartupRejection).
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { verifyMd5Response, md5Salt } from './auth/md5.js';
import { verifyCleartext } from './auth/password.js';
import { createScramServer, handleClientFinal, handleClientFirst, scramMechanisms, type ScramServerSession } from './auth/scram-server.js';
import {
  authenticationCleartext,
  authenticationMd5,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  errorResponse,
  errorResponseV2,
  negotiateProtocolVersion,
  type ErrorFields,
} from './backend-messages.js';
import type { PgBindingRuntime } from './binding-runtime.js';
import {
  decodePasswordMessage,
  decodeSaslInitialResponse,
  decodeSaslResponse,
  decodeStartupPacket,
  startupPacketLength,
} from './frontend-messages.js';
import { FrontendCode, StartupCode } from './message-codes.js';
import { replicationRequest, type ReplicationKind } from './replication-commands.js';
import { pgErrors } from './wire-errors.js';

export interface AuthenticatedClient {
  socket: Socket;
  user: string;
  database: string;
  /** Startup parameters other than user and database, to forward upstream. */
  params: Map<string, string>;
  tls: boolean;
  /** Set when the startup asked for a replication connection (the `replication` parameter stays in params). */
  replication: ReplicationKind | undefined;
  /** Bytes the client sent after its last authentication message (pipelined queries). */
  leftover: Buffer;
}

/**
 * Why a connection was refused before a startup packet was accepted (a bounded metric label):
 * `invalid_length` (PostgreSQL's "invalid length of startup packet"), `cancel_length`,
 * `unsupported_protocol` (a version other than 3.x, or a repeated SSLRequest/GSSENCRequest),
 * `invalid_layout`, `no_user`, `unencrypted_data` (bytes sent with an SSLRequest, before its answer),
 * `direct_tls_unavailable` (a TLS handshake on a binding without TLS),
 * `no_alpn` (direct TLS without the `postgresql` ALPN protocol).
 */
export type StartupRejection =
  | 'invalid_length'
  | 'cancel_length'
  | 'unsupported_protocol'
  | 'invalid_layout'
  | 'no_user'
  | 'unencrypted_data'
  | 'direct_tls_unavailable'
  | 'no_alpn';

export interface HandshakeHooks {
  onCancel(processId: number, secretKey: number): void;
  onAuthFailure(user: string, reason: string): void;
  onStartupRejected(reason: StartupRejection): void;
}

type Step = 'startup' | 'password' | 'md5' | 'sasl-first' | 'sasl-final' | 'done';

const ignoreError = (): void => {};

/** Authentication messages are small; anything larger is a protocol violation. */
const MAX_AUTH_MESSAGE = 16 * 1024;

/** First byte of a TLS handshake record: a client starting TLS directly (PostgreSQL 17's sslnegotiation=direct). */
const TLS_HANDSHAKE_RECORD = 0x16;
/** The ALPN protocol a direct TLS client must offer (PostgreSQL 17). */
const PG_ALPN = 'postgresql';
/** The protocol version sempipe speaks, for NegotiateProtocolVersion. */
const NEWEST_PROTOCOL = StartupCode.Protocol3;

class ClientHandshake {
  private step: Step = 'startup';
  private socket: Socket;
  private buffered: Buffer = Buffer.alloc(0);
  private user = '';
  private requestedDatabase = '';
  private params = new Map<string, string>();
  private tls = false;
  private replication: ReplicationKind | undefined;
  /**
   * PostgreSQL's ssl_done and gss_done: whether an SSLRequest / a GSSENCRequest was answered
   * already. A request repeated once answered is taken as a startup packet of an unknown version.
   */
  private sslDone = false;
  private gssDone = false;
  /** Nothing read yet: only the very first bytes may start a direct TLS handshake. */
  private atStart = true;
  private md5SaltBytes: Buffer | undefined;
  private scram: ScramServerSession | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onGone = (): void => {
    this.finish(undefined);
  };

  constructor(
    socket: Socket,
    private readonly rt: PgBindingRuntime,
    private readonly hooks: HandshakeHooks,
    private readonly resolve: (c: AuthenticatedClient | undefined) => void,
  ) {
    this.socket = socket;
    // PostgreSQL says nothing when authentication_timeout expires (its startup-packet timeout exits
    // quietly, and an authentication in progress sends its FATAL nowhere).
    this.timer = setTimeout(() => {
      this.hooks.onAuthFailure(this.user, 'timeout');
      this.finish(undefined);
    }, rt.authTimeoutMs);
    this.attach(socket);
  }

  private attach(socket: Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('close', this.onGone);
    socket.on('error', this.onGone);
  }

  private detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onGone);
    this.socket.off('error', this.onGone);
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.step !== 'done') {
      const consumed = this.step === 'startup' ? this.handleStartup() : this.handleAuthMessage();
      if (consumed <= 0) return;
      this.buffered = this.buffered.subarray(consumed);
    }
  }

  /** Returns the bytes consumed, 0 when more are needed, -1 when the connection was closed. */
  private handleStartup(): number {
    if (this.atStart && this.buffered.length > 0 && this.buffered[0] === TLS_HANDSHAKE_RECORD) return this.startDirectTls();
    const len = startupPacketLength(this.buffered);
    if (len === undefined) return 0;
    if (len < 0) return this.reject('invalid_length');
    if (this.buffered.length < len) return 0;
    this.atStart = false;
    const packet = decodeStartupPacket(this.buffered.subarray(0, len));
    switch (packet.kind) {
      case 'ssl':
        if (this.sslDone) return this.refuseVersion(StartupCode.SSLRequest);
        return this.handleSslRequest(len);
      case 'gssenc':
        if (this.gssDone) return this.refuseVersion(StartupCode.GSSENCRequest);
        // sempipe has no GSSAPI encryption: 'N', as a server built without it answers. As in
        // PostgreSQL, a refused GSSENCRequest lets the client try SSLRequest (again).
        this.socket.write('N');
        this.gssDone = true;
        this.sslDone = false;
        return len;
      case 'cancel':
        this.hooks.onCancel(packet.processId, packet.secretKey);
        return this.finish(undefined);
      case 'unsupported':
        return this.refuseVersion((packet.major << 16) | packet.minor);
      case 'invalid':
        return packet.problem === 'cancel_length' ? this.reject('cancel_length') : this.rejectWith(pgErrors.startupLayout(), 'invalid_layout');
      case 'startup':
        if (packet.minor > 0 || packet.protocolOptions.length > 0) {
          this.socket.write(negotiateProtocolVersion(NEWEST_PROTOCOL, packet.protocolOptions));
        }
        if (!packet.params.get('user')) return this.rejectWith(pgErrors.noUserName(), 'no_user');
        return this.handleStartupMessage(packet.params, len);
    }
  }

  /** PostgreSQL's answer to a version it does not speak; in the 2.0 format below 3.0. */
  private refuseVersion(code: number): -1 {
    const major = code >>> 16;
    const minor = code & 0xffff;
    const fields = pgErrors.unsupportedProtocol(major, minor);
    this.hooks.onStartupRejected('unsupported_protocol');
    if (!this.socket.destroyed) this.socket.end(major < 3 ? errorResponseV2(fields.severity, fields.message) : errorResponse(fields));
    return this.finish(undefined);
  }

  /** Refuses the startup without a word, as PostgreSQL does for these. */
  private reject(reason: StartupRejection): -1 {
    this.hooks.onStartupRejected(reason);
    return this.finish(undefined);
  }

  private rejectWith(fields: ErrorFields, reason: StartupRejection): -1 {
    this.hooks.onStartupRejected(reason);
    if (!this.socket.destroyed) this.socket.end(errorResponse(fields));
    return this.finish(undefined);
  }

  /**
   * A TLS ClientHello as the first bytes: on a binding with TLS, the handshake (whose bytes already
   * read are handed back to the socket for the TLS layer), then the `postgresql` ALPN check, then
   * the startup packet inside TLS; on one without, a silent close (PostgreSQL 17, ProcessSSLStartup).
   */
  private startDirectTls(): -1 {
    this.atStart = false;
    if (!this.rt.tls) return this.reject('direct_tls_unavailable');
    this.detach();
    this.socket.pause();
    this.socket.unshift(this.buffered);
    this.buffered = Buffer.alloc(0);
    // A client offering ALPN without `postgresql` gets the no_application_protocol alert from the
    // TLS layer; one offering no ALPN at all completes the handshake and is closed unanswered.
    const secure = new TLSSocket(this.socket, { isServer: true, secureContext: this.rt.tls.context, ALPNProtocols: [PG_ALPN] });
    secure.on('error', ignoreError);
    this.tls = true;
    this.attach(secure);
    secure.once('secure', () => {
      if (secure.alpnProtocol !== PG_ALPN) this.reject('no_alpn');
    });
    return -1;
  }

  private handleSslRequest(len: number): number {
    this.sslDone = true;
    // CVE-2021-23214: bytes that came with the SSLRequest, before the answer, must not be trusted.
    // PostgreSQL refuses them after its answer, 'N' or 'S' (then inside TLS, once the handshake is done).
    const unencrypted = this.buffered.length > len;
    // After a direct TLS handshake PostgreSQL 17 answers an SSLRequest with 'N', as without TLS.
    if (!this.rt.tls || this.tls) {
      this.socket.write('N');
      return unencrypted ? this.rejectWith(pgErrors.unencryptedAfterSsl(), 'unencrypted_data') : len;
    }
    this.gssDone = true;
    this.socket.write('S');
    this.detach();
    // Only decrypted bytes reach the TLSSocket's 'data' listeners, so the next startup packet is
    // read from the secure channel and nothing sent in the clear before it can be mistaken for it.
    const secure = new TLSSocket(this.socket, { isServer: true, secureContext: this.rt.tls.context });
    secure.on('error', ignoreError);
    this.tls = true;
    this.buffered = Buffer.alloc(0);
    this.attach(secure);
    if (unencrypted) secure.once('secure', () => this.rejectWith(pgErrors.unencryptedAfterSsl(), 'unencrypted_data'));
    return -1;
  }

  private handleStartupMessage(params: Map<string, string>, len: number): number {
    this.user = params.get('user')!;
    this.requestedDatabase = params.get('database') || this.user;
    const replication = replicationRequest(params.get('replication'));
    if ('invalid' in replication) return this.fail(pgErrors.invalidReplicationValue(replication.invalid), 'protocol');
    this.replication = replication.kind;
    // A normal session: whether the client said replication=false or nothing, upstream it is the same.
    if (replication.kind === undefined) params.delete('replication');
    params.delete('user');
    params.delete('database');
    this.params = params;
    if (this.rt.tls?.required && !this.tls) return this.fail(pgErrors.tlsRequired(this.rt.fqn), 'tls_required');
    const cred = this.rt.clients.get(this.user);
    switch (this.rt.auth) {
      case 'scram-sha-256': {
        const channelBinding = this.tls ? this.rt.tls?.endPoint : undefined;
        this.scram = createScramServer({ verifier: cred?.scram, channelBinding, user: this.user, mock: this.rt.scramMock });
        this.socket.write(authenticationSasl(scramMechanisms(channelBinding !== undefined)));
        this.step = 'sasl-first';
        break;
      }
      case 'md5':
        this.md5SaltBytes = md5Salt();
        this.socket.write(authenticationMd5(this.md5SaltBytes));
        this.step = 'md5';
        break;
      case 'password':
        if (!this.tls && !this.rt.allowPasswordWithoutTls) return this.fail(pgErrors.cleartextWithoutTls(), 'tls_required');
        this.socket.write(authenticationCleartext());
        this.step = 'password';
        break;
    }
    return len;
  }

  private handleAuthMessage(): number {
    const buf = this.buffered;
    if (buf.length < 5) return 0;
    const type = buf[0];
    const length = buf.readUInt32BE(1);
    if (type !== FrontendCode.Password) {
      if (type === FrontendCode.Terminate) return this.finish(undefined);
      return this.fail(pgErrors.protocolViolation(`expected password response, got message type ${type}`), 'protocol');
    }
    if (length < 4 || length > MAX_AUTH_MESSAGE) return this.fail(pgErrors.invalidMessageLength(type), 'protocol');
    if (buf.length < length + 1) return 0;
    const frame = buf.subarray(0, length + 1);
    const ok = this.checkCredentials(frame);
    if (ok === undefined) return -1;
    if (!ok) return this.fail(pgErrors.passwordFailed(this.user), this.rt.clients.has(this.user) ? 'bad_password' : 'unknown_user');
    if (this.step !== 'done') return length + 1;
    // A physical replication connection reaches no database: the server ignores the name (pg_basebackup sends "replication").
    if (this.replication !== 'physical' && this.requestedDatabase !== this.rt.database) {
      return this.fail(pgErrors.databaseMissing(this.requestedDatabase), 'bad_database');
    }
    return this.finish({
      socket: this.socket,
      user: this.user,
      database: this.requestedDatabase,
      params: this.params,
      tls: this.tls,
      replication: this.replication,
      leftover: buf.subarray(length + 1),
    });
  }

  /** true: accepted (step advanced), false: wrong credentials, undefined: closed (malformed). */
  private checkCredentials(frame: Buffer): boolean | undefined {
    const cred = this.rt.clients.get(this.user);
    switch (this.step) {
      case 'password': {
        const given = decodePasswordMessage(frame);
        if (given === undefined) return this.malformed('password');
        this.step = 'done';
        return verifyCleartext(given, cred);
      }
      case 'md5': {
        const given = decodePasswordMessage(frame);
        if (given === undefined) return this.malformed('md5 password');
        this.step = 'done';
        return verifyMd5Response(given, this.user, cred?.password, this.md5SaltBytes!);
      }
      case 'sasl-first': {
        const initial = decodeSaslInitialResponse(frame);
        if (!initial) return this.malformed('SASLInitialResponse');
        const r = handleClientFirst(this.scram!, initial.mechanism, initial.data);
        if (!r.ok) return this.malformed(`SCRAM client-first (${r.reason})`);
        this.socket.write(authenticationSaslContinue(r.serverFirst));
        this.step = 'sasl-final';
        return true;
      }
      case 'sasl-final': {
        const r = handleClientFinal(this.scram!, decodeSaslResponse(frame));
        if (!r.ok) {
          if (r.badPassword) return false;
          return this.malformed(`SCRAM client-final (${r.reason})`);
        }
        this.socket.write(authenticationSaslFinal(r.serverFinal));
        this.step = 'done';
        return true;
      }
      default:
        return this.malformed('authentication message');
    }
  }

  private malformed(what: string): undefined {
    this.fail(pgErrors.protocolViolation(`malformed ${what}`), 'protocol');
    return undefined;
  }

  private fail(fields: ErrorFields, reason: string): -1 {
    this.hooks.onAuthFailure(this.user, reason);
    if (!this.socket.destroyed) this.socket.end(errorResponse(fields));
    return this.finish(undefined);
  }

  private finish(result: AuthenticatedClient | undefined): -1 {
    clearTimeout(this.timer);
    // Paused, so bytes the client pipelines after authentication wait for the relay's listener.
    this.socket.pause();
    this.detach();
    this.step = 'done';
    if (result === undefined && !this.socket.destroyed) this.socket.end();
    this.resolve(result);
    return -1;
  }
}

/** Runs the client handshake on a fresh connection. */
export function runClientHandshake(socket: Socket, rt: PgBindingRuntime, hooks: HandshakeHooks): Promise<AuthenticatedClient | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    new ClientHandshake(socket, rt, hooks, (c) => {
      if (settled) return;
      settled = true;
      resolve(c);
    });
  });
}
