import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir } from '../storage/fs-util.js';
import { checkKey, ObjectStoreError, type FailureKind, type ObjectInfo, type ObjectStore, type PutOptions } from './object-store.js';

/*
 * On-disk layout (format 1). Object keys are not used as paths directly: `a` and `a/b` are both
 * keys, but a path cannot be a file and a directory at once, and a 1024-byte segment exceeds the
 * 255-byte name limit. So every path component ends in a two-character suffix saying what it is:
 *
 *   <segment>.o   an object file: the key's last segment
 *   <segment>.d   a directory: a key segment followed by `/` (empty segments give `.d` / `.o`)
 *   <chunk>.c     a directory continuing a segment longer than MAX_CHUNK_BYTES, split at a
 *                 code point boundary: `<first chunk>.c/<rest>.o` is one segment
 *   <random>.t    a temporary file of a put in progress, or left by a crash before its rename
 *
 * Example: `a` -> `a.o`, `a/b` -> `a.d/b.o`, `ab` -> `ab.o`, `a/` -> `a.d/.o`. The suffix is always
 * read off the end, so segments need no escaping (keys hold no NUL, and `/` only between
 * segments), every component is non-empty and never `.` or `..`: a key cannot name a path
 * outside the root. Anything without one of these suffixes (temp files, strangers) is not listed.
 *
 * An object file is a header, then the body as given: `AKO1`, u16 LE byte length N of the
 * content encoding, N bytes of UTF-8 content encoding. Keeping the encoding in the same file keeps
 * put a single atomic rename; a sidecar file could disagree with its body after a crash.
 */

const MAGIC = Buffer.from('AKO1', 'latin1');
const FIXED_HEADER_BYTES = MAGIC.length + 2;
/** NAME_MAX is 255 bytes on the filesystems we run on; two go to the suffix, the rest is slack. */
const MAX_CHUNK_BYTES = 240;
const FILE = '.o';
const DIR = '.d';
const MORE = '.c';
const TEMP = '.t';
/** Object headers a listing reads concurrently. */
const LIST_READ_AHEAD = 32;

/** fs error codes that retrying cannot fix; every other code is transient (see kindOfFsError). */
const PERMANENT_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'ELOOP', 'EINVAL', 'EXDEV', 'EBADF']);

/**
 * Classify an fs error code: permission, read-only and path-shape errors (EACCES, EPERM, EROFS,
 * ENOTDIR, EISDIR, ENAMETOOLONG, ELOOP, EINVAL, EXDEV, EBADF) are permanent; resource and I/O
 * errors (ENOSPC, EDQUOT, EIO, EMFILE, ENFILE, EAGAIN, EBUSY, EINTR, ETIMEDOUT, ESTALE) and
 * unknown codes are transient, because retries are bounded and losing a write is worse.
 */
export function kindOfFsError(code: string): FailureKind {
  return PERMANENT_CODES.has(code) ? 'permanent' : 'transient';
}

/**
 * An ObjectStore in a local directory (layout above). Contract: object-store.ts; `put` is a temp
 * file in the target's directory, fsynced, renamed over the target, then the directories from the
 * target's up to the root fsynced. Safe for concurrent calls within one process and across
 * processes sharing the directory.
 */
export class FsObjectStore implements ObjectStore {
  readonly description: string;
  private readonly root: string;
  private rootReady: Promise<void> | undefined;

  constructor(rootDir: string) {
    this.root = path.resolve(rootDir);
    this.description = `file://${this.root}`;
  }

