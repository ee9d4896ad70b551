/**
 * An object store: flat keys to immutable byte strings, the durable tier under MemoryS3 and
 * S3Only collections. Three implementations pass one contract suite (`object-store-contract.ts`):
 * the local filesystem, S3 (any S3-compatible service), and memory with injectable faults.
 *
 * Contract, for every implementation:
 * - `put` is atomic and durable when it resolves: a reader sees the whole new body or the whole
 *   old one (or nothing), never a part; after a crash the object is there in full or not at all.
 * - `put` keeps no reference to `body` once it resolves (the caller may reuse it then, not before);
 *   an overwrite replaces body and content encoding whole. Concurrent puts of one key: one wins whole.
 * - `get` resolves the full body, or `null` when the key does not exist; the array is the caller's
 *   own (mutating it changes nothing stored).
 * - `head` resolves size (and the stored content encoding), or `null` when the key does not exist.
 *   An empty `contentEncoding` is stored as none.
 * - `list(prefix)` yields every key starting with `prefix` once, in ascending byte order of the
 *   key's UTF-8 (not JavaScript's UTF-16 string order), with its size; keys put before the listing
 *   began are listed (read-after-write). `prefix` is any string, not a key: `''` lists everything.
 *   Its `contentEncoding` may be absent (S3 listings do not carry it): ask `head`.
 * - `delete` is idempotent: deleting a missing key resolves.
 * - Keys are 1..1024 bytes of UTF-8 without NUL, not starting with `/`, with no `.` or `..`
 *   segment (empty segments, as in `a//b` or `a/`, are allowed), and well-formed (no lone UTF-16
 *   surrogate, which has no UTF-8 form); a bad key rejects with ObjectStoreError kind 'permanent'
 *   before any I/O.
 * - Failures reject with ObjectStoreError: `transient` (5xx, timeouts, resets: retry) or
 *   `permanent` (400, 403, 404 on a bucket, bad keys: do not retry), with the HTTP status when
 *   there was one. A missing key is not a failure for `get` / `head` / `delete`. A failed `list`
 *   carries the prefix as its `key`.
 */
export interface ObjectStore {
  /** A short description for logs and health checks, without credentials (`s3://bucket/prefix`, `file:///dir`). */
  readonly description: string;
  put(key: string, body: Uint8Array, opts?: PutOptions): Promise<void>;
  get(key: string): Promise<Uint8Array | null>;
  head(key: string): Promise<ObjectInfo | null>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  delete(key: string): Promise<void>;
}

export interface PutOptions {
  /** Stored as the object's Content-Encoding (e.g. `gzip`); the body is stored as given. */
  contentEncoding?: string;
}

export interface ObjectInfo {
  key: string;
  size: number;
  contentEncoding?: string;
}

/** Whether a failure is worth retrying: the reliability machinery's error classes (seed 004). */
export type FailureKind = 'transient' | 'permanent';

/** A failed object-store call, classified. */
export class ObjectStoreError extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly operation: 'put' | 'get' | 'head' | 'list' | 'delete',
    readonly key: string,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ObjectStoreError';
  }
}

/** Classify an HTTP status: 5xx, 408 and 429 are transient; other 4xx permanent. */
export function kindOfStatus(status: number): FailureKind {
  return status >= 500 || status === 408 || status === 429 ? 'transient' : 'permanent';
}

/** Throw ObjectStoreError('permanent') when `key` breaks the key rules of the contract. */
export function checkKey(operation: ObjectStoreError['operation'], key: string): void {
  const bad = (why: string): never => {
    throw new ObjectStoreError('permanent', operation, key, `Invalid object key: ${why}`);
  };
  if (typeof key !== 'string' || key.length === 0) bad('empty');
  if (Buffer.byteLength(key, 'utf8') > 1024) bad('longer than 1024 bytes');
  if (key.includes('\0')) bad('contains NUL');
  // A lone surrogate would be stored as U+FFFD, so the key listed back would not be the key put.
  if (/\p{Cs}/u.test(key)) bad('not well-formed UTF-16 (lone surrogate)');
  if (key.startsWith('/')) bad('starts with /');
  if (key.split('/').some((s) => s === '.' || s === '..')) bad('has a . or .. segment');
}
