// The kind of a failed upstream connection in words a client may be shown: Node's error messages
// name the address ("connect ECONNREFUSED 127.0.0.1:5432"), and a job must not learn where the real
// service lives, so only the error's code is used (the message goes to the operator log). Shared by
// every protocol's upstream leg.

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

/** The error's code when it is a plain identifier (TLS verification codes such as DEPTH_ZERO_SELF_SIGNED_CERT are). */
export function plainErrorCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]+$/.test(code) ? code : undefined;
}

/** A network failure while `phase` ("connecting", "authenticating", …), named by its code only. */
export function networkFailureKind(err: unknown, phase: string): string {
  const code = plainErrorCode(err);
  if (code !== undefined) return NETWORK_FAILURES[code] ?? `network error (${code})`;
  return `network error while ${phase}`;
}

/** A failed TLS handshake, named by its code only. */
export function tlsFailureKind(err: unknown): string {
  const code = plainErrorCode(err);
  return `TLS handshake failed${code === undefined ? '' : ` (${code})`}`;
}
