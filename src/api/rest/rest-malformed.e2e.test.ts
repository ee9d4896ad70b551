import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { DIMENSION, JSON_TYPE, KEEP_DOCS, SCOPES, VALID_VECTOR, useFuzzServer, type Answer, type FuzzServer, type PlainRequest, type Route, type Schema, type Snapshot } from '../../test-support/fuzz-server.js';
import type { ServerProcess } from '../../test-support/server-process.js';

// Every route the server documents in /openapi.json, fed malformed input over a real socket.
// The contract: a client's mistake is never a 5xx, every 4xx is {"error":{"code","message","details"}},
// and nothing malformed changes stored data.

interface Case extends PlainRequest {
  label: string;
  /** Exact status wanted; otherwise any status below 500. */
  status?: number;
  /** Any 4xx wanted (the input names nothing that exists). */
  clientError?: boolean;
  code?: string;
}

/** A body each POST route accepts; mutations of it are the battery. Keyed by the route's last segment. */
const BASE_BODIES: Record<string, Record<string, unknown>> = {
  tenants: { name: 'tnew' },
  databases: { name: 'dnew' },
  collections: { name: 'cnew', dimension: DIMENSION, metric: 'l2', index: { m: 16, ef_construction: 64, ef_search: 64, quantization: 'f32' }, tiering_policy: 'Memory' },
  insert: { doc_id: 'new-doc', external_id: 'new-doc', vector: VALID_VECTOR, metadata: { i: -1 }, text: 'text' },
  upsert: { documents: [{ doc_id: 'new-doc', external_id: 'new-doc', vector: VALID_VECTOR, metadata: { i: -1 }, text: 'text' }] },
  query: { query_vector: VALID_VECTOR, top_k: 3, filter: { i: { $gte: 0 } }, ef_search: 32, include_vector: true, include_metadata: true },
  delete: { doc_ids: ['no-such-doc'], filter: { i: { $lt: -100 } } },
  tier: { tiering_policy: 'Memory' },
  compaction: { threshold_bytes: 104857600, threshold_ops: 10000, max_segments: 8, idle_flush_ms: 1000, enable_background_compaction: true },
  'circuit-breaker': { enabled: true, failure_threshold: 0.5, window_seconds: 60, cooldown_seconds: 300, half_open_successes: 10, minimum_requests: 10 },
  dlq: { max_size: 1000, ttl_days: 7 },
  's3-upload': { batch_size: 10, max_concurrency: 5, compression: 'none' },
  'api-keys': { name: 'fuzz key', role: 'viewer' },
};

/** Values of every JSON kind, edge numbers and strings; each field gets those its schema rejects. */
const CANDIDATES: unknown[] = [
  'abc',
  '',
  'NaN',
  'Infinity',
  '-Infinity',
  '1e999',
  '12',
  'null',
  'true',
  'x'.repeat(10_000),
  '\u0000',
  '🙂🙂🙂',
  0,
  -1,
  1.5,
  -0.5,
  1e308,
  -1e308,
  2 ** 53 + 1,
  1e21,
  true,
  false,
  null,
  [],
  ['a', 'b'],
  [1, 'x', null],
  [[1, 2], [3]],
  Array(DIMENSION).fill('1'),
  Array(DIMENSION).fill(null),
  {},
  { $gt: 1 },
  { a: { b: { c: [{ d: null }] } } },
  { length: DIMENSION },
];

/** Path parameters no client should send: too long, dot segments, bad escapes, controls, unicode. */
const JUNK_PARAMS = [
  'x'.repeat(300),
  'x'.repeat(5000),
  'x'.repeat(12_000),
  'x'.repeat(20_000),
  '.',
  '..',
  '...',
  '%2e%2e',
  '%2E%2E%2F%2E%2E',
  '%00',
  'a%00b',
  '%0d%0aX-Injected:%201',
  '%ff%fe',
  '%',
  '%zz',
  '%E2%9C%93',
  '%F0%9F%98%80',
  '%ED%A0%80',
  '\u00e9',
  '%20',
  'a%2Fb',
  '%252e%252e',
  '%3F%23',
  '%27%3B%20DROP%20TABLE%20collections%3B--',
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  '{id}',
  '"x"',
  '<script>',
  'a|b',
  '00000000-0000-0000-0000-000000000000',
  'NaN',
  '-1',
  '$where',
];

