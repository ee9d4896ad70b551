// Per-query cost of the gRPC face: the same queries, one at a time, in-process against the
// collection and over loopback gRPC, with the client in this process and in a child process
// (there the server's own CPU time per call is measured too). Needs `npm run build`.
//   node bench/grpc-overhead.mjs [--n 20000] [--d 768] [--queries 2000] [--rounds 3] [--topk 10]
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { pino } from 'pino';
import { parseArgs, timeQueries } from './lib.mjs';

const args = parseArgs(process.argv.slice(2).filter((a) => a !== '--child'), { n: 20000, d: 768, queries: 2000, rounds: 3, topk: 10, port: 0 });
const isChild = process.argv.includes('--child');

function randomUnit(d, rnd) {
  const v = new Float32Array(d);
  let s = 0;
  for (let i = 0; i < d; i++) {
    v[i] = rnd() * 2 - 1;
    s += v[i] * v[i];
  }
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < d; i++) v[i] *= inv;
  return v;
}
function lcg(seed) {
  return () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
}

function grpcClient(port) {
  const protoDir = fileURLToPath(new URL('../proto/', import.meta.url));
  const pkg = grpc.loadPackageDefinition(loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [protoDir] }));
  const client = new pkg.akidb.collection.v1.CollectionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const query = (req) => new Promise((resolve, reject) => client.Query(req, (err, res) => (err ? reject(err) : resolve(res))));
  return { client, query };
}

const queryRnd = lcg(7);
const queries = Array.from({ length: args.queries }, () => Array.from(randomUnit(args.d, queryRnd)));
const variants = {
  'gRPC Query': (i) => ({ collection: 'bench', query_vector: queries[i], top_k: args.topk }),
  'gRPC Query, include_metadata false': (i) => ({ collection: 'bench', query_vector: queries[i], top_k: args.topk, include_metadata: false }),
};

if (isChild) {
  // The client side of the cross-process runs: told what to run by the parent, one variant at a time.
  const { client, query } = grpcClient(args.port);
  process.on('message', async (msg) => {
    if (msg === 'exit') {
      client.close();
      process.exit(0);
    }
    const make = variants[msg];
    for (let i = 0; i < 200; i++) await query(make(i));
    process.send(await timeQueries(args.queries, (i) => query(make(i))));
  });
  process.send('ready');
} else {
  const { AkiDB } = await import('../dist/index.js');
  const { startGrpcServer } = await import('../dist/api/grpc/grpc-server.js');
  const rnd = lcg(42);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-grpc-bench-'));
  const db = await AkiDB.open({ dataDir: dir });
  const col = await db.createCollection({ name: 'bench', dimension: args.d, metric: 'cosine' });
  for (let s = 0; s < args.n; s += 1000) {
    const docs = [];
    for (let i = s; i < Math.min(args.n, s + 1000); i++) docs.push({ id: `doc-${i}`, vector: randomUnit(args.d, rnd), metadata: { i, group: i % 10 } });
    await col.upsert(docs);
  }
  await col.waitForIndexing();
  const f32 = queries.map((q) => Float32Array.from(q));
  const server = await startGrpcServer({ db, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), version: 'bench', timeoutMs: 30000 });
  const { client, query } = grpcClient(server.port);
  const child = fork(fileURLToPath(import.meta.url), [...process.argv.slice(2), '--child', '--port', String(server.port)]);
  const fromChild = () => new Promise((resolve) => child.once('message', resolve));
  await fromChild();

  const rows = {};
  const add = (name, r) => (rows[name] ??= []).push(r);
  const inProcess = (i) => col.query({ vector: f32[i], topK: args.topk });
  for (let i = 0; i < 200; i++) await inProcess(i);
  for (const make of Object.values(variants)) for (let i = 0; i < 200; i++) await query(make(i));
  for (let r = 0; r < args.rounds; r++) {
    add('in-process collection.query', await timeQueries(args.queries, inProcess));
    for (const [name, make] of Object.entries(variants)) add(`${name} (client in the same process)`, await timeQueries(args.queries, (i) => query(make(i))));
    for (const name of Object.keys(variants)) {
      const cpu0 = process.cpuUsage();
      child.send(name);
      const res = await fromChild();
      const cpu = process.cpuUsage(cpu0);
      add(`${name} (client in a child process)`, { ...res, serverCpuUs: (cpu.user + cpu.system) / args.queries });
    }
  }
  child.send('exit');

  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`${args.n} x ${args.d} cosine, top_k ${args.topk}, ${args.queries} sequential queries, median of ${args.rounds} rounds; ${os.cpus().length} x ${os.cpus()[0].model}, node ${process.version}`);
  console.log('| path | QPS | mean ms | p50 ms | p95 ms | server CPU µs/query |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, rs] of Object.entries(rows)) {
    const cpu = rs[0].serverCpuUs === undefined ? '' : median(rs.map((x) => x.serverCpuUs)).toFixed(0);
    console.log(`| ${name} | ${Math.round(median(rs.map((x) => x.qps)))} | ${median(rs.map((x) => x.mean)).toFixed(3)} | ${median(rs.map((x) => x.p50)).toFixed(3)} | ${median(rs.map((x) => x.p95)).toFixed(3)} | ${cpu} |`);
  }
  client.close();
  await server.shutdown(1000);
  await db.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
