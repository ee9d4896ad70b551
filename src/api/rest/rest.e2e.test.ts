import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { http, startServerProcess, type ServerProcess } from '../../test-support/server-process.js';

// The REST face end to end: the built CLI on a free loopback port, real sockets, the documented
// contract (BRIEF.md, "REST contract") checked code by code and value by value.

/** One answer, its body left `unknown` so each assertion says what shape it expects. */
interface Answer {
  status: number;
  body: unknown;
  text: string;
  headers: Headers;
}

interface CollectionView {
  collection_id: string;
  name: string;
  tenant: string;
  database: string;
  dimension: number;
  metric: string;
  document_count: number;
  created_at: string;
  tiering_policy: string;
}
interface Match {
  doc_id: string;
  external_id: string;
  score: number;
  distance: number;
  metadata?: Record<string, unknown> | null;
  vector?: number[];
}
interface QueryAnswer {
  matches: Match[];
  latency_ms: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const JSON_HEADERS = { 'content-type': 'application/json' };

function client(server: () => ServerProcess) {
  return (method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> => http(server().restUrl, method, p, body, headers);
}

/** The answer is exactly `{"error":{"code","message","details"}}` with this status and code. */
function expectError(res: Answer, status: number, code: string): void {
  expect({ status: res.status, body: res.body }).toEqual({ status, body: { error: { code, message: expect.any(String) as string, details: expect.any(Object) as object } } });
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect((res.body as { error: { message: string } }).error.message.length).toBeGreaterThan(0);
}

/** Sum of a Prometheus counter's samples whose labels include all of `labels`. */
function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[3]);
  }
  return sum;
}

function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-rest-e2e-'));
}

/** Little-endian float32 bytes as base64, as a client in any language would send them. */
function base64Float32(values: number[]): string {
  const buf = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString('base64');
}

// "books": dimension 4, l2. Documents sit at distance 1..5 from the origin along one axis, so a
// query at the origin ranks them b1..b5 with distance exactly i and score 1 / (1 + i).
const BOOKS = [
  { doc_id: 'b1', vector: [1, 0, 0, 0], metadata: { genre: 'scifi', year: 1990, tags: ['classic'] } },
  { doc_id: 'b2', vector: [2, 0, 0, 0], metadata: { genre: 'fantasy', year: 2005 } },
  { doc_id: 'b3', vector: [3, 0, 0, 0], metadata: { genre: 'scifi', year: 2010, tags: ['award', 'classic'] } },
  { doc_id: 'b4', vector: [4, 0, 0, 0], metadata: { genre: 'horror', year: 2001 } },
  { doc_id: 'b5', vector: [5, 0, 0, 0], metadata: { genre: 'scifi', year: 2020, rating: 4.5 } },
];
const ORIGIN = [0, 0, 0, 0];
// A query vector no log line may ever contain (checked at the end of the first block).
const SECRET_VECTOR = [0.918273645, 0.918273645, 0.918273645, 0.918273645];

