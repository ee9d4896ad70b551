import type { Metadata } from '../index/filter.js';
import { ColumnCache } from '../index/filter-columns.js';
import { inverseNorm, type Metric } from '../index/metric.js';
import type { HnswIndex } from '../index/hnsw-index.js';
import type { SegmentFile, SegmentData } from '../storage/segment-file.js';
import type { SegmentEntry } from '../storage/manifest.js';

/**
 * An open immutable segment plus its mutable liveness: `alive[row]` is cleared when a newer
 * write supersedes or deletes the row. Raw segments (no index) keep vectors in memory;
 * indexed segments read vectors from the file on demand.
 */
export class Segment {
  readonly entry: SegmentEntry;
  readonly file: SegmentFile;
  readonly ids: string[];
  readonly metadata: (Metadata | null)[];
  readonly texts: (string | null)[];
  readonly lsns: Float64Array;
  readonly keys: Float64Array;
  readonly tombstones: [string, number][];
  readonly alive: Uint8Array;
  aliveCount: number;
  readonly index: HnswIndex | null;
  readonly vectors: Float32Array | null;
  readonly invNorms: Float64Array | null;
  readonly dimension: number;
  /** Metadata laid out by field for filter scans. */
  readonly columns: ColumnCache;
  /** Dense key -> row table when keys are compact enough (the common case); else binary search. */
  readonly #keyRows: Int32Array | null;
  readonly #minKey: number;

  constructor(entry: SegmentEntry, file: SegmentFile, data: SegmentData, index: HnswIndex | null, vectors: Float32Array | null, metric: Metric) {
    this.entry = entry;
    this.file = file;
    this.ids = data.ids;
    this.metadata = data.metadata;
    this.texts = data.texts;
    this.lsns = data.lsns;
    this.keys = data.keys;
    this.tombstones = data.tombstones;
    this.alive = new Uint8Array(data.ids.length);
    this.aliveCount = 0;
    this.index = index;
    this.vectors = vectors;
    this.dimension = data.header.dimension;
    this.columns = new ColumnCache(data.metadata);
    if (vectors) {
      const n = data.ids.length;
      this.invNorms = new Float64Array(n);
      for (let i = 0; i < n; i++) this.invNorms[i] = inverseNorm(metric, vectors, i * this.dimension, this.dimension);
    } else {
      this.invNorms = null;
    }
    const n = data.keys.length;
    this.#minKey = n > 0 ? data.keys[0]! : 0;
    const span = n > 0 ? data.keys[n - 1]! - this.#minKey + 1 : 0;
    if (n > 0 && span <= n * 4) {
      this.#keyRows = new Int32Array(span).fill(-1);
      for (let i = 0; i < n; i++) this.#keyRows[data.keys[i]! - this.#minKey] = i;
    } else {
      this.#keyRows = null;
    }
  }

  get rowCount(): number {
    return this.ids.length;
  }

  markAlive(row: number): void {
    if (this.alive[row] === 0) {
      this.alive[row] = 1;
      this.aliveCount += 1;
    }
  }

  markDead(row: number): void {
    if (this.alive[row] === 1) {
      this.alive[row] = 0;
      this.aliveCount -= 1;
    }
  }

  /** Row holding `key`, or -1. Keys ascend within a segment. */
  rowOfKey(key: number): number {
    if (this.#keyRows) {
      const at = key - this.#minKey;
      return at >= 0 && at < this.#keyRows.length ? this.#keyRows[at]! : -1;
    }
    const keys = this.keys;
    let lo = 0;
    let hi = keys.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const k = keys[mid]!;
      if (k === key) return mid;
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Vectors of ascending rows, packed. */
  readVectors(rows: ArrayLike<number>): Float32Array {
    if (this.vectors) {
      const d = this.dimension;
      const out = new Float32Array(rows.length * d);
      for (let i = 0; i < rows.length; i++) out.set(this.vectors.subarray(rows[i]! * d, (rows[i]! + 1) * d), i * d);
      return out;
    }
    return this.file.readVectorRows(rows);
  }

  close(): void {
    this.file.close();
  }
}
