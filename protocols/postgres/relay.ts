// The hot path of one authenticated PostgreSQL session: relays frames between client and upstream,
// cut by type and length only, forwarding the received chunks themselves (no copies) unless a
// stage refuses a statement or a limit stops one. Only the frames that carry statements (Query,
// Parse, Bind, Execute, Sync, …) and their outcomes (CommandComplete, ErrorResponse,
// ReadyForQuery, COPY responses) are looked into, and only as far as needed. Writes respect
// backpressure in both directions.
//
// A refused statement is not answered by sempipe directly: it is replaced upstream by a statement
// that cannot parse, so the server itself fails it with exactly PostgreSQL's semantics (the rest of
// the extended-protocol segment is skipped up to Sync, an implicit transaction rolls back, an
// explicit one enters the failed state), and the server's error is rewritten into sempipe's
// (SQLSTATE 42501 naming the rule and policy). ReadyForQuery therefore always comes from the
// server and stays truthful.
//
// A limit (statement_timeout, max_rows) sends the server a CancelRequest and drops the rest of the
// statement's rows; the server's answer to the cancelled statement becomes the limit's error. When
// that answer does not come within `cancelGraceMs` (the server is stopped, swapping, or cut off),
// the client gets the limit's error and then FATAL 08006, and the upstream connection is destroyed.
// Answering the client with the error and a ReadyForQuery of sempipe's own and carrying on is not
// an option: the server still owes the statement's answer and would send it later, where the
// client would take it for the answer to its next statement; and the transaction status of that
// ReadyForQuery could only be guessed. A server that does not answer a cancel within the grace is
// not one to keep a session on.
//
// A client's Terminate while the server is idle (nothing outstanding, outside a transaction) may
// end the session without ending the upstream connection: the relay lets go of it and hands it to
// `releaseUpstream` (upstream-pool.ts resets it for the next session).
import type { Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import type { ChunkSource } from '../../proxy/chunk-reader.js';
import type { SessionPipeline } from '../../proxy/pipeline.js';
import { startRelay } from '../../proxy/relay-start.js';
import type { EndReason, StatementTracker, Verdict } from '../../proxy/stage.js';
import { errorResponse, type ErrorFields } from './backend-messages.js';
import { CommandTagDecoder, decodeErrorResponse } from './backend-decode.js';
import { classFromCommandTag, rowsFromCommandTag } from './command-tag.js';
import { FrameScanner, frameTypeSet, ScanStatus, type FrameHandler, type FrameRef } from './frame-scanner.js';
import { decodeBindNames, decodeClose, decodeExecutePortal, decodeParse, decodeQuery } from './frontend-messages.js';
import { BackendCode, FrontendCode, TransactionStatus } from './message-codes.js';
import { classifierReady, classifySql } from './sql-classify.js';
import { RepeatedCString } from './repeated-cstring.js';
import { pgErrors } from './wire-errors.js';

const FRONTEND_WANTED = frameTypeSet([
  FrontendCode.Query,
  FrontendCode.Parse,
  FrontendCode.Bind,
  FrontendCode.Execute,
  FrontendCode.Sync,
  FrontendCode.Close,
  FrontendCode.FunctionCall,
  FrontendCode.Terminate,
]);
const BACKEND_OUTCOMES = [
  BackendCode.CommandComplete,
  BackendCode.ErrorResponse,
  BackendCode.ReadyForQuery,
  BackendCode.EmptyQueryResponse,
  BackendCode.PortalSuspended,
  BackendCode.CopyInResponse,
];
const BACKEND_WANTED = frameTypeSet(BACKEND_OUTCOMES);
/** While a row limit is close or exceeded, DataRows are captured too so they can be dropped. */
const BACKEND_WANTED_WITH_ROWS = frameTypeSet([...BACKEND_OUTCOMES, BackendCode.DataRow]);
const BACKEND_COUNTED = frameTypeSet([BackendCode.DataRow]);

/** Text the server is asked to parse in place of a refused statement; it can never parse. */
const REFUSED_SQL = 'SEMPIPE POLICY REFUSED THIS STATEMENT';
/** Statement name a refused Bind is redirected to; no client can have prepared it. */
const REFUSED_STATEMENT = '\u0001sempipe refused';

const enum EntryKind {
  /** A simple Query (or FunctionCall): ends at ReadyForQuery, may complete several commands. */
  Simple,
  /** An Execute of the extended protocol: ends at CommandComplete/EmptyQuery/PortalSuspended/Error. */
  Execute,
  /** A refused Parse or Bind (sent as one that must fail): ends at its ErrorResponse or ReadyForQuery. */
  Refused,
  /** A Sync: ends at ReadyForQuery. */
  Sync,
}

type Limit = 'max_rows' | 'statement_timeout';
type StatementKind = 'simple' | 'parse' | 'bind';

/** A prepared statement or portal: its text and the limits its last verdict attached. */
interface Prepared {
  text: string;
  tracker: StatementTracker | undefined;
  /** Judged at Parse and not bound since: its first Bind needs no second verdict. */
  fresh: boolean;
}

const UNKNOWN_PREPARED: Prepared = { text: '', tracker: undefined, fresh: false };

/** One request awaiting its response, in the order the upstream will answer. */
interface Pending {
  kind: EntryKind;
  text: string;
  receivedAt: bigint;
  judgedNs: bigint;
  /** Index of the next command within a multi-statement simple query. */
  index: number;
  rows: number;
  copyIn: boolean;
  tracker: StatementTracker | undefined;
  /** Set when a stage refused the statement: the error the client gets instead of the server's. */
  refusal: Refusal | undefined;
  /** Set when a limit stopped the statement. */
  limited: Limit | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** A statement a limit cancelled upstream, until the server has answered it and taken the cancel. */
interface CancelHold {
  entry: Pending;
  /** The CancelRequest's connection has ended (the server took it, or it failed). */
  cancelled: boolean;
  /** Ends the session unless the server answers the statement in time; cleared once it did. */
  grace: NodeJS.Timeout | undefined;
}

export interface RelayOptions {
  maxMessageSize: number;
  serviceFqn: string;
  /** Sends a CancelRequest for this session's upstream backend; settles once the server took it. */
  cancelUpstream(): Promise<void>;
  /** How long the server has to answer a statement a limit cancelled before the session ends. */
  cancelGraceMs: number;
  onEnd(reason: EndReason, message?: string): void;
  /**
   * Takes over the upstream connection when the client ends the session while the server is idle;
   * the relay has removed its listeners from the socket. Absent: the Terminate goes upstream.
   */
  releaseUpstream?(): void;
  /**
   * The class of a statement text when the session decides it before the command tag and the SQL
   * parser (a replication session: its commands are class replication); undefined: as usual.
   */
  classOf?(text: string): string | undefined;
  /**
   * A statement still running when the session ends gets its statement line then (a replication
   * stream usually ends so: the client closes it): ok when the client ended the session, else an
   * error. Absent: such statements are not reported.
   */
  reportUnfinished?: boolean;
}

type Refusal = Exclude<Verdict, { action: 'forward' }>;

export class PgRelay {
  private readonly frontend: FrameScanner;
  private readonly backend: FrameScanner;
  private readonly pending: Pending[] = [];
  private readonly statements = new Map<string, Prepared>();
  /** Named portals; the unnamed one, which nearly every client uses, lives in its own field. */
  private readonly portals = new Map<string, Prepared>();
  private unnamedPortal = UNKNOWN_PREPARED;
  /**
   * The statement name of the last Bind into the unnamed portal and the statement it named, until
   * the statements change: a repeated Bind is recognised by its bytes (no decode, no lookup).
   */
  private readonly lastBind = new RepeatedCString<Prepared>(64);
  private readonly tags = new CommandTagDecoder();
  private lastParseText = '';
  private upstreamBlocked = false;
  private awaitingVerdict = false;
  /**
   * A limit cancelled a statement upstream: the client's next requests wait until the server has
   * taken the cancel and answered the statement, so a cancel that arrives late hits nothing (an
   * idle backend ignores it) rather than the client's next statement.
   */
  private cancelHold: CancelHold | undefined;
  private ended = false;
  private clientTerminated = false;
  /** The upstream sent a FATAL error: the client already knows why the session ends. */
  private upstreamFatalSent = false;
  /** The transaction status of the server's last ReadyForQuery ('I' idle, 'T' in a transaction, 'E' failed). */
  private transactionStatus: number = TransactionStatus.Idle;
  /** The client chunk being relayed (bytes up to inEnd) and the offset up to which it is handled. */
  private inChunk: Buffer | undefined;
  private inFrom = 0;
  private inEnd = 0;
  private outChunk: Buffer | undefined;
  private outFrom = 0;
  private bytesInPending = 0;
  private bytesOutPending = 0;
  bytesIn = 0;
  bytesOut = 0;
  statementCount = 0;

  private readonly frontendHandler: FrameHandler = {
    onFrame: (type, frame) => this.onClientFrame(type, frame),
    onHeldHeader: (header, end) => {
      this.writeUpstream(Buffer.from(header));
      this.inFrom = end;
    },
  };
  private readonly backendHandler: FrameHandler = {
    onFrame: (type, frame) => this.onServerFrame(type, frame),
    onFrameHeader: () => this.countRow(),
    onHeldHeader: (header, end) => {
      this.writeClient(Buffer.from(header));
      this.outFrom = end;
    },
  };

  private readonly client: Socket;
  private readonly upstream: Socket;

  constructor(
    private readonly clientSource: ChunkSource,
    private readonly upstreamSource: ChunkSource,
    private readonly pipeline: SessionPipeline,
    private readonly opts: RelayOptions,
  ) {
    this.client = clientSource.socket;
    this.upstream = upstreamSource.socket;
    this.frontend = new FrameScanner(FRONTEND_WANTED, opts.maxMessageSize);
    this.backend = new FrameScanner(BACKEND_WANTED, opts.maxMessageSize, BACKEND_COUNTED);
  }

  /** Starts relaying; `leftover` holds client bytes that arrived with the last auth message. */
  start(leftover: Buffer): void {
    startRelay(this.clientSource, this.upstreamSource, {
      onClientData: (chunk, length) => this.onClientData(chunk, length),
      onUpstreamData: (chunk, length) => this.onUpstreamData(chunk, length),
      onUpstreamDrain: this.onUpstreamDrain,
      onClientGone: () => this.close('client'),
      onUpstreamGone: this.onUpstreamGone,
    }, leftover);
  }

  private readonly onUpstreamDrain = (): void => {
    this.upstreamBlocked = false;
    this.resumeClient();
  };
  private readonly onUpstreamGone = (): void => this.onUpstreamClosed();

  // ---- client to upstream ----------------------------------------------------------------------

  private onClientData(chunk: Buffer, length: number): void {
    if (this.ended) return;
    this.bytesIn += length;
    this.bytesInPending += length;
    this.scanClientChunk(chunk, 0, length);
  }

  private scanClientChunk(chunk: Buffer, from: number, end: number): void {
    this.inChunk = chunk;
    this.inFrom = from;
    this.inEnd = end;
    if (!this.frontend.scan(chunk, this.frontendHandler, from, end)) {
      if (this.frontend.status !== ScanStatus.Ok) this.protocolFailure(this.frontend, 'client');
      return; // stopped for an asynchronous verdict, or the session ended
    }
    const until = this.frontend.heldFrom;
    if (until > this.inFrom) this.writeUpstream(chunk, this.inFrom, until);
    this.inChunk = undefined;
  }

  private onClientFrame(type: number, f: FrameRef): boolean {
    if (this.ended) return false;
    switch (type) {
      case FrontendCode.Query: {
        const text = decodeQuery(f.buf, f.start, f.end);
        if (text === undefined) return this.malformed('Query');
        return this.judge(text, 'simple', f, '');
      }
      case FrontendCode.Parse: {
        const parse = decodeParse(f.buf, f.start, f.end);
        if (parse === undefined) return this.malformed('Parse');
        this.lastParseText = parse.query;
        return this.judge(parse.query, 'parse', f, parse.name);
      }
      case FrontendCode.Bind: {
        let portal = '';
        // Unnamed portal (an empty name) and the statement name right after it.
        let stmt = f.buf[f.start + 5] === 0 ? this.lastBind.match(f.buf, f.start + 6, f.end) : undefined;
        if (stmt === undefined) {
          const names = decodeBindNames(f.buf, f.start, f.end);
          if (names === undefined) return this.malformed('Bind');
          portal = names.portal;
          stmt = this.statements.get(names.statement) ?? UNKNOWN_PREPARED;
          if (portal === '' && stmt !== UNKNOWN_PREPARED) this.lastBind.remember(names.statement, stmt, 'utf8');
        }
        if (stmt.fresh || stmt === UNKNOWN_PREPARED || !this.pipeline.judgesStatements) {
          if (stmt.fresh) stmt.fresh = false;
          this.setPortal(portal, stmt);
          break;
        }
        return this.judge(stmt.text, 'bind', f, portal);
      }
      case FrontendCode.Execute: {
        const portal = decodeExecutePortal(f.buf, f.start, f.end);
        if (portal === undefined) return this.malformed('Execute');
        const p = portal === '' ? this.unnamedPortal : (this.portals.get(portal) ?? UNKNOWN_PREPARED);
        this.push(EntryKind.Execute, p.text, process.hrtime.bigint(), 0n, p.tracker, undefined);
        break;
      }
      case FrontendCode.Close: {
        const target = decodeClose(f.buf, f.start, f.end);
        if (target === undefined) return this.malformed('Close');
        if (target.target === 0x53) this.setStatement(target.name, undefined);
        else this.setPortal(target.name, undefined);
        break;
      }
      case FrontendCode.Sync:
        this.push(EntryKind.Sync, '', 0n, 0n, undefined, undefined);
        break;
      case FrontendCode.FunctionCall:
        this.push(EntryKind.Simple, '<function call>', process.hrtime.bigint(), 0n, undefined, undefined);
        break;
      case FrontendCode.Terminate:
        if (this.opts.releaseUpstream !== undefined && this.upstreamAtRest()) return this.releaseUpstream(f);
        this.clientTerminated = true;
        break;
    }
    return this.forwardFrame(f);
  }

  /** Prepares (or with undefined, closes) statement `name`; a remembered Bind may name it. */
  private setStatement(name: string, p: Prepared | undefined): void {
    if (p === undefined) this.statements.delete(name);
    else this.statements.set(name, p);
    this.lastBind.forget();
  }

  /** Binds (or with undefined, closes) portal `name`. */
  private setPortal(name: string, p: Prepared | undefined): void {
    if (name === '') this.unnamedPortal = p ?? UNKNOWN_PREPARED;
    else if (p === undefined) this.portals.delete(name);
    else this.portals.set(name, p);
  }

  /** Runs the statement stages and applies the verdict to the frame that carried the statement. */
  private judge(text: string, kind: StatementKind, f: FrameRef, name: string): boolean {
    const receivedAt = process.hrtime.bigint();
    if (!this.pipeline.judgesStatements) {
      this.accept(text, kind, name, receivedAt, 0n, undefined);
      return this.forwardFrame(f);
    }
    const verdict = this.pipeline.statement({ text, kind, receivedAt });
    if (verdict instanceof Promise) {
      // Forward what came before this frame, hold the rest of the chunk until the verdict settles.
      // The chunk lives in the reader's reusable buffer (and `f` is reused): what is held is copied.
      const chunk = Buffer.from(this.inChunk!.subarray(0, this.inEnd));
      if (!f.assembled && f.start > this.inFrom) this.writeUpstream(chunk, this.inFrom, f.start);
      const held = f.assembled ? f.buf : chunk.subarray(f.start, f.end);
      const end = f.endInChunk;
      this.inFrom = end;
      this.awaitingVerdict = true;
      this.client.pause();
      verdict.then(
        (v) => this.resumeAfterVerdict(v, text, kind, held, name, receivedAt, chunk, end),
        () => this.close('error', pgErrors.protocolViolation('statement verdict failed')),
      );
      return false;
    }
    if (verdict.action === 'close') return this.refuseAndClose(verdict, text, receivedAt);
    if (verdict.action === 'forward') {
      this.accept(text, kind, name, receivedAt, process.hrtime.bigint() - receivedAt, verdict.tracker);
      return this.forwardFrame(f);
    }
    this.skipClientFrame(f);
    this.refuse(verdict, text, kind, name, receivedAt);
    return true;
  }

  private resumeAfterVerdict(v: Verdict, text: string, kind: StatementKind, frame: Buffer, name: string, receivedAt: bigint, chunk: Buffer, end: number): void {
    this.awaitingVerdict = false;
    if (this.ended) return;
    if (v.action === 'close') {
      this.refuseAndClose(v, text, receivedAt);
      return;
    }
    if (v.action === 'forward') {
      this.accept(text, kind, name, receivedAt, process.hrtime.bigint() - receivedAt, v.tracker);
      this.writeUpstream(frame);
    } else {
      this.refuse(v, text, kind, name, receivedAt);
    }
    this.resumeClient();
    if (end < chunk.length) this.scanClientChunk(chunk, end, chunk.length);
  }

  /** Sends the refused statement's unparsable stand-in upstream in place of its frame. */
  private refuse(refusal: Refusal, text: string, kind: StatementKind, name: string, receivedAt: bigint): void {
    const judgedNs = process.hrtime.bigint() - receivedAt;
    if (kind === 'simple') {
      this.push(EntryKind.Simple, text, receivedAt, judgedNs, undefined, refusal);
      this.writeUpstream(refusedQueryFrame);
    } else {
      this.push(EntryKind.Refused, text, receivedAt, judgedNs, undefined, refusal);
      this.writeUpstream(kind === 'parse' ? refusedParseFrame(name) : serialize.bind({ portal: name, statement: REFUSED_STATEMENT }));
    }
  }

  private accept(text: string, kind: StatementKind, name: string, receivedAt: bigint, judgedNs: bigint, tracker: StatementTracker | undefined): void {
    if (kind === 'parse') this.setStatement(name, { text, tracker, fresh: true });
    else if (kind === 'bind') this.setPortal(name, { text, tracker, fresh: false });
    else this.push(EntryKind.Simple, text, receivedAt, judgedNs, tracker, undefined);
  }

  private refuseAndClose(v: Refusal, text: string, receivedAt: bigint): false {
    this.report(text, 0, '', 'denied', v, receivedAt, process.hrtime.bigint() - receivedAt, 0, undefined);
    this.close('error', { severity: 'FATAL', code: v.code, message: v.message });
    return false;
  }

  /** Forwards what came before frame `f` in the chunk and moves past `f` without forwarding it. */
  private skipClientFrame(f: FrameRef): void {
    if (!f.assembled && f.start > this.inFrom) this.writeUpstream(this.inChunk!, this.inFrom, f.start);
    this.inFrom = f.endInChunk;
  }

  /** A frame assembled from several chunks is forwarded here; one inside the chunk goes with it. */
  private forwardFrame(f: FrameRef): boolean {
    if (f.assembled) {
      this.writeUpstream(f.buf);
      this.inFrom = f.endInChunk;
    }
    return true;
  }

  private push(kind: EntryKind, text: string, receivedAt: bigint, judgedNs: bigint, tracker: StatementTracker | undefined, refusal: Pending['refusal']): void {
    const entry: Pending = { kind, text, receivedAt, judgedNs, index: 0, rows: 0, copyIn: false, tracker, refusal, limited: undefined, timer: undefined };
    if (tracker?.timeoutMs !== undefined) entry.timer = setTimeout(() => this.limitReached(entry, 'statement_timeout'), tracker.timeoutMs);
    this.pending.push(entry);
  }

  private writeUpstream(buf: Buffer, start = 0, end = buf.length): void {
    const flushed = this.upstreamSource.write(buf, start, end);
    // A write the kernel did not take at once still points into the client reader's buffer.
    if (this.upstream.writableLength > 0) this.clientSource.retain();
    if (!flushed && !this.upstreamBlocked) {
      this.upstreamBlocked = true;
      this.client.pause();
    }
  }

  private resumeClient(): void {
    if (!this.upstreamBlocked && !this.awaitingVerdict && this.cancelHold === undefined && !this.ended) this.client.resume();
  }

  // ---- upstream to client ----------------------------------------------------------------------

  private onUpstreamData(chunk: Buffer, length: number): void {
    if (this.ended) return;
    this.bytesOut += length;
    this.bytesOutPending += length;
    this.outChunk = chunk;
    this.outFrom = 0;
    if (!this.backend.scan(chunk, this.backendHandler, 0, length)) {
      if (this.backend.status !== ScanStatus.Ok) this.protocolFailure(this.backend, 'upstream');
      return;
    }
    const until = this.backend.heldFrom;
    if (until > this.outFrom) this.writeClient(chunk, this.outFrom, until);
    this.outChunk = undefined;
  }

  private onServerFrame(type: number, f: FrameRef): boolean {
    const head = this.pending[0];
    switch (type) {
      case BackendCode.DataRow:
        return this.onCapturedRow(head, f);
      case BackendCode.CommandComplete:
        if (head === undefined || head.kind === EntryKind.Sync || head.kind === EntryKind.Refused) break;
        if (head.limited === 'max_rows') return this.replaceWithLimitError(head, f);
        const now = this.report(head.text, head.index, this.tags.decode(f.buf, f.start, f.end), 'ok', undefined, head.receivedAt, head.judgedNs, head.rows, head);
        if (head.kind === EntryKind.Execute) this.finish(head);
        else this.nextCommand(head, now);
        break;
      case BackendCode.PortalSuspended:
        if (head?.kind === EntryKind.Execute) {
          this.report(head.text, 0, '', 'ok', undefined, head.receivedAt, head.judgedNs, head.rows, head);
          this.finish(head);
        }
        break;
      case BackendCode.EmptyQueryResponse:
        if (head?.kind === EntryKind.Execute) this.finish(head);
        break;
      case BackendCode.ErrorResponse:
        return this.onServerError(head, f);
      case BackendCode.ReadyForQuery:
        this.transactionStatus = f.buf[f.start + 5]!;
        this.onReadyForQuery();
        break;
      case BackendCode.CopyInResponse:
        if (head !== undefined) head.copyIn = true;
        break;
    }
    return this.forwardServerFrame(f);
  }

  private forwardServerFrame(f: FrameRef): boolean {
    if (f.assembled) {
      this.writeClient(f.buf);
      this.outFrom = f.endInChunk;
    }
    return true;
  }

  /** Replaces a backend frame with `replacement` (or drops it when undefined). */
  private replaceServerFrame(f: FrameRef, replacement: Buffer | undefined): boolean {
    if (!f.assembled && f.start > this.outFrom) this.writeClient(this.outChunk!, this.outFrom, f.start);
    if (replacement !== undefined) this.writeClient(replacement);
    this.outFrom = f.endInChunk;
    return true;
  }

  private onServerError(head: Pending | undefined, f: FrameRef): boolean {
    const err = decodeErrorResponse(f.view());
    if (err.severity === 'FATAL' || err.severity === 'PANIC') this.upstreamFatalSent = true;
    if (head === undefined || head.kind === EntryKind.Sync) {
      // Parse or Bind failed before any Execute was queued.
      if (head !== undefined) this.report(this.lastParseText, 0, '', 'error', err, process.hrtime.bigint(), 0n, 0, undefined);
      return this.forwardServerFrame(f);
    }
    if (head.refusal !== undefined) {
      // The stand-in statement failed as intended: the client gets sempipe's refusal instead.
      this.report(head.text, head.index, '', 'denied', head.refusal, head.receivedAt, head.judgedNs, 0, head);
      const replacement = errorResponse({ severity: 'ERROR', code: head.refusal.code, message: head.refusal.message });
      if (head.kind === EntryKind.Refused) this.finish(head);
      else head.index++;
      return this.replaceServerFrame(f, replacement);
    }
    if (head.limited !== undefined) return this.replaceWithLimitError(head, f);
    const now = this.report(head.text, head.index, '', 'error', err, head.receivedAt, head.judgedNs, head.rows, head);
    if (head.kind === EntryKind.Execute) this.finish(head);
    else this.nextCommand(head, now);
    return this.forwardServerFrame(f);
  }

  /** The statement was stopped by a limit: its completion or cancel error becomes sempipe's error. */
  private replaceWithLimitError(head: Pending, f: FrameRef): boolean {
    const described = limitDescription(head, head.limited!);
    const now = this.report(head.text, head.index, '', 'denied', described, head.receivedAt, head.judgedNs, head.rows, head);
    if (head.kind === EntryKind.Execute) this.finish(head);
    else this.nextCommand(head, now);
    return this.replaceServerFrame(f, errorResponse({ severity: 'ERROR', code: described.code, message: described.message }));
  }

  /** Row counting for uncaptured DataRows; prepares to capture rows once a limit is reached. */
  private countRow(): void {
    const head = this.pending[0];
    if (head === undefined) return;
    head.rows++;
    const max = head.tracker?.maxRows;
    if (max !== undefined && head.rows >= max) this.backend.wanted = BACKEND_WANTED_WITH_ROWS;
  }

  /**
   * A captured DataRow: past the statement's row limit it is dropped and the statement cancelled;
   * once a limit stopped the statement, every further row of it is dropped.
   */
  private onCapturedRow(head: Pending | undefined, f: FrameRef): boolean {
    const max = head?.tracker?.maxRows;
    if (head === undefined || (head.limited === undefined && (max === undefined || head.rows < max))) {
      if (head !== undefined) head.rows++;
      return this.forwardServerFrame(f);
    }
    if (head.limited === undefined) this.limitReached(head, 'max_rows');
    return this.replaceServerFrame(f, undefined);
  }

  private limitReached(entry: Pending, limit: Limit): void {
    if (entry.limited !== undefined || this.ended || !this.pending.includes(entry)) return;
    entry.limited = limit;
    if (this.cancelHold?.grace !== undefined) clearTimeout(this.cancelHold.grace);
    const hold: CancelHold = { entry, cancelled: false, grace: undefined };
    hold.grace = setTimeout(() => this.onCancelUnanswered(hold), this.opts.cancelGraceMs);
    this.cancelHold = hold;
    this.client.pause();
    if (entry === this.pending[0]) this.backend.wanted = BACKEND_WANTED_WITH_ROWS;
    // Its rows are dropped from now on: reading on lets a server that waits for a slow client to
    // take its rows get to the cancel (PostgreSQL takes no cancel while blocked in a write).
    this.upstream.resume();
    const settled = (): void => {
      hold.cancelled = true;
      this.releaseCancelHold();
    };
    this.opts.cancelUpstream().then(settled, settled);
  }

  /** The command a limit stopped got its answer from the server: the cancel's grace ends. */
  private limitAnswered(entry: Pending): void {
    const hold = this.cancelHold;
    if (hold?.entry !== entry || hold.grace === undefined) return;
    clearTimeout(hold.grace);
    hold.grace = undefined;
  }

  /**
   * The server did not answer a statement a limit stopped within the grace (see the top of this
   * file): the client gets the limit's error, then FATAL 08006; the upstream connection is
   * destroyed rather than sent a Terminate it would not read.
   */
  private onCancelUnanswered(hold: CancelHold): void {
    const { entry } = hold;
    const limit = entry.limited;
    if (this.ended || this.cancelHold !== hold || limit === undefined) return;
    const described = limitDescription(entry, limit);
    this.report(entry.text, entry.index, '', 'denied', described, entry.receivedAt, entry.judgedNs, entry.rows, entry);
    if (!this.backend.passingThrough && !this.client.destroyed) this.writeClient(errorResponse({ severity: 'ERROR', code: described.code, message: described.message }));
    this.upstream.destroy();
    this.close('upstream', pgErrors.cancelUnanswered(this.opts.serviceFqn, limit, this.opts.cancelGraceMs));
  }

  /** The current command of a simple query is done (at `now`); the query may hold more. */
  private nextCommand(head: Pending, now: bigint): void {
    if (head.limited !== undefined) this.limitAnswered(head);
    head.index++;
    head.rows = 0;
    head.copyIn = false;
    head.limited = undefined;
    head.receivedAt = now;
    this.backend.wanted = BACKEND_WANTED;
  }

  private finish(entry: Pending): void {
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    if (entry.limited !== undefined) this.limitAnswered(entry);
    if (this.pending[0] === entry) this.pending.shift();
    // A statement a limit stopped while it waited behind this one has its rows dropped too.
    this.backend.wanted = this.pending[0]?.limited === undefined ? BACKEND_WANTED : BACKEND_WANTED_WITH_ROWS;
  }

  /** Lets the client's requests flow again once the cancel was taken and its statement answered. */
  private releaseCancelHold(): void {
    const hold = this.cancelHold;
    if (hold === undefined || !hold.cancelled || this.pending.includes(hold.entry)) return;
    this.cancelHold = undefined;
    this.resumeClient();
  }

  private onReadyForQuery(): void {
    // Everything up to the first Simple or Sync entry is answered now; Executes still queued before
    // it were skipped by the server after an error.
    while (this.pending.length > 0) {
      const e = this.pending[0];
      this.finish(e);
      if (e.kind === EntryKind.Simple || e.kind === EntryKind.Sync) break;
    }
    this.flushBytes();
    if (this.cancelHold !== undefined) this.releaseCancelHold();
  }

  /**
   * Reports the bytes relayed since the last report to the stages. Done at each ReadyForQuery and at
   * the end; a session that streams without one (replication) is flushed on a timer too.
   */
  flushBytes(): void {
    this.pipeline.bytes(this.bytesInPending, this.bytesOutPending);
    this.bytesInPending = 0;
    this.bytesOutPending = 0;
  }

  private report(
    text: string,
    index: number,
    tag: string,
    outcome: 'ok' | 'error' | 'denied',
    problem: { code: string; message: string; rule?: string; policy?: string } | undefined,
    receivedAt: bigint,
    judgedNs: bigint,
    rows: number,
    entry: Pending | undefined,
  ): bigint {
    const now = process.hrtime.bigint();
    const rowsFromTag = tag === '' ? 0 : rowsFromCommandTag(tag);
    this.statementCount++;
    const completion = {
      text,
      statementClass:
        this.opts.classOf?.(text) ??
        (outcome === 'ok' && tag !== '' ? classFromCommandTag(tag, entry?.copyIn === true) : statementClassOf(text, index, tag)),
      tag,
      rows: rowsFromTag > 0 ? rowsFromTag : rows,
      outcome,
      code: problem?.code,
      message: problem?.message,
      rule: problem?.rule,
      policy: problem?.policy,
      durationNs: now - receivedAt,
      receivedAt,
      judgedNs,
    };
    this.pipeline.complete(completion);
    entry?.tracker?.onComplete?.(completion);
    return now;
  }

  private writeClient(buf: Buffer, start = 0, end = buf.length): void {
    const flushed = this.clientSource.write(buf, start, end);
    if (this.client.writableLength > 0) this.upstreamSource.retain();
    // While a limit stops the statement at the head its rows are dropped, not written: the little
    // still written (the rest of a row already begun, the limit's error) must not stop the reading
    // that lets a server blocked on its writes get to the cancel.
    if (!flushed && this.pending[0]?.limited === undefined) this.upstream.pause();
  }

  // ---- ends --------------------------------------------------------------------------------------

  /** Nothing outstanding upstream, no transaction open, nothing held or queued in either direction. */
  private upstreamAtRest(): boolean {
    return (
      this.pending.length === 0 &&
      this.transactionStatus === TransactionStatus.Idle &&
      !this.upstreamFatalSent &&
      !this.awaitingVerdict &&
      this.cancelHold === undefined &&
      this.backend.atBoundary &&
      !this.upstream.destroyed &&
      this.upstream.writableLength === 0
    );
  }

  /** Ends the session at the client's Terminate and hands the upstream connection on, unterminated. */
  private releaseUpstream(f: FrameRef): false {
    this.skipClientFrame(f);
    this.end('client');
    this.upstream.off('drain', this.onUpstreamDrain).off('close', this.onUpstreamGone).off('error', this.onUpstreamGone);
    this.opts.releaseUpstream!();
    if (!this.client.destroyed) this.client.end();
    return false;
  }

  private malformed(what: string): false {
    this.close('error', pgErrors.protocolViolation(`invalid ${what} message`));
    return false;
  }

  private protocolFailure(scanner: FrameScanner, side: 'client' | 'upstream'): void {
    const fields =
      scanner.status === ScanStatus.TooLarge
        ? pgErrors.messageTooLarge(scanner.badLength + 1, this.opts.maxMessageSize)
        : pgErrors.invalidMessageLength(scanner.badType);
    this.close(side === 'upstream' ? 'upstream' : 'error', fields);
  }

  private onUpstreamClosed(): void {
    if (this.ended) return;
    if (this.clientTerminated || this.upstreamFatalSent) {
      this.end(this.clientTerminated ? 'client' : 'upstream');
      if (!this.client.destroyed) this.client.end();
      return;
    }
    this.close('upstream', pgErrors.upstreamLost(this.opts.serviceFqn), 'upstream closed the connection');
  }

  /**
   * Ends the session from sempipe's side: the client gets `fields` as a FATAL ErrorResponse when
   * its stream is at a frame boundary, the upstream gets a Terminate.
   */
  close(reason: EndReason, fields?: ErrorFields, message?: string): void {
    if (this.ended) return;
    // The FATAL goes after what was already relayed unless that ends inside a frame.
    const notify = fields !== undefined && !this.backend.passingThrough && !this.client.destroyed;
    this.end(reason, message ?? fields?.message);
    if (notify) this.client.end(errorResponse(fields));
    else this.client.destroy();
    if (!this.upstream.destroyed) {
      if (this.frontend.atBoundary) this.upstream.end(terminateFrame);
      else this.upstream.destroy();
    }
  }

  private end(reason: EndReason, message?: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const e of this.pending) if (e.timer !== undefined) clearTimeout(e.timer);
    if (this.cancelHold?.grace !== undefined) clearTimeout(this.cancelHold.grace);
    if (this.opts.reportUnfinished === true) this.reportUnfinished(reason, message);
    this.flushBytes();
    this.opts.onEnd(reason, message);
  }

  private reportUnfinished(reason: EndReason, message: string | undefined): void {
    const code = reason === 'revoked' || reason === 'shutdown' || reason === 'killed' ? '57P01' : '08006';
    for (const e of this.pending) {
      if (e.refusal !== undefined) {
        // Refused, its stand-in's error not back yet: denied all the same.
        this.report(e.text, e.index, '', 'denied', e.refusal, e.receivedAt, e.judgedNs, 0, e);
        continue;
      }
      if (e.kind !== EntryKind.Simple && e.kind !== EntryKind.Execute) continue;
      const problem = reason === 'client' ? undefined : { code, message: message ?? `the session ended (${reason}) before the statement completed` };
      this.report(e.text, e.index, '', problem === undefined ? 'ok' : 'error', problem, e.receivedAt, e.judgedNs, e.rows, e);
    }
  }
}

const terminateFrame = serialize.end();

/** The stand-in for a refused simple query. */
const refusedQueryFrame = serialize.query(REFUSED_SQL);

/**
 * A Parse of the stand-in as statement `name`, no parameter types. Built here: pg-protocol's
 * serialize.parse prints warnings to stderr for names over 63 characters, and the name is the client's.
 */
function refusedParseFrame(name: string): Buffer {
  const nameBytes = Buffer.byteLength(name);
  const len = 4 + nameBytes + 1 + Buffer.byteLength(REFUSED_SQL) + 1 + 2;
  const buf = Buffer.alloc(len + 1);
  buf[0] = FrontendCode.Parse;
  buf.writeUInt32BE(len, 1);
  buf.write(name, 5);
  buf.write(REFUSED_SQL, 5 + nameBytes + 1);
  return buf;
}

/** The error the client gets for a statement `limit` stopped, naming the rule and policy. */
function limitDescription(entry: Pending, limit: Limit): { code: string; message: string; rule: string; policy?: string } {
  return entry.tracker?.limitMessage?.(limit) ?? { code: '54000', message: `statement stopped by ${limit}`, rule: limit };
}

/** Class of an errored or refused statement: from the parser when loaded, else from its tag. */
function statementClassOf(text: string, index: number, tag: string): string {
  if (classifierReady()) {
    const classified = classifySql(text);
    return classified.statements[index]?.cls ?? classified.statements[0]?.cls ?? 'unknown';
  }
  return tag === '' ? 'unknown' : classFromCommandTag(tag, false);
}