describe('REST collections, documents and queries (default tenant)', () => {
  let server: ServerProcess;
  let dir: string;
  const api = client(() => server);
  let books: CollectionView;

  beforeAll(async () => {
    dir = makeTempDir();
    server = await startServerProcess({ dataDir: dir, args: ['--log-level', 'debug'] });
    const created = await api('POST', '/api/v1/collections', { name: 'books', dimension: 4, metric: 'l2' });
    expect(created.status).toBe(201);
    books = created.body as CollectionView;
    const up = await api('POST', '/api/v1/collections/books/upsert', { documents: BOOKS });
    expect(up.status).toBe(200);
  });

  afterAll(async () => {
    if (server) expect(await server.stop('SIGTERM')).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('collections', () => {
    it('create answers 201 with the collection as stored: a UUID id, the name, dimension, metric, no documents', async () => {
      expect(books).toMatchObject({ name: 'books', tenant: 'default', database: 'default', dimension: 4, metric: 'l2', document_count: 0, tiering_policy: 'Memory' });
      expect(books.collection_id).toMatch(UUID);
      expect(Number.isNaN(Date.parse(books.created_at))).toBe(false);
      const cos = await api('POST', '/api/v1/collections', { name: 'defaults.metric', dimension: 3 });
      expect(cos.status).toBe(201);
      expect(cos.body).toMatchObject({ name: 'defaults.metric', dimension: 3, metric: 'cosine' });
    });

    it('list holds every collection with its document count', async () => {
      const res = await api('GET', '/api/v1/collections');
      expect(res.status).toBe(200);
      const list = (res.body as { collections: CollectionView[] }).collections;
      const mine = list.find((c) => c.name === 'books');
      expect(mine).toMatchObject({ collection_id: books.collection_id, dimension: 4, metric: 'l2', document_count: 5, tiering_policy: 'Memory', created_at: books.created_at });
    });

    it('get answers the same collection by name and by collection_id (any case)', async () => {
      const byName = await api('GET', '/api/v1/collections/books');
      const byId = await api('GET', `/api/v1/collections/${books.collection_id}`);
      const byUpperId = await api('GET', `/api/v1/collections/${books.collection_id.toUpperCase()}`);
      for (const res of [byName, byId, byUpperId]) {
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ collection_id: books.collection_id, name: 'books', dimension: 4, document_count: 5 });
      }
    });

    it('delete answers 204, after which the collection is gone from get, list and its routes', async () => {
      const made = await api('POST', '/api/v1/collections', { name: 'doomed', dimension: 2 });
      expect(made.status).toBe(201);
      const id = (made.body as CollectionView).collection_id;
      expect((await api('POST', '/api/v1/collections/doomed/insert', { vector: [1, 2] })).status).toBe(200);
      const del = await api('DELETE', `/api/v1/collections/${id}`);
      expect(del.status).toBe(204);
      expect(del.text).toBe('');
      expectError(await api('GET', '/api/v1/collections/doomed'), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('GET', `/api/v1/collections/${id}`), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('POST', '/api/v1/collections/doomed/query', { query_vector: [1, 2] }), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('DELETE', '/api/v1/collections/doomed'), 404, 'COLLECTION_NOT_FOUND');
      const names = ((await api('GET', '/api/v1/collections')).body as { collections: CollectionView[] }).collections.map((c) => c.name);
      expect(names).not.toContain('doomed');
      // The name is free again, for a fresh, empty collection.
      const again = await api('POST', '/api/v1/collections', { name: 'doomed', dimension: 2 });
      expect(again.status).toBe(201);
      expect(again.body).toMatchObject({ document_count: 0 });
      expect((again.body as CollectionView).collection_id).not.toBe(id);
    });
  });

  describe('documents', () => {
    it('insert without doc_id makes a UUID; with doc_id keeps it; both are readable back', async () => {
      await api('POST', '/api/v1/collections', { name: 'docs', dimension: 3, metric: 'l2' });
      const made = await api('POST', '/api/v1/collections/docs/insert', { vector: [1, 2, 3], metadata: { k: 'v' }, text: 'hello' });
      expect(made.status).toBe(200);
      const { doc_id: madeId, latency_ms } = made.body as { doc_id: string; latency_ms: number };
      expect(madeId).toMatch(UUID);
      expect(latency_ms).toBeGreaterThanOrEqual(0);
      const named = await api('POST', '/api/v1/collections/docs/insert', { doc_id: 'mine', vector: [3, 2, 1] });
      expect(named.status).toBe(200);
      expect(named.body).toMatchObject({ doc_id: 'mine' });

      const got = await api('GET', `/api/v1/collections/docs/docs/${madeId}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ doc_id: madeId, vector: [1, 2, 3], metadata: { k: 'v' }, text: 'hello' });
      expect((await api('GET', '/api/v1/collections/docs/docs/mine')).body).toMatchObject({ doc_id: 'mine', vector: [3, 2, 1] });
      // Two inserts without an id never collide.
      const second = await api('POST', '/api/v1/collections/docs/insert', { vector: [1, 2, 3] });
      expect((second.body as { doc_id: string }).doc_id).toMatch(UUID);
      expect((second.body as { doc_id: string }).doc_id).not.toBe(madeId);
    });

    it('upsert takes number arrays and base64 little-endian float32, answers doc_ids and an lsn, and replaces by id', async () => {
      await api('POST', '/api/v1/collections', { name: 'mixed', dimension: 4, metric: 'l2' });
      const b64 = [0.5, -1.25, 3, 0.125];
      const res = await api('POST', '/api/v1/collections/mixed/upsert', {
        documents: [
          { doc_id: 'arr', vector: [1, 2, 3, 4], metadata: { n: 1 } },
          { doc_id: 'b64', vector: base64Float32(b64), metadata: { n: 2 } },
          { vector: [4, 3, 2, 1] },
        ],
      });
      expect(res.status).toBe(200);
      const up = res.body as { upserted: number; doc_ids: string[]; lsn: number; latency_ms: number };
      expect(up.upserted).toBe(3);
      expect(up.doc_ids.slice(0, 2)).toEqual(['arr', 'b64']);
      expect(up.doc_ids[2]).toMatch(UUID);
      expect(up.lsn).toBeGreaterThan(0);

      expect((await api('GET', '/api/v1/collections/mixed/docs/b64')).body).toMatchObject({ doc_id: 'b64', vector: b64, metadata: { n: 2 } });
      // A base64 query vector finds the base64 document exactly.
      const q = await api('POST', '/api/v1/collections/mixed/query', { query_vector: base64Float32(b64), top_k: 1 });
      expect((q.body as QueryAnswer).matches).toMatchObject([{ doc_id: 'b64', distance: 0 }]);

      const again = await api('POST', '/api/v1/collections/mixed/upsert', { documents: [{ doc_id: 'arr', vector: [9, 9, 9, 9], metadata: { n: 10 } }] });
      expect(again.status).toBe(200);
      expect((again.body as { lsn: number }).lsn).toBeGreaterThan(up.lsn);
      expect((await api('GET', '/api/v1/collections/mixed/docs/arr')).body).toMatchObject({ vector: [9, 9, 9, 9], metadata: { n: 10 } });
      expect((await api('GET', '/api/v1/collections/mixed')).body).toMatchObject({ document_count: 3 });
    });

    it('delete of one document answers 204 and the document is gone (deleting it again is still 204)', async () => {
      await api('POST', '/api/v1/collections', { name: 'del1', dimension: 2 });
      await api('POST', '/api/v1/collections/del1/upsert', { documents: [{ doc_id: 'x', vector: [1, 0] }, { doc_id: 'y', vector: [0, 1] }] });
      const del = await api('DELETE', '/api/v1/collections/del1/docs/x');
      expect(del.status).toBe(204);
      expectError(await api('GET', '/api/v1/collections/del1/docs/x'), 404, 'DOCUMENT_NOT_FOUND');
      expect((await api('DELETE', '/api/v1/collections/del1/docs/x')).status).toBe(204);
      expect((await api('GET', '/api/v1/collections/del1/docs/y')).status).toBe(200);
      expect((await api('GET', '/api/v1/collections/del1')).body).toMatchObject({ document_count: 1 });
    });

    it('delete by doc_ids and by filter answers how many were deleted', async () => {
      await api('POST', '/api/v1/collections', { name: 'del2', dimension: 2 });
      const documents = Array.from({ length: 10 }, (_, i) => ({ doc_id: `d${i}`, vector: [1, i + 1], metadata: { i, parity: i % 2 === 0 ? 'even' : 'odd' } }));
      await api('POST', '/api/v1/collections/del2/upsert', { documents });
      const byIds = await api('POST', '/api/v1/collections/del2/delete', { doc_ids: ['d0', 'd1', 'missing'] });
      expect(byIds.status).toBe(200);
      expect(byIds.body).toMatchObject({ deleted: 2 });
      // d2, d4, d6, d8 are even; d0 is already gone.
      const byFilter = await api('POST', '/api/v1/collections/del2/delete', { filter: { parity: { $eq: 'even' } } });
      expect(byFilter.body).toMatchObject({ deleted: 4 });
      // Both: the ids narrowed by the filter (d3 and d5 are odd with i < 6; d9 is odd but i >= 6).
      const both = await api('POST', '/api/v1/collections/del2/delete', { doc_ids: ['d3', 'd5', 'd9'], filter: { i: { $lt: 6 } } });
      expect(both.body).toMatchObject({ deleted: 2 });
      const again = await api('POST', '/api/v1/collections/del2/delete', { doc_ids: ['d3'] });
      expect(again.body).toMatchObject({ deleted: 0 });
      expect((await api('GET', '/api/v1/collections/del2')).body).toMatchObject({ document_count: 2 });
      for (const [id, status] of [['d7', 200], ['d9', 200], ['d3', 404], ['d8', 404]] as const) expect((await api('GET', `/api/v1/collections/del2/docs/${id}`)).status).toBe(status);
      expectError(await api('POST', '/api/v1/collections/del2/delete', {}), 400, 'INVALID_ARGUMENT');
    });
  });

  describe('queries', () => {
    const query = async (body: Record<string, unknown>): Promise<Match[]> => {
      const res = await api('POST', '/api/v1/collections/books/query', body);
      expect(res.status, res.text).toBe(200);
      return (res.body as QueryAnswer).matches;
    };

    it('ranks by distance (smaller is closer) and score (larger is closer), exactly, metadata included by default', async () => {
      const res = await api('POST', '/api/v1/collections/books/query', { query_vector: ORIGIN, top_k: 5 });
      expect(res.status).toBe(200);
      const { matches, latency_ms } = res.body as QueryAnswer;
      expect(latency_ms).toBeGreaterThanOrEqual(0);
      expect(matches.map((m) => m.doc_id)).toEqual(['b1', 'b2', 'b3', 'b4', 'b5']);
      matches.forEach((m, i) => {
        expect(m.external_id).toBe(m.doc_id);
        expect(m.distance).toBeCloseTo(i + 1, 5);
        expect(m.score).toBeCloseTo(1 / (2 + i), 5);
        expect(m.metadata).toEqual(BOOKS[i]!.metadata);
        expect(m).not.toHaveProperty('vector');
      });
      // From the other end the order reverses.
      expect((await query({ query_vector: [5, 0, 0, 0], top_k: 2 })).map((m) => m.doc_id)).toEqual(['b5', 'b4']);
    });

    it('top_k bounds the answer; top_k defaults to 10', async () => {
      expect((await query({ query_vector: ORIGIN, top_k: 2 })).map((m) => m.doc_id)).toEqual(['b1', 'b2']);
      expect(await query({ query_vector: ORIGIN })).toHaveLength(5);
    });

    it('include_vector adds the vector; include_metadata false drops the metadata', async () => {
      const [withVector] = await query({ query_vector: ORIGIN, top_k: 1, include_vector: true });
      expect(withVector).toMatchObject({ doc_id: 'b1', vector: [1, 0, 0, 0], metadata: BOOKS[0]!.metadata });
      const [bare] = await query({ query_vector: ORIGIN, top_k: 1, include_metadata: false });
      expect(bare!.doc_id).toBe('b1');
      expect(bare).not.toHaveProperty('metadata');
      expect(bare).not.toHaveProperty('vector');
    });

    it.each([
      ['$eq', { genre: { $eq: 'scifi' } }, ['b1', 'b3', 'b5']],
      ['implicit $eq', { genre: 'fantasy' }, ['b2']],
      ['$ne', { genre: { $ne: 'scifi' } }, ['b2', 'b4']],
      ['$in', { genre: { $in: ['fantasy', 'horror'] } }, ['b2', 'b4']],
      ['$nin', { genre: { $nin: ['scifi', 'horror'] } }, ['b2']],
      ['$gte', { year: { $gte: 2005 } }, ['b2', 'b3', 'b5']],
      ['$gt and $lt on one field', { year: { $gt: 1990, $lt: 2010 } }, ['b2', 'b4']],
      ['$lte', { year: { $lte: 2001 } }, ['b1', 'b4']],
      ['$exists', { rating: { $exists: true } }, ['b5']],
      ['array field $eq matches any element', { tags: 'classic' }, ['b1', 'b3']],
      ['$or', { $or: [{ genre: 'horror' }, { year: { $lt: 2000 } }] }, ['b1', 'b4']],
      ['$and', { $and: [{ genre: 'scifi' }, { year: { $gt: 1995 } }] }, ['b3', 'b5']],
      ['$not (top level)', { $not: { genre: 'scifi' } }, ['b2', 'b4']],
      ['$not (on a field)', { year: { $not: { $gte: 2005 } } }, ['b1', 'b4']],
      ['implicit AND of fields and $or', { genre: 'scifi', $or: [{ year: 1990 }, { year: 2020 }] }, ['b1', 'b5']],
      ['nothing matches', { genre: 'romance' }, []],
      ['empty filter matches all', {}, ['b1', 'b2', 'b3', 'b4', 'b5']],
    ])('filter %s returns exactly the matching documents, nearest first', async (_name, filter, expected) => {
      const matches = await query({ query_vector: ORIGIN, top_k: 10, filter });
      expect(matches.map((m) => m.doc_id)).toEqual(expected);
      for (const m of matches) expect(m.distance).toBeCloseTo(Number(m.doc_id.slice(1)), 5);
    });

    it('a filter narrows before top_k: the nearest matching documents, not the nearest documents filtered', async () => {
      expect((await query({ query_vector: ORIGIN, top_k: 1, filter: { year: { $gte: 2010 } } })).map((m) => m.doc_id)).toEqual(['b3']);
    });

    it('cosine and dot collections also answer larger-score-closer, smaller-distance-closer', async () => {
      for (const metric of ['cosine', 'dot'] as const) {
        await api('POST', '/api/v1/collections', { name: `m-${metric}`, dimension: 2, metric });
        await api('POST', `/api/v1/collections/m-${metric}/upsert`, { documents: [{ doc_id: 'far', vector: [0, 1] }, { doc_id: 'near', vector: [1, 0] }, { doc_id: 'mid', vector: [0.6, 0.8] }] });
        const res = await api('POST', `/api/v1/collections/m-${metric}/query`, { query_vector: [1, 0], top_k: 3 });
        const matches = (res.body as QueryAnswer).matches;
        expect(matches.map((m) => m.doc_id)).toEqual(['near', 'mid', 'far']);
        // Both metrics on unit vectors: score = cos, distance = 1 - cos.
        expect(matches.map((m) => m.score)).toEqual([expect.closeTo(1, 5), expect.closeTo(0.6, 5), expect.closeTo(0, 5)]);
        expect(matches.map((m) => m.distance)).toEqual([expect.closeTo(0, 5), expect.closeTo(0.4, 5), expect.closeTo(1, 5)]);
      }
    });
  });

  describe('tenants and databases', () => {
    const scoped = '/api/v1/tenants/acme/databases/prod/collections';
    let tenantBooks: CollectionView;

    beforeAll(async () => {
      const t = await api('POST', '/api/v1/tenants', { name: 'acme' });
      expect(t.status).toBe(201);
      expect(t.body).toMatchObject({ name: 'acme' });
      const d = await api('POST', '/api/v1/tenants/acme/databases', { name: 'prod' });
      expect(d.status).toBe(201);
      expect(d.body).toMatchObject({ tenant: 'acme', name: 'prod' });
      const c = await api('POST', scoped, { name: 'books', dimension: 4, metric: 'l2' });
      expect(c.status).toBe(201);
      tenantBooks = c.body as CollectionView;
      const up = await api('POST', `${scoped}/books/upsert`, { documents: [{ doc_id: 't1', vector: [1, 0, 0, 0], metadata: { owner: 'acme' } }] });
      expect(up.status).toBe(200);
    });

    it('the same collection name in another tenant is another collection with its own documents', async () => {
      expect(tenantBooks).toMatchObject({ name: 'books', tenant: 'acme', database: 'prod', document_count: 0 });
      expect(tenantBooks.collection_id).not.toBe(books.collection_id);
      const q = await api('POST', `${scoped}/books/query`, { query_vector: ORIGIN, top_k: 10 });
      expect((q.body as QueryAnswer).matches.map((m) => m.doc_id)).toEqual(['t1']);
      const qDefault = await api('POST', '/api/v1/collections/books/query', { query_vector: ORIGIN, top_k: 10 });
      expect((qDefault.body as QueryAnswer).matches.map((m) => m.doc_id)).toEqual(['b1', 'b2', 'b3', 'b4', 'b5']);
      expect((await api('GET', `${scoped}/books/docs/t1`)).body).toMatchObject({ doc_id: 't1', metadata: { owner: 'acme' } });
      expectError(await api('GET', '/api/v1/collections/books/docs/t1'), 404, 'DOCUMENT_NOT_FOUND');
      expectError(await api('GET', `${scoped}/books/docs/b1`), 404, 'DOCUMENT_NOT_FOUND');
      const list = await api('GET', scoped);
      expect((list.body as { collections: CollectionView[] }).collections).toEqual([expect.objectContaining({ name: 'books', collection_id: tenantBooks.collection_id, document_count: 1 })]);
      expect((await api('GET', `${scoped}/${tenantBooks.collection_id}`)).body).toMatchObject({ name: 'books', tenant: 'acme', document_count: 1 });
    });

    it("a collection_id from another tenant answers 404 COLLECTION_NOT_FOUND, in both directions", async () => {
      expectError(await api('GET', `/api/v1/collections/${tenantBooks.collection_id}`), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('POST', `/api/v1/collections/${tenantBooks.collection_id}/query`, { query_vector: ORIGIN }), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('GET', `${scoped}/${books.collection_id}`), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('DELETE', `${scoped}/${books.collection_id}`), 404, 'COLLECTION_NOT_FOUND');
      expect((await api('GET', `/api/v1/collections/${books.collection_id}`)).status).toBe(200);
    });

    it('tenants and databases are listed; unknown ones and duplicates answer their codes', async () => {
      expect(((await api('GET', '/api/v1/tenants')).body as { tenants: { name: string }[] }).tenants.map((t) => t.name)).toEqual(expect.arrayContaining(['default', 'acme']));
      expect(((await api('GET', '/api/v1/tenants/acme/databases')).body as { databases: { name: string }[] }).databases.map((d) => d.name)).toEqual(['prod']);
      expectError(await api('GET', '/api/v1/tenants/nobody/databases/prod/collections'), 404, 'TENANT_NOT_FOUND');
      expectError(await api('GET', '/api/v1/tenants/acme/databases/nothing/collections'), 404, 'DATABASE_NOT_FOUND');
      expectError(await api('POST', '/api/v1/tenants', { name: 'acme' }), 409, 'TENANT_ALREADY_EXISTS');
      expectError(await api('POST', '/api/v1/tenants/acme/databases', { name: 'prod' }), 409, 'DATABASE_ALREADY_EXISTS');
      expectError(await api('POST', scoped, { name: 'books', dimension: 4 }), 409, 'COLLECTION_ALREADY_EXISTS');
      expectError(await api('DELETE', '/api/v1/tenants/acme/databases/prod'), 409, 'DATABASE_NOT_EMPTY');
    });
  });

  describe('errors: each class with its status and code, always {"error":{"code","message","details"}}', () => {
    it('404 COLLECTION_NOT_FOUND, DOCUMENT_NOT_FOUND and ROUTE_NOT_FOUND', async () => {
      expectError(await api('GET', '/api/v1/collections/nope'), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('POST', '/api/v1/collections/nope/insert', { vector: [1, 2, 3, 4] }), 404, 'COLLECTION_NOT_FOUND');
      expectError(await api('GET', '/api/v1/collections/00000000-0000-4000-8000-000000000000'), 404, 'COLLECTION_NOT_FOUND');
      const doc = await api('GET', '/api/v1/collections/books/docs/nope');
      expectError(doc, 404, 'DOCUMENT_NOT_FOUND');
      expect(doc.body).toMatchObject({ error: { details: { doc_id: 'nope' } } });
      for (const [method, p] of [['GET', '/api/v1/nope'], ['GET', '/'], ['PUT', '/api/v1/collections'], ['PATCH', '/api/v1/collections/books'], ['POST', '/api/v2/collections']] as const) {
        const res = await api(method, p);
        expectError(res, 404, 'ROUTE_NOT_FOUND');
        expect(res.body).toMatchObject({ error: { details: { method, url: p } } });
      }
    });

    it('409 COLLECTION_ALREADY_EXISTS', async () => {
      const res = await api('POST', '/api/v1/collections', { name: 'books', dimension: 8 });
      expectError(res, 409, 'COLLECTION_ALREADY_EXISTS');
      expect((await api('GET', '/api/v1/collections/books')).body).toMatchObject({ dimension: 4, document_count: 5 });
    });

    it('400 DIMENSION_MISMATCH on insert, upsert (array or base64) and query', async () => {
      expectError(await api('POST', '/api/v1/collections/books/insert', { vector: [1, 2, 3] }), 400, 'DIMENSION_MISMATCH');
      expectError(await api('POST', '/api/v1/collections/books/upsert', { documents: [{ doc_id: 'ok', vector: [1, 2, 3, 4] }, { doc_id: 'short', vector: base64Float32([1, 2, 3]) }] }), 400, 'DIMENSION_MISMATCH');
      expectError(await api('POST', '/api/v1/collections/books/query', { query_vector: [1, 2, 3, 4, 5] }), 400, 'DIMENSION_MISMATCH');
      // The failed batch is atomic: its valid document was not written either.
      expectError(await api('GET', '/api/v1/collections/books/docs/ok'), 404, 'DOCUMENT_NOT_FOUND');
    });

    it('400 MALFORMED_JSON for broken, truncated and empty JSON bodies', async () => {
      for (const text of ['{"name":', '{"name": "x", "dimension": 4', '{name: "x"}', "{'a': 1}", '[1, 2', '{"a":1}}', 'nul']) {
        expectError(await api('POST', '/api/v1/collections', text, JSON_HEADERS), 400, 'MALFORMED_JSON');
      }
      expectError(await api('POST', '/api/v1/collections/books/query', '', JSON_HEADERS), 400, 'MALFORMED_JSON');
    });

    it('a __proto__ key is refused by name; a DELETE sent with the JSON content type and no body is fine', async () => {
      const poisoned = await api('POST', '/api/v1/collections', '{"name":"p1","dimension":2,"__proto__":{"polluted":true}}', JSON_HEADERS);
      expectError(poisoned, 400, 'INVALID_ARGUMENT');
      expect((poisoned.body as { error: { details: unknown } }).error.details).toEqual({ reason: 'forbidden_key' });
      const res = await api('DELETE', '/api/v1/collections/books/docs/never-there', '', JSON_HEADERS);
      expect(res.status).toBe(204);
    });

    it('400 INVALID_TOP_K for 0, above the limit, fractional and non-numeric top_k', async () => {
      for (const top_k of [0, -1, 1001, 2.5, '10']) expectError(await api('POST', '/api/v1/collections/books/query', { query_vector: ORIGIN, top_k }), 400, 'INVALID_TOP_K');
    });

    it('400 INVALID_FILTER for unknown operators and malformed operands', async () => {
      for (const filter of [{ genre: { $regex: 'sci' } }, { year: { $gt: true } }, { genre: { $in: 'scifi' } }, { $or: [] }, { $and: {} }, { genre: { $exists: 'yes' } }, { genre: { a: 1 } }]) {
        const res = await api('POST', '/api/v1/collections/books/query', { query_vector: ORIGIN, filter });
        expectError(res, 400, 'INVALID_FILTER');
      }
      expectError(await api('POST', '/api/v1/collections/books/delete', { filter: { $nope: 1 } }), 400, 'INVALID_FILTER');
      expect((await api('GET', '/api/v1/collections/books')).body).toMatchObject({ document_count: 5 });
      // A filter that is not an object.
      expectError(await api('POST', '/api/v1/collections/books/query', { query_vector: ORIGIN, filter: [] }), 400, 'INVALID_FILTER');
    });

    it('400 INVALID_NAME for collection, tenant and database names outside [A-Za-z0-9_.-]{1,255}', async () => {
      for (const name of ['has space', 'slash/name', 'ünïcode', '', 'x'.repeat(256), '..']) {
        expectError(await api('POST', '/api/v1/collections', { name, dimension: 4 }), 400, 'INVALID_NAME');
      }
      expectError(await api('POST', '/api/v1/tenants', { name: 'bad name' }), 400, 'INVALID_NAME');
      expectError(await api('POST', '/api/v1/tenants/acme/databases', { name: 'bad*name' }), 400, 'INVALID_NAME');
      expectError(await api('GET', '/api/v1/collections/bad%20name'), 400, 'INVALID_NAME');
    });

    it('415 UNSUPPORTED_MEDIA_TYPE for bodies that are not application/json', async () => {
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'application/octet-stream', 'multipart/form-data; boundary=x']) {
        const body = type === 'text/plain' ? JSON.stringify({ name: 'plain', dimension: 4 }) : 'name=plain&dimension=4';
        expectError(await api('POST', '/api/v1/collections', body, { 'content-type': type }), 415, 'UNSUPPORTED_MEDIA_TYPE');
      }
      expectError(await api('POST', '/api/v1/collections/books/query', JSON.stringify({ query_vector: ORIGIN }), { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
      expectError(await api('GET', '/api/v1/collections/plain'), 404, 'COLLECTION_NOT_FOUND');
      // application/json with a charset is JSON.
      expect((await api('POST', '/api/v1/collections/books/query', JSON.stringify({ query_vector: ORIGIN, top_k: 1 }), { 'content-type': 'application/json; charset=utf-8' })).status).toBe(200);
    });

    it('422 TIER_UNAVAILABLE for MemoryS3 and S3Only without an object store; Memory is accepted', async () => {
      for (const tiering_policy of ['MemoryS3', 'S3Only']) {
        const res = await api('POST', '/api/v1/collections', { name: `tiered-${tiering_policy}`, dimension: 4, tiering_policy });
        expectError(res, 422, 'TIER_UNAVAILABLE');
        expect(res.body).toMatchObject({ error: { details: { tieringPolicy: tiering_policy } } });
        expectError(await api('GET', `/api/v1/collections/tiered-${tiering_policy}`), 404, 'COLLECTION_NOT_FOUND');
        expectError(await api('POST', '/api/v1/collections/books/tier', { tiering_policy }), 422, 'TIER_UNAVAILABLE');
      }
      const memory = await api('POST', '/api/v1/collections', { name: 'tiered-memory', dimension: 4, tiering_policy: 'Memory' });
      expect(memory.status).toBe(201);
      expect(memory.body).toMatchObject({ tiering_policy: 'Memory' });
      const tier = await api('GET', '/api/v1/collections/books/tier');
      expect(tier.status).toBe(200);
      expect(tier.body).toMatchObject({ collection_id: books.collection_id, tiering_policy: 'Memory' });
    });

    it('400 with a specific code for other schema violations: dimension, metric, vector, unknown fields', async () => {
      expectError(await api('POST', '/api/v1/collections', { name: 'd0', dimension: 0 }), 400, 'INVALID_DIMENSION');
      expectError(await api('POST', '/api/v1/collections', { name: 'd0', dimension: 4097 }), 400, 'INVALID_DIMENSION');
      expectError(await api('POST', '/api/v1/collections', { name: 'd0', dimension: 4, metric: 'manhattan' }), 400, 'INVALID_METRIC');
      expectError(await api('POST', '/api/v1/collections', { name: 'd0', dimension: 4, index: { m: 1 } }), 400, 'INVALID_INDEX_PARAMS');
      expectError(await api('POST', '/api/v1/collections/books/insert', { vector: ['a', 'b', 'c', 'd'] }), 400, 'INVALID_VECTOR');
      expectError(await api('POST', '/api/v1/collections/books/query', { query_vector: ['a', 'b', 'c', 'd'] }), 400, 'INVALID_VECTOR');
      expectError(await api('POST', '/api/v1/collections/books/query', { query_vector: 'not base64!' }), 400, 'INVALID_VECTOR');
      expectError(await api('POST', '/api/v1/collections', { name: 'd0', dimension: 4, colour: 'red' }), 400, 'INVALID_ARGUMENT');
      expectError(await api('POST', '/api/v1/collections/books/query', {}), 400, 'INVALID_ARGUMENT');
      expectError(await api('GET', '/api/v1/collections/d0'), 404, 'COLLECTION_NOT_FOUND');
    });
  });

  describe('health, metrics, OpenAPI, request ids and logs', () => {
    it('/health reports status, version, uptime and each component with a status and message', async () => {
      const res = await api('GET', '/health');
      expect(res.status).toBe(200);
      const component = { status: 'healthy', message: expect.any(String) as string };
      expect(res.body).toEqual({ status: 'healthy', version: expect.stringMatching(/^\d+\.\d+\.\d+/) as string, uptime_seconds: expect.any(Number) as number, components: { catalog: component, wal: component, storage: component, index: component } });
      expect((res.body as { uptime_seconds: number }).uptime_seconds).toBeGreaterThanOrEqual(0);
    });

    it('/health/live and /health/ready answer 200', async () => {
      const live = await api('GET', '/health/live');
      expect(live.status).toBe(200);
      expect(live.body).toEqual({ status: 'alive' });
      const ready = await api('GET', '/health/ready');
      expect(ready.status).toBe(200);
      expect(ready.body).toEqual({ status: 'ready' });
    });

    it('/metrics is Prometheus text with the request, collection, vector, search, index and process metrics', async () => {
      await api('POST', '/api/v1/collections/books/query', { query_vector: ORIGIN, top_k: 1 });
      const res = await api('GET', '/metrics');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      for (const name of ['akidb_requests_total', 'akidb_request_duration_seconds', 'akidb_collections_total', 'akidb_vectors_total', 'akidb_search_latency_seconds', 'akidb_index_build_duration_seconds', 'process_cpu_seconds_total']) {
        expect(res.text).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
      }
      expect(metricValue(res.text, 'akidb_search_latency_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(metricValue(res.text, 'akidb_requests_total', { protocol: 'rest', endpoint: '/api/v1/collections/:id/query', status: 'success', code: '200' })).toBeGreaterThanOrEqual(1);
      expect(metricValue(res.text, 'akidb_collections_total')).toBeGreaterThanOrEqual(1);
      expect(metricValue(res.text, 'akidb_vectors_total')).toBeGreaterThanOrEqual(BOOKS.length);
    });

    it('an error answer is counted in akidb_requests_total with status="error" and its code', async () => {
      const labels = { protocol: 'rest', method: 'GET', endpoint: '/api/v1/collections/:id/docs/:doc_id', status: 'error', code: '404' };
      const before = metricValue((await api('GET', '/metrics')).text, 'akidb_requests_total', labels);
      expectError(await api('GET', '/api/v1/collections/books/docs/absent'), 404, 'DOCUMENT_NOT_FOUND');
      expectError(await api('GET', '/api/v1/collections/books/docs/absent2'), 404, 'DOCUMENT_NOT_FOUND');
      // Counted when the answer has been sent, so a scrape right after may be a moment early.
      await vi.waitFor(async () => expect(metricValue((await api('GET', '/metrics')).text, 'akidb_requests_total', labels)).toBe(before + 2), { timeout: 5000 });
    });

    it('/openapi.json is an OpenAPI 3 document listing every collection route', async () => {
      const res = await api('GET', '/openapi.json');
      expect(res.status).toBe(200);
      const doc = res.body as { openapi: string; info: { title: string }; paths: Record<string, Record<string, unknown>> };
      expect(doc.openapi).toMatch(/^3\./);
      const routes = Object.entries(doc.paths).flatMap(([p, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${p}`));
      const expected = [
        'POST /api/v1/collections',
        'GET /api/v1/collections',
        'GET /api/v1/collections/{id}',
        'DELETE /api/v1/collections/{id}',
        'POST /api/v1/collections/{id}/insert',
        'POST /api/v1/collections/{id}/upsert',
        'POST /api/v1/collections/{id}/query',
        'GET /api/v1/collections/{id}/docs/{doc_id}',
        'DELETE /api/v1/collections/{id}/docs/{doc_id}',
        'POST /api/v1/collections/{id}/delete',
        'GET /api/v1/collections/{id}/tier',
        'POST /api/v1/collections/{id}/tier',
        'GET /api/v1/metrics/tiers',
        'POST /api/v1/tenants',
        'POST /api/v1/tenants/{tenant}/databases',
        'GET /health',
        'GET /health/live',
        'GET /health/ready',
        'GET /metrics',
      ];
      expect(routes).toEqual(expect.arrayContaining(expected));
      for (const r of expected.filter((x) => x.includes('/collections'))) expect(routes).toContain(r.replace('/api/v1/collections', '/api/v1/tenants/{tenant}/databases/{database}/collections'));
      // The document describes what the server validates with: the query body's limits.
      const querySchema = (doc.paths['/api/v1/collections/{id}/query']!.post as { requestBody: { content: Record<string, { schema: { required: string[]; properties: Record<string, { maximum?: number }> } }> } }).requestBody.content['application/json']!.schema;
      expect(querySchema.required).toEqual(['query_vector']);
      expect(querySchema.properties.top_k!.maximum).toBe(1000);
    });

    it('an x-request-id sent is echoed back and names the request in its log line; one is made when absent or unusable', async () => {
      const res = await api('POST', '/api/v1/collections/books/query', { query_vector: ORIGIN, top_k: 1 }, { 'x-request-id': 'e2e-req-42' });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe('e2e-req-42');
      await vi.waitFor(() => expect(server.logs.find((l) => l.reqId === 'e2e-req-42')).toMatchObject({ msg: 'request', method: 'POST', url: '/api/v1/collections/:id/query', status: 200 }), { timeout: 5000 });
      const err = await api('GET', '/api/v1/collections/nope', undefined, { 'x-request-id': 'e2e-req-43' });
      expect(err.headers.get('x-request-id')).toBe('e2e-req-43');
      await vi.waitFor(() => expect(server.logs.find((l) => l.reqId === 'e2e-req-43')).toMatchObject({ status: 404 }), { timeout: 5000 });

      const made = await api('GET', '/health/live');
      expect(made.headers.get('x-request-id')).toMatch(UUID);
      // A header that could forge log lines is replaced, not echoed.
      const forged = await api('GET', '/health/live', undefined, { 'x-request-id': 'a b"}{"level":60' });
      expect(forged.headers.get('x-request-id')).toMatch(UUID);
    });

    it('no log line contains a query vector, whether the query succeeded or failed', async () => {
      expect((await api('POST', '/api/v1/collections/books/query', { query_vector: SECRET_VECTOR, top_k: 2 }, { 'x-request-id': 'e2e-secret-ok' })).status).toBe(200);
      expectError(await api('POST', '/api/v1/collections/books/query', { query_vector: [...SECRET_VECTOR, 0.918273645], top_k: 2 }, { 'x-request-id': 'e2e-secret-bad' }), 400, 'DIMENSION_MISMATCH');
      expectError(await api('POST', '/api/v1/collections/books/query', { query_vector: SECRET_VECTOR, top_k: 0 }, { 'x-request-id': 'e2e-secret-topk' }), 400, 'INVALID_TOP_K');
      // The three requests were logged (so the check below looks at real lines) ...
      await vi.waitFor(() => expect(server.logs.filter((l) => typeof l.reqId === 'string' && l.reqId.startsWith('e2e-secret-')).length).toBeGreaterThanOrEqual(3), { timeout: 5000 });
      // ... and nothing logged holds the vector, in decimal or as float32.
      const all = server.logs.map((l) => JSON.stringify(l)).join('\n');
      expect(all).not.toContain('0.91827');
      expect(all).not.toContain('query_vector');
    });
  });
});

