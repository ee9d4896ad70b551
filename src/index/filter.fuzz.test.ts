import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AkiError } from '../errors.js';
import { DEFAULT_FILTER_LIMITS, parseFilter, predicateOf, type FilterLimits, type FilterNode, type Metadata } from './filter.js';

// What filter.test.ts leaves out: input far larger than the limits, deep or wide, must be refused
// with a coded error after work bounded by the limits, never by the input's size, and never with
// a stack overflow.

const NO_LIMITS: FilterLimits = { maxDepth: Infinity, maxClauses: Infinity, maxInValues: Infinity };

/** The configurable range of the limits (query.max_filter_depth 1..256, query.max_filter_clauses 1..10000). */
const limits: fc.Arbitrary<FilterLimits> = fc.record({
  maxDepth: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 256 }) }),
  maxClauses: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 150 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 10_000 }) }),
  maxInValues: fc.constant(DEFAULT_FILTER_LIMITS.maxInValues),
});

/** parseFilter's answer: the tree, or the code of the AkiError it threw. Anything else (a RangeError, a TypeError) fails the test. */
function parseOrCode(filter: unknown, l: FilterLimits): FilterNode | { code: string } {
  try {
    return parseFilter(filter, l);
  } catch (err) {
    if (!(err instanceof AkiError)) throw err;
    return { code: err.code };
  }
}

function isCode(out: FilterNode | { code: string }): out is { code: string } {
  return 'code' in out;
}

function treeSize(n: FilterNode): number {
  switch (n.kind) {
    case 'all':
    case 'leaf':
      return 1;
    case 'not':
      return 1 + treeSize(n.child);
    case 'and':
    case 'or':
      return n.children.reduce((s, c) => s + treeSize(c), 1);
  }
}

function treeDepth(n: FilterNode): number {
  switch (n.kind) {
    case 'all':
    case 'leaf':
      return 1;
    case 'not':
      return 1 + treeDepth(n.child);
    case 'and':
    case 'or':
      return 1 + Math.max(...n.children.map(treeDepth));
  }
}

// ------------------------------------------------------------------ instrumented input

/** Counts how much of a lazily built filter the parser looked at; reading past `budget` fails the test at once instead of running on. */
interface Reads {
  count: number;
  budget: number;
}

function read(reads: Reads): void {
  reads.count += 1;
  if (reads.count > reads.budget) throw new Error(`the parser read ${reads.count} lazily built parts, past the budget of ${reads.budget}`);
}

type Level = 'not' | 'and' | 'or' | 'fieldNot';

/**
 * An endless filter: level i is built only when the parser reads it, in the shape levels[i % n]
 * gives. 'fieldNot' switches to a field condition `{ a: { $not: { $not: ... } } }`, endless too.
 */
function endlessDeep(levels: readonly Level[], reads: Reads): Record<string, unknown> {
  const lazy = (key: string, value: () => unknown): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    Object.defineProperty(o, key, {
      enumerable: true,
      get: () => {
        read(reads);
        return value();
      },
    });
    return o;
  };
  const condition = (): Record<string, unknown> => lazy('$not', condition);
  const doc = (i: number): Record<string, unknown> => {
    const level = levels[i % levels.length]!;
    switch (level) {
      case 'not':
        return lazy('$not', () => doc(i + 1));
      case 'and':
        return lazy('$and', () => [doc(i + 1)]);
      case 'or':
        return lazy('$or', () => [{ a: i }, doc(i + 1)]);
      case 'fieldNot':
        return lazy('a', condition);
    }
  };
  return doc(0);
}

/** An array claiming `length` elements, each built only when the parser reads it: a stand-in for a huge JSON array. */
function hugeArray(length: number, element: (i: number) => unknown, reads: Reads): unknown[] {
  const isIndex = (p: string | symbol): p is string => typeof p === 'string' && /^(0|[1-9]\d*)$/.test(p);
  return new Proxy([] as unknown[], {
    get(target, p, receiver) {
      if (p === 'length') return length;
      if (isIndex(p)) {
        read(reads);
        return element(Number(p));
      }
      return Reflect.get(target, p, receiver) as unknown;
    },
    has(target, p) {
      return isIndex(p) ? Number(p) < length : Reflect.has(target, p);
    },
  });
}

