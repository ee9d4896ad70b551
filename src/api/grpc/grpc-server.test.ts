import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AkiDB } from '../../engine/database.js';
import { jsonToStruct, startGrpcServer, type GrpcServerHandle, type WireStruct } from './grpc-server.js';
import { structToJson } from '../../test-support/grpc-struct.js';

// A client built the way any grpc-js user would build one: from the .proto file, over a socket.
const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
const REFLECTION_PROTO = fileURLToPath(new URL('../../../node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto', import.meta.url));
const loaderOptions = { keepCase: true, longs: Number, defaults: true, oneofs: true };
const clientDef = loadSync('akidb/collection/v1/collection.proto', { ...loaderOptions, includeDirs: [PROTO_DIR] });
const clientPkg = grpc.loadPackageDefinition(clientDef);
const upsertMethod = (clientDef['akidb.collection.v1.CollectionService'] as Record<string, MethodDefinition<object, object>>).Upsert!;
const v1 = ((clientPkg.akidb as grpc.GrpcObject).collection as grpc.GrpcObject).v1 as grpc.GrpcObject;
const CollectionClient = v1.CollectionService as grpc.ServiceClientConstructor;
const ManagementClient = v1.CollectionManagementService as grpc.ServiceClientConstructor;
const HealthClient = grpc.makeClientConstructor(healthService, 'Health');
const reflectionPkg = grpc.loadPackageDefinition(loadSync(REFLECTION_PROTO, loaderOptions));
const ReflectionClient = (((reflectionPkg.grpc as grpc.GrpcObject).reflection as grpc.GrpcObject).v1 as grpc.GrpcObject).ServerReflection as grpc.ServiceClientConstructor;

type Struct = WireStruct;

interface Info {
  collection_id: string;
  name: string;
  tenant: string;
  database: string;
  dimension: number;
  metric: string;
  index: { m: number; ef_construction: number; ef_search: number; quantization: string };
  document_count: number;
  created_at: string;
  tiering_policy: string;
}
interface Match {
  doc_id: string;
  external_id: string;
  score: number;
  distance: number;
  metadata: Struct | null;
  vector: number[];
}
interface Doc {
  doc_id: string;
  external_id: string;
  vector: number[];
  metadata: Struct | null;
  text?: string;
}

