// Dials the real PostgreSQL server of a service and runs the startup phase with the service's own
// credentials: TLS per the service's mode (after SSLRequest, or at once with the `postgresql` ALPN
// protocol when `tls_negotiation: direct`, PostgreSQL 17+), StartupMessage, authentication
// (auth/upstream-auth.ts), then ParameterStatus, BackendKeyData and ReadyForQuery. Hands the relay a
// paused socket plus the raw startup frames to replay to the client. Also sends CancelRequests.
// The StartupMessage is built here rather than with pg-protocol's serialize.startup because that one
// appends client_encoding=UTF8 after the caller's parameters, which would override the encoding the
// client asked for.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendKeyDataMessage, BackendMessage, DatabaseError } from 'pg-protocol/dist/messages.js';
import { createUpstreamAuth, handleAuthRequest, type UpstreamAuthMethod } from './auth/upstream-auth.js';
import { FrameScanner, frameTypeSet, ScanStatus, type FrameRef } from './frame-scanner.js';
import { BackendCode, StartupCode } from './message-codes.js';
import type { ServiceConfig, UpstreamTlsMode, UpstreamTlsNegotiation } from '../../control/config.js';

type ServiceUpstream = ServiceConfig['upstream'];

/** Where and as whom to connect: a service's upstream settings plus what the session adds. */
export interface UpstreamTarget extends ServiceUpstream {
  /** Covers TCP connect, TLS and authentication up to ReadyForQuery. */
  connectTimeoutMs: number;
  /** application_name to send when the client did not send one of its own. */
  applicationName?: string;
  serviceFqn: string;
  /** The client's own startup parameters (client_encoding, DateStyle, options…) to forward. */
  extraStartupParams?: Record<string, string>;
}

export interface UpstreamConnection {
  /** Paused, with no listeners of ours left: attach 'error' at once, then 'data', then resume(). */
  socket: net.Socket | tls.TLSSocket;
  /** The raw ParameterStatus frames ('S' …) the server sent, byte for byte, to replay to the client. */
  parameterStatus: Buffer[];
  /** Zero when the server sent no BackendKeyData (it then cannot be cancelled). */
  backendKey: { processId: number; secretKey: number };
  /** From the first ReadyForQuery ('I'). */
  transactionStatus: string;
  /** Bytes received after ReadyForQuery (normally empty). */
  leftover: Buffer;
  /** Raw NoticeResponse frames received during startup. */
  noticeFrames: Buffer[];
  /** How the server authenticated us, for logs and metrics. */
  authMethod: UpstreamAuthMethod;
}

/**
 * A failure to reach or start up with the service's server. `message` is what the client is told:
 * the service FQN and the kind of failure, never the server's host or port (a job must not learn
 * where the real service lives); `address` and `reason` (which may be a Node error message naming
 * the address) are for sempipe's operator log only.
 */
export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  constructor(
    /** SQLSTATE to give the client: 08001 unreachable, 08006 refused by the server. */
    readonly code: string,
    message: string,
    /** host:port of the server; for the operator log. */
    readonly address: string,
    /** The underlying cause as Node or the server put it; for the operator log. */
    readonly reason?: string,
    /** The server's SQLSTATE when it refused us; for logs and metrics, not for the client. */
    readonly upstreamSqlState?: string,
    /** The server's own message when it refused us; for operator logs, not for the client. */
    readonly upstreamMessage?: string,
  ) {
    super(message);
  }
}

export interface CancelTarget {
  host: string;
  port: number;
  tls?: UpstreamTlsMode;
  tlsNegotiation?: UpstreamTlsNegotiation;
  ca?: string;
  connectTimeoutMs?: number;
  serviceFqn?: string;
}

/** Largest frame accepted during startup; ErrorResponse and ParameterStatus are far smaller. */
const MAX_STARTUP_FRAME = 1 << 20;
const DEFAULT_CANCEL_TIMEOUT_MS = 5000;
const SSL_YES = 0x53; // S
const SSL_NO = 0x4e; // N
/** The ALPN protocol a direct TLS connection must offer (PostgreSQL 17). */
const PG_ALPN = 'postgresql';
const ALL_TYPES = frameTypeSet(Array.from({ length: 256 }, (_, i) => i));
/** Startup parameters the target decides, and protocol options we do not negotiate. */
const RESERVED_PARAM = /^(user|database|_pq_\..*)$/;

