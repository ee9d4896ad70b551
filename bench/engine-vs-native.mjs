#!/usr/bin/env node
// AkiDB's engine against the raw native HNSW index (usearch) with the same parameters, on the
// same data, in one run. Each side runs in its own child process so that resident memory is
// that process's alone.
//
//   npm run build && node bench/engine-vs-native.mjs --data bench/data/data-100k-768 [--m 16 --efc 128 --ef 64 --quant f16]
//
// Data: node ../shared/bench/gen-data.mjs --out bench/data/data-100k-768 --n 100000 --d 768 --q 1000 --k 100
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, runEngineIngest, runEngineServe, runNative } from './lib.mjs';

const args = parseArgs(process.argv.slice(2), { data: 'bench/data/data-100k-768', m: 16, efc: 128, ef: 64, quant: 'f16', batch: 1000, queries: 1000, role: '', dir: '' });

if (args.role === 'engine-ingest') {
  process.stdout.write(JSON.stringify(await runEngineIngest(args)) + '\n');
} else if (args.role === 'engine-serve') {
  process.stdout.write(JSON.stringify(await runEngineServe(args)) + '\n');
} else if (args.role === 'native') {
  process.stdout.write(JSON.stringify(await runNative(args)) + '\n');
} else {
  const self = fileURLToPath(import.meta.url);
  args.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-bench-'));
  const pass = Object.entries(args).filter(([k]) => k !== 'role').flatMap(([k, v]) => [`--${k}`, String(v)]);
  const run = (role) => {
    const r = spawnSync(process.execPath, [self, ...pass, '--role', role], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`${role} run failed with status ${r.status}`);
    return JSON.parse(r.stdout.trim().split('\n').at(-1));
  };
  const native = run('native');
  let engine;
  try {
    engine = { ...run('engine-ingest'), ...run('engine-serve') };
  } finally {
    fs.rmSync(args.dir, { recursive: true, force: true });
  }
  const rows = [
    ['system', 'recall@10', 'QPS', 'p50 ms', 'p95 ms', 'ingest vec/s', 'indexed s', 'peak RSS MB', 'serving RSS MB'],
    ['usearch (raw)', native.recall, native.qps, native.p50, native.p95, native.ingestRate, native.indexedSeconds, native.peakRssMb, native.servingRssMb],
    ['AkiDB engine', engine.recall, engine.qps, engine.p50, engine.p95, engine.ingestRate, engine.indexedSeconds, engine.peakRssMb, engine.servingRssMb],
  ];
  const fmt = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 3 : 1)) : String(v));
  console.log(`\n${new Date().toISOString()}  ${os.cpus()[0]?.model} x${os.availableParallelism()}  node ${process.version}`);
  console.log(`data ${args.data}: n=${engine.n} d=${engine.d} queries=${engine.queries}  M=${args.m} efConstruction=${args.efc} efSearch=${args.ef} quantization=${args.quant}`);
  for (const r of rows) console.log(`| ${r.map(fmt).join(' | ')} |`);
  console.log(`engine QPS / native QPS = ${(engine.qps / native.qps).toFixed(3)}`);
}
