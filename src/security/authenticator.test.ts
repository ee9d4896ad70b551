import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { AkiDB } from '../engine/database.js';
import { AkiError } from '../errors.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { hashKey } from './api-keys.js';
import { Authenticator, credentialOf, type Principal } from './authenticator.js';
import { ROLES, restRule, type Permission, type Role, type RouteRule } from './permissions.js';
import { RateLimiter } from './rate-limiter.js';

const tempDir = useTempDirs('akidb-auth-');
let dbs: AkiDB[] = [];

afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function openDb(dataDir = tempDir()): Promise<AkiDB> {
  const db = await AkiDB.open({ dataDir, compaction: { enableBackground: false } });
  dbs.push(db);
  return db;
}

const configOf = (env: Record<string, string>): ReturnType<typeof loadConfig>['config'] => loadConfig({ cwd: tempDir(), env }).config;
const authOf = (db: AkiDB, env: Record<string, string> = {}): Authenticator => new Authenticator(db, configOf({ AKIDB_AUTH_ENABLED: 'true', ...env }).auth);

/** The AkiError `fn` throws (sync or async). */
async function thrown(fn: () => unknown): Promise<AkiError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(AkiError);
  return err as AkiError;
}

const ADMIN_KEY = 'bootstrap-admin-key-0123456789';
const VIEWER_KEY = 'bootstrap-viewer-key-0123456789';
const ACME_KEY = 'bootstrap-acme-operator-key-0123';

