import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { AkiError } from '../errors.js';
import type { Metadata } from '../index/filter.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { SegmentFile, writeSegmentFile, type SegmentHeader, type SegmentRowInput } from './segment-file.js';

const tempDir = useTempDirs('akidb-segment-fuzz-');

/** Layout documented in segment-file.ts: 16-byte prologue, sections, header JSON, 16-byte footer. */
const PROLOGUE_BYTES = 16;
const FOOTER_BYTES = 16;
const MAGIC = Buffer.from('AKISEG\0\0', 'latin1');
const END_MAGIC = Buffer.from('AKISEGND', 'latin1');

/** Everything a segment file yields, as plain values. */
interface Snapshot {
  header: SegmentHeader;
  ids: string[];
  metadata: (Metadata | null)[];
  texts: (string | null)[];
  lsns: number[];
  keys: number[];
  keysAlone: number[];
  tombstones: [string, number][];
  vectors: string;
  range: string;
  picked: string;
}

const hex = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

/** Open `file` and call every read method on it. */
function readEverything(file: string): Snapshot {
  const seg = SegmentFile.open(file);
  try {
    const data = seg.readData();
    const keysAlone = Array.from(seg.readKeys());
    const all = seg.readAllVectors();
    seg.verifyVectors();
    const n = seg.header.rowCount;
    const range = seg.readVectorRange(0, n);
    const picked = seg.readVectorRows(Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 !== 1));
    return {
      header: seg.header,
      ids: data.ids,
      metadata: data.metadata,
      texts: data.texts,
      lsns: Array.from(data.lsns),
      keys: Array.from(data.keys),
      keysAlone,
      tombstones: data.tombstones,
      vectors: hex(all),
      range: hex(range),
      picked: hex(picked),
    };
  } finally {
    seg.close();
  }
}

/**
 * Read `file` with every Buffer allocation larger than the file itself refused and recorded:
 * a length field claiming 2^40 bytes must be rejected before anything of that size is allocated.
 * Returns the snapshot, or the code of the AkiError it failed with; anything else fails the test.
 */
function readGuarded(file: string): Snapshot | { code: string } {
  const size = fs.statSync(file).size;
  const realAllocUnsafe = Buffer.allocUnsafe.bind(Buffer);
  const oversized: number[] = [];
  const spy = vi.spyOn(Buffer, 'allocUnsafe').mockImplementation((n: number) => {
    if (!(n <= size)) {
      oversized.push(n);
      throw new Error(`refused an allocation of ${n} bytes for a ${size}-byte file`);
    }
    return realAllocUnsafe(n);
  });
  let out: Snapshot | { code: string };
  try {
    out = readEverything(file);
  } catch (err) {
    if (!(err instanceof AkiError)) throw err;
    out = { code: err.code };
  } finally {
    spy.mockRestore();
  }
  expect(oversized).toEqual([]);
  return out;
}

function isJsonObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What the writer guarantees about any segment, checked on whatever a read returned. */
function expectWellFormed(s: Snapshot): void {
  const n = s.header.rowCount;
  expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
  expect(Number.isSafeInteger(s.header.dimension) && s.header.dimension >= 1).toBe(true);
  expect(s.ids).toHaveLength(n);
  expect(s.metadata).toHaveLength(n);
  expect(s.texts).toHaveLength(n);
  expect(s.lsns).toHaveLength(n);
  expect(s.keys).toHaveLength(n);
  expect(s.keysAlone).toEqual(s.keys);
  for (let i = 0; i < n; i++) {
    expect(typeof s.ids[i]).toBe('string');
    expect(s.metadata[i] === null || isJsonObject(s.metadata[i])).toBe(true);
    expect(s.texts[i] === null || typeof s.texts[i] === 'string').toBe(true);
    expect(Number.isSafeInteger(s.lsns[i])).toBe(true);
    expect(Number.isSafeInteger(s.keys[i])).toBe(true);
    if (i > 0) expect(s.keys[i]!).toBeGreaterThan(s.keys[i - 1]!);
  }
  expect(s.tombstones).toHaveLength(s.header.tombstoneCount);
  for (const t of s.tombstones) {
    expect(Array.isArray(t) && t.length === 2 && typeof t[0] === 'string' && Number.isSafeInteger(t[1])).toBe(true);
  }
  expect(s.vectors.length).toBe(n * s.header.dimension * 8);
  expect(s.range).toBe(s.vectors);
}

