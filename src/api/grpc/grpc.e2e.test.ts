import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import { describe, expect, it } from 'vitest';
import { http, startServerProcess } from '../../test-support/server-process.js';
import { useTempDirs } from '../../test-support/temp-dirs.js';

// A client as a user builds one: from the published .proto, over a socket, against `akidb serve`.
const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
const def = loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
const v1 = ((grpc.loadPackageDefinition(def).akidb as grpc.GrpcObject).collection as grpc.GrpcObject).v1 as grpc.GrpcObject;
const CollectionClient = v1.CollectionService as grpc.ServiceClientConstructor;
const ManagementClient = v1.CollectionManagementService as grpc.ServiceClientConstructor;
const HealthClient = grpc.makeClientConstructor(healthService, 'Health');

const tempDir = useTempDirs('akidb-grpc-e2e-');

function call<T>(client: grpc.Client, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null, r: T) => void) => void>)[method]!(req, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

const unitVector = (dim: number, hot: number): number[] => Array.from({ length: dim }, (_, i) => (i === hot ? 1 : 0.01));

describe('gRPC against the real CLI', () => {
  it('serves the collection services and health; documents written over gRPC survive SIGTERM and restart, and read back over REST', async () => {
    const dataDir = tempDir();
    let server = await startServerProcess({ dataDir });
    let addr = server.grpcAddress;
    const creds = grpc.credentials.createInsecure();
    let mgmt = new ManagementClient(addr, creds);
    let coll = new CollectionClient(addr, creds);
    let health = new HealthClient(addr, creds);
    try {
      expect(await call(health, 'check', { service: '' })).toEqual({ status: 'SERVING' });
      expect(await call(health, 'check', { service: 'akidb.collection.v1.CollectionService' })).toEqual({ status: 'SERVING' });
      const info = await call<{ collection_id: string; dimension: number }>(mgmt, 'CreateCollection', { name: 'g', dimension: 8, metric: 'cosine' });
      expect(info.dimension).toBe(8);
      const dup = await call(mgmt, 'CreateCollection', { name: 'g', dimension: 8 }).catch((e: grpc.ServiceError) => e);
      expect((dup as grpc.ServiceError).code).toBe(grpc.status.ALREADY_EXISTS);
      const docs = Array.from({ length: 8 }, (_, i) => ({ doc_id: `d${i}`, vector: unitVector(8, i), metadata: { fields: { even: { boolValue: i % 2 === 0 } } } }));
      const up = await call<{ upserted: number }>(coll, 'Upsert', { collection: 'g', documents: docs });
      expect(up.upserted).toBe(8);
      const q = await call<{ matches: { doc_id: string; score: number }[] }>(coll, 'Query', { collection: info.collection_id, query_vector: unitVector(8, 3), top_k: 3, filter: { fields: { even: { boolValue: false } } } });
      expect(q.matches.map((m) => m.doc_id)[0]).toBe('d3');
      expect(q.matches.every((m) => ['d1', 'd3', 'd5', 'd7'].includes(m.doc_id))).toBe(true);
      const bad = await call(coll, 'Query', { collection: 'g', query_vector: [1, 2], top_k: 3 }).catch((e: grpc.ServiceError) => e);
      expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
      expect((bad as grpc.ServiceError).metadata.get('akidb-error-code')).toEqual(['DIMENSION_MISMATCH']);
      const missing = await call(coll, 'Query', { collection: 'nope', query_vector: unitVector(8, 0), top_k: 3 }).catch((e: grpc.ServiceError) => e);
      expect((missing as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
      expect(await call<{ deleted: number }>(coll, 'Delete', { collection: 'g', doc_ids: ['d7'] })).toMatchObject({ deleted: 1 });

      // Health flips to NOT_SERVING as soon as a shutdown begins: watch it while SIGTERM arrives.
      const seen: string[] = [];
      const watch = (health as unknown as { watch(r: object): grpc.ClientReadableStream<{ status: string }> }).watch({ service: '' });
      const ended = new Promise<void>((resolve) => {
        watch.on('data', (m: { status: string }) => {
          seen.push(m.status);
          if (m.status === 'NOT_SERVING') resolve();
        });
        watch.on('error', () => resolve());
        watch.on('end', () => resolve());
      });
      await new Promise((r) => setTimeout(r, 100));
      const exit = server.stop('SIGTERM');
      await ended;
      expect(await exit).toBe(0);
      expect(seen[0]).toBe('SERVING');
      expect(seen).toContain('NOT_SERVING');
    } finally {
      for (const c of [mgmt, coll, health]) c.close();
      await server.stop();
    }

    server = await startServerProcess({ dataDir });
    addr = server.grpcAddress;
    mgmt = new ManagementClient(addr, creds);
    coll = new CollectionClient(addr, creds);
    health = new HealthClient(addr, creds);
    try {
      const got = await call<{ documents: { doc_id: string; vector: number[] }[]; missing_ids: string[] }>(coll, 'Get', { collection: 'g', doc_ids: ['d0', 'd6', 'd7'] });
      expect(got.documents.map((d) => d.doc_id)).toEqual(['d0', 'd6']);
      expect(got.missing_ids).toEqual(['d7']);
      expect(got.documents[1]!.vector[6]).toBeCloseTo(1, 6);
      const rest = await http(server.restUrl, 'GET', '/api/v1/collections/g');
      expect((rest.body as { document_count: number }).document_count).toBe(7);
      expect(await call<{ collections: { name: string }[] }>(mgmt, 'ListCollections', {})).toMatchObject({ collections: [{ name: 'g' }] });
    } finally {
      for (const c of [mgmt, coll, health]) c.close();
      expect(await server.stop()).toBe(0);
    }
  });
});
