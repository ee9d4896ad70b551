import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AkiError } from '../errors.js';
import { parseFilter, type Filter } from '../index/filter.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { decodeWalOp, encodeWalOp, type StoredDoc, type WalOp } from './wal-record.js';
import { MAX_WAL_RECORD_BYTES, parseWalFile, Wal, type WalRecord } from './wal.js';

const tempDir = useTempDirs('akidb-wal-fuzz-');

const DIM = 3;
/** Replay compiles a logged filter without limits: the decoder must accept exactly what that accepts. */
const NO_LIMITS = { maxDepth: Infinity, maxClauses: Infinity, maxInValues: Infinity };
/** Frame layout documented in wal.ts: u32 body length | u32 crc32(body) | body = u64 lsn | payload. */
const FRAME_HEADER_BYTES = 8;
const FRAME_OVERHEAD = 16;

/** A frame exactly as the WAL writes it, for any u64 LSN. */
function frame(lsn: bigint, payload: Uint8Array): Buffer {
  const out = Buffer.alloc(FRAME_OVERHEAD + payload.length);
  out.writeUInt32LE(8 + payload.length, 0);
  out.writeBigUInt64LE(lsn, FRAME_HEADER_BYTES);
  out.set(payload, FRAME_OVERHEAD);
  out.writeUInt32LE(crc32(out.subarray(FRAME_HEADER_BYTES)), 4);
  return out;
}

/** decodeWalOp's answer: the op, or the code of the AkiError it threw. Anything else fails the test. */
function decodeOrCode(payload: Buffer, dimension = DIM): WalOp | { code: string } {
  try {
    return decodeWalOp(payload, dimension);
  } catch (err) {
    if (!(err instanceof AkiError)) throw err;
    return { code: err.code };
  }
}

function isJsonObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A decoded op must be what its type says, down to each field, so replay can apply it without a type check. */
function expectWellTyped(op: WalOp, dimension = DIM): void {
  switch (op.type) {
    case 'upsert':
      expect(Array.isArray(op.docs)).toBe(true);
      for (const d of op.docs) {
        expect(typeof d.id).toBe('string');
        expect(d.metadata === null || isJsonObject(d.metadata)).toBe(true);
        expect(d.text === null || typeof d.text === 'string').toBe(true);
        expect(d.vector).toBeInstanceOf(Float32Array);
        expect(d.vector.length).toBe(dimension);
      }
      return;
    case 'delete':
      expect(Array.isArray(op.ids) && op.ids.every((x) => typeof x === 'string')).toBe(true);
      return;
    case 'deleteWhere':
      expect(op.ids === null || (Array.isArray(op.ids) && op.ids.every((x) => typeof x === 'string'))).toBe(true);
      // Replay compiles the filter outside any error handling; it must compile.
      expect(parseFilter(op.filter, NO_LIMITS).kind).toMatch(/^(all|and|or|not|leaf)$/);
      return;
  }
}

/** Decode must give a well-typed op or STORAGE_CORRUPT; returns whether it decoded. */
function expectDecodesOrCorrupt(payload: Buffer, dimension = DIM): boolean {
  const out = decodeOrCode(payload, dimension);
  if ('code' in out) {
    expect(out.code).toBe('STORAGE_CORRUPT');
    return false;
  }
  expectWellTyped(out, dimension);
  return true;
}

/** An op as plain values: vectors as byte strings, metadata as its JSON form (JSON has no -0). */
function plainOp(op: WalOp): unknown {
  if (op.type !== 'upsert') return JSON.parse(JSON.stringify(op)) as unknown;
  return op.docs.map((d) => ({
    id: d.id,
    metadata: JSON.parse(JSON.stringify(d.metadata)) as unknown,
    text: d.text,
    vector: Buffer.from(d.vector.buffer, d.vector.byteOffset, d.vector.byteLength).toString('hex'),
  }));
}

// ------------------------------------------------------------------ arbitraries

