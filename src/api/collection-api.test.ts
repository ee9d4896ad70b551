import { describe, expect, it } from 'vitest';
import { decodeVector, toDocumentInput } from './collection-api.js';

/** The code of the AkiError `fn` throws (fails the test when it throws nothing). */
function codeOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  throw new Error('expected a throw');
}

const b64 = (xs: number[], enc: BufferEncoding = 'base64'): string => Buffer.from(new Float32Array(xs).buffer).toString(enc);

describe('decodeVector', () => {
  it('decodes base64 little-endian float32, padded or not needing padding', () => {
    expect(Array.from(decodeVector(b64([1, -2.5, 3]), 'v'))).toEqual([1, -2.5, 3]);
    expect(Array.from(decodeVector(b64([0.5, 0.25]), 'v'))).toEqual([0.5, 0.25]);
    expect(Array.from(decodeVector(b64([7]), 'v'))).toEqual([7]);
  });

  it('passes number arrays through for the engine to check', () => {
    const arr = [1, 2, 3];
    expect(decodeVector(arr, 'v')).toBe(arr);
  });

  it.each([
    ['a character outside the alphabet', b64([1, 2, 3]).replace('A', '!')],
    ['padding in the middle', `AAA=${b64([1, 2, 3]).slice(4)}`],
    ['a length that is not a multiple of 4', b64([1, 2, 3]).slice(0, -1)],
    ['bytes that are not whole float32 values', Buffer.from([1, 2, 3, 4, 5, 6]).toString('base64')],
    ['an empty string', ''],
    ['whitespace', ` ${b64([1, 2, 3])}`],
  ])('refuses %s with INVALID_VECTOR', (_what, value) => {
    expect(codeOf(() => decodeVector(value, 'query_vector'))).toBe('INVALID_VECTOR');
  });

  it('refuses values that are neither arrays nor strings', () => {
    for (const v of [42, null, { 0: 1 }, true]) expect(codeOf(() => decodeVector(v, 'v'))).toBe('INVALID_VECTOR');
  });
});

describe('toDocumentInput', () => {
  it('keys documents by doc_id, accepts external_id as its synonym, and makes a UUID when both are absent', () => {
    expect(toDocumentInput({ doc_id: 'a', vector: [1] }, 0).id).toBe('a');
    expect(toDocumentInput({ external_id: 'x', vector: [1] }, 0).id).toBe('x');
    expect(toDocumentInput({ doc_id: 'same', external_id: 'same', vector: [1] }, 0).id).toBe('same');
    expect(toDocumentInput({ vector: [1] }, 0).id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('refuses disagreeing ids, non-string ids, non-object metadata and non-string text', () => {
    for (const raw of [{ doc_id: 'a', external_id: 'b', vector: [1] }, { doc_id: 5, vector: [1] }, { doc_id: 'a', vector: [1], metadata: [1] }, { doc_id: 'a', vector: [1], text: 3 }, null, 'doc']) {
      expect(codeOf(() => toDocumentInput(raw as never, 2))).toBe('INVALID_DOCUMENT');
    }
    expect(codeOf(() => toDocumentInput({ doc_id: 'a' }, 0))).toBe('INVALID_VECTOR');
  });
});
