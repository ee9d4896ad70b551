import { statfs, access, constants } from 'node:fs/promises';
import type { AkiDB } from '../engine/database.js';

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

export interface ComponentHealth {
  status: HealthStatus;
  message: string;
}

/** seed 001's health document. */
export interface HealthReport {
  status: HealthStatus;
  version: string;
  uptime_seconds: number;
  components: { catalog: ComponentHealth; wal: ComponentHealth; storage: ComponentHealth; index: ComponentHealth };
}

/** Below this much free space in the data directory, storage reports degraded. */
const LOW_DISK_BYTES = 1024 ** 3;

/** Liveness and readiness of one server process, shared by REST and gRPC. */
export class ServerState {
  readonly startedAt = Date.now();
  #ready = false;
  #shuttingDown = false;

  constructor(
    readonly db: AkiDB,
    readonly version: string,
  ) {}

  get ready(): boolean {
    return this.#ready && !this.#shuttingDown;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  markReady(): void {
    this.#ready = true;
  }

  markShuttingDown(): void {
    this.#shuttingDown = true;
  }

  /** Check each component; the worst one decides the overall status. */
  async report(): Promise<HealthReport> {
    const catalog = this.#catalog();
    const [storage, { wal, index }] = await Promise.all([this.#storage(), this.#collections()]);
    const components = { catalog, wal, storage, index };
    const all = Object.values(components).map((c) => c.status);
    let status: HealthStatus = all.includes('unhealthy') ? 'unhealthy' : all.includes('degraded') ? 'degraded' : 'healthy';
    if (this.#shuttingDown) status = 'unhealthy';
    return { status, version: this.version, uptime_seconds: Math.floor((Date.now() - this.startedAt) / 1000), components };
  }

  #catalog(): ComponentHealth {
    try {
      const n = this.db.collectionCount();
      return { status: 'healthy', message: `SQLite catalog operational (${n} collections)` };
    } catch (err) {
      return { status: 'unhealthy', message: `Catalog query failed: ${(err as Error).message}` };
    }
  }

  async #storage(): Promise<ComponentHealth> {
    try {
      await access(this.db.dataDir, constants.W_OK);
      const fs = await statfs(this.db.dataDir);
      const free = fs.bavail * fs.bsize;
      const gib = (free / 1024 ** 3).toFixed(1);
      if (free < LOW_DISK_BYTES) return { status: 'degraded', message: `Local storage low on space: ${gib} GiB free` };
      return { status: 'healthy', message: `Local storage operational (${gib} GiB free)` };
    } catch (err) {
      return { status: 'unhealthy', message: `Data directory not writable: ${(err as Error).message}` };
    }
  }

  async #collections(): Promise<{ wal: ComponentHealth; index: ComponentHealth }> {
    let cut = 0;
    let pending = 0;
    let open = 0;
    for (const c of await this.db.openCollections()) {
      const s = c.stats();
      open += 1;
      cut += s.walCorruptTails;
      if (!s.fullyIndexed) pending += 1;
    }
    const wal: ComponentHealth = { status: 'healthy', message: cut === 0 ? 'WAL operational' : `WAL operational; ${cut} torn or corrupt tail(s) were cut at recovery` };
    const index: ComponentHealth = { status: 'healthy', message: pending === 0 ? `Index operational (${open} collections fully indexed)` : `Index operational (${pending} of ${open} collections indexing)` };
    return { wal, index };
  }
}
