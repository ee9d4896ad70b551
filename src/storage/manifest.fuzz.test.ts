import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AkiError } from '../errors.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { ManifestStore, type Manifest, type SegmentEntry } from './manifest.js';

const tempDir = useTempDirs('akidb-manifest-fuzz-');

/** The name ManifestStore gives version `v` (see manifest.ts). */
const fileName = (v: number | bigint): string => `v${String(v).padStart(20, '0')}.json`;

/** load()'s answer: the manifest, or the code of the AkiError it rejected with. Anything else fails the test. */
async function loadOrCode(dir: string): Promise<Manifest | { code: string }> {
  try {
    return await new ManifestStore(dir).load();
  } catch (err) {
    if (!(err instanceof AkiError)) throw err;
    return { code: err.code };
  }
}

function isCount(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** A plain file name: what path.join(segmentDir, name) keeps inside the segment directory. */
function isPlainName(v: unknown): boolean {
  return typeof v === 'string' && v.length > 0 && v !== '.' && v !== '..' && !/[/\\\0]/.test(v);
}

/** Everything the engine relies on when it opens a collection from a loaded manifest. */
function expectWellFormed(m: Manifest): void {
  expect(typeof m === 'object' && m !== null && !Array.isArray(m)).toBe(true);
  expect(m.formatVersion).toBe(1);
  for (const k of ['version', 'checkpointLsn', 'nextSegmentId', 'nextRowKey'] as const) expect(isCount(m[k])).toBe(true);
  expect(Array.isArray(m.segments)).toBe(true);
  for (const s of m.segments) {
    expect(isPlainName(s.file)).toBe(true);
    for (const k of ['id', 'rows', 'tombstones', 'minLsn', 'maxLsn', 'bytes'] as const) expect(isCount(s[k])).toBe(true);
    if (s.index !== undefined) {
      expect(isPlainName(s.index.file)).toBe(true);
      expect(typeof s.index.quantization).toBe('string');
      for (const k of ['m', 'efConstruction', 'bytes'] as const) expect(isCount(s.index[k])).toBe(true);
    }
  }
}

const count = fc.nat({ max: 1_000_000 });
const segmentEntry: fc.Arbitrary<SegmentEntry> = fc.record(
  {
    id: count,
    file: fc.nat().map((n) => `seg-${n}.seg`),
    rows: count,
    tombstones: count,
    minLsn: count,
    maxLsn: count,
    bytes: count,
    index: fc.record({ file: fc.nat().map((n) => `seg-${n}.hnsw`), quantization: fc.constantFrom('f32', 'f16', 'i8'), m: fc.integer({ min: 2, max: 64 }), efConstruction: count, bytes: count }),
  },
  { requiredKeys: ['id', 'file', 'rows', 'tombstones', 'minLsn', 'maxLsn', 'bytes'] },
);
const manifest = (version: number): fc.Arbitrary<Manifest> =>
  fc.record({
    formatVersion: fc.constant(1 as const),
    version: fc.constant(version),
    checkpointLsn: count,
    nextSegmentId: count,
    nextRowKey: count,
    segments: fc.array(segmentEntry, { maxLength: 4 }),
  });

/** Values a damaged or hand-edited manifest field might hold. */
const nasty = fc.oneof(
  fc.constantFrom(-1, 0.5, 2 ** 53, 2 ** 64, -0, null, '', '1', true, [], {}, '../escape', '/etc/passwd', 'a/b', '..', '.', 'seg\u00001', 'C:\\x'),
  fc.integer(),
  fc.jsonValue({ maxDepth: 2 }),
);

/** Every path into a JSON value, objects, arrays and leaves alike. */
function pathsOf(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof v !== 'object' || v === null) return [prefix];
  return [prefix, ...Object.entries(v).flatMap(([k, x]) => pathsOf(x, [...prefix, Array.isArray(v) ? Number(k) : k]))];
}

function setAt(root: unknown, p: readonly (string | number)[], value: unknown, remove: boolean): unknown {
  if (p.length === 0) return value;
  const copy = (Array.isArray(root) ? [...(root as unknown[])] : { ...(root as Record<string, unknown>) }) as Record<string | number, unknown>;
  const [k, ...rest] = p as [string | number, ...(string | number)[]];
  if (rest.length === 0 && remove) delete copy[k];
  else copy[k] = setAt(copy[k], rest, value, remove);
  return copy;
}

