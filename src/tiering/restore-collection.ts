import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { CollectionRecord } from '../catalog/catalog.js';
import { AkiError } from '../errors.js';
import type { ObjectInfo, ObjectStore } from '../objectstore/object-store.js';
import type { ServiceLogger } from '../services/service.js';
import { fsyncDir } from '../storage/fs-util.js';
import type { Manifest } from '../storage/manifest.js';
import { parseWalFile } from '../storage/wal.js';
import {
  decodeManifestFile,
  decodeRecord,
  manifestFiles,
  manifestKey,
  parseReplicaKey,
  readObject,
  RECORD_KEY,
  RESTORE_MARKER_FILE,
  segmentKey,
  type RestoreMarker,
} from './collection-replicator.js';

/** Where a restored WAL file stops short of the chunks stored after it. */
export interface WalGap {
  file: string;
  /** Bytes restored: the file ends here. */
  offset: number;
  reason: string;
}

/** What `restoreCollection` installed. */
export interface RestoreResult {
  record: CollectionRecord;
  /** The manifest installed; 0 when no complete manifest was stored (the WAL alone then). */
  manifestVersion: number;
  checkpointLsn: number;
  /** Segments the installed manifest names. */
  segments: number;
  /** WAL files installed: those with records past the checkpoint. */
  walFiles: number;
  walBytes: number;
  /** WAL files cut short at a missing, short or unreadable chunk; the engine's replay stops at the first LSN gap they cause. */
  gaps: WalGap[];
  /** Newer manifest versions skipped: a file they name is missing, or they fail their checksum. */
  skippedManifests: number[];
}

/** A collection found in the store by `listRemoteCollections`. */
export interface RemoteCollection {
  collectionId: string;
  /** Its prefix in the store, ending in `/`: what `restoreCollection` takes. */
  prefix: string;
  record: CollectionRecord;
}

const SEGMENT_DOWNLOADS = 4;
const ATTEMPTS = 3;

/**
 * Rebuild a collection directory from what a CollectionReplicator stored under `prefix`: the
 * newest manifest whose files are all stored (newer, incomplete ones are skipped), its segment and
 * index files, and every WAL file holding records past its checkpoint, reassembled from its chunks
 * in offset order (overlaps are the same bytes of an append-only file; at a gap the file stops and
 * the gap is reported). The engine opens the result as after a crash: a torn tail in the last
 * chunk is cut by its normal recovery, and its LSN chain check stops replay at a missing file.
 *
 * Contract: read-only on the store; `localDir` must be absent or empty; everything is written
 * under a temporary sibling, fsynced, then renamed into place, so `localDir` appears whole or not
 * at all. It also leaves RESTORE_MARKER_FILE, which tells the next replicator on this directory
 * where the remote history forked. Throws COLLECTION_NOT_FOUND without `collection.json`.
 */
