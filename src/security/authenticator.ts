import type { AkiConfig } from '../config/config-schema.js';
import { DEFAULT_TENANT, type AkiDB } from '../engine/database.js';
import { AkiError } from '../errors.js';
import { bootstrapView, generateKey, hashKey, keyNotFound, keyView, parseBootstrapKeys, type ApiKeyView, type BootstrapKey } from './api-keys.js';
import { JwtVerifier, looksLikeJwt } from './jwt.js';
import { isRole, roleAllows, type Role, type RouteRule } from './permissions.js';
import { RateLimiter } from './rate-limiter.js';

/** Who is calling: from an API key, a token, or (auth off) anyone. */
export interface Principal {
  kind: 'api_key' | 'jwt' | 'anonymous';
  /** Key id or token subject: logged, rate-limited by, never secret. */
  id: string;
  role: Role;
  /** The one tenant this credential may use; null: every tenant. */
  tenant: string | null;
}

/** The credential a request carries: `X-API-Key`, or `Authorization: Bearer`. */
export function credentialOf(apiKeyHeader: unknown, authorization: unknown): string | null {
  if (typeof apiKeyHeader === 'string' && apiKeyHeader !== '') return apiKeyHeader;
  if (typeof authorization === 'string') {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
    if (m) return m[1]!;
  }
  return null;
}

/** Verified tokens kept (until they expire) so a client reusing one pays for its signature once. */
const TOKEN_CACHE_SIZE = 10_000;

const ANONYMOUS: Principal = { kind: 'anonymous', id: 'anonymous', role: 'admin', tenant: null };

/**
 * Authentication, authorization and rate limiting for REST and gRPC alike. With `[auth]
 * enabled = false` every caller is an unscoped admin and only the rate limit (by client address)
 * applies.
 */
export class Authenticator {
  readonly enabled: boolean;
  readonly #db: AkiDB;
  readonly #bootstrap: Map<string, BootstrapKey>;
  readonly #jwt: JwtVerifier;
  readonly #limiter: RateLimiter | null;
  /** Catalog keys by hash; cleared whenever a key is created or revoked (this process owns the catalog). Misses are not kept. */
  readonly #keys = new Map<string, Principal>();
  /** Verified tokens by their exact text, with `exp` in ms; oldest dropped first past TOKEN_CACHE_SIZE. */
  readonly #tokens = new Map<string, { principal: Principal; expiresMs: number }>();

