import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AkiConfig } from '../config/config-schema.js';
import { AkiDB } from '../engine/database.js';
import type { Logger } from '../observability/logger.js';
import { ServerMetrics } from '../observability/metrics.js';
import { buildRestServer, type RestServer } from '../api/rest/rest-server.js';
import { startGrpcServer, type GrpcServerHandle } from '../api/grpc/grpc-server.js';
import { ServerState } from './health.js';

/** Which faces a process serves: `serve` is both. */
export type ServerMode = 'serve' | 'rest' | 'grpc';

/** A running server: its bound ports, and how to stop it. */
export interface RunningServer {
  restPort: number | null;
  grpcPort: number | null;
  state: ServerState;
  /** Stop accepting, let in-flight requests finish (up to the grace period), flush, close. Idempotent. */
  stop(reason: string): Promise<void>;
}

/**
 * Open the data directory, open every collection, then start REST and / or gRPC. Ready (and
 * `/health/ready` 200, gRPC health SERVING) only once all of that succeeded.
 */
export async function startServer(config: AkiConfig, mode: ServerMode, logger: Logger, version: string): Promise<RunningServer> {
  let dataDir = config.storage.data_dir;
  let catalogPath = config.database.path;
  let ephemeral: string | null = null;
  if (!config.features.vector_persistence_enabled) {
    ephemeral = await mkdtemp(path.join(tmpdir(), 'akidb-ephemeral-'));
    dataDir = ephemeral;
    catalogPath = path.join(ephemeral, 'metadata.db');
    logger.warn({ dataDir }, 'vector_persistence_enabled = false: data lives in a temporary directory and is deleted at shutdown');
  }
  let metrics: ServerMetrics | null = null;
  const db = await AkiDB.open({
    dataDir,
    catalogPath,
    autoInitialize: config.features.auto_initialize,
    catalogBusyTimeoutMs: config.database.connection_timeout_seconds * 1000,
    hnsw: { m: config.hnsw.m, efConstruction: config.hnsw.ef_construction, efSearch: config.hnsw.ef_search, threshold: config.hnsw.threshold, quantization: config.hnsw.quantization, buildThreads: config.hnsw.build_threads },
    compaction: {
      thresholdBytes: config.storage.compaction.threshold_bytes,
      thresholdOps: config.storage.compaction.threshold_ops,
      maxSegments: config.storage.compaction.max_segments,
      idleFlushMs: config.storage.compaction.idle_flush_ms,
      enableBackground: config.storage.enable_background_compaction,
    },
    limits: {
      maxBatchDocuments: config.api.validation.max_batch_size,
      maxMetadataBytes: config.api.validation.max_metadata_bytes,
      maxTopK: config.api.validation.top_k_max,
      filter: { maxDepth: config.query.max_filter_depth, maxClauses: config.query.max_filter_clauses, maxInValues: 10_000 },
    },
    logger: logger.child({ component: 'engine' }),
    events: { indexBuilt: (e) => metrics?.indexBuildDuration.observe({ kind: e.incremental ? 'incremental' : 'full' }, e.seconds) },
  });
  const state = new ServerState(db, version);
  let rest: RestServer | null = null;
  let grpc: GrpcServerHandle | null = null;
  try {
    const opened = await db.openAll();
    logger.info({ dataDir: db.dataDir, collections: opened.length }, 'Opened collections');
    if (config.features.metrics_enabled) {
      metrics = new ServerMetrics({
        collectionCount: () => db.collectionCount(),
        vectorCount: async () => (await db.openCollections()).reduce((n, c) => n + c.stats().documents, 0),
      });
    }
    if (mode !== 'grpc') {
      rest = await buildRestServer({ db, config, logger, metrics, state });
      await rest.listen({ host: config.server.host, port: config.server.rest_port });
    }
    if (mode !== 'rest') {
      grpc = await startGrpcServer({
        db,
        host: config.server.host,
        port: config.server.grpc_port,
        logger: logger.child({ component: 'grpc' }),
        version,
        timeoutMs: config.server.timeout_seconds * 1000,
        serving: false,
        onRequest: (method, code, seconds) => metrics?.observeRequest('grpc', 'POST', method, code, code === 'OK', seconds),
      });
    }
  } catch (err) {
    await rest?.close().catch(() => undefined);
    await grpc?.shutdown(0).catch(() => undefined);
    await db.close().catch(() => undefined);
    if (ephemeral) await rm(ephemeral, { recursive: true, force: true });
    throw err;
  }
  const restPort = rest ? portOf(rest) : null;
  const grpcPort = grpc ? grpc.port : null;
  state.markReady();
  grpc?.setServing(true);
  logger.info({ host: config.server.host, restPort, grpcPort, dataDir: db.dataDir, version }, 'AkiDB ready');

  let stopping: Promise<void> | null = null;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      const graceMs = config.server.shutdown_grace_seconds * 1000;
      logger.info({ reason, graceMs }, 'Shutting down: no new requests; waiting for in-flight ones');
      state.markShuttingDown();
      grpc?.setServing(false);
      await Promise.all([rest ? closeWithin(rest, graceMs, logger) : undefined, grpc?.shutdown(graceMs)]);
      for (const c of await db.openCollections()) {
        await c.flush().catch((err: unknown) => logger.error({ err, collection: c.name }, 'Flush at shutdown failed; the WAL still holds every acknowledged write'));
      }
      await db.close();
      if (ephemeral) await rm(ephemeral, { recursive: true, force: true });
      logger.info({}, 'Shutdown complete');
    })();
    return stopping;
  };
  return { restPort, grpcPort, state, stop };
}

function portOf(app: RestServer): number {
  const addr = app.server.address();
  return typeof addr === 'object' && addr !== null ? addr.port : 0;
}

/** Close the REST server, waiting for in-flight requests up to `graceMs`, then cutting connections. */
async function closeWithin(app: RestServer, graceMs: number, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => {
    timer = setTimeout(() => resolve('expired'), graceMs);
  });
  const closing = app.close();
  const outcome = await Promise.race([closing.then(() => 'closed' as const), expired]);
  clearTimeout(timer);
  if (outcome === 'expired') {
    logger.warn({ graceMs }, 'Grace period over; closing the remaining connections');
    app.server.closeAllConnections();
    await closing;
  }
}
