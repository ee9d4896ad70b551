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
import { parseArgs, runEngineIngest, runEngineServe, runNativeBuild, runNativeServe } from './lib.mjs';

const args = parseArgs(process.argv.slice(2), { data: 'bench/data/data-100k-768', m: 16, efc: 128, ef: 64, quant: 'f16', batch: 1000, queries: 1000, rounds: 3, role: '', dir: '' });

if (args.role === 'engine-ingest') {
  process.stdout.write(JSON.stringify(await runEngineIngest(args)) + '\n');
} else if (args.role === 'engine-serve') {
  process.stdout.write(JSON.stringify(await runEngineServe(args)) + '\n');
} else if (args.role === 'native-build') {
  process.stdout.write(JSON.stringify(await runNativeBuild(args)) + '\n');
} else if (args.role === 'native-serve') {
  process.stdout.write(JSON.stringify(await runNativeServe(args)) + '\n');
} else {
  const self = fileURLToPath(import.meta.url);
  args.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-bench-'));
  const pass = Object.entries(args).filter(([k]) => k !== 'role').flatMap(([k, v]) => [`--${k}`, String(v)]);
  const run = (role) => {
    const r = spawnSync(process.execPath, [self, ...pass, '--role', role], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`${role} run failed with status ${r.status}`);
    return JSON.parse(r.stdout.trim().split('\n').at(-1));
  };
  // Serving runs alternate native / engine, `rounds` times each, and report the median round, so
  // that drift in a shared machine's speed falls on both sides alike.
  const median = (runs) => [...runs].sort((a, b) => a.qps - b.qps)[Math.floor(runs.length / 2)];
  let native;
  let engine;
  const qpsRatios = [];
  try {
    const nativeBuild = run('native-build');
    const engineIngest = run('engine-ingest');
    const nRuns = [];
    const eRuns = [];
    for (let r = 0; r < args.rounds; r++) {
      nRuns.push(run('native-serve'));
      eRuns.push(run('engine-serve'));
      qpsRatios.push(eRuns[r].qps / nRuns[r].qps);
    }
    native = { ...nativeBuild, ...median(nRuns) };
    engine = { ...engineIngest, ...median(eRuns) };
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
  const paired = [...qpsRatios].sort((a, b) => a - b)[Math.floor(qpsRatios.length / 2)];
  console.log(`engine QPS / native QPS per round (paired): ${qpsRatios.map((x) => x.toFixed(3)).join(', ')}; median ${paired.toFixed(3)}`);
}
