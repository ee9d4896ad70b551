import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AkiConfig } from '../../config/config-schema.js';
import { DEFAULT_DATABASE, DEFAULT_TENANT, type AkiDB } from '../../engine/database.js';
import type { Collection } from '../../engine/collection.js';
import { AkiError } from '../../errors.js';
import type { Filter } from '../../index/filter.js';
import type { ServerMetrics } from '../../observability/metrics.js';
import { decodeVector, describeCollection, resolveCollection, toDocumentInput, toWireMatch, type WireDocument } from '../collection-api.js';
import { withTimeout } from '../with-timeout.js';
import type { RestSchemas } from './schemas.js';
import type { TieringRuntime } from '../../tiering/tiering-runtime.js';
import type { TieringPolicy } from '../../catalog/catalog.js';
import type { Authenticator } from '../../security/authenticator.js';

/** What the route handlers share. */
export interface RouteContext {
  db: AkiDB;
  config: AkiConfig;
  metrics: ServerMetrics | null;
  schemas: RestSchemas;
  timeoutMs: number;
  tiering: TieringRuntime | null;
  auth: Authenticator;
}

type Params = { tenant?: string; database?: string; id?: string; doc_id?: string };

const ms = (start: number): number => Math.round((performance.now() - start) * 1000) / 1000;

/**
 * The collection routes. Registered twice: under `/api/v1` for the default tenant and database,
 * and under `/api/v1/tenants/:tenant/databases/:database` for any other.
 */
