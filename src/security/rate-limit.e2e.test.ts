import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
const def = loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
const v1 = ((grpc.loadPackageDefinition(def).akidb as grpc.GrpcObject).collection as grpc.GrpcObject).v1 as grpc.GrpcObject;

const LIMITED = 'limited-key-0123456789';
const OTHER = 'other-key-0123456789ab';

describe('per-credential rate limiting (token bucket, REST and gRPC share it)', () => {
  const tempDir = useTempDirs('akidb-ratelimit-');
  let server: ServerProcess;
  const get = (path: string, key?: string): Promise<Response> => fetch(`${server.restUrl}${path}`, { headers: key ? { 'x-api-key': key } : {} });

  beforeAll(async () => {
    server = await startServerProcess({
      dataDir: tempDir(),
      env: { AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: `${LIMITED}:viewer,${OTHER}:admin`, AKIDB_RATE_LIMIT_PER_SECOND: '2', AKIDB_RATE_LIMIT_BURST: '3' },
    });
  });
  afterAll(async () => {
    if (server) expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('a burst passes, the next request gets 429 RATE_LIMITED with Retry-After; other keys and the probes are unaffected; tokens refill', async () => {
    for (let i = 0; i < 3; i++) expect((await get('/api/v1/collections', LIMITED)).status).toBe(200);
    const limited = await get('/api/v1/collections', LIMITED);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await limited.json()) as { error: { code: string; details: { retry_after_seconds: number } } };
    expect(body.error.code).toBe('RATE_LIMITED');
    expect(body.error.details.retry_after_seconds).toBeGreaterThanOrEqual(1);
    expect((await get('/api/v1/collections', OTHER)).status).toBe(200);
    expect((await get('/health/ready')).status).toBe(200);
    expect((await get('/health/live')).status).toBe(200);

    // gRPC draws on the same bucket.
    const client = new (v1.CollectionManagementService as grpc.ServiceClientConstructor)(server.grpcAddress, grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set('x-api-key', LIMITED);
      const err = await new Promise<grpc.ServiceError | null>((resolve) => (client as unknown as Record<string, (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void>).ListCollections!({}, md, resolve));
      expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(err?.metadata.get('akidb-error-code')).toEqual(['RATE_LIMITED']);
    } finally {
      client.close();
    }

    // 2 tokens a second: after a second and a half at least one is back.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await get('/api/v1/collections', LIMITED)).status).toBe(200);
  });

  it("failed attempts draw on their client address's bucket, not on any key's: guessing keys is slowed to the limit", async () => {
    await new Promise((r) => setTimeout(r, 1600)); // LIMITED's bucket refills from the test before
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await get('/api/v1/collections', `wrong-key-${i}-0123456789`)).status);
    expect(statuses.slice(0, 3)).toEqual([401, 401, 401]);
    expect(statuses.slice(3)).toEqual([429, 429, 429]);
    // The keys themselves are untouched.
    expect((await get('/api/v1/collections', LIMITED)).status).toBe(200);
    expect((await get('/api/v1/collections', OTHER)).status).toBe(200);
  });
});