const CONTENT_TYPES_NOT_JSON = ['text/plain', 'text/html', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=xyz', 'application/octet-stream', 'application/jsonx', 'json', 'application/javascript', 'image/png'];

const BROKEN_JSON = ['{', '{"a":', '{"a" 1}', "{'a': 1}", '{a: 1}', 'undefined', 'NaN', '[1,]', '{"a": 1,}', '}{', '{"a": 1}}', '{"a": 01}', '{"a": .5}', '{"a": "\\x41"}', '\u0000', 'nul', 'tru', '"unterminated'];

/** Why an answer breaks the contract, or null. */
function problem(c: Case, res: Answer): string | null {
  const where = `${c.label}: ${c.method} ${c.path.slice(0, 120)}${c.path.length > 120 ? '…' : ''} -> ${res.status} ${res.text.slice(0, 300)}`;
  if (res.status >= 500) return `5xx for a client mistake. ${where}`;
  if (res.status >= 400) {
    const b = res.body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined;
    const e = b?.error;
    const ok = b !== undefined && Object.keys(b).length === 1 && e !== undefined && Object.keys(e).sort().join(',') === 'code,details,message' && typeof e.code === 'string' && /^[A-Z_]+$/.test(e.code) && typeof e.message === 'string' && typeof e.details === 'object' && e.details !== null;
    if (!ok) return `4xx without the {"error":{"code","message","details"}} shape. ${where}`;
  }
  if (c.status !== undefined && res.status !== c.status) return `expected ${c.status}. ${where}`;
  if (c.clientError && (res.status < 400 || res.status >= 500)) return `expected a 4xx. ${where}`;
  if (c.code !== undefined && (res.body as { error?: { code?: string } } | undefined)?.error?.code !== c.code) return `expected code ${c.code}. ${where}`;
  return null;
}

/** Does `value` satisfy `schema` (the subset of JSON Schema the API documents)? */
function conforms(schema: Schema, value: unknown): boolean {
  if (schema.anyOf) return schema.anyOf.some((s) => conforms(s, value));
  if (value === null) return schema.nullable === true || (Array.isArray(schema.type) && schema.type.includes('null'));
  const types = schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type];
  const kind = Array.isArray(value) ? 'array' : typeof value === 'number' ? (Number.isInteger(value) ? 'integer' : 'number') : typeof value;
  if (types.length > 0 && !types.some((t) => t === kind || (t === 'number' && kind === 'integer'))) return false;
  if (schema.enum && !schema.enum.includes(value)) return false;
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) return false;
    if (schema.maximum !== undefined && value > schema.maximum) return false;
  }
  if (typeof value === 'string') {
    const len = [...value].length;
    if (schema.minLength !== undefined && len < schema.minLength) return false;
    if (schema.maxLength !== undefined && len > schema.maxLength) return false;
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) return false;
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) return false;
    if (schema.maxItems !== undefined && value.length > schema.maxItems) return false;
    if (schema.items && !value.every((v) => conforms(schema.items!, v))) return false;
  }
  if (kind === 'object' && schema.properties) {
    const obj = value as Record<string, unknown>;
    if ((schema.required ?? []).some((k) => !(k in obj))) return false;
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties[k];
      if (sub ? !conforms(sub, v) : schema.additionalProperties === false) return false;
    }
  }
  return true;
}

/** Every documented field of a body schema, nested ones included: the path to it, its schema, whether required. */
function fields(schema: Schema, at: (string | number)[] = []): { path: (string | number)[]; schema: Schema; required: boolean }[] {
  const out: { path: (string | number)[]; schema: Schema; required: boolean }[] = [];
  for (const [name, sub] of Object.entries(schema.properties ?? {})) {
    const p = [...at, name];
    out.push({ path: p, schema: sub, required: (schema.required ?? []).includes(name) });
    if (sub.properties) out.push(...fields(sub, p));
    if (sub.items?.properties) out.push(...fields(sub.items, [...p, 0]));
  }
  return out;
}

