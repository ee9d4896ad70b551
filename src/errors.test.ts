import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AkiError, ERROR_CODES, isAkiError } from './errors.js';

describe('error table', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');

  it('documents every code in docs/errors.md with its HTTP and gRPC status', () => {
    for (const [code, v] of Object.entries(ERROR_CODES)) {
      expect(doc).toContain(`| \`${code}\` | ${v.http} | ${v.grpc} |`);
    }
  });

  it('documents no code that does not exist', () => {
    const documented = [...doc.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it('gives client mistakes a 4xx status', () => {
    for (const code of ['INVALID_ARGUMENT', 'INVALID_NAME', 'INVALID_VECTOR', 'DIMENSION_MISMATCH', 'INVALID_FILTER', 'FILTER_TOO_COMPLEX', 'INVALID_TOP_K', 'PAYLOAD_TOO_LARGE', 'COLLECTION_NOT_FOUND', 'COLLECTION_ALREADY_EXISTS'] as const) {
      expect(ERROR_CODES[code].http).toBeGreaterThanOrEqual(400);
      expect(ERROR_CODES[code].http).toBeLessThan(500);
    }
  });

  it('carries code, status and details', () => {
    const e = new AkiError('COLLECTION_NOT_FOUND', { collection: 'x' });
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ code: 'COLLECTION_NOT_FOUND', httpStatus: 404, grpcStatus: 'NOT_FOUND', details: { collection: 'x' } });
    expect(isAkiError(e, 'COLLECTION_NOT_FOUND')).toBe(true);
    expect(isAkiError(e, 'INTERNAL')).toBe(false);
    expect(isAkiError(new Error('x'))).toBe(false);
  });
});
