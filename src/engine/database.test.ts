import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AkiError, type ErrorCode } from '../errors.js';
import type { Metadata } from '../index/filter.js';
import type { Metric } from '../index/metric.js';
import type { Collection, Document, DocumentInput, QueryMatch } from './collection.js';
import { AkiDB, type OpenOptions } from './database.js';
import { seededRandom } from '../util/seeded-random.js';

// Small thresholds so flushes, segments and HNSW index builds happen with a handful of rows.
const SMALL: Omit<OpenOptions, 'dataDir'> = { hnsw: { threshold: 4, quantization: 'f32' }, compaction: { enableBackground: false } };

let dirs: string[] = [];
let dbs: AkiDB[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-'));
  dirs.push(dir);
  return dir;
}

/** Open a db that afterEach closes. */
async function open(opts: OpenOptions): Promise<AkiDB> {
  const db = await AkiDB.open(opts);
  dbs.push(db);
  return db;
}

afterEach(async () => {
  for (const db of dbs) await db.close();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  dbs = [];
  dirs = [];
});

/** Float32 rounding of a vector, as `get` returns it. */
function f32(v: readonly number[]): number[] {
  return Array.from(Float32Array.from(v));
}

/** The rejection of `p`; fails the test when `p` resolves. */
async function rejection(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection, but the call succeeded');
}

async function expectCode(p: Promise<unknown> | (() => unknown), code: ErrorCode): Promise<void> {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(AkiError);
  expect(err).toMatchObject({ code });
}

function expectBestFirst(matches: QueryMatch[]): void {
  for (let i = 1; i < matches.length; i++) {
    expect(matches[i]!.distance).toBeGreaterThanOrEqual(matches[i - 1]!.distance);
    expect(matches[i]!.score).toBeLessThanOrEqual(matches[i - 1]!.score);
  }
}

describe('AkiDB.open and lifecycle', () => {
  it('creates the default tenant and database on first open', async () => {
    const db = await open({ dataDir: tempDir() });
    expect((await db.listTenants()).map((t) => t.name)).toEqual(['default']);
    expect((await db.listDatabases('default')).map((d) => d.name)).toEqual(['default']);
    expect(await db.listCollections()).toEqual([]);
    expect(await db.database().listCollections()).toEqual([]);
  });

  it('without autoInitialize there is no default tenant', async () => {
    const db = await open({ dataDir: tempDir(), autoInitialize: false });
    expect(await db.listTenants()).toEqual([]);
    await expectCode(db.listCollections(), 'TENANT_NOT_FOUND');
  });

  it('a second open of a data directory in use fails with DATA_DIR_LOCKED and leaves the first working', async () => {
    const dir = tempDir();
    const db = await open({ dataDir: dir });
    const col = await db.createCollection({ name: 'c', dimension: 2 });
    await col.upsert([{ id: 'a', vector: [1, 0] }]);
    await expectCode(AkiDB.open({ dataDir: dir }), 'DATA_DIR_LOCKED');
    await expectCode(AkiDB.open({ dataDir: path.join(dir, '.') }), 'DATA_DIR_LOCKED');
    await col.upsert([{ id: 'b', vector: [0, 1] }]);
    expect(await col.count()).toBe(2);
    expect((await db.listCollections()).map((c) => c.name)).toEqual(['c']);
  });

  it("a LOCK left with this process's own pid by an earlier process is taken over (containers run the server as pid 1)", async () => {
    const dir = tempDir();
    const first = await AkiDB.open({ dataDir: dir });
    await (await first.createCollection({ name: 'c', dimension: 2 })).upsert([{ id: 'a', vector: [1, 0] }]);
    await first.close();
    // What a killed pid-1 server leaves behind, seen by the restarted pid-1 server.
    fs.writeFileSync(path.join(dir, 'LOCK'), String(process.pid));
    const again = await open({ dataDir: dir });
    expect(await (await again.getCollection('c')).count()).toBe(1);
    // Held by this process now: a second open in the same process is still refused.
    await expectCode(AkiDB.open({ dataDir: dir }), 'DATA_DIR_LOCKED');
  });

  it('after close every call answers CLOSED, and a reopen sees every acknowledged write', async () => {
    const dir = tempDir();
    const db = await AkiDB.open({ dataDir: dir });
    const col = await db.createCollection({ name: 'c', dimension: 2, metric: 'l2' });
    await col.upsert([
      { id: 'a', vector: [1, 2], metadata: { k: 1 } },
      { id: 'b', vector: [3, 4] },
    ]);
    await col.delete({ ids: ['b'] });
    await db.close();
    await db.close(); // idempotent
    await expectCode(col.count(), 'CLOSED');
    await expectCode(col.upsert([{ id: 'c', vector: [0, 0] }]), 'CLOSED');
    await expectCode(db.listCollections(), 'CLOSED');
    await expectCode(db.getCollection('c'), 'CLOSED');

    const again = await open({ dataDir: dir });
    const reopened = await again.getCollection('c');
    expect(reopened.metric).toBe('l2');
    expect(reopened.dimension).toBe(2);
    expect(await reopened.count()).toBe(1);
    expect(await reopened.get(['a', 'b'])).toEqual([{ id: 'a', vector: [1, 2], metadata: { k: 1 }, text: null }, null]);
  });

  it('close during writes and a compaction keeps every acknowledged write', async () => {
    const dir = tempDir();
    const opts = { hnsw: { threshold: 4, quantization: 'f32' as const }, compaction: { thresholdOps: 3, enableBackground: true, idleFlushMs: 1 } };
    const db = await open({ dataDir: dir, ...opts });
    const col = await db.createCollection({ name: 'c', dimension: 2, metric: 'l2' });
    await col.upsert(Array.from({ length: 40 }, (_, i) => ({ id: `s${i}`, vector: [i, 0] })));
    const writes = Array.from({ length: 30 }, (_, i) => col.upsert([{ id: `w${i}`, vector: [i, 1] }]).then(() => `w${i}`));
    // The compaction may finish, or be abandoned by close (CLOSED); either way nothing is lost.
    const compaction = col.compact().then(
      () => 'done',
      (err: unknown) => (err as AkiError).code,
    );
    await db.close();
    const acked = await Promise.all(writes);
    expect(['done', 'CLOSED']).toContain(await compaction);

    const again = await open({ dataDir: dir, ...opts });
    const reopened = await again.getCollection('c');
    expect(await reopened.count()).toBe(70);
    expect((await reopened.get(acked)).every((d) => d !== null)).toBe(true);
    await reopened.waitForIndexing();
    expect(reopened.stats()).toMatchObject({ documents: 70, memtableEntries: 0 });
    expect((await reopened.query({ vector: [0, 1], topK: 1 }))[0]).toMatchObject({ id: 'w0', distance: 0 });
  });
});

