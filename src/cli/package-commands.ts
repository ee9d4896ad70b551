import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { PackageWriter, readPackage, type PackageCollection, type PackageHeader } from '../akipkg/akipkg.js';
import { AkiDB } from '../engine/database.js';
import type { Collection } from '../engine/collection.js';
import { AkiError } from '../errors.js';
import { authHeaders, downloadBackup, failed, type Out } from './backup-commands.js';

function progressLine(out: Out, label: string, done: number, total: number | null): void {
  const line = `${label}: ${done}${total !== null ? `/${total}` : ''} documents`;
  if (process.stderr.isTTY) out.stderr(`\r${line}`);
  else if (done === total || done % 10_000 < 1000) out.stderr(`${line}\n`);
}

function collectionPath(flags: Record<string, string>, name: string): string {
  return `/api/v1/tenants/${encodeURIComponent(flags.tenant ?? 'default')}/databases/${encodeURIComponent(flags.database ?? 'default')}/collections/${encodeURIComponent(name)}`;
}

function describe(col: Collection, policy: string): PackageCollection {
  const i = col.info;
  return { name: i.name, dimension: i.dimension, metric: i.metric, index: { m: i.index.m, ef_construction: i.index.efConstruction, ef_search: i.index.efSearch, quantization: i.index.quantization }, tiering_policy: policy };
}

async function writePackage(col: Collection, policy: string, file: string, version: string, out: Out): Promise<{ documents: number; sha256: string }> {
  const w = new PackageWriter(file, { collection: describe(col, policy), created_at: new Date().toISOString(), exported_by: `akidb ${version}` });
  const total = col.stats().documents;
  for await (const page of col.scan(1000)) {
    await w.write(page);
    progressLine(out, 'export', w.documents, total);
  }
  if (process.stderr.isTTY) out.stderr('\n');
  return w.close();
}

/**
 * `akidb export --url URL --collection NAME --output FILE` (a running server: the collection is
 * backed up consistently, then read from the copy) or `--data-dir DIR` (a stopped node).
 */