  async put(key: string, body: Uint8Array, opts: PutOptions = {}): Promise<void> {
    checkKey('put', key);
    const file = this.pathOf('put', key);
    const header = encodeHeader(key, opts.contentEncoding);
    const dir = path.dirname(file);
    try {
      await this.ensureRoot();
      const { tmp, fh } = await openTemp(dir);
      try {
        try {
          await writeAll(fh, header, 0);
          await writeAll(fh, body, header.length);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, file);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
      // The new name is durable once its directory is synced, and a directory this put created is
      // durable once its parent is: sync up to the root rather than guess which ones are new
      // (another put may have created them and not synced them yet).
      await this.syncUpToRoot(dir);
    } catch (err) {
      throw this.failure('put', key, err);
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    checkKey('get', key);
    const file = this.pathOf('get', key);
    try {
      const bytes = await readFile(file).catch(nullIfMissing);
      if (bytes === null) return null;
      const { length } = parseHeader('get', key, bytes.subarray(0, FIXED_HEADER_BYTES), (n) => bytes.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + n));
      return bytes.subarray(length);
    } catch (err) {
      throw this.failure('get', key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    checkKey('head', key);
    const file = this.pathOf('head', key);
    try {
      return await readInfo('head', file, key);
    } catch (err) {
      throw this.failure('head', key, err);
    }
  }

  async *list(prefix: string): AsyncGenerator<ObjectInfo> {
    try {
      yield* this.walk(this.root, '', prefix);
    } catch (err) {
      throw this.failure('list', prefix, err);
    }
  }

  async delete(key: string): Promise<void> {
    checkKey('delete', key);
    const file = this.pathOf('delete', key);
    try {
      try {
        await unlink(file);
      } catch (err) {
        if (codeOf(err) === 'ENOENT') return;
        throw err;
      }
      const dir = path.dirname(file);
      await fsyncDir(dir).catch(ignoreMissing);
      await this.prune(dir);
    } catch (err) {
      throw this.failure('delete', key, err);
    }
  }

  /** The object file of a valid key; refuses any path outside the root, which the layout rules out. */
  private pathOf(operation: ObjectStoreError['operation'], key: string): string {
    const file = path.join(this.root, ...components(key));
    const inside = this.root.endsWith(path.sep) ? this.root : this.root + path.sep;
    if (!file.startsWith(inside)) throw new ObjectStoreError('permanent', operation, key, `Key ${JSON.stringify(key)} maps outside ${this.description}`);
    return file;
  }

  /** Create the root once and make its own directory entries durable. */
  private ensureRoot(): Promise<void> {
    this.rootReady ??= (async () => {
      const created = await mkdir(this.root, { recursive: true });
      if (created === undefined) return;
      const top = path.dirname(created);
      for (let d = path.dirname(this.root); ; d = path.dirname(d)) {
        await fsyncDir(d);
        if (d === top || d === path.dirname(d)) break;
      }
    })().catch((err: unknown) => {
      this.rootReady = undefined;
      throw err;
    });
    return this.rootReady;
  }

  private async syncUpToRoot(dir: string): Promise<void> {
    for (let d = dir; ; d = path.dirname(d)) {
      // Missing only when a concurrent delete of this very key already removed it and pruned.
      await fsyncDir(d).catch(ignoreMissing);
      if (d === this.root || d === path.dirname(d)) return;
    }
  }

  /**
   * Remove directories a delete left empty, up to (not including) the root, so that deleted
   * prefixes do not slow every later listing. Best effort: a directory still in use, or already
   * gone, ends it. A put losing its directory to this between mkdir and open retries (openTemp).
   */
  private async prune(dir: string): Promise<void> {
    for (let d = dir; d !== this.root && d.startsWith(this.root); d = path.dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        return;
      }
    }
  }

  /** Objects under `dir` (whose key so far is `keyPrefix`) starting with `prefix`, in byte order. */
  private async *walk(dir: string, keyPrefix: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const entries = await this.entries(dir, keyPrefix, prefix);
    for (let i = 0; i < entries.length; ) {
      const entry = entries[i];
      if (entry === undefined) break;
      if (entry.isDir) {
        yield* this.walk(entry.file, entry.key, prefix);
        i++;
        continue;
      }
      // Headers of the next files read together: one at a time, a listing is a syscall round trip per key.
      let end = i;
      while (end < entries.length && end - i < LIST_READ_AHEAD && entries[end]?.isDir === false) end++;
      const infos = await Promise.all(entries.slice(i, end).map((e) => readInfo('list', e.file, e.key)));
      // null: deleted since the directory was read, which a listing need not show.
      for (const info of infos) if (info) yield info;
      i = end;
    }
  }

  /**
   * The entries of one directory level, sorted by UTF-8 bytes of their key (a directory sorts as
   * `<key>/`). All keys under a directory share that `<key>/`, which no other entry of the level
   * can start with, so visiting the sorted entries depth-first yields every key in byte order.
   * Continuation (`.c`) directories are not a `/` level: their entries join this level.
   */
  private async entries(dir: string, keyPrefix: string, prefix: string): Promise<Entry[]> {
    const out: Entry[] = [];
    for (const dirent of await readdir(dir, { withFileTypes: true }).catch(emptyIfMissing)) {
      const name = dirent.name;
      if (name.length < 2) continue;
      const suffix = name.slice(-2);
      const key = keyPrefix + name.slice(0, -2);
      const file = path.join(dir, name);
      if (suffix === FILE && dirent.isFile()) {
        if (key.startsWith(prefix)) out.push({ key, file, isDir: false, order: Buffer.from(key, 'utf8') });
      } else if (suffix === DIR && dirent.isDirectory()) {
        const sub = `${key}/`;
        if (overlaps(sub, prefix)) out.push({ key: sub, file, isDir: true, order: Buffer.from(sub, 'utf8') });
      } else if (suffix === MORE && dirent.isDirectory()) {
        if (overlaps(key, prefix)) out.push(...(await this.entries(file, key, prefix)));
      }
    }
    return out.sort((a, b) => Buffer.compare(a.order, b.order));
  }

  private failure(operation: ObjectStoreError['operation'], key: string, err: unknown): ObjectStoreError {
    if (err instanceof ObjectStoreError) return err;
    const code = codeOf(err);
    // An error without an errno code is not the filesystem's: a bug that retrying will not fix.
    const kind = code === undefined ? 'permanent' : kindOfFsError(code);
    const why = err instanceof Error ? err.message : String(err);
    return new ObjectStoreError(kind, operation, key, `${operation} ${JSON.stringify(key)} in ${this.description} failed: ${why}`, undefined, { cause: err });
  }
}

interface Entry {
  /** The key of a file; for a directory, the key prefix every object under it shares (ends in `/`). */
  key: string;
  file: string;
  isDir: boolean;
  order: Buffer;
}

/** The path components of a valid key under the layout above. */
function components(key: string): string[] {
  const segments = key.split('/');
  const out: string[] = [];
  for (const [i, segment] of segments.entries()) {
    const chunks = splitSegment(segment);
    for (const [j, chunk] of chunks.entries()) {
      out.push(chunk + (j < chunks.length - 1 ? MORE : i < segments.length - 1 ? DIR : FILE));
    }
  }
  return out;
}

/** A segment in chunks of at most MAX_CHUNK_BYTES, cut between code points so each stays valid UTF-8. */
function splitSegment(segment: string): string[] {
  if (Buffer.byteLength(segment, 'utf8') <= MAX_CHUNK_BYTES) return [segment];
  const chunks: string[] = [];
  let chunk = '';
  let bytes = 0;
  for (const ch of segment) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > MAX_CHUNK_BYTES) {
      chunks.push(chunk);
      chunk = '';
      bytes = 0;
    }
    chunk += ch;
    bytes += n;
  }
  chunks.push(chunk);
  return chunks;
}