describe('collections', () => {
  let db: AkiDB;
  beforeEach(async () => {
    db = await open({ dataDir: tempDir(), ...SMALL });
  });

  it('createCollection, getCollection and listCollections agree', async () => {
    const created = await db.createCollection({ name: 'books', dimension: 3, metric: 'dot' });
    expect(created).toMatchObject({ name: 'books', dimension: 3, metric: 'dot' });
    await db.createCollection({ name: 'articles', dimension: 5 });
    const got = await db.getCollection('books');
    expect(got.info).toEqual(created.info);
    const list = await db.listCollections();
    expect(list.map((c) => [c.name, c.dimension, c.metric])).toEqual([
      ['articles', 5, 'cosine'], // cosine is the default metric
      ['books', 3, 'dot'],
    ]);
    expect(list[1]!.collectionId).toBe(created.info.collectionId);
  });

  it('COLLECTION_ALREADY_EXISTS leaves the existing collection and its data alone', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 2, metric: 'l2' });
    await col.upsert([{ id: 'a', vector: [1, 2] }]);
    await expectCode(db.createCollection({ name: 'c', dimension: 7, metric: 'dot' }), 'COLLECTION_ALREADY_EXISTS');
    const again = await db.getCollection('c');
    expect(again).toMatchObject({ dimension: 2, metric: 'l2' });
    expect(await again.get(['a'])).toEqual([{ id: 'a', vector: [1, 2], metadata: null, text: null }]);
    expect((await db.listCollections()).length).toBe(1);
  });

  it('COLLECTION_NOT_FOUND for get and drop of a missing name', async () => {
    await expectCode(db.getCollection('nope'), 'COLLECTION_NOT_FOUND');
    await expectCode(db.dropCollection('nope'), 'COLLECTION_NOT_FOUND');
  });

  it('dropCollection removes the collection and its data; the name can be reused empty', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 2 });
    await col.upsert([{ id: 'a', vector: [1, 2] }]);
    await col.flush();
    const other = await db.createCollection({ name: 'other', dimension: 2 });
    await other.upsert([{ id: 'a', vector: [3, 4] }]);
    await db.dropCollection('c');
    await expectCode(db.getCollection('c'), 'COLLECTION_NOT_FOUND');
    expect((await db.listCollections()).map((c) => c.name)).toEqual(['other']);
    expect(fs.existsSync(path.join(db.dataDir, 'collections', col.info.collectionId))).toBe(false);
    const fresh = await db.createCollection({ name: 'c', dimension: 2 });
    expect(fresh.info.collectionId).not.toBe(col.info.collectionId);
    expect(await fresh.count()).toBe(0);
    expect(await fresh.get(['a'])).toEqual([null]);
    expect(await other.get(['a'])).toEqual([{ id: 'a', vector: [3, 4], metadata: null, text: null }]);
  });

  it('a dropped collection stays dropped after reopen', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 2 });
    await col.upsert([{ id: 'a', vector: [1, 2] }]);
    await db.dropCollection('c');
    await db.close();
    const again = await open({ dataDir: db.dataDir, ...SMALL });
    await expectCode(again.getCollection('c'), 'COLLECTION_NOT_FOUND');
    expect(await again.listCollections()).toEqual([]);
  });
});

describe('tenants and databases', () => {
  let db: AkiDB;
  beforeEach(async () => {
    db = await open({ dataDir: tempDir(), ...SMALL });
  });

  it('the same collection name in two databases holds different data', async () => {
    await db.createTenant('acme');
    await db.createDatabase('acme', 'prod');
    await db.createDatabase('acme', 'staging');
    const prod = await db.database('acme', 'prod').createCollection({ name: 'docs', dimension: 2 });
    const staging = await db.database('acme', 'staging').createCollection({ name: 'docs', dimension: 2 });
    const dflt = await db.createCollection({ name: 'docs', dimension: 2 });
    await prod.upsert([{ id: 'x', vector: [1, 0], metadata: { env: 'prod' } }]);
    await staging.upsert([
      { id: 'x', vector: [0, 1], metadata: { env: 'staging' } },
      { id: 'y', vector: [1, 1] },
    ]);

    const p = await db.database('acme', 'prod').getCollection('docs');
    const s = await db.database('acme', 'staging').getCollection('docs');
    expect(p.info.collectionId).not.toBe(s.info.collectionId);
    expect(await p.get(['x', 'y'])).toEqual([{ id: 'x', vector: [1, 0], metadata: { env: 'prod' }, text: null }, null]);
    expect(await s.get(['x'])).toEqual([{ id: 'x', vector: [0, 1], metadata: { env: 'staging' }, text: null }]);
    expect(await s.count()).toBe(2);
    expect(await dflt.count()).toBe(0);
    expect((await p.query({ vector: [0, 1], topK: 10 })).map((m) => m.id)).toEqual(['x']);

    await db.database('acme', 'staging').dropCollection('docs');
    expect(await p.count()).toBe(1);
    expect((await db.database('acme', 'staging').listCollections()).length).toBe(0);
    expect((await db.database('acme', 'prod').listCollections()).map((c) => c.name)).toEqual(['docs']);
    expect((await db.listCollections()).map((c) => c.name)).toEqual(['docs']);
  });

  it('the same database name under two tenants is two databases, and survives a reopen', async () => {
    await db.createTenant('t1');
    await db.createTenant('t2');
    await db.createDatabase('t1', 'main');
    await db.createDatabase('t2', 'main');
    await (await db.database('t1', 'main').createCollection({ name: 'c', dimension: 1, metric: 'l2' })).upsert([{ id: 'a', vector: [1] }]);
    await (await db.database('t2', 'main').createCollection({ name: 'c', dimension: 1, metric: 'l2' })).upsert([{ id: 'a', vector: [2] }]);
    await db.close();
    const again = await open({ dataDir: db.dataDir, ...SMALL });
    expect((await again.listTenants()).map((t) => t.name)).toEqual(['default', 't1', 't2']);
    expect((await (await again.database('t1', 'main').getCollection('c')).get(['a']))[0]?.vector).toEqual([1]);
    expect((await (await again.database('t2', 'main').getCollection('c')).get(['a']))[0]?.vector).toEqual([2]);
  });

  it('missing and duplicate tenants and databases answer their codes', async () => {
    await expectCode(db.database('ghost').listCollections(), 'TENANT_NOT_FOUND');
    await expectCode(db.database('default', 'ghost').createCollection({ name: 'c', dimension: 2 }), 'DATABASE_NOT_FOUND');
    await expectCode(db.createDatabase('ghost', 'd'), 'TENANT_NOT_FOUND');
    await db.createTenant('t');
    await expectCode(db.createTenant('t'), 'TENANT_ALREADY_EXISTS');
    await db.createDatabase('t', 'd');
    await expectCode(db.createDatabase('t', 'd'), 'DATABASE_ALREADY_EXISTS');
    await db.database('t', 'd').createCollection({ name: 'c', dimension: 2 });
    await expectCode(db.dropDatabase('t', 'd'), 'DATABASE_NOT_EMPTY');
    expect((await db.database('t', 'd').listCollections()).length).toBe(1);
  });
});

