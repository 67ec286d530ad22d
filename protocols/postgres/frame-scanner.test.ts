// FrameScanner with byte fixtures: a stream of several frames fed whole, in every 2-chunk split
// and byte by byte; the captured frames, `heldFrom` and `onHeldHeader` must let a relay forward
// exactly the original bytes. Invalid and oversized lengths, zero-payload frames, stop/resume, and
// fast-check properties over arbitrary byte streams cut into arbitrary chunks.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { FrameScanner, frameTypeSet, ScanStatus, type FrameHandler, type FrameRef } from './frame-scanner.js';

function frame(type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const buf = Buffer.alloc(5 + body.length);
  buf[0] = type.charCodeAt(0);
  buf.writeUInt32BE(4 + body.length, 1);
  body.copy(buf, 5);
  return buf;
}

const code = (c: string): number => c.charCodeAt(0);
/** Query, Parse and Sync are captured; CopyData, Flush and Describe are skipped. */
const WANTED = frameTypeSet([code('Q'), code('P'), code('S')]);

const FRAMES = [
  frame('Q', 'select 1\0'),
  frame('d', Buffer.alloc(37, 0xab)),
  frame('S'),
  frame('H'),
  frame('P', '\0select $1::int\0\0\0'),
  frame('D', 'S\0'),
  frame('S'),
];
const STREAM = Buffer.concat(FRAMES);
const WANTED_FRAMES = FRAMES.filter((f) => WANTED[f[0]] === 1);

interface Outcome {
  /** Captured frames, copied. */
  captured: Buffer[];
  /** What a relay that follows the scanner's contract would forward (see relay.ts). */
  forwarded: Buffer;
  heldHeaders: Buffer[];
  heldFrom: number[];
  ok: boolean;
  status: ScanStatus;
}

/**
 * Feeds `chunks` to a scanner the way the relay does: bytes [inFrom, heldFrom) of each chunk go
 * upstream, an assembled frame goes upstream whole and moves inFrom past it, a held header is
 * forwarded from onHeldHeader and moves inFrom past its end in the chunk.
 */
function feed(chunks: readonly Buffer[], max = 1 << 20, wanted = WANTED, readBuffer?: Buffer): Outcome {
  const scanner = new FrameScanner(wanted, max);
  const captured: Buffer[] = [];
  const out: Buffer[] = [];
  const heldHeaders: Buffer[] = [];
  const heldFrom: number[] = [];
  let inFrom = 0;
  const handler: FrameHandler = {
    onFrame(_type, f) {
      captured.push(Buffer.from(f.view()));
      if (f.assembled) {
        out.push(Buffer.from(f.view()));
        inFrom = f.endInChunk;
      }
      return true;
    },
    onHeldHeader(header, end) {
      heldHeaders.push(Buffer.from(header));
      out.push(Buffer.from(header));
      inFrom = end;
    },
  };
  for (const data of chunks) {
    inFrom = 0;
    // As the relay reads: into a reusable buffer whose bytes past the read are left from before.
    let chunk = data;
    if (readBuffer !== undefined) {
      data.copy(readBuffer);
      chunk = readBuffer;
    }
    if (!scanner.scan(chunk, handler, 0, data.length)) return { captured, forwarded: Buffer.concat(out), heldHeaders, heldFrom, ok: false, status: scanner.status };
    heldFrom.push(scanner.heldFrom);
    if (scanner.heldFrom > inFrom) out.push(Buffer.from(chunk.subarray(inFrom, scanner.heldFrom)));
  }
  return { captured, forwarded: Buffer.concat(out), heldHeaders, heldFrom, ok: true, status: scanner.status };
}

function split(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts)].filter((c) => c > 0 && c < buf.length).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(buf.subarray(from, p));
    from = p;
  }
  chunks.push(buf.subarray(from));
  return chunks;
}

/** Start offset of each frame in STREAM. */
const OFFSETS = FRAMES.reduce<number[]>((acc, _f, i) => [...acc, i === 0 ? 0 : acc[i - 1] + FRAMES[i - 1].length], []);

