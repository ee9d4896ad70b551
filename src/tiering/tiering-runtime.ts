import { mkdir, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CollectionRecord, TieringPolicy } from '../catalog/catalog.js';
import type { AkiConfig } from '../config/config-schema.js';
import type { Collection } from '../engine/collection.js';
import { EVICTED_MARKER, type AkiDB, type TieringHooks } from '../engine/database.js';
import { fsyncDir } from '../storage/fs-util.js';
import { AkiError } from '../errors.js';
import { ObjectStoreError, type ObjectStore } from '../objectstore/object-store.js';
import type { TieringMetrics } from '../observability/tiering-metrics.js';
import { ServiceRunner, sleep, type ServiceLogger } from '../services/service.js';
import type { WalChunk, WalOptions } from '../storage/wal.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { CollectionReplicator, walChunkKey, walEndKey, type ReplicationStats } from './collection-replicator.js';
import { DeadLetterQueue, DlqFlushService, type DlqEntry } from './dead-letter-queue.js';
import { listRemoteCollections, restoreCollection } from './restore-collection.js';
import { backoffMs } from './retry-policy.js';
import { UploadWorker, type UploadObserver } from './upload-worker.js';

/** Where every replicated collection lives in the store: `collections/<id>/`. */
export const COLLECTIONS_PREFIX = 'collections/';

/** What a dead-lettered upload carries (see CollectionReplicator): enough to find it again. */
export type UploadSource = Record<string, unknown>;

export interface TieringRuntimeOptions {
  store: ObjectStore;
  /** For logs and the tier API (bucket and prefix; never credentials). */
  storeDescription: string;
  storage: AkiConfig['storage'];
  logger: ServiceLogger;
  metrics: TieringMetrics | null;
}

interface Replica {
  rec: CollectionRecord;
  replicator: CollectionReplicator;
  stop: (graceMs: number) => Promise<void>;
}

/** The part of the upload / retry / breaker / DLQ settings an operator may change at runtime. */
export interface RuntimeTierSettings {
  circuitBreaker: { enabled: boolean; failureThreshold: number; windowSeconds: number; cooldownSeconds: number; halfOpenSuccesses: number; minimumRequests: number };
  dlq: { maxSize: number; ttlDays: number };
  s3Upload: { batchSize: number; maxConcurrency: number; compression: 'none' | 'gzip' };
}

/**
 * The object-storage tier of a server: one store, one circuit breaker in front of it, one upload
 * worker and dead-letter queue, and a replicator per MemoryS3 / S3Only collection. It plugs into
 * the engine as its TieringHooks: MemoryS3 collections are shipped file by file within the
 * upload lag; for S3Only collections the WAL's commit hook stores every group before the write is
 * acknowledged. `recover` rebuilds, on a node whose catalog lacks them, every collection found in
 * the store (disaster recovery).
 */
export class TieringRuntime implements TieringHooks {
  readonly policies: readonly TieringPolicy[] = ['MemoryS3', 'S3Only'];
  readonly store: ObjectStore;
  readonly storeDescription: string;
  readonly breaker: CircuitBreaker;
  readonly dlq: DeadLetterQueue<unknown>;
  readonly worker: UploadWorker;
  readonly #o: TieringRuntimeOptions;
  readonly #runner: ServiceRunner;
  readonly #replicas = new Map<string, Replica>();
  /** S3Only: end markers owed per collection (a WAL group the store refused; see `walEndKey`). */
  readonly #owedEnds = new Map<string, { file: string; offset: number }[]>();
  readonly #deletions = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #stopped = false;
  #lastUploadAt = 0;
  readonly #cache = { hits: 0, misses: 0, evictions: 0 };