describe('bootstrap keys (AKIDB_API_KEYS)', () => {
  it('authenticate with their role (admin by default) and tenant, are listed without the key, and cannot be revoked', async () => {
    const db = await openDb();
    const auth = authOf(db, { AKIDB_API_KEYS: ` ${ADMIN_KEY} , ${VIEWER_KEY}:viewer,${ACME_KEY}:operator:acme` });
    const admin = await auth.authenticate(ADMIN_KEY);
    expect(admin).toEqual({ kind: 'api_key', id: 'env-1', role: 'admin', tenant: null });
    // The id is the entry's position: no part of the key's hash is shown or logged.
    expect(auth.listKeys().map((k) => k.key_id)).toEqual(['env-1', 'env-2', 'env-3']);
    expect(await auth.authenticate(VIEWER_KEY)).toMatchObject({ kind: 'api_key', role: 'viewer', tenant: null });
    expect(await auth.authenticate(ACME_KEY)).toMatchObject({ kind: 'api_key', role: 'operator', tenant: 'acme' });

    const listed = auth.listKeys();
    expect(listed).toHaveLength(3);
    expect(listed.map((k) => [k.role, k.tenant, k.source, k.revoked_at])).toEqual([
      ['admin', null, 'environment', null],
      ['viewer', null, 'environment', null],
      ['operator', 'acme', 'environment', null],
    ]);
    const text = JSON.stringify(listed);
    for (const k of [ADMIN_KEY, VIEWER_KEY, ACME_KEY]) {
      expect(text).not.toContain(k);
      expect(text).not.toContain(hashKey(k));
    }

    const e = await thrown(() => auth.revokeKey(admin.id));
    expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', details: { reason: 'environment_key' } });
    expect(await auth.authenticate(ADMIN_KEY)).toMatchObject({ role: 'admin' });
    // A prefix, a suffix or a case change of a key is another key.
    for (const wrong of [ADMIN_KEY.slice(0, -1), `${ADMIN_KEY}x`, ADMIN_KEY.toUpperCase()]) {
      expect(await thrown(() => auth.authenticate(wrong))).toMatchObject({ code: 'UNAUTHENTICATED', details: { reason: 'unknown_key' } });
    }
  });

  it('are checked by the config, which names the entry but never prints a key', () => {
    const cases: [string, RegExp][] = [
      ['short-key:admin', /entry 1 of 1: the key is shorter than 16/],
      [`${ADMIN_KEY}:root`, /role "root" is not one of monitor, viewer, operator, admin/],
      [`${ADMIN_KEY}:admin,${VIEWER_KEY}:viewer:bad/tenant`, /entry 2 of 2: tenant "bad\/tenant" is not a valid name/],
      [`${ADMIN_KEY}:admin,${ADMIN_KEY}:viewer`, /the same key is listed twice/],
      [`${ADMIN_KEY}:admin:acme:extra`, /expected KEY:ROLE\[:TENANT\]/],
    ];
    for (const [value, problem] of cases) {
      let err: unknown;
      try {
        configOf({ AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: value });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const message = (err as ConfigError).message;
      expect(message).toMatch(problem);
      expect(message).toContain('auth.api_keys (from AKIDB_API_KEYS)');
      expect(message).not.toContain(ADMIN_KEY);
      expect(message).not.toContain('short-key');
    }
  });
});

describe('catalog keys', () => {
  it('are created with a role and tenant, work at once, are listed without key or hash, and are refused once revoked', async () => {
    const dataDir = tempDir();
    const db = await openDb(dataDir);
    const auth = authOf(db, { AKIDB_API_KEYS: `${ADMIN_KEY}:admin` });

    const ci = await auth.createKey('ci pipeline', 'operator', null);
    expect(ci).toMatchObject({ name: 'ci pipeline', role: 'operator', tenant: null, source: 'catalog', revoked_at: null });
    expect(ci.key).toMatch(new RegExp(`^aki_${ci.key_id}_[A-Za-z0-9_-]{43}$`));
    expect(Date.parse(ci.created_at!)).not.toBeNaN();
    expect(await auth.authenticate(ci.key)).toEqual({ kind: 'api_key', id: ci.key_id, role: 'operator', tenant: null });

    expect(await thrown(() => auth.createKey('nowhere', 'viewer', 'acme'))).toMatchObject({ code: 'TENANT_NOT_FOUND', details: { tenant: 'acme' } });
    await db.createTenant('acme');
    const acme = await auth.createKey('acme reader', 'viewer', 'acme');
    const dflt = await auth.createKey('default admin', 'admin', 'default');
    expect(await auth.authenticate(acme.key)).toMatchObject({ role: 'viewer', tenant: 'acme' });
    expect(await auth.authenticate(dflt.key)).toMatchObject({ role: 'admin', tenant: 'default' });
    expect(new Set([ci.key, acme.key, dflt.key]).size).toBe(3);

    const listed = auth.listKeys();
    expect(listed.map((k) => k.key_id)).toEqual(expect.arrayContaining([ci.key_id, acme.key_id, dflt.key_id]));
    expect(listed.filter((k) => k.source === 'catalog')).toHaveLength(3);
    const text = JSON.stringify(listed);
    for (const k of [ci.key, acme.key, dflt.key, ADMIN_KEY]) {
      expect(text).not.toContain(k);
      expect(text).not.toContain(hashKey(k));
    }
    for (const k of listed) expect(Object.keys(k).sort()).toEqual(['created_at', 'key_id', 'name', 'revoked_at', 'role', 'source', 'tenant']);

    auth.revokeKey(ci.key_id);
    expect(await thrown(() => auth.authenticate(ci.key))).toMatchObject({ code: 'UNAUTHENTICATED', details: { reason: 'unknown_key' } });
    expect(auth.listKeys().find((k) => k.key_id === ci.key_id)?.revoked_at).toEqual(expect.any(String));
    expect(await thrown(() => auth.revokeKey(ci.key_id))).toMatchObject({ code: 'API_KEY_NOT_FOUND' });
    expect(await thrown(() => auth.revokeKey('0123456789ab'))).toMatchObject({ code: 'API_KEY_NOT_FOUND' });
    expect(await auth.authenticate(acme.key)).toMatchObject({ role: 'viewer' });

    // Keys live in the catalog: a reopened database still knows them, and still knows the revocation.
    await db.close();
    dbs = [];
    const reopened = authOf(await openDb(dataDir));
    expect(await reopened.authenticate(acme.key)).toMatchObject({ id: acme.key_id, role: 'viewer', tenant: 'acme' });
    expect(await thrown(() => reopened.authenticate(ci.key))).toMatchObject({ code: 'UNAUTHENTICATED' });
  });
});

describe('authenticate', () => {
  it('lets anyone in as an unscoped admin when auth is off, and asks for a credential when it is on', async () => {
    const db = await openDb();
    const off = new Authenticator(db, configOf({}).auth);
    expect(off.enabled).toBe(false);
    expect(await off.authenticate(null)).toEqual({ kind: 'anonymous', id: 'anonymous', role: 'admin', tenant: null });
    expect(await off.authenticate('whatever-key-at-all')).toMatchObject({ kind: 'anonymous' });

    const on = authOf(db, { AKIDB_API_KEYS: ADMIN_KEY });
    const e = await thrown(() => on.authenticate(null));
    expect(e).toMatchObject({ code: 'UNAUTHENTICATED', details: { reason: 'missing_credential' } });
    expect(e.httpStatus).toBe(401);
    const wrong = 'not-a-key-of-this-server-at-all';
    const w = await thrown(() => on.authenticate(wrong));
    expect(w).toMatchObject({ code: 'UNAUTHENTICATED', details: { reason: 'unknown_key' } });
    expect(`${w.message}${JSON.stringify(w.details)}`).not.toContain(wrong);
  });
});

describe('credentialOf', () => {
  it('takes X-API-Key first, then a Bearer token (any case), and nothing else', () => {
    const cases: [unknown, unknown, string | null][] = [
      ['key-from-header', 'Bearer key-from-bearer', 'key-from-header'],
      ['', 'Bearer key-from-bearer', 'key-from-bearer'],
      [undefined, 'Bearer abc.def.ghi', 'abc.def.ghi'],
      [undefined, 'bearer lower', 'lower'],
      [undefined, 'BEARER upper', 'upper'],
      [undefined, 'bEaReR   spaced  ', 'spaced'],
      [undefined, 'Basic dXNlcjpwYXNz', null],
      [undefined, 'Bearer', null],
      [undefined, 'Bearer ', null],
      [undefined, 'Bearer two words', null],
      [undefined, 'Bearertoken', null],
      [undefined, 'Token abc', null],
      [undefined, ' Bearer leading-space', null],
      [undefined, 'Bearer\ttab', null],
      [['a', 'b'], undefined, null],
      [undefined, ['Bearer x'], null],
      [undefined, undefined, null],
      [42, 42, null],
    ];
    for (const [apiKey, authorization, expected] of cases) expect(credentialOf(apiKey, authorization), `${String(apiKey)} / ${String(authorization)}`).toBe(expected);
  });

  it('feeds authenticate: junk in Authorization is a missing credential, not a pass', async () => {
    const auth = authOf(await openDb(), { AKIDB_API_KEYS: ADMIN_KEY });
    expect(await auth.authenticate(credentialOf(undefined, `bearer ${ADMIN_KEY}`))).toMatchObject({ role: 'admin' });
    expect(await auth.authenticate(credentialOf(ADMIN_KEY, 'Bearer junk'))).toMatchObject({ role: 'admin' });
    expect(await thrown(() => auth.authenticate(credentialOf(undefined, `Basic ${ADMIN_KEY}`)))).toMatchObject({ details: { reason: 'missing_credential' } });
    expect(await thrown(() => auth.authenticate(credentialOf('junk-but-present', `Bearer ${ADMIN_KEY}`)))).toMatchObject({ details: { reason: 'unknown_key' } });
  });
});

describe('authorize', () => {
  // The intended policy, written out independently of the GRANTS table.
  const ALLOWED: Record<Role, Permission[]> = {
    monitor: ['public', 'status'],
    viewer: ['public', 'read'],
    operator: ['public', 'read', 'write', 'status'],
    admin: ['public', 'read', 'write', 'status', 'admin'],
  };
  const PERMISSIONS: Permission[] = ['public', 'read', 'write', 'status', 'admin'];
  const principal = (role: Role, tenant: string | null = null): Principal => ({ kind: 'api_key', id: `k-${role}`, role, tenant });

  it('grants each role exactly its permissions', async () => {
    const auth = authOf(await openDb(), { AKIDB_API_KEYS: ADMIN_KEY });
    for (const role of ROLES) {
      for (const permission of PERMISSIONS) {
        const rule: RouteRule = { permission };
        if (ALLOWED[role].includes(permission)) expect(() => auth.authorize(principal(role), rule, null)).not.toThrow();
        else {
          const e = await thrown(() => auth.authorize(principal(role), rule, 'default'));
          expect(e).toMatchObject({ code: 'PERMISSION_DENIED', details: { role, needs: permission } });
          expect(e.httpStatus).toBe(403);
        }
      }
    }
  });

  it('keeps a tenant-scoped credential to its tenant: global rules are denied, other tenants do not exist', async () => {
    const auth = authOf(await openDb(), { AKIDB_API_KEYS: ADMIN_KEY });
    const acmeAdmin = principal('admin', 'acme');
    auth.authorize(acmeAdmin, { permission: 'admin' }, 'acme');
    auth.authorize(acmeAdmin, { permission: 'read' }, null);
    for (const route of ['POST /admin/api-keys', 'GET /health', 'GET /metrics', 'POST /api/v1/tenants', 'DELETE /api/v1/tenants/:tenant']) {
      const [method, url] = route.split(' ') as [string, string];
      const rule = restRule(method, url)!;
      expect(rule.global).toBe(true);
      expect(await thrown(() => auth.authorize(acmeAdmin, rule, 'acme'))).toMatchObject({ code: 'PERMISSION_DENIED', details: { tenant: 'acme' } });
      // An unscoped admin may.
      auth.authorize(principal('admin'), rule, null);
    }
    const other = await thrown(() => auth.authorize(acmeAdmin, { permission: 'read' }, 'globex'));
    expect(other).toMatchObject({ code: 'TENANT_NOT_FOUND', details: { tenant: 'globex' } });
    expect(other.httpStatus).toBe(404);
    expect(await thrown(() => auth.authorize(principal('operator', 'acme'), restRule('GET', '/api/v1/collections')!, 'default'))).toMatchObject({ code: 'TENANT_NOT_FOUND' });
    // The role is checked before the tenant: a viewer learns nothing about other tenants' existence by writing.
    expect(await thrown(() => auth.authorize(principal('viewer', 'acme'), { permission: 'write' }, 'globex'))).toMatchObject({ code: 'PERMISSION_DENIED' });
    // Public routes are for everyone.
    auth.authorize(principal('viewer', 'acme'), restRule('GET', '/health/live')!, null);
  });
});

describe('lockedOut', () => {
  it('names the way in when auth is on and no credential could ever be verified', async () => {
    const db = await openDb();
    expect(new Authenticator(db, configOf({}).auth).lockedOut()).toBeNull();
    const bare = authOf(db);
    expect(bare.lockedOut()).toMatch(/AKIDB_API_KEYS/);
    expect(bare.lockedOut()).toMatch(/AKIDB_JWT_SECRET/);
    expect(authOf(db, { AKIDB_API_KEYS: ADMIN_KEY }).lockedOut()).toBeNull();
    expect(authOf(db, { AKIDB_JWT_SECRET: 'a-jwt-secret-of-at-least-32-bytes!!' }).lockedOut()).toBeNull();
    expect(authOf(db, { AKIDB_JWT_JWKS_URL: 'https://idp.example/jwks.json' }).lockedOut()).toBeNull();

    // Catalog keys count only when one is a live admin for every tenant.
    await db.createTenant('acme');
    await bare.createKey('viewer', 'viewer', null);
    await bare.createKey('acme admin', 'admin', 'acme');
    expect(authOf(db).lockedOut()).not.toBeNull();
    const admin = await bare.createKey('admin', 'admin', null);
    expect(authOf(db).lockedOut()).toBeNull();
    bare.revokeKey(admin.key_id);
    expect(authOf(db).lockedOut()).not.toBeNull();
  });
});

describe('Authenticator.limit', () => {
  it('answers RATE_LIMITED with a whole-second retry once the burst is spent, per credential', async () => {
    const auth = authOf(await openDb(), { AKIDB_API_KEYS: ADMIN_KEY, AKIDB_RATE_LIMIT_PER_SECOND: '0.5', AKIDB_RATE_LIMIT_BURST: '2' });
    auth.limit('a');
    auth.limit('a');
    const e = await thrown(() => auth.limit('a'));
    expect(e).toMatchObject({ code: 'RATE_LIMITED' });
    // 0.5 per second: the next token is about 2 s away.
    expect(e.details.retry_after_seconds).toBe(2);
    expect(e.httpStatus).toBe(429);
    auth.limit('b');
    // No limit configured: never refused.
    const open = authOf(await openDb(), { AKIDB_API_KEYS: ADMIN_KEY });
    for (let i = 0; i < 1000; i++) open.limit('a');
  });
});

describe('RateLimiter', () => {
  const clock = (start = 1_000_000): { now: () => number; advance: (ms: number) => void } => {
    let t = start;
    return { now: () => t, advance: (ms) => void (t += ms) };
  };

  it('grants a full burst at once, then refills at the rate and says how long to wait', () => {
    const c = clock();
    const rl = new RateLimiter(10, 5, c.now);
    for (let i = 0; i < 5; i++) expect(rl.take('k')).toBe(0);
    expect(rl.take('k')).toBeCloseTo(100, 6);
    c.advance(40);
    expect(rl.take('k')).toBeCloseTo(60, 6);
    c.advance(60);
    expect(rl.take('k')).toBe(0);
    expect(rl.take('k')).toBeCloseTo(100, 6);
    // A long pause refills to the burst, never beyond.
    c.advance(60_000);
    for (let i = 0; i < 5; i++) expect(rl.take('k')).toBe(0);
    expect(rl.take('k')).toBeGreaterThan(0);
    // Buckets are per key.
    expect(rl.take('other')).toBe(0);
  });

  it('never grants more than burst + rate × elapsed, and a wait it names is enough', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.1, max: 100, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.constantFrom('a', 'b'), fc.boolean()), { minLength: 1, maxLength: 200 }),
        (rate, burst, ops) => {
          const c = clock();
          const rl = new RateLimiter(rate, burst, c.now);
          const granted = { a: 0, b: 0 };
          let elapsed = 0;
          for (const [dt, key, honour] of ops) {
            c.advance(dt);
            elapsed += dt;
            let wait = rl.take(key);
            if (wait > 0 && honour) {
              expect(wait).toBeLessThanOrEqual((1 / rate) * 1000 + 1e-6);
              c.advance(wait + 1e-6);
              elapsed += wait + 1e-6;
              wait = rl.take(key);
              expect(wait).toBe(0);
            }
            if (wait === 0) granted[key] += 1;
            expect(granted[key]).toBeLessThanOrEqual(burst + (rate * elapsed) / 1000 + 1e-6);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('drops idle buckets once they would be full anyway, at most every 10 s, and keeps partly drained ones', () => {
    const c = clock(0);
    const rl = new RateLimiter(1, 5, c.now);
    for (let i = 0; i < 1000; i++) rl.take(`ip:${i}`);
    expect(rl.size).toBe(1000);
    c.advance(9_999);
    rl.take('late');
    expect(rl.size).toBe(1001);
    c.advance(1);
    rl.take('later');
    // The 1000 idle for 10 s (full after 5 s) are gone; 'late' was used 1 ms ago.
    expect(rl.size).toBe(2);

    // A slow rate: a bucket drained 10 s ago holds one token, and must not come back full.
    const s = clock(0);
    const slow = new RateLimiter(0.1, 5, s.now);
    for (let i = 0; i < 5; i++) expect(slow.take('k')).toBe(0);
    s.advance(10_000);
    expect(slow.take('k')).toBe(0);
    expect(slow.take('k')).toBeGreaterThan(0);
    expect(slow.size).toBe(1);
    s.advance(50_000);
    slow.take('other');
    expect(slow.size).toBe(1);
  });
});

describe('verified tokens are reused until they expire, never after', () => {
  it('a token accepted once is accepted from the cache within its lifetime and refused after exp plus the tolerance', async () => {
    const { SignJWT } = await import('jose');
    const secret = 'cache-test-secret-of-at-least-32-bytes!';
    const db = await openDb();
    const auth = authOf(db, { AKIDB_JWT_SECRET: secret });
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
      const exp = Math.floor(Date.now() / 1000) + 60;
      const token = await new SignJWT({ role: 'viewer' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp).setSubject('cached').sign(new TextEncoder().encode(secret));
      expect(await auth.authenticate(token)).toMatchObject({ kind: 'jwt', role: 'viewer' });
      vi.setSystemTime(new Date('2030-01-01T00:01:04Z')); // past exp, within the 5 s tolerance
      expect(await auth.authenticate(token)).toMatchObject({ kind: 'jwt', role: 'viewer' });
      vi.setSystemTime(new Date('2030-01-01T00:01:06Z')); // past exp + tolerance: the cache must not keep it alive
      expect((await thrown(() => auth.authenticate(token))).details).toMatchObject({ reason: 'token_expired' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('a catalog key is served from memory but refused at once when revoked', async () => {
    const db = await openDb();
    const auth = authOf(db, { AKIDB_API_KEYS: 'bootstrap-admin-key-0123456789' });
    const k = await auth.createKey('cached', 'viewer', null);
    for (let i = 0; i < 3; i++) expect(await auth.authenticate(k.key)).toMatchObject({ id: k.key_id });
    auth.revokeKey(k.key_id);
    expect((await thrown(() => auth.authenticate(k.key))).code).toBe('UNAUTHENTICATED');
  });
});
