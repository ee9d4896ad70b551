import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Catalog, TIERING_POLICIES, type CollectionRecord, type TieringPolicy } from '../catalog/catalog.js';
import type { WalOptions } from '../storage/wal.js';
import { AkiError } from '../errors.js';
import { QUANTIZATIONS, type HnswParams, type Quantization } from '../index/hnsw-index.js';
import { isMetric, type Metric } from '../index/metric.js';
import { Collection } from './collection.js';
import { resolveEngineOptions, type EngineOptions, type EngineOptionsInput } from './options.js';

export const DEFAULT_TENANT = 'default';
export const DEFAULT_DATABASE = 'default';
const NAME = /^[A-Za-z0-9_.-]{1,255}$/;

/** Options of `AkiDB.open`. */
export interface OpenOptions extends EngineOptionsInput {
  dataDir: string;
  /** SQLite catalog file; defaults to `<dataDir>/metadata.db`. */
  catalogPath?: string;
  /** Create the default tenant and database on first open (default true). */
  autoInitialize?: boolean;
  /** How long a catalog statement waits for a lock held by another connection (default 5000). */
  catalogBusyTimeoutMs?: number;
  /** Policy of collections created without one (default Memory; others need `tiering`). */
  defaultTieringPolicy?: TieringPolicy;
  /** The object-storage tier; without it only Memory collections exist. */
  tiering?: TieringHooks;
}

/**
 * What an object-storage tier plugs into the engine (the server's TieringRuntime). The engine
 * calls these around each collection's life; the tier ships files and, for S3Only, stores every
 * WAL group before the write is acknowledged.
 */
export interface TieringHooks {
  /** Policies besides Memory this database serves. */
  readonly policies: readonly TieringPolicy[];
  /** WAL hooks for a collection about to open (S3Only: the commit hook). */
  walHooks(rec: CollectionRecord, dir: string): Pick<WalOptions, 'commitHook' | 'groupCommitMs'>;
  /** The collection opened (or its policy changed): start or stop shipping it. */
  attach(col: Collection, rec: CollectionRecord, dir: string): void;
  /** The collection was dropped: stop shipping it and delete its remote copy. */
  dropped(rec: CollectionRecord): Promise<void>;
  /** Before an evicted collection opens: put its files back in `dir` (from the bucket); returns true when it did. */
  fetchEvicted?(rec: CollectionRecord, dir: string): Promise<boolean>;
  /** The collection is being evicted: stop shipping it (its remote copy stays: it is the collection now). */
  evicting?(rec: CollectionRecord): Promise<void>;
  /** An open collection was looked up (a cache hit, for S3Only ones). */
  touched?(collectionId: string): void;
}

/** The file an evicted collection's directory holds instead of its data (which lives in the bucket). */
export const EVICTED_MARKER = 'EVICTED';

/** What `createCollection` takes. */
export interface CreateCollectionSpec {
  name: string;
  dimension: number;
  metric?: Metric;
  index?: { m?: number; efConstruction?: number; efSearch?: number; quantization?: Quantization };
  /** Where the data lives (default: the database's default policy). */
  tieringPolicy?: TieringPolicy;
}

/** Validate a tenant, database or collection name before it reaches SQL or a path. */
export function validateName(kind: string, name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name) || name === '.' || name === '..') throw new AkiError('INVALID_NAME', { [kind]: typeof name === 'string' ? name.slice(0, 300) : name }, `${kind} names must match [A-Za-z0-9_.-]{1,255}`);
  return name;
}

function intIn(value: unknown, min: number, max: number, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new AkiError('INVALID_INDEX_PARAMS', { field, value, min, max }, `${field} must be an integer in ${min}..${max}`);
  return value;
}

/** The collections of one tenant / database pair. */
export class DatabaseScope {
  constructor(
    readonly db: AkiDB,
    readonly tenant: string,
    readonly database: string,
  ) {}

  createCollection(spec: CreateCollectionSpec): Promise<Collection> {
    return this.db._createCollection(this.tenant, this.database, spec);
  }

  getCollection(name: string): Promise<Collection> {
    return this.db._getCollection(this.tenant, this.database, name);
  }

  listCollections(): Promise<CollectionRecord[]> {
    return this.db._listCollections(this.tenant, this.database);
  }

