import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { ServiceRunner, type ServiceLogger } from '../services/service.js';
import { seededRandom } from '../util/seeded-random.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { DeadLetterQueue, DlqFlushService, type DeadLetterQueueOptions, type DlqEntry, type DlqEntryInput } from './dead-letter-queue.js';

interface Payload {
  segment: string;
  n: number;
}

const DAY = 86_400_000;
const tempDir = useTempDirs('akidb-dlq-');

function recordingLogger(): ServiceLogger & { lines: Array<{ level: string; msg: string; obj: object }> } {
  const lines: Array<{ level: string; msg: string; obj: object }> = [];
  return {
    lines,
    info: (obj, msg) => void lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => void lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => void lines.push({ level: 'error', msg, obj }),
  };
}

function failure(n: number, collectionId = 'c1'): DlqEntryInput<Payload> {
  return { collectionId, key: `segments/${n}.seg`, payload: { segment: `segments/${n}.seg`, n }, error: { message: 'Access Denied', status: 403, kind: 'permanent' } };
}

function makeQueue(options: DeadLetterQueueOptions<Payload> = {}): { q: DeadLetterQueue<Payload>; clock: { t: number }; logger: ReturnType<typeof recordingLogger>; file: string } {
  // Real time, so that queues on the default clock (fresh loads) do not see these entries as expired.
  const clock = { t: Date.now() };
  const logger = recordingLogger();
  const file = path.join(tempDir(), 'dlq.json');
  const q = new DeadLetterQueue<Payload>({ persistencePath: file, now: () => clock.t, logger, ...options });
  return { q, clock, logger, file };
}

const keys = (entries: ReadonlyArray<DlqEntry<Payload>>): string[] => entries.map((e) => e.key);