describe('REST limits from a config file', () => {
  let server: ServerProcess;
  let dir: string;
  const api = client(() => server);

  beforeAll(async () => {
    dir = makeTempDir();
    const config = path.join(dir, 'config.toml');
    fs.writeFileSync(config, '[server]\nmax_body_bytes = 4096\n\n[api.validation]\nmax_batch_size = 5\n');
    server = await startServerProcess({ dataDir: path.join(dir, 'data'), args: ['--config', config] });
    expect((await api('POST', '/api/v1/collections', { name: 'small', dimension: 2 })).status).toBe(201);
  });

  afterAll(async () => {
    if (server) expect(await server.stop('SIGTERM')).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('413 PAYLOAD_TOO_LARGE for a body over [server] max_body_bytes; a body under it is served', async () => {
    const big = await api('POST', '/api/v1/collections/small/insert', { doc_id: 'big', vector: [1, 2], metadata: { pad: 'x'.repeat(5000) } });
    expectError(big, 413, 'PAYLOAD_TOO_LARGE');
    expectError(await api('GET', '/api/v1/collections/small/docs/big'), 404, 'DOCUMENT_NOT_FOUND');
    const fits = await api('POST', '/api/v1/collections/small/insert', { doc_id: 'fits', vector: [1, 2], metadata: { pad: 'x'.repeat(3500) } });
    expect(fits.status).toBe(200);
  });

  it('413 PAYLOAD_TOO_LARGE for a batch over [api.validation] max_batch_size (upsert and delete); 5 documents pass', async () => {
    const docs = (n: number) => Array.from({ length: n }, (_, i) => ({ doc_id: `n${n}-${i}`, vector: [1, i] }));
    const six = await api('POST', '/api/v1/collections/small/upsert', { documents: docs(6) });
    expectError(six, 413, 'PAYLOAD_TOO_LARGE');
    expectError(await api('GET', '/api/v1/collections/small/docs/n6-0'), 404, 'DOCUMENT_NOT_FOUND');
    const five = await api('POST', '/api/v1/collections/small/upsert', { documents: docs(5) });
    expect(five.status).toBe(200);
    expect(five.body).toMatchObject({ upserted: 5 });
    expectError(await api('POST', '/api/v1/collections/small/delete', { doc_ids: ['a', 'b', 'c', 'd', 'e', 'f'] }), 413, 'PAYLOAD_TOO_LARGE');
    expect((await api('GET', '/api/v1/collections/small')).body).toMatchObject({ document_count: 6 });
  });
});

describe('REST with metrics disabled', () => {
  let server: ServerProcess;
  let dir: string;
  const api = client(() => server);

  beforeAll(async () => {
    dir = makeTempDir();
    server = await startServerProcess({ dataDir: dir, env: { AKIDB_METRICS_ENABLED: 'false' } });
  });

  afterAll(async () => {
    if (server) expect(await server.stop('SIGTERM')).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('AKIDB_METRICS_ENABLED=false: /metrics answers 404 ROUTE_NOT_FOUND; the rest is served', async () => {
    expectError(await api('GET', '/metrics'), 404, 'ROUTE_NOT_FOUND');
    expect((await api('GET', '/health')).status).toBe(200);
    expect((await api('POST', '/api/v1/collections', { name: 'c', dimension: 2 })).status).toBe(201);
    const paths = Object.keys(((await api('GET', '/openapi.json')).body as { paths: Record<string, unknown> }).paths);
    expect(paths).not.toContain('/metrics');
    expect(paths).toContain('/api/v1/collections');
  });
});
