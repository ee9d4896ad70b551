import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AkiError } from '../errors.js';
import { ColumnCache, evaluateOnColumns } from './filter-columns.js';
import { compileFilter, parseFilter, type Metadata } from './filter.js';

/** Whether `metadata` passes `filter`. */
function matches(filter: unknown, metadata: Metadata | null): boolean {
  return compileFilter(filter)(metadata);
}

/** The error `fn` throws; fails the test when it returns normally. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw, but the call returned');
}

function expectCode(filter: unknown, code: 'INVALID_FILTER' | 'FILTER_TOO_COMPLEX'): void {
  const err = thrown(() => compileFilter(filter));
  expect(err).toBeInstanceOf(AkiError);
  expect(err).toMatchObject({ code });
}

/** `{ $not: { $not: ... { a: 1 } } }`: `objects` filter objects nested inside each other. */
function notChain(objects: number): Record<string, unknown> {
  let f: Record<string, unknown> = { a: 1 };
  for (let i = 1; i < objects; i++) f = { $not: f };
  return f;
}

/** `objects` filter objects nested through `$and` arrays. */
function andChain(objects: number): Record<string, unknown> {
  let f: Record<string, unknown> = { a: 1 };
  for (let i = 1; i < objects; i++) f = { $and: [f] };
  return f;
}

/** A flat filter of `n` equality clauses on distinct fields. */
function flatClauses(n: number): Record<string, unknown> {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, i]));
}

type Case = [name: string, filter: unknown, metadata: Metadata | null, expected: boolean];

describe('compileFilter: comparison operators', () => {
  const cases: Case[] = [
    ['$eq number', { a: { $eq: 1 } }, { a: 1 }, true],
    ['$eq number, other value', { a: { $eq: 1 } }, { a: 2 }, false],
    ['$eq string', { a: { $eq: 'x' } }, { a: 'x' }, true],
    ['$eq boolean', { a: { $eq: false } }, { a: false }, true],
    ['$eq null on a null field', { a: { $eq: null } }, { a: null }, true],
    ['$eq null on a present field', { a: { $eq: null } }, { a: 0 }, false],
    ['$ne equal value', { a: { $ne: 1 } }, { a: 1 }, false],
    ['$ne other value', { a: { $ne: 1 } }, { a: 2 }, true],
    ['$ne null on a present field', { a: { $ne: null } }, { a: 0 }, true],
    ['$ne null on a null field', { a: { $ne: null } }, { a: null }, false],
    ['$gt above', { a: { $gt: 5 } }, { a: 6 }, true],
    ['$gt equal', { a: { $gt: 5 } }, { a: 5 }, false],
    ['$gt below', { a: { $gt: 5 } }, { a: 4 }, false],
    ['$gte equal', { a: { $gte: 5 } }, { a: 5 }, true],
    ['$gte below', { a: { $gte: 5 } }, { a: 4.999 }, false],
    ['$lt below', { a: { $lt: 5 } }, { a: -1 }, true],
    ['$lt equal', { a: { $lt: 5 } }, { a: 5 }, false],
    ['$lte equal', { a: { $lte: 5 } }, { a: 5 }, true],
    ['$lte above', { a: { $lte: 5 } }, { a: 5.001 }, false],
    ['$gt on strings compares lexically', { a: { $gt: 'b' } }, { a: 'c' }, true],
    ['$lt on strings compares lexically', { a: { $lt: 'b' } }, { a: 'c' }, false],
    ['$gte and $lte together form a range (inside)', { a: { $gte: 1, $lte: 3 } }, { a: 2 }, true],
    ['$gte and $lte together form a range (outside)', { a: { $gte: 1, $lte: 3 } }, { a: 4 }, false],
    ['$in holds the value', { a: { $in: [1, 2, 3] } }, { a: 2 }, true],
    ['$in lacks the value', { a: { $in: [1, 2, 3] } }, { a: 4 }, false],
    ['$in mixed types', { a: { $in: ['x', 7, true] } }, { a: true }, true],
    ['$in empty list matches nothing', { a: { $in: [] } }, { a: 1 }, false],
    ['$nin lacks the value', { a: { $nin: [1, 2] } }, { a: 3 }, true],
    ['$nin holds the value', { a: { $nin: [1, 2] } }, { a: 2 }, false],
    ['$nin empty list matches everything', { a: { $nin: [] } }, { a: 1 }, true],
    ['$exists true on a present field', { a: { $exists: true } }, { a: 0 }, true],
    ['$exists true on a null field (present)', { a: { $exists: true } }, { a: null }, true],
    ['$exists true on a missing field', { a: { $exists: true } }, { b: 1 }, false],
    ['$exists false on a missing field', { a: { $exists: false } }, { b: 1 }, true],
    ['$exists false on a present field', { a: { $exists: false } }, { a: false }, false],
    ['field-level $not inverts', { a: { $not: { $gt: 5 } } }, { a: 3 }, true],
    ['field-level $not inverts (match)', { a: { $not: { $gt: 5 } } }, { a: 6 }, false],
    ['field-level $not of $in', { a: { $not: { $in: [1, 2] } } }, { a: 3 }, true],
  ];
  it.each(cases)('%s', (_name, filter, metadata, expected) => {
    expect(matches(filter, metadata)).toBe(expected);
  });
});

