/** AkiDB's public embedded API. */
export { AkiDB, DatabaseScope, DEFAULT_TENANT, DEFAULT_DATABASE, type OpenOptions, type CreateCollectionSpec } from './engine/database.js';
export { Collection, type DocumentInput, type Document, type QueryRequest, type QueryMatch, type CollectionInfo, type CollectionStats } from './engine/collection.js';
export type { CollectionRecord } from './catalog/catalog.js';
export type { EngineOptions, EngineOptionsInput, Logger } from './engine/options.js';
export type { Filter, Metadata } from './index/filter.js';
export type { Metric } from './index/metric.js';
export type { HnswParams, Quantization } from './index/hnsw-index.js';
export { AkiError, ERROR_CODES, isAkiError, type ErrorCode } from './errors.js';