export function registerCollectionRoutes(app: FastifyInstance, ctx: RouteContext, scoped: boolean): void {
  const { db, schemas: s } = ctx;
  const tags = [scoped ? 'collections (tenant-scoped)' : 'collections'];
  const where = (req: FastifyRequest): { tenant: string; database: string } => {
    const p = req.params as Params;
    return { tenant: p.tenant ?? DEFAULT_TENANT, database: p.database ?? DEFAULT_DATABASE };
  };
  const collection = (req: FastifyRequest): Promise<Collection> => {
    const { tenant, database } = where(req);
    return resolveCollection(db, tenant, database, (req.params as Params).id!);
  };
  const err = { 400: s.error, 404: s.error, 413: s.error, 503: s.error };
  const timed = <T>(work: () => Promise<T>): Promise<T> => withTimeout(ctx.timeoutMs, work);

  app.post('/collections', { schema: { summary: 'Create a collection', tags, body: s.createCollection, response: { 201: s.collection, 409: s.error, ...err } } }, async (req, reply) => {
    const b = req.body as { name: string; dimension: number; metric?: 'cosine' | 'l2' | 'dot'; index?: { m?: number; ef_construction?: number; ef_search?: number; quantization?: 'f32' | 'f16' | 'i8' }; tiering_policy?: string };
    const { tenant, database } = where(req);
    const index: { m?: number; efConstruction?: number; efSearch?: number; quantization?: 'f32' | 'f16' | 'i8' } = {};
    if (b.index?.m !== undefined) index.m = b.index.m;
    if (b.index?.ef_construction !== undefined) index.efConstruction = b.index.ef_construction;
    if (b.index?.ef_search !== undefined) index.efSearch = b.index.ef_search;
    if (b.index?.quantization !== undefined) index.quantization = b.index.quantization;
    const col = await db.database(tenant, database).createCollection({ name: b.name, dimension: b.dimension, metric: b.metric ?? 'cosine', index, ...(b.tiering_policy !== undefined ? { tieringPolicy: b.tiering_policy as TieringPolicy } : {}) });
    return reply.status(201).send(describeCollection(col));
  });

  app.get('/collections', { schema: { summary: 'List collections', tags, response: { 200: s.collectionList, ...err } } }, async (req) => {
    const { tenant, database } = where(req);
    const scope = db.database(tenant, database);
    const out = [];
    for (const rec of await scope.listCollections()) {
      const col = await scope.getCollection(rec.name).catch((e: unknown) => {
        if (e instanceof AkiError && e.code === 'COLLECTION_NOT_FOUND') return null; // dropped meanwhile
        throw e;
      });
      if (col) out.push(describeCollection(col));
    }
    return { collections: out };
  });

  app.get('/collections/:id', { schema: { summary: 'Describe a collection (by collection_id or name)', tags, response: { 200: s.collectionDetail, ...err } } }, async (req) => {
    const col = await collection(req);
    const st = col.stats();
    return { ...describeCollection(col), indexing: { fully_indexed: st.fullyIndexed, memtable_documents: st.memtableEntries, segments: st.segments, indexed_segments: st.indexedSegments, last_lsn: st.lastLsn } };
  });

  app.delete('/collections/:id', { schema: { summary: 'Drop a collection and all its documents', tags, response: { 204: { type: 'null' }, ...err } } }, async (req, reply) => {
    const col = await collection(req);
    const { tenant, database } = where(req);
    await db.database(tenant, database).dropCollection(col.name);
    return reply.status(204).send();
  });

  app.post('/collections/:id/insert', { schema: { summary: 'Insert (or replace) one document', tags, body: s.insert, response: { 200: s.insertAnswer, ...err } } }, async (req) => {
    const start = performance.now();
    const col = await collection(req);
    const doc = toDocumentInput(req.body as WireDocument, 0);
    const { lsn } = await timed(() => col.upsert([doc]));
    return { doc_id: doc.id, lsn, latency_ms: ms(start) };
  });

  app.post('/collections/:id/upsert', { schema: { summary: 'Insert or replace a batch of documents, atomically', tags, body: s.upsert, response: { 200: s.upsertAnswer, ...err } } }, async (req) => {
    const start = performance.now();
    const col = await collection(req);
    const raw = (req.body as { documents: WireDocument[] }).documents;
    const docs = raw.map((d, i) => toDocumentInput(d, i));
    const { upserted, lsn } = await timed(() => col.upsert(docs));
    return { upserted, doc_ids: docs.map((d) => d.id), lsn, latency_ms: ms(start) };
  });

  app.post('/collections/:id/query', { schema: { summary: 'Nearest neighbours of a vector, optionally filtered', tags, body: s.query, response: { 200: s.queryAnswer, ...err } } }, async (req) => {
    const start = performance.now();
    const col = await collection(req);
    const b = req.body as { query_vector: unknown; top_k: number; filter?: Filter; ef_search?: number; include_vector: boolean; include_metadata: boolean };
    const request = { vector: decodeVector(b.query_vector, 'query_vector'), topK: b.top_k, includeVector: b.include_vector, includeMetadata: b.include_metadata } as Parameters<Collection['query']>[0];
    if (b.filter !== undefined) request.filter = b.filter;
    if (b.ef_search !== undefined) request.efSearch = b.ef_search;
    const searchStart = performance.now();
    const matches = await timed(() => col.query(request));
    ctx.metrics?.searchLatency.observe((performance.now() - searchStart) / 1000);
    return { matches: matches.map(toWireMatch), latency_ms: ms(start) };
  });

  app.get('/collections/:id/docs/:doc_id', { schema: { summary: 'One document by doc_id', tags, response: { 200: s.document, ...err } } }, async (req) => {
    const col = await collection(req);
    const id = (req.params as Params).doc_id!;
    const [doc] = await col.get([id]);
    if (!doc) throw new AkiError('DOCUMENT_NOT_FOUND', { collection: col.name, doc_id: id.slice(0, 200) }, `Document ${id.slice(0, 200)} not found`);
    return { doc_id: doc.id, external_id: doc.id, vector: doc.vector, metadata: doc.metadata, text: doc.text };
  });

  app.delete('/collections/:id/docs/:doc_id', { schema: { summary: 'Delete one document (204 whether or not it existed)', tags, response: { 204: { type: 'null' }, ...err } } }, async (req, reply) => {
    const col = await collection(req);
    await timed(() => col.delete({ ids: [(req.params as Params).doc_id!] }));
    return reply.status(204).send();
  });

  app.post('/collections/:id/delete', { schema: { summary: 'Delete by doc_ids, by filter, or both (ids narrowed by the filter)', tags, body: s.deleteBody, response: { 200: s.deleteAnswer, ...err } } }, async (req) => {
    const col = await collection(req);
    const b = req.body as { doc_ids?: string[]; filter?: Filter };
    if (b.doc_ids === undefined && b.filter === undefined) throw new AkiError('INVALID_ARGUMENT', {}, 'delete needs doc_ids, a filter, or both');
    const request: { ids?: string[]; filter?: Filter } = {};
    if (b.doc_ids !== undefined) request.ids = b.doc_ids;
    if (b.filter !== undefined) request.filter = b.filter;
    const { deleted, lsn } = await timed(() => col.delete(request));
    return { deleted, lsn };
  });

  app.get('/collections/:id/tier', { schema: { summary: "A collection's tiering policy and where its data lives", tags, response: { 200: s.tier, ...err } } }, async (req) => {
    const col = await collection(req);
    return tierView(col, ctx.tiering);
  });

  app.post('/collections/:id/tier', { schema: { summary: "Move a collection between Memory and MemoryS3 (S3Only is chosen at creation)", tags, body: s.tierMove, response: { 200: s.tier, 422: s.error, ...err } } }, async (req) => {
    const col = await collection(req);
    const policy = (req.body as { tiering_policy: TieringPolicy }).tiering_policy;
    const before = col.info.tieringPolicy;
    await db.setTieringPolicy(col.info.collectionId, policy);
    if (before !== policy) req.log.info({ collection: col.name, from: before, to: policy }, 'Tiering policy changed');
    return tierView(col, ctx.tiering);
  });
}

