// The command phase of one authenticated MySQL session. Client commands are read whole (they are
// small, and a statement must be judged before it goes upstream) and forwarded as the packets they
// came in; the server's responses are relayed as the chunks they arrive in, scanned only for
// packet boundaries, the first packet of each response and the packets that may end a result
// (OK/EOF/ERR), and rows are counted by their headers. Only while a limit has stopped a statement
// are server packets forwarded one by one, so that the rest of the result can be dropped and its
// end replaced by sempipe's error.
// A refused statement never goes upstream: sempipe answers it with an ERR packet of its own
// (1142, SQLSTATE 42000, naming the rule), in order with the server's answers, and the session
// stays usable. https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html
import type { Socket } from 'node:net';
import type { ChunkSource } from '../../proxy/chunk-reader.js';
import type { SessionPipeline } from '../../proxy/pipeline.js';
import { startRelay } from '../../proxy/relay-start.js';
import type { EndReason, StatementTracker, Verdict } from '../../proxy/stage.js';
import { Cap, Command, Header, ServerStatus } from './constants.js';
import { affectedRowsOfOk, packet, parseErr, readLenenc, statusOfTerminator } from './messages.js';
import { framePackets, MAX_PACKET_PAYLOAD, MessageAssembler, PacketScanner, type PacketRef } from './packet-scanner.js';
import { classifyMysql, parseKill } from './sql-classify.js';
import { errorPacket, fromVerdict, mysqlErrors, type MysqlError } from './wire-errors.js';

const enum Kind {
  /** COM_QUERY / COM_STMT_EXECUTE: OK, ERR or result sets, possibly several. */
  Result,
  /** COM_STMT_PREPARE: OK_Prepare with parameter and column definitions, or ERR. */
  Prepare,
  /** COM_FIELD_LIST: column definitions up to EOF, or ERR. */
  FieldList,
  /** One packet: OK/ERR (ping, init db, reset, set option) or the COM_STATISTICS string. */
  Single,
  /** sempipe's own answer, sent when every earlier response has been relayed. */
  Local,
}

const enum Phase {
  First,
  Columns,
  ColumnsEof,
  Rows,
  PrepParams,
  PrepParamsEof,
  PrepColumns,
  PrepColumnsEof,
  UntilEof,
}

type Limit = 'max_rows' | 'statement_timeout';

interface Pending {
  kind: Kind;
  text: string;
  receivedAt: bigint;
  judgedNs: bigint;
  tracker: StatementTracker | undefined;
  /** Statement index within a multi-statement text. */
  index: number;
  rows: number;
  /** For a prepare: whether its statement id is to be recorded. */
  prepareText: string | undefined;
  local: Buffer | undefined;
  limited: Limit | undefined;
  timer: NodeJS.Timeout | undefined;
}

export interface MysqlRelayOptions {
  maxMessageSize: number;
  serviceFqn: string;
  /** The name clients use for the binding's database, and the upstream's own name for it. */
  database: string;
  upstreamDatabase: string;
  capabilities: number;
  /** Kills the running statement upstream (KILL QUERY on a connection of its own). */
  killQuery(): Promise<void>;
  /** KILL [QUERY] <id> from the client: sempipe's id of another session; resolves false when it is not one of this binding's. */
  killSession(id: number, queryOnly: boolean): Promise<boolean>;
  onEnd(reason: EndReason, message?: string): void;
}

const NO_SEQ = -1;

export class MysqlRelay {
  private readonly clientScanner: PacketScanner;
  private readonly serverScanner: PacketScanner;
  private readonly assembler = new MessageAssembler();
  private readonly pending: Pending[] = [];
  /** Prepared statement texts by the server's statement id (ids pass through unchanged). */
  private readonly statements = new Map<number, string>();
  private readonly deprecateEof: boolean;
  private phase = Phase.First;
  private remaining = 0;
  private prepareColumns = 0;
  /** The next server packet continues the previous one (a row or column over 16 MiB). */
  private serverContinues = false;
  /** Client messages waiting for an asynchronous verdict on an earlier one. */
  private held: Buffer[] | undefined;
  private awaitingVerdict = false;
  private upstreamBlocked = false;
  private ended = false;
  private clientQuit = false;
  /** The current server chunk and the offset up to which it has been forwarded (or dropped). */
  private outChunk: Buffer | undefined;
  private outFrom = 0;
  /** Rows past a max_rows limit and the server's end of a stopped statement are dropped. */
  private dropping = false;
  /** Sequence id of the last server packet relayed to the client. */
  private lastSeqToClient = 0;
  /** The packet the last chunk ended in was held back (careful mode), not forwarded in part. */
  private partialHeld = false;
  private messageSeq = NO_SEQ;
  private bytesInPending = 0;
  private bytesOutPending = 0;
  bytesIn = 0;
  bytesOut = 0;
  statementCount = 0;
  private readonly client: Socket;
  private readonly upstream: Socket;

