import fs from 'node:fs';
import { Agent, request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startS3Server, type S3TestServer } from './s3-server.js';
import { startServerProcess, type ServerProcess } from './server-process.js';

/** Dimension of every collection a FuzzServer holds. */
export const DIMENSION = 8;
/** A vector every collection of a FuzzServer accepts. */
export const VALID_VECTOR = [0.5, -0.25, 1, 2, -3, 0.125, 4, -1];
export const JSON_TYPE = 'application/json';

/** The two scopes a FuzzServer fills: each holds a `keep` collection fuzzing must leave untouched and a `sandbox` it may change. */
export const SCOPES = [
  { prefix: '/api/v1', tenant: 'default', database: 'default' },
  { prefix: '/api/v1/tenants/acme/databases/prod', tenant: 'acme', database: 'prod' },
] as const;

/** The documents of every `keep` collection. */
export const KEEP_DOCS = Array.from({ length: 20 }, (_, i) => ({
  doc_id: `k${i}`,
  vector: VALID_VECTOR.map((x, j) => (j === i % DIMENSION ? x + i : x)),
  metadata: { i, tag: i % 2 === 0 ? 'even' : 'odd', nested: { deep: [i, { x: `v${i}` }] } },
}));

/** A JSON schema as /openapi.json prints it (OpenAPI 3.0: `nullable` instead of a "null" type). */
export interface Schema {
  type?: string | string[];
  nullable?: boolean;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  items?: Schema;
  anyOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
}

/** One operation of /openapi.json: method, path template (`{name}` parameters) and JSON body schema. */
export interface Route {
  method: string;
  template: string;
  params: string[];
  body: Schema | null;
}

/** An HTTP answer: status, raw text and the parsed JSON body (undefined when it is not JSON). */
export interface Answer {
  status: number;
  text: string;
  body: unknown;
}

/** One request; its path is sent exactly as given (no client-side normalisation). */
export interface PlainRequest {
  method: string;
  path: string;
  body?: string | Buffer;
  contentType?: string;
}

/** Send one request through `agent`; a pooled socket the server had closed is retried once on a fresh one. */
export function sendRequest(port: number, agent: Agent, c: PlainRequest, retry = true): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    const payload = c.body === undefined ? undefined : Buffer.isBuffer(c.body) ? c.body : Buffer.from(c.body, 'utf8');
    if (c.contentType !== undefined) headers['content-type'] = c.contentType;
    if (payload !== undefined) headers['content-length'] = String(payload.length);
    const req = request({ host: '127.0.0.1', port, method: c.method, path: c.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text.length > 0 ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, body });
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // A pooled keep-alive socket the server closed after its previous answer: a client artifact.
      if (retry && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) sendRequest(port, agent, c, false).then(resolve, reject);
      else reject(err);
    });
    req.end(payload);
  });
}

/** The `keep` collection of one scope, as raw answer texts: equal snapshots mean byte-for-byte equal reads. */
export interface Snapshot {
  /** GET /collections/keep: document_count and indexing.last_lsn (a write of any kind moves the LSN). */
  count: unknown;
  lastLsn: unknown;
  /** GET /collections/keep/docs/{doc_id} for every KEEP_DOCS id, as sent. */
  docs: string[];
  /** A top-50 query with vectors and metadata, as sent minus its latency_ms. */
  ranking: string;
}

/** A real server process with an s3rver bucket and two scopes of seeded data, for malformed-input tests. */
export interface FuzzServer {
  server: ServerProcess;
  s3: S3TestServer;
  /** Every operation /openapi.json lists. */
  routes: Route[];
  /** `keep` in every scope (SCOPES order), taken right after seeding. */
  before: Snapshot[];
  /** One request over the fixture's keep-alive agent. */
  send: (c: PlainRequest) => Promise<Answer>;
  /** One request with `body` as JSON. */
  call: (method: string, p: string, body?: unknown) => Promise<Answer>;
  /** `keep` in every scope now. */
  snapshot: () => Promise<Snapshot[]>;
  /** Stop the server (resolves with its exit code), then the S3 server, and remove the data directory. */
  stop: () => Promise<number | string>;
}

export interface FuzzServerOptions {
  /** Bucket name, also used in the data directory's name. */
  bucket: string;
  /** A config.toml for the server (for options without an env variable, like `[server] timeout_seconds`). */
  configToml?: string;
  /** Concurrent sockets of the keep-alive agent behind `send` (default 8). */
  maxSockets?: number;
}

/**
 * Start s3rver and `akidb serve` with it as object store (so the tier and dead-letter-queue admin
 * routes serve), create tenant `acme` / database `prod`, fill `keep` and `sandbox` in both scopes,
 * snapshot `keep` and read /openapi.json. Throws, naming the step, when any of it fails.
 */
