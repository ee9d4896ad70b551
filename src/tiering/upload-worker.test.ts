import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryObjectStore } from '../objectstore/memory-object-store.js';
import { sleep } from '../services/service.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { DeadLetterQueue } from './dead-letter-queue.js';
import { UploadWorker, type UploadTask } from './upload-worker.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const fastRetry = { maxRetries: 5, baseBackoffMs: 2, maxBackoffMs: 8, random: () => 0.5 };

function setup(opts: { batchSize?: number; maxConcurrency?: number; compression?: 'none' | 'gzip'; breaker?: CircuitBreaker; retry?: typeof fastRetry } = {}) {
  const store = new MemoryObjectStore();
  const breaker = opts.breaker ?? new CircuitBreaker({ enabled: false });
  const dlq = new DeadLetterQueue<unknown>({ persistenceEnabled: false });
  const batches: number[] = [];
  let retries = 0;
  let maxConcurrent = 0;
  const worker = new UploadWorker({
    store,
    batchSize: opts.batchSize ?? 10,
    maxConcurrency: opts.maxConcurrency ?? 5,
    compression: opts.compression ?? 'none',
    retry: opts.retry ?? fastRetry,
    gate: breaker,
    deadLetters: dlq,
    logger: quiet,
    idleMs: 5,
    observer: {
      batch: (n) => batches.push(n),
      retried: () => (retries += 1),
      uploaded: () => (maxConcurrent = Math.max(maxConcurrent, worker.concurrentTasks)),
    },
  });
  const ac = new AbortController();
  const running = worker.run(ac.signal);
  stops.push(async () => {
    ac.abort();
    await running;
  });
  return { store, breaker, dlq, worker, batches, retries: () => retries, maxConcurrent: () => maxConcurrent };
}

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

function task(i: number, stored?: string[]): UploadTask {
  const key = `c1/segments/${String(i).padStart(4, '0')}`;
  return { collectionId: 'c1', key, source: { file: key }, body: async () => Buffer.from(`body ${i} `.repeat(50)), onStored: () => stored?.push(key) };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

describe('UploadWorker', () => {
  it('stores every task in batches of at most batch_size, with at most max_concurrency in flight', async () => {
    const { store, worker, batches, maxConcurrent } = setup({ batchSize: 10, maxConcurrency: 3 });
    store.faults.latency(3);
    const stored: string[] = [];
    for (let i = 0; i < 45; i++) worker.enqueue(task(i, stored));
    await worker.drain(Date.now() + 10_000);
    expect(stored).toHaveLength(45);
    expect(worker.queueSize).toBe(0);
    expect(Math.max(...batches)).toBeLessThanOrEqual(10);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(45);
    expect(maxConcurrent()).toBeGreaterThan(1);
    expect(maxConcurrent()).toBeLessThanOrEqual(3);
    expect(Buffer.from((await store.get('c1/segments/0007'))!).toString()).toBe('body 7 '.repeat(50));
  });

  it('retries a 503 storm with backoff and loses nothing', async () => {
    const { store, worker, dlq, retries } = setup();
    store.faults.failNext(12, { status: 503, operations: ['put'] });
    const stored: string[] = [];
    for (let i = 0; i < 20; i++) worker.enqueue(task(i, stored));
    await until(() => stored.length === 20);
    expect(retries()).toBe(12);
    expect(dlq.size).toBe(0);
    expect(store.stats().calls.put).toBe(32);
  });

  it('sends permanent failures (403) to the dead-letter queue without retrying, with the source to retry from', async () => {
    const { store, worker, dlq, retries } = setup();
    store.faults.failWith(403, { operations: ['put'] });
    for (let i = 0; i < 4; i++) worker.enqueue(task(i));
    await until(() => dlq.size === 4);
    expect(retries()).toBe(0);
    expect(store.stats().calls.put).toBe(4);
    expect(dlq.list()[0]).toMatchObject({ collectionId: 'c1', key: 'c1/segments/0000', payload: { file: 'c1/segments/0000' }, error: { status: 403, kind: 'permanent' }, attempts: 1 });
  });

  it('dead-letters a transient failure once max_retries are spent', async () => {
    const { store, worker, dlq, retries } = setup({ retry: { ...fastRetry, maxRetries: 2 } });
    store.faults.failWith(500, { operations: ['put'] });
    worker.enqueue(task(1));
    await until(() => dlq.size === 1);
    expect(retries()).toBe(2);
    expect(store.stats().calls.put).toBe(3);
    expect(dlq.list()[0]).toMatchObject({ error: { status: 500, kind: 'transient' }, attempts: 3 });
  });

  it('gzips bodies and stores them with Content-Encoding: gzip', async () => {
    const { store, worker } = setup({ compression: 'gzip' });
    const stored: string[] = [];
    worker.enqueue(task(3, stored));
    await until(() => stored.length === 1);
    const head = await store.head('c1/segments/0003');
    expect(head?.contentEncoding).toBe('gzip');
    const raw = (await store.get('c1/segments/0003'))!;
    expect(raw.byteLength).toBeLessThan(350);
    expect(gunzipSync(raw).toString()).toBe('body 3 '.repeat(50));
  });

  it('makes no calls while the circuit is open, then probes, closes, and drains the backlog', async () => {
    let now = 1_000_000;
    const breaker = new CircuitBreaker({ failureThreshold: 0.5, windowSeconds: 60, cooldownSeconds: 300, halfOpenSuccesses: 3, minimumRequests: 4, now: () => now });
    const { store, worker, dlq } = setup({ breaker, retry: { ...fastRetry, maxRetries: 1000 } });
    store.faults.failWith(503, { operations: ['put'] });
    const stored: string[] = [];
    for (let i = 0; i < 30; i++) worker.enqueue(task(i, stored));
    await until(() => breaker.state === 'open');
    const callsWhenOpened = store.stats().calls.put;
    // Wall-clock time passes but the breaker's clock stays inside the cooldown: no call may reach the store.
    await sleep(200);
    expect(store.stats().calls.put).toBe(callsWhenOpened);
    expect(stored).toHaveLength(0);
    // The store recovers; once the cooldown has passed the breaker lets one probe at a time through.
    store.faults.reset();
    now += 301_000;
    await until(() => stored.length === 30);
    expect(breaker.state).toBe('closed');
    expect(dlq.size).toBe(0);
    expect(worker.queueSize).toBe(0);
  });

  it('reports the upload lag per collection: the age of its oldest task not yet stored', async () => {
    const { store, worker } = setup({ retry: { ...fastRetry, maxRetries: 1000 } });
    store.faults.failWith(503, { operations: ['put'] });
    worker.enqueue(task(1));
    await sleep(50);
    const lag = worker.lagMs().get('c1')!;
    expect(lag).toBeGreaterThanOrEqual(40);
    store.faults.reset();
    await until(() => worker.queueSize === 0);
    expect(worker.lagMs().size).toBe(0);
  });
});