/** Where an attempt stands, so that a failure can name its kind (and a timeout its phase). */
type Phase = 'connecting' | 'negotiating TLS' | 'authenticating';

/** A failure in sempipe's own words, which name no address: it may be shown to the client as it is. */
class StartupFailure extends Error {}

/** Node's error codes for failures of the TCP connection, as the client is told of them. */
const NETWORK_FAILURES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by the server',
  EPIPE: 'connection reset by the server',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
};

const addressOf = (t: { host: string; port: number }): string => `${t.host}:${t.port}`;
const upstreamOf = (t: { serviceFqn?: string }): string => `upstream for ${t.serviceFqn ?? 'service'}`;

/**
 * The kind of a failure the client may be told of. A Node error's message names the address
 * ("connect ECONNREFUSED 127.0.0.1:5432"), so only its code is used, and only when it is a plain
 * identifier (TLS verification codes such as DEPTH_ZERO_SELF_SIGNED_CERT are).
 */
function failureKind(err: unknown, phase: Phase): string {
  if (err instanceof StartupFailure) return err.message;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const known = typeof code === 'string' && /^[A-Z0-9_]+$/.test(code) ? code : undefined;
  if (phase === 'negotiating TLS') return `TLS handshake failed${known === undefined ? '' : ` (${known})`}`;
  if (known !== undefined) return NETWORK_FAILURES[known] ?? `network error (${known})`;
  return `network error while ${phase}`;
}

function unreachable(t: CancelTarget, kind: string, reason?: string): UpstreamError {
  return new UpstreamError('08001', `${upstreamOf(t)} is unreachable: ${kind}`, addressOf(t), reason);
}

function refused(t: UpstreamTarget, why: string, sqlState?: string, serverMessage?: string): UpstreamError {
  return new UpstreamError('08006', `${upstreamOf(t)} ${why}`, addressOf(t), undefined, sqlState, serverMessage);
}

/** StartupMessage for protocol 3.0 (length, version, name/value C strings, terminating NUL). */
function startupMessage(params: Record<string, string>): Buffer {
  const body = Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0';
  const buf = Buffer.alloc(8 + Buffer.byteLength(body, 'utf8'));
  buf.writeUInt32BE(buf.length, 0);
  buf.writeUInt32BE(StartupCode.Protocol3, 4);
  buf.write(body, 8, 'utf8');
  return buf;
}

function startupParams(t: UpstreamTarget): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [k, v] of Object.entries(t.extraStartupParams ?? {})) {
    if (k !== '' && !RESERVED_PARAM.test(k) && !k.includes('\0') && !v.includes('\0')) params[k] = v;
  }
  if (t.applicationName !== undefined && params.application_name === undefined) params.application_name = t.applicationName;
  return { ...params, user: t.user, database: t.database };
}

/** Waits for the one-byte answer to SSLRequest; more bytes would be a plaintext injection (CVE-2021-23222). */
function readSslAnswer(socket: net.Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      socket.pause();
      socket.off('data', onData).off('error', onError).off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      cleanup();
      if (chunk.length !== 1) reject(new StartupFailure('the server sent unexpected data after its SSL answer'));
      else resolve(chunk[0]);
    };
    const onError = (err: Error): void => { cleanup(); reject(err); };
    const onClose = (): void => { cleanup(); reject(new StartupFailure('the server closed the connection during TLS negotiation')); };
    socket.on('data', onData).on('error', onError).on('close', onClose);
    socket.write(serialize.requestSsl());
  });
}

/** An open connection attempt, so a timeout can destroy whichever socket is current. */
interface Attempt {
  socket: net.Socket | undefined;
  phase: Phase;
}

