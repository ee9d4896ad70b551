import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Filter, Metadata } from '../index/filter.js';
import type { Metric } from '../index/metric.js';
import type { Collection, Document, QueryMatch } from './collection.js';
import { AkiDB, type OpenOptions } from './database.js';
import type { Logger } from './options.js';
import { EXACT_SCAN_MAX_ROWS, planSegmentSearch } from './query-planner.js';
import { seededRandom } from '../util/seeded-random.js';

/*
 * Model test: random operation scripts run against a collection and against a plain Map with
 * brute-force search; after every step the two must agree. Small thresholds make flushes,
 * merges and HNSW index builds happen within a few dozen rows.
 */

const DIM = 6;
const POOL = Array.from({ length: 30 }, (_, i) => `id${i}`);
const TOL = 1e-4;

// A type alias, not an interface, so it is assignable to Metadata's index signature.
type Meta = { g: number; n: number };

/** A filter the model can evaluate too. */
type FilterSpec = { kind: 'eq'; g: number } | { kind: 'in'; gs: number[] } | { kind: 'ne'; g: number } | { kind: 'nGt'; n: number } | { kind: 'or'; a: number; b: number } | { kind: 'noG' };

type Op =
  | { kind: 'upsert'; docs: { id: string; vector: number[]; metadata: Meta | null }[] }
  | { kind: 'deleteIds'; ids: string[] }
  | { kind: 'deleteFilter'; filter: FilterSpec }
  | { kind: 'query'; vector: number[]; topK: number; filter: FilterSpec | null }
  | { kind: 'get'; ids: string[] }
  | { kind: 'count' }
  | { kind: 'flush' }
  | { kind: 'compact' }
  | { kind: 'reopen' }
  | { kind: 'sleep'; ms: number }
  /** Writes and maintenance issued together without waiting; they must take effect in issue order. */
  | { kind: 'burst'; ops: BurstOp[] };

type BurstOp = Extract<Op, { kind: 'upsert' | 'deleteIds' | 'flush' | 'compact' }>;

function toFilter(f: FilterSpec): Filter {
  switch (f.kind) {
    case 'eq':
      return { g: f.g };
    case 'in':
      return { g: { $in: f.gs } };
    case 'ne':
      return { g: { $ne: f.g } };
    case 'nGt':
      return { n: { $gt: f.n } };
    case 'or':
      return { $or: [{ g: f.a }, { g: { $eq: f.b } }] };
    case 'noG':
      return { g: { $exists: false } };
  }
}

/** The reference semantics of each FilterSpec (MongoDB rules for a missing field). */
function passes(f: FilterSpec, m: Metadata | null): boolean {
  const g = m?.['g'];
  const n = m?.['n'];
  switch (f.kind) {
    case 'eq':
      return g === f.g;
    case 'in':
      return f.gs.includes(g as number);
    case 'ne':
      return g !== f.g;
    case 'nGt':
      return typeof n === 'number' && n > f.n;
    case 'or':
      return g === f.a || g === f.b;
    case 'noG':
      return g === undefined;
  }
}

function distance(metric: Metric, a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  let sq = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
    sq += (a[i]! - b[i]!) ** 2;
  }
  if (metric === 'cosine') return 1 - dot / Math.sqrt(na * nb);
  if (metric === 'l2') return Math.sqrt(sq);
  return 1 - dot;
}

function score(metric: Metric, d: number): number {
  return metric === 'l2' ? 1 / (1 + d) : 1 - d;
}

const f32 = (v: readonly number[]): number[] => Array.from(Float32Array.from(v));

/** A document as `get` returns it: float32 vector, a JSON copy of the metadata. */
function stored(d: { id: string; vector: number[]; metadata: Meta | null }): Document {
  return { id: d.id, vector: f32(d.vector), metadata: d.metadata === null ? null : (JSON.parse(JSON.stringify(d.metadata)) as Metadata), text: null };
}

