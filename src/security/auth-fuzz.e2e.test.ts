import http from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

/**
 * Hostile credentials over real sockets with auth on: random API keys, Authorization headers and
 * JWT-shaped tokens (any header and payload JSON, any alg, junk signatures) sent to every route.
 * None may get in, none may cause a 5xx, and the data stays as it was.
 */

const ADMIN = 'fuzz-admin-key-0123456789';
const SECRET = 'fuzz-jwt-secret-that-is-32-bytes-or-more';
const PUBLIC = new Set(['GET /health/live', 'GET /health/ready']);

interface Answer {
  status: number;
  body: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function send(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const b64url = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');

describe('auth fuzz: random credentials against every route', () => {
  const tempDir = useTempDirs('akidb-auth-fuzz-');
  let server: ServerProcess;
  let routes: { method: string; template: string; path: string }[];
  let before: string;
  const snapshot = async (): Promise<string> => {
    const a = await send(server.restPort, 'GET', '/api/v1/collections/keep/docs/d1', { 'x-api-key': ADMIN });
    const b = await send(server.restPort, 'GET', '/api/v1/collections', { 'x-api-key': ADMIN });
    const c = await send(server.restPort, 'GET', '/admin/api-keys', { 'x-api-key': ADMIN });
    const d = await send(server.restPort, 'GET', '/api/v1/tenants', { 'x-api-key': ADMIN });
    return JSON.stringify([a, b, c, d].map((x) => [x.status, JSON.parse(x.body) as unknown]));
  };

  beforeAll(async () => {
    server = await startServerProcess({ dataDir: tempDir(), env: { AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: `${ADMIN}:admin`, AKIDB_JWT_SECRET: SECRET } });
    expect((await send(server.restPort, 'POST', '/api/v1/collections', { 'x-api-key': ADMIN }, JSON.stringify({ name: 'keep', dimension: 3 }))).status).toBe(201);
    expect((await send(server.restPort, 'POST', '/api/v1/collections/keep/insert', { 'x-api-key': ADMIN }, JSON.stringify({ doc_id: 'd1', vector: [1, 0, 0], metadata: { a: 1 } }))).status).toBe(200);
    const doc = JSON.parse((await send(server.restPort, 'GET', '/openapi.json', { 'x-api-key': ADMIN })).body) as { paths: Record<string, Record<string, unknown>> };
    routes = Object.entries(doc.paths).flatMap(([template, ops]) => Object.keys(ops).map((m) => ({ method: m.toUpperCase(), template, path: template.replace(/\{tenant\}/g, 'default').replace(/\{database\}/g, 'default').replace(/\{id\}/g, 'keep').replace(/\{doc_id\}/g, 'd1').replace(/\{key_id\}/g, 'k') })));
    before = await snapshot();
  });

  afterAll(async () => {
    agent.destroy();
    if (server) expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('no random key, Authorization header or forged token gets past 401, and none causes a 5xx', async () => {
    const printable = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 0, maxLength: 300 });
    const latin1 = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 200 });
    const jsonish = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
      fc.record({ alg: fc.constantFrom('none', 'None', 'NONE', 'HS256', 'HS512', 'RS256', 'ES256', 'EdDSA', '', 'hs256'), typ: fc.constantFrom('JWT', 'jwt', 'x'), kid: fc.option(printable) }).map((h) => JSON.stringify(h)),
      fc.record({ role: fc.constantFrom('admin', 'operator', 'viewer', ['admin'], 'root', 7), tenant: fc.option(fc.constantFrom('default', '../x', '', 'acme')), exp: fc.integer({ min: -1e10, max: 1e11 }), nbf: fc.option(fc.integer()), iss: fc.option(printable), aud: fc.option(printable) }).map((p) => JSON.stringify(p)),
      latin1,
    );
    const token = fc.tuple(jsonish, jsonish, fc.oneof(fc.constant(''), printable.map(b64url), fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u).toString('base64url')))).map(([h, p, sig]) => `${b64url(h)}.${b64url(p)}.${sig}`);
    // (Surrounding whitespace is not part of a header value, so `KEY ` is the key itself and not tried.)
    const credential = fc.oneof(printable, token, fc.constant(ADMIN.toUpperCase()), fc.constant(ADMIN.slice(0, -1)), fc.constant(`${ADMIN}x`));
    const headers = fc.oneof(
      credential.map((c) => ({ 'x-api-key': c })),
      fc.tuple(fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'Token', 'Bearer  ', ''), credential).map(([scheme, c]) => ({ authorization: `${scheme} ${c}` })),
      latin1.map((v) => ({ authorization: v })),
      fc.constant({}),
    );
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), headers, async (route, h) => {
        const res = await send(server.restPort, route.method, route.path, h, route.method === 'POST' ? '{}' : undefined);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status >= 500) throw new Error(`${route.method} ${route.path} ${JSON.stringify(h).slice(0, 300)} → ${res.status} ${res.body.slice(0, 300)}`);
        if (PUBLIC.has(`${route.method} ${route.template}`)) return;
        if (res.status !== 401) throw new Error(`${route.method} ${route.path} ${JSON.stringify(h).slice(0, 300)} got in: ${res.status} ${res.body.slice(0, 300)}`);
        const err = (JSON.parse(res.body) as { error: { code: string; message: string; details: Record<string, unknown> } }).error;
        expect(err.code).toBe('UNAUTHENTICATED');
        // The credential is never echoed.
        const sent = Object.values(h)[0];
        if (sent !== undefined && sent.length >= 8) expect(res.body).not.toContain(sent);
      }),
      { seed: 0x5ec_0005, numRuns: 3000 },
    );
    expect(statuses.get(401)).toBeGreaterThan(2000);
    expect(await snapshot()).toEqual(before);
    expect(server.logs.filter((l) => typeof l.level === 'number' && l.level >= 50)).toEqual([]);
  }, 180_000);
});
