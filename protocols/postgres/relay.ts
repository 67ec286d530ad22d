// The hot path of one authenticated PostgreSQL session: relays frames between client and upstream,
// cut by type and length only, forwarding the received chunks themselves (no copies) unless a
// stage refuses a statement. Only the frames that carry statements (Query, Parse, Bind, Execute,
// Sync) and their outcomes (CommandComplete, ErrorResponse, ReadyForQuery, COPY responses) are
// looked into, and only as far as needed. Writes respect backpressure in both directions.
import type { Socket } from 'node:net';
import type { SessionPipeline } from '../../proxy/pipeline.js';
import type { EndReason, Verdict } from '../../proxy/stage.js';
import { errorResponse, readyForQuery, type ErrorFields } from './backend-messages.js';
import { decodeCommandTag, decodeErrorResponse } from './backend-decode.js';
import { classFromCommandTag, rowsFromCommandTag } from './command-tag.js';
import { FrameScanner, frameTypeSet, ScanStatus, type FrameHandler } from './frame-scanner.js';
import { decodeBindNames, decodeClose, decodeExecutePortal, decodeParse, decodeQuery } from './frontend-messages.js';
import { BackendCode, FrontendCode } from './message-codes.js';
import { classifierReady, classifySql } from './sql-classify.js';
import { pgErrors } from './wire-errors.js';

const FRONTEND_WANTED = frameTypeSet([
  FrontendCode.Query,
  FrontendCode.Parse,
  FrontendCode.Bind,
  FrontendCode.Execute,
  FrontendCode.Sync,
  FrontendCode.Describe,
  FrontendCode.Close,
  FrontendCode.FunctionCall,
  FrontendCode.Terminate,
]);
const BACKEND_WANTED = frameTypeSet([
  BackendCode.CommandComplete,
  BackendCode.ErrorResponse,
  BackendCode.ReadyForQuery,
  BackendCode.EmptyQueryResponse,
  BackendCode.PortalSuspended,
  BackendCode.CopyInResponse,
  BackendCode.CopyOutResponse,
]);
const BACKEND_COUNTED = frameTypeSet([BackendCode.DataRow]);

const enum EntryKind {
  /** A simple Query (or FunctionCall): ends at ReadyForQuery, may complete several commands. */
  Simple,
  /** An Execute of the extended protocol: ends at CommandComplete/EmptyQuery/PortalSuspended/Error. */
  Execute,
  /** A Sync: ends at ReadyForQuery. */
  Sync,
  /** A response sempipe made itself, sent when every earlier response has been relayed. */
  Synthetic,
}

/** One request awaiting its response, in the order the upstream will answer. */
interface Pending {
  kind: EntryKind;
  text: string;
  receivedAt: bigint;
  /** Index of the next command within a multi-statement simple query. */
  index: number;
  rows: number;
  copyIn: boolean;
  /** Synthetic entries: the response bytes, and whether a ReadyForQuery follows them. */
  response?: Buffer;
  readyForQuery?: boolean;
}

export interface RelayOptions {
  maxMessageSize: number;
  serviceFqn: string;
  onEnd(reason: EndReason, message?: string): void;
}

export class PgRelay {
  private readonly frontend: FrameScanner;
  private readonly backend: FrameScanner;
  private readonly pending: Pending[] = [];
  /** Prepared statement name -> query text; portal name -> query text. */
  private readonly statements = new Map<string, string>();
  private readonly portals = new Map<string, string>();
  private lastParseText = '';
  private txStatus: 'I' | 'T' | 'E' = 'I';
  /** While a refused Parse skips the rest of its pipeline segment, up to Sync. */
  private skippingToSync = false;
  /** Whether anything of the current extended-protocol segment was sent upstream. */
  private segmentForwarded = false;
  private upstreamBlocked = false;
  private clientBlocked = false;
  private awaitingVerdict = false;
  private ended = false;
  private clientTerminated = false;
  /** The upstream sent a FATAL error: the client already knows why the session ends. */
  private upstreamFatalSent = false;
  private inChunk: Buffer | undefined;
  private inFrom = 0;
  private outChunk: Buffer | undefined;
  private outFrom = 0;
  private bytesInPending = 0;
  private bytesOutPending = 0;
  bytesIn = 0;
  bytesOut = 0;
  statementCount = 0;

