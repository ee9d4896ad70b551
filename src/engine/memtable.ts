import type { Metadata } from '../index/filter.js';

/** A memtable entry: the newest version of one id, or a tombstone (vector null). */
export interface MemEntry {
  lsn: number;
  vector: Float32Array | null;
  metadata: Metadata | null;
  text: string | null;
  invNorm: number;
}

/** In-memory table of the newest writes, exact-scanned by queries. Not durable by itself: the WAL is. */
export class Memtable {
  readonly entries = new Map<string, MemEntry>();
  /** Operations applied (every upserted or deleted id counts one). */
  ops = 0;
  /** Last LSN of the WAL file this memtable was built from; set when it is frozen. */
  walBoundary = 0;

  set(id: string, entry: MemEntry): void {
    this.entries.set(id, entry);
    this.ops += 1;
  }

  get size(): number {
    return this.entries.size;
  }
}
