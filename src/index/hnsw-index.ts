import { createRequire } from 'node:module';
import type * as Usearch from 'usearch';
import { open, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Metric } from './metric.js';
import { fsyncDir } from '../storage/fs-util.js';

// usearch ships CommonJS with prebuilt binaries; this file is the only one that touches it.
const require = createRequire(import.meta.url);
const usearch = require('usearch') as typeof Usearch;

/** Scalar type the HNSW graph stores vectors in; exact distances always come from float32. */
export type Quantization = 'f32' | 'f16' | 'i8';
export const QUANTIZATIONS: readonly Quantization[] = ['f32', 'f16', 'i8'];

/** HNSW parameters of one collection. */
export interface HnswParams {
  m: number;
  efConstruction: number;
  efSearch: number;
  quantization: Quantization;
}

const METRIC_KIND: Record<Metric, string> = { cosine: 'cos', l2: 'l2sq', dot: 'ip' };

function newNative(dimension: number, metric: Metric, p: HnswParams): InstanceType<typeof usearch.Index> {
  return new usearch.Index({
    dimensions: dimension,
    metric: METRIC_KIND[metric] as never,
    quantization: p.quantization as never,
    connectivity: p.m,
    expansion_add: p.efConstruction,
    // usearch searches with max(expansion_search, count): the collection's efSearch is the floor,
    // and a query asking for more breadth asks for more results.
    expansion_search: p.efSearch,
    multi: false,
  });
}

/** Search hits: row keys and the index's distances (the conventions of metric.ts rawDistance). */
export interface IndexHits {
  keys: BigUint64Array;
  distances: Float32Array;
}

/**
 * A read-only HNSW graph over one segment's rows, opened from its index file.
 * Keys are the segment's row keys. Searches are synchronous and thread-safe in the native code.
 */
export class HnswIndex {
  readonly #native: InstanceType<typeof usearch.Index>;
  readonly file: string;
  /** Views are immutable, so the size is read once. */
  readonly size: number;
  readonly #defaultEf: number;

  private constructor(file: string, native: InstanceType<typeof usearch.Index>, defaultEf: number) {
    this.file = file;
    this.#native = native;
    this.size = native.size();
    this.#defaultEf = defaultEf;
  }

  /**
   * Open an index file built by buildHnswIndexFile. `load` reads it into anonymous memory
   * (measured faster for random graph walks than a file mapping, which gets no huge pages);
   * `view` memory-maps it (instant open, pages shared with the page cache).
   */
  static open(file: string, dimension: number, metric: Metric, params: HnswParams, mode: 'load' | 'view' = 'load'): HnswIndex {
    const native = newNative(dimension, metric, params);
    if (mode === 'view') native.view(file);
    else native.load(file);
    return new HnswIndex(file, native, params.efSearch);
  }

  /** The `count` nearest keys; the search explores max(count, efSearch, the index's default) candidates. */
  search(query: Float32Array, count: number, efSearch: number): IndexHits {
    const wanted = Math.min(efSearch > this.#defaultEf ? Math.max(count, efSearch) : count, Math.max(1, this.size));
    const r = this.#native.search(query, wanted, 1);
    return { keys: r.keys, distances: r.distances };
  }
}

/**
 * Exact top-`k` of `query` over `count` packed float32 vectors, with SIMD kernels; returns row
 * positions within `vectors` and raw distances (metric.ts conventions). Single-threaded: one
 * query's scan should not take every core from concurrent queries.
 */
export function exactTopK(vectors: Float32Array, dimension: number, query: Float32Array, k: number, metric: Metric): { rows: BigUint64Array; distances: Float32Array } {
  const count = vectors.length / dimension;
  // usearch's exactSearch reads typed arrays from the start of their buffer, ignoring
  // byteOffset (it does take their length): an array at offset 0 is used in place, a prefix of a
  // larger buffer included; any other is copied.
  const owned = (a: Float32Array): Float32Array => (a.byteOffset === 0 ? a : a.slice());
  const r = usearch.exactSearch(owned(vectors), owned(query), dimension, Math.min(k, count), METRIC_KIND[metric] as never, 1);
  return { rows: r.keys, distances: r.distances };
}

/** Where an index build gets its vectors: batches of (keys, vectors). */
export type VectorBatches = Iterable<{ keys: Float64Array; vectors: Float32Array }>;

export interface BuildIndexJob {
  indexFile: string;
  dimension: number;
  metric: Metric;
  params: HnswParams;
  threads: number;
  /** An existing index to extend instead of starting empty. */
  baseIndexFile?: string;
  /** Keys to remove from the base index (rows that died since it was built). */
  removeKeys?: readonly number[];
}

/**
 * Build (or extend) an HNSW index and write it durably to `job.indexFile` (temp, fsync, rename).
 * Runs synchronously in the calling thread: call it from a worker thread.
 */
export async function buildHnswIndexFile(job: BuildIndexJob, batches: VectorBatches): Promise<{ bytes: number; size: number }> {
  const native = newNative(job.dimension, job.metric, job.params);
  if (job.baseIndexFile !== undefined) {
    native.load(job.baseIndexFile);
    if (job.removeKeys && job.removeKeys.length > 0) native.remove(BigUint64Array.from(job.removeKeys, (k) => BigInt(k)));
  }
  for (const { keys, vectors } of batches) {
    if (keys.length === 0) continue;
    native.add(BigUint64Array.from(keys, (k) => BigInt(k)), vectors, job.threads);
  }
  const tmp = `${job.indexFile}.tmp`;
  native.save(tmp);
  const fh = await open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, job.indexFile);
  await fsyncDir(path.dirname(job.indexFile));
  return { bytes: (await stat(job.indexFile)).size, size: native.size() };
}
