import type { TieringPolicy } from '../../catalog/catalog.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatus } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { TextMapGetter } from '@opentelemetry/api';
import { AkiError, ERROR_CODES, type ErrorCode } from '../../errors.js';
import { DEFAULT_DATABASE, DEFAULT_TENANT, type AkiDB, type CreateCollectionSpec } from '../../engine/database.js';
import type { Collection, DocumentInput, QueryRequest as EngineQuery } from '../../engine/collection.js';
import { QUANTIZATIONS, type Quantization } from '../../index/hnsw-index.js';
import { isMetric } from '../../index/metric.js';
import type { Filter, Metadata } from '../../index/filter.js';
import { describeCollection, resolveCollection, toDocumentInput, type CollectionView } from '../collection-api.js';
import { credentialOf, type Authenticator } from '../../security/authenticator.js';
import { GRPC_METHODS } from '../../security/permissions.js';
import { endServerSpan, runInContext, startServerSpan } from '../../observability/tracing.js';
import { decodeDeleteRequest, decodeInsertRequest, decodeQueryRequest, decodeUpsertRequest, type DecodedDelete, type DecodedInsert, type DecodedQuery, type DecodedUpsert } from './request-decoders.js';

/** What `startGrpcServer` needs. */
export interface GrpcServerOptions {
  db: AkiDB;
  host: string;
  /** 0 picks a free port; the handle says which. */
  port: number;
  logger: Logger;
  version: string;
  /** Longest a call may run before it is answered DEADLINE_EXCEEDED (REQUEST_TIMEOUT); 0 disables. A client's shorter deadline wins. */
  timeoutMs: number;
  /** Called once per answered call with the full method name (`akidb.collection.v1.CollectionService/Query`), the gRPC status name and the seconds it took. */
  onRequest?: (method: string, code: string, seconds: number) => void;
  /** Health status right after binding (default true); a server that is not yet ready passes false and calls setServing later. */
  serving?: boolean;
  /** Credentials, roles, tenants and rate limits (the same as REST's); without it every call is let in. */
  auth?: Authenticator | null;
  /** TLS certificate and key (PEM); insecure transport without. */
  tls?: { cert: Buffer; key: Buffer } | null;
}

/** A running gRPC server. */
export interface GrpcServerHandle {
  port: number;
  /** Health status of the server ("") and of both AkiDB services: SERVING or NOT_SERVING. Calls are still answered either way. */
  setServing(serving: boolean): void;
  /** Stop taking calls, let in-flight ones finish for up to `graceMs`, then cut them. Idempotent. */
  shutdown(graceMs: number): Promise<void>;
}

const PACKAGE = 'akidb.collection.v1';
const COLLECTION_SERVICE = `${PACKAGE}.CollectionService`;
const MANAGEMENT_SERVICE = `${PACKAGE}.CollectionManagementService`;
/** proto/ at the repository root: three levels up from src/api/grpc and from dist/api/grpc alike. */
const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
const HEALTH_PROTO_DIR = path.resolve(path.dirname(healthProtoPath), '../..');
const MAX_RECEIVE_BYTES = 128 * 1024 * 1024;
const MAX_DETAILS_CHARS = 4096;

let packageDefinition: PackageDefinition | undefined;

/** The proto, parsed once per process (AkiDB's services plus grpc.health.v1, so reflection lists it too). */
export function loadAkiProto(): PackageDefinition {
  packageDefinition ??= loadSync(['akidb/collection/v1/collection.proto', 'health/v1/health.proto'], {
    keepCase: true,
    longs: Number,
    defaults: true,
    oneofs: true,
    includeDirs: [PROTO_DIR, HEALTH_PROTO_DIR],
  });
  return packageDefinition;
}

// ------------------------------------------------------------------ wire shapes: what proto-loader decodes and encodes

/** google.protobuf.Value as proto-loader encodes it (protobufjs's camelCase well-known types, even with keepCase). */
export interface WireValue {
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct;
  listValue?: { values: WireValue[] };
}

/** google.protobuf.Struct as proto-loader encodes it. */
export interface WireStruct {
  fields: Record<string, WireValue>;
}

