// The pipeline's stage interface: what a stage sees of a session (decoded events) and what it may
// answer (a verdict). Protocol-neutral: the PostgreSQL, MySQL and HTTP pipelines all emit these
// events. A chain of stage factories is built once from config; each session gets its own instances.

/** Who and where a session is; fixed once the client is authenticated. */
export interface SessionInfo {
  /** Unique id of the session within this sempipe instance for its whole life (e.g. "1.2-42"). */
  readonly id: string;
  /** Binding FQN, e.g. binding::/prod/billing::api-orders. */
  readonly binding: string;
  /** Service FQN the binding points at. */
  readonly service: string;
  /** "postgres" | "mysql" | "http". */
  readonly protocol: string;
  /** Client user as authenticated by sempipe (not the upstream user). */
  readonly user: string;
  /** Client address as "ip:port". */
  readonly clientAddress: string;
  /** Database (or equivalent) name the client asked for. */
  readonly database: string;
  /** Date.now() when the client connected. */
  readonly startedAt: number;
  /**
   * Set for a replication session (PostgreSQL's walsender connections): `physical` streams the
   * server's WAL or a base backup, `logical` decoded changes of one database.
   */
  readonly replication?: 'physical' | 'logical';
}

/** One statement as the client sent it. */
export interface StatementEvent {
  /** Statement text (for PostgreSQL: the Query string or the Parse query). */
  readonly text: string;
  /**
   * How it arrived: a simple query, a Parse of the extended protocol, a Bind of a statement
   * prepared earlier (judged again: policy may have changed, and each execution counts), or an
   * HTTP request line.
   */
  readonly kind: 'simple' | 'parse' | 'bind' | 'request';
  /** process.hrtime.bigint() when the statement's frame was read. */
  readonly receivedAt: bigint;
}

/** The end of one statement (or one command of a multi-statement simple query). */
export interface CompletionEvent {
  readonly text: string;
  /** Statement class, e.g. select, insert, ddl, copy_in, transaction, unknown. */
  readonly statementClass: string;
  /** Command tag as the server sent it (e.g. "SELECT 3"), empty on error. */
  readonly tag: string;
  /** Rows returned or affected. */
  readonly rows: number;
  readonly outcome: 'ok' | 'error' | 'denied';
  /** SQLSTATE (or protocol error code) when outcome is not ok. */
  readonly code?: string;
  readonly message?: string;
  /** For outcome denied: the rule that refused it (e.g. deny.classes, read_only, max_rows) and the policy FQN. */
  readonly rule?: string;
  readonly policy?: string;
  /** Nanoseconds from receipt of the statement to its completion. */
  readonly durationNs: bigint;
  /** process.hrtime.bigint() when the statement was received. */
  readonly receivedAt: bigint;
  /** Nanoseconds from receipt until the statement was sent upstream (stage and hook time). */
  readonly judgedNs: bigint;
  /** HTTP only: the status the client got (0 when it left first) and the request's bytes each way. */
  readonly status?: number;
  readonly bytesIn?: number;
  readonly bytesOut?: number;
}

export type EndReason = 'client' | 'upstream' | 'error' | 'killed' | 'shutdown' | 'revoked';

export interface EndEvent {
  readonly reason: EndReason;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly statements: number;
  readonly message?: string;
}

export interface AuthFailureEvent {
  readonly binding: string;
  readonly protocol: string;
  readonly user: string;
  readonly clientAddress: string;
  /** Bounded label: bad_password, unknown_user, bad_database, timeout, protocol, tls_required, upstream. */
  readonly reason: string;
}

/**
 * Per-statement limits and follow-up a stage attaches to a forwarded statement; the relay enforces
 * them (stopping the result and cancelling upstream) and reports the completion back.
 */
export interface StatementTracker {
  /** Most rows the client may receive; past it the result is stopped, the upstream statement cancelled. */
  readonly maxRows?: number;
  /** Longest the statement may run before sempipe cancels it upstream. */
  readonly timeoutMs?: number;
  /** Names the rule and policy in the error the client gets when a limit stops the statement. */
  readonly limitMessage?: (limit: 'max_rows' | 'statement_timeout') => { code: string; message: string; rule: string; policy?: string };
  /** Called with the statement's completion (after every stage's onComplete). */
  readonly onComplete?: (c: CompletionEvent) => void;
}

/** What should happen to the event a stage looked at. */
export type Verdict =
  | { readonly action: 'forward'; readonly tracker?: StatementTracker }
  /** Answer this statement with an error; the session stays usable. */
  | { readonly action: 'error'; readonly code: string; readonly message: string; readonly rule?: string; readonly policy?: string }
  /** Answer with a fatal error and close the session. */
  | { readonly action: 'close'; readonly code: string; readonly message: string };

export const FORWARD: Verdict = Object.freeze({ action: 'forward' });

/** A per-session stage instance. Every hook is optional; hooks that only observe return nothing. */
export interface Stage {
  /**
   * Called after the client authenticated, before the upstream connection is made: a refusal
   * closes the connection with the verdict's error (e.g. max sessions per binding).
   */
  admit?(session: SessionInfo): Verdict | Promise<Verdict>;
  onStart?(session: SessionInfo): void;
  /**
   * Whether onStatement may currently answer anything but forward (e.g. some policy applies). When
   * every stage says no, the relay skips building statement events altogether. Absent = always.
   */
  judges?(): boolean;
  /** Return a verdict synchronously in the common case; a Promise only when truly async (hooks). */
  onStatement?(session: SessionInfo, statement: StatementEvent): Verdict | Promise<Verdict> | undefined;
  onComplete?(session: SessionInfo, completion: CompletionEvent): void;
  /** Bytes relayed since the last call: in = client to upstream, out = upstream to client. */
  onBytes?(session: SessionInfo, bytesIn: number, bytesOut: number): void;
  onEnd?(session: SessionInfo, end: EndEvent): void;
}

/** Builds the per-session instance of one stage; created once from config. */
export interface StageFactory {
  readonly name: string;
  create(session: SessionInfo): Stage;
  /** Failed client authentication happens before any session exists. */
  onAuthFailure?(event: AuthFailureEvent): void;
  /** Session opened (authenticated) / a new TCP connection arrived, for connection counters. */
  onConnection?(binding: string, protocol: string): void;
}
