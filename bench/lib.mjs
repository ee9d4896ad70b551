// Shared pieces of the benchmarks: data loading, recall, latency percentiles, the two runners.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

export function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const raw = argv[i + 1];
    out[key] = typeof defaults[key] === 'number' ? Number(raw) : raw;
  }
  return out;
}

export function readFbin(file) {
  const b = fs.readFileSync(file);
  const n = b.readInt32LE(0);
  const d = b.readInt32LE(4);
  const data = new Float32Array(n * d);
  new Uint8Array(data.buffer).set(b.subarray(8, 8 + n * d * 4));
  return { n, d, data };
}

export function readGroundTruth(dir) {
  const b = fs.readFileSync(path.join(dir, 'gt.ibin'));
  const q = b.readInt32LE(0);
  const k = b.readInt32LE(4);
  const ids = new Int32Array(q * k);
  new Uint8Array(ids.buffer).set(b.subarray(8, 8 + q * k * 4));
  return { q, k, ids };
}

export function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Recall@k of `found` (array of id arrays) against the first k ground-truth ids. */
export function recallAt(found, gt, k) {
  let hit = 0;
  for (let i = 0; i < found.length; i++) {
    const truth = new Set(Array.from(gt.ids.subarray(i * gt.k, i * gt.k + k)));
    for (const id of found[i].slice(0, k)) if (truth.has(Number(id))) hit++;
  }
  return hit / (found.length * k);
}

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 50);
sampler.unref();
const rssMb = () => Math.round(process.memoryUsage().rss / 1e6);

/** Runs `count` calls of `fn` one after another: QPS, p50, p95 and mean latency (ms). */
export async function timeQueries(count, fn) {
  const lat = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    await fn(i);
    lat.push(performance.now() - s);
  }
  const total = performance.now() - t0;
  lat.sort((a, b) => a - b);
  return { qps: Math.round((count / total) * 1000), p50: percentile(lat, 50), p95: percentile(lat, 95), mean: total / count };
}

/** The raw usearch index, build side: add everything with all cores, save for the serving runs. */
export async function runNativeBuild(args) {
  const require = createRequire(import.meta.url);
  const usearch = require('usearch');
  const base = readFbin(path.join(args.data, 'base.fbin'));
  const index = new usearch.Index({ dimensions: base.d, metric: 'cos', quantization: args.quant, connectivity: args.m, expansion_add: args.efc, expansion_search: args.ef });
  const keys = new BigUint64Array(base.n);
  for (let i = 0; i < base.n; i++) keys[i] = BigInt(i);
  const t0 = performance.now();
  index.add(keys, base.data, os.availableParallelism());
  const indexedSeconds = (performance.now() - t0) / 1000;
  index.save(path.join(args.dir, 'native.usearch'));
  return { n: base.n, d: base.d, ingestRate: Math.round(base.n / indexedSeconds), indexedSeconds, peakRssMb: Math.round(peakRss / 1e6) };
}

/** The raw usearch index, serving side: a fresh process loads the saved index and answers queries one at a time. */
export async function runNativeServe(args) {
  const require = createRequire(import.meta.url);
  const usearch = require('usearch');
  const queries = readFbin(path.join(args.data, 'query.fbin'));
  const gt = readGroundTruth(args.data);
  const index = new usearch.Index({ dimensions: queries.d, metric: 'cos', quantization: args.quant, connectivity: args.m, expansion_add: args.efc, expansion_search: args.ef });
  index.load(path.join(args.dir, 'native.usearch'));
  const nq = Math.min(args.queries, queries.n);
  for (let i = 0; i < Math.min(100, nq); i++) index.search(queries.data.subarray(i * queries.d, (i + 1) * queries.d), 10, 1);
  const found = [];
  const timing = await timeQueries(nq, (i) => {
    const r = index.search(queries.data.subarray(i * queries.d, (i + 1) * queries.d), 10, 1);
    found.push(Array.from(r.keys, Number));
  });
  return { queries: nq, recall: recallAt(found, gt, 10), ...timing, servingRssMb: rssMb() };
}

