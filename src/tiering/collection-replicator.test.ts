import { appendFileSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { Catalog, type CollectionRecord } from '../catalog/catalog.js';
import { AkiDB } from '../engine/database.js';
import type { Collection } from '../engine/collection.js';
import type { EngineOptionsInput } from '../engine/options.js';
import type { Metadata } from '../index/filter.js';
import { FsObjectStore } from '../objectstore/fs-object-store.js';
import { MemoryObjectStore } from '../objectstore/memory-object-store.js';
import type { ObjectInfo, ObjectStore, PutOptions } from '../objectstore/object-store.js';
import { sleep } from '../services/service.js';
import type { Manifest } from '../storage/manifest.js';
import { seededRandom } from '../util/seeded-random.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { CollectionReplicator, decodeManifestFile, decodeRecord, encodeRecord, manifestFiles, manifestKey, parseReplicaKey, readObject, segmentKey, walChunkKey, type CollectionReplicatorOptions } from './collection-replicator.js';
import { DeadLetterQueue } from './dead-letter-queue.js';
import { listRemoteCollections, restoreCollection } from './restore-collection.js';
import { UploadWorker } from './upload-worker.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const DIM = 8;
const ROOT = 'collections/';
/** Small thresholds so a few thousand writes flush, merge and build HNSW indexes. */
const ENGINE: EngineOptionsInput = { compaction: { thresholdOps: 400, idleFlushMs: 60_000, maxSegments: 4 }, hnsw: { threshold: 800, buildThreads: 2 }, logger: quiet };

const tempDir = useTempDirs('akidb-replica-');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An ObjectStore that remembers every key put through it (the memory store counts calls, not keys). */
class RecordingStore implements ObjectStore {
  readonly puts: string[] = [];
  constructor(readonly inner: ObjectStore) {}
  get description(): string {
    return this.inner.description;
  }
  async put(key: string, body: Uint8Array, opts?: PutOptions): Promise<void> {
    await this.inner.put(key, body, opts);
    this.puts.push(key);
  }
  get(key: string): Promise<Uint8Array | null> {
    return this.inner.get(key);
  }
  head(key: string): Promise<ObjectInfo | null> {
    return this.inner.head(key);
  }
  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}

function startWorker(store: ObjectStore, opts: { compression?: 'none' | 'gzip'; maxRetries?: number } = {}) {
  const dlq = new DeadLetterQueue<unknown>({ persistenceEnabled: false });
  const worker = new UploadWorker({
    store,
    batchSize: 10,
    maxConcurrency: 5,
    compression: opts.compression ?? 'none',
    retry: { maxRetries: opts.maxRetries ?? 50, baseBackoffMs: 5, maxBackoffMs: 40 },
    gate: new CircuitBreaker({ enabled: false }),
    deadLetters: dlq,
    logger: quiet,
    idleMs: 5,
  });
  const ac = new AbortController();
  const running = worker.run(ac.signal);
  cleanups.push(async () => {
    ac.abort();
    await running;
  });
  return { worker, dlq };
}

/** Start a replicator's run loop; the returned stop drains it first. */
function startReplicator(opts: CollectionReplicatorOptions): { rep: CollectionReplicator; stop: () => Promise<void> } {
  const rep = new CollectionReplicator(opts);
  const ac = new AbortController();
  const running = rep.run(ac.signal);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await rep.drain(Date.now() + 10_000);
    ac.abort();
    await running;
  };
  cleanups.push(stop);
  return { rep, stop };
}

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

/** Sync, then wait until everything that sync saw is stored. */
async function catchUp(rep: CollectionReplicator): Promise<void> {
  await rep.syncNow();
  await until(() => rep.lagMs() === 0);
}

function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

type Model = Map<string, { vector: number[]; metadata: Metadata } | null>;

/** A source database with one collection, and a model of every acknowledged write. */
async function openSource(name = 'docs', dataDir = tempDir()) {
  const db = await AkiDB.open({ dataDir, ...ENGINE });
  cleanups.push(() => db.close());
  const col = await db.createCollection({ name, dimension: DIM, metric: 'cosine' });
  const record = db.allCollections().find((r) => r.name === name)!;
  const dir = path.join(dataDir, 'collections', record.collectionId);
  return { db, col, record, dir, prefix: `${ROOT}${record.collectionId}/` };
}

