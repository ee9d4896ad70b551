import Database from 'better-sqlite3';
import { AkiError } from '../errors.js';
import type { HnswParams } from '../index/hnsw-index.js';
import type { Metric } from '../index/metric.js';

/** A collection's row in the catalog. */
/** Where a collection's data lives and what an acknowledged write means (BRIEF.md's durability table). */
export type TieringPolicy = 'Memory' | 'MemoryS3' | 'S3Only';

export const TIERING_POLICIES: readonly TieringPolicy[] = ['Memory', 'MemoryS3', 'S3Only'];

export interface CollectionRecord {
  collectionId: string;
  tenant: string;
  database: string;
  name: string;
  dimension: number;
  metric: Metric;
  index: HnswParams;
  createdAt: string;
  tieringPolicy: TieringPolicy;
}

interface CollectionRow {
  collection_id: string;
  tenant: string;
  database: string;
  name: string;
  dimension: number;
  metric: string;
  index_params: string;
  created_at: string;
  tiering_policy: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tenants (
  name TEXT PRIMARY KEY,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS databases (
  tenant TEXT NOT NULL REFERENCES tenants(name),
  name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS runtime_config (
  section TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
  key_id TEXT PRIMARY KEY,
  key_hash TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  tenant TEXT,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS collections (
  collection_id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  database TEXT NOT NULL,
  name TEXT NOT NULL,
  dimension INTEGER NOT NULL,
  metric TEXT NOT NULL,
  index_params TEXT NOT NULL,
  created_at TEXT NOT NULL,
  tiering_policy TEXT NOT NULL DEFAULT 'Memory',
  UNIQUE (tenant, database, name),
  FOREIGN KEY (tenant, database) REFERENCES databases(tenant, name)
);
`;

function toRecord(r: CollectionRow): CollectionRecord {
  return {
    collectionId: r.collection_id,
    tenant: r.tenant,
    database: r.database,
    name: r.name,
    dimension: r.dimension,
    metric: r.metric as Metric,
    index: JSON.parse(r.index_params) as HnswParams,
    createdAt: r.created_at,
    tieringPolicy: r.tiering_policy as TieringPolicy,
  };
}

/** An API key's catalog row: never the key itself, only its SHA-256. */
export interface ApiKeyRecord {
  keyId: string;
  keyHash: string;
  name: string;
  role: string;
  tenant: string | null;
  createdAt: string;
  revokedAt: string | null;
}

interface ApiKeyRow {
  key_id: string;
  key_hash: string;
  name: string;
  role: string;
  tenant: string | null;
  created_at: string;
  revoked_at: string | null;
}

const toKeyRecord = (r: ApiKeyRow): ApiKeyRecord => ({ keyId: r.key_id, keyHash: r.key_hash, name: r.name, role: r.role, tenant: r.tenant, createdAt: r.created_at, revokedAt: r.revoked_at });

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && (err.code === 'SQLITE_CONSTRAINT_UNIQUE' || err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY');
}

/**
 * The SQLite catalog (WAL mode): tenants, databases and collections. Every change is one
 * transaction, durable when the call returns (synchronous = FULL).
 */
export class Catalog {
  readonly #db: Database.Database;
  /** Prepared statements by SQL text: preparing costs more than most of these queries. */
  readonly #statements = new Map<string, Database.Statement>();

  #sql(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  /** Open (creating) the catalog file; `busyTimeoutMs` is how long a statement waits for another connection's lock. */
  constructor(file: string, busyTimeoutMs = 5000) {
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma(`busy_timeout = ${Math.round(busyTimeoutMs)}`);
    this.#db.exec(SCHEMA);
    // Catalogs created before tiering policies existed: every collection then was Memory.
    const columns = this.#db.pragma('table_info(collections)') as { name: string }[];
    if (!columns.some((c) => c.name === 'tiering_policy')) this.#db.exec("ALTER TABLE collections ADD COLUMN tiering_policy TEXT NOT NULL DEFAULT 'Memory'");
  }

  /** Create the default tenant and database if absent (seed 000's auto-initialization). */
  ensureDefaults(tenant: string, database: string): void {
    const now = new Date().toISOString();
    this.#db.transaction(() => {
      this.#sql('INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)').run(tenant, now);
      this.#sql('INSERT OR IGNORE INTO databases (tenant, name, created_at) VALUES (?, ?, ?)').run(tenant, database, now);
    })();
  }

  createTenant(name: string): void {
    try {
      this.#sql('INSERT INTO tenants (name, created_at) VALUES (?, ?)').run(name, new Date().toISOString());
    } catch (err) {
      if (isUniqueViolation(err)) throw new AkiError('TENANT_ALREADY_EXISTS', { tenant: name });
      throw err;
    }
  }

  listTenants(): { name: string; createdAt: string }[] {
    return (this.#sql('SELECT name, created_at FROM tenants ORDER BY name').all() as { name: string; created_at: string }[]).map((r) => ({ name: r.name, createdAt: r.created_at }));
  }

  hasTenant(name: string): boolean {
    return this.#sql('SELECT 1 FROM tenants WHERE name = ?').get(name) !== undefined;
  }

  dropTenant(name: string): void {
    this.#db.transaction(() => {
      if (!this.hasTenant(name)) throw new AkiError('TENANT_NOT_FOUND', { tenant: name });
      const n = (this.#sql('SELECT COUNT(*) AS n FROM databases WHERE tenant = ?').get(name) as { n: number }).n;
      if (n > 0) throw new AkiError('DATABASE_NOT_EMPTY', { tenant: name }, `Tenant ${name} still holds databases`);
      this.#sql('DELETE FROM tenants WHERE name = ?').run(name);
    })();
  }

  createDatabase(tenant: string, name: string): void {
    if (!this.hasTenant(tenant)) throw new AkiError('TENANT_NOT_FOUND', { tenant });
    try {
      this.#sql('INSERT INTO databases (tenant, name, created_at) VALUES (?, ?, ?)').run(tenant, name, new Date().toISOString());
    } catch (err) {
      if (isUniqueViolation(err)) throw new AkiError('DATABASE_ALREADY_EXISTS', { tenant, database: name });
      throw err;
    }
  }

  listDatabases(tenant: string): { name: string; createdAt: string }[] {
    if (!this.hasTenant(tenant)) throw new AkiError('TENANT_NOT_FOUND', { tenant });
    return (this.#sql('SELECT name, created_at FROM databases WHERE tenant = ? ORDER BY name').all(tenant) as { name: string; created_at: string }[]).map((r) => ({ name: r.name, createdAt: r.created_at }));
  }

  /** Throws TENANT_NOT_FOUND or DATABASE_NOT_FOUND when the pair does not exist. */
  requireDatabase(tenant: string, database: string): void {
    if (this.#sql('SELECT 1 FROM databases WHERE tenant = ? AND name = ?').get(tenant, database) !== undefined) return;
    if (!this.hasTenant(tenant)) throw new AkiError('TENANT_NOT_FOUND', { tenant });
    throw new AkiError('DATABASE_NOT_FOUND', { tenant, database });
  }

  dropDatabase(tenant: string, name: string): void {
    this.#db.transaction(() => {
      this.requireDatabase(tenant, name);
      const n = (this.#sql('SELECT COUNT(*) AS n FROM collections WHERE tenant = ? AND database = ?').get(tenant, name) as { n: number }).n;
      if (n > 0) throw new AkiError('DATABASE_NOT_EMPTY', { tenant, database: name });
      this.#sql('DELETE FROM databases WHERE tenant = ? AND name = ?').run(tenant, name);
    })();
  }

  createCollection(rec: CollectionRecord): void {
    this.requireDatabase(rec.tenant, rec.database);
    try {
      this.#db
        .prepare('INSERT INTO collections (collection_id, tenant, database, name, dimension, metric, index_params, created_at, tiering_policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(rec.collectionId, rec.tenant, rec.database, rec.name, rec.dimension, rec.metric, JSON.stringify(rec.index), rec.createdAt, rec.tieringPolicy);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AkiError('COLLECTION_ALREADY_EXISTS', { tenant: rec.tenant, database: rec.database, collection: rec.name }, `Collection ${rec.name} already exists`);
      throw err;
    }
  }

  getCollection(tenant: string, database: string, name: string): CollectionRecord | undefined {
    const r = this.#sql('SELECT * FROM collections WHERE tenant = ? AND database = ? AND name = ?').get(tenant, database, name) as CollectionRow | undefined;
    return r ? toRecord(r) : undefined;
  }

  getCollectionById(collectionId: string): CollectionRecord | undefined {
    const r = this.#sql('SELECT * FROM collections WHERE collection_id = ?').get(collectionId) as CollectionRow | undefined;
    return r ? toRecord(r) : undefined;
  }

  listCollections(tenant: string, database: string): CollectionRecord[] {
    return (this.#sql('SELECT * FROM collections WHERE tenant = ? AND database = ? ORDER BY name').all(tenant, database) as CollectionRow[]).map(toRecord);
  }

  /** Settings changed at runtime (admin API), by section; undefined when never changed. */
  getRuntimeConfig(section: string): unknown {
    const r = this.#sql('SELECT value FROM runtime_config WHERE section = ?').get(section) as { value: string } | undefined;
    return r === undefined ? undefined : (JSON.parse(r.value) as unknown);
  }

  setRuntimeConfig(section: string, value: unknown): void {
    this.#sql('INSERT INTO runtime_config (section, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(section) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at').run(section, JSON.stringify(value), new Date().toISOString());
  }

  allCollections(): CollectionRecord[] {
    return (this.#sql('SELECT * FROM collections ORDER BY tenant, database, name').all() as CollectionRow[]).map(toRecord);
  }

  countCollections(): number {
    return (this.#sql('SELECT COUNT(*) AS n FROM collections').get() as { n: number }).n;
  }

  allCollectionIds(): string[] {
    return (this.#sql('SELECT collection_id FROM collections').all() as { collection_id: string }[]).map((r) => r.collection_id);
  }

  setTieringPolicy(collectionId: string, policy: TieringPolicy): void {
    this.#sql('UPDATE collections SET tiering_policy = ? WHERE collection_id = ?').run(policy, collectionId);
  }

  /** Insert `rec` as it is (a collection restored from the object store), creating its tenant and database when absent. */
  adoptCollection(rec: CollectionRecord): void {
    this.#db.transaction(() => {
      const now = new Date().toISOString();
      this.#sql('INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)').run(rec.tenant, now);
      this.#sql('INSERT OR IGNORE INTO databases (tenant, name, created_at) VALUES (?, ?, ?)').run(rec.tenant, rec.database, now);
      this.createCollection(rec);
    })();
  }

  deleteCollection(collectionId: string): void {
    this.#sql('DELETE FROM collections WHERE collection_id = ?').run(collectionId);
  }

  /** Store a new API key (its hash only). */
  createApiKey(rec: Omit<ApiKeyRecord, 'revokedAt'>): void {
    this.#sql('INSERT INTO api_keys (key_id, key_hash, name, role, tenant, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(rec.keyId, rec.keyHash, rec.name, rec.role, rec.tenant, rec.createdAt);
  }

  /** The live (not revoked) key with this hash, if any. */
  findApiKeyByHash(keyHash: string): ApiKeyRecord | null {
    const row = this.#sql('SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL').get(keyHash) as ApiKeyRow | undefined;
    return row ? toKeyRecord(row) : null;
  }

  listApiKeys(): ApiKeyRecord[] {
    return (this.#sql('SELECT * FROM api_keys ORDER BY created_at, key_id').all() as ApiKeyRow[]).map(toKeyRecord);
  }

  /** Mark a key revoked; false when there is no live key with that id. */
  revokeApiKey(keyId: string): boolean {
    return this.#sql('UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL').run(new Date().toISOString(), keyId).changes === 1;
  }

  /** A consistent copy of the catalog in `file`, taken online with SQLite's backup API. */
  async backupTo(file: string): Promise<void> {
    await this.#db.backup(file);
  }

  close(): void {
    this.#db.close();
  }
}
