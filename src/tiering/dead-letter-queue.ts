import { randomUUID } from 'node:crypto';
import { access, copyFile, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AkiError } from '../errors.js';
import type { FailureKind } from '../objectstore/object-store.js';
import { sleep, type Service, type ServiceLogger } from '../services/service.js';
import { fsyncDir } from '../storage/fs-util.js';

/** Why an entry's last attempt failed, as stored in the DLQ. */
export interface DlqError {
  message: string;
  /** HTTP status of the failed call, when there was one. */
  status?: number;
  kind: FailureKind;
}

/** One failed operation parked for an operator: what failed, why, and how often. `payload` must survive JSON. */
export interface DlqEntry<T> {
  /** Unique within the queue; stable across flush / load. */
  id: string;
  collectionId: string;
  /** What failed, e.g. the object key of an upload; one entry per (collectionId, key). */
  key: string;
  /** What a retry needs (a reference to local data, or the data itself); JSON-serializable. */
  payload: T;
  error: DlqError;
  /** Attempts made so far, over every trip through the queue. */
  attempts: number;
  /** First and latest failure times, ms since the Unix epoch (the queue's clock). */
  firstFailedAt: number;
  lastFailedAt: number;
}

/** What `add` takes: an entry without its bookkeeping, which defaults (id made, 1 attempt, times now). */
export type DlqEntryInput<T> = Pick<DlqEntry<T>, 'collectionId' | 'key' | 'payload' | 'error'> & Partial<Pick<DlqEntry<T>, 'id' | 'attempts' | 'firstFailedAt' | 'lastFailedAt'>>;

/** Settings of a DeadLetterQueue; keys mirror `[storage.dlq]` (seed 004), every field has a default. */
export interface DeadLetterQueueOptions<T> {
  /** `max_size`: entries kept; adding to a full queue evicts the oldest (FIFO). Default 1000. */
  maxSize?: number;
  /** `ttl_days`: an entry whose last failure is older than this is dropped by `expire`. Default 7. */
  ttlDays?: number;
  /** `persistence_enabled`: when false, `flush` and `load` do nothing. Default true. */
  persistenceEnabled?: boolean;
  /** `persistence_path`: the JSON file (seed default `<data_dir>/dlq.json`). Required when persistence is enabled. */
  persistencePath?: string;
  /** Clock in ms. Default Date.now. */
  now?: () => number;
  /** Evictions, expirations, flush failures and corrupt files are logged here. */
  logger?: ServiceLogger;
  /** Checks each loaded payload; an entry whose payload fails is dropped at load (and the file kept aside). Default: any value. */
  isPayload?: (value: unknown) => value is T;
}

/** Counters for the DLQ metrics (`dlq_size`, `dlq_evictions`, `dlq_expirations`, `dlq_flushes`, `dlq_flush_errors`). */
export interface DlqStats {
  size: number;
  evictions: number;
  expirations: number;
  flushes: number;
  flushErrors: number;
  /** Per collection: current size and the two drop counters (the metrics carry a `collection_id` label). */
  collections: Record<string, { size: number; evictions: number; expirations: number }>;
}

/** What `load` found. */
export interface DlqLoadResult {
  /** Entries taken from the file into the queue. */
  loaded: number;
  /** Entries in the file that failed validation and were dropped. */
  invalid: number;
  /** Where an unreadable or partly invalid file was set aside, if it was. */
  corruptPath?: string;
  /** Leftover temp files of interrupted flushes that were removed. */
  removedTempFiles: number;
}

const FILE_VERSION = 1;
const DAY_MS = 86_400_000;

/**
 * Seed 004's dead-letter queue (US-702..704): failed operations that retrying cannot fix, kept for
 * an operator to inspect, retry or clear.
 *
 * Bounded: at `maxSize` the oldest entry is evicted (counted, logged). Entries are ordered by their
 * latest failure; adding an entry for a (collectionId, key) already queued replaces it, keeps its id
 * and first failure, sums the attempts and moves it to the newest place. `expire` drops entries whose
 * latest failure is older than `ttlDays`.
 *
 * Durability: `flush` writes the whole queue atomically (temp file in the same directory, fsync,
 * rename, fsync of the directory), so after a crash the file holds the queue as of some completed
 * flush: at most the changes since the last flush are lost, and the file is never torn. `load`
 * never throws for bad content: an unreadable file is moved aside as `<file>.corrupt-<ms>` and the
 * queue starts empty. In-memory operations are synchronous; flushes are serialized.
 */