  dropCollection(name: string): Promise<void> {
    return this.db._dropCollection(this.tenant, this.database, name);
  }
}

/**
 * An AkiDB instance over one data directory: the catalog plus every collection, opened lazily.
 * One process at a time may hold a data directory (LOCK file).
 */
export class AkiDB {
  readonly dataDir: string;
  readonly options: EngineOptions;
  readonly #catalog: Catalog;
  readonly #open = new Map<string, Promise<Collection>>();
  /** collection_id by tenant / database / name, for collections opened by name: saves two catalog queries a request. Only this process changes the catalog (LOCK), so entries go stale only through `_dropCollection`, which removes them. */
  readonly #idByName = new Map<string, string>();
  readonly #lockFile: string;
  readonly #lastUsed = new Map<string, number>();
  readonly #tiering: TieringHooks | undefined;
  readonly defaultTieringPolicy: TieringPolicy;
  #closed = false;

  private constructor(dataDir: string, options: EngineOptions, catalog: Catalog, lockFile: string, tiering: TieringHooks | undefined, defaultPolicy: TieringPolicy) {
    this.dataDir = dataDir;
    this.options = options;
    this.#catalog = catalog;
    this.#lockFile = lockFile;
    this.#tiering = tiering;
    this.defaultTieringPolicy = defaultPolicy;
  }

  /** Open (creating on first use) the data directory. Throws DATA_DIR_LOCKED if another live process holds it. */
  static async open(opts: OpenOptions): Promise<AkiDB> {
    if (typeof opts?.dataDir !== 'string' || opts.dataDir.length === 0) throw new AkiError('INVALID_ARGUMENT', {}, 'open needs a dataDir');
    const dataDir = path.resolve(opts.dataDir);
    const options = resolveEngineOptions(opts);
    await mkdir(path.join(dataDir, 'collections'), { recursive: true });
    const lockFile = path.join(dataDir, 'LOCK');
    await acquireLock(lockFile);
    let catalog: Catalog;
    try {
      catalog = new Catalog(opts.catalogPath ?? path.join(dataDir, 'metadata.db'), opts.catalogBusyTimeoutMs);
      if (opts.autoInitialize ?? true) catalog.ensureDefaults(DEFAULT_TENANT, DEFAULT_DATABASE);
      await removeOrphanCollectionDirs(path.join(dataDir, 'collections'), new Set(catalog.allCollectionIds()));
      applyPersistedCompaction(catalog, options);
    } catch (err) {
      await releaseLock(lockFile);
      throw err;
    }
    const defaultPolicy = opts.defaultTieringPolicy ?? 'Memory';
    const db = new AkiDB(dataDir, options, catalog, lockFile, opts.tiering, defaultPolicy);
    try {
      db.#checkPolicy(defaultPolicy);
    } catch (err) {
      await db.close();
      throw err;
    }
    return db;
  }

