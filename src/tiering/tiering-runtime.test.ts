import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AkiConfig } from '../config/config-schema.js';
import { loadConfig } from '../config/load-config.js';
import { AkiDB } from '../engine/database.js';
import { AkiError } from '../errors.js';
import { MemoryObjectStore } from '../objectstore/memory-object-store.js';
import { sleep } from '../services/service.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { parseReplicaKey } from './collection-replicator.js';
import { listRemoteCollections } from './restore-collection.js';
import { COLLECTIONS_PREFIX, TieringRuntime } from './tiering-runtime.js';

const tempDir = useTempDirs();
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** The server's storage defaults, with short timings so the failure paths run in milliseconds. */
function storageConfig(dataDir: string, change: Partial<AkiConfig['storage']> = {}): AkiConfig['storage'] {
  const base = loadConfig({ env: {}, flags: {}, cwd: dataDir }).config.storage;
  return {
    ...base,
    s3_sync_interval_ms: 20,
    s3only_group_commit_ms: 0,
    s3only_ack_timeout_seconds: 0.3,
    retry: { max_retries: 2, base_backoff_secs: 0.01, max_backoff_secs: 0.02 },
    circuit_breaker: { ...base.circuit_breaker, window_seconds: 60, cooldown_seconds: 0.2, half_open_successes: 1, minimum_requests: 4 },
    dlq: { ...base.dlq, persistence_path: path.join(dataDir, 'dlq.json') },
    ...change,
  };
}

const running: { rt: TieringRuntime; db: AkiDB }[] = [];
afterEach(async () => {
  for (const { rt, db } of running.splice(0)) {
    await rt.stop(0);
    await db.close();
  }
});

async function openNode(store: MemoryObjectStore, change: Partial<AkiConfig['storage']> = {}): Promise<{ rt: TieringRuntime; db: AkiDB; dataDir: string }> {
  const dataDir = tempDir();
  const rt = await TieringRuntime.start({ store, storeDescription: 'memory', storage: storageConfig(dataDir, change), logger: quiet, metrics: null });
  const db = await AkiDB.open({ dataDir, tiering: rt, logger: quiet, hnsw: { threshold: 100_000 }, compaction: { idleFlushMs: 3_600_000 } });
  running.push({ rt, db });
  return { rt, db, dataDir };
}

const vec = (i: number): number[] => [i, 1, (i * 7) % 5, 2];

async function expectCode(p: Promise<unknown>, codes: string[]): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AkiError);
  expect(codes).toContain((err as AkiError).code);
  return (err as AkiError).code;
}

function walFiles(dir: string): { name: string; size: number }[] {
  const walDir = path.join(dir, 'wal');
  return readdirSync(walDir)
    .sort()
    .map((name) => ({ name, size: statSync(path.join(walDir, name)).size }));
}

