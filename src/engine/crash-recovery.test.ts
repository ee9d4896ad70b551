import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AkiDB, type Collection, type Document, type Logger, type Metadata } from '../index.js';
import { seededRandom } from '../util/seeded-random.js';

// The child runs the compiled engine (`npm run build` first); this process checks with the sources.
const CHILD = fileURLToPath(new URL('../../test/fixtures/crash-writer.mjs', import.meta.url));
const DIST_ENTRY = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

// Keep in step with crash-writer.mjs.
const WRITERS = 4;
const IDS_PER_WRITER = 150;
const DIMENSION = 16;
const ALL_IDS = Array.from({ length: WRITERS * IDS_PER_WRITER }, (_, i) => `w${Math.floor(i / IDS_PER_WRITER)}-${i % IDS_PER_WRITER}`);

/**
 * Child runs on one data dir. Most are killed a random 50-600 ms after the child's first
 * acknowledgement; every tenth is killed 0-400 ms after spawn instead, whatever the child is doing
 * (loading, opening, replaying, writing), spread through the run so it meets segments and indexes.
 */
const ROUNDS = 60;
const isEarlyKill = (round: number): boolean => round % 10 === 9;

function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}


/** Version `version` of `id` as `get` must return it: the child's docFor, vector rounded to float32. */
function docFor(id: string, version: number): Document {
  const rnd = seededRandom(hash32(`${id}@${version}`));
  const vector = Array.from({ length: DIMENSION }, () => rnd() * 2 - 1);
  vector[0] = 0.5 + rnd();
  const writer = Number(id.slice(1, id.indexOf('-')));
  const metadata: Metadata = { writer, version, parity: version % 2 === 0 ? 'even' : 'odd', tags: [id, `v${version % 7}`], nested: { h: hash32(id) % 1000, pad: 'x'.repeat(version % 9) } };
  return { id, vector: vector.map(Math.fround), metadata, text: version % 3 === 0 ? null : `doc ${id} version ${version}` };
}

interface Op {
  op: number;
  w: number;
  kind: 'upsert' | 'delete';
  ids: string[];
  version?: number;
}

/** Per id: the version of its last acknowledged upsert, or null after a delete; absent if never written. */
type Model = Map<string, number | null>;

function applyOp(model: Model, op: Op): void {
  for (const id of op.ids) model.set(id, op.kind === 'upsert' ? op.version! : null);
}

function expectedDoc(id: string, version: number | null | undefined): Document | null {
  return version === null || version === undefined ? null : docFor(id, version);
}

function sameDoc(got: Document | null | undefined, want: Document | null): boolean {
  return JSON.stringify(got ?? null) === JSON.stringify(want);
}

interface ChildRun {
  acked: Op[];
  /** Sent (its `B` line is out) but not acknowledged when the child died. */
  pending: Op[];
  killed: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Run the writer on `dataDir` and SIGKILL it `delayMs` after its first acknowledgement (or after spawn). */
function runChild(dataDir: string, round: number, seed: number, delayMs: number, afterFirstAck: boolean): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dataDir, String(round), String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const begun = new Map<number, Op>();
    const acked: Op[] = [];
    let out = '';
    let stderr = '';
    let killed = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      timer ??= setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, delayMs);
    };
    // A child that never acknowledges anything must not hang the suite.
    const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
    if (!afterFirstAck) arm();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line.startsWith('B ')) {
          const op = JSON.parse(line.slice(2)) as Op;
          begun.set(op.op, op);
        } else if (line.startsWith('A ')) {
          const op = JSON.parse(line.slice(2)) as Op;
          if (JSON.stringify(begun.get(op.op)) !== JSON.stringify(op)) stderr += `unexpected ack of an operation never begun: ${line}\n`;
          begun.delete(op.op);
          acked.push(op);
          arm();
        } else {
          stderr += `unexpected stdout line: ${line}\n`;
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    // 'close': the process is reaped and both pipes are drained, so every line it wrote is in.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      // A trailing partial line is an acknowledgement the kill cut short: that op stays pending.
      resolve({ acked, pending: [...begun.values()], killed, code, signal, stderr });
    });
  });
}

function recordingLogger(): Logger & { errors: object[] } {
  const errors: object[] = [];
  return { errors, info: () => undefined, warn: () => undefined, error: (obj) => void errors.push(obj) };
}

/**
 * Reopen in this process and compare with the model: acknowledged state exactly, each pending
 * batch all-or-nothing. Folds what the pending batches did into the model and returns stats.
 */