interface Scoped {
  tenant: string;
  database: string;
}

interface CollectionScoped extends Scoped {
  collection: string;
}

interface GetRequest extends CollectionScoped {
  doc_ids: string[];
}

interface WireIndexParams {
  m?: number;
  ef_construction?: number;
  ef_search?: number;
  quantization?: string;
}

interface CreateCollectionRequest extends Scoped {
  name: string;
  dimension: number;
  metric?: string;
  index: WireIndexParams | null;
  tiering_policy?: string;
}

interface WireDocumentOut {
  doc_id: string;
  external_id: string;
  vector: number[];
  metadata: WireStruct | null;
  text?: string;
}

interface WireMatchOut {
  doc_id: string;
  external_id: string;
  score: number;
  distance: number;
  metadata: WireStruct | null;
  vector: number[];
}

// ------------------------------------------------------------------ JSON -> Struct (answers; requests are decoded in request-decoders.ts)

/** A plain JSON object as a google.protobuf.Struct. */
export function jsonToStruct(obj: Readonly<Record<string, unknown>>): WireStruct {
  const fields: Record<string, WireValue> = {};
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    if (value === undefined) continue;
    fields[key] = jsonToValue(value);
  }
  return { fields };
}

function jsonToValue(value: unknown): WireValue {
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      if (value === null) return { nullValue: 0 };
      if (Array.isArray(value)) return { listValue: { values: value.map((x) => (x === undefined ? { nullValue: 0 } : jsonToValue(x))) } };
      return { structValue: jsonToStruct(value as Record<string, unknown>) };
    default:
      return { nullValue: 0 };
  }
}

function metadataToStruct(m: Metadata | null | undefined): WireStruct | null {
  return m === null || m === undefined ? null : jsonToStruct(m);
}

// ------------------------------------------------------------------ the one error translation point

/** A request that failed to decode; the call wrapper answers it with `error` (INVALID_ARGUMENT). */
class UndecodedRequest {
  constructor(readonly error: AkiError) {}
}

function toServiceError(err: AkiError): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  metadata.set('akidb-error-code', err.code);
  metadata.set('akidb-error-details', detailsJson(err.details));
  const status = ERROR_CODES[err.code].grpc;
  return Object.assign(new Error(err.message), { code: grpc.status[status], details: err.message, metadata });
}

