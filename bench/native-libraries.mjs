#!/usr/bin/env node
// The two native HNSW libraries for Node side by side, same data, same parameters: build time,
// recall@10, single-query QPS and latency, resident memory. Each configuration runs in its own
// process so memory figures are its own.
//
//   node bench/native-libraries.mjs --data bench/data/data-100k-768 [--m 16 --efc 128 --ef 64]
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, percentile, readFbin, readGroundTruth, recallAt } from './lib.mjs';

const args = parseArgs(process.argv.slice(2), { data: 'bench/data/data-100k-768', m: 16, efc: 128, ef: 64, queries: 1000, lib: '' });
const require = createRequire(import.meta.url);

async function measure(lib) {
  const base = readFbin(path.join(args.data, 'base.fbin'));
  const queries = readFbin(path.join(args.data, 'query.fbin'));
  const gt = readGroundTruth(args.data);
  const { n, d } = base;
  let search;
  const t0 = performance.now();
  if (lib === 'hnswlib-node') {
    const { HierarchicalNSW } = require('hnswlib-node');
    const index = new HierarchicalNSW('cosine', d);
    index.initIndex(n, args.m, args.efc, 100);
    for (let i = 0; i < n; i++) index.addPoint(Array.from(base.data.subarray(i * d, (i + 1) * d)), i);
    index.setEf(args.ef);
    search = (q) => index.searchKnn(Array.from(q), 10).neighbors;
  } else {
    const usearch = require('usearch');
    const quantization = lib.split(' ')[1];
    const index = new usearch.Index({ dimensions: d, metric: 'cos', quantization, connectivity: args.m, expansion_add: args.efc, expansion_search: args.ef });
    const keys = new BigUint64Array(n);
    for (let i = 0; i < n; i++) keys[i] = BigInt(i);
    index.add(keys, base.data, os.availableParallelism());
    search = (q) => Array.from(index.search(q, 10, 1).keys, Number);
  }
  const buildSeconds = (performance.now() - t0) / 1000;
  const nq = Math.min(args.queries, queries.n);
  const qv = (i) => queries.data.slice(i * d, (i + 1) * d);
  for (let i = 0; i < 100; i++) search(qv(i));
  const found = [];
  const lat = [];
  const t1 = performance.now();
  for (let i = 0; i < nq; i++) {
    const q = qv(i);
    const s = performance.now();
    found.push(search(q));
    lat.push(performance.now() - s);
  }
  const total = performance.now() - t1;
  lat.sort((a, b) => a - b);
  return { lib, buildSeconds, recall: recallAt(found, gt, 10), qps: Math.round((nq / total) * 1000), p50: percentile(lat, 50), p95: percentile(lat, 95), rssMb: Math.round(process.memoryUsage().rss / 1e6) };
}

if (args.lib) {
  process.stdout.write(JSON.stringify(await measure(args.lib)) + '\n');
} else {
  const self = fileURLToPath(import.meta.url);
  console.log(`\n${new Date().toISOString()}  ${os.cpus()[0]?.model} x${os.availableParallelism()}  node ${process.version}`);
  console.log(`data ${args.data}  M=${args.m} efConstruction=${args.efc} efSearch=${args.ef}; RSS includes the benchmark's own copy of the data`);
  console.log('| library | build s | recall@10 | QPS | p50 ms | p95 ms | RSS MB |');
  for (const lib of ['usearch f32', 'usearch f16', 'hnswlib-node']) {
    const r = spawnSync(process.execPath, [self, '--data', args.data, '--m', String(args.m), '--efc', String(args.efc), '--ef', String(args.ef), '--queries', String(args.queries), '--lib', lib], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const m = JSON.parse(r.stdout.trim().split('\n').at(-1));
    console.log(`| ${m.lib} | ${m.buildSeconds.toFixed(1)} | ${m.recall.toFixed(3)} | ${m.qps} | ${m.p50.toFixed(3)} | ${m.p95.toFixed(3)} | ${m.rssMb} |`);
  }
}