/** Tenants and databases (the default pair exists from the first start). */
export function registerTenantRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { db, schemas: s } = ctx;
  const tags = ['tenants and databases'];
  const err = { 400: s.error, 404: s.error, 409: s.error };
  const created = { 201: { type: 'object', properties: { tenant: { type: 'string' }, name: { type: 'string' } } }, ...err };
  const gone = { 204: { type: 'null' }, ...err };
  app.post('/tenants', { schema: { summary: 'Create a tenant', tags, body: s.createNamed, response: created } }, async (req, reply) => {
    const { name } = req.body as { name: string };
    await db.createTenant(name);
    return reply.status(201).send({ name });
  });
  app.get('/tenants', { schema: { summary: "List tenants (a tenant-scoped credential sees only its own)", tags } }, async (req) => {
    const only = req.principal?.tenant ?? null;
    return { tenants: (await db.listTenants()).filter((t) => only === null || t.name === only).map((t) => ({ name: t.name, created_at: t.createdAt })) };
  });
  app.delete('/tenants/:tenant', { schema: { summary: 'Drop an empty tenant', tags, response: gone } }, async (req, reply) => {
    await db.dropTenant((req.params as Params).tenant!);
    return reply.status(204).send();
  });
  app.post('/tenants/:tenant/databases', { schema: { summary: 'Create a database in a tenant', tags, body: s.createNamed, response: created } }, async (req, reply) => {
    const { name } = req.body as { name: string };
    await db.createDatabase((req.params as Params).tenant!, name);
    return reply.status(201).send({ tenant: (req.params as Params).tenant, name });
  });
  app.get('/tenants/:tenant/databases', { schema: { summary: 'List the databases of a tenant', tags } }, async (req) => ({ databases: (await db.listDatabases((req.params as Params).tenant!)).map((d) => ({ name: d.name, created_at: d.createdAt })) }));
  app.delete('/tenants/:tenant/databases/:database', { schema: { summary: 'Drop an empty database', tags, response: gone } }, async (req, reply) => {
    const p = req.params as Params;
    await db.dropDatabase(p.tenant!, p.database!);
    return reply.status(204).send();
  });
  app.get('/metrics/tiers', { schema: { summary: 'Collections, documents, bytes and objects per tier; upload lag and cache hit rate', tags: ['collections'] } }, async () => {
    const tiers: Record<TieringPolicy, { collections: number; documents: number; segments: number; local_bytes: number; object_store: { objects: number; bytes: number; pending_objects: number; max_upload_lag_ms: number } | null }> = {
      Memory: { collections: 0, documents: 0, segments: 0, local_bytes: 0, object_store: null },
      MemoryS3: { collections: 0, documents: 0, segments: 0, local_bytes: 0, object_store: { objects: 0, bytes: 0, pending_objects: 0, max_upload_lag_ms: 0 } },
      S3Only: { collections: 0, documents: 0, segments: 0, local_bytes: 0, object_store: { objects: 0, bytes: 0, pending_objects: 0, max_upload_lag_ms: 0 } },
    };
    for (const c of await db.openCollections()) {
      const st = c.stats();
      const t = tiers[c.info.tieringPolicy];
      t.collections += 1;
      t.documents += st.documents;
      t.segments += st.segments;
      t.local_bytes += await c.diskBytes();
      const r = ctx.tiering?.replication(c.info.collectionId);
      if (r && t.object_store) {
        t.object_store.objects += r.objectsStored;
        t.object_store.bytes += r.bytesStored;
        t.object_store.pending_objects += r.pendingObjects;
        t.object_store.max_upload_lag_ms = Math.max(t.object_store.max_upload_lag_ms, r.lagMs);
      }
    }
    const t = ctx.tiering;
    const evicted = db.allCollections().filter((r) => r.tieringPolicy === 'S3Only' && db.isEvicted(r.collectionId)).length;
    return {
      tiers,
      s3only_evicted_collections: evicted,
      object_store: t ? { store: t.storeDescription, circuit_breaker: t.breaker.state, upload_queue: t.worker.queueSize, dlq_size: t.dlq.size } : null,
      cache: (() => {
        const c = t?.cacheStats();
        if (!c) return null;
        return { size_vectors: ctx.config.storage.cache_size, hits: c.hits, misses: c.misses, evictions: c.evictions, hit_rate: c.hits + c.misses > 0 ? c.hits / (c.hits + c.misses) : null };
      })(),
    };
  });
}