const text = fc.string({ unit: 'binary', maxLength: 10 });
const metadata = fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), { nil: null });
const doc: fc.Arbitrary<StoredDoc> = fc.record({
  id: text,
  metadata,
  text: fc.option(text, { nil: null }),
  vector: fc.float32Array({ minLength: DIM, maxLength: DIM }),
});
const scalar = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -5, max: 5 }), fc.string({ maxLength: 4 }));
const validFilter: fc.Arbitrary<Filter> = fc.oneof(
  fc.dictionary(fc.constantFrom('a', 'b', 'a.b'), scalar, { maxKeys: 3 }),
  fc.record({ a: fc.record({ $gt: fc.integer() }) }),
  fc.record({ $or: fc.array(fc.record({ b: scalar }), { minLength: 1, maxLength: 3 }) }),
  fc.record({ $not: fc.record({ a: fc.record({ $in: fc.array(scalar, { maxLength: 3 }) }) }) }),
);
const ids = fc.array(text, { maxLength: 5 });
const validOp: fc.Arbitrary<WalOp> = fc.oneof(
  fc.record({ type: fc.constant('upsert' as const), docs: fc.array(doc, { maxLength: 5 }) }),
  fc.record({ type: fc.constant('delete' as const), ids }),
  fc.record({ type: fc.constant('deleteWhere' as const), filter: validFilter, ids: fc.option(ids, { nil: null }) }),
);

/** u32 values that a corrupt length or count field is likely to hold. */
const nastyU32 = fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 7, 8, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 1 << 30, (1 << 30) + 1), fc.nat({ max: 0xffffffff }));

type Mutation =
  | { kind: 'flip'; flips: { pos: number; bit: number }[] }
  | { kind: 'truncate'; keep: number }
  | { kind: 'extend'; garbage: Uint8Array }
  | { kind: 'overwrite'; pos: number; bytes: Uint8Array }
  | { kind: 'u32'; pos: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), flips: fc.array(fc.record({ pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), { minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), garbage: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('overwrite' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('u32' as const), pos: fc.nat(), value: nastyU32 }),
);

/** `buf` with `m` applied; positions wrap around the buffer's length. Never modifies `buf`. */
function mutate(buf: Buffer, m: Mutation): Buffer {
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(buf);
      if (out.length === 0) return out;
      for (const f of m.flips) out[f.pos % out.length]! ^= 1 << f.bit;
      return out;
    }
    case 'truncate':
      return Buffer.from(buf.subarray(0, buf.length === 0 ? 0 : m.keep % buf.length));
    case 'extend':
      return Buffer.concat([buf, m.garbage]);
    case 'overwrite': {
      const out = Buffer.from(buf);
      if (out.length === 0) return out;
      out.set(m.bytes.subarray(0, out.length - (m.pos % out.length)), m.pos % out.length);
      return out;
    }
    case 'u32': {
      const out = Buffer.from(buf);
      if (out.length < 4) return out;
      out.writeUInt32LE(m.value, m.pos % (out.length - 3));
      return out;
    }
  }
}

// ------------------------------------------------------------------ decodeWalOp

