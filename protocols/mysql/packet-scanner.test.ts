// The MySQL packet scanner with byte fixtures: packets whole, split at every offset, continued past
// 16 MiB, refused above the maximum; and fast-check: any split of any framed stream gives the same
// messages, and arbitrary bytes never throw.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { framePackets, MAX_PACKET_PAYLOAD, MessageAssembler, PacketScanner, ScanStatus, type PacketRef } from './packet-scanner.js';

interface Seen { seq: number; length: number; firstByte: number; continues: boolean; payload?: string }

function collect(want: boolean, max = 1 << 30): { scanner: PacketScanner; seen: Seen[]; messages: Buffer[] } {
  const seen: Seen[] = [];
  const messages: Buffer[] = [];
  const assembler = new MessageAssembler();
  const scanner = new PacketScanner(max, {
    wants: () => want,
    onPacket: (p: PacketRef) => {
      seen.push({ seq: p.seq, length: p.length, firstByte: p.firstByte, continues: p.continues, ...(p.payload && { payload: p.payload.toString('hex') }) });
      if (want) {
        const m = assembler.add(p);
        if (m !== undefined) messages.push(Buffer.from(m));
      }
    },
  });
  return { scanner, seen, messages };
}

// COM_QUERY "select 1" with sequence id 0, then COM_PING with sequence id 0.
const QUERY = Buffer.from('0900000003' + Buffer.from('select 1').toString('hex') + '010000000e', 'hex');

describe('PacketScanner', () => {
  it('hands out each packet of one chunk as a subarray with its sequence id and first byte', () => {
    const { scanner, seen } = collect(true);
    expect(scanner.scan(QUERY)).toBe(true);
    expect(seen).toEqual([
      { seq: 0, length: 9, firstByte: 3, continues: false, payload: '0373656c6563742031' },
      { seq: 0, length: 1, firstByte: 14, continues: false, payload: '0e' },
    ]);
    expect(scanner.idle).toBe(true);
  });

  it('tells where each packet lies in the chunk, and that a packet began in an earlier chunk', () => {
    const spans: Array<[number, number]> = [];
    const scanner = new PacketScanner(1000, { wants: () => false, onPacket: (p) => spans.push([p.startInChunk, p.endInChunk]) });
    scanner.scan(QUERY);
    scanner.scan(QUERY.subarray(0, 6));
    scanner.scan(QUERY.subarray(6));
    expect(spans).toEqual([[0, 13], [13, 18], [-1, 7], [7, 12]]);
  });

  it('gives the same packets for a stream split at every offset, wanted or only counted', () => {
    for (const want of [true, false]) {
      const whole = collect(want);
      whole.scanner.scan(QUERY);
      for (let cut = 1; cut < QUERY.length; cut++) {
        const split = collect(want);
        split.scanner.scan(QUERY.subarray(0, cut));
        expect(split.scanner.idle).toBe(cut === 13);
        split.scanner.scan(QUERY.subarray(cut));
        expect(split.seen).toEqual(whole.seen);
      }
    }
  });

  it('reports an empty payload with first byte -1', () => {
    const { scanner, seen } = collect(true);
    scanner.scan(Buffer.from('00000005', 'hex'));
    expect(seen).toEqual([{ seq: 5, length: 0, firstByte: -1, continues: false }]);
  });

  it('joins a message continued past 16 MiB, also when the last packet is empty', () => {
    for (const size of [MAX_PACKET_PAYLOAD + 10, MAX_PACKET_PAYLOAD]) {
      const payload = Buffer.alloc(size, 0x61);
      payload[0] = 3;
      const framed = framePackets(payload, 0);
      const { scanner, seen, messages } = collect(true);
      for (let at = 0; at < framed.length; at += 1 << 20) scanner.scan(framed.subarray(at, Math.min(framed.length, at + (1 << 20))));
      expect(seen.map((s) => [s.seq, s.length, s.continues])).toEqual([[0, MAX_PACKET_PAYLOAD, true], [1, size - MAX_PACKET_PAYLOAD, false]]);
      expect(messages).toHaveLength(1);
      expect(messages[0]!.equals(payload)).toBe(true);
    }
  });

  it('refuses a message longer than the maximum from its header, before buffering it', () => {
    const { scanner, seen } = collect(true, 100);
    expect(scanner.scan(Buffer.from('650000000300', 'hex'))).toBe(false);
    expect(scanner.status).toBe(ScanStatus.TooLarge);
    expect(seen).toEqual([]);
  });

  it('counts the maximum across continuation packets', () => {
    const { scanner } = collect(false, MAX_PACKET_PAYLOAD + 5);
    const framed = framePackets(Buffer.alloc(MAX_PACKET_PAYLOAD + 6), 0);
    expect(scanner.scan(framed)).toBe(false);
    expect(scanner.status).toBe(ScanStatus.TooLarge);
  });

  it('fast-check: any split of framed messages gives back the same messages and sequence ids', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.nat({ max: 400 }), { maxLength: 10 }),
        fc.boolean(),
        (payloads, cuts, want) => {
          const stream = Buffer.concat(payloads.map((p, i) => framePackets(Buffer.from(p), i)));
          const { scanner, seen, messages } = collect(want);
          let at = 0;
          for (const c of [...cuts.map((x) => x % (stream.length + 1)).sort((a, b) => a - b), stream.length]) {
            expect(scanner.scan(stream, at, Math.max(at, c))).toBe(true);
            at = Math.max(at, c);
          }
          expect(seen.map((s) => s.seq)).toEqual(payloads.map((_, i) => i & 0xff));
          expect(seen.map((s) => s.firstByte)).toEqual(payloads.map((p) => (p.length > 0 ? p[0] : -1)));
          if (want) expect(messages.map((m) => m.toString('hex'))).toEqual(payloads.map((p) => Buffer.from(p).toString('hex')));
          expect(scanner.idle).toBe(true);
        },
      ),
    );
  });

  it('fast-check: arbitrary bytes in arbitrary chunks never throw', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), fc.boolean(), (chunks, want) => {
        const { scanner } = collect(want, 1000);
        for (const c of chunks) if (!scanner.scan(Buffer.from(c))) break;
      }),
    );
  });
});