describe('FrameScanner on a fixed stream', () => {
  test('chunks read into a larger reusable buffer scan as the chunks themselves, in every 2-chunk split', () => {
    const whole = feed([STREAM]);
    for (let cut = 1; cut < STREAM.length; cut++) {
      const stale = Buffer.alloc(STREAM.length + 64, 0x51); // 'Q': would start a wanted frame
      expect(feed(split(STREAM, [cut]), 1 << 20, WANTED, stale)).toMatchObject({ captured: whole.captured, forwarded: whole.forwarded, ok: true });
    }
  });

  test('one chunk: the wanted frames are handed over as ranges of the chunk and nothing is held', () => {
    const scanner = new FrameScanner(WANTED, 1 << 20);
    const seen: Array<{ type: number; frame: Buffer; end: number; assembled: boolean; inChunk: boolean }> = [];
    const onFrame = (type: number, f: FrameRef): boolean => {
      seen.push({ type, frame: f.view(), end: f.endInChunk, assembled: f.assembled, inChunk: f.buf === STREAM && f.end === f.endInChunk });
      return true;
    };
    expect(scanner.scan(STREAM, { onFrame })).toBe(true);
    expect(seen.map((s) => s.frame)).toEqual(WANTED_FRAMES);
    expect(seen.every((s) => !s.assembled && s.inChunk && s.frame.buffer === STREAM.buffer)).toBe(true);
    expect(seen.map((s) => s.end)).toEqual(FRAMES.map((f, i) => OFFSETS[i] + f.length).filter((_, i) => WANTED[FRAMES[i][0]] === 1));
    expect(scanner.heldFrom).toBe(STREAM.length);
    expect(scanner.atBoundary).toBe(true);
  });

  test('every 2-chunk split: same frames captured, relay-forwarded bytes equal the stream', () => {
    for (let cut = 1; cut < STREAM.length; cut++) {
      const r = feed([STREAM.subarray(0, cut), STREAM.subarray(cut)]);
      expect(r.ok, `cut ${cut}`).toBe(true);
      expect(r.captured, `cut ${cut}`).toEqual(WANTED_FRAMES);
      expect(r.forwarded.equals(STREAM), `forwarded stream differs for cut at ${cut}`).toBe(true);
    }
  });

  test('1-byte chunks: same frames captured, relay-forwarded bytes equal the stream', () => {
    const r = feed([...STREAM].map((b) => Buffer.from([b])));
    expect(r.captured).toEqual(WANTED_FRAMES);
    expect(r.forwarded.equals(STREAM)).toBe(true);
  });

  test('heldFrom: a cut inside a wanted frame holds from its start, inside an unwanted body holds nothing', () => {
    // Inside the Query frame's payload: everything of chunk 1 is held (the frame starts at 0).
    expect(feed([STREAM.subarray(0, 8), STREAM.subarray(8)]).heldFrom[0]).toBe(0);
    // Inside the Parse frame (index 4) header and payload: held from the Parse frame's start.
    for (const cut of [OFFSETS[4] + 2, OFFSETS[4] + 5, OFFSETS[4] + 9]) {
      expect(feed([STREAM.subarray(0, cut), STREAM.subarray(cut)]).heldFrom[0], `cut ${cut}`).toBe(OFFSETS[4]);
    }
    // Inside the CopyData payload (index 1): nothing held, the body is skipped by count.
    const inBody = OFFSETS[1] + 10;
    expect(feed([STREAM.subarray(0, inBody), STREAM.subarray(inBody)]).heldFrom[0]).toBe(inBody);
    // Inside the CopyData header: held from the header's start.
    const inHeader = OFFSETS[1] + 3;
    expect(feed([STREAM.subarray(0, inHeader), STREAM.subarray(inHeader)]).heldFrom[0]).toBe(OFFSETS[1]);
  });

  test('onHeldHeader gives the 5 header bytes of an unwanted frame whose header was split', () => {
    for (let k = 1; k < 5; k++) {
      const cut = OFFSETS[1] + k;
      const r = feed([STREAM.subarray(0, cut), STREAM.subarray(cut)]);
      expect(r.heldHeaders, `header split after ${k} bytes`).toEqual([FRAMES[1].subarray(0, 5)]);
    }
    // A header that is not split is never reported.
    expect(feed([STREAM]).heldHeaders).toEqual([]);
  });

  test('zero-payload frames: wanted Sync and unwanted Flush alone, whole and split in the header', () => {
    const sync = frame('S');
    const flush = frame('H');
    for (const f of [sync, flush]) {
      for (let cut = 0; cut < 5; cut++) {
        const r = feed(cut === 0 ? [f] : [f.subarray(0, cut), f.subarray(cut)]);
        expect(r.ok).toBe(true);
        expect(r.captured).toEqual(f === sync ? [sync] : []);
        expect(r.forwarded.equals(f), `${String.fromCharCode(f[0])} cut ${cut}`).toBe(true);
      }
    }
  });

  test('a handler returning false stops the scan; resuming at stoppedAt continues', () => {
    const scanner = new FrameScanner(WANTED, 1 << 20);
    const types: number[] = [];
    let stopOnce = true;
    const handler: FrameHandler = {
      onFrame(type) {
        types.push(type);
        if (type === code('S') && stopOnce) {
          stopOnce = false;
          return false;
        }
        return true;
      },
    };
    expect(scanner.scan(STREAM, handler)).toBe(false);
    expect(scanner.status).toBe(ScanStatus.Ok);
    expect(scanner.stoppedAt).toBe(OFFSETS[2] + 5);
    expect(scanner.scan(STREAM, handler, scanner.stoppedAt)).toBe(true);
    expect(types).toEqual(WANTED_FRAMES.map((f) => f[0]));
  });
});