describe('decodeWalOp on arbitrary input', () => {
  it('valid ops round-trip through encodeWalOp exactly', () => {
    fc.assert(
      fc.property(validOp, (op) => {
        const out = decodeOrCode(encodeWalOp(op, DIM));
        if ('code' in out) throw new Error(`a valid op failed to decode: ${out.code}`);
        expect(out.type).toBe(op.type);
        expect(plainOp(out)).toEqual(plainOp(op));
      }),
      { seed: 0x5eed_0001, numRuns: 1000 },
    );
  });

  it('random bytes, with any type byte, decode to a well-typed op or throw STORAGE_CORRUPT', () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 2, 3, 4, 255), fc.uint8Array({ maxLength: 200 }), (type, rest) => {
        expectDecodesOrCorrupt(Buffer.concat([Buffer.from([type]), rest]));
      }),
      { seed: 0x5eed_0002, numRuns: 3000 },
    );
    // The empty payload has no type byte at all.
    expect(decodeOrCode(Buffer.alloc(0))).toEqual({ code: 'STORAGE_CORRUPT' });
  });

  it('valid records with flipped bits, truncations, appended garbage or rewritten u32 fields decode well-typed or throw STORAGE_CORRUPT', () => {
    let decoded = 0;
    let refused = 0;
    fc.assert(
      fc.property(validOp, fc.array(mutation, { minLength: 1, maxLength: 3 }), (op, mutations) => {
        const buf = mutations.reduce(mutate, encodeWalOp(op, DIM));
        if (expectDecodesOrCorrupt(buf)) decoded += 1;
        else refused += 1;
      }),
      { seed: 0x5eed_0003, numRuns: 3000 },
    );
    // Both outcomes must be common, or the mutations are not reaching the interesting paths.
    expect(decoded).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(1000);
  });

  it('an upsert header claiming huge count, dimension or JSON length is refused with STORAGE_CORRUPT', () => {
    fc.assert(
      fc.property(fc.array(doc, { minLength: 1, maxLength: 3 }), fc.constantFrom(1, 5, 9), nastyU32, (docs, field, value) => {
        const buf = encodeWalOp({ type: 'upsert', docs }, DIM);
        const original = buf.readUInt32LE(field);
        fc.pre(value !== original);
        buf.writeUInt32LE(value, field);
        // A changed JSON length either moves where the vectors start or cuts the JSON short.
        expect(decodeOrCode(buf)).toEqual({ code: 'STORAGE_CORRUPT' });
      }),
      { seed: 0x5eed_0004, numRuns: 1500 },
    );
  });

  it('well-framed records whose JSON has the wrong shape decode well-typed or throw STORAGE_CORRUPT', () => {
    // Right type byte, right counts and lengths, valid JSON of the wrong shape: what a record written
    // by a broken build looks like after it passed its CRC.
    const anyJson = fc.jsonValue({ maxDepth: 3 });
    const rowish = fc.oneof(
      anyJson,
      fc.tuple(anyJson, anyJson, anyJson),
      fc.tuple(text, fc.oneof(metadata, anyJson), fc.oneof(fc.constant(null), text, anyJson)),
      fc.string({ minLength: 1, maxLength: 3 }),
    );
    const upsert = fc.array(rowish, { maxLength: 4 }).map((rows) => {
      const json = Buffer.from(JSON.stringify(rows), 'utf8');
      const vecStart = (13 + json.length + 3) & ~3;
      const out = Buffer.alloc(vecStart + rows.length * DIM * 4);
      out.writeUInt8(1, 0);
      out.writeUInt32LE(rows.length, 1);
      out.writeUInt32LE(DIM, 5);
      out.writeUInt32LE(json.length, 9);
      json.copy(out, 13);
      return out;
    });
    const filterish = fc.oneof(anyJson, validFilter, fc.dictionary(fc.constantFrom('$and', '$or', '$not', '$bogus', 'a', 'a.b', ''), anyJson, { maxKeys: 3 }));
    const deleteWhere = fc
      .oneof(fc.record({ filter: filterish, ids: fc.oneof(fc.constant(null), ids, anyJson) }), anyJson)
      .map((body) => Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify(body) ?? '', 'utf8')]));
    const del = fc.oneof(ids, anyJson).map((body) => Buffer.concat([Buffer.from([2]), Buffer.from(JSON.stringify(body) ?? '', 'utf8')]));
    let decoded = 0;
    fc.assert(
      fc.property(fc.oneof(upsert, deleteWhere, del), (payload) => {
        if (expectDecodesOrCorrupt(payload)) decoded += 1;
      }),
      { seed: 0x5eed_0005, numRuns: 3000 },
    );
    expect(decoded).toBeGreaterThan(200);
  });
});

// ------------------------------------------------------------------ parseWalFile

type Piece =
  | { kind: 'frame'; step: number; payload: Uint8Array }
  | { kind: 'garbage'; bytes: Uint8Array }
  | { kind: 'badLength'; length: number; tail: Uint8Array }
  | { kind: 'flipped'; step: number; payload: Uint8Array; pos: number; bit: number }
  | { kind: 'staleLsn'; back: number; payload: Uint8Array }
  | { kind: 'hugeLsn'; lsn: bigint; payload: Uint8Array };

const payloadBytes = fc.uint8Array({ maxLength: 48 });
const piece: fc.Arbitrary<Piece> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('frame' as const), step: fc.integer({ min: 1, max: 3 }), payload: payloadBytes }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('badLength' as const),
      length: fc.oneof(fc.constantFrom(0, 1, 7, MAX_WAL_RECORD_BYTES, MAX_WAL_RECORD_BYTES + 1, 0xffffffff), fc.integer({ min: 8, max: 0xffffffff })),
      tail: fc.uint8Array({ maxLength: 24 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('flipped' as const), step: fc.integer({ min: 1, max: 3 }), payload: payloadBytes, pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('staleLsn' as const), back: fc.integer({ min: 0, max: 2 }), payload: payloadBytes }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('hugeLsn' as const), lsn: fc.oneof(fc.constantFrom(2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n), fc.bigInt(2n ** 53n, 2n ** 64n - 1n)), payload: payloadBytes }),
  },
);

