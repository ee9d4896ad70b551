import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryObjectStore, type MemoryStoreStats, type Operation } from './memory-object-store.js';
import { ObjectStoreError, type ObjectInfo } from './object-store.js';
import { runObjectStoreContract } from './object-store-contract.js';

runObjectStoreContract('MemoryObjectStore', async () => ({ store: new MemoryObjectStore() }));

const body = (s: string): Uint8Array => Buffer.from(s);

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of it) out.push(info);
  return out;
}

/** The rejection reason of `p`, or a marker error when it resolved. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('resolved, but a rejection was expected'),
    (e: unknown) => e,
  );
}

/** 'ok' or the failure's kind and status, per call: a compact record of what each call got. */
async function outcome(p: Promise<unknown>): Promise<string> {
  const r = await p.then(
    () => 'ok',
    (e: unknown) => e,
  );
  if (r === 'ok') return r;
  if (!(r instanceof ObjectStoreError)) return `not an ObjectStoreError: ${String(r)}`;
  return `${r.kind} ${r.status ?? 'no-status'}`;
}

function counts(partial: Partial<Record<Operation, number>>): Record<Operation, number> {
  return { put: 0, get: 0, head: 0, list: 0, delete: 0, ...partial };
}

function expectStats(stats: MemoryStoreStats, calls: Partial<Record<Operation, number>>, failures: Partial<Record<Operation, number>>): void {
  const c = counts(calls);
  const f = counts(failures);
  expect(stats).toEqual({
    calls: c,
    injectedFailures: f,
    totalCalls: Object.values(c).reduce((a, b) => a + b, 0),
    totalInjectedFailures: Object.values(f).reduce((a, b) => a + b, 0),
  });
}