  constructor(db: AkiDB, auth: AkiConfig['auth']) {
    this.enabled = auth.enabled;
    this.#db = db;
    this.#bootstrap = new Map(parseBootstrapKeys(auth.api_keys).map((k) => [k.keyHash, k]));
    this.#jwt = new JwtVerifier({
      secret: auth.jwt_secret,
      jwksUrl: auth.jwt_jwks_url,
      issuer: auth.jwt_issuer,
      audience: auth.jwt_audience,
      roleClaim: auth.jwt_role_claim,
      tenantClaim: auth.jwt_tenant_claim,
      clockToleranceSeconds: auth.jwt_clock_tolerance_seconds,
    });
    this.#limiter = auth.rate_limit_per_second > 0 ? new RateLimiter(auth.rate_limit_per_second, auth.rate_limit_burst > 0 ? auth.rate_limit_burst : Math.max(1, Math.ceil(auth.rate_limit_per_second * 2))) : null;
  }

  /** Why nobody could ever authenticate, or null: checked at start so a locked-out server is not started. */
  lockedOut(): string | null {
    if (!this.enabled || this.#bootstrap.size > 0 || this.#jwt.enabled) return null;
    if (this.#db.apiKeys.listApiKeys().some((k) => k.revokedAt === null && k.role === 'admin' && k.tenant === null)) return null;
    return 'auth is enabled but no credential can be verified: set AKIDB_API_KEYS (KEY:admin) to bootstrap an admin key, or AKIDB_JWT_SECRET / AKIDB_JWT_JWKS_URL for tokens';
  }

  /** The caller, or UNAUTHENTICATED (missing, unknown, revoked or invalid credential). */
  async authenticate(credential: string | null): Promise<Principal> {
    if (!this.enabled) return ANONYMOUS;
    if (credential === null) throw new AkiError('UNAUTHENTICATED', { reason: 'missing_credential' }, 'Send an API key in X-API-Key or Authorization: Bearer, or a JWT as a bearer token');
    // Keys first: a bootstrap key may contain two dots and so look like a JWT.
    const hash = hashKey(credential);
    const boot = this.#bootstrap.get(hash);
    if (boot) return { kind: 'api_key', id: boot.keyId, role: boot.role, tenant: boot.tenant };
    const known = this.#keys.get(hash);
    if (known) return known;
    const rec = this.#db.apiKeys.findApiKeyByHash(hash);
    if (rec && isRole(rec.role)) {
      const p: Principal = { kind: 'api_key', id: rec.keyId, role: rec.role, tenant: rec.tenant };
      if (this.#keys.size < TOKEN_CACHE_SIZE) this.#keys.set(hash, p);
      return p;
    }
    if (looksLikeJwt(credential) && this.#jwt.enabled) {
      const cached = this.#tokens.get(credential);
      if (cached && Date.now() < cached.expiresMs) return cached.principal;
      if (cached) this.#tokens.delete(credential);
      const t = await this.#jwt.verify(credential);
      const principal: Principal = { kind: 'jwt', id: `jwt:${t.subject}`, role: t.role, tenant: t.tenant };
      this.#tokens.set(credential, { principal, expiresMs: (t.expiresAt + this.#jwt.clockToleranceSeconds) * 1000 });
      if (this.#tokens.size > TOKEN_CACHE_SIZE) this.#tokens.delete(this.#tokens.keys().next().value!);
      return principal;
    }
    throw new AkiError('UNAUTHENTICATED', { reason: looksLikeJwt(credential) ? 'tokens_not_configured' : 'unknown_key' }, looksLikeJwt(credential) ? 'This server accepts no JWTs (set AKIDB_JWT_SECRET or AKIDB_JWT_JWKS_URL)' : 'The API key is not valid (unknown or revoked)');
  }

  /**
   * Whether `p` may call a route with `rule` on `tenant` (null: the route names none). A tenant
   * the credential may not see answers TENANT_NOT_FOUND, as a missing one does.
   */
  authorize(p: Principal, rule: RouteRule, tenant: string | null): void {
    if (!roleAllows(p.role, rule.permission)) throw new AkiError('PERMISSION_DENIED', { role: p.role, needs: rule.permission }, `Role ${p.role} may not do this (it needs ${rule.permission})`);
    if (p.tenant === null) return;
    if (rule.global) throw new AkiError('PERMISSION_DENIED', { tenant: p.tenant, needs: 'all tenants' }, 'This acts on every tenant; a credential scoped to one tenant may not call it');
    if (tenant !== null && tenant !== p.tenant) throw new AkiError('TENANT_NOT_FOUND', { tenant: tenant.slice(0, 255) }, `Tenant ${tenant.slice(0, 255)} not found`);
  }

  /** Take one request from `key`'s bucket; RATE_LIMITED (with retry_after_seconds) when it is empty. */
  limit(key: string): void {
    if (!this.#limiter) return;
    const waitMs = this.#limiter.take(key);
    if (waitMs > 0) {
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
      throw new AkiError('RATE_LIMITED', { retry_after_seconds: retryAfter }, `Rate limit exceeded; retry after ${retryAfter} s`);
    }
  }

  /** A new catalog key; the key itself is returned this once and never stored. */
  async createKey(name: string, role: Role, tenant: string | null): Promise<ApiKeyView & { key: string }> {
    if (tenant !== null && tenant !== DEFAULT_TENANT && !(await this.#db.listTenants()).some((t) => t.name === tenant)) throw new AkiError('TENANT_NOT_FOUND', { tenant }, `Tenant ${tenant} not found`);
    const { keyId, key } = generateKey();
    const createdAt = new Date().toISOString();
    this.#db.apiKeys.createApiKey({ keyId, keyHash: hashKey(key), name, role, tenant, createdAt });
    this.#keys.clear();
    return { ...keyView({ keyId, keyHash: '', name, role, tenant, createdAt, revokedAt: null }), key };
  }

  listKeys(): ApiKeyView[] {
    return [...[...this.#bootstrap.values()].map(bootstrapView), ...this.#db.apiKeys.listApiKeys().map(keyView)];
  }

  revokeKey(keyId: string): void {
    if ([...this.#bootstrap.values()].some((k) => k.keyId === keyId)) throw new AkiError('INVALID_ARGUMENT', { key_id: keyId, reason: 'environment_key' }, 'Keys from AKIDB_API_KEYS are revoked by removing them from it and restarting');
    this.#keys.clear();
    if (!this.#db.apiKeys.revokeApiKey(keyId)) throw keyNotFound(keyId);
  }
}
