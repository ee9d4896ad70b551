import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { ObjectStoreError, type ObjectStore } from '../objectstore/object-store.js';
import { sleep, type Service, type ServiceLogger } from '../services/service.js';
import { decideRetry, type RetryOptions } from './retry-policy.js';
import { AkiError } from '../errors.js';
import { markError, setSpanAttributes, withSpan, type Span } from '../observability/tracing.js';

const gzipAsync = promisify(gzip);

/** One object to ship: `body` is read when the upload starts, so a queued task holds no bytes. */
export interface UploadTask {
  collectionId: string;
  key: string;
  /** Where the bytes come from, JSON-serializable: what the dead-letter queue keeps to retry the upload later. */
  source: unknown;
  body: () => Promise<Uint8Array>;
  /** Called once the object is stored (the upload lag of its collection moves on). */
  onStored?: () => void;
}

/**
 * What gates calls to the store: the circuit breaker's side the worker needs. A permit from
 * `tryAcquire` is a promise to make the call and report its outcome with it (a half-open breaker
 * counts its probes); null means the circuit is open and no call may be made.
 */
export interface CallGate<P> {
  tryAcquire(): P | null;
  recordSuccess(permit: P): void;
  recordFailure(kind: 'transient' | 'permanent', permit: P): void;
  /** Give a permit back unused (the call was never made). */
  release?(permit: P): void;
}

/** Where uploads that will not succeed go: the dead-letter queue's side the worker needs. */
export interface DeadLetterSink {
  add(entry: { collectionId: string; key: string; payload: unknown; error: { message: string; status?: number; kind: 'transient' | 'permanent' }; attempts: number }): unknown;
}

/** Counters and observations for metrics (seed 004 names in comments). */
export interface UploadObserver {
  /** storage_s3_uploads */
  uploaded?(collectionId: string, bytes: number): void;
  /** storage_s3_retries */
  retried?(collectionId: string): void;
  /** storage_s3_permanent_failures */
  deadLettered?(collectionId: string, reason: string): void;
  /** s3_upload_batch_size */
  batch?(size: number): void;
  /** s3_upload_compressed_bytes, s3_upload_compression_ratio */
  compressed?(bytes: number, ratio: number): void;
}

export interface UploadWorkerOptions<P = unknown> {
  store: ObjectStore;
  /** Tasks taken per iteration ([storage.s3_upload] batch_size, default 10). */
  batchSize: number;
  /** Uploads in flight at once (max_concurrency, default 5). */
  maxConcurrency: number;
  /** "gzip" stores bodies compressed with Content-Encoding: gzip (compression, default "none"). */
  compression: 'none' | 'gzip';
  retry: RetryOptions;
  gate: CallGate<P>;
  deadLetters: DeadLetterSink;
  logger: ServiceLogger;
  observer?: UploadObserver;
  /** How long to wait for work, or for an open circuit, before looking again. */
  idleMs?: number;
}

interface Pending {
  task: UploadTask;
  enqueuedAt: number;
  retries: number;
  dueAt: number;
}

/**
 * Ships objects to the object store: batches of `batchSize` tasks, `maxConcurrency` at a time,
 * optionally gzipped. A transient failure is retried with backoff (seed 004's retry worker, here
 * the same queue ordered by due time); a permanent one, or a transient one past `maxRetries`,
 * goes to the dead-letter queue. While the gate (circuit breaker) is open no call is made: tasks
 * wait, and nothing is retried in a storm.
 */
export class UploadWorker<P = unknown> implements Service {
  readonly name = 'upload-worker';
  readonly #o: UploadWorkerOptions<P>;
  #queue: Pending[] = [];
  readonly #inFlight = new Set<Pending>();
  /** Collections whose uploads were cancelled: later tasks of theirs are dropped too. */
  readonly #cancelled = new Set<string>();
  #wake: (() => void) | null = null;

  constructor(options: UploadWorkerOptions<P>) {
    this.#o = options;
  }