async function verify(dataDir: string, model: Model, pending: readonly Op[], where: string): Promise<{ segments: number; indexedSegments: number; corruptTails: number; pendingApplied: number }> {
  const logger = recordingLogger();
  const db = await AkiDB.open({ dataDir, compaction: { enableBackground: false }, logger });
  try {
    const col: Collection = await db.getCollection('crash');
    const got = new Map<string, Document | null>();
    const docs = await col.get(ALL_IDS);
    ALL_IDS.forEach((id, i) => got.set(id, docs[i] ?? null));

    const uncertain = new Set(pending.flatMap((op) => op.ids));
    expect(uncertain.size, `${where}: pending batches overlap`).toBe(pending.reduce((a, op) => a + op.ids.length, 0));
    const wrong = ALL_IDS.filter((id) => !uncertain.has(id) && !sameDoc(got.get(id), expectedDoc(id, model.get(id)))).map((id) => ({
      id,
      want: expectedDoc(id, model.get(id)),
      got: got.get(id),
    }));
    expect(wrong, `${where}: acknowledged state differs`).toEqual([]);

    let pendingApplied = 0;
    for (const op of pending) {
      const after = op.ids.map((id) => sameDoc(got.get(id), expectedDoc(id, op.kind === 'upsert' ? op.version : null)));
      const before = op.ids.map((id) => sameDoc(got.get(id), expectedDoc(id, model.get(id))));
      // One batch is one WAL record: every id shows the batch or none does.
      const applied = after.every(Boolean);
      expect(applied || before.every(Boolean), `${where}: unacknowledged ${op.kind} ${JSON.stringify(op)} half applied: after=${JSON.stringify(after)} before=${JSON.stringify(before)}`).toBe(true);
      if (applied && !before.every(Boolean)) pendingApplied += 1;
      if (applied) applyOp(model, op);
    }

    const live = ALL_IDS.filter((id) => typeof model.get(id) === 'number');
    expect(await col.count(), `${where}: count`).toBe(live.length);

    const probe = docFor('w0-0', 7).vector;
    const hits = await col.query({ vector: probe, topK: 100, includeVector: true });
    expect(hits.length, `${where}: query result size`).toBe(Math.min(100, live.length));
    const badHits = hits.filter((h) => {
      const want = expectedDoc(h.id, model.get(h.id));
      return want === null || JSON.stringify([h.vector, h.metadata]) !== JSON.stringify([want.vector, want.metadata]);
    });
    expect(badHits.map((h) => h.id), `${where}: query returned dead or stale documents`).toEqual([]);

    const writer2 = live.filter((id) => id.startsWith('w2-'));
    const filtered = await col.query({ vector: probe, topK: 50, filter: { writer: 2 } });
    expect(filtered.length, `${where}: filtered query result size`).toBe(Math.min(50, writer2.length));
    expect(
      filtered.filter((h) => !writer2.includes(h.id)).map((h) => h.id),
      `${where}: filtered query returned dead or foreign ids`,
    ).toEqual([]);

    const stats = col.stats();
    expect(logger.errors, `${where}: errors logged while reopening`).toEqual([]);
    return { segments: stats.segments, indexedSegments: stats.indexedSegments, corruptTails: stats.walCorruptTails, pendingApplied };
  } finally {
    await db.close();
  }
}

describe('crash recovery', () => {
  let dataDir = '';
  beforeAll(() => void (dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-'))));
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it(
    'every acknowledged write survives SIGKILL mid-write, across repeated kills of the same data dir',
    async () => {
      expect(fs.existsSync(DIST_ENTRY), `${DIST_ENTRY} is missing: run npm run build first`).toBe(true);
      const seed = Number(process.env.AKIDB_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
      const rnd = seededRandom(seed);
      const model: Model = new Map();
      const totals = { rounds: 0, acked: 0, deletesAcked: 0, pending: 0, pendingApplied: 0, maxSegments: 0, maxIndexedSegments: 0, corruptTails: 0 };
      const started = Date.now();

      for (let round = 0; round < ROUNDS; round++) {
        const early = isEarlyKill(round);
        const delayMs = early ? Math.floor(rnd() * 400) : 50 + Math.floor(rnd() * 551);
        const where = `round ${round} (AKIDB_CRASH_SEED=${seed}, kill ${delayMs} ms after ${early ? 'spawn' : 'first ack'})`;
        const run = await runChild(dataDir, round, seed, delayMs, !early);
        expect({ killed: run.killed, signal: run.signal, code: run.code }, `${where}: the child must die by our SIGKILL, not on its own. stderr:\n${run.stderr}`).toEqual({ killed: true, signal: 'SIGKILL', code: null });
        const errorLines = run.stderr.split('\n').filter((l) => l.includes('"level":"error"') || l.startsWith('unexpected'));
        expect(errorLines, `${where}: the child reported errors`).toEqual([]);
        if (!early) expect(run.acked.length, `${where}: acknowledged writes`).toBeGreaterThan(0);
        expect(run.pending.length, `${where}: at most one op in flight per writer`).toBeLessThanOrEqual(WRITERS);

        for (const op of run.acked) applyOp(model, op);
        const v = await verify(dataDir, model, run.pending, where);

        totals.rounds += 1;
        totals.acked += run.acked.length;
        totals.deletesAcked += run.acked.filter((op) => op.kind === 'delete').length;
        totals.pending += run.pending.length;
        totals.pendingApplied += v.pendingApplied;
        totals.corruptTails += v.corruptTails;
        totals.maxSegments = Math.max(totals.maxSegments, v.segments);
        totals.maxIndexedSegments = Math.max(totals.maxIndexedSegments, v.indexedSegments);
      }

      console.log(`crash recovery: seed ${seed}, ${((Date.now() - started) / 1000).toFixed(1)} s`, totals);
      // The run really exercised the engine: many writes and deletes, flushes to segments, an HNSW index.
      expect(totals.rounds).toBe(ROUNDS);
      expect(totals.acked).toBeGreaterThan(ROUNDS * 10);
      expect(totals.deletesAcked).toBeGreaterThan(0);
      expect(totals.maxSegments).toBeGreaterThan(0);
      expect(totals.maxIndexedSegments).toBeGreaterThan(0);
    },
    240_000,
  );
});
