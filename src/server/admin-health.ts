import type { Logger } from 'pino';
import { memoryLimitBytes } from '../util/memory-limit.js';
import type { AkiDB } from '../engine/database.js';
import type { AkiConfig } from '../config/config-schema.js';
import type { ServerMetrics } from '../observability/metrics.js';

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

/** What `checkAndRecord` needs: the database, the config, the object store's probe when there is one, and where to record. */
export interface HealthContext {
  db: AkiDB;
  config: AkiConfig;
  objectStore?: () => Promise<string>;
  metrics: ServerMetrics | null;
}

/** Run the admin health check as `[admin.health_check]` says and record it (`health_check_status`, `health_check_duration_seconds`). */
export async function checkAndRecord(ctx: HealthContext): Promise<AdminHealth> {
  const hc = ctx.config.admin.health_check;
  const report = await adminHealth(ctx.db, {
    timeoutMs: hc.timeout_seconds * 1000,
    checkDatabase: hc.check_database,
    checkS3: hc.check_s3,
    checkMemory: hc.check_memory,
    memoryThreshold: hc.memory_threshold,
    ...(ctx.objectStore ? { objectStore: ctx.objectStore } : {}),
  });
  ctx.metrics?.healthCheckStatus.set(report.status === 'healthy' ? 1 : 0);
  ctx.metrics?.healthCheckDuration.observe(report.duration_ms / 1000);
  return report;
}

/**
 * Run the admin health check at start and every `[admin.health_check] interval_seconds`, so that
 * `health_check_status` (and the HealthCheckFailing alert) is current without anyone calling
 * GET /admin/health. A change of state is logged (warn when it turns unhealthy, naming the failed
 * checks). Returns the function that stops it; nothing runs when the interval is 0.
 */
export function startHealthMonitor(ctx: HealthContext, logger: Logger): () => void {
  const intervalMs = ctx.config.admin.health_check.interval_seconds * 1000;
  if (intervalMs === 0) return () => undefined;
  let last: AdminHealth['status'] | null = null;
  let running = false;
  let stopped = false;
  const tick = async (): Promise<void> => {
    if (running || stopped) return;
    running = true;
    try {
      const report = await checkAndRecord(ctx);
      if (report.status !== last) {
        const failed = Object.fromEntries(Object.entries(report.checks).filter(([, c]) => c.status === 'unhealthy').map(([name, c]) => [name, c.message]));
        if (report.status === 'unhealthy') logger.warn({ failed }, 'Admin health check: unhealthy');
        else if (last !== null) logger.info({}, 'Admin health check: healthy again');
        last = report.status;
      }
    } catch (err) {
      logger.error({ err }, 'Admin health check failed to run');
    } finally {
      running = false;
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
