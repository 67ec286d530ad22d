// The MySQL errors sempipe itself sends, in one place: error number, SQLSTATE and message
// (https://mariadb.com/kb/en/mariadb-error-code-reference/). Policy verdicts carry PostgreSQL
// SQLSTATEs (the policy engine is protocol-neutral); `fromVerdict` maps them to MySQL's numbers.
import { errPacket } from './messages.js';

export interface MysqlError {
  errno: number;
  sqlState: string;
  message: string;
}

const e = (errno: number, sqlState: string, message: string): MysqlError => ({ errno, sqlState, message });

export const mysqlErrors = {
  accessDenied: (user: string, host: string, usingPassword: boolean): MysqlError =>
    e(1045, '28000', `Access denied for user '${user}'@'${host}' (using password: ${usingPassword ? 'YES' : 'NO'})`),
  databaseDenied: (user: string, host: string, database: string): MysqlError =>
    e(1044, '42000', `Access denied for user '${user}'@'${host}' to database '${database}'`),
  handshakeError: (): MysqlError => e(1043, '08S01', 'Bad handshake'),
  tlsRequired: (): MysqlError => e(3159, 'HY000', 'Connections using insecure transport are prohibited while --require_secure_transport=ON.'),
  authTimeout: (): MysqlError => e(1043, '08S01', 'Bad handshake: authentication timed out'),
  packetTooLarge: (max: number): MysqlError => e(1153, '08S01', `Got a packet bigger than 'max_allowed_packet' bytes (sempipe limit ${max})`),
  packetsOutOfOrder: (): MysqlError => e(1156, '08S01', 'Got packets out of order'),
  unknownCommand: (command: number): MysqlError => e(1047, '08S01', `Unknown command 0x${command.toString(16).padStart(2, '0')} (not relayed by sempipe)`),
  upstream: (message: string): MysqlError => e(2013, 'HY000', message),
  upstreamLost: (service: string): MysqlError => e(2013, 'HY000', `Lost connection to ${service} (the upstream server closed the connection)`),
  bindingRevoked: (binding: string): MysqlError => e(1927, '70100', `Connection killed: sempipe binding ${binding} was revoked`),
  shutdown: (): MysqlError => e(1053, '08S01', 'Server shutdown in progress'),
  killDenied: (id: number): MysqlError => e(1094, 'HY000', `Unknown thread id: ${id}`),
};

/** A policy verdict's PostgreSQL SQLSTATE as the MySQL error a client expects for it. */
export function fromVerdict(code: string, message: string): MysqlError {
  switch (code) {
    case '53300':
      return e(1040, '08004', message);
    case '57014':
      return e(3024, 'HY000', message);
    case '54000':
      return e(1226, '42000', message);
    default:
      return e(1142, '42000', message);
  }
}

export function errorPacket(err: MysqlError, seq: number): Buffer {
  return errPacket(err.errno, err.sqlState, err.message, seq);
}
