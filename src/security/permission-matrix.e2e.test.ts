import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3Server, type S3TestServer } from '../test-support/s3-server.js';
import { startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

/**
 * The permission matrix, written out as the intended policy (independently of
 * src/security/permissions.ts): every REST route and gRPC method, called by every kind of
 * caller, against a real server over real sockets with auth on.
 */

type Role = 'monitor' | 'viewer' | 'operator' | 'admin';
type Ranked = Exclude<Role, 'monitor'>;
/** viewer < operator < admin; monitor stands apart: it may call the status routes only (`Probe.status`). */
const RANK: Record<Ranked, number> = { viewer: 0, operator: 1, admin: 2 };

interface Caller {
  name: string;
  headers: Record<string, string>;
  /** null: not authenticated at all. */
  role: Role | null;
  tenant: string | null;
}

const JWT_SECRET = 'matrix-test-secret-of-at-least-32-bytes!';
const KEYS = {
  monitor: 'monitor-key-0123456789',
  viewer: 'viewer-key-0123456789',
  operator: 'operator-key-0123456789',
  admin: 'admin-key-0123456789abc',
  acmeOperator: 'acme-operator-key-0123',
  globexAdmin: 'globex-admin-key-01234',
};

const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = (): number => Math.floor(Date.now() / 1000);
const hs256 = (claims: Record<string, unknown>, secret = JWT_SECRET, exp = now() + 600): Promise<string> =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(exp).setSubject('matrix').sign(new TextEncoder().encode(secret));

async function callers(): Promise<Caller[]> {
  const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });
  return [
    { name: 'no credential', headers: {}, role: null, tenant: null },
    { name: 'wrong key', headers: { 'x-api-key': 'not-a-key-of-this-server-at-all' }, role: null, tenant: null },
    { name: 'monitor key', headers: { 'x-api-key': KEYS.monitor }, role: 'monitor', tenant: null },
    { name: 'viewer key', headers: { 'x-api-key': KEYS.viewer }, role: 'viewer', tenant: null },
    { name: 'operator key (Bearer)', headers: bearer(KEYS.operator), role: 'operator', tenant: null },
    { name: 'admin key', headers: { 'x-api-key': KEYS.admin }, role: 'admin', tenant: null },
    { name: 'acme operator key', headers: { 'x-api-key': KEYS.acmeOperator }, role: 'operator', tenant: 'acme' },
    { name: "another tenant's admin key", headers: { 'x-api-key': KEYS.globexAdmin }, role: 'admin', tenant: 'globex' },
    { name: 'viewer JWT', headers: bearer(await hs256({ role: 'viewer' })), role: 'viewer', tenant: null },
    { name: 'expired admin JWT', headers: bearer(await hs256({ role: 'admin' }, JWT_SECRET, now() - 3600)), role: null, tenant: null },
    { name: 'admin JWT with a wrong signature', headers: bearer(await hs256({ role: 'admin' }, 'another-secret-that-is-32-bytes-long!!')), role: null, tenant: null },
    { name: 'alg none admin JWT', headers: bearer(`${b64({ alg: 'none', typ: 'JWT' })}.${b64({ role: 'admin', exp: now() + 600 })}.`), role: null, tenant: null },
  ];
}

/** One call per route: what it needs, which tenant it addresses, and what an allowed caller gets. */
interface Probe {
  method: string;
  /** As /openapi.json lists it. */
  template: string;
  path: string;
  body?: unknown;
  needs: Ranked | 'public';
  /** A server-status route (health, metrics): the monitor role may call it. */
  status?: boolean;
  global?: boolean;
  tenant: string | null;
  ok: number;
}