/** Expect `out` to be STORAGE_CORRUPT or a well-formed snapshot; returns the snapshot when there is one. */
function expectReadOrCorrupt(out: Snapshot | { code: string }): Snapshot | null {
  if ('code' in out) {
    expect(out.code).toBe('STORAGE_CORRUPT');
    return null;
  }
  expectWellFormed(out);
  return out;
}

// ------------------------------------------------------------------ the pristine segments

interface Base {
  name: string;
  bytes: Buffer;
  snapshot: Snapshot;
}

const bases: Base[] = [];

async function makeBase(dir: string, name: string, dimension: number, rows: SegmentRowInput[], tombstones: [string, number][]): Promise<Base> {
  const vectors = Float32Array.from({ length: rows.length * dimension }, (_, i) => Math.sin(i + 1) * 100);
  const file = path.join(dir, `${name}.seg`);
  await writeSegmentFile(file, dimension, rows, (s, e) => vectors.slice(s * dimension, e * dimension), tombstones);
  const snapshot = readEverything(file);
  expectWellFormed(snapshot);
  return { name, bytes: fs.readFileSync(file), snapshot };
}

beforeAll(async () => {
  const dir = tempDir();
  const rows = (n: number): SegmentRowInput[] =>
    Array.from({ length: n }, (_, i) => ({
      id: `doc-${i}-${'é'.repeat(i % 3)}`,
      key: 10 + i * 2,
      lsn: 100 + ((i * 7) % 13),
      metadata: i % 4 === 0 ? null : { genre: ['jazz', 'rock'][i % 2]!, year: 1990 + i, tags: ['a', 'b'].slice(i % 2), nested: { x: i } },
      text: i % 3 === 0 ? null : `text ${i}`,
    }));
  bases.push(await makeBase(dir, 'small', 3, rows(6), [['gone-1', 90], ['gone-2', 130]]));
  bases.push(await makeBase(dir, 'empty', 1, [], []));
  bases.push(await makeBase(dir, 'tombstones-only', 4, [], [['x', 7]]));
  bases.push(await makeBase(dir, 'wide', 8, rows(40), Array.from({ length: 5 }, (_, i): [string, number] => [`t${i}`, 50 + i])));
});

/** An index into `bases`, so a counterexample prints as a number rather than a whole file. */
const baseIndex = fc.nat({ max: 3 });

/** Write `bytes` to a fresh file and read it back guarded. */
function readBytes(dir: string, bytes: Buffer): Snapshot | { code: string } {
  const file = path.join(dir, 'seg-1.seg');
  fs.writeFileSync(file, bytes);
  return readGuarded(file);
}

// ------------------------------------------------------------------ byte-level damage

type Mutation =
  | { kind: 'flip'; flips: { pos: number; bit: number }[] }
  | { kind: 'truncate'; keep: number }
  | { kind: 'extend'; garbage: Uint8Array }
  | { kind: 'overwrite'; pos: number; bytes: Uint8Array }
  | { kind: 'u32'; at: 'any' | 'version' | 'headerLength' | 'headerCrc'; pos: number; value: number };

const nastyU32 = fc.oneof(fc.constantFrom(0, 1, 15, 16, 17, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 1 << 30), fc.nat({ max: 0xffffffff }));

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), flips: fc.array(fc.record({ pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), { minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), garbage: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('overwrite' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.constantFrom('any' as const, 'version' as const, 'headerLength' as const, 'headerCrc' as const), pos: fc.nat(), value: nastyU32 }),
);

function mutate(buf: Buffer, m: Mutation): Buffer {
  const out = Buffer.from(buf);
  switch (m.kind) {
    case 'flip':
      if (out.length > 0) for (const f of m.flips) out[f.pos % out.length]! ^= 1 << f.bit;
      return out;
    case 'truncate':
      return out.subarray(0, out.length === 0 ? 0 : m.keep % out.length);
    case 'extend':
      return Buffer.concat([out, m.garbage]);
    case 'overwrite':
      if (out.length > 0) out.set(m.bytes.subarray(0, out.length - (m.pos % out.length)), m.pos % out.length);
      return out;
    case 'u32': {
      if (out.length < PROLOGUE_BYTES + FOOTER_BYTES) return out;
      const at = { any: m.pos % (out.length - 3), version: 8, headerLength: out.length - FOOTER_BYTES, headerCrc: out.length - FOOTER_BYTES + 4 }[m.at];
      out.writeUInt32LE(m.value, at);
      return out;
    }
  }
}