/** Whether some key starting with `a` can also start with `prefix`. */
function overlaps(a: string, prefix: string): boolean {
  return a.startsWith(prefix) || prefix.startsWith(a);
}

function encodeHeader(key: string, contentEncoding: string | undefined): Buffer {
  const enc = Buffer.from(contentEncoding ?? '', 'utf8');
  if (enc.length > 0xffff) throw new ObjectStoreError('permanent', 'put', key, `Content encoding longer than ${0xffff} bytes`);
  const header = Buffer.alloc(FIXED_HEADER_BYTES + enc.length);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(enc.length, MAGIC.length);
  enc.copy(header, FIXED_HEADER_BYTES);
  return header;
}

/** Header length and content encoding, from the fixed part and a reader of the encoding bytes. */
function parseHeader(
  operation: ObjectStoreError['operation'],
  key: string,
  fixed: Buffer,
  encodingBytes: (n: number) => Buffer,
): { length: number; contentEncoding?: string } {
  const corrupt = (): never => {
    throw new ObjectStoreError('permanent', operation, key, `Object ${JSON.stringify(key)} is not an object file of this store (bad header)`);
  };
  if (fixed.length < FIXED_HEADER_BYTES || !fixed.subarray(0, MAGIC.length).equals(MAGIC)) corrupt();
  const n = fixed.readUInt16LE(MAGIC.length);
  if (n === 0) return { length: FIXED_HEADER_BYTES };
  const enc = encodingBytes(n);
  if (enc.length < n) corrupt();
  return { length: FIXED_HEADER_BYTES + n, contentEncoding: enc.toString('utf8') };
}

/** Size and content encoding of an object file from its header and length, or null when it is missing. */
async function readInfo(operation: ObjectStoreError['operation'], file: string, key: string): Promise<ObjectInfo | null> {
  const fh = await open(file, 'r').catch(nullIfMissing);
  if (fh === null) return null;
  try {
    const fixed = Buffer.alloc(FIXED_HEADER_BYTES);
    const { bytesRead } = await fh.read(fixed, 0, FIXED_HEADER_BYTES, 0);
    let enc = Buffer.alloc(0);
    const n = bytesRead === FIXED_HEADER_BYTES ? fixed.readUInt16LE(MAGIC.length) : 0;
    if (n > 0) {
      enc = Buffer.alloc(n);
      enc = enc.subarray(0, (await fh.read(enc, 0, n, FIXED_HEADER_BYTES)).bytesRead);
    }
    const header = parseHeader(operation, key, fixed.subarray(0, bytesRead), () => enc);
    const { size } = await fh.stat();
    return header.contentEncoding === undefined
      ? { key, size: size - header.length }
      : { key, size: size - header.length, contentEncoding: header.contentEncoding };
  } finally {
    await fh.close();
  }
}

/** A new temporary file in `dir`, creating the directory (again, if a delete pruned it meanwhile). */
async function openTemp(dir: string): Promise<{ tmp: string; fh: FileHandle }> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(dir, { recursive: true });
    const tmp = path.join(dir, randomBytes(8).toString('hex') + TEMP);
    try {
      return { tmp, fh: await open(tmp, 'wx') };
    } catch (err) {
      if (codeOf(err) !== 'ENOENT' || attempt >= 10) throw err;
    }
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function nullIfMissing(err: unknown): null {
  if (codeOf(err) === 'ENOENT') return null;
  throw err;
}

function emptyIfMissing(err: unknown): never[] {
  if (codeOf(err) === 'ENOENT') return [];
  throw err;
}

function ignoreMissing(err: unknown): void {
  if (codeOf(err) !== 'ENOENT') throw err;
}