export async function restoreCollection(store: ObjectStore, prefix: string, localDir: string, opts: { logger?: ServiceLogger } = {}): Promise<RestoreResult> {
  if (!prefix.endsWith('/')) throw new AkiError('INVALID_ARGUMENT', { prefix }, 'prefix must end with /');
  const entries = await readdir(localDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  if (entries.length > 0) throw new AkiError('INVALID_ARGUMENT', { localDir }, 'restoreCollection needs an absent or empty directory');
  const tmp = `${path.resolve(localDir)}.restoring`;
  // A replicator's garbage collection may delete a file between the listing and its download
  // (a newer manifest was stored meanwhile): list again and pick again.
  for (let attempt = 1; ; attempt++) {
    await rm(tmp, { recursive: true, force: true });
    try {
      const result = await restoreInto(store, prefix, tmp, opts.logger);
      await rm(localDir, { recursive: true, force: true });
      await rename(tmp, localDir);
      await fsyncDir(path.dirname(path.resolve(localDir)));
      return result;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      if (!(err instanceof Vanished) || attempt >= ATTEMPTS) throw err instanceof Vanished ? new AkiError('STORAGE_IO', { prefix, key: err.key }, 'Replica objects kept disappearing during the restore') : err;
      opts.logger?.warn({ prefix, key: err.key, attempt }, 'A replica object vanished during the restore; listing again');
    }
  }
}

/** A listed object was gone when downloaded. */
class Vanished extends Error {
  constructor(readonly key: string) {
    super(`${key} vanished`);
  }
}

async function restoreInto(store: ObjectStore, prefix: string, dir: string, logger: ServiceLogger | undefined): Promise<RestoreResult> {
  const listed = new Map<string, ObjectInfo>();
  for await (const info of store.list(prefix)) listed.set(info.key.slice(prefix.length), info);

  const recordInfo = listed.get(RECORD_KEY);
  if (!recordInfo) throw new AkiError('COLLECTION_NOT_FOUND', { prefix }, `No collection.json under ${prefix}`);
  const recordBody = await readObject(store, recordInfo.key, recordInfo);
  if (!recordBody) throw new Vanished(recordInfo.key);
  const record = decodeRecord(recordBody, recordInfo.key);

  const versions: number[] = [];
  const walChunks = new Map<string, { start: number; end: number; info: ObjectInfo; cut?: boolean }[]>();
  const walEnds = new Map<string, number>();
  for (const [rel, info] of listed) {
    const k = parseReplicaKey(rel);
    if (k?.kind === 'manifest') versions.push(k.version);
    else if (k?.kind === 'wal') {
      let list = walChunks.get(k.file);
      if (!list) walChunks.set(k.file, (list = []));
      list.push({ start: k.start, end: k.end, info });
    } else if (k?.kind === 'wal-end') walEnds.set(k.file, Math.min(k.offset, walEnds.get(k.file) ?? Infinity));
  }
  // An end marker cuts its file: bytes past it belong to a write that was refused (S3Only).
  for (const [file, endAt] of walEnds) {
    const list = walChunks.get(file);
    if (!list) continue;
    const kept = list.filter((c) => c.start < endAt).map((c) => ({ ...c, end: Math.min(c.end, endAt), cut: c.end > endAt }));
    walChunks.set(file, kept);
  }
  versions.sort((a, b) => b - a);

  // The newest complete manifest: its bytes and the files it names are all stored.
  let chosen: { version: number; raw: Buffer; manifest: Manifest; files: string[] } | null = null;
  const skippedManifests: number[] = [];
  for (const version of versions) {
    const info = listed.get(manifestKey(version))!;
    const raw = await readObject(store, info.key, info);
    if (!raw) throw new Vanished(info.key);
    let manifest: Manifest;
    try {
      manifest = decodeManifestFile(raw, info.key);
    } catch (err) {
      logger?.warn({ prefix, version, err: String(err) }, 'Skipping a stored manifest that fails its checksum');
      skippedManifests.push(version);
      continue;
    }
    const files = manifestFiles(manifest);
    const missing = files.filter((f) => !listed.has(segmentKey(f)));
    if (manifest.version !== version || missing.length > 0) {
      logger?.warn({ prefix, version, missing }, 'Skipping a stored manifest whose files are not all stored');
      skippedManifests.push(version);
      continue;
    }
    chosen = { version, raw, manifest, files };
    break;
  }

  for (const sub of ['manifests', 'segments', 'wal']) await mkdir(path.join(dir, sub), { recursive: true });

  if (chosen) {
    const queue = [...chosen.files];
    const download = async (): Promise<void> => {
      for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
        const info = listed.get(segmentKey(file))!;
        const body = await readObject(store, info.key, info);
        if (!body) throw new Vanished(info.key);
        await writeDurable(path.join(dir, 'segments', file), body);
      }
    };
    await Promise.all(Array.from({ length: SEGMENT_DOWNLOADS }, download));
    await writeDurable(path.join(dir, 'manifests', path.basename(manifestKey(chosen.version))), chosen.raw);
  }

  const gaps: WalGap[] = [];
  let walBytes = 0;
  let walFiles = 0;
  const checkpointLsn = chosen?.manifest.checkpointLsn ?? 0;
  for (const [file, chunks] of [...walChunks].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const { bytes, gap } = await assembleWal(store, file, chunks);
    // A file whose records are all in the segments is one the engine deleted after a checkpoint
    // (the remote copy waits for garbage collection). Left in, it would break the LSN chain the
    // engine checks at open wherever an older file was never shipped: leave it out, as the engine does.
    const last = parseWalFile(bytes, 0).records.at(-1)?.lsn;
    if (last !== undefined && last <= checkpointLsn) continue;
    if (gap) gaps.push(gap);
    // Not one whole record (a torn first frame, or a gap at offset 0): nothing the engine could replay.
    if (last === undefined) continue;
    await writeDurable(path.join(dir, 'wal', file), bytes);
    walFiles += 1;
    walBytes += bytes.length;
  }
  if (gaps.length > 0) logger?.warn({ prefix, gaps }, 'Restored WAL files stop at gaps between stored chunks');

  const marker: RestoreMarker = { formatVersion: 1, manifestVersion: chosen?.version ?? 0, nextSegmentId: chosen?.manifest.nextSegmentId ?? 1 };
  await writeDurable(path.join(dir, RESTORE_MARKER_FILE), Buffer.from(JSON.stringify(marker)));
  for (const sub of ['manifests', 'segments', 'wal']) await fsyncDir(path.join(dir, sub));
  await fsyncDir(dir);
  return {
    record,
    manifestVersion: chosen?.version ?? 0,
    checkpointLsn,
    segments: chosen?.manifest.segments.length ?? 0,
    walFiles,
    walBytes,
    gaps,
    skippedManifests,
  };
}