describe('compileFilter: implicit equality, logical operators, paths', () => {
  const cases: Case[] = [
    ['implicit equality', { a: 1 }, { a: 1 }, true],
    ['implicit equality, other value', { a: 1 }, { a: 2 }, false],
    ['implicit equality on a string', { genre: 'jazz' }, { genre: 'jazz' }, true],
    ['several fields are ANDed', { a: 1, b: 'x' }, { a: 1, b: 'x' }, true],
    ['several fields are ANDed (one fails)', { a: 1, b: 'x' }, { a: 1, b: 'y' }, false],
    ['empty filter matches everything', {}, { a: 1 }, true],
    ['empty filter matches null metadata', {}, null, true],
    ['$and all pass', { $and: [{ a: 1 }, { b: { $gt: 1 } }] }, { a: 1, b: 2 }, true],
    ['$and one fails', { $and: [{ a: 1 }, { b: { $gt: 1 } }] }, { a: 1, b: 1 }, false],
    ['$or one passes', { $or: [{ a: 1 }, { b: 2 }] }, { a: 0, b: 2 }, true],
    ['$or none passes', { $or: [{ a: 1 }, { b: 2 }] }, { a: 0, b: 0 }, false],
    ['top-level $not inverts', { $not: { a: 1 } }, { a: 2 }, true],
    ['top-level $not inverts (match)', { $not: { a: 1 } }, { a: 1 }, false],
    ['logical operators combine with fields', { c: 'k', $or: [{ a: 1 }, { b: 2 }] }, { a: 1, c: 'k' }, true],
    ['logical operators combine with fields (field fails)', { c: 'k', $or: [{ a: 1 }, { b: 2 }] }, { a: 1, c: 'j' }, false],
    ['nested $or inside $and', { $and: [{ $or: [{ a: 1 }, { a: 2 }] }, { $not: { b: 3 } }] }, { a: 2, b: 4 }, true],
    ['dotted path', { 'a.b.c': 5 }, { a: { b: { c: 5 } } }, true],
    ['dotted path, other value', { 'a.b.c': 5 }, { a: { b: { c: 6 } } }, false],
    ['dotted path with an operator', { 'a.b': { $gte: 2 } }, { a: { b: 3 } }, true],
    ['dotted path through a scalar is missing', { 'a.b': 1 }, { a: 1 }, false],
    ['dotted path through null is missing', { 'a.b': { $exists: true } }, { a: null }, false],
    ['a literal dotted key is not a path', { 'a.b': 1 }, { 'a.b': 1 }, false],
  ];
  it.each(cases)('%s', (_name, filter, metadata, expected) => {
    expect(matches(filter, metadata)).toBe(expected);
  });
});

