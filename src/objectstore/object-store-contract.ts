import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ObjectStoreError, type ObjectInfo, type ObjectStore } from './object-store.js';

/** What a contract run needs from an implementation: a fresh, empty store per test. */
export interface ContractSubject {
  store: ObjectStore;
  /** Called after each test, also when it failed. */
  cleanup?: () => Promise<void>;
}

/**
 * The ObjectStore contract (the doc comment of `object-store.ts`) as one vitest suite that every
 * implementation runs. `create` is called before each test and must return an empty store.
 * Only test files import this module; it is left out of the build.
 */
export function runObjectStoreContract(name: string, create: () => Promise<ContractSubject>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let subject: ContractSubject | undefined;
    const store = (): ObjectStore => {
      if (!subject) throw new Error('the contract store was not created');
      return subject.store;
    };

    beforeEach(async () => {
      subject = await create();
    });
    afterEach(async () => {
      const s = subject;
      subject = undefined;
      await s?.cleanup?.();
    });

    it('describes itself as a URL-like string', () => {
      expect(store().description).toMatch(/^[a-z][a-z0-9+.-]*:\/\//);
    });

    it('round-trips an empty body', async () => {
      await store().put('empty', new Uint8Array(0));
      const got = await store().get('empty');
      expect(got).toBeInstanceOf(Uint8Array);
      expect(got?.length).toBe(0);
      expect(await store().head('empty')).toEqual({ key: 'empty', size: 0 });
      expect(await collect(store().list(''))).toEqual([{ key: 'empty', size: 0 }]);
    });

    it('round-trips a 5 MB body byte for byte', async () => {
      const body = patterned(5 * 1024 * 1024, 1);
      await store().put('big/five-mb', body);
      expectSameBytes(await store().get('big/five-mb'), body);
      expect(await store().head('big/five-mb')).toMatchObject({ key: 'big/five-mb', size: body.length });
    });

    it('round-trips every byte value, including NUL, 0xff and invalid UTF-8', async () => {
      const body = new Uint8Array(512);
      for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
      body.set([0xc3, 0x28, 0xff, 0xfe, 0x00, 0xed, 0xa0, 0x80], 256);
      await store().put('binary', body);
      expectSameBytes(await store().get('binary'), body);
    });

    it('overwrite replaces the whole body and the content encoding, longer or shorter', async () => {
      await store().put('k', fill(1000, 0xaa), { contentEncoding: 'gzip' });
      await store().put('k', fill(10, 0x55));
      expectSameBytes(await store().get('k'), fill(10, 0x55));
      expect(await store().head('k')).toEqual({ key: 'k', size: 10 });
      expect(await sizes(store(), '')).toEqual([['k', 10]]);

      await store().put('k', fill(3000, 0x11), { contentEncoding: 'br' });
      expectSameBytes(await store().get('k'), fill(3000, 0x11));
      expect(await store().head('k')).toEqual({ key: 'k', size: 3000, contentEncoding: 'br' });
      expect(await sizes(store(), '')).toEqual([['k', 3000]]);
    });

    it('get and head of a missing key resolve null, also beside keys that share its prefix', async () => {
      expect(await store().get('nothing')).toBeNull();
      expect(await store().head('nothing')).toBeNull();
      await store().put('a/b', fill(1, 1));
      await store().put('ab', fill(2, 2));
      for (const missing of ['a', 'a/', 'a/b/c', 'a/bc', 'b', 'A/b', 'ab/']) {
        expect(await store().get(missing), missing).toBeNull();
        expect(await store().head(missing), missing).toBeNull();
      }
    });

    it('head reports size and content encoding; an empty encoding is none', async () => {
      await store().put('enc/gzip', fill(33, 1), { contentEncoding: 'gzip' });
      await store().put('enc/none', fill(44, 2));
      await store().put('enc/empty', fill(55, 3), { contentEncoding: '' });
      expect(await store().head('enc/gzip')).toEqual({ key: 'enc/gzip', size: 33, contentEncoding: 'gzip' });
      expect(await store().head('enc/none')).toEqual({ key: 'enc/none', size: 44 });
      expect(await store().head('enc/empty')).toEqual({ key: 'enc/empty', size: 55 });
      // The body is stored as given: the encoding is a label, not something the store applies.
      expectSameBytes(await store().get('enc/gzip'), fill(33, 1));
    });

    it('lists exactly the keys with the prefix, once each, in UTF-8 byte order, with sizes', async () => {
      const keys = [
        'a', 'a/b', 'ab', 'a/b/c', 'a/bc', 'a-b', 'a.b', 'a0', 'A', 'b', 'Z', '~tilde',
        'dir/ünïcödé', 'dir/日本語/キー', 'dir/😀', 'dir/ｚ', 'dir/e\u0301', 'dir/\u00e9',
        'dir/sp ace+plus%25?q#h&=~', 'dir/x', 'dir/x/y',
      ];
      const sizeOf = new Map(keys.map((k, i) => [k, i + 1] as const));
      // Put in reverse of the expected order, so that an insertion-ordered listing fails.
      for (const k of [...keys].sort(byteOrder).reverse()) await store().put(k, fill(sizeOf.get(k) ?? 0, 7));
      for (const prefix of ['', 'a', 'a/', 'a/b', 'ab', 'A', 'dir/', 'dir/x', 'dir/😀', 'dir/e', 'z', 'zzz', '/', 'b/', 'a/b/c/d']) {
        const expected = keys
          .filter((k) => k.startsWith(prefix))
          .sort(byteOrder)
          .map((k) => [k, sizeOf.get(k)]);
        expect(await sizes(store(), prefix), `prefix ${JSON.stringify(prefix)}`).toEqual(expected);
      }
    });

    it('orders by UTF-8 bytes where that differs from JavaScript string order', async () => {
      // UTF-8: U+E000 (ee 80 80) < U+FF5A (ef bd 9a) < U+1F600 (f0 9f 98 80). UTF-16 code units put
      // the emoji (d83d de00) first, so a plain `sort()` fails this.
      for (const k of ['u/😀', 'u/\uff5a', 'u/\ue000', 'u/~', 'u/Z', 'u/a', 'u/é']) await store().put(k, fill(1, 0));
      expect((await collect(store().list('u/'))).map((i) => i.key)).toEqual([
        'u/Z', 'u/a', 'u/~', 'u/é', 'u/\ue000', 'u/\uff5a', 'u/😀',
      ]);
    });

    it('keys with empty segments and a trailing slash are ordinary keys', async () => {
      const keys = ['e/', 'e//x', 'e/x', 'e//', 'e'];
      for (const [i, k] of keys.entries()) await store().put(k, fill(i + 1, i));
      for (const [i, k] of keys.entries()) expectSameBytes(await store().get(k), fill(i + 1, i));
      expect(await sizes(store(), 'e')).toEqual([['e', 5], ['e/', 1], ['e//', 4], ['e//x', 2], ['e/x', 3]]);
      expect(await sizes(store(), 'e//')).toEqual([['e//', 4], ['e//x', 2]]);
    });

    it('accepts keys at the limits: 1024 bytes, long segments, dots inside segments', async () => {
      const limitKeys = [
        'é'.repeat(512), // 1024 bytes in 512 characters, one segment
        `k/${'x'.repeat(1022)}`,
        `${'s/'.repeat(100)}end`,
        '..a', 'a..', '...', 'd/.hidden', 'd/..../x', 'd/.a/b.',
      ];
      for (const k of limitKeys) expect(Buffer.byteLength(k)).toBeLessThanOrEqual(1024);
      for (const [i, k] of limitKeys.entries()) await store().put(k, fill(i + 1, i));
      for (const [i, k] of limitKeys.entries()) {
        expectSameBytes(await store().get(k), fill(i + 1, i));
        expect(await store().head(k)).toEqual({ key: k, size: i + 1 });
      }
      expect((await collect(store().list(''))).map((i) => i.key)).toEqual([...limitKeys].sort(byteOrder));
    });

    it('lists nothing for a prefix nothing matches, and nothing from an empty store', async () => {
      expect(await collect(store().list(''))).toEqual([]);
      expect(await collect(store().list('any/prefix/'))).toEqual([]);
      await store().put('present/one', fill(1, 1));
      for (const prefix of ['absent', 'present/one/', 'present/onex', 'Present', '/', 'present//']) {
        expect(await collect(store().list(prefix)), prefix).toEqual([]);
      }
    });

    it('lists 1,200 keys under a prefix, more than one S3 page, exactly and in order', async () => {
      const keys = Array.from({ length: 1200 }, (_, i) => `page/${i}`);
      const outside = ['pag', 'page', 'page0', 'pagf/x', 'page\u00e9'];
      await putAll(store(), [...keys, ...outside], (k) => fill(Buffer.byteLength(k) % 7, 3));
      const expected = [...keys].sort(byteOrder).map((k) => [k, Buffer.byteLength(k) % 7]);
      const listed = await sizes(store(), 'page/');
      expect(listed).toHaveLength(1200);
      expect(listed).toEqual(expected);
      expect(await sizes(store(), 'page/1')).toEqual(expected.filter(([k]) => String(k).startsWith('page/1')));
      expect(await collect(store().list(''))).toHaveLength(1200 + outside.length);
    });

    it('a listing abandoned early ends cleanly and the store keeps working', async () => {
      for (const k of ['l/1', 'l/2', 'l/3']) await store().put(k, fill(1, 1));
      for await (const info of store().list('l/')) {
        expect(info.key).toBe('l/1');
        break;
      }
      expect((await collect(store().list('l/'))).map((i) => i.key)).toEqual(['l/1', 'l/2', 'l/3']);
    });

    it('delete removes the key and only that key', async () => {
      for (const k of ['a', 'a/b', 'ab', 'a/b/c']) await store().put(k, fill(k.length, 9));
      await store().delete('a');
      expect(await store().get('a')).toBeNull();
      expect(await store().head('a')).toBeNull();
      expect(await sizes(store(), '')).toEqual([['a/b', 3], ['a/b/c', 5], ['ab', 2]]);
      await store().delete('a/b/c');
      await store().delete('a/b');
      expect(await sizes(store(), '')).toEqual([['ab', 2]]);
      // A deleted key can be put again, with its old neighbours' places emptied in between.
      await store().put('a/b/c', fill(4, 4));
      expectSameBytes(await store().get('a/b/c'), fill(4, 4));
      expect(await sizes(store(), 'a')).toEqual([['a/b/c', 4], ['ab', 2]]);
    });

    it('delete is idempotent: a missing key, or the same key twice, resolves', async () => {
      await expect(store().delete('never/was')).resolves.toBeUndefined();
      await store().put('once', fill(1, 1));
      await store().delete('once');
      await expect(store().delete('once')).resolves.toBeUndefined();
      expect(await collect(store().list(''))).toEqual([]);
    });

    it('rejects bad keys on every keyed operation with a permanent ObjectStoreError, storing nothing', async () => {
      for (const key of BAD_KEYS) {
        const results = await Promise.all([
          rejection(store().put(key, fill(1, 1))),
          rejection(store().get(key)),
          rejection(store().head(key)),
          rejection(store().delete(key)),
        ]);
        for (const [i, operation] of (['put', 'get', 'head', 'delete'] as const).entries()) {
          const err = results[i];
          expect(err, `${operation} ${JSON.stringify(key.slice(0, 20))}`).toBeInstanceOf(ObjectStoreError);
          expect(err).toMatchObject({ name: 'ObjectStoreError', kind: 'permanent', operation, key, status: undefined });
        }
      }
      expect(await collect(store().list(''))).toEqual([]);
    });

    it('puts of different keys run concurrently and all land', async () => {
      const keys = Array.from({ length: 64 }, (_, i) => `conc/${i % 4}/${i}`);
      await Promise.all(keys.map((k, i) => store().put(k, patterned(1000 + i, i))));
      const got = await Promise.all(keys.map((k) => store().get(k)));
      for (const [i, g] of got.entries()) expectSameBytes(g, patterned(1000 + i, i));
      expect(await sizes(store(), 'conc/')).toEqual(keys.map((k, i) => [k, 1000 + i] as const).sort((x, y) => byteOrder(x[0], y[0])));
    });

    it('concurrent puts and gets of one key: every read is one whole body, and one put wins whole', async () => {
      const bodies = Array.from({ length: 6 }, (_, i) => fill(64 * 1024 + i * 4099, 0x10 + i));
      await store().put('hot', bodies[0] ?? fill(0, 0));
      // Reads settle to their error, so that a failing one fails this test rather than going unhandled.
      const reads: Promise<Uint8Array | null | Error>[] = [];
      const read = (): void => {
        reads.push(store().get('hot').catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))));
      };
      const writes = bodies.map(async (b) => {
        read();
        await store().put('hot', b);
        read();
      });
      await Promise.all(writes);
      for (const r of await Promise.all(reads)) {
        if (r instanceof Error) throw r;
        expectOneOf(r, bodies);
      }
      const final = await store().get('hot');
      expectOneOf(final, bodies);
      expect(await sizes(store(), '')).toEqual([['hot', final?.length]]);
    });

    it('the stored body is a copy: mutating what was put or what was got changes nothing', async () => {
      const body = fill(16, 0x42);
      await store().put('copy', body);
      body.fill(0);
      const first = await store().get('copy');
      expectSameBytes(first, fill(16, 0x42));
      first?.fill(0xee);
      const second = await store().get('copy');
      expectSameBytes(second, fill(16, 0x42));
      expect(second).not.toBe(first);
    });

    it('read-after-write: a key is visible to get, head and list as soon as its put resolves', async () => {
      for (let i = 0; i < 20; i++) {
        const key = `raw/${i}`;
        await store().put(key, fill(i, i));
        expect(await store().head(key)).toMatchObject({ key, size: i });
        expect((await collect(store().list('raw/'))).map((x) => x.key)).toContain(key);
        expectSameBytes(await store().get(key), fill(i, i));
      }
    });
  });
}

