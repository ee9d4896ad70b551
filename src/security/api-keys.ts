import { createHash, randomBytes } from 'node:crypto';
import type { ApiKeyRecord } from '../catalog/catalog.js';
import { AkiError } from '../errors.js';
import { isRole, ROLES, type Role } from './permissions.js';

/** A key given in `[auth] api_keys` / `AKIDB_API_KEYS`: held in memory, hashed, never stored. */
export interface BootstrapKey {
  keyId: string;
  keyHash: string;
  role: Role;
  tenant: string | null;
}

/** Shortest key `AKIDB_API_KEYS` accepts: shorter ones are guessable. */
export const MIN_BOOTSTRAP_KEY_LENGTH = 16;
const TENANT = /^[A-Za-z0-9_.-]{1,255}$/;

/** SHA-256 of a key, hex. Keys are random and long, so a fast hash is enough (no salt, no stretching). */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * `KEY:ROLE[:TENANT],...` as `AKIDB_API_KEYS` gives it (role defaults to admin). Throws with a
 * message that never includes a key.
 */
export function parseBootstrapKeys(text: string): BootstrapKey[] {
  const out: BootstrapKey[] = [];
  const seen = new Set<string>();
  const entries = text.split(',').map((e) => e.trim()).filter((e) => e !== '');
  entries.forEach((entry, i) => {
    const [key = '', role = 'admin', tenant, ...rest] = entry.split(':');
    const where = `entry ${i + 1} of ${entries.length}`;
    if (rest.length > 0) throw new Error(`${where}: expected KEY:ROLE[:TENANT]`);
    if (key.length < MIN_BOOTSTRAP_KEY_LENGTH) throw new Error(`${where}: the key is shorter than ${MIN_BOOTSTRAP_KEY_LENGTH} characters`);
    if (!/^[\x21-\x7e]+$/.test(key)) throw new Error(`${where}: the key must be printable ASCII without spaces`);
    if (!isRole(role)) throw new Error(`${where}: role ${JSON.stringify(role)} is not one of ${ROLES.join(', ')}`);
    if (tenant !== undefined && !TENANT.test(tenant)) throw new Error(`${where}: tenant ${JSON.stringify(tenant)} is not a valid name`);
    const keyHash = hashKey(key);
    if (seen.has(keyHash)) throw new Error(`${where}: the same key is listed twice`);
    seen.add(keyHash);
    // The id is the entry's position: nothing derived from the key, which may be short enough to guess offline.
    out.push({ keyId: `env-${i + 1}`, keyHash, role, tenant: tenant ?? null });
  });
  return out;
}

/** A new key: `aki_` + 12 hex characters of id + `_` + 43 characters of randomness (256 bits). */
export function generateKey(): { keyId: string; key: string } {
  const keyId = randomBytes(6).toString('hex');
  return { keyId, key: `aki_${keyId}_${randomBytes(32).toString('base64url')}` };
}

/** What the key routes show of a key: never the key nor its hash. */
export interface ApiKeyView {
  key_id: string;
  name: string;
  role: string;
  tenant: string | null;
  source: 'catalog' | 'environment';
  created_at: string | null;
  revoked_at: string | null;
}

export function keyView(rec: ApiKeyRecord): ApiKeyView {
  return { key_id: rec.keyId, name: rec.name, role: rec.role, tenant: rec.tenant, source: 'catalog', created_at: rec.createdAt, revoked_at: rec.revokedAt };
}

export function bootstrapView(k: BootstrapKey): ApiKeyView {
  return { key_id: k.keyId, name: 'AKIDB_API_KEYS', role: k.role, tenant: k.tenant, source: 'environment', created_at: null, revoked_at: null };
}

export function keyNotFound(keyId: string): AkiError {
  return new AkiError('API_KEY_NOT_FOUND', { key_id: keyId.slice(0, 64) }, `No live API key ${keyId.slice(0, 64)}`);
}