/**
 * Every collection a replicator stored under `rootPrefix` (e.g. `collections/`): one per
 * `<rootPrefix><id>/collection.json`, with the prefix to restore it from. What a new node given
 * only the bucket starts from. Throws STORAGE_CORRUPT for a record that does not parse.
 */
export async function listRemoteCollections(store: ObjectStore, rootPrefix: string): Promise<RemoteCollection[]> {
  const found: ObjectInfo[] = [];
  for await (const info of store.list(rootPrefix)) {
    const rest = info.key.slice(rootPrefix.length);
    const slash = rest.indexOf('/');
    if (slash > 0 && rest.slice(slash + 1) === RECORD_KEY) found.push(info);
  }
  const out: RemoteCollection[] = [];
  for (const info of found) {
    const body = await readObject(store, info.key, info);
    if (!body) continue;
    const record = decodeRecord(body, info.key);
    out.push({ collectionId: record.collectionId, prefix: info.key.slice(0, info.key.length - RECORD_KEY.length), record });
  }
  return out;
}

/** One WAL file from its chunks in offset order; overlaps are the same bytes of an append-only file, so only the new part of each is taken. */
async function assembleWal(store: ObjectStore, file: string, chunks: { start: number; end: number; info: ObjectInfo; cut?: boolean }[]): Promise<{ bytes: Buffer; gap: WalGap | null }> {
  chunks.sort((a, b) => a.start - b.start || b.end - a.end);
  const parts: Buffer[] = [];
  let end = 0;
  for (const c of chunks) {
    if (c.end <= end) continue;
    if (c.start > end) return { bytes: Buffer.concat(parts), gap: { file, offset: end, reason: `no chunk holds bytes ${end}..${c.start}` } };
    const body = await readObject(store, c.info.key, c.info);
    if (!body || (c.cut ? body.length < c.end - c.start : body.length !== c.end - c.start)) {
      const reason = body ? `chunk ${c.info.key} holds ${body.length} bytes, its key says ${c.end - c.start}` : `chunk ${c.info.key} vanished`;
      return { bytes: Buffer.concat(parts), gap: { file, offset: end, reason } };
    }
    parts.push(body.subarray(end - c.start, c.end - c.start));
    end = c.end;
  }
  return { bytes: Buffer.concat(parts), gap: null };
}

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await fh.write(data, done, data.length - done)).bytesWritten;
}

async function writeDurable(file: string, data: Uint8Array): Promise<void> {
  const fh = await open(file, 'w');
  try {
    await writeAll(fh, data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
