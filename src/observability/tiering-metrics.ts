import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CircuitBreaker } from '../tiering/circuit-breaker.js';
import type { DeadLetterQueue } from '../tiering/dead-letter-queue.js';
import type { UploadObserver, UploadWorker } from '../tiering/upload-worker.js';

/**
 * The object-storage metrics, with exactly the names seed 000's PromQL and seed 004's alert rules
 * and appendix B use (no `_total` suffixes: the rules query the bare names; the health-check pair
 * lives in ServerMetrics, since the admin health check runs without tiers too). Gauges read their
 * source when scraped; counters are fed by the upload worker's observer.
 */
export class TieringMetrics {
  readonly #breakers: CircuitBreaker[] = [];
  readonly #queues: DeadLetterQueue<unknown>[] = [];
  readonly #workers: UploadWorker[] = [];

  readonly s3Uploads: Counter<'collection_id'>;
  readonly s3Retries: Counter<'collection_id'>;
  readonly s3PermanentFailures: Counter<'collection_id'>;
  readonly inserts: Counter<'collection_id'>;
  readonly compactions: Counter<'collection_id'>;
  readonly uploadBackpressure: Counter<'collection_id'>;
  readonly lastSnapshot: Gauge<'collection_id'>;
  readonly cacheHits: Counter<'collection_id'>;
  readonly cacheMisses: Counter<'collection_id'>;
  readonly uploadBatchSize: Histogram;
  readonly compressedBytes: Histogram;
  readonly compressionRatio: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    // prom-client calls collect() with the metric as `this`; the sources are read from here.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.inserts = new Counter({ name: 'storage_inserts', help: 'Documents written to object-storage-tiered collections', labelNames: ['collection_id'], registers });
    this.s3Uploads = new Counter({ name: 'storage_s3_uploads', help: 'Objects stored in the object store', labelNames: ['collection_id'], registers });
    this.s3Retries = new Counter({ name: 'storage_s3_retries', help: 'Object-store uploads retried after a transient failure', labelNames: ['collection_id'], registers });
    this.s3PermanentFailures = new Counter({ name: 'storage_s3_permanent_failures', help: 'Uploads given up (permanent failure or retries exhausted) and sent to the dead-letter queue', labelNames: ['collection_id'], registers });
    this.uploadBackpressure = new Counter({ name: 'storage_upload_backpressure_waits', help: 'MemoryS3 write groups held because the upload lag was over max_upload_lag_seconds', labelNames: ['collection_id'], registers });
    this.compactions = new Counter({ name: 'storage_compactions', help: 'Merges of segments', labelNames: ['collection_id'], registers });
    this.lastSnapshot = new Gauge({ name: 'storage_last_snapshot_timestamp', help: 'Unix time (seconds) of the newest manifest stored in the object store', labelNames: ['collection_id'], registers });
    this.cacheHits = new Counter({ name: 'storage_cache_hits', help: 'Segment reads served from the local cache (S3Only)', labelNames: ['collection_id'], registers });
    this.cacheMisses = new Counter({ name: 'storage_cache_misses', help: 'Segment reads fetched from the object store (S3Only)', labelNames: ['collection_id'], registers });
    new Gauge({
      name: 'storage_dlq_size',
      help: 'Entries in the dead-letter queue, by collection',
      labelNames: ['collection_id'],
      registers,
      collect() {
        this.reset();
        for (const q of self.#queues) for (const [id, c] of Object.entries(q.stats().collections)) this.inc({ collection_id: id }, c.size);
      },
    });
    new Gauge({
      name: 'storage_s3_upload_queue_size',
      help: 'Uploads waiting, in flight or waiting for a retry',
      registers,
      collect() {
        this.set(self.#workers.reduce((n, w) => n + w.queueSize, 0));
      },
    });
    new Gauge({
      name: 'circuit_breaker_state',
      help: 'Object-store circuit breaker: 0 closed, 1 open, 2 half-open',
      registers,
      collect() {
        this.set(Math.max(0, ...self.#breakers.map((b) => b.stateCode)));
      },
    });
    new Gauge({
      name: 'circuit_breaker_error_rate',
      help: 'Transient-failure rate of object-store calls in the breaker window (0..1)',
      registers,
      collect() {
        this.set(Math.max(0, ...self.#breakers.map((b) => b.errorRate)));
      },
    });
    new Counter({
      name: 'circuit_breaker_transitions',
      help: 'Circuit breaker state changes',
      labelNames: ['from_state', 'to_state'],
      registers,
      collect() {
        this.reset();
        for (const b of self.#breakers) {
          for (const [key, n] of b.transitionCounts) {
            const [from = key, to = key] = key.split('->');
            this.inc({ from_state: from, to_state: to }, n);
          }
        }
      },
    });
    const dlqCounter = (name: string, help: string, pick: (s: { size: number; evictions: number; expirations: number }) => number, kind: 'gauge' | 'counter'): void => {
      const opts = {
        name,
        help,
        labelNames: ['collection_id'] as const,
        registers,
        collect(this: Gauge<'collection_id'> | Counter<'collection_id'>) {
          this.reset();
          for (const q of self.#queues) for (const [id, c] of Object.entries(q.stats().collections)) this.inc({ collection_id: id }, pick(c));
        },
      };
      if (kind === 'gauge') new Gauge(opts);
      else new Counter(opts);
    };
    dlqCounter('dlq_size', 'Entries in the dead-letter queue (seed 004 name)', (c) => c.size, 'gauge');
    dlqCounter('dlq_evictions', 'Entries evicted from a full dead-letter queue (oldest first)', (c) => c.evictions, 'counter');
    dlqCounter('dlq_expirations', 'Entries dropped from the dead-letter queue after their TTL', (c) => c.expirations, 'counter');
    new Counter({
      name: 'dlq_flushes',
      help: 'Dead-letter queue writes to disk',
      registers,
      collect() {
        this.reset();
        this.inc(self.#queues.reduce((n, q) => n + q.stats().flushes, 0));
      },
    });
    new Counter({
      name: 'dlq_flush_errors',
      help: 'Dead-letter queue writes to disk that failed',
      registers,
      collect() {
        this.reset();
        this.inc(self.#queues.reduce((n, q) => n + q.stats().flushErrors, 0));
      },
    });
    this.uploadBatchSize = new Histogram({ name: 's3_upload_batch_size', help: 'Uploads taken per upload-worker iteration', buckets: [1, 2, 3, 5, 10, 20, 50, 100], registers });
    new Gauge({
      name: 's3_upload_concurrent_tasks',
      help: 'Uploads in flight',
      registers,
      collect() {
        this.set(self.#workers.reduce((n, w) => n + w.concurrentTasks, 0));
      },
    });
    this.compressedBytes = new Histogram({ name: 's3_upload_compressed_bytes', help: 'Size of gzip-compressed upload bodies', buckets: [1024, 16_384, 131_072, 1_048_576, 8_388_608, 67_108_864, 536_870_912], registers });
    this.compressionRatio = new Histogram({ name: 's3_upload_compression_ratio', help: 'Compressed size over raw size of gzip uploads', buckets: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1], registers });
  }

  /** Report this breaker's state, error rate and transitions. */
  bindBreaker(breaker: CircuitBreaker): void {
    this.#breakers.push(breaker);
  }

  /** Report this queue's sizes, evictions, expirations and flushes. */
  bindDeadLetterQueue(queue: DeadLetterQueue<unknown>): void {
    this.#queues.push(queue);
  }

  /** Report this worker's queue size and concurrency. */
  bindUploadWorker(worker: UploadWorker): void {
    this.#workers.push(worker);
  }

  /** The observer an UploadWorker feeds its counters and histograms through. */
  uploadObserver(): UploadObserver {
    return {
      uploaded: (collectionId) => this.s3Uploads.inc({ collection_id: collectionId }),
      retried: (collectionId) => this.s3Retries.inc({ collection_id: collectionId }),
      deadLettered: (collectionId) => this.s3PermanentFailures.inc({ collection_id: collectionId }),
      batch: (size) => this.uploadBatchSize.observe(size),
      compressed: (bytes, ratio) => {
        this.compressedBytes.observe(bytes);
        this.compressionRatio.observe(ratio);
      },
    };
  }
}