describe('bad input gets its coded error and harms nothing stored', () => {
  let db: AkiDB;
  let col: Collection;
  const STORED: DocumentInput[] = [
    { id: 'k1', vector: [1, 0, 0], metadata: { g: 1, tag: 'a' } },
    { id: 'k2', vector: [0, 0.5, 0], metadata: { g: 2 } },
    { id: 'k3', vector: [0.25, 0.25, 1], metadata: null },
  ];
  const EXPECTED: Document[] = STORED.map((d) => ({ id: d.id, vector: Array.from(d.vector), metadata: d.metadata ?? null, text: null }));

  beforeEach(async () => {
    db = await open({ dataDir: tempDir(), ...SMALL });
    col = await db.createCollection({ name: 'keep', dimension: 3, metric: 'cosine' });
    await col.upsert(STORED.slice(0, 2));
    await col.flush(); // some rows in a segment, some in the memtable
    await col.upsert(STORED.slice(2));
  });

  async function expectIntact(): Promise<void> {
    expect(await col.count()).toBe(3);
    expect(await col.get(['k1', 'k2', 'k3'])).toEqual(EXPECTED);
    expect((await col.query({ vector: [1, 0, 0], topK: 1 }))[0]?.id).toBe('k1');
    const list = await db.listCollections();
    expect(list.map((c) => c.name)).toEqual(['keep']);
    const again = await db.getCollection('keep');
    expect(again.info).toEqual(col.info);
  }

  const deep = (() => {
    let f: Record<string, unknown> = { g: 1 };
    for (let i = 0; i < 40; i++) f = { $not: f };
    return f;
  })();
  const wide = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`f${i}`, i]));
  const v = (...xs: number[]): number[] => xs;
  const circular = (): Metadata => {
    const m: Metadata = {};
    m['self'] = m;
    return m;
  };

  const cases: [string, () => Promise<unknown>, ErrorCode][] = [
    ['upsert a vector that is too short', () => col.upsert([{ id: 'k1', vector: v(1, 2) }]), 'DIMENSION_MISMATCH'],
    ['upsert a vector that is too long', () => col.upsert([{ id: 'n', vector: v(1, 2, 3, 4) }]), 'DIMENSION_MISMATCH'],
    ['upsert an empty vector', () => col.upsert([{ id: 'n', vector: [] }]), 'DIMENSION_MISMATCH'],
    ['upsert a Float32Array of the wrong length', () => col.upsert([{ id: 'n', vector: new Float32Array(2) }]), 'DIMENSION_MISMATCH'],
    ['upsert NaN', () => col.upsert([{ id: 'k1', vector: v(Number.NaN, 0, 0) }]), 'INVALID_VECTOR'],
    ['upsert Infinity', () => col.upsert([{ id: 'k1', vector: v(1, Number.POSITIVE_INFINITY, 0) }]), 'INVALID_VECTOR'],
    ['upsert -Infinity', () => col.upsert([{ id: 'n', vector: v(1, 0, Number.NEGATIVE_INFINITY) }]), 'INVALID_VECTOR'],
    ['upsert 1e39 (beyond float32)', () => col.upsert([{ id: 'k2', vector: v(1e39, 0, 0) }]), 'INVALID_VECTOR'],
    ['upsert NaN inside a Float32Array', () => col.upsert([{ id: 'n', vector: Float32Array.from([0, Number.NaN, 1]) }]), 'INVALID_VECTOR'],
    ['upsert a string element', () => col.upsert([{ id: 'n', vector: [1, '2', 3] as unknown as number[] }]), 'INVALID_VECTOR'],
    ['upsert a zero vector into a cosine collection', () => col.upsert([{ id: 'k3', vector: v(0, 0, 0) }]), 'INVALID_VECTOR'],
    ['upsert a vector that is zero in float32 (1e-50)', () => col.upsert([{ id: 'n', vector: v(1e-50, 0, 0) }]), 'INVALID_VECTOR'],
    [
      'a batch with a valid overwrite and one bad document',
      () =>
        col.upsert([
          { id: 'k1', vector: v(0, 1, 0), metadata: { g: 9 } },
          { id: 'n', vector: v(1, 1, 1) },
          { id: 'k2', vector: v(1, Number.NaN, 1) },
        ]),
      'INVALID_VECTOR',
    ],
    ['upsert an empty id', () => col.upsert([{ id: '', vector: v(1, 1, 1) }]), 'INVALID_DOCUMENT'],
    ['upsert array metadata', () => col.upsert([{ id: 'k1', vector: v(1, 1, 1), metadata: [1] as unknown as Metadata }]), 'INVALID_DOCUMENT'],
    ['upsert more than 10,000 documents', () => col.upsert(Array.from({ length: 10_001 }, (_, i) => ({ id: `b${i}`, vector: v(1, i, 0) }))), 'PAYLOAD_TOO_LARGE'],
    ['upsert metadata over 64 KiB', () => col.upsert([{ id: 'k1', vector: v(1, 1, 1), metadata: { s: 'x'.repeat(64 * 1024) } }]), 'PAYLOAD_TOO_LARGE'],
    ['query with a wrong-dimension vector', () => col.query({ vector: v(1, 0), topK: 1 }), 'DIMENSION_MISMATCH'],
    ['query with NaN', () => col.query({ vector: v(Number.NaN, 0, 0), topK: 1 }), 'INVALID_VECTOR'],
    ['query with Infinity', () => col.query({ vector: v(Number.POSITIVE_INFINITY, 0, 0), topK: 1 }), 'INVALID_VECTOR'],
    ['query with 1e39', () => col.query({ vector: v(1e39, 0, 0), topK: 1 }), 'INVALID_VECTOR'],
    ['query with a zero vector (cosine)', () => col.query({ vector: v(0, 0, 0), topK: 1 }), 'INVALID_VECTOR'],
    ['query topK 0', () => col.query({ vector: v(1, 0, 0), topK: 0 }), 'INVALID_TOP_K'],
    ['query topK 1001', () => col.query({ vector: v(1, 0, 0), topK: 1001 }), 'INVALID_TOP_K'],
    ['query topK 2.5', () => col.query({ vector: v(1, 0, 0), topK: 2.5 }), 'INVALID_TOP_K'],
    ['query topK -1', () => col.query({ vector: v(1, 0, 0), topK: -1 }), 'INVALID_TOP_K'],
    ['query topK NaN', () => col.query({ vector: v(1, 0, 0), topK: Number.NaN }), 'INVALID_TOP_K'],
    ['query topK as a string', () => col.query({ vector: v(1, 0, 0), topK: '5' as unknown as number }), 'INVALID_TOP_K'],
    ['query with an unknown filter operator', () => col.query({ vector: v(1, 0, 0), topK: 1, filter: { g: { $regex: '1' } } }), 'INVALID_FILTER'],
    ['query with a malformed operand', () => col.query({ vector: v(1, 0, 0), topK: 1, filter: { g: { $in: 1 } } }), 'INVALID_FILTER'],
    ['query with a filter deeper than 32', () => col.query({ vector: v(1, 0, 0), topK: 1, filter: deep }), 'FILTER_TOO_COMPLEX'],
    ['query with more than 100 clauses', () => col.query({ vector: v(1, 0, 0), topK: 1, filter: wide }), 'FILTER_TOO_COMPLEX'],
    ['delete with an unknown filter operator', () => col.delete({ filter: { $where: 'true' } }), 'INVALID_FILTER'],
    ['delete with a malformed operand', () => col.delete({ filter: { g: { $exists: 'yes' } } }), 'INVALID_FILTER'],
    ['delete with ids and an unknown filter operator', () => col.delete({ ids: ['k1'], filter: { g: { $bogus: 1 } } }), 'INVALID_FILTER'],
    ['delete with a filter deeper than 32', () => col.delete({ filter: deep }), 'FILTER_TOO_COMPLEX'],
    ['delete with more than 100 clauses', () => col.delete({ filter: wide }), 'FILTER_TOO_COMPLEX'],
    ['delete more than 10,000 ids', () => col.delete({ ids: Array.from({ length: 10_001 }, (_, i) => `k${i}`) }), 'PAYLOAD_TOO_LARGE'],
    ['get more than 10,000 ids', () => col.get(Array.from({ length: 10_001 }, (_, i) => `k${i}`)), 'PAYLOAD_TOO_LARGE'],
    ['createCollection with metric "hamming"', () => db.createCollection({ name: 'n', dimension: 3, metric: 'hamming' as Metric }), 'INVALID_METRIC'],
    ['createCollection with metric "COSINE"', () => db.createCollection({ name: 'n', dimension: 3, metric: 'COSINE' as Metric }), 'INVALID_METRIC'],
    ['createCollection with dimension 0', () => db.createCollection({ name: 'n', dimension: 0 }), 'INVALID_DIMENSION'],
    ['createCollection with dimension 4097', () => db.createCollection({ name: 'n', dimension: 4097 }), 'INVALID_DIMENSION'],
    ['createCollection with dimension 1.5', () => db.createCollection({ name: 'n', dimension: 1.5 }), 'INVALID_DIMENSION'],
    ['createCollection with dimension -3', () => db.createCollection({ name: 'n', dimension: -3 }), 'INVALID_DIMENSION'],
    ['createCollection with dimension NaN', () => db.createCollection({ name: 'n', dimension: Number.NaN }), 'INVALID_DIMENSION'],
    ['createCollection with dimension "3"', () => db.createCollection({ name: 'n', dimension: '3' as unknown as number }), 'INVALID_DIMENSION'],
    ['createCollection of an existing name with a bad dimension', () => db.createCollection({ name: 'keep', dimension: 0 }), 'INVALID_DIMENSION'],
    ['createCollection with i8 quantization and l2', () => db.createCollection({ name: 'n', dimension: 3, metric: 'l2', index: { quantization: 'i8' } }), 'INVALID_INDEX_PARAMS'],
    ['createCollection with HNSW m 1', () => db.createCollection({ name: 'n', dimension: 3, index: { m: 1 } }), 'INVALID_INDEX_PARAMS'],
    ['createCollection with an unknown quantization', () => db.createCollection({ name: 'n', dimension: 3, index: { quantization: 'f64' as 'f32' } }), 'INVALID_INDEX_PARAMS'],
    ['upsert a non-array', () => col.upsert({ id: 'k1', vector: [1, 1, 1] } as unknown as DocumentInput[]), 'INVALID_ARGUMENT'],
    ['upsert a null document', () => col.upsert([null as unknown as DocumentInput]), 'INVALID_DOCUMENT'],
    ['upsert a numeric id', () => col.upsert([{ id: 5 as unknown as string, vector: v(1, 1, 1) }]), 'INVALID_DOCUMENT'],
    ['upsert an id over 1024 bytes', () => col.upsert([{ id: 'é'.repeat(513), vector: v(1, 1, 1) }]), 'INVALID_DOCUMENT'],
    ['upsert circular metadata', () => col.upsert([{ id: 'k1', vector: v(1, 1, 1), metadata: circular() }]), 'INVALID_DOCUMENT'],
    ['upsert BigInt metadata', () => col.upsert([{ id: 'k1', vector: v(1, 1, 1), metadata: { b: 10n } }]), 'INVALID_DOCUMENT'],
    ['upsert text over 1 MiB', () => col.upsert([{ id: 'k1', vector: v(1, 1, 1), text: 'x'.repeat(1024 * 1024 + 1) }]), 'PAYLOAD_TOO_LARGE'],
    ['query with efSearch 0', () => col.query({ vector: v(1, 0, 0), topK: 1, efSearch: 0 }), 'INVALID_ARGUMENT'],
    ['delete with neither ids nor filter', () => col.delete({}), 'INVALID_ARGUMENT'],
    ['delete with non-string ids', () => col.delete({ ids: [1] as unknown as string[] }), 'INVALID_ARGUMENT'],
    ['get with non-string ids', () => col.get([null] as unknown as string[]), 'INVALID_ARGUMENT'],
  ];

  it.each(cases)('%s', async (_name, call, code) => {
    await expectCode(call(), code);
    await expectIntact();
    if (code === 'INVALID_METRIC' || code === 'INVALID_DIMENSION' || code === 'INVALID_INDEX_PARAMS') await expectCode(db.getCollection('n'), 'COLLECTION_NOT_FOUND');
    expect(await col.get(['n'])).toEqual([null]);
  });

  const BAD_NAMES: [string, string][] = [
    ['../x', 'path traversal'],
    ['', 'empty'],
    ['a'.repeat(256), '256 characters'],
    ['a/b', 'a slash'],
    ['a\\b', 'a backslash'],
    ['a b', 'a space'],
    ['é', 'non-ASCII'],
    ['.', 'a lone dot'],
    ['..', 'two dots'],
    ['name\n', 'a trailing newline'],
    ['a\u0000b', 'a NUL'],
  ];

  it.each(BAD_NAMES)('name %j (%s) → INVALID_NAME everywhere a name is taken', async (name) => {
    await expectCode(db.createCollection({ name, dimension: 3 }), 'INVALID_NAME');
    await expectCode(db.getCollection(name), 'INVALID_NAME');
    await expectCode(db.dropCollection(name), 'INVALID_NAME');
    await expectCode(db.createTenant(name), 'INVALID_NAME');
    await expectCode(db.createDatabase('default', name), 'INVALID_NAME');
    await expectCode(db.createDatabase(name, 'd'), 'INVALID_NAME');
    await expectCode(() => db.database(name, 'default'), 'INVALID_NAME');
    await expectCode(() => db.database('default', name), 'INVALID_NAME');
    await expectIntact();
    expect((await db.listTenants()).map((t) => t.name)).toEqual(['default']);
    expect((await db.listDatabases('default')).map((d) => d.name)).toEqual(['default']);
    expect(fs.readdirSync(path.join(db.dataDir, 'collections'))).toEqual([col.info.collectionId]);
  });

  it('a name of 255 allowed characters is accepted', async () => {
    const name = `A-z_0.9${'x'.repeat(248)}`;
    expect(name.length).toBe(255);
    const c = await db.createCollection({ name, dimension: 3 });
    expect((await db.getCollection(name)).info.collectionId).toBe(c.info.collectionId);
    await db.createTenant(name);
    await db.createDatabase(name, name);
    expect((await db.database(name, name).listCollections()).length).toBe(0);
  });

  it('metadata of exactly 64 KiB is accepted, one byte more is not', async () => {
    const at = { s: 'x'.repeat(64 * 1024 - 8) }; // {"s":"…"} adds 8 bytes
    expect(Buffer.byteLength(JSON.stringify(at))).toBe(64 * 1024);
    await col.upsert([{ id: 'big', vector: [1, 1, 1], metadata: at }]);
    expect((await col.get(['big']))[0]?.metadata).toEqual(at);
    await expectCode(col.upsert([{ id: 'big', vector: [1, 1, 1], metadata: { s: `${at.s}y` } }]), 'PAYLOAD_TOO_LARGE');
    expect((await col.get(['big']))[0]?.metadata).toEqual(at);
  });

  // Validation checks `typeof metadata === 'object'` and then stores JSON.parse(JSON.stringify(m)),
  // so an object whose JSON is not an object (a Date, anything with such a toJSON) is stored as
  // a string or a number, and `get` returns metadata that is not a JSON object.

  it('metadata that does not serialize to a JSON object is rejected with INVALID_DOCUMENT', async () => {
    await expectCode(col.upsert([{ id: 'k1', vector: [1, 1, 1], metadata: new Date(0) as unknown as Metadata }]), 'INVALID_DOCUMENT');
    await expectCode(col.upsert([{ id: 'k2', vector: [1, 1, 1], metadata: { toJSON: () => 5 } }]), 'INVALID_DOCUMENT');
    await expectIntact();
  });

  it('dimensions 1 and 4096 are accepted', async () => {
    const one = await db.createCollection({ name: 'one', dimension: 1, metric: 'l2' });
    await one.upsert([{ id: 'a', vector: [2] }]);
    expect((await one.query({ vector: [0], topK: 1 }))[0]?.distance).toBe(2);
    const wide4096 = await db.createCollection({ name: 'wide', dimension: 4096 });
    await wide4096.upsert([{ id: 'a', vector: Array.from({ length: 4096 }, (_, i) => i + 1) }]);
    expect(await wide4096.count()).toBe(1);
  });

  it('a batch of exactly 10,000 documents is accepted', async () => {
    await col.upsert(Array.from({ length: 10_000 }, (_, i) => ({ id: `b${i}`, vector: [1, i, 0] })));
    expect(await col.count()).toBe(10_003);
  });

  it('a dropped collection handle answers COLLECTION_NOT_FOUND to every call', async () => {
    const doomed = await db.createCollection({ name: 'doomed', dimension: 3 });
    await doomed.upsert([{ id: 'k1', vector: [1, 1, 1] }]);
    await db.dropCollection('doomed');
    await expectCode(doomed.upsert([{ id: 'x', vector: [1, 1, 1] }]), 'COLLECTION_NOT_FOUND');
    await expectCode(doomed.query({ vector: [1, 1, 1], topK: 1 }), 'COLLECTION_NOT_FOUND');
    await expectCode(doomed.get(['k1']), 'COLLECTION_NOT_FOUND');
    await expectCode(doomed.count(), 'COLLECTION_NOT_FOUND');
    await expectCode(doomed.delete({ ids: ['k1'] }), 'COLLECTION_NOT_FOUND');
    await expectCode(doomed.flush(), 'COLLECTION_NOT_FOUND');
    await expectCode(doomed.compact(), 'COLLECTION_NOT_FOUND');
    await expectIntact();
  });
});