const V = [1, 0, 0, 0];
function collectionProbes(prefix: string, tplPrefix: string, tenant: string): Probe[] {
  const p = (method: string, tail: string, tplTail: string, needs: Ranked, ok: number, body?: unknown): Probe => ({ method, template: `${tplPrefix}${tplTail}`, path: `${prefix}${tail}`, needs, tenant, ok, ...(body === undefined ? {} : { body }) });
  return [
    p('POST', '/collections', '/collections', 'operator', 409, { name: 'keep', dimension: 4 }),
    p('GET', '/collections', '/collections', 'viewer', 200),
    p('GET', '/collections/keep', '/collections/{id}', 'viewer', 200),
    p('DELETE', '/collections/ghost', '/collections/{id}', 'operator', 404),
    p('POST', '/collections/keep/insert', '/collections/{id}/insert', 'operator', 200, { doc_id: 'a', vector: V }),
    p('POST', '/collections/keep/upsert', '/collections/{id}/upsert', 'operator', 200, { documents: [{ doc_id: 'a', vector: V }] }),
    p('POST', '/collections/keep/query', '/collections/{id}/query', 'viewer', 200, { query_vector: V, top_k: 1 }),
    p('GET', '/collections/keep/docs/a', '/collections/{id}/docs/{doc_id}', 'viewer', 200),
    p('DELETE', '/collections/keep/docs/ghost', '/collections/{id}/docs/{doc_id}', 'operator', 204),
    p('POST', '/collections/keep/delete', '/collections/{id}/delete', 'operator', 200, { doc_ids: ['ghost'] }),
    p('GET', '/collections/keep/tier', '/collections/{id}/tier', 'viewer', 200),
    p('POST', '/collections/keep/tier', '/collections/{id}/tier', 'admin', 200, { tiering_policy: 'Memory' }),
  ];
}

function probes(config: Record<string, unknown>): Probe[] {
  const g = (method: string, path: string, needs: Ranked | 'public', ok: number, body?: unknown, template = path): Probe => ({ method, template, path, needs, global: needs !== 'public', tenant: null, ok, ...(body === undefined ? {} : { body }) });
  return [
    g('GET', '/health/live', 'public', 200),
    g('GET', '/health/ready', 'public', 200),
    { ...g('GET', '/health', 'operator', 200), status: true },
    { ...g('GET', '/metrics', 'operator', 200), status: true },
    { method: 'GET', template: '/openapi.json', path: '/openapi.json', needs: 'viewer', tenant: null, ok: 200 },
    { ...g('GET', '/api/v1/metrics/tiers', 'operator', 200), status: true },
    g('POST', '/api/v1/tenants', 'admin', 409, { name: 'acme' }),
    { method: 'GET', template: '/api/v1/tenants', path: '/api/v1/tenants', needs: 'viewer', tenant: null, ok: 200 },
    g('DELETE', '/api/v1/tenants/ghost', 'admin', 404, undefined, '/api/v1/tenants/{tenant}'),
    { method: 'POST', template: '/api/v1/tenants/{tenant}/databases', path: '/api/v1/tenants/acme/databases', body: { name: 'prod' }, needs: 'admin', tenant: 'acme', ok: 409 },
    { method: 'GET', template: '/api/v1/tenants/{tenant}/databases', path: '/api/v1/tenants/acme/databases', needs: 'viewer', tenant: 'acme', ok: 200 },
    { method: 'DELETE', template: '/api/v1/tenants/{tenant}/databases/{database}', path: '/api/v1/tenants/acme/databases/ghost', needs: 'admin', tenant: 'acme', ok: 404 },
    ...collectionProbes('/api/v1', '/api/v1', 'default'),
    ...collectionProbes('/api/v1/tenants/acme/databases/prod', '/api/v1/tenants/{tenant}/databases/{database}', 'acme'),
    g('GET', '/admin/health', 'admin', 200),
    g('GET', '/admin/metrics', 'admin', 200),
    g('GET', '/admin/config/compaction', 'admin', 200),
    g('POST', '/admin/config/compaction', 'admin', 200, config.compaction),
    g('POST', '/admin/collections/keep/compact', 'admin', 200, undefined, '/admin/collections/{id}/compact'),
    g('GET', '/admin/collections/keep/dlq', 'admin', 200, undefined, '/admin/collections/{id}/dlq'),
    g('DELETE', '/admin/collections/keep/dlq', 'admin', 200, undefined, '/admin/collections/{id}/dlq'),
    g('POST', '/admin/collections/keep/dlq/retry', 'admin', 200, undefined, '/admin/collections/{id}/dlq/retry'),
    g('GET', '/admin/circuit-breaker', 'admin', 200),
    g('POST', '/admin/circuit-breaker/reset', 'admin', 200),
    g('GET', '/admin/config/circuit-breaker', 'admin', 200),
    g('POST', '/admin/config/circuit-breaker', 'admin', 200, config['circuit-breaker']),
    g('GET', '/admin/config/dlq', 'admin', 200),
    g('POST', '/admin/config/dlq', 'admin', 200, config.dlq),
    g('GET', '/admin/config/s3-upload', 'admin', 200),
    g('POST', '/admin/config/s3-upload', 'admin', 200, config['s3-upload']),
    g('POST', '/admin/backups', 'admin', 201),
    g('GET', '/admin/backups/00000000-0000-0000-0000-000000000000/files/metadata.db', 'admin', 404, undefined, '/admin/backups/{id}/files/{path}'),
    g('DELETE', '/admin/backups/00000000-0000-0000-0000-000000000000', 'admin', 404, undefined, '/admin/backups/{id}'),
    g('POST', '/admin/api-keys', 'admin', 201, { name: 'matrix', role: 'viewer' }),
    g('GET', '/admin/api-keys', 'admin', 200),
    g('DELETE', '/admin/api-keys/ghost', 'admin', 404, undefined, '/admin/api-keys/{key_id}'),
  ];
}

