// Dials the real MySQL/MariaDB server of a service and logs in with the service's own credentials:
// HandshakeV10, SSLRequest -> TLS per the service's mode, HandshakeResponse41 with the capability
// flags the client negotiated with sempipe (so that relayed packets keep the shape the client
// expects), then the server's plugin: mysql_native_password, or caching_sha2_password with its fast
// path and its full authentication over TLS or through the server's RSA key; an auth switch to
// either. Also sends `KILL [QUERY] <id>` on a connection of its own (max_rows, timeouts, KILL).
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { ServiceConfig } from '../../control/config.js';
import { CACHING_SHA2, FAST_AUTH_OK, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY, rsaEncryptPassword, sha2Scramble } from './auth/caching-sha2.js';
import { NATIVE_PASSWORD, nativeScramble } from './auth/native-password.js';
import { Cap, Command, DEFAULT_COLLATION, Header, RELAY_CAPABILITIES } from './constants.js';
import { handshakeResponse, packet, parseErr, parseServerHandshake, sslRequest } from './messages.js';
import { PacketReader, PacketReaderError, type Message } from './packet-reader.js';

type ServiceUpstream = ServiceConfig['upstream'];

export interface MysqlUpstreamTarget extends ServiceUpstream {
  password: string;
  /** Covers TCP connect, TLS and authentication up to the OK. */
  connectTimeoutMs: number;
  maxMessageSize: number;
}

/** What the client leg negotiated, to repeat upstream. */
export interface UpstreamLogin {
  capabilities: number;
  collation: number;
  attributes: Buffer | undefined;
}

export interface MysqlUpstreamConnection {
  /** Paused, with no listeners of ours left. */
  socket: net.Socket | tls.TLSSocket;
  /** The server's thread id: what `KILL` upstream needs. */
  connectionId: number;
  serverVersion: string;
  /** The flags both legs use. */
  capabilities: number;
}

export class MysqlUpstreamError extends Error {
  override readonly name = 'MysqlUpstreamError';
  constructor(
    message: string,
    /** The server's error number when it refused us; for logs and metrics. */
    readonly upstreamErrno?: number,
    readonly upstreamMessage?: string,
  ) {
    super(message);
  }
}

/** Largest connection-phase message accepted from the server (a handshake, an RSA key, an ERR). */
const MAX_LOGIN_MESSAGE = 1 << 20;

/** Flags sempipe always sends upstream; the rest follow the client (RELAY_CAPABILITIES). */
const UPSTREAM_BASE = Cap.LongPassword | Cap.Protocol41 | Cap.SecureConnection | Cap.PluginAuth | Cap.PluginAuthLenencClientData | Cap.ConnectWithDb | Cap.Transactions;