export class DeadLetterQueue<T> {
  maxSize: number;
  ttlDays: number;
  readonly persistenceEnabled: boolean;
  readonly persistencePath: string | undefined;

  readonly #now: () => number;
  readonly #logger: ServiceLogger | undefined;
  readonly #isPayload: ((value: unknown) => value is T) | undefined;
  /** id -> entry, in order of latest failure (Map keeps insertion order: first is oldest). */
  readonly #entries = new Map<string, DlqEntry<T>>();
  /** `collectionId \0 key` -> id. */
  readonly #byKey = new Map<string, string>();
  readonly #collections = new Map<string, { size: number; evictions: number; expirations: number }>();
  #evictions = 0;
  #expirations = 0;
  #flushes = 0;
  #flushErrors = 0;
  /** Bumped by every change; a flush records the version it wrote, so changes made meanwhile stay dirty. */
  #version = 0;
  #flushedVersion = 0;
  #flushChain: Promise<unknown> = Promise.resolve();
  #tempSeq = 0;

  constructor(options: DeadLetterQueueOptions<T> = {}) {
    this.maxSize = options.maxSize ?? 1000;
    this.ttlDays = options.ttlDays ?? 7;
    this.persistenceEnabled = options.persistenceEnabled ?? true;
    this.persistencePath = options.persistencePath;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    this.#isPayload = options.isPayload;
    const bad: string[] = [];
    if (!(Number.isInteger(this.maxSize) && this.maxSize >= 1)) bad.push(`maxSize must be an integer >= 1 (got ${this.maxSize})`);
    if (!(Number.isFinite(this.ttlDays) && this.ttlDays > 0)) bad.push(`ttlDays must be a positive number (got ${this.ttlDays})`);
    if (this.persistenceEnabled && (this.persistencePath === undefined || this.persistencePath === '')) bad.push('persistencePath is required when persistence is enabled');
    if (bad.length > 0) throw new AkiError('INVALID_ARGUMENT', { problems: bad }, `Invalid DLQ options: ${bad.join('; ')}`);
  }

  /** Entries in the queue. */
  get size(): number {
    return this.#entries.size;
  }

  /** Entries dropped because the queue was full (`dlq_evictions`). */
  get evictions(): number {
    return this.#evictions;
  }

  /** Entries dropped by TTL (`dlq_expirations`). */
  get expirations(): number {
    return this.#expirations;
  }

  /** Completed flushes (`dlq_flushes`). */
  get flushes(): number {
    return this.#flushes;
  }

  /** Failed flushes (`dlq_flush_errors`). */
  get flushErrors(): number {
    return this.#flushErrors;
  }

  /** True when the queue changed since the last completed flush. */
  get dirty(): boolean {
    return this.#version !== this.#flushedVersion;
  }

  /** Entries of one collection (0 when it has none). */
  sizeOf(collectionId: string): number {
    return this.#collections.get(collectionId)?.size ?? 0;
  }