describe('compileFilter: arrays (an array field matches when any element does)', () => {
  const cases: Case[] = [
    ['equality with one element', { tags: 'b' }, { tags: ['a', 'b'] }, true],
    ['equality with no element', { tags: 'z' }, { tags: ['a', 'b'] }, false],
    ['$eq with one element', { tags: { $eq: 2 } }, { tags: [1, 2] }, true],
    ['$gt with one element', { a: { $gt: 2 } }, { a: [1, 3] }, true],
    ['$gt with no element', { a: { $gt: 5 } }, { a: [1, 3] }, false],
    ['$lte with one element', { a: { $lte: 1 } }, { a: [1, 3] }, true],
    ['$in with one element', { a: { $in: [3, 9] } }, { a: [1, 3] }, true],
    ['$in with no element', { a: { $in: [7, 9] } }, { a: [1, 3] }, false],
    ['$nin when one element is listed', { a: { $nin: [1] } }, { a: [3, 1] }, false],
    ['$nin when no element is listed', { a: { $nin: [2] } }, { a: [3, 1] }, true],
    ['$ne when one element equals', { a: { $ne: 1 } }, { a: [1, 3] }, false],
    ['$ne when no element equals', { a: { $ne: 2 } }, { a: [1, 3] }, true],
    ['empty array matches no value', { a: 1 }, { a: [] }, false],
    ['empty array exists', { a: { $exists: true } }, { a: [] }, true],
    ['dotted path to an array', { 'a.tags': 'x' }, { a: { tags: ['x', 'y'] } }, true],
    ['only one level of arrays is unwrapped', { a: 1 }, { a: [[1]] }, false],
    ['field-level $not over an array', { a: { $not: { $in: [1] } } }, { a: [2, 1] }, false],
  ];
  it.each(cases)('%s', (_name, filter, metadata, expected) => {
    expect(matches(filter, metadata)).toBe(expected);
  });

  // MongoDB: { 'a.b': 1 } matches { a: [{ b: 1 }] } (the path descends into each element).
  it('a dotted path through an array of objects matches when any element does (MongoDB rule)', () => {
    expect(matches({ 'a.b': 1 }, { a: [{ b: 0 }, { b: 1 }] })).toBe(true);
    expect(matches({ 'a.b': { $gt: 0 } }, { a: [{ b: 0 }, { b: 1 }] })).toBe(true);
    expect(matches({ 'a.b': 2 }, { a: [{ b: 0 }, { b: 1 }] })).toBe(false);
  });
});

describe('compileFilter: missing fields and type mismatches', () => {
  const cases: Case[] = [
    ['equality on a missing field', { a: 1 }, { b: 1 }, false],
    ['equality on null metadata', { a: 1 }, null, false],
    ['$gt on a missing field', { a: { $gt: 0 } }, {}, false],
    ['$lt on a missing field', { a: { $lt: 0 } }, {}, false],
    ['$in on a missing field', { a: { $in: [1] } }, {}, false],
    ['$nin on a missing field', { a: { $nin: [1] } }, {}, true],
    ['$ne on a missing field', { a: { $ne: 1 } }, {}, true],
    ['$not on a missing field', { a: { $not: { $gt: 1 } } }, {}, true],
    // MongoDB: null equality also matches a missing field; $ne null requires presence.
    ['null equality on a missing field', { a: null }, {}, true],
    ['null equality on null metadata', { a: null }, null, true],
    ['$ne null on a missing field', { a: { $ne: null } }, {}, false],
    ['$in [null] on a missing field', { a: { $in: [null] } }, {}, true],
    ['$nin [null] on a missing field', { a: { $nin: [null] } }, {}, false],
    ['string vs number equality', { a: '1' }, { a: 1 }, false],
    ['number vs string equality', { a: 1 }, { a: '1' }, false],
    ['boolean vs number equality', { a: true }, { a: 1 }, false],
    ['number vs boolean equality', { a: 0 }, { a: false }, false],
    ['null vs zero', { a: null }, { a: 0 }, false],
    ['null vs empty string', { a: null }, { a: '' }, false],
    ['$gt number vs string field', { a: { $gt: 1 } }, { a: '2' }, false],
    ['$lt string vs number field', { a: { $lt: 'z' } }, { a: 1 }, false],
    ['$gte number vs boolean field', { a: { $gte: 0 } }, { a: true }, false],
    ['$gt number vs object field', { a: { $gt: 0 } }, { a: { b: 1 } }, false],
    ['$gt number vs null field', { a: { $gt: -1 } }, { a: null }, false],
    ['$in number vs string field', { a: { $in: [1] } }, { a: '1' }, false],
    ['equality vs object field', { a: 1 }, { a: { b: 1 } }, false],
    ['array elements of the wrong type', { a: { $gt: 1 } }, { a: ['5', true, null] }, false],
  ];
  it.each(cases)('%s', (_name, filter, metadata, expected) => {
    expect(matches(filter, metadata)).toBe(expected);
  });
});