describe('DeadLetterQueue: bounds and management (US-702, US-704)', () => {
  it('test_dlq_size_limit_eviction: 2,000 permanent failures leave the 1,000 newest, 1,000 evictions counted', () => {
    const { q, logger } = makeQueue();
    for (let n = 0; n < 2000; n++) q.add(failure(n, n % 2 === 0 ? 'even' : 'odd'));
    expect(q.size).toBe(1000);
    expect(q.evictions).toBe(1000);
    expect(keys(q.list())).toEqual(Array.from({ length: 1000 }, (_, i) => `segments/${1000 + i}.seg`));
    expect(q.stats()).toMatchObject({ size: 1000, evictions: 1000, collections: { even: { size: 500, evictions: 500 }, odd: { size: 500, evictions: 500 } } });
    // Seed 004 US-702: each eviction is logged as a warning naming what was dropped.
    const warnings = logger.lines.filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1000);
    expect(warnings[0]).toMatchObject({ msg: 'DLQ full: oldest entry evicted', obj: { key: 'segments/0.seg', collectionId: 'even' } });
  });

  it('honours a smaller maxSize and counts evictions per collection', () => {
    const { q } = makeQueue({ maxSize: 3 });
    for (let n = 0; n < 5; n++) q.add(failure(n, `c${n}`));
    expect(keys(q.list())).toEqual(['segments/2.seg', 'segments/3.seg', 'segments/4.seg']);
    expect(q.stats().collections).toEqual({ c0: { size: 0, evictions: 1, expirations: 0 }, c1: { size: 0, evictions: 1, expirations: 0 }, c2: { size: 1, evictions: 0, expirations: 0 }, c3: { size: 1, evictions: 0, expirations: 0 }, c4: { size: 1, evictions: 0, expirations: 0 } });
  });

  it('keeps one entry per (collection, key): a repeat failure sums attempts, keeps id and first failure, moves to newest', () => {
    const { q, clock } = makeQueue();
    const first = q.add({ ...failure(1), attempts: 5 });
    q.add(failure(2));
    clock.t += 60_000;
    const again = q.add({ ...failure(1), attempts: 1, error: { message: 'Not Found', status: 404, kind: 'permanent' } });
    expect(again).toMatchObject({ id: first.id, attempts: 6, firstFailedAt: first.firstFailedAt, lastFailedAt: first.firstFailedAt + 60_000, error: { status: 404 } });
    expect(q.size).toBe(2);
    expect(keys(q.list())).toEqual(['segments/2.seg', 'segments/1.seg']);
    // The same key in another collection is another entry.
    q.add(failure(1, 'c2'));
    expect(q.size).toBe(3);
  });

  it('lists, removes, clears and takes by collection; hands out copies', () => {
    const { q } = makeQueue();
    for (let n = 0; n < 6; n++) q.add(failure(n, n < 4 ? 'a' : 'b'));
    expect(q.sizeOf('a')).toBe(4);
    expect(q.sizeOf('b')).toBe(2);
    expect(q.sizeOf('none')).toBe(0);
    expect(keys(q.list('b'))).toEqual(['segments/4.seg', 'segments/5.seg']);

    const listed = q.list('a');
    listed[0]!.payload.n = 999;
    expect(q.get(listed[0]!.id)?.payload.n).toBe(0);

    expect(q.remove([listed[1]!.id, 'no-such-id'])).toBe(1);
    expect(keys(q.list('a'))).toEqual(['segments/0.seg', 'segments/2.seg', 'segments/3.seg']);

    const taken = q.take('a', 2);
    expect(keys(taken)).toEqual(['segments/0.seg', 'segments/2.seg']);
    expect(q.sizeOf('a')).toBe(1);

    // A retry that fails again goes back with its history.
    const back = q.add({ ...taken[0]!, attempts: taken[0]!.attempts + 1 });
    expect(back).toMatchObject({ id: taken[0]!.id, attempts: 2, firstFailedAt: taken[0]!.firstFailedAt });

    expect(q.clear('b')).toBe(2);
    expect(q.sizeOf('b')).toBe(0);
    expect(q.size).toBe(2);
    expect(q.clear()).toBe(2);
    expect(q.size).toBe(0);
    expect(q.take()).toEqual([]);
  });

  it('test_dlq_ttl_expiration: entries whose last failure is 7 days old expire, counted per collection', () => {
    const { q, clock, logger } = makeQueue();
    const t0 = clock.t;
    q.add(failure(0, 'a'));
    clock.t += 3 * DAY;
    q.add(failure(1, 'b'));
    clock.t = t0 + 7 * DAY - 1;
    expect(q.expire()).toBe(0);
    clock.t = t0 + 7 * DAY;
    expect(q.expire()).toBe(1);
    expect(keys(q.list())).toEqual(['segments/1.seg']);
    // An explicit time works too, whatever the queue's clock says.
    expect(q.expire(t0 + 10 * DAY)).toBe(1);
    expect(q.size).toBe(0);
    expect(q.expirations).toBe(2);
    expect(q.stats().collections).toMatchObject({ a: { expirations: 1 }, b: { expirations: 1 } });
    expect(logger.lines.filter((l) => l.msg === 'DLQ entries expired')).toHaveLength(2);
  });

  it('measures TTL from the latest failure: a re-failed entry lives on', () => {
    const { q, clock } = makeQueue({ ttlDays: 1 });
    q.add(failure(0));
    clock.t += DAY - 1;
    q.add(failure(0));
    clock.t += DAY - 1;
    expect(q.expire()).toBe(0);
    clock.t += 1;
    expect(q.expire()).toBe(1);
  });

  it('rejects nonsense options with every problem listed', () => {
    let caught: unknown;
    try {
      new DeadLetterQueue({ maxSize: 0, ttlDays: -1 });
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'INVALID_ARGUMENT', details: { problems: [expect.stringContaining('maxSize'), expect.stringContaining('ttlDays'), expect.stringContaining('persistencePath')] } });
  });
});

