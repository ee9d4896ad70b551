import { fileURLToPath } from 'node:url';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AkiError } from '../../errors.js';
import { jsonToStruct, type WireStruct } from './grpc-server.js';
import { decodeDeleteRequest, decodeInsertRequest, decodeQueryRequest, decodeUpsertRequest, MAX_STRUCT_DEPTH } from './request-decoders.js';
import { structToJson } from '../../test-support/grpc-struct.js';

// The reference: proto-loader (protobufjs) reading the same .proto, as a client would.
const pkg = loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [fileURLToPath(new URL('../../../proto/', import.meta.url))] });
const service = pkg['akidb.collection.v1.CollectionService'] as Record<string, MethodDefinition<object, object>>;
const codec = (method: string) => ({ encode: (req: object) => service[method]!.requestSerialize(req), decode: (buf: Buffer) => service[method]!.requestDeserialize(buf) as Record<string, unknown> });

/** proto-loader's decoding, normalized to what the fast decoders give: Float32Array vectors, JSON Structs, no synthetic oneof keys. */
function normalize(value: unknown, key = ''): unknown {
  if (key === 'vector' || key === 'query_vector') return Float32Array.from(value as number[]);
  if ((key === 'metadata' || key === 'filter') && value !== null) return structToJson(value as WireStruct);
  if (Array.isArray(value)) return value.map((v) => normalize(v));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (!k.startsWith('_')) out[k] = normalize(v, k);
    return out;
  }
  return value;
}


function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

const text = fc.string({ unit: 'grapheme', maxLength: 12 });
const optText = fc.option(text, { nil: undefined });
const floats = fc.array(fc.float(), { maxLength: 40 });
const json = fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }).map((v) => (Object.is(v, -0) ? 0 : v)), { maxKeys: 5 });
const optStruct = fc.option(json.map(jsonToStruct), { nil: null });
const scope = { tenant: text, database: text, collection: text };
const document = fc.record({ doc_id: optText, external_id: optText, vector: floats, metadata: optStruct, text: optText }, { requiredKeys: ['vector'] });

function sameAsProtoLoader(method: string, decode: (buf: Buffer) => unknown, arb: fc.Arbitrary<object>): void {
  const { encode, decode: reference } = codec(method);
  fc.assert(
    fc.property(arb, (req) => {
      const buf = encode(req);
      expect(decode(buf)).toEqual(normalize(reference(buf)));
    }),
    { numRuns: 300 },
  );
}

describe('request decoders agree with proto-loader', () => {
  it('InsertRequest', () => {
    sameAsProtoLoader('Insert', decodeInsertRequest, fc.record({ ...scope, doc_id: optText, external_id: optText, vector: floats, metadata: optStruct, text: optText }, { requiredKeys: [] }));
  });

  it('UpsertRequest', () => {
    sameAsProtoLoader('Upsert', decodeUpsertRequest, fc.record({ ...scope, documents: fc.array(document, { maxLength: 5 }) }, { requiredKeys: [] }));
  });

  it('QueryRequest', () => {
    const arb = fc.record({ ...scope, query_vector: floats, top_k: fc.nat({ max: 2 ** 32 - 1 }), filter: optStruct, ef_search: fc.option(fc.nat({ max: 2 ** 32 - 1 }), { nil: undefined }), include_vector: fc.option(fc.boolean(), { nil: undefined }), include_metadata: fc.option(fc.boolean(), { nil: undefined }) }, { requiredKeys: [] });
    sameAsProtoLoader('Query', decodeQueryRequest, arb);
  });

  it('DeleteRequest', () => {
    sameAsProtoLoader('Delete', decodeDeleteRequest, fc.record({ ...scope, doc_ids: fc.array(text, { maxLength: 5 }), filter: optStruct }, { requiredKeys: [] }));
  });
});

describe('request decoders', () => {
  it('copies a packed vector into a Float32Array, and takes unpacked floats too', () => {
    const q = decodeQueryRequest(codec('Query').encode({ collection: 'c', query_vector: [0.5, -1.25, 3], top_k: 7 }));
    expect(q.query_vector).toBeInstanceOf(Float32Array);
    expect(Array.from(q.query_vector)).toEqual([0.5, -1.25, 3]);
    // field 4 as one unpacked float (wire type 5), then a packed run of two (wire type 2).
    const f = (x: number) => {
      const b = Buffer.alloc(4);
      b.writeFloatLE(x);
      return b;
    };
    const mixed = Buffer.concat([Buffer.from([0x25]), f(1), Buffer.from([0x22, 8]), f(2), f(3), Buffer.from([0x28, 5])]);
    const m = decodeQueryRequest(mixed);
    expect(Array.from(m.query_vector)).toEqual([1, 2, 3]);
    expect(m.top_k).toBe(5);
  });

  it('skips unknown fields of every wire type', () => {
    const known = codec('Query').encode({ collection: 'c', query_vector: [1], top_k: 2 });
    const unknown = Buffer.from([0xf8, 0x01, 0x05, 0xf9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xfa, 0x01, 0x02, 0xaa, 0xbb, 0xfd, 0x01, 1, 2, 3, 4]);
    expect(decodeQueryRequest(Buffer.concat([unknown, known]))).toEqual(decodeQueryRequest(known));
  });

  it('throws on bytes cut short, at every offset, and never loops', () => {
    const full = codec('Upsert').encode({ collection: 'c', documents: [{ doc_id: 'a', vector: [1, 2, 3], metadata: jsonToStruct({ k: [1, { x: 'y' }], n: null }) }] });
    let threw = 0;
    for (let cut = 1; cut < full.length; cut++) {
      try {
        decodeUpsertRequest(full.subarray(0, cut));
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        threw++;
      }
    }
    expect(threw).toBeGreaterThan(full.length / 2);
  });

  it('refuses non-finite numbers in a Struct with the field path', () => {
    const buf = codec('Query').encode({ collection: 'c', top_k: 1, filter: { fields: { a: { structValue: { fields: { b: { listValue: { values: [{ numberValue: 1 }, { numberValue: Number.NaN }] } } } } } } } });
    const err = thrownBy(() => decodeQueryRequest(buf));
    expect(err).toBeInstanceOf(AkiError);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'filter.a.b[1]' } });
  });

  it(`refuses Structs nested deeper than ${MAX_STRUCT_DEPTH}`, () => {
    const nest = (n: number) => {
      let v: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) v = { d: v };
      return v;
    };
    expect(() => decodeQueryRequest(codec('Query').encode({ collection: 'c', filter: jsonToStruct(nest(MAX_STRUCT_DEPTH - 1)) }))).not.toThrow();
    expect(thrownBy(() => decodeQueryRequest(codec('Query').encode({ collection: 'c', filter: jsonToStruct(nest(MAX_STRUCT_DEPTH + 5)) })))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { maxDepth: MAX_STRUCT_DEPTH } });
  });

  it('keeps a "__proto__" key as data', () => {
    // By hand: protobufjs itself cannot encode this key (it lands on the prototype of its map).
    const ld = (tag: number, ...parts: Buffer[]) => {
      const body = Buffer.concat(parts);
      return Buffer.concat([Buffer.from([tag, body.length]), body]);
    };
    const bool = Buffer.from([0x20, 0x01]);
    const inner = ld(0x0a, ld(0x0a, Buffer.from('polluted')), ld(0x12, bool));
    const outer = ld(0x0a, ld(0x0a, Buffer.from('__proto__')), ld(0x12, ld(0x2a, inner)));
    const buf = ld(0x2a, outer);
    const filter = decodeDeleteRequest(buf).filter!;
    expect(Object.keys(filter)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(filter)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