describe('documents', () => {
  let db: AkiDB;
  let col: Collection;
  beforeEach(async () => {
    db = await open({ dataDir: tempDir(), ...SMALL });
    col = await db.createCollection({ name: 'c', dimension: 2, metric: 'l2' });
  });

  it('get returns documents in the order asked, null where absent', async () => {
    await col.upsert([
      { id: 'a', vector: [1, 0], metadata: { n: 1 }, text: 'alpha' },
      { id: 'b', vector: [0, 1] },
      { id: 'c', vector: [0.5, 0.5], metadata: { nested: { x: [1, 'two', null] } } },
    ]);
    const a: Document = { id: 'a', vector: [1, 0], metadata: { n: 1 }, text: 'alpha' };
    const c: Document = { id: 'c', vector: [0.5, 0.5], metadata: { nested: { x: [1, 'two', null] } }, text: null };
    expect(await col.get(['c', 'missing', 'a', 'c'])).toEqual([c, null, a, c]);
    expect(await col.get([])).toEqual([]);
    await col.flush();
    expect(await col.get(['c', 'missing', 'a', 'c'])).toEqual([c, null, a, c]);
  });

  it('get returns vectors rounded to float32', async () => {
    await col.upsert([{ id: 'a', vector: [0.1, 1 / 3] }]);
    expect((await col.get(['a']))[0]?.vector).toEqual(f32([0.1, 1 / 3]));
  });

  it('stored metadata is a copy: changing the caller object later changes nothing', async () => {
    const meta = { tags: ['x'] };
    await col.upsert([{ id: 'a', vector: [1, 0], metadata: meta }]);
    meta.tags.push('y');
    expect((await col.get(['a']))[0]?.metadata).toEqual({ tags: ['x'] });
  });

  it('upsert overwrites vector, metadata and text, in the memtable and over a segment', async () => {
    await col.upsert([{ id: 'a', vector: [1, 0], metadata: { v: 1 }, text: 't' }]);
    await col.upsert([{ id: 'a', vector: [2, 0], metadata: { v: 2 } }]);
    expect(await col.get(['a'])).toEqual([{ id: 'a', vector: [2, 0], metadata: { v: 2 }, text: null }]);
    await col.flush();
    await col.upsert([{ id: 'a', vector: [3, 0] }]);
    expect(await col.get(['a'])).toEqual([{ id: 'a', vector: [3, 0], metadata: null, text: null }]);
    expect(await col.count()).toBe(1);
    const hits = await col.query({ vector: [3, 0], topK: 5 });
    expect(hits.map((h) => [h.id, h.distance])).toEqual([['a', 0]]);
  });

  it('within one batch the last version of an id wins', async () => {
    const r = await col.upsert([
      { id: 'a', vector: [1, 0], metadata: { v: 1 } },
      { id: 'a', vector: [0, 1], metadata: { v: 2 } },
    ]);
    expect(r.upserted).toBe(2);
    expect(await col.count()).toBe(1);
    expect(await col.get(['a'])).toEqual([{ id: 'a', vector: [0, 1], metadata: { v: 2 }, text: null }]);
  });

  it('upsert answers with increasing LSNs', async () => {
    const r1 = await col.upsert([{ id: 'a', vector: [1, 0] }]);
    const r2 = await col.upsert([{ id: 'b', vector: [1, 0] }]);
    expect(r1.upserted).toBe(1);
    expect(r2.lsn).toBeGreaterThan(r1.lsn);
  });

  it('delete by ids answers how many live documents it removed', async () => {
    await col.upsert([
      { id: 'a', vector: [1, 0] },
      { id: 'b', vector: [0, 1] },
      { id: 'c', vector: [1, 1] },
    ]);
    await col.flush();
    expect(await col.delete({ ids: ['a', 'zzz', 'a'] })).toMatchObject({ deleted: 1 });
    expect(await col.delete({ ids: ['a'] })).toMatchObject({ deleted: 0 });
    expect(await col.delete({ ids: [] })).toMatchObject({ deleted: 0 });
    expect(await col.count()).toBe(2);
    expect(await col.get(['a', 'b'])).toEqual([null, { id: 'b', vector: [0, 1], metadata: null, text: null }]);
    expect((await col.query({ vector: [1, 0], topK: 10 })).map((m) => m.id).sort()).toEqual(['b', 'c']);
  });

  it('delete by filter answers how many it removed and removes exactly the matches', async () => {
    await col.upsert([
      { id: 'a', vector: [1, 0], metadata: { g: 1 } },
      { id: 'b', vector: [0, 1], metadata: { g: 2 } },
    ]);
    await col.flush();
    await col.upsert([
      { id: 'c', vector: [1, 1], metadata: { g: 1 } },
      { id: 'd', vector: [2, 2] },
      { id: 'b', vector: [0, 2], metadata: { g: 1 } }, // b now matches through its newer version
    ]);
    expect(await col.delete({ filter: { g: 1 } })).toMatchObject({ deleted: 3 });
    expect(await col.get(['a', 'b', 'c', 'd'])).toEqual([null, null, null, { id: 'd', vector: [2, 2], metadata: null, text: null }]);
    expect(await col.count()).toBe(1);
    expect(await col.delete({ filter: { g: 1 } })).toMatchObject({ deleted: 0 });
  });

  it('delete with ids and a filter removes only the listed ids that match', async () => {
    await col.upsert([
      { id: 'a', vector: [1, 0], metadata: { g: 1 } },
      { id: 'b', vector: [0, 1], metadata: { g: 2 } },
      { id: 'c', vector: [1, 1], metadata: { g: 1 } },
    ]);
    expect(await col.delete({ ids: ['a', 'b'], filter: { g: 1 } })).toMatchObject({ deleted: 1 });
    expect((await col.get(['a', 'b', 'c'])).map((d) => d?.id ?? null)).toEqual([null, 'b', 'c']);
  });

  it('count follows upserts, overwrites, deletes, flush and compaction', async () => {
    expect(await col.count()).toBe(0);
    await col.upsert(Array.from({ length: 10 }, (_, i) => ({ id: `d${i}`, vector: [i, 1] })));
    expect(await col.count()).toBe(10);
    await col.flush();
    await col.upsert([{ id: 'd0', vector: [5, 5] }, { id: 'new', vector: [1, 1] }]);
    expect(await col.count()).toBe(11);
    await col.delete({ ids: ['d1', 'd2', 'new'] });
    expect(await col.count()).toBe(8);
    await col.compact();
    expect(await col.count()).toBe(8);
    expect(col.stats()).toMatchObject({ documents: 8, segments: 1, indexedSegments: 1 });
  });
});

