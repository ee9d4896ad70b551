import { AkiError } from '../errors.js';

/** The similarity metrics a collection can use. */
export type Metric = 'cosine' | 'l2' | 'dot';
export const METRICS: readonly Metric[] = ['cosine', 'l2', 'dot'];

export function isMetric(value: unknown): value is Metric {
  return typeof value === 'string' && (METRICS as readonly string[]).includes(value);
}

/**
 * Internal distance: what indexes rank by (smaller is closer).
 * cosine: 1 - cos; l2: squared Euclidean; dot: 1 - dot (the conventions of the native index).
 */
export function rawDistance(metric: Metric, a: Float32Array, aOff: number, b: Float32Array, bOff: number, dim: number, invNormA: number, invNormB: number): number {
  if (metric === 'l2') {
    let s = 0;
    for (let i = 0; i < dim; i++) {
      const d = a[aOff + i]! - b[bOff + i]!;
      s += d * d;
    }
    return s;
  }
  let dot = 0;
  for (let i = 0; i < dim; i++) dot += a[aOff + i]! * b[bOff + i]!;
  return metric === 'cosine' ? 1 - dot * invNormA * invNormB : 1 - dot;
}

/** 1 / |v|, for cosine; 1 for other metrics. */
export function inverseNorm(metric: Metric, v: Float32Array, off = 0, dim = v.length): number {
  if (metric !== 'cosine') return 1;
  let s = 0;
  for (let i = 0; i < dim; i++) s += v[off + i]! * v[off + i]!;
  return s > 0 ? 1 / Math.sqrt(s) : 0;
}

/** What users see: `distance` (smaller is closer) and `score` (larger is closer). */
export function presentDistance(metric: Metric, raw: number): { distance: number; score: number } {
  switch (metric) {
    case 'cosine':
      return { distance: raw, score: 1 - raw };
    case 'l2': {
      const d = Math.sqrt(Math.max(0, raw));
      return { distance: d, score: 1 / (1 + d) };
    }
    case 'dot':
      return { distance: raw, score: 1 - raw };
  }
}

/** Cosine needs a direction: vectors shorter than this are rejected (zero included). */
export const MIN_COSINE_NORM = 1e-15;

/** A unit-length copy of `v` (for cosine), so low-precision kernels see well-scaled values. */
export function normalized(v: Float32Array, invNorm: number): Float32Array {
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i]! * invNorm;
  return out;
}

/**
 * Validate and convert a user vector to Float32Array: right length, finite after conversion to
 * float32, and (for cosine) not all zeros. `copy` false lets a Float32Array through uncopied
 * (for query vectors, which are never stored).
 */
export function toVector(input: unknown, dimension: number, metric: Metric, where: Record<string, unknown> = {}, copy = true): Float32Array {
  let v: Float32Array;
  if (input instanceof Float32Array) {
    v = copy ? new Float32Array(input) : input;
  } else if (Array.isArray(input)) {
    v = new Float32Array(input.length);
    for (let i = 0; i < input.length; i++) {
      const x: unknown = input[i];
      if (typeof x !== 'number') throw new AkiError('INVALID_VECTOR', { ...where, index: i }, `Vector element ${i} is not a number`);
      v[i] = x;
    }
  } else {
    throw new AkiError('INVALID_VECTOR', where, 'A vector must be an array of numbers or a Float32Array');
  }
  if (v.length !== dimension) throw new AkiError('DIMENSION_MISMATCH', { ...where, expected: dimension, actual: v.length }, `Expected a vector of dimension ${dimension}, got ${v.length}`);
  let norm = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isFinite(x)) throw new AkiError('INVALID_VECTOR', { ...where, index: i }, `Vector element ${i} is not finite (NaN, Infinity, or beyond float32 range)`);
    norm += x * x;
  }
  if (metric === 'cosine' && !(norm >= MIN_COSINE_NORM * MIN_COSINE_NORM)) throw new AkiError('INVALID_VECTOR', { ...where, minNorm: MIN_COSINE_NORM }, `A vector with norm below ${MIN_COSINE_NORM} has no usable cosine similarity`);
  return v;
}
