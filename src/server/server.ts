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
import { applyStoredTierSettings } from '../api/rest/admin-routes.js';
import { parseHostPort } from '../config/load-config.js';
import { AkiError } from '../errors.js';
import { TieringMetrics } from '../observability/tiering-metrics.js';
import { TieringRuntime } from '../tiering/tiering-runtime.js';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { Authenticator } from '../security/authenticator.js';
import { stagingRoot } from '../backup/backup.js';
import { isLoopback } from '../config/load-config.js';
import { startTracing, stopTracing } from '../observability/tracing.js';
import { startHealthMonitor } from './admin-health.js';

/** The server cannot start as configured; the message says why and what to change. */
export class StartupRefused extends Error {}

/** Which faces a process serves: `serve` is both. */
export type ServerMode = 'serve' | 'rest' | 'grpc';

/** A running server: its bound ports, and how to stop it. */
export interface RunningServer {
  restPort: number | null;
  /** The admin listener's port when `[admin] bind_address` is set. */
  adminPort: number | null;
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
  let dbRef: AkiDB | null = null;
  if (config.features.metrics_enabled) {
    metrics = new ServerMetrics({
      collectionCount: () => dbRef?.collectionCount() ?? 0,
      vectorCount: async () => (dbRef ? (await dbRef.openCollections()).reduce((n, c) => n + c.stats().documents, 0) : 0),
    });
  }
  const tls = await loadTls(config);
  const tieringMetrics = metrics && config.storage.s3_bucket !== '' ? new TieringMetrics(metrics.registry) : null;
  const tiering = config.storage.s3_bucket !== '' ? await startTiering(config, logger, tieringMetrics) : null;
  // Before the collections open (disaster recovery reads the object store) and the servers listen.
  await startTracing(config.tracing, { version, logger });
  let db: AkiDB;
  try {
    db = await AkiDB.open({
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
      events: {
        indexBuilt: (e) => metrics?.indexBuildDuration.observe({ kind: e.incremental ? 'incremental' : 'full' }, e.seconds),
        upserted: (e) => {
          if (e.tieringPolicy !== 'Memory') tieringMetrics?.inserts.inc({ collection_id: e.collectionId }, e.documents);
        },
        merged: (e) => tieringMetrics?.compactions.inc({ collection_id: e.collectionId }),
      },
      defaultTieringPolicy: config.storage.tiering_policy,
      ...(tiering ? { tiering } : {}),
    });
  } catch (err) {
    await tiering?.stop(0);
    await stopTracing();
    throw err;
  }
  dbRef = db;
  let auth: Authenticator;
  try {
    auth = new Authenticator(db, config.auth);
    const lockedOut = auth.lockedOut();
    if (lockedOut) throw new StartupRefused(lockedOut);
  } catch (err) {
    await tiering?.stop(0);
    await db.close();
    await stopTracing();
    throw err instanceof StartupRefused ? err : new StartupRefused(`[auth] api_keys: ${(err as Error).message}`);
  }
  warnIfExposed(config, logger);
  // Backups staged for a client that never fetched them, before a restart.
  await rm(stagingRoot(db), { recursive: true, force: true });
  const state = new ServerState(db, version);
  let rest: RestServer | null = null;
  let admin: RestServer | null = null;
  let grpc: GrpcServerHandle | null = null;
  try {
    if (tiering) {
      applyStoredTierSettings(db, tiering, logger);
      await recoverFromStore(tiering, db, logger);
    }
    const opened = await db.openAll();
    logger.info({ dataDir: db.dataDir, collections: opened.length }, 'Opened collections');
    tiering?.startCacheTrimmer(db);
    const adminAddress = config.admin.bind_address !== '' && config.admin.enabled ? parseHostPort(config.admin.bind_address) : null;
    if (mode !== 'grpc') {
      rest = await buildRestServer({ db, config, logger, metrics, state, tiering, routes: adminAddress ? 'api' : 'all', auth, tls });
      await rest.listen({ host: config.server.host, port: config.server.rest_port });
    }
    if (adminAddress) {
      admin = await buildRestServer({ db, config, logger: logger.child({ component: 'admin' }), metrics, state, tiering, routes: 'admin', auth, tls });
      await admin.listen({ host: adminAddress.host, port: adminAddress.port });
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
        auth,
        tls,
        onRequest: (method, code, seconds) => metrics?.observeRequest('grpc', 'POST', method, code, code === 'OK', seconds),
      });
    }
  } catch (err) {
    await rest?.close().catch(() => undefined);
    await admin?.close().catch(() => undefined);
    await grpc?.shutdown(0).catch(() => undefined);
    await tiering?.stop(0).catch(() => undefined);
    await db.close().catch(() => undefined);
    if (ephemeral) await rm(ephemeral, { recursive: true, force: true });
    await stopTracing();
    throw err;
  }
  const restPort = rest ? portOf(rest) : null;
  const grpcPort = grpc ? grpc.port : null;
  const adminPort = admin ? portOf(admin) : null;
  state.markReady();
  grpc?.setServing(true);
  const stopHealthMonitor = startHealthMonitor({ db, config, metrics, ...(tiering ? { objectStore: () => tiering.checkStore() } : {}) }, logger.child({ component: 'health' }));
  logger.info({ host: config.server.host, restPort, grpcPort, adminPort, tls: tls !== null, auth: config.auth.enabled, dataDir: db.dataDir, objectStore: tiering?.storeDescription ?? null, version }, 'AkiDB ready');

  let stopping: Promise<void> | null = null;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      const graceMs = config.server.shutdown_grace_seconds * 1000;
      logger.info({ reason, graceMs }, 'Shutting down: no new requests; waiting for in-flight ones');
      state.markShuttingDown();
      stopHealthMonitor();
      grpc?.setServing(false);
      await Promise.all([rest ? closeWithin(rest, graceMs, logger) : undefined, admin ? closeWithin(admin, graceMs, logger) : undefined, grpc?.shutdown(graceMs)]);
      for (const c of await db.openCollections()) {
        await c.flush().catch((err: unknown) => logger.error({ err, collection: c.name }, 'Flush at shutdown failed; the WAL still holds every acknowledged write'));
      }
      // Ship what the flush wrote, then persist the dead-letter queue; the next start reconciles whatever is left.
      await tiering?.stop(graceMs);
      await db.close();
      if (ephemeral) await rm(ephemeral, { recursive: true, force: true });
      // Last: the flushes and uploads above are traced too.
      await stopTracing();
      logger.info({}, 'Shutdown complete');
    })();
    return stopping;
  };
  return { restPort, grpcPort, adminPort, state, stop };
}