describe('query', () => {
  let db: AkiDB;
  beforeEach(async () => {
    db = await open({ dataDir: tempDir(), ...SMALL });
  });

  // Hand-computed: cosine distance 1 - cos, score cos; l2 distance Euclidean, score 1 / (1 + d);
  // dot distance 1 - dot, score dot.
  const METRIC_CASES: { metric: Metric; query: number[]; docs: [string, number[]][]; expected: [string, number, number][] }[] = [
    {
      metric: 'cosine',
      query: [2, 0],
      docs: [
        ['same', [1, 0]],
        ['diag', [1, 1]],
        ['ortho', [0, 2]],
        ['opposite', [-3, 0]],
      ],
      expected: [
        ['same', 0, 1],
        ['diag', 1 - Math.SQRT1_2, Math.SQRT1_2],
        ['ortho', 1, 0],
        ['opposite', 2, -1],
      ],
    },
    {
      metric: 'l2',
      query: [1, 1],
      docs: [
        ['near', [1, 2]],
        ['origin', [0, 0]],
        ['far', [4, 5]],
        ['farther', [-5, 9]],
      ],
      expected: [
        ['near', 1, 1 / 2],
        ['origin', Math.SQRT2, 1 / (1 + Math.SQRT2)],
        ['far', 5, 1 / 6],
        ['farther', 10, 1 / 11],
      ],
    },
    {
      metric: 'dot',
      query: [1, 1],
      docs: [
        ['small', [1, 2]],
        ['big', [3, 4]],
        ['neg', [-1, 0]],
        ['zero', [0, 0]],
      ],
      expected: [
        ['big', -6, 7],
        ['small', -2, 3],
        ['zero', 1, 0],
        ['neg', 2, -1],
      ],
    },
  ];

  describe.each(METRIC_CASES)('metric $metric', ({ metric, query, docs, expected }) => {
    it.each(['memtable', 'raw segment', 'indexed segment', 'reopened'] as const)('distance and score are exact, best first (%s)', async (where) => {
      let col = await db.createCollection({ name: 'm', dimension: 2, metric });
      await col.upsert(docs.map(([id, vector]) => ({ id, vector, metadata: { id } })));
      if (where === 'raw segment') await col.flush();
      if (where === 'indexed segment' || where === 'reopened') {
        await col.compact();
        expect(col.stats()).toMatchObject({ indexedSegments: 1, indexedRows: 4 });
      }
      if (where === 'reopened') {
        await db.close();
        db = await open({ dataDir: db.dataDir, ...SMALL });
        col = await db.getCollection('m');
      }
      const hits = await col.query({ vector: query, topK: 10 });
      expect(hits.map((h) => h.id)).toEqual(expected.map(([id]) => id));
      hits.forEach((h, i) => {
        const [, distance, score] = expected[i]!;
        expect(h.distance).toBeCloseTo(distance, 5);
        expect(h.score).toBeCloseTo(score, 5);
        expect(h.metadata).toEqual({ id: h.id });
      });
      expectBestFirst(hits);
      const top2 = await col.query({ vector: query, topK: 2 });
      expect(top2.map((h) => h.id)).toEqual(expected.slice(0, 2).map(([id]) => id));
    });
  });

  it('includeMetadata false omits metadata; includeVector returns the stored vector', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 3, metric: 'l2' });
    await col.upsert([{ id: 'a', vector: [0.1, 0.2, 0.3], metadata: { k: 'v' } }]);
    for (const phase of ['memtable', 'segment']) {
      if (phase === 'segment') await col.flush();
      const plain = await col.query({ vector: [0, 0, 0], topK: 1 });
      expect(plain[0]).toMatchObject({ id: 'a', metadata: { k: 'v' } });
      expect(plain[0]).not.toHaveProperty('vector');
      const bare = await col.query({ vector: [0, 0, 0], topK: 1, includeMetadata: false });
      expect(bare[0]?.id).toBe('a');
      expect(bare[0]).not.toHaveProperty('metadata');
      const withVector = await col.query({ vector: [0, 0, 0], topK: 1, includeVector: true, includeMetadata: false });
      expect(withVector[0]?.vector).toEqual(f32([0.1, 0.2, 0.3]));
      expect(withVector[0]).not.toHaveProperty('metadata');
    }
  });

  it('filters select what a query may return', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 2, metric: 'l2' });
    await col.upsert(Array.from({ length: 12 }, (_, i) => ({ id: `d${i}`, vector: [i, 0], metadata: { parity: i % 2 === 0 ? 'even' : 'odd', i } })));
    await col.compact();
    await col.upsert([{ id: 'd1', vector: [0.5, 0], metadata: { parity: 'even', i: 1 } }]);
    const hits = await col.query({ vector: [0, 0], topK: 3, filter: { parity: 'even' } });
    expect(hits.map((h) => h.id)).toEqual(['d0', 'd1', 'd2']);
    const ranged = await col.query({ vector: [0, 0], topK: 10, filter: { i: { $gte: 9 } } });
    expect(ranged.map((h) => h.id)).toEqual(['d9', 'd10', 'd11']);
    expect(await col.query({ vector: [0, 0], topK: 10, filter: { parity: 'none' } })).toEqual([]);
  });

  it('topK above the number of documents returns them all; an empty collection returns nothing', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 2, metric: 'dot' });
    expect(await col.query({ vector: [1, 1], topK: 1000 })).toEqual([]);
    await col.upsert([{ id: 'a', vector: [1, 0] }, { id: 'b', vector: [0, 2] }]);
    expect((await col.query({ vector: [1, 1], topK: 1000 })).map((h) => h.id)).toEqual(['b', 'a']);
  });

  it('querySync answers like query', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 2, metric: 'l2' });
    await col.upsert([{ id: 'a', vector: [1, 0] }, { id: 'b', vector: [0, 2] }]);
    expect(col.querySync({ vector: [0, 0], topK: 2 })).toEqual(await col.query({ vector: [0, 0], topK: 2 }));
  });

  // Cosine needs a direction: a vector shorter than MIN_COSINE_NORM (1e-15) is rejected; a
  // short one above it keeps exact, finite distances through the memtable, a flush and the graph.
  it('a cosine vector below the minimum norm is rejected; a short one above it stays finite after flush', async () => {
    const col = await db.createCollection({ name: 'c', dimension: 3, metric: 'cosine' });
    await expect(col.upsert([{ id: 'tiny', vector: [1e-40, 0, 0] }])).rejects.toMatchObject({ code: 'INVALID_VECTOR' });
    await col.upsert([
      { id: 'short', vector: [1e-12, 0, 0] },
      { id: 'other', vector: [0, 1, 0] },
    ]);
    const before = await col.query({ vector: [1, 0, 0], topK: 2 });
    expect(before.map((h) => h.id)).toEqual(['short', 'other']);
    expect(before[0]?.distance).toBeCloseTo(0, 5);
    await col.flush();
    const after = await col.query({ vector: [1e-13, 0, 0], topK: 2 });
    expect(after.map((h) => h.id)).toEqual(['short', 'other']);
    expect(after[0]?.distance).toBeCloseTo(0, 5);
    expect(after[1]?.distance).toBeCloseTo(1, 5);
  });
});

