import { crc32 } from 'node:zlib';
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import path from 'node:path';
import { AkiError } from '../errors.js';
import type { Metadata } from '../index/filter.js';
import { fsyncDir } from './fs-util.js';

/**
 * Segment file layout (little-endian), immutable once renamed into place:
 *   prologue  "AKISEG\0\0" | u32 format version | u32 reserved          (16 bytes)
 *   vectors   rowCount * dimension float32                               (starts at 16)
 *   lsns      rowCount float64 (integers)
 *   keys      rowCount float64 (row keys: stable ids used by the HNSW index)
 *   docs      JSON [[id, metadata|null, text|null], ...]
 *   tombs     JSON [[id, lsn], ...]
 *   header    JSON SegmentHeader (section offsets, lengths and crc32s)
 *   footer    u32 header length | u32 crc32(header) | "AKISEGND"
 */
const MAGIC = Buffer.from('AKISEG\0\0', 'latin1');
const END_MAGIC = Buffer.from('AKISEGND', 'latin1');
export const SEGMENT_FORMAT_VERSION = 1;
const PROLOGUE_BYTES = 16;
const FOOTER_BYTES = 16;

interface Section {
  offset: number;
  length: number;
  crc: number;
}

export interface SegmentHeader {
  formatVersion: number;
  dimension: number;
  rowCount: number;
  tombstoneCount: number;
  minLsn: number;
  maxLsn: number;
  sections: { vectors: Section; lsns: Section; keys: Section; docs: Section; tombs: Section };
}

/** One live row of a segment as handed to the writer. */
export interface SegmentRowInput {
  id: string;
  key: number;
  lsn: number;
  metadata: Metadata | null;
  text: string | null;
}

/** A row's vector source for streaming writes: returns rows [start, end) as float32. */
export type VectorSource = (start: number, end: number) => Float32Array;

const VECTOR_CHUNK_ROWS = 4096;

/**
 * Write a segment file durably (temp file, fsync, rename, fsync dir). Rows must be in ascending
 * key order. Vectors are streamed in chunks so merges never hold a whole segment's vectors.
 */
export async function writeSegmentFile(
  file: string,
  dimension: number,
  rows: readonly SegmentRowInput[],
  vectors: VectorSource,
  tombstones: readonly (readonly [string, number])[],
): Promise<{ bytes: number; header: SegmentHeader }> {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w');
  let pos = 0;
  let header: SegmentHeader | undefined;
  const write = async (buf: Buffer | Uint8Array): Promise<void> => {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await fh.write(buf, done, buf.length - done, pos + done);
      done += bytesWritten;
    }
    pos += buf.length;
  };
  const section = async (buf: Buffer | Uint8Array): Promise<Section> => {
    const offset = pos;
    await write(buf);
    return { offset, length: buf.length, crc: crc32(buf) };
  };
  try {
    const prologue = Buffer.alloc(PROLOGUE_BYTES);
    MAGIC.copy(prologue, 0);
    prologue.writeUInt32LE(SEGMENT_FORMAT_VERSION, 8);
    await write(prologue);

    const vecOffset = pos;
    let vecCrc = 0;
    for (let start = 0; start < rows.length; start += VECTOR_CHUNK_ROWS) {
      const end = Math.min(rows.length, start + VECTOR_CHUNK_ROWS);
      const chunk = vectors(start, end);
      if (chunk.length !== (end - start) * dimension) throw new AkiError('INTERNAL', { file, start, end }, 'Vector source returned the wrong number of values');
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      vecCrc = crc32(bytes, vecCrc);
      await write(bytes);
    }
    const vectorsSection: Section = { offset: vecOffset, length: pos - vecOffset, crc: vecCrc };

    const lsns = new Float64Array(rows.length);
    const keys = new Float64Array(rows.length);
    let minLsn = Number.MAX_SAFE_INTEGER;
    let maxLsn = 0;
    rows.forEach((r, i) => {
      lsns[i] = r.lsn;
      keys[i] = r.key;
      if (i > 0 && r.key <= rows[i - 1]!.key) throw new AkiError('INTERNAL', { file }, 'Segment rows must be in ascending key order');
      minLsn = Math.min(minLsn, r.lsn);
      maxLsn = Math.max(maxLsn, r.lsn);
    });
    for (const [, lsn] of tombstones) {
      minLsn = Math.min(minLsn, lsn);
      maxLsn = Math.max(maxLsn, lsn);
    }
    if (minLsn > maxLsn) minLsn = maxLsn;
    const lsnsSection = await section(new Uint8Array(lsns.buffer));
    const keysSection = await section(new Uint8Array(keys.buffer));
    const docsSection = await section(Buffer.from(JSON.stringify(rows.map((r) => [r.id, r.metadata, r.text])), 'utf8'));
    const tombsSection = await section(Buffer.from(JSON.stringify(tombstones), 'utf8'));
    header = {
      formatVersion: SEGMENT_FORMAT_VERSION,
      dimension,
      rowCount: rows.length,
      tombstoneCount: tombstones.length,
      minLsn,
      maxLsn,
      sections: { vectors: vectorsSection, lsns: lsnsSection, keys: keysSection, docs: docsSection, tombs: tombsSection },
    };
    const headerBuf = Buffer.from(JSON.stringify(header), 'utf8');
    await write(headerBuf);
    const footer = Buffer.alloc(FOOTER_BYTES);
    footer.writeUInt32LE(headerBuf.length, 0);
    footer.writeUInt32LE(crc32(headerBuf), 4);
    END_MAGIC.copy(footer, 8);
    await write(footer);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await fsyncDir(path.dirname(file));
  if (header === undefined) throw new AkiError('INTERNAL', { file }, 'Segment header was not written');
  return { bytes: pos, header };
}

