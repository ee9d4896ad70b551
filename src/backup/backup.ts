import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { AkiDB } from '../engine/database.js';
import { AkiError } from '../errors.js';
import { decodeManifestText } from '../storage/manifest.js';
import { SegmentFile } from '../storage/segment-file.js';
import { manifestFiles, readLocalManifest } from '../tiering/collection-replicator.js';

/**
 * Backups: a catalog copy (SQLite's online backup) plus, for every collection, its newest manifest
 * and the segment and index files it names, all listed with sizes and SHA-256 in `backup.json`.
 *
 * Consistency: the catalog is copied first; then each collection is flushed, so every write
 * acknowledged before the backup began is in a segment, and the files of its newest manifest are
 * hard-linked (segments are immutable; a link keeps a file a merge deletes meanwhile). Writes that
 * land during the backup may or may not be in it; nothing acknowledged before it is missing.
 */

export const BACKUP_FORMAT = 'akidb-backup';
export const BACKUP_VERSION = 1;
export const BACKUP_MANIFEST = 'backup.json';
const CATALOG_FILE = 'metadata.db';

export interface BackupFile {
  /** Relative to the backup directory, `/`-separated. */
  path: string;
  bytes: number;
  sha256: string;
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  version: number;
  backup_id: string;
  created_at: string;
  server_version: string;
  collections: { collection_id: string; tenant: string; database: string; name: string; manifest_version: number; documents: number }[];
  files: BackupFile[];
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Where a server stages backups for clients to download: inside the data dir, so files can be hard-linked. */
export function stagingRoot(db: AkiDB): string {
  return path.join(db.dataDir, 'backups');
}

const BACKUP_ID = /^[0-9a-f-]{36}$/;

export function stagingDir(db: AkiDB, backupId: string): string {
  if (!BACKUP_ID.test(backupId)) throw new AkiError('INVALID_ARGUMENT', { backup_id: backupId.slice(0, 64) }, 'Not a backup id');
  return path.join(stagingRoot(db), backupId);
}

/** Take a backup of a running database (or of the collections in `only`) into `<data_dir>/backups/<id>/`; returns its manifest. */
export async function createSnapshot(db: AkiDB, serverVersion: string, only?: ReadonlySet<string>): Promise<BackupManifest> {
  const backupId = randomUUID();
  const dir = stagingDir(db, backupId);
  await mkdir(path.join(dir, 'collections'), { recursive: true });
  try {
    const createdAt = new Date().toISOString();
    await db.backupCatalog(path.join(dir, CATALOG_FILE));
    const catalog = new Database(path.join(dir, CATALOG_FILE));
    const collections: BackupManifest['collections'] = [];
    try {
      const ids = (catalog.prepare('SELECT collection_id FROM collections').all() as { collection_id: string }[]).map((r) => r.collection_id);
      for (const id of ids) {
        // A backup of some collections (export): the others leave the catalog copy.
        if (only && !only.has(id)) {
          catalog.prepare('DELETE FROM collections WHERE collection_id = ?').run(id);
          continue;
        }
        const snap = await snapshotCollection(db, id, path.join(dir, 'collections', id));
        // Dropped after the catalog was copied: leave it out of the copy too.
        if (!snap) catalog.prepare('DELETE FROM collections WHERE collection_id = ?').run(id);
        else collections.push(snap);
      }
    } finally {
      catalog.close();
    }
    // The catalog copy is a WAL-mode database: fold its -wal back in so the backup is one file.
    const folded = new Database(path.join(dir, CATALOG_FILE));
    folded.pragma('wal_checkpoint(TRUNCATE)');
    folded.pragma('journal_mode = DELETE');
    folded.close();
    const manifest: BackupManifest = { format: BACKUP_FORMAT, version: BACKUP_VERSION, backup_id: backupId, created_at: createdAt, server_version: serverVersion, collections, files: await listFiles(dir) };
    await writeFile(path.join(dir, BACKUP_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    return manifest;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function snapshotCollection(db: AkiDB, collectionId: string, into: string): Promise<BackupManifest['collections'][number] | null> {
  let col;
  try {
    col = await db.getCollectionById(collectionId);
  } catch (err) {
    if (err instanceof AkiError && err.code === 'COLLECTION_NOT_FOUND') return null;
    throw err;
  }
  await col.flush();
  const src = db.collectionDir(collectionId);
  for (let attempt = 0; attempt < 10; attempt++) {
    const newest = await readLocalManifest(src);
    await rm(into, { recursive: true, force: true });
    await mkdir(path.join(into, 'manifests'), { recursive: true });
    await mkdir(path.join(into, 'segments'), { recursive: true });
    if (!newest) return { collection_id: collectionId, tenant: col.info.tenant, database: col.info.database, name: col.info.name, manifest_version: 0, documents: 0 };
    try {
      for (const f of manifestFiles(newest.manifest)) await linkOrCopy(path.join(src, 'segments', f), path.join(into, 'segments', f));
    } catch (err) {
      // A merge replaced the manifest and deleted a file between the read and the link: read again.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    await writeFile(path.join(into, 'manifests', `v${String(newest.version).padStart(20, '0')}.json`), newest.raw);
    const documents = newest.manifest.segments.reduce((n, s) => n + s.rows - s.tombstones, 0);
    return { collection_id: collectionId, tenant: col.info.tenant, database: col.info.database, name: col.info.name, manifest_version: newest.version, documents };
  }
  throw new AkiError('STORAGE_IO', { collection_id: collectionId }, 'The collection kept merging while it was being backed up; retry');
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(from, to);
  }
}

async function listFiles(root: string, rel = ''): Promise<BackupFile[]> {
  const out: BackupFile[] = [];
  for (const e of (await readdir(path.join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const r = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await listFiles(root, r)));
    else if (e.isFile() && r !== BACKUP_MANIFEST) out.push({ path: r, bytes: (await stat(path.join(root, r))).size, sha256: await sha256File(path.join(root, r)) });
  }
  return out;
}

/** Read and check `backup.json`: format, version, and file paths that stay inside the backup. */
export async function readBackupManifest(dir: string): Promise<BackupManifest> {
  let m: BackupManifest;
  try {
    m = JSON.parse(await readFile(path.join(dir, BACKUP_MANIFEST), 'utf8')) as BackupManifest;
  } catch (err) {
    throw new AkiError('STORAGE_CORRUPT', { dir }, `${path.join(dir, BACKUP_MANIFEST)} is missing or not JSON: ${(err as Error).message}`);
  }
  if (m?.format !== BACKUP_FORMAT || m.version !== BACKUP_VERSION || !Array.isArray(m.files)) throw new AkiError('STORAGE_CORRUPT', { dir }, `${dir} does not hold an AkiDB backup of format version ${BACKUP_VERSION}`);
  for (const f of m.files) if (!isSafeRelative(f.path)) throw new AkiError('STORAGE_CORRUPT', { dir, path: String(f.path).slice(0, 200) }, 'A backup file path leaves the backup directory');
  return m;
}

export function isSafeRelative(p: unknown): p is string {
  return typeof p === 'string' && p.length > 0 && p.length < 1024 && !p.startsWith('/') && p.split('/').every((s) => s !== '' && s !== '.' && s !== '..' && !s.includes('\\'));
}

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  checked: { files: number; bytes: number; segments: number; manifests: number };
}

/** Check a backup: every file's size and SHA-256, then the same checks as a data directory. */
export async function verifyBackup(dir: string): Promise<VerifyReport> {
  const m = await readBackupManifest(dir);
  const problems: string[] = [];
  let bytes = 0;
  for (const f of m.files) {
    const file = path.join(dir, f.path);
    try {
      const st = await stat(file);
      if (st.size !== f.bytes) problems.push(`${f.path}: ${st.size} bytes, the backup lists ${f.bytes}`);
      else if ((await sha256File(file)) !== f.sha256) problems.push(`${f.path}: SHA-256 differs from the backup's`);
      bytes += st.size;
    } catch (err) {
      problems.push(`${f.path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`);
    }
  }
  const inner = await verifyDataDir(dir);
  return { ok: problems.length === 0 && inner.ok, problems: [...problems, ...inner.problems], checked: { ...inner.checked, files: m.files.length, bytes } };
}

/**
 * Check a (stopped) data directory or a backup: the catalog's `PRAGMA integrity_check`, every
 * collection's newest manifest (checksum and shape) and every segment file it names (header and
 * section checksums, read in full).
 */
export async function verifyDataDir(dir: string): Promise<VerifyReport> {
  const problems: string[] = [];
  const checked = { files: 0, bytes: 0, segments: 0, manifests: 0 };
  const catalogFile = path.join(dir, CATALOG_FILE);
  let ids: string[] = [];
  try {
    const cat = new Database(catalogFile, { readonly: true, fileMustExist: true });
    try {
      const result = (cat.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
      if (result.join() !== 'ok') problems.push(`${CATALOG_FILE}: integrity_check: ${result.slice(0, 5).join('; ')}`);
      ids = (cat.prepare('SELECT collection_id FROM collections').all() as { collection_id: string }[]).map((r) => r.collection_id);
    } finally {
      cat.close();
    }
  } catch (err) {
    problems.push(`${CATALOG_FILE}: ${(err as Error).message}`);
  }
  for (const id of ids) {
    if (!/^[0-9a-f-]{36}$/.test(id)) {
      problems.push(`catalog names a collection id that is not a UUID: ${JSON.stringify(id.slice(0, 80))}`);
      continue;
    }
    const cdir = path.join(dir, 'collections', id);
    const names = await readdir(path.join(cdir, 'manifests')).catch(() => [] as string[]);
    const newest = names.filter((n) => /^v\d{20}\.json$/.test(n)).sort().at(-1);
    // Never flushed: nothing but its WAL (replayed, and checked, when the collection opens).
    if (!newest) continue;
    let manifest;
    try {
      manifest = decodeManifestText(await readFile(path.join(cdir, 'manifests', newest), 'utf8'), `${id}/manifests/${newest}`);
      checked.manifests += 1;
    } catch (err) {
      problems.push(`collection ${id}: ${(err as Error).message}`);
      continue;
    }
    for (const s of manifest.segments) {
      const file = path.join(cdir, 'segments', s.file);
      try {
        const seg = SegmentFile.open(file);
        try {
          // Every section's checksum: the data and keys decoded, the vectors streamed.
          seg.readData();
          seg.readKeys();
          seg.verifyVectors();
        } finally {
          seg.close();
        }
        checked.segments += 1;
      } catch (err) {
        problems.push(`collection ${id}: segment ${s.file}: ${(err as Error).message}`);
      }
    }
  }
  return { ok: problems.length === 0, problems, checked };
}

/** Rebuild a data directory from a verified backup. Refuses a target that already holds data. */
export async function restoreBackup(from: string, dataDir: string, onFile?: (done: number, total: number) => void): Promise<BackupManifest> {
  const report = await verifyBackup(from);
  if (!report.ok) throw new AkiError('STORAGE_CORRUPT', { from }, `The backup failed verification:\n  ${report.problems.join('\n  ')}`);
  const m = await readBackupManifest(from);
  const existing = await readdir(dataDir).catch(() => [] as string[]);
  if (existing.some((n) => n === CATALOG_FILE || n === 'collections')) throw new AkiError('INVALID_ARGUMENT', { data_dir: dataDir }, `${dataDir} already holds a database; restore into an empty directory`);
  let done = 0;
  for (const f of m.files) {
    const to = path.join(dataDir, f.path);
    await mkdir(path.dirname(to), { recursive: true });
    await copyFile(path.join(from, f.path), to);
    onFile?.(++done, m.files.length);
  }
  return m;
}
