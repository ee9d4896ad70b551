// Object-storage tiers, measured against a real S3 protocol server (s3rver on loopback) behind
// the fault proxy the tests use:
//   1. ingest: Memory vs MemoryS3 in one run, batched 768-d upserts, with the MemoryS3 upload
//      lag sampled during and after the ingest;
//   2. S3Only write acknowledgement p50 / p95 with the proxy adding 50 ms to every request
//      (a model of S3's PUT latency), one writer and eight concurrent writers;
//   3. S3Only queries: recovery of a 100k x 768 collection onto an empty node (it is registered,
//      then fetched whole by its first use: fetch + open + first query), warm query latency, and
//      cache misses (evicted, then queried).
// Run: npx vite-node bench/tiering.ts [--n 100000] [--batch 1000] [--acks 200] [--queries 500]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/load-config.js';
import type { Collection } from '../src/engine/collection.js';
import { AkiDB } from '../src/engine/database.js';
import { MemoryObjectStore } from '../src/objectstore/memory-object-store.js';
import { S3ObjectStore } from '../src/objectstore/s3-object-store.js';
import { startFaultProxy } from '../src/test-support/fault-proxy.js';
import { startS3Server } from '../src/test-support/s3-server.js';
import { TieringRuntime } from '../src/tiering/tiering-runtime.js';
// @ts-expect-error plain JS helpers shared by the benchmarks
import { parseArgs, percentile, readFbin } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = parseArgs(process.argv.slice(2), { n: 100_000, batch: 1000, acks: 200, queries: 500, store: 's3rver', parts: 'ingest,acks,queries', data: path.join(ROOT, 'bench/data/data-100k-768') }) as { n: number; batch: number; acks: number; queries: number; store: string; parts: string; data: string };
const parts = new Set(args.parts.split(','));
const quiet = { info: () => undefined, warn: (o: object, m: string) => console.error('warn', m, JSON.stringify(o).slice(0, 300)), error: (o: object, m: string) => console.error('error', m, JSON.stringify(o).slice(0, 300)) };
const base = readFbin(path.join(args.data, 'base.fbin')) as { n: number; d: number; data: Float32Array };
const queries = readFbin(path.join(args.data, 'query.fbin')) as { n: number; d: number; data: Float32Array };
const n = Math.min(args.n, base.n);
const d = base.d;
const row = (i: number): Float32Array => base.data.subarray(i * d, (i + 1) * d);
const ms = (x: number): number => Math.round(x * 100) / 100;

const s3 = await startS3Server({ bucket: 'bench' });
const proxy = await startFaultProxy(s3.port);
const memory = new Map<string, MemoryObjectStore>();
const memoryStores = (part: string): MemoryObjectStore => memory.get(part) ?? memory.set(part, new MemoryObjectStore()).get(part)!;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-tier-bench-'));

/** A node on its own data dir; `part` is its key prefix in the bucket, so one part's collections stay out of another's recovery. */
async function openNode(name: string, part: string): Promise<{ db: AkiDB; rt: TieringRuntime }> {
  const dataDir = path.join(tmp, name);
  const storage = { ...loadConfig({ env: {}, flags: {}, cwd: tmp }).config.storage, dlq: { max_size: 1000, ttl_days: 7, persistence_enabled: true, persistence_path: path.join(dataDir, 'dlq.json'), flush_interval_seconds: 60 } };
  // --store memory: the same pipeline without the S3 server's own CPU cost (it shares this machine's cores).
  const store = args.store === 'memory' ? memoryStores(part) : new S3ObjectStore({ bucket: `bench/${part}`, endpoint: proxy.endpoint, credentials: s3.credentials, requestTimeoutMs: 30_000 });
  const rt = await TieringRuntime.start({ store, storeDescription: 'bench', storage, logger: quiet, metrics: null });
  const db = await AkiDB.open({ dataDir, tiering: rt, logger: quiet });
  return { db, rt };
}

/** Upsert the first `n` vectors in batches of `--batch`; seconds taken. */
async function ingest(col: Collection): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i += args.batch) {
    const docs = [];
    for (let j = i; j < Math.min(n, i + args.batch); j++) docs.push({ id: String(j), vector: row(j) });
    await col.upsert(docs);
  }
  return (performance.now() - t0) / 1000;
}

const results: Record<string, unknown> = { date: new Date().toISOString(), machine: `${os.cpus().length} x ${os.cpus()[0]?.model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`, n, d, batch: args.batch, store: args.store };