/** TCP connect, then SSLRequest and the TLS handshake as the mode asks. */
async function dial(t: CancelTarget, attempt: Attempt): Promise<net.Socket | tls.TLSSocket> {
  const mode = t.tls ?? 'disable';
  let ca: Buffer | undefined;
  if (mode === 'verify-full' && t.ca !== undefined) {
    try {
      ca = readFileSync(t.ca);
    } catch (err) {
      throw unreachable(t, 'its TLS CA file cannot be read', `cannot read TLS CA file ${t.ca}: ${(err as Error).message}`);
    }
  }
  const tlsOptions = {
    host: t.host,
    servername: net.isIP(t.host) === 0 ? t.host : undefined,
    rejectUnauthorized: mode === 'verify-full',
    ca,
  };
  // The config allows direct only with require or verify-full, so there is no plaintext fallback.
  if (mode !== 'disable' && t.tlsNegotiation === 'direct') {
    const direct = tls.connect({ ...tlsOptions, port: t.port, ALPNProtocols: [PG_ALPN] });
    attempt.socket = direct;
    await once(direct, 'secureConnect');
    direct.setNoDelay(true);
    if (direct.alpnProtocol !== PG_ALPN) throw unreachable(t, `the server did not accept the "${PG_ALPN}" ALPN protocol for direct TLS`);
    return direct;
  }
  const socket = net.connect({ host: t.host, port: t.port });
  attempt.socket = socket;
  await once(socket, 'connect');
  socket.setNoDelay(true);
  if (mode === 'disable') return socket;
  attempt.phase = 'negotiating TLS';
  const answer = await readSslAnswer(socket);
  if (answer === SSL_NO) {
    if (mode === 'prefer') return socket;
    throw unreachable(t, `the server does not accept TLS (tls: ${mode})`);
  }
  if (answer !== SSL_YES) throw unreachable(t, `unexpected answer 0x${answer.toString(16)} to SSLRequest`);
  const secure = tls.connect({ ...tlsOptions, socket });
  attempt.socket = secure;
  await once(secure, 'secureConnect');
  return secure;
}

/**
 * Collects the server's frames during startup, in order, and stops taking frames after
 * ReadyForQuery: later bytes are the relay's (`leftover`).
 */
class StartupReader {
  private readonly scanner = new FrameScanner(ALL_TYPES, MAX_STARTUP_FRAME);
  private readonly frames: Buffer[] = [];
  private waiter: { resolve(f: Buffer): void; reject(e: Error): void } | undefined;
  private failure: Error | undefined;
  private ready = false;
  leftover: Buffer = Buffer.alloc(0);

  private readonly onData = (chunk: Buffer): void => {
    if (this.ready) {
      this.leftover = Buffer.concat([this.leftover, chunk]);
      return;
    }
    const handler = {
      onFrame: (type: number, frame: FrameRef): boolean => {
        this.frames.push(frame.view());
        if (type !== BackendCode.ReadyForQuery) return true;
        this.ready = true;
        this.leftover = chunk.subarray(frame.endInChunk);
        return false;
      },
    };
    if (!this.scanner.scan(chunk, handler) && this.scanner.status !== ScanStatus.Ok) {
      const why = this.scanner.status === ScanStatus.TooLarge ? 'too large' : 'of invalid length';
      this.fail(new StartupFailure(`the server sent a message of type 0x${this.scanner.badType.toString(16)} ${why}`));
    }
    this.deliver();
  };
  private readonly onError = (err: Error): void => this.fail(err);
  private readonly onClose = (): void => this.fail(new StartupFailure('the server closed the connection during startup'));

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData).on('error', this.onError).on('close', this.onClose);
    socket.resume();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.deliver();
  }

  private deliver(): void {
    const w = this.waiter;
    if (!w) return;
    const frame = this.frames.shift();
    if (frame) {
      this.waiter = undefined;
      w.resolve(frame);
    } else if (this.failure) {
      this.waiter = undefined;
      w.reject(this.failure);
    }
  }

  /** The next whole frame; rejects once the queue is empty and the connection failed. */
  next(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.deliver();
    });
  }

  /** Pauses the socket and removes our listeners. */
  detach(): void {
    this.socket.pause();
    this.socket.off('data', this.onData).off('error', this.onError).off('close', this.onClose);
  }
}