  constructor(
    private readonly clientSource: ChunkSource,
    private readonly upstreamSource: ChunkSource,
    private readonly pipeline: SessionPipeline,
    private readonly opts: MysqlRelayOptions,
  ) {
    this.client = clientSource.socket;
    this.upstream = upstreamSource.socket;
    this.deprecateEof = (opts.capabilities & Cap.DeprecateEof) !== 0;
    this.clientScanner = new PacketScanner(opts.maxMessageSize, { wants: () => true, onPacket: (p) => this.onClientPacket(p) });
    this.serverScanner = new PacketScanner(opts.maxMessageSize, {
      wants: (length, firstByte) => this.wantsServerPacket(length, firstByte),
      onPacket: (p) => this.onServerPacket(p),
    });
  }

  start(): void {
    startRelay(this.clientSource, this.upstreamSource, {
      onClientData: (chunk, length) => this.onClientData(chunk, length),
      onUpstreamData: (chunk, length) => this.onUpstreamData(chunk, length),
      onUpstreamDrain: () => {
        this.upstreamBlocked = false;
        this.resumeClient();
      },
      onClientGone: () => this.close('client'),
      onUpstreamGone: () => this.onUpstreamClosed(),
    });
  }

  // ---- client to upstream ----------------------------------------------------------------------

  private onClientData(chunk: Buffer, length: number): void {
    if (this.ended) return;
    this.bytesIn += length;
    this.bytesInPending += length;
    if (!this.clientScanner.scan(chunk, 0, length)) {
      this.close('error', mysqlErrors.packetTooLarge(this.opts.maxMessageSize));
    }
  }

  private onClientPacket(p: PacketRef): void {
    if (this.ended) return;
    // A command starts a new exchange with sequence id 0; its continuation packets count up from there.
    const expected = this.messageSeq === NO_SEQ ? 0 : (this.messageSeq + 1) & 0xff;
    if (p.seq !== expected) {
      this.close('error', mysqlErrors.packetsOutOfOrder());
      return;
    }
    const message = this.assembler.add(p);
    if (message === undefined) {
      this.messageSeq = p.seq;
      return;
    }
    this.messageSeq = NO_SEQ;
    if (this.held !== undefined) {
      this.held.push(Buffer.from(message));
      return;
    }
    this.onCommand(message);
  }

  private onCommand(m: Buffer): void {
    if (m.length === 0) {
      this.close('error', mysqlErrors.handshakeError());
      return;
    }
    const receivedAt = process.hrtime.bigint();
    switch (m[0]) {
      case Command.Query: {
        const text = m.toString('utf8', 1);
        const kill = parseKill(text);
        if (kill !== undefined) return this.kill(text, kill.id, kill.queryOnly, receivedAt);
        return this.judge(m, text, 'simple', Kind.Result, receivedAt);
      }
      case Command.StmtPrepare:
        return this.judge(m, m.toString('utf8', 1), 'parse', Kind.Prepare, receivedAt);
      case Command.StmtExecute: {
        const text = m.length >= 5 ? (this.statements.get(m.readUInt32LE(1)) ?? '') : '';
        return this.judge(m, text, 'bind', Kind.Result, receivedAt);
      }
      case Command.StmtClose:
        if (m.length >= 5) this.statements.delete(m.readUInt32LE(1));
        return this.forward(m);
      case Command.StmtSendLongData:
        return this.forward(m);
      case Command.Quit:
        this.clientQuit = true;
        return this.forward(m);
      case Command.InitDb: {
        const name = m.toString('utf8', 1);
        if (name !== this.opts.database) return this.answerLocally(errorPacket(mysqlErrors.databaseDenied(this.pipeline.session.user, 'sempipe', name), 1));
        this.push(Kind.Single, '', receivedAt, 0n, undefined);
        return this.forward(Buffer.concat([Buffer.from([Command.InitDb]), Buffer.from(this.opts.upstreamDatabase)]));
      }
      case Command.Ping:
      case Command.StmtReset:
      case Command.SetOption:
      case Command.ResetConnection:
      case Command.Statistics:
        this.push(Kind.Single, '', receivedAt, 0n, undefined);
        return this.forward(m);
      case Command.FieldList:
        this.push(Kind.FieldList, '', receivedAt, 0n, undefined);
        return this.forward(m);
      case Command.ProcessKill:
        return this.kill('KILL', m.length >= 5 ? m.readUInt32LE(1) : 0, false, receivedAt);
      default:
        return this.answerLocally(errorPacket(mysqlErrors.unknownCommand(m[0]!), 1));
    }
  }

