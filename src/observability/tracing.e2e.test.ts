import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import { startS3Server } from '../test-support/s3-server.js';
import { http, startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

// OpenTelemetry tracing end to end: a real `akidb serve` exports OTLP/HTTP (protobuf) to a
// receiver in this test, as it would to Jaeger on :4318; the receiver decodes what arrives.

// The part of opentelemetry-proto's trace service this test reads (field numbers as published).
const OTLP_PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  bytes parent_span_id = 4;
  string name = 5;
  int32 kind = 6;
  repeated KeyValue attributes = 9;
  repeated Event events = 11;
  Status status = 15;
}
message Event { string name = 2; repeated KeyValue attributes = 3; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7; }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;
const ExportRequest = protobuf.parse(OTLP_PROTO, { keepCase: true }).root.lookupType('otlp.ExportTraceServiceRequest');

type AttrValue = string | number | boolean | null | AttrValue[];

/** One received span, ids in hex. */
interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, AttrValue>;
  status: { code: number; message: string };
  service: AttrValue;
}

interface WireKeyValue {
  key: string;
  value?: { string_value?: string; bool_value?: boolean; int_value?: number; double_value?: number; array_value?: { values?: WireKeyValue['value'][] }; bytes_value?: Uint8Array };
}

function valueOf(v: WireKeyValue['value']): AttrValue {
  if (v === undefined) return null;
  if (v.string_value !== undefined) return v.string_value;
  if (v.bool_value !== undefined) return v.bool_value;
  if (v.int_value !== undefined) return Number(v.int_value);
  if (v.double_value !== undefined) return v.double_value;
  if (v.array_value !== undefined) return (v.array_value.values ?? []).map(valueOf);
  if (v.bytes_value !== undefined) return Buffer.from(v.bytes_value).toString('hex');
  return null;
}

function attributesOf(list: WireKeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of list ?? []) out[kv.key] = valueOf(kv.value);
  return out;
}

type Transport = 'grpc' | 'http/protobuf';

/** An OTLP traces receiver on loopback, as Jaeger runs one: gRPC (TraceService/Export) or HTTP (POST /v1/traces), protobuf bodies. */
interface Receiver {
  /** The endpoint as a user writes it: `http://host:port` for gRPC, `http://host:port/v1/traces` for HTTP. */
  url: string;
  /** Every request it was sent, whatever its path. */
  requests: number;
  spans: ReceivedSpan[];
  close(): Promise<void>;
}

type WireExport = {
  resource_spans?: { resource?: { attributes?: WireKeyValue[] }; scope_spans?: { spans?: { trace_id: Uint8Array; span_id: Uint8Array; parent_span_id?: Uint8Array; name: string; kind?: number; attributes?: WireKeyValue[]; status?: { code?: number; message?: string } }[] }[] }[];
};

function collect(receiver: Receiver, body: Buffer): void {
  const decoded = ExportRequest.toObject(ExportRequest.decode(body), { longs: Number, defaults: false }) as WireExport;
  for (const rs of decoded.resource_spans ?? []) {
    const service = attributesOf(rs.resource?.attributes)['service.name'] ?? null;
    for (const ss of rs.scope_spans ?? []) {
      for (const s of ss.spans ?? []) {
        receiver.spans.push({
          traceId: Buffer.from(s.trace_id).toString('hex'),
          spanId: Buffer.from(s.span_id).toString('hex'),
          parentSpanId: s.parent_span_id ? Buffer.from(s.parent_span_id).toString('hex') : '',
          name: s.name,
          kind: s.kind ?? 0,
          attributes: attributesOf(s.attributes),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
          service,
        });
      }
    }
  }
}