/** One unary call as a promise. */
function rpc<T>(client: grpc.Client, method: string, req: object, options: grpc.CallOptions = {}): Promise<T> {
  const fn = (client as unknown as Record<string, (r: object, md: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: T) => void) => void>)[method]!;
  return new Promise((resolve, reject) => {
    fn.call(client, req, new grpc.Metadata(), options, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** One unary call with bytes encoded beforehand. */
function rawRpc(port: number, method: string, bytes: Buffer): Promise<Buffer> {
  const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<Buffer>((resolve, reject) => {
    raw.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, bytes, (err, res) => (err ? reject(err) : resolve(res!)));
  }).finally(() => raw.close());
}

/** The rejection of `p`, which must reject with a gRPC status. */
async function statusOf(p: Promise<unknown>): Promise<{ code: grpc.status; details: string; akiCode: unknown; akiDetails: unknown }> {
  const err = await p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e as grpc.ServiceError,
  );
  const raw = err.metadata.get('akidb-error-details')[0];
  return { code: err.code, details: err.details, akiCode: err.metadata.get('akidb-error-code')[0], akiDetails: raw === undefined ? undefined : JSON.parse(String(raw)) };
}

function unit(v: number[]): number[] {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

describe('gRPC server', () => {
  let dir: string;
  let db: AkiDB;
  let server: GrpcServerHandle;
  let slowServer: GrpcServerHandle;
  let col: grpc.Client;
  let mgmt: grpc.Client;
  let health: grpc.Client;
  const calls: { method: string; code: string; seconds: number }[] = [];
  const logLines: string[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-grpc-'));
    db = await AkiDB.open({ dataDir: dir });
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
    server = await startGrpcServer({ db, host: '127.0.0.1', port: 0, logger, version: 'test', timeoutMs: 30_000, onRequest: (method, code, seconds) => calls.push({ method, code, seconds }) });
    slowServer = await startGrpcServer({ db, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), version: 'test', timeoutMs: 1 });
    const target = `127.0.0.1:${server.port}`;
    col = new CollectionClient(target, grpc.credentials.createInsecure());
    mgmt = new ManagementClient(target, grpc.credentials.createInsecure());
    health = new HealthClient(target, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    for (const c of [col, mgmt, health]) c?.close();
    await server?.shutdown(1000);
    await slowServer?.shutdown(1000);
    await db?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('collection management', () => {
    it('creates, lists, gets and deletes collections', async () => {
      const created = await rpc<Info>(mgmt, 'CreateCollection', { name: 'mgmt_a', dimension: 8, metric: 'l2', index: { m: 8, ef_construction: 32, ef_search: 40 } });
      expect(created).toMatchObject({ name: 'mgmt_a', tenant: 'default', database: 'default', dimension: 8, metric: 'l2', index: { m: 8, ef_construction: 32, ef_search: 40 }, document_count: 0, tiering_policy: 'Memory' });
      expect(created.collection_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(Number.isNaN(Date.parse(created.created_at))).toBe(false);

      const defaults = await rpc<Info>(mgmt, 'CreateCollection', { name: 'mgmt_b', dimension: 3 });
      expect(defaults.metric).toBe('cosine');
      expect(defaults.index.m).toBe(db.options.hnsw.m);
      expect(defaults.index.ef_search).toBe(db.options.hnsw.efSearch);

      const listed = await rpc<{ collections: Info[] }>(mgmt, 'ListCollections', {});
      const names = listed.collections.map((c) => c.name);
      expect(names).toContain('mgmt_a');
      expect(names).toContain('mgmt_b');
      expect(names).toEqual([...names].sort());

      expect(await rpc<Info>(mgmt, 'GetCollection', { collection: 'mgmt_a' })).toEqual(created);
      expect(await rpc<Info>(mgmt, 'GetCollection', { collection: created.collection_id.toUpperCase(), tenant: 'default', database: 'default' })).toEqual(created);

      expect(await rpc(mgmt, 'DeleteCollection', { collection: created.collection_id })).toEqual({});
      const gone = await statusOf(rpc(mgmt, 'GetCollection', { collection: 'mgmt_a' }));
      expect(gone).toMatchObject({ code: grpc.status.NOT_FOUND, akiCode: 'COLLECTION_NOT_FOUND' });
      await rpc(mgmt, 'DeleteCollection', { collection: 'mgmt_b' });
      expect((await rpc<{ collections: Info[] }>(mgmt, 'ListCollections', {})).collections.map((c) => c.name)).not.toContain('mgmt_b');
    });

    it('answers ALREADY_EXISTS for a duplicate name', async () => {
      await rpc(mgmt, 'CreateCollection', { name: 'dup', dimension: 4 });
      const s = await statusOf(rpc(mgmt, 'CreateCollection', { name: 'dup', dimension: 4 }));
      expect(s).toMatchObject({ code: grpc.status.ALREADY_EXISTS, akiCode: 'COLLECTION_ALREADY_EXISTS' });
    });

    it('answers INVALID_ARGUMENT for bad specs', async () => {
      expect(await statusOf(rpc(mgmt, 'CreateCollection', { name: 'nodim' }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_DIMENSION' });
      expect(await statusOf(rpc(mgmt, 'CreateCollection', { name: 'bad name!', dimension: 4 }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_NAME' });
      expect(await statusOf(rpc(mgmt, 'CreateCollection', { name: 'm', dimension: 4, metric: 'hamming' }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_METRIC' });
      expect(await statusOf(rpc(mgmt, 'CreateCollection', { name: 'm', dimension: 4, index: { m: 1 } }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_INDEX_PARAMS' });
      expect(await statusOf(rpc(mgmt, 'CreateCollection', { name: 'm', dimension: 4, index: { quantization: 'f8' } }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_INDEX_PARAMS' });
      expect(await statusOf(rpc(mgmt, 'CreateCollection', { name: 'm', dimension: 4, tiering_policy: 'Bogus' }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_ARGUMENT' });
      // Without an object store, as over REST.
      expect(await statusOf(rpc(mgmt, 'CreateCollection', { name: 'm', dimension: 4, tiering_policy: 'S3Only' }))).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, akiCode: 'TIER_UNAVAILABLE' });
      expect(await statusOf(rpc(mgmt, 'GetCollection', {}))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_ARGUMENT' });
    });

    it('answers NOT_FOUND for an unknown collection, tenant or database', async () => {
      const s = await statusOf(rpc(col, 'Describe', { collection: 'nope' }));
      expect(s).toMatchObject({ code: grpc.status.NOT_FOUND, akiCode: 'COLLECTION_NOT_FOUND', akiDetails: { collection: 'nope' } });
      expect(s.details).toContain('nope');
      expect(await statusOf(rpc(col, 'Describe', { collection: '00000000-0000-4000-8000-000000000000' }))).toMatchObject({ code: grpc.status.NOT_FOUND, akiCode: 'COLLECTION_NOT_FOUND' });
      expect(await statusOf(rpc(mgmt, 'ListCollections', { tenant: 'ghost' }))).toMatchObject({ code: grpc.status.NOT_FOUND, akiCode: 'TENANT_NOT_FOUND' });
      expect(await statusOf(rpc(mgmt, 'ListCollections', { database: 'ghost' }))).toMatchObject({ code: grpc.status.NOT_FOUND, akiCode: 'DATABASE_NOT_FOUND' });
    });

    it('addresses collections in other tenants and databases', async () => {
      await db.createTenant('acme');
      await db.createDatabase('acme', 'prod');
      const c = await rpc<Info>(mgmt, 'CreateCollection', { tenant: 'acme', database: 'prod', name: 'items', dimension: 2 });
      expect(c).toMatchObject({ tenant: 'acme', database: 'prod' });
      await rpc(col, 'Insert', { tenant: 'acme', database: 'prod', collection: 'items', doc_id: 'x', vector: [1, 0] });
      expect((await rpc<Info>(col, 'Describe', { tenant: 'acme', database: 'prod', collection: c.collection_id })).document_count).toBe(1);
      // The same id asked for in the default scope is someone else's: as if unknown.
      expect(await statusOf(rpc(col, 'Describe', { collection: c.collection_id }))).toMatchObject({ code: grpc.status.NOT_FOUND, akiCode: 'COLLECTION_NOT_FOUND' });
    });
  });

  describe('documents', () => {
    let id: string;
    // Cosine, 4 dimensions: doc i points mostly along axis i % 4.
    const vectors: Record<string, number[]> = {
      a: [1, 0, 0, 0],
      b: [0.9, 0.1, 0, 0],
      c: [0, 1, 0, 0],
      d: [0, 0, 1, 0],
      e: [0.7, 0.7, 0, 0],
    };

    beforeAll(async () => {
      id = (await rpc<Info>(mgmt, 'CreateCollection', { name: 'docs', dimension: 4 })).collection_id;
    });

    it('inserts, with and without a doc_id', async () => {
      const r = await rpc<{ doc_id: string; lsn: number; latency_ms: number }>(col, 'Insert', { collection: 'docs', doc_id: 'a', vector: vectors.a, metadata: jsonToStruct({ genre: 'news', year: 2001, tags: ['x', 'y'], nested: { ok: true, none: null } }), text: 'hello' });
      expect(r.doc_id).toBe('a');
      expect(r.lsn).toBeGreaterThan(0);
      expect(r.latency_ms).toBeGreaterThanOrEqual(0);
      const made = await rpc<{ doc_id: string; lsn: number }>(col, 'Insert', { collection: id, vector: [0, 0, 0, 1] });
      expect(made.doc_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(made.lsn).toBe(r.lsn + 1);
      const ext = await rpc<{ doc_id: string }>(col, 'Insert', { collection: 'docs', external_id: 'ext-1', vector: [0, 0, 0.5, 0.5] });
      expect(ext.doc_id).toBe('ext-1');
    });

    it('upserts a batch and gets documents back', async () => {
      const r = await rpc<{ upserted: number; doc_ids: string[]; lsn: number }>(col, 'Upsert', {
        collection: 'docs',
        documents: [
          { doc_id: 'b', vector: vectors.b, metadata: jsonToStruct({ genre: 'news', year: 1999 }) },
          { doc_id: 'c', vector: vectors.c, metadata: jsonToStruct({ genre: 'blog', year: 2010 }) },
          { doc_id: 'd', vector: vectors.d, metadata: jsonToStruct({ genre: 'blog', year: 2020 }) },
          { doc_id: 'e', vector: vectors.e, metadata: jsonToStruct({ genre: 'news', year: 2015 }) },
        ],
      });
      expect(r).toMatchObject({ upserted: 4, doc_ids: ['b', 'c', 'd', 'e'] });

      const got = await rpc<{ documents: Doc[]; missing_ids: string[] }>(col, 'Get', { collection: 'docs', doc_ids: ['a', 'zz', 'c'] });
      expect(got.missing_ids).toEqual(['zz']);
      expect(got.documents.map((d) => d.doc_id)).toEqual(['a', 'c']);
      const a = got.documents[0]!;
      expect(a.vector).toEqual(vectors.a);
      expect(a.text).toBe('hello');
      expect(structToJson(a.metadata!)).toEqual({ genre: 'news', year: 2001, tags: ['x', 'y'], nested: { ok: true, none: null } });
      expect(got.documents[1]!.text).toBeUndefined();
    });

    it('queries nearest first with cosine score and distance', async () => {
      const r = await rpc<{ matches: Match[]; latency_ms: number }>(col, 'Query', { collection: 'docs', query_vector: [1, 0, 0, 0], top_k: 3 });
      expect(r.matches.map((m) => m.doc_id)).toEqual(['a', 'b', 'e']);
      const [first, second, third] = r.matches as [Match, Match, Match];
      expect(first.distance).toBeCloseTo(0, 5);
      expect(first.score).toBeCloseTo(1, 5);
      expect(second.score).toBeCloseTo(unit(vectors.b!)[0]!, 3);
      for (const m of r.matches) expect(m.score).toBeCloseTo(1 - m.distance, 6);
      expect(second.distance).toBeLessThan(third.distance);
      expect(first.external_id).toBe('a');
      expect(structToJson(first.metadata!)).toMatchObject({ genre: 'news', year: 2001 });
      expect(first.vector).toEqual([]);
    });

    it('queries with a filter, and honours include_metadata / include_vector', async () => {
      const filter = jsonToStruct({ genre: { $eq: 'blog' } });
      const r = await rpc<{ matches: Match[] }>(col, 'Query', { collection: 'docs', query_vector: [0.2, 1, 0.1, 0], top_k: 10, filter });
      expect(r.matches.map((m) => m.doc_id)).toEqual(['c', 'd']);

      // The Struct written out by hand, as a non-JS client would put it on the wire.
      const handWritten = { fields: { $or: { listValue: { values: [{ structValue: { fields: { year: { structValue: { fields: { $gte: { numberValue: 2015 } } } } } } }, { structValue: { fields: { genre: { stringValue: 'blog' } } } }] } } } };
      const r2 = await rpc<{ matches: Match[] }>(col, 'Query', { collection: 'docs', query_vector: [0, 1, 0, 0], top_k: 10, filter: handWritten, include_metadata: false, include_vector: true, ef_search: 16 });
      expect(r2.matches.map((m) => m.doc_id)).toEqual(['c', 'e', 'd']);
      expect(r2.matches[0]!.metadata).toBeNull();
      expect(r2.matches[0]!.vector).toEqual(vectors.c);
    });

    it('describes the collection', async () => {
      const info = await rpc<Info>(col, 'Describe', { collection: 'docs' });
      expect(info).toMatchObject({ collection_id: id, name: 'docs', dimension: 4, metric: 'cosine', document_count: 7 });
    });

    it('answers INVALID_ARGUMENT for bad input, never INTERNAL', async () => {
      expect(await statusOf(rpc(col, 'Query', { collection: 'docs', query_vector: [1, 0, 0], top_k: 3 }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'DIMENSION_MISMATCH', akiDetails: { expected: 4, actual: 3 } });
      expect(await statusOf(rpc(col, 'Insert', { collection: 'docs', vector: [1, 2] }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'DIMENSION_MISMATCH' });
      expect(await statusOf(rpc(col, 'Insert', { collection: 'docs', vector: [] }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'DIMENSION_MISMATCH' });
      expect(await statusOf(rpc(col, 'Query', { collection: 'docs', query_vector: [1, 0, 0, 0], top_k: 3, filter: jsonToStruct({ genre: { $regex: 'x' } }) }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_FILTER' });
      expect(await statusOf(rpc(col, 'Query', { collection: 'docs', query_vector: [1, 0, 0, 0], top_k: 0 }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_TOP_K' });
      expect(await statusOf(rpc(col, 'Query', { collection: 'docs', query_vector: [1, 0, 0, 0], top_k: 3, ef_search: 0 }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_ARGUMENT' });
      expect(await statusOf(rpc(col, 'Query', { collection: 'docs', query_vector: [Number.NaN, 0, 0, 0], top_k: 3 }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_VECTOR' });
      expect(await statusOf(rpc(col, 'Insert', { collection: 'docs', vector: [1, 0, 0, 0], metadata: { fields: { x: { numberValue: Number.POSITIVE_INFINITY } } } }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_ARGUMENT' });
      expect(await statusOf(rpc(col, 'Insert', { collection: 'docs', doc_id: 'p', external_id: 'q', vector: [1, 0, 0, 0] }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_DOCUMENT' });
      expect(await statusOf(rpc(col, 'Delete', { collection: 'docs' }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_ARGUMENT' });
      expect(await statusOf(rpc(col, 'Query', { query_vector: [1, 0, 0, 0], top_k: 3 }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, akiCode: 'INVALID_ARGUMENT' });
    });

    it('answers INVALID_ARGUMENT for bytes that are not a request message', async () => {
      const raw = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
      try {
        const err = await new Promise<grpc.ServiceError>((resolve) => {
          raw.makeUnaryRequest(
            '/akidb.collection.v1.CollectionService/Query',
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from([0x0a, 0xff, 0xff, 0xff]),
            (e) => resolve(e!),
          );
        });
        expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(err.metadata.get('akidb-error-code')).toEqual(['INVALID_ARGUMENT']);
      } finally {
        raw.close();
      }
    });

    it('deletes by ids and by filter', async () => {
      const byIds = await rpc<{ deleted: number; lsn: number }>(col, 'Delete', { collection: 'docs', doc_ids: ['a', 'missing'] });
      expect(byIds.deleted).toBe(1);
      const byFilter = await rpc<{ deleted: number; lsn: number }>(col, 'Delete', { collection: 'docs', filter: jsonToStruct({ genre: 'news' }) });
      expect(byFilter.deleted).toBe(2); // b and e
      expect(byFilter.lsn).toBeGreaterThan(byIds.lsn);
      const both = await rpc<{ deleted: number }>(col, 'Delete', { collection: 'docs', doc_ids: ['c', 'd'], filter: jsonToStruct({ year: { $gt: 2015 } }) });
      expect(both.deleted).toBe(1); // d only
      const left = await rpc<{ matches: Match[] }>(col, 'Query', { collection: 'docs', query_vector: [1, 0, 0, 0], top_k: 10 });
      const ids = left.matches.map((m) => m.doc_id);
      expect(ids).toHaveLength(3);
      expect(ids).toEqual(expect.arrayContaining(['c', 'ext-1']));
      expect((await rpc<Info>(col, 'Describe', { collection: 'docs' })).document_count).toBe(3);
    });

    it('takes a 10,000-document batch of 768-dim vectors (over the 4 MiB default message limit)', async () => {
      await rpc(mgmt, 'CreateCollection', { name: 'big', dimension: 768, metric: 'dot' });
      const vectorOf = (i: number) => Array.from({ length: 768 }, (_, j) => ((i * 31 + j * 17) % 97) / 97);
      const documents = Array.from({ length: 10_000 }, (_, i) => ({ doc_id: `d${i}`, vector: vectorOf(i) }));
      // Encoded once by proto-loader (the slow part of this test), sent twice.
      const bytes = upsertMethod.requestSerialize({ collection: 'big', documents });
      expect(bytes.length).toBeGreaterThan(30_000_000);
      const r = upsertMethod.responseDeserialize(await rawRpc(server.port, '/akidb.collection.v1.CollectionService/Upsert', bytes)) as { upserted: number; doc_ids: string[] };
      expect(r.upserted).toBe(10_000);
      expect(r.doc_ids[9_999]).toBe('d9999');
      const got = await rpc<{ documents: Doc[] }>(col, 'Get', { collection: 'big', doc_ids: ['d4321'] });
      expect(got.documents[0]!.vector).toEqual(Array.from(Float32Array.from(vectorOf(4321))));

      // The same batch on a server with a 1 ms timeout cannot be written in time.
      const s = await statusOf(rawRpc(slowServer.port, '/akidb.collection.v1.CollectionService/Upsert', bytes));
      expect(s).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED, akiCode: 'REQUEST_TIMEOUT', akiDetails: { deadline: 'server', timeoutMs: 1 } });
    });
  });

  describe('health and reflection', () => {
    const check = (svc: string) => rpc<{ status: string }>(health, 'Check', { service: svc });

    it('reports SERVING, then NOT_SERVING after setServing(false)', async () => {
      for (const svc of ['', 'akidb.collection.v1.CollectionService', 'akidb.collection.v1.CollectionManagementService']) expect(await check(svc)).toEqual({ status: 'SERVING' });
      server.setServing(false);
      try {
        for (const svc of ['', 'akidb.collection.v1.CollectionService', 'akidb.collection.v1.CollectionManagementService']) expect(await check(svc)).toEqual({ status: 'NOT_SERVING' });
      } finally {
        server.setServing(true);
      }
      expect(await check('')).toEqual({ status: 'SERVING' });
    });

    it('lists the services through reflection', async () => {
      const client = new ReflectionClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
      try {
        const stream = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, { list_services_response?: { service: { name: string }[] }; file_descriptor_response?: { file_descriptor_proto: Buffer[] } }> }).ServerReflectionInfo();
        const answers: { list_services_response?: { service: { name: string }[] }; file_descriptor_response?: { file_descriptor_proto: Buffer[] } }[] = [];
        const done = new Promise<void>((resolve, reject) => {
          stream.on('data', (d: (typeof answers)[number]) => {
            answers.push(d);
            if (answers.length === 2) stream.end();
          });
          stream.on('error', reject);
          stream.on('end', resolve);
        });
        stream.write({ list_services: '' });
        stream.write({ file_containing_symbol: 'akidb.collection.v1.CollectionService' });
        await done;
        const names = answers[0]!.list_services_response!.service.map((s) => s.name);
        expect(names).toEqual(expect.arrayContaining(['akidb.collection.v1.CollectionService', 'akidb.collection.v1.CollectionManagementService', 'grpc.health.v1.Health']));
        expect(answers[1]!.file_descriptor_response!.file_descriptor_proto.length).toBeGreaterThan(0);
      } finally {
        client.close();
      }
    });
  });

  describe('lifecycle', () => {
    it('refuses a port in use', async () => {
      await expect(startGrpcServer({ db, host: '127.0.0.1', port: server.port, logger: pino({ level: 'silent' }), version: 'test', timeoutMs: 1000 })).rejects.toThrow(/could not bind/);
    });

    it('shuts down: idempotent, and later calls are refused', async () => {
      const s = await startGrpcServer({ db, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), version: 'test', timeoutMs: 1000 });
      const client = new CollectionClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
      try {
        expect((await rpc<Info>(client, 'Describe', { collection: 'docs' })).name).toBe('docs');
        await Promise.all([s.shutdown(500), s.shutdown(500)]);
        expect((await statusOf(rpc(client, 'Describe', { collection: 'docs' }, { deadline: Date.now() + 2000 }))).code).toBe(grpc.status.UNAVAILABLE);
      } finally {
        client.close();
      }
    });
  });

  describe('observability', () => {
    it('reports every call with its status name and duration', () => {
      expect(calls).toContainEqual({ method: 'akidb.collection.v1.CollectionService/Query', code: 'OK', seconds: expect.any(Number) as number });
      expect(calls).toContainEqual({ method: 'akidb.collection.v1.CollectionService/Describe', code: 'NOT_FOUND', seconds: expect.any(Number) as number });
      expect(calls).toContainEqual({ method: 'akidb.collection.v1.CollectionManagementService/CreateCollection', code: 'ALREADY_EXISTS', seconds: expect.any(Number) as number });
      expect(calls.every((c) => c.seconds >= 0 && c.seconds < 60)).toBe(true);
    });

    it('logs each call at debug with a request id, and never a vector', () => {
      const entries = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === 'gRPC call');
      expect(entries.length).toBeGreaterThan(10);
      expect(entries.find((e) => e.method === 'akidb.collection.v1.CollectionService/Query' && e.code === 'OK')).toMatchObject({ reqId: expect.any(Number) as number, collection: 'docs' });
      for (const line of logLines) {
        expect(line).not.toContain('vector":[');
        expect(line).not.toContain('0.9,0.1');
      }
    });
  });
});