/** Read `[server] tls_cert` / `tls_key`: null when unset; StartupRefused when unreadable. */
async function loadTls(config: AkiConfig): Promise<{ cert: Buffer; key: Buffer } | null> {
  const { tls_cert: certFile, tls_key: keyFile } = config.server;
  if (certFile === '' && keyFile === '') return null;
  let tls: { cert: Buffer; key: Buffer };
  try {
    tls = { cert: await readFile(certFile), key: await readFile(keyFile) };
  } catch (err) {
    throw new StartupRefused(`cannot read the TLS certificate or key (${certFile}, ${keyFile}): ${(err as Error).message}`);
  }
  try {
    createSecureContext(tls);
  } catch (err) {
    throw new StartupRefused(`the TLS certificate ${certFile} and key ${keyFile} are not a usable PEM pair: ${(err as Error).message}`);
  }
  return tls;
}

/** Protected mode is checked with the config; here the operator who chose `insecure` is reminded at every start. */
function warnIfExposed(config: AkiConfig, logger: Logger): void {
  if (config.auth.enabled) return;
  const exposed = [config.server.host, config.admin.bind_address !== '' ? (parseHostPort(config.admin.bind_address)?.host ?? '') : '127.0.0.1'].filter((h) => !isLoopback(h));
  if (exposed.length > 0) logger.warn({ addresses: exposed }, 'Serving a non-loopback address with authentication off (insecure = true): anyone who can reach it can read, write and drop everything');
}

/** Connect the object store named by `[storage] s3_bucket`, load the DLQ and start the upload machinery. */
async function startTiering(config: AkiConfig, logger: Logger, metrics: TieringMetrics | null): Promise<TieringRuntime> {
  const st = config.storage;
  const { S3ObjectStore, parseBucket } = await import('../objectstore/s3-object-store.js');
  const parsed = parseBucket(st.s3_bucket);
  const store = new S3ObjectStore({
    bucket: st.s3_bucket,
    region: st.s3_region,
    ...(st.s3_endpoint !== '' ? { endpoint: st.s3_endpoint } : {}),
    ...(st.s3_access_key !== '' ? { credentials: { accessKeyId: st.s3_access_key, secretAccessKey: st.s3_secret_key } } : {}),
    requestTimeoutMs: st.s3_request_timeout_seconds * 1000,
  });
  const storeDescription = `s3://${parsed.bucket}${parsed.prefix ? `/${parsed.prefix}` : ''}${st.s3_endpoint !== '' || parsed.endpoint ? ` at ${st.s3_endpoint || parsed.endpoint}` : ''}`;
  logger.info({ store: storeDescription, tieringPolicy: st.tiering_policy, credentials: st.s3_access_key !== '' ? 'AKIDB_S3_ACCESS_KEY' : 'AWS SDK default chain' }, 'Object store configured');
  return TieringRuntime.start({ store, storeDescription, storage: st, logger: logger.child({ component: 'tiering' }), metrics });
}

/**
 * Disaster recovery: restore every collection the bucket holds and the catalog lacks. Retried
 * briefly; when the store stays unreachable a node that has collections starts without the
 * missing ones (logged), while an empty node refuses to start rather than come up empty.
 */
async function recoverFromStore(tiering: TieringRuntime, db: AkiDB, logger: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const restored = await tiering.recover(db);
      if (restored.length > 0) logger.info({ restored }, `Restored ${restored.length} collection(s) from the object store`);
      return;
    } catch (err) {
      if (attempt < 3) {
        logger.warn({ attempt, err: String(err) }, 'Listing the object store for disaster recovery failed; retrying');
        await new Promise((r) => setTimeout(r, 500 * attempt));
        continue;
      }
      if (db.collectionCount() === 0) throw new AkiError('STORE_UNAVAILABLE', { store: tiering.storeDescription }, `Cannot reach the object store ${tiering.storeDescription} to restore collections on this empty node: ${String(err)}`, { cause: err });
      logger.error({ err: String(err) }, 'Object store unreachable at start: serving the local collections; any collection only in the bucket is not restored until the next start');
      return;
    }
  }
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
