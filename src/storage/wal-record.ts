import { AkiError } from '../errors.js';
import { parseFilter, type Filter, type Metadata } from '../index/filter.js';

/** A document as the engine stores it. */
export interface StoredDoc {
  id: string;
  vector: Float32Array;
  metadata: Metadata | null;
  text: string | null;
  /** `metadata` as JSON when validation already serialized it; saves serializing it again. */
  metadataJson?: string;
}

/** One WAL record: a batch of upserts or of deletes, applied atomically. */
export type WalOp =
  | { type: 'upsert'; docs: StoredDoc[] }
  | { type: 'delete'; ids: string[] }
  /** Delete what matches `filter` (among `ids` when given) at the record's place in LSN order. */
  | { type: 'deleteWhere'; filter: Filter; ids: string[] | null };

const UPSERT = 1;
const DELETE = 2;
const DELETE_WHERE = 3;

/** Replay compiles a logged filter without limits (they were checked when the delete was accepted). */
const REPLAY_FILTER_LIMITS = { maxDepth: Infinity, maxClauses: Infinity, maxInValues: Infinity };

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function isJsonObject(v: unknown): v is Metadata {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One upsert row as written by encodeWalOp: [id, metadata | null, text | null]. */
function isRow(v: unknown): v is [string, Metadata | null, string | null] {
  return Array.isArray(v) && v.length === 3 && typeof v[0] === 'string' && (v[1] === null || isJsonObject(v[1])) && (v[2] === null || typeof v[2] === 'string');
}

/**
 * Payload layout. upsert: u8 1 | u32 count | u32 dim | u32 jsonLen | json [[id, meta, text]...] |
 * pad to 4 | count*dim float32. delete: u8 2 | json [id...]. deleteWhere: u8 3 | json { filter, ids }.
 */
export function encodeWalOp(op: WalOp, dimension: number): Buffer {
  if (op.type === 'deleteWhere') {
    const json = Buffer.from(JSON.stringify({ filter: op.filter, ids: op.ids }), 'utf8');
    const out = Buffer.allocUnsafe(1 + json.length);
    out.writeUInt8(DELETE_WHERE, 0);
    json.copy(out, 1);
    return out;
  }
  if (op.type === 'delete') {
    const json = Buffer.from(JSON.stringify(op.ids), 'utf8');
    const out = Buffer.allocUnsafe(1 + json.length);
    out.writeUInt8(DELETE, 0);
    json.copy(out, 1);
    return out;
  }
  const rows = op.docs.map((d) => `[${JSON.stringify(d.id)},${d.metadataJson ?? JSON.stringify(d.metadata)},${JSON.stringify(d.text)}]`);
  const json = Buffer.from(`[${rows.join(',')}]`, 'utf8');
  const head = 13 + json.length;
  const vecStart = (head + 3) & ~3;
  const out = Buffer.alloc(vecStart + op.docs.length * dimension * 4);
  out.writeUInt8(UPSERT, 0);
  out.writeUInt32LE(op.docs.length, 1);
  out.writeUInt32LE(dimension, 5);
  out.writeUInt32LE(json.length, 9);
  json.copy(out, 13);
  op.docs.forEach((d, i) => {
    const bytes = new Uint8Array(d.vector.buffer, d.vector.byteOffset, d.vector.byteLength);
    out.set(bytes, vecStart + i * dimension * 4);
  });
  return out;
}

/**
 * Decode a payload written by encodeWalOp. Throws STORAGE_CORRUPT on anything malformed; what it
 * returns is well-typed throughout, and a deleteWhere filter is one that replay can compile.
 */
export function decodeWalOp(payload: Buffer, dimension: number): WalOp {
  try {
    const type = payload.readUInt8(0);
    if (type === DELETE) {
      const ids = JSON.parse(payload.subarray(1).toString('utf8')) as unknown;
      if (!isStringArray(ids)) throw new Error('delete ids');
      return { type: 'delete', ids };
    }
    if (type === DELETE_WHERE) {
      const body = JSON.parse(payload.subarray(1).toString('utf8')) as unknown;
      if (!isJsonObject(body) || !isJsonObject(body['filter'])) throw new Error('deleteWhere filter');
      const ids = body['ids'];
      if (ids !== null && !isStringArray(ids)) throw new Error('deleteWhere ids');
      const filter = body['filter'];
      parseFilter(filter, REPLAY_FILTER_LIMITS);
      return { type: 'deleteWhere', filter, ids };
    }
    if (type !== UPSERT) throw new Error(`record type ${type}`);
    const count = payload.readUInt32LE(1);
    const dim = payload.readUInt32LE(5);
    const jsonLen = payload.readUInt32LE(9);
    if (dim !== dimension) throw new Error(`dimension ${dim}`);
    const vecStart = Math.ceil((13 + jsonLen) / 4) * 4;
    // Checked before parsing or allocating anything: every size below is bounded by the payload's.
    if (13 + jsonLen > payload.length || payload.length !== vecStart + count * dim * 4) throw new Error('length');
    const rows = JSON.parse(payload.subarray(13, 13 + jsonLen).toString('utf8')) as unknown;
    if (!Array.isArray(rows) || rows.length !== count || !rows.every(isRow)) throw new Error('rows');
    const all = new Float32Array(count * dim);
    new Uint8Array(all.buffer).set(payload.subarray(vecStart));
    const docs = rows.map(([id, metadata, text], i): StoredDoc => ({ id, metadata, text, vector: all.subarray(i * dim, (i + 1) * dim) }));
    return { type: 'upsert', docs };
  } catch (err) {
    throw new AkiError('STORAGE_CORRUPT', {}, 'Malformed WAL record', { cause: err });
  }
}