/** Details as JSON that fits in a header: ASCII only (non-ASCII escaped), bounded. */
function detailsJson(details: Readonly<Record<string, unknown>>): string {
  let json: string;
  try {
    json = JSON.stringify(details) ?? '{}';
  } catch {
    json = '{}';
  }
  if (json.length > MAX_DETAILS_CHARS) json = '{"truncated":true}';
  return json.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function codeNameOf(code: ErrorCode): string {
  return ERROR_CODES[code].grpc;
}

type Handler<Req, Res> = (req: Req, startedAt: number) => Promise<Res>;

interface CallWrapperOptions {
  logger: Logger;
  timeoutMs: number;
  onRequest: ((method: string, code: string, seconds: number) => void) | undefined;
  auth: Authenticator | null;
  /** Unary calls not yet answered; a shutdown waits for these, not for open health Watch streams. */
  inflight: { count: number; onIdle: (() => void) | null };
}

let requestCounter = 0;

/**
 * Wrap a handler into a grpc-js unary handler: the only place errors become gRPC statuses.
 * AkiError → its table status, message, and `akidb-error-code` / `akidb-error-details` trailers;
 * anything else → INTERNAL with a generic message, logged. The call is answered
 * DEADLINE_EXCEEDED (REQUEST_TIMEOUT) at the server timeout or the client's deadline, whichever
 * comes first; the handler is not interrupted, so a write answered so may still be applied.
 */
function unary<Req, Res>(method: string, handler: Handler<Req, Res>, o: CallWrapperOptions): grpc.handleUnaryCall<Req | UndecodedRequest, Res> {
  return (call, callback) => {
    const startedAt = performance.now();
    const reqId = ++requestCounter;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    o.inflight.count += 1;
    // Null while tracing is off. The caller's W3C traceparent (metadata) is continued.
    const server = startServerSpan(method, call.metadata, METADATA_GETTER, () => ({ 'rpc.system': 'grpc', 'rpc.service': method.slice(0, method.indexOf('/')), 'rpc.method': method.slice(method.indexOf('/') + 1), 'akidb.request_id': reqId }));

    const finish = (err: unknown, res: Res | null): void => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      o.inflight.count -= 1;
      if (o.inflight.count === 0) o.inflight.onIdle?.();
      let codeName = 'OK';
      let akiCode: string | undefined;
      if (err === null) {
        callback(null, res);
      } else {
        let aki: AkiError;
        if (err instanceof AkiError) {
          aki = err;
          if (codeNameOf(aki.code) === 'INTERNAL' || codeNameOf(aki.code) === 'DATA_LOSS') o.logger.error({ reqId, method, code: aki.code, details: aki.details, err: aki.cause ?? aki }, 'gRPC call failed');
        } else {
          o.logger.error({ reqId, method, err }, 'gRPC call failed with an unexpected error');
          aki = new AkiError('INTERNAL');
        }
        akiCode = aki.code;
        codeName = codeNameOf(aki.code);
        callback(toServiceError(aki), null);
      }
      if (call.cancelled) codeName = 'CANCELLED';
      if (server) endServerSpan(server.span, GRPC_SERVER_FAULTS.has(codeName), { 'rpc.grpc.status_code': grpc.status[codeName as keyof typeof grpc.status], ...(akiCode !== undefined ? { 'error.type': akiCode } : {}) });
      const ms = performance.now() - startedAt;
      if (o.logger.isLevelEnabled('debug')) {
        const r = call.request as Partial<CollectionScoped> | UndecodedRequest;
        const scope = r instanceof UndecodedRequest ? {} : { tenant: r.tenant, database: r.database, collection: r.collection };
        o.logger.debug({ reqId, clientRequestId: call.metadata.get('x-request-id')[0], method, ...scope, code: codeName, akiCode, ms: Math.round(ms * 1000) / 1000 }, 'gRPC call');
      }
      if (o.onRequest) {
        try {
          o.onRequest(method, codeName, ms / 1000);
        } catch (hookErr) {
          o.logger.error({ reqId, method, err: hookErr }, 'onRequest hook failed');
        }
      }
    };

    const request = call.request;
    const deadline = call.getDeadline();
    const clientMs = deadline instanceof Date ? deadline.getTime() - Date.now() : deadline - Date.now();
    const serverMs = o.timeoutMs > 0 ? o.timeoutMs : Infinity;
    const budget = Math.min(clientMs, serverMs);
    if (budget <= 0) {
      finish(timeoutError(clientMs < serverMs, o.timeoutMs), null);
      return;
    }
    if (budget !== Infinity) timer = setTimeout(() => finish(timeoutError(clientMs < serverMs, o.timeoutMs), null), Math.min(budget, 2 ** 31 - 1));
    const run = async (): Promise<Res> => {
      // Credentials first: an unauthenticated caller learns nothing, not even that its bytes were bad.
      const auth = o.auth;
      if (auth) {
        const md = call.metadata;
        const peer = `ip:${call.getPeer().replace(/:\d+$/, '').replace(/^\[|\]$/g, '')}`;
        const principal = await auth.authenticate(credentialOf(md.get('x-api-key')[0], md.get('authorization')[0])).catch((err: unknown) => {
          if (err instanceof AkiError && err.code === 'UNAUTHENTICATED') auth.limit(peer);
          throw err;
        });
        auth.limit(principal.kind === 'anonymous' ? peer : principal.id);
        if (request instanceof UndecodedRequest) throw request.error;
        const rule = GRPC_METHODS[method];
        if (!rule) throw new AkiError('PERMISSION_DENIED', { method }, 'This method has no entry in the permission table');
        auth.authorize(principal, rule, scopeOf(request as Partial<Scoped> as Scoped).tenant);
      } else if (request instanceof UndecodedRequest) throw request.error;
      return handler(request, startedAt);
    };
    (server ? runInContext(server.context, run) : run()).then(
      (res) => finish(null, res),
      (err: unknown) => finish(err, null),
    );
  };
}

