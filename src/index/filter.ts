import { AkiError } from '../errors.js';

/** A metadata filter in the MongoDB-style language (see docs/filters.md). */
export type Filter = Record<string, unknown>;
/** Metadata as stored with a document: a JSON object. */
export type Metadata = Record<string, unknown>;
/** A compiled filter: true when a document's metadata passes. */
export type Predicate = (metadata: Metadata | null) => boolean;

export interface FilterLimits {
  maxDepth: number;
  maxClauses: number;
  maxInValues: number;
}

export const DEFAULT_FILTER_LIMITS: FilterLimits = { maxDepth: 32, maxClauses: 100, maxInValues: 10_000 };

type Scalar = string | number | boolean | null;
const FIELD_OPS = new Set(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$not']);
const LOGICAL_OPS = new Set(['$and', '$or', '$not']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function isScalar(v: unknown): v is Scalar {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

function invalid(message: string, details: Record<string, unknown> = {}): AkiError {
  return new AkiError('INVALID_FILTER', details, message);
}

/**
 * Value at a dotted path of own properties; undefined when absent. An array met before the last
 * step fans out over its object elements (MongoDB's rule): the result is then the array of the
 * values found, and `any element` matching applies to it.
 */
function lookup(metadata: Metadata | null, parts: readonly string[], from = 0): unknown {
  let cur: unknown = metadata;
  for (let i = from; i < parts.length; i++) {
    if (Array.isArray(cur)) {
      const found: unknown[] = [];
      for (const el of cur) {
        if (typeof el !== 'object' || el === null) continue;
        const v = lookup(el as Metadata, parts, i);
        if (v === undefined) continue;
        if (Array.isArray(v)) found.push(...(v as unknown[]));
        else found.push(v);
      }
      return found.length > 0 ? found : undefined;
    }
    if (typeof cur !== 'object' || cur === null) return undefined;
    const p = parts[i]!;
    if (!Object.hasOwn(cur, p)) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

function scalarEquals(a: unknown, b: Scalar): boolean {
  return a === b;
}

/** Equality with MongoDB's array rule: an array field equals v when any element does. */
function fieldEquals(value: unknown, v: Scalar): boolean {
  if (v === null && value === undefined) return true;
  if (Array.isArray(value)) return value.some((e) => scalarEquals(e, v));
  return scalarEquals(value, v);
}

function compare(value: unknown, bound: number | string, op: '$gt' | '$gte' | '$lt' | '$lte'): boolean {
  const test = (x: unknown): boolean => {
    if (typeof x !== typeof bound) return false;
    const a = x as number | string;
    switch (op) {
      case '$gt':
        return a > bound;
      case '$gte':
        return a >= bound;
      case '$lt':
        return a < bound;
      case '$lte':
        return a <= bound;
    }
  };
  return Array.isArray(value) ? value.some(test) : test(value);
}

/** A parsed filter: logical nodes over leaves that test the value at one field path. */
export type FilterNode =
  | { kind: 'all' }
  | { kind: 'and'; children: FilterNode[] }
  | { kind: 'or'; children: FilterNode[] }
  | { kind: 'not'; child: FilterNode }
  | { kind: 'leaf'; path: string[]; op: string; arg: unknown; test: ValueTest };

/** Tests the value found at a leaf's path (undefined when the field is absent). */
export type ValueTest = (value: unknown) => boolean;

class Parser {
  clauses = 0;
  constructor(readonly limits: FilterLimits) {}

  count(depth: number): void {
    this.clauses += 1;
    if (this.clauses > this.limits.maxClauses) throw new AkiError('FILTER_TOO_COMPLEX', { maxClauses: this.limits.maxClauses }, `Filter has more than ${this.limits.maxClauses} clauses`);
    if (depth > this.limits.maxDepth) throw new AkiError('FILTER_TOO_COMPLEX', { maxDepth: this.limits.maxDepth }, `Filter is nested deeper than ${this.limits.maxDepth}`);
  }

  document(filter: unknown, depth: number): FilterNode {
    if (depth > this.limits.maxDepth) throw new AkiError('FILTER_TOO_COMPLEX', { maxDepth: this.limits.maxDepth }, `Filter is nested deeper than ${this.limits.maxDepth}`);
    if (!isPlainObject(filter)) throw invalid('A filter must be a JSON object');
    const parts: FilterNode[] = [];
    for (const [key, value] of Object.entries(filter)) {
      if (key.startsWith('$')) {
        if (!LOGICAL_OPS.has(key)) throw invalid(`Unknown filter operator ${key}`, { operator: key });
        this.count(depth);
        parts.push(this.logical(key, value, depth + 1));
      } else {
        if (key.length === 0) throw invalid('Empty field name in filter');
        parts.push(this.field(key.split('.'), value, depth));
      }
    }
    if (parts.length === 0) {
      // Still a node to evaluate: uncounted, `{ $and: [{}, {}, ...] }` could grow without limit.
      this.count(depth);
      return { kind: 'all' };
    }
    if (parts.length === 1) return parts[0]!;
    return { kind: 'and', children: parts };
  }

  logical(op: string, value: unknown, depth: number): FilterNode {
    if (op === '$not') return { kind: 'not', child: this.document(value, depth) };
    if (!Array.isArray(value) || value.length === 0) throw invalid(`${op} takes a non-empty array of filters`, { operator: op });
    const children = value.map((v) => this.document(v, depth));
    return op === '$and' ? { kind: 'and', children } : { kind: 'or', children };
  }

  field(path: string[], cond: unknown, depth: number): FilterNode {
    if (depth > this.limits.maxDepth) throw new AkiError('FILTER_TOO_COMPLEX', { maxDepth: this.limits.maxDepth }, `Filter is nested deeper than ${this.limits.maxDepth}`);
    const keys = isPlainObject(cond) ? Object.keys(cond) : [];
    const isOpObject = keys.length > 0 && keys.every((k) => k.startsWith('$'));
    if (!isOpObject) {
      if (isPlainObject(cond) && keys.some((k) => k.startsWith('$'))) throw invalid('Cannot mix operators and fields in one condition', { field: path.join('.') });
      if (!isScalar(cond)) throw invalid('Equality needs a string, number, boolean or null; use dotted paths for nested fields', { field: path.join('.') });
      this.count(depth);
      return { kind: 'leaf', path, op: '$eq', arg: cond, test: (v) => fieldEquals(v, cond) };
    }
    // The operator object is one level deeper than the object naming the field.
    const children: FilterNode[] = [];
    for (const op of keys) {
      const arg = (cond as Record<string, unknown>)[op];
      if (!FIELD_OPS.has(op)) throw invalid(`Unknown filter operator ${op}`, { operator: op, field: path.join('.') });
      this.count(depth + 1);
      children.push(this.operator(path, op, arg, depth + 1));
    }
    return children.length === 1 ? children[0]! : { kind: 'and', children };
  }

  operator(path: string[], op: string, arg: unknown, depth: number): FilterNode {
    const field = path.join('.');
    const leaf = (test: ValueTest): FilterNode => ({ kind: 'leaf', path, op, arg, test });
    switch (op) {
      case '$eq':
      case '$ne': {
        if (!isScalar(arg)) throw invalid(`${op} needs a string, number, boolean or null`, { operator: op, field });
        return op === '$eq' ? leaf((v) => fieldEquals(v, arg)) : leaf((v) => !fieldEquals(v, arg));
      }
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte': {
        if (!((typeof arg === 'number' && Number.isFinite(arg)) || typeof arg === 'string')) throw invalid(`${op} needs a number or a string`, { operator: op, field });
        return leaf((v) => compare(v, arg, op));
      }
      case '$in':
      case '$nin': {
        if (!Array.isArray(arg)) throw invalid(`${op} needs an array`, { operator: op, field });
        if (arg.length > this.limits.maxInValues) throw new AkiError('FILTER_TOO_COMPLEX', { operator: op, maxInValues: this.limits.maxInValues }, `${op} holds more than ${this.limits.maxInValues} values`);
        const values = new Set<Scalar>();
        for (const v of arg) {
          if (!isScalar(v)) throw invalid(`${op} values must be strings, numbers, booleans or null`, { operator: op, field });
          values.add(v);
        }
        const matchNull = values.has(null);
        const test = (value: unknown): boolean => {
          if (value === undefined) return matchNull;
          if (Array.isArray(value)) return value.some((e) => values.has(e as Scalar));
          return values.has(value as Scalar);
        };
        return op === '$in' ? leaf(test) : leaf((v) => !test(v));
      }
      case '$exists': {
        if (typeof arg !== 'boolean') throw invalid('$exists needs true or false', { operator: op, field });
        return leaf((v) => (v !== undefined) === arg);
      }
      case '$not': {
        if (!isPlainObject(arg)) throw invalid('$not on a field needs an operator object', { operator: op, field });
        return { kind: 'not', child: this.field(path, arg, depth) };
      }
      default:
        throw invalid(`Unknown filter operator ${op}`, { operator: op, field });
    }
  }
}

/**
 * Validate and parse a filter. Throws INVALID_FILTER for unknown operators or malformed
 * operands, FILTER_TOO_COMPLEX past the depth or clause limit.
 */
export function parseFilter(filter: unknown, limits: FilterLimits = DEFAULT_FILTER_LIMITS): FilterNode {
  return new Parser(limits).document(filter, 1);
}

/** The row-at-a-time form of a parsed filter. */
export function predicateOf(node: FilterNode): Predicate {
  switch (node.kind) {
    case 'all':
      return () => true;
    case 'leaf': {
      const { path, test } = node;
      if (path.length === 1) {
        const key = path[0]!;
        return (m) => test(m !== null && Object.hasOwn(m, key) ? m[key] : undefined);
      }
      return (m) => test(lookup(m, path));
    }
    case 'not': {
      const inner = predicateOf(node.child);
      return (m) => !inner(m);
    }
    case 'and': {
      const subs = node.children.map(predicateOf);
      return (m) => {
        for (const p of subs) if (!p(m)) return false;
        return true;
      };
    }
    case 'or': {
      const subs = node.children.map(predicateOf);
      return (m) => {
        for (const p of subs) if (p(m)) return true;
        return false;
      };
    }
  }
}

/** Validate and compile a filter to a row predicate. An empty filter matches all. */
export function compileFilter(filter: unknown, limits: FilterLimits = DEFAULT_FILTER_LIMITS): Predicate {
  return predicateOf(parseFilter(filter, limits));
}

/** Value at a dotted path of own properties; undefined when absent. */
export { lookup as valueAtPath };