function docVector(id: string, version: number): number[] {
  const rnd = seededRandom(hash32(`${id}@${version}`));
  return Array.from({ length: DIM }, () => rnd() * 2 - 1);
}

/** Writer of deterministic upserts and deletes that records each acknowledged one in `model`. */
function writer(col: Collection, model: Model, seed: number, idSpace: number) {
  const rnd = seededRandom(seed);
  let version = 0;
  return {
    async upserts(n: number): Promise<void> {
      version += 1;
      const docs = Array.from({ length: n }, () => {
        const id = `d${Math.floor(rnd() * idSpace)}`;
        return { id, vector: docVector(id, version), metadata: { v: version, g: hash32(id) % 5 } };
      });
      await col.upsert(docs);
      for (const d of docs) model.set(d.id, { vector: d.vector.map(Math.fround), metadata: d.metadata });
    },
    async deletes(n: number): Promise<void> {
      const ids = Array.from({ length: n }, () => `d${Math.floor(rnd() * idSpace)}`);
      await col.delete({ ids });
      for (const id of ids) model.set(id, null);
    },
  };
}

/** Restore `collectionId` from the store into a new data directory, as a new node given only the bucket does, and open it. */
async function restoreAndOpen(store: ObjectStore, collectionId: string) {
  const dataDir = tempDir();
  const found = (await listRemoteCollections(store, ROOT)).find((c) => c.collectionId === collectionId);
  expect(found).toBeDefined();
  const result = await restoreCollection(store, found!.prefix, path.join(dataDir, 'collections', collectionId));
  const catalog = new Catalog(path.join(dataDir, 'metadata.db'));
  catalog.ensureDefaults(result.record.tenant, result.record.database);
  catalog.createCollection(result.record);
  catalog.close();
  const db = await AkiDB.open({ dataDir, ...ENGINE });
  cleanups.push(() => db.close());
  const col = await db.getCollectionById(collectionId);
  return { db, col, result, dir: path.join(dataDir, 'collections', collectionId) };
}

function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

/** Every acknowledged document is back (get), nothing else is (count), and queries find them (against an exact top-10). */
async function expectMatchesModel(col: Collection, model: Model): Promise<void> {
  const ids = [...model.keys()];
  const got = await col.get(ids);
  for (let i = 0; i < ids.length; i++) {
    const want = model.get(ids[i]!)!;
    const doc = got[i]!;
    if (want === null) expect(doc, ids[i]).toBeNull();
    else expect({ id: doc?.id, vector: doc?.vector, metadata: doc?.metadata }, ids[i]).toEqual({ id: ids[i], vector: want.vector, metadata: want.metadata });
  }
  const live = [...model].filter(([, d]) => d !== null) as [string, { vector: number[]; metadata: Metadata }][];
  expect(await col.count()).toBe(live.length);
  const rnd = seededRandom(7);
  let overlap = 0;
  for (let q = 0; q < 5; q++) {
    const vector = Array.from({ length: DIM }, () => rnd() * 2 - 1);
    const exact = live.map(([id, d]) => ({ id, s: cosine(vector, d.vector) })).sort((a, b) => b.s - a.s).slice(0, 10);
    const matches = await col.query({ vector, topK: 10 });
    expect(matches).toHaveLength(10);
    for (const m of matches) expect(m.score).toBeCloseTo(cosine(vector, model.get(m.id)!.vector), 3);
    overlap += matches.filter((m) => exact.some((e) => e.id === m.id)).length;
  }
  expect(overlap).toBeGreaterThanOrEqual(45);
}

/** Every remote manifest, parsed. */
async function remoteManifests(store: ObjectStore, prefix: string): Promise<Manifest[]> {
  const out: Manifest[] = [];
  for await (const info of store.list(`${prefix}manifests/`)) out.push(decodeManifestFile((await readObject(store, info.key, info))!, info.key));
  return out;
}

async function remoteKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of store.list(prefix)) out.push(info.key.slice(prefix.length));
  return out;
}

/** A manifest file as the engine writes it. */
function manifestFile(m: Manifest): Buffer {
  const body = JSON.stringify(m);
  return Buffer.from(JSON.stringify({ crc: crc32(body), body }));
}