/** Objects (with their nested schemas) that reject unknown keys. */
function closedObjects(schema: Schema, at: (string | number)[] = []): (string | number)[][] {
  const out = schema.additionalProperties === false ? [at] : [];
  for (const [name, sub] of Object.entries(schema.properties ?? {})) {
    if (sub.properties) out.push(...closedObjects(sub, [...at, name]));
    if (sub.items?.properties) out.push(...closedObjects(sub.items, [...at, name, 0]));
  }
  return out;
}

function setAt(root: unknown, p: (string | number)[], value: unknown): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let cur = copy;
  for (const k of p.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  cur[p.at(-1)!] = value;
  return copy;
}

function removeAt(root: unknown, p: (string | number)[]): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let cur = copy;
  for (const k of p.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  delete cur[p.at(-1)!];
  return copy;
}

function getAt(root: unknown, p: (string | number)[]): unknown {
  let cur = root as Record<string | number, unknown>;
  for (const k of p) cur = cur[k] as Record<string | number, unknown>;
  return cur;
}

/** Every byte percent-encoded except unreserved characters (valid UTF-8 even for lone surrogates). */
function pctEncode(s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`)).join('');
}

function baseBody(r: Route): Record<string, unknown> {
  const base = BASE_BODIES[r.template.split('/').at(-1)!];
  if (!base) throw new Error(`no base body for ${r.method} ${r.template}: add one to BASE_BODIES`);
  return base;
}

/** A route's path with its parameters: valid ones point at `keep`, or at `sandbox` when `sandbox`. */
function fill(r: Route, over: Record<string, string> = {}, sandbox = false): string {
  const valid: Record<string, string> = { tenant: 'acme', database: 'prod', id: sandbox ? 'sandbox' : 'keep', doc_id: sandbox ? 'sandbox-doc' : 'k1' };
  return r.template.replace(/\{(\w+)\}/g, (_, name: string) => over[name] ?? valid[name] ?? name);
}

/** Routes whose handler changes data when it runs: malformed input must be stopped before it. */
function mutates(r: Route): boolean {
  return r.method === 'DELETE' || /\/(insert|upsert|delete)$/.test(r.template);
}

async function runCases(send: FuzzServer['send'], cases: Case[], concurrency = 6): Promise<string[]> {
  const problems: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++]!;
      const res = await send(c);
      stats.record(res.status);
      const p = problem(c, res);
      if (p) problems.push(p);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return problems;
}

/** Requests of the property run: with the batteries above, over 15,000 malformed requests in all. */
const PROPERTY_RUNS = 10_000;
/** Fewest property requests every documented route must get, and have its route match. */
const MIN_HITS_PER_ROUTE = 50;

/** A route as the server's metrics name it: the method and Fastify's `:param` path. */
function routeKey(r: Route): string {
  return `${r.method} ${r.template.replace(/\{(\w+)\}/g, ':$1')}`;
}

/** REST requests the server counted per matched route (akidb_requests_total, summed over codes), by routeKey. */
async function servedByRoute(call: FuzzServer['call']): Promise<Map<string, number>> {
  const res = await call('GET', '/metrics');
  expect(res.status).toBe(200);
  const out = new Map<string, number>();
  for (const m of res.text.matchAll(/^akidb_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (labels.protocol !== 'rest') continue;
    const key = `${labels.method} ${labels.endpoint}`;
    out.set(key, (out.get(key) ?? 0) + Number(m[2]));
  }
  return out;
}

/** How many requests the file sent, by status. */
const stats = {
  byStatus: new Map<number, number>(),
  record(status: number): void {
    this.byStatus.set(status, (this.byStatus.get(status) ?? 0) + 1);
  },
  get total(): number {
    return [...this.byStatus.values()].reduce((a, b) => a + b, 0);
  },
};

describe('REST malformed input: every route from /openapi.json', () => {
  // Both scopes hold a "keep" collection the battery must leave untouched and a "sandbox" that
  // inputs valid enough to be served are pointed at.
  const fuzz = useFuzzServer({ bucket: 'malformed' });
  let server: ServerProcess;
  let routes: Route[];
  let before: Snapshot[];
  let call: FuzzServer['call'];
  beforeAll(() => {
    ({ server, routes, before, call } = fuzz());
  });

  it('the document lists the collection, tenant, health and metrics routes, and every POST route accepts its base body', async () => {
    const names = routes.map((r) => `${r.method} ${r.template}`);
    for (const r of ['POST /api/v1/collections', 'POST /api/v1/collections/{id}/upsert', 'POST /api/v1/collections/{id}/query', 'DELETE /api/v1/collections/{id}/docs/{doc_id}', 'POST /api/v1/tenants/{tenant}/databases/{database}/collections/{id}/delete', 'GET /health', 'GET /health/ready', 'GET /metrics']) expect(names).toContain(r);
    expect(routes.length).toBeGreaterThanOrEqual(30);
    // Every POST with a documented body serves its base body (the battery's 400s are the mutations'); the
    // body-less ones (admin actions such as compact) are served without one.
    const posts = routes.filter((r) => r.method === 'POST');
    expect(posts.filter((r) => r.body === null).map((r) => r.template)).toEqual(['/admin/collections/{id}/compact', '/admin/collections/{id}/dlq/retry', '/admin/circuit-breaker/reset', '/admin/backups']);
    for (const r of posts) {
      const res = r.body === null ? await call('POST', fill(r, {}, true)) : await call('POST', fill(r, {}, true), baseBody(r));
      expect(res.status, `${r.template}: ${res.text}`).toBeLessThan(300);
    }
  });

  it('broken, truncated and empty JSON answers 400 MALFORMED_JSON; JSON of the wrong top-level type answers 400', async () => {
    const cases: Case[] = [];
    for (const r of routes) {
      if (r.method === 'GET') {
        // GET ignores bodies; they must not break anything either.
        for (const body of BROKEN_JSON.slice(0, 4)) cases.push({ label: 'GET with a broken body', method: 'GET', path: fill(r), body, contentType: JSON_TYPE });
        continue;
      }
      const full = JSON.stringify(r.body ? baseBody(r) : { x: 1 });
      // Any proper prefix of an object's JSON is unparseable.
      const truncated = [0.1, 0.25, 0.5, 0.75, 0.9].map((f) => full.slice(0, Math.max(1, Math.floor(full.length * f))));
      const unparseable = [...BROKEN_JSON, ...truncated, full.slice(0, -1), Buffer.from([0xff, 0xfe, 0x7b, 0x7d])];
      for (const body of unparseable) {
        cases.push({ label: 'unparseable JSON', method: r.method, path: fill(r), body, contentType: JSON_TYPE, status: 400, code: 'MALFORMED_JSON' });
      }
      // A body-less POST (an admin action) parses what it is sent but takes any JSON.
      if (r.method !== 'POST' || r.body === null) continue;
      // Invalid UTF-8 is decoded with replacement characters, so this is {"\ufffd(":1}: an unknown field.
      cases.push({ label: 'invalid UTF-8', method: 'POST', path: fill(r), body: Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d]), contentType: JSON_TYPE, status: 400 });
      for (const body of ['', '   ', '\n']) cases.push({ label: 'empty JSON body', method: 'POST', path: fill(r), body, contentType: JSON_TYPE, status: 400, code: 'MALFORMED_JSON' });
      for (const body of ['[]', '[{}]', JSON.stringify([baseBody(r)]), '"string"', '42', '-1.5', '0', 'null', 'true', 'false', '""']) cases.push({ label: 'wrong top-level type', method: 'POST', path: fill(r), body, contentType: JSON_TYPE, status: 400 });
    }
    expect(cases.length).toBeGreaterThan(500);
    expect(await runCases(fuzz().send, cases)).toEqual([]);
  });

  it('bodies sent as anything but application/json answer 415 UNSUPPORTED_MEDIA_TYPE (none read, none stored)', async () => {
    const cases: Case[] = [];
    for (const r of routes.filter((x) => x.method !== 'GET')) {
      const body = JSON.stringify(r.body ? baseBody(r) : { x: 1 });
      for (const contentType of CONTENT_TYPES_NOT_JSON) cases.push({ label: `content-type ${contentType}`, method: r.method, path: fill(r), body, contentType, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
      cases.push({ label: 'no content-type', method: r.method, path: fill(r), body, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    }
    expect(await runCases(fuzz().send, cases)).toEqual([]);
  });

  it('every documented body field given a value its schema rejects answers 400; values it admits never a 5xx', async () => {
    const cases: Case[] = [];
    let rejected = 0;
    for (const r of routes.filter((x) => x.body !== null)) {
      const base = baseBody(r);
      for (const f of fields(r.body!)) {
        const candidates = [...CANDIDATES, { ...(getAt(base, f.path) as object), junk: 1 }];
        for (const value of candidates) {
          const body = setAt(base, f.path, value);
          const field = f.path.join('.');
          if (conforms(f.schema, value)) {
            // Schema-valid but maybe semantically wrong: served or refused, only ever at the sandbox.
            cases.push({ label: `admitted ${field}=${JSON.stringify(value).slice(0, 40)}`, method: r.method, path: fill(r, {}, true), body: JSON.stringify(body), contentType: JSON_TYPE });
          } else {
            rejected += 1;
            cases.push({ label: `wrong ${field}=${JSON.stringify(value).slice(0, 40)}`, method: r.method, path: fill(r), body: JSON.stringify(body), contentType: JSON_TYPE, status: 400 });
          }
        }
      }
    }
    expect(rejected).toBeGreaterThan(1000);
    expect(await runCases(fuzz().send, cases)).toEqual([]);
  });

  it('missing required fields, unknown extra fields and __proto__ / constructor.prototype keys answer 400', async () => {
    const cases: Case[] = [];
    for (const r of routes.filter((x) => x.body !== null)) {
      const base = baseBody(r);
      const add = (label: string, body: string): void => void cases.push({ label, method: r.method, path: fill(r), body, contentType: JSON_TYPE, status: 400 });
      for (const f of fields(r.body!)) if (f.required) add(`missing ${f.path.join('.')}`, JSON.stringify(removeAt(base, f.path)));
      if ((r.body!.required ?? []).length > 0) add('empty object', '{}');
      for (const at of closedObjects(r.body!)) {
        for (const extra of ['bogus', '$where', 'DOC_ID', ' name']) add(`unknown field ${[...at, extra].join('.')}`, JSON.stringify(setAt(base, [...at, extra], 1)));
      }
      const text = JSON.stringify(base);
      add('__proto__ at the top', `{"__proto__":{"polluted":true},${text.slice(1)}`);
      add('constructor.prototype at the top', `{"constructor":{"prototype":{"polluted":true}},${text.slice(1)}`);
      if (text.includes('"metadata":{')) add('__proto__ in metadata', text.replace('"metadata":{', '"metadata":{"__proto__":{"polluted":true},'));
      if (text.includes('"filter":{')) add('constructor.prototype in a filter', text.replace('"filter":{', '"filter":{"constructor":{"prototype":{"polluted":true}},'));
    }
    expect(cases.length).toBeGreaterThan(100);
    expect(await runCases(fuzz().send, cases)).toEqual([]);
    // Nothing was polluted: a plain object in a fresh answer has no inherited "polluted".
    const res = await call('GET', '/api/v1/collections/keep/docs/k1');
    expect(res.text).not.toContain('polluted');
  });

  it('absurd path parameters answer 4xx with the error shape (and never reach stored data)', async () => {
    const cases: Case[] = [];
    for (const r of routes) {
      for (const param of r.params) {
        for (const junk of JUNK_PARAMS) {
          const c: Case = { label: `{${param}}=${junk.slice(0, 30)}`, method: r.method, path: fill(r, { [param]: junk }) };
          if (r.body) Object.assign(c, { body: JSON.stringify(baseBody(r)), contentType: JSON_TYPE });
          // A junk tenant, database or collection names nothing (junk that is a valid name, like
          // "NaN", may have been created by the field battery); a junk doc_id may be "deleted" (204).
          if (param !== 'doc_id' && !/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}$/.test(junk)) c.clientError = true;
          cases.push(c);
        }
      }
    }
    // Unknown and percent-junk paths outside any route.
    for (const junk of JUNK_PARAMS) cases.push({ label: 'unknown path', method: 'GET', path: `/api/v1/${junk}`, clientError: true });
    expect(cases.length).toBeGreaterThan(1000);
    expect(await runCases(fuzz().send, cases)).toEqual([]);
  });

  it('methods a documented path does not have answer 404 ROUTE_NOT_FOUND', async () => {
    const cases: Case[] = [];
    const byPath = new Map<string, Set<string>>();
    for (const r of routes) byPath.set(r.template, (byPath.get(r.template) ?? new Set()).add(r.method));
    for (const [template, methods] of byPath) {
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
        if (methods.has(method)) continue;
        const r = routes.find((x) => x.template === template)!;
        // DELETE on a path with only POST (e.g. /collections/{id}/delete) must not drop anything.
        cases.push({ label: `undocumented ${method}`, method, path: fill(r), status: 404, code: 'ROUTE_NOT_FOUND' });
      }
    }
    expect(cases.length).toBeGreaterThan(50);
    expect(await runCases(fuzz().send, cases)).toEqual([]);
  });

  it('property: 10,000 random requests over every route, each route hit and matched, never get a 5xx or a shapeless error', async () => {
    const junkJson: fc.Arbitrary<unknown> = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.constantFrom(...CANDIDATES),
      fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { maxLength: 12 }),
      fc.array(fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }), { minLength: DIMENSION, maxLength: DIMENSION }),
      fc.dictionary(fc.constantFrom('$eq', '$ne', '$in', '$nin', '$gt', '$lte', '$or', '$and', '$not', '$exists', 'i', 'tag', 'nested.deep', '__proto__', 'constructor'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
    );
    /** Objects shaped like a schema: documented keys (some kept valid), junk values, extra keys. */
    const shaped = (schema: Schema, base: unknown, depth: number): fc.Arbitrary<unknown> => {
      const keys = [...Object.keys(schema.properties ?? {}), 'bogus', '__proto__'];
      const value = (k: string): fc.Arbitrary<unknown> => {
        const sub = schema.properties?.[k];
        const valid = base !== null && typeof base === 'object' && k in base ? (base as Record<string, unknown>)[k] : null;
        if (sub?.properties && depth > 0) return fc.oneof(shaped(sub, valid, depth - 1), junkJson);
        if (sub?.items?.properties && depth > 0) return fc.oneof(fc.array(shaped(sub.items, Array.isArray(valid) ? valid[0] : null, depth - 1), { maxLength: 3 }), junkJson);
        return fc.oneof({ weight: 2, arbitrary: fc.constant(valid) }, { weight: 1, arbitrary: junkJson });
      };
      return fc.uniqueArray(fc.constantFrom(...keys), { maxLength: keys.length }).chain((chosen) => fc.tuple(...chosen.map((k) => value(k).map((v) => [k, v] as const))).map((entries) => Object.fromEntries(entries)));
    };
    const param = (valid: string): fc.Arbitrary<string> =>
      fc.oneof({ weight: 8, arbitrary: fc.constant(valid) }, { weight: 1, arbitrary: fc.constantFrom(...JUNK_PARAMS) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map(pctEncode) });
    const contentType = fc.oneof({ weight: 10, arbitrary: fc.constant<string | undefined>(JSON_TYPE) }, { weight: 1, arbitrary: fc.constantFrom<string | undefined>('application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', undefined, 'application/JSON', '*/*', 'application/json; charset=latin1') });

    const requestArb = fc.constantFrom(...routes).chain((r) => {
      // Routes that change data get the sandbox; the rest may read `keep`.
      const sandbox = mutates(r) ? fc.constant(true) : fc.boolean();
      const schema = r.body ?? { type: 'object', properties: {} };
      const base = r.body ? baseBody(r) : {};
      const json = shaped(schema, base, 2);
      const body = fc.oneof(
        { weight: 8, arbitrary: json.map((b) => JSON.stringify(b)) },
        { weight: 1, arbitrary: junkJson.map((b) => JSON.stringify(b) ?? 'null') },
        { weight: 1, arbitrary: fc.tuple(json, fc.nat()).map(([b, n]) => JSON.stringify(b).slice(0, n % Math.max(1, JSON.stringify(b).length))) },
        { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
        { weight: 1, arbitrary: fc.constant<string | undefined>(undefined) },
      );
      const params = fc.tuple(...r.params.map((p) => fc.tuple(fc.constant(p), param(''))));
      return fc.record({ r: fc.constant(r), sandbox, body: r.method === 'GET' ? fc.constant<string | undefined>(undefined) : body, contentType, params });
    });

    // Requests per route as sent, and as the server's router matched them (its request counter).
    const sentTo = new Map<Route, number>();
    const servedBefore = await servedByRoute(call);
    await fc.assert(
      fc.asyncProperty(requestArb, async ({ r, sandbox, body, contentType, params }) => {
        const over: Record<string, string> = {};
        for (const [name, value] of params) if (value !== '') over[name] = value;
        const c: Case = { label: 'property', method: r.method, path: fill(r, over, sandbox) };
        if (body !== undefined) c.body = body;
        if (body !== undefined && contentType !== undefined) c.contentType = contentType;
        const res = await fuzz().send(c);
        sentTo.set(r, (sentTo.get(r) ?? 0) + 1);
        stats.record(res.status);
        const p = problem(c, res);
        if (p) throw new Error(`${p}\nbody: ${String(body).slice(0, 300)} content-type: ${String(contentType)}`);
      }),
      { seed: 20_261_126, numRuns: PROPERTY_RUNS, endOnFailure: true },
    );
    const servedAfter = await servedByRoute(call);
    expect([...sentTo.values()].reduce((a, b) => a + b, 0)).toBe(PROPERTY_RUNS);
    // Every documented route got at least half its share, both as sent and as the server's router
    // matched it (junk parameters and URLs the router refuses count as unmatched, not as the route).
    const least = PROPERTY_RUNS / routes.length / 2;
    expect(least, 'more routes than the run covers: raise PROPERTY_RUNS').toBeGreaterThanOrEqual(MIN_HITS_PER_ROUTE);
    const starved = routes.flatMap((r) => {
      const served = (servedAfter.get(routeKey(r)) ?? 0) - (servedBefore.get(routeKey(r)) ?? 0);
      const sent = sentTo.get(r) ?? 0;
      return sent >= least && served >= least ? [] : [`${routeKey(r)}: sent ${sent}, served ${served}`];
    });
    expect(starved).toEqual([]);
  });

  it('afterwards the server is healthy, logged no error, and the data written before the battery is unchanged', async () => {
    const health = await call('GET', '/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'healthy' });
    expect((await call('GET', '/health/ready')).status).toBe(200);
    // Not the LSN: the junk doc_id battery's DELETEs on keep are served (204) and take LSNs.
    const withoutLsn = (snaps: Snapshot[]): Omit<Snapshot, 'lastLsn'>[] => snaps.map(({ lastLsn: _, ...rest }) => rest);
    expect(withoutLsn(await fuzz().snapshot())).toEqual(withoutLsn(before));
    for (const s of SCOPES) {
      const res = await call('GET', `${s.prefix}/collections/keep/docs/k3`);
      expect(res.body).toMatchObject({ doc_id: 'k3', vector: KEEP_DOCS[3]!.vector, metadata: KEEP_DOCS[3]!.metadata });
    }
    // Every request answered, none with a 5xx, and the process logged nothing at error level.
    expect(stats.total).toBeGreaterThan(PROPERTY_RUNS + 5000);
    expect([...stats.byStatus.keys()].filter((s) => s >= 500)).toEqual([]);
    for (const s of [200, 400, 404, 415]) expect(stats.byStatus.get(s) ?? 0, `answers with ${s}`).toBeGreaterThan(0);
    expect(server.logs.filter((l) => typeof l.level === 'number' && l.level >= 50)).toEqual([]);
  });
});
