import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AkiError } from '../errors.js';
import { compileFilter, parseFilter, predicateOf, type Filter, type FilterNode, type Metadata, type Predicate } from '../index/filter.js';
import { evaluateOnColumns } from '../index/filter-columns.js';
import { inverseNorm, normalized, presentDistance, rawDistance, toVector, type Metric } from '../index/metric.js';
import { exactTopK, HnswIndex, type HnswParams } from '../index/hnsw-index.js';
import { buildIndexInWorker } from '../index/index-builder.js';
import { ManifestStore, type Manifest, type SegmentEntry } from '../storage/manifest.js';
import { SegmentFile, writeSegmentFile, type SegmentRowInput } from '../storage/segment-file.js';
import { Wal, type WalOptions } from '../storage/wal.js';
import type { TieringPolicy } from '../catalog/catalog.js';
import { decodeWalOp, encodeWalOp, type StoredDoc, type WalOp } from '../storage/wal-record.js';
import { Memtable, type MemEntry } from './memtable.js';
import type { EngineOptions } from './options.js';
import { planSegmentSearch, widenBeatsScan } from './query-planner.js';
import { Segment } from './segment.js';
import { TopK } from './top-k.js';
import { detached, setSpanAttributes, withSpan, type Attributes, type Span } from '../observability/tracing.js';

/** A document as callers write it. */
export interface DocumentInput {
  id: string;
  vector: number[] | Float32Array;
  metadata?: Metadata | null;
  text?: string | null;
}

/** A document as `get` returns it. */
export interface Document {
  id: string;
  vector: number[];
  metadata: Metadata | null;
  text: string | null;
}

/** A document as `scan` yields it: the vector as float32, as stored. */
export interface ScannedDocument {
  id: string;
  vector: Float32Array;
  metadata: Metadata | null;
  text: string | null;
}

export interface QueryRequest {
  vector: number[] | Float32Array;
  topK: number;
  filter?: Filter;
  efSearch?: number;
  includeVector?: boolean;
  includeMetadata?: boolean;
}

/** One match, best first: `distance` smaller is closer, `score` larger is closer. */
export interface QueryMatch {
  id: string;
  score: number;
  distance: number;
  metadata?: Metadata | null;
  vector?: number[];
}

export interface CollectionInfo {
  collectionId: string;
  name: string;
  tenant: string;
  database: string;
  dimension: number;
  metric: Metric;
  index: HnswParams;
  createdAt: string;
  tieringPolicy: TieringPolicy;
}

/** Counters and state a collection reports about itself. */
export interface CollectionStats {
  documents: number;
  memtableEntries: number;
  segments: number;
  indexedSegments: number;
  indexedRows: number;
  rawRows: number;
  lastLsn: number;
  checkpointLsn: number;
  manifestVersion: number;
  walCorruptTails: number;
  walDroppedBytes: number;
  flushes: number;
  merges: number;
  indexBuilds: number;
  /** True when every document sits in an indexed segment (or the collection is below the index threshold and flushed). */
  fullyIndexed: boolean;
}

interface Location {
  seg: Segment;
  row: number;
}

const SEGMENT_FILE = /^seg-(\d+)\.(seg|hnsw)$/;
/** Below this many rows a raw segment is scanned in JavaScript; from it on, by the SIMD kernel (measured: it wins from about 16 rows at 128 dimensions). */
const NATIVE_SCAN_MIN_ROWS = 32;

/**
 * One collection: WAL + memtable + immutable segments under versioned manifests.
 *
 * Contract: `upsert` and `delete` resolve after their WAL record is fsynced and applied; a query
 * sees every write acknowledged before it started. Background work (flush, merge, index build)
 * never blocks writers beyond one event-loop turn and is serialized per collection.
 */
export class Collection {
  readonly info: CollectionInfo;
  readonly #dir: string;
  readonly #opts: EngineOptions;
  readonly #manifests: ManifestStore;
  #manifest: Manifest;
  #wal: Wal;
  /** Memtables, newest first: [0] takes writes, the rest are frozen and being flushed. Replaced, never mutated, so a query may hold it. */
  #mems: Memtable[];
  #segments: Segment[] = [];
  #locator = new Map<string, Location>();
  #closed = false;
  #dropped = false;
  /** Flushes run one at a time, oldest memtable first. */
  #flushLane: Promise<void> = Promise.resolve();
  /** Merges and index builds run one at a time, beside flushes. */
  #mergeLane: Promise<void> = Promise.resolve();
  /** Manifest edits (publish + install) run one at a time. */
  #manifestLane: Promise<void> = Promise.resolve();
  #flushQueued = false;
  #mergeQueued = false;
  #nextSegmentId: number;
  #nextRowKey: number;
  #idleTimer: NodeJS.Timeout | null = null;
  #lastWriteAt = 0;
  readonly #abort = new AbortController();
  #stats = { walCorruptTails: 0, walDroppedBytes: 0, flushes: 0, merges: 0, indexBuilds: 0 };