describe('concurrency', () => {
  const DIM = 4;
  const POOL = Array.from({ length: 40 }, (_, i) => `p${i}`);

  it.each([1, 2, 3])('20 concurrent upsert batches, queries and deletes end in the sequential state (seed %i)', async (seed) => {
    const rand = seededRandom(seed);
    const vec = (): number[] => f32(Array.from({ length: DIM }, () => Math.round(rand() * 200 - 100) / 10 || 0.1));
    const db = await open({
      dataDir: tempDir(),
      hnsw: { threshold: 16, quantization: 'f32' },
      compaction: { thresholdOps: 20, enableBackground: true, idleFlushMs: 5 },
    });
    const col = await db.createCollection({ name: 'c', dimension: DIM, metric: 'l2', index: { efSearch: 200, quantization: 'f32' } });

    // The sequential model: writes applied in the order they were issued.
    const model = new Map<string, Document>();
    const seedDocs = POOL.map((id) => ({ id, vector: vec(), metadata: { batch: -1 } }));
    await col.upsert(seedDocs);
    for (const d of seedDocs) model.set(d.id, { id: d.id, vector: d.vector, metadata: d.metadata, text: null });

    const pending: Promise<void>[] = [];
    const expectedDeleted: number[] = [];
    const actualDeleted: Promise<number>[] = [];
    for (let b = 0; b < 20; b++) {
      const marker = { id: `m${b}`, vector: vec(), metadata: { batch: b, marker: true } };
      const docs = [marker, ...Array.from({ length: 6 }, () => ({ id: POOL[Math.floor(rand() * POOL.length)]!, vector: vec(), metadata: { batch: b } }))];
      const write = col.upsert(docs);
      for (const d of docs) model.set(d.id, { id: d.id, vector: d.vector, metadata: d.metadata, text: null });
      // A read issued after the write resolved must see it, whatever flushes run meanwhile.
      pending.push(
        write.then(async ({ upserted }) => {
          expect(upserted).toBe(docs.length);
          const hits = await col.query({ vector: marker.vector, topK: 1, filter: { marker: true, batch: b } });
          expect(hits.map((h) => [h.id, h.distance])).toEqual([[marker.id, 0]]);
          expect((await col.get([marker.id]))[0]?.vector).toEqual(marker.vector);
        }),
      );
      // Queries racing with writes: well-formed answers, never an error.
      pending.push(
        col.query({ vector: vec(), topK: 10 }).then((hits) => {
          expect(hits.length).toBe(10);
          expect(new Set(hits.map((h) => h.id)).size).toBe(10);
          expectBestFirst(hits);
        }),
      );
      if (b % 2 === 1) {
        const ids = Array.from({ length: 4 }, () => POOL[Math.floor(rand() * POOL.length)]!);
        // Delete by ids takes effect in issue order: its count is what the model holds right now.
        expectedDeleted.push(new Set(ids.filter((id) => model.has(id))).size);
        for (const id of ids) model.delete(id);
        actualDeleted.push(col.delete({ ids }).then((r) => r.deleted));
      }
      // Explicit maintenance in the middle of the traffic, plus the background work it triggers.
      if (b === 7) pending.push(col.flush());
      if (b === 14) pending.push(col.compact());
      // Now and then yield to the event loop (without awaiting the calls in flight) so background
      // flushes, merges and index builds run while writes and queries are pending.
      if (rand() < 0.4) await new Promise((r) => setTimeout(r, Math.floor(rand() * 8)));
    }
    await Promise.all(pending);
    // The flush and the compaction (with its index build) ran while calls were in flight.
    expect(col.stats().merges).toBeGreaterThanOrEqual(1);
    expect(col.stats().flushes).toBeGreaterThanOrEqual(2);
    expect(col.stats().indexBuilds).toBeGreaterThanOrEqual(1);
    expect(await Promise.all(actualDeleted)).toEqual(expectedDeleted);

    const ids = [...POOL, ...Array.from({ length: 20 }, (_, b) => `m${b}`)];
    const check = async (c: Collection): Promise<void> => {
      expect(await c.count()).toBe(model.size);
      expect(await c.get(ids)).toEqual(ids.map((id) => model.get(id) ?? null));
      const all = await c.query({ vector: [0, 0, 0, 0], topK: 1000, includeVector: true });
      expect(all.map((h) => h.id).sort()).toEqual([...model.keys()].sort());
      for (const h of all) expect(h.vector).toEqual(model.get(h.id)?.vector);
    };
    await check(col);
    await col.waitForIndexing();
    await check(col);
    await db.close();
    const again = await open({ dataDir: db.dataDir });
    await check(await again.getCollection('c'));
  });

  // Delete by filter picks its targets when called, from writes already applied, but takes effect
  // later, after the writes queued before it. So it can delete a document whose newer version,
  // written before the delete was issued, no longer matches: no serial order of the two calls
  // deletes it (upsert-then-delete: g is 2, no match; delete-then-upsert: the upsert recreates it).

  it('delete by filter never removes a document whose pending newer version does not match', async () => {
    const db = await open({ dataDir: tempDir(), ...SMALL });
    const col = await db.createCollection({ name: 'c', dimension: 2 });
    await col.upsert([{ id: 'y', vector: [1, 0], metadata: { g: 1 } }]);
    const write = col.upsert([{ id: 'y', vector: [1, 0], metadata: { g: 2 } }]);
    const del = col.delete({ filter: { g: 1 } });
    await Promise.all([write, del]);
    expect(await col.get(['y'])).toEqual([{ id: 'y', vector: [1, 0], metadata: { g: 2 }, text: null }]);
    expect(await del).toMatchObject({ deleted: 0 });
  });

  // The mirror case of the bug above: the delete is issued after the upsert (and resolves after it
  // was applied) yet misses the document it matches. Every other write takes effect in issue
  // order (LSN order); delete by filter does not. Same fix as above.
  it('delete by filter takes effect in issue order: it removes a matching document upserted just before it', async () => {
    const db = await open({ dataDir: tempDir(), ...SMALL });
    const col = await db.createCollection({ name: 'c', dimension: 2 });
    const write = col.upsert([{ id: 'z', vector: [1, 0], metadata: { g: 1 } }]);
    const del = col.delete({ filter: { g: 1 } });
    await Promise.all([write, del]);
    // Issue order is upsert then delete, and the delete resolves after the upsert was applied.
    expect(await col.get(['z'])).toEqual([null]);
    expect(await del).toMatchObject({ deleted: 1 });
  });
});
