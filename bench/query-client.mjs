// The client side of one network leg of server-vs-chroma.mjs, in a small process of its own: the
// parent holds 100k base vectors and an in-process engine, whose heap and garbage collection
// would otherwise slow every network client it runs, and the slower the client the closer all
// servers look. Every leg gets the same kind of process; started with fork(), driven over IPC.
//
// Messages in:  { setup: { kind, port, collection?, url?, data, k, includeMetadata } }
//               { run: { count, warm } }   -> { qps, p50, p95, found: string[][] }
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { percentile, readFbin } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let query = null;

function httpPost(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return (urlPath, payload) =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: urlPath, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(JSON.parse(text));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.write(payload);
      req.end();
    });
}

async function setup({ kind, port, collection, url, data, k, includeMetadata }) {
  const q = readFbin(path.join(data, 'query.fbin'));
  // Plain number arrays, as typical clients hold vectors; converted once, outside any timing.
  const qArr = Array.from({ length: q.n }, (_, i) => Array.from(q.data.subarray(i * q.d, (i + 1) * q.d)));
  if (kind === 'rest') {
    const post = httpPost(port);
    const p = `/api/v1/collections/${collection}/query`;
    return async (i) => (await post(p, JSON.stringify({ query_vector: qArr[i], top_k: k, include_metadata: includeMetadata }))).matches.map((m) => m.doc_id);
  }
  if (kind === 'chroma-http') {
    const post = httpPost(port);
    const include = includeMetadata ? ['distances', 'metadatas'] : ['distances'];
    return async (i) => (await post(url, JSON.stringify({ query_embeddings: [qArr[i]], n_results: k, include }))).ids[0];
  }
  if (kind === 'chroma') {
    const { ChromaClient } = await import('chromadb');
    const col = await new ChromaClient({ host: '127.0.0.1', port }).getCollection({ name: collection, embeddingFunction: null });
    const include = includeMetadata ? ['distances', 'metadatas'] : ['distances'];
    return async (i) => (await col.query({ queryEmbeddings: [qArr[i]], nResults: k, include })).ids[0];
  }
  if (kind === 'grpc') {
    const require = createRequire(import.meta.url);
    const grpc = require('@grpc/grpc-js');
    const protoLoader = require('@grpc/proto-loader');
    const def = protoLoader.loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, includeDirs: [path.join(ROOT, 'proto')] });
    const Service = grpc.loadPackageDefinition(def).akidb.collection.v1.CollectionService;
    const client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const call = (req) => new Promise((resolve, reject) => client.Query(req, (err, res) => (err ? reject(err) : resolve(res))));
    return async (i) => (await call({ collection, query_vector: qArr[i], top_k: k, include_metadata: includeMetadata })).matches.map((m) => m.doc_id);
  }
  throw new Error(`unknown leg kind ${kind}`);
}

async function run({ count, warm }) {
  for (let i = 0; i < warm; i++) await query(i % count);
  const lat = new Float64Array(count);
  const found = new Array(count);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    found[i] = await query(i);
    lat[i] = performance.now() - s;
  }
  const total = performance.now() - t0;
  lat.sort();
  return { qps: Math.round((count / total) * 1000), p50: percentile(lat, 50), p95: percentile(lat, 95), found };
}

process.on('message', (msg) => {
  const work = msg.setup ? setup(msg.setup).then((fn) => ((query = fn), { ok: true })) : run(msg.run);
  work.then(
    (res) => process.send(res),
    (err) => process.send({ error: err.stack ?? String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