describe('DeadLetterQueue: persistence (US-703)', () => {
  it('test_dlq_persistence_flush / _load: a flush and a fresh load give back the same queue', async () => {
    const { q, file, clock } = makeQueue();
    for (let n = 0; n < 50; n++) {
      q.add(failure(n, `c${n % 4}`));
      clock.t += 1000;
    }
    q.add({ ...failure(7, 'c3'), attempts: 2 });
    expect(q.size).toBe(50);
    expect(q.list().at(-1)).toMatchObject({ key: 'segments/7.seg', attempts: 3 });
    expect(q.dirty).toBe(true);
    await expect(q.flush()).resolves.toBe(true);
    expect(q.flushes).toBe(1);
    expect(q.dirty).toBe(false);
    // Clean: no write, no count.
    const mtime = fs.statSync(file).mtimeMs;
    await expect(q.flush()).resolves.toBe(false);
    expect(q.flushes).toBe(1);
    expect(fs.statSync(file).mtimeMs).toBe(mtime);

    const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { version: number; entries: unknown[] };
    expect(doc.version).toBe(1);
    expect(doc.entries).toHaveLength(50);

    const fresh = new DeadLetterQueue<Payload>({ persistencePath: file, now: () => clock.t });
    await expect(fresh.load()).resolves.toEqual({ loaded: 50, invalid: 0, removedTempFiles: 0 });
    expect(fresh.list()).toEqual(q.list());
    expect(fresh.sizeOf('c3')).toBe(q.sizeOf('c3'));
    // What was just loaded is what is on disk.
    expect(fresh.dirty).toBe(false);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['dlq.json']);
  });

  it('creates the directory of persistencePath, and loads nothing when there is no file', async () => {
    const file = path.join(tempDir(), 'var', 'lib', 'akidb', 'dlq.json');
    const q = new DeadLetterQueue<Payload>({ persistencePath: file });
    await expect(q.load()).resolves.toEqual({ loaded: 0, invalid: 0, removedTempFiles: 0 });
    q.add(failure(1));
    await q.flush();
    expect(fs.existsSync(file)).toBe(true);
  });

  it('appends loaded entries before those added since start; the newer entry wins a shared key; TTL and maxSize apply', async () => {
    const { q, file, clock } = makeQueue();
    for (let n = 0; n < 5; n++) q.add(failure(n));
    await q.flush();

    clock.t += 8 * DAY;
    const logger = recordingLogger();
    const next = new DeadLetterQueue<Payload>({ persistencePath: file, now: () => clock.t, maxSize: 4, ttlDays: 30, logger });
    next.add(failure(100));
    next.add({ ...failure(3), attempts: 1 });
    const res = await next.load();
    expect(res.loaded).toBe(4);
    expect(keys(next.list())).toEqual(['segments/2.seg', 'segments/4.seg', 'segments/100.seg', 'segments/3.seg']);
    expect(next.evictions).toBe(2);
    expect(next.dirty).toBe(true);

    const expiring = new DeadLetterQueue<Payload>({ persistencePath: file, now: () => clock.t });
    await expiring.load();
    expect(expiring.size).toBe(0);
    expect(expiring.expirations).toBe(5);
    expect(expiring.dirty).toBe(true);
  });

  it('moves a truncated file aside and starts empty, at every cut point, never throwing', async () => {
    const { q, file } = makeQueue();
    for (let n = 0; n < 2; n++) q.add(failure(n));
    await q.flush();
    const good = fs.readFileSync(file);
    const base = Date.now();
    for (let cut = 0; cut < good.length; cut++) {
      fs.writeFileSync(file, good.subarray(0, cut));
      const logger = recordingLogger();
      const fresh = new DeadLetterQueue<Payload>({ persistencePath: file, logger, now: () => base + cut });
      const res = await fresh.load();
      expect(res.loaded, `cut at ${cut}`).toBe(0);
      expect(res.corruptPath, `cut at ${cut}`).toBe(`${file}.corrupt-${base + cut}`);
      expect(fs.readFileSync(res.corruptPath!).equals(good.subarray(0, cut))).toBe(true);
      expect(fs.existsSync(file)).toBe(false);
      expect(fresh.size).toBe(0);
      expect(logger.lines.filter((l) => l.level === 'error')).toHaveLength(1);
      if (cut % 64 !== 0) continue;
      // It keeps working: the next flush writes a good file again (checked at some cuts: fsyncs are slow).
      fresh.add(failure(9));
      await fresh.flush();
      const again = new DeadLetterQueue<Payload>({ persistencePath: file });
      await again.load();
      expect(keys(again.list())).toEqual(['segments/9.seg']);
    }
    expect(fs.readdirSync(path.dirname(file)).filter((n) => n.includes('.corrupt-'))).toHaveLength(good.length);
  });

  it('moves aside garbage, wrong versions and non-objects; copies aside a file with some invalid entries and keeps the rest', async () => {
    const { q, file } = makeQueue();
    for (const body of ['\u0000\u0001garbage', 'null', '[]', '{"version":2,"entries":[]}', '{"version":1}', '{"version":1,"entries":{}}']) {
      fs.writeFileSync(file, body);
      const res = await new DeadLetterQueue<Payload>({ persistencePath: file }).load();
      expect(res.corruptPath, body).toBeDefined();
      expect(fs.existsSync(file), body).toBe(false);
      fs.rmSync(res.corruptPath!);
    }

    q.add(failure(1));
    q.add(failure(2));
    await q.flush();
    const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { entries: Array<Record<string, unknown>> };
    doc.entries.push({ id: 'x', collectionId: 'c1', key: 'k', payload: {}, attempts: 'three', firstFailedAt: 1, lastFailedAt: 1, error: { message: 'm', kind: 'permanent' } });
    doc.entries.push({ id: 'y', collectionId: 'c1', key: 'k2', payload: {}, attempts: 1, firstFailedAt: 1, lastFailedAt: 1, error: { message: 'm', kind: 'fatal' } });
    doc.entries.push({ id: 'z', collectionId: 'c1', key: 'k3', payload: { segment: 7 }, attempts: 1, firstFailedAt: 1, lastFailedAt: 1, error: { message: 'm', kind: 'permanent' } });
    fs.writeFileSync(file, JSON.stringify(doc));
    const logger = recordingLogger();
    const isPayload = (v: unknown): v is Payload => typeof v === 'object' && v !== null && typeof (v as Payload).segment === 'string';
    const fresh = new DeadLetterQueue<Payload>({ persistencePath: file, logger, isPayload, now: () => Date.now() - DAY });
    const res = await fresh.load();
    expect(res).toMatchObject({ loaded: 2, invalid: 3 });
    expect(keys(fresh.list())).toEqual(['segments/1.seg', 'segments/2.seg']);
    expect(JSON.parse(fs.readFileSync(res.corruptPath!, 'utf8'))).toEqual(doc);
    expect(fs.existsSync(file)).toBe(true);
    expect(fresh.dirty).toBe(true);
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(1);
  });

  it('test_dlq_persistence_crash_recovery: a crash mid-flush loses only the unflushed tail', async () => {
    const { q, file, clock } = makeQueue();
    for (let n = 0; n < 20; n++) q.add(failure(n));
    await q.flush();
    const flushed = q.list();
    // The tail after the last flush, and the temp file a killed flush of it left behind, half written.
    for (let n = 20; n < 30; n++) q.add(failure(n));
    q.remove([flushed[0]!.id]);
    const tail = JSON.stringify({ version: 1, savedAt: clock.t, entries: q.list() });
    const tmp = `${file}.tmp-4242-7`;
    fs.writeFileSync(tmp, tail.slice(0, Math.floor(tail.length / 2)));
    // A complete temp file that never reached its rename is not the state of record either.
    fs.writeFileSync(`${file}.tmp-4242-8`, tail);

    const logger = recordingLogger();
    const fresh = new DeadLetterQueue<Payload>({ persistencePath: file, now: () => clock.t, logger });
    await expect(fresh.load()).resolves.toEqual({ loaded: 20, invalid: 0, removedTempFiles: 2 });
    expect(fresh.list()).toEqual(flushed);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['dlq.json']);
    expect(logger.lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('counts a failed flush, keeps the queue dirty, leaves no temp file, and succeeds once the disk is back', async () => {
    const dir = tempDir();
    const blocker = path.join(dir, 'not-a-dir');
    fs.writeFileSync(blocker, '');
    const logger = recordingLogger();
    const q = new DeadLetterQueue<Payload>({ persistencePath: path.join(blocker, 'dlq.json'), logger });
    q.add(failure(1));
    await expect(q.flush()).rejects.toMatchObject({ code: 'STORAGE_IO', details: { operation: 'flush' } });
    expect(q.flushErrors).toBe(1);
    expect(q.flushes).toBe(0);
    expect(q.dirty).toBe(true);
    expect(logger.lines.filter((l) => l.level === 'error')).toHaveLength(1);
    // The chain survives a failure: the next flush runs.
    fs.rmSync(blocker);
    await expect(q.flush()).resolves.toBe(true);
    expect(q.flushes).toBe(1);
    expect(fs.readdirSync(blocker)).toEqual(['dlq.json']);
  });

  it('serializes concurrent flushes; every change made before a call is on disk when it resolves', async () => {
    const { q, file } = makeQueue();
    const done: Array<Promise<boolean>> = [];
    for (let n = 0; n < 10; n++) {
      q.add(failure(n));
      done.push(q.flush());
    }
    const results = await Promise.all(done);
    expect(results[0]).toBe(true);
    expect(q.flushes).toBe(results.filter(Boolean).length);
    const fresh = new DeadLetterQueue<Payload>({ persistencePath: file });
    await fresh.load();
    expect(fresh.size).toBe(10);
  });

  it('does nothing on disk when persistence is disabled', async () => {
    const dir = tempDir();
    const q = new DeadLetterQueue<Payload>({ persistenceEnabled: false, persistencePath: path.join(dir, 'dlq.json') });
    q.add(failure(1));
    await expect(q.flush()).resolves.toBe(false);
    await expect(q.load()).resolves.toEqual({ loaded: 0, invalid: 0, removedTempFiles: 0 });
    expect(fs.readdirSync(dir)).toEqual([]);
    // No path is needed then.
    expect(() => new DeadLetterQueue({ persistenceEnabled: false })).not.toThrow();
  });
});

describe('DlqFlushService', () => {
  it('flushes every interval while running and once more when its signal aborts', async () => {
    const { q, file } = makeQueue();
    const service = new DlqFlushService(q, { flushIntervalSeconds: 0.02 });
    const ac = new AbortController();
    const running = service.run(ac.signal);
    q.add(failure(1));
    await vi.waitFor(() => expect(q.flushes).toBeGreaterThanOrEqual(1), { timeout: 5000, interval: 5 });
    // Nothing changed: ticks do not rewrite the file.
    const before = q.flushes;
    await new Promise((r) => setTimeout(r, 100));
    expect(q.flushes).toBe(before);

    q.add(failure(2));
    ac.abort();
    await running;
    expect(q.dirty).toBe(false);
    const fresh = new DeadLetterQueue<Payload>({ persistencePath: file });
    await fresh.load();
    expect(keys(fresh.list())).toEqual(['segments/1.seg', 'segments/2.seg']);
  });

  it('under a ServiceRunner, a graceful stop flushes even with a long interval', async () => {
    const { q, file } = makeQueue();
    const runner = new ServiceRunner(recordingLogger());
    runner.start(new DlqFlushService(q, { flushIntervalSeconds: 3600 }));
    q.add(failure(1));
    await runner.stop(5000);
    // Once by drain; run's own final flush found nothing new.
    expect(q.flushes).toBe(1);
    expect(q.dirty).toBe(false);
    expect(fs.existsSync(file)).toBe(true);
  });

  it('keeps running through flush failures, logs a failed final flush without rejecting, and expires entries when due', async () => {
    const dir = tempDir();
    const blocker = path.join(dir, 'blocked');
    fs.writeFileSync(blocker, '');
    const clock = { t: Date.now() };
    const q = new DeadLetterQueue<Payload>({ persistencePath: path.join(blocker, 'dlq.json'), now: () => clock.t, ttlDays: 1, logger: recordingLogger() });
    const logger = recordingLogger();
    const service = new DlqFlushService(q, { flushIntervalSeconds: 0.01, expireIntervalSeconds: 0.01, logger });
    q.add(failure(1));
    const ac = new AbortController();
    const running = service.run(ac.signal);
    await vi.waitFor(() => expect(q.flushErrors).toBeGreaterThanOrEqual(2), { timeout: 5000, interval: 5 });
    await service.drain(Date.now() + 1000);
    expect(logger.lines.filter((l) => l.level === 'error')).toHaveLength(1);

    fs.rmSync(blocker);
    await vi.waitFor(() => expect(q.flushes).toBe(1), { timeout: 5000, interval: 5 });
    clock.t += 2 * DAY;
    await vi.waitFor(() => expect(q.expirations).toBe(1), { timeout: 5000, interval: 5 });
    ac.abort();
    await running;
    const fresh = new DeadLetterQueue<Payload>({ persistencePath: path.join(blocker, 'dlq.json') });
    await fresh.load();
    expect(fresh.size).toBe(0);
  });
});

// The child runs the compiled queue (`npm run build` first); this process checks with the sources.
const CHILD = fileURLToPath(new URL('../../test/fixtures/dlq-writer.mjs', import.meta.url));
const DIST_MODULE = fileURLToPath(new URL('../../dist/tiering/dead-letter-queue.js', import.meta.url));

interface ChildRun {
  /** Entries added this round (`A` lines): the file may hold any of them. */
  added: number;
  /** Entries on disk when the last completed flush resolved (`F` lines). */
  flushed: number;
  loadedAtStart: number | null;
  killed: boolean;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Run the writer and SIGKILL it `delayMs` after its first completed flush (or after spawn). */
function runChild(file: string, round: number, seed: number, delayMs: number, afterFirstFlush: boolean): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, file, String(round), String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const run: ChildRun = { added: 0, flushed: 0, loadedAtStart: null, killed: false, signal: null, stderr: '' };
    let out = '';
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      timer ??= setTimeout(() => {
        run.killed = true;
        child.kill('SIGKILL');
      }, delayMs);
    };
    const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
    if (!afterFirstFlush) arm();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        const [tag, value] = out.slice(0, nl).split(' ');
        out = out.slice(nl + 1);
        if (tag === 'L') run.loadedAtStart = Number(value);
        else if (tag === 'A') run.added = Number(value);
        else if (tag === 'F') {
          run.flushed = Number(value);
          arm();
        } else run.stderr += `unexpected stdout line: ${tag} ${value}\n`;
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (run.stderr += chunk));
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      run.signal = signal;
      resolve(run);
    });
  });
}