/** Keys that break a rule of the contract, each for a different reason. */
const BAD_KEYS: readonly string[] = [
  '',
  '/',
  '/a',
  '.',
  '..',
  '../a',
  'a/..',
  'a/../b',
  './a',
  'a/./b',
  'a/.',
  'a\0b',
  '\0',
  'x'.repeat(1025),
  'é'.repeat(513), // 1026 bytes in 513 characters: the limit is on bytes
  `k/${'x'.repeat(1023)}`,
  'lone\ud800surrogate',
  'lone\udc00',
];

/** Drain a listing. */
async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of it) out.push({ key: info.key, size: info.size });
  return out;
}

/** A listing as [key, size] pairs, which print readably when they differ. */
async function sizes(store: ObjectStore, prefix: string): Promise<[string, number][]> {
  return (await collect(store.list(prefix))).map((i) => [i.key, i.size]);
}

/** Ascending order of the keys' UTF-8 bytes: the order `list` promises. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function fill(size: number, value: number): Uint8Array {
  return new Uint8Array(size).fill(value);
}

/** Bytes that vary at every scale, so that a dropped, repeated or reordered block is noticed. */
function patterned(size: number, seed: number): Uint8Array {
  const b = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Byte equality that reports the length or first differing offset instead of printing megabytes. */
function expectSameBytes(actual: Uint8Array | null, expected: Uint8Array): void {
  expect(actual).not.toBeNull();
  if (!actual) return;
  expect(actual).toBeInstanceOf(Uint8Array);
  expect(actual.length, 'length').toBe(expected.length);
  expect(firstDifference(actual, expected), 'first differing offset').toBe(-1);
}

function expectOneOf(actual: Uint8Array | null, candidates: readonly Uint8Array[]): void {
  expect(actual).not.toBeNull();
  if (!actual) return;
  const whole = candidates.some((c) => c.length === actual.length && firstDifference(actual, c) === -1);
  expect(whole, `a body of ${actual.length} bytes that is none of the bodies put`).toBe(true);
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) return -1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return Math.min(a.length, b.length);
}

/** The rejection reason of `p`, or a marker that makes the assertion fail when it resolved. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('resolved, but a rejection was expected'),
    (e: unknown) => e,
  );
}

/** Put every key with a bounded number of puts in flight (a remote store should not see 1,200 at once). */
async function putAll(store: ObjectStore, keys: readonly string[], bodyOf: (key: string) => Uint8Array, inFlight = 16): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++];
      if (key !== undefined) await store.put(key, bodyOf(key));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}
