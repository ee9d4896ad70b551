import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryObjectStore } from '../objectstore/memory-object-store.js';
import { TieringMetrics } from '../observability/tiering-metrics.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { DeadLetterQueue } from './dead-letter-queue.js';
import { UploadWorker, type UploadTask } from './upload-worker.js';

// Seed 004's DLQ bound: 2,000 uploads that fail permanently leave the 1,000 newest in a DLQ of
// max_size 1,000, with 1,000 evictions counted. The real worker, queue and metrics; the store is
// the in-memory one answering every put with 403 (the e2e file covers the same rule through the
// server with a small max_size, where 2,000 distinct refused uploads would take too long).

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const stops: (() => Promise<void>)[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const keyOf = (i: number): string => `collections/c1/wal/wal-00000000000000000001.log/${String(i * 10).padStart(20, '0')}-${String(i * 10 + 10).padStart(20, '0')}`;

describe('dead-letter queue FIFO eviction', () => {
  it('2,000 permanent upload failures leave the DLQ at its 1,000 newest entries, with 1,000 evictions counted (and persisted as such)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-dlq-evict-'));
    dirs.push(dir);
    const file = path.join(dir, 'dlq.json');
    const store = new MemoryObjectStore();
    store.faults.failWith(403, { operations: ['put'] });
    const dlq = new DeadLetterQueue<unknown>({ maxSize: 1000, persistencePath: file, logger: quiet });
    const registry = new Registry();
    const metrics = new TieringMetrics(registry);
    const breaker = new CircuitBreaker({ failureThreshold: 0.5, windowSeconds: 60, minimumRequests: 5 });
    const worker = new UploadWorker({
      store,
      batchSize: 10,
      maxConcurrency: 5,
      compression: 'none',
      retry: { maxRetries: 5, baseBackoffMs: 1, maxBackoffMs: 2 },
      gate: breaker,
      deadLetters: dlq,
      logger: quiet,
      idleMs: 5,
      observer: metrics.uploadObserver(),
    });
    metrics.bindDeadLetterQueue(dlq);
    metrics.bindBreaker(breaker);
    const ac = new AbortController();
    const running = worker.run(ac.signal);
    stops.push(async () => {
      ac.abort();
      await running;
    });

    let stored = 0;
    for (let i = 0; i < 2000; i++) {
      const task: UploadTask = { collectionId: 'c1', key: keyOf(i), source: { kind: 'test', i }, body: async () => Buffer.from(`chunk ${i}`), onStored: () => (stored += 1) };
      worker.enqueue(task);
    }
    await until('2,000 uploads to be dead-lettered', () => dlq.size + dlq.evictions === 2000 && worker.queueSize === 0);

    expect(stored).toBe(0);
    expect(dlq.size).toBe(1000);
    expect(dlq.evictions).toBe(1000);
    const entries = dlq.list('c1');
    // The newest 1,000, oldest first; each a permanent 403 after one attempt (no retries).
    expect(entries.map((e) => e.key)).toEqual(Array.from({ length: 1000 }, (_, k) => keyOf(1000 + k)));
    for (const e of entries) {
      expect(e.error).toMatchObject({ status: 403, kind: 'permanent' });
      expect(e.attempts).toBe(1);
    }
    // One call each: permanent failures are not retried.
    expect(store.stats().calls.put).toBe(2000);
    expect(store.stats().injectedFailures.put).toBe(2000);
    // 403 is the store answering: the circuit stays closed.
    expect(breaker.state).toBe('closed');

    const text = await registry.metrics();
    expect(text).toMatch(/^dlq_evictions\{collection_id="c1"\} 1000$/m);
    expect(text).toMatch(/^dlq_size\{collection_id="c1"\} 1000$/m);
    expect(text).toMatch(/^storage_s3_permanent_failures\{collection_id="c1"\} 2000$/m);
    expect(text).not.toMatch(/^storage_s3_retries\{collection_id="c1"\} [1-9]/m);

    // What a restart loads back is the same 1,000.
    expect(await dlq.flush()).toBe(true);
    const reloaded = new DeadLetterQueue<unknown>({ maxSize: 1000, persistencePath: file, logger: quiet });
    expect(await reloaded.load()).toMatchObject({ loaded: 1000, invalid: 0 });
    expect(reloaded.list().map((e) => e.id)).toEqual(entries.map((e) => e.id));
  });
});
