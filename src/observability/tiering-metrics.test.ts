import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryObjectStore } from '../objectstore/memory-object-store.js';
import { sleep } from '../services/service.js';
import { CircuitBreaker } from '../tiering/circuit-breaker.js';
import { DeadLetterQueue } from '../tiering/dead-letter-queue.js';
import { UploadWorker } from '../tiering/upload-worker.js';
import { TieringMetrics } from './tiering-metrics.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

/** The value of one sample line (`name{labels} value`) in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('TieringMetrics', () => {
  it("exports seed 000's and seed 004's names with values that follow the worker, the breaker and the DLQ", async () => {
    const registry = new Registry();
    const metrics = new TieringMetrics(registry);
    const now = 1_000_000;
    const breaker = new CircuitBreaker({ minimumRequests: 2, halfOpenSuccesses: 1, now: () => now });
    const dlq = new DeadLetterQueue<unknown>({ persistenceEnabled: false, maxSize: 2 });
    const store = new MemoryObjectStore();
    const worker = new UploadWorker({ store, batchSize: 10, maxConcurrency: 2, compression: 'gzip', retry: { maxRetries: 100, baseBackoffMs: 1, maxBackoffMs: 2 }, gate: breaker, deadLetters: dlq, logger: quiet, idleMs: 5, observer: metrics.uploadObserver() });
    metrics.bindBreaker(breaker);
    metrics.bindDeadLetterQueue(dlq);
    metrics.bindUploadWorker(worker);
    const ac = new AbortController();
    const running = worker.run(ac.signal);
    stops.push(async () => {
      ac.abort();
      await running;
    });
    const body = async () => Buffer.from('x'.repeat(1000));
    for (let i = 0; i < 3; i++) worker.enqueue({ collectionId: 'c1', key: `c1/ok${i}`, source: null, body });
    await worker.drain(Date.now() + 5000);
    store.faults.failWith(403, { operations: ['put'] });
    for (let i = 0; i < 3; i++) worker.enqueue({ collectionId: 'c1', key: `c1/denied${i}`, source: null, body });
    await worker.drain(Date.now() + 5000);
    store.faults.failWith(503, { operations: ['put'] });
    for (let i = 0; i < 4; i++) worker.enqueue({ collectionId: 'c2', key: `c2/x${i}`, source: null, body });
    for (let waited = 0; breaker.state !== 'open'; waited += 5) {
      if (waited > 10_000) throw new Error(`breaker never opened (error rate ${breaker.errorRate})`);
      await sleep(5);
    }

    const text = await registry.metrics();
    for (const name of ['storage_inserts', 'storage_s3_uploads', 'storage_s3_retries', 'storage_s3_permanent_failures', 'storage_compactions', 'storage_last_snapshot_timestamp', 'storage_cache_hits', 'storage_cache_misses', 'storage_dlq_size', 'storage_s3_upload_queue_size', 'circuit_breaker_state', 'circuit_breaker_error_rate', 'circuit_breaker_transitions', 'dlq_size', 'dlq_evictions', 'dlq_expirations', 'dlq_flushes', 'dlq_flush_errors', 's3_upload_batch_size', 's3_upload_concurrent_tasks', 's3_upload_compressed_bytes', 's3_upload_compression_ratio']) {
      expect(text, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    }
    expect(sample(text, 'storage_s3_uploads{collection_id="c1"}')).toBe(3);
    expect(sample(text, 'storage_s3_permanent_failures{collection_id="c1"}')).toBe(3);
    expect(sample(text, 'storage_dlq_size{collection_id="c1"}')).toBe(2);
    expect(sample(text, 'dlq_evictions{collection_id="c1"}')).toBe(1);
    expect(sample(text, 'circuit_breaker_state')).toBe(1);
    expect(sample(text, 'circuit_breaker_transitions{from_state="closed",to_state="open"}')).toBe(1);
    expect(sample(text, 'storage_s3_upload_queue_size')).toBe(4);
    expect(sample(text, 's3_upload_compressed_bytes_count')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 's3_upload_compression_ratio_sum')! / sample(text, 's3_upload_compression_ratio_count')!).toBeLessThan(0.2);
    expect(sample(text, 'storage_s3_retries{collection_id="c2"}')).toBeGreaterThanOrEqual(1);
  });
});