  get #active(): Memtable {
    return this.#mems[0]!;
  }

  private constructor(info: CollectionInfo, dir: string, opts: EngineOptions, manifests: ManifestStore, manifest: Manifest, wal: Wal) {
    this.info = info;
    this.#dir = dir;
    this.#opts = opts;
    this.#manifests = manifests;
    this.#manifest = manifest;
    this.#wal = wal;
    this.#mems = [new Memtable(info.dimension)];
    this.#nextSegmentId = manifest.nextSegmentId;
    this.#nextRowKey = manifest.nextRowKey;
  }

  /** Open (or create) the collection stored in `dir`, replaying its WAL past the checkpoint. */
  static async open(info: CollectionInfo, dir: string, opts: EngineOptions, walHooks: Pick<WalOptions, 'commitHook' | 'groupCommitMs'> = {}): Promise<Collection> {
    const segDir = path.join(dir, 'segments');
    await mkdir(segDir, { recursive: true });
    const manifests = new ManifestStore(path.join(dir, 'manifests'));
    const manifest = await manifests.load();
    await removeUnreferencedFiles(segDir, manifest);
    const segments: Segment[] = [];
    try {
      for (const entry of manifest.segments) segments.push(openSegment(segDir, entry, info, opts));
    } catch (err) {
      for (const s of segments) s.close();
      throw err;
    }
    const { wal, replay } = await Wal.open(path.join(dir, 'wal'), manifest.checkpointLsn, {
      ...walHooks,
      sync: opts.walSync,
      onCorruptTail: (t) => opts.logger.warn({ collection: info.name, ...t }, 'WAL tail is torn or corrupt; skipped it and kept the clean prefix'),
    });
    const col = new Collection(info, dir, opts, manifests, manifest, wal);
    col.#stats.walCorruptTails = replay.corruptTails;
    col.#stats.walDroppedBytes = replay.droppedBytes;
    col.#segments = segments;
    col.#rebuildLiveness();
    for (const r of replay.records) {
      let op: WalOp;
      try {
        op = decodeWalOp(r.payload, info.dimension);
      } catch (err) {
        // A record that passed its CRC but does not decode was written by a broken build; keep
        // what decodes rather than refuse to open.
        col.#stats.walCorruptTails += 1;
        opts.logger.warn({ collection: info.name, lsn: r.lsn, err: String(err) }, 'WAL record failed to decode; skipped');
        continue;
      }
      col.#apply(op, r.lsn);
    }
    col.#scheduleMaintenance();
    return col;
  }

  get name(): string {
    return this.info.name;
  }

  get dimension(): number {
    return this.info.dimension;
  }

  get metric(): Metric {
    return this.info.metric;
  }

  // ---------------------------------------------------------------- writes

  /** Insert or replace documents; resolves once the batch is durable in the WAL. */
  async upsert(docs: readonly DocumentInput[]): Promise<{ upserted: number; lsn: number }> {
    return withSpan('collection.upsert', () => this.#spanAttrs({ 'akidb.documents': Array.isArray(docs) ? docs.length : 0 }), (span) => this.#upsert(docs, span));
  }

  async #upsert(docs: readonly DocumentInput[], span: Span): Promise<{ upserted: number; lsn: number }> {
    this.#checkOpen();
    if (!Array.isArray(docs)) throw new AkiError('INVALID_ARGUMENT', {}, 'upsert takes an array of documents');
    if (docs.length > this.#opts.limits.maxBatchDocuments) throw new AkiError('PAYLOAD_TOO_LARGE', { documents: docs.length, maxBatchDocuments: this.#opts.limits.maxBatchDocuments }, `A batch holds at most ${this.#opts.limits.maxBatchDocuments} documents`);
    const stored = (docs as readonly DocumentInput[]).map((d, i) => this.#validateDoc(d, i));
    if (stored.length === 0) return { upserted: 0, lsn: this.#wal.lastLsn };
    const op: WalOp = { type: 'upsert', docs: stored };
    const lsn = await this.#appendToWal(op, (l) => this.#apply(op, l));
    setSpanAttributes(span, () => ({ 'akidb.lsn': lsn }));
    this.#afterWrite();
    this.#opts.events.upserted?.({ collectionId: this.info.collectionId, tieringPolicy: this.info.tieringPolicy, documents: stored.length });
    return { upserted: stored.length, lsn };
  }

  /**
   * Delete by ids, by filter, or both (ids narrowed by the filter); resolves once durable with how
   * many live documents it removed. A filter is evaluated when the delete takes its place in LSN
   * order, like every other write: it sees every write issued before it and none issued after.
   */
  async delete(req: { ids?: readonly string[]; filter?: Filter }): Promise<{ deleted: number; lsn: number }> {
    return withSpan('collection.delete', () => this.#spanAttrs({ 'akidb.ids': Array.isArray(req?.ids) ? req.ids.length : 0, 'akidb.filtered': req?.filter !== undefined }), (span) => this.#delete(req, span));
  }

  async #delete(req: { ids?: readonly string[]; filter?: Filter }, span: Span): Promise<{ deleted: number; lsn: number }> {
    this.#checkOpen();
    if (typeof req !== 'object' || req === null) throw new AkiError('INVALID_ARGUMENT', {}, 'delete takes { ids } or { filter }');
    const { ids, filter } = req;
    if (ids === undefined && filter === undefined) throw new AkiError('INVALID_ARGUMENT', {}, 'delete needs ids or a filter');
    let idList: string[] | null = null;
    if (ids !== undefined) {
      if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) throw new AkiError('INVALID_ARGUMENT', {}, 'ids must be an array of strings');
      if (ids.length > this.#opts.limits.maxBatchDocuments) throw new AkiError('PAYLOAD_TOO_LARGE', { ids: ids.length }, `At most ${this.#opts.limits.maxBatchDocuments} ids a call`);
      idList = [...new Set(ids)];
    }
    let op: WalOp;
    let pred: Predicate | undefined;
    if (filter !== undefined) {
      // Compiled now, against the limits; the WAL record is encoded before this call yields, so
      // later changes to the caller's object reach neither.
      pred = predicateOf(parseFilter(filter, this.#opts.limits.filter));
      op = { type: 'deleteWhere', filter, ids: idList };
    } else {
      if (idList!.length === 0) return { deleted: 0, lsn: this.#wal.lastLsn };
      op = { type: 'delete', ids: idList! };
    }
    let deleted = 0;
    const lsn = await this.#appendToWal(op, (l) => {
      deleted = this.#apply(op, l, pred);
    });
    setSpanAttributes(span, () => ({ 'akidb.lsn': lsn, 'akidb.deleted': deleted }));
    this.#afterWrite();
    return { deleted, lsn };
  }

  /** Append `op` to the WAL (span `wal.append`, until fsynced) and apply it (span `memtable.apply`, inside it). */
  #appendToWal(op: WalOp, apply: (lsn: number) => void): Promise<number> {
    const record = encodeWalOp(op, this.dimension);
    return withSpan('wal.append', () => ({ 'akidb.wal.bytes': record.length }), (span) =>
      // The WAL applies a group's records in the context of whichever writer started the group.
      this.#wal.append(record, (lsn) => withSpan('memtable.apply', () => ({ 'akidb.lsn': lsn }), () => apply(lsn), { parent: span })),
    );
  }

  /** The attributes every span of this collection carries, plus `extra`. */
  #spanAttrs(extra?: Attributes): Attributes {
    return { 'akidb.collection': this.name, 'akidb.collection_id': this.info.collectionId, 'akidb.tenant': this.info.tenant, 'akidb.database': this.info.database, ...extra };
  }

  #validateDoc(d: DocumentInput, i: number): StoredDoc {
    const where = { index: i };
    if (typeof d !== 'object' || d === null) throw new AkiError('INVALID_DOCUMENT', where, `Document ${i} is not an object`);
    const { id, metadata, text } = d;
    if (typeof id !== 'string' || id.length === 0) throw new AkiError('INVALID_DOCUMENT', where, `Document ${i} needs a non-empty string id`);
    if (Buffer.byteLength(id, 'utf8') > this.#opts.limits.maxIdBytes) throw new AkiError('INVALID_DOCUMENT', { ...where, maxIdBytes: this.#opts.limits.maxIdBytes }, `Document ${i}: id longer than ${this.#opts.limits.maxIdBytes} bytes`);
    const vector = toVector(d.vector, this.dimension, this.metric, { ...where, id });
    let meta: Metadata | null = null;
    let metadataJson: string | undefined;
    if (metadata !== undefined && metadata !== null) {
      if (typeof metadata !== 'object' || Array.isArray(metadata)) throw new AkiError('INVALID_DOCUMENT', { ...where, id }, `Document ${i}: metadata must be a JSON object`);
      let json: string;
      try {
        json = JSON.stringify(metadata);
      } catch (err) {
        throw new AkiError('INVALID_DOCUMENT', { ...where, id }, `Document ${i}: metadata is not JSON-serializable`, { cause: err });
      }
      if (Buffer.byteLength(json, 'utf8') > this.#opts.limits.maxMetadataBytes) throw new AkiError('PAYLOAD_TOO_LARGE', { ...where, id, maxMetadataBytes: this.#opts.limits.maxMetadataBytes }, `Document ${i}: metadata exceeds ${this.#opts.limits.maxMetadataBytes} bytes`);
      // Store a JSON copy: later changes to the caller's object must not reach stored data.
      const copy: unknown = JSON.parse(json);
      if (typeof copy !== 'object' || copy === null || Array.isArray(copy)) throw new AkiError('INVALID_DOCUMENT', { ...where, id }, `Document ${i}: metadata must serialize to a JSON object`);
      meta = copy as Metadata;
      metadataJson = json;
    }
    let txt: string | null = null;
    if (text !== undefined && text !== null) {
      if (typeof text !== 'string') throw new AkiError('INVALID_DOCUMENT', { ...where, id }, `Document ${i}: text must be a string`);
      if (Buffer.byteLength(text, 'utf8') > this.#opts.limits.maxTextBytes) throw new AkiError('PAYLOAD_TOO_LARGE', { ...where, id }, `Document ${i}: text exceeds ${this.#opts.limits.maxTextBytes} bytes`);
      txt = text;
    }
    return metadataJson === undefined ? { id, vector, metadata: meta, text: txt } : { id, vector, metadata: meta, text: txt, metadataJson };
  }

  /** Apply a durable WAL op to the memtable; returns how many live documents a delete removed. */
  #apply(op: WalOp, lsn: number, compiled?: Predicate): number {
    const mt = this.#active;
    if (op.type === 'upsert') {
      for (const d of op.docs) {
        this.#supersede(d.id);
        mt.set(d.id, { lsn, vector: d.vector, metadata: d.metadata, text: d.text, invNorm: inverseNorm(this.metric, d.vector), row: -1 });
      }
      return op.docs.length;
    }
    let targets: Iterable<string>;
    if (op.type === 'deleteWhere') {
      // Limits were checked when the delete was accepted; replay must not refuse it later.
      const pred = compiled ?? compileFilter(op.filter, { maxDepth: Infinity, maxClauses: Infinity, maxInValues: Infinity });
      const found: string[] = [];
      if (op.ids !== null) {
        for (const id of op.ids) if (this.#isLive(id) && pred(this.#liveMetadata(id))) found.push(id);
      } else {
        this.#forEachLive((id, meta) => {
          if (pred(meta)) found.push(id);
        });
      }
      targets = found;
    } else {
      targets = op.ids;
    }
    let deleted = 0;
    for (const id of targets) {
      if (this.#isLive(id)) deleted += 1;
      this.#supersede(id);
      mt.set(id, { lsn, vector: null, metadata: null, text: null, invNorm: 0, row: -1 });
    }
    return deleted;
  }

  /** Hide the segment copy of `id`: the memtable now holds its newest version. */
  #supersede(id: string): void {
    const loc = this.#locator.get(id);
    if (loc) {
      loc.seg.markDead(loc.row);
      this.#locator.delete(id);
    }
  }

  #isLive(id: string): boolean {
    const e = this.#memEntry(id);
    if (e) return e.vector !== null;
    return this.#locator.has(id);
  }

  /** Newest memtable entry of `id` (active first, then frozen newest first). */
  #memEntry(id: string): MemEntry | undefined {
    for (const f of this.#mems) {
      const e = f.entries.get(id);
      if (e) return e;
    }
    return undefined;
  }

  #liveMetadata(id: string): Metadata | null {
    const e = this.#memEntry(id);
    if (e) return e.vector ? e.metadata : null;
    const loc = this.#locator.get(id);
    return loc ? loc.seg.metadata[loc.row]! : null;
  }

  /** Visit every live document once. */
  #forEachLive(fn: (id: string, metadata: Metadata | null) => void): void {
    const mems = this.#mems;
    mems.forEach((mt, i) => {
      for (const [id, e] of mt.entries) {
        if (e.vector === null) continue;
        if (i > 0 && shadowed(mems, i, id)) continue;
        fn(id, e.metadata);
      }
    });
    for (const seg of this.#segments) {
      for (let r = 0; r < seg.rowCount; r++) if (seg.alive[r] === 1) fn(seg.ids[r]!, seg.metadata[r]!);
    }
  }

  #afterWrite(): void {
    this.#lastWriteAt = Date.now();
    const c = this.#opts.compaction;
    if (!c.enableBackground) return;
    if (this.#active.ops >= c.thresholdOps || this.#wal.activeFileBytes >= c.thresholdBytes) this.#scheduleMaintenance();
    if (this.#idleTimer === null) {
      this.#idleTimer = setTimeout(() => this.#onIdleTimer(), c.idleFlushMs);
      this.#idleTimer.unref();
    }
  }

  #onIdleTimer(): void {
    this.#idleTimer = null;
    if (this.#closed) return;
    const idleFor = Date.now() - this.#lastWriteAt;
    if (idleFor < this.#opts.compaction.idleFlushMs) {
      this.#idleTimer = setTimeout(() => this.#onIdleTimer(), this.#opts.compaction.idleFlushMs - idleFor);
      this.#idleTimer.unref();
      return;
    }
    this.#scheduleMaintenance(true);
  }

  // ---------------------------------------------------------------- reads

  /** Nearest live documents to `vector` that pass `filter`, best first. */
  async query(req: QueryRequest): Promise<QueryMatch[]> {
    return this.querySync(req);
  }

  /** Synchronous form of `query`, for callers already off the hot path of the event loop. */
  querySync(req: QueryRequest): QueryMatch[] {
    return withSpan('collection.query', () => this.#spanAttrs(), (span) => this.#query(req, span));
  }

  /** The query's stages, each a span under `collection.query`: plan, memtable scan, one search a segment, merge. */
  #query(req: QueryRequest, span: Span): QueryMatch[] {
    const { topK, ef, q, qInv, qNative, node, pred } = withSpan('query.plan', undefined, () => this.#planQuery(req));
    setSpanAttributes(span, () => ({ 'akidb.top_k': topK, 'akidb.ef_search': ef, 'akidb.filtered': node !== null, 'akidb.segments': this.#segments.length }));
    const top = new TopK<Hit>(topK);
    withSpan('query.memtable_scan', () => ({ 'akidb.memtables': this.#mems.length, 'akidb.memtable.entries': this.#mems.reduce((a, m) => a + m.size, 0) }), () => this.#scanMemtables(q, qNative, qInv, pred, topK, top));
    for (const seg of this.#segments) {
      if (seg.aliveCount === 0) continue;
      withSpan('query.segment_search', () => ({ 'akidb.segment.id': seg.entry.id, 'akidb.segment.live_rows': seg.aliveCount, 'akidb.segment.indexed': seg.index !== null }), (s) => this.#searchSegment(seg, q, qNative, qInv, node, topK, ef, top, s));
    }
    const { metric } = this;
    const includeMetadata = req.includeMetadata ?? true;
    return withSpan('query.merge', () => ({ 'akidb.matches': top.size }), () =>
      top.sorted().map(({ distance, item }) => {
        const shown = presentDistance(metric, distance);
        const match: QueryMatch = { id: item.id, score: shown.score, distance: shown.distance };
        if (includeMetadata) match.metadata = item.kind === 'mem' ? item.entry.metadata : item.seg.metadata[item.row]!;
        if (req.includeVector) match.vector = Array.from(item.kind === 'mem' ? item.entry.vector! : item.seg.readVectors([item.row]));
        return match;
      }),
    );
  }

  /** Check the request, compile its filter and prepare the query vector. */
  #planQuery(req: QueryRequest): { topK: number; ef: number; q: Float32Array; qInv: number; qNative: Float32Array; node: FilterNode | null; pred: Predicate | null } {
    this.#checkOpen();
    if (typeof req !== 'object' || req === null) throw new AkiError('INVALID_ARGUMENT', {}, 'query takes a request object');
    const { topK } = req;
    if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 1 || topK > this.#opts.limits.maxTopK) throw new AkiError('INVALID_TOP_K', { topK: topK, max: this.#opts.limits.maxTopK }, `topK must be an integer in 1..${this.#opts.limits.maxTopK}`);
    const ef = req.efSearch ?? this.info.index.efSearch;
    if (typeof ef !== 'number' || !Number.isInteger(ef) || ef < 1 || ef > 10_000) throw new AkiError('INVALID_ARGUMENT', { efSearch: ef }, 'efSearch must be an integer in 1..10000');
    const q = toVector(req.vector, this.dimension, this.metric, { field: 'vector' }, false);
    const node = req.filter === undefined || req.filter === null ? null : parseFilter(req.filter, this.#opts.limits.filter);
    const pred = node ? predicateOf(node) : null;
    const qInv = inverseNorm(this.metric, q);
    // Native kernels (graph, exact scan) get a unit query under cosine: the graph stores f16.
    const qNative = this.metric === 'cosine' ? normalized(q, qInv) : q;
    return { topK, ef, q, qInv, qNative, node, pred };
  }

  /**
   * Memtables: an exact scan of the newest version of each id, a vector block at a time. A block's
   * qualifying rows (live, not shadowed by a newer memtable, matching the filter) are ranked by
   * the SIMD kernel: the whole block in place when most of it qualifies, asking for `k` plus the
   * rows that do not (so the best `k` that do are always among the answer); a gathered copy of
   * the qualifying rows when few do; a loop here when too few for a native call.
   */
  #scanMemtables(q: Float32Array, qNative: Float32Array, qInv: number, pred: Predicate | null, k: number, top: TopK<Hit>): void {
    const mems = this.#mems;
    const dim = this.dimension;
    const metric = this.metric;
    // Which rows of the block at hand qualify: one buffer for the whole query, sized to the largest block.
    let mask = new Uint8Array(0);
    for (let m = 0; m < mems.length; m++) {
      const mt = mems[m]!;
      for (const block of mt.blocks) {
        const { filled, firstRow, vectors } = block;
        if (filled === block.dead) continue;
        if (mask.length < filled) mask = new Uint8Array(vectors.length / dim);
        let count = 0;
        for (let i = 0; i < filled; i++) {
          const e = mt.entryAt(firstRow + i);
          const ok = e !== null && (pred === null || pred(e.metadata)) && (m === 0 || !shadowed(mems, m, mt.idAt(firstRow + i)!));
          mask[i] = ok ? 1 : 0;
          if (ok) count += 1;
        }
        if (count === 0) continue;
        if (count < NATIVE_SCAN_MIN_ROWS) {
          for (let i = 0; i < filled; i++) {
            if (mask[i] === 0) continue;
            const e = mt.entryAt(firstRow + i)!;
            const d = rawDistance(metric, q, 0, vectors, i * dim, dim, qInv, e.invNorm);
            if (d < top.worst) top.push(d, { kind: 'mem', entry: e, id: mt.idAt(firstRow + i)! });
          }
          continue;
        }
        // Most rows qualify: rank the block in place, asking for k plus the rows that do not.
        // Few do: rank a gathered copy of them.
        const gather = count * 4 < filled;
        const rows = gather ? new Int32Array(count) : null;
        let ranked = vectors.subarray(0, filled * dim);
        if (rows !== null) {
          ranked = new Float32Array(count * dim);
          for (let i = 0, n = 0; i < filled; i++) {
            if (mask[i] === 0) continue;
            ranked.set(vectors.subarray(i * dim, (i + 1) * dim), n * dim);
            rows[n++] = i;
          }
        }
        const best = exactTopK(ranked, dim, qNative, rows !== null ? Math.min(k, count) : Math.min(filled, k + (filled - count)), metric);
        for (let j = 0; j < best.rows.length; j++) {
          const d = best.distances[j]!;
          if (d >= top.worst) break;
          const i = rows !== null ? rows[Number(best.rows[j]!)]! : Number(best.rows[j]!);
          if (mask[i] === 1) top.push(d, { kind: 'mem', entry: mt.entryAt(firstRow + i)!, id: mt.idAt(firstRow + i)! });
        }
      }
    }
  }

  #searchSegment(seg: Segment, q: Float32Array, qNative: Float32Array, qInv: number, filter: FilterNode | null, k: number, ef: number, top: TopK<Hit>, span: Span): void {
    let matchCount = seg.aliveCount;
    let matchMask: Uint8Array = seg.alive;
    if (filter) {
      // Exact selectivity: the filter over every live row of the segment, column by column.
      const mask = evaluateOnColumns(filter, seg.columns);
      const alive = seg.alive;
      let count = 0;
      for (let r = 0; r < mask.length; r++) count += mask[r]! &= alive[r]!;
      matchCount = count;
      matchMask = mask;
      if (matchCount === 0) return;
    }
    const plan = planSegmentSearch({ indexed: seg.index !== null, indexSize: seg.index?.size ?? 0, matchCount, k });
    setSpanAttributes(span, () => ({ 'akidb.plan': plan.kind, 'akidb.segment.match_count': matchCount, ...(plan.kind === 'hnsw' ? { 'akidb.hnsw.fetch': plan.fetch } : {}) }));
    if (plan.kind === 'hnsw') {
      let fetch = plan.fetch;
      for (;;) {
        // Ask for twice the candidates and judge by the first half: the tail of an approximate
        // result list is where the graph misses most, so only the head vouches for a match set.
        const hits = seg.index!.search(qNative, fetch * 2, ef);
        let acceptedInHead = 0;
        for (let i = 0; i < hits.keys.length; i++) {
          const row = seg.rowOfKey(Number(hits.keys[i]!));
          if (row < 0 || matchMask[row] !== 1) continue;
          if (i < fetch) acceptedInHead += 1;
          const d = hits.distances[i]!;
          if (d < top.worst) top.push(d, { kind: 'seg', seg, row, id: seg.ids[row]! });
        }
        // Enough matching rows among the nearest `fetch` means the true nearest matches are
        // among them; too few (a filter that selects rows far from the query) widens the search,
        // and past the cap falls back to an exact scan of the matching rows.
        if (acceptedInHead >= Math.min(k, matchCount) || hits.keys.length < fetch * 2) return;
        fetch *= 4;
        if (fetch > plan.maxFetch || !widenBeatsScan(fetch * 2, matchCount)) break;
      }
      top.removeWhere((item) => item.kind === 'seg' && item.seg === seg);
    }
    // The exact path needs the matching rows themselves.
    const matches = new Int32Array(matchCount);
    for (let r = 0, n = 0; r < matchMask.length; r++) if (matchMask[r] === 1) matches[n++] = r;
    this.#exactScan(seg, q, qNative, qInv, matches, k, top);
  }

  #exactScan(seg: Segment, q: Float32Array, qNative: Float32Array, qInv: number, rows: Int32Array, k: number, top: TopK<Hit>): void {
    const dim = this.dimension;
    const metric = this.metric;
    const CHUNK = 4096;
    if (seg.vectors !== null && rows.length < NATIVE_SCAN_MIN_ROWS) {
      // A few rows of a raw segment (in memory): scan in place, no copies, no native call.
      const vecs = seg.vectors;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        const d = rawDistance(metric, q, 0, vecs, row * dim, dim, qInv, seg.invNorms![row]!);
        if (d < top.worst) top.push(d, { kind: 'seg', seg, row, id: seg.ids[row]! });
      }
      return;
    }
    if (seg.vectors !== null && rows.length === seg.rowCount) {
      // Every row of a raw segment: the SIMD kernel ranks its vectors where they lie.
      const best = exactTopK(seg.vectors, dim, qNative, k, metric);
      for (let i = 0; i < best.rows.length; i++) {
        const row = Number(best.rows[i]!);
        const d = best.distances[i]!;
        if (d < top.worst) top.push(d, { kind: 'seg', seg, row, id: seg.ids[row]! });
      }
      return;
    }
    // Indexed segments keep vectors on disk, raw ones in memory: read (or gather) a chunk of the
    // matching rows, rank it with the SIMD kernel.
    for (let s = 0; s < rows.length; s += CHUNK) {
      const part = rows.subarray(s, Math.min(rows.length, s + CHUNK));
      const best = exactTopK(seg.readVectors(part), dim, qNative, k, metric);
      for (let i = 0; i < best.rows.length; i++) {
        const row = part[Number(best.rows[i]!)]!;
        const d = best.distances[i]!;
        if (d < top.worst) top.push(d, { kind: 'seg', seg, row, id: seg.ids[row]! });
      }
    }
  }

  /** Documents by id, in the order asked; null where absent or deleted. */
  async get(ids: readonly string[]): Promise<(Document | null)[]> {
    this.#checkOpen();
    if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) throw new AkiError('INVALID_ARGUMENT', {}, 'get takes an array of string ids');
    if (ids.length > this.#opts.limits.maxBatchDocuments) throw new AkiError('PAYLOAD_TOO_LARGE', { ids: ids.length }, `At most ${this.#opts.limits.maxBatchDocuments} ids a call`);
    return ids.map((id) => {
      const e = this.#memEntry(id);
      if (e) return e.vector ? { id, vector: Array.from(e.vector), metadata: e.metadata, text: e.text } : null;
      const loc = this.#locator.get(id);
      if (!loc) return null;
      return { id, vector: Array.from(loc.seg.readVectors([loc.row])), metadata: loc.seg.metadata[loc.row]!, text: loc.seg.texts[loc.row]! };
    });
  }

  /**
   * Every live document, `batch` at a time: memtables (newest version only), then each segment's
   * live rows. A page is read synchronously; between pages writes and merges may change what is
   * live, so the sequence is exact only while nothing writes to the collection (export opens a
   * backup copy for that).
   */
  async *scan(batch = 1000): AsyncGenerator<ScannedDocument[]> {
    this.#checkOpen();
    let page: ScannedDocument[] = [];
    const mems = [...this.#mems];
    for (let m = 0; m < mems.length; m++) {
      for (const [id, e] of mems[m]!.entries) {
        if (e.vector === null || (m > 0 && shadowed(mems, m, id))) continue;
        page.push({ id, vector: e.vector.slice(), metadata: e.metadata, text: e.text });
        if (page.length >= batch) {
          yield page;
          page = [];
        }
      }
    }
    for (const seg of [...this.#segments]) {
      const rows: number[] = [];
      for (let r = 0; r < seg.rowCount; r++) if (seg.alive[r] === 1) rows.push(r);
      for (let i = 0; i < rows.length; i += batch) {
        const chunk = rows.slice(i, i + batch);
        const vectors = seg.readVectors(chunk);
        const dim = seg.dimension;
        for (let j = 0; j < chunk.length; j++) {
          const r = chunk[j]!;
          page.push({ id: seg.ids[r]!, vector: vectors.slice(j * dim, (j + 1) * dim), metadata: seg.metadata[r]!, text: seg.texts[r]! });
        }
        if (page.length >= batch) {
          yield page;
          page = [];
        }
      }
    }
    if (page.length > 0) yield page;
  }

  /** Number of live documents. */
  async count(): Promise<number> {
    this.#checkOpen();
    return this.#countLive();
  }

  #countLive(): number {
    let n = 0;
    const mems = this.#mems;
    for (let m = 0; m < mems.length; m++) {
      for (const [id, e] of mems[m]!.entries) if (e.vector !== null && !(m > 0 && shadowed(mems, m, id))) n += 1;
    }
    for (const s of this.#segments) n += s.aliveCount;
    return n;
  }

  stats(): CollectionStats {
    const indexed = this.#segments.filter((s) => s.index !== null);
    const raw = this.#segments.filter((s) => s.index === null);
    const rawRows = raw.reduce((a, s) => a + s.aliveCount, 0);
    const memEntries = this.#mems.reduce((a, f) => a + f.size, 0);
    return {
      documents: this.#countLive(),
      memtableEntries: memEntries,
      segments: this.#segments.length,
      indexedSegments: indexed.length,
      indexedRows: indexed.reduce((a, s) => a + s.aliveCount, 0),
      rawRows,
      lastLsn: this.#wal.lastLsn,
      checkpointLsn: this.#manifest.checkpointLsn,
      manifestVersion: this.#manifest.version,
      ...this.#stats,
      fullyIndexed: memEntries === 0 && (rawRows === 0 || (indexed.length === 0 && raw.length <= 1 && rawRows < this.#opts.hnsw.threshold)),
    };
  }

  // ---------------------------------------------------------------- maintenance

  /** Flush the memtable to a segment now; resolves when the segment and manifest are durable. */
  async flush(): Promise<void> {
    this.#checkOpen();
    await this.#runIn('flush', () => this.#flush());
  }

  /** Flush, then merge every segment into one, dropping overwritten and deleted rows; builds the index when large enough. */
  async compact(): Promise<void> {
    this.#checkOpen();
    await this.#runIn('flush', () => this.#flush());
    await this.#runIn('merge', async () => {
      if (this.#segments.length > 1 || this.#segments.some((s) => s.aliveCount < s.rowCount || s.tombstones.length > 0 || (s.index === null && s.rowCount >= this.#opts.hnsw.threshold))) await this.#merge();
    });
  }

  /** Resolve once background work has caught up: memtable flushed and segments merged and indexed per policy. */
  async waitForIndexing(): Promise<void> {
    this.#checkOpen();
    for (let round = 0; round < 16; round++) {
      await this.#runIn('flush', () => this.#flush());
      await this.#runIn('merge', async () => {
        if (this.#mergeWanted(true)) await this.#merge();
      });
      if (this.#mems.length === 1 && this.#active.size === 0 && !this.#mergeWanted(true)) return;
    }
  }

  /** Run `task` after everything queued in its lane; failures are logged for background callers and returned to direct ones. */
  #runIn(lane: 'flush' | 'merge', task: () => Promise<void>): Promise<void> {
    const prev = lane === 'flush' ? this.#flushLane : this.#mergeLane;
    const run = prev.then(() => (this.#closed ? undefined : task()));
    const settled = run.catch((err: unknown) => {
      if (!this.#closed) this.#opts.logger.error({ collection: this.name, lane, err: String(err) }, 'Collection maintenance failed');
    });
    if (lane === 'flush') this.#flushLane = settled;
    else this.#mergeLane = settled;
    return run;
  }

  #isIdle(): boolean {
    return Date.now() - this.#lastWriteAt >= this.#opts.compaction.idleFlushMs;
  }

  /** Queue a flush and a merge when due; never leaves a promise floating. */
  #scheduleMaintenance(idle = false): void {
    if (!this.#opts.compaction.enableBackground || this.#closed) return;
    const c = this.#opts.compaction;
    const isIdle = idle || this.#isIdle();
    const flushDue = this.#active.ops >= c.thresholdOps || this.#wal.activeFileBytes >= c.thresholdBytes || (isIdle && this.#active.size > 0);
    if (flushDue && !this.#flushQueued) {
      this.#flushQueued = true;
      // Background work: traced on its own, not inside the write that happened to trigger it.
      void detached(() =>
        this.#runIn('flush', async () => {
          this.#flushQueued = false;
          await this.#flush();
          this.#scheduleMerge(this.#isIdle());
        }),
      );
    }
    this.#scheduleMerge(isIdle);
  }

  #scheduleMerge(idle: boolean): void {
    if (!this.#opts.compaction.enableBackground || this.#closed || this.#mergeQueued || !this.#mergeWanted(idle)) return;
    this.#mergeQueued = true;
    void detached(() =>
      this.#runIn('merge', async () => {
        this.#mergeQueued = false;
        if (this.#mergeWanted(idle || this.#isIdle())) await this.#merge();
        this.#scheduleMerge(this.#isIdle());
      }),
    );
  }

  /** Publish the next manifest version and install its effect in memory, one edit at a time. */
  #editManifest(edit: (current: Manifest) => Omit<Manifest, 'version' | 'nextSegmentId' | 'nextRowKey'>, install: () => void): Promise<void> {
    const run = this.#manifestLane.then(async () => {
      const next: Manifest = { ...edit(this.#manifest), version: this.#manifest.version + 1, nextSegmentId: this.#nextSegmentId, nextRowKey: this.#nextRowKey };
      await this.#manifests.publish(next);
      this.#manifest = next;
      install();
    });
    this.#manifestLane = run.catch(() => undefined);
    return run;
  }

  #mergeWanted(idle: boolean): boolean {
    const segs = this.#segments;
    if (segs.length === 0) return false;
    const threshold = this.#opts.hnsw.threshold;
    const raw = segs.filter((s) => s.index === null);
    const rawRows = raw.reduce((a, s) => a + s.aliveCount, 0);
    const total = segs.reduce((a, s) => a + s.aliveCount, 0);
    if (segs.length > this.#opts.compaction.maxSegments) return true;
    if (rawRows >= threshold) return true;
    if (idle && raw.length > 0 && total >= threshold) return true;
    if (idle && raw.length > 1) return true;
    // Mostly-dead segments waste memory and over-fetch: rewrite them.
    return segs.some((s) => s.rowCount >= 1024 && s.aliveCount < s.rowCount * 0.7);
  }

  async #flush(): Promise<void> {
    if (this.#active.size > 0) {
      await this.#wal.rotate((boundary) => {
        this.#active.walBoundary = boundary;
        this.#mems = [new Memtable(this.dimension), ...this.#mems];
      });
    }
    // Oldest first; a memtable whose flush failed stays frozen and is retried here, so the WAL
    // it lives in is never checkpointed away before its segment is durable.
    while (this.#mems.length > 1) {
      const mt = this.#mems.at(-1)!;
      await withSpan('collection.flush', () => this.#spanAttrs({ 'akidb.memtable.entries': mt.size }), (span) => this.#flushFrozen(mt, span));
    }
  }

  async #flushFrozen(mt: Memtable, span: Span): Promise<void> {
    const started = performance.now();
    const segDir = path.join(this.#dir, 'segments');
    const id = this.#nextSegmentId++;
    const rows: (SegmentRowInput & { vector: Float32Array })[] = [];
    const tombs: [string, number][] = [];
    for (const [docId, e] of mt.entries) {
      if (e.vector === null) tombs.push([docId, e.lsn]);
      else rows.push({ id: docId, key: this.#nextRowKey++, lsn: e.lsn, metadata: e.metadata, text: e.text, vector: e.vector });
    }
    const dim = this.dimension;
    const file = `seg-${id}.seg`;
    const { bytes, header } = await writeSegmentFile(path.join(segDir, file), dim, rows, (s, e) => packVectors(rows, s, e, dim), tombs);
    const entry: SegmentEntry = { id, file, rows: rows.length, tombstones: tombs.length, minLsn: header.minLsn, maxLsn: header.maxLsn, bytes };
    setSpanAttributes(span, () => ({ 'akidb.segment.id': id, 'akidb.segment.rows': rows.length, 'akidb.segment.tombstones': tombs.length, 'akidb.segment.bytes': bytes }));
    const segFile = SegmentFile.open(path.join(segDir, file));
    let seg: Segment;
    try {
      seg = new Segment(entry, segFile, segFile.readData(), null, packVectors(rows, 0, rows.length, dim), this.metric);
      await this.#editManifest(
        (m) => ({ ...m, checkpointLsn: Math.max(m.checkpointLsn, mt.walBoundary), segments: [...m.segments, entry] }),
        () => {
          // The segment replaces the frozen memtable in one synchronous step.
          for (let r = 0; r < seg.rowCount; r++) {
            const docId = seg.ids[r]!;
            if (this.#newerMemtableHas(mt, docId)) continue;
            seg.markAlive(r);
            this.#locator.set(docId, { seg, row: r });
          }
          this.#segments.push(seg);
          this.#mems = this.#mems.filter((f) => f !== mt);
          this.#stats.flushes += 1;
          this.#opts.logger.info({ collection: this.name, segment: file, rows: rows.length, tombstones: tombs.length, ms: Math.round(performance.now() - started) }, 'Flushed memtable to segment');
        },
      );
    } catch (err) {
      segFile.close();
      throw err;
    }
    await this.#wal.deleteThrough(this.#manifest.checkpointLsn);
  }

  #newerMemtableHas(mt: Memtable, id: string): boolean {
    for (const f of this.#mems) {
      if (f === mt) return false;
      if (f.entries.has(id)) return true;
    }
    return false;
  }

  /** Merge every segment into one; rows dead at the start are dropped, tombstones too (nothing older remains). */
  #merge(): Promise<void> {
    return withSpan('collection.merge', () => this.#spanAttrs({ 'akidb.segments': this.#segments.length }), (span) => this.#mergeSegments(span));
  }

  async #mergeSegments(span: Span): Promise<void> {
    const started = performance.now();
    let indexMs = 0;
    let incremental = false;
    const inputs = [...this.#segments];
    if (inputs.length === 0) return;
    const segDir = path.join(this.#dir, 'segments');
    const dim = this.dimension;
    const picked: { seg: Segment; row: number; key: number }[] = [];
    for (const seg of inputs) for (let r = 0; r < seg.rowCount; r++) if (seg.alive[r] === 1) picked.push({ seg, row: r, key: seg.keys[r]! });
    picked.sort((a, b) => a.key - b.key);
    const id = this.#nextSegmentId++;
    const file = `seg-${id}.seg`;
    const rows: SegmentRowInput[] = picked.map((p) => ({ id: p.seg.ids[p.row]!, key: p.key, lsn: p.seg.lsns[p.row]!, metadata: p.seg.metadata[p.row]!, text: p.seg.texts[p.row]! }));
    const source = (start: number, end: number): Float32Array => {
      const out = new Float32Array((end - start) * dim);
      // Group the chunk's rows by input segment so each segment is read in ascending runs.
      const groups = new Map<Segment, { rows: number[]; at: number[] }>();
      for (let i = start; i < end; i++) {
        const p = picked[i]!;
        let g = groups.get(p.seg);
        if (!g) groups.set(p.seg, (g = { rows: [], at: [] }));
        g.rows.push(p.row);
        g.at.push(i - start);
      }
      for (const [seg, g] of groups) {
        const vecs = seg.readVectors(g.rows);
        g.at.forEach((pos, j) => out.set(vecs.subarray(j * dim, (j + 1) * dim), pos * dim));
      }
      return out;
    };
    const { bytes, header } = await writeSegmentFile(path.join(segDir, file), dim, rows, source, []);
    const entry: SegmentEntry = { id, file, rows: rows.length, tombstones: 0, minLsn: header.minLsn, maxLsn: header.maxLsn, bytes };
    const params = this.info.index;
    if (rows.length >= this.#opts.hnsw.threshold) {
      const indexFile = `seg-${id}.hnsw`;
      // Extend the largest existing index when most of it is still live: cost then follows the
      // new rows, not the whole collection.
      const base = inputs.filter((s) => s.index !== null).sort((a, b) => b.rowCount - a.rowCount)[0];
      const job = {
        segmentFile: path.join(segDir, file),
        indexFile: path.join(segDir, indexFile),
        dimension: dim,
        metric: this.metric,
        params,
        threads: this.#opts.hnsw.buildThreads,
      };
      let workerJob: Parameters<typeof buildIndexInWorker>[0] = job;
      if (base && base.entry.index && base.aliveCount >= base.rowCount * 0.7) {
        const removeKeys: number[] = [];
        for (let r = 0; r < base.rowCount; r++) if (base.alive[r] === 0) removeKeys.push(base.keys[r]!);
        const addPositions: number[] = [];
        picked.forEach((p, i) => {
          if (p.seg !== base) addPositions.push(i);
        });
        workerJob = { ...job, baseIndexFile: path.join(segDir, base.entry.index.file), removeKeys, addPositions };
      }
      const indexStarted = performance.now();
      incremental = workerJob.baseIndexFile !== undefined;
      const built = await withSpan('index.build', () => ({ 'akidb.index.rows': rows.length, 'akidb.index.incremental': incremental }), () => buildIndexInWorker(workerJob, this.#abort.signal));
      indexMs = Math.round(performance.now() - indexStarted);
      this.#stats.indexBuilds += 1;
      this.#opts.events.indexBuilt?.({ collection: this.name, rows: rows.length, seconds: (performance.now() - indexStarted) / 1000, incremental });
      entry.index = { file: indexFile, quantization: params.quantization, m: params.m, efConstruction: params.efConstruction, bytes: built.bytes };
    }
    setSpanAttributes(span, () => ({ 'akidb.segment.id': id, 'akidb.segment.rows': rows.length, 'akidb.segment.bytes': bytes, 'akidb.segment.indexed': entry.index !== undefined }));
    // Just written and fsynced by this process: skip re-reading every vector to check its CRC.
    const seg = openSegment(segDir, entry, this.info, this.#opts, false);
    const inputIds = new Set(inputs.map((s) => s.entry.id));
    try {
      await this.#editManifest(
        // Segments flushed while this merge ran are newer than every input: the merged one goes first.
        (m) => ({ ...m, segments: [entry, ...m.segments.filter((e) => !inputIds.has(e.id))] }),
        () => {
          // A row stays live only if its input row still is: writes during the merge hid some.
          for (let i = 0; i < picked.length; i++) {
            const p = picked[i]!;
            if (p.seg.alive[p.row] !== 1) continue;
            seg.markAlive(i);
            this.#locator.set(seg.ids[i]!, { seg, row: i });
          }
          this.#segments = [seg, ...this.#segments.filter((s) => !inputs.includes(s))];
          this.#stats.merges += 1;
          this.#opts.events.merged?.({ collectionId: this.info.collectionId, tieringPolicy: this.info.tieringPolicy, inputs: inputs.length, rows: rows.length });
          this.#opts.logger.info({ collection: this.name, segment: file, inputs: inputs.length, rows: rows.length, indexed: entry.index !== undefined, incremental, indexMs, ms: Math.round(performance.now() - started) }, 'Merged segments');
        },
      );
    } catch (err) {
      seg.close();
      throw err;
    }
    for (const s of inputs) {
      s.close();
      await unlink(path.join(segDir, s.entry.file)).catch(() => undefined);
      if (s.entry.index) await unlink(path.join(segDir, s.entry.index.file)).catch(() => undefined);
    }
  }

  /** Rebuild alive bitmaps and the id locator from the segments (newest wins). */
  #rebuildLiveness(): void {
    this.#locator.clear();
    const seen = new Set<string>();
    for (let i = this.#segments.length - 1; i >= 0; i--) {
      const seg = this.#segments[i]!;
      for (let r = 0; r < seg.rowCount; r++) {
        const id = seg.ids[r]!;
        if (seen.has(id)) continue;
        seen.add(id);
        seg.markAlive(r);
        this.#locator.set(id, { seg, row: r });
      }
      for (const [id] of seg.tombstones) seen.add(id);
    }
  }

  // ---------------------------------------------------------------- lifecycle

  #checkOpen(): void {
    if (this.#dropped) throw new AkiError('COLLECTION_NOT_FOUND', { collection: this.name, dropped: true }, `Collection ${this.name} was dropped`);
    if (this.#closed) throw new AkiError('CLOSED', { collection: this.name }, `Collection ${this.name} is closed`);
  }

  /** Stop background work (aborting an index build), wait for in-flight writes, close files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#abort.abort();
    await this.#flushLane;
    await this.#mergeLane;
    await this.#manifestLane;
    await this.#wal.close();
    for (const s of this.#segments) s.close();
  }

  /** Bytes of the collection's files on local disk (segments, indexes, WAL, manifests). */
  async diskBytes(): Promise<number> {
    let total = 0;
    for (const sub of ['segments', 'wal', 'manifests']) {
      const dir = path.join(this.#dir, sub);
      for (const name of await readdir(dir).catch(() => [] as string[])) total += (await stat(path.join(dir, name)).catch(() => null))?.size ?? 0;
    }
    return total;
  }

  /** The WAL file appends go to now (a new one at every open and after every flush). */
  get activeWalFile(): string {
    return this.#wal.activeFile;
  }

  /** Close and mark dropped: every later call answers COLLECTION_NOT_FOUND. */
  async markDropped(): Promise<void> {
    this.#dropped = true;
    await this.close();
  }
}

type Hit = { kind: 'mem'; entry: MemEntry; id: string } | { kind: 'seg'; seg: Segment; row: number; id: string };

function shadowed(mems: Memtable[], m: number, id: string): boolean {
  for (let n = 0; n < m; n++) if (mems[n]!.entries.has(id)) return true;
  return false;
}

function packVectors(rows: readonly { vector: Float32Array }[], start: number, end: number, dim: number): Float32Array {
  const out = new Float32Array((end - start) * dim);
  for (let i = start; i < end; i++) out.set(rows[i]!.vector, (i - start) * dim);
  return out;
}

function openSegment(segDir: string, entry: SegmentEntry, info: CollectionInfo, opts: EngineOptions, verify = true): Segment {
  const file = SegmentFile.open(path.join(segDir, entry.file));
  try {
    const data = file.readData();
    if (entry.index) {
      if (verify) file.verifyVectors();
      const idx = entry.index;
      const index = HnswIndex.open(path.join(segDir, idx.file), info.dimension, info.metric, { ...info.index, m: idx.m, efConstruction: idx.efConstruction, quantization: idx.quantization as HnswParams['quantization'] });
      return new Segment(entry, file, data, index, null, info.metric);
    }
    return new Segment(entry, file, data, null, file.readAllVectors(), info.metric);
  } catch (err) {
    file.close();
    if (err instanceof AkiError) throw err;
    opts.logger.error({ collection: info.name, segment: entry.file, err: String(err) }, 'Segment failed to open');
    throw new AkiError('STORAGE_CORRUPT', { file: entry.file }, `Segment ${entry.file} failed to open`, { cause: err });
  }
}

/** Delete segment and index files the manifest does not name: leftovers of interrupted flushes and merges. */
async function removeUnreferencedFiles(segDir: string, manifest: Manifest): Promise<void> {
  const keep = new Set<string>();
  for (const s of manifest.segments) {
    keep.add(s.file);
    if (s.index) keep.add(s.index.file);
  }
  for (const name of await readdir(segDir)) {
    if (keep.has(name)) continue;
    if (SEGMENT_FILE.test(name) || name.includes('.tmp')) await unlink(path.join(segDir, name)).catch(() => undefined);
  }
}