function decode<T extends BackendMessage>(parser: Parser, frame: Buffer): T | undefined {
  let msg: BackendMessage | undefined;
  parser.parse(frame, (m) => { msg = m; });
  return msg as T | undefined;
}

async function startup(t: UpstreamTarget, socket: net.Socket | tls.TLSSocket, attempt: Attempt): Promise<UpstreamConnection> {
  attempt.phase = 'authenticating';
  const reader = new StartupReader(socket);
  const parser = new Parser();
  const auth = createUpstreamAuth(t.user, t.password, socket instanceof tls.TLSSocket ? socket : undefined);
  const parameterStatus: Buffer[] = [];
  const noticeFrames: Buffer[] = [];
  let backendKey = { processId: 0, secretKey: 0 };
  let authenticated = false;
  socket.write(startupMessage(startupParams(t)));
  for (;;) {
    const frame = await reader.next();
    const type = frame[0];
    if (type === BackendCode.ErrorResponse) {
      const err = decode<DatabaseError>(parser, frame);
      const state = err?.code;
      const why = state === '28P01' || state === '28000' ? `refused sempipe's credentials (${state})` : `refused the connection (${state ?? 'no SQLSTATE'})`;
      throw refused(t, why, state, err?.message);
    }
    if (type === BackendCode.NoticeResponse) {
      noticeFrames.push(frame);
    } else if (type === BackendCode.Authentication && !authenticated) {
      const step = await handleAuthRequest(auth, frame);
      // The reason is upstream-auth.ts's own wording about the exchange; it knows no address.
      if (step.kind === 'fail') throw refused(t, `authentication failed: ${step.reason}`);
      if (step.kind === 'send') socket.write(step.frame);
      authenticated = step.kind === 'ok';
    } else if (type === BackendCode.ParameterStatus && authenticated) {
      parameterStatus.push(frame);
    } else if (type === BackendCode.BackendKeyData && authenticated) {
      const key = decode<BackendKeyDataMessage>(parser, frame);
      backendKey = { processId: key?.processID ?? 0, secretKey: key?.secretKey ?? 0 };
    } else if (type === BackendCode.ReadyForQuery && authenticated && frame.length === 6) {
      reader.detach();
      return { socket, parameterStatus, backendKey, transactionStatus: String.fromCharCode(frame[5]), leftover: reader.leftover, noticeFrames, authMethod: auth.method };
    } else {
      throw refused(t, `sent an unexpected message (type 0x${type.toString(16)}) during startup`);
    }
  }
}

/** Runs `work` with a deadline that destroys the attempt's socket; maps failures to UpstreamError. */
async function withDeadline<T>(t: CancelTarget, ms: number, work: (attempt: Attempt) => Promise<T>): Promise<T> {
  const attempt: Attempt = { socket: undefined, phase: 'connecting' };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    attempt.socket?.destroy(new Error(`timed out after ${ms} ms`));
  }, ms);
  try {
    return await work(attempt);
  } catch (err) {
    attempt.socket?.destroy();
    if (err instanceof UpstreamError) throw err;
    const kind = timedOut ? `timed out after ${ms} ms while ${attempt.phase}` : failureKind(err, attempt.phase);
    throw unreachable(t, kind, (err as Error).message);
  } finally {
    clearTimeout(timer);
  }
}

/** Opens an authenticated connection to the service's server, ready for the relay. */
export function connectUpstream(t: UpstreamTarget): Promise<UpstreamConnection> {
  return withDeadline(t, t.connectTimeoutMs, async (attempt) => startup(t, await dial(t, attempt), attempt));
}

/** Sends a CancelRequest for `key` on a fresh connection and waits until the server closes it. */
export function sendCancelRequest(target: CancelTarget, key: { processId: number; secretKey: number }): Promise<void> {
  return withDeadline(target, target.connectTimeoutMs ?? DEFAULT_CANCEL_TIMEOUT_MS, async (attempt) => {
    const socket = await dial(target, attempt);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject).once('close', () => resolve());
      socket.resume();
      socket.end(serialize.cancel(key.processId, key.secretKey));
    });
  });
}
