import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../test-support/fault-proxy.js';
import { startS3Server, type S3TestServer } from '../test-support/s3-server.js';
import { http, startServerProcess, type ServerProcess } from '../test-support/server-process.js';

// The object-storage tier end to end (seed 004): real `akidb serve` processes, a real S3 server
// (s3rver) behind a fault proxy that stages 503 storms, revoked keys (403), resets and silence.
// Every test owns its bucket, so a disaster recovery sees only what that test wrote.

const BUCKET = 'akidb';
const TEST_TIMEOUT = 60_000;

// ------------------------------------------------------------------ cleanup

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-tiering-e2e-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  // Last started, first stopped: servers before the proxy before s3rver. Even when a test failed.
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

let dirSeq = 0;
function newDir(label: string): string {
  return fs.mkdtempSync(path.join(root, `${label}-${dirSeq++}-`));
}

// ------------------------------------------------------------------ configuration

type Toml = Record<string, Record<string, string | number | boolean>>;

/** Fast settings for tests: a 100 ms sync tick, short timeouts and backoffs, a 1 s cooldown. */
const BASE: Toml = {
  storage: { s3_sync_interval_ms: 100, s3only_ack_timeout_seconds: 2, s3_request_timeout_seconds: 2 },
  'storage.retry': { max_retries: 5, base_backoff_secs: 0.05, max_backoff_secs: 0.2 },
  'storage.circuit_breaker': { enabled: true, failure_threshold: 0.5, window_seconds: 5, cooldown_seconds: 1, half_open_successes: 3, minimum_requests: 5 },
  'storage.dlq': { max_size: 1000, flush_interval_seconds: 0.2 },
  'storage.s3_upload': { batch_size: 10, max_concurrency: 5, compression: 'none' },
};

function toToml(over: Toml = {}): string {
  const merged: Toml = {};
  for (const [section, values] of [...Object.entries(BASE), ...Object.entries(over)]) merged[section] = { ...merged[section], ...values };
  return Object.entries(merged)
    .map(([section, values]) => `[${section}]\n${Object.entries(values).map(([k, v]) => `${k} = ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`).join('\n')}\n`)
    .join('\n');
}

interface Stack {
  s3: S3TestServer;
  proxy: FaultProxy;
}

/** A fresh s3rver (one bucket) and a fault proxy in front of it, both stopped after the test. */
async function startStack(): Promise<Stack> {
  const s3 = await startS3Server({ bucket: BUCKET });
  cleanups.push(() => s3.stop());
  const proxy = await startFaultProxy(s3.port);
  cleanups.push(() => proxy.stop());
  return { s3, proxy };
}

/** `akidb serve` on `dataDir` with the stack's bucket (through the proxy) and BASE merged with `over`; SIGKILLed after the test if still running. */
async function startNode(stack: Stack, dataDir: string, over: Toml = {}): Promise<ServerProcess> {
  const configFile = path.join(newDir('config'), 'config.toml');
  fs.writeFileSync(configFile, toToml(over));
  const server = await startServerProcess({
    dataDir,
    args: ['--config', configFile],
    env: {
      AKIDB_S3_BUCKET: BUCKET,
      AKIDB_S3_ENDPOINT: stack.proxy.endpoint,
      AKIDB_S3_ACCESS_KEY: stack.s3.credentials.accessKeyId,
      AKIDB_S3_SECRET_KEY: stack.s3.credentials.secretAccessKey,
      AKIDB_TIERING_POLICY: 'MemoryS3',
    },
  });
  cleanups.push(() => server.stop('SIGKILL'));
  return server;
}

// ------------------------------------------------------------------ helpers

