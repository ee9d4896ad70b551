import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AkiDB, type Collection, type DocumentInput, type Logger, type Metadata } from '../index.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

const tempDir = useTempDirs();

/** A logger that keeps the warnings (torn-tail reports) and errors for assertions. */
function recordingLogger(): Logger & { warns: object[]; errors: object[] } {
  const warns: object[] = [];
  const errors: object[] = [];
  return { warns, errors, info: () => undefined, warn: (obj) => void warns.push(obj), error: (obj) => void errors.push(obj) };
}

interface Doc {
  vector: number[];
  metadata: Metadata | null;
  text: string | null;
}

/** Version `v` of document `id`: every value exact in float32, so vectors compare exactly. */
function doc(id: string, v: number): DocumentInput & Doc {
  const c = id.charCodeAt(0) % 8;
  return {
    id,
    vector: [v, c + 0.5, -0.25 * v, 1],
    metadata: v % 3 === 0 ? null : { v, n: { t: [id] } },
    text: v % 2 === 0 ? null : `${id}${v}`,
  };
}

type Batch = { upsert: (DocumentInput & Doc)[] } | { delete: string[] };

// Upserts, an overwrite, deletes (one of an id that never existed), a resurrection.
const BATCHES: Batch[] = [
  { upsert: [doc('a', 1), doc('b', 1), doc('c', 1)] },
  { upsert: [doc('a', 2), doc('d', 1)] },
  { delete: ['b'] },
  { upsert: [doc('e', 1), doc('b', 2)] },
  { delete: ['a', 'e', 'zz'] },
  { upsert: [doc('c', 3)] },
];
const ALL_IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'zz'];

/** states[k]: the documents after the first k batches. */
function modelStates(batches: readonly Batch[]): Map<string, Doc>[] {
  const states = [new Map<string, Doc>()];
  for (const b of batches) {
    const next = new Map(states.at(-1));
    if ('upsert' in b) for (const d of b.upsert) next.set(d.id, { vector: d.vector, metadata: d.metadata, text: d.text });
    else for (const id of b.delete) next.delete(id);
    states.push(next);
  }
  return states;
}

function walDir(dataDir: string, collectionId: string): string {
  return path.join(dataDir, 'collections', collectionId, 'wal');
}

function walFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => /^wal-\d{20}\.log$/.test(n))
    .sort();
}

async function runBatch(col: Collection, b: Batch): Promise<void> {
  if ('upsert' in b) expect((await col.upsert(b.upsert)).upserted).toBe(b.upsert.length);
  else await col.delete({ ids: b.delete });
}

/**
 * Create a collection, run `batches` (each one WAL record), close. Returns the collection id and
 * the WAL file's size after each batch was acknowledged: the record boundaries.
 */
async function buildDataDir(dataDir: string, batches: readonly Batch[]): Promise<{ collectionId: string; file: string; ends: number[] }> {
  const db = await AkiDB.open({ dataDir, compaction: { enableBackground: false }, logger: recordingLogger() });
  const col = await db.createCollection({ name: 'wal', dimension: 4 });
  const collectionId = col.info.collectionId;
  const files = walFiles(walDir(dataDir, collectionId));
  expect(files).toHaveLength(1);
  const file = path.join(walDir(dataDir, collectionId), files[0]!);
  const ends: number[] = [];
  for (const b of batches) {
    await runBatch(col, b);
    ends.push(fs.statSync(file).size);
  }
  await db.close();
  // One record per batch, all in the one file; nothing was flushed to a segment.
  expect(walFiles(walDir(dataDir, collectionId))).toEqual(files);
  for (let i = 1; i < ends.length; i++) expect(ends[i]!).toBeGreaterThan(ends[i - 1]!);
  return { collectionId, file, ends };
}

/** The collection holds exactly `state`: by id, by count, and by an exhaustive query. */
async function expectState(col: Collection, state: Map<string, Doc>, where: string): Promise<void> {
  const got = await col.get(ALL_IDS);
  const want = ALL_IDS.map((id) => {
    const d = state.get(id);
    return d ? { id, ...d } : null;
  });
  expect(got, where).toEqual(want);
  expect(await col.count(), where).toBe(state.size);
  const hits = await col.query({ vector: [1, 1, 1, 1], topK: ALL_IDS.length });
  expect(hits.map((h) => h.id).sort(), where).toEqual([...state.keys()].sort());
}