  private judge(m: Buffer, text: string, kind: 'simple' | 'parse' | 'bind', entry: Kind, receivedAt: bigint): void {
    if (!this.pipeline.judgesStatements) return this.accept(m, text, entry, receivedAt, 0n, undefined);
    const verdict = this.pipeline.statement({ text, kind, receivedAt });
    if (verdict instanceof Promise) {
      this.held = [];
      this.awaitingVerdict = true;
      this.client.pause();
      const copy = Buffer.from(m);
      verdict.then(
        (v) => this.afterVerdict(v, copy, text, entry, receivedAt),
        () => this.close('error', mysqlErrors.upstream('statement verdict failed')),
      );
      return;
    }
    this.apply(verdict, m, text, entry, receivedAt);
  }

  private afterVerdict(v: Verdict, m: Buffer, text: string, entry: Kind, receivedAt: bigint): void {
    this.awaitingVerdict = false;
    if (this.ended) return;
    this.apply(v, m, text, entry, receivedAt);
    const held = this.held ?? [];
    this.held = undefined;
    for (let i = 0; i < held.length; i++) {
      if (this.awaitingVerdict) {
        // An asynchronous verdict again: the rest waits behind it.
        this.held!.push(...held.slice(i));
        return;
      }
      this.onCommand(held[i]!);
    }
    this.resumeClient();
  }

  private apply(v: Verdict, m: Buffer, text: string, entry: Kind, receivedAt: bigint): void {
    const judgedNs = process.hrtime.bigint() - receivedAt;
    if (v.action === 'forward') return this.accept(m, text, entry, receivedAt, judgedNs, v.tracker);
    const err = fromVerdict(v.code, v.message);
    this.report(text, 0, 0, 'denied', { ...v, code: err.sqlState }, receivedAt, judgedNs, undefined);
    if (v.action === 'close') {
      this.close('error', err);
      return;
    }
    this.answerLocally(errorPacket(err, 1));
  }

  /** A prepare completes (and is reported) only when it fails, as a PostgreSQL Parse; each execute is a statement. */
  private accept(m: Buffer, text: string, entry: Kind, receivedAt: bigint, judgedNs: bigint, tracker: StatementTracker | undefined): void {
    const e = this.push(entry, text, receivedAt, judgedNs, tracker);
    if (entry === Kind.Prepare) e.prepareText = text;
    this.forward(m);
  }

  /** `KILL [QUERY] <id>` names sempipe's connection id; only sessions of the same binding may be killed. */
  private kill(text: string, id: number, queryOnly: boolean, receivedAt: bigint): void {
    const entry = this.push(Kind.Local, text, receivedAt, 0n, undefined);
    this.opts.killSession(id, queryOnly).then(
      (found) => {
        entry.local = found ? packet(Buffer.from([Header.Ok, 0, 0, 2, 0, 0, 0]), 1) : errorPacket(mysqlErrors.killDenied(id), 1);
        this.report(text, 0, 0, found ? 'ok' : 'error', found ? undefined : { code: 'HY000', message: mysqlErrors.killDenied(id).message }, receivedAt, 0n, undefined);
        this.flushLocal();
      },
      () => {
        entry.local = errorPacket(mysqlErrors.killDenied(id), 1);
        this.flushLocal();
      },
    );
  }

  private answerLocally(reply: Buffer): void {
    const e = this.push(Kind.Local, '', process.hrtime.bigint(), 0n, undefined);
    e.local = reply;
    this.flushLocal();
  }

  /** Sends sempipe's own answers that are now at the head of the queue. */
  private flushLocal(): void {
    while (this.pending.length > 0 && this.pending[0]!.kind === Kind.Local && this.pending[0]!.local !== undefined && !this.ended) {
      const e = this.pending.shift()!;
      this.writeClient(e.local!);
    }
  }

