#!/usr/bin/env node
// How long the operations tools take on a real collection: a server is loaded with the data set
// over REST, then timed with the `akidb` CLI as an operator runs it:
//   backup (online, to a directory), verify of the backup, restore into a new data dir,
//   export to .akipkg, import into a second, empty server;
// and the answers of the imported and restored copies are compared with the original's.
//
//   npm run build && node bench/backup-export.mjs [--data bench/data/data-100k-768] [--queries 100]
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseArgs, readFbin, readGroundTruth, recallAt, restRequest, startServerChild, stopServerChildren } from './lib.mjs';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist/cli/main.js');
const args = parseArgs(process.argv.slice(2), { data: 'bench/data/data-100k-768', queries: 100, batch: 1000 });

const base = readFbin(path.join(args.data, 'base.fbin'));
const queries = readFbin(path.join(args.data, 'query.fbin'));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-ops-bench-'));
const b64 = (data, d, i) => Buffer.from(data.buffer, data.byteOffset + i * d * 4, d * 4).toString('base64');
const req = (s, method, p, body) => restRequest(s, method, p, {}, body).then((t) => (t === '' ? null : JSON.parse(t)));
const url = (s) => `http://127.0.0.1:${s.port}`;
const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const dirMb = (dir) => {
  let bytes = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) bytes += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).size;
  return bytes / 2 ** 20;
};

async function timed(what, fn) {
  const t0 = performance.now();
  const out = await fn();
  const s = (performance.now() - t0) / 1000;
  console.error(`${what}: ${s.toFixed(1)} s`);
  return { s, out };
}

async function answers(server) {
  const out = [];
  for (let i = 0; i < Math.min(args.queries, queries.n); i++) {
    const r = await req(server, 'POST', '/api/v1/collections/docs/query', { query_vector: b64(queries.data, queries.d, i), top_k: 10, include_metadata: false });
    out.push(r.matches.map((m) => `${m.doc_id}:${m.score.toFixed(5)}`).join(','));
  }
  return out;
}

const source = await startServerChild(ROOT);
const servers = [source];
try {
  await req(source, 'POST', '/api/v1/collections', { name: 'docs', dimension: base.d, metric: 'cosine' });
  const ingest = await timed('ingest', async () => {
    for (let i = 0; i < base.n; i += args.batch) {
      const documents = [];
      for (let j = i; j < Math.min(base.n, i + args.batch); j++) documents.push({ doc_id: String(j), vector: b64(base.data, base.d, j), metadata: { n: j } });
      await req(source, 'POST', '/api/v1/collections/docs/upsert', { documents });
    }
    while (!(await req(source, 'GET', '/api/v1/collections/docs')).indexing.fully_indexed) await new Promise((r) => setTimeout(r, 500));
  });
  const original = await answers(source);
  const dataMb = dirMb(source.dataDir);

  const backupDir = path.join(work, 'backup');
  const backup = await timed('backup', () => run(process.execPath, [CLI, 'backup', '--url', url(source), '--out', backupDir]));
  const verify = await timed('verify', () => run(process.execPath, [CLI, 'verify', '--backup', backupDir]));
  const restoredDir = path.join(work, 'restored');
  const restore = await timed('restore', () => run(process.execPath, [CLI, 'restore', '--from', backupDir, '--data-dir', restoredDir]));
  const pkg = path.join(work, 'docs.akipkg');
  const exp = await timed('export', () => run(process.execPath, [CLI, 'export', '--url', url(source), '--collection', 'docs', '--output', pkg]));
  const sourceRss = rssMb(source.child.pid);

  const target = await startServerChild(ROOT);
  servers.push(target);
  const imp = await timed('import', () => run(process.execPath, [CLI, 'import', '--url', url(target), '--file', pkg]));
  await timed('import indexed', async () => {
    while (!(await req(target, 'GET', '/api/v1/collections/docs')).indexing.fully_indexed) await new Promise((r) => setTimeout(r, 500));
  });
  const imported = await answers(target);

  await stopServerChildren([source]);
  servers.shift();
  // The restored directory, served: every answer as before.
  const restoredServer = await startServerChild(ROOT, {}, restoredDir);
  servers.push(restoredServer);
  const restored = await answers(restoredServer);

  const same = (a) => a.filter((x, i) => x === original[i]).length;
  const gt = readGroundTruth(args.data);
  const recall = (a) => recallAt(a.map((line) => line.split(',').map((m) => Number(m.split(':')[0]))), gt, 10).toFixed(4);
  console.log(`\n${base.n} x ${base.d} (${args.data}), metadata on every document; ${os.cpus().length} vCPU ${os.cpus()[0].model}, Node ${process.version}`);
  console.log(`data dir ${dataMb.toFixed(0)} MiB; backup ${dirMb(backupDir).toFixed(0)} MiB; .akipkg ${(fs.statSync(pkg).size / 2 ** 20).toFixed(0)} MiB; source server RSS ${sourceRss.toFixed(0)} MiB`);
  console.log('| step | seconds | rate |\n|---|---|---|');
  console.log(`| ingest over REST until fully indexed | ${ingest.s.toFixed(1)} | ${(base.n / ingest.s).toFixed(0)} docs/s |`);
  console.log(`| akidb backup (online) | ${backup.s.toFixed(1)} | ${(dirMb(backupDir) / backup.s).toFixed(0)} MiB/s |`);
  console.log(`| akidb verify --backup | ${verify.s.toFixed(1)} | ${(dirMb(backupDir) / verify.s).toFixed(0)} MiB/s |`);
  console.log(`| akidb restore | ${restore.s.toFixed(1)} | ${(dirMb(backupDir) / restore.s).toFixed(0)} MiB/s |`);
  console.log(`| akidb export | ${exp.s.toFixed(1)} | ${(base.n / exp.s).toFixed(0)} docs/s |`);
  console.log(`| akidb import (acknowledged) | ${imp.s.toFixed(1)} | ${(base.n / imp.s).toFixed(0)} docs/s |`);
  console.log(`\nidentical top-10 answers (ids and scores) for ${original.length} queries: imported ${same(imported)}, restored ${same(restored)}; recall@10: original ${recall(original)}, imported ${recall(imported)}, restored ${recall(restored)}`);
  void verify.out;
} finally {
  await stopServerChildren(servers);
  fs.rmSync(work, { recursive: true, force: true });
}
