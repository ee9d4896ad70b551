import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { AkiError } from '../errors.js';
import { highestRole, isRole, ROLES, type Role } from './permissions.js';

export interface JwtSettings {
  /** HS256 secret; empty: HS256 refused. */
  secret: string;
  /** JWKS URL for asymmetric tokens; empty: they are refused. */
  jwksUrl: string;
  issuer: string;
  audience: string;
  roleClaim: string;
  tenantClaim: string;
  clockToleranceSeconds: number;
}

/** Who a verified token speaks for. */
export interface TokenIdentity {
  subject: string;
  role: Role;
  tenant: string | null;
  /** `exp`, in seconds since the epoch. */
  expiresAt: number;
}

/** Asymmetric algorithms taken from the JWKS; HS256 only with the shared secret, never `none`. */
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA'];
const JOSE_REASONS: Record<string, string> = {
  ERR_JWT_EXPIRED: 'token_expired',
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'bad_signature',
  ERR_JOSE_ALG_NOT_ALLOWED: 'algorithm_refused',
  ERR_JWKS_NO_MATCHING_KEY: 'unknown_key',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'unknown_key',
  ERR_JWS_INVALID: 'malformed_token',
  ERR_JWT_INVALID: 'malformed_token',
  ERR_JOSE_NOT_SUPPORTED: 'algorithm_refused',
};

/** Looks like a compact JWS: three base64url parts. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/**
 * Verifies JSON Web Tokens (jose): signature with the key its algorithm allows, `exp`, `nbf`,
 * issuer and audience; then role and tenant from the configured claims.
 */
export class JwtVerifier {
  readonly #s: JwtSettings;
  readonly #secret: Uint8Array | null;
  readonly #jwks: JWTVerifyGetKey | null;

  constructor(settings: JwtSettings) {
    this.#s = settings;
    this.#secret = settings.secret !== '' ? new TextEncoder().encode(settings.secret) : null;
    this.#jwks = settings.jwksUrl !== '' ? createRemoteJWKSet(new URL(settings.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 }) : null;
  }

  get clockToleranceSeconds(): number {
    return this.#s.clockToleranceSeconds;
  }

  get enabled(): boolean {
    return this.#secret !== null || this.#jwks !== null;
  }

  async verify(token: string): Promise<TokenIdentity> {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw refused('malformed_token', 'The token is not a well-formed JWT');
    }
    let payload: JWTPayload;
    const options = {
      clockTolerance: this.#s.clockToleranceSeconds,
      requiredClaims: ['exp'],
      ...(this.#s.issuer !== '' ? { issuer: this.#s.issuer } : {}),
      ...(this.#s.audience !== '' ? { audience: this.#s.audience } : {}),
    };
    try {
      if (alg === 'HS256' && this.#secret) payload = (await jwtVerify(token, this.#secret, { ...options, algorithms: ['HS256'] })).payload;
      else if (alg !== undefined && ASYMMETRIC.includes(alg) && this.#jwks) payload = (await jwtVerify(token, this.#jwks, { ...options, algorithms: ASYMMETRIC })).payload;
      else throw refused('algorithm_refused', `Tokens signed with ${JSON.stringify(alg ?? null).slice(0, 20)} are not accepted here`);
    } catch (err) {
      if (err instanceof AkiError) throw err;
      const code = (err as { code?: string }).code ?? '';
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
        const claim = (err as { claim?: string }).claim ?? 'claim';
        throw refused(claim === 'nbf' ? 'token_not_yet_valid' : `invalid_${claim}`, `The token's ${claim} claim is not acceptable`);
      }
      const reason = JOSE_REASONS[code];
      if (reason) throw refused(reason, reason === 'token_expired' ? 'The token has expired' : `The token was refused (${reason.replace(/_/g, ' ')})`);
      // The key set could not be fetched or read: not the client's fault. (jose raises its generic
      // error only when the JWKS endpoint answers other than 200 OK with JSON.)
      if (alg !== 'HS256' && (code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JWKS_INVALID' || code === 'ERR_JOSE_GENERIC' || code === '')) throw new AkiError('AUTH_UNAVAILABLE', { reason: code || 'jwks_unreachable' }, 'The key set for verifying tokens could not be fetched; retry later', { cause: err });
      // Anything else jose refuses is a token it cannot read.
      throw refused('malformed_token', 'The token is not a well-formed JWT');
    }
    const rawRole = payload[this.#s.roleClaim];
    const role = Array.isArray(rawRole) ? highestRole(rawRole) : isRole(rawRole) ? rawRole : null;
    if (!role) throw new AkiError('PERMISSION_DENIED', { reason: 'no_role', claim: this.#s.roleClaim }, `The token's ${this.#s.roleClaim} claim names no role (${ROLES.join(', ')})`);
    const rawTenant = payload[this.#s.tenantClaim];
    if (rawTenant !== undefined && (typeof rawTenant !== 'string' || !/^[A-Za-z0-9_.-]{1,255}$/.test(rawTenant))) throw refused(`invalid_${this.#s.tenantClaim}`, `The token's ${this.#s.tenantClaim} claim is not a tenant name`);
    return { subject: typeof payload.sub === 'string' ? payload.sub.slice(0, 200) : 'jwt', role, tenant: rawTenant ?? null, expiresAt: payload.exp! };
  }
}

function refused(reason: string, message: string): AkiError {
  return new AkiError('UNAUTHENTICATED', { reason }, message);
}
