import type { AkiConfig } from '../../config/config-schema.js';

/**
 * JSON schemas of the REST API. The routes validate with them and /openapi.json is generated
 * from them, so the document cannot drift from what the server accepts. Range checks the engine
 * makes with a more specific error code (vector values, metadata size) are left to it.
 */
export function restSchemas(cfg: AkiConfig) {
  const v = cfg.api.validation;
  const name = { type: 'string', minLength: 1, maxLength: v.collection_name_max_length, pattern: '^[A-Za-z0-9_.-]+$', description: 'Letters, digits, `_`, `.` and `-`' } as const;
  const vector = {
    description: 'An array of numbers, or a base64 string of little-endian float32 values',
    anyOf: [{ type: 'array', items: { type: 'number' }, minItems: 1, maxItems: v.vector_dimension_max }, { type: 'string', description: 'base64 (standard or URL-safe alphabet, padded) of little-endian float32 values' }],
  } as const;
  const metadata = { type: ['object', 'null'], additionalProperties: true, description: `JSON object, at most ${v.max_metadata_bytes} bytes` } as const;
  const filter = { type: 'object', additionalProperties: true, description: 'MongoDB-style filter on metadata (docs/filters.md)' } as const;
  const docId = { type: 'string', minLength: 1, description: 'The document key, at most 1024 bytes; made (a UUID) when absent' } as const;
  const document = {
    type: 'object',
    required: ['vector'],
    additionalProperties: false,
    properties: { doc_id: docId, external_id: { type: 'string', description: 'Synonym of doc_id for AkiDB 2.0 clients; must equal doc_id when both are given' }, vector, metadata, text: { type: ['string', 'null'] } },
  } as const;
  const index = {
    type: 'object',
    additionalProperties: false,
    properties: {
      m: { type: 'integer', minimum: 2, maximum: 128 },
      ef_construction: { type: 'integer', minimum: 8, maximum: 4096 },
      ef_search: { type: 'integer', minimum: 1, maximum: 10000 },
      quantization: { type: 'string', enum: ['f32', 'f16', 'i8'] },
    },
  } as const;
  const tieringPolicy = { type: 'string', enum: ['Memory', 'MemoryS3', 'S3Only'] } as const;
  const collection = {
    type: 'object',
    properties: {
      collection_id: { type: 'string', format: 'uuid' },
      name: { type: 'string' },
      tenant: { type: 'string' },
      database: { type: 'string' },
      dimension: { type: 'integer' },
      metric: { type: 'string', enum: ['cosine', 'l2', 'dot'] },
      index: { type: 'object', properties: { m: { type: 'integer' }, ef_construction: { type: 'integer' }, ef_search: { type: 'integer' }, quantization: { type: 'string' } } },
      document_count: { type: 'integer' },
      created_at: { type: 'string', format: 'date-time' },
      tiering_policy: { type: 'string' },
    },
  } as const;
  const indexing = {
    type: 'object',
    properties: {
      fully_indexed: { type: 'boolean', description: 'Every document sits in an indexed segment (or the collection is small enough to scan)' },
      memtable_documents: { type: 'integer' },
      segments: { type: 'integer' },
      indexed_segments: { type: 'integer' },
      last_lsn: { type: 'integer' },
    },
  } as const;
  const match = {
    type: 'object',
    properties: {
      doc_id: { type: 'string' },
      external_id: { type: 'string' },
      score: { type: 'number', description: 'Similarity: larger is closer' },
      distance: { type: 'number', description: 'Distance: smaller is closer' },
      metadata: { type: ['object', 'null'], additionalProperties: true },
      vector: { type: 'array', items: { type: 'number' } },
    },
  } as const;
  const error = {
    type: 'object',
    properties: {
      error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object', additionalProperties: true } } },
    },
  } as const;
  const component = { type: 'object', properties: { status: { type: 'string' }, message: { type: 'string' } } } as const;
  return {
    name,
    error,
    health: {
      type: 'object',
      properties: {
        status: { type: 'string', enum: ['healthy', 'degraded', 'unhealthy'] },
        version: { type: 'string' },
        uptime_seconds: { type: 'integer' },
        components: { type: 'object', properties: { catalog: component, wal: component, storage: component, index: component } },
      },
    },
    createCollection: {
      type: 'object',
      required: ['name', 'dimension'],
      additionalProperties: false,
      properties: { name, dimension: { type: 'integer', minimum: 1, maximum: v.vector_dimension_max }, metric: { type: 'string', enum: ['cosine', 'l2', 'dot'], default: 'cosine' }, index, tiering_policy: tieringPolicy },
    },
    collection,
    collectionDetail: { type: 'object', properties: { ...collection.properties, indexing } },
    collectionList: { type: 'object', properties: { collections: { type: 'array', items: collection } } },
    insert: document,
    insertAnswer: { type: 'object', properties: { doc_id: { type: 'string' }, lsn: { type: 'integer' }, latency_ms: { type: 'number' } } },
    upsert: { type: 'object', required: ['documents'], additionalProperties: false, properties: { documents: { type: 'array', items: document, description: `At most ${v.max_batch_size} documents` } } },
    upsertAnswer: { type: 'object', properties: { upserted: { type: 'integer' }, doc_ids: { type: 'array', items: { type: 'string' } }, lsn: { type: 'integer' }, latency_ms: { type: 'number' } } },
    query: {
      type: 'object',
      required: ['query_vector'],
      additionalProperties: false,
      properties: {
        query_vector: vector,
        top_k: { type: 'integer', minimum: 1, maximum: v.top_k_max, default: 10 },
        filter,
        ef_search: { type: 'integer', minimum: 1, maximum: 10000 },
        include_vector: { type: 'boolean', default: false },
        include_metadata: { type: 'boolean', default: true },
      },
    },
    queryAnswer: { type: 'object', properties: { matches: { type: 'array', items: match }, latency_ms: { type: 'number' } } },
    document: { type: 'object', properties: { doc_id: { type: 'string' }, external_id: { type: 'string' }, vector: { type: 'array', items: { type: 'number' } }, metadata: { type: ['object', 'null'], additionalProperties: true }, text: { type: ['string', 'null'] } } },
    deleteBody: { type: 'object', additionalProperties: false, properties: { doc_ids: { type: 'array', items: { type: 'string', minLength: 1 } }, filter } },
    deleteAnswer: { type: 'object', properties: { deleted: { type: 'integer' }, lsn: { type: 'integer' } } },
    tier: { type: 'object', properties: { collection_id: { type: 'string' }, tiering_policy: tieringPolicy, tiers: { type: 'object', additionalProperties: true } } },
    tierMove: { type: 'object', required: ['tiering_policy'], additionalProperties: false, properties: { tiering_policy: tieringPolicy } },
    createNamed: { type: 'object', required: ['name'], additionalProperties: false, properties: { name } },
  };
}

export type RestSchemas = ReturnType<typeof restSchemas>;