/** The in-memory part of a segment: everything but the vectors, which stay on disk. */
export interface SegmentData {
  header: SegmentHeader;
  ids: string[];
  metadata: (Metadata | null)[];
  texts: (string | null)[];
  lsns: Float64Array;
  keys: Float64Array;
  tombstones: [string, number][];
}

function corrupt(file: string, what: string, offset?: number): AkiError {
  return new AkiError('STORAGE_CORRUPT', { file, section: what, ...(offset === undefined ? {} : { offset }) }, `Segment ${path.basename(file)}: ${what} failed its integrity check`);
}

function readExact(fd: number, length: number, position: number, file: string): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, buf, done, length - done, position + done);
    } catch (err) {
      throw new AkiError('STORAGE_IO', { file, position: position + done }, `Reading segment ${path.basename(file)} failed`, { cause: err });
    }
    if (n === 0) break;
    done += n;
  }
  if (done !== length) throw new AkiError('STORAGE_CORRUPT', { file, position, length }, 'Unexpected end of segment file');
  return buf;
}

const SECTION_NAMES = ['vectors', 'lsns', 'keys', 'docs', 'tombs'] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/**
 * `h` as a SegmentHeader, checked against the layout the writer produces: sections back to back
 * from the prologue up to the header at `headerStart`, sized by rowCount and dimension. Every
 * length read later is then bounded by the file's size.
 */
function checkHeader(file: string, h: unknown, headerStart: number): SegmentHeader {
  const bad = (what: string): AkiError => corrupt(file, `header ${what}`);
  if (!isObject(h)) throw bad('shape');
  if (h['formatVersion'] !== SEGMENT_FORMAT_VERSION) throw bad('formatVersion');
  const { dimension, rowCount, tombstoneCount, minLsn, maxLsn, sections } = h;
  if (!isCount(dimension) || dimension < 1) throw bad('dimension');
  if (!isCount(rowCount)) throw bad('rowCount');
  if (!isCount(tombstoneCount)) throw bad('tombstoneCount');
  if (!isCount(minLsn) || !isCount(maxLsn) || minLsn > maxLsn) throw bad('lsn range');
  if (!isObject(sections)) throw bad('sections');
  let pos = PROLOGUE_BYTES;
  for (const name of SECTION_NAMES) {
    const sec = sections[name];
    if (!isObject(sec) || sec['offset'] !== pos || !isCount(sec['length']) || sec['length'] > headerStart - pos) throw bad(name);
    const crc = sec['crc'];
    if (!isCount(crc) || crc > 0xffffffff) throw bad(`${name} crc`);
    pos += sec['length'];
  }
  if (pos !== headerStart) throw bad('section lengths');
  const s = sections as unknown as SegmentHeader['sections'];
  if (s.vectors.length !== rowCount * dimension * 4 || s.lsns.length !== rowCount * 8 || s.keys.length !== rowCount * 8) throw bad('row count');
  return h as unknown as SegmentHeader;
}

