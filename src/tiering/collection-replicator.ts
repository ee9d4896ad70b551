import { open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { TIERING_POLICIES, type CollectionRecord } from '../catalog/catalog.js';
import { AkiError } from '../errors.js';
import type { ObjectInfo, ObjectStore } from '../objectstore/object-store.js';
import { sleep, type Service, type ServiceLogger } from '../services/service.js';
import { fsyncDir } from '../storage/fs-util.js';
import { decodeManifestText, type Manifest } from '../storage/manifest.js';
import type { UploadTask } from './upload-worker.js';

const gunzipAsync = promisify(gunzip);

// ------------------------------------------------------------------ remote layout

/*
 * A replicated collection under its prefix (e.g. `collections/<id>/`):
 *   collection.json                            the catalog record: { formatVersion: 1, collection }
 *   manifests/v<20 digits>.json                the engine's manifest files, byte for byte
 *   segments/seg-<id>.seg, seg-<id>.hnsw       the engine's immutable segment and index files
 *   wal/wal-<20 digits>.log/<start>-<end>      bytes [start, end) of a local WAL file (20 digits each)
 *   wal/wal-<20 digits>.log/end-<offset>       S3Only: the file ends at <offset>; a chunk at or past it is an upload whose write was refused
 * A manifest is stored only after every file it names; WAL chunks of one file are contiguous
 * ranges of an append-only file, so they may overlap (after a restart) but never disagree.
 */

/** The key (under a collection's prefix) of its catalog record. */
export const RECORD_KEY = 'collection.json';

/** The local file a restore leaves in the collection directory: the point the remote history forked at (see `CollectionReplicator`). */
export const RESTORE_MARKER_FILE = 'restored-from.json';

/** What `RESTORE_MARKER_FILE` holds: the manifest a restore installed; remote names past it belong to the history the restore abandoned. */
export interface RestoreMarker {
  formatVersion: 1;
  manifestVersion: number;
  nextSegmentId: number;
}

const pad20 = (n: number): string => String(n).padStart(20, '0');
// Local names as the engine writes them (manifest.ts, wal.ts, collection.ts keep their patterns private).
const LOCAL_MANIFEST = /^v(\d{20})\.json$/;
const LOCAL_WAL = /^wal-(\d{20})\.log$/;
const LOCAL_SEGMENT = /^seg-(\d+)\.(seg|hnsw)$/;

const REMOTE_MANIFEST = /^manifests\/(v(\d{20})\.json)$/;
const REMOTE_SEGMENT = /^segments\/(seg-(\d+)\.(?:seg|hnsw))$/;
const REMOTE_WAL = /^wal\/(wal-(\d{20})\.log)\/(\d{20})-(\d{20})$/;
const REMOTE_WAL_END = /^wal\/(wal-(\d{20})\.log)\/end-(\d{20})$/;

/** The key of manifest `version` under a collection's prefix. */
export function manifestKey(version: number): string {
  return `manifests/v${pad20(version)}.json`;
}

/** The key of a segment or index file under a collection's prefix. */
export function segmentKey(file: string): string {
  return `segments/${file}`;
}

/** The key of bytes [start, end) of WAL file `file` under a collection's prefix. */
export function walChunkKey(file: string, start: number, end: number): string {
  return `wal/${file}/${pad20(start)}-${pad20(end)}`;
}

/** The key of the end marker of WAL file `file` (S3Only): the file's valid bytes end at `offset`. */
export function walEndKey(file: string, offset: number): string {
  return `wal/${file}/end-${pad20(offset)}`;
}

/** A key under a collection's prefix, classified; null for a key this layout does not define. */
export type ReplicaKey =
  | { kind: 'record' }
  | { kind: 'manifest'; file: string; version: number }
  | { kind: 'segment'; file: string; id: number }
  | { kind: 'wal'; file: string; seq: number; start: number; end: number }
  | { kind: 'wal-end'; file: string; seq: number; offset: number };

/** Classify `relativeKey` (the part after the collection's prefix). */
export function parseReplicaKey(relativeKey: string): ReplicaKey | null {
  if (relativeKey === RECORD_KEY) return { kind: 'record' };
  let m = REMOTE_MANIFEST.exec(relativeKey);
  if (m) return { kind: 'manifest', file: m[1]!, version: Number(m[2]) };
  m = REMOTE_SEGMENT.exec(relativeKey);
  if (m) return { kind: 'segment', file: m[1]!, id: Number(m[2]) };
  m = REMOTE_WAL.exec(relativeKey);
  if (m) {
    const start = Number(m[3]);
    const end = Number(m[4]);
    return end > start ? { kind: 'wal', file: m[1]!, seq: Number(m[2]), start, end } : null;
  }
  m = REMOTE_WAL_END.exec(relativeKey);
  if (m) return { kind: 'wal-end', file: m[1]!, seq: Number(m[2]), offset: Number(m[3]) };
  return null;
}

/** The body of `collection.json` for `record`. */
export function encodeRecord(record: CollectionRecord): Buffer {
  return Buffer.from(JSON.stringify({ formatVersion: 1, collection: record }));
}

/** Parse a `collection.json` body; throws STORAGE_CORRUPT when it is not a catalog record. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NAME = /^[A-Za-z0-9_.-]{1,255}$/;

export function decodeRecord(body: Uint8Array, where: string): CollectionRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (err) {
    throw new AkiError('STORAGE_CORRUPT', { key: where }, 'collection.json is not valid JSON', { cause: err });
  }
  const rec = (parsed as { collection?: Partial<CollectionRecord> } | null)?.collection;
  const ok =
    typeof rec === 'object' &&
    rec !== null &&
    (['collectionId', 'tenant', 'database', 'name', 'metric', 'createdAt'] as const).every((k) => typeof rec[k] === 'string') &&
    typeof rec.dimension === 'number' &&
    Number.isInteger(rec.dimension) &&
    rec.dimension > 0 &&
    typeof rec.index === 'object' &&
    rec.index !== null &&
    // The id names a local directory and the names go into the catalog: a bucket is input too.
    UUID.test(rec.collectionId!) &&
    [rec.tenant, rec.database, rec.name].every((n) => NAME.test(n!)) &&
    (rec.tieringPolicy === undefined || (TIERING_POLICIES as readonly unknown[]).includes(rec.tieringPolicy));
  if (!ok) throw new AkiError('STORAGE_CORRUPT', { key: where }, 'collection.json does not hold a valid collection record');
  // Records stored before tiering policies were recorded came from MemoryS3 collections.
  return { ...(rec as CollectionRecord), tieringPolicy: rec.tieringPolicy ?? 'MemoryS3' };
}

/** Decode a manifest file as the engine writes it (`{crc, body}`); throws STORAGE_CORRUPT when it fails its checksum. */
export function decodeManifestFile(raw: Uint8Array, where: string): Manifest {
  // The same checks as a local manifest: checksum, counters, and bare file names (a manifest from
  // the bucket naming `../x` must never reach path.join on restore).
  return decodeManifestText(Buffer.from(raw).toString('utf8'), where);
}

/** Every file a manifest names: segment files and their index files. */
export function manifestFiles(m: Manifest): string[] {
  return m.segments.flatMap((s) => (s.index ? [s.file, s.index.file] : [s.file]));
}

/**
 * Read an object and undo its content encoding (the upload worker may gzip); null when the key
 * does not exist. Asks `head` for the encoding when the listing did not carry it (S3 listings do not).
 */
export async function readObject(store: ObjectStore, key: string, listed?: ObjectInfo): Promise<Buffer | null> {
  const body = await store.get(key);
  if (body === null) return null;
  const encoding = listed?.contentEncoding ?? (await store.head(key))?.contentEncoding;
  if (encoding === undefined || encoding === '' || encoding === 'identity') return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (encoding === 'gzip') return gunzipAsync(body);
  throw new AkiError('STORAGE_CORRUPT', { key, encoding }, `Object has an unsupported content encoding ${encoding}`);
}

// ------------------------------------------------------------------ local files

/** An open local file, read by position: once open it stays readable after the engine unlinks it. */
class FileSource {
  private constructor(
    readonly file: string,
    readonly fh: FileHandle,
  ) {}

  /** Open `file`, or null when it does not exist (any more). */
  static async open(file: string): Promise<FileSource | null> {
    try {
      return new FileSource(file, await open(file, 'r'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  async read(start: number, end: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(end - start);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, start + done);
      if (bytesRead === 0) throw new AkiError('STORAGE_IO', { file: this.file, offset: start + done }, 'File ended before the range being shipped');
      done += bytesRead;
    }
    return buf;
  }

  async readAll(): Promise<Buffer> {
    return this.read(0, await this.size());
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** The newest local manifest with its exact bytes, or null before the first flush. */
export async function readLocalManifest(dir: string): Promise<{ version: number; raw: Buffer; manifest: Manifest } | null> {
  const mdir = path.join(dir, 'manifests');
  // A publish deletes the older version right after the newer one is durable: look again if the one we picked vanished.
  for (let attempt = 0; attempt < 10; attempt++) {
    const newest = Math.max(-1, ...(await readdirOrEmpty(mdir)).map((n) => LOCAL_MANIFEST.exec(n)).filter((m) => m !== null).map((m) => Number(m[1])));
    if (newest < 0) return null;
    const file = path.join(mdir, `v${pad20(newest)}.json`);
    let raw: Buffer;
    try {
      raw = await readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const manifest = decodeManifestFile(raw, file);
    return { version: newest, raw, manifest };
  }
  throw new AkiError('STORAGE_IO', { dir: mdir }, 'The newest manifest kept changing while being read');
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function listLocalWal(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const n of await readdirOrEmpty(path.join(dir, 'wal'))) {
    const m = LOCAL_WAL.exec(n);
    if (m) out.set(n, Number(m[1]));
  }
  return out;
}

async function readMarker(dir: string): Promise<RestoreMarker | null> {
  try {
    const m = JSON.parse(await readFile(path.join(dir, RESTORE_MARKER_FILE), 'utf8')) as RestoreMarker;
    if (Number.isInteger(m.manifestVersion) && Number.isInteger(m.nextSegmentId)) return m;
    throw new AkiError('STORAGE_CORRUPT', { file: RESTORE_MARKER_FILE }, 'Restore marker is malformed');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

// ------------------------------------------------------------------ the replicator

/** The side of the upload worker a replicator uses (UploadWorker satisfies it). */
export interface UploadQueue {
  enqueue(task: UploadTask): void;
  /** Per collection, the age of its oldest task still held; a collection absent holds none. */
  lagMs(now?: number): Map<string, number>;
}

/** Options of a CollectionReplicator. */
export interface CollectionReplicatorOptions {
  collectionId: string;
  /** The collection's local directory (`<dataDir>/collections/<id>`). */
  dir: string;
  /** Where the collection lives in the store, ending in `/` (e.g. `collections/<id>/`). */
  prefix: string;
  store: ObjectStore;
  uploads: UploadQueue;
  /** The catalog record, stored once as `collection.json` for disaster recovery. */
  record: CollectionRecord;
  logger: ServiceLogger;
  /** Time between syncs (default 1000). */
  intervalMs?: number;
  /** Largest WAL chunk one object carries (default 8 MiB). */
  maxChunkBytes?: number;
  /** Time between automatic `collectGarbage` runs; 0 never runs it from `run` (default 60000). */
  gcIntervalMs?: number;
  /** An upload still not stored this long after it was queued, with nothing of this collection left in the worker, was dead-lettered: queue it again (default 60000). */
  resendAfterMs?: number;
  /**
   * S3Only: WAL files named this or later are stored by the WAL's commit hook (which reports
   * each chunk through `noteWalStored`), not shipped from disk. Default: none.
   */
  externalWalFrom?: string | null;
  /** Called when a manifest (a snapshot a restore can start from) is stored. */
  onManifestStored?: ((version: number) => void) | null;
}

/** What a replicator has done since it started. */
export interface ReplicationStats {
  /** See `lagMs()`. */
  lagMs: number;
  objectsStored: number;
  /** Bytes of stored objects as read from disk (before any compression). */
  bytesStored: number;
  walBytesStored: number;
  /** Objects queued and not yet stored. */
  pendingObjects: number;
  /** Highest manifest version known stored; 0 when none. */
  storedManifestVersion: number;
  /** Uploads queued again after being dead-lettered. */
  resends: number;
  /** Remote objects deleted by garbage collection or by the start-up reconciliation. */
  deletedObjects: number;
  /** True once the start-up listing has been taken and reconciled. */
  reconciled: boolean;
}

interface Shipment {
  key: string;
  task: UploadTask;
  seenAt: number;
  enqueuedAt: number;
  stored: boolean;
  bytes: number;
  wal: boolean;
}

interface FileEntry {
  state: 'queued' | 'stored';
  source: FileSource | null;
}

interface Candidate {
  version: number;
  raw: Buffer;
  files: string[];
  seenAt: number;
  state: 'waiting' | 'queued' | 'stored' | 'unshippable';
}

interface WalFile {
  name: string;
  seq: number;
  /** Present in the local WAL directory at the last sync. */
  present: boolean;
  source: FileSource | null;
  /** Bytes [0, enqueued) are queued or stored; [0, stored) are stored. */
  enqueued: number;
  stored: number;
  /** Queued chunks by start offset, dropped once `stored` passes them. */
  chunks: Map<number, { end: number; stored: boolean }>;
  /** Every stored chunk's full key, for garbage collection. */
  remoteKeys: Set<string>;
  /** Once the file vanished locally: a local manifest version whose checkpoint covers all its records. */
  coveredBy: number | null;
}

/**
 * Ships one collection's directory to the object store, file by file, as MemoryS3 wants it: the
 * catalog record once, each immutable segment / index file once, each manifest only after every
 * file it names is stored, and the bytes appended to each WAL file since the last sync as chunks.
 * The remote prefix then always holds a state `restoreCollection` can rebuild: the newest stored
 * manifest plus the WAL chunks beyond it (everything acknowledged up to the reported lag).
 *
 * Contract: needs no engine hooks; reads files the engine only appends to (WAL) or never changes
 * (segments, manifests); a file the engine deletes before it was opened is skipped (a newer
 * manifest covers it), one deleted after is still shipped through its open handle. Start it
 * once the collection has opened, and again after every reopen: opening may set corrupt WAL files
 * aside and reuse their names, which only the start-up check below notices. At start it lists the
 * prefix once: what is stored is not shipped again; remote names the local engine has not issued
 * yet (or, after a restore, names past the restored manifest) belong to an abandoned history and
 * are deleted before anything is shipped, so a later restore never mixes two histories. One
 * replicator per prefix: two writers on one prefix are not fenced.
 */
export class CollectionReplicator implements Service {
  readonly name: string;
  readonly #o: Required<Omit<CollectionReplicatorOptions, 'record'>> & { record: CollectionRecord };
  #lane: Promise<void> = Promise.resolve();
  #closed = false;
  #reconciled = false;
  #startedAt: number | null = null;
  /** Start of the last sync that completed: anything a sync finds new appeared after it. */
  #lastSyncAt: number | null = null;
  #lastGcAt = Date.now();

  readonly #pending = new Set<Shipment>();
  #recordStored = false;
  #recordQueued = false;
  readonly #files = new Map<string, FileEntry>();
  readonly #candidates = new Map<number, Candidate>();
  #storedManifest: { version: number; files: Set<string> | null } = { version: 0, files: null };
  readonly #remoteManifests = new Set<number>();
  readonly #wal = new Map<string, WalFile>();
  /** Sources no longer needed, closed at the next sync (onStored runs inside the worker and must not await). */
  #retired: FileSource[] = [];
  #stats = { objectsStored: 0, bytesStored: 0, walBytesStored: 0, resends: 0, deletedObjects: 0 };

  constructor(options: CollectionReplicatorOptions) {
    const o = { intervalMs: 1000, maxChunkBytes: 8 * 1024 * 1024, gcIntervalMs: 60_000, resendAfterMs: 60_000, externalWalFrom: null, onManifestStored: null, ...options };
    const bad: string[] = [];
    if (!o.prefix.endsWith('/')) bad.push(`prefix must end with / (got ${JSON.stringify(o.prefix)})`);
    if (o.record.collectionId !== o.collectionId) bad.push('record.collectionId must be the collectionId');
    if (!(o.intervalMs > 0)) bad.push('intervalMs must be > 0');
    if (!(Number.isInteger(o.maxChunkBytes) && o.maxChunkBytes > 0)) bad.push('maxChunkBytes must be a positive integer');
    if (!(o.gcIntervalMs >= 0)) bad.push('gcIntervalMs must be >= 0');
    if (!(o.resendAfterMs >= 0)) bad.push('resendAfterMs must be >= 0');
    if (bad.length > 0) throw new AkiError('INVALID_ARGUMENT', { problems: bad }, `Invalid replicator options: ${bad.join('; ')}`);
    this.#o = o;
    this.name = `replicator:${o.collectionId}`;
  }

  /**
   * The upload lag: the age of the oldest write not yet stored, 0 when every byte and file a sync
   * has seen is stored. A write first seen by a sync is dated at the start of the sync before it
   * (it was not there yet), so this bounds its true age; writes since the last sync count from
   * the next one, at most `intervalMs` later. Before the start-up listing succeeds: the time since the first try.
   */
  lagMs(now = Date.now()): number {
    if (!this.#reconciled) return this.#startedAt === null ? 0 : now - this.#startedAt;
    let oldest = Infinity;
    for (const s of this.#pending) oldest = Math.min(oldest, s.seenAt);
    for (const c of this.#candidates.values()) if (c.version > this.#storedManifest.version) oldest = Math.min(oldest, c.seenAt);
    return oldest === Infinity ? 0 : Math.max(0, now - oldest);
  }

  /** Counters and state for metrics and the tier API. */
  stats(now = Date.now()): ReplicationStats {
    return { lagMs: this.lagMs(now), ...this.#stats, pendingObjects: this.#pending.size, storedManifestVersion: this.#storedManifest.version, reconciled: this.#reconciled };
  }

  /**
   * S3Only: bytes [start, end) of WAL file `file` were stored by the commit hook under
   * `walChunkKey(file, start, end)`. Keeps the file's stored offset and remote keys (for garbage collection) current.
   */
  noteWalStored(file: string, start: number, end: number): void {
    let w = this.#wal.get(file);
    if (!w) {
      const seq = LOCAL_WAL.exec(file);
      if (!seq) return;
      w = newWalFile(file, Number(seq[1]));
      this.#wal.set(file, w);
    }
    w.remoteKeys.add(this.#o.prefix + walChunkKey(file, start, end));
    if (start <= w.stored) w.stored = Math.max(w.stored, end);
    w.enqueued = Math.max(w.enqueued, end);
    this.#stats.objectsStored += 1;
    this.#stats.bytesStored += end - start;
    this.#stats.walBytesStored += end - start;
  }

  /** Queue again, now, the pending uploads among `keys` (full keys); returns how many. */
  resendPending(keys: ReadonlySet<string>): number {
    let n = 0;
    for (const s of this.#pending) {
      if (!keys.has(s.key)) continue;
      s.enqueuedAt = Date.now();
      this.#stats.resends += 1;
      this.#o.uploads.enqueue(s.task);
      n += 1;
    }
    return n;
  }

  /** True once the start-up listing is reconciled and every WAL byte the replicator ships itself (files before `externalWalFrom`) is stored. */
  walCaughtUp(): boolean {
    if (!this.#reconciled || this.#lastSyncAt === null) return false;
    for (const s of this.#pending) if (s.wal) return false;
    return true;
  }

  /** Sync now: queue what changed since the last sync. Resolves once queued (not stored); rejects when the directory or the start-up listing fails. */
  syncNow(): Promise<void> {
    return this.#inLane(() => this.#sync());
  }

  /**
   * Delete remote objects no restore needs any more, once a newer manifest is stored: older
   * manifests, segment files that neither the newest stored manifest nor a pending one names,
   * and the chunks of WAL files the engine deleted after a checkpoint that a stored manifest
   * covers. Resolves with the number of objects deleted.
   */
  collectGarbage(): Promise<number> {
    return this.#inLane(() => this.#collectGarbage());
  }

  /** Sync every `intervalMs` (and collect garbage every `gcIntervalMs`) until `signal` aborts, then close; never rejects. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        try {
          await this.syncNow();
        } catch (err) {
          this.#o.logger.warn({ collectionId: this.#o.collectionId, err: String(err) }, 'Replication sync failed; will retry');
        }
        if (this.#o.gcIntervalMs > 0 && Date.now() - this.#lastGcAt >= this.#o.gcIntervalMs) {
          this.#lastGcAt = Date.now();
          try {
            await this.collectGarbage();
          } catch (err) {
            this.#o.logger.warn({ collectionId: this.#o.collectionId, err: String(err) }, 'Replica garbage collection failed; will retry');
          }
        }
        await sleep(this.#o.intervalMs, signal);
      }
    } finally {
      await this.close();
    }
  }

  /** Sync once more, then wait until everything seen is stored, or `deadline` (epoch ms). */
  async drain(deadline: number): Promise<void> {
    let lastSync = 0;
    while (Date.now() < deadline && !this.#closed) {
      if (Date.now() - lastSync >= this.#o.intervalMs) {
        lastSync = Date.now();
        await this.syncNow().catch((err: unknown) => this.#o.logger.warn({ collectionId: this.#o.collectionId, err: String(err) }, 'Replication sync failed while draining'));
      }
      if (this.#reconciled && this.lagMs() === 0) return;
      await sleep(Math.min(20, Math.max(0, deadline - Date.now())));
    }
  }

  /** Close every open file; later syncs reject. Uploads still queued then fail to read and are retried, then dead-lettered: drain first. */
  async close(): Promise<void> {
    await this.#inLane(async () => {
      if (this.#closed) return;
      this.#closed = true;
      const sources = new Set<FileSource>(this.#retired);
      for (const f of this.#files.values()) if (f.source) sources.add(f.source);
      for (const w of this.#wal.values()) if (w.source) sources.add(w.source);
      this.#retired = [];
      for (const s of sources) await s.close().catch(() => undefined);
    });
  }

  #inLane<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lane.then(fn);
    this.#lane = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  // ---------------------------------------------------------------- one sync

  async #sync(): Promise<void> {
    if (this.#closed) throw new AkiError('CLOSED', { collectionId: this.#o.collectionId }, 'The replicator is closed');
    const now = Date.now();
    this.#startedAt ??= now;
    if (!this.#reconciled) await this.#reconcile();
    await this.#closeRetired();
    this.#resendDeadLettered(now);
    if (!this.#recordStored && !this.#recordQueued) {
      this.#recordQueued = true;
      const body = encodeRecord(this.#o.record);
      this.#ship(RECORD_KEY, now, false, async () => body, {}, () => (this.#recordStored = true));
    }
    // The WAL listing comes before the manifest is read: a WAL file gone from the listing was
    // deleted after a manifest covering it was published, so the manifest read next covers it too.
    const seenFrom = this.#lastSyncAt ?? now;
    const vanished = await this.#shipWal(seenFrom);
    const local = await readLocalManifest(this.#o.dir);
    for (const w of vanished) w.coveredBy = local?.version ?? 0;
    if (local && local.version > this.#storedManifest.version) await this.#shipManifest(local, seenFrom);
    this.#maybeShipManifest();
    this.#lastSyncAt = now;
  }

  async #shipWal(seenAt: number): Promise<WalFile[]> {
    const dir = path.join(this.#o.dir, 'wal');
    const listed = await listLocalWal(this.#o.dir);
    const vanished: WalFile[] = [];
    for (const [name, seq] of listed) if (!this.#wal.has(name)) this.#wal.set(name, newWalFile(name, seq));
    for (const w of [...this.#wal.values()].sort((a, b) => a.seq - b.seq)) {
      if (w.present && !listed.has(w.name)) {
        w.present = false;
        vanished.push(w);
      }
      if (this.#o.externalWalFrom !== null && w.name >= this.#o.externalWalFrom) continue;
      if (w.present && !w.source) {
        w.source = await FileSource.open(path.join(dir, w.name));
        if (!w.source) {
          w.present = false;
          vanished.push(w);
        }
      }
      if (!w.source) continue;
      const size = await w.source.size();
      while (w.enqueued < size) this.#shipWalChunk(w, w.enqueued, Math.min(size, w.enqueued + this.#o.maxChunkBytes), seenAt);
      this.#retireWal(w);
    }
    return vanished;
  }

  /** A WAL file the engine deleted needs its handle only until its last chunk is stored. */
  #retireWal(w: WalFile): void {
    if (w.present || !w.source || w.stored < w.enqueued) return;
    this.#retired.push(w.source);
    w.source = null;
  }

  #shipWalChunk(w: WalFile, start: number, end: number, seenAt: number): void {
    const source = w.source!;
    const key = walChunkKey(w.name, start, end);
    w.chunks.set(start, { end, stored: false });
    w.enqueued = end;
    this.#ship(key, seenAt, true, () => source.read(start, end), { file: source.file, start, end }, () => {
      const c = w.chunks.get(start);
      if (c) c.stored = true;
      w.remoteKeys.add(this.#o.prefix + key);
      // Stored chunks may finish out of order; the stored offset moves over a contiguous run only.
      for (let next = w.chunks.get(w.stored); next?.stored; next = w.chunks.get(w.stored)) {
        w.chunks.delete(w.stored);
        w.stored = next.end;
      }
      this.#retireWal(w);
    });
  }

  async #shipManifest(local: { version: number; raw: Buffer; manifest: Manifest }, seenAt: number): Promise<void> {
    let cand = this.#candidates.get(local.version);
    if (!cand) {
      cand = { version: local.version, raw: local.raw, files: manifestFiles(local.manifest), seenAt, state: 'waiting' };
      this.#candidates.set(local.version, cand);
    }
    if (cand.state !== 'waiting') return;
    const segDir = path.join(this.#o.dir, 'segments');
    for (const file of cand.files) {
      if (this.#files.has(file)) continue;
      const source = await FileSource.open(path.join(segDir, file));
      if (!source) {
        // Merged away already: the newer manifest that replaced this one is what to ship.
        cand.state = 'unshippable';
        return;
      }
      const entry: FileEntry = { state: 'queued', source };
      this.#files.set(file, entry);
      this.#ship(segmentKey(file), cand.seenAt, false, () => source.readAll(), { file: source.file }, () => {
        entry.state = 'stored';
        if (entry.source) this.#retired.push(entry.source);
        entry.source = null;
        this.#maybeShipManifest();
      });
    }
  }

  /** Queue the newest manifest whose files are all stored, unless a newer one is already queued. */
  #maybeShipManifest(): void {
    let best: Candidate | undefined;
    let newestQueued = 0;
    for (const c of this.#candidates.values()) {
      if (c.state === 'queued') newestQueued = Math.max(newestQueued, c.version);
      if (c.state === 'waiting' && c.version > this.#storedManifest.version && (!best || c.version > best.version) && c.files.every((f) => this.#files.get(f)?.state === 'stored')) best = c;
    }
    if (!best || best.version <= newestQueued) return;
    const c = best;
    c.state = 'queued';
    this.#ship(manifestKey(c.version), c.seenAt, false, async () => c.raw, {}, () => {
      c.state = 'stored';
      this.#remoteManifests.add(c.version);
      if (c.version <= this.#storedManifest.version) return;
      this.#storedManifest = { version: c.version, files: new Set(c.files) };
      this.#o.onManifestStored?.(c.version);
      for (const v of [...this.#candidates.keys()]) if (v <= c.version) this.#candidates.delete(v);
    });
  }

  #ship(relKey: string, seenAt: number, wal: boolean, read: () => Promise<Uint8Array>, source: Record<string, unknown>, onStored: () => void): void {
    const key = this.#o.prefix + relKey;
    const s: Shipment = { key, seenAt, enqueuedAt: Date.now(), stored: false, bytes: 0, wal, task: undefined as unknown as UploadTask };
    s.task = {
      collectionId: this.#o.collectionId,
      key,
      // What the DLQ keeps; the replicator queues dead-lettered uploads again itself (resendAfterMs).
      source: { kind: 'collection-replica', collectionId: this.#o.collectionId, key, ...source },
      body: async () => {
        const b = await read();
        s.bytes = b.byteLength;
        return b;
      },
      onStored: () => {
        if (s.stored) return;
        s.stored = true;
        this.#pending.delete(s);
        this.#stats.objectsStored += 1;
        this.#stats.bytesStored += s.bytes;
        if (s.wal) this.#stats.walBytesStored += s.bytes;
        onStored();
      },
    };
    this.#pending.add(s);
    this.#o.uploads.enqueue(s.task);
  }

  /**
   * The worker dead-letters an upload after its retries (or at once for a permanent failure) and
   * forgets it; without it a manifest would wait forever. An upload older than `resendAfterMs`
   * while the worker holds nothing of this collection was dead-lettered: queue it again.
   */
  #resendDeadLettered(now: number): void {
    if (this.#pending.size === 0 || this.#o.uploads.lagMs(now).has(this.#o.collectionId)) return;
    for (const s of this.#pending) {
      if (now - s.enqueuedAt < this.#o.resendAfterMs) continue;
      s.enqueuedAt = now;
      this.#stats.resends += 1;
      this.#o.logger.warn({ collectionId: this.#o.collectionId, key: s.key }, 'Upload was dead-lettered; queueing it again');
      this.#o.uploads.enqueue(s.task);
    }
  }

  async #closeRetired(): Promise<void> {
    for (const s of this.#retired.splice(0)) await s.close().catch(() => undefined);
  }

  // ---------------------------------------------------------------- start-up reconciliation

  /**
   * Learn what the prefix holds. Names the local engine has not issued yet (manifest versions and
   * segment ids past the local manifest, or past the restore marker's; WAL files past the newest
   * local one) were written by a history this directory does not continue: delete them before
   * shipping anything, manifests first, so no restore can pick a manifest whose files mix two
   * histories. A remote WAL file whose local namesake differs in its first chunk is such a
   * leftover too (the engine reuses a WAL file name after setting corrupt files aside).
   */
  async #reconcile(): Promise<void> {
    const { dir, store, prefix } = this.#o;
    const marker = await readMarker(dir);
    const localWal = await listLocalWal(dir);
    const local = await readLocalManifest(dir);
    const maxLocalSeq = Math.max(0, ...localWal.values());
    const baseVersion = marker ? marker.manifestVersion : (local?.version ?? 0);
    const baseNextSegment = marker ? marker.nextSegmentId : (local?.manifest.nextSegmentId ?? 1);

    const stale: string[] = [];
    const staleManifests: string[] = [];
    const manifests: { version: number; info: ObjectInfo }[] = [];
    const segments: string[] = [];
    const walChunks = new Map<string, { seq: number; chunks: { key: string; start: number; end: number; info: ObjectInfo }[] }>();
    let recordStored = false;
    for await (const info of store.list(prefix)) {
      const rel = info.key.slice(prefix.length);
      const k = parseReplicaKey(rel);
      if (k === null) continue;
      if (k.kind === 'record') recordStored = true;
      else if (k.kind === 'manifest') {
        if (k.version > baseVersion) staleManifests.push(info.key);
        else manifests.push({ version: k.version, info });
      } else if (k.kind === 'segment') {
        if (k.id >= baseNextSegment) stale.push(info.key);
        else segments.push(k.file);
      } else if (k.kind === 'wal-end') {
        if (k.seq > maxLocalSeq) stale.push(info.key);
      } else {
        let w = walChunks.get(k.file);
        if (!w) walChunks.set(k.file, (w = { seq: k.seq, chunks: [] }));
        w.chunks.push({ key: info.key, start: k.start, end: k.end, info });
      }
    }

    let storedVersion = 0;
    for (const m of manifests) {
      // The current version is compared byte for byte: a restore may have left a remote file
      // of that version that this directory never had.
      if (local && m.version === local.version) {
        const remote = await readObject(store, m.info.key, m.info);
        if (!remote || !remote.equals(local.raw)) {
          staleManifests.push(m.info.key);
          continue;
        }
        this.#storedManifest = { version: local.version, files: new Set(manifestFiles(local.manifest)) };
      }
      this.#remoteManifests.add(m.version);
      storedVersion = Math.max(storedVersion, m.version);
    }
    // An older stored manifest's file list is unknown here; garbage collection waits for one this replicator stores.
    if (storedVersion > this.#storedManifest.version) this.#storedManifest = { version: storedVersion, files: null };
    for (const file of segments) this.#files.set(file, { state: 'stored', source: null });

    for (const [name, w] of walChunks) {
      w.chunks.sort((a, b) => a.start - b.start);
      const keys = w.chunks.map((c) => c.key);
      if (w.seq > maxLocalSeq) {
        stale.push(...keys);
        continue;
      }
      const state = newWalFile(name, w.seq);
      if (!localWal.has(name)) {
        // Deleted by the engine after a checkpoint that the current local manifest includes.
        state.present = false;
        state.coveredBy = local?.version ?? 0;
        for (const k of keys) state.remoteKeys.add(k);
        this.#wal.set(name, state);
        continue;
      }
      const first = w.chunks[0]!;
      const same = first.start === 0 && (await this.#sameBytes(path.join(dir, 'wal', name), first.key, first.info));
      if (!same) {
        this.#o.logger.warn({ collectionId: this.#o.collectionId, file: name, chunks: keys.length }, 'Remote WAL chunks do not match the local file of that name; replacing them');
        stale.push(...keys);
        continue;
      }
      let end = 0;
      for (const c of w.chunks) if (c.start <= end) end = Math.max(end, c.end);
      for (const k of keys) state.remoteKeys.add(k);
      state.enqueued = state.stored = end;
      this.#wal.set(name, state);
    }

    for (const key of [...staleManifests, ...stale]) {
      await store.delete(key);
      this.#stats.deletedObjects += 1;
    }
    if (staleManifests.length + stale.length > 0) this.#o.logger.warn({ collectionId: this.#o.collectionId, deleted: staleManifests.length + stale.length, restored: marker !== null }, 'Deleted remote objects of a history this directory does not continue');
    if (marker) {
      await unlink(path.join(dir, RESTORE_MARKER_FILE));
      await fsyncDir(dir);
    }
    this.#recordStored = recordStored;
    this.#reconciled = true;
  }

  /** Whether the remote chunk `key` (bytes from offset 0) agrees with the local file where both have bytes. */
  async #sameBytes(file: string, key: string, info: ObjectInfo): Promise<boolean> {
    const remote = await readObject(this.#o.store, key, info);
    const source = await FileSource.open(file);
    if (!remote || !source) return false;
    try {
      const n = Math.min(remote.length, await source.size());
      // An empty local file next to remote bytes is a new file of a reused name (a torn tail the engine cut to 0 bytes is garbage either way).
      if (n === 0) return remote.length === 0;
      return (await source.read(0, n)).equals(remote.subarray(0, n));
    } finally {
      await source.close();
    }
  }

  // ---------------------------------------------------------------- garbage collection

  async #collectGarbage(): Promise<number> {
    if (!this.#reconciled || this.#closed) return 0;
    const stored = this.#storedManifest;
    if (stored.files === null) return 0;
    const { store, prefix } = this.#o;
    let deleted = 0;
    const del = async (key: string): Promise<void> => {
      await store.delete(key);
      deleted += 1;
      this.#stats.deletedObjects += 1;
    };
    // Older manifests first: a manifest must never outlive the files it names.
    for (const v of [...this.#remoteManifests]) {
      if (v >= stored.version) continue;
      await del(prefix + manifestKey(v));
      this.#remoteManifests.delete(v);
    }
    const keep = new Set(stored.files);
    for (const c of this.#candidates.values()) if (c.version > stored.version) for (const f of c.files) keep.add(f);
    for (const [file, e] of [...this.#files]) {
      if (e.state !== 'stored' || keep.has(file) || !LOCAL_SEGMENT.test(file)) continue;
      await del(prefix + segmentKey(file));
      this.#files.delete(file);
    }
    for (const w of [...this.#wal.values()]) {
      if (w.present || w.source || w.coveredBy === null || w.coveredBy > stored.version || w.chunks.size > 0) continue;
      for (const k of [...w.remoteKeys]) {
        await del(k);
        w.remoteKeys.delete(k);
      }
      this.#wal.delete(w.name);
    }
    if (deleted > 0) this.#o.logger.info({ collectionId: this.#o.collectionId, deleted, manifestVersion: stored.version }, 'Deleted replica objects no restore needs');
    return deleted;
  }
}

function newWalFile(name: string, seq: number): WalFile {
  return { name, seq, present: true, source: null, enqueued: 0, stored: 0, chunks: new Map(), remoteKeys: new Set(), coveredBy: null };
}