describe('SegmentFile on damaged files', () => {
  it('pristine segments read back exactly as written', () => {
    expect(bases.map((b) => b.name)).toEqual(['small', 'empty', 'tombstones-only', 'wide']);
    const dir = tempDir();
    for (const b of bases) expect(readBytes(dir, b.bytes)).toEqual(b.snapshot);
    expect(bases[0]!.snapshot.ids).toHaveLength(6);
    expect(bases[0]!.snapshot.tombstones).toEqual([['gone-1', 90], ['gone-2', 130]]);
  });

  it('flipped bits, truncation, appended garbage and rewritten u32 fields give STORAGE_CORRUPT or exactly the data written', () => {
    const dir = tempDir();
    let refused = 0;
    fc.assert(
      fc.property(baseIndex, fc.array(mutation, { minLength: 1, maxLength: 3 }), (i, mutations) => {
        const b = bases[i]!;
        const bytes = mutations.reduce(mutate, b.bytes);
        const out = expectReadOrCorrupt(readBytes(dir, bytes));
        // Every byte but the prologue's reserved word is checksummed or checked: a read that
        // succeeds returns what the writer wrote, never silently damaged data.
        if (out === null) refused += 1;
        else expect(out).toEqual(b.snapshot);
      }),
      { seed: 0x5e9_0001, numRuns: 1500 },
    );
    expect(refused).toBeGreaterThan(1200);
  });

  it('a missing file and a directory in its place fail with coded errors', () => {
    const dir = tempDir();
    const missing = thrownBy(() => SegmentFile.open(path.join(dir, 'nope.seg')));
    expect(missing).toBeInstanceOf(AkiError);
    expect(missing).toMatchObject({ code: 'STORAGE_CORRUPT' });
    fs.mkdirSync(path.join(dir, 'seg-2.seg'));
    expect(thrownBy(() => SegmentFile.open(path.join(dir, 'seg-2.seg')))).toMatchObject({ code: expect.stringMatching(/^STORAGE_(CORRUPT|IO)$/) as unknown });
  });
});

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

// ------------------------------------------------------------------ header fields rewritten, checksum fixed up

/** Split a segment into the bytes before its header and the header itself. */
function splitHeader(bytes: Buffer): { body: Buffer; header: Record<string, unknown> } {
  const len = bytes.readUInt32LE(bytes.length - FOOTER_BYTES);
  const start = bytes.length - FOOTER_BYTES - len;
  return { body: bytes.subarray(0, start), header: JSON.parse(bytes.subarray(start, start + len).toString('utf8')) as Record<string, unknown> };
}

/** `body` followed by `header` and a footer whose length and checksum match it. */
function withHeader(body: Buffer, header: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(header) ?? 'undefined', 'utf8');
  const footer = Buffer.alloc(FOOTER_BYTES);
  footer.writeUInt32LE(json.length, 0);
  footer.writeUInt32LE(crc32(json), 4);
  END_MAGIC.copy(footer, 8);
  return Buffer.concat([body, json, footer]);
}

/** Every path into the header, objects and leaves alike. */
function pathsOf(v: unknown, prefix: string[] = []): string[][] {
  if (!isJsonObject(v)) return [prefix];
  return [prefix, ...Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => pathsOf(x, [...prefix, k]))];
}

function setAt(root: unknown, p: readonly string[], value: unknown, remove: boolean): unknown {
  if (p.length === 0) return value;
  const copy = { ...(root as Record<string, unknown>) };
  const [k, ...rest] = p as [string, ...string[]];
  if (rest.length === 0 && remove) delete copy[k];
  else copy[k] = setAt(copy[k], rest, value, remove);
  return copy;
}

