import { endianness } from 'node:os';
import { AkiError } from '../../errors.js';

/**
 * Hand-written decoders for the requests that carry vectors or Structs (Insert, Upsert, Query,
 * Delete). protobufjs decodes a float at a time into a number array and then copies it again
 * (about 0.7 s for a 10,000 x 768 batch, 30 µs a 768-dim query); these copy each packed vector
 * into a Float32Array in one go and turn google.protobuf.Struct straight into plain JSON.
 *
 * Field numbers are those of proto/akidb/collection/v1/collection.proto; request-decoders.test.ts
 * checks every decoder against proto-loader's on random messages. Unknown fields are skipped,
 * repeated floats are accepted packed or not, and a later scalar wins over an earlier one, as
 * protobuf requires. Bytes that are not a valid message throw a plain Error; a Struct that is
 * too deep or holds a non-finite number throws AkiError INVALID_ARGUMENT.
 */

export type JsonObject = Record<string, unknown>;

interface Scoped {
  tenant: string;
  database: string;
  collection: string;
}

/** A document as the decoders give it. Optional strings are present when sent. */
export interface DecodedDocument {
  doc_id?: string;
  external_id?: string;
  vector: Float32Array;
  metadata: JsonObject | null;
  text?: string;
}

export type DecodedInsert = Scoped & DecodedDocument;

export interface DecodedUpsert extends Scoped {
  documents: DecodedDocument[];
}

export interface DecodedQuery extends Scoped {
  query_vector: Float32Array;
  top_k: number;
  filter: JsonObject | null;
  ef_search?: number;
  include_vector?: boolean;
  include_metadata?: boolean;
}

export interface DecodedDelete extends Scoped {
  doc_ids: string[];
  filter: JsonObject | null;
}

/**
 * Nesting a Struct may have; deeper is refused rather than recursed into. The filter language
 * stops at 32 too, and protobufjs (JS clients, and this server's answers) cannot encode much
 * more than 45 levels of metadata.
 */
export const MAX_STRUCT_DEPTH = 32;

const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;
const LITTLE_ENDIAN = endianness() === 'LE';

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint as a number: exact up to 2^53, enough for every field here (uint32 fields take the low 32 bits). */
  varint(): number {
    const { buf, end } = this;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) throw new Error('truncated varint');
      const b = buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new Error('varint longer than 10 bytes');
  }

  uint32(): number {
    return this.varint() % 4294967296;
  }

  /** Start and end of a length-delimited field's bytes; the reader moves past them. */
  span(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) throw new Error('length-delimited field overruns its message');
    this.pos = start + len;
    return [start, start + len];
  }

  string(): string {
    const [s, e] = this.span();
    return this.buf.toString('utf8', s, e);
  }

  double(): number {
    if (this.end - this.pos < 8) throw new Error('truncated double');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.advance(8);
        return;
      case LEN:
        this.span();
        return;
      case FIXED32:
        this.advance(4);
        return;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
  }

  advance(n: number): void {
    if (this.end - this.pos < n) throw new Error('truncated field');
    this.pos += n;
  }
}

/** Repeated float field pieces: one packed run (the usual case) is copied once, anything else is merged at the end. */
class FloatCollector {
  #parts: Float32Array[] = [];

  add(r: Reader, wireType: number): void {
    if (wireType === LEN) {
      const [s, e] = r.span();
      if ((e - s) % 4 !== 0) throw new Error('packed float field length is not a multiple of 4');
      this.#parts.push(floatsAt(r.buf, s, (e - s) / 4));
    } else if (wireType === FIXED32) {
      r.advance(4);
      this.#parts.push(floatsAt(r.buf, r.pos - 4, 1));
    } else {
      throw new Error(`wire type ${wireType} for a float field`);
    }
  }

  result(): Float32Array {
    const parts = this.#parts;
    if (parts.length === 1) return parts[0]!;
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Float32Array(n);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}

function floatsAt(buf: Buffer, start: number, count: number): Float32Array {
  const out = new Float32Array(count);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(buf.subarray(start, start + count * 4));
  } else {
    for (let i = 0; i < count; i++) out[i] = buf.readFloatLE(start + i * 4);
  }
  return out;
}

function expectWire(actual: number, expected: number, field: string): void {
  if (actual !== expected) throw new Error(`field ${field} has wire type ${actual}, expected ${expected}`);
}

// ------------------------------------------------------------------ google.protobuf.Struct

/** Where a Struct value sits, for error messages; joined only when one is raised. */
type Path = (string | number)[];

