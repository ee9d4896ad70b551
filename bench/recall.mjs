#!/usr/bin/env node
// Recall@10 of AkiDB's engine against exact ground truth, unfiltered and filtered (1 %, 10 %,
// 50 % of rows, and filters that select only rows far from the query), with latency per case.
//
//   npm run build && node bench/recall.mjs --data bench/data/data-100k-768 [--queries 200]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, percentile, readFbin, readGroundTruth } from './lib.mjs';

const args = parseArgs(process.argv.slice(2), { data: 'bench/data/data-100k-768', m: 16, efc: 128, ef: 64, quant: 'f16', queries: 200, clusters: 20 });
const { AkiDB } = await import('../dist/index.js');

const base = readFbin(path.join(args.data, 'base.fbin'));
const queries = readFbin(path.join(args.data, 'query.fbin'));
const gt = readGroundTruth(args.data);
const { n, d } = base;
const K = 10;
const nq = Math.min(args.queries, queries.n);
const row = (m, i) => m.data.subarray(i * d, (i + 1) * d);
const dot = (a, b) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

// Metadata: p, a pseudo-random percentile bucket (filters of 1 / 10 / 50 %), and cl, the nearest
// of `clusters` reference rows (filters "far from the query" pick the clusters least like it).
const refs = Array.from({ length: args.clusters }, (_, j) => row(base, Math.floor(((j + 0.5) * n) / args.clusters)));
const cl = new Int32Array(n);
const p = new Int32Array(n);
for (let i = 0; i < n; i++) {
  let best = -Infinity;
  for (let j = 0; j < refs.length; j++) {
    const s = dot(row(base, i), refs[j]);
    if (s > best) {
      best = s;
      cl[i] = j;
    }
  }
  p[i] = (i * 7919) % 100;
}
const clusterSize = new Array(args.clusters).fill(0);
for (let i = 0; i < n; i++) clusterSize[cl[i]]++;

function farClusters(q, share) {
  const order = refs.map((r, j) => [dot(q, r), j]).sort((a, b) => a[0] - b[0]);
  const out = [];
  let covered = 0;
  for (const [, j] of order) {
    if (covered >= share * n) break;
    out.push(j);
    covered += clusterSize[j];
  }
  return out;
}

function exact(q, pass) {
  const top = [];
  for (let i = 0; i < n; i++) {
    if (!pass(i)) continue;
    const s = dot(q, row(base, i));
    if (top.length < K || s > top[top.length - 1][0]) {
      top.push([s, i]);
      top.sort((a, b) => b[0] - a[0]);
      if (top.length > K) top.pop();
    }
  }
  return top.map(([, i]) => String(i));
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-recall-'));
try {
  const db = await AkiDB.open({ dataDir });
  const col = await db.createCollection({ name: 'recall', dimension: d, metric: 'cosine', index: { m: args.m, efConstruction: args.efc, efSearch: args.ef, quantization: args.quant } });
  const t0 = performance.now();
  for (let s = 0; s < n; s += 1000) {
    const docs = [];
    for (let i = s; i < Math.min(n, s + 1000); i++) docs.push({ id: String(i), vector: row(base, i), metadata: { p: p[i], cl: cl[i] } });
    await col.upsert(docs);
  }
  await col.waitForIndexing();
  const indexedSeconds = (performance.now() - t0) / 1000;

  const cases = [
    { name: 'unfiltered', filter: () => undefined, pass: () => () => true, gt: true },
    { name: 'p < 1 (1 %)', filter: () => ({ p: { $lt: 1 } }), pass: () => (i) => p[i] < 1 },
    { name: 'p < 10 (10 %)', filter: () => ({ p: { $lt: 10 } }), pass: () => (i) => p[i] < 10 },
    { name: 'p < 50 (50 %)', filter: () => ({ p: { $lt: 50 } }), pass: () => (i) => p[i] < 50 },
  ];
  for (const share of [0.01, 0.1, 0.5]) {
    const far = Array.from({ length: nq }, (_, qi) => farClusters(row(queries, qi), share));
    const sets = far.map((f) => new Set(f));
    cases.push({ name: `far clusters (~${share * 100} %)`, filter: (qi) => ({ cl: { $in: far[qi] } }), pass: (qi) => (i) => sets[qi].has(cl[i]) });
  }
  const out = [];
  for (const c of cases) {
    let hit = 0;
    let total = 0;
    let wrong = 0;
    const lat = [];
    let matched = 0;
    for (let qi = 0; qi < nq; qi++) {
      const q = row(queries, qi);
      const pass = c.pass(qi);
      const truth = new Set(c.gt ? Array.from(gt.ids.subarray(qi * gt.k, qi * gt.k + K), String) : exact(q, pass));
      const filter = c.filter(qi);
      const s = performance.now();
      const res = await col.query({ vector: q, topK: K, includeMetadata: false, ...(filter ? { filter } : {}) });
      lat.push(performance.now() - s);
      for (const m of res) {
        if (!pass(Number(m.id))) wrong++;
        if (truth.has(m.id)) hit++;
      }
      total += truth.size;
      if (qi === 0) for (let i = 0; i < n; i++) if (pass(i)) matched++;
    }
    lat.sort((a, b) => a - b);
    out.push({ case: c.name, matchedRows: matched, recall: hit / total, wrongRows: wrong, p50: percentile(lat, 50), p95: percentile(lat, 95) });
  }
  await db.close();
  console.log(`\n${new Date().toISOString()}  ${os.cpus()[0]?.model} x${os.availableParallelism()}  node ${process.version}`);
  console.log(`data ${args.data}: n=${n} d=${d} queries=${nq}  M=${args.m} efConstruction=${args.efc} efSearch=${args.ef} quantization=${args.quant}  ingest+index ${indexedSeconds.toFixed(1)} s`);
  console.log('| case | rows matching (query 0) | recall@10 | rows failing filter | p50 ms | p95 ms |');
  for (const r of out) console.log(`| ${r.case} | ${r.matchedRows} | ${r.recall.toFixed(3)} | ${r.wrongRows} | ${r.p50.toFixed(2)} | ${r.p95.toFixed(2)} |`);
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true });
}