  private constructor(o: TieringRuntimeOptions, dlq: DeadLetterQueue<unknown>) {
    this.#o = o;
    this.store = o.store;
    this.storeDescription = o.storeDescription;
    const st = o.storage;
    this.breaker = new CircuitBreaker({
      enabled: st.circuit_breaker.enabled,
      failureThreshold: st.circuit_breaker.failure_threshold,
      windowSeconds: st.circuit_breaker.window_seconds,
      cooldownSeconds: st.circuit_breaker.cooldown_seconds,
      halfOpenSuccesses: st.circuit_breaker.half_open_successes,
      minimumRequests: st.circuit_breaker.minimum_requests,
      name: o.storeDescription,
      logger: o.logger,
    });
    this.dlq = dlq;
    this.worker = new UploadWorker({
      store: o.store,
      batchSize: st.s3_upload.batch_size,
      maxConcurrency: st.s3_upload.max_concurrency,
      compression: st.s3_upload.compression,
      retry: { maxRetries: st.retry.max_retries, baseBackoffMs: st.retry.base_backoff_secs * 1000, maxBackoffMs: st.retry.max_backoff_secs * 1000 },
      gate: this.breaker,
      deadLetters: dlq,
      logger: o.logger,
      observer: this.#observer(o.metrics),
    });
    this.#runner = new ServiceRunner(o.logger);
    if (o.metrics) {
      o.metrics.bindBreaker(this.breaker);
      o.metrics.bindDeadLetterQueue(dlq);
      o.metrics.bindUploadWorker(this.worker);
    }
  }

