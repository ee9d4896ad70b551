import type { FastifyInstance } from 'fastify';
import { DEFAULT_DATABASE, DEFAULT_TENANT } from '../../engine/database.js';
import { checkAndRecord } from '../../server/admin-health.js';
import { resolveCollection } from '../collection-api.js';
import { withTimeout } from '../with-timeout.js';
import type { RouteContext } from './collection-routes.js';
import type { AkiDB } from '../../engine/database.js';
import { AkiError } from '../../errors.js';
import type { DlqEntry } from '../../tiering/dead-letter-queue.js';
import type { RuntimeTierSettings, TieringRuntime } from '../../tiering/tiering-runtime.js';

/**
 * seed 004's admin routes: the health check for load balancers, metrics, manual compaction, the
 * dead-letter queue, the circuit breaker and runtime configuration. `{id}` is a collection_id, or
 * a name in the default tenant and database. Changes are validated whole, logged, stored in the
 * catalog and applied again at every start.
 */
export function registerAdminRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { db, config, metrics, schemas: s } = ctx;
  const tags = ['admin'];
  const check = { type: 'object', properties: { status: { type: 'string', enum: ['healthy', 'unhealthy', 'not_configured'] }, duration_ms: { type: 'number' }, message: { type: 'string' } } } as const;
  const healthSchema = { type: 'object', properties: { status: { type: 'string', enum: ['healthy', 'unhealthy'] }, duration_ms: { type: 'number' }, checks: { type: 'object', properties: { database: check, object_store: check, memory: check } } } } as const;

  app.get('/admin/health', { schema: { summary: 'Catalog, object store and memory checks; 503 when unhealthy', tags, response: { 200: healthSchema, 503: healthSchema } } }, async (_req, reply) => {
    const tiering = ctx.tiering;
    const report = await checkAndRecord({ db, config, metrics, ...(tiering ? { objectStore: () => tiering.checkStore() } : {}) });
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

  registerTieringAdminRoutes(app, ctx);
}

const NO_STORE = (): AkiError => new AkiError('TIER_UNAVAILABLE', {}, 'No object store is configured (storage.s3_bucket): there is no dead-letter queue, circuit breaker or upload worker');

/** Runtime settings of the tier as the admin API shows and takes them (snake_case, seed 004's names). */
const TIER_SECTIONS = {
  'circuit-breaker': {
    part: 'circuitBreaker',
    fields: { enabled: 'enabled', failure_threshold: 'failureThreshold', window_seconds: 'windowSeconds', cooldown_seconds: 'cooldownSeconds', half_open_successes: 'halfOpenSuccesses', minimum_requests: 'minimumRequests' },
    schema: { enabled: { type: 'boolean' }, failure_threshold: { type: 'number', minimum: 0.01, maximum: 1 }, window_seconds: { type: 'number', minimum: 1, maximum: 86400 }, cooldown_seconds: { type: 'number', minimum: 0.1, maximum: 86400 }, half_open_successes: { type: 'integer', minimum: 1, maximum: 10000 }, minimum_requests: { type: 'integer', minimum: 1, maximum: 100000 } },
  },
  dlq: {
    part: 'dlq',
    fields: { max_size: 'maxSize', ttl_days: 'ttlDays' },
    schema: { max_size: { type: 'integer', minimum: 1, maximum: 10000000 }, ttl_days: { type: 'number', minimum: 0.0001, maximum: 3650 } },
  },
  's3-upload': {
    part: 's3Upload',
    fields: { batch_size: 'batchSize', max_concurrency: 'maxConcurrency', compression: 'compression' },
    schema: { batch_size: { type: 'integer', minimum: 1, maximum: 1000 }, max_concurrency: { type: 'integer', minimum: 1, maximum: 256 }, compression: { type: 'string', enum: ['none', 'gzip'] } },
  },
} as const;

type SectionName = keyof typeof TIER_SECTIONS;

function toWireSection(name: SectionName, settings: RuntimeTierSettings): Record<string, unknown> {
  const sec = TIER_SECTIONS[name];
  const values = settings[sec.part] as unknown as Record<string, unknown>;
  return Object.fromEntries(Object.entries(sec.fields).map(([wire, field]) => [wire, values[field]]));
}

function fromWireSection(name: SectionName, body: Record<string, unknown>): Record<string, unknown> {
  const sec = TIER_SECTIONS[name];
  const out: Record<string, unknown> = {};
  for (const [wire, field] of Object.entries(sec.fields)) if (body[wire] !== undefined) out[field] = body[wire];
  return out;
}

/** Apply settings changed at runtime earlier (stored in the catalog); a stored set that no longer validates is skipped and logged. */
export function applyStoredTierSettings(db: AkiDB, tiering: TieringRuntime, logger: { info(o: object, m: string): void; warn(o: object, m: string): void }): void {
  for (const name of Object.keys(TIER_SECTIONS) as SectionName[]) {
    const stored = db.runtimeConfig(`tier:${name}`);
    if (stored === undefined) continue;
    try {
      tiering.applySettings({ [TIER_SECTIONS[name].part]: fromWireSection(name, stored as Record<string, unknown>) });
      logger.info({ section: name, settings: stored }, 'Applied settings changed at runtime (stored in the catalog)');
    } catch (err) {
      logger.warn({ section: name, err: String(err) }, 'Ignored stored settings that no longer validate');
    }
  }
}

function registerTieringAdminRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { db, schemas: s } = ctx;
  const tags = ['admin'];
  const need = (): TieringRuntime => {
    if (!ctx.tiering) throw NO_STORE();
    return ctx.tiering;
  };
  const collectionId = async (id: string): Promise<string> => (await resolveCollection(db, DEFAULT_TENANT, DEFAULT_DATABASE, id)).info.collectionId;
  const entryWire = (e: DlqEntry<unknown>) => ({ id: e.id, collection_id: e.collectionId, key: e.key, error: e.error, attempts: e.attempts, first_failed_at: new Date(e.firstFailedAt).toISOString(), last_failed_at: new Date(e.lastFailedAt).toISOString() });
  const err = { 400: s.error, 404: s.error, 422: s.error };

  app.get('/admin/collections/:id/dlq', { schema: { summary: "A collection's dead-letter entries, oldest first", tags, querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$|^10000$' } } }, response: err } }, async (req) => {
    const t = need();
    const id = await collectionId((req.params as { id: string }).id);
    // Query values are strings (type coercion is off server-wide); the pattern admits 1..10000.
    const limit = Number((req.query as { limit?: string }).limit ?? 100);
    const all = t.dlq.list(id);
    return { collection_id: id, size: all.length, entries: all.slice(0, limit).map(entryWire) };
  });

  app.delete('/admin/collections/:id/dlq', { schema: { summary: "Drop a collection's dead-letter entries (their uploads are given up until the replicator re-ships them)", tags, response: err } }, async (req) => {
    const t = need();
    const id = await collectionId((req.params as { id: string }).id);
    const removed = t.dlq.clear(id);
    req.log.info({ collectionId: id, removed }, 'Dead-letter queue cleared');
    return { collection_id: id, removed };
  });

  app.post('/admin/collections/:id/dlq/retry', { schema: { summary: "Take a collection's dead-letter entries and upload them again now", tags, response: err } }, async (req) => {
    const t = need();
    const id = await collectionId((req.params as { id: string }).id);
    const { requeued, entries } = t.retryDeadLetters(id);
    req.log.info({ collectionId: id, taken: entries.length, requeued }, 'Dead-letter entries retried');
    return { collection_id: id, retried: entries.length, requeued };
  });

  app.post('/admin/circuit-breaker/reset', { schema: { summary: 'Close the circuit breaker now (calls to the object store resume)', tags, response: { 422: s.error } } }, async (req) => {
    const t = need();
    const before = t.breaker.state;
    t.breaker.reset();
    req.log.warn({ before }, 'Circuit breaker reset by an operator');
    return { state: t.breaker.state, previous_state: before };
  });

  app.get('/admin/circuit-breaker', { schema: { summary: 'Circuit breaker state, error rate and window', tags, response: { 422: s.error } } }, async () => {
    const b = need().breaker;
    return { state: b.state, state_code: b.stateCode, error_rate: b.errorRate, window: b.window, transitions: b.transitions, retry_after_ms: b.retryAfterMs };
  });

  for (const name of Object.keys(TIER_SECTIONS) as SectionName[]) {
    const schema = { type: 'object', properties: TIER_SECTIONS[name].schema } as const;
    app.get(`/admin/config/${name}`, { schema: { summary: `The ${name} settings in force`, tags, response: { 200: schema, 422: s.error } } }, async () => toWireSection(name, need().settings()));
    app.post(
      `/admin/config/${name}`,
      { schema: { summary: `Change ${name} settings now; stored in the catalog, they survive restarts and win over the config file`, tags, body: { ...schema, additionalProperties: false, minProperties: 1 }, response: { 200: schema, 400: s.error, 422: s.error } } },
      async (req) => {
        const t = need();
        const before = toWireSection(name, t.settings());
        t.applySettings({ [TIER_SECTIONS[name].part]: fromWireSection(name, req.body as Record<string, unknown>) });
        const after = toWireSection(name, t.settings());
        db.setRuntimeConfig(`tier:${name}`, after);
        req.log.info({ section: name, before, after }, 'Settings changed at runtime');
        return after;
      },
    );
  }
}
