import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type GenerateKeyPairResult, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../config/load-config.js';
import { AkiDB } from '../engine/database.js';
import { AkiError } from '../errors.js';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { Authenticator, credentialOf } from './authenticator.js';
import { JwtVerifier, looksLikeJwt, type JwtSettings, type TokenIdentity } from './jwt.js';

const SECRET = 'jwt-unit-test-secret-of-at-least-32-bytes';
const OTHER_SECRET = 'a-different-secret-also-32-bytes-long!!';
const now = (): number => Math.floor(Date.now() / 1000);
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

const settings = (over: Partial<JwtSettings> = {}): JwtSettings => ({ secret: '', jwksUrl: '', issuer: '', audience: '', roleClaim: 'role', tenantClaim: 'tenant', clockToleranceSeconds: 5, ...over });

interface Mint {
  alg?: string;
  key?: Uint8Array | GenerateKeyPairResult['privateKey'];
  kid?: string;
  /** null: no `exp` claim. */
  exp?: number | null;
  nbf?: number;
  iss?: string;
  aud?: string;
  sub?: string;
}

/** A signed token; HS256 with SECRET, expiring in ten minutes, unless told otherwise. */
async function mint(claims: Record<string, unknown>, m: Mint = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: m.alg ?? 'HS256', ...(m.kid !== undefined ? { kid: m.kid } : {}) }).setIssuedAt();
  if (m.exp !== null) jwt.setExpirationTime(m.exp ?? now() + 600);
  if (m.nbf !== undefined) jwt.setNotBefore(m.nbf);
  if (m.iss !== undefined) jwt.setIssuer(m.iss);
  if (m.aud !== undefined) jwt.setAudience(m.aud);
  if (m.sub !== undefined) jwt.setSubject(m.sub);
  return jwt.sign(m.key ?? enc(SECRET));
}

/**
 * The refusal `p` ends in, checked to be an AkiError whose message and details hold none of
 * `secrets` (the token, its signature, the shared secret).
 */