describe('SegmentFile with rewritten header fields (header checksum recomputed)', () => {
  it('gives STORAGE_CORRUPT or exactly the data written, never allocates past the file size, never crashes', () => {
    const dir = tempDir();
    const nasty = fc.oneof(
      fc.constantFrom(-1, 0, 1, 0.5, 3, 15, 16, 17, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, 2 ** 64, -(2 ** 40), 1e308, null, '', '16', true, [], {}, [0, 1]),
      fc.integer(),
      fc.integer({ min: 0, max: 5000 }),
      fc.double(),
      fc.jsonValue({ maxDepth: 2 }),
    );
    let refused = 0;
    fc.assert(
      fc.property(baseIndex, fc.array(fc.record({ path: fc.nat(), value: nasty, remove: fc.boolean() }), { minLength: 1, maxLength: 3 }), (i, edits) => {
        const b = bases[i]!;
        const { body, header } = splitHeader(b.bytes);
        let edited: unknown = header;
        for (const e of edits) {
          const paths = pathsOf(edited);
          edited = setAt(edited, paths[e.path % paths.length]!, e.value, e.remove);
        }
        const out = expectReadOrCorrupt(readBytes(dir, withHeader(body, edited)));
        if (out === null) refused += 1;
        else expect(out).toEqual(b.snapshot);
      }),
      { seed: 0x5e9_0002, numRuns: 1500 },
    );
    expect(refused).toBeGreaterThan(1000);
  });

  it('a section length or offset claiming up to 2^40 bytes is refused before anything that size is allocated', () => {
    const dir = tempDir();
    const huge = fc.constantFrom(2 ** 30, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 53 - 1);
    fc.assert(
      fc.property(baseIndex, fc.constantFrom('vectors', 'lsns', 'keys', 'docs', 'tombs'), fc.constantFrom('length', 'offset'), huge, (i, section, field, value) => {
        const b = bases[i]!;
        const { body, header } = splitHeader(b.bytes);
        const edited = setAt(header, ['sections', section, field], value, false);
        expect(readBytes(dir, withHeader(body, edited))).toEqual({ code: 'STORAGE_CORRUPT' });
      }),
      { seed: 0x5e9_0003, numRuns: 300 },
    );
  });
});

// ------------------------------------------------------------------ crafted files: every checksum valid, contents arbitrary

/** A file in the documented layout from raw section bytes, with every checksum valid. */
function craft(sections: { vectors: Buffer; lsns: Buffer; keys: Buffer; docs: Buffer; tombs: Buffer }, fields: Record<string, unknown>): Buffer {
  const prologue = Buffer.alloc(PROLOGUE_BYTES);
  MAGIC.copy(prologue, 0);
  prologue.writeUInt32LE(1, 8);
  const parts: Buffer[] = [prologue];
  let pos = PROLOGUE_BYTES;
  const placed: Record<string, { offset: number; length: number; crc: number }> = {};
  for (const name of ['vectors', 'lsns', 'keys', 'docs', 'tombs'] as const) {
    const buf = sections[name];
    placed[name] = { offset: pos, length: buf.length, crc: crc32(buf) };
    parts.push(buf);
    pos += buf.length;
  }
  return withHeader(Buffer.concat(parts), { formatVersion: 1, ...fields, sections: placed });
}

const f64 = (values: readonly number[]): Buffer => Buffer.from(Float64Array.from(values).buffer);