/** gRPC statuses that are the server's fault: only these mark a call's span ERROR (OpenTelemetry's RPC conventions). */
const GRPC_SERVER_FAULTS = new Set(['UNKNOWN', 'DEADLINE_EXCEEDED', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS']);

/** Reads W3C trace headers from call metadata. */
const METADATA_GETTER: TextMapGetter<grpc.Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const values = md.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};

function timeoutError(clientDeadline: boolean, timeoutMs: number): AkiError {
  return clientDeadline
    ? new AkiError('REQUEST_TIMEOUT', { deadline: 'client' }, "The request did not finish within the client's deadline")
    : new AkiError('REQUEST_TIMEOUT', { deadline: 'server', timeoutMs }, `The request did not finish within the server timeout of ${timeoutMs} ms`);
}

/** Requests with vectors or Structs skip protobufjs (see request-decoders.ts). */
const FAST_DECODERS: Record<string, (buf: Buffer) => unknown> = {
  Insert: decodeInsertRequest,
  Upsert: decodeUpsertRequest,
  Query: decodeQueryRequest,
  Delete: decodeDeleteRequest,
};

/**
 * The server-side definition of a service: proto-loader's, with the fast decoders swapped in
 * and every request decoder made unable to throw (grpc-js would answer INTERNAL), so bad bytes
 * reach the call wrapper and come back INVALID_ARGUMENT.
 */
function serverDefinition(pkg: PackageDefinition, service: string, fast: Record<string, (buf: Buffer) => unknown>): grpc.ServiceDefinition {
  const def = pkg[service] as unknown as Record<string, grpc.MethodDefinition<unknown, unknown>>;
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(def)) {
    const decode: (buf: Buffer) => unknown = fast[name] ?? m.requestDeserialize;
    out[name] = {
      ...m,
      requestDeserialize: (buf: Buffer) => {
        try {
          return decode(buf);
        } catch (err) {
          if (err instanceof AkiError) return new UndecodedRequest(err);
          return new UndecodedRequest(new AkiError('INVALID_ARGUMENT', { reason: err instanceof Error ? err.message : String(err) }, 'The request message could not be decoded'));
        }
      },
    };
  }
  return out;
}

// ------------------------------------------------------------------ handlers

function scopeOf(req: Scoped): { tenant: string; database: string } {
  return { tenant: req.tenant || DEFAULT_TENANT, database: req.database || DEFAULT_DATABASE };
}

function requireCollectionField(req: CollectionScoped): string {
  if (!req.collection) throw new AkiError('INVALID_ARGUMENT', { field: 'collection' }, 'collection is required: a collection_id or a name');
  return req.collection;
}

async function collectionOf(db: AkiDB, req: CollectionScoped): Promise<Collection> {
  const idOrName = requireCollectionField(req);
  const { tenant, database } = scopeOf(req);
  return resolveCollection(db, tenant, database, idOrName);
}

function sinceMs(startedAt: number): number {
  return performance.now() - startedAt;
}

