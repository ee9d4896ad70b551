import type { Metadata } from '../index/filter.js';

/** A memtable entry: the newest version of one id, or a tombstone (vector null). */
export interface MemEntry {
  lsn: number;
  /** A view into the memtable's vector blocks once `set` has taken the entry. */
  vector: Float32Array | null;
  metadata: Metadata | null;
  text: string | null;
  invNorm: number;
  /** Its row in the memtable's vector blocks (set by `set`); -1 for a tombstone. */
  row: number;
}

/** One block of the vector arena, as the query scan sees it. */
export interface VectorBlock {
  /** `filled` vectors from offset 0; the array's buffer starts at its first vector. */
  vectors: Float32Array;
  /** Row number of the block's first vector. */
  firstRow: number;
  filled: number;
  /** Rows of this block superseded or deleted since they were written. */
  dead: number;
}

/** Rows of the first block; each next block doubles, up to `MAX_BLOCK_ROWS`. */
const FIRST_BLOCK_ROWS = 64;
const MAX_BLOCK_ROWS = 1024;

/**
 * In-memory table of the newest writes, exact-scanned by queries. Not durable by itself: the WAL
 * is. Vectors are copied into blocks that never move (64, 128, ... then 1024 rows each), so a
 * query ranks a whole block with one call of the SIMD kernel; each row remembers its id until a
 * newer write of that id, or a delete, kills it.
 */
export class Memtable {
  readonly entries = new Map<string, MemEntry>();
  /** Operations applied (every upserted or deleted id counts one). */
  ops = 0;
  /** Last LSN of the WAL file this memtable was built from; set when it is frozen. */
  walBoundary = 0;
  readonly #dim: number;
  readonly #blocks: VectorBlock[] = [];
  /** Per row: the id it holds, or null once dead. */
  readonly #rowIds: (string | null)[] = [];
  /** Per row: its entry while live. */
  readonly #rowEntries: (MemEntry | null)[] = [];

  constructor(dimension: number) {
    this.#dim = dimension;
  }

  /** Take `entry` as the newest version of `id`; its vector is copied into the arena and replaced by a view of the copy. */
  set(id: string, entry: MemEntry): void {
    const prev = this.entries.get(id)?.row ?? -1;
    if (prev >= 0) {
      this.#rowIds[prev] = null;
      this.#rowEntries[prev] = null;
      this.#blockOf(prev).dead += 1;
    }
    entry.row = -1;
    if (entry.vector !== null) {
      const row = this.#rowIds.length;
      let block = this.#blocks.at(-1);
      if (block === undefined || block.filled === block.vectors.length / this.#dim) {
        const rows = block === undefined ? FIRST_BLOCK_ROWS : Math.min(MAX_BLOCK_ROWS, (block.vectors.length / this.#dim) * 2);
        block = { vectors: new Float32Array(rows * this.#dim), firstRow: row, filled: 0, dead: 0 };
        this.#blocks.push(block);
      }
      const off = block.filled * this.#dim;
      block.vectors.set(entry.vector, off);
      entry.vector = block.vectors.subarray(off, off + this.#dim);
      block.filled += 1;
      this.#rowIds.push(id);
      this.#rowEntries.push(entry);
      entry.row = row;
    }
    this.entries.set(id, entry);
    this.ops += 1;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The vector blocks, oldest first. */
  get blocks(): readonly VectorBlock[] {
    return this.#blocks;
  }

  /** The id `row` holds, or null when it is dead. */
  idAt(row: number): string | null {
    return this.#rowIds[row] ?? null;
  }

  /** The entry `row` holds, or null when it is dead. */
  entryAt(row: number): MemEntry | null {
    return this.#rowEntries[row] ?? null;
  }

  /** The block holding `row`: the last whose first row is not after it (binary search; blocks are in row order). */
  #blockOf(row: number): VectorBlock {
    let lo = 0;
    let hi = this.#blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#blocks[mid]!.firstRow <= row) lo = mid;
      else hi = mid - 1;
    }
    return this.#blocks[lo]!;
  }
}
