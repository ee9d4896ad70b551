import { crc32 } from 'node:zlib';
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AkiError } from '../errors.js';
import { writeFileDurable } from './fs-util.js';

/** The HNSW index file built for a segment. */
export interface IndexEntry {
  file: string;
  quantization: string;
  m: number;
  efConstruction: number;
  bytes: number;
}

/** One immutable segment as the manifest names it. */
export interface SegmentEntry {
  id: number;
  file: string;
  rows: number;
  tombstones: number;
  minLsn: number;
  maxLsn: number;
  bytes: number;
  index?: IndexEntry;
}

/** A collection's durable state at one version: its segments (oldest first) and the WAL checkpoint. */
export interface Manifest {
  formatVersion: 1;
  version: number;
  /** Every WAL record at or below this LSN is in the segments. */
  checkpointLsn: number;
  nextSegmentId: number;
  nextRowKey: number;
  segments: SegmentEntry[];
}

export function emptyManifest(): Manifest {
  return { formatVersion: 1, version: 0, checkpointLsn: 0, nextSegmentId: 1, nextRowKey: 0, segments: [] };
}

const NAME = /^v(\d{20})\.json$/;
const fileName = (version: number): string => `v${String(version).padStart(20, '0')}.json`;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** A bare file name: joined to the segment directory, it stays inside it. */
function isPlainName(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v !== '.' && v !== '..' && !/[/\\\0]/.test(v);
}

function isIndexEntry(v: unknown): v is IndexEntry {
  return isObject(v) && isPlainName(v['file']) && typeof v['quantization'] === 'string' && isCount(v['m']) && isCount(v['efConstruction']) && isCount(v['bytes']);
}

function isSegmentEntry(v: unknown): v is SegmentEntry {
  return (
    isObject(v) &&
    isCount(v['id']) &&
    isPlainName(v['file']) &&
    isCount(v['rows']) &&
    isCount(v['tombstones']) &&
    isCount(v['minLsn']) &&
    isCount(v['maxLsn']) &&
    isCount(v['bytes']) &&
    (v['index'] === undefined || isIndexEntry(v['index']))
  );
}

function isManifest(v: unknown): v is Manifest {
  return (
    isObject(v) &&
    v['formatVersion'] === 1 &&
    isCount(v['version']) &&
    isCount(v['checkpointLsn']) &&
    isCount(v['nextSegmentId']) &&
    isCount(v['nextRowKey']) &&
    Array.isArray(v['segments']) &&
    v['segments'].every(isSegmentEntry)
  );
}

/**
 * Decode a manifest file's text (`{crc, body}`, as ManifestStore writes it). Throws
 * STORAGE_CORRUPT, with `file` in its details, unless the checksum matches and the body is a
 * well-formed manifest: counters are non-negative safe integers and file names are bare names.
 */
export function decodeManifestText(raw: string, file: string): Manifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest is not valid JSON', { cause: err });
  }
  if (!isObject(parsed) || typeof parsed['body'] !== 'string' || crc32(parsed['body']) !== parsed['crc']) throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest failed its checksum');
  let m: unknown;
  try {
    m = JSON.parse(parsed['body']);
  } catch (err) {
    throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest body is not valid JSON', { cause: err });
  }
  if (!isManifest(m)) throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest body is not a well-formed manifest');
  return m;
}

/**
 * Versioned manifests in `dir`: `v{N}.json`, never overwritten. The current manifest is the
 * highest version; a version is written only after every file it names is durable, so the
 * newest manifest always describes a complete state.
 */
export class ManifestStore {
  constructor(readonly dir: string) {}

  /**
   * The newest manifest, or an empty one for a new collection. Throws STORAGE_CORRUPT if it fails
   * its checksum or is malformed, STORAGE_IO if it cannot be read.
   */
  async load(): Promise<Manifest> {
    await mkdir(this.dir, { recursive: true });
    // Names are zero-padded to 20 digits, so their order is the versions' order, even past 2^53.
    const newest = (await readdir(this.dir))
      .filter((n) => NAME.test(n))
      .sort()
      .at(-1);
    if (newest === undefined) return emptyManifest();
    const file = path.join(this.dir, newest);
    const version = Number(NAME.exec(newest)![1]);
    if (!Number.isSafeInteger(version)) throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest version is out of range');
    let raw: string;
    try {
      raw = await readFile(file, 'utf8');
    } catch (err) {
      throw new AkiError('STORAGE_IO', { file }, 'Manifest cannot be read', { cause: err });
    }
    const manifest = decodeManifestText(raw, file);
    if (manifest.version !== version) throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest version does not match its file name');
    return manifest;
  }

  /** Durably write `manifest` as its version, then delete older versions. */
  async publish(manifest: Manifest): Promise<void> {
    const body = JSON.stringify(manifest);
    await writeFileDurable(path.join(this.dir, fileName(manifest.version)), JSON.stringify({ crc: crc32(body), body }));
    for (const n of await readdir(this.dir)) {
      const m = NAME.exec(n);
      if (m && Number(m[1]) < manifest.version) await unlink(path.join(this.dir, n)).catch(() => undefined);
    }
  }
}