/**
 * Run `fn` over `items`, `width` at a time; `fn` also gets its lane number (0..width-1) so each
 * lane can own a scratch directory. Each step is mostly waiting on the file system, so lanes
 * overlap well. After a failure no new item starts; the first error is rethrown.
 */
async function forEachConcurrently<T>(items: readonly T[], width: number, fn: (item: T, lane: number) => Promise<void>): Promise<number> {
  let next = 0;
  let done = 0;
  let failed = false;
  const lane = async (n: number): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item, n);
        done += 1;
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: width }, (_, n) => lane(n)));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
  return done;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * Make `dst` an exact copy of `src`: copy every file, remove whatever `src` lacks. Directories
 * that both have are kept rather than removed and recreated, because removing a directory is
 * the slow step here (about 0.7 ms each on ext4), and a reopen per offset adds up.
 */
function mirrorDir(src: string, dst: string): void {
  fs.mkdirSync(dst, { recursive: true });
  const want = new Map(fs.readdirSync(src, { withFileTypes: true }).map((e) => [e.name, e.isDirectory()]));
  for (const e of fs.readdirSync(dst, { withFileTypes: true })) {
    if (want.get(e.name) !== e.isDirectory()) fs.rmSync(path.join(dst, e.name), { recursive: true, force: true });
  }
  for (const [name, isDir] of want) {
    if (isDir) mirrorDir(path.join(src, name), path.join(dst, name));
    else fs.copyFileSync(path.join(src, name), path.join(dst, name));
  }
}

/** Mirror the whole data dir into `copy`, let `damage` change the copy's WAL file, reopen and `check` it. */
async function reopenDamaged(
  source: string,
  copy: string,
  collectionId: string,
  walFile: string,
  damage: (file: string) => void,
  check: (col: Collection, logger: ReturnType<typeof recordingLogger>) => Promise<void>,
): Promise<void> {
  mirrorDir(source, copy);
  damage(path.join(walDir(copy, collectionId), path.basename(walFile)));
  const logger = recordingLogger();
  // autoInitialize off: the catalog already holds the defaults, and skipping its write keeps each reopen read-only there.
  const db = await AkiDB.open({ dataDir: copy, compaction: { enableBackground: false }, logger, autoInitialize: false });
  try {
    await check(await db.getCollectionById(collectionId), logger);
  } finally {
    await db.close();
  }
}

const LANES = 4;

