#!/usr/bin/env node
// Where a REST query's time goes: the same server, one request at a time, for
//   GET /health/live         the HTTP floor (a keep-alive round trip through Fastify)
//   query, JSON vector       the query vector as a number array (what most clients send)
//   query, base64 vector     the same query with the vector as base64 float32
// next to the engine's own search time for the same queries (akidb_search_latency_seconds).
//
//   npm run build && node bench/rest-overhead.mjs [--data bench/data/data-100k-768] [--queries 2000] [--rounds 2]
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, percentile, readFbin, restRequest, startServerChild, stopServerChildren } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = parseArgs(process.argv.slice(2), { data: 'bench/data/data-100k-768', queries: 2000, rounds: 2, warmup: 300, batch: 5000 });
const base = readFbin(path.join(args.data, 'base.fbin'));
const q = readFbin(path.join(args.data, 'query.fbin'));
const d = base.d;
const server = await startServerChild(ROOT);
const req = (method, urlPath, body) => restRequest(server, method, urlPath, {}, body);

await req('POST', '/api/v1/collections', { name: 'b', dimension: d });
for (let s = 0; s < base.n; s += args.batch) {
  const documents = [];
  for (let i = s; i < Math.min(base.n, s + args.batch); i++) documents.push({ doc_id: String(i), vector: Buffer.from(base.data.buffer, base.data.byteOffset + i * d * 4, d * 4).toString('base64') });
  await req('POST', '/api/v1/collections/b/upsert', JSON.stringify({ documents }));
}
while (!JSON.parse(await req('GET', '/api/v1/collections/b')).indexing.fully_indexed) await new Promise((r) => setTimeout(r, 500));

/** Mean engine search time so far, from the server's own histogram. */
async function engineMs() {
  const text = await req('GET', '/metrics');
  const sum = Number(/^akidb_search_latency_seconds_sum (\S+)/m.exec(text)[1]);
  const count = Number(/^akidb_search_latency_seconds_count (\S+)/m.exec(text)[1]);
  return { sum, count };
}

const qArr = Array.from({ length: q.n }, (_, i) => Array.from(q.data.subarray(i * d, (i + 1) * d)));
const qB64 = Array.from({ length: q.n }, (_, i) => Buffer.from(q.data.buffer, q.data.byteOffset + i * d * 4, d * 4).toString('base64'));
async function time(fn) {
  for (let i = 0; i < args.warmup; i++) await fn(i % q.n);
  const before = await engineMs();
  const lat = new Float64Array(args.queries);
  const t0 = performance.now();
  for (let i = 0; i < args.queries; i++) {
    const s = performance.now();
    await fn(i % q.n);
    lat[i] = performance.now() - s;
  }
  const total = performance.now() - t0;
  const after = await engineMs();
  lat.sort();
  const searches = after.count - before.count;
  return { qps: Math.round((args.queries / total) * 1000), p50: percentile(lat, 50), p95: percentile(lat, 95), engine: searches > 0 ? ((after.sum - before.sum) / searches) * 1000 : null };
}
const legs = {
  'GET /health/live': () => req('GET', '/health/live'),
  'query, JSON vector': (i) => req('POST', '/api/v1/collections/b/query', JSON.stringify({ query_vector: qArr[i], top_k: 10, include_metadata: false })),
  'query, base64 vector': (i) => req('POST', '/api/v1/collections/b/query', JSON.stringify({ query_vector: qB64[i], top_k: 10, include_metadata: false })),
};
const results = {};
for (let r = 0; r < args.rounds; r++) for (const [name, fn] of Object.entries(legs)) (results[name] ??= []).push(await time(fn));

console.log(`\n${new Date().toISOString()}  ${os.cpus()[0]?.model} x${os.availableParallelism()}  node ${process.version}`);
console.log(`data ${args.data}: n=${base.n} d=${d}; ${args.queries} sequential requests a leg after ${args.warmup} warm-up, ${args.rounds} rounds (best round shown)`);
console.log('| request | QPS | p50 ms | p95 ms | engine search ms (mean) |\n|---|---|---|---|---|');
for (const [name, runs] of Object.entries(results)) {
  const best = runs.sort((a, b) => b.qps - a.qps)[0];
  console.log(`| ${name} | ${best.qps} | ${best.p50.toFixed(3)} | ${best.p95.toFixed(3)} | ${best.engine === null ? '-' : best.engine.toFixed(3)} |`);
}
await stopServerChildren([server]);