/** Poll `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws with the last value seen). */
async function waitFor<T>(what: string, fn: () => Promise<T | false | null | undefined> | T | false | null | undefined, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    // An assertion failing inside `fn` fails the test at once: it is not a condition to wait out.
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(v)}`);
    await sleep(everyMs);
  }
}

interface WireDoc {
  doc_id: string;
  vector: number[];
  metadata: Record<string, unknown>;
}

/** Integer-valued (float32-exact) vectors, distinct by their first component: each is its own unique l2 nearest neighbour. */
function makeDoc(prefix: string, i: number, dim: number): WireDoc {
  return { doc_id: `${prefix}-${i}`, vector: Array.from({ length: dim }, (_, j) => (j === 0 ? i + 1 : ((i * (j + 3)) % 17) - 8)), metadata: { i, prefix } };
}
const makeDocs = (prefix: string, n: number, dim: number, from = 0): WireDoc[] => Array.from({ length: n }, (_, k) => makeDoc(prefix, from + k, dim));

/** `/api/v1` for the default tenant and database, else the scoped prefix. */
const scope = (tenant?: string, database?: string): string => (tenant ? `/api/v1/tenants/${tenant}/databases/${database}` : '/api/v1');

async function createCollection(s: ServerProcess, name: string, dimension: number, tieringPolicy: string, base = scope()): Promise<string> {
  const res = await http(s.restUrl, 'POST', `${base}/collections`, { name, dimension, metric: 'l2', tiering_policy: tieringPolicy });
  expect(res.status, res.text).toBe(201);
  expect(res.body).toMatchObject({ name, dimension, tiering_policy: tieringPolicy });
  return (res.body as { collection_id: string }).collection_id;
}

async function upsert(s: ServerProcess, name: string, docs: WireDoc[], base = scope()): Promise<void> {
  const res = await http(s.restUrl, 'POST', `${base}/collections/${name}/upsert`, { documents: docs });
  expect(res.status, res.text).toBe(200);
  expect(res.body).toMatchObject({ upserted: docs.length });
}

async function documentCount(s: ServerProcess, name: string, base = scope()): Promise<number> {
  const res = await http(s.restUrl, 'GET', `${base}/collections/${name}`);
  expect(res.status, res.text).toBe(200);
  return (res.body as { document_count: number }).document_count;
}

interface ObjectStoreTier {
  upload_lag_ms: number;
  objects_stored: number;
  pending_objects: number;
  dlq_entries: number;
  stored_manifest_version: number;
  reconciled: boolean;
}

async function tier(s: ServerProcess, name: string, base = scope()): Promise<ObjectStoreTier> {
  const res = await http(s.restUrl, 'GET', `${base}/collections/${name}/tier`);
  expect(res.status, res.text).toBe(200);
  const os = (res.body as { tiers: { object_store: ObjectStoreTier | null } }).tiers.object_store;
  expect(os).not.toBeNull();
  return os!;
}

/**
 * Wait until a collection's replica holds everything written: upload lag 0 and nothing pending,
 * observed once at least three sync ticks after `lastWriteAt` (a write no sync has seen yet does
 * not count in the lag, so lag 0 alone right after a write proves nothing).
 */
async function waitDrained(s: ServerProcess, name: string, lastWriteAt: number, base = scope(), timeoutMs = 20_000): Promise<ObjectStoreTier> {
  return waitFor(`${name} to drain to the object store`, async () => {
    if (Date.now() - lastWriteAt < 300) return false;
    const t = await tier(s, name, base);
    return t.reconciled && t.upload_lag_ms === 0 && t.pending_objects === 0 ? t : false;
  }, timeoutMs);
}

/** Every doc of `docs` reads back exactly; those at `nearest` indexes are also their own vector's nearest neighbour. */
async function expectDocs(s: ServerProcess, name: string, docs: WireDoc[], base = scope(), nearest: number[] = []): Promise<void> {
  for (const d of docs) {
    const got = await http(s.restUrl, 'GET', `${base}/collections/${name}/docs/${encodeURIComponent(d.doc_id)}`);
    expect(got.status, `${name}/${d.doc_id}: ${got.text}`).toBe(200);
    expect(got.body).toMatchObject({ doc_id: d.doc_id, vector: d.vector, metadata: d.metadata });
  }
  for (const i of nearest) {
    const d = docs[i]!;
    const q = await http(s.restUrl, 'POST', `${base}/collections/${name}/query`, { query_vector: d.vector, top_k: 3 });
    expect(q.status, q.text).toBe(200);
    const [best] = (q.body as { matches: { doc_id: string; distance: number }[] }).matches;
    expect(best, `query for ${d.doc_id}`).toMatchObject({ doc_id: d.doc_id });
    expect(best!.distance).toBeLessThan(1e-6);
  }
}

async function expectAbsent(s: ServerProcess, name: string, ids: string[], base = scope()): Promise<void> {
  for (const id of ids) {
    const got = await http(s.restUrl, 'GET', `${base}/collections/${name}/docs/${encodeURIComponent(id)}`);
    expect(got.status, `${name}/${id} should be absent: ${got.text}`).toBe(404);
  }
}

/** Sum of the samples of `name` whose labels include `labels`, in Prometheus text. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = new Map<string, string>();
    for (const x of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got.set(x[1]!, x[2]!);
    if (Object.entries(labels).every(([k, v]) => got.get(k) === v)) sum += Number(m[3]);
  }
  return sum;
}

async function metricsText(s: ServerProcess, base = s.restUrl): Promise<string> {
  const res = await http(base, 'GET', '/admin/metrics');
  expect(res.status).toBe(200);
  return res.text;
}

interface DlqView {
  collection_id: string;
  size: number;
  entries: { id: string; key: string; error: { message: string; status?: number; kind: string }; attempts: number }[];
}

/** The DLQ view with its default limit (100 entries; the tests hold fewer). */
async function dlq(s: ServerProcess, id: string): Promise<DlqView> {
  const res = await http(s.restUrl, 'GET', `/admin/collections/${id}/dlq`);
  expect(res.status, res.text).toBe(200);
  return res.body as DlqView;
}

async function breaker(s: ServerProcess): Promise<{ state: string; state_code: number; error_rate: number; retry_after_ms: number }> {
  const res = await http(s.restUrl, 'GET', '/admin/circuit-breaker');
  expect(res.status, res.text).toBe(200);
  return res.body as { state: string; state_code: number; error_rate: number; retry_after_ms: number };
}

/** SIGKILL `s`, then start a new node on an empty data dir against the same bucket: disaster recovery. */
async function killAndRecover(stack: Stack, s: ServerProcess, over: Toml = {}): Promise<ServerProcess> {
  expect(await s.stop('SIGKILL')).toBe('SIGKILL');
  stack.proxy.pass();
  return startNode(stack, newDir('dr'), over);
}

// ------------------------------------------------------------------ tests

describe('transient failures are retried (MemoryS3)', () => {
  it(
    'test_e2e_s3_retry_recovery: a 503 storm during 500 writes is retried and recovers; nothing is lost, DLQ empty, a new node restores every document',
    async () => {
      const stack = await startStack();
      // Retries outlast the storm (20 retries of >= 25..100 ms each), so nothing can be dead-lettered.
      const over: Toml = { 'storage.retry': { max_retries: 20 } };
      const server = await startNode(stack, newDir('data'), over);
      const id = await createCollection(server, 'storm', 8, 'MemoryS3');
      await upsert(server, 'storm', makeDocs('storm', 20, 8));
      await waitDrained(server, 'storm', Date.now());

      stack.proxy.resetCounters();
      stack.proxy.failAll(503);
      const docs = makeDocs('storm', 500, 8, 20);
      let lastWrite = Date.now();
      for (let i = 0; i < docs.length; i += 25) {
        await upsert(server, 'storm', docs.slice(i, i + 25));
        lastWrite = Date.now();
        await sleep(50);
      }
      // The storm really hit uploads (not just the odd request) before it ends.
      await waitFor('uploads to be refused by the storm', () => stack.proxy.injected >= 5);
      const during = await tier(server, 'storm');
      expect(during.pending_objects).toBeGreaterThan(0);
      stack.proxy.pass();

      const drained = await waitDrained(server, 'storm', lastWrite);
      expect(drained.dlq_entries).toBe(0);
      expect(await documentCount(server, 'storm')).toBe(520);
      const text = await metricsText(server);
      expect(metric(text, 'storage_s3_retries', { collection_id: id })).toBeGreaterThan(0);
      expect(metric(text, 'storage_s3_permanent_failures', { collection_id: id })).toBe(0);
      expect(metric(text, 'storage_s3_uploads', { collection_id: id })).toBeGreaterThan(0);
      expect(metric(text, 'storage_inserts', { collection_id: id })).toBe(520);
      expect((await dlq(server, 'storm')).size).toBe(0);

      const dr = await killAndRecover(stack, server, over);
      const all = [...makeDocs('storm', 20, 8), ...docs];
      const desc = await http(dr.restUrl, 'GET', '/api/v1/collections/storm');
      expect(desc.body).toMatchObject({ collection_id: id, tiering_policy: 'MemoryS3', dimension: 8, document_count: 520 });
      const sample = [0, 1, 19, 20, 21, 137, 250, 333, 400, 499, 518, 519].map((i) => all[i]!);
      await expectDocs(dr, 'storm', sample, scope(), sample.map((_, i) => i));
    },
    TEST_TIMEOUT,
  );
});

describe('permanent failures go to the dead-letter queue', () => {
  it(
    'test_e2e_dlq_permanent_failure: 403 dead-letters uploads (status 403, kind permanent, metrics); after the key is back, dlq/retry ships them and a new node restores every document',
    async () => {
      const stack = await startStack();
      // A quick idle flush, so segments and a manifest are dead-lettered too, not only WAL chunks.
      const over: Toml = { 'storage.compaction': { idle_flush_ms: 200 } };
      const server = await startNode(stack, newDir('data'), over);
      const id = await createCollection(server, 'denied', 8, 'MemoryS3');
      const first = makeDocs('denied', 10, 8);
      await upsert(server, 'denied', first);
      await waitDrained(server, 'denied', Date.now());

      stack.proxy.failAll(403);
      const docs = makeDocs('denied', 100, 8, 10);
      for (let i = 0; i < docs.length; i += 20) {
        await upsert(server, 'denied', docs.slice(i, i + 20));
        await sleep(120);
      }
      // Settled: the memtable flushed to a segment whose upload was refused too, and every upload
      // still pending is in the DLQ (none left in the worker); and it stays so for 750 ms, since
      // background work (a merge after the idle flush) may still queue another upload.
      let seen = -1;
      const settled = await waitFor('every pending upload, the flushed segment included, to be dead-lettered', async () => {
        const d = await http(server.restUrl, 'GET', '/api/v1/collections/denied');
        const t = await tier(server, 'denied');
        const q = await dlq(server, 'denied');
        const memtable = (d.body as { indexing: { memtable_documents: number } }).indexing.memtable_documents;
        const segment = q.entries.some((e) => e.key.includes('/segments/'));
        if (!(memtable === 0 && segment && q.size === t.pending_objects && t.dlq_entries === q.size)) return false;
        if (q.size !== seen) {
          seen = q.size;
          await sleep(750);
          return false;
        }
        return { t, q };
      });
      expect(settled.q.collection_id).toBe(id);
      expect(settled.t.upload_lag_ms).toBeGreaterThan(0);
      for (const e of settled.q.entries) {
        expect(e.error).toMatchObject({ status: 403, kind: 'permanent' });
        expect(e.attempts).toBe(1);
        expect(e.key.startsWith(`collections/${id}/`)).toBe(true);
      }
      expect(settled.q.entries.some((e) => e.key.includes('/wal/'))).toBe(true);
      // By collection_id too.
      expect((await dlq(server, id)).size).toBe(settled.q.size);
      const text = await metricsText(server);
      expect(metric(text, 'storage_s3_permanent_failures', { collection_id: id })).toBe(settled.q.size);
      expect(metric(text, 'storage_s3_retries', { collection_id: id })).toBe(0);
      expect(metric(text, 'dlq_size', { collection_id: id })).toBe(settled.q.size);
      expect(metric(text, 'storage_dlq_size', { collection_id: id })).toBe(settled.q.size);
      // Permanent failures mean the store answered: they must not open the circuit.
      expect((await breaker(server)).state).toBe('closed');

      stack.proxy.pass();
      const retry = await http(server.restUrl, 'POST', '/admin/collections/denied/dlq/retry');
      expect(retry.status, retry.text).toBe(200);
      // Every entry in the DLQ now: those above, and any background work added since.
      const { retried, requeued } = retry.body as { retried: number; requeued: number };
      expect(retry.body).toMatchObject({ collection_id: id });
      expect(retried).toBeGreaterThanOrEqual(settled.q.size);
      expect(requeued).toBe(retried);
      const after = await waitDrained(server, 'denied', 0);
      expect(after.dlq_entries).toBe(0);
      expect(after.stored_manifest_version).toBeGreaterThan(0);
      expect((await dlq(server, 'denied')).size).toBe(0);
      expect(metric(await metricsText(server), 'dlq_size', { collection_id: id })).toBe(0);

      const dr = await killAndRecover(stack, server, over);
      expect(await documentCount(dr, 'denied')).toBe(110);
      const all = [...first, ...docs];
      await expectDocs(dr, 'denied', all, scope(), [0, 9, 10, 55, 109]);
    },
    TEST_TIMEOUT,
  );
});

describe('circuit breaker', () => {
  it(
    'test_circuit_breaker_opens / test_circuit_breaker_half_open / test_circuit_breaker_closes: an outage opens the circuit within its window, no calls while open, half-open probes close it, the backlog drains and a new node has every document',
    async () => {
      const stack = await startStack();
      const COOLDOWN_S = 2;
      const WINDOW_S = 5;
      const MAX_CONCURRENCY = 5;
      const over: Toml = { 'storage.circuit_breaker': { cooldown_seconds: COOLDOWN_S, window_seconds: WINDOW_S } };
      const server = await startNode(stack, newDir('data'), over);
      const id = await createCollection(server, 'cb', 8, 'MemoryS3');
      await upsert(server, 'cb', makeDocs('cb', 10, 8));
      await waitDrained(server, 'cb', Date.now());
      expect(await breaker(server)).toMatchObject({ state: 'closed', state_code: 0 });

      // Write continuously (MemoryS3 acknowledges locally) while the store resets every connection.
      const written: WireDoc[] = makeDocs('cb', 10, 8);
      let writing = true;
      let writeError: unknown = null;
      let lastWrite = Date.now();
      const writer = (async () => {
        let next = 10;
        while (writing) {
          const batch = makeDocs('cb', 10, 8, next);
          next += 10;
          const res = await http(server.restUrl, 'POST', '/api/v1/collections/cb/upsert', { documents: batch });
          if (res.status !== 200) writeError = res.text;
          else written.push(...batch);
          lastWrite = Date.now();
          await sleep(40);
        }
      })();
      try {
        const outageAt = Date.now();
        stack.proxy.resetAll();
        const opened = await waitFor('the circuit to open', async () => ((await breaker(server)).state === 'open' ? Date.now() : false), (WINDOW_S + 5) * 1000, 20);
        // test_circuit_breaker_opens: within the window (plus slack for the first failed calls to happen).
        expect(opened - outageAt).toBeLessThan(WINDOW_S * 1000 + 1000);
        const b = await breaker(server);
        expect(b).toMatchObject({ state: 'open', state_code: 1 });
        expect(b.error_rate).toBeGreaterThan(0.5);

        // While open, the worker makes no call. Without the breaker each pending upload would be
        // retried at least every max_backoff (0.2 s), i.e. >= pending x 5 requests a second;
        // with it, at most the calls admitted just before the transition (<= max_concurrency) may
        // still reach the proxy after the counters are zeroed.
        stack.proxy.resetCounters();
        const measureMs = Math.max(500, b.retry_after_ms - 400);
        await sleep(measureMs); // a measurement window, not a wait for a condition
        const requestsWhileOpen = stack.proxy.requests;
        const still = await breaker(server);
        expect(still.state).toBe('open');
        const pending = (await tier(server, 'cb')).pending_objects;
        expect(pending).toBeGreaterThan(0);
        expect(requestsWhileOpen).toBeLessThanOrEqual(MAX_CONCURRENCY);
        expect(requestsWhileOpen).toBeLessThan(pending * (measureMs / 200));
      } finally {
        writing = false;
        await writer;
      }
      expect(writeError).toBeNull();

      stack.proxy.pass();
      // test_circuit_breaker_half_open / _closes: after the cooldown probes go through, and
      // half_open_successes (3) successes close it. One probe at a time: half-open lasts >= ~0.2 s.
      const seen: string[] = [];
      await waitFor('the circuit to close', async () => {
        const st = (await breaker(server)).state;
        if (seen.at(-1) !== st) seen.push(st);
        return st === 'closed';
      }, 15_000, 15);
      expect(seen).toContain('half-open');
      expect(seen.indexOf('half-open')).toBeLessThan(seen.lastIndexOf('closed'));
      const text = await metricsText(server);
      expect(metric(text, 'circuit_breaker_transitions', { from_state: 'closed', to_state: 'open' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'circuit_breaker_transitions', { from_state: 'open', to_state: 'half-open' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'circuit_breaker_transitions', { from_state: 'half-open', to_state: 'closed' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'circuit_breaker_state')).toBe(0);

      const drained = await waitDrained(server, 'cb', lastWrite);
      expect(drained.dlq_entries).toBe(0);
      expect(metric(await metricsText(server), 'storage_s3_permanent_failures', { collection_id: id })).toBe(0);
      expect(await documentCount(server, 'cb')).toBe(written.length);

      const dr = await killAndRecover(stack, server, over);
      expect(await documentCount(dr, 'cb')).toBe(written.length);
      await expectDocs(dr, 'cb', written, scope(), [0, Math.floor(written.length / 2), written.length - 1]);
    },
    TEST_TIMEOUT,
  );
});

describe('dead-letter queue bounds and durability', () => {
  it(
    'a full DLQ evicts its oldest entries first: with max_size 5, the 5 newest refused uploads stay and the rest are counted in dlq_evictions',
    async () => {
      // The 2,000 / 1,000 case is in dlq-eviction.test.ts (real DeadLetterQueue + UploadWorker);
      // here the same FIFO rule through the server: one WAL file, uploads one at a time, so
      // the refusal order is the offset order.
      const stack = await startStack();
      const dataDir = newDir('data');
      const server = await startNode(stack, dataDir, {
        storage: { s3_sync_interval_ms: 20, enable_background_compaction: false },
        'storage.dlq': { max_size: 5 },
        'storage.s3_upload': { max_concurrency: 1 },
      });
      const id = await createCollection(server, 'evict', 4, 'MemoryS3');
      await upsert(server, 'evict', makeDocs('evict', 1, 4));
      await waitDrained(server, 'evict', Date.now());

      stack.proxy.failAll(403);
      for (let i = 1; i <= 20; i++) {
        await upsert(server, 'evict', [makeDoc('evict', i, 4)]);
        await sleep(45);
      }
      const settled = await waitFor('every pending upload to be dead-lettered or evicted', async () => {
        const t = await tier(server, 'evict');
        const text = await metricsText(server);
        const failed = metric(text, 'storage_s3_permanent_failures', { collection_id: id });
        return failed > 5 && failed === t.pending_objects ? { failed, text } : false;
      });
      const q = await dlq(server, 'evict');
      expect(q.size).toBe(5);
      expect(metric(settled.text, 'dlq_evictions', { collection_id: id })).toBe(settled.failed - 5);
      expect(metric(settled.text, 'dlq_size', { collection_id: id })).toBe(5);
      // The 5 kept are the newest: consecutive chunks of the one WAL file, the last one ending at its end.
      const chunks = q.entries.map((e) => {
        const m = /\/wal\/(wal-\d+\.log)\/(\d{20})-(\d{20})$/.exec(e.key);
        expect(m, e.key).not.toBeNull();
        return { file: m![1]!, start: Number(m![2]), end: Number(m![3]) };
      });
      expect(new Set(chunks.map((c) => c.file)).size).toBe(1);
      for (let i = 1; i < chunks.length; i++) expect(chunks[i]!.start).toBe(chunks[i - 1]!.end);
      const walFile = path.join(dataDir, 'collections', id, 'wal', chunks[0]!.file);
      expect(chunks.at(-1)!.end).toBe(fs.statSync(walFile).size);

      // `?limit=N` pages the list (oldest first) and `size` still counts them all. Last on purpose:
      // the route declares limit an integer while query values are strings and the server's
      // validator does not coerce types, so any limit is refused with 400 (see the report).
      const limited = await http(server.restUrl, 'GET', '/admin/collections/evict/dlq?limit=2');
      expect(limited.status, limited.text).toBe(200);
      expect(limited.body).toMatchObject({ collection_id: id, size: 5, entries: q.entries.slice(0, 2) });
    },
    TEST_TIMEOUT,
  );

  it(
    'DLQ entries survive SIGKILL: once flushed to dlq.json, a restart on the same data dir lists the same entries',
    async () => {
      const stack = await startStack();
      const dataDir = newDir('data');
      // No background flush: the set of refused uploads stays put once the writes stop.
      const over: Toml = { storage: { enable_background_compaction: false } };
      const server = await startNode(stack, dataDir, over);
      const id = await createCollection(server, 'durable', 4, 'MemoryS3');
      await upsert(server, 'durable', makeDocs('durable', 5, 4));
      await waitDrained(server, 'durable', Date.now());

      stack.proxy.failAll(403);
      for (let i = 0; i < 3; i++) {
        await upsert(server, 'durable', makeDocs('durable', 5, 4, 5 + i * 5));
        await sleep(150);
      }
      const before = await waitFor('the DLQ to hold every pending upload', async () => {
        const t = await tier(server, 'durable');
        const q = await dlq(server, 'durable');
        return q.size >= 3 && q.size === t.pending_objects ? q : false;
      });
      // flush_interval_seconds = 0.2: wait until the file holds exactly these entries.
      const file = path.join(dataDir, 'dlq.json');
      await waitFor('dlq.json to hold the entries', () => {
        if (!fs.existsSync(file)) return false;
        const onDisk = JSON.parse(fs.readFileSync(file, 'utf8')) as { entries: { id: string }[] };
        return JSON.stringify(onDisk.entries.map((e) => e.id).sort()) === JSON.stringify(before.entries.map((e) => e.id).sort());
      });

      expect(await server.stop('SIGKILL')).toBe('SIGKILL');
      stack.proxy.pass();
      const restarted = await startNode(stack, dataDir, over);
      const after = await dlq(restarted, 'durable');
      expect(after.collection_id).toBe(id);
      expect(after.size).toBe(before.size);
      const view = (q: DlqView) => q.entries.map((e) => ({ id: e.id, key: e.key, error: e.error, attempts: e.attempts }));
      expect(view(after)).toEqual(view(before));
      expect(restarted.logs.some((l) => l.msg === 'Loaded the dead-letter queue' && l.loaded === before.size)).toBe(true);
      // And nothing acknowledged was lost locally either.
      expect(await documentCount(restarted, 'durable')).toBe(20);
    },
    TEST_TIMEOUT,
  );
});

describe('concurrent writers', () => {
  it(
    'eight clients writing at once to a MemoryS3 and an S3Only collection (test_e2e_parallel_uploads_concurrent): every acknowledged document is in the bucket, and a new node has them all',
    async () => {
      const stack = await startStack();
      const server = await startNode(stack, newDir('data'));
      await createCollection(server, 'par-ms3', 8, 'MemoryS3');
      await createCollection(server, 'par-s3o', 8, 'S3Only');
      const written = new Map<string, WireDoc[]>([
        ['par-ms3', []],
        ['par-s3o', []],
      ]);
      await Promise.all(
        Array.from({ length: 8 }, async (_, client) => {
          for (let round = 0; round < 10; round++) {
            for (const name of ['par-ms3', 'par-s3o']) {
              // Index ranges apart per client: vectors are distinct by their index.
              const docs = makeDocs(`${name}-c${client}`, 5, 8, client * 1000 + round * 5);
              await upsert(server, name, docs);
              written.get(name)!.push(...docs);
            }
          }
        }),
      );
      for (const [name, docs] of written) expect(await documentCount(server, name)).toBe(docs.length);
      const lastWrite = Date.now();
      await waitDrained(server, 'par-ms3', lastWrite);
      await waitDrained(server, 'par-s3o', lastWrite);
      const dr = await killAndRecover(stack, server);
      for (const [name, docs] of written) {
        expect(await documentCount(dr, name)).toBe(docs.length);
        await expectDocs(dr, name, docs, scope(), [0, docs.length - 1]);
      }
    },
    TEST_TIMEOUT,
  );
});

describe('disaster recovery', () => {
  it(
    'a new node with an empty data dir restores every MemoryS3 and S3Only collection (any tenant/database) with its id, policy, dimension and documents; Memory and dropped collections are not restored',
    async () => {
      const stack = await startStack();
      const server = await startNode(stack, newDir('data'));
      expect((await http(server.restUrl, 'POST', '/api/v1/tenants', { name: 'acme' })).status).toBe(201);
      expect((await http(server.restUrl, 'POST', '/api/v1/tenants/acme/databases', { name: 'prod' })).status).toBe(201);
      const acme = scope('acme', 'prod');
      const specs = [
        { name: 'ms3', base: scope(), policy: 'MemoryS3', dim: 8 },
        { name: 's3o', base: scope(), policy: 'S3Only', dim: 4 },
        { name: 'mem', base: scope(), policy: 'Memory', dim: 4 },
        { name: 'dropme', base: scope(), policy: 'MemoryS3', dim: 4 },
        { name: 'ms3', base: acme, policy: 'MemoryS3', dim: 6 },
        { name: 's3o-b', base: acme, policy: 'S3Only', dim: 8 },
        { name: 'mem-b', base: acme, policy: 'Memory', dim: 4 },
      ];
      const ids = new Map<string, string>();
      const docs = new Map<string, WireDoc[]>();
      let lastWrite = Date.now();
      for (const c of specs) {
        const key = `${c.base}/${c.name}`;
        ids.set(key, await createCollection(server, c.name, c.dim, c.policy, c.base));
        const all = makeDocs(c.name, 60, c.dim);
        for (let i = 0; i < all.length; i += 20) await upsert(server, c.name, all.slice(i, i + 20), c.base);
        // A replacement and deletions: the restore must replay them, not just the inserts.
        const replaced = { ...all[3]!, metadata: { ...all[3]!.metadata, replaced: true } };
        await upsert(server, c.name, [replaced], c.base);
        all[3] = replaced;
        const del = await http(server.restUrl, 'POST', `${c.base}/collections/${c.name}/delete`, { doc_ids: [all[58]!.doc_id, all[59]!.doc_id] });
        expect(del.body).toMatchObject({ deleted: 2 });
        docs.set(key, all.slice(0, 58));
        lastWrite = Date.now();
      }
      for (const c of specs) if (c.policy !== 'Memory') await waitDrained(server, c.name, lastWrite, c.base);

      // Dropped after it was fully replicated: its remote copy is deleted, so no restore brings it back.
      const droppedId = ids.get(`${scope()}/dropme`)!;
      expect((await http(server.restUrl, 'DELETE', '/api/v1/collections/dropme')).status).toBe(204);
      await waitFor('the dropped collection to be deleted from the object store', () => server.logs.some((l) => l.msg === 'Deleted the collection from the object store' && l.collectionId === droppedId));

      const dr = await killAndRecover(stack, server);
      for (const c of specs) {
        const key = `${c.base}/${c.name}`;
        const got = await http(dr.restUrl, 'GET', `${c.base}/collections/${c.name}`);
        if (c.policy === 'Memory' || c.name === 'dropme') {
          expect(got.status, `${key} must not be restored`).toBe(404);
          continue;
        }
        expect(got.status, `${key}: ${got.text}`).toBe(200);
        expect(got.body).toMatchObject({ name: c.name, collection_id: ids.get(key), tiering_policy: c.policy, dimension: c.dim, metric: 'l2', document_count: 58 });
        await expectDocs(dr, c.name, docs.get(key)!, c.base, [0, 3, 57]);
        await expectAbsent(dr, c.name, [`${c.name}-58`, `${c.name}-59`], c.base);
      }
      const listDefault = (await http(dr.restUrl, 'GET', '/api/v1/collections')).body as { collections: { name: string }[] };
      expect(listDefault.collections.map((c) => c.name).sort()).toEqual(['ms3', 's3o']);
      const listAcme = (await http(dr.restUrl, 'GET', `${acme}/collections`)).body as { collections: { name: string }[] };
      expect(listAcme.collections.map((c) => c.name).sort()).toEqual(['ms3', 's3o-b']);
      // The restored collections take writes, and stay replicated.
      await upsert(dr, 'ms3', [makeDoc('ms3', 100, 8)]);
      await upsert(dr, 's3o-b', [makeDoc('s3o-b', 100, 8)], acme);
      expect(await documentCount(dr, 's3o-b', acme)).toBe(59);
    },
    TEST_TIMEOUT,
  );
});

describe('disaster recovery after a drop during an outage', () => {
  it(
    'a MemoryS3 collection dropped while its uploads wait behind an open circuit is not restored, and its stale uploads do not hold the circuit open',
    async () => {
      const stack = await startStack();
      const COOLDOWN_S = 2;
      const over: Toml = { 'storage.circuit_breaker': { cooldown_seconds: COOLDOWN_S } };
      const server = await startNode(stack, newDir('data'), over);
      await createCollection(server, 'keep', 4, 'MemoryS3');
      const kept = makeDocs('keep', 10, 4);
      await upsert(server, 'keep', kept);
      await waitDrained(server, 'keep', Date.now());

      // Open the circuit with an outage, then end the outage at once: the store answers again,
      // but the worker makes no call until the cooldown has passed.
      stack.proxy.resetAll();
      let k = 10;
      await waitFor('the circuit to open', async () => {
        const more = makeDocs('keep', 2, 4, k);
        k += 2;
        await upsert(server, 'keep', more);
        kept.push(...more);
        return (await breaker(server)).state === 'open';
      }, 10_000, 60);
      stack.proxy.pass();
      const openedFor = Date.now();

      // Created, written and dropped while the circuit is open: its catalog record and WAL wait in the worker.
      const ghostId = await createCollection(server, 'ghost', 4, 'MemoryS3');
      await waitFor('ghost to reconcile with the (answering) store', async () => (await tier(server, 'ghost')).reconciled);
      await upsert(server, 'ghost', makeDocs('ghost', 5, 4));
      await sleep(250); // one sync tick or two, so its WAL bytes are queued as well (a window, not a condition)
      expect((await tier(server, 'ghost')).pending_objects).toBeGreaterThan(0);
      expect((await http(server.restUrl, 'DELETE', '/api/v1/collections/ghost')).status).toBe(204);
      await waitFor('ghost to be deleted from the object store', () => server.logs.some((l) => l.msg === 'Deleted the collection from the object store' && l.collectionId === ghostId));
      // The premise: all of that happened while the circuit was still open.
      expect((await breaker(server)).state).toBe('open');
      expect(Date.now() - openedFor).toBeLessThan(COOLDOWN_S * 1000);

      // After the cooldown: closed within a few probes (the dropped collection's leftovers must
      // not count as store failures), and the surviving collection drains.
      await waitFor('the circuit to close', async () => (await breaker(server)).state === 'closed', (COOLDOWN_S + 6) * 1000, 50);
      await waitDrained(server, 'keep', Date.now());
      const dr = await killAndRecover(stack, server, over);
      expect((await http(dr.restUrl, 'GET', '/api/v1/collections/ghost')).status).toBe(404);
      expect((await http(dr.restUrl, 'GET', `/api/v1/collections/${ghostId}`)).status).toBe(404);
      expect(await documentCount(dr, 'keep')).toBe(kept.length);
      await expectDocs(dr, 'keep', kept, scope(), [0, kept.length - 1]);
    },
    TEST_TIMEOUT,
  );
});

describe('S3Only during an outage', () => {
  it(
    'S3Only refuses writes it cannot store (503 STORE_UNAVAILABLE / CIRCUIT_OPEN, promptly once open) without applying them; writes succeed again after the outage, and a new node has exactly the acknowledged documents',
    async () => {
      const stack = await startStack();
      const server = await startNode(stack, newDir('data'));
      await createCollection(server, 'strict', 4, 'S3Only');
      const acked: WireDoc[] = makeDocs('strict', 10, 4);
      await upsert(server, 'strict', acked);
      await expectDocs(server, 'strict', acked.slice(0, 2));

      stack.proxy.failAll(503);
      const refused: string[] = [];
      let n = 10;
      const codes = new Set<string>();
      // Until the circuit opens: each refused write is STORE_UNAVAILABLE (deadline / retries) or CIRCUIT_OPEN.
      await waitFor('a write refused with CIRCUIT_OPEN', async () => {
        const d = makeDoc('strict', n++, 4);
        const res = await http(server.restUrl, 'POST', '/api/v1/collections/strict/upsert', { documents: [d] });
        expect(res.status, res.text).toBe(503);
        const code = (res.body as { error: { code: string } }).error.code;
        expect(['STORE_UNAVAILABLE', 'CIRCUIT_OPEN']).toContain(code);
        codes.add(code);
        refused.push(d.doc_id);
        return code === 'CIRCUIT_OPEN';
      }, 20_000, 0);
      expect((await breaker(server)).state).toBe('open');
      // Once open, refused at once: no call to the store (a correctness bound, not a benchmark).
      for (let k = 0; k < 3; k++) {
        const d = makeDoc('strict', n++, 4);
        const t0 = performance.now();
        const res = await http(server.restUrl, 'POST', '/api/v1/collections/strict/upsert', { documents: [d] });
        const ms = performance.now() - t0;
        expect(res.status).toBe(503);
        expect(res.body).toMatchObject({ error: { code: 'CIRCUIT_OPEN' } });
        expect(res.headers.get('retry-after')).not.toBeNull();
        expect(ms).toBeLessThan(1000);
        refused.push(d.doc_id);
      }
      expect(await documentCount(server, 'strict')).toBe(10);
      await expectAbsent(server, 'strict', refused);

      // The operator fixed the store and closes the circuit by hand (test_circuit_breaker_reset): the
      // next write is acknowledged at once, without waiting out the cooldown.
      stack.proxy.pass();
      const reset = await http(server.restUrl, 'POST', '/admin/circuit-breaker/reset');
      expect(reset.status, reset.text).toBe(200);
      expect(reset.body).toMatchObject({ state: 'closed', previous_state: 'open' });
      const first = makeDoc('strict', n++, 4);
      const res = await http(server.restUrl, 'POST', '/api/v1/collections/strict/upsert', { documents: [first] });
      expect(res.status, res.text).toBe(200);
      acked.push(first);
      const more = makeDocs('strict', 5, 4, n);
      n += 5;
      await waitFor('the circuit to close', async () => (await breaker(server)).state === 'closed', 10_000);
      await upsert(server, 'strict', more);
      acked.push(...more);
      expect(await documentCount(server, 'strict')).toBe(acked.length);
      await expectAbsent(server, 'strict', refused);
      await waitDrained(server, 'strict', Date.now());

      const dr = await killAndRecover(stack, server);
      expect(await documentCount(dr, 'strict')).toBe(acked.length);
      await expectDocs(dr, 'strict', acked, scope(), [0, acked.length - 1]);
      await expectAbsent(dr, 'strict', refused);
    },
    TEST_TIMEOUT,
  );
});

describe('admin API for the tier', () => {
  it(
    'runtime config (circuit-breaker, dlq, s3-upload): valid changes echo and persist across a restart, invalid ones are 400 and change nothing; with [admin] bind_address the admin routes live only on the admin port',
    async () => {
      const stack = await startStack();
      const dataDir = newDir('data');
      const over: Toml = { admin: { bind_address: '127.0.0.1:0' } };
      let server = await startNode(stack, dataDir, over);
      expect(server.adminPort).not.toBeNull();
      let admin = `http://127.0.0.1:${server.adminPort}`;

      // Separation: admin routes only on the admin port, /api/v1 only on the REST port.
      expect((await http(admin, 'GET', '/admin/health')).status).toBe(200);
      expect((await http(server.restUrl, 'GET', '/admin/health')).status).toBe(404);
      expect((await http(server.restUrl, 'GET', '/admin/config/dlq')).status).toBe(404);
      expect((await http(server.restUrl, 'POST', '/admin/config/dlq', { max_size: 7 })).status).toBe(404);
      expect((await http(admin, 'GET', '/api/v1/collections')).status).toBe(404);
      expect((await http(admin, 'POST', '/api/v1/collections', { name: 'x', dimension: 2 })).status).toBe(404);
      expect((await http(server.restUrl, 'GET', '/api/v1/collections')).status).toBe(200);

      const initial = {
        'circuit-breaker': { enabled: true, failure_threshold: 0.5, window_seconds: 5, cooldown_seconds: 1, half_open_successes: 3, minimum_requests: 5 },
        dlq: { max_size: 1000, ttl_days: 7 },
        's3-upload': { batch_size: 10, max_concurrency: 5, compression: 'none' },
      };
      for (const [section, values] of Object.entries(initial)) expect((await http(admin, 'GET', `/admin/config/${section}`)).body).toEqual(values);

      const invalid: [string, unknown][] = [
        ['circuit-breaker', { failure_threshold: 2 }],
        ['circuit-breaker', { failure_threshold: 0.7, cooldown_seconds: 0 }],
        ['circuit-breaker', { half_open_successes: 1.5 }],
        ['circuit-breaker', { enabled: 'yes' }],
        ['circuit-breaker', { failure_threshold: '0.7' }],
        ['circuit-breaker', { bogus: 1 }],
        ['circuit-breaker', {}],
        ['dlq', { max_size: 0 }],
        ['dlq', { max_size: 10, ttl_days: -1 }],
        ['dlq', { max_size: 10, extra: true }],
        ['s3-upload', { compression: 'zip' }],
        ['s3-upload', { batch_size: 50, compression: 'zip' }],
        ['s3-upload', { max_concurrency: 0 }],
        ['s3-upload', { batch_size: 1001 }],
      ];
      for (const [section, body] of invalid) {
        const res = await http(admin, 'POST', `/admin/config/${section}`, body);
        expect(res.status, `${section} ${JSON.stringify(body)}: ${res.text}`).toBe(400);
        expect((res.body as { error: { code: string } }).error.code).toMatch(/^[A-Z_]+$/);
      }
      for (const [section, values] of Object.entries(initial)) expect((await http(admin, 'GET', `/admin/config/${section}`)).body, section).toEqual(values);

      const changed = {
        'circuit-breaker': { enabled: true, failure_threshold: 0.7, window_seconds: 10, cooldown_seconds: 3, half_open_successes: 4, minimum_requests: 8 },
        dlq: { max_size: 500, ttl_days: 2 },
        's3-upload': { batch_size: 20, max_concurrency: 3, compression: 'gzip' },
      };
      // A partial change keeps the other fields; the full one then sets them all.
      const partial = await http(admin, 'POST', '/admin/config/dlq', { ttl_days: 2 });
      expect(partial.status, partial.text).toBe(200);
      expect(partial.body).toEqual({ max_size: 1000, ttl_days: 2 });
      for (const [section, values] of Object.entries(changed)) {
        const res = await http(admin, 'POST', `/admin/config/${section}`, values);
        expect(res.status, res.text).toBe(200);
        expect(res.body).toEqual(values);
        expect((await http(admin, 'GET', `/admin/config/${section}`)).body).toEqual(values);
      }

      expect(await server.stop('SIGTERM')).toBe(0);
      server = await startNode(stack, dataDir, over);
      admin = `http://127.0.0.1:${server.adminPort}`;
      for (const [section, values] of Object.entries(changed)) expect((await http(admin, 'GET', `/admin/config/${section}`)).body, section).toEqual(values);
      // In force, not only shown: uploads are now gzip-compressed.
      await createCollection(server, 'gz', 4, 'MemoryS3');
      await upsert(server, 'gz', makeDocs('gz', 20, 4));
      await waitDrained(server, 'gz', Date.now());
      const text = await metricsText(server, admin);
      expect(metric(text, 's3_upload_compressed_bytes_count')).toBeGreaterThan(0);
    },
    TEST_TIMEOUT,
  );

  it(
    'the background health check keeps health_check_status current through an outage without a caller, and logs each change once',
    async () => {
      const stack = await startStack();
      const server = await startNode(stack, newDir('data'), { 'admin.health_check': { timeout_seconds: 0.3, interval_seconds: 0.2 } });
      const checks = async (): Promise<number> => metric(await metricsText(server), 'health_check_duration_seconds_count');
      await waitFor('a background check', async () => (await checks()) >= 1);
      expect(metric(await metricsText(server), 'health_check_status')).toBe(1);

      stack.proxy.blackhole();
      await waitFor('the background check to see the outage', async () => metric(await metricsText(server), 'health_check_status') === 0, 10_000, 100);
      const seen = await checks();
      await waitFor('two more checks', async () => (await checks()) >= seen + 2, 10_000, 100);
      const warned = server.logs.filter((l) => l.msg === 'Admin health check: unhealthy');
      expect(warned, 'logged at the change only').toHaveLength(1);
      expect((warned[0] as { failed?: Record<string, string> }).failed).toEqual({ object_store: expect.stringMatching(/no answer within 300 ms/) as unknown });

      stack.proxy.pass();
      await waitFor('the background check to see the store again', async () => metric(await metricsText(server), 'health_check_status') === 1, 10_000, 100);
      expect(server.logs.filter((l) => l.msg === 'Admin health check: healthy again')).toHaveLength(1);
      // Nobody called GET /admin/health (the label as the scrapes themselves are counted).
      const text = await metricsText(server);
      expect(metric(text, 'akidb_requests_total', { endpoint: '/admin/metrics' })).toBeGreaterThan(0);
      expect(metric(text, 'akidb_requests_total', { endpoint: '/admin/health' })).toBe(0);
    },
    TEST_TIMEOUT,
  );

  it(
    '/admin/health reports the object store unhealthy (503) while it does not answer, and healthy again after',
    async () => {
      const stack = await startStack();
      const server = await startNode(stack, newDir('data'), { 'admin.health_check': { timeout_seconds: 0.5 } });
      const ok = await http(server.restUrl, 'GET', '/admin/health');
      expect(ok.status, ok.text).toBe(200);
      expect(ok.body).toMatchObject({ status: 'healthy', checks: { database: { status: 'healthy' }, object_store: { status: 'healthy' }, memory: { status: 'healthy' } } });

      stack.proxy.blackhole();
      const t0 = performance.now();
      const bad = await http(server.restUrl, 'GET', '/admin/health');
      const ms = performance.now() - t0;
      expect(bad.status, bad.text).toBe(503);
      expect(bad.body).toMatchObject({ status: 'unhealthy', checks: { database: { status: 'healthy' }, object_store: { status: 'unhealthy' } } });
      // Bounded by the 0.5 s check timeout, not by the 2 s request timeout.
      expect(ms).toBeLessThan(1900);
      expect(metric(await metricsText(server), 'health_check_status')).toBe(0);

      stack.proxy.pass();
      const back = await waitFor('the health check to pass again', async () => {
        const r = await http(server.restUrl, 'GET', '/admin/health');
        return r.status === 200 ? r : false;
      }, 10_000, 100);
      expect(back.body).toMatchObject({ status: 'healthy', checks: { object_store: { status: 'healthy' } } });
      expect(metric(await metricsText(server), 'health_check_status')).toBe(1);
    },
    TEST_TIMEOUT,
  );
});