function collectionHandlers(db: AkiDB) {
  return {
    Insert: async (req: DecodedInsert, startedAt: number) => {
      const c = await collectionOf(db, req);
      const doc = toDocumentInput(req, 0);
      const { lsn } = await c.upsert([doc]);
      return { doc_id: doc.id, lsn, latency_ms: sinceMs(startedAt) };
    },
    Upsert: async (req: DecodedUpsert, startedAt: number) => {
      const c = await collectionOf(db, req);
      const docs: DocumentInput[] = req.documents.map((d, i) => toDocumentInput(d, i));
      const { upserted, lsn } = await c.upsert(docs);
      return { upserted, doc_ids: docs.map((d) => d.id), lsn, latency_ms: sinceMs(startedAt) };
    },
    Query: async (req: DecodedQuery, startedAt: number) => {
      const c = await collectionOf(db, req);
      const q: EngineQuery = { vector: req.query_vector, topK: req.top_k, includeVector: req.include_vector ?? false, includeMetadata: req.include_metadata ?? true };
      if (req.filter) q.filter = req.filter;
      if (req.ef_search !== undefined) q.efSearch = req.ef_search;
      const found = c.querySync(q);
      const matches = new Array<WireMatchOut>(found.length);
      for (let i = 0; i < found.length; i++) {
        const m = found[i]!;
        matches[i] = { doc_id: m.id, external_id: m.id, score: m.score, distance: m.distance, metadata: metadataToStruct(m.metadata), vector: m.vector ?? [] };
      }
      return { matches, latency_ms: sinceMs(startedAt) };
    },
    Get: async (req: GetRequest) => {
      const c = await collectionOf(db, req);
      const docs = await c.get(req.doc_ids);
      const documents: WireDocumentOut[] = [];
      const missing_ids: string[] = [];
      docs.forEach((d, i) => {
        if (d === null) {
          missing_ids.push(req.doc_ids[i]!);
          return;
        }
        const out: WireDocumentOut = { doc_id: d.id, external_id: d.id, vector: d.vector, metadata: metadataToStruct(d.metadata) };
        if (d.text !== null) out.text = d.text;
        documents.push(out);
      });
      return { documents, missing_ids };
    },
    Delete: async (req: DecodedDelete, startedAt: number) => {
      const c = await collectionOf(db, req);
      const filter = req.filter ?? undefined;
      if (req.doc_ids.length === 0 && filter === undefined) throw new AkiError('INVALID_ARGUMENT', {}, 'Delete needs doc_ids, a filter, or both');
      const spec: { ids?: string[]; filter?: Filter } = {};
      if (req.doc_ids.length > 0) spec.ids = req.doc_ids;
      if (filter !== undefined) spec.filter = filter;
      const { deleted, lsn } = await c.delete(spec);
      return { deleted, lsn, latency_ms: sinceMs(startedAt) };
    },
    Describe: async (req: CollectionScoped) => describeCollection((await collectionOf(db, req))),
  };
}

const TIERING_POLICIES: readonly string[] = ['Memory', 'MemoryS3', 'S3Only'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/; // as collection-api.ts

function managementHandlers(db: AkiDB) {
  return {
    CreateCollection: async (req: CreateCollectionRequest) => {
      const { tenant, database } = scopeOf(req);
      const policy = req.tiering_policy || undefined;
      if (policy !== undefined && !TIERING_POLICIES.includes(policy)) throw new AkiError('INVALID_ARGUMENT', { tiering_policy: policy }, 'tiering_policy must be Memory, MemoryS3 or S3Only');
      const spec: CreateCollectionSpec = { name: req.name, dimension: req.dimension };
      if (policy !== undefined) spec.tieringPolicy = policy as TieringPolicy;
      if (req.metric) {
        if (!isMetric(req.metric)) throw new AkiError('INVALID_METRIC', { metric: req.metric });
        spec.metric = req.metric;
      }
      if (req.index) {
        const ix: NonNullable<CreateCollectionSpec['index']> = {};
        if (req.index.m !== undefined) ix.m = req.index.m;
        if (req.index.ef_construction !== undefined) ix.efConstruction = req.index.ef_construction;
        if (req.index.ef_search !== undefined) ix.efSearch = req.index.ef_search;
        if (req.index.quantization) {
          if (!(QUANTIZATIONS as readonly string[]).includes(req.index.quantization)) throw new AkiError('INVALID_INDEX_PARAMS', { quantization: req.index.quantization }, 'quantization must be f32, f16 or i8');
          ix.quantization = req.index.quantization as Quantization;
        }
        spec.index = ix;
      }
      return describeCollection((await db.database(tenant, database).createCollection(spec)));
    },
    ListCollections: async (req: Scoped) => {
      const { tenant, database } = scopeOf(req);
      const records = await db.database(tenant, database).listCollections();
      const collections: CollectionView[] = [];
      for (const rec of records) {
        try {
          collections.push(describeCollection((await db.getCollectionById(rec.collectionId))));
        } catch (err) {
          // Dropped between the listing and the open: not part of the answer.
          if (!(err instanceof AkiError && err.code === 'COLLECTION_NOT_FOUND')) throw err;
        }
      }
      return { collections };
    },
    GetCollection: async (req: CollectionScoped) => describeCollection((await collectionOf(db, req))),
    DeleteCollection: async (req: CollectionScoped) => {
      const idOrName = requireCollectionField(req);
      const { tenant, database } = scopeOf(req);
      const scope = db.database(tenant, database);
      // From the catalog alone: opening a collection (WAL replay, index load) only to drop it is waste.
      const id = idOrName.toLowerCase();
      const byId = UUID.test(id) ? (await scope.listCollections()).find((r) => r.collectionId === id) : undefined;
      await scope.dropCollection(byId ? byId.name : idOrName);
      return {};
    },
  };
}

function implementation(service: string, handlers: Record<string, Handler<never, unknown>>, o: CallWrapperOptions): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, h] of Object.entries(handlers)) impl[name] = unary(`${service}/${name}`, h as Handler<unknown, unknown>, o);
  return impl;
}