/** One row of the docs section as written: [id, metadata | null, text | null]. */
function isDocRow(v: unknown): v is [string, Metadata | null, string | null] {
  return Array.isArray(v) && v.length === 3 && typeof v[0] === 'string' && (v[1] === null || isObject(v[1])) && (v[2] === null || typeof v[2] === 'string');
}

function isTombstone(v: unknown): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && isCount(v[1]);
}

/**
 * An open segment file: rows' ids, LSNs, keys, metadata and tombstones in memory, vectors read
 * on demand. Every section's checksum is verified when it is first read.
 */
export class SegmentFile {
  readonly file: string;
  readonly #fd: number;
  readonly header: SegmentHeader;
  #closed = false;

  private constructor(file: string, fd: number, header: SegmentHeader) {
    this.file = file;
    this.#fd = fd;
    this.header = header;
  }

  /**
   * Open and verify the footer and header. Throws STORAGE_CORRUPT on any mismatch or a missing
   * file, STORAGE_IO when the file cannot be read.
   */
  static open(file: string): SegmentFile {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      // The manifest names every segment it opens: a missing one is lost data, not a transient fault.
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      throw new AkiError(missing ? 'STORAGE_CORRUPT' : 'STORAGE_IO', { file }, `Segment ${path.basename(file)} ${missing ? 'is missing' : 'cannot be opened'}`, { cause: err });
    }
    try {
      const size = fstatSync(fd).size;
      if (size < PROLOGUE_BYTES + FOOTER_BYTES) throw corrupt(file, 'size');
      const prologue = readExact(fd, PROLOGUE_BYTES, 0, file);
      if (!prologue.subarray(0, 8).equals(MAGIC)) throw corrupt(file, 'magic', 0);
      const version = prologue.readUInt32LE(8);
      if (version !== SEGMENT_FORMAT_VERSION) throw new AkiError('STORAGE_CORRUPT', { file, version }, `Unsupported segment format version ${version}`);
      const footer = readExact(fd, FOOTER_BYTES, size - FOOTER_BYTES, file);
      if (!footer.subarray(8).equals(END_MAGIC)) throw corrupt(file, 'footer', size - FOOTER_BYTES);
      const headerLen = footer.readUInt32LE(0);
      if (headerLen > size - PROLOGUE_BYTES - FOOTER_BYTES) throw corrupt(file, 'header length');
      const headerStart = size - FOOTER_BYTES - headerLen;
      const headerBuf = readExact(fd, headerLen, headerStart, file);
      if (crc32(headerBuf) !== footer.readUInt32LE(4)) throw corrupt(file, 'header');
      const header = checkHeader(file, JSON.parse(headerBuf.toString('utf8')), headerStart);
      return new SegmentFile(file, fd, header);
    } catch (err) {
      closeSync(fd);
      if (err instanceof AkiError) throw err;
      throw new AkiError('STORAGE_CORRUPT', { file }, `Segment ${path.basename(file)} is unreadable`, { cause: err });
    }
  }

  #section(name: keyof SegmentHeader['sections']): Buffer {
    const s = this.header.sections[name];
    const buf = readExact(this.#fd, s.length, s.offset, this.file);
    if (crc32(buf) !== s.crc) throw corrupt(this.file, name, s.offset);
    return buf;
  }

  /** A JSON section, parsed. */
  #json(name: 'docs' | 'tombs'): unknown {
    const buf = this.#section(name);
    try {
      return JSON.parse(buf.toString('utf8')) as unknown;
    } catch (err) {
      throw new AkiError('STORAGE_CORRUPT', { file: this.file, section: name }, `Segment ${path.basename(this.file)}: ${name} is not valid JSON`, { cause: err });
    }
  }

  /** The lsns or keys section: one non-negative safe integer a row, keys strictly ascending. */
  #integers(name: 'lsns' | 'keys'): Float64Array {
    const buf = this.#section(name);
    const out = new Float64Array(buf.length / 8);
    new Uint8Array(out.buffer).set(buf);
    for (let i = 0; i < out.length; i++) {
      const v = out[i]!;
      if (!isCount(v) || (name === 'keys' && i > 0 && v <= out[i - 1]!)) throw corrupt(this.file, name, this.header.sections[name].offset + i * 8);
    }
    return out;
  }

  /** Read and verify everything but the vectors. */
  readData(): SegmentData {
    const rowCount = this.header.rowCount;
    const docs = this.#json('docs');
    if (!Array.isArray(docs) || docs.length !== rowCount) throw corrupt(this.file, 'row count');
    if (!docs.every(isDocRow)) throw corrupt(this.file, 'docs');
    const lsns = this.#integers('lsns');
    const keys = this.#integers('keys');
    const ids = new Array<string>(rowCount);
    const metadata = new Array<Metadata | null>(rowCount);
    const texts = new Array<string | null>(rowCount);
    for (let i = 0; i < rowCount; i++) {
      const d = docs[i]!;
      ids[i] = d[0];
      metadata[i] = d[1];
      texts[i] = d[2];
    }
    const tombstones = this.#json('tombs');
    if (!Array.isArray(tombstones) || tombstones.length !== this.header.tombstoneCount || !tombstones.every(isTombstone)) throw corrupt(this.file, 'tombs');
    // The writer derives the header's LSN range from the rows and tombstones; a mismatch is damage.
    let minLsn = Number.MAX_SAFE_INTEGER;
    let maxLsn = 0;
    for (const l of lsns) {
      minLsn = Math.min(minLsn, l);
      maxLsn = Math.max(maxLsn, l);
    }
    for (const [, l] of tombstones) {
      minLsn = Math.min(minLsn, l);
      maxLsn = Math.max(maxLsn, l);
    }
    if (minLsn > maxLsn) minLsn = maxLsn;
    if (minLsn !== this.header.minLsn || maxLsn !== this.header.maxLsn) throw corrupt(this.file, 'lsn range');
    return { header: this.header, ids, metadata, texts, lsns, keys, tombstones };
  }

  /** Read and verify the row keys alone. */
  readKeys(): Float64Array {
    return this.#integers('keys');
  }

  /** Read and verify all vectors (rowCount * dimension). */
  readAllVectors(): Float32Array {
    const buf = this.#section('vectors');
    const out = new Float32Array(buf.length / 4);
    new Uint8Array(out.buffer).set(buf);
    return out;
  }

  /** Verify the vectors' checksum without keeping them. */
  verifyVectors(): void {
    const s = this.header.sections.vectors;
    const chunk = 16 << 20;
    let crc = 0;
    for (let off = 0; off < s.length; off += chunk) crc = crc32(readExact(this.#fd, Math.min(chunk, s.length - off), s.offset + off, this.file), crc);
    if (crc !== s.crc) throw corrupt(this.file, 'vectors', s.offset);
  }

  /** Vectors of rows [start, end), contiguous. */
  readVectorRange(start: number, end: number): Float32Array {
    const dim = this.header.dimension;
    const bytes = (end - start) * dim * 4;
    const out = new Float32Array((end - start) * dim);
    if (bytes === 0) return out;
    const buf = readExact(this.#fd, bytes, this.header.sections.vectors.offset + start * dim * 4, this.file);
    new Uint8Array(out.buffer).set(buf);
    return out;
  }

  /** Vectors of the given rows (ascending), packed in that order; nearby rows share one read. */
  readVectorRows(rows: ArrayLike<number>): Float32Array {
    const dim = this.header.dimension;
    const rowBytes = dim * 4;
    const out = new Float32Array(rows.length * dim);
    const outBytes = new Uint8Array(out.buffer);
    const base = this.header.sections.vectors.offset;
    let i = 0;
    while (i < rows.length) {
      let j = i + 1;
      // Coalesce runs whose gaps are small: one larger read beats many syscalls.
      while (j < rows.length && rows[j]! - rows[j - 1]! <= 4 && rows[j]! - rows[i]! < 1024) j++;
      const first = rows[i]!;
      const last = rows[j - 1]!;
      const buf = readExact(this.#fd, (last - first + 1) * rowBytes, base + first * rowBytes, this.file);
      for (let k = i; k < j; k++) {
        const src = (rows[k]! - first) * rowBytes;
        outBytes.set(buf.subarray(src, src + rowBytes), k * rowBytes);
      }
      i = j;
    }
    return out;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }
}
