#!/usr/bin/env node
// Exact-scan query latency where no index is used: a collection's memtable, and its raw segments
// (below [hnsw] threshold, 10,000 rows). Random vectors, l2, top 10, one query at a time, in
// process. With --baseline DIR (another checkout, built), the same collections are opened by both
// builds and queried alternately, so the two columns share the machine's drift.
//
//   npm run build && node bench/exact-scan.mjs [--baseline /path/to/old/checkout] [--queries 2000] [--rounds 3]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, percentile } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = parseArgs(process.argv.slice(2), { baseline: '', queries: 2000, rounds: 3 });
const builds = [['this build', ROOT], ...(args.baseline ? [['baseline', args.baseline]] : [])];
const engines = [];
for (const [name, root] of builds) engines.push({ name, AkiDB: (await import(pathToFileURL(path.join(root, 'dist/index.js')).href)).AkiDB });

const rows = [];
for (const dim of [128, 768]) {
  const queries = Array.from({ length: 256 }, () => Float32Array.from({ length: dim }, () => Math.random() - 0.5));
  for (const n of [500, 2000, 9000]) {
    const data = Array.from({ length: n }, (_, i) => ({ id: String(i), vector: Float32Array.from({ length: dim }, () => Math.random() - 0.5), metadata: { half: i % 2 } }));
    const opened = [];
    for (const e of engines) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-exact-bench-'));
      const db = await e.AkiDB.open({ dataDir: dir, compaction: { thresholdOps: 1_000_000, enableBackground: false, idleFlushMs: 3_600_000 } });
      const col = await db.createCollection({ name: 'x', dimension: dim, metric: 'l2' });
      for (let i = 0; i < n; i += 1000) await col.upsert(data.slice(i, i + 1000));
      opened.push({ e, dir, db, col });
    }
    for (const where of ['memtable', 'memtable, filter matching half', 'raw segment']) {
      const filter = where.includes('filter') ? { half: 0 } : undefined;
      if (where === 'raw segment') for (const o of opened) await o.col.flush();
      const results = new Map(opened.map((o) => [o.e.name, []]));
      for (const o of opened) for (let i = 0; i < 200; i++) o.col.querySync({ vector: queries[i % 256], topK: 10, includeMetadata: false, filter });
      for (let r = 0; r < args.rounds; r++) {
        for (const o of opened) {
          const lat = new Float64Array(args.queries);
          for (let i = 0; i < args.queries; i++) {
            const t = performance.now();
            o.col.querySync({ vector: queries[i % 256], topK: 10, includeMetadata: false, filter });
            lat[i] = performance.now() - t;
          }
          lat.sort();
          results.get(o.e.name).push(percentile(lat, 50));
        }
      }
      const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      rows.push([dim, n, where, ...engines.map((e) => med(results.get(e.name)).toFixed(3))]);
    }
    for (const o of opened) {
      await o.db.close();
      fs.rmSync(o.dir, { recursive: true, force: true });
    }
  }
}
console.log(`\n${os.cpus().length} vCPU ${os.cpus()[0].model}, Node ${process.version}; ${args.queries} queries a leg, ${args.rounds} rounds, median p50 ms`);
console.log(`| dim | rows | scanned from | ${engines.map((e) => `${e.name} p50 ms`).join(' | ')} |\n|---|---|---|${engines.map(() => '---|').join('')}`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