describe('SegmentFile on crafted files whose checksums all match', () => {
  it('returns well-formed data or STORAGE_CORRUPT whatever the sections hold, and exactly the input when it is consistent', () => {
    const dir = tempDir();
    const anyJson = fc.jsonValue({ maxDepth: 3 });
    const text = fc.string({ maxLength: 6 });
    const meta = fc.option(fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }), { nil: null });
    const goodRow = fc.tuple(text, meta, fc.option(text, { nil: null }));
    const oddRow = fc.oneof(anyJson, fc.tuple(anyJson, anyJson, anyJson), fc.tuple(text, anyJson, anyJson), fc.string({ minLength: 1, maxLength: 3 }), fc.tuple(text, meta));
    const oddNumber = fc.oneof(fc.double(), fc.constantFrom(-1, 0.5, 2 ** 53, -0, Number.NaN, Number.POSITIVE_INFINITY));
    const input = fc.record({
      dimension: fc.integer({ min: 1, max: 4 }),
      rows: fc.array(fc.record({ row: goodRow, lsn: fc.integer({ min: 1, max: 1000 }), keyStep: fc.integer({ min: 1, max: 5 }) }), { maxLength: 5 }),
      tombs: fc.array(fc.tuple(text, fc.integer({ min: 1, max: 1000 })), { maxLength: 3 }),
      vectorSeed: fc.float32Array({ maxLength: 24 }),
      // Each "bad" entry replaces one part of an otherwise consistent file.
      bad: fc.option(
        fc.oneof(
          fc.record({ part: fc.constant('docs' as const), value: fc.oneof(anyJson, fc.array(oddRow, { maxLength: 5 })) }),
          fc.record({ part: fc.constant('docsText' as const), value: fc.string({ maxLength: 12 }) }),
          fc.record({ part: fc.constant('tombs' as const), value: fc.oneof(anyJson, fc.array(fc.tuple(anyJson, anyJson), { maxLength: 3 }), fc.array(fc.tuple(text, oddNumber), { minLength: 1, maxLength: 3 })) }),
          fc.record({ part: fc.constant('lsnValues' as const), value: fc.array(oddNumber, { minLength: 1, maxLength: 5 }) }),
          fc.record({ part: fc.constant('keyValues' as const), value: fc.array(oddNumber, { minLength: 1, maxLength: 5 }) }),
          fc.record({ part: fc.constant('rawBytes' as const), which: fc.constantFrom('vectors' as const, 'lsns' as const, 'keys' as const), value: fc.uint8Array({ maxLength: 41 }) }),
          fc.record({ part: fc.constant('field' as const), which: fc.constantFrom('rowCount', 'dimension', 'tombstoneCount', 'minLsn', 'maxLsn', 'formatVersion'), value: fc.oneof(fc.integer({ min: -2, max: 8 }), oddNumber) }),
        ),
        { nil: null, freq: 3 },
      ),
    });
    let consistent = 0;
    let oddAccepted = 0;
    fc.assert(
      fc.property(input, ({ dimension, rows, tombs, vectorSeed, bad }) => {
        const n = rows.length;
        let key = 0;
        const keys = rows.map((r) => (key += r.keyStep));
        const lsns = rows.map((r) => r.lsn);
        const all = [...lsns, ...tombs.map((t) => t[1])];
        const vectors = Float32Array.from({ length: n * dimension }, (_, i) => vectorSeed[i % Math.max(1, vectorSeed.length)] ?? i);
        const sections = {
          vectors: Buffer.from(vectors.buffer),
          lsns: f64(lsns),
          keys: f64(keys),
          docs: Buffer.from(JSON.stringify(rows.map((r) => r.row)), 'utf8'),
          tombs: Buffer.from(JSON.stringify(tombs), 'utf8'),
        };
        const fields: Record<string, unknown> = { dimension, rowCount: n, tombstoneCount: tombs.length, minLsn: all.length > 0 ? Math.min(...all) : 0, maxLsn: all.length > 0 ? Math.max(...all) : 0 };
        if (bad !== null) {
          switch (bad.part) {
            case 'docs':
            case 'tombs':
              sections[bad.part] = Buffer.from(JSON.stringify(bad.value), 'utf8');
              break;
            case 'docsText':
              sections.docs = Buffer.from(bad.value, 'utf8');
              break;
            case 'lsnValues':
            case 'keyValues': {
              const target = bad.part === 'lsnValues' ? lsns.slice() : keys.slice();
              bad.value.forEach((v, i) => {
                if (target.length > 0) target[i % target.length] = v;
              });
              sections[bad.part === 'lsnValues' ? 'lsns' : 'keys'] = f64(target);
              break;
            }
            case 'rawBytes':
              sections[bad.which] = Buffer.from(bad.value);
              break;
            case 'field':
              fields[bad.which] = bad.value;
              break;
          }
        }
        const out = expectReadOrCorrupt(readBytes(dir, craft(sections, fields)));
        if (bad === null) {
          // A consistent file must read back exactly.
          expect(out).not.toBeNull();
          // JSON has no -0: compare with the rows as JSON gives them back.
          const written = JSON.parse(sections.docs.toString('utf8')) as [string, Metadata | null, string | null][];
          expect(out!.ids).toEqual(written.map((r) => r[0]));
          expect(out!.metadata).toEqual(written.map((r) => r[1]));
          expect(out!.texts).toEqual(written.map((r) => r[2]));
          expect(out!.keys).toEqual(keys);
          expect(out!.lsns).toEqual(lsns);
          expect(out!.tombstones).toEqual(tombs);
          expect(out!.vectors).toBe(hex(vectors));
          consistent += 1;
        } else if (out !== null) {
          oddAccepted += 1;
        }
      }),
      { seed: 0x5e9_0004, numRuns: 2000 },
    );
    expect(consistent).toBeGreaterThan(300);
    // Some "bad" parts are harmless (an empty docs array for zero rows, a key rewritten to a value
    // that keeps the order); the property above checked those were read correctly.
    expect(oddAccepted).toBeGreaterThan(0);
  });
});
