// The one place that turns sempipe's situations into PostgreSQL ErrorResponse fields, with
// PostgreSQL's own SQLSTATEs and message texts so clients and people recognise them.
// https://www.postgresql.org/docs/current/errcodes-appendix.html
import type { ErrorFields } from './backend-messages.js';

const fatal = (code: string, message: string, extra: Partial<ErrorFields> = {}): ErrorFields => ({ severity: 'FATAL', code, message, ...extra });

export const pgErrors = {
  /** Same error for a wrong password and an unknown user: no user enumeration. */
  passwordFailed: (user: string) => fatal('28P01', `password authentication failed for user "${user}"`),
  databaseMissing: (db: string) => fatal('3D000', `database "${db}" does not exist`),
  tlsRequired: (binding: string) =>
    fatal('28000', `SSL/TLS is required by binding "${binding}"`, { hint: 'Connect with sslmode=require.' }),
  cleartextWithoutTls: () =>
    fatal('28000', 'password authentication over an unencrypted connection is refused', { hint: 'Connect with sslmode=require.' }),
  /** PostgreSQL's answer when it has no connection slot left (max_connections). */
  tooManyClients: () => fatal('53300', 'sorry, too many clients already'),
  invalidReplicationValue: (value: string) =>
    fatal('22023', `invalid value for parameter "replication": "${value}"`, { hint: 'Valid values are: "false", 0, "true", 1, "database".' }),
  protocolViolation: (message: string) => fatal('08P01', message),
  /** PostgreSQL's words; for a major version under 3 it is sent in the 2.0 format (errorResponseV2). */
  unsupportedProtocol: (major: number, minor: number) =>
    fatal('0A000', `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`),
  startupLayout: () => fatal('08P01', 'invalid startup packet layout: expected terminator as last byte'),
  unencryptedAfterSsl: () =>
    fatal('08P01', 'received unencrypted data after SSL request', {
      detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
    }),
  noUserName: () => fatal('28000', 'no PostgreSQL user name specified in startup packet'),
  messageTooLarge: (length: number, max: number) => fatal('08P01', `message of ${length} bytes exceeds the maximum of ${max} bytes`),
  invalidMessageLength: (type: number) => fatal('08P01', `invalid message length for message type "${String.fromCharCode(type)}"`),
  adminShutdown: () => fatal('57P01', 'terminating connection due to administrator command'),
  bindingRevoked: (binding: string) => fatal('57P01', `terminating connection: binding "${binding}" was removed`),
  upstreamLost: (service: string) => fatal('08006', `connection to upstream of ${service} was lost`),
  cancelUnanswered: (service: string, limit: string, graceMs: number) =>
    fatal('08006', `terminating connection: the upstream of ${service} did not answer the cancel of a statement stopped by ${limit} within ${graceMs} ms`),
  upstream: (code: string, message: string) => fatal(code, message),
} as const;