describe('FrameScanner refuses bad lengths', () => {
  test.each([0, 1, 2, 3])('length %i (< 4) -> InvalidLength with type and length', (len) => {
    const bad = Buffer.from([code('d'), 0, 0, 0, len]);
    for (const chunks of [[bad], [bad.subarray(0, 2), bad.subarray(2)]]) {
      const scanner = new FrameScanner(WANTED, 1 << 20);
      const ok = chunks.every((c) => scanner.scan(c, { onFrame: () => true }));
      expect(ok).toBe(false);
      expect(scanner.status).toBe(ScanStatus.InvalidLength);
      expect(scanner.badType).toBe(code('d'));
      expect(scanner.badLength).toBe(len);
    }
  });

  test('a length with the top bit set -> InvalidLength', () => {
    const scanner = new FrameScanner(WANTED, 0xffffffff);
    expect(scanner.scan(Buffer.from([code('Q'), 0x80, 0, 0, 0]), { onFrame: () => true })).toBe(false);
    expect(scanner.status).toBe(ScanStatus.InvalidLength);
  });

  test('a frame over the maximum -> TooLarge, for wanted and unwanted types, before any payload', () => {
    for (const type of ['Q', 'd']) {
      const scanner = new FrameScanner(WANTED, 100);
      const head = Buffer.from([code(type), 0x7f, 0xff, 0xff, 0xff]);
      expect(scanner.scan(head, { onFrame: () => true })).toBe(false);
      expect(scanner.status).toBe(ScanStatus.TooLarge);
      expect(scanner.badType).toBe(code(type));
      expect(scanner.badLength).toBe(0x7fffffff);
    }
  });

  test('a frame of exactly the maximum passes, one byte more is TooLarge', () => {
    const exact = frame('Q', Buffer.alloc(95));
    expect(exact.length).toBe(100);
    expect(feed([exact], 100).captured).toEqual([exact]);
    const over = frame('Q', Buffer.alloc(96));
    const r = feed([over], 100);
    expect(r.ok).toBe(false);
    expect(r.status).toBe(ScanStatus.TooLarge);
  });
});

describe('FrameScanner properties', () => {
  const wantedTypes = fc.uint8Array({ minLength: 0, maxLength: 8 }).map((a) => frameTypeSet([...a]));
  const stream = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
  const cuts = fc.array(fc.nat({ max: 300 }), { maxLength: 20 });

  test('arbitrary bytes cut into arbitrary chunks never throw; captured frames and status do not depend on the chunking', () => {
    fc.assert(
      fc.property(stream, cuts, wantedTypes, fc.integer({ min: 5, max: 400 }), (bytes, cutPoints, wanted, max) => {
        const whole = feed([bytes], max, wanted);
        const chunked = feed(split(bytes, cutPoints), max, wanted);
        expect(chunked.captured).toEqual(whole.captured);
        expect(chunked.ok).toBe(whole.ok);
        expect(chunked.status).toBe(whole.status);
      }),
      { numRuns: 2000 },
    );
  });

  test('a stream of well-formed frames in arbitrary chunks is forwarded byte for byte', () => {
    const frames = fc.array(
      fc.tuple(fc.constantFrom('Q', 'P', 'S', 'd', 'H', 'D', 'B', 'E'), fc.uint8Array({ maxLength: 40 })),
      { minLength: 1, maxLength: 12 },
    );
    fc.assert(
      fc.property(frames, cuts, (spec, cutPoints) => {
        const all = spec.map(([t, p]) => frame(t, Buffer.from(p)));
        const bytes = Buffer.concat(all);
        const r = feed(split(bytes, cutPoints));
        expect(r.ok).toBe(true);
        expect(r.captured).toEqual(all.filter((f) => WANTED[f[0]] === 1));
        expect(r.forwarded.equals(bytes)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