  /** Policies this database can give a collection. */
  tieringPolicies(): TieringPolicy[] {
    return ['Memory', ...(this.#tiering?.policies ?? []).filter((p) => p !== 'Memory')];
  }

  #checkPolicy(policy: unknown): TieringPolicy {
    if (typeof policy !== 'string' || !TIERING_POLICIES.includes(policy as TieringPolicy)) throw new AkiError('INVALID_ARGUMENT', { tieringPolicy: policy }, 'tiering_policy must be Memory, MemoryS3 or S3Only');
    if (!this.tieringPolicies().includes(policy as TieringPolicy)) throw new AkiError('TIER_UNAVAILABLE', { tieringPolicy: policy }, `Tiering policy ${policy} needs an object store, which this server does not have configured (storage.s3_bucket)`);
    return policy as TieringPolicy;
  }

  /** Where a collection restored from the object store must be put before `adoptCollection`. */
  collectionDir(collectionId: string): string {
    return this.#collectionDir(collectionId);
  }

  /** Add a collection restored into `collectionDir(rec.collectionId)` to the catalog (creating its tenant and database when absent). */
  adoptCollection(rec: CollectionRecord): void {
    this.#checkOpen();
    this.#catalog.adoptCollection(rec);
  }

  /**
   * Move a collection between Memory and MemoryS3 (shipping starts or stops at once; a remote
   * copy left by MemoryS3 stays until the collection is dropped). S3Only is chosen at creation.
   */
  async setTieringPolicy(collectionId: string, policy: TieringPolicy): Promise<Collection> {
    this.#checkOpen();
    const next = this.#checkPolicy(policy);
    const col = await this.getCollectionById(collectionId);
    const current = col.info.tieringPolicy;
    if (current === next) return col;
    if (current === 'S3Only' || next === 'S3Only') throw new AkiError('TIER_UNAVAILABLE', { from: current, to: next }, `A collection cannot move ${next === 'S3Only' ? 'to' : 'from'} S3Only: that policy is chosen when the collection is created`);
    this.#catalog.setTieringPolicy(collectionId, next);
    col.info.tieringPolicy = next;
    const rec = this.#catalog.getCollectionById(collectionId)!;
    this.#tiering?.attach(col, rec, this.#collectionDir(collectionId));
    return col;
  }

  /** The collections of a tenant and database (validated lazily, at each call). */
  database(tenant = DEFAULT_TENANT, database = DEFAULT_DATABASE): DatabaseScope {
    return new DatabaseScope(this, validateName('tenant', tenant), validateName('database', database));
  }

  createCollection(spec: CreateCollectionSpec): Promise<Collection> {
    return this._createCollection(DEFAULT_TENANT, DEFAULT_DATABASE, spec);
  }

  getCollection(name: string): Promise<Collection> {
    return this._getCollection(DEFAULT_TENANT, DEFAULT_DATABASE, name);
  }

  listCollections(): Promise<CollectionRecord[]> {
    return this._listCollections(DEFAULT_TENANT, DEFAULT_DATABASE);
  }

  dropCollection(name: string): Promise<void> {
    return this._dropCollection(DEFAULT_TENANT, DEFAULT_DATABASE, name);
  }

  /** The compaction settings in force for every collection. */
  compactionSettings(): EngineOptions['compaction'] {
    return { ...this.options.compaction };
  }

  /**
   * Change compaction settings for every collection at once, from their next decision on, and
   * persist them in the catalog: they survive restarts and then take precedence over the options
   * passed to `open` (the server's config file). Validated whole before anything changes.
   */
  updateCompaction(change: Partial<EngineOptions['compaction']>): EngineOptions['compaction'] {
    this.#checkOpen();
    const next = checkCompaction({ ...this.options.compaction, ...change });
    this.#catalog.setRuntimeConfig('compaction', next);
    Object.assign(this.options.compaction, next);
    return this.compactionSettings();
  }

  /** The catalog's API keys (hashes and roles; see src/security/api-keys.ts). */
  get apiKeys(): Pick<Catalog, 'createApiKey' | 'findApiKeyByHash' | 'listApiKeys' | 'revokeApiKey'> {
    this.#checkOpen();
    return this.#catalog;
  }

  /** A consistent copy of the catalog in `file` (SQLite's online backup), taken while the server runs. */
  backupCatalog(file: string): Promise<void> {
    this.#checkOpen();
    return this.#catalog.backupTo(file);
  }

  /** Settings an operator changed at runtime, stored in the catalog by section (undefined when never changed). */
  runtimeConfig(section: string): unknown {
    this.#checkOpen();
    return this.#catalog.getRuntimeConfig(section);
  }

  /** Store runtime-changed settings of `section` in the catalog (they survive restarts). */
  setRuntimeConfig(section: string, value: unknown): void {
    this.#checkOpen();
    this.#catalog.setRuntimeConfig(section, value);
  }

  /** Every collection in the catalog, across tenants and databases. */
  allCollections(): CollectionRecord[] {
    this.#checkOpen();
    return this.#catalog.allCollections();
  }

  /** Number of collections in the catalog. */
  collectionCount(): number {
    return this.#closed ? 0 : this.#catalog.countCollections();
  }

  /** Open every collection now (replaying WALs), rather than on first use; a server does this before it reports ready. */
  async openAll(): Promise<Collection[]> {
    // Evicted collections stay in the bucket until they are used.
    return Promise.all(this.allCollections().filter((rec) => !this.isEvicted(rec.collectionId)).map((rec) => this.#openCollection(rec)));
  }

  /** True while an S3Only collection's local copy is evicted (its data is only in the bucket). */
  isEvicted(collectionId: string): boolean {
    return existsSync(path.join(this.#collectionDir(collectionId), EVICTED_MARKER));
  }

  /** When each open collection was last looked up (epoch ms), for cache eviction. */
  lastUsed(collectionId: string): number | undefined {
    return this.#lastUsed.get(collectionId);
  }

  /**
   * Evict an open S3Only collection's local copy: close it, stop shipping it, delete its files and
   * leave EVICTED_MARKER; its next use fetches it from the bucket again. The caller checks that the
   * bucket holds everything (the replicator is caught up) and that the collection is idle: a
   * request still holding it would get CLOSED.
   */
  async evictCollection(collectionId: string): Promise<void> {
    this.#checkOpen();
    const rec = this.#catalog.getCollectionById(collectionId);
    if (!rec || rec.tieringPolicy !== 'S3Only') throw new AkiError('INVALID_ARGUMENT', { collectionId }, 'Only S3Only collections can be evicted');
    const opening = this.#open.get(collectionId);
    this.#open.delete(collectionId);
    this.#lastUsed.delete(collectionId);
    const col = await opening?.catch(() => null);
    await col?.close();
    await this.#tiering?.evicting?.(rec);
    const dir = this.#collectionDir(collectionId);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, EVICTED_MARKER), `${new Date().toISOString()}\n`);
    for (const name of await readdir(dir)) if (name !== EVICTED_MARKER) await rm(path.join(dir, name), { recursive: true, force: true });
  }

  /** The collections opened so far (by `openAll` or by use). */
  async openCollections(): Promise<Collection[]> {
    const out: Collection[] = [];
    for (const p of [...this.#open.values()]) {
      const c = await p.catch(() => null);
      if (c) out.push(c);
    }
    return out;
  }

  /** A collection by its UUID, in whatever tenant and database it lives. */
  async getCollectionById(collectionId: string): Promise<Collection> {
    this.#checkOpen();
    const rec = this.#catalog.getCollectionById(collectionId);
    if (!rec) throw new AkiError('COLLECTION_NOT_FOUND', { collectionId });
    return this.#openCollection(rec);
  }

  async createTenant(name: string): Promise<void> {
    this.#checkOpen();
    this.#catalog.createTenant(validateName('tenant', name));
  }

  async listTenants(): Promise<{ name: string; createdAt: string }[]> {
    this.#checkOpen();
    return this.#catalog.listTenants();
  }

  async dropTenant(name: string): Promise<void> {
    this.#checkOpen();
    this.#catalog.dropTenant(validateName('tenant', name));
  }

  async createDatabase(tenant: string, name: string): Promise<void> {
    this.#checkOpen();
    this.#catalog.createDatabase(validateName('tenant', tenant), validateName('database', name));
  }

  async listDatabases(tenant: string): Promise<{ name: string; createdAt: string }[]> {
    this.#checkOpen();
    return this.#catalog.listDatabases(validateName('tenant', tenant));
  }

  async dropDatabase(tenant: string, name: string): Promise<void> {
    this.#checkOpen();
    this.#catalog.dropDatabase(validateName('tenant', tenant), validateName('database', name));
  }

  /** @internal */
  async _createCollection(tenant: string, database: string, spec: CreateCollectionSpec): Promise<Collection> {
    this.#checkOpen();
    if (typeof spec !== 'object' || spec === null) throw new AkiError('INVALID_ARGUMENT', {}, 'createCollection takes { name, dimension, metric }');
    const name = validateName('collection', spec.name);
    const { dimension } = spec;
    if (typeof dimension !== 'number' || !Number.isInteger(dimension) || dimension < 1 || dimension > 4096) throw new AkiError('INVALID_DIMENSION', { dimension: dimension });
    const metric = spec.metric ?? 'cosine';
    if (!isMetric(metric)) throw new AkiError('INVALID_METRIC', { metric: metric });
    const h = this.options.hnsw;
    const ix = spec.index ?? {};
    if (typeof ix !== 'object' || ix === null) throw new AkiError('INVALID_INDEX_PARAMS', {}, 'index must be an object');
    const quantization = ix.quantization ?? h.quantization;
    if (!QUANTIZATIONS.includes(quantization)) throw new AkiError('INVALID_INDEX_PARAMS', { quantization: quantization }, 'quantization must be f32, f16 or i8');
    if (quantization === 'i8' && metric !== 'cosine') throw new AkiError('INVALID_INDEX_PARAMS', { quantization, metric }, 'i8 quantization needs the cosine metric');
    const index: HnswParams = {
      m: intIn(ix.m ?? h.m, 2, 128, 'm'),
      efConstruction: intIn(ix.efConstruction ?? h.efConstruction, 8, 4096, 'efConstruction'),
      efSearch: intIn(ix.efSearch ?? h.efSearch, 1, 10_000, 'efSearch'),
      quantization,
    };
    const tieringPolicy = this.#checkPolicy(spec.tieringPolicy ?? this.defaultTieringPolicy);
    const rec: CollectionRecord = { collectionId: randomUUID(), tenant, database, name, dimension, metric, index, createdAt: new Date().toISOString(), tieringPolicy };
    this.#catalog.createCollection(rec);
    return this.#openCollection(rec);
  }

  /** @internal */
  async _getCollection(tenant: string, database: string, name: string): Promise<Collection> {
    this.#checkOpen();
    const key = `${tenant}\u0000${database}\u0000${name}`;
    const id = this.#idByName.get(key);
    const opened = id === undefined ? undefined : this.#open.get(id);
    if (opened) {
      this.#lastUsed.set(id!, Date.now());
      this.#tiering?.touched?.(id!);
      return opened;
    }
    const n = validateName('collection', name);
    this.#catalog.requireDatabase(tenant, database);
    const rec = this.#catalog.getCollection(tenant, database, n);
    if (!rec) throw new AkiError('COLLECTION_NOT_FOUND', { tenant, database, collection: n }, `Collection ${n} not found`);
    this.#idByName.set(key, rec.collectionId);
    return this.#openCollection(rec);
  }

  /** @internal */
  async _listCollections(tenant: string, database: string): Promise<CollectionRecord[]> {
    this.#checkOpen();
    this.#catalog.requireDatabase(tenant, database);
    return this.#catalog.listCollections(tenant, database);
  }

  /** @internal */
  async _dropCollection(tenant: string, database: string, name: string): Promise<void> {
    this.#checkOpen();
    const n = validateName('collection', name);
    this.#catalog.requireDatabase(tenant, database);
    const rec = this.#catalog.getCollection(tenant, database, n);
    if (!rec) throw new AkiError('COLLECTION_NOT_FOUND', { tenant, database, collection: n }, `Collection ${n} not found`);
    this.#catalog.deleteCollection(rec.collectionId);
    this.#idByName.delete(`${tenant}\u0000${database}\u0000${n}`);
    const opening = this.#open.get(rec.collectionId);
    this.#open.delete(rec.collectionId);
    if (opening) {
      const col = await opening.catch(() => null);
      await col?.markDropped();
    }
    // The catalog row is gone, so the directory is an orphan now: rename then remove, and let
    // the next open finish the job if this process dies in between.
    const dir = this.#collectionDir(rec.collectionId);
    const trash = path.join(this.dataDir, 'collections', `.trash-${rec.collectionId}`);
    await rename(dir, trash).catch(() => undefined);
    await rm(trash, { recursive: true, force: true });
    if (rec.tieringPolicy !== 'Memory') await this.#tiering?.dropped(rec);
  }

  #collectionDir(id: string): string {
    return path.join(this.dataDir, 'collections', id);
  }

  #openCollection(rec: CollectionRecord): Promise<Collection> {
    this.#lastUsed.set(rec.collectionId, Date.now());
    let p = this.#open.get(rec.collectionId);
    if (p) this.#tiering?.touched?.(rec.collectionId);
    if (!p) {
      const info = { collectionId: rec.collectionId, name: rec.name, tenant: rec.tenant, database: rec.database, dimension: rec.dimension, metric: rec.metric, index: rec.index, createdAt: rec.createdAt, tieringPolicy: rec.tieringPolicy };
      const dir = this.#collectionDir(rec.collectionId);
      const tiering = this.#tiering;
      if (rec.tieringPolicy !== 'Memory' && !tiering) {
        return Promise.reject(new AkiError('TIER_UNAVAILABLE', { collectionId: rec.collectionId, tieringPolicy: rec.tieringPolicy }, `Collection ${rec.name} is ${rec.tieringPolicy}, and this database has no object store configured`));
      }
      const fetched = tiering?.fetchEvicted && this.isEvicted(rec.collectionId) ? tiering.fetchEvicted(rec, dir) : Promise.resolve(false);
      p = fetched.then(() => Collection.open(info, dir, this.options, tiering ? tiering.walHooks(rec, dir) : {})).then((col) => {
        tiering?.attach(col, rec, dir);
        return col;
      });
      this.#open.set(rec.collectionId, p);
      p.catch(() => this.#open.delete(rec.collectionId));
    }
    return p;
  }

  #checkOpen(): void {
    if (this.#closed) throw new AkiError('CLOSED');
  }

  /** Close every open collection (aborting index builds; the WAL keeps all acknowledged writes) and release the lock. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const cols = await Promise.allSettled([...this.#open.values()]);
    this.#open.clear();
    for (const c of cols) if (c.status === 'fulfilled') await c.value.close();
    this.#catalog.close();
    await releaseLock(this.#lockFile);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Lock files this process holds: a second open of the same directory in one process is refused here. */
const heldLocks = new Set<string>();

async function releaseLock(lockFile: string): Promise<void> {
  heldLocks.delete(lockFile);
  await unlink(lockFile).catch(() => undefined);
}

async function acquireLock(lockFile: string): Promise<void> {
  if (heldLocks.has(lockFile)) throw new AkiError('DATA_DIR_LOCKED', { lockFile, pid: process.pid }, `Data directory ${path.dirname(lockFile)} is already open in this process`);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(lockFile, String(process.pid), { flag: 'wx' });
      heldLocks.add(lockFile);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
    // Our own pid in a lock we do not hold is a previous process's: in a container the server is
    // always pid 1, so after a crash or a kill the restarted server finds its own pid there.
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && pidAlive(holder)) {
      throw new AkiError('DATA_DIR_LOCKED', { lockFile, pid: holder }, `Data directory ${path.dirname(lockFile)} is in use by process ${holder}`);
    }
    // Stale lock from a process that died: take it over.
    await unlink(lockFile).catch(() => undefined);
  }
  throw new AkiError('DATA_DIR_LOCKED', { lockFile }, `Could not lock ${path.dirname(lockFile)}`);
}

async function removeOrphanCollectionDirs(dir: string, known: Set<string>): Promise<void> {
  for (const name of await readdir(dir)) {
    if (known.has(name)) continue;
    await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

const COMPACTION_RANGES = {
  thresholdBytes: [1024, 64 * 1024 ** 3],
  thresholdOps: [1, 100_000_000],
  maxSegments: [1, 1024],
  idleFlushMs: [1, 3_600_000],
} as const;

/** Check a whole set of compaction settings; INVALID_ARGUMENT naming every bad field. */
function checkCompaction(c: Record<string, unknown>): EngineOptions['compaction'] {
  const problems: Record<string, string> = {};
  for (const [field, [min, max]] of Object.entries(COMPACTION_RANGES)) {
    const v = c[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) problems[field] = `an integer in ${min}..${max}`;
  }
  if (typeof c.enableBackground !== 'boolean') problems.enableBackground = 'true or false';
  const unknown = Object.keys(c).filter((k) => !(k in COMPACTION_RANGES) && k !== 'enableBackground');
  for (const k of unknown) problems[k] = 'not a compaction setting';
  if (Object.keys(problems).length > 0) throw new AkiError('INVALID_ARGUMENT', { problems }, `Invalid compaction settings: ${Object.entries(problems).map(([k, v]) => `${k} must be ${v}`).join('; ')}`);
  return c as unknown as EngineOptions['compaction'];
}

/** Settings changed at runtime earlier win over the ones given to open; a stored set that no longer validates is ignored (and reported). */
function applyPersistedCompaction(catalog: Catalog, options: EngineOptions): void {
  const stored = catalog.getRuntimeConfig('compaction');
  if (stored === undefined) return;
  try {
    Object.assign(options.compaction, checkCompaction({ ...options.compaction, ...(stored as Record<string, unknown>) }));
    options.logger.info({ compaction: options.compaction }, 'Applied compaction settings changed at runtime (stored in the catalog)');
  } catch (err) {
    options.logger.warn({ err: String(err) }, 'Ignored stored compaction settings that no longer validate');
  }
}