export async function exportCommand(flags: Record<string, string>, out: Out, version: string): Promise<number> {
  const { collection: name, output } = flags;
  if (!name || !output || (!flags.url === !flags['data-dir'])) {
    out.stderr('akidb export: --collection NAME, --output FILE and one of --url URL or --data-dir DIR are required\n');
    return 2;
  }
  if (flags['data-dir']) {
    const db = await AkiDB.open({ dataDir: flags['data-dir'], autoInitialize: false, compaction: { enableBackground: false } });
    try {
      const col = await db.database(flags.tenant ?? 'default', flags.database ?? 'default').getCollection(name);
      const r = await writePackage(col, col.info.tieringPolicy, output, version, out);
      out.stdout(`${JSON.stringify({ collection: name, output, ...r })}\n`);
      return 0;
    } finally {
      await db.close();
    }
  }
  const url = flags.url!.replace(/\/+$/, '');
  const headers = authHeaders(flags);
  const res = await fetch(`${url}${collectionPath(flags, name)}`, { headers });
  if (res.status !== 200) throw await failed(res, `collection ${name}`);
  const info = (await res.json()) as { collection_id: string; tiering_policy: string };
  const tmp = await mkdtemp(path.join(tmpdir(), 'akidb-export-'));
  try {
    await downloadBackup(url, headers, tmp, out, 'export (copy)', info.collection_id);
    // The copy is read here without an object store: open it as a local collection.
    const cat = new Database(path.join(tmp, 'metadata.db'));
    cat.prepare("UPDATE collections SET tiering_policy = 'Memory'").run();
    cat.close();
    const db = await AkiDB.open({ dataDir: tmp, autoInitialize: false, compaction: { enableBackground: false } });
    try {
      const r = await writePackage(await db.getCollectionById(info.collection_id), info.tiering_policy, output, version, out);
      out.stdout(`${JSON.stringify({ collection: name, output, ...r })}\n`);
      return 0;
    } finally {
      await db.close();
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function sameShape(a: { dimension: number; metric: string }, h: PackageHeader): string | null {
  if (a.dimension !== h.collection.dimension) return `dimension ${a.dimension}, the package's is ${h.collection.dimension}`;
  if (a.metric !== h.collection.metric) return `metric ${a.metric}, the package's is ${h.collection.metric}`;
  return null;
}

/**
 * `akidb import --url URL --file FILE` (or `--data-dir DIR`, a stopped node): checks the whole
 * package first, then creates the collection (its name, or `--collection`) and upserts every
 * document. An existing collection of that name is refused unless `--into-existing`.
 */
export async function importCommand(flags: Record<string, string>, out: Out): Promise<number> {
  const file = flags.file;
  if (!file || (!flags.url === !flags['data-dir'])) {
    out.stderr('akidb import: --file FILE and one of --url URL or --data-dir DIR are required\n');
    return 2;
  }
  const intoExisting = flags['into-existing'] === 'true';
  // Pass 1: the whole file is read and checked, so a truncated or altered package imports nothing.
  let total = 0;
  try {
    total = (await readPackage(file, async () => undefined, async () => undefined)).documents;
  } catch (err) {
    out.stderr(`akidb import: ${(err as Error).message}\n`);
    return 1;
  }
  let done = 0;
  const refuse = (why: string): never => {
    throw new AkiError('COLLECTION_ALREADY_EXISTS', {}, why);
  };
  try {
    if (flags['data-dir']) {
      const db = await AkiDB.open({ dataDir: flags['data-dir'], compaction: { enableBackground: true } });
      try {
        const scope = db.database(flags.tenant ?? 'default', flags.database ?? 'default');
        let col: Collection | null = null;
        await readPackage(
          file,
          async (h) => {
            const name = flags.collection ?? h.collection.name;
            const exists = (await scope.listCollections()).some((c) => c.name === name);
            if (exists && !intoExisting) refuse(`collection ${name} exists; pass --into-existing to add the package's documents to it`);
            col = exists ? await scope.getCollection(name) : await scope.createCollection({ name, dimension: h.collection.dimension, metric: h.collection.metric, index: { m: h.collection.index.m, efConstruction: h.collection.index.ef_construction, efSearch: h.collection.index.ef_search, quantization: h.collection.index.quantization } });
            const mismatch = sameShape(col.info, h);
            if (mismatch) refuse(`collection ${name} has ${mismatch}`);
          },
          async (docs) => {
            await col!.upsert(docs.map((d) => ({ id: d.id, vector: d.vector, metadata: d.metadata, text: d.text })));
            done += docs.length;
            progressLine(out, 'import', done, total);
          },
        );
      } finally {
        await db.close();
      }
    } else {
      const url = flags.url!.replace(/\/+$/, '');
      const headers = { ...authHeaders(flags), 'content-type': 'application/json' };
      let target = '';
      await readPackage(
        file,
        async (h) => {
          const name = flags.collection ?? h.collection.name;
          target = collectionPath(flags, name);
          const existing = await fetch(`${url}${target}`, { headers });
          if (existing.status === 200) {
            if (!intoExisting) refuse(`collection ${name} exists; pass --into-existing to add the package's documents to it`);
            const mismatch = sameShape((await existing.json()) as { dimension: number; metric: string }, h);
            if (mismatch) refuse(`collection ${name} has ${mismatch}`);
            return;
          }
          if (existing.status !== 404) throw await failed(existing, `collection ${name}`);
          const scope = target.slice(0, target.lastIndexOf('/'));
          const created = await fetch(`${url}${scope}`, { method: 'POST', headers, body: JSON.stringify({ name, dimension: h.collection.dimension, metric: h.collection.metric, index: h.collection.index }) });
          if (created.status !== 201) throw await failed(created, `creating collection ${name}`);
        },
        async (docs) => {
          const body = JSON.stringify({ documents: docs.map((d) => ({ doc_id: d.id, vector: Buffer.from(d.vector.buffer, d.vector.byteOffset, d.vector.byteLength).toString('base64'), ...(d.metadata ? { metadata: d.metadata } : {}), ...(d.text !== null ? { text: d.text } : {}) })) });
          const res = await fetch(`${url}${target}/upsert`, { method: 'POST', headers, body });
          if (res.status !== 200) throw await failed(res, 'upsert');
          done += docs.length;
          progressLine(out, 'import', done, total);
        },
        500,
      );
    }
  } catch (err) {
    out.stderr(`${process.stderr.isTTY ? '\n' : ''}akidb import: ${(err as Error).message}\n`);
    return 1;
  }
  if (process.stderr.isTTY) out.stderr('\n');
  out.stdout(`${JSON.stringify({ file, imported: done })}\n`);
  return 0;
}