describe('DeadLetterQueue: SIGKILL', () => {
  it('test_e2e_dlq_persistence_across_restarts: everything flushed before a SIGKILL is loaded by the next process, across repeated kills', async () => {
    expect(fs.existsSync(DIST_MODULE), `${DIST_MODULE} is missing: run npm run build first`).toBe(true);
    const seed = Number(process.env.AKIDB_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const rnd = seededRandom(seed);
    const file = path.join(tempDir(), 'dlq.json');
    const ROUNDS = 24;
    /** Per round: [entries guaranteed on disk, entries that may be]. */
    const bounds: Array<[number, number]> = [];
    const totals = { flushedEntries: 0, tempFilesFound: 0, unflushedTailsLost: 0 };

    for (let round = 0; round < ROUNDS; round++) {
      // Every sixth child dies soon after spawn, whatever it is doing (loading, first flush).
      const early = round % 6 === 5;
      const delayMs = early ? Math.floor(rnd() * 150) : 20 + Math.floor(rnd() * 300);
      const where = `round ${round} (AKIDB_CRASH_SEED=${seed}, kill ${delayMs} ms after ${early ? 'spawn' : 'first flush'})`;
      const tempBefore = fs.readdirSync(path.dirname(file)).filter((n) => n.includes('.tmp-')).length;
      expect(tempBefore, `${where}: temp files survived the previous load`).toBe(0);

      const run = await runChild(file, round, seed, delayMs, !early);
      expect({ killed: run.killed, signal: run.signal }, `${where}: the child must die by our SIGKILL. stderr:\n${run.stderr}`).toEqual({ killed: true, signal: 'SIGKILL' });
      expect(run.stderr, `${where}: the child reported problems`).toBe('');
      if (!early) expect(run.flushed, `${where}: completed flushes`).toBeGreaterThan(0);
      // The child loaded everything the earlier rounds flushed.
      if (run.loadedAtStart !== null) expect(run.loadedAtStart, `${where}: size at start`).toBe(bounds.reduce((a, [lo]) => a + lo, 0));
      bounds.push([run.flushed, run.added]);

      const logger = recordingLogger();
      const fresh = new DeadLetterQueue<{ round: number; n: number }>({ maxSize: 1_000_000, persistencePath: file, logger });
      const res = await fresh.load();
      totals.tempFilesFound += res.removedTempFiles;
      expect(logger.lines.filter((l) => l.level !== 'info'), `${where}: load complained`).toEqual([]);
      expect(res.corruptPath, `${where}: the file was torn`).toBeUndefined();

      // Per round: a prefix of its entries, at least every flushed one, none never added.
      const byRound = new Map<number, number[]>();
      for (const e of fresh.list()) {
        const m = /^r(\d+)-(\d+)$/.exec(e.key);
        expect(m, `${where}: unexpected key ${e.key}`).not.toBeNull();
        const [r, n] = [Number(m![1]), Number(m![2])];
        expect(e.payload, `${where}: payload of ${e.key}`).toMatchObject({ round: r, n });
        byRound.set(r, [...(byRound.get(r) ?? []), n]);
      }
      for (let r = 0; r <= round; r++) {
        const ns = byRound.get(r) ?? [];
        const [lo, hi] = bounds[r]!;
        expect(ns, `${where}: round ${r} entries in order, a prefix`).toEqual(Array.from({ length: ns.length }, (_, i) => i));
        expect(ns.length, `${where}: round ${r} lost flushed entries`).toBeGreaterThanOrEqual(lo);
        expect(ns.length, `${where}: round ${r} holds entries never added`).toBeLessThanOrEqual(hi);
        // Later children load and re-flush these entries: from now on their count is fixed.
        bounds[r] = [ns.length, ns.length];
      }
      totals.flushedEntries += run.flushed;
      totals.unflushedTailsLost += run.added - (byRound.get(round)?.length ?? 0);
      expect(byRound.size, `${where}: rounds present`).toBeLessThanOrEqual(round + 1);
    }
    console.log(`dlq SIGKILL: seed ${seed}`, totals);
    expect(totals.flushedEntries).toBeGreaterThan(ROUNDS * 10);
  }, 120_000);
});