describe('MemoryObjectStore faults and counts', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('counts every call per operation; a bad key is refused before it counts as a call', async () => {
    const store = new MemoryObjectStore();
    await store.put('a', body('1'));
    await store.put('b', body('2'));
    await store.get('a');
    await store.get('missing');
    await store.head('a');
    await collect(store.list(''));
    await store.delete('a');
    await store.delete('a');
    await expect(store.put('/bad', body('x'))).rejects.toMatchObject({ kind: 'permanent' });
    await expect(store.get('')).rejects.toMatchObject({ kind: 'permanent' });
    expectStats(store.stats(), { put: 2, get: 2, head: 1, list: 1, delete: 2 }, {});
    store.resetStats();
    expectStats(store.stats(), {}, {});
  });

  it('a listing counts as one call when its iteration starts, not when it is created', async () => {
    const store = new MemoryObjectStore();
    const listing = store.list('');
    expect(store.stats().calls.list).toBe(0);
    await collect(listing);
    expect(store.stats().calls.list).toBe(1);
  });

  it('failNext(n) fails exactly the next n calls with 503 (transient), then calls succeed', async () => {
    const store = new MemoryObjectStore();
    store.faults.failNext(3);
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await outcome(store.put(`k${i}`, body('x'))));
    expect(results).toEqual(['transient 503', 'transient 503', 'transient 503', 'ok', 'ok']);
    // The failed puts stored nothing.
    expect((await collect(store.list(''))).map((i) => i.key)).toEqual(['k3', 'k4']);
    expectStats(store.stats(), { put: 5, list: 1 }, { put: 3 });
  });

  it('failNext with a status and operations: only those operations take it, classified by the status', async () => {
    const store = new MemoryObjectStore();
    await store.put('k', body('old'));
    store.faults.failNext(2, { status: 403, operations: ['put'] });
    // Gets are out of scope: they neither fail nor use up the two failures.
    expect(await outcome(store.get('k'))).toBe('ok');
    const err = await rejection(store.put('k', body('new')));
    expect(err).toBeInstanceOf(ObjectStoreError);
    expect(err).toMatchObject({ name: 'ObjectStoreError', kind: 'permanent', status: 403, operation: 'put', key: 'k' });
    expect(await outcome(store.head('k'))).toBe('ok');
    expect(await outcome(store.put('k', body('new')))).toBe('permanent 403');
    expect(await outcome(store.put('k', body('new!')))).toBe('ok');
    expect(Buffer.from((await store.get('k')) ?? [])).toEqual(Buffer.from('new!'));
    expectStats(store.stats(), { put: 4, get: 2, head: 1 }, { put: 2 });
  });

  it('counted faults queue in the order they were added', async () => {
    const store = new MemoryObjectStore();
    store.faults.failNext(1, { status: 500 }).failNext(1, { status: 404 }).resetConnections(1).failNext(1, { status: 429 });
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await outcome(store.get('k')));
    expect(results).toEqual(['transient 500', 'permanent 404', 'transient no-status', 'transient 429', 'ok']);
    expectStats(store.stats(), { get: 5 }, { get: 4 });
  });

  it('failWith(status) fails every call in scope until reset()', async () => {
    const store = new MemoryObjectStore();
    await store.put('k', body('v'));
    store.faults.failWith(503, { operations: ['get', 'list'] });
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await outcome(store.get('k')));
    expect(results).toEqual(Array(10).fill('transient 503'));
    expect(await outcome(collect(store.list('')))).toBe('transient 503');
    expect(await outcome(store.head('k'))).toBe('ok');
    store.faults.failWith(403);
    expect(await outcome(store.head('k'))).toBe('permanent 403');
    expect(await outcome(store.delete('k'))).toBe('permanent 403');
    store.faults.reset();
    expect(await outcome(store.get('k'))).toBe('ok');
    expect(await outcome(store.delete('k'))).toBe('ok');
    expectStats(store.stats(), { put: 1, get: 11, list: 1, head: 2, delete: 2 }, { get: 10, list: 1, head: 1, delete: 1 });
  });

  it('a failed listing yields nothing and carries the prefix as its key', async () => {
    const store = new MemoryObjectStore();
    await store.put('p/1', body('1'));
    store.faults.failNext(1, { status: 502 });
    const seen: string[] = [];
    const err = await rejection(
      (async () => {
        for await (const info of store.list('p/')) seen.push(info.key);
      })(),
    );
    expect(seen).toEqual([]);
    expect(err).toMatchObject({ kind: 'transient', status: 502, operation: 'list', key: 'p/' });
  });

  it('failFraction(p, seed) fails a deterministic share of calls: same seed, same calls fail', async () => {
    const run = async (seed: number): Promise<{ failed: number[]; stored: number }> => {
      const store = new MemoryObjectStore();
      store.faults.failFraction(0.3, { seed, status: 500, operations: ['put'] });
      const failed: number[] = [];
      for (let i = 0; i < 1000; i++) {
        const r = await outcome(store.put(`k${i}`, body('x')));
        if (r !== 'ok') {
          expect(r).toBe('transient 500');
          failed.push(i);
        }
        // Out of scope: does not advance the PRNG, so the put pattern does not depend on gets.
        if (i % 3 === 0) expect(await outcome(store.get(`k${i}`))).toBe('ok');
      }
      expect(store.stats().injectedFailures.put).toBe(failed.length);
      return { failed, stored: (await collect(store.list(''))).length };
    };
    const a = await run(42);
    const b = await run(42);
    const c = await run(43);
    expect(b.failed).toEqual(a.failed);
    expect(c.failed).not.toEqual(a.failed);
    // Exactly what mulberry32 seeded with 42 draws below 0.3 in 1000 tries (about 0.3 x 1000, as it should be).
    expect(a.failed.length).toBe(284);
    expect(a.stored).toBe(1000 - 284);
  });

  it('failFraction 0 fails nothing and 1 fails everything', async () => {
    const store = new MemoryObjectStore();
    store.faults.failFraction(0, { seed: 7 });
    for (let i = 0; i < 50; i++) expect(await outcome(store.put(`k${i}`, body('x')))).toBe('ok');
    store.faults.failFraction(1, { seed: 7 });
    for (let i = 0; i < 50; i++) expect(await outcome(store.get(`k${i}`))).toBe('transient 503');
    expectStats(store.stats(), { put: 50, get: 50 }, { get: 50 });
  });

  it('resetConnections(n) fails the next n calls as transient resets with an ECONNRESET cause and no status', async () => {
    const store = new MemoryObjectStore();
    store.faults.resetConnections(2);
    const errors = [await rejection(store.put('k', body('x'))), await rejection(store.head('k'))];
    for (const err of errors) {
      expect(err).toBeInstanceOf(ObjectStoreError);
      expect(err).toMatchObject({ kind: 'transient', status: undefined, cause: { code: 'ECONNRESET' } });
    }
    expect(await store.get('k')).toBeNull();
    expectStats(store.stats(), { put: 1, head: 1, get: 1 }, { put: 1, head: 1 });
  });

  it('latency(ms) delays every call in scope, failing ones too, by exactly that much', async () => {
    vi.useFakeTimers();
    const store = new MemoryObjectStore();
    store.faults.latency(50, { operations: ['put', 'get'] }).failNext(1, { operations: ['get'] });
    const settled: string[] = [];
    const track = (name: string, p: Promise<unknown>): void => {
      p.then(
        () => settled.push(`${name} ok`),
        () => settled.push(`${name} failed`),
      );
    };
    track('put', store.put('k', body('x')));
    track('get', store.get('k'));
    track('head', store.head('k'));
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toEqual(['head ok']);
    await vi.advanceTimersByTimeAsync(49);
    expect(settled).toEqual(['head ok']);
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toEqual(['head ok', 'put ok', 'get failed']);
    store.faults.reset();
    track('get again', store.get('k'));
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toContain('get again ok');
  });

  it('reset() clears every fault and the latency but keeps the counts', async () => {
    const store = new MemoryObjectStore();
    store.faults.failNext(5).resetConnections(5).failWith(500).failFraction(1).latency(10_000);
    store.faults.reset();
    expect(await outcome(store.put('k', body('x')))).toBe('ok');
    expect(await outcome(store.get('k'))).toBe('ok');
    expectStats(store.stats(), { put: 1, get: 1 }, {});
  });

  it('refuses nonsense fault settings', () => {
    const faults = new MemoryObjectStore().faults;
    expect(() => faults.failNext(-1)).toThrow(RangeError);
    expect(() => faults.failNext(1.5)).toThrow(RangeError);
    expect(() => faults.failNext(1, { status: 200 })).toThrow(RangeError);
    expect(() => faults.failWith(600)).toThrow(RangeError);
    expect(() => faults.failFraction(1.1)).toThrow(RangeError);
    expect(() => faults.failFraction(Number.NaN)).toThrow(RangeError);
    expect(() => faults.latency(-1)).toThrow(RangeError);
  });
});