/** GET /collections/{id}/tier: the policy, what is local, and what the object store holds (replication stats since this start). */
async function tierView(col: Collection, tiering: TieringRuntime | null): Promise<Record<string, unknown>> {
  const st = col.stats();
  const r = tiering?.replication(col.info.collectionId) ?? null;
  return {
    collection_id: col.info.collectionId,
    tiering_policy: col.info.tieringPolicy,
    durability: DURABILITY[col.info.tieringPolicy],
    tiers: {
      memory: { documents: st.memtableEntries },
      local_disk: { segments: st.segments, documents: st.documents - st.memtableEntries, bytes: await col.diskBytes() },
      object_store: r
        ? {
            store: tiering!.storeDescription,
            upload_lag_ms: r.lagMs,
            objects_stored: r.objectsStored,
            bytes_stored: r.bytesStored,
            wal_bytes_stored: r.walBytesStored,
            pending_objects: r.pendingObjects,
            stored_manifest_version: r.storedManifestVersion,
            reconciled: r.reconciled,
            resends: r.resends,
            dlq_entries: tiering!.dlq.sizeOf(col.info.collectionId),
          }
        : null,
    },
  };
}

const DURABILITY: Record<TieringPolicy, string> = {
  Memory: 'An acknowledged write is fsynced to the local WAL.',
  MemoryS3: 'An acknowledged write is fsynced to the local WAL; its copy in the object store follows within upload_lag_ms.',
  S3Only: 'An acknowledged write is fsynced locally and its WAL batch is stored in the object store.',
};

