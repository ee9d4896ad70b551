#!/usr/bin/env node
// What OpenTelemetry tracing costs. Servers side by side, called one request at a time:
//   - tracing off (the default);
//   - tracing on, sample_rate 0 (spans are started but not recorded: the cost of the machinery);
//   - tracing on, sample_rate 1, exporting OTLP/gRPC to a sink in this process that decodes nothing;
//   - with --baseline DIR, a build of the code before tracing existed (DIR/dist/cli/main.js).
// Then the embedded engine in this process: `querySync` from this build and from the baseline's, on
// the same data, tracing off. Legs alternate within each round; each leg's median round is kept.
// Run it on a quiet machine: four servers share the cores.
//
//   npm run build && node bench/tracing-overhead.mjs [--baseline /path/to/old/checkout] [--n 10000] [--dim 128] [--requests 2000] [--rounds 5]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { parseArgs, percentile, restRequest, startServerChild, stopServerChildren } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = parseArgs(process.argv.slice(2), { n: 10_000, dim: 128, requests: 2000, rounds: 5, warmup: 300, baseline: '', embedded: 20_000 });

// An OTLP/gRPC TraceService that counts what it is sent and keeps nothing.
let exported = 0;
const sink = new grpc.Server();
const raw = (b) => b;
sink.addService(
  { Export: { path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } },
  {
    Export: (call, cb) => {
      exported += call.request.length;
      cb(null, Buffer.alloc(0));
    },
  },
);
const sinkPort = await new Promise((resolve, reject) => sink.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));

const startServer = startServerChild;
const req = (server, method, urlPath, body) => restRequest(server, method, urlPath, {}, body);

// Random vectors, made once so every server holds the same data.
const randomVector = () => Float32Array.from({ length: args.dim }, () => Math.random() - 0.5);
const base64 = (v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
const data = Array.from({ length: args.n }, randomVector);
const queries = Array.from({ length: 256 }, randomVector);

const tracing = (ratio) => ({ AKIDB_TELEMETRY_ENABLED: 'true', AKIDB_JAEGER_ENDPOINT: `http://127.0.0.1:${sinkPort}`, AKIDB_SAMPLING_RATIO: String(ratio) });
const servers = [];
if (args.baseline) servers.push(['before tracing existed', await startServer(args.baseline, {})]);
servers.push(['tracing off', await startServer(ROOT, {})], ['on, sample_rate 0', await startServer(ROOT, tracing(0))], ['on, sample_rate 1 (OTLP/gRPC)', await startServer(ROOT, tracing(1))]);
for (const [, s] of servers) {
  await req(s, 'POST', '/api/v1/collections', { name: 'b', dimension: args.dim });
  for (let i = 0; i < args.n; i += 2000) await req(s, 'POST', '/api/v1/collections/b/upsert', { documents: data.slice(i, i + 2000).map((v, j) => ({ doc_id: String(i + j), vector: base64(v) })) });
  while (!JSON.parse(await req(s, 'GET', '/api/v1/collections/b')).indexing.fully_indexed) await new Promise((r) => setTimeout(r, 300));
}

let written = 0;
async function runLeg(server, kind, count) {
  const lat = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    if (kind === 'query') await req(server, 'POST', '/api/v1/collections/b/query', { query_vector: base64(queries[i % queries.length]), top_k: 10 });
    else {
      const docs = Array.from({ length: 10 }, (_, j) => ({ doc_id: `w${written++}-${j}`, vector: base64(queries[(i + j) % queries.length]) }));
      await req(server, 'POST', '/api/v1/collections/b/upsert', { documents: docs });
    }
    lat.push(performance.now() - s);
  }
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { qps: count / secs, p50: percentile(lat, 50), p95: percentile(lat, 95) };
}

const median = (rs) => [...rs].sort((a, b) => a.qps - b.qps)[Math.floor(rs.length / 2)];
const results = new Map();
// Queries first, then writes; background merges are turned off before the writes, so that one
// server's index build does not land in another server's leg (flushes still run).
for (const kind of ['query', 'upsert']) {
  if (kind === 'upsert') for (const [, s] of servers) await req(s, 'POST', '/admin/config/compaction', { enable_background_compaction: false });
  for (const [name, s] of servers) {
    results.set(`${kind}: ${name}`, []);
    await runLeg(s, kind, args.warmup);
  }
  for (let round = 0; round < args.rounds; round++) {
    for (const [name, s] of servers) results.get(`${kind}: ${name}`).push(await runLeg(s, kind, args.requests));
  }
}
await stopServerChildren(servers.map(([, s]) => s));
sink.forceShutdown();

console.log(`\nREST: ${args.n} x ${args.dim}, ${args.requests} sequential requests a leg, ${args.rounds} rounds, ${os.cpus().length} vCPU ${os.cpus()[0].model}, Node ${process.version}; ${(exported / 1e6).toFixed(1)} MB of spans exported`);
console.log('| leg | QPS | p50 ms | p95 ms |\n|---|---|---|---|');
for (const [name, rs] of results) {
  const m = median(rs);
  console.log(`| ${name} | ${m.qps.toFixed(0)} | ${m.p50.toFixed(3)} | ${m.p95.toFixed(3)} |`);
}

// Embedded: the same collection opened by this build and the baseline's, queried alternately.
if (args.baseline) {
  const engines = [];
  for (const [name, root] of [
    ['before tracing existed', args.baseline],
    ['tracing off', ROOT],
  ]) {
    const { AkiDB } = await import(pathToFileURL(path.join(root, 'dist/index.js')).href);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-tracing-bench-'));
    const db = await AkiDB.open({ dataDir: dir });
    const col = await db.createCollection({ name: 'b', dimension: args.dim, metric: 'l2' });
    for (let i = 0; i < args.n; i += 2000) await col.upsert(data.slice(i, i + 2000).map((vector, j) => ({ id: String(i + j), vector })));
    await col.waitForIndexing();
    engines.push({ name, db, col, dir, runs: [] });
  }
  const runEmbedded = (col, count) => {
    const lat = new Float64Array(count);
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const s = performance.now();
      col.querySync({ vector: queries[i % queries.length], topK: 10, includeMetadata: false });
      lat[i] = performance.now() - s;
    }
    const secs = (performance.now() - t0) / 1000;
    lat.sort();
    return { qps: count / secs, p50: percentile(lat, 50), p95: percentile(lat, 95) };
  };
  for (const e of engines) runEmbedded(e.col, 2000);
  for (let round = 0; round < args.rounds; round++) for (const e of engines) e.runs.push(runEmbedded(e.col, args.embedded));
  console.log(`\nEmbedded querySync: ${args.n} x ${args.dim}, ${args.embedded} queries a leg, ${args.rounds} rounds`);
  console.log('| build | QPS | p50 ms | p95 ms |\n|---|---|---|---|');
  for (const e of engines) {
    const m = median(e.runs);
    console.log(`| ${e.name} | ${m.qps.toFixed(0)} | ${m.p50.toFixed(4)} | ${m.p95.toFixed(4)} |`);
    await e.db.close();
    fs.rmSync(e.dir, { recursive: true, force: true });
  }
}