  /** The metrics' upload observer, plus the time of the last stored upload (backpressure needs to know the store is taking uploads). */
  #observer(metrics: TieringMetrics | null): UploadObserver {
    const m = metrics?.uploadObserver() ?? {};
    return {
      ...m,
      uploaded: (collectionId, bytes) => {
        this.#lastUploadAt = Date.now();
        m.uploaded?.(collectionId, bytes);
      },
    };
  }

  /** Load the dead-letter queue from its file, then start the upload worker and the DLQ flusher. */
  static async start(o: TieringRuntimeOptions): Promise<TieringRuntime> {
    const st = o.storage;
    const dlq = new DeadLetterQueue<unknown>({
      maxSize: st.dlq.max_size,
      ttlDays: st.dlq.ttl_days,
      persistenceEnabled: st.dlq.persistence_enabled,
      persistencePath: st.dlq.persistence_path,
      logger: o.logger,
      isPayload: (v): v is unknown => typeof v === 'object' && v !== null && !Array.isArray(v),
    });
    const loaded = await dlq.load();
    if (loaded.loaded > 0 || loaded.invalid > 0) o.logger.info({ ...loaded, file: st.dlq.persistence_path }, 'Loaded the dead-letter queue');
    const rt = new TieringRuntime(o, dlq);
    rt.#runner.start(rt.worker);
    rt.#runner.start(new DlqFlushService(dlq, { flushIntervalSeconds: st.dlq.flush_interval_seconds, logger: o.logger }));
    return rt;
  }

  // ------------------------------------------------------------------ disaster recovery

  /**
   * Rebuild every collection the store holds that the catalog does not: restore a MemoryS3
   * collection's directory from the store, register an S3Only one as evicted (fetched on first
   * use), then add it to the catalog (creating its tenant and database). Run after
   * `AkiDB.open` and before `openAll`. A collection whose name is taken locally by another one
   * is skipped with a warning.
   */
  async recover(db: AkiDB): Promise<{ collectionId: string; name: string; manifestVersion: number; walFiles: number }[]> {
    // MemoryS3 collections are restored whole (their home is the local disk); S3Only ones are registered evicted.
    const known = new Map(db.allCollections().map((r) => [r.collectionId, r]));
    const names = new Set([...known.values()].map((r) => `${r.tenant}/${r.database}/${r.name}`));
    const restored: { collectionId: string; name: string; manifestVersion: number; walFiles: number }[] = [];
    // Newest first: when two collections in the bucket share a name (two nodes wrote to one
    // bucket), the newer is restored and the other reported.
    const remotes = (await listRemoteCollections(this.store, COLLECTIONS_PREFIX)).sort((a, b) => (a.record.createdAt < b.record.createdAt ? 1 : -1));
    for (const remote of remotes) {
      if (known.has(remote.collectionId)) continue;
      const r = remote.record;
      const name = `${r.tenant}/${r.database}/${r.name}`;
      if (names.has(name)) {
        this.#o.logger.warn({ collectionId: r.collectionId, tenant: r.tenant, database: r.database, name: r.name }, 'Not restoring a collection from the object store: another collection has its name (restored or local)');
        continue;
      }
      const dir = db.collectionDir(remote.collectionId);
      try {
        await rm(dir, { recursive: true, force: true });
        if (r.tieringPolicy === 'S3Only') {
          // The bucket is an S3Only collection's home: register it as evicted; its first use fetches it.
          await mkdir(dir, { recursive: true });
          await writeFile(path.join(dir, EVICTED_MARKER), `${new Date().toISOString()}\n`);
          await fsyncDir(dir);
          db.adoptCollection(r);
          names.add(name);
          restored.push({ collectionId: r.collectionId, name: r.name, manifestVersion: 0, walFiles: 0 });
          this.#o.logger.info({ collectionId: r.collectionId, tenant: r.tenant, database: r.database, name: r.name }, 'Registered an S3Only collection from the object store (fetched on first use)');
          continue;
        }
        const res = await restoreCollection(this.store, remote.prefix, dir, { logger: this.#o.logger });
        db.adoptCollection({ ...res.record, tieringPolicy: res.record.tieringPolicy ?? 'MemoryS3' });
        names.add(name);
        restored.push({ collectionId: r.collectionId, name: r.name, manifestVersion: res.manifestVersion, walFiles: res.walFiles });
        this.#o.logger.info({ collectionId: r.collectionId, tenant: r.tenant, database: r.database, name: r.name, manifestVersion: res.manifestVersion, segments: res.segments, walFiles: res.walFiles, gaps: res.gaps.length }, 'Restored a collection from the object store');
      } catch (err) {
        await rm(dir, { recursive: true, force: true }).catch(() => undefined);
        // A store that stops answering fails the whole recovery (the caller retries); one bad collection does not.
        if (err instanceof ObjectStoreError && err.kind === 'transient') throw err;
        this.#o.logger.error({ collectionId: r.collectionId, name, err: String(err) }, 'Could not restore a collection from the object store; the others are restored');
      }
    }
    return restored;
  }

  // ------------------------------------------------------------------ engine hooks

  walHooks(rec: CollectionRecord): Pick<WalOptions, 'commitHook' | 'groupCommitMs'> {
    if (rec.tieringPolicy === 'S3Only') return { commitHook: (chunk) => this.#storeWalGroup(rec, chunk), groupCommitMs: this.#o.storage.s3only_group_commit_ms };
    // Memory collections get the hook too: one may move to MemoryS3 while open.
    if (this.#o.storage.max_upload_lag_seconds > 0) return { commitHook: () => this.#holdWhileLagging(rec.collectionId) };
    return {};
  }

  /**
   * MemoryS3 backpressure: while the collection's upload lag is over `max_upload_lag_seconds` and
   * the store is taking uploads, just not fast enough (circuit closed, an upload stored in the last
   * 2 s), hold the WAL group
   * (and so every write behind it) until the lag is back under the bound, for at most 30 s. During
   * an outage (circuit open or half-open) writes never wait: the lag grows and is reported.
   */
  async #holdWhileLagging(collectionId: string): Promise<void> {
    const replica = this.#replicas.get(collectionId);
    if (!replica) return;
    const boundMs = this.#o.storage.max_upload_lag_seconds * 1000;
    const giveUpAt = Date.now() + 30_000;
    let waited = false;
    // Only while the store is taking uploads: with every upload refused (403, an outage the breaker has
    // not caught yet) waiting would stall writes without shrinking the lag.
    const storeTaking = (): boolean => this.breaker.state === 'closed' && Date.now() - this.#lastUploadAt < 2000;
    while (replica.replicator.lagMs() > boundMs && storeTaking() && !this.#stopped && this.#replicas.get(collectionId) === replica) {
      if (Date.now() >= giveUpAt) {
        this.#o.logger.warn({ collectionId, lagMs: replica.replicator.lagMs(), boundMs }, 'Upload lag stayed over max_upload_lag_seconds for 30 s; letting writes through');
        return;
      }
      waited = true;
      await sleep(20);
    }
    if (waited) this.#o.metrics?.uploadBackpressure.inc({ collection_id: collectionId });
  }

  attach(col: Collection, rec: CollectionRecord, dir: string): void {
    const current = this.#replicas.get(rec.collectionId);
    if (rec.tieringPolicy === 'Memory') {
      if (current) {
        this.#replicas.delete(rec.collectionId);
        this.#track(this.#detach(rec, current).then(() => this.#deleteRemote(rec, 'moved to Memory')));
      }
      return;
    }
    if (current || this.#stopped) return;
    this.worker.resume(rec.collectionId);
    const replicator = new CollectionReplicator({
      collectionId: rec.collectionId,
      dir,
      prefix: `${COLLECTIONS_PREFIX}${rec.collectionId}/`,
      store: this.store,
      uploads: this.worker,
      record: rec,
      logger: this.#o.logger,
      intervalMs: this.#o.storage.s3_sync_interval_ms,
      externalWalFrom: rec.tieringPolicy === 'S3Only' ? col.activeWalFile : null,
      onManifestStored: () => this.#o.metrics?.lastSnapshot.set({ collection_id: rec.collectionId }, Date.now() / 1000),
    });
    const handle = this.#runner.start(replicator);
    this.#replicas.set(rec.collectionId, { rec, replicator, stop: (g) => handle.stop(g) });
  }

  async dropped(rec: CollectionRecord): Promise<void> {
    const replica = this.#replicas.get(rec.collectionId);
    this.#replicas.delete(rec.collectionId);
    this.#owedEnds.delete(rec.collectionId);
    await this.#detach(rec, replica);
    this.#track(this.#deleteRemote(rec, 'dropped'));
  }

  /** Stop shipping a collection: its replicator, then every upload of it queued or in flight (one landing after the deletion would bring it back), then its dead letters. */
  async #detach(rec: CollectionRecord, replica: Replica | undefined): Promise<void> {
    await replica?.stop(0);
    await this.worker.cancel(rec.collectionId);
    this.dlq.clear(rec.collectionId);
  }

  // ------------------------------------------------------------------ S3Only local cache

  touched(collectionId: string): void {
    if (this.#replicas.get(collectionId)?.rec.tieringPolicy !== 'S3Only') return;
    this.#cache.hits += 1;
    this.#o.metrics?.cacheHits.inc({ collection_id: collectionId });
  }

  /** S3Only lookups served by a local copy (hits) and fetched from the bucket (misses), since start. */
  cacheStats(): { hits: number; misses: number; evictions: number } {
    return { ...this.#cache };
  }

  async evicting(rec: CollectionRecord): Promise<void> {
    const replica = this.#replicas.get(rec.collectionId);
    this.#replicas.delete(rec.collectionId);
    await replica?.stop(0);
  }

  /**
   * Fetch an evicted S3Only collection back from the bucket (a cache miss). Restored beside the
   * directory first, then moved in; the EVICTED marker goes last, so a crash midway leaves a
   * collection that is still evicted (and fetched again), never an empty one.
   */
  async fetchEvicted(rec: CollectionRecord, dir: string): Promise<boolean> {
    const t0 = performance.now();
    const staging = `${dir}.fetch`;
    try {
      await rm(staging, { recursive: true, force: true });
      await restoreCollection(this.store, `${COLLECTIONS_PREFIX}${rec.collectionId}/`, staging, { logger: this.#o.logger });
      for (const name of await readdir(dir)) if (name !== EVICTED_MARKER) await rm(path.join(dir, name), { recursive: true, force: true });
      for (const name of await readdir(staging)) await rename(path.join(staging, name), path.join(dir, name));
      await fsyncDir(dir);
      await unlink(path.join(dir, EVICTED_MARKER));
      await fsyncDir(dir);
      await rm(staging, { recursive: true, force: true });
    } catch (err) {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw new AkiError('STORE_UNAVAILABLE', { collectionId: rec.collectionId, reason: 'fetch' }, `Collection ${rec.name} is not cached locally and could not be fetched from the object store: ${String(err)}`, { cause: err });
    }
    this.#cache.misses += 1;
    this.#o.metrics?.cacheMisses.inc({ collection_id: rec.collectionId });
    this.#o.logger.info({ collectionId: rec.collectionId, name: rec.name, ms: Math.round(performance.now() - t0) }, 'Fetched an evicted S3Only collection from the object store');
    return true;
  }

  /**
   * Keep the S3Only collections open locally within `cache_size` vectors: evict the least recently
   * used ones that have been idle for `idleMs` and whose every write is in the bucket (nothing
   * pending, the WAL caught up, no end marker owed). The most recently used one always stays.
   * Returns the ids evicted.
   */
  async trimCache(db: AkiDB, idleMs: number, now = Date.now()): Promise<string[]> {
    const limit = this.#o.storage.cache_size;
    const open = (await db.openCollections()).filter((c) => c.info.tieringPolicy === 'S3Only');
    let total = open.reduce((n, c) => n + c.stats().documents, 0);
    const evicted: string[] = [];
    const byAge = open.map((c) => ({ c, used: db.lastUsed(c.info.collectionId) ?? 0 })).sort((a, b) => a.used - b.used);
    for (const { c, used } of byAge.slice(0, -1)) {
      if (total <= limit) break;
      const id = c.info.collectionId;
      const r = this.#replicas.get(id);
      const stats = r?.replicator.stats();
      const settled = stats !== undefined && stats.lagMs === 0 && stats.pendingObjects === 0 && r!.replicator.walCaughtUp() && (this.#owedEnds.get(id)?.length ?? 0) === 0;
      if (now - used < idleMs || !settled) continue;
      const documents = c.stats().documents;
      await db.evictCollection(id);
      total -= documents;
      evicted.push(id);
      this.#cache.evictions += 1;
      this.#o.logger.info({ collectionId: id, name: c.name, documents, cacheSize: limit }, 'Evicted an idle S3Only collection from the local cache (it stays in the object store)');
    }
    return evicted;
  }

  /** Trim the cache every `intervalMs` until stopped. */
  startCacheTrimmer(db: AkiDB, intervalMs = 5000, idleMs = 30_000): void {
    this.#runner.start({
      name: 's3only-cache',
      run: async (signal) => {
        while (!signal.aborted) {
          await sleep(intervalMs, signal);
          if (signal.aborted) break;
          await this.trimCache(db, idleMs).catch((err: unknown) => this.#o.logger.warn({ err: String(err) }, 'Trimming the S3Only cache failed; will retry'));
        }
      },
    });
  }

  // ------------------------------------------------------------------ S3Only write path

  /**
   * The commit hook of an S3Only collection: store one WAL group under its chunk key before the
   * writes in it are acknowledged. Refuses at once (CIRCUIT_OPEN) while the circuit is open;
   * retries transient failures with short backoff until `s3only_ack_timeout_seconds`; then
   * STORE_UNAVAILABLE. The WAL rolls the group back and moves to a new file, and the next stored
   * group is preceded by an end marker for the old file, so an upload that lands late is ignored.
   */
  async #storeWalGroup(rec: CollectionRecord, chunk: WalChunk): Promise<void> {
    const deadline = Date.now() + this.#o.storage.s3only_ack_timeout_seconds * 1000;
    const prefix = `${COLLECTIONS_PREFIX}${rec.collectionId}/`;
    try {
      const replica = this.#replicas.get(rec.collectionId);
      if (!replica) throw new AkiError('STORE_UNAVAILABLE', { collectionId: rec.collectionId }, 'The collection is not attached to the object store');
      // WAL files written before this open (a crash between the local write and its upload) are
      // shipped by the replicator; their LSNs come first, so nothing newer may be stored before them.
      while (!replica.replicator.walCaughtUp()) {
        if (this.breaker.state === 'open') throw this.#circuitOpen();
        if (Date.now() >= deadline) throw new AkiError('STORE_UNAVAILABLE', { collectionId: rec.collectionId, reason: 'catching_up' }, 'The collection is still storing WAL written before it opened');
        await sleep(10);
      }
      const owed = this.#owedEnds.get(rec.collectionId) ?? [];
      while (owed.length > 0) {
        const end = owed[0]!;
        await this.#putBeforeDeadline(rec.collectionId, prefix + walEndKey(end.file, end.offset), new Uint8Array(0), deadline);
        owed.shift();
      }
      await this.#putBeforeDeadline(rec.collectionId, prefix + walChunkKey(chunk.file, chunk.start, chunk.end), chunk.bytes, deadline);
      replica.replicator.noteWalStored(chunk.file, chunk.start, chunk.end);
    } catch (err) {
      let owed = this.#owedEnds.get(rec.collectionId);
      if (!owed) this.#owedEnds.set(rec.collectionId, (owed = []));
      owed.push({ file: chunk.file, offset: chunk.start });
      throw err;
    }
  }

  #circuitOpen(): AkiError {
    return new AkiError('CIRCUIT_OPEN', { store: this.storeDescription, retryAfterMs: this.breaker.retryAfterMs }, `The object store is unavailable (circuit open); retry in ${Math.ceil(this.breaker.retryAfterMs / 1000)} s`);
  }

  async #putBeforeDeadline(collectionId: string, key: string, body: Uint8Array, deadline: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const permit = this.breaker.tryAcquire();
      if (!permit) throw this.#circuitOpen();
      let timer: NodeJS.Timeout | undefined;
      try {
        const put = this.store.put(key, body);
        const expired = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ObjectStoreError('transient', 'put', key, 'no answer before the acknowledgement deadline')), Math.max(1, deadline - Date.now()));
        });
        put.catch(() => undefined);
        await Promise.race([put, expired]);
        this.breaker.recordSuccess(permit);
        this.#o.metrics?.s3Uploads.inc({ collection_id: collectionId });
        return;
      } catch (err) {
        const kind = err instanceof ObjectStoreError ? err.kind : 'transient';
        const status = err instanceof ObjectStoreError ? err.status : undefined;
        this.breaker.recordFailure(kind, permit);
        const delay = backoffMs(attempt, { maxRetries: Infinity, baseBackoffMs: 50, maxBackoffMs: 1000 });
        if (kind === 'permanent' || Date.now() + delay >= deadline) {
          this.#o.metrics?.s3PermanentFailures.inc({ collection_id: collectionId });
          this.#o.logger.warn({ collectionId, key, status, attempts: attempt, err: String(err) }, 'S3Only write refused: its WAL group was not stored');
          throw new AkiError('STORE_UNAVAILABLE', { collectionId, ...(status !== undefined ? { status } : {}), attempts: attempt, kind }, `The object store did not store the write (${kind === 'permanent' ? `status ${status ?? 'unknown'}` : 'no success before the deadline'}); it was not applied`, { cause: err });
        }
        this.#o.metrics?.s3Retries.inc({ collection_id: collectionId });
        await sleep(delay, this.#abort.signal);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  // ------------------------------------------------------------------ views for the API

  /** The replication state of one collection; null for a Memory one. */
  replication(collectionId: string): ReplicationStats | null {
    return this.#replicas.get(collectionId)?.replicator.stats() ?? null;
  }

  /** Resend now every dead-lettered upload of a collection that is still pending (the rest the replicator re-ships from disk by itself). */
  retryDeadLetters(collectionId: string): { requeued: number; entries: DlqEntry<unknown>[] } {
    const taken = this.dlq.take(collectionId);
    const replica = this.#replicas.get(collectionId);
    const requeued = replica ? replica.replicator.resendPending(new Set(taken.map((e) => e.key))) : 0;
    return { requeued, entries: taken };
  }

  /** Current runtime-changeable settings. */
  settings(): RuntimeTierSettings {
    const b = this.breaker;
    return {
      circuitBreaker: { enabled: b.enabled, failureThreshold: b.failureThreshold, windowSeconds: b.windowSeconds, cooldownSeconds: b.cooldownSeconds, halfOpenSuccesses: b.halfOpenSuccesses, minimumRequests: b.minimumRequests },
      dlq: { maxSize: this.dlq.maxSize, ttlDays: this.dlq.ttlDays },
      s3Upload: this.worker.settings(),
    };
  }

  /** Apply settings (already validated); each part takes effect from the next call, upload or entry. */
  applySettings(s: Partial<RuntimeTierSettings>): void {
    if (s.circuitBreaker) this.breaker.configure(s.circuitBreaker);
    if (s.dlq) this.dlq.configure(s.dlq);
    if (s.s3Upload) this.worker.configure(s.s3Upload);
  }

  /** One cheap call to the store for GET /admin/health. */
  async checkStore(): Promise<string> {
    const it = this.store.list(`${COLLECTIONS_PREFIX}`)[Symbol.asyncIterator]();
    await it.next();
    await it.return?.();
    return `${this.storeDescription} answered a listing (circuit ${this.breaker.state})`;
  }

  // ------------------------------------------------------------------ shutdown

  /** Ship what is pending (up to `graceMs`), flush the DLQ, stop every service. */
  async stop(graceMs: number): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#abort.abort();
    // With the circuit open nothing can be shipped: do not hold the shutdown for the grace period.
    const open = this.breaker.state === 'open';
    if (open) this.#o.logger.warn({ pending: this.worker.queueSize }, 'Stopping with the circuit open: pending uploads wait for the next start (it re-ships what the bucket lacks)');
    await this.#runner.stop(open ? 0 : graceMs);
    await Promise.allSettled([...this.#deletions]);
    this.#replicas.clear();
  }

  #track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.#o.logger.error({ err: String(err) }, 'Object-store cleanup failed')).finally(() => this.#deletions.delete(tracked));
    this.#deletions.add(tracked);
  }

  /** Delete a collection's remote copy, record first (so no restore finds a half-deleted one); retried until it succeeds or the server stops. */
  async #deleteRemote(rec: CollectionRecord, why: string): Promise<void> {
    const prefix = `${COLLECTIONS_PREFIX}${rec.collectionId}/`;
    for (let attempt = 1; !this.#abort.signal.aborted; attempt++) {
      try {
        await this.store.delete(`${prefix}collection.json`);
        let n = 0;
        for await (const info of this.store.list(prefix)) {
          await this.store.delete(info.key);
          n += 1;
        }
        this.#o.logger.info({ collectionId: rec.collectionId, objects: n + 1, why }, 'Deleted the collection from the object store');
        return;
      } catch (err) {
        const delay = backoffMs(attempt, { maxRetries: Infinity, baseBackoffMs: 1000, maxBackoffMs: 60_000 });
        this.#o.logger.warn({ collectionId: rec.collectionId, attempt, delayMs: delay, err: String(err) }, 'Deleting the collection from the object store failed; will retry');
        await sleep(delay, this.#abort.signal);
      }
    }
    this.#o.logger.error({ collectionId: rec.collectionId, why }, 'Server stopped before the collection was deleted from the object store; a disaster recovery from this bucket would bring it back');
  }
}