describe('S3Only write path', () => {
  it('acknowledges a write only once its WAL group is stored; a new node restores exactly the acknowledged writes', async () => {
    const store = new MemoryObjectStore();
    const { db } = await openNode(store);
    const col = await db.createCollection({ name: 'c', dimension: 4, tieringPolicy: 'S3Only' });
    const prefix = `${COLLECTIONS_PREFIX}${col.info.collectionId}/`;
    for (let i = 0; i < 5; i++) {
      const before = store.stats().calls.put;
      await col.upsert([{ id: `d${i}`, vector: vec(i) }]);
      // By the time the promise resolved, one more WAL chunk object had been stored.
      expect(store.stats().calls.put).toBeGreaterThan(before);
    }
    const chunks: string[] = [];
    for await (const o of store.list(prefix)) if (parseReplicaKey(o.key.slice(prefix.length))?.kind === 'wal') chunks.push(o.key);
    expect(chunks.length).toBeGreaterThanOrEqual(5);

    const remotes = await listRemoteCollections(store, COLLECTIONS_PREFIX);
    expect(remotes.map((r) => r.record.tieringPolicy)).toEqual(['S3Only']);
    const { rt, db: db2 } = await openNode(store);
    expect((await rt.recover(db2)).map((r) => r.collectionId)).toEqual([col.info.collectionId]);
    // Registered, not fetched: the bucket is its home until it is used.
    expect(db2.isEvicted(col.info.collectionId)).toBe(true);
    const restored = await db2.getCollection('c');
    expect(db2.isEvicted(col.info.collectionId)).toBe(false);
    expect(restored.info.tieringPolicy).toBe('S3Only');
    expect(restored.stats().documents).toBe(5);
    for (let i = 0; i < 5; i++) expect((await restored.get([`d${i}`])).flatMap((d) => (d ? [d.id] : []))).toEqual([`d${i}`]);
  });

  it('refuses writes while the store fails (STORE_UNAVAILABLE, then CIRCUIT_OPEN at once); refused writes change nothing, and writes resume after the cooldown', async () => {
    const store = new MemoryObjectStore();
    const { db } = await openNode(store);
    const col = await db.createCollection({ name: 'c', dimension: 4, tieringPolicy: 'S3Only' });
    await col.upsert([{ id: 'ok', vector: vec(1) }]);
    const dir = db.collectionDir(col.info.collectionId);
    const walBefore = walFiles(dir);

    store.faults.failWith(503);
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push(await expectCode(col.upsert([{ id: `refused${i}`, vector: vec(i) }]), ['STORE_UNAVAILABLE', 'CIRCUIT_OPEN']));
    // The first write's own retries may already open the circuit; by the last one it is open.
    expect(codes.at(-1)).toBe('CIRCUIT_OPEN');
    const t0 = performance.now();
    await expectCode(col.upsert([{ id: 'refused-fast', vector: vec(9) }]), ['CIRCUIT_OPEN']);
    // Refused without a call to the store: well inside the 300 ms acknowledgement deadline.
    expect(performance.now() - t0).toBeLessThan(250);

    expect(col.stats().documents).toBe(1);
    expect(await col.get(['refused0', 'refused-fast'])).toEqual([null, null]);
    // Every refused group was cut from its WAL file again; later appends went to fresh files.
    const walAfter = walFiles(dir);
    expect(walAfter.length).toBeGreaterThan(walBefore.length);
    expect(walAfter.find((f) => f.name === walBefore.at(-1)!.name)!.size).toBe(walBefore.at(-1)!.size);

    store.faults.reset();
    await sleep(250);
    await col.upsert([{ id: 'after', vector: vec(2) }]);
    expect(col.stats().documents).toBe(2);

    // After a restart the refused writes stay gone.
    const lsn = (await col.upsert([{ id: 'last', vector: vec(3) }])).lsn;
    expect(lsn).toBeGreaterThan(0);
    const { rt, db: db2 } = await openNode(store);
    await rt.recover(db2);
    const restored = await db2.getCollection('c');
    expect((await restored.get(['ok', 'after', 'last', 'refused0', 'refused-fast'])).flatMap((d) => (d ? [d.id] : [])).sort()).toEqual(['after', 'last', 'ok']);
  });

  it('an upload that lands after its write was refused is ignored by the restore (end marker), and no acknowledged write is lost', async () => {
    const store = new MemoryObjectStore();
    const { db } = await openNode(store, { s3only_ack_timeout_seconds: 0.1 });
    const col = await db.createCollection({ name: 'c', dimension: 4, tieringPolicy: 'S3Only' });
    await col.upsert([{ id: 'a', vector: vec(1) }]);
    // Slower than the deadline: the put is still stored, later, but the write is refused.
    store.faults.latency(200, { operations: ['put'] });
    await expectCode(col.upsert([{ id: 'late', vector: vec(2) }]), ['STORE_UNAVAILABLE']);
    await sleep(300);
    store.faults.reset();
    await col.upsert([{ id: 'b', vector: vec(3) }]);
    await col.upsert([{ id: 'c', vector: vec(4) }]);
    expect(col.stats().documents).toBe(3);

    const prefix = `${COLLECTIONS_PREFIX}${col.info.collectionId}/`;
    const kinds: string[] = [];
    for await (const o of store.list(prefix)) kinds.push(parseReplicaKey(o.key.slice(prefix.length))?.kind ?? 'other');
    expect(kinds).toContain('wal-end');

    const { rt, db: db2 } = await openNode(store);
    await rt.recover(db2);
    const restored = await db2.getCollection('c');
    expect((await restored.get(['a', 'late', 'b', 'c'])).flatMap((d) => (d ? [d.id] : [])).sort()).toEqual(['a', 'b', 'c']);
    expect(restored.stats().documents).toBe(3);
  });

  it('a permanent refusal (403) is STORE_UNAVAILABLE at once, without retries', async () => {
    const store = new MemoryObjectStore();
    const { db } = await openNode(store);
    const col = await db.createCollection({ name: 'c', dimension: 4, tieringPolicy: 'S3Only' });
    store.faults.failWith(403, { operations: ['put'] });
    const err = await col.upsert([{ id: 'x', vector: vec(1) }]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE', details: { status: 403, attempts: 1, kind: 'permanent' } });
    expect(await col.get(['x'])).toEqual([null]);
  });
});

describe('S3Only local cache', () => {
  it('evicts idle, fully stored S3Only collections past cache_size (LRU), and fetches one back whole on its next use', async () => {
    const store = new MemoryObjectStore();
    const { db, rt } = await openNode(store, { cache_size: 30 });
    const names = ['a', 'b', 'c'];
    for (const name of names) {
      const col = await db.createCollection({ name, dimension: 4, tieringPolicy: 'S3Only' });
      await col.upsert(Array.from({ length: 20 }, (_, i) => ({ id: `${name}${i}`, vector: vec(i) })));
    }
    const memory = await db.createCollection({ name: 'm', dimension: 4 });
    await memory.upsert(Array.from({ length: 50 }, (_, i) => ({ id: `m${i}`, vector: vec(i) })));
    // Not idle yet: nothing is evicted.
    expect(await rt.trimCache(db, 60_000)).toEqual([]);
    await db.getCollection('c'); // most recently used
    // Wait until every write is in the bucket (segments and manifests follow the WAL groups).
    for (let i = 0; i < 200; i++) {
      const settled = (await db.openCollections()).filter((c) => c.info.tieringPolicy === 'S3Only').every((c) => rt.replication(c.info.collectionId)?.pendingObjects === 0 && rt.replication(c.info.collectionId)?.lagMs === 0);
      if (settled) break;
      await sleep(20);
    }
    const idA = (await db.getCollection('a')).info.collectionId;
    await sleep(5);
    await db.getCollection('b');
    await sleep(5);
    await db.getCollection('c');
    // 60 vectors, room for 30: the two least recently used go (a, then b); c stays; the Memory collection is never evicted.
    const evicted = await rt.trimCache(db, 0);
    expect(evicted).toHaveLength(2);
    expect(evicted[0]).toBe(idA);
    expect(db.isEvicted(idA)).toBe(true);
    expect(readdirSync(db.collectionDir(idA))).toEqual(['EVICTED']);
    expect((await db.openCollections()).map((c) => c.name).sort()).toEqual(['c', 'm']);

    // Next use fetches it back whole; it takes writes, and those reach the bucket again.
    const a = await db.getCollection('a');
    expect(db.isEvicted(idA)).toBe(false);
    expect(a.stats().documents).toBe(20);
    expect((await a.get(['a0', 'a19'])).map((d) => d?.id)).toEqual(['a0', 'a19']);
    await a.upsert([{ id: 'a-new', vector: vec(7) }]);
    expect(rt.cacheStats()).toMatchObject({ misses: 1, evictions: 2 });
    expect(rt.cacheStats().hits).toBeGreaterThan(0);

    // After a restart an evicted collection stays in the bucket until used.
    const idB = evicted[1]!;
    await db.close();
    const db2 = await AkiDB.open({ dataDir: db.dataDir, tiering: rt, logger: quiet });
    running.push({ rt, db: db2 });
    await db2.openAll();
    expect(db2.isEvicted(idB)).toBe(true);
    expect((await db2.getCollection('b')).stats().documents).toBe(20);
  });

  it('a fetch while the store is down answers STORE_UNAVAILABLE and leaves the collection evicted, not empty', async () => {
    const store = new MemoryObjectStore();
    const { db, rt } = await openNode(store, { cache_size: 0 });
    const col = await db.createCollection({ name: 'x', dimension: 4, tieringPolicy: 'S3Only' });
    await col.upsert([{ id: 'x1', vector: vec(1) }]);
    await db.createCollection({ name: 'y', dimension: 4, tieringPolicy: 'S3Only' });
    for (let i = 0; i < 200 && (rt.replication(col.info.collectionId)?.pendingObjects !== 0 || rt.replication(col.info.collectionId)?.lagMs !== 0); i++) await sleep(20);
    await db.getCollection('y');
    expect(await rt.trimCache(db, 0)).toEqual([col.info.collectionId]);
    store.faults.failWith(503);
    await expect(db.getCollection('x')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(db.isEvicted(col.info.collectionId)).toBe(true);
    store.faults.reset();
    expect((await db.getCollection('x')).stats().documents).toBe(1);
  });
});

describe('TieringRuntime', () => {
  it('moves a collection between Memory and MemoryS3; S3Only is refused both ways; a drop deletes the remote copy', async () => {
    const store = new MemoryObjectStore();
    const { db } = await openNode(store);
    const col = await db.createCollection({ name: 'm', dimension: 4 });
    expect(col.info.tieringPolicy).toBe('Memory');
    await col.upsert([{ id: 'a', vector: vec(1) }]);
    await db.setTieringPolicy(col.info.collectionId, 'MemoryS3');
    const prefix = `${COLLECTIONS_PREFIX}${col.info.collectionId}/`;
    const count = async (): Promise<number> => {
      const keys: string[] = [];
      for await (const o of store.list(prefix)) keys.push(o.key);
      return keys.length;
    };
    for (let i = 0; i < 100 && (await count()) < 2; i++) await sleep(20);
    expect(await count()).toBeGreaterThanOrEqual(2);
    await expect(db.setTieringPolicy(col.info.collectionId, 'S3Only')).rejects.toMatchObject({ code: 'TIER_UNAVAILABLE' });
    await db.dropCollection('m');
    for (let i = 0; i < 100 && (await count()) > 0; i++) await sleep(20);
    expect(await count()).toBe(0);

    const s3only = await db.createCollection({ name: 's', dimension: 4, tieringPolicy: 'S3Only' });
    await expect(db.setTieringPolicy(s3only.info.collectionId, 'Memory')).rejects.toMatchObject({ code: 'TIER_UNAVAILABLE' });
  });

  it('recovery restores the newer of two collections that share a name in one bucket, and every other one', async () => {
    const store = new MemoryObjectStore();
    const ids: string[] = [];
    for (const docs of [1, 2]) {
      const { db } = await openNode(store);
      const col = await db.createCollection({ name: 'same', dimension: 4, tieringPolicy: 'S3Only' });
      await col.upsert(Array.from({ length: docs }, (_, i) => ({ id: `d${i}`, vector: vec(i) })));
      ids.push(col.info.collectionId);
      await sleep(5); // distinct createdAt
    }
    const { db: other } = await openNode(store);
    await (await other.createCollection({ name: 'other', dimension: 4, tieringPolicy: 'S3Only' })).upsert([{ id: 'o', vector: vec(1) }]);
    const { rt, db } = await openNode(store);
    const restored = await rt.recover(db);
    expect(restored.map((r) => r.name).sort()).toEqual(['other', 'same']);
    const same = await db.getCollection('same');
    expect(same.info.collectionId).toBe(ids[1]);
    expect(same.stats().documents).toBe(2);
  });

  it('MemoryS3 backpressure: writes wait while the lag is over max_upload_lag_seconds and the store is taking uploads, never while it refuses them', async () => {
    const store = new MemoryObjectStore();
    const { db, rt } = await openNode(store, { max_upload_lag_seconds: 0.3 });
    const col = await db.createCollection({ name: 'b', dimension: 4, tieringPolicy: 'MemoryS3' });
    const id = col.info.collectionId;
    // A slow store: every put takes 150 ms, one upload at a time, so a write burst outruns it.
    rt.applySettings({ s3Upload: { batchSize: 1, maxConcurrency: 1, compression: 'none' } });
    store.faults.latency(150, { operations: ['put'] });
    let maxLag = 0;
    const t0 = performance.now();
    for (let i = 0; i < 150; i++) {
      await col.upsert([{ id: `d${i}`, vector: vec(i) }]);
      maxLag = Math.max(maxLag, rt.replication(id)!.lagMs);
      await sleep(2);
    }
    const held = performance.now() - t0;
    // Bound 300 ms, plus a sync interval and one upload in flight.
    expect(maxLag).toBeLessThan(300 + 20 + 150 + 200);
    // Unheld, 150 writes take well under a second here; held, they wait for the 150 ms uploads.
    expect(held).toBeGreaterThan(1500);

    // A store refusing every upload (403) takes none: writes go through at once and the lag grows.
    store.faults.reset();
    store.faults.failWith(403, { operations: ['put'] });
    await sleep(2100);
    const t1 = performance.now();
    for (let i = 0; i < 20; i++) await col.upsert([{ id: `e${i}`, vector: vec(i) }]);
    expect(performance.now() - t1).toBeLessThan(1000);
  });

  it('without an object store only Memory collections can be created', async () => {
    const db = await AkiDB.open({ dataDir: tempDir(), logger: quiet });
    try {
      await expect(db.createCollection({ name: 'x', dimension: 4, tieringPolicy: 'MemoryS3' })).rejects.toMatchObject({ code: 'TIER_UNAVAILABLE' });
      await expect(db.createCollection({ name: 'x', dimension: 4, tieringPolicy: 'Bogus' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect((await db.createCollection({ name: 'x', dimension: 4 })).info.tieringPolicy).toBe('Memory');
    } finally {
      await db.close();
    }
  });
});