  private readonly frontendHandler: FrameHandler = {
    onFrame: (type, frame, end, assembled) => this.onClientFrame(type, frame, end, assembled),
    onHeldHeader: (header) => this.writeUpstream(Buffer.from(header)),
  };
  private readonly backendHandler: FrameHandler = {
    onFrame: (type, frame, end) => this.onServerFrame(type, frame, end),
    onFrameHeader: () => {
      const head = this.pending[0];
      if (head !== undefined) head.rows++;
    },
  };

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly pipeline: SessionPipeline,
    private readonly opts: RelayOptions,
  ) {
    this.frontend = new FrameScanner(FRONTEND_WANTED, opts.maxMessageSize);
    this.backend = new FrameScanner(BACKEND_WANTED, opts.maxMessageSize, BACKEND_COUNTED);
  }

  /** Starts relaying; `leftover` holds client bytes that arrived with the last auth message. */
  start(leftover: Buffer): void {
    const { client, upstream } = this;
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    upstream.on('data', (chunk: Buffer) => this.onUpstreamData(chunk));
    client.on('drain', () => {
      this.clientBlocked = false;
      upstream.resume();
    });
    upstream.on('drain', () => {
      this.upstreamBlocked = false;
      this.resumeClient();
    });
    client.on('close', () => this.close('client'));
    upstream.on('close', () => this.onUpstreamClosed());
    client.on('error', () => this.close('client'));
    upstream.on('error', () => this.onUpstreamClosed());
    if (leftover.length > 0) this.onClientData(leftover);
    client.resume();
    upstream.resume();
  }

  get transactionStatus(): string {
    return this.txStatus;
  }

  // ---- client to upstream ----------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    if (this.ended) return;
    this.bytesIn += chunk.length;
    this.bytesInPending += chunk.length;
    this.scanClientChunk(chunk, 0);
  }

  private scanClientChunk(chunk: Buffer, from: number): void {
    this.inChunk = chunk;
    this.inFrom = from;
    if (!this.frontend.scan(chunk, this.frontendHandler, from)) {
      if (this.frontend.status !== ScanStatus.Ok) return this.protocolFailure(this.frontend, 'client');
      return; // stopped for an asynchronous verdict, or the session ended
    }
    const until = this.frontend.heldFrom;
    if (until > this.inFrom) this.writeUpstream(this.inFrom === 0 && until === chunk.length ? chunk : chunk.subarray(this.inFrom, until));
    this.inChunk = undefined;
  }

  private onClientFrame(type: number, frame: Buffer, end: number, assembled: boolean): boolean {
    if (this.ended) return false;
    if (this.skippingToSync && type !== FrontendCode.Sync && type !== FrontendCode.Terminate) return this.drop(frame, end, assembled);
    switch (type) {
      case FrontendCode.Query: {
        const text = decodeQuery(frame);
        if (text === undefined) return this.malformed('Query');
        this.segmentForwarded = false;
        return this.judge(text, 'simple', frame, end, assembled, EntryKind.Simple);
      }
      case FrontendCode.Parse: {
        const parse = decodeParse(frame);
        if (parse === undefined) return this.malformed('Parse');
        this.lastParseText = parse.query;
        return this.judge(parse.query, 'parse', frame, end, assembled, undefined, parse.name);
      }
      case FrontendCode.Bind: {
        const names = decodeBindNames(frame);
        if (names === undefined) return this.malformed('Bind');
        this.portals.set(names.portal, this.statements.get(names.statement) ?? '');
        break;
      }
      case FrontendCode.Execute: {
        const portal = decodeExecutePortal(frame);
        if (portal === undefined) return this.malformed('Execute');
        this.push(EntryKind.Execute, this.portals.get(portal) ?? '');
        break;
      }
      case FrontendCode.Sync:
        if (this.skippingToSync) {
          this.skippingToSync = false;
          if (!this.segmentForwarded) {
            this.drop(frame, end, assembled);
            this.pushSynthetic(readyForQueryPlaceholder, true);
            return true;
          }
        }
        this.segmentForwarded = false;
        this.push(EntryKind.Sync, '');
        break;
      case FrontendCode.Close: {
        const target = decodeClose(frame);
        if (target === undefined) return this.malformed('Close');
        (target.target === 0x53 ? this.statements : this.portals).delete(target.name);
        break;
      }
      case FrontendCode.FunctionCall:
        this.push(EntryKind.Simple, '<function call>');
        break;
      case FrontendCode.Terminate:
        this.clientTerminated = true;
        break;
    }
    if (type !== FrontendCode.Sync) this.segmentForwarded = true;
    return this.forwardFrame(frame, end, assembled);
  }

  /** Runs the statement stages and applies the verdict to the frame that carried the statement. */
  private judge(text: string, kind: 'simple' | 'parse', frame: Buffer, end: number, assembled: boolean, entry: EntryKind | undefined, name = ''): boolean {
    const receivedAt = process.hrtime.bigint();
    const verdict = this.pipeline.judgesStatements ? this.pipeline.statement({ text, kind, receivedAt }) : undefined;
    if (verdict instanceof Promise) {
      // Forward what came before this frame, hold the rest of the chunk until the verdict settles.
      const chunk = this.inChunk!;
      const start = assembled ? -1 : end - frame.length;
      if (start > this.inFrom) this.writeUpstream(chunk.subarray(this.inFrom, start));
      this.inFrom = end;
      this.awaitingVerdict = true;
      this.client.pause();
      verdict.then(
        (v) => this.resumeAfterVerdict(v, text, kind, frame, entry, name, receivedAt, chunk, end),
        () => this.close('error'),
      );
      return false;
    }
    if (verdict === undefined || verdict.action === 'forward') {
      this.accept(text, kind, entry, name, receivedAt);
      return this.forwardFrame(frame, end, assembled);
    }
    this.refuse(verdict, text, receivedAt, kind);
    return this.drop(frame, end, assembled);
  }

  private resumeAfterVerdict(v: Verdict, text: string, kind: 'simple' | 'parse', frame: Buffer, entry: EntryKind | undefined, name: string, receivedAt: bigint, chunk: Buffer, end: number): void {
    this.awaitingVerdict = false;
    if (this.ended) return;
    if (v.action === 'forward') {
      this.accept(text, kind, entry, name, receivedAt);
      this.segmentForwarded = true;
      this.writeUpstream(frame);
    } else {
      this.refuse(v, text, receivedAt, kind);
    }
    if (this.ended) return;
    this.resumeClient();
    if (end < chunk.length) this.scanClientChunk(chunk, end);
  }

  private accept(text: string, kind: 'simple' | 'parse', entry: EntryKind | undefined, name: string, receivedAt: bigint): void {
    if (kind === 'parse') {
      this.statements.set(name, text);
      this.segmentForwarded = true;
      return;
    }
    this.push(entry!, text, receivedAt);
  }

  private refuse(v: Exclude<Verdict, { action: 'forward' }>, text: string, receivedAt: bigint, kind: 'simple' | 'parse'): void {
    const fields: ErrorFields = { severity: v.action === 'close' ? 'FATAL' : 'ERROR', code: v.code, message: v.message };
    this.pipeline.complete({
      text,
      statementClass: statementClassOf(text, 0, ''),
      tag: '',
      rows: 0,
      outcome: 'denied',
      code: v.code,
      message: v.message,
      durationNs: process.hrtime.bigint() - receivedAt,
    });
    this.statementCount++;
    if (v.action === 'close') {
      this.close('error', fields);
      return;
    }
    if (kind === 'parse') {
      this.skippingToSync = true;
      this.pushSynthetic(errorResponse(fields), false);
    } else {
      this.pushSynthetic(errorResponse(fields), true);
    }
  }

  /** Leaves a frame out of what goes upstream; the chunk's bytes before it are forwarded first. */
  private drop(frame: Buffer, end: number, assembled: boolean): boolean {
    if (!assembled) {
      const start = end - frame.length;
      if (start > this.inFrom) this.writeUpstream(this.inChunk!.subarray(this.inFrom, start));
    }
    this.inFrom = end;
    return true;
  }

  private forwardFrame(frame: Buffer, end: number, assembled: boolean): boolean {
    if (assembled) {
      this.writeUpstream(frame);
      this.inFrom = end;
    }
    return true;
  }

  private push(kind: EntryKind, text: string, receivedAt: bigint = process.hrtime.bigint()): void {
    this.pending.push({ kind, text, receivedAt, index: 0, rows: 0, copyIn: false });
  }

  private pushSynthetic(response: Buffer, withReadyForQuery: boolean): void {
    this.pending.push({ kind: EntryKind.Synthetic, text: '', receivedAt: 0n, index: 0, rows: 0, copyIn: false, response, readyForQuery: withReadyForQuery });
    if (this.pending.length === 1) this.emitSynthetics();
  }

  private writeUpstream(buf: Buffer): void {
    if (!this.upstream.write(buf) && !this.upstreamBlocked) {
      this.upstreamBlocked = true;
      this.client.pause();
    }
  }

  private resumeClient(): void {
    if (!this.upstreamBlocked && !this.awaitingVerdict && !this.ended) this.client.resume();
  }

  // ---- upstream to client ----------------------------------------------------------------------

  private onUpstreamData(chunk: Buffer): void {
    if (this.ended) return;
    this.bytesOut += chunk.length;
    this.bytesOutPending += chunk.length;
    this.outChunk = chunk;
    this.outFrom = 0;
    if (!this.backend.scan(chunk, this.backendHandler)) {
      if (this.backend.status !== ScanStatus.Ok) this.protocolFailure(this.backend, 'upstream');
      return;
    }
    if (this.outFrom < chunk.length) this.writeClient(this.outFrom === 0 ? chunk : chunk.subarray(this.outFrom));
    this.outChunk = undefined;
  }

  private onServerFrame(type: number, frame: Buffer, end: number): boolean {
    const head = this.pending[0];
    switch (type) {
      case BackendCode.CommandComplete:
        if (head === undefined) break;
        if (head.kind === EntryKind.Execute) {
          this.pending.shift();
          this.completeOk(head, decodeCommandTag(frame));
          this.emitSyntheticsAt(end);
        } else if (head.kind === EntryKind.Simple) {
          this.completeOk(head, decodeCommandTag(frame));
          head.index++;
          head.rows = 0;
          head.copyIn = false;
          head.receivedAt = process.hrtime.bigint();
        }
        break;
      case BackendCode.PortalSuspended:
        if (head?.kind === EntryKind.Execute) {
          this.pending.shift();
          this.completeOk(head, '');
          this.emitSyntheticsAt(end);
        }
        break;
      case BackendCode.EmptyQueryResponse:
        if (head?.kind === EntryKind.Execute) {
          this.pending.shift();
          this.emitSyntheticsAt(end);
        }
        break;
      case BackendCode.ErrorResponse:
        this.onServerError(head, decodeErrorResponse(frame), end);
        break;
      case BackendCode.ReadyForQuery:
        this.txStatus = frame.length > 5 ? (String.fromCharCode(frame[5]) as 'I' | 'T' | 'E') : 'I';
        this.onReadyForQuery(end);
        break;
      case BackendCode.CopyInResponse:
        if (head !== undefined) head.copyIn = true;
        break;
    }
    return true;
  }

  private onServerError(head: Pending | undefined, err: { severity: string; code: string; message: string }, end: number): void {
    if (err.severity === 'FATAL' || err.severity === 'PANIC') this.upstreamFatalSent = true;
    if (head === undefined) return;
    let text: string;
    if (head.kind === EntryKind.Execute) {
      this.pending.shift();
      text = head.text;
    } else if (head.kind === EntryKind.Simple) {
      text = head.text;
    } else {
      // Parse or Bind failed before any Execute was queued.
      text = this.lastParseText;
    }
    this.completion(head, text, '', 'error', err.code, err.message);
    head.index++;
    if (head.kind === EntryKind.Execute) this.emitSyntheticsAt(end);
  }

  private onReadyForQuery(end: number): void {
    // Everything up to the first Simple or Sync entry is answered now; Executes still queued before
    // it were skipped by the server after an error.
    while (this.pending.length > 0) {
      const e = this.pending.shift()!;
      if (e.kind === EntryKind.Simple || e.kind === EntryKind.Sync) break;
    }
    this.pipeline.bytes(this.bytesInPending, this.bytesOutPending);
    this.bytesInPending = 0;
    this.bytesOutPending = 0;
    this.emitSyntheticsAt(end);
  }

  private completeOk(head: Pending, tag: string): void {
    this.completion(head, head.text, tag, 'ok');
  }

  private completion(head: Pending, text: string, tag: string, outcome: 'ok' | 'error', code?: string, message?: string): void {
    const rowsFromTag = tag === '' ? 0 : rowsFromCommandTag(tag);
    this.statementCount++;
    this.pipeline.complete({
      text,
      statementClass: outcome === 'ok' && tag !== '' ? classFromCommandTag(tag, head.copyIn) : statementClassOf(text, head.index, tag),
      tag,
      rows: rowsFromTag > 0 ? rowsFromTag : head.rows,
      outcome,
      code,
      message,
      durationNs: process.hrtime.bigint() - head.receivedAt,
    });
  }

  /** Sends the synthetic responses now at the head of the queue, cutting the current chunk at `end`. */
  private emitSyntheticsAt(end: number): void {
    if (this.pending[0]?.kind !== EntryKind.Synthetic) return;
    const chunk = this.outChunk;
    if (chunk !== undefined && end > this.outFrom) {
      this.writeClient(chunk.subarray(this.outFrom, end));
      this.outFrom = end;
    }
    this.emitSynthetics();
  }

  private emitSynthetics(): void {
    while (this.pending[0]?.kind === EntryKind.Synthetic) {
      const e = this.pending.shift()!;
      if (e.response !== readyForQueryPlaceholder) this.writeClient(e.response!);
      if (e.readyForQuery) this.writeClient(readyForQuery(this.txStatus));
    }
  }

  private writeClient(buf: Buffer): void {
    if (!this.client.write(buf) && !this.clientBlocked) {
      this.clientBlocked = true;
      this.upstream.pause();
    }
  }

  // ---- ends --------------------------------------------------------------------------------------

  private malformed(what: string): false {
    this.close('error', pgErrors.protocolViolation(`invalid ${what} message`));
    return false;
  }

  private protocolFailure(scanner: FrameScanner, side: 'client' | 'upstream'): void {
    const fields =
      scanner.status === ScanStatus.TooLarge
        ? pgErrors.messageTooLarge(scanner.badLength + 1, this.opts.maxMessageSize)
        : pgErrors.invalidMessageLength(scanner.badType);
    if (side === 'upstream') {
      // The client's stream may be mid-frame: only a fresh frame boundary can carry our error.
      this.close('upstream', this.backend.atBoundary ? fields : undefined, fields.message);
      return;
    }
    this.close('error', fields);
  }

  private onUpstreamClosed(): void {
    if (this.ended) return;
    if (this.clientTerminated || this.upstreamFatalSent) {
      this.end(this.clientTerminated ? 'client' : 'upstream');
      if (!this.client.destroyed) this.client.end();
      return;
    }
    const fields = this.backend.atBoundary ? pgErrors.upstreamLost(this.opts.serviceFqn) : undefined;
    this.close('upstream', fields, 'upstream closed the connection');
  }

  /**
   * Ends the session from sempipe's side: the client gets `fields` as a FATAL ErrorResponse when
   * its stream is at a frame boundary, the upstream gets a Terminate.
   */
  close(reason: EndReason, fields?: ErrorFields, message?: string): void {
    if (this.ended) return;
    const notify = fields !== undefined && this.backend.atBoundary && !this.client.destroyed;
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
    this.pipeline.bytes(this.bytesInPending, this.bytesOutPending);
    this.bytesInPending = 0;
    this.bytesOutPending = 0;
    this.opts.onEnd(reason, message);
  }
}

const terminateFrame = Buffer.from([FrontendCode.Terminate, 0, 0, 0, 4]);
/** Marks a synthetic entry that carries only a ReadyForQuery. */
const readyForQueryPlaceholder = Buffer.alloc(0);

/** Class of an errored or refused statement: from the parser when loaded, else from its tag. */
function statementClassOf(text: string, index: number, tag: string): string {
  if (classifierReady()) {
    const classified = classifySql(text);
    return classified.statements[index]?.cls ?? classified.statements[0]?.cls ?? 'unknown';
  }
  return tag === '' ? 'unknown' : classFromCommandTag(tag, false);
}
