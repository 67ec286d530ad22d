// MySQL protocol constants: capability flags, command bytes, server status flags, packet headers
// (https://dev.mysql.com/doc/dev/mysql-server/latest/group__group__cs__capabilities__flags.html).

export const enum Cap {
  LongPassword = 0x1,
  FoundRows = 0x2,
  LongFlag = 0x4,
  ConnectWithDb = 0x8,
  NoSchema = 0x10,
  Compress = 0x20,
  Odbc = 0x40,
  LocalFiles = 0x80,
  IgnoreSpace = 0x100,
  Protocol41 = 0x200,
  Interactive = 0x400,
  Ssl = 0x800,
  IgnoreSigpipe = 0x1000,
  Transactions = 0x2000,
  Reserved = 0x4000,
  SecureConnection = 0x8000,
  MultiStatements = 0x10000,
  MultiResults = 0x20000,
  PsMultiResults = 0x40000,
  PluginAuth = 0x80000,
  ConnectAttrs = 0x100000,
  PluginAuthLenencClientData = 0x200000,
  CanHandleExpiredPasswords = 0x400000,
  SessionTrack = 0x800000,
  DeprecateEof = 0x1000000,
}

/**
 * What sempipe offers clients: what MariaDB (10.2+) and MySQL (5.7+) servers all support, so that
 * the upstream leg can always agree to the same flags and relayed packets stay valid. Left out:
 * compression (sempipe reads the packets), LOAD DATA LOCAL (refused unless a policy allows it),
 * session tracking and MariaDB's extended capabilities (not needed to relay results).
 */
export const SERVER_CAPABILITIES =
  Cap.LongPassword | Cap.FoundRows | Cap.LongFlag | Cap.ConnectWithDb | Cap.NoSchema | Cap.Odbc | Cap.IgnoreSpace |
  Cap.Protocol41 | Cap.Interactive | Cap.IgnoreSigpipe | Cap.Transactions | Cap.Reserved | Cap.SecureConnection |
  Cap.MultiStatements | Cap.MultiResults | Cap.PsMultiResults | Cap.PluginAuth | Cap.ConnectAttrs |
  Cap.PluginAuthLenencClientData | Cap.CanHandleExpiredPasswords | Cap.DeprecateEof;

/** Flags whose value changes the shape of relayed packets: both legs must agree on them. */
export const RELAY_CAPABILITIES = Cap.Protocol41 | Cap.DeprecateEof | Cap.MultiResults | Cap.PsMultiResults | Cap.MultiStatements | Cap.LongFlag | Cap.FoundRows | Cap.Transactions;

export const enum Command {
  Quit = 0x01,
  InitDb = 0x02,
  Query = 0x03,
  FieldList = 0x04,
  Statistics = 0x09,
  ProcessKill = 0x0c,
  Ping = 0x0e,
  ChangeUser = 0x11,
  StmtPrepare = 0x16,
  StmtExecute = 0x17,
  StmtSendLongData = 0x18,
  StmtClose = 0x19,
  StmtReset = 0x1a,
  SetOption = 0x1b,
  StmtFetch = 0x1c,
  ResetConnection = 0x1f,
}

export const enum Header {
  Ok = 0x00,
  AuthMoreData = 0x01,
  LocalInfile = 0xfb,
  Eof = 0xfe,
  Err = 0xff,
}

export const enum ServerStatus {
  InTransaction = 0x1,
  Autocommit = 0x2,
  MoreResultsExist = 0x8,
}

/** utf8mb4_general_ci: the collation sempipe's greeting announces. */
export const DEFAULT_COLLATION = 45;
export const SCRAMBLE_BYTES = 20;