/** What `caller` must get from `probe`: the status and, for refusals, the error code. */
function expected(probe: Pick<Probe, 'needs' | 'global' | 'tenant' | 'ok' | 'status'>, caller: Caller): { status: number; code?: string } {
  if (probe.needs === 'public') return { status: probe.ok };
  if (caller.role === null) return { status: 401, code: 'UNAUTHENTICATED' };
  if (caller.role === 'monitor' ? probe.status !== true : RANK[caller.role] < RANK[probe.needs]) return { status: 403, code: 'PERMISSION_DENIED' };
  if (caller.tenant !== null && probe.global) return { status: 403, code: 'PERMISSION_DENIED' };
  if (caller.tenant !== null && probe.tenant !== null && probe.tenant !== caller.tenant) return { status: 404, code: 'TENANT_NOT_FOUND' };
  return { status: probe.ok };
}

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
const def = loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
const v1 = ((grpc.loadPackageDefinition(def).akidb as grpc.GrpcObject).collection as grpc.GrpcObject).v1 as grpc.GrpcObject;

describe('permission matrix: every route and method x every kind of caller, auth on', () => {
  const tempDir = useTempDirs('akidb-matrix-');
  let server: ServerProcess;
  let s3: S3TestServer;
  let all: Caller[];
  const admin = { 'x-api-key': KEYS.admin };

  const send = async (method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; json: Record<string, unknown> | null; headers: Headers }> => {
    const res = await fetch(`${server.restUrl}${path}`, { method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.text();
    let json: Record<string, unknown> | null = null;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      json = null;
    }
    return { status: res.status, json, headers: res.headers };
  };

  beforeAll(async () => {
    s3 = await startS3Server({ bucket: 'matrix' });
    server = await startServerProcess({
      dataDir: tempDir(),
      env: {
        AKIDB_AUTH_ENABLED: 'true',
        AKIDB_API_KEYS: `${KEYS.monitor}:monitor,${KEYS.viewer}:viewer,${KEYS.operator}:operator,${KEYS.admin}:admin,${KEYS.acmeOperator}:operator:acme,${KEYS.globexAdmin}:admin:globex`,
        AKIDB_JWT_SECRET: JWT_SECRET,
        AKIDB_S3_BUCKET: 'matrix',
        AKIDB_S3_ENDPOINT: s3.endpoint,
        AKIDB_S3_ACCESS_KEY: s3.credentials.accessKeyId,
        AKIDB_S3_SECRET_KEY: s3.credentials.secretAccessKey,
      },
    });
    all = await callers();
    expect((await send('POST', '/api/v1/tenants', admin, { name: 'acme' })).status).toBe(201);
    expect((await send('POST', '/api/v1/tenants/acme/databases', admin, { name: 'prod' })).status).toBe(201);
    for (const prefix of ['/api/v1', '/api/v1/tenants/acme/databases/prod']) {
      expect((await send('POST', `${prefix}/collections`, admin, { name: 'keep', dimension: 4 })).status).toBe(201);
      expect((await send('POST', `${prefix}/collections/keep/insert`, admin, { doc_id: 'a', vector: V })).status).toBe(200);
    }
  }, 60_000);

  afterAll(async () => {
    if (server) expect(await server.stop('SIGTERM')).toBe(0);
    await s3?.stop();
  });

  it('REST: each route answers each caller as the policy says (401 / 403 / 404 for another tenant / the route answer)', async () => {
    const config: Record<string, unknown> = {};
    for (const section of ['compaction', 'circuit-breaker', 'dlq', 's3-upload']) config[section] = (await send('GET', `/admin/config/${section}`, admin)).json;
    const list = probes(config);

    // The matrix covers every documented route, so a new one cannot be added without a row here.
    const doc = (await send('GET', '/openapi.json', admin)).json as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([t, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${t}`));
    expect(new Set(list.map((p) => `${p.method} ${p.template}`))).toEqual(new Set([...documented, 'GET /openapi.json']));

    const failures: string[] = [];
    let calls = 0;
    for (const probe of list) {
      for (const caller of all) {
        const want = expected(probe, caller);
        const res = await send(probe.method, probe.path, caller.headers, probe.body);
        calls += 1;
        const code = (res.json?.error as { code?: string } | undefined)?.code;
        if (res.status !== want.status || (want.code !== undefined && code !== want.code)) failures.push(`${probe.method} ${probe.path} as ${caller.name}: got ${res.status} ${code ?? ''}, want ${want.status} ${want.code ?? ''}`);
        if (res.status === 401 && res.headers.get('www-authenticate') !== 'Bearer realm="akidb"') failures.push(`${probe.method} ${probe.path} as ${caller.name}: 401 without WWW-Authenticate`);
      }
    }
    expect(failures).toEqual([]);
    expect(calls).toBe(list.length * all.length);
  }, 120_000);

  it('REST: an unknown route is 401 without a credential and 404 with one; a tenant-scoped key lists only its tenant', async () => {
    expect((await send('GET', '/api/v1/nope', {})).status).toBe(401);
    expect((await send('GET', '/api/v1/nope', admin)).status).toBe(404);
    const acme = (await send('GET', '/api/v1/tenants', { 'x-api-key': KEYS.acmeOperator })).json as { tenants: { name: string }[] };
    expect(acme.tenants.map((t) => t.name)).toEqual(['acme']);
    const globex = (await send('GET', '/api/v1/tenants', { 'x-api-key': KEYS.globexAdmin })).json as { tenants: { name: string }[] };
    expect(globex.tenants).toEqual([]);
    const everyone = (await send('GET', '/api/v1/tenants', admin)).json as { tenants: { name: string }[] };
    expect(everyone.tenants.map((t) => t.name).sort()).toEqual(['acme', 'default']);
    // Another tenant's collection by its UUID, through the key's own tenant: still not found.
    const acmeKeep = (await send('GET', '/api/v1/tenants/acme/databases/prod/collections/keep', admin)).json as { collection_id: string };
    const viaDefault = await send('GET', `/api/v1/collections/${acmeKeep.collection_id}`, { 'x-api-key': KEYS.operator });
    expect(viaDefault.status).toBe(404);
  });

  it('REST: a created key works at once with its role and tenant; revoked, it is refused on the next request', async () => {
    const created = await send('POST', '/admin/api-keys', admin, { name: 'ci', role: 'operator', tenant: 'acme' });
    expect(created.status).toBe(201);
    const key = created.json!.key as string;
    expect(key).toMatch(/^aki_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const listed = JSON.stringify((await send('GET', '/admin/api-keys', admin)).json);
    expect(listed).toContain(created.json!.key_id as string);
    expect(listed).not.toContain(key);
    expect((await send('POST', '/api/v1/tenants/acme/databases/prod/collections/keep/insert', { 'x-api-key': key }, { doc_id: 'k', vector: V })).status).toBe(200);
    expect((await send('POST', '/api/v1/collections/keep/insert', { 'x-api-key': key }, { doc_id: 'k', vector: V })).status).toBe(404);
    expect((await send('DELETE', `/admin/api-keys/${created.json!.key_id as string}`, admin)).status).toBe(204);
    expect((await send('GET', '/api/v1/tenants/acme/databases/prod/collections/keep', { 'x-api-key': key })).status).toBe(401);
    expect((await send('DELETE', `/admin/api-keys/${created.json!.key_id as string}`, admin)).status).toBe(404);
    // No key or token ever reaches the log.
    const logs = JSON.stringify(server.logs);
    for (const secret of [key, ...Object.values(KEYS), JWT_SECRET]) expect(logs).not.toContain(secret);
  });

  it('gRPC: each method answers each caller as the policy says', async () => {
    const addr = server.grpcAddress;
    const clients = {
      CollectionService: new (v1.CollectionService as grpc.ServiceClientConstructor)(addr, grpc.credentials.createInsecure()),
      CollectionManagementService: new (v1.CollectionManagementService as grpc.ServiceClientConstructor)(addr, grpc.credentials.createInsecure()),
    };
    const methods: { service: keyof typeof clients; method: string; req: object; needs: Ranked; ok: grpc.status }[] = [
      { service: 'CollectionService', method: 'Insert', req: { collection: 'keep', doc_id: 'g', vector: V }, needs: 'operator', ok: grpc.status.OK },
      { service: 'CollectionService', method: 'Upsert', req: { collection: 'keep', documents: [{ doc_id: 'g', vector: V }] }, needs: 'operator', ok: grpc.status.OK },
      { service: 'CollectionService', method: 'Query', req: { collection: 'keep', query_vector: V, top_k: 1 }, needs: 'viewer', ok: grpc.status.OK },
      { service: 'CollectionService', method: 'Get', req: { collection: 'keep', doc_ids: ['a'] }, needs: 'viewer', ok: grpc.status.OK },
      { service: 'CollectionService', method: 'Delete', req: { collection: 'keep', doc_ids: ['ghost'] }, needs: 'operator', ok: grpc.status.OK },
      { service: 'CollectionService', method: 'Describe', req: { collection: 'keep' }, needs: 'viewer', ok: grpc.status.OK },
      { service: 'CollectionManagementService', method: 'CreateCollection', req: { name: 'keep', dimension: 4 }, needs: 'operator', ok: grpc.status.ALREADY_EXISTS },
      { service: 'CollectionManagementService', method: 'ListCollections', req: {}, needs: 'viewer', ok: grpc.status.OK },
      { service: 'CollectionManagementService', method: 'GetCollection', req: { collection: 'keep' }, needs: 'viewer', ok: grpc.status.OK },
      { service: 'CollectionManagementService', method: 'DeleteCollection', req: { collection: 'ghost' }, needs: 'operator', ok: grpc.status.NOT_FOUND },
    ];
    // Every method the proto declares has a row.
    const declared = Object.keys(clients).flatMap((s) => Object.keys((v1[s] as grpc.ServiceClientConstructor).service).map((m) => `${s}/${m}`));
    expect(new Set(methods.map((m) => `${m.service}/${m.method}`))).toEqual(new Set(declared));

    const toGrpc: Record<number, grpc.status> = { 401: grpc.status.UNAUTHENTICATED, 403: grpc.status.PERMISSION_DENIED, 404: grpc.status.NOT_FOUND };
    const failures: string[] = [];
    try {
      for (const m of methods) {
        for (const caller of all) {
          const md = new grpc.Metadata();
          for (const [k, v] of Object.entries(caller.headers)) md.set(k, v);
          const want = expected({ needs: m.needs, tenant: 'default', ok: 0 }, caller);
          const wantStatus = want.status === 0 ? m.ok : toGrpc[want.status]!;
          const got = await new Promise<{ code: grpc.status; akiCode: string | undefined }>((resolve) => {
            (clients[m.service] as unknown as Record<string, (r: object, md: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void>)[m.method]!(m.req, md, (err) => resolve({ code: err ? err.code : grpc.status.OK, akiCode: err?.metadata.get('akidb-error-code')[0] as string | undefined }));
          });
          if (got.code !== wantStatus || (want.code !== undefined && got.akiCode !== want.code)) failures.push(`${m.method} as ${caller.name}: got ${grpc.status[got.code]} ${got.akiCode ?? ''}, want ${grpc.status[wantStatus]} ${want.code ?? ''}`);
        }
      }
    } finally {
      for (const c of Object.values(clients)) c.close();
    }
    expect(failures).toEqual([]);
  }, 60_000);
});