// ------------------------------------------------------------------ 1. ingest
if (parts.has('ingest')) {
  // Each run on its own node, waiting out its index builds afterwards, in alternating order:
  // one run's background work must not slow the next.
  for (const [round, policy] of (['Memory', 'MemoryS3', 'Memory', 'MemoryS3'] as const).entries()) {
    const { db, rt } = await openNode(`ingest-${round}`, 'ingest');
    const col = await db.createCollection({ name: `ingest-${policy}`, dimension: d, tieringPolicy: policy });
    const lag: number[] = [];
    const sampler = setInterval(() => lag.push(rt.replication(col.info.collectionId)?.lagMs ?? 0), 100);
    const seconds = await ingest(col);
    const t1 = performance.now();
    while ((rt.replication(col.info.collectionId)?.lagMs ?? 0) > 0 || (rt.replication(col.info.collectionId)?.pendingObjects ?? 0) > 0) await new Promise((r) => setTimeout(r, 20));
    const caughtUpMs = performance.now() - t1;
    clearInterval(sampler);
    const r = rt.replication(col.info.collectionId);
    const out = {
      vectors_per_s: Math.round(n / seconds),
      seconds: ms(seconds),
      max_lag_ms_during: Math.max(0, ...lag),
      p95_lag_ms_during: lag.length ? percentile([...lag].sort((a, b) => a - b), 95) : 0,
      caught_up_ms_after: Math.round(caughtUpMs),
      objects_stored: r?.objectsStored ?? 0,
      mb_stored: r ? ms(r.bytesStored / 1e6) : 0,
    };
    results[`ingest_${round}_${policy}`] = out;
    console.log(round, policy, JSON.stringify(out));
    await col.waitForIndexing();
    await rt.stop(60_000);
    await db.close();
  }
}

// ------------------------------------------------------------------ 2. S3Only acknowledgement latency
if (parts.has('acks')) {
  const { db, rt } = await openNode('acks', 'acks');
  const col = await db.createCollection({ name: 'acks', dimension: d, tieringPolicy: 'S3Only' });
  await col.upsert([{ id: 'warm', vector: row(0) }]);
  proxy.delay(50);
  const one: number[] = [];
  for (let i = 0; i < args.acks; i++) {
    const t0 = performance.now();
    await col.upsert([{ id: `a${i}`, vector: row(i % n) }]);
    one.push(performance.now() - t0);
  }
  const eight: number[] = [];
  let next = 0;
  const t8 = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < args.acks * 2) {
        const i = next++;
        const t0 = performance.now();
        await col.upsert([{ id: `b${i}`, vector: row(i % n) }]);
        eight.push(performance.now() - t0);
      }
    }),
  );
  const seconds8 = (performance.now() - t8) / 1000;
  proxy.pass();
  one.sort((a, b) => a - b);
  eight.sort((a, b) => a - b);
  results.s3only_ack_50ms_proxy = {
    one_writer: { writes: one.length, p50_ms: ms(percentile(one, 50)), p95_ms: ms(percentile(one, 95)) },
    eight_writers: { writes: eight.length, p50_ms: ms(percentile(eight, 50)), p95_ms: ms(percentile(eight, 95)), writes_per_s: Math.round(eight.length / seconds8) },
  };
  console.log('acks', JSON.stringify(results.s3only_ack_50ms_proxy));
  await rt.stop(30_000);
  await db.close();
}

// ------------------------------------------------------------------ 3. S3Only queries
if (parts.has('queries')) {
  const { db, rt } = await openNode('s3only-src', 'queries');
  const col = await db.createCollection({ name: 'q', dimension: d, tieringPolicy: 'S3Only' });
  const ingestS = await ingest(col);
  await col.flush();
  await col.waitForIndexing();
  while ((rt.replication(col.info.collectionId)?.lagMs ?? 1) > 0 || (rt.replication(col.info.collectionId)?.pendingObjects ?? 1) > 0) await new Promise((r) => setTimeout(r, 50));
  await rt.stop(60_000);
  await db.close();

  // A new node with an empty data dir: everything comes from the bucket.
  const node = await openNode('s3only-new', 'queries');
  const tr = performance.now();
  await node.rt.recover(node.db);
  const restoreMs = performance.now() - tr;
  const tf = performance.now();
  const restored = await node.db.getCollection('q');
  await restored.query({ vector: queries.data.subarray(0, d), topK: 10 });
  const firstQueryMs = performance.now() - tf;
  const warm: number[] = [];
  for (let i = 0; i < args.queries; i++) {
    const q = queries.data.subarray((i % queries.n) * d, ((i % queries.n) + 1) * d);
    const t = performance.now();
    await restored.query({ vector: q, topK: 10 });
    warm.push(performance.now() - t);
  }
  warm.sort((a, b) => a - b);
  // Cache misses: evict the local copy (as the cache trimmer does), then one query, 3 times.
  const cold: number[] = [];
  for (let i = 0; i < 3; i++) {
    while ((node.rt.replication(restored.info.collectionId)?.pendingObjects ?? 0) > 0) await new Promise((r) => setTimeout(r, 50));
    await node.db.evictCollection(restored.info.collectionId);
    const t = performance.now();
    const again = await node.db.getCollection('q');
    await again.query({ vector: queries.data.subarray(i * d, (i + 1) * d), topK: 10 });
    cold.push(performance.now() - t);
  }
  cold.sort((a, b) => a - b);
  results.s3only_queries = {
    evicted_then_query_ms: cold.map(ms),
    ingest_vectors_per_s: Math.round(n / ingestS),
    recover_ms: Math.round(restoreMs),
    first_use_ms: ms(firstQueryMs),
    warm: { queries: warm.length, p50_ms: ms(percentile(warm, 50)), p95_ms: ms(percentile(warm, 95)) },
    documents: (await node.db.getCollection('q')).stats().documents,
  };
  console.log('queries', JSON.stringify(results.s3only_queries));
  await node.rt.stop(10_000);
  await node.db.close();
}

console.log(JSON.stringify(results, null, 2));
await proxy.stop();
await s3.stop();
fs.rmSync(tmp, { recursive: true, force: true });
