#!/usr/bin/env node
// AkiDB (in process, REST server, gRPC server) against a Chroma 1.0 server, on the same data, in
// one run: ingest rate, seconds until fully indexed, query QPS and p50 / p95 latency with one
// client sending one query at a time, recall@k against exact ground truth, server RSS.
//
//   npm run build && node bench/server-vs-chroma.mjs --data bench/data/data-100k-768
//     [--queries 1000 --warmup 200 --k 10 --rounds 3 --batch 5000 --m 16 --efc 64 --ef 64
//      --quant f16 --legs inproc,rest,grpc,chroma,chroma-http --metadata 0]
//
// Both servers are started here as child processes on free loopback ports and stopped at the
// end: `node dist/cli/main.js serve ...` and Chroma's own CLI (`node_modules/chromadb/dist/cli.mjs
// run`, the Rust server inside a Node process). Legs that cannot start are skipped with a note.
// Query rounds alternate the legs (the starting leg rotates each round) so that drift in a shared
// machine's speed falls on all of them alike; the table shows each leg's median-QPS round.
// Each network leg's client runs in a small process of its own (bench/query-client.mjs), so the
// big heap of this one (base vectors, the in-process engine) slows none of them.
import { fork, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, percentile, readFbin, readGroundTruth, recallAt } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const COLLECTION = 'bench';
const args = parseArgs(process.argv.slice(2), {
  data: 'bench/data/data-100k-768',
  queries: 1000,
  warmup: 200,
  k: 10,
  rounds: 3,
  batch: 5000,
  m: 16,
  efc: 64,
  ef: 64,
  quant: 'f16',
  legs: 'inproc,rest,grpc,chroma,chroma-http',
  metadata: 0,
  // 1: each network leg's client runs in a process of its own (bench/query-client.mjs); 0: in this one.
  'client-process': 1,
  // The AkiDB CLI to start as `CLI serve ...` (relative to the repository root).
  cli: 'dist/cli/main.js',
});
const wanted = new Set(args.legs.split(',').map((s) => s.trim()));
const notes = [];
const note = (msg) => {
  notes.push(msg);
  console.error(`note: ${msg}`);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const seconds = (t0) => (performance.now() - t0) / 1000;

// ---------- data ----------
const base = readFbin(path.join(args.data, 'base.fbin'));
const queries = readFbin(path.join(args.data, 'query.fbin'));
const gt = readGroundTruth(args.data);
const { n, d } = base;
const K = args.k;
if (K > gt.k) throw new Error(`--k ${K} is larger than the ground truth's k (${gt.k})`);
const nq = Math.min(args.queries, queries.n, gt.q);
const baseRow = (i) => base.data.subarray(i * d, (i + 1) * d);
const qF32 = Array.from({ length: queries.n }, (_, i) => queries.data.subarray(i * d, (i + 1) * d));
// Plain number arrays, as typical clients hold vectors; converted once, outside any timing.
const qArr = qF32.map((v) => Array.from(v));
const includeMetadata = args.metadata === 1;

// ---------- child processes ----------
const children = [];
function startChild(label, argv, opts = {}) {
  const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], ...opts });
  let stderr = '';
  child.stderr.on('data', (b) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const info = { label, child, exited: null, stderr: () => stderr };
  child.on('exit', (code, signal) => {
    info.exited = { code, signal };
  });
  children.push(info);
  return info;
}
async function stopChild(info) {
  if (info.exited) return;
  const done = new Promise((r) => info.child.once('exit', r));
  info.child.kill('SIGTERM');
  const timer = setTimeout(() => info.child.kill('SIGKILL'), 10_000);
  await done;
  clearTimeout(timer);
}
/** Resident and peak resident memory of a process, in MB, from /proc (Linux). */
function procMemMb(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: Math.round(kb('VmRSS') / 1024), hwm: Math.round(kb('VmHWM') / 1024) };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
async function waitFor(info, what, check, timeoutMs = 60_000) {
  const t0 = Date.now();
  for (;;) {
    if (info.exited) throw new Error(`${info.label} exited (${JSON.stringify(info.exited)}) before ${what}:\n${info.stderr().trim()}`);
    try {
      if (await check()) return;
    } catch {
      // not listening yet
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`${info.label}: no ${what} after ${timeoutMs / 1000} s:\n${info.stderr().trim()}`);
    await sleep(100);
  }
}