describe('compileFilter: prototype keys never reach inherited properties', () => {
  const proto = (json: string): Metadata => JSON.parse(json) as Metadata;
  const cases: Case[] = [
    ['__proto__ $exists', proto('{"__proto__":{"$exists":true}}'), {}, false],
    ['constructor $exists', { constructor: { $exists: true } }, {}, false],
    ['toString $exists', { toString: { $exists: true } }, {}, false],
    ['hasOwnProperty $exists', { hasOwnProperty: { $exists: true } }, { a: 1 }, false],
    ['constructor.name equality', { 'constructor.name': 'Object' }, {}, false],
    ['a.constructor.name equality', { 'a.constructor.name': 'Object' }, { a: {} }, false],
    ['__proto__.x through an own object', { '__proto__.polluted': 1 }, {}, false],
    ['length of an array field', { 'a.length': 1 }, { a: [1] }, false],
    ['length of a string field', { 'a.length': 1 }, { a: 'x' }, false],
    ['constructor $ne on a missing key', { constructor: { $ne: 'x' } }, {}, true],
    ['constructor $in', { constructor: { $in: ['function', 'Object'] } }, {}, false],
    ['an own __proto__ key is an ordinary field', proto('{"__proto__":5}'), proto('{"__proto__":5}'), true],
    ['an own constructor key is an ordinary field', { constructor: 'c' }, { constructor: 'c' }, true],
  ];
  it.each(cases)('%s', (_name, filter, metadata, expected) => {
    expect(matches(filter, metadata)).toBe(expected);
  });

  it('evaluating filters leaves Object.prototype untouched', () => {
    compileFilter(proto('{"__proto__":{"$eq":1},"constructor.prototype.polluted":1}'))({ a: 1 });
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  });
});

describe('compileFilter: rejected filters', () => {
  const invalid: [string, unknown][] = [
    ['unknown top-level operator', { $where: 'this.a > 1' }],
    ['unknown field operator', { a: { $regex: 'x' } }],
    ['misspelled operator', { a: { $gte: 1, $lten: 2 } }],
    ['$and as a field operator', { a: { $and: [{ $gt: 1 }] } }],
    ['$exists at top level', { $exists: true }],
    ['filter is an array', [{ a: 1 }]],
    ['filter is null', null],
    ['filter is a string', 'a = 1'],
    ['filter is a number', 1],
    ['filter is a Date', new Date(0)],
    ['$and with an object', { $and: { a: 1 } }],
    ['$and empty', { $and: [] }],
    ['$or empty', { $or: [] }],
    ['$or with a scalar element', { $or: [1] }],
    ['$or with an array element', { $or: [[{ a: 1 }]] }],
    ['top-level $not of a scalar', { $not: 1 }],
    ['top-level $not of an array', { $not: [{ a: 1 }] }],
    ['field-level $not of a scalar', { a: { $not: 5 } }],
    ['field-level $not of a field object', { a: { $not: { b: 1 } } }],
    ['field-level $not of an empty object', { a: { $not: {} } }],
    ['$eq with an array', { a: { $eq: [1] } }],
    ['$eq with an object', { a: { $eq: { b: 1 } } }],
    ['$ne with an object', { a: { $ne: {} } }],
    ['$gt with a boolean', { a: { $gt: true } }],
    ['$gt with null', { a: { $gt: null } }],
    ['$lt with an array', { a: { $lt: [1] } }],
    ['$gte with NaN', { a: { $gte: Number.NaN } }],
    ['$lte with Infinity', { a: { $lte: Number.POSITIVE_INFINITY } }],
    ['$in with a scalar', { a: { $in: 1 } }],
    ['$in with an object element', { a: { $in: [{ b: 1 }] } }],
    ['$nin with a nested array', { a: { $nin: [[1]] } }],
    ['$exists with a number', { a: { $exists: 1 } }],
    ['$exists with a string', { a: { $exists: 'yes' } }],
    ['equality with an object (use dotted paths)', { a: { b: 1 } }],
    ['equality with an array', { a: [1, 2] }],
    ['equality with NaN', { a: Number.NaN }],
    ['equality with undefined', { a: undefined }],
    ['operators mixed with fields', { a: { $gt: 1, b: 2 } }],
    ['empty field name', { '': 1 }],
  ];
  it.each(invalid)('%s → INVALID_FILTER', (_name, filter) => {
    expectCode(filter, 'INVALID_FILTER');
  });

  it('the error names the unknown operator', () => {
    expect(thrown(() => compileFilter({ a: { $regex: 'x' } }))).toMatchObject({ code: 'INVALID_FILTER', details: { operator: '$regex', field: 'a' } });
  });
});