  /** Forwards a whole client message, re-framed from sequence id 0 (as it came, unless rewritten). */
  private forward(m: Buffer): void {
    const framed = m.length < MAX_PACKET_PAYLOAD ? packet(m, 0) : framePackets(m, 0);
    const flushed = this.upstreamSource.write(framed, 0, framed.length);
    if (!flushed && !this.upstreamBlocked) {
      this.upstreamBlocked = true;
      this.client.pause();
    }
  }

  private push(kind: Kind, text: string, receivedAt: bigint, judgedNs: bigint, tracker: StatementTracker | undefined): Pending {
    const e: Pending = { kind, text, receivedAt, judgedNs, tracker, index: 0, rows: 0, prepareText: undefined, local: undefined, limited: undefined, timer: undefined };
    if (tracker?.timeoutMs !== undefined) e.timer = setTimeout(() => this.limitReached(e, 'statement_timeout'), tracker.timeoutMs);
    this.pending.push(e);
    return e;
  }

  private resumeClient(): void {
    if (!this.upstreamBlocked && !this.awaitingVerdict && !this.ended) this.client.resume();
  }

  // ---- upstream to client ----------------------------------------------------------------------

  /** The current head entry waits on the server (sempipe's own answers do not). */
  private head(): Pending | undefined {
    const h = this.pending[0];
    return h === undefined || h.kind === Kind.Local ? undefined : h;
  }

  private wantsServerPacket(_length: number, firstByte: number): boolean {
    if (this.serverContinues) return false;
    if (this.head()?.limited !== undefined) return true;
    switch (this.phase) {
      case Phase.Rows:
      case Phase.Columns:
      case Phase.PrepParams:
      case Phase.PrepColumns:
      case Phase.UntilEof:
        return firstByte >= Header.Eof;
      default:
        return true;
    }
  }

  private onUpstreamData(chunk: Buffer, length: number): void {
    if (this.ended) return;
    this.bytesOut += length;
    this.bytesOutPending += length;
    this.outChunk = chunk;
    this.outFrom = 0;
    if (!this.serverScanner.scan(chunk, 0, length)) {
      this.close('upstream', mysqlErrors.upstream(`upstream ${this.opts.serviceFqn} sent a packet over the ${this.opts.maxMessageSize}-byte limit`));
      return;
    }
    if (this.ended) return;
    // While a limit holds a statement, a packet not yet complete is forwarded (or dropped) once it is.
    const careful = this.careful();
    const end = careful ? this.outFrom : length;
    if (end > this.outFrom && !this.dropping) this.writeClient(chunk, this.outFrom, end);
    this.partialHeld = careful && !this.serverScanner.idle;
    this.outChunk = undefined;
  }

  /** Packets are forwarded one by one while a limit stopped the head statement. */
  private careful(): boolean {
    return this.dropping || this.head()?.limited !== undefined;
  }

  private onServerPacket(p: PacketRef): void {
    if (this.ended) return;
    const continuation = this.serverContinues;
    this.serverContinues = p.continues;
    const head = this.head();
    if (head === undefined) {
      // Nothing asked for this (e.g. the server's error before it closes an idle connection).
      this.passServerPacket(p);
      return;
    }
    if (continuation) {
      this.passServerPacket(p);
      return;
    }
    switch (this.phase) {
      case Phase.First:
        this.onFirstPacket(head, p);
        break;
      case Phase.Columns:
        if (--this.remaining === 0) this.phase = this.deprecateEof ? Phase.Rows : Phase.ColumnsEof;
        this.passServerPacket(p);
        break;
      case Phase.ColumnsEof:
        this.phase = Phase.Rows;
        this.passServerPacket(p);
        break;
      case Phase.Rows:
        this.onRowsPacket(head, p);
        break;
      case Phase.PrepParams:
        if (--this.remaining === 0) this.afterPrepareParams(head);
        this.passServerPacket(p);
        break;
      case Phase.PrepParamsEof:
        this.afterPrepareParamsEof(head);
        this.passServerPacket(p);
        break;
      case Phase.PrepColumns:
        if (--this.remaining === 0) {
          if (this.deprecateEof) this.complete(head);
          else this.phase = Phase.PrepColumnsEof;
        }
        this.passServerPacket(p);
        break;
      case Phase.PrepColumnsEof:
        this.passServerPacket(p);
        this.complete(head);
        break;
      case Phase.UntilEof:
        this.passServerPacket(p);
        if (p.firstByte === Header.Eof || p.firstByte === Header.Err) this.complete(head);
        break;
    }
  }

