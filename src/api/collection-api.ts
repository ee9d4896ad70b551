import { randomUUID } from 'node:crypto';
import { AkiError } from '../errors.js';
import type { AkiDB } from '../engine/database.js';
import type { Collection, DocumentInput, QueryMatch } from '../engine/collection.js';
import type { Metadata } from '../index/filter.js';

/** A collection as both wire protocols describe it. */
export interface CollectionView {
  collection_id: string;
  name: string;
  tenant: string;
  database: string;
  dimension: number;
  metric: string;
  index: { m: number; ef_construction: number; ef_search: number; quantization: string };
  document_count: number;
  created_at: string;
  tiering_policy: 'Memory' | 'MemoryS3' | 'S3Only';
}

/** A document as it arrives over the wire (REST JSON or decoded gRPC). */
export interface WireDocument {
  doc_id?: unknown;
  external_id?: unknown;
  vector?: unknown;
  metadata?: unknown;
  text?: unknown;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The collection `idOrName` names in a tenant and database: a `collection_id` (UUID) or a name.
 * An id that belongs to another tenant or database answers COLLECTION_NOT_FOUND, as if unknown.
 */
export async function resolveCollection(db: AkiDB, tenant: string, database: string, idOrName: string): Promise<Collection> {
  if (UUID.test(idOrName)) {
    try {
      const c = await db.getCollectionById(idOrName.toLowerCase());
      if (c.info.tenant === tenant && c.info.database === database) return c;
    } catch (err) {
      if (!(err instanceof AkiError && err.code === 'COLLECTION_NOT_FOUND')) throw err;
    }
  }
  return db.database(tenant, database).getCollection(idOrName);
}

export function describeCollection(c: Collection): CollectionView {
  const i = c.info;
  return {
    collection_id: i.collectionId,
    name: i.name,
    tenant: i.tenant,
    database: i.database,
    dimension: i.dimension,
    metric: i.metric,
    index: { m: i.index.m, ef_construction: i.index.efConstruction, ef_search: i.index.efSearch, quantization: i.index.quantization },
    document_count: c.stats().documents,
    created_at: i.createdAt,
    tiering_policy: i.tieringPolicy,
  };
}

/**
 * A vector from the wire: an array of numbers, or a base64 string of little-endian float32 values.
 * Element checks (finite, dimension) are the engine's; this only decodes.
 */
export function decodeVector(value: unknown, field: string): number[] | Float32Array {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'base64');
    // Node skips characters outside the alphabet, so a string with any decodes short: comparing
    // lengths rejects them without a per-character pass (a regex here cost a quarter of ingest).
    const pad = value.endsWith('==') ? 2 : value.endsWith('=') ? 1 : 0;
    if (value.length % 4 !== 0 || bytes.length !== (value.length / 4) * 3 - pad) throw new AkiError('INVALID_VECTOR', { field }, `${field}: not a base64 string (standard or URL-safe alphabet, padded)`);
    if (bytes.length === 0 || bytes.length % 4 !== 0) throw new AkiError('INVALID_VECTOR', { field }, `${field}: a base64 vector must decode to a whole number of float32 values`);
    const out = new Float32Array(bytes.length / 4);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  if (Array.isArray(value) || value instanceof Float32Array) return value as number[] | Float32Array;
  throw new AkiError('INVALID_VECTOR', { field }, `${field} must be an array of numbers or a base64 string of float32 values`);
}

/**
 * A wire document as the engine takes it. `doc_id` is the key; `external_id` is accepted as its
 * synonym (AkiDB 2.0 clients send it), and when both are given they must agree. With neither, a
 * random UUID is made.
 */
export function toDocumentInput(raw: WireDocument, index: number): DocumentInput {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new AkiError('INVALID_DOCUMENT', { index }, `Document ${index} must be an object`);
  const docId = optionalId(raw.doc_id, 'doc_id', index);
  const externalId = optionalId(raw.external_id, 'external_id', index);
  if (docId !== undefined && externalId !== undefined && docId !== externalId) throw new AkiError('INVALID_DOCUMENT', { index }, `Document ${index}: doc_id and external_id name the same key and must be equal when both are given`);
  if (raw.vector === undefined || raw.vector === null) throw new AkiError('INVALID_VECTOR', { index }, `Document ${index} needs a vector`);
  const doc: DocumentInput = { id: docId ?? externalId ?? randomUUID(), vector: decodeVector(raw.vector, `documents[${index}].vector`) };
  if (raw.metadata !== undefined && raw.metadata !== null) {
    if (typeof raw.metadata !== 'object' || Array.isArray(raw.metadata)) throw new AkiError('INVALID_DOCUMENT', { index }, `Document ${index}: metadata must be a JSON object`);
    doc.metadata = raw.metadata as Metadata;
  }
  if (raw.text !== undefined && raw.text !== null) {
    if (typeof raw.text !== 'string') throw new AkiError('INVALID_DOCUMENT', { index }, `Document ${index}: text must be a string`);
    doc.text = raw.text;
  }
  return doc;
}

function optionalId(value: unknown, field: string, index: number): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new AkiError('INVALID_DOCUMENT', { index, field }, `Document ${index}: ${field} must be a string`);
  return value;
}

/** A query match on the wire. */
export interface WireMatch {
  doc_id: string;
  external_id: string;
  score: number;
  distance: number;
  metadata?: Metadata | null;
  vector?: number[];
}

export function toWireMatch(m: QueryMatch): WireMatch {
  const out: WireMatch = { doc_id: m.id, external_id: m.id, score: m.score, distance: m.distance };
  if (m.metadata !== undefined) out.metadata = m.metadata;
  if (m.vector !== undefined) out.vector = m.vector;
  return out;
}
