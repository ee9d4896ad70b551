import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AkiDB } from '../index.js';
import type { Collection, Filter } from '../index.js';
import { seededRandom } from '../util/seeded-random.js';

// Recall of filtered and unfiltered search against exact brute force, on clustered data large
// enough that the collection is served by the HNSW graph (20k rows > the 10k threshold).
const N = 20_000;
const D = 48;
const Q = 100;
const K = 10;
const CLUSTERS = 20;


function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i]! *= inv;
  return v;
}

function cos(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

const r = seededRandom(7);
const centroids = Array.from({ length: CLUSTERS }, () => normalize(Float32Array.from({ length: D }, () => gaussian(r))));
function sample(cluster: number): Float32Array {
  const c = centroids[cluster]!;
  return normalize(Float32Array.from({ length: D }, (_, i) => c[i]! + 0.1 * gaussian(r)));
}
const base = Array.from({ length: N }, (_, i) => ({ cluster: i % CLUSTERS, vector: sample(i % CLUSTERS) }));
const queries = Array.from({ length: Q }, (_, i) => ({ cluster: (i * 7) % CLUSTERS, vector: sample((i * 7) % CLUSTERS) }));
const meta = (i: number): { p: number; cl: number } => ({ p: Math.floor((i * 37) % 100), cl: base[i]!.cluster });

function exactTopK(q: Float32Array, pass: (i: number) => boolean): string[] {
  const scored: [number, number][] = [];
  for (let i = 0; i < N; i++) if (pass(i)) scored.push([cos(q, base[i]!.vector), i]);
  scored.sort((a, b) => b[0] - a[0]);
  return scored.slice(0, K).map(([, i]) => String(i));
}

/** The clusters least similar to `cluster`, enough of them to cover `share` of the rows. */
function farClusters(cluster: number, share: number): number[] {
  const c = centroids[cluster]!;
  const order = centroids.map((o, j) => [cos(c, o), j] as const).sort((a, b) => a[0] - b[0]);
  return order.slice(0, Math.max(1, Math.round(CLUSTERS * share))).map(([, j]) => j);
}

describe('recall@10 against brute force (20k x 48, clustered)', () => {
  let dir: string;
  let db: AkiDB;
  let col: Collection;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'akidb-recall-'));
    db = await AkiDB.open({ dataDir: dir });
    col = await db.createCollection({ name: 'recall', dimension: D, metric: 'cosine' });
    for (let s = 0; s < N; s += 2000) {
      await col.upsert(base.slice(s, s + 2000).map((b, j) => ({ id: String(s + j), vector: b.vector, metadata: meta(s + j) })));
    }
    await col.waitForIndexing();
    const st = col.stats();
    // The point of this suite is the graph path: make sure it is what serves the queries.
    expect(st.indexedRows).toBe(N);
    expect(st.memtableEntries).toBe(0);
  });

  afterAll(async () => {
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function recall(filterFor: (q: number) => Filter | undefined, pass: (q: number, i: number) => boolean): Promise<number> {
    let hit = 0;
    let total = 0;
    for (let q = 0; q < Q; q++) {
      const truth = new Set(exactTopK(queries[q]!.vector, (i) => pass(q, i)));
      const filter = filterFor(q);
      const res = await col.query({ vector: queries[q]!.vector, topK: K, ...(filter ? { filter } : {}) });
      for (const m of res) {
        // A filtered query never returns a row that fails its filter.
        expect(pass(q, Number(m.id))).toBe(true);
        if (truth.has(m.id)) hit++;
      }
      total += truth.size;
    }
    return hit / total;
  }

  it('unfiltered', async () => {
    expect(await recall(() => undefined, () => true)).toBeGreaterThanOrEqual(0.95);
  });

  it.each([
    ['1 %', 1],
    ['10 %', 10],
    ['50 %', 50],
  ])('filter matching %s of rows', async (_label, pct) => {
    expect(await recall(() => ({ p: { $lt: pct } }), (_q, i) => meta(i).p < pct)).toBeGreaterThanOrEqual(0.95);
  });

  it.each([
    ['10 %', 0.1],
    ['50 %', 0.5],
  ])('filter matching %s of rows, all far from the query', async (_label, share) => {
    const far = queries.map((q) => farClusters(q.cluster, share));
    const value = await recall(
      (q) => ({ cl: { $in: far[q]! } }),
      (q, i) => far[q]!.includes(meta(i).cl),
    );
    expect(value).toBeGreaterThanOrEqual(0.95);
  });

  it('a filter and a deleted share of rows together', async () => {
    const { deleted } = await col.delete({ filter: { p: { $gte: 90 } } });
    expect(deleted).toBe(N / 10);
    expect(await recall(() => ({ p: { $lt: 95 } }), (_q, i) => meta(i).p < 90)).toBeGreaterThanOrEqual(0.95);
  });
});