describe('parseFilter on input far beyond the limits', () => {
  it('an endlessly deep filter is refused with FILTER_TOO_COMPLEX after reading at most maxDepth + 2 levels', () => {
    let total = 0;
    fc.assert(
      fc.property(fc.array(fc.constantFrom<Level>('not', 'and', 'or', 'fieldNot'), { minLength: 1, maxLength: 6 }), limits, (levels, l) => {
        const reads: Reads = { count: 0, budget: l.maxDepth + 2 };
        expect(parseOrCode(endlessDeep(levels, reads), l)).toEqual({ code: 'FILTER_TOO_COMPLEX' });
        total += reads.count;
      }),
      { seed: 0xf11_0001, numRuns: 1000 },
    );
    // The lazy levels really were read: on average several per run.
    expect(total).toBeGreaterThan(3000);
  });

  it('$and / $or arrays of 2^32 - 1 elements are refused with FILTER_TOO_COMPLEX after reading at most maxClauses + 1 of them', () => {
    // Elements that cost one clause or more each, and the empty filter {}, which matches all but is still a node to evaluate.
    const elements: Record<string, (i: number) => unknown> = {
      empty: () => ({}),
      equality: (i) => ({ [`f${i % 7}`]: i }),
      range: () => ({ a: { $gte: 1, $lt: 9 } }),
      notEmpty: () => ({ $not: {} }),
      orOfEmpty: () => ({ $or: [{}] }),
      mixed: (i) => [{}, { a: i }, { $and: [{}, {}] }][i % 3],
    };
    let total = 0;
    fc.assert(
      fc.property(fc.constantFrom('$and', '$or'), fc.constantFrom(...Object.keys(elements)), fc.boolean(), limits, (op, kind, nested, l) => {
        const reads: Reads = { count: 0, budget: l.maxClauses + 1 };
        const wide = { [op]: hugeArray(2 ** 32 - 1, elements[kind]!, reads) };
        const filter = nested ? { $or: [{ b: 1 }, wide] } : wide;
        expect(parseOrCode(filter, l)).toEqual({ code: 'FILTER_TOO_COMPLEX' });
        total += reads.count;
      }),
      { seed: 0xf11_0002, numRuns: 500 },
    );
    expect(total).toBeGreaterThan(5000);
  });

  it('a chain of d nested $not / $and / $or objects compiles exactly when d is within both limits, and is FILTER_TOO_COMPLEX otherwise', () => {
    const depth = fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 40 }) }, { weight: 3, arbitrary: fc.integer({ min: 1, max: 3000 }) }, { weight: 1, arbitrary: fc.constant(100_000) });
    fc.assert(
      fc.property(depth, fc.array(fc.constantFrom('$not', '$and', '$or'), { minLength: 1, maxLength: 5 }), limits, (d, ops, l) => {
        // d filter objects, d - 1 logical operators and one equality clause: depth d, d clauses.
        let f: Record<string, unknown> = { a: 1 };
        for (let i = 1; i < d; i++) {
          const op = ops[i % ops.length]!;
          f = op === '$not' ? { $not: f } : { [op]: [f] };
        }
        const out = parseOrCode(f, l);
        if (d <= l.maxDepth && d <= l.maxClauses) {
          expect(isCode(out)).toBe(false);
          const pred = predicateOf(out as FilterNode);
          // An even number of $not around { a: 1 } matches it; an odd number inverts.
          const nots = Array.from({ length: d - 1 }, (_, i) => ops[(i + 1) % ops.length]).filter((o) => o === '$not').length;
          expect(pred({ a: 1 })).toBe(nots % 2 === 0);
        } else {
          expect(out).toEqual({ code: 'FILTER_TOO_COMPLEX' });
        }
      }),
      { seed: 0xf11_0003, numRuns: 500 },
    );
  });

  it('deeply nested JSON where a scalar, a filter object or an operator is expected is INVALID_FILTER, with no recursion into it', () => {
    const deepArray = (n: number): unknown => JSON.parse('['.repeat(n) + ']'.repeat(n));
    const deepObject = (n: number): unknown => JSON.parse('{"b":'.repeat(n) + '1' + '}'.repeat(n));
    const place: ((deep: unknown) => unknown)[] = [
      (deep) => ({ a: deep }),
      (deep) => ({ a: { $eq: deep } }),
      (deep) => ({ a: { $ne: deep } }),
      (deep) => ({ a: { $in: [1, deep] } }),
      (deep) => ({ a: { $gt: deep } }),
      (deep) => ({ a: { $not: deep } }),
      (deep) => ({ $and: [deep] }),
      (deep) => ({ $or: [{ a: 1 }, deep] }),
      (deep) => ({ $not: deep }),
      (deep) => deep,
    ];
    fc.assert(
      fc.property(fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 2, max: 50 }) }, { weight: 1, arbitrary: fc.constantFrom(10_000, 100_000) }), fc.boolean(), fc.nat({ max: place.length - 1 }), fc.boolean(), (n, array, where, unlimited) => {
        const deep = array ? deepArray(n) : deepObject(n);
        const filter = place[where]!(deep);
        // An object where a filter is expected is a field condition, which a nested object is not.
        expect(parseOrCode(filter, unlimited ? NO_LIMITS : DEFAULT_FILTER_LIMITS)).toEqual({ code: 'INVALID_FILTER' });
      }),
      { seed: 0xf11_0004, numRuns: 400 },
    );
  });
});