/** AkiDB's engine, ingest side: upsert in batches (each acknowledged after fsync), then wait until fully indexed. */
export async function runEngineIngest(args) {
  const { AkiDB } = await import('../dist/index.js');
  const base = readFbin(path.join(args.data, 'base.fbin'));
  const { n, d } = base;
  const db = await AkiDB.open({ dataDir: args.dir });
  const col = await db.createCollection({ name: 'bench', dimension: d, metric: 'cosine', index: { m: args.m, efConstruction: args.efc, efSearch: args.ef, quantization: args.quant } });
  const t0 = performance.now();
  for (let s = 0; s < n; s += args.batch) {
    const docs = [];
    for (let i = s; i < Math.min(n, s + args.batch); i++) docs.push({ id: String(i), vector: base.data.subarray(i * d, (i + 1) * d), metadata: { i } });
    await col.upsert(docs);
  }
  const ingestSeconds = (performance.now() - t0) / 1000;
  for (;;) {
    const st = col.stats();
    if (st.fullyIndexed && st.indexedRows === n) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const indexedSeconds = (performance.now() - t0) / 1000;
  await db.close();
  return { n, d, ingestRate: Math.round(n / ingestSeconds), ingestSeconds, indexedSeconds, peakRssMb: Math.round(peakRss / 1e6) };
}

/** AkiDB's engine, serving side: a fresh process opens the collection and answers queries one at a time. */
export async function runEngineServe(args) {
  const { AkiDB } = await import('../dist/index.js');
  const queries = readFbin(path.join(args.data, 'query.fbin'));
  const gt = readGroundTruth(args.data);
  const t0 = performance.now();
  const db = await AkiDB.open({ dataDir: args.dir });
  const col = await db.getCollection('bench');
  const openSeconds = (performance.now() - t0) / 1000;
  const nq = Math.min(args.queries, queries.n);
  const found = [];
  // One warm-up pass so both sides are measured with the index paged in.
  for (let i = 0; i < Math.min(100, nq); i++) await col.query({ vector: queries.data.subarray(i * queries.d, (i + 1) * queries.d), topK: 10, includeMetadata: false });
  const timing = await timeQueries(nq, async (i) => {
    const r = await col.query({ vector: queries.data.subarray(i * queries.d, (i + 1) * queries.d), topK: 10, includeMetadata: false });
    found.push(r.map((m) => m.id));
  });
  const servingRssMb = rssMb();
  await db.close();
  return { queries: nq, recall: recallAt(found, gt, 10), ...timing, openSeconds, servingRssMb };
}

/**
 * Start `akidb serve` from the checkout at `root` on `dataDir` (a new temporary one) and free ports, with
 * `env` added; resolves once it logs "AkiDB ready". Returns the child, its REST port, its data dir
 * and a one-socket keep-alive agent for `restRequest`.
 */
export async function startServerChild(root, env = {}, dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-bench-server-'))) {
  const child = spawn(process.execPath, [path.join(root, 'dist/cli/main.js'), 'serve', '--data-dir', dataDir, '--rest-port', '0', '--grpc-port', '0', '--log-level', 'info'], { env: { ...process.env, AKIDB_LOG_FORMAT: 'json', AKIDB_CONFIG: '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c) => {
      buf += c;
      for (const line of buf.split('\n')) if (line.includes('"AkiDB ready"')) resolve(JSON.parse(line).restPort);
    });
    child.on('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  return { child, port, dataDir, agent: new http.Agent({ keepAlive: true, maxSockets: 1 }) };
}

/**
 * One REST request to a `startServerChild` server; resolves with the body text of a 2xx answer,
 * rejects otherwise. A string body is sent as it is (JSON made before the clock started).
 */
export function restRequest(server, method, urlPath, headers, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const r = http.request({ host: '127.0.0.1', port: server.port, method, path: urlPath, agent: server.agent, headers: { ...headers, ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => (res.statusCode < 300 ? resolve(Buffer.concat(chunks).toString()) : reject(new Error(`${res.statusCode} ${Buffer.concat(chunks)}`))));
    });
    r.on('error', reject);
    r.end(data);
  });
}

/** Stop `startServerChild` servers (SIGTERM), wait for them to exit, and delete their data dirs. */
export async function stopServerChildren(servers) {
  for (const s of servers) {
    s.agent.destroy();
    s.child.kill('SIGTERM');
  }
  await Promise.all(servers.map((s) => (s.child.exitCode !== null ? undefined : new Promise((r) => s.child.on('exit', r)))));
  for (const s of servers) fs.rmSync(s.dataDir, { recursive: true, force: true });
}