describe('compileFilter: complexity limits (depth 32, 100 clauses)', () => {
  it('accepts shallow nesting through $not and $and', () => {
    expect(matches(notChain(10), { a: 1 })).toBe(false); // nine $not wrappers: odd, so inverted
    expect(matches(andChain(10), { a: 1 })).toBe(true);
  });

  it('rejects 33 nested filter objects through $not', () => {
    expectCode(notChain(33), 'FILTER_TOO_COMPLEX');
  });

  it('rejects 33 nested filter objects through $and', () => {
    expectCode(andChain(33), 'FILTER_TOO_COMPLEX');
  });

  it('rejects deep nesting through field-level $not', () => {
    let cond: Record<string, unknown> = { $gt: 1 };
    for (let i = 0; i < 40; i++) cond = { $not: cond };
    expectCode({ a: cond }, 'FILTER_TOO_COMPLEX');
  });

  it('rejects a 100,000-deep filter without overflowing the stack', () => {
    expectCode(notChain(100_000), 'FILTER_TOO_COMPLEX');
  });

  // The limit is "depth <= 32": a filter of 32 nested objects ({ $not: ... } 31 times around
  // { a: 1 }) is at the limit and compiles; 31 wrappers invert, so { a: 2 } matches.
  it('accepts a filter nested exactly 32 objects deep', () => {
    expect(matches(notChain(32), { a: 2 })).toBe(true);
    expect(matches(notChain(32), { a: 1 })).toBe(false);
    expectCode(notChain(33), 'FILTER_TOO_COMPLEX');
  });

  it('accepts exactly 100 clauses', () => {
    const f = flatClauses(100);
    expect(matches(f, flatClauses(100))).toBe(true);
    expect(matches(f, flatClauses(99))).toBe(false);
  });

  it('rejects 101 clauses', () => {
    expectCode(flatClauses(101), 'FILTER_TOO_COMPLEX');
  });

  it('counts logical operators and nested clauses toward the 100', () => {
    // $and itself plus 100 equality clauses = 101.
    const f = { $and: Array.from({ length: 100 }, (_, i) => ({ [`f${i}`]: i })) };
    expectCode(f, 'FILTER_TOO_COMPLEX');
    const ok = { $and: Array.from({ length: 99 }, (_, i) => ({ [`f${i}`]: i })) };
    expect(matches(ok, flatClauses(100))).toBe(true);
  });

  it('counts each operator of a field condition as a clause', () => {
    const f = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`f${i}`, { $gte: 0, $lte: 10 }]));
    expectCode(f, 'FILTER_TOO_COMPLEX');
  });

  it('rejects $in lists longer than 10,000 values', () => {
    expectCode({ a: { $in: Array.from({ length: 10_001 }, (_, i) => i) } }, 'FILTER_TOO_COMPLEX');
    expect(matches({ a: { $in: Array.from({ length: 10_000 }, (_, i) => i) } }, { a: 9_999 })).toBe(true);
  });
});