  /** Batch size, concurrency and compression in force. */
  settings(): { batchSize: number; maxConcurrency: number; compression: 'none' | 'gzip' } {
    return { batchSize: this.#o.batchSize, maxConcurrency: this.#o.maxConcurrency, compression: this.#o.compression };
  }

  /** Change them at runtime (POST /admin/config/s3-upload); the next batch uses them. */
  configure(change: { batchSize?: number; maxConcurrency?: number; compression?: 'none' | 'gzip' }): void {
    const next = { ...this.settings(), ...change };
    const bad: string[] = [];
    if (!(Number.isInteger(next.batchSize) && next.batchSize >= 1)) bad.push(`batchSize must be an integer >= 1 (got ${next.batchSize})`);
    if (!(Number.isInteger(next.maxConcurrency) && next.maxConcurrency >= 1)) bad.push(`maxConcurrency must be an integer >= 1 (got ${next.maxConcurrency})`);
    if (next.compression !== 'none' && next.compression !== 'gzip') bad.push(`compression must be none or gzip (got ${String(next.compression)})`);
    if (bad.length > 0) throw new AkiError('INVALID_ARGUMENT', { problems: bad }, `Invalid upload settings: ${bad.join('; ')}`);
    Object.assign(this.#o, next);
  }

  enqueue(task: UploadTask): void {
    if (this.#cancelled.has(task.collectionId)) return;
    const now = Date.now();
    this.#queue.push({ task, enqueuedAt: now, retries: 0, dueAt: now });
    this.#wake?.();
  }

  /**
   * Forget every upload of `collectionId` (its collection was dropped): queued ones are removed,
   * and the outcome of those in flight is ignored (no retry, no dead letter). Resolves once none
   * is in flight any more, so a deletion of its objects that follows cannot be overtaken by one.
   */
  async cancel(collectionId: string): Promise<number> {
    this.#cancelled.add(collectionId);
    const before = this.#queue.length;
    this.#queue = this.#queue.filter((p) => p.task.collectionId !== collectionId);
    while ([...this.#inFlight].some((p) => p.task.collectionId === collectionId)) await sleep(10);
    return before - this.#queue.length;
  }

  /** Accept uploads of `collectionId` again (it is shipped anew, e.g. moved back to MemoryS3). */
  resume(collectionId: string): void {
    this.#cancelled.delete(collectionId);
  }

  /** Tasks waiting or in flight (storage_s3_upload_queue_size). */
  get queueSize(): number {
    return this.#queue.length + this.#inFlight.size;
  }

  /** Uploads running now (s3_upload_concurrent_tasks). */
  get concurrentTasks(): number {
    return this.#inFlight.size;
  }

  /**
   * Per collection, the age of its oldest upload still being tried (queued, in flight or waiting
   * for a retry): the upload lag. Dead-lettered uploads have left the worker; the DLQ counts them.
   */
  lagMs(now = Date.now()): Map<string, number> {
    const out = new Map<string, number>();
    for (const p of [...this.#queue, ...this.#inFlight]) out.set(p.task.collectionId, Math.max(out.get(p.task.collectionId) ?? 0, now - p.enqueuedAt));
    return out;
  }

  async run(signal: AbortSignal): Promise<void> {
    const idleMs = this.#o.idleMs ?? 100;
    while (!signal.aborted) {
      const batch = this.#takeDue(Date.now());
      if (batch.length === 0) {
        await this.#idle(idleMs, signal);
        continue;
      }
      this.#o.observer?.batch?.(batch.length);
      const refused = await this.#runBatch(batch, signal);
      // An open circuit: wait instead of spinning; its cooldown decides when calls resume.
      if (refused) await sleep(idleMs, signal);
    }
  }

  async drain(deadline: number): Promise<void> {
    while ((this.#queue.length > 0 || this.#inFlight.size > 0) && Date.now() < deadline) await sleep(20);
  }

  #takeDue(now: number): Pending[] {
    const due: Pending[] = [];
    const rest: Pending[] = [];
    for (const p of this.#queue) (p.dueAt <= now && due.length < this.#o.batchSize ? due : rest).push(p);
    this.#queue = rest;
    return due;
  }

  async #idle(ms: number, signal: AbortSignal): Promise<void> {
    const woken = new Promise<void>((resolve) => (this.#wake = resolve));
    await Promise.race([sleep(ms, signal), woken]);
    this.#wake = null;
  }

  /** Upload a batch; true when the gate refused a call (those tasks went back to the queue). */
  async #runBatch(batch: Pending[], signal: AbortSignal): Promise<boolean> {
    let next = 0;
    let refused = false;
    const lane = async (): Promise<void> => {
      while (next < batch.length && !signal.aborted) {
        const p = batch[next++]!;
        // The circuit is open (or may have opened while this batch ran): put the task back untried.
        if (this.#cancelled.has(p.task.collectionId)) continue;
        const permit = refused ? null : this.#o.gate.tryAcquire();
        if (permit === null) {
          refused = true;
          this.#queue.push(p);
          continue;
        }
        this.#inFlight.add(p);
        try {
          await withSpan('tiering.upload', () => ({ 'akidb.collection_id': p.task.collectionId, 'akidb.objectstore.key': p.task.key, 'akidb.upload.attempt': p.retries + 1, 'akidb.upload.compression': this.#o.compression }), (span) => this.#upload(p, permit, span));
        } finally {
          this.#inFlight.delete(p);
        }
      }
      // Whatever an abort left untried goes back to the queue for the next start to see.
      while (next < batch.length) this.#queue.push(batch[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.maxConcurrency, batch.length) }, lane));
    return refused;
  }

  /** One attempt; never rejects: the outcome (stored, retry, dead letter) is recorded on `span`. */
  async #upload(p: Pending, permit: P, span: Span): Promise<void> {
    const { task } = p;
    let body: Uint8Array;
    try {
      body = await task.body();
    } catch (err) {
      // Reading the local bytes failed: no call was made, so the store is not to blame.
      this.#o.gate.release?.(permit);
      markError(span, err);
      if (this.#cancelled.has(task.collectionId)) return;
      this.#failed(p, err, 'transient', undefined, span);
      return;
    }
    try {
      const raw = body.byteLength;
      let contentEncoding: string | undefined;
      if (this.#o.compression === 'gzip') {
        body = await gzipAsync(body);
        contentEncoding = 'gzip';
        this.#o.observer?.compressed?.(body.byteLength, raw === 0 ? 1 : body.byteLength / raw);
      }
      setSpanAttributes(span, () => ({ 'akidb.upload.raw_bytes': raw, 'akidb.upload.bytes': body.byteLength }));
      await this.#o.store.put(task.key, body, contentEncoding ? { contentEncoding } : undefined);
      setSpanAttributes(span, () => ({ 'akidb.upload.outcome': 'stored' }));
      this.#o.gate.recordSuccess(permit);
      this.#o.observer?.uploaded?.(task.collectionId, body.byteLength);
      task.onStored?.();
    } catch (err) {
      const kind = err instanceof ObjectStoreError ? err.kind : 'transient';
      const status = err instanceof ObjectStoreError ? err.status : undefined;
      this.#o.gate.recordFailure(kind, permit);
      markError(span, err);
      if (this.#cancelled.has(task.collectionId)) return;
      this.#failed(p, err, kind, status, span);
    }
  }

  /** Retry a failed upload after its backoff, or give it to the dead-letter queue. */
  #failed(p: Pending, err: unknown, kind: 'transient' | 'permanent', status: number | undefined, span: Span): void {
    const { task } = p;
    {
      const decision = decideRetry(kind, p.retries, this.#o.retry);
      setSpanAttributes(span, () => ({ 'akidb.upload.outcome': decision.action === 'retry' ? 'retry' : 'dead_letter', 'akidb.upload.failure': kind, ...(status === undefined ? {} : { 'http.response.status_code': status }) }));
      if (decision.action === 'retry') {
        p.retries += 1;
        p.dueAt = Date.now() + decision.delayMs;
        this.#queue.push(p);
        this.#o.observer?.retried?.(task.collectionId);
        this.#o.logger.warn({ collectionId: task.collectionId, key: task.key, status, retry: p.retries, delayMs: decision.delayMs, err: String(err) }, 'Upload failed; will retry');
        return;
      }
      const message = err instanceof Error ? err.message : String(err);
      this.#o.deadLetters.add({ collectionId: task.collectionId, key: task.key, payload: task.source, error: status === undefined ? { message, kind } : { message, status, kind }, attempts: p.retries + 1 });
      this.#o.observer?.deadLettered?.(task.collectionId, decision.reason);
      this.#o.logger.error({ collectionId: task.collectionId, key: task.key, status, attempts: p.retries + 1, reason: decision.reason }, 'Upload dead-lettered');
    }
  }
}