  private onFirstPacket(head: Pending, p: PacketRef): void {
    const payload = p.payload ?? Buffer.alloc(0);
    if (head.kind === Kind.Single) {
      if (p.firstByte === Header.Err) this.reportError(head, payload);
      this.passServerPacket(p);
      this.complete(head);
      return;
    }
    if (head.kind === Kind.FieldList) {
      this.passServerPacket(p);
      if (p.firstByte === Header.Eof || p.firstByte === Header.Err) this.complete(head);
      else this.phase = Phase.UntilEof;
      return;
    }
    if (p.firstByte === Header.Err) {
      if (head.limited !== undefined) return this.replaceWithLimitError(head, p);
      this.reportError(head, payload);
      this.passServerPacket(p);
      this.complete(head);
      return;
    }
    if (head.kind === Kind.Prepare) {
      this.passServerPacket(p);
      if (p.firstByte !== Header.Ok || payload.length < 9) {
        this.complete(head);
        return;
      }
      this.statements.set(payload.readUInt32LE(1), head.prepareText ?? '');
      this.prepareColumns = payload.readUInt16LE(5);
      this.remaining = payload.readUInt16LE(7);
      if (this.remaining > 0) this.phase = Phase.PrepParams;
      else this.afterPrepareParamsEof(head);
      return;
    }
    if (p.firstByte === Header.Ok) {
      this.passServerPacket(p);
      this.endOfResult(head, statusOfTerminator(payload), affectedRowsOfOk(payload));
      return;
    }
    const count = readLenenc(payload, 0);
    this.passServerPacket(p);
    if (count === undefined || count.value === 0) {
      this.complete(head);
      return;
    }
    this.remaining = count.value;
    this.phase = Phase.Columns;
  }

  private onRowsPacket(head: Pending, p: PacketRef): void {
    const terminator = (p.firstByte === Header.Eof && p.length < (this.deprecateEof ? MAX_PACKET_PAYLOAD : 9)) || p.firstByte === Header.Err;
    if (!terminator) {
      head.rows++;
      if (this.dropping) {
        this.dropServerPacket(p);
        return;
      }
      this.passServerPacket(p);
      const max = head.tracker?.maxRows;
      if (max !== undefined && head.rows >= max && head.limited === undefined) {
        // The rows so far go to the client; from the next packet on the result is dropped.
        if (p.endInChunk > this.outFrom) this.writeClient(this.outChunk!, this.outFrom, p.endInChunk);
        this.outFrom = p.endInChunk;
        this.dropping = true;
        this.limitReached(head, 'max_rows');
      }
      return;
    }
    if (head.limited !== undefined) return this.replaceWithLimitError(head, p);
    const payload = p.payload ?? Buffer.alloc(0);
    this.passServerPacket(p);
    if (p.firstByte === Header.Err) {
      this.reportError(head, payload);
      this.complete(head);
      return;
    }
    this.endOfResult(head, statusOfTerminator(payload), head.rows);
  }

  /** One result ended (OK, or the end of its rows): the statement completes; more may follow. */
  private endOfResult(head: Pending, status: number, rows: number): void {
    this.report(head.text, head.index, rows, 'ok', undefined, head.receivedAt, head.judgedNs, head);
    if (status & ServerStatus.MoreResultsExist) {
      head.index++;
      head.rows = 0;
      head.receivedAt = process.hrtime.bigint();
      this.phase = Phase.First;
      return;
    }
    this.complete(head);
  }

  private afterPrepareParams(head: Pending): void {
    if (this.deprecateEof) this.afterPrepareParamsEof(head);
    else this.phase = Phase.PrepParamsEof;
  }

  private afterPrepareParamsEof(head: Pending): void {
    this.remaining = this.prepareColumns;
    if (this.remaining > 0) this.phase = Phase.PrepColumns;
    else this.complete(head);
  }

  private complete(head: Pending): void {
    if (head.timer !== undefined) clearTimeout(head.timer);
    if (this.pending[0] === head) this.pending.shift();
    this.phase = Phase.First;
    this.dropping = false;
    this.pipeline.bytes(this.bytesInPending, this.bytesOutPending);
    this.bytesInPending = 0;
    this.bytesOutPending = 0;
    this.flushLocal();
  }

  private reportError(head: Pending, payload: Buffer): void {
    const err = parseErr(payload);
    this.report(head.text, head.index, head.rows, 'error', { code: err?.sqlState ?? 'HY000', message: err?.message ?? 'error' }, head.receivedAt, head.judgedNs, head);
  }