/** The bytes of `pieces` and the records a correct parser returns: those of the leading run of well-formed frames. */
function build(pieces: readonly Piece[], minLsn: number): { buf: Buffer; expected: { lsn: number; payload: string }[]; validBytes: number } {
  const parts: Buffer[] = [];
  const expected: { lsn: number; payload: string }[] = [];
  let validBytes = 0;
  let clean = true;
  let lsn = minLsn;
  for (const p of pieces) {
    let bytes: Buffer;
    switch (p.kind) {
      case 'frame':
        lsn += p.step;
        bytes = frame(BigInt(lsn), p.payload);
        break;
      case 'garbage':
        bytes = Buffer.from(p.bytes);
        break;
      case 'badLength': {
        bytes = Buffer.alloc(FRAME_HEADER_BYTES + p.tail.length);
        bytes.writeUInt32LE(p.length, 0);
        bytes.writeUInt32LE(crc32(p.tail), 4);
        bytes.set(p.tail, FRAME_HEADER_BYTES);
        break;
      }
      case 'flipped':
        lsn += p.step;
        bytes = frame(BigInt(lsn), p.payload);
        bytes[p.pos % bytes.length]! ^= 1 << p.bit;
        break;
      case 'staleLsn':
        bytes = frame(BigInt(Math.max(0, lsn - p.back)), p.payload);
        break;
      case 'hugeLsn':
        bytes = frame(p.lsn, p.payload);
        break;
    }
    if (clean && p.kind === 'frame') {
      expected.push({ lsn, payload: Buffer.from(p.payload).toString('hex') });
      validBytes += bytes.length;
    } else {
      clean = false;
    }
    parts.push(bytes);
  }
  return { buf: Buffer.concat(parts), expected, validBytes };
}

function plainRecords(records: readonly WalRecord[]): { lsn: number; payload: string }[] {
  return records.map((r) => ({ lsn: r.lsn, payload: r.payload.toString('hex') }));
}

/** Everything parseWalFile promises about any input, whatever it is. */
function expectConsistentParse(buf: Buffer, minLsn: number): ReturnType<typeof parseWalFile> {
  const out = parseWalFile(buf, minLsn);
  expect(out.validBytes).toBeGreaterThanOrEqual(0);
  expect(out.validBytes).toBeLessThanOrEqual(buf.length);
  expect(out.reason === undefined).toBe(out.validBytes === buf.length);
  let last = minLsn;
  for (const r of out.records) {
    expect(Number.isSafeInteger(r.lsn)).toBe(true);
    expect(r.lsn).toBeGreaterThan(last);
    last = r.lsn;
  }
  // The kept prefix is exactly the returned records re-framed: every byte of it checksummed and accounted for.
  const reframed = Buffer.concat(out.records.map((r) => frame(BigInt(r.lsn), r.payload)));
  expect(reframed.equals(buf.subarray(0, out.validBytes))).toBe(true);
  return out;
}

describe('parseWalFile on arbitrary input', () => {
  it('random bytes never throw, and whatever is kept re-frames to the bytes it came from', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.nat({ max: 10 }), (bytes, minLsn) => {
        expectConsistentParse(Buffer.from(bytes), minLsn);
      }),
      { seed: 0x5eed_0010, numRuns: 3000 },
    );
  });

  it('keeps exactly the leading well-formed frames: stops at garbage, bad or huge lengths, bit flips, stale or unrepresentable LSNs', () => {
    let cut = 0;
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.nat({ max: 5 }), (pieces, minLsn) => {
        const { buf, expected, validBytes } = build(pieces, minLsn);
        const out = expectConsistentParse(buf, minLsn);
        expect(plainRecords(out.records)).toEqual(expected);
        expect(out.validBytes).toBe(validBytes);
        if (out.reason !== undefined) cut += 1;
      }),
      { seed: 0x5eed_0011, numRuns: 3000 },
    );
    expect(cut).toBeGreaterThan(1000);
  });
});

