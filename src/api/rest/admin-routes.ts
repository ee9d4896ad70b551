import type { FastifyInstance } from 'fastify';
import { DEFAULT_DATABASE, DEFAULT_TENANT } from '../../engine/database.js';
import { adminHealth } from '../../server/admin-health.js';
import { resolveCollection } from '../collection-api.js';
import { withTimeout } from '../with-timeout.js';
import type { RouteContext } from './collection-routes.js';

/**
 * seed 004's admin routes that stand without object-storage tiers: the health check for load
 * balancers, metrics, and manual compaction. `{id}` is a collection_id, or a name in the default
 * tenant and database.
 */
export function registerAdminRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { db, config, metrics, schemas: s } = ctx;
  const tags = ['admin'];
  const check = { type: 'object', properties: { status: { type: 'string', enum: ['healthy', 'unhealthy', 'not_configured'] }, duration_ms: { type: 'number' }, message: { type: 'string' } } } as const;
  const healthSchema = { type: 'object', properties: { status: { type: 'string', enum: ['healthy', 'unhealthy'] }, duration_ms: { type: 'number' }, checks: { type: 'object', properties: { database: check, object_store: check, memory: check } } } } as const;

  app.get('/admin/health', { schema: { summary: 'Catalog, object store and memory checks; 503 when unhealthy', tags, response: { 200: healthSchema, 503: healthSchema } } }, async (_req, reply) => {
    const report = await adminHealth(db, config.admin.health_check.timeout_seconds * 1000);
    metrics?.healthCheckStatus.set(report.status === 'healthy' ? 1 : 0);
    metrics?.healthCheckDuration.observe(report.duration_ms / 1000);
    return reply.status(report.status === 'healthy' ? 200 : 503).send(report);
  });

  if (metrics) {
    app.get('/admin/metrics', { schema: { summary: 'Prometheus metrics (the same as /metrics)', tags } }, async (_req, reply) => {
      const text = await metrics.registry.metrics();
      return reply.header('content-type', metrics.registry.contentType).send(text);
    });
  }

  const compactionSchema = {
    type: 'object',
    properties: { threshold_bytes: { type: 'integer' }, threshold_ops: { type: 'integer' }, max_segments: { type: 'integer' }, idle_flush_ms: { type: 'integer' }, enable_background_compaction: { type: 'boolean' } },
  } as const;
  const toWire = (c: ReturnType<typeof db.compactionSettings>) => ({ threshold_bytes: c.thresholdBytes, threshold_ops: c.thresholdOps, max_segments: c.maxSegments, idle_flush_ms: c.idleFlushMs, enable_background_compaction: c.enableBackground });
  app.get('/admin/config/compaction', { schema: { summary: 'The compaction settings in force', tags, response: { 200: compactionSchema } } }, async () => toWire(db.compactionSettings()));
  app.post(
    '/admin/config/compaction',
    {
      schema: {
        summary: 'Change compaction settings for every collection now; stored in the catalog, they survive restarts and win over the config file',
        tags,
        body: { ...compactionSchema, additionalProperties: false, minProperties: 1 },
        response: { 200: compactionSchema, 400: s.error },
      },
    },
    async (req) => {
      const b = req.body as Partial<ReturnType<typeof toWire>>;
      const change: Parameters<typeof db.updateCompaction>[0] = {};
      if (b.threshold_bytes !== undefined) change.thresholdBytes = b.threshold_bytes;
      if (b.threshold_ops !== undefined) change.thresholdOps = b.threshold_ops;
      if (b.max_segments !== undefined) change.maxSegments = b.max_segments;
      if (b.idle_flush_ms !== undefined) change.idleFlushMs = b.idle_flush_ms;
      if (b.enable_background_compaction !== undefined) change.enableBackground = b.enable_background_compaction;
      const before = toWire(db.compactionSettings());
      const after = toWire(db.updateCompaction(change));
      req.log.info({ before, after }, 'Compaction settings changed at runtime');
      return after;
    },
  );

  app.post(
    '/admin/collections/:id/compact',
    { schema: { summary: 'Flush, then merge every segment of a collection into one (dropping deleted rows), and index it', tags, response: { 200: { type: 'object', properties: { collection_id: { type: 'string' }, segments: { type: 'integer' }, documents: { type: 'integer' }, latency_ms: { type: 'number' } } }, 404: s.error, 503: s.error } } },
    async (req) => {
      const start = performance.now();
      const col = await resolveCollection(db, DEFAULT_TENANT, DEFAULT_DATABASE, (req.params as { id: string }).id);
      await withTimeout(ctx.timeoutMs, () => col.compact());
      const st = col.stats();
      req.log.info({ collection: col.name, segments: st.segments, documents: st.documents }, 'Compacted on request');
      return { collection_id: col.info.collectionId, segments: st.segments, documents: st.documents, latency_ms: Math.round((performance.now() - start) * 1000) / 1000 };
    },
  );
}
