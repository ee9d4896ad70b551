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

/**
 * Versioned manifests in `dir`: `v{N}.json`, never overwritten. The current manifest is the
 * highest version; a version is written only after every file it names is durable, so the
 * newest manifest always describes a complete state.
 */
export class ManifestStore {
  constructor(readonly dir: string) {}

  /** The newest manifest, or an empty one for a new collection. Throws STORAGE_CORRUPT if it fails its checksum. */
  async load(): Promise<Manifest> {
    await mkdir(this.dir, { recursive: true });
    const versions = (await readdir(this.dir))
      .map((n) => NAME.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => b - a);
    const newest = versions[0];
    if (newest === undefined) return emptyManifest();
    const file = path.join(this.dir, fileName(newest));
    const raw = await readFile(file, 'utf8');
    let parsed: { crc: number; body: string };
    try {
      parsed = JSON.parse(raw) as { crc: number; body: string };
    } catch (err) {
      throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest is not valid JSON', { cause: err });
    }
    if (typeof parsed.body !== 'string' || crc32(parsed.body) !== parsed.crc) throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest failed its checksum');
    const manifest = JSON.parse(parsed.body) as Manifest;
    if (manifest.version !== newest) throw new AkiError('STORAGE_CORRUPT', { file }, 'Manifest version does not match its file name');
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