// ------------------------------------------------------------------ random deep and wide trees

const scalar = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b'));
const field = fc.constantFrom('a', 'b', 'a.b', 'c');
const condition = fc.oneof(
  scalar,
  fc.record({ $gt: fc.integer({ min: -3, max: 3 }) }),
  fc.record({ $in: fc.array(scalar, { maxLength: 4 }) }),
  fc.record({ $exists: fc.boolean() }),
  fc.nat({ max: 40 }).map((n) => {
    let c: Record<string, unknown> = { $lte: 1 };
    for (let i = 0; i < n; i++) c = { $not: c };
    return c;
  }),
  // Invalid conditions, so that rejections for reasons other than size are in the mix.
  fc.constantFrom<unknown>({ $regex: 'x' }, { $gt: null }, [1], { b: 1 }),
);
const { tree } = fc.letrec<{ tree: unknown }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'medium', withCrossShrink: true },
    fc.dictionary(field, condition, { maxKeys: 3 }),
    fc.constant({}),
    fc.record({ $and: fc.array(tie('tree'), { maxLength: 6 }) }),
    fc.record({ $or: fc.array(tie('tree'), { minLength: 1, maxLength: 6 }) }),
    fc.record({ $not: tie('tree') }),
    // Very wide: hundreds of siblings, many of them the empty filter.
    fc.record({ $or: fc.array(fc.oneof(fc.constant({}), fc.record({ a: scalar })), { minLength: 1, maxLength: 400 }) }),
    fc.record({ $and: fc.array(fc.constant({}), { minLength: 1, maxLength: 400 }) }),
  ),
}));
const metadata = fc.oneof(fc.constant(null), fc.record({ a: fc.oneof(scalar, fc.record({ b: scalar })), b: scalar, c: fc.array(scalar, { maxLength: 3 }) }, { requiredKeys: [] }));

describe('parseFilter on random deep and wide filters', () => {
  it('accepted filters build trees bounded by the limits; raising a limit never rejects what was accepted; only FILTER_TOO_COMPLEX depends on the limits', () => {
    let accepted = 0;
    let tooComplex = 0;
    fc.assert(
      fc.property(tree, limits, fc.array(metadata, { minLength: 1, maxLength: 4 }), (f, l, metas) => {
        const out = parseOrCode(f, l);
        const unlimited = parseOrCode(f, NO_LIMITS);
        if (isCode(out)) {
          expect(['INVALID_FILTER', 'FILTER_TOO_COMPLEX']).toContain(out.code);
          // Only size may make a limited parse fail where the unlimited one succeeds.
          if (!isCode(unlimited)) expect(out.code).toBe('FILTER_TOO_COMPLEX');
          if (out.code === 'FILTER_TOO_COMPLEX') tooComplex += 1;
          return;
        }
        accepted += 1;
        // Every node of the tree is a clause or joins at least two of them: evaluation cost is bounded by maxClauses.
        expect(treeSize(out)).toBeLessThanOrEqual(2 * l.maxClauses);
        expect(treeDepth(out)).toBeLessThanOrEqual(2 * l.maxDepth + 3);
        // Monotone in the limits, and the limits change nothing about what the filter means.
        expect(isCode(unlimited)).toBe(false);
        const bigger = parseOrCode(f, { ...l, maxDepth: l.maxDepth + 5, maxClauses: l.maxClauses * 2 });
        expect(isCode(bigger)).toBe(false);
        const [p, q] = [predicateOf(out), predicateOf(unlimited as FilterNode)];
        for (const m of metas) expect(p(m as Metadata | null)).toBe(q(m as Metadata | null));
      }),
      { seed: 0xf11_0010, numRuns: 2000 },
    );
    expect(accepted).toBeGreaterThan(300);
    expect(tooComplex).toBeGreaterThan(300);
  });

  it('a flat object of up to 30,000 fields or an $in of 10,001 values is FILTER_TOO_COMPLEX under every limit setting', () => {
    fc.assert(
      fc.property(fc.integer({ min: 10_001, max: 30_000 }), limits, (n, l) => {
        const wide = Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, i]));
        expect(parseOrCode(wide, l)).toEqual({ code: 'FILTER_TOO_COMPLEX' });
        expect(parseOrCode({ a: { $in: Array.from({ length: 10_001 }, (_, i) => i) } }, { ...l, maxInValues: 10_000 })).toEqual({ code: 'FILTER_TOO_COMPLEX' });
      }),
      { seed: 0xf11_0011, numRuns: 20 },
    );
  });
});