describe.each([
  { name: 'MemoryObjectStore', make: (): ObjectStore => new MemoryObjectStore(), compression: 'none' as const },
  { name: 'FsObjectStore, gzip', make: (): ObjectStore => new FsObjectStore(tempDir()), compression: 'gzip' as const },
])('CollectionReplicator disaster recovery on $name', ({ make, compression }) => {
  it('restores every acknowledged write (segments, merged and indexed segments, WAL-only tail) into a new data directory', async () => {
    const store = make();
    const { worker } = startWorker(store, { compression });
    const src = await openSource();
    const model: Model = new Map();
    const w = writer(src.col, model, 1, 2500);
    // Running while the engine flushes and merges: it meets segments that vanish under it.
    const { rep } = startReplicator({ collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store, uploads: worker, record: src.record, logger: quiet, intervalMs: 20, gcIntervalMs: 0 });
    for (let round = 0; round < 12; round++) {
      await w.upserts(250);
      await w.deletes(30);
      await sleep(10);
    }
    await src.col.waitForIndexing();
    await w.upserts(120);
    await w.deletes(20);
    const s = src.col.stats();
    expect(s.flushes).toBeGreaterThan(2);
    expect(s.merges).toBeGreaterThan(0);
    expect(s.indexBuilds).toBeGreaterThan(0);
    expect(s.memtableEntries).toBeGreaterThan(0);
    await catchUp(rep);
    expect(rep.stats()).toMatchObject({ lagMs: 0, pendingObjects: 0, storedManifestVersion: s.manifestVersion, reconciled: true });
    expect(rep.stats().walBytesStored).toBeGreaterThan(0);

    const { col, result } = await restoreAndOpen(store, src.record.collectionId);
    expect(result.record).toEqual(src.record);
    expect(result).toMatchObject({ manifestVersion: s.manifestVersion, checkpointLsn: s.checkpointLsn, segments: s.segments, gaps: [], skippedManifests: [] });
    expect(result.walBytes).toBeGreaterThan(0);
    expect(col.stats()).toMatchObject({ walCorruptTails: 0, indexedSegments: s.indexedSegments, memtableEntries: s.memtableEntries });
    await expectMatchesModel(col, model);
  });
});