describe('compileFilter: arbitrary input', () => {
  const KEYS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$and', '$or', '$not', '$bogus', 'a', 'b', 'a.b', '', '.', '__proto__', 'constructor', 'toString'];
  const scalar = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.double(), fc.constantFrom('a', 'b', ''), fc.string());
  // Filter-shaped values: objects keyed by operators and fields, so generated input gets past the
  // first check and reaches every operator's operand validation.
  const { value: filterish } = fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      scalar,
      fc.array(tie('value'), { maxLength: 4 }),
      fc.dictionary(fc.constantFrom(...KEYS), tie('value'), { maxKeys: 4 }),
    ),
  }));
  const metadata = fc.oneof(fc.constant(null), fc.dictionary(fc.constantFrom('a', 'b', '__proto__', 'constructor', 'x'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }));

  function compileOrAkiError(filter: unknown): ((m: Metadata | null) => boolean) | null {
    try {
      return compileFilter(filter);
    } catch (err) {
      if (!(err instanceof AkiError) || (err.code !== 'INVALID_FILTER' && err.code !== 'FILTER_TOO_COMPLEX')) throw err;
      return null;
    }
  }

  it('random JSON values either compile or throw INVALID_FILTER / FILTER_TOO_COMPLEX, and compiled ones evaluate to booleans', () => {
    let compiled = 0;
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 6 }), filterish), fc.array(metadata, { maxLength: 4 }), (filter, metas) => {
        const pred = compileOrAkiError(filter);
        if (pred === null) return;
        compiled += 1;
        for (const m of metas) expect(typeof pred(m)).toBe('boolean');
      }),
      { numRuns: 3000 },
    );
    // Guard against a vacuous property: a fair share of inputs must compile.
    expect(compiled).toBeGreaterThan(100);
    expect(Object.keys(Object.prototype)).toEqual([]);
  }, 30_000);

  it('random filters built from valid parts compile and evaluate to booleans', () => {
    const value = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b'));
    const ordered = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b'));
    const path = fc.constantFrom('a', 'b', 'a.b', 'x.y.z', '__proto__', 'constructor');
    const cond = fc.oneof(
      value,
      fc.record({ $eq: value }),
      fc.record({ $ne: value }),
      fc.record({ $gt: ordered }),
      fc.record({ $gte: ordered, $lt: ordered }),
      fc.record({ $in: fc.array(value, { maxLength: 3 }) }),
      fc.record({ $nin: fc.array(value, { maxLength: 3 }) }),
      fc.record({ $exists: fc.boolean() }),
      fc.record({ $not: fc.record({ $lte: ordered }) }),
    );
    const { filter } = fc.letrec<{ filter: Record<string, unknown> }>((tie) => ({
      filter: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.dictionary(path, cond, { minKeys: 1, maxKeys: 3 }),
        fc.record({ $and: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ $or: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ $not: tie('filter') }),
      ),
    }));
    const metadata = fc.oneof(fc.constant(null), fc.dictionary(fc.constantFrom('a', 'b', 'x'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 3 }));
    let evaluated = 0;
    fc.assert(
      fc.property(filter, fc.array(metadata, { minLength: 1, maxLength: 4 }), (f, metas) => {
        const pred = compileOrAkiError(f);
        // Depth and clause limits may legitimately reject a large random tree; nothing else may.
        if (pred === null) {
          expect(thrown(() => compileFilter(f))).toMatchObject({ code: 'FILTER_TOO_COMPLEX' });
          return;
        }
        for (const m of metas) {
          expect(typeof pred(m)).toBe('boolean');
          evaluated += 1;
        }
      }),
      { numRuns: 2000 },
    );
    expect(evaluated).toBeGreaterThan(1000);
  }, 30_000);
});

