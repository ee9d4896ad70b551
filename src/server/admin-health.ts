import { totalmem } from 'node:os';
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

/** Memory use at or above this share of the limit is unhealthy (seed 004: "memory usage < 90%"). */
export const MEMORY_LIMIT_SHARE = 0.9;

/** The memory this process may use: its cgroup limit when there is a real one, else the machine's RAM. */
export function memoryLimitBytes(): number {
  const constrained = process.constrainedMemory?.() ?? 0;
  // Without a cgroup limit Node reports 0 or a huge sentinel (2^64); neither is a limit.
  return constrained !== undefined && constrained > 0 && constrained < Number.MAX_SAFE_INTEGER ? Math.min(constrained, totalmem()) : totalmem();
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

/**
 * The admin health check: the catalog answers a query, the object store (when one is configured)
 * answers a listing, and the process's resident memory is under 90 % of its limit; each check
 * bounded by `timeoutMs` ([admin.health_check] timeout_seconds).
 */
export async function adminHealth(db: AkiDB, timeoutMs: number): Promise<AdminHealth> {
  const t0 = performance.now();
  const [database, memory] = await Promise.all([
    timed(timeoutMs, () => `SQLite catalog answered (${db.collectionCount()} collections)`),
    timed(timeoutMs, () => {
      const rss = process.memoryUsage.rss();
      const limit = memoryLimitBytes();
      const share = rss / limit;
      const text = `${Math.round(rss / 2 ** 20)} MiB resident of ${Math.round(limit / 2 ** 20)} MiB (${(share * 100).toFixed(1)} %)`;
      if (share >= MEMORY_LIMIT_SHARE) throw new Error(`memory use at or above ${MEMORY_LIMIT_SHARE * 100} %: ${text}`);
      return text;
    }),
  ]);
  const object_store: AdminCheck = { status: 'not_configured', duration_ms: 0, message: 'No object store is configured (tiering policy Memory)' };
  const status = database.status === 'healthy' && memory.status === 'healthy' ? 'healthy' : 'unhealthy';
  return { status, checks: { database, object_store, memory }, duration_ms: round(performance.now() - t0) };
}