describe('ManifestStore.load on arbitrary files', () => {
  it('publish then load gives back exactly the manifest published', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 40 }).chain(manifest), async (m) => {
        const dir = tempDir();
        await new ManifestStore(dir).publish(m);
        expect(await loadOrCode(dir)).toEqual(m);
        fs.rmSync(dir, { recursive: true, force: true });
      }),
      { seed: 0x3a_0001, numRuns: 200 },
    );
  });

  it('random bytes as the newest manifest reject with STORAGE_CORRUPT', async () => {
    const dir = tempDir();
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? '', 'utf8'))), async (bytes) => {
        fs.writeFileSync(path.join(dir, fileName(1)), bytes);
        // Nothing short of a matching checksum over a valid body may load.
        expect(await loadOrCode(dir)).toEqual({ code: 'STORAGE_CORRUPT' });
      }),
      { seed: 0x3a_0002, numRuns: 1000 },
    );
  });

  it('a checksummed body holding any JSON, or a valid manifest with fields rewritten, loads well-formed or rejects with STORAGE_CORRUPT', async () => {
    const dir = tempDir();
    const VERSION = 7;
    // Plausible values too, so that some edited manifests stay valid and must load unchanged.
    const edit = fc.record({ path: fc.nat(), value: fc.oneof(nasty, fc.nat({ max: 1000 }), fc.constantFrom('seg-9.seg', 'f16')), remove: fc.boolean() });
    const body = fc.oneof(
      fc.string({ maxLength: 30 }),
      manifest(VERSION).map((m) => JSON.stringify(m)),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? ''),
      fc.tuple(manifest(VERSION), fc.array(edit, { minLength: 1, maxLength: 3 })).map(([m, edits]) => {
        let v: unknown = m;
        for (const e of edits) {
          const paths = pathsOf(v);
          v = setAt(v, paths[e.path % paths.length]!, e.value, e.remove);
        }
        return JSON.stringify(v) ?? '';
      }),
    );
    const envelope = fc.oneof(
      { weight: 4, arbitrary: body.map((b) => ({ crc: crc32(b), body: b })) },
      { weight: 1, arbitrary: fc.record({ crc: fc.oneof(fc.nat({ max: 0xffffffff }), nasty), body: fc.oneof(body, nasty) }, { requiredKeys: [] }) },
      { weight: 1, arbitrary: nasty },
    );
    let loaded = 0;
    await fc.assert(
      fc.asyncProperty(envelope, async (env) => {
        fs.writeFileSync(path.join(dir, fileName(VERSION)), JSON.stringify(env) ?? '');
        const out = await loadOrCode(dir);
        if ('code' in out) {
          expect(out.code).toBe('STORAGE_CORRUPT');
          return;
        }
        expectWellFormed(out);
        expect(out.version).toBe(VERSION);
        // What loads is exactly the checksummed body.
        const e = env as { body: string };
        expect(out).toEqual(JSON.parse(e.body));
        loaded += 1;
      }),
      { seed: 0x3a_0003, numRuns: 1500 },
    );
    expect(loaded).toBeGreaterThan(100);
  });

  it('a published manifest with flipped bits, truncated or extended loads unchanged or rejects with STORAGE_CORRUPT', async () => {
    const dir = tempDir();
    const VERSION = 3;
    const damage = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), flips: fc.array(fc.record({ pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), { minLength: 1, maxLength: 4 }) }),
      fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
      fc.record({ kind: fc.constant('extend' as const), garbage: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    );
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(manifest(VERSION), damage, async (m, d) => {
        await new ManifestStore(dir).publish(m);
        const file = path.join(dir, fileName(VERSION));
        let bytes = fs.readFileSync(file);
        if (d.kind === 'flip') for (const f of d.flips) bytes[f.pos % bytes.length]! ^= 1 << f.bit;
        else if (d.kind === 'truncate') bytes = bytes.subarray(0, d.keep % bytes.length);
        else bytes = Buffer.concat([bytes, d.garbage]);
        fs.writeFileSync(file, bytes);
        const out = await loadOrCode(dir);
        if ('code' in out) {
          expect(out.code).toBe('STORAGE_CORRUPT');
          refused += 1;
        } else {
          // Trailing whitespace, say, changes nothing the checksum covers.
          expect(out).toEqual(m);
        }
      }),
      { seed: 0x3a_0004, numRuns: 500 },
    );
    expect(refused).toBeGreaterThan(400);
  });

  it('whatever version numbers the file names claim, load gives the newest or rejects with STORAGE_CORRUPT', async () => {
    // 20-digit names beyond 2^53 cannot be told apart as numbers.
    const version = fc.oneof(fc.bigInt(1n, 50n), fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 10n ** 20n - 1n), fc.bigInt(2n ** 53n, 10n ** 20n - 1n));
    const junk = fc.constantFrom('v1.json', 'v00000000000000000001.json.tmp-1-2', 'manifest.json', 'v0000000000000000000x.json', 'V00000000000000000001.json');
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(version, { minLength: 1, maxLength: 4 }), fc.array(junk, { maxLength: 2 }), async (versions, junkNames) => {
        const dir = tempDir();
        const safe = versions.filter((v) => v <= BigInt(Number.MAX_SAFE_INTEGER));
        for (const v of safe) await new ManifestStore(dir).publish({ formatVersion: 1, version: Number(v), checkpointLsn: 0, nextSegmentId: 1, nextRowKey: 0, segments: [] });
        // An unrepresentable version can only have been written by hand or by damage: give it a body claiming 2^53 - 1.
        for (const v of versions.filter((x) => !safe.includes(x))) {
          const body = JSON.stringify({ formatVersion: 1, version: Number.MAX_SAFE_INTEGER, checkpointLsn: 0, nextSegmentId: 1, nextRowKey: 0, segments: [] });
          fs.writeFileSync(path.join(dir, fileName(v)), JSON.stringify({ crc: crc32(body), body }));
        }
        for (const j of junkNames) fs.writeFileSync(path.join(dir, j), 'not a manifest');
        const newest = versions.reduce((a, b) => (a > b ? a : b));
        const out = await loadOrCode(dir);
        // publish deletes older versions, so only the newest safe one and the unsafe ones remain.
        if (newest <= BigInt(Number.MAX_SAFE_INTEGER)) expect(out).toMatchObject({ version: Number(newest) });
        else expect(out).toEqual({ code: 'STORAGE_CORRUPT' });
        fs.rmSync(dir, { recursive: true, force: true });
      }),
      { seed: 0x3a_0005, numRuns: 200 },
    );
  });

  it('a directory where the newest manifest should be is a coded error', async () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, fileName(5)));
    expect(await loadOrCode(dir)).toMatchObject({ code: expect.stringMatching(/^STORAGE_(CORRUPT|IO)$/) as unknown });
  });
});