// ------------------------------------------------------------------ Wal.open recovery

const FILE_PATTERN = /^wal-\d{20}\.log$/;

interface Written {
  file: string;
  start: number;
  end: number;
  lsn: number;
  payload: Buffer;
}

/** Write `files` (each a list of payloads) with the real Wal, rotating between them. */
async function writeWal(dir: string, files: readonly Uint8Array[][]): Promise<Written[]> {
  const { wal } = await Wal.open(dir, 0, { sync: false });
  const written: Written[] = [];
  for (const [f, payloads] of files.entries()) {
    if (f > 0) await wal.rotate(() => undefined);
    let at = 0;
    for (const p of payloads) {
      const lsn = await wal.append(Buffer.from(p));
      written.push({ file: wal.activeFile, start: at, end: at + FRAME_OVERHEAD + p.length, lsn, payload: Buffer.from(p) });
      at += FRAME_OVERHEAD + p.length;
    }
  }
  await wal.close();
  return written;
}

describe('Wal.open recovery from corrupted files', () => {
  it('keeps every record before the first damaged one, returns none that fails its checksum, and leaves a clean WAL', async () => {
    const layout = fc.array(fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 3 });
    const lengthField = fc.record({ kind: fc.constant('length' as const), record: fc.nat(), value: fc.constantFrom(0, 7, MAX_WAL_RECORD_BYTES, MAX_WAL_RECORD_BYTES + 1, 0xffffffff) });
    let damaged = 0;
    await fc.assert(
      fc.asyncProperty(layout, fc.nat(), fc.oneof(mutation, lengthField), async (files, target, m) => {
        const dir = tempDir();
        const written = await writeWal(dir, files);
        const names = fs.readdirSync(dir).filter((n) => FILE_PATTERN.test(n) && written.some((w) => w.file === n)).sort();
        expect(names).toHaveLength(files.length);
        const name = names[target % names.length]!;
        const full = path.join(dir, name);
        const before = fs.readFileSync(full);
        let after: Buffer;
        if (m.kind === 'length') {
          // A frame header claiming an impossible or oversized body.
          const inFile = written.filter((w) => w.file === name);
          const w = inFile[m.record % inFile.length]!;
          after = Buffer.from(before);
          after.writeUInt32LE(m.value, w.start);
        } else {
          after = mutate(before, m);
        }
        fs.writeFileSync(full, after);

        // The first record whose bytes changed or went missing; every record before it must survive.
        const firstDamaged = written.findIndex((w) => w.file === name && (w.end > after.length || !after.subarray(w.start, w.end).equals(before.subarray(w.start, w.end))));
        const keep = firstDamaged === -1 ? written.length : firstDamaged;
        const isLastFile = name === names.at(-1);
        const cleanCutAtBoundary = after.length < before.length && isLastFile && (after.length === 0 || written.some((w) => w.file === name && w.end === after.length));
        const expectTornTail = !after.equals(before) && !cleanCutAtBoundary;
        if (keep < written.length) damaged += 1;

        const first = await Wal.open(dir, 0, { sync: false });
        expect(plainRecords(first.replay.records)).toEqual(written.slice(0, keep).map((w) => ({ lsn: w.lsn, payload: w.payload.toString('hex') })));
        expect(first.replay.corruptTails > 0).toBe(expectTornTail);
        expect(first.replay.droppedBytes > 0).toBe(expectTornTail);
        // New appends continue right after the last record kept.
        expect(await first.wal.append(Buffer.from('after'))).toBe(keep + 1);
        await first.wal.close();

        // Recovery left the directory clean: a second open sees no damage and every record kept plus the new one.
        const second = await Wal.open(dir, 0, { sync: false });
        expect(second.replay.corruptTails).toBe(0);
        expect(second.replay.droppedBytes).toBe(0);
        expect(plainRecords(second.replay.records)).toEqual([
          ...written.slice(0, keep).map((w) => ({ lsn: w.lsn, payload: w.payload.toString('hex') })),
          { lsn: keep + 1, payload: Buffer.from('after').toString('hex') },
        ]);
        await second.wal.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }),
      { seed: 0x5eed_0020, numRuns: 300 },
    );
    expect(damaged).toBeGreaterThan(100);
  }, 60_000);
});