/** Brute-force top-k ground truth, plus the checks every query answer must pass. */
function checkQuery(metric: Metric, model: Map<string, Document>, op: { vector: number[]; topK: number; filter: FilterSpec | null }, got: QueryMatch[]): void {
  const q = f32(op.vector);
  const truth = [...model.values()]
    .filter((d) => op.filter === null || passes(op.filter, d.metadata))
    .map((d) => ({ id: d.id, d: distance(metric, q, d.vector) }))
    .sort((a, b) => a.d - b.d);
  const k = Math.min(op.topK, truth.length);
  expect(got.length).toBe(k);
  expect(new Set(got.map((m) => m.id)).size).toBe(k);
  const truthById = new Map(truth.map((t) => [t.id, t.d]));
  for (let i = 0; i < got.length; i++) {
    const m = got[i]!;
    const doc = model.get(m.id);
    expect(doc, `query returned ${m.id}, which is not live`).toBeDefined();
    expect(truthById.has(m.id), `query returned ${m.id}, which fails the filter`).toBe(true);
    expect(Math.abs(m.distance - truthById.get(m.id)!), `distance of ${m.id}`).toBeLessThanOrEqual(TOL);
    expect(Math.abs(m.score - score(metric, m.distance))).toBeLessThanOrEqual(1e-9);
    expect(m.metadata).toEqual(doc!.metadata);
    expect(Math.abs(m.distance - truth[i]!.d), `rank ${i}: got ${m.distance}, brute force ${truth[i]!.d}`).toBeLessThanOrEqual(TOL);
    if (i > 0) expect(m.distance).toBeGreaterThanOrEqual(got[i - 1]!.distance);
  }
  // Same ids as brute force, except where distances tie at the cut.
  if (k > 0) {
    const cut = truth[k - 1]!.d;
    const ids = new Set(got.map((m) => m.id));
    for (const t of truth) if (t.d < cut - TOL) expect(ids.has(t.id), `missing ${t.id} at distance ${t.d}`).toBe(true);
  }
}

// ---------------------------------------------------------------- generators

function vectorArb(metric: Metric): fc.Arbitrary<number[]> {
  // Coarse steps make exact ties likely; fine steps make near-ties likely.
  const coarse = fc.array(
    fc.integer({ min: -4, max: 4 }).map((x) => x / 2),
    { minLength: DIM, maxLength: DIM },
  );
  const fine = fc.array(
    fc.integer({ min: -1000, max: 1000 }).map((x) => x / 1000),
    { minLength: DIM, maxLength: DIM },
  );
  const v = fc.oneof(coarse, fine);
  return metric === 'cosine' ? v.filter((x) => x.some((e) => e !== 0)) : v;
}

const idArb = fc.constantFrom(...POOL);
const gArb = fc.integer({ min: 0, max: 3 });
const metaArb: fc.Arbitrary<Meta | null> = fc.option(fc.record({ g: gArb, n: fc.oneof(fc.integer({ min: -50, max: 50 }), fc.double({ min: -50, max: 50, noNaN: true })) }), { freq: 8 });
const filterArb: fc.Arbitrary<FilterSpec> = fc.oneof(
  gArb.map((g) => ({ kind: 'eq' as const, g })),
  fc.uniqueArray(gArb, { minLength: 1, maxLength: 3 }).map((gs) => ({ kind: 'in' as const, gs })),
  gArb.map((g) => ({ kind: 'ne' as const, g })),
  fc.integer({ min: -50, max: 50 }).map((n) => ({ kind: 'nGt' as const, n })),
  fc.tuple(gArb, gArb).map(([a, b]) => ({ kind: 'or' as const, a, b })),
  fc.constant({ kind: 'noG' as const }),
);

