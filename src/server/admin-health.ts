import { memoryLimitBytes } from '../util/memory-limit.js';
import type { AkiDB } from '../engine/database.js';

/** One check of the admin health report. */
export interface AdminCheck {
  status: 'healthy' | 'unhealthy' | 'not_configured';
  duration_ms: number;
  message: string;
}

/** seed 004 US-714's health document: 200 when healthy, 503 otherwise. */
export interface AdminHealth {
  status: 'healthy' | 'unhealthy';
  checks: { database: AdminCheck; object_store: AdminCheck; memory: AdminCheck };
  duration_ms: number;
}

async function timed(timeoutMs: number, fn: () => Promise<string> | string): Promise<AdminCheck> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const message = await Promise.race([
      Promise.resolve().then(fn),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { status: 'healthy', duration_ms: round(performance.now() - t0), message };
  } catch (err) {
    return { status: 'unhealthy', duration_ms: round(performance.now() - t0), message: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

/** What the admin health check looks at ([admin.health_check]). */
export interface AdminHealthOptions {
  timeoutMs: number;
  checkDatabase: boolean;
  checkS3: boolean;
  checkMemory: boolean;
  memoryThreshold: number;
  /** One call to the object store; absent when none is configured. */
  objectStore?: () => Promise<string>;
}

const skipped = (why: string): AdminCheck => ({ status: 'not_configured', duration_ms: 0, message: why });

/**
 * The admin health check: the catalog answers a query, the object store (when one is configured)
 * answers a listing, and the process's resident memory is under `memoryThreshold` of its limit;
 * each check bounded by `timeoutMs` ([admin.health_check] timeout_seconds) and each can be turned off.
 */
export async function adminHealth(db: AkiDB, o: AdminHealthOptions): Promise<AdminHealth> {
  const t0 = performance.now();
  const objectStore = o.objectStore;
  const [database, memory, object_store] = await Promise.all([
    o.checkDatabase ? timed(o.timeoutMs, () => `SQLite catalog answered (${db.collectionCount()} collections)`) : skipped('check_database = false'),
    o.checkMemory
      ? timed(o.timeoutMs, () => {
          const rss = process.memoryUsage.rss();
          const limit = memoryLimitBytes();
          const share = rss / limit;
          const text = `${Math.round(rss / 2 ** 20)} MiB resident of ${Math.round(limit / 2 ** 20)} MiB (${(share * 100).toFixed(1)} %)`;
          if (share >= o.memoryThreshold) throw new Error(`memory use at or above ${Math.round(o.memoryThreshold * 100)} %: ${text}`);
          return text;
        })
      : skipped('check_memory = false'),
    !objectStore ? skipped('No object store is configured (storage.s3_bucket)') : o.checkS3 ? timed(o.timeoutMs, objectStore) : skipped('check_s3 = false'),
  ]);
  const status = [database, memory, object_store].every((c) => c.status !== 'unhealthy') ? 'healthy' : 'unhealthy';
  return { status, checks: { database, object_store, memory }, duration_ms: round(performance.now() - t0) };
}