// ------------------------------------------------------------------ the server

/** Start AkiDB's gRPC server (TLS when given a certificate) with health checking and reflection; resolves once bound and SERVING. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<GrpcServerHandle> {
  // grpc-js logs to stderr in its own format; send its errors through our logger instead.
  grpc.setLogger({ error: (...args: unknown[]) => opts.logger.warn({ component: 'grpc-js' }, args.map(String).join(' ')) });
  grpc.setLogVerbosity(grpc.logVerbosity.ERROR);
  const pkg = loadAkiProto();
  // channelz bookkeeping costs every call; nothing here reads it.
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES, 'grpc.enable_channelz': 0 });
  const inflight: CallWrapperOptions['inflight'] = { count: 0, onIdle: null };
  const wrap: CallWrapperOptions = { logger: opts.logger, timeoutMs: opts.timeoutMs, onRequest: opts.onRequest, inflight, auth: opts.auth ?? null };
  server.addService(serverDefinition(pkg, COLLECTION_SERVICE, FAST_DECODERS), implementation(COLLECTION_SERVICE, collectionHandlers(opts.db), wrap));
  server.addService(serverDefinition(pkg, MANAGEMENT_SERVICE, {}), implementation(MANAGEMENT_SERVICE, managementHandlers(opts.db), wrap));

  const healthNames = ['', COLLECTION_SERVICE, MANAGEMENT_SERVICE];
  const initial: Record<string, ServingStatus> = {};
  for (const n of healthNames) initial[n] = 'NOT_SERVING';
  const health = new HealthImplementation(initial);
  health.addToServer(server);
  new ReflectionService(pkg).addToServer(server);

  const address = opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    const credentials = opts.tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }], false) : grpc.ServerCredentials.createInsecure();
    server.bindAsync(address, credentials, (err, bound) => {
      if (!err) return resolve(bound);
      server.forceShutdown();
      reject(new Error(`gRPC server could not bind ${address}: ${err.message}`, { cause: err }));
    });
  });

  const setServing = (serving: boolean): void => {
    for (const n of healthNames) health.setStatus(n, serving ? 'SERVING' : 'NOT_SERVING');
  };
  setServing(opts.serving ?? true);
  opts.logger.info({ address: `${opts.host}:${port}`, version: opts.version, timeoutMs: opts.timeoutMs }, 'gRPC server listening');

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs: number): Promise<void> => {
    stopping ??= new Promise<void>((resolve) => {
      setServing(false);
      // Stop taking calls; then, once every unary call is answered, cut what is left (health
      // Watch streams never end by themselves). Past the grace period, cut everything.
      const cut = (): void => {
        clearTimeout(force);
        server.forceShutdown();
        resolve();
      };
      const force = setTimeout(() => {
        if (inflight.count > 0) opts.logger.warn({ graceMs, inflight: inflight.count }, 'gRPC calls still running after the grace period; cutting them');
        cut();
      }, Math.max(0, graceMs));
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
      // A short pause lets the last answers flush before their sessions close.
      const cutSoon = (): void => void setTimeout(cut, 100);
      if (inflight.count === 0) cutSoon();
      else inflight.onIdle = cutSoon;
    });
    return stopping;
  };

  return { port, setServing, shutdown };
}
