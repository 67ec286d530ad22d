// Client side of PostgreSQL authentication as sempipe runs it towards the real server with the
// service's credentials: trust, cleartext password, md5 and SCRAM-SHA-256(-PLUS). A state machine
// over the server's Authentication ('R') frames, decoded by pg-protocol's Parser; the SCRAM and md5
// arithmetic is pg's own (lib/crypto/sasl.js, lib/crypto/utils.js). No socket I/O: each step says
// which frame to send. Reasons never contain the password.
import { createRequire } from 'node:module';
import type { TLSSocket } from 'node:tls';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { AuthenticationMD5Password, BackendMessage } from 'pg-protocol/dist/messages.js';

interface SaslSession {
  mechanism: string;
  response: string;
}
interface SaslModule {
  startSession(mechanisms: string[], stream: TLSSocket | undefined): SaslSession;
  continueSession(session: SaslSession, password: string, serverData: string, stream: TLSSocket | undefined): Promise<void>;
  finalizeSession(session: SaslSession, serverData: string): void;
}
interface PgCryptoUtils {
  postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
}
type SaslRequest = BackendMessage & { mechanisms?: string[]; data?: string };

const require = createRequire(import.meta.url);
const sasl = require('pg/lib/crypto/sasl.js') as SaslModule;
const pgCrypto = require('pg/lib/crypto/utils.js') as PgCryptoUtils;

export interface UpstreamAuthState {
  readonly user: string;
  readonly password: string | undefined;
  /** The TLS stream when the upstream leg is TLS: enables SCRAM-SHA-256-PLUS. */
  readonly stream: TLSSocket | undefined;
  readonly parser: Parser;
  sasl: SaslSession | undefined;
  /** SCRAM: the server proved it knows the verifier (SASLFinal checked). */
  serverVerified: boolean;
  /** The method the server asked for, once known. */
  method: UpstreamAuthMethod;
}

export type UpstreamAuthMethod = 'trust' | 'password' | 'md5' | 'scram-sha-256' | 'scram-sha-256-plus';

export type UpstreamAuthStep =
  | { kind: 'send'; frame: Buffer }
  /** Nothing to send; wait for the next Authentication frame. */
  | { kind: 'wait' }
  | { kind: 'ok'; method: UpstreamAuthMethod }
  | { kind: 'fail'; reason: string };

export function createUpstreamAuth(user: string, password: string | undefined, stream: TLSSocket | undefined): UpstreamAuthState {
  return { user, password, stream, parser: new Parser(), sasl: undefined, serverVerified: false, method: 'trust' };
}

function decode(a: UpstreamAuthState, frame: Buffer): SaslRequest | string {
  let msg: SaslRequest | undefined;
  try {
    a.parser.parse(frame, (m) => { msg = m; });
  } catch (err) {
    return (err as Error).message;
  }
  return msg ?? 'incomplete authentication message';
}

/** One Authentication ('R') frame from the server, whole (type byte and length included). */
export async function handleAuthRequest(a: UpstreamAuthState, frame: Buffer): Promise<UpstreamAuthStep> {
  const msg = decode(a, frame);
  if (typeof msg === 'string') return { kind: 'fail', reason: `unsupported authentication request: ${msg}` };
  const needPassword = (): UpstreamAuthStep | undefined =>
    a.password === undefined || a.password === '' ? { kind: 'fail', reason: 'the server asks for a password but the service has none configured' } : undefined;
  try {
    switch (msg.name) {
      case 'authenticationOk':
        // pg-protocol also names a malformed cleartext request "authenticationOk": insist on the real one.
        if (frame.length !== 9 || frame.readUInt32BE(5) !== 0) return { kind: 'fail', reason: 'malformed authentication request' };
        if (a.sasl && !a.serverVerified) return { kind: 'fail', reason: 'SCRAM: server sent AuthenticationOk before proving its identity (SASLFinal)' };
        return { kind: 'ok', method: a.method };
      case 'authenticationCleartextPassword':
        a.method = 'password';
        return needPassword() ?? { kind: 'send', frame: serialize.password(a.password!) };
      case 'authenticationMD5Password': {
        const salt = (msg as unknown as AuthenticationMD5Password).salt;
        a.method = 'md5';
        return needPassword() ?? { kind: 'send', frame: serialize.password(await pgCrypto.postgresMd5PasswordHash(a.user, a.password!, salt)) };
      }
      case 'authenticationSASL': {
        const missing = needPassword();
        if (missing) return missing;
        if (a.sasl) return { kind: 'fail', reason: 'SCRAM: second AuthenticationSASL' };
        a.sasl = sasl.startSession(msg.mechanisms ?? [], a.stream);
        a.method = a.sasl.mechanism === 'SCRAM-SHA-256-PLUS' ? 'scram-sha-256-plus' : 'scram-sha-256';
        return { kind: 'send', frame: serialize.sendSASLInitialResponseMessage(a.sasl.mechanism, a.sasl.response) };
      }
      case 'authenticationSASLContinue':
        if (!a.sasl) return { kind: 'fail', reason: 'SCRAM: AuthenticationSASLContinue without AuthenticationSASL' };
        await sasl.continueSession(a.sasl, a.password!, msg.data ?? '', a.stream);
        return { kind: 'send', frame: serialize.sendSCRAMClientFinalMessage(a.sasl.response) };
      case 'authenticationSASLFinal':
        if (!a.sasl) return { kind: 'fail', reason: 'SCRAM: AuthenticationSASLFinal without AuthenticationSASL' };
        sasl.finalizeSession(a.sasl, msg.data ?? '');
        a.serverVerified = true;
        return { kind: 'wait' };
      default:
        return { kind: 'fail', reason: `unexpected message ${msg.name} during authentication` };
    }
  } catch (err) {
    return { kind: 'fail', reason: (err as Error).message };
  }
}