describe('CollectionReplicator', () => {
  it('keeps the upload lag under 5 s with a healthy store, lets it grow while puts fail, and loses nothing after recovery', async () => {
    const mem = new MemoryObjectStore();
    // Every put takes as long as a slow S3 request, so uploads are seen in flight.
    mem.faults.latency(50, { operations: ['put'] });
    // Two tries, then the dead-letter queue: the outage outlasts them, so recovery needs the replicator's resend.
    const { worker, dlq } = startWorker(mem, { maxRetries: 1 });
    const src = await openSource();
    const model: Model = new Map();
    const w = writer(src.col, model, 2, 3000);
    const { rep } = startReplicator({ collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store: mem, uploads: worker, record: src.record, logger: quiet, resendAfterMs: 300 });
    let maxLag = 0;
    const writeFor = async (ms: number): Promise<void> => {
      maxLag = 0;
      const end = Date.now() + ms;
      const sampler = setInterval(() => (maxLag = Math.max(maxLag, rep.lagMs())), 10);
      try {
        for (let tick = 1; Date.now() < end; tick++) {
          await w.upserts(20);
          if (tick % 5 === 0) await w.deletes(3);
          await sleep(40);
        }
      } finally {
        clearInterval(sampler);
      }
    };

    await writeFor(3000);
    expect(maxLag).toBeGreaterThan(0);
    expect(maxLag).toBeLessThan(5000);
    expect(rep.stats().objectsStored).toBeGreaterThan(3);

    mem.faults.failWith(503, { operations: ['put'] });
    const flushesBefore = src.col.stats().flushes;
    await writeFor(3000);
    expect(src.col.stats().flushes).toBeGreaterThan(flushesBefore);
    // The first write not stored was seen by the first sync of the outage, up to intervalMs after it began.
    expect(rep.lagMs()).toBeGreaterThan(1500);
    expect(dlq.size).toBeGreaterThan(0);

    mem.faults.reset();
    await until(() => rep.lagMs() === 0 && rep.stats().resends > 0);
    await catchUp(rep);
    await expectMatchesModel(src.col, model);
    const { col } = await restoreAndOpen(mem, src.record.collectionId);
    await expectMatchesModel(col, model);
  });

  it('does not upload segments, manifests or the record again after a restart; WAL chunks continue at the stored offset', async () => {
    const store = new RecordingStore(new MemoryObjectStore());
    const { worker } = startWorker(store);
    const src = await openSource();
    const model: Model = new Map();
    const w = writer(src.col, model, 3, 2000);
    for (let i = 0; i < 6; i++) await w.upserts(200);
    // Background merges and index builds finish first: the restart must see the same manifest.
    await src.col.waitForIndexing();
    await w.upserts(50);
    const opts = { collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store, uploads: worker, record: src.record, logger: quiet, intervalMs: 20, gcIntervalMs: 0 };
    const first = startReplicator(opts);
    await catchUp(first.rep);
    await first.stop();
    const firstPuts = store.puts.splice(0);
    const segmentPuts = firstPuts.filter((k) => k.includes('/segments/'));
    expect(segmentPuts.length).toBeGreaterThan(0);
    expect(firstPuts.filter((k) => k.endsWith('collection.json'))).toHaveLength(1);
    const walEnds = new Map<string, number>();
    for (const k of firstPuts) {
      const p = parseReplicaKey(k.slice(src.prefix.length));
      if (p?.kind === 'wal') walEnds.set(p.file, Math.max(walEnds.get(p.file) ?? 0, p.end));
    }

    const second = startReplicator(opts);
    await catchUp(second.rep);
    expect(store.puts).toEqual([]);
    await w.upserts(30);
    await catchUp(second.rep);
    expect(store.puts.every((k) => k.includes('/wal/'))).toBe(true);
    expect(store.puts).toHaveLength(1);
    const chunk = parseReplicaKey(store.puts[0]!.slice(src.prefix.length));
    expect(chunk).toMatchObject({ kind: 'wal', start: walEnds.get((chunk as { file: string }).file) });
    await second.stop();
    const { col } = await restoreAndOpen(store, src.record.collectionId);
    await expectMatchesModel(col, model);
  });

  it('never lets a stored manifest name a file that is not stored, through slow and failing puts', async () => {
    const mem = new MemoryObjectStore();
    mem.faults.latency(8, { operations: ['put'] }).failFraction(0.3, { operations: ['put'], seed: 5 });
    const { worker } = startWorker(mem);
    const src = await openSource();
    const model: Model = new Map();
    const w = writer(src.col, model, 4, 2500);
    const { rep } = startReplicator({ collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store: mem, uploads: worker, record: src.record, logger: quiet, intervalMs: 10, gcIntervalMs: 0 });
    let checks = 0;
    let violations: string[] = [];
    const seenVersions = new Set<number>();
    let writing = true;
    const checker = (async () => {
      while (writing || rep.lagMs() > 0) {
        // One listing is one snapshot: a manifest in it must find its files in it.
        const keys = new Set(await remoteKeys(mem, src.prefix));
        for (const k of keys) {
          const p = parseReplicaKey(k);
          if (p?.kind !== 'manifest') continue;
          const m = decodeManifestFile((await mem.get(src.prefix + k))!, k);
          seenVersions.add(m.version);
          violations = violations.concat(manifestFiles(m).filter((f) => !keys.has(segmentKey(f))).map((f) => `v${m.version}: ${f}`));
        }
        checks += 1;
        await sleep(2);
      }
    })();
    for (let round = 0; round < 10; round++) {
      await w.upserts(200);
      await w.deletes(20);
      await sleep(30);
    }
    await src.col.waitForIndexing();
    writing = false;
    await catchUp(rep);
    await checker;
    expect(violations).toEqual([]);
    expect(checks).toBeGreaterThan(50);
    expect(seenVersions.size).toBeGreaterThan(2);
    expect(mem.stats().injectedFailures.put).toBeGreaterThan(10);
    const { col } = await restoreAndOpen(mem, src.record.collectionId);
    await expectMatchesModel(col, model);
  });

  it('restores from the newest complete manifest, ignoring a newer one whose files are missing', async () => {
    const mem = new MemoryObjectStore();
    const { worker } = startWorker(mem);
    const src = await openSource();
    const model: Model = new Map();
    const w = writer(src.col, model, 5, 1500);
    for (let i = 0; i < 5; i++) await w.upserts(200);
    await src.col.waitForIndexing();
    await w.upserts(50);
    const { rep } = startReplicator({ collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store: mem, uploads: worker, record: src.record, logger: quiet, intervalMs: 20, gcIntervalMs: 0 });
    await catchUp(rep);
    const [stored] = await remoteManifests(mem, src.prefix);
    expect(stored!.segments.length).toBeGreaterThan(0);
    // A newer manifest whose last file never arrived (its node died mid-upload).
    const first = stored!.segments[0]!;
    const next: Manifest = { ...stored!, version: stored!.version + 1, nextSegmentId: 1000, segments: [...stored!.segments, { ...first, id: 999, file: 'seg-999.seg' }] };
    await mem.put(src.prefix + manifestKey(next.version), manifestFile(next));
    const { col, result } = await restoreAndOpen(mem, src.record.collectionId);
    expect(result.manifestVersion).toBe(stored!.version);
    expect(result.skippedManifests).toEqual([next.version]);
    await expectMatchesModel(col, model);
  });

  it('ships a torn WAL tail as it is; the engine cuts it at open after the restore', async () => {
    const mem = new MemoryObjectStore();
    const { worker } = startWorker(mem);
    const dataDir = tempDir();
    const src = await openSource('docs', dataDir);
    const model: Model = new Map();
    const w = writer(src.col, model, 6, 1000);
    for (let i = 0; i < 3; i++) await w.upserts(100);
    await src.db.close();
    // A crash in the middle of a write: a frame header announcing 200 bytes, and 13 of them.
    const walDir = path.join(src.dir, 'wal');
    const active = readdirSync(walDir).filter((n) => statSync(path.join(walDir, n)).size > 0).sort().at(-1)!;
    const torn = Buffer.alloc(21, 7);
    torn.writeUInt32LE(200, 0);
    appendFileSync(path.join(walDir, active), torn);
    const { rep } = startReplicator({ collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store: mem, uploads: worker, record: src.record, logger: quiet, intervalMs: 20 });
    await catchUp(rep);
    const size = statSync(path.join(walDir, active)).size;
    const keys = (await remoteKeys(mem, src.prefix)).map(parseReplicaKey).filter((k) => k?.kind === 'wal' && k.file === active);
    expect(Math.max(...keys.map((k) => (k as { end: number }).end))).toBe(size);

    const { col, dir } = await restoreAndOpen(mem, src.record.collectionId);
    expect(col.stats()).toMatchObject({ walCorruptTails: 1, walDroppedBytes: torn.length });
    expect(statSync(path.join(dir, 'wal', active)).size).toBe(size - torn.length);
    await expectMatchesModel(col, model);
  });

  it('reassembles WAL files from chunks split mid-frame and overlapping, and stops a file at a gap', async () => {
    const mem = new MemoryObjectStore();
    const { worker } = startWorker(mem);
    const src = await openSource();
    const model: Model = new Map();
    const w = writer(src.col, model, 7, 300);
    for (let i = 0; i < 3; i++) await w.upserts(100);
    const { rep, stop } = startReplicator({ collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store: mem, uploads: worker, record: src.record, logger: quiet, intervalMs: 20 });
    await catchUp(rep);
    await stop();
    const walKeys = (await remoteKeys(mem, src.prefix)).filter((k) => k.startsWith('wal/'));
    const file = parseReplicaKey(walKeys[0]!) as { file: string };
    const bytes = readFileSync(path.join(src.dir, 'wal', file.file));
    expect(bytes.length).toBeGreaterThan(1000);
    const rechunk = async (ranges: [number, number][]): Promise<void> => {
      for (const k of await remoteKeys(mem, `${src.prefix}wal/`)) await mem.delete(`${src.prefix}wal/${k}`);
      for (const [a, b] of ranges) await mem.put(src.prefix + walChunkKey(file.file, a, b), bytes.subarray(a, b));
    };
    const n = bytes.length;
    const half = Math.floor(n / 2);
    await rechunk([
      [0, 37],
      [20, 611],
      [37, half],
      [611, n - 5],
      [n - 200, n],
    ]);
    const whole = await restoreAndOpen(mem, src.record.collectionId);
    expect(whole.result.gaps).toEqual([]);
    expect(readFileSync(path.join(whole.dir, 'wal', file.file))).toEqual(bytes);
    await expectMatchesModel(whole.col, model);

    await rechunk([
      [0, half],
      [half + 100, n],
    ]);
    const cut = await restoreAndOpen(mem, src.record.collectionId);
    expect(cut.result.gaps).toEqual([{ file: file.file, offset: half, reason: expect.stringContaining(`${half}..${half + 100}`) as unknown }]);
    expect(cut.col.stats().walCorruptTails).toBe(1);
    expect(await cut.col.count()).toBeLessThan([...model.values()].filter((d) => d !== null).length);
  });

  it('collects garbage: old manifests, merged-away segments, and WAL chunks a stored checkpoint covers; the restore still matches', async () => {
    const mem = new MemoryObjectStore();
    const { worker } = startWorker(mem);
    const src = await openSource();
    const model: Model = new Map();
    const w = writer(src.col, model, 8, 2500);
    const { rep } = startReplicator({ collectionId: src.record.collectionId, dir: src.dir, prefix: src.prefix, store: mem, uploads: worker, record: src.record, logger: quiet, intervalMs: 10, gcIntervalMs: 0 });
    for (let round = 0; round < 10; round++) {
      await w.upserts(250);
      await w.deletes(25);
      await sleep(20);
    }
    await src.col.waitForIndexing();
    await w.upserts(40);
    await catchUp(rep);
    const before = await remoteKeys(mem, src.prefix);
    expect(before.filter((k) => k.startsWith('segments/')).length).toBeGreaterThan(src.col.stats().segments);
    const deleted = await rep.collectGarbage();
    expect(deleted).toBeGreaterThan(0);

    const after = await remoteKeys(mem, src.prefix);
    const manifests = await remoteManifests(mem, src.prefix);
    expect(manifests.map((m) => m.version)).toEqual([src.col.stats().manifestVersion]);
    expect(after.filter((k) => k.startsWith('segments/')).sort()).toEqual(manifestFiles(manifests[0]!).map(segmentKey).sort());
    const localWal = new Set(readdirSync(path.join(src.dir, 'wal')));
    for (const k of after.filter((x) => x.startsWith('wal/'))) expect(localWal.has((parseReplicaKey(k) as { file: string }).file), k).toBe(true);
    expect(rep.stats().deletedObjects).toBe(deleted);
    const { col } = await restoreAndOpen(mem, src.record.collectionId);
    await expectMatchesModel(col, model);
  });

  it('after a restore, deletes the remote leftovers of the abandoned history before shipping the new one', async () => {
    const mem = new MemoryObjectStore();
    const { worker } = startWorker(mem);
    const a = await openSource();
    const model: Model = new Map();
    const wa = writer(a.col, model, 9, 1500);
    // Few enough rows that no merge follows the flushes below (it would rename what the test looks at).
    for (let i = 0; i < 3; i++) await wa.upserts(200);
    await a.col.flush();
    await wa.upserts(100);
    const repA = startReplicator({ collectionId: a.record.collectionId, dir: a.dir, prefix: a.prefix, store: mem, uploads: worker, record: a.record, logger: quiet, intervalMs: 20, gcIntervalMs: 0 });
    await catchUp(repA.rep);
    await repA.stop();
    await a.db.close();
    // Node A died while shipping its next manifest: one of its two new files arrived.
    const [stored] = await remoteManifests(mem, a.prefix);
    const k = stored!.nextSegmentId;
    const seg0 = stored!.segments[0]!;
    const orphan: Manifest = { ...stored!, version: stored!.version + 1, nextSegmentId: k + 2, segments: [{ ...seg0, id: k, file: `seg-${k}.seg` }, { ...seg0, id: k + 1, file: `seg-${k + 1}.seg` }] };
    await mem.put(a.prefix + segmentKey(`seg-${k}.seg`), Buffer.from('a segment of the abandoned history'));
    await mem.put(a.prefix + manifestKey(orphan.version), manifestFile(orphan));

    // Node B restores, and its engine reuses the names seg-k and v<N+1> (and more) before its replicator starts.
    const b = await restoreAndOpen(mem, a.record.collectionId);
    expect(b.result.manifestVersion).toBe(stored!.version);
    const wb = writer(b.col, model, 10, 1500);
    await wb.upserts(150);
    await b.col.waitForIndexing();
    expect(b.col.stats().manifestVersion).toBeGreaterThan(orphan.version);
    const repB = startReplicator({ collectionId: a.record.collectionId, dir: b.dir, prefix: a.prefix, store: mem, uploads: worker, record: b.result.record, logger: quiet, intervalMs: 20, gcIntervalMs: 0 });
    await catchUp(repB.rep);
    expect(repB.rep.stats().deletedObjects).toBe(2);
    const segK = await mem.get(a.prefix + segmentKey(`seg-${k}.seg`));
    expect(segK === null || !Buffer.from(segK).equals(Buffer.from('a segment of the abandoned history'))).toBe(true);
    const manifestN1 = await mem.get(a.prefix + manifestKey(orphan.version));
    expect(manifestN1 === null || !Buffer.from(manifestN1).equals(manifestFile(orphan))).toBe(true);
    await wb.upserts(20);
    await catchUp(repB.rep);
    await repB.stop();

    const c = await restoreAndOpen(mem, a.record.collectionId);
    expect(c.result.manifestVersion).toBe(b.col.stats().manifestVersion);
    await expectMatchesModel(c.col, model);
  });

  it('lists every replicated collection with its record, for a node that has only the bucket', async () => {
    const mem = new MemoryObjectStore();
    const { worker } = startWorker(mem);
    const dataDir = tempDir();
    const one = await openSource('one', dataDir);
    const two = await addCollection(one.db, 'two');
    const reps = [one, two].map((s) => startReplicator({ collectionId: s.record.collectionId, dir: s.dir, prefix: s.prefix, store: mem, uploads: worker, record: s.record, logger: quiet, intervalMs: 20 }));
    for (const r of reps) await catchUp(r.rep);
    const listed = await listRemoteCollections(mem, ROOT);
    expect(listed.sort((x, y) => x.record.name.localeCompare(y.record.name))).toEqual([
      { collectionId: one.record.collectionId, prefix: one.prefix, record: one.record },
      { collectionId: two.record.collectionId, prefix: two.prefix, record: two.record },
    ]);
    await expect(restoreCollection(mem, `${ROOT}missing/`, path.join(tempDir(), 'x'))).rejects.toMatchObject({ code: 'COLLECTION_NOT_FOUND' });
    await expect(restoreCollection(mem, one.prefix, dataDir)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

async function addCollection(db: AkiDB, name: string): Promise<{ record: CollectionRecord; dir: string; prefix: string }> {
  await db.createCollection({ name, dimension: DIM });
  const record = db.allCollections().find((r) => r.name === name)!;
  return { record, dir: path.join(db.dataDir, 'collections', record.collectionId), prefix: `${ROOT}${record.collectionId}/` };
}

function codeOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? 'uncoded';
  }
}

describe('what the bucket holds is input: records and manifests that would escape the data directory are refused', () => {
  const good: CollectionRecord = { collectionId: '0b9f3a2e-6c1d-4e8f-9a7b-1c2d3e4f5a6b', tenant: 'default', database: 'default', name: 'docs', dimension: 4, metric: 'cosine', index: { m: 16, efConstruction: 64, efSearch: 64, quantization: 'f16' }, createdAt: '2026-01-01T00:00:00.000Z', tieringPolicy: 'MemoryS3' };

  it('collection.json: a non-UUID id, names outside [A-Za-z0-9_.-], a bad dimension or policy answer STORAGE_CORRUPT', () => {
    expect(decodeRecord(encodeRecord(good), 'k')).toEqual(good);
    const bad: Partial<Record<keyof CollectionRecord, unknown>>[] = [
      { collectionId: '../../../../tmp/x' },
      { collectionId: '0B9F3A2E-6C1D-4E8F-9A7B-1C2D3E4F5A6B/..' },
      { tenant: '../other' },
      { database: '' },
      { name: 'a/b' },
      { dimension: 2.5 },
      { dimension: -1 },
      { tieringPolicy: 'Everywhere' },
    ];
    for (const change of bad) {
      const body = Buffer.from(JSON.stringify({ formatVersion: 1, collection: { ...good, ...change } }));
      expect(codeOf(() => decodeRecord(body, 'k')), JSON.stringify(change)).toBe('STORAGE_CORRUPT');
    }
  });

  it('a checksummed manifest naming ../ segment files answers STORAGE_CORRUPT', () => {
    const file = (name: string): Buffer => {
      const body = JSON.stringify({ formatVersion: 1, version: 3, nextSegmentId: 2, nextRowKey: 10, checkpointLsn: 5, segments: [{ id: 1, file: name, rows: 1, tombstones: 0, minLsn: 1, maxLsn: 5, bytes: 100 }] });
      return Buffer.from(JSON.stringify({ crc: crc32(body), body }));
    };
    expect(decodeManifestFile(file('seg-00000001.seg'), 'm').segments[0]!.file).toBe('seg-00000001.seg');
    for (const name of ['../../escape.seg', '/etc/passwd', 'a/b.seg', '..']) expect(codeOf(() => decodeManifestFile(file(name), 'm')), name).toBe('STORAGE_CORRUPT');
  });
});