  /** A statement stopped by a limit ends with sempipe's error in place of the server's end. */
  private replaceWithLimitError(head: Pending, p: PacketRef): void {
    const limit = head.limited!;
    const described = head.tracker?.limitMessage?.(limit) ?? { code: '54000', message: `statement stopped by ${limit}`, rule: limit };
    const err = fromVerdict(described.code, described.message);
    this.report(head.text, head.index, head.rows, 'denied', { ...described, code: err.sqlState }, head.receivedAt, head.judgedNs, head);
    this.dropServerPacket(p);
    // The client counts sequence ids over what it received, not over the rows dropped.
    this.writeClient(errorPacket(err, (this.lastSeqToClient + 1) & 0xff));
    this.complete(head);
  }

  /** Forwards a packet in careful mode (in normal mode the whole chunk goes at the end of the scan). */
  private passServerPacket(p: PacketRef): void {
    this.lastSeqToClient = p.seq;
    if (!this.careful()) return;
    if (p.startInChunk < 0 && this.partialHeld && p.payload !== undefined) {
      // Assembled from several chunks whose bytes were held back: sent whole now.
      this.writeClient(packet(p.payload, p.seq));
    } else if (p.endInChunk > this.outFrom) {
      // Within this chunk, or the rest of a packet whose beginning was already forwarded.
      this.writeClient(this.outChunk!, this.outFrom, p.endInChunk);
    }
    this.outFrom = p.endInChunk;
  }

  private dropServerPacket(p: PacketRef): void {
    if (p.startInChunk > this.outFrom) this.writeClient(this.outChunk!, this.outFrom, p.startInChunk);
    this.outFrom = p.endInChunk;
  }

  private limitReached(entry: Pending, limit: Limit): void {
    if (entry.limited !== undefined || this.ended || !this.pending.includes(entry)) return;
    entry.limited = limit;
    this.opts.killQuery().catch(() => {});
  }

  private report(
    text: string,
    index: number,
    rows: number,
    outcome: 'ok' | 'error' | 'denied',
    problem: { code: string; message: string; rule?: string; policy?: string } | undefined,
    receivedAt: bigint,
    judgedNs: bigint,
    entry: Pending | undefined,
  ): void {
    const now = process.hrtime.bigint();
    this.statementCount++;
    const classified = classifyMysql(text).statements;
    const completion = {
      text,
      statementClass: classified[index]?.cls ?? classified[0]?.cls ?? 'unknown',
      tag: '',
      rows,
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
  }

  private writeClient(buf: Buffer, start = 0, end = buf.length): void {
    const flushed = this.clientSource.write(buf, start, end);
    if (this.client.writableLength > 0) this.upstreamSource.retain();
    if (!flushed) this.upstream.pause();
  }

  // ---- ends --------------------------------------------------------------------------------------

  private onUpstreamClosed(): void {
    if (this.ended) return;
    if (this.clientQuit) {
      this.end('client');
      if (!this.client.destroyed) this.client.end();
      return;
    }
    this.close('upstream', mysqlErrors.upstreamLost(this.opts.serviceFqn), 'upstream closed the connection');
  }

  /** Ends the session from sempipe's side: the client gets `err` when its stream is between packets. */
  close(reason: EndReason, err?: MysqlError, message?: string): void {
    if (this.ended) return;
    const notify = err !== undefined && this.serverScanner.idle && !this.client.destroyed;
    this.end(reason, message ?? err?.message);
    if (notify) this.client.end(errorPacket(err, this.closingSeq()));
    else this.client.destroy();
    if (!this.upstream.destroyed) {
      if (this.clientScanner.idle) this.upstream.end(packet(Buffer.from([Command.Quit]), 0));
      else this.upstream.destroy();
    }
  }

  /**
   * The sequence id the client expects next: 1 for the answer to a command the server has not begun
   * to answer, the next one within an answer, 0 outside any exchange.
   */
  private closingSeq(): number {
    const head = this.pending[0];
    if (head === undefined) return 0;
    if (this.phase === Phase.First && head.index === 0) return 1;
    return (this.lastSeqToClient + 1) & 0xff;
  }

  private end(reason: EndReason, message?: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const e of this.pending) if (e.timer !== undefined) clearTimeout(e.timer);
    this.pipeline.bytes(this.bytesInPending, this.bytesOutPending);
    this.bytesInPending = 0;
    this.bytesOutPending = 0;
    this.opts.onEnd(reason, message);
  }
}
