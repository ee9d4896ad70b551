import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Metric } from '../index/metric.js';
import { seededRandom } from '../util/seeded-random.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { AkiDB } from './database.js';
import type { Collection } from './collection.js';
import { Memtable } from './memtable.js';

/*
 * The exact scans that rank blocks of rows with the SIMD kernel: memtable vector blocks (with
 * superseded and deleted rows in them, and a frozen memtable whose ids a newer one shadows) and
 * raw segments (every row, or the live subset after deletes). Each query is checked against a
 * brute-force model: the same distances, best first, and each id at its true distance.
 */

const tempDir = useTempDirs('akidb-exact-scan-');
const DIM = 8;

function distance(metric: Metric, a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  let l2 = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
    l2 += (a[i]! - b[i]!) ** 2;
  }
  if (metric === 'l2') return Math.sqrt(l2);
  if (metric === 'cosine') return 1 - dot / Math.sqrt(na * nb);
  return 1 - dot;
}

interface Stored {
  vector: Float32Array;
  g: number;
}

/** Unfiltered, and filtered on `g` (a quarter of the documents match each value). */
function check(col: Collection, model: Map<string, Stored>, metric: Metric, rand: () => number, where: string): void {
  const q = Float32Array.from({ length: DIM }, () => rand() - 0.5);
  for (const g of [null, 0, 2]) {
    for (const topK of [1, 7, 40]) {
      const got = col.querySync({ vector: q, topK, includeMetadata: false, ...(g === null ? {} : { filter: { g } }) });
      const live = [...model.values()].filter((d) => g === null || d.g === g);
      const want = live.map((d) => distance(metric, q, d.vector)).sort((a, b) => a - b).slice(0, topK);
      const label = `${where}, ${g === null ? 'unfiltered' : `g = ${g}`}, top ${topK}`;
      expect(got.map((m) => m.distance), `${label}: distances`).toEqual(want.map((d) => expect.closeTo(d, 4) as unknown));
      for (const m of got) {
        const d = model.get(m.id);
        expect(d !== undefined && (g === null || d.g === g), `${label}: ${m.id} is live and matches`).toBe(true);
        expect(m.distance, `${label}: ${m.id} at its distance`).toBeCloseTo(distance(metric, q, d!.vector), 4);
      }
    }
  }
}

describe('Memtable vector blocks', () => {
  it('copies vectors into growing blocks, hands back views of the copies, and counts dead rows per block', () => {
    const mt = new Memtable(2);
    const v = (x: number): Float32Array => Float32Array.of(x, -x);
    for (let i = 0; i < 200; i++) mt.set(`id${i}`, { lsn: i, vector: v(i), metadata: null, text: null, invNorm: 1, row: -1 });
    expect(mt.blocks.map((b) => [b.firstRow, b.vectors.length / 2, b.filled])).toEqual([
      [0, 64, 64],
      [64, 128, 128],
      [192, 256, 8],
    ]);
    const e = mt.entries.get('id70')!;
    expect(Array.from(e.vector!)).toEqual([70, -70]);
    expect(e.vector!.buffer).toBe(mt.blocks[1]!.vectors.buffer);
    mt.set('id70', { lsn: 300, vector: v(7), metadata: null, text: null, invNorm: 1, row: -1 });
    mt.set('id3', { lsn: 301, vector: null, metadata: null, text: null, invNorm: 0, row: -1 });
    expect(mt.blocks.map((b) => b.dead)).toEqual([1, 1, 0]);
    expect(mt.idAt(70)).toBeNull();
    expect(mt.idAt(3)).toBeNull();
    expect(mt.idAt(200)).toBe('id70');
    expect(mt.size).toBe(200);
    expect(mt.ops).toBe(202);
  });
});

describe('exact scans through the SIMD kernel agree with brute force, unfiltered and filtered', () => {
  for (const metric of ['l2', 'cosine', 'dot'] as const) {
    it(`${metric}: memtable blocks with overwrites and deletes, a frozen memtable shadowed by a newer one, raw segments whole and after deletes`, async () => {
      const rand = seededRandom(metric.length * 7919);
      const dataDir = tempDir();
      const logged: string[] = [];
      const logger = { info: () => undefined, warn: (_: object, msg: string) => logged.push(msg), error: (o: object, msg: string) => logged.push(`${msg} ${JSON.stringify(o)}`) };
      const db = await AkiDB.open({ dataDir, logger, hnsw: { threshold: 1_000_000 }, compaction: { thresholdOps: 1_000_000, enableBackground: false, idleFlushMs: 3_600_000 } });
      try {
        const col = await db.createCollection({ name: 'scan', dimension: DIM, metric });
        const model = new Map<string, Stored>();
        const ids = Array.from({ length: 400 }, (_, i) => `d${i}`);
        const upsert = async (n: number): Promise<void> => {
          const docs = Array.from({ length: n }, () => ({ id: ids[Math.floor(rand() * ids.length)]!, vector: Float32Array.from({ length: DIM }, () => rand() - 0.5), metadata: { g: Math.floor(rand() * 4) } }));
          await col.upsert(docs);
          for (const d of docs) model.set(d.id, { vector: d.vector, g: d.metadata.g });
        };
        const remove = async (n: number): Promise<void> => {
          const gone = Array.from({ length: n }, () => ids[Math.floor(rand() * ids.length)]!);
          await col.delete({ ids: gone });
          for (const id of gone) model.delete(id);
        };

        // One memtable: several blocks, rows superseded and deleted in each.
        for (let round = 0; round < 6; round++) {
          await upsert(150);
          await remove(20);
          check(col, model, metric, rand, `memtable, round ${round}`);
        }
        expect(col.stats()).toMatchObject({ segments: 0 });

        // A flush that cannot write its segment leaves the memtable frozen beside a new active one.
        const segDir = path.join(dataDir, 'collections', col.info.collectionId, 'segments');
        fs.renameSync(segDir, `${segDir}.away`);
        fs.writeFileSync(segDir, 'not a directory');
        await expect(col.flush()).rejects.toThrow(/ENOTDIR/);
        for (let round = 0; round < 4; round++) {
          await upsert(120);
          await remove(15);
          check(col, model, metric, rand, `frozen + active memtables, round ${round}`);
        }
        fs.rmSync(segDir);
        fs.renameSync(`${segDir}.away`, segDir);
        expect(logged.every((l) => l.includes('ENOTDIR'))).toBe(true);

        // The flush succeeds now: raw segments, scanned whole, then with deleted rows.
        await col.flush();
        expect(col.stats()).toMatchObject({ memtableEntries: 0, indexedSegments: 0 });
        expect(col.stats().segments).toBeGreaterThan(0);
        check(col, model, metric, rand, 'raw segments, every row live');
        await remove(60);
        check(col, model, metric, rand, 'raw segments after deletes, memtable of tombstones');
        await col.flush();
        check(col, model, metric, rand, 'raw segments after deletes');
        await upsert(100);
        check(col, model, metric, rand, 'raw segments and a memtable');
      } finally {
        await db.close();
      }
    });
  }
});