export async function startFuzzServer(opts: FuzzServerOptions): Promise<FuzzServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `akidb-${opts.bucket}-`));
  const agent = new Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 8 });
  let s3: S3TestServer | undefined;
  let server: ServerProcess | undefined;
  const cleanup = async (): Promise<number | string> => {
    agent.destroy();
    const code = server ? await server.stop('SIGTERM') : 0;
    await s3?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    return code;
  };
  try {
    s3 = await startS3Server({ bucket: opts.bucket });
    const env: Record<string, string> = { AKIDB_S3_BUCKET: opts.bucket, AKIDB_S3_ENDPOINT: s3.endpoint, AKIDB_S3_ACCESS_KEY: s3.credentials.accessKeyId, AKIDB_S3_SECRET_KEY: s3.credentials.secretAccessKey };
    if (opts.configToml !== undefined) {
      const file = path.join(dir, 'config.toml');
      fs.writeFileSync(file, opts.configToml);
      env.AKIDB_CONFIG = file;
    }
    server = await startServerProcess({ dataDir: path.join(dir, 'data'), env });
    const port = server.restPort;
    const send = (c: PlainRequest): Promise<Answer> => sendRequest(port, agent, c);
    const call = (method: string, p: string, body?: unknown): Promise<Answer> => send({ method, path: p, ...(body === undefined ? {} : { body: JSON.stringify(body), contentType: JSON_TYPE }) });
    const must = async (want: number, method: string, p: string, body?: unknown): Promise<Answer> => {
      const res = await call(method, p, body);
      if (res.status !== want) throw new Error(`seeding: ${method} ${p} answered ${res.status}, not ${want}: ${res.text.slice(0, 300)}`);
      return res;
    };
    const snapshotOf = async (prefix: string): Promise<Snapshot> => {
      const info = (await must(200, 'GET', `${prefix}/collections/keep`)).body as { document_count: unknown; indexing: { last_lsn: unknown } };
      const docs = await Promise.all(KEEP_DOCS.map(async (d) => (await call('GET', `${prefix}/collections/keep/docs/${d.doc_id}`)).text));
      const q = await call('POST', `${prefix}/collections/keep/query`, { query_vector: VALID_VECTOR, top_k: 50, include_vector: true, include_metadata: true });
      return { count: info.document_count, lastLsn: info.indexing.last_lsn, docs, ranking: `${q.status} ${q.text.replace(/,?"latency_ms":[-+0-9.eE]+/, '')}` };
    };
    const snapshot = (): Promise<Snapshot[]> => Promise.all(SCOPES.map((s) => snapshotOf(s.prefix)));

    await must(201, 'POST', '/api/v1/tenants', { name: 'acme' });
    await must(201, 'POST', '/api/v1/tenants/acme/databases', { name: 'prod' });
    for (const s of SCOPES) {
      for (const name of ['keep', 'sandbox']) await must(201, 'POST', `${s.prefix}/collections`, { name, dimension: DIMENSION, metric: 'l2' });
      await must(200, 'POST', `${s.prefix}/collections/keep/upsert`, { documents: KEEP_DOCS });
      await must(200, 'POST', `${s.prefix}/collections/sandbox/insert`, { doc_id: 'sandbox-doc', vector: VALID_VECTOR });
    }
    const before = await snapshot();
    if (before.some((b) => b.count !== KEEP_DOCS.length)) throw new Error(`seeding: keep holds ${before.map((b) => String(b.count)).join(' / ')} documents, not ${KEEP_DOCS.length}`);

    const doc = (await must(200, 'GET', '/openapi.json')).body as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Schema }> } }>> };
    const routes = Object.entries(doc.paths).flatMap(([template, ops]) =>
      Object.entries(ops).map(([method, op]) => ({
        method: method.toUpperCase(),
        template,
        params: [...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!),
        body: op.requestBody?.content[JSON_TYPE]?.schema ?? null,
      })),
    );
    return { server, s3, routes, before, send, call, snapshot, stop: cleanup };
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
}

/**
 * A FuzzServer started before the calling block's tests and stopped after them (which fails the
 * block unless the server exits 0 on SIGTERM). The getter throws until it has started.
 */
export function useFuzzServer(opts: FuzzServerOptions): () => FuzzServer {
  let fuzz: FuzzServer | undefined;
  beforeAll(async () => {
    fuzz = await startFuzzServer(opts);
  });
  afterAll(async () => {
    const code = await fuzz?.stop();
    if (code !== undefined && code !== 0) throw new Error(`the server exited with ${code} on SIGTERM; stderr: ${fuzz!.server.stderr().slice(-2000)}`);
  });
  return () => {
    if (!fuzz) throw new Error('the fuzz server has not started');
    return fuzz;
  };
}