describe('collection WAL recovery', () => {
  const states = modelStates(BATCHES);

  it('the undamaged data dir reopens to the state after every batch', async () => {
    const dataDir = tempDir();
    const { collectionId, file } = await buildDataDir(dataDir, BATCHES);
    await reopenDamaged(dataDir, tempDir(), collectionId, file, () => undefined, async (col, logger) => {
      await expectState(col, states.at(-1)!, 'undamaged');
      expect(col.stats()).toMatchObject({ walCorruptTails: 0, walDroppedBytes: 0, lastLsn: BATCHES.length, checkpointLsn: 0 });
      expect(logger.warns).toEqual([]);
    });
  });

  // Every offset, no sampling: the WAL is about 560 bytes and four copies reopen at a time.
  it('a WAL cut at every byte offset reopens to the batches wholly before the cut, and takes new writes', async () => {
    const dataDir = tempDir();
    const { collectionId, file, ends } = await buildDataDir(dataDir, BATCHES);
    const size = ends.at(-1)!;
    const copies = range(LANES).map(() => tempDir());
    const visited = await forEachConcurrently(range(size + 1), LANES, async (cut, lane) => {
      const whole = ends.filter((e) => e <= cut).length;
      const boundary = whole === 0 ? 0 : ends[whole - 1]!;
      const torn = cut !== boundary;
      const where = `cut at ${cut} of ${size} (${whole} whole batches)`;
      await reopenDamaged(
        dataDir,
        copies[lane]!,
        collectionId,
        file,
        (f) => fs.truncateSync(f, cut),
        async (col, logger) => {
          await expectState(col, states[whole]!, where);
          expect(col.stats(), where).toMatchObject({ walCorruptTails: torn ? 1 : 0, walDroppedBytes: cut - boundary, lastLsn: whole });
          expect(logger.warns, where).toEqual(torn ? [expect.objectContaining({ offset: boundary, droppedBytes: cut - boundary })] : []);
          expect(logger.errors, where).toEqual([]);
          // The next write follows the clean prefix.
          expect((await col.upsert([doc('f', 7)])).lsn, where).toBe(whole + 1);
        },
      );
    });
    expect(visited).toBe(size + 1);
  });

  it('a byte flipped at every offset of the WAL reopens to the batches before the damaged record', async () => {
    const dataDir = tempDir();
    const { collectionId, file, ends } = await buildDataDir(dataDir, BATCHES);
    const size = ends.at(-1)!;
    const copies = range(LANES).map(() => tempDir());
    const visited = await forEachConcurrently(range(size), LANES, async (at, lane) => {
      const hit = ends.findIndex((e) => at < e);
      const start = hit === 0 ? 0 : ends[hit - 1]!;
      const where = `byte ${at} of ${size} flipped (batch ${hit + 1})`;
      await reopenDamaged(
        dataDir,
        copies[lane]!,
        collectionId,
        file,
        (f) => {
          const bytes = fs.readFileSync(f);
          bytes[at] = bytes[at]! ^ 0xff;
          fs.writeFileSync(f, bytes);
        },
        async (col, logger) => {
          await expectState(col, states[hit]!, where);
          expect(col.stats(), where).toMatchObject({ walCorruptTails: 1, walDroppedBytes: size - start, lastLsn: hit });
          expect(logger.warns, where).toEqual([expect.objectContaining({ offset: start, droppedBytes: size - start })]);
        },
      );
    });
    expect(visited).toBe(size);
  });

  it('writes after a torn-tail recovery survive the next reopen', async () => {
    const dataDir = tempDir();
    const { collectionId, file, ends } = await buildDataDir(dataDir, BATCHES);
    const cut = ends[2]! + 5; // three whole batches, then five bytes of the fourth
    fs.truncateSync(file, cut);
    const first = await AkiDB.open({ dataDir, compaction: { enableBackground: false }, logger: recordingLogger() });
    const col = await first.getCollectionById(collectionId);
    expect(col.stats().walCorruptTails).toBe(1);
    await expectState(col, states[3]!, 'after the cut');
    const after: Batch[] = [{ upsert: [doc('f', 7), doc('b', 9)] }, { delete: ['c'] }];
    for (const b of after) await runBatch(col, b);
    await first.close();

    const state = modelStates([...BATCHES.slice(0, 3), ...after]).at(-1)!;
    expect([...state.keys()].sort()).toEqual(['a', 'b', 'd', 'f']);
    await reopenDamaged(dataDir, tempDir(), collectionId, file, () => undefined, async (again) => {
      await expectState(again, state, 'second reopen');
      expect(again.stats()).toMatchObject({ walCorruptTails: 0, lastLsn: 5 });
    });
  });

  // Recovery must keep a prefix of the whole log. Here a user "moves" a to b: upsert b (session 1),
  // then delete a (session 2, so in the next WAL file). If the upsert's record is damaged but the
  // later file still replays, both documents are gone: a state that never existed.
  it('a damaged record in an older WAL file does not let a later file replay on top of the gap', async () => {
    const dataDir = tempDir();
    const { collectionId, file, ends } = await buildDataDir(dataDir, [{ upsert: [doc('a', 1)] }, { upsert: [doc('b', 1)] }]);
    const second = await AkiDB.open({ dataDir, compaction: { enableBackground: false }, logger: recordingLogger() });
    await (await second.getCollectionById(collectionId)).delete({ ids: ['a'] });
    await second.close();
    expect(walFiles(walDir(dataDir, collectionId))).toHaveLength(2);

    const bytes = fs.readFileSync(file);
    const inSecondRecord = ends[0]! + 12;
    bytes[inSecondRecord] = bytes[inSecondRecord]! ^ 0xff;
    fs.writeFileSync(file, bytes);

    await reopenDamaged(dataDir, tempDir(), collectionId, file, () => undefined, async (col) => {
      expect(col.stats().walCorruptTails).toBe(1);
      // The clean prefix is batch 1 alone: a is still there.
      expect((await col.get(['a', 'b'])).map((d) => d?.id ?? null)).toEqual(['a', null]);
    });
  });
});