function opArb(metric: Metric, background: boolean): fc.Arbitrary<Op> {
  const vec = vectorArb(metric);
  const ops: fc.WeightedArbitrary<Op>[] = [
    { weight: 30, arbitrary: fc.array(fc.record({ id: idArb, vector: vec, metadata: metaArb }), { minLength: 1, maxLength: 6 }).map((docs) => ({ kind: 'upsert' as const, docs })) },
    { weight: 7, arbitrary: fc.array(idArb, { minLength: 1, maxLength: 5 }).map((ids) => ({ kind: 'deleteIds' as const, ids })) },
    { weight: 4, arbitrary: filterArb.map((filter) => ({ kind: 'deleteFilter' as const, filter })) },
    { weight: 20, arbitrary: fc.record({ vector: vec, topK: fc.integer({ min: 1, max: 10 }), filter: fc.option(filterArb, { freq: 2 }) }).map((q) => ({ kind: 'query' as const, ...q })) },
    { weight: 8, arbitrary: fc.array(idArb, { minLength: 1, maxLength: 6 }).map((ids) => ({ kind: 'get' as const, ids })) },
    { weight: 3, arbitrary: fc.constant({ kind: 'count' as const }) },
    { weight: 6, arbitrary: fc.constant({ kind: 'flush' as const }) },
    { weight: 6, arbitrary: fc.constant({ kind: 'compact' as const }) },
    { weight: 4, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  ];
  if (background) {
    ops.push({ weight: 8, arbitrary: fc.integer({ min: 0, max: 15 }).map((ms) => ({ kind: 'sleep' as const, ms })) });
    const burstOp = fc.oneof(
      { weight: 6, arbitrary: ops[0]!.arbitrary as fc.Arbitrary<BurstOp> },
      { weight: 3, arbitrary: ops[1]!.arbitrary as fc.Arbitrary<BurstOp> },
      { weight: 1, arbitrary: fc.constantFrom<BurstOp>({ kind: 'flush' }, { kind: 'compact' }) },
    );
    ops.push({ weight: 8, arbitrary: fc.array(burstOp, { minLength: 2, maxLength: 8 }).map((b) => ({ kind: 'burst' as const, ops: b })) });
  }
  return fc.oneof(...ops);
}

// ---------------------------------------------------------------- runner

interface Coverage {
  runs: number;
  flushes: number;
  merges: number;
  indexBuilds: number;
  queriesOnIndexedSegments: number;
  reopensWithSegments: number;
}

function newCoverage(): Coverage {
  return { runs: 0, flushes: 0, merges: 0, indexBuilds: 0, queriesOnIndexedSegments: 0, reopensWithSegments: 0 };
}

/** A logger that fails the run if background work reports an error. */
function recordingLogger(errors: string[]): Logger {
  return {
    info: () => undefined,
    warn: (obj, msg) => errors.push(`warn: ${msg} ${JSON.stringify(obj)}`),
    error: (obj, msg) => errors.push(`error: ${msg} ${JSON.stringify(obj)}`),
  };
}

async function runScript(metric: Metric, background: boolean, ops: Op[], cov: Coverage): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-'));
  const logged: string[] = [];
  const opts: OpenOptions = {
    dataDir,
    hnsw: { threshold: 8, quantization: 'f32' },
    compaction: background ? { thresholdOps: 5, enableBackground: true, idleFlushMs: 5 } : { thresholdOps: 5, enableBackground: false },
    logger: recordingLogger(logged),
  };
  let db = await AkiDB.open(opts);
  try {
    let col: Collection = await db.createCollection({ name: 'm', dimension: DIM, metric, index: { efSearch: 200, quantization: 'f32' } });
    const model = new Map<string, Document>();
    const tally = (c: Collection): void => {
      const s = c.stats();
      cov.flushes += s.flushes;
      cov.merges += s.merges;
      cov.indexBuilds += s.indexBuilds;
    };

    for (const op of ops) {
      switch (op.kind) {
        case 'upsert': {
          const r = await col.upsert(op.docs);
          expect(r.upserted).toBe(op.docs.length);
          for (const d of op.docs) model.set(d.id, stored(d));
          break;
        }
        case 'deleteIds': {
          const unique = [...new Set(op.ids)];
          const expected = unique.filter((id) => model.has(id)).length;
          const r = await col.delete({ ids: op.ids });
          expect(r.deleted).toBe(expected);
          for (const id of unique) model.delete(id);
          break;
        }
        case 'deleteFilter': {
          const doomed = [...model.values()].filter((d) => passes(op.filter, d.metadata)).map((d) => d.id);
          const r = await col.delete({ filter: toFilter(op.filter) });
          expect(r.deleted).toBe(doomed.length);
          for (const id of doomed) model.delete(id);
          break;
        }
        case 'query': {
          if (col.stats().indexedSegments > 0) cov.queriesOnIndexedSegments += 1;
          const got = await col.query({ vector: op.vector, topK: op.topK, ...(op.filter ? { filter: toFilter(op.filter) } : {}) });
          checkQuery(metric, model, op, got);
          break;
        }
        case 'get':
          expect(await col.get(op.ids)).toEqual(op.ids.map((id) => model.get(id) ?? null));
          break;
        case 'count':
          expect(await col.count()).toBe(model.size);
          break;
        case 'flush':
          await col.flush();
          expect(col.stats().memtableEntries).toBe(0);
          break;
        case 'compact':
          await col.compact();
          expect(col.stats()).toMatchObject({ memtableEntries: 0 });
          expect(col.stats().segments).toBeLessThanOrEqual(1);
          break;
        case 'reopen':
          tally(col);
          if (col.stats().segments > 0) cov.reopensWithSegments += 1;
          await db.close();
          db = await AkiDB.open(opts);
          col = await db.getCollection('m');
          break;
        case 'sleep':
          await new Promise((r) => setTimeout(r, op.ms));
          break;
        case 'burst': {
          // Every call starts (and takes its LSN) before any is awaited; the model applies them
          // in the same order.
          const calls: Promise<unknown>[] = [];
          for (const w of op.ops) {
            if (w.kind === 'upsert') {
              calls.push(col.upsert(w.docs).then((r) => expect(r.upserted).toBe(w.docs.length)));
              for (const d of w.docs) model.set(d.id, stored(d));
            } else if (w.kind === 'deleteIds') {
              const unique = [...new Set(w.ids)];
              const expected = unique.filter((id) => model.has(id)).length;
              calls.push(col.delete({ ids: w.ids }).then((r) => expect(r.deleted).toBe(expected)));
              for (const id of unique) model.delete(id);
            } else {
              calls.push(w.kind === 'flush' ? col.flush() : col.compact());
            }
          }
          await Promise.all(calls);
          break;
        }
      }
    }

    // Final state, then once more from disk.
    const finalCheck = async (c: Collection): Promise<void> => {
      expect(await c.count()).toBe(model.size);
      expect(await c.get(POOL)).toEqual(POOL.map((id) => model.get(id) ?? null));
      const probe = { vector: Array.from({ length: DIM }, (_, i) => (i % 2 === 0 ? 1 : -0.5)), topK: 1000, filter: null };
      checkQuery(metric, model, probe, await c.query({ vector: probe.vector, topK: probe.topK }));
    };
    await finalCheck(col);
    tally(col);
    await db.close();
    db = await AkiDB.open(opts);
    await finalCheck(await db.getCollection('m'));
    expect(logged).toEqual([]);
    cov.runs += 1;
  } finally {
    await db.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const metricArb = fc.constantFrom<Metric>('cosine', 'l2', 'dot');
const scriptArb = (background: boolean): fc.Arbitrary<[Metric, Op[]]> => metricArb.chain((metric) => fc.tuple(fc.constant(metric), fc.array(opArb(metric, background), { minLength: 5, maxLength: 60, size: 'max' })));

describe('Collection model test: random scripts against a Map and brute-force search', () => {
  it('foreground maintenance (explicit flush / compact / reopen), 100 runs', async () => {
    const cov = newCoverage();
    await fc.assert(
      fc.asyncProperty(scriptArb(false), async ([metric, ops]) => {
        await runScript(metric, false, ops, cov);
      }),
      // A run that hangs fails with its script instead of timing out the test; a failure's
      // shrinking stops in time to report the smallest script found so far.
      { numRuns: 100, timeout: 30_000, interruptAfterTimeLimit: 150_000 },
    );
    // The scripts must really have built segments and HNSW indexes, queried them and reopened them.
    expect(cov.runs, 'runs completed within the time limit').toBeGreaterThanOrEqual(100);
    expect(cov.flushes).toBeGreaterThan(50);
    expect(cov.indexBuilds).toBeGreaterThan(10);
    expect(cov.queriesOnIndexedSegments).toBeGreaterThan(20);
    expect(cov.reopensWithSegments).toBeGreaterThan(10);
  }, 200_000);

  it('background flushes and merges (thresholdOps 5, idleFlushMs 5) and bursts of concurrent writes, 20 runs', async () => {
    const cov = newCoverage();
    await fc.assert(
      fc.asyncProperty(scriptArb(true), async ([metric, ops]) => {
        await runScript(metric, true, ops, cov);
      }),
      { numRuns: 20, timeout: 30_000, interruptAfterTimeLimit: 90_000 },
    );
    expect(cov.runs, 'runs completed within the time limit').toBeGreaterThanOrEqual(20);
    expect(cov.flushes).toBeGreaterThan(5);
    expect(cov.merges).toBeGreaterThan(0);
  }, 120_000);

  it('replays a few fixed scripts that reach every maintenance path', async () => {
    // Deterministic coverage independent of the generator: rows in memtable, raw segment,
    // indexed segment, overwritten and deleted across all of them, then reopened.
    const v = (i: number): number[] => Array.from({ length: DIM }, (_, j) => ((i * 7 + j * 3) % 11) / 5 - 1 + (j === 0 ? 0.05 : 0));
    const upsert = (from: number, to: number, g: (i: number) => number): Op => ({
      kind: 'upsert',
      docs: POOL.slice(from, to).map((id, k) => ({ id, vector: v(from + k), metadata: { g: g(from + k), n: from + k } })),
    });
    const queries: Op[] = [0, 1, 2, 3].flatMap((i): Op[] => [
      { kind: 'query', vector: v(i * 5 + 1), topK: 10, filter: null },
      { kind: 'query', vector: v(i * 3), topK: 4, filter: { kind: 'eq', g: i } },
      { kind: 'query', vector: v(i), topK: 7, filter: { kind: 'nGt', n: 12 } },
    ]);
    const script: Op[] = [
      upsert(0, 12, (i) => i % 4),
      { kind: 'compact' },
      upsert(10, 20, (i) => (i + 1) % 4),
      { kind: 'flush' },
      { kind: 'deleteIds', ids: ['id1', 'id11', 'id15', 'id29'] },
      upsert(18, 30, (i) => (i + 2) % 4),
      ...queries,
      { kind: 'deleteFilter', filter: { kind: 'eq', g: 2 } },
      ...queries,
      { kind: 'reopen' },
      ...queries,
      { kind: 'compact' },
      ...queries,
      { kind: 'get', ids: POOL.slice(0, 10) },
    ];
    for (const metric of ['cosine', 'l2', 'dot'] as const) {
      const cov = newCoverage();
      await runScript(metric, false, script, cov);
      expect(cov.indexBuilds).toBeGreaterThanOrEqual(2);
      expect(cov.queriesOnIndexedSegments).toBeGreaterThanOrEqual(36);
    }
  }, 60_000);
});

describe('HNSW graph search (a segment above the exact-scan limit)', () => {
  // Below EXACT_SCAN_MAX_ROWS matching rows the planner scans exactly, so the model test above
  // never walks the graph. Here a segment is large enough that it does, and the graph's
  // distances must be the same numbers brute force computes.
  const ROWS = 4000;


  it.each(['cosine', 'l2', 'dot'] as const)('%s: graph answers match brute force (distances exact, recall ≥ 0.95)', async (metric) => {
    const rand = seededRandom(metric.length);
    const vec = (): number[] => f32(Array.from({ length: DIM }, () => rand() * 2 - 1));
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-'));
    const db = await AkiDB.open({ dataDir, hnsw: { threshold: 8, quantization: 'f32' }, compaction: { enableBackground: false } });
    try {
      const col = await db.createCollection({ name: 'big', dimension: DIM, metric, index: { efSearch: 200, quantization: 'f32' } });
      const model = new Map<string, Document>();
      const docs = Array.from({ length: ROWS }, (_, i) => ({ id: `r${i}`, vector: vec(), metadata: { g: i % 4, n: i } }));
      await col.upsert(docs);
      for (const d of docs) model.set(d.id, { id: d.id, vector: d.vector, metadata: d.metadata, text: null });
      await col.compact();
      expect(col.stats()).toMatchObject({ segments: 1, indexedSegments: 1, indexedRows: ROWS });
      // Rows dead inside the graph: deleted, and overwritten (the new versions live in the memtable).
      const dead = docs.filter((_, i) => i % 10 === 0).map((d) => d.id);
      await col.delete({ ids: dead });
      for (const id of dead) model.delete(id);
      const moved = docs.filter((_, i) => i % 10 === 5).map((d) => ({ id: d.id, vector: vec(), metadata: { g: 9, n: -1 } }));
      await col.upsert(moved);
      for (const d of moved) model.set(d.id, { id: d.id, vector: d.vector, metadata: d.metadata, text: null });

      const liveInSegment = ROWS - dead.length - moved.length;
      const notG0 = [...model.values()].filter((d) => passes({ kind: 'ne', g: 0 }, d.metadata) && d.metadata?.['g'] !== 9).length;
      expect(liveInSegment).toBeGreaterThan(EXACT_SCAN_MAX_ROWS);
      expect(planSegmentSearch({ indexed: true, indexSize: ROWS, matchCount: liveInSegment, k: 10 }).kind).toBe('hnsw');
      expect(planSegmentSearch({ indexed: true, indexSize: ROWS, matchCount: notG0, k: 10 }).kind).toBe('hnsw');

      let found = 0;
      let wanted = 0;
      for (let i = 0; i < 40; i++) {
        const filter: FilterSpec | null = i % 2 === 0 ? null : { kind: 'ne', g: 0 };
        const op = { vector: vec(), topK: 10, filter };
        const got = await col.query({ vector: op.vector, topK: 10, ...(filter ? { filter: toFilter(filter) } : {}) });
        // Every answer is live, passes the filter, carries its true distance and comes best first.
        const q = op.vector;
        const truth = [...model.values()]
          .filter((d) => filter === null || passes(filter, d.metadata))
          .map((d) => ({ id: d.id, d: distance(metric, q, d.vector) }))
          .sort((a, b) => a.d - b.d);
        expect(got.length).toBe(10);
        for (let r = 0; r < got.length; r++) {
          const m = got[r]!;
          const doc = model.get(m.id);
          expect(doc, `${m.id} is not live`).toBeDefined();
          if (filter) expect(passes(filter, doc!.metadata)).toBe(true);
          expect(Math.abs(m.distance - distance(metric, q, doc!.vector))).toBeLessThanOrEqual(TOL);
          if (r > 0) expect(m.distance).toBeGreaterThanOrEqual(got[r - 1]!.distance);
        }
        const ids = new Set(got.map((m) => m.id));
        const cut = truth[9]!.d;
        for (const t of truth) {
          if (t.d > cut + TOL) break;
          if (t.d < cut - TOL) {
            wanted += 1;
            if (ids.has(t.id)) found += 1;
          }
        }
      }
      expect(wanted).toBeGreaterThan(250);
      expect(found / wanted).toBeGreaterThanOrEqual(0.95);
    } finally {
      await db.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