async function startReceiver(transport: Transport): Promise<Receiver> {
  const receiver: Receiver = { url: '', requests: 0, spans: [], close: async () => undefined };
  if (transport === 'grpc') {
    const server = new grpc.Server();
    const identity = (b: Buffer): Buffer => b;
    server.addService(
      {
        Export: {
          path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
          requestStream: false,
          responseStream: false,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
        },
      },
      {
        Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          receiver.requests += 1;
          collect(receiver, call.request);
          // ExportTraceServiceResponse with no field set: zero bytes.
          callback(null, Buffer.alloc(0));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    receiver.url = `http://127.0.0.1:${port}`;
    receiver.close = () => new Promise((resolve) => server.tryShutdown(() => resolve()));
    return receiver;
  }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      receiver.requests += 1;
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/x-protobuf') {
        res.writeHead(404).end();
        return;
      }
      collect(receiver, Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  receiver.close = () => new Promise((resolve) => server.close(() => resolve()));
  return receiver;
}

// A client as a user builds one, from the published .proto.
const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
const def = loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
const v1 = ((grpc.loadPackageDefinition(def).akidb as grpc.GrpcObject).collection as grpc.GrpcObject).v1 as grpc.GrpcObject;
const CollectionClient = v1.CollectionService as grpc.ServiceClientConstructor;

function call<T>(client: grpc.Client, method: string, req: object, md: grpc.Metadata): Promise<T> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: T) => void) => void>)[method]!(req, md, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

const tempDir = useTempDirs('akidb-tracing-e2e-');
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const API_KEY = 'tracing-test-key-0123456789abcdef';
// Exact in float32 and unlike any count or size a span carries: found in an attribute only if a vector leaked.
const VECTORS = [
  [0.8125, 0.0390625, 0.3671875, 0.1484375],
  [0.0390625, 0.8125, 0.1484375, 0.3671875],
  [0.3671875, 0.1484375, 0.8125, 0.0390625],
];
const QUERY = [0.80078125, 0.04296875, 0.36328125, 0.15234375];
const METADATA_VALUE = 'metadata-must-not-leak';
const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const GRPC_TRACE = '0af7651916cd43dd8448eb211c80319c';
const GRPC_SPAN = 'b7ad6b7169203331';

describe('OpenTelemetry tracing against the real CLI', () => {
  it.each<Transport>(['grpc', 'http/protobuf'])('exports over OTLP/%s a span per REST request and gRPC call with engine, object-store and upload spans beneath, continuing a client traceparent, with no credential, vector or metadata in any attribute', async (transport) => {
    const receiver = await startReceiver(transport);
    cleanups.push(() => receiver.close());
    const s3 = await startS3Server({ bucket: 'akidb' });
    cleanups.push(() => s3.stop());
    // No idle flush during the test (the compaction it asks for must find the memtable full); a quick sync tick.
    const configFile = path.join(tempDir(), 'config.toml');
    fs.writeFileSync(configFile, '[storage]\ns3_sync_interval_ms = 100\n\n[storage.compaction]\nidle_flush_ms = 600000\n');
    const server: ServerProcess = await startServerProcess({
      dataDir: tempDir(),
      args: ['--config', configFile],
      env: {
        AKIDB_TELEMETRY_ENABLED: 'true',
        AKIDB_JAEGER_ENDPOINT: receiver.url,
        AKIDB_SERVICE_NAME: 'akidb-tracing-test',
        AKIDB_SAMPLING_RATIO: '1',
        AKIDB_AUTH_ENABLED: 'true',
        AKIDB_API_KEYS: `${API_KEY}:admin`,
        AKIDB_S3_BUCKET: 'akidb',
        AKIDB_S3_ENDPOINT: s3.endpoint,
        AKIDB_S3_ACCESS_KEY: s3.credentials.accessKeyId,
        AKIDB_S3_SECRET_KEY: s3.credentials.secretAccessKey,
      },
    });
    cleanups.push(() => server.stop('SIGKILL'));
    expect(server.logs.find((l) => l.msg === 'OpenTelemetry initialized')).toMatchObject({ endpoint: receiver.url, protocol: transport, serviceName: 'akidb-tracing-test', sampleRate: 1 });
    const auth = { 'x-api-key': API_KEY };
    const coll = new CollectionClient(server.grpcAddress, grpc.credentials.createInsecure());
    cleanups.push(async () => coll.close());

    // Probes and scrapes are not traced.
    expect((await http(server.restUrl, 'GET', '/health/ready')).status).toBe(200);
    expect((await http(server.restUrl, 'GET', '/metrics', undefined, auth)).status).toBe(200);
    const created = await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'traced', dimension: 4, metric: 'l2', tiering_policy: 'MemoryS3' }, auth);
    expect(created.status).toBe(201);
    const up = await http(server.restUrl, 'POST', '/api/v1/collections/traced/upsert', { documents: VECTORS.map((vector, i) => ({ doc_id: `d${i}`, vector, metadata: { note: METADATA_VALUE } })) }, auth);
    expect(up.status).toBe(200);
    const upLsn = (up.body as { lsn: number }).lsn;
    // Into a segment, so the query below searches one (and the flush is traced under this request).
    expect((await http(server.restUrl, 'POST', '/admin/collections/traced/compact', undefined, auth)).status).toBe(200);
    expect((await http(server.restUrl, 'POST', '/api/v1/collections/traced/upsert', { documents: [{ doc_id: 'd3', vector: QUERY }] }, auth)).status).toBe(200);
    const q = await http(server.restUrl, 'POST', '/api/v1/collections/traced/query', { query_vector: QUERY, top_k: 2 }, { ...auth, traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` });
    expect(q.status).toBe(200);
    expect((q.body as { matches: { doc_id: string }[] }).matches.map((m) => m.doc_id)).toEqual(['d3', 'd0']);
    const bad = await http(server.restUrl, 'POST', '/api/v1/collections/traced/query', { query_vector: [1, 2], top_k: 2 }, auth);
    expect((bad.body as { error: { code: string } }).error.code).toBe('DIMENSION_MISMATCH');

    const md = new grpc.Metadata();
    md.set('x-api-key', API_KEY);
    md.set('traceparent', `00-${GRPC_TRACE}-${GRPC_SPAN}-01`);
    const gq = await call<{ matches: { doc_id: string }[] }>(coll, 'Query', { collection: 'traced', query_vector: QUERY, top_k: 1 }, md);
    expect(gq.matches[0]!.doc_id).toBe('d3');
    const gmd = new grpc.Metadata();
    gmd.set('x-api-key', API_KEY);
    await call(coll, 'Upsert', { collection: 'traced', documents: [{ doc_id: 'g0', vector: VECTORS[1] }] }, gmd);

    // A second compaction: the new memtable (d3, g0) becomes a segment, and the two segments merge.
    expect((await http(server.restUrl, 'POST', '/admin/collections/traced/compact', undefined, auth)).status).toBe(200);

    // SIGTERM: in-flight work finishes, collections flush, uploads ship, then the span queue is sent.
    expect(await server.stop('SIGTERM')).toBe(0);
    const spans = receiver.spans;
    const named = (name: string): ReceivedSpan[] => spans.filter((s) => s.name === name);
    const one = (name: string, where: (s: ReceivedSpan) => boolean = () => true): ReceivedSpan => {
      const found = named(name).filter(where);
      expect(found, `exactly one span ${name}; have ${[...new Set(spans.map((s) => s.name))].join(', ')}`).toHaveLength(1);
      return found[0]!;
    };
    const childrenOf = (parent: ReceivedSpan): ReceivedSpan[] => spans.filter((s) => s.parentSpanId === parent.spanId && s.traceId === parent.traceId);
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['akidb-tracing-test']));
    expect(spans.filter((s) => /^GET \/(health|metrics)/.test(s.name))).toEqual([]);
    expect(named('POST /api/v1/collections')).toHaveLength(1);

    // REST query: the client's trace continues; engine and planner spans hang beneath.
    const restQuery = one('POST /api/v1/collections/:id/query', (s) => s.traceId === CLIENT_TRACE);
    expect(restQuery.parentSpanId).toBe(CLIENT_SPAN);
    expect(restQuery.kind).toBe(2); // SERVER
    expect(restQuery.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.route': '/api/v1/collections/:id/query', 'url.path': '/api/v1/collections/traced/query', 'http.response.status_code': 200 });
    const query = one('collection.query', (s) => s.parentSpanId === restQuery.spanId);
    expect(query.traceId).toBe(CLIENT_TRACE);
    expect(query.attributes).toMatchObject({ 'akidb.collection': 'traced', 'akidb.top_k': 2, 'akidb.filtered': false, 'akidb.segments': 1 });
    const stages = childrenOf(query);
    expect(stages.map((s) => s.name)).toEqual(['query.plan', 'query.memtable_scan', 'query.segment_search', 'query.merge']);
    expect(stages.find((s) => s.name === 'query.segment_search')!.attributes).toMatchObject({ 'akidb.plan': 'exact', 'akidb.segment.live_rows': 3 });
    expect(stages.find((s) => s.name === 'query.merge')!.attributes).toMatchObject({ 'akidb.matches': 2 });

    // An engine error: the engine's spans are ERROR with the code; the server span (a 4xx) carries it as error.type.
    const badRest = one('POST /api/v1/collections/:id/query', (s) => s.attributes['http.response.status_code'] === 400);
    expect(badRest.attributes['error.type']).toBe('DIMENSION_MISMATCH');
    expect(badRest.status.code).toBe(0);
    const badQuery = one('collection.query', (s) => s.parentSpanId === badRest.spanId);
    expect(badQuery.status).toEqual({ code: 2, message: 'DIMENSION_MISMATCH' });
    expect(one('query.plan', (s) => s.parentSpanId === badQuery.spanId).status.code).toBe(2);

    // REST upsert: WAL append (until fsynced) and memtable apply inside it.
    const restUpserts = named('POST /api/v1/collections/:id/upsert');
    expect(restUpserts).toHaveLength(2);
    const upsert = one('collection.upsert', (s) => s.attributes['akidb.documents'] === 3 && restUpserts.some((r) => r.spanId === s.parentSpanId));
    expect(upsert.attributes).toMatchObject({ 'akidb.collection': 'traced', 'akidb.documents': 3, 'akidb.lsn': upLsn });
    const wal = one('wal.append', (s) => s.parentSpanId === upsert.spanId);
    expect(wal.attributes['akidb.wal.bytes']).toBeGreaterThan(0);
    expect(one('memtable.apply', (s) => s.parentSpanId === wal.spanId).attributes['akidb.lsn']).toBe(upLsn);

    // Compaction asked over REST: flush and merge are its children.
    const compactions = named('POST /admin/collections/:id/compact');
    expect(compactions).toHaveLength(2);
    expect(childrenOf(compactions[0]!).map((s) => s.name)).toEqual(['collection.flush']);
    expect(one('collection.flush', (s) => s.parentSpanId === compactions[0]!.spanId).attributes).toMatchObject({ 'akidb.collection': 'traced', 'akidb.segment.rows': 3 });
    expect(childrenOf(compactions[1]!).map((s) => s.name)).toEqual(['collection.flush', 'collection.merge']);
    const merge = one('collection.merge', (s) => s.parentSpanId === compactions[1]!.spanId);
    expect(merge.attributes).toMatchObject({ 'akidb.collection': 'traced', 'akidb.segments': 2, 'akidb.segment.rows': 5 });

    // gRPC: one span a call, named by the full method; the metadata's traceparent is continued.
    const grpcQuery = one('akidb.collection.v1.CollectionService/Query');
    expect(grpcQuery).toMatchObject({ traceId: GRPC_TRACE, parentSpanId: GRPC_SPAN, kind: 2 });
    expect(grpcQuery.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'akidb.collection.v1.CollectionService', 'rpc.method': 'Query', 'rpc.grpc.status_code': 0 });
    expect(childrenOf(one('collection.query', (s) => s.parentSpanId === grpcQuery.spanId)).map((s) => s.name)).toContain('query.segment_search');
    const grpcUpsert = one('akidb.collection.v1.CollectionService/Upsert');
    expect(grpcUpsert.parentSpanId).toBe('');
    expect(childrenOf(grpcUpsert).map((s) => s.name)).toEqual(['collection.upsert']);

    // Shipping to the object store: each upload attempt, with the S3 call beneath it (key and bytes).
    const uploads = named('tiering.upload');
    expect(uploads.length).toBeGreaterThan(0);
    const upload = uploads.find((u) => u.attributes['akidb.upload.outcome'] === 'stored')!;
    expect(upload.parentSpanId).toBe('');
    const put = one('objectstore.put', (s) => s.parentSpanId === upload.spanId);
    expect(put.kind).toBe(3); // CLIENT
    expect(put.attributes).toMatchObject({ 'akidb.objectstore.bucket': 'akidb', 'akidb.objectstore.key': upload.attributes['akidb.objectstore.key'], 'akidb.objectstore.bytes': upload.attributes['akidb.upload.bytes'] });
    // Background work is never filed under the request that happened to start it.
    for (const s of [...named('tiering.upload'), ...named('objectstore.list')]) expect(spans.find((p) => p.spanId === s.parentSpanId)?.name ?? 'root').not.toMatch(/^(POST|GET|DELETE) /);

    // Nothing secret or stored in any attribute.
    const everything = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.status]));
    for (const secret of [API_KEY, s3.credentials.secretAccessKey, METADATA_VALUE, '0.8125', '0.3671875', '0.80078125', '0.36328125']) expect(everything).not.toContain(secret);
    for (const s of spans) {
      for (const [key, value] of Object.entries(s.attributes)) {
        expect(key).not.toMatch(/authorization|api[-_]?key|secret|vector|metadata/i);
        expect(Array.isArray(value)).toBe(false);
      }
    }
  });

  it('sends nothing when tracing is off (the default)', async () => {
    const receiver = await startReceiver('http/protobuf');
    cleanups.push(() => receiver.close());
    const server = await startServerProcess({ dataDir: tempDir(), env: { AKIDB_JAEGER_ENDPOINT: receiver.url } });
    cleanups.push(() => server.stop('SIGKILL'));
    expect((await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'quiet', dimension: 4 })).status).toBe(201);
    expect((await http(server.restUrl, 'POST', '/api/v1/collections/quiet/upsert', { documents: [{ doc_id: 'a', vector: VECTORS[0] }] })).status).toBe(200);
    const q = await http(server.restUrl, 'POST', '/api/v1/collections/quiet/query', { query_vector: QUERY, top_k: 1 }, { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` });
    expect((q.body as { matches: { doc_id: string }[] }).matches[0]!.doc_id).toBe('a');
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(server.logs.some((l) => l.msg === 'OpenTelemetry initialized')).toBe(false);
    expect(receiver.requests).toBe(0);
  });
});