export async function connectMysqlUpstream(t: MysqlUpstreamTarget, login: UpstreamLogin): Promise<MysqlUpstreamConnection> {
  const where = `${t.host}:${t.port}`;
  let socket: net.Socket | tls.TLSSocket = net.connect({ host: t.host, port: t.port, noDelay: true });
  const reader = new PacketReader(MAX_LOGIN_MESSAGE);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MysqlUpstreamError(`upstream ${where} did not complete the login within ${t.connectTimeoutMs}ms`)), t.connectTimeoutMs);
  });
  const connectError = new Promise<never>((_, reject) => {
    socket.once('error', (e: Error) => reject(new MysqlUpstreamError(`cannot reach upstream ${where}: ${e.message}`)));
  });
  try {
    await Promise.race([new Promise<void>((resolve) => socket.once('connect', () => resolve())), connectError, timeout]);
    reader.attach(socket);
    const result = await Promise.race([login41(t, login, reader, () => socket, (s) => { socket = s; }), timeout]);
    reader.detach();
    socket.removeAllListeners('error');
    return { ...result, socket };
  } catch (err) {
    reader.detach();
    socket.on('error', ignore);
    socket.destroy();
    if (err instanceof MysqlUpstreamError) throw err;
    if (err instanceof PacketReaderError) throw new MysqlUpstreamError(`upstream ${where} ${err.kind === 'closed' ? 'closed the connection during login' : 'sent an oversized login message'}`);
    throw new MysqlUpstreamError(`upstream ${where} login failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

async function login41(
  t: MysqlUpstreamTarget,
  login: UpstreamLogin,
  reader: PacketReader,
  current: () => net.Socket,
  replace: (s: tls.TLSSocket) => void,
): Promise<Omit<MysqlUpstreamConnection, 'socket'>> {
  const where = `${t.host}:${t.port}`;
  const greeting = await reader.next();
  if (greeting.payload[0] === Header.Err) throw refused(where, greeting.payload);
  const hs = parseServerHandshake(greeting.payload);
  if (hs === undefined) throw new MysqlUpstreamError(`upstream ${where} sent an invalid handshake`);
  let seq = greeting.seq + 1;

  const wanted = (UPSTREAM_BASE | (login.capabilities & RELAY_CAPABILITIES) | (login.capabilities & Cap.ConnectAttrs)) >>> 0;
  const missing = (login.capabilities & RELAY_CAPABILITIES & ~hs.capabilities) >>> 0;
  if (missing !== 0) throw new MysqlUpstreamError(`upstream ${where} lacks capabilities the client negotiated (0x${missing.toString(16)})`);
  const capabilities = (wanted & hs.capabilities) >>> 0;

  let secure = false;
  const serverTls = (hs.capabilities & Cap.Ssl) !== 0;
  if (t.tls === 'require' || t.tls === 'verify-full' || (t.tls === 'prefer' && serverTls)) {
    if (!serverTls) throw new MysqlUpstreamError(`upstream ${where} does not offer TLS (tls: ${t.tls})`);
    current().write(sslRequest(capabilities, login.collation || DEFAULT_COLLATION, seq++));
    reader.detach();
    const s = tls.connect({
      socket: current(),
      ...(t.tls === 'verify-full' ? { ca: readFileSync(t.ca!), servername: t.host } : { rejectUnauthorized: false }),
    });
    await new Promise<void>((resolve, reject) => {
      s.once('secureConnect', () => resolve());
      s.once('error', (e) => reject(new MysqlUpstreamError(`TLS with upstream ${where} failed: ${e.message}`)));
    });
    replace(s);
    reader.attach(s);
    secure = true;
  }

  const finalCaps = (capabilities | (secure ? Cap.Ssl : 0)) >>> 0;
  let plugin = hs.plugin;
  let scramble = hs.scramble;
  const answer = (p: string, sc: Buffer): Buffer => (p === CACHING_SHA2 ? sha2Scramble(t.password, sc) : nativeScramble(t.password, sc));
  if (plugin !== NATIVE_PASSWORD && plugin !== CACHING_SHA2) plugin = NATIVE_PASSWORD;
  current().write(handshakeResponse({
    capabilities: finalCaps,
    collation: login.collation || DEFAULT_COLLATION,
    user: t.user,
    authResponse: answer(plugin, scramble),
    database: t.database,
    plugin,
    attributes: login.attributes,
  }, seq++));

  const send = (payload: Buffer): void => {
    current().write(packet(payload, seq++ & 0xff));
  };
  const next = async (): Promise<Message> => {
    const m = await reader.next();
    seq = m.seq + 1;
    return m;
  };
  for (;;) {
    const m = await next();
    const p = m.payload;
    switch (p[0]) {
      case Header.Ok:
        if (reader.hasMore) throw new MysqlUpstreamError(`upstream ${where} sent data after its OK`);
        return { connectionId: hs.connectionId, serverVersion: hs.serverVersion, capabilities: finalCaps };
      case Header.Err:
        throw refused(where, p);
      case Header.Eof: {
        // AuthSwitchRequest: plugin name NUL, then the new scramble (NUL-terminated).
        const nul = p.indexOf(0, 1);
        plugin = p.toString('utf8', 1, nul < 0 ? p.length : nul);
        scramble = nul < 0 ? Buffer.alloc(0) : p.subarray(nul + 1, p[p.length - 1] === 0 ? p.length - 1 : p.length);
        if (plugin !== NATIVE_PASSWORD && plugin !== CACHING_SHA2) {
          throw new MysqlUpstreamError(`upstream ${where} asks for auth plugin ${plugin}; sempipe speaks ${NATIVE_PASSWORD} and ${CACHING_SHA2} upstream`);
        }
        send(answer(plugin, scramble));
        break;
      }
      case Header.AuthMoreData:
        if (plugin !== CACHING_SHA2) throw new MysqlUpstreamError(`upstream ${where} sent unexpected auth data`);
        if (p[1] === FAST_AUTH_OK) break;
        if (p[1] !== PERFORM_FULL_AUTH) throw new MysqlUpstreamError(`upstream ${where} sent unexpected caching_sha2_password data`);
        if (secure) {
          send(Buffer.from(t.password + '\0'));
        } else {
          send(Buffer.from([REQUEST_PUBLIC_KEY]));
          const key = await next();
          if (key.payload[0] !== Header.AuthMoreData) throw refused(where, key.payload);
          send(rsaEncryptPassword(t.password, scramble, key.payload.toString('latin1', 1)));
        }
        break;
      default:
        throw new MysqlUpstreamError(`upstream ${where} sent an unexpected login packet (0x${(p[0] ?? 0).toString(16)})`);
    }
  }
}

function refused(where: string, payload: Buffer): MysqlUpstreamError {
  const err = parseErr(payload);
  return new MysqlUpstreamError(`upstream ${where} refused the login`, err?.errno, err?.message);
}

/**
 * Runs `KILL [QUERY] <id>` upstream on a connection of its own, with the service's credentials.
 * Resolves once the server answered (an unknown id is not an error: the statement may have ended).
 */
export async function killUpstream(t: MysqlUpstreamTarget, connectionId: number, queryOnly: boolean): Promise<void> {
  const conn = await connectMysqlUpstream(t, { capabilities: Cap.Protocol41 | Cap.DeprecateEof, collation: DEFAULT_COLLATION, attributes: undefined });
  const { socket } = conn;
  const sql = Buffer.from(`KILL ${queryOnly ? 'QUERY ' : ''}${connectionId >>> 0}`);
  await new Promise<void>((resolve) => {
    socket.on('error', () => resolve());
    socket.once('data', () => resolve());
    socket.once('close', () => resolve());
    socket.resume();
    socket.write(packet(Buffer.concat([Buffer.from([Command.Query]), sql]), 0));
  });
  socket.end(packet(Buffer.from([Command.Quit]), 0));
  socket.destroySoon();
}

const ignore = (): void => {};