async function refusal(p: Promise<unknown>, secrets: string[]): Promise<AkiError> {
  const err = await p.then(
    (v) => {
      throw new Error(`expected a refusal, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AkiError);
  const e = err as AkiError;
  const visible = `${e.message}\n${JSON.stringify(e.details)}`;
  for (const s of secrets.filter((x) => x.length > 0)) expect(visible).not.toContain(s);
  return e;
}

/** The token, its signature and the secrets: what no error may echo. */
const secretsOf = (token: string, ...more: string[]): string[] => [token, token.split('.')[2] ?? '', token.split('.')[1] ?? '', SECRET, OTHER_SECRET, ...more];

async function expectUnauthenticated(v: JwtVerifier | Authenticator, token: string, reason: string | RegExp): Promise<AkiError> {
  const e = await refusal(v instanceof JwtVerifier ? v.verify(token) : v.authenticate(token), secretsOf(token));
  expect(e.code).toBe('UNAUTHENTICATED');
  if (typeof reason === 'string') expect(e.details.reason).toBe(reason);
  else expect(String(e.details.reason)).toMatch(reason);
  expect(e.httpStatus).toBe(401);
  return e;
}

/** A JWKS document served over HTTP on 127.0.0.1, replaceable while it runs. */
interface JwksServer {
  url: string;
  keys: JWK[];
  /** What to answer instead of the key set (null: serve the keys). */
  failWith: { status: number; body: string } | null;
  fetches: number;
  close(): Promise<void>;
}

async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state: JwksServer = {
    url: '',
    keys,
    failWith: null,
    fetches: 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server: Server = createServer((req, res) => {
    state.fetches += 1;
    if (req.url !== '/jwks.json') return res.writeHead(404).end();
    if (state.failWith !== null) return res.writeHead(state.failWith.status, { 'content-type': 'application/json' }).end(state.failWith.body);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  return state;
}

/** A URL on 127.0.0.1 where nothing listens any more. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}/jwks.json`;
}

async function publicJwk(pair: GenerateKeyPairResult, kid: string, alg: string): Promise<JWK> {
  return { ...(await exportJWK(pair.publicKey)), kid, alg, use: 'sig' };
}

describe('JwtVerifier with an HS256 secret', () => {
  const hs = new JwtVerifier(settings({ secret: SECRET }));

  it('accepts a valid token and reads subject, role and tenant from the claims', async () => {
    expect(await hs.verify(await mint({ role: 'operator', tenant: 'acme' }, { sub: 'alice' }))).toMatchObject({ subject: 'alice', role: 'operator', tenant: 'acme' });
    expect(await hs.verify(await mint({ role: 'viewer' }))).toMatchObject({ subject: 'jwt', role: 'viewer', tenant: null });
    expect(hs.enabled).toBe(true);
    expect(new JwtVerifier(settings()).enabled).toBe(false);
  });

  it('refuses a token that expired more than the clock tolerance ago, and accepts one within it', async () => {
    const e = await expectUnauthenticated(hs, await mint({ role: 'admin' }, { exp: now() - 60 }), 'token_expired');
    expect(e.message).toMatch(/expired/);
    expect(await hs.verify(await mint({ role: 'admin' }, { exp: now() - 2 }))).toMatchObject({ role: 'admin' });
    const strict = new JwtVerifier(settings({ secret: SECRET, clockToleranceSeconds: 0 }));
    await expectUnauthenticated(strict, await mint({ role: 'admin' }, { exp: now() - 2 }), 'token_expired');
  });

  it('refuses a token not valid yet (nbf in the future beyond the tolerance)', async () => {
    await expectUnauthenticated(hs, await mint({ role: 'admin' }, { nbf: now() + 120 }), 'token_not_yet_valid');
    expect(await hs.verify(await mint({ role: 'admin' }, { nbf: now() + 2 }))).toMatchObject({ role: 'admin' });
  });

  it('refuses a token without exp, whatever else it holds', async () => {
    await expectUnauthenticated(hs, await mint({ role: 'admin', tenant: 'acme' }, { exp: null, sub: 'forever' }), 'invalid_exp');
    await expectUnauthenticated(hs, await mint({ role: 'admin', exp: 'never' }, { exp: null }), 'invalid_exp');
  });

  it('checks issuer and audience when configured, and only then', async () => {
    const strict = new JwtVerifier(settings({ secret: SECRET, issuer: 'https://idp.example', audience: 'akidb' }));
    expect(await strict.verify(await mint({ role: 'viewer' }, { iss: 'https://idp.example', aud: 'akidb' }))).toMatchObject({ role: 'viewer' });
    await expectUnauthenticated(strict, await mint({ role: 'viewer' }, { iss: 'https://evil.example', aud: 'akidb' }), 'invalid_iss');
    await expectUnauthenticated(strict, await mint({ role: 'viewer' }, { aud: 'akidb' }), 'invalid_iss');
    await expectUnauthenticated(strict, await mint({ role: 'viewer' }, { iss: 'https://idp.example', aud: 'another-service' }), 'invalid_aud');
    await expectUnauthenticated(strict, await mint({ role: 'viewer' }, { iss: 'https://idp.example' }), 'invalid_aud');
    expect(await hs.verify(await mint({ role: 'viewer' }, { iss: 'https://anyone.example', aud: 'anything' }))).toMatchObject({ role: 'viewer' });
  });

  it('refuses a token signed with another secret, and one whose payload was altered after signing', async () => {
    await expectUnauthenticated(hs, await mint({ role: 'admin' }, { key: enc(OTHER_SECRET) }), 'bad_signature');
    const [h, , s] = (await mint({ role: 'viewer' })).split('.');
    await expectUnauthenticated(hs, `${h}.${b64({ role: 'admin', exp: now() + 600 })}.${s}`, 'bad_signature');
  });

  it('refuses alg none, whether the signature is empty or not', async () => {
    const payload = b64({ role: 'admin', exp: now() + 600, sub: 'mallory' });
    for (const header of [{ alg: 'none', typ: 'JWT' }, { alg: 'None' }, { alg: 'NONE' }, { typ: 'JWT' }]) {
      const token = `${b64(header)}.${payload}.`;
      expect(looksLikeJwt(token)).toBe(true);
      await expectUnauthenticated(hs, token, 'algorithm_refused');
      await expectUnauthenticated(hs, `${token}${createHmac('sha256', SECRET).update(token.slice(0, -1)).digest('base64url')}`, 'algorithm_refused');
    }
    // An HS256 header with the signature stripped is no better.
    const [h, p] = (await mint({ role: 'admin' })).split('.');
    await expectUnauthenticated(hs, `${h}.${p}.`, /^(bad_signature|malformed_token)$/);
  });

  it('refuses other HMAC algorithms even with the right secret, and junk that only looks like a JWT', async () => {
    await expectUnauthenticated(hs, await mint({ role: 'admin' }, { alg: 'HS512' }), 'algorithm_refused');
    await expectUnauthenticated(hs, await mint({ role: 'admin' }, { alg: 'HS384' }), 'algorithm_refused');
    await expectUnauthenticated(hs, 'abc.def.ghi', 'malformed_token');
    await expectUnauthenticated(hs, `${b64({ alg: 'HS256' })}.bm90IGpzb24.c2lnbmF0dXJlLWJ5dGVz`, /^(malformed_token|bad_signature)$/);
  });

  it('takes the highest role of a roles array; no known role is PERMISSION_DENIED, not a login', async () => {
    const roles = new JwtVerifier(settings({ secret: SECRET, roleClaim: 'roles' }));
    expect(await roles.verify(await mint({ roles: ['viewer', 'admin', 'operator'] }))).toMatchObject({ role: 'admin' });
    expect(await roles.verify(await mint({ roles: ['reader', 'operator', 'viewer'] }))).toMatchObject({ role: 'operator' });
    expect(await roles.verify(await mint({ roles: 'viewer' }))).toMatchObject({ role: 'viewer' });
    // The role claim is the configured one: `role` is ignored when `roles` is configured.
    for (const claims of [{ role: 'admin' }, { roles: [] }, { roles: ['root', 'Admin'] }, { roles: { admin: true } }, {}]) {
      const token = await mint(claims);
      const e = await refusal(roles.verify(token), secretsOf(token));
      expect(e).toMatchObject({ code: 'PERMISSION_DENIED', details: { reason: 'no_role', claim: 'roles' } });
      expect(e.httpStatus).toBe(403);
    }
    for (const claims of [{}, { role: 'superuser' }, { role: 'Admin' }, { role: 2 }, { role: ['root'] }]) {
      const token = await mint(claims);
      const e = await refusal(hs.verify(token), secretsOf(token));
      expect(e).toMatchObject({ code: 'PERMISSION_DENIED', details: { reason: 'no_role' } });
    }
  });

  it('refuses a tenant claim that is not a tenant name', async () => {
    for (const tenant of [42, '', 'a/b', '../other', 'x'.repeat(256), null, ['acme'], { name: 'acme' }, 'acme tenant']) {
      await expectUnauthenticated(hs, await mint({ role: 'admin', tenant }), 'invalid_tenant');
    }
    const custom = new JwtVerifier(settings({ secret: SECRET, tenantClaim: 'org' }));
    await expectUnauthenticated(custom, await mint({ role: 'admin', org: 7 }), 'invalid_org');
    expect(await custom.verify(await mint({ role: 'admin', org: 'acme', tenant: '!!ignored' }))).toMatchObject({ tenant: 'acme' });
  });

  it('answers any HS256-signed claims with an identity or a client-side refusal, never AUTH_UNAVAILABLE', async () => {
    const value = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }));
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom('role', 'roles', 'tenant', 'exp', 'nbf', 'iat', 'iss', 'aud', 'sub', 'jti', 'crit', 'other'), value),
        fc.dictionary(fc.constantFrom('typ', 'kid', 'crit', 'b64', 'cty', 'jku', 'x5u'), value),
        fc.boolean(),
        async (claims, header, rightKey) => {
          const token = `${b64({ ...header, alg: 'HS256' })}.${b64(claims)}`;
          const signed = `${token}.${createHmac('sha256', rightKey ? SECRET : OTHER_SECRET).update(token).digest('base64url')}`;
          const outcome: TokenIdentity | AkiError = await hs.verify(signed).catch((e: unknown) => {
            expect(e).toBeInstanceOf(AkiError);
            return e as AkiError;
          });
          if (outcome instanceof AkiError) {
            expect(['UNAUTHENTICATED', 'PERMISSION_DENIED']).toContain(outcome.code);
            expect(`${outcome.message}${JSON.stringify(outcome.details)}`).not.toContain(SECRET);
          } else {
            expect(rightKey).toBe(true);
            expect(['viewer', 'operator', 'admin']).toContain(outcome.role);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('JwtVerifier with a JWKS', () => {
  let rsa: GenerateKeyPairResult;
  let rsaNext: GenerateKeyPairResult;
  let ec: GenerateKeyPairResult;
  let jwks: JwksServer;

  beforeAll(async () => {
    [rsa, rsaNext, ec] = await Promise.all([generateKeyPair('RS256', { extractable: true }), generateKeyPair('RS256', { extractable: true }), generateKeyPair('ES256', { extractable: true })]);
    jwks = await startJwksServer([await publicJwk(rsa, 'rsa-1', 'RS256'), await publicJwk(ec, 'ec-1', 'ES256')]);
  });
  afterAll(async () => {
    await jwks.close();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('verifies RS256 and ES256 tokens against the served key set', async () => {
    const v = new JwtVerifier(settings({ jwksUrl: jwks.url, roleClaim: 'roles' }));
    expect(await v.verify(await mint({ roles: ['viewer', 'operator'], tenant: 'acme' }, { alg: 'RS256', key: rsa.privateKey, kid: 'rsa-1', sub: 'svc-a' }))).toMatchObject({ subject: 'svc-a', role: 'operator', tenant: 'acme' });
    expect(await v.verify(await mint({ roles: ['admin'] }, { alg: 'ES256', key: ec.privateKey, kid: 'ec-1', sub: 'svc-b' }))).toMatchObject({ subject: 'svc-b', role: 'admin', tenant: null });
    // Expiry and claims are checked on asymmetric tokens as on HS256 ones.
    await expectUnauthenticated(v, await mint({ roles: ['admin'] }, { alg: 'ES256', key: ec.privateKey, kid: 'ec-1', exp: now() - 3600 }), 'token_expired');
    await expectUnauthenticated(v, await mint({ roles: ['admin'] }, { alg: 'ES256', key: ec.privateKey, kid: 'ec-1', exp: null }), 'invalid_exp');
  });

  it('refuses a token signed by a key the set does not hold, under a known kid or an unknown one', async () => {
    const v = new JwtVerifier(settings({ jwksUrl: jwks.url }));
    await expectUnauthenticated(v, await mint({ role: 'admin' }, { alg: 'RS256', key: rsaNext.privateKey, kid: 'rsa-1' }), 'bad_signature');
    await expectUnauthenticated(v, await mint({ role: 'admin' }, { alg: 'RS256', key: rsaNext.privateKey, kid: 'rsa-unknown' }), 'unknown_key');
    // An RSA kid with an EC algorithm finds no key of the right type.
    await expectUnauthenticated(v, await mint({ role: 'admin' }, { alg: 'ES256', key: ec.privateKey, kid: 'rsa-1' }), 'unknown_key');
  });

  it('follows key rotation: a new kid is fetched once the cooldown is over, and a retired key is refused', async () => {
    const rotating = await startJwksServer([await publicJwk(rsa, 'rsa-1', 'RS256')]);
    try {
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
      const v = new JwtVerifier(settings({ jwksUrl: rotating.url }));
      const oldToken = await mint({ role: 'viewer' }, { alg: 'RS256', key: rsa.privateKey, kid: 'rsa-1' });
      const newToken = await mint({ role: 'viewer' }, { alg: 'RS256', key: rsaNext.privateKey, kid: 'rsa-2' });
      expect(await v.verify(oldToken)).toMatchObject({ role: 'viewer' });
      expect(rotating.fetches).toBe(1);

      rotating.keys = [await publicJwk(rsaNext, 'rsa-2', 'RS256')];
      // Within the cooldown the set is not fetched again for every unknown kid.
      await expectUnauthenticated(v, newToken, 'unknown_key');
      expect(rotating.fetches).toBe(1);

      vi.setSystemTime(Date.now() + 31_000);
      expect(await v.verify(newToken)).toMatchObject({ role: 'viewer' });
      expect(rotating.fetches).toBe(2);
      await expectUnauthenticated(v, oldToken, 'unknown_key');
      await expectUnauthenticated(v, await mint({ role: 'admin' }, { alg: 'RS256', key: rsa.privateKey, kid: 'never-published' }), 'unknown_key');
    } finally {
      vi.useRealTimers();
      await rotating.close();
    }
  });

  it('answers AUTH_UNAVAILABLE (503) when the key set cannot be fetched, and recovers when it can', async () => {
    const token = await mint({ role: 'admin' }, { alg: 'RS256', key: rsa.privateKey, kid: 'rsa-1' });
    const down = new JwtVerifier(settings({ jwksUrl: await deadUrl(), secret: SECRET }));
    const e = await refusal(down.verify(token), secretsOf(token));
    expect(e.code).toBe('AUTH_UNAVAILABLE');
    expect(e.httpStatus).toBe(503);
    // HS256 tokens do not depend on the key set.
    expect(await down.verify(await mint({ role: 'viewer' }))).toMatchObject({ role: 'viewer' });

    const flaky = await startJwksServer([await publicJwk(rsa, 'rsa-1', 'RS256')]);
    try {
      const v = new JwtVerifier(settings({ jwksUrl: flaky.url }));
      // An error status, a body that is not JSON, JSON that is not a key set, a redirect.
      for (const failWith of [
        { status: 500, body: '{}' },
        { status: 200, body: '<html>login</html>' },
        { status: 200, body: '{"keys":"none"}' },
        { status: 302, body: '' },
      ]) {
        flaky.failWith = failWith;
        const e = await refusal(v.verify(token), secretsOf(token));
        expect(e, JSON.stringify(failWith)).toMatchObject({ code: 'AUTH_UNAVAILABLE' });
        expect(e.httpStatus).toBe(503);
      }
      flaky.failWith = null;
      expect(await v.verify(token)).toMatchObject({ role: 'admin' });
    } finally {
      await flaky.close();
    }
  });

  it('refuses algorithm confusion: HS256 tokens keyed with the RSA public key', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const jwk = await publicJwk(rsa, 'rsa-1', 'RS256');
    const confusions = [enc(pem), enc(JSON.stringify(jwk)), Buffer.from(jwk.n!, 'base64url')];
    const jwksOnly = new JwtVerifier(settings({ jwksUrl: jwks.url }));
    const jwksAndSecret = new JwtVerifier(settings({ jwksUrl: jwks.url, secret: OTHER_SECRET }));
    for (const key of confusions) {
      const token = await mint({ role: 'admin' }, { key, kid: 'rsa-1' });
      await expectUnauthenticated(jwksOnly, token, 'algorithm_refused');
      await expectUnauthenticated(jwksAndSecret, token, 'bad_signature');
      // The same HMAC under an RS256 header is checked with the RSA key, and fails.
      const [, payload] = token.split('.');
      const head = `${b64({ alg: 'RS256', kid: 'rsa-1' })}.${payload}`;
      await expectUnauthenticated(jwksOnly, `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`, 'bad_signature');
    }
  });
});

describe('Authenticator with tokens', () => {
  const tempDir = useTempDirs('akidb-jwt-');
  let db: AkiDB;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'akidb-jwt-db-'));
    db = await AkiDB.open({ dataDir: dir, compaction: { enableBackground: false } });
  });
  afterAll(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const authOf = (env: Record<string, string>): Authenticator => new Authenticator(db, loadConfig({ cwd: tempDir(), env: { AKIDB_AUTH_ENABLED: 'true', ...env } }).config.auth);

  it('turns a bearer token into a jwt principal scoped as its claims say', async () => {
    const auth = authOf({ AKIDB_JWT_SECRET: SECRET });
    const token = await mint({ role: 'operator', tenant: 'acme' }, { sub: 'alice' });
    const p = await auth.authenticate(credentialOf(undefined, `bearer ${token}`));
    expect(p).toEqual({ kind: 'jwt', id: 'jwt:alice', role: 'operator', tenant: 'acme' });
    auth.authorize(p, { permission: 'write' }, 'acme');
    expect(() => auth.authorize(p, { permission: 'write' }, 'globex')).toThrow(expect.objectContaining({ code: 'TENANT_NOT_FOUND' }) as Error);
    expect(() => auth.authorize(p, { permission: 'admin' }, 'acme')).toThrow(expect.objectContaining({ code: 'PERMISSION_DENIED' }) as Error);
    expect(auth.lockedOut()).toBeNull();
  });

  it('passes refusals through without echoing the token', async () => {
    const auth = authOf({ AKIDB_JWT_SECRET: SECRET });
    await expectUnauthenticated(auth, await mint({ role: 'admin' }, { exp: now() - 3600 }), 'token_expired');
    await expectUnauthenticated(auth, await mint({ role: 'admin' }, { key: enc(OTHER_SECRET) }), 'bad_signature');
    await expectUnauthenticated(auth, `${b64({ alg: 'none' })}.${b64({ role: 'admin', exp: now() + 60 })}.`, 'algorithm_refused');
    const noRole = await mint({ sub: 'bob' });
    expect(await refusal(auth.authenticate(noRole), secretsOf(noRole))).toMatchObject({ code: 'PERMISSION_DENIED' });
  });

  it('refuses tokens when none are configured, saying so', async () => {
    const auth = authOf({ AKIDB_API_KEYS: 'plain-admin-key-0123456789:admin' });
    const e = await expectUnauthenticated(auth, await mint({ role: 'admin' }), 'tokens_not_configured');
    expect(e.message).toMatch(/AKIDB_JWT_SECRET/);
  });

  it('reaches an unreachable JWKS as AUTH_UNAVAILABLE', async () => {
    const rsa = await generateKeyPair('RS256');
    const auth = authOf({ AKIDB_JWT_JWKS_URL: await deadUrl() });
    const token = await mint({ role: 'admin' }, { alg: 'RS256', key: rsa.privateKey, kid: 'k' });
    expect(await refusal(auth.authenticate(token), secretsOf(token))).toMatchObject({ code: 'AUTH_UNAVAILABLE' });
  });

  it('still accepts a bootstrap API key shaped like a JWT (two dots) when tokens are on', async () => {
    const key = 'prod.akidb.0123456789abcdef';
    expect(looksLikeJwt(key)).toBe(true);
    const auth = authOf({ AKIDB_JWT_SECRET: SECRET, AKIDB_API_KEYS: `${key}:viewer` });
    expect(await auth.authenticate(key)).toMatchObject({ kind: 'api_key', role: 'viewer', tenant: null });
    // And a token is still a token.
    expect(await auth.authenticate(await mint({ role: 'admin' }, { sub: 'carol' }))).toMatchObject({ kind: 'jwt', id: 'jwt:carol', role: 'admin' });
    await expectUnauthenticated(auth, 'prod.akidb.0123456789abcdeX', 'malformed_token');
  });
});
