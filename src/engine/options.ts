import { availableParallelism } from 'node:os';
import type { Quantization } from '../index/hnsw-index.js';
import { DEFAULT_FILTER_LIMITS, type FilterLimits } from '../index/filter.js';

/** Something that logs like pino: (context object, message). */
export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Tuning and limits of the storage engine; every field has a safe default. */
export interface EngineOptions {
  hnsw: {
    /** Graph degree (HNSW M). */
    m: number;
    efConstruction: number;
    /** Default search breadth; a query may pass its own. */
    efSearch: number;
    /** Segments with fewer live rows than this are exact-scanned instead of indexed. */
    threshold: number;
    /** Scalar type of the vectors inside the graph; results are ranked with float32 either way. */
    quantization: Quantization;
    /** Threads an index build may use. */
    buildThreads: number;
  };
  compaction: {
    /** Flush the memtable to a segment when the WAL holds this many bytes. */
    thresholdBytes: number;
    /** ... or this many operations. */
    thresholdOps: number;
    /** Merge when a collection has more segments than this. */
    maxSegments: number;
    /** Run flushes, merges and index builds in the background. */
    enableBackground: boolean;
    /** Flush and index what is pending once writes pause for this long. */
    idleFlushMs: number;
  };
  limits: {
    maxBatchDocuments: number;
    maxMetadataBytes: number;
    maxTextBytes: number;
    maxIdBytes: number;
    maxTopK: number;
    filter: FilterLimits;
  };
  /** fsync the WAL before acknowledging; only benchmarks of the fsync cost turn this off. */
  walSync: boolean;
  logger: Logger;
  /** Hooks the engine calls as things happen (metrics attach here). They must not throw. */
  events: EngineEvents;
}

/** What the engine reports as it works. */
export interface EngineEvents {
  /** An HNSW index was built (full) or extended (incremental) for a segment of `rows` rows. */
  indexBuilt?: (e: { collection: string; rows: number; seconds: number; incremental: boolean }) => void;
  /** Documents were upserted and acknowledged. */
  upserted?: (e: { collectionId: string; tieringPolicy: string; documents: number }) => void;
  /** Segments were merged into one. */
  merged?: (e: { collectionId: string; tieringPolicy: string; inputs: number; rows: number }) => void;
}

/** Options as callers pass them: any subset. */
export type EngineOptionsInput = {
  [K in keyof EngineOptions]?: EngineOptions[K] extends object ? (EngineOptions[K] extends Logger ? Logger : Partial<EngineOptions[K]>) : EngineOptions[K];
};

/** Logs warnings and errors to stderr as JSON lines; used when no logger is given. */
export const stderrLogger: Logger = {
  info: () => undefined,
  warn: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'warn', msg, ...obj })}\n`),
  error: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'error', msg, ...obj })}\n`),
};

export function resolveEngineOptions(input: EngineOptionsInput = {}): EngineOptions {
  return {
    hnsw: {
      m: 16,
      efConstruction: 64,
      efSearch: 64,
      threshold: 10_000,
      quantization: 'f16',
      buildThreads: availableParallelism(),
      ...input.hnsw,
    },
    compaction: {
      thresholdBytes: 100 * 1024 * 1024,
      thresholdOps: 10_000,
      maxSegments: 8,
      enableBackground: true,
      idleFlushMs: 1000,
      ...input.compaction,
    },
    limits: {
      maxBatchDocuments: 10_000,
      maxMetadataBytes: 64 * 1024,
      maxTextBytes: 1024 * 1024,
      maxIdBytes: 1024,
      maxTopK: 1000,
      filter: DEFAULT_FILTER_LIMITS,
      ...input.limits,
    },
    walSync: input.walSync ?? true,
    logger: input.logger ?? stderrLogger,
    events: { ...input.events },
  };
}