function pathText(path: Path): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`;
  return s;
}

function tooDeep(path: Path): AkiError {
  const field = pathText(path);
  return new AkiError('INVALID_ARGUMENT', { field, maxDepth: MAX_STRUCT_DEPTH }, `${field} is nested deeper than ${MAX_STRUCT_DEPTH}`);
}

/** Struct { map<string, Value> fields = 1 } */
function readStruct(r: Reader, end: number, path: Path, depth: number): JsonObject {
  if (depth > MAX_STRUCT_DEPTH) throw tooDeep(path);
  const out: JsonObject = {};
  const saved = r.pos;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag >>> 3 === 1) {
      expectWire(tag & 7, LEN, 'Struct.fields');
      const [s, e] = r.span();
      readMapEntry(r, s, e, out, path, depth);
    } else {
      r.skip(tag & 7);
    }
  }
  if (r.pos !== end) throw new Error(`Struct overruns its bounds (${saved}..${end})`);
  return out;
}

/** map entry { string key = 1; Value value = 2 } */
function readMapEntry(r: Reader, start: number, end: number, into: JsonObject, path: Path, depth: number): void {
  r.pos = start;
  let key = '';
  let valueSpan: [number, number] | null = null;
  while (r.pos < end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if (field === 1) {
      expectWire(tag & 7, LEN, 'Struct.fields.key');
      key = r.string();
    } else if (field === 2) {
      expectWire(tag & 7, LEN, 'Struct.fields.value');
      valueSpan = r.span();
    } else {
      r.skip(tag & 7);
    }
  }
  if (r.pos !== end) throw new Error('map entry overruns its bounds');
  let value: unknown = null;
  if (valueSpan) {
    path.push(key);
    value = readValue(r, valueSpan[0], valueSpan[1], path, depth + 1);
    path.pop();
    r.pos = end;
  }
  // "__proto__" is data here, never a prototype change.
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
}

/** Value { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3; bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6 } } */
function readValue(r: Reader, start: number, end: number, path: Path, depth: number): unknown {
  r.pos = start;
  let value: unknown = null;
  while (r.pos < end) {
    const tag = r.varint();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1:
        expectWire(wire, VARINT, 'Value.null_value');
        r.varint();
        value = null;
        break;
      case 2: {
        expectWire(wire, FIXED64, 'Value.number_value');
        const n = r.double();
        if (!Number.isFinite(n)) {
          const field = pathText(path);
          throw new AkiError('INVALID_ARGUMENT', { field }, `${field}: numbers must be finite`);
        }
        value = n;
        break;
      }
      case 3:
        expectWire(wire, LEN, 'Value.string_value');
        value = r.string();
        break;
      case 4:
        expectWire(wire, VARINT, 'Value.bool_value');
        value = r.varint() !== 0;
        break;
      case 5: {
        expectWire(wire, LEN, 'Value.struct_value');
        const [s, e] = r.span();
        r.pos = s;
        value = readStruct(r, e, path, depth);
        break;
      }
      case 6: {
        expectWire(wire, LEN, 'Value.list_value');
        const [s, e] = r.span();
        value = readList(r, s, e, path, depth);
        break;
      }
      default:
        r.skip(wire);
    }
  }
  if (r.pos !== end) throw new Error('Value overruns its bounds');
  return value;
}

/** ListValue { repeated Value values = 1 } */
function readList(r: Reader, start: number, end: number, path: Path, depth: number): unknown[] {
  if (depth > MAX_STRUCT_DEPTH) throw tooDeep(path);
  r.pos = start;
  const out: unknown[] = [];
  while (r.pos < end) {
    const tag = r.varint();
    if (tag >>> 3 === 1) {
      expectWire(tag & 7, LEN, 'ListValue.values');
      const [s, e] = r.span();
      path.push(out.length);
      out.push(readValue(r, s, e, path, depth + 1));
      path.pop();
      r.pos = e;
    } else {
      r.skip(tag & 7);
    }
  }
  if (r.pos !== end) throw new Error('ListValue overruns its bounds');
  return out;
}

function structField(r: Reader, wire: number, name: string): JsonObject {
  expectWire(wire, LEN, name);
  const [s, e] = r.span();
  const after = r.pos;
  r.pos = s;
  const out = readStruct(r, e, [name], 0);
  r.pos = after;
  return out;
}

// ------------------------------------------------------------------ requests

function readScoped(r: Reader, field: number, wire: number, into: Scoped): boolean {
  if (field < 1 || field > 3) return false;
  expectWire(wire, LEN, 'tenant/database/collection');
  const s = r.string();
  if (field === 1) into.tenant = s;
  else if (field === 2) into.database = s;
  else into.collection = s;
  return true;
}

/** Document { optional string doc_id = 1; optional string external_id = 2; repeated float vector = 3; Struct metadata = 4; optional string text = 5 } */
function readDocument(r: Reader, end: number, index: number): DecodedDocument {
  const doc: DecodedDocument = { vector: new Float32Array(0), metadata: null };
  const floats = new FloatCollector();
  let anyFloats = false;
  while (r.pos < end) {
    const tag = r.varint();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1:
        expectWire(wire, LEN, 'doc_id');
        doc.doc_id = r.string();
        break;
      case 2:
        expectWire(wire, LEN, 'external_id');
        doc.external_id = r.string();
        break;
      case 3:
        floats.add(r, wire);
        anyFloats = true;
        break;
      case 4:
        doc.metadata = structField(r, wire, `documents[${index}].metadata`);
        break;
      case 5:
        expectWire(wire, LEN, 'text');
        doc.text = r.string();
        break;
      default:
        r.skip(wire);
    }
  }
  if (r.pos !== end) throw new Error('Document overruns its bounds');
  if (anyFloats) doc.vector = floats.result();
  return doc;
}

/** InsertRequest { tenant = 1; database = 2; collection = 3; optional doc_id = 4; optional external_id = 5; repeated float vector = 6; Struct metadata = 7; optional text = 8 } */
export function decodeInsertRequest(buf: Buffer): DecodedInsert {
  const r = new Reader(buf, 0, buf.length);
  const req: DecodedInsert = { tenant: '', database: '', collection: '', vector: new Float32Array(0), metadata: null };
  const floats = new FloatCollector();
  let anyFloats = false;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (readScoped(r, field, wire, req)) continue;
    switch (field) {
      case 4:
        expectWire(wire, LEN, 'doc_id');
        req.doc_id = r.string();
        break;
      case 5:
        expectWire(wire, LEN, 'external_id');
        req.external_id = r.string();
        break;
      case 6:
        floats.add(r, wire);
        anyFloats = true;
        break;
      case 7:
        req.metadata = structField(r, wire, 'metadata');
        break;
      case 8:
        expectWire(wire, LEN, 'text');
        req.text = r.string();
        break;
      default:
        r.skip(wire);
    }
  }
  if (anyFloats) req.vector = floats.result();
  return req;
}

/** UpsertRequest { tenant = 1; database = 2; collection = 3; repeated Document documents = 4 } */
export function decodeUpsertRequest(buf: Buffer): DecodedUpsert {
  const r = new Reader(buf, 0, buf.length);
  const req: DecodedUpsert = { tenant: '', database: '', collection: '', documents: [] };
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (readScoped(r, field, wire, req)) continue;
    if (field === 4) {
      expectWire(wire, LEN, 'documents');
      const [s, e] = r.span();
      r.pos = s;
      req.documents.push(readDocument(r, e, req.documents.length));
    } else {
      r.skip(wire);
    }
  }
  return req;
}

/** QueryRequest { tenant = 1; database = 2; collection = 3; repeated float query_vector = 4; uint32 top_k = 5; Struct filter = 6; optional uint32 ef_search = 7; optional bool include_vector = 8; optional bool include_metadata = 9 } */
export function decodeQueryRequest(buf: Buffer): DecodedQuery {
  const r = new Reader(buf, 0, buf.length);
  const req: DecodedQuery = { tenant: '', database: '', collection: '', query_vector: new Float32Array(0), top_k: 0, filter: null };
  const floats = new FloatCollector();
  let anyFloats = false;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (readScoped(r, field, wire, req)) continue;
    switch (field) {
      case 4:
        floats.add(r, wire);
        anyFloats = true;
        break;
      case 5:
        expectWire(wire, VARINT, 'top_k');
        req.top_k = r.uint32();
        break;
      case 6:
        req.filter = structField(r, wire, 'filter');
        break;
      case 7:
        expectWire(wire, VARINT, 'ef_search');
        req.ef_search = r.uint32();
        break;
      case 8:
        expectWire(wire, VARINT, 'include_vector');
        req.include_vector = r.varint() !== 0;
        break;
      case 9:
        expectWire(wire, VARINT, 'include_metadata');
        req.include_metadata = r.varint() !== 0;
        break;
      default:
        r.skip(wire);
    }
  }
  if (anyFloats) req.query_vector = floats.result();
  return req;
}

/** DeleteRequest { tenant = 1; database = 2; collection = 3; repeated string doc_ids = 4; Struct filter = 5 } */
export function decodeDeleteRequest(buf: Buffer): DecodedDelete {
  const r = new Reader(buf, 0, buf.length);
  const req: DecodedDelete = { tenant: '', database: '', collection: '', doc_ids: [], filter: null };
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (readScoped(r, field, wire, req)) continue;
    if (field === 4) {
      expectWire(wire, LEN, 'doc_ids');
      req.doc_ids.push(r.string());
    } else if (field === 5) {
      req.filter = structField(r, wire, 'filter');
    } else {
      r.skip(wire);
    }
  }
  return req;
}
