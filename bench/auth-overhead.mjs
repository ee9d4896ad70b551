#!/usr/bin/env node
// What authentication costs a REST request: one server with auth on, called one request at a time
// with no credential on the public probe, a bootstrap key (AKIDB_API_KEYS), a catalog key
// (POST /admin/api-keys), an HS256 JWT, and the same requests to a second server with auth off.
// Legs alternate within each round; the table keeps each leg's median round.
//
//   npm run build && node bench/auth-overhead.mjs [--n 10000] [--dim 128] [--requests 3000] [--rounds 3]
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import { parseArgs, percentile, restRequest, startServerChild, stopServerChildren } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = parseArgs(process.argv.slice(2), { n: 10_000, dim: 128, requests: 3000, rounds: 3, warmup: 300 });
const ADMIN = 'bench-admin-key-0123456789abcdef';
const SECRET = 'bench-jwt-secret-of-at-least-32-bytes!!';

const startServer = (env) => startServerChild(ROOT, env);
const req = (server, method, urlPath, headers, body) => restRequest(server, method, urlPath, headers, body);

const on = await startServer({ AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: `${ADMIN}:admin`, AKIDB_JWT_SECRET: SECRET });
const off = await startServer({});
const admin = { 'x-api-key': ADMIN };
const catalogKey = JSON.parse(await req(on, 'POST', '/admin/api-keys', admin, { name: 'bench', role: 'operator' })).key;
const jwt = await new SignJWT({ role: 'operator' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('2h').sign(new TextEncoder().encode(SECRET));

// Random unit vectors: the collection only has to be big enough for a real query.
const vec = () => {
  const v = new Float32Array(args.dim);
  for (let i = 0; i < args.dim; i++) v[i] = Math.random() - 0.5;
  return Buffer.from(v.buffer).toString('base64');
};
for (const s of [on, off]) {
  await req(s, 'POST', '/api/v1/collections', admin, { name: 'b', dimension: args.dim });
  for (let i = 0; i < args.n; i += 2000) await req(s, 'POST', '/api/v1/collections/b/upsert', admin, { documents: Array.from({ length: Math.min(2000, args.n - i) }, (_, j) => ({ doc_id: String(i + j), vector: vec() })) });
  while (!JSON.parse(await req(s, 'GET', '/api/v1/collections/b', admin)).indexing.fully_indexed) await new Promise((r) => setTimeout(r, 300));
}
const queries = Array.from({ length: 256 }, () => ({ query_vector: vec(), top_k: 10 }));

const legs = [
  ['auth off: describe', off, {}, 'describe'],
  ['API key (bootstrap): describe', on, admin, 'describe'],
  ['API key (catalog): describe', on, { 'x-api-key': catalogKey }, 'describe'],
  ['JWT HS256: describe', on, { authorization: `Bearer ${jwt}` }, 'describe'],
  ['auth off: query', off, {}, 'query'],
  ['API key (catalog): query', on, { 'x-api-key': catalogKey }, 'query'],
  ['JWT HS256: query', on, { authorization: `Bearer ${jwt}` }, 'query'],
];

async function runLeg(server, headers, kind, count) {
  const lat = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    if (kind === 'describe') await req(server, 'GET', '/api/v1/collections/b', headers);
    else await req(server, 'POST', '/api/v1/collections/b/query', headers, queries[i % queries.length]);
    lat.push(performance.now() - s);
  }
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { qps: count / secs, p50: percentile(lat, 50), p95: percentile(lat, 95) };
}

const results = new Map(legs.map(([name]) => [name, []]));
for (const [, server, headers, kind] of legs) await runLeg(server, headers, kind, args.warmup);
for (let round = 0; round < args.rounds; round++) {
  for (const [name, server, headers, kind] of legs) results.get(name).push(await runLeg(server, headers, kind, args.requests));
}
console.log(`\n${args.n} x ${args.dim}, ${args.requests} sequential requests a leg, ${args.rounds} rounds, ${os.cpus().length} vCPU ${os.cpus()[0].model}, Node ${process.version}`);
console.log('| leg | QPS | p50 ms | p95 ms |\n|---|---|---|---|');
for (const [name, rs] of results) {
  const m = [...rs].sort((a, b) => a.qps - b.qps)[Math.floor(rs.length / 2)];
  console.log(`| ${name} | ${m.qps.toFixed(0)} | ${m.p50.toFixed(3)} | ${m.p95.toFixed(3)} |`);
}
await stopServerChildren([on, off]);