describe('column-wise evaluation (segments) agrees with the row predicate (memtable)', () => {
  /** What the row predicate says for each row, as the 0/1 mask evaluateOnColumns returns. */
  function rowWise(filter: unknown, rows: readonly (Metadata | null)[]): number[] {
    const pred = compileFilter(filter);
    return rows.map((m) => (pred(m) ? 1 : 0));
  }

  function columnWise(filter: unknown, rows: readonly (Metadata | null)[], cache = new ColumnCache(rows)): number[] {
    return Array.from(evaluateOnColumns(parseFilter(filter), cache));
  }

  it('agrees on the hand-written cases above', () => {
    const rows: (Metadata | null)[] = [
      null,
      {},
      { a: 1 },
      { a: 2.5, b: 'x' },
      { a: '1', b: null },
      { a: [1, 3], b: ['x', 'y'] },
      { a: { b: 1 }, b: true },
      { a: null },
      { a: [] },
      JSON.parse('{"__proto__":5,"constructor":"c"}') as Metadata,
    ];
    const filters: unknown[] = [
      { a: 1 },
      { a: null },
      { a: { $ne: 1 } },
      { a: { $ne: null } },
      { a: { $gt: 1 } },
      { a: { $lte: 2.5 } },
      { a: { $gt: '0' } },
      { a: { $in: [1, '1', null] } },
      { a: { $nin: [1, null] } },
      { a: { $exists: true } },
      { a: { $exists: false } },
      { a: { $not: { $gt: 1 } } },
      { 'a.b': 1 },
      { b: 'x' },
      { b: true },
      { $or: [{ a: 1 }, { b: 'x' }] },
      { $not: { a: { $in: [1, 2.5] } } },
      { $and: [{ a: { $gte: 1 } }, { a: { $lt: 3 } }] },
      JSON.parse('{"__proto__":5}'),
      { constructor: { $exists: true } },
      { toString: { $exists: true } },
      {},
    ];
    for (const f of filters) expect(columnWise(f, rows), JSON.stringify(f)).toEqual(rowWise(f, rows));
  });

  it('agrees on random filters over random segments (numeric, dictionary and mixed columns)', () => {
    const scalar = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.double({ min: -4, max: 4, noNaN: true }), fc.constantFrom('a', 'b', ''));
    // Per field, a value profile so columns come out numeric, dictionary-coded or mixed.
    const valueFor = (profile: number): fc.Arbitrary<unknown> =>
      profile === 0
        ? fc.integer({ min: -3, max: 3 })
        : profile === 1
          ? fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b'), fc.boolean(), fc.constant(null))
          : fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }), fc.record({ x: scalar }, { requiredKeys: [] }));
    const rows = fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })).chain(([pa, pb]) =>
      fc.array(
        fc.oneof(
          { weight: 1, arbitrary: fc.constant(null) },
          { weight: 8, arbitrary: fc.record({ a: valueFor(pa), b: valueFor(pb) }, { requiredKeys: [] }) },
        ),
        { minLength: 1, maxLength: 12 },
      ),
    );
    const value = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b'));
    const ordered = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.double({ min: -4, max: 4, noNaN: true }), fc.constantFrom('a', 'b'));
    const cond = fc.oneof(
      value,
      fc.record({ $eq: value }),
      fc.record({ $ne: value }),
      fc.record({ $gt: ordered }),
      fc.record({ $gte: ordered }),
      fc.record({ $lt: ordered }),
      fc.record({ $lte: ordered }),
      fc.record({ $in: fc.array(value, { maxLength: 3 }) }),
      fc.record({ $nin: fc.array(value, { maxLength: 3 }) }),
      fc.record({ $exists: fc.boolean() }),
      fc.record({ $not: fc.record({ $gte: ordered }) }),
    );
    const { filter } = fc.letrec<{ filter: Record<string, unknown> }>((tie) => ({
      filter: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.dictionary(fc.constantFrom('a', 'b', 'a.x', 'b.x', 'c'), cond, { minKeys: 1, maxKeys: 2 }),
        fc.record({ $and: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ $or: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ $not: tie('filter') }),
      ),
    }));
    fc.assert(
      fc.property(rows, fc.array(filter, { minLength: 1, maxLength: 3 }), (segment, filters) => {
        // One cache for several filters, as a segment keeps its columns across queries.
        const cache = new ColumnCache(segment);
        for (const f of filters) {
          let expected: number[];
          try {
            expected = rowWise(f, segment);
          } catch (err) {
            expect(err).toMatchObject({ code: 'FILTER_TOO_COMPLEX' });
            continue;
          }
          expect(columnWise(f, segment, cache)).toEqual(expected);
        }
      }),
      { numRuns: 2000 },
    );
  }, 30_000);

  // A segment caches columns by path.join('\u0000'), so the field "a\u0000b" and the path a.b
  // share a cache entry: whichever is filtered on first answers for both afterwards.
  it('a field name holding NUL and the dotted path it resembles get separate columns', () => {
    const rows: Metadata[] = [{ a: { b: 1 } }, JSON.parse('{"a\\u0000b":1}') as Metadata];
    const cache = new ColumnCache(rows);
    expect(columnWise({ 'a\u0000b': 1 }, rows, cache)).toEqual([0, 1]);
    expect(columnWise({ 'a.b': 1 }, rows, cache)).toEqual([1, 0]);
  });
});