  /** Every counter at once, with per-collection breakdowns, for the metrics and the admin API. */
  stats(): DlqStats {
    const collections: DlqStats['collections'] = {};
    for (const [id, c] of this.#collections) collections[id] = { ...c };
    return { size: this.size, evictions: this.#evictions, expirations: this.#expirations, flushes: this.#flushes, flushErrors: this.#flushErrors, collections };
  }

  /** Queue a failed operation (or refresh the entry for the same collection and key); evicts the oldest when full. Returns a copy of the stored entry. */
  add(input: DlqEntryInput<T>): DlqEntry<T> {
    const now = this.#now();
    const k = keyOf(input.collectionId, input.key);
    const prevId = this.#byKey.get(k);
    const prev = prevId === undefined ? undefined : this.#entries.get(prevId);
    const entry: DlqEntry<T> = {
      // A given id that another entry already holds would make two entries one: make a new one.
      id: prev?.id ?? (input.id !== undefined && !this.#entries.has(input.id) ? input.id : randomUUID()),
      collectionId: input.collectionId,
      key: input.key,
      // A copy: the caller may reuse its object, and the queue must hold what failed.
      payload: structuredClone(input.payload),
      error: { ...input.error },
      attempts: (prev?.attempts ?? 0) + (input.attempts ?? 1),
      firstFailedAt: Math.min(prev?.firstFailedAt ?? Infinity, input.firstFailedAt ?? now),
      lastFailedAt: input.lastFailedAt ?? now,
    };
    if (prev !== undefined) this.#delete(prev);
    this.#insert(entry);
    this.#evictOverflow();
    this.#version++;
    return structuredClone(entry);
  }

  /** Change `maxSize` and `ttlDays` at runtime; a smaller size evicts the oldest entries at once (counted). */
  configure(change: { maxSize?: number; ttlDays?: number }): void {
    const maxSize = change.maxSize ?? this.maxSize;
    const ttlDays = change.ttlDays ?? this.ttlDays;
    new DeadLetterQueue<T>({ maxSize, ttlDays, persistenceEnabled: false }); // throws INVALID_ARGUMENT naming every bad value
    this.maxSize = maxSize;
    this.ttlDays = ttlDays;
    const before = this.#entries.size;
    this.#evictOverflow();
    if (this.#entries.size !== before) this.#version++;
  }

  /** Entries, oldest first, of one collection or all; copies, so callers cannot edit the queue. */
  list(collectionId?: string): DlqEntry<T>[] {
    const out: DlqEntry<T>[] = [];
    for (const e of this.#entries.values()) if (collectionId === undefined || e.collectionId === collectionId) out.push(structuredClone(e));
    return out;
  }

  /** The entry with this id, or undefined. */
  get(id: string): DlqEntry<T> | undefined {
    const e = this.#entries.get(id);
    return e === undefined ? undefined : structuredClone(e);
  }

  /** Remove the entries with these ids (unknown ids are ignored); returns how many were removed. */
  remove(ids: Iterable<string>): number {
    let n = 0;
    for (const id of ids) {
      const e = this.#entries.get(id);
      if (e === undefined) continue;
      this.#delete(e);
      n++;
    }
    if (n > 0) this.#version++;
    return n;
  }

  /** Remove every entry of one collection, or all; returns how many (`DELETE /admin/collections/{id}/dlq`). */
  clear(collectionId?: string): number {
    const doomed = [...this.#entries.values()].filter((e) => collectionId === undefined || e.collectionId === collectionId);
    for (const e of doomed) this.#delete(e);
    if (doomed.length > 0) this.#version++;
    return doomed.length;
  }

  /**
   * Remove and return up to `limit` entries, oldest first, of one collection or all, for a retry
   * (`POST .../dlq/retry`). A retry that fails again should `add` the entry back with its `id`,
   * `attempts` and `firstFailedAt`.
   */
  take(collectionId?: string, limit = Infinity): DlqEntry<T>[] {
    const out: DlqEntry<T>[] = [];
    for (const e of this.#entries.values()) {
      if (out.length >= limit) break;
      if (collectionId === undefined || e.collectionId === collectionId) out.push(e);
    }
    for (const e of out) this.#delete(e);
    if (out.length > 0) this.#version++;
    return out;
  }

  /** Drop entries whose latest failure is `ttlDays` or more before `now` (counted, logged); returns how many. */
  expire(now = this.#now()): number {
    const cutoff = now - this.ttlDays * DAY_MS;
    const doomed = [...this.#entries.values()].filter((e) => e.lastFailedAt <= cutoff);
    for (const e of doomed) {
      this.#delete(e);
      this.#expirations++;
      this.#counters(e.collectionId).expirations++;
    }
    if (doomed.length > 0) {
      this.#version++;
      this.#logger?.info({ expired: doomed.length, ttlDays: this.ttlDays, collections: [...new Set(doomed.map((e) => e.collectionId))] }, 'DLQ entries expired');
    }
    return doomed.length;
  }

  /**
   * Write the queue to `persistencePath` atomically and durably if it changed since the last flush.
   * Resolves true when it wrote, false when there was nothing to write (clean, or persistence off);
   * rejects with STORAGE_IO after counting and logging the failure (the queue stays dirty).
   * Concurrent calls are serialized: each one's changes are on disk when it resolves true or false.
   */
  flush(): Promise<boolean> {
    const run = this.#flushChain.then(() => this.#flushOnce());
    // The chain itself must never reject, or one failed flush would fail every later one.
    this.#flushChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Read `persistencePath` into the queue: loaded entries go before any already in memory (they
   * are older), the in-memory one wins for the same key, then TTL and `maxSize` apply. Removes
   * temp files of interrupted flushes. Never throws for bad content: an unparseable file is moved
   * aside as `<file>.corrupt-<ms>` (logged) and nothing is loaded; a file with some invalid
   * entries is copied aside and the valid ones are kept. Rejects only when the file exists but
   * cannot be read or set aside (an I/O error, not bad content).
   */
  async load(): Promise<DlqLoadResult> {
    const file = this.persistencePath;
    if (!this.persistenceEnabled || file === undefined) return { loaded: 0, invalid: 0, removedTempFiles: 0 };
    const removedTempFiles = await this.#removeTempFiles(file);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { loaded: 0, invalid: 0, removedTempFiles };
      throw new AkiError('STORAGE_IO', { file, operation: 'read' }, `Cannot read the DLQ file ${file}`, { cause: err });
    }

    const parsed = parseFile<T>(text, this.#isPayload);
    if (parsed === null) {
      const corruptPath = await this.#setAside(file, 'move');
      this.#logger?.error({ file, corruptPath, bytes: text.length }, 'DLQ file is unreadable (corrupt or truncated); moved aside, starting with an empty DLQ');
      return { loaded: 0, invalid: 0, corruptPath, removedTempFiles };
    }
    let corruptPath: string | undefined;
    if (parsed.invalid > 0) {
      corruptPath = await this.#setAside(file, 'copy');
      this.#logger?.warn({ file, corruptPath, invalid: parsed.invalid, valid: parsed.entries.length }, 'DLQ file holds invalid entries; they were dropped and the file copied aside');
    }

    // Rebuild in order: the file's entries (older) first, then what was added in memory since start.
    const inMemory = [...this.#entries.values()];
    this.#entries.clear();
    this.#byKey.clear();
    for (const c of this.#collections.values()) c.size = 0;
    let loaded = 0;
    for (const e of parsed.entries) {
      if (this.#entries.has(e.id) || this.#byKey.has(keyOf(e.collectionId, e.key))) continue;
      this.#insert(e);
      loaded++;
    }
    for (const e of inMemory) {
      // The newer in-memory entry replaces a loaded one with its key, and one with its id.
      for (const clashId of [this.#byKey.get(keyOf(e.collectionId, e.key)), e.id]) {
        const clash = clashId === undefined ? undefined : this.#entries.get(clashId);
        if (clash === undefined) continue;
        this.#delete(clash);
        loaded--;
      }
      this.#insert(e);
    }
    this.#evictOverflow();
    this.expire();
    // Memory differs from the file whenever anything was added, merged or dropped: write it at the next flush.
    if (inMemory.length > 0 || this.size !== parsed.entries.length || parsed.invalid > 0) this.#version++;
    this.#logger?.info({ file, loaded, size: this.size }, 'DLQ loaded');
    return { loaded, invalid: parsed.invalid, ...(corruptPath === undefined ? {} : { corruptPath }), removedTempFiles };
  }

  async #flushOnce(): Promise<boolean> {
    const file = this.persistencePath;
    if (!this.persistenceEnabled || file === undefined || !this.dirty) return false;
    const version = this.#version;
    // Serialize synchronously: the snapshot is the queue as of this call, whatever changes while the I/O runs.
    const body = JSON.stringify({ version: FILE_VERSION, savedAt: this.#now(), entries: [...this.#entries.values()] });
    const tmp = `${file}.tmp-${process.pid}-${++this.#tempSeq}`;
    try {
      await mkdir(path.dirname(file), { recursive: true });
      const fh = await open(tmp, 'wx');
      try {
        await fh.writeFile(body, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      await fsyncDir(path.dirname(file));
    } catch (err) {
      this.#flushErrors++;
      await unlink(tmp).catch(() => undefined);
      this.#logger?.error({ file, err, entries: this.size }, 'DLQ flush failed');
      throw new AkiError('STORAGE_IO', { file, operation: 'flush' }, `Cannot write the DLQ file ${file}`, { cause: err });
    }
    this.#flushedVersion = version;
    this.#flushes++;
    return true;
  }

  #insert(e: DlqEntry<T>): void {
    this.#entries.set(e.id, e);
    this.#byKey.set(keyOf(e.collectionId, e.key), e.id);
    this.#counters(e.collectionId).size++;
  }

  #delete(e: DlqEntry<T>): void {
    this.#entries.delete(e.id);
    this.#byKey.delete(keyOf(e.collectionId, e.key));
    this.#counters(e.collectionId).size--;
  }

  #evictOverflow(): void {
    while (this.#entries.size > this.maxSize) {
      const oldest = this.#entries.values().next().value!;
      this.#delete(oldest);
      this.#evictions++;
      this.#counters(oldest.collectionId).evictions++;
      this.#logger?.warn({ collectionId: oldest.collectionId, key: oldest.key, id: oldest.id, error: oldest.error, attempts: oldest.attempts, maxSize: this.maxSize }, 'DLQ full: oldest entry evicted');
    }
  }

  #counters(collectionId: string): { size: number; evictions: number; expirations: number } {
    let c = this.#collections.get(collectionId);
    if (c === undefined) {
      c = { size: 0, evictions: 0, expirations: 0 };
      this.#collections.set(collectionId, c);
    }
    return c;
  }

  async #removeTempFiles(file: string): Promise<number> {
    const dir = path.dirname(file);
    const prefix = `${path.basename(file)}.tmp-`;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    // A temp file is a flush that never reached its rename: never the state of record, whatever it holds.
    const leftovers = names.filter((n) => n.startsWith(prefix));
    for (const n of leftovers) await unlink(path.join(dir, n)).catch(() => undefined);
    if (leftovers.length > 0) this.#logger?.info({ dir, files: leftovers }, 'removed temp files of interrupted DLQ flushes');
    return leftovers.length;
  }

  async #setAside(file: string, how: 'move' | 'copy'): Promise<string> {
    let target = `${file}.corrupt-${this.#now()}`;
    for (let i = 1; await exists(target); i++) target = `${file}.corrupt-${this.#now()}-${i}`;
    try {
      if (how === 'move') await rename(file, target);
      else await copyFile(file, target);
      await fsyncDir(path.dirname(file));
    } catch (err) {
      throw new AkiError('STORAGE_IO', { file, target, operation: 'set-aside' }, `Cannot set the corrupt DLQ file ${file} aside`, { cause: err });
    }
    return target;
  }
}

/** Settings of a DlqFlushService; `flushIntervalSeconds` mirrors `[storage.dlq] flush_interval_seconds`. */
export interface DlqFlushServiceOptions {
  /** Flush every this many seconds. Default 60. */
  flushIntervalSeconds?: number;
  /** Run TTL expiry every this many seconds (US-704: hourly). Default 3600. */
  expireIntervalSeconds?: number;
  logger?: ServiceLogger;
}

/**
 * The DLQ's background Service: every `flushIntervalSeconds` it expires entries (when due) and
 * flushes the queue if it changed; `drain` and the end of `run` flush once more, so a graceful
 * shutdown loses nothing. A failed flush is counted and logged by the queue and retried at the
 * next tick; `run` and `drain` never reject.
 */
export class DlqFlushService<T> implements Service {
  readonly name = 'dlq-flush';
  readonly flushIntervalSeconds: number;
  readonly expireIntervalSeconds: number;
  readonly #queue: DeadLetterQueue<T>;
  readonly #logger: ServiceLogger | undefined;

  constructor(queue: DeadLetterQueue<T>, options: DlqFlushServiceOptions = {}) {
    this.#queue = queue;
    this.flushIntervalSeconds = options.flushIntervalSeconds ?? 60;
    this.expireIntervalSeconds = options.expireIntervalSeconds ?? 3600;
    this.#logger = options.logger;
    for (const [k, v] of [['flushIntervalSeconds', this.flushIntervalSeconds], ['expireIntervalSeconds', this.expireIntervalSeconds]] as const) {
      if (!(Number.isFinite(v) && v > 0)) throw new AkiError('INVALID_ARGUMENT', { [k]: v }, `${k} must be a positive number (got ${v})`);
    }
  }

  /** Loop until `signal` aborts, then flush one last time; resolves when that final flush is done. */
  async run(signal: AbortSignal): Promise<void> {
    let lastExpire = Date.now();
    while (!signal.aborted) {
      await sleep(this.flushIntervalSeconds * 1000, signal);
      if (signal.aborted) break;
      if (Date.now() - lastExpire >= this.expireIntervalSeconds * 1000) {
        lastExpire = Date.now();
        this.#queue.expire();
      }
      // Already counted and logged by the queue; the next tick tries again.
      await this.#queue.flush().catch(() => undefined);
    }
    await this.#finalFlush();
  }

  /** Flush now (shutdown step one); `run`'s own final flush then finds nothing left unless entries arrive meanwhile. */
  async drain(_deadline: number): Promise<void> {
    await this.#finalFlush();
  }

  async #finalFlush(): Promise<void> {
    try {
      await this.#queue.flush();
    } catch {
      this.#logger?.error({ service: this.name, size: this.#queue.size }, 'DLQ flush at shutdown failed: entries since the last flush are lost');
    }
  }
}

function keyOf(collectionId: string, key: string): string {
  return `${collectionId}\0${key}`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** The file's entries and how many were invalid, or null when the file as a whole is unusable. */
function parseFile<T>(text: string, isPayload: ((value: unknown) => value is T) | undefined): { entries: DlqEntry<T>[]; invalid: number } | null {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof doc !== 'object' || doc === null) return null;
  const { version, entries } = doc as { version?: unknown; entries?: unknown };
  if (version !== FILE_VERSION || !Array.isArray(entries)) return null;
  const out: DlqEntry<T>[] = [];
  let invalid = 0;
  for (const raw of entries as unknown[]) {
    const e = toEntry(raw, isPayload);
    if (e === null) invalid++;
    else out.push(e);
  }
  return { entries: out, invalid };
}

function toEntry<T>(raw: unknown, isPayload: ((value: unknown) => value is T) | undefined): DlqEntry<T> | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const r = raw as Record<string, unknown>;
  const err = r.error as Record<string, unknown> | null | undefined;
  const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (!str(r.id) || !str(r.collectionId) || typeof r.key !== 'string' || !('payload' in r)) return null;
  if (!num(r.attempts) || !num(r.firstFailedAt) || !num(r.lastFailedAt)) return null;
  if (typeof err !== 'object' || err === null || typeof err.message !== 'string' || (err.kind !== 'transient' && err.kind !== 'permanent')) return null;
  if (err.status !== undefined && !num(err.status)) return null;
  if (isPayload !== undefined && !isPayload(r.payload)) return null;
  const error: DlqError = { message: err.message, kind: err.kind, ...(err.status === undefined ? {} : { status: err.status }) };
  return { id: r.id, collectionId: r.collectionId, key: r.key, payload: r.payload as T, error, attempts: r.attempts, firstFailedAt: r.firstFailedAt, lastFailedAt: r.lastFailedAt };
}
