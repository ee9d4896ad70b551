import { valueAtPath, type FilterNode, type Metadata } from './filter.js';

/**
 * One metadata field of an immutable segment, laid out for scanning: numbers in a Float64Array
 * (NaN where absent), low-cardinality scalars dictionary-coded, anything else as plain values.
 */
export type Column =
  | { kind: 'num'; values: Float64Array }
  | { kind: 'dict'; codes: Int32Array; dict: unknown[] }
  | { kind: 'any'; values: unknown[] };

const MAX_DICT = 65_536;
const MAX_CACHED_COLUMNS = 64;

export function buildColumn(metadata: readonly (Metadata | null)[], path: readonly string[]): Column {
  const n = metadata.length;
  const values = new Array<unknown>(n);
  let numeric = true;
  for (let i = 0; i < n; i++) {
    const v = valueAtPath(metadata[i] ?? null, path);
    values[i] = v;
    if (v !== undefined && typeof v !== 'number') numeric = false;
  }
  if (numeric) {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = values[i] === undefined ? NaN : (values[i] as number);
    return { kind: 'num', values: out };
  }
  const codes = new Int32Array(n);
  const index = new Map<unknown, number>();
  const dict: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v === undefined) {
      codes[i] = -1;
      continue;
    }
    if (typeof v === 'object' && v !== null) return { kind: 'any', values };
    let c = index.get(v);
    if (c === undefined) {
      if (dict.length >= MAX_DICT) return { kind: 'any', values };
      c = dict.length;
      dict.push(v);
      index.set(v, c);
    }
    codes[i] = c;
  }
  return { kind: 'dict', codes, dict };
}

/** Columns of one segment's metadata, built on first use and kept (the segment is immutable). */
export class ColumnCache {
  readonly #metadata: readonly (Metadata | null)[];
  readonly #columns = new Map<string, Column>();

  constructor(metadata: readonly (Metadata | null)[]) {
    this.#metadata = metadata;
  }

  get rows(): number {
    return this.#metadata.length;
  }

  column(path: readonly string[]): Column {
    const key = JSON.stringify(path);
    let c = this.#columns.get(key);
    if (!c) {
      c = buildColumn(this.#metadata, path);
      if (this.#columns.size < MAX_CACHED_COLUMNS) this.#columns.set(key, c);
    }
    return c;
  }
}

function evalLeaf(node: Extract<FilterNode, { kind: 'leaf' }>, col: Column, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const { test, op, arg } = node;
  if (col.kind === 'num') {
    const v = col.values;
    // Tight loops for the common numeric comparisons; NaN (absent) never passes them.
    if (typeof arg === 'number') {
      switch (op) {
        case '$eq':
          for (let i = 0; i < n; i++) out[i] = v[i] === arg ? 1 : 0;
          return out;
        case '$gt':
          for (let i = 0; i < n; i++) out[i] = v[i]! > arg ? 1 : 0;
          return out;
        case '$gte':
          for (let i = 0; i < n; i++) out[i] = v[i]! >= arg ? 1 : 0;
          return out;
        case '$lt':
          for (let i = 0; i < n; i++) out[i] = v[i]! < arg ? 1 : 0;
          return out;
        case '$lte':
          for (let i = 0; i < n; i++) out[i] = v[i]! <= arg ? 1 : 0;
          return out;
      }
    }
    const missing = test(undefined) ? 1 : 0;
    for (let i = 0; i < n; i++) {
      const x = v[i]!;
      out[i] = Number.isNaN(x) ? missing : test(x) ? 1 : 0;
    }
    return out;
  }
  if (col.kind === 'dict') {
    const table = new Uint8Array(col.dict.length);
    for (let c = 0; c < col.dict.length; c++) table[c] = test(col.dict[c]) ? 1 : 0;
    const missing = test(undefined) ? 1 : 0;
    const codes = col.codes;
    for (let i = 0; i < n; i++) {
      const c = codes[i]!;
      out[i] = c < 0 ? missing : table[c]!;
    }
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = test(col.values[i]) ? 1 : 0;
  return out;
}

/** Rows of a segment that pass `node` (1) or not (0), computed column by column. */
export function evaluateOnColumns(node: FilterNode, cache: ColumnCache): Uint8Array {
  const n = cache.rows;
  switch (node.kind) {
    case 'all':
      return new Uint8Array(n).fill(1);
    case 'leaf':
      return evalLeaf(node, cache.column(node.path), n);
    case 'not': {
      const m = evaluateOnColumns(node.child, cache);
      for (let i = 0; i < n; i++) m[i] = m[i]! ^ 1;
      return m;
    }
    case 'and': {
      const m = evaluateOnColumns(node.children[0]!, cache);
      for (let c = 1; c < node.children.length; c++) {
        const o = evaluateOnColumns(node.children[c]!, cache);
        for (let i = 0; i < n; i++) m[i] = m[i]! & o[i]!;
      }
      return m;
    }
    case 'or': {
      const m = evaluateOnColumns(node.children[0]!, cache);
      for (let c = 1; c < node.children.length; c++) {
        const o = evaluateOnColumns(node.children[c]!, cache);
        for (let i = 0; i < n; i++) m[i] = m[i]! | o[i]!;
      }
      return m;
    }
  }
}