// ---------- a small HTTP/1.1 client: one keep-alive socket, one request at a time ----------
function httpClient(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const request = (method, urlPath, body) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
      const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, agent, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, json, text });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  return { request, close: () => agent.destroy() };
}
function expectStatus(res, ok, what) {
  if (!ok.includes(res.status)) throw new Error(`${what}: HTTP ${res.status} ${res.text.slice(0, 500)}`);
  return res.json;
}

// ---------- timing ----------
/** Runs `count` queries one after another (after `warm` unrecorded ones); ids of each answer and latency figures. */
async function timeQueries(fn, count, warm) {
  for (let i = 0; i < warm; i++) await fn(i % count);
  const lat = new Float64Array(count);
  const found = new Array(count);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    found[i] = await fn(i);
    lat[i] = performance.now() - s;
  }
  const total = performance.now() - t0;
  lat.sort();
  return { qps: Math.round((count / total) * 1000), p50: percentile(lat, 50), p95: percentile(lat, 95), recall: recallAt(found, gt, K) };
}

/** Runs a leg's queries in its own client process (bench/query-client.mjs), started on first use. */
const clientProcs = new Map();
function ask(child, msg) {
  return new Promise((resolve, reject) => {
    child.once('message', (res) => (res.error ? reject(new Error(res.error)) : resolve(res)));
    child.send(msg);
  });
}
async function remoteQueries(leg, count, warm) {
  let child = clientProcs.get(leg.key);
  if (!child) {
    child = fork(path.join(ROOT, 'bench/query-client.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    clientProcs.set(leg.key, child);
    await ask(child, { setup: { ...leg.remote, data: args.data, k: K, includeMetadata } });
  }
  const res = await ask(child, { run: { count, warm } });
  return { qps: res.qps, p50: res.p50, p95: res.p95, recall: recallAt(res.found, gt, K) };
}

// ---------- legs ----------
// Each leg: { key, label, ingest() -> {ingestRate, ingestSeconds, indexedSeconds, batch}, query(i) -> ids, rss() -> {rss, hwm} | null, close() }
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-svc-'));
const legs = [];

async function inProcessLeg() {
  const { AkiDB } = await import('../dist/index.js');
  const db = await AkiDB.open({ dataDir: path.join(tmpRoot, 'inproc') });
  const col = await db.createCollection({ name: COLLECTION, dimension: d, metric: 'cosine', index: { m: args.m, efConstruction: args.efc, efSearch: args.ef, quantization: args.quant } });
  const t0 = performance.now();
  for (let s = 0; s < n; s += args.batch) {
    const docs = [];
    for (let i = s; i < Math.min(n, s + args.batch); i++) docs.push({ id: String(i), vector: baseRow(i), metadata: { i } });
    await col.upsert(docs);
  }
  const ingestSeconds = seconds(t0);
  await col.waitForIndexing();
  const st = col.stats();
  if (!st.fullyIndexed || st.documents !== n) note(`in-process: after waitForIndexing, stats say documents=${st.documents} fullyIndexed=${st.fullyIndexed}`);
  const indexedSeconds = seconds(t0);
  return {
    key: 'inproc',
    label: 'AkiDB in-process',
    ingest: { ingestRate: Math.round(n / ingestSeconds), ingestSeconds, indexedSeconds, batch: args.batch },
    query: async (i) => (await col.query({ vector: qF32[i], topK: K, includeMetadata })).map((m) => m.id),
    rss: () => null,
    close: () => db.close(),
  };
}

/** Whether a REST collection description says every document is indexed; undefined when it does not say. */
function restFullyIndexed(desc) {
  for (const c of [desc?.indexing, desc?.stats, desc?.index_state, desc]) {
    if (c && typeof c === 'object') {
      if (typeof c.fully_indexed === 'boolean') return c.fully_indexed;
      if (typeof c.fullyIndexed === 'boolean') return c.fullyIndexed;
    }
  }
  return undefined;
}

async function akidbServerLegs(inprocIndexSeconds) {
  const cli = path.resolve(ROOT, args.cli);
  if (!fs.existsSync(cli)) {
    note(`AkiDB server legs skipped: ${args.cli} is missing (npm run build)`);
    return [];
  }
  const [restPort, grpcPort] = [await freePort(), await freePort()];
  const dataDir = path.join(tmpRoot, 'akidb-server');
  const server = startChild('AkiDB server', [cli, 'serve', '--data-dir', dataDir, '--host', '127.0.0.1', '--rest-port', String(restPort), '--grpc-port', String(grpcPort), '--log-level', 'warn']);
  const http1 = httpClient(restPort);
  try {
    await waitFor(server, 'GET /health/ready = 200', async () => (await http1.request('GET', '/health/ready')).status === 200);
  } catch (err) {
    http1.close();
    await stopChild(server);
    note(`AkiDB server legs skipped: ${err.message.split('\n').slice(0, 4).join(' | ')}`);
    return [];
  }
  const rest = http1.request;
  const index = { m: args.m, ef_construction: args.efc, ef_search: args.ef };
  if (args.quant !== 'f16') index.quantization = args.quant; // f16 is the server's default
  expectStatus(await rest('POST', '/api/v1/collections', { name: COLLECTION, dimension: d, metric: 'cosine', index }), [200, 201], 'create collection');

  // Ingest: base64 little-endian float32 vectors (what a fast client sends), acknowledged batches.
  let batch = args.batch;
  let refusedMs = 0; // time spent on batches refused as too large, left out of the ingest rate
  const t0 = performance.now();
  for (let s = 0; s < n; ) {
    const e = Math.min(n, s + batch);
    const documents = [];
    for (let i = s; i < e; i++) {
      const v = baseRow(i);
      documents.push({ doc_id: String(i), vector: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64'), metadata: { i } });
    }
    const sent = performance.now();
    const res = await rest('POST', `/api/v1/collections/${COLLECTION}/upsert`, { documents });
    if (res.status === 413 && batch > 100) {
      refusedMs += performance.now() - sent;
      batch = Math.floor(batch / 2);
      note(`REST upsert of ${e - s} documents answered 413; batch size halved to ${batch}`);
      continue;
    }
    const body = expectStatus(res, [200, 201], 'upsert');
    if (body?.upserted !== undefined && body.upserted !== e - s) throw new Error(`upsert acknowledged ${body.upserted} of ${e - s}`);
    s = e;
  }
  const ingestSeconds = seconds(t0) - refusedMs / 1000;
  // Until every document is indexed: document_count first, then the collection's index state.
  let warnedNoState = false;
  for (;;) {
    const desc = expectStatus(await rest('GET', `/api/v1/collections/${COLLECTION}`), [200], 'describe collection');
    if (desc.document_count === n) {
      const full = restFullyIndexed(desc);
      if (full === true) break;
      if (full === undefined) {
        // Fallback for a server whose description does not report `indexing.fully_indexed`: wait
        // as long as the in-process engine took to index the same data, plus half again, and say
        // so under the table.
        if (!warnedNoState) {
          const waitS = Math.max(2, inprocIndexSeconds * 1.5 - seconds(t0));
          note(`REST collection description has no index state; waited ${waitS.toFixed(1)} s more instead (indexed s for REST is an estimate)`);
          warnedNoState = true;
          await sleep(waitS * 1000);
        }
        break;
      }
    }
    await sleep(100);
  }
  const indexedSeconds = seconds(t0);
  const desc = expectStatus(await rest('GET', `/api/v1/collections/${COLLECTION}`), [200], 'describe collection');
  if (desc.index) console.error(`AkiDB server collection index: ${JSON.stringify(desc.index)}`);
  const ingest = { ingestRate: Math.round(n / ingestSeconds), ingestSeconds, indexedSeconds: warnedNoState ? NaN : indexedSeconds, batch };
  const rss = () => procMemMb(server.child.pid);
  const out = [];

  if (wanted.has('rest')) {
    out.push({
      key: 'rest',
      label: 'AkiDB REST',
      ingest,
      remote: { kind: 'rest', port: restPort, collection: COLLECTION },
      query: async (i) => {
        const body = JSON.stringify({ query_vector: qArr[i], top_k: K, include_metadata: includeMetadata });
        const res = await rest('POST', `/api/v1/collections/${COLLECTION}/query`, body);
        if (res.status !== 200) throw new Error(`query: HTTP ${res.status} ${res.text.slice(0, 300)}`);
        return res.json.matches.map((m) => m.doc_id);
      },
      rss,
      close: async () => {},
    });
  }

  if (wanted.has('grpc')) {
    const grpcLeg = await akidbGrpcLeg(grpcPort, ingest, rss);
    if (grpcLeg) out.push(grpcLeg);
  }
  out.push({ key: 'akidb-server', hidden: true, close: async () => {
    http1.close();
    await stopChild(server);
  } });
  return out;
}

async function akidbGrpcLeg(port, ingest, rss) {
  const protoFile = path.join(ROOT, 'proto/akidb/collection/v1/collection.proto');
  if (!fs.existsSync(protoFile)) {
    note('gRPC leg skipped: proto/akidb/collection/v1/collection.proto does not exist');
    return null;
  }
  const require = createRequire(import.meta.url);
  const grpc = require('@grpc/grpc-js');
  const protoLoader = require('@grpc/proto-loader');
  const def = protoLoader.loadSync(protoFile, { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, includeDirs: [path.join(ROOT, 'proto')] });
  const pkg = grpc.loadPackageDefinition(def);
  const Service = pkg.akidb?.collection?.v1?.CollectionService;
  if (!Service) {
    note('gRPC leg skipped: akidb.collection.v1.CollectionService not found in the proto');
    return null;
  }
  const client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (method, req) =>
    new Promise((resolve, reject) => {
      client[method](req, (err, res) => (err ? reject(err) : resolve(res)));
    });
  try {
    await new Promise((resolve, reject) => client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
    const info = await call('Describe', { collection: COLLECTION });
    if (Number(info.document_count) !== n) note(`gRPC Describe says document_count=${info.document_count}, expected ${n}`);
  } catch (err) {
    client.close();
    note(`gRPC leg skipped: ${err.message}`);
    return null;
  }
  return {
    key: 'grpc',
    label: 'AkiDB gRPC',
    ingest: { ...ingest, via: 'REST' },
    remote: { kind: 'grpc', port, collection: COLLECTION },
    query: async (i) => (await call('Query', { collection: COLLECTION, query_vector: qArr[i], top_k: K, include_metadata: includeMetadata })).matches.map((m) => m.doc_id),
    rss,
    close: async () => client.close(),
  };
}

async function chromaLegs() {
  const cli = path.join(ROOT, 'node_modules/chromadb/dist/cli.mjs');
  if (!fs.existsSync(cli)) {
    note('Chroma leg skipped: node_modules/chromadb is not installed');
    return [];
  }
  const { ChromaClient } = await import('chromadb');
  const port = await freePort();
  const server = startChild('Chroma server', [cli, 'run', '--path', path.join(tmpRoot, 'chroma'), '--port', String(port)]);
  const probe = httpClient(port);
  try {
    await waitFor(server, 'GET /api/v2/heartbeat = 200', async () => (await probe.request('GET', '/api/v2/heartbeat')).status === 200);
  } catch (err) {
    probe.close();
    await stopChild(server);
    note(`Chroma leg skipped: ${err.message.split('\n').slice(0, 4).join(' | ')}`);
    return [];
  }
  const version = (await probe.request('GET', '/api/v2/version')).json;
  const client = new ChromaClient({ host: '127.0.0.1', port });
  const maxBatch = await client.getMaxBatchSize();
  // embeddingFunction: null, so the client never loads a default embedding model. Chroma's HNSW
  // defaults are ef_construction 100, ef_search 100, max_neighbors 16: set to ours.
  const col = await client.createCollection({
    name: COLLECTION,
    embeddingFunction: null,
    configuration: { hnsw: { space: 'cosine', max_neighbors: args.m, ef_construction: args.efc, ef_search: args.ef } },
  });
  console.error(`Chroma ${version} collection configuration: ${JSON.stringify(col.configuration?.hnsw ?? col.configuration)}`);
  const batch = Math.min(args.batch, maxBatch > 0 ? maxBatch : args.batch);
  if (batch < args.batch) note(`Chroma's max batch size is ${maxBatch}; its batches hold ${batch} documents`);
  // add() answers once the records are in Chroma's log and (single-node) applied to its HNSW
  // index; the client sends embeddings base64-encoded when the server supports it (1.0 does).
  let ingestSeconds = 0;
  for (let s = 0; s < n; s += batch) {
    const ids = [];
    const embeddings = [];
    const metadatas = [];
    for (let i = s; i < Math.min(n, s + batch); i++) {
      ids.push(String(i));
      embeddings.push(Array.from(baseRow(i)));
      metadatas.push({ i });
    }
    const t = performance.now();
    await col.add({ ids, embeddings, metadatas });
    ingestSeconds += seconds(t);
  }
  const count = await col.count();
  if (count !== n) note(`Chroma count() is ${count} after adding ${n}`);
  const ingest = { ingestRate: Math.round(n / ingestSeconds), ingestSeconds, indexedSeconds: ingestSeconds, batch };
  const rss = () => procMemMb(server.child.pid);
  const include = includeMetadata ? ['distances', 'metadatas'] : ['distances'];
  const out = [];
  if (wanted.has('chroma')) {
    out.push({
      key: 'chroma',
      label: `Chroma ${version} (JS client)`,
      ingest,
      remote: { kind: 'chroma', port, collection: COLLECTION },
      query: async (i) => (await col.query({ queryEmbeddings: [qArr[i]], nResults: K, include })).ids[0],
      rss,
    });
  }
  if (wanted.has('chroma-http')) {
    // The same server through the same small HTTP client as the AkiDB REST leg: separates the
    // server's cost from the chromadb client's (fetch, response objects).
    const url = `/api/v2/tenants/${encodeURIComponent(col.tenant)}/databases/${encodeURIComponent(col.database)}/collections/${col.id}/query`;
    out.push({
      key: 'chroma-http',
      label: `Chroma ${version} (HTTP)`,
      ingest: { ...ingest, via: 'JS client' },
      remote: { kind: 'chroma-http', port, url },
      query: async (i) => {
        const res = await probe.request('POST', url, JSON.stringify({ query_embeddings: [qArr[i]], n_results: K, include }));
        if (res.status !== 200) throw new Error(`Chroma query: HTTP ${res.status} ${res.text.slice(0, 300)}`);
        return res.json.ids[0];
      },
      rss,
    });
  }
  out.push({
    key: 'chroma-server',
    hidden: true,
    close: async () => {
      probe.close();
      await stopChild(server);
    },
  });
  return out;
}

// ---------- run ----------
const stopAll = async () => {
  for (const c of clientProcs.values()) c.disconnect();
  for (const leg of legs) await Promise.resolve(leg.close?.()).catch((err) => console.error(`closing ${leg.key}: ${err.message}`));
  for (const c of children) await stopChild(c);
  fs.rmSync(tmpRoot, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const c of children) if (!c.exited) c.child.kill('SIGKILL');
    fs.rmSync(tmpRoot, { recursive: true, force: true });
    process.exit(130);
  });
}

const rounds = [];
const memAfterLoad = new Map();
try {
  // Ingest one system at a time, each until fully indexed, so none competes with another's build.
  let inprocIndexSeconds = 30;
  if (wanted.has('inproc')) {
    console.error('ingest: AkiDB in-process ...');
    const leg = await inProcessLeg();
    inprocIndexSeconds = leg.ingest.indexedSeconds;
    legs.push(leg);
  }
  if (wanted.has('rest') || wanted.has('grpc')) {
    console.error('ingest: AkiDB server over REST ...');
    legs.push(...(await akidbServerLegs(inprocIndexSeconds)));
  }
  if (wanted.has('chroma') || wanted.has('chroma-http')) {
    console.error('ingest: Chroma ...');
    legs.push(...(await chromaLegs()));
  }
  const active = legs.filter((l) => !l.hidden);
  if (active.length === 0) throw new Error('no leg could run');
  for (const leg of active) memAfterLoad.set(leg.key, leg.rss());

  for (let r = 0; r < args.rounds; r++) {
    const round = {};
    for (let j = 0; j < active.length; j++) {
      const leg = active[(r + j) % active.length];
      round[leg.key] = leg.remote && args['client-process'] === 1 ? await remoteQueries(leg, nq, args.warmup) : await timeQueries(leg.query, nq, args.warmup);
      console.error(`round ${r + 1} ${leg.label}: ${round[leg.key].qps} QPS, p50 ${round[leg.key].p50.toFixed(3)} ms, p95 ${round[leg.key].p95.toFixed(3)} ms, recall ${round[leg.key].recall.toFixed(3)}`);
    }
    rounds.push(round);
  }

  // ---------- report ----------
  const medianRound = (key) => {
    const runs = rounds.map((rd) => rd[key]).sort((a, b) => a.qps - b.qps);
    return runs[Math.floor(runs.length / 2)];
  };
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const fmt = (v) => (v === null || v === undefined || Number.isNaN(v) ? '-' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 3 : 1)) : String(v));
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`\n${new Date().toISOString()}  ${cpu} x${os.availableParallelism()}  ${Math.round(os.totalmem() / 2 ** 30)} GiB  node ${process.version}  ${os.platform()} ${os.release()}`);
  console.log(`data ${args.data}: n=${n} d=${d} queries=${nq} (warm-up ${args.warmup}, ${args.rounds} rounds) k=${K} cosine; HNSW M=${args.m} efConstruction=${args.efc} efSearch=${args.ef}; AkiDB quantization ${args.quant}; answers carry ${includeMetadata ? 'ids, distances, metadata' : 'ids and distances only'}`);
  const header = ['system', `recall@${K}`, 'QPS', 'p50 ms', 'p95 ms', 'ingest vec/s', 'batch', 'indexed s', 'server RSS MB', 'server peak RSS MB'];
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  const med = {};
  for (const leg of active) {
    const m = (med[leg.key] = medianRound(leg.key));
    const mem = memAfterLoad.get(leg.key);
    const ing = leg.ingest;
    console.log(`| ${[leg.label, m.recall.toFixed(3), m.qps, m.p50, m.p95, ing.via ? `(${ing.via})` : ing.ingestRate, ing.batch, ing.via ? '' : ing.indexedSeconds, mem?.rss, mem?.hwm].map(fmt).join(' | ')} |`);
  }
  for (const leg of active) {
    console.log(`${leg.label} QPS per round: ${rounds.map((rd) => rd[leg.key].qps).join(', ')}`);
  }

  // Ratios against Chroma: per round (paired: the same minute of the machine), then the median;
  // against both Chroma legs. The goals are judged against the faster of the two.
  const chromaKeys = ['chroma-http', 'chroma'].filter((key) => med[key]);
  if (chromaKeys.length) {
    const label = (key) => active.find((l) => l.key === key).label;
    const pairedRatios = (key, ref) => rounds.map((rd) => rd[key].qps / rd[ref].qps);
    const ref = chromaKeys.reduce((best, key) => (med[key].qps > med[best].qps ? key : best));
    console.log('');
    for (const key of ['inproc', 'rest', 'grpc']) {
      if (!med[key]) continue;
      for (const c of chromaKeys) {
        const xs = pairedRatios(key, c);
        console.log(`${label(key)} / ${label(c)} QPS: median ${median(xs).toFixed(2)}x (rounds: ${xs.map((x) => x.toFixed(2)).join(', ')})`);
      }
    }
    const goals = [];
    const row = (goal, measured, met) => goals.push(`| ${goal} | ${measured} | ${met ? 'yes' : 'no'} |`);
    for (const [key, name, want] of [['rest', 'REST', 3], ['grpc', 'gRPC', 4]]) {
      if (!med[key]) continue;
      const x = median(pairedRatios(key, ref));
      row(`AkiDB ${name} QPS >= ${want}x Chroma`, `${x.toFixed(2)}x ${label(ref)}`, x >= want);
    }
    for (const [key, name] of [['rest', 'REST'], ['grpc', 'gRPC']]) if (med[key]) row(`AkiDB ${name} p95 <= 2 ms`, `${med[key].p95.toFixed(3)} ms`, med[key].p95 <= 2);
    const restLeg = active.find((l) => l.key === 'rest' || l.key === 'grpc');
    const chroma = active.find((l) => l.key === 'chroma' || l.key === 'chroma-http');
    if (restLeg) {
      const x = restLeg.ingest.ingestRate / chroma.ingest.ingestRate;
      row('AkiDB ingest over REST faster than Chroma', `${restLeg.ingest.ingestRate} vs ${chroma.ingest.ingestRate} vec/s (${x.toFixed(2)}x)`, x > 1);
    }
    if (goals.length) {
      console.log('\n| goal | measured | met |\n|---|---|---|');
      for (const g of goals) console.log(g);
    }
  }
  if (notes.length) console.log(`\nnotes:\n${notes.map((s) => `- ${s}`).join('\n')}`);
} finally {
  await stopAll();
}
