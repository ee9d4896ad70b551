/**
 * Roles (seed 003's viewer, operator and admin, plus monitor for scrapers and probes) and the one table that says what every REST route
 * and gRPC method needs. A route missing from the table stops the server at start, so a new
 * route cannot ship unguarded.
 */

export type Role = 'monitor' | 'viewer' | 'operator' | 'admin';
/** Lowest first: a token naming several roles gets the last of them here (`highestRole`). */
export const ROLES: readonly Role[] = ['monitor', 'viewer', 'operator', 'admin'];

/**
 * What a call needs:
 * - `public`: nothing (liveness and readiness probes);
 * - `read`: describe, list, get and query;
 * - `write`: insert, upsert, delete, create and drop collections;
 * - `status`: server-wide health and metrics;
 * - `admin`: tenants and databases, tier moves, the /admin routes and API keys.
 */
export type Permission = 'public' | 'read' | 'write' | 'status' | 'admin';

const GRANTS: Record<Role, ReadonlySet<Permission>> = {
  // Prometheus and health probes: server status only, no collection data.
  monitor: new Set(['public', 'status']),
  viewer: new Set(['public', 'read']),
  operator: new Set(['public', 'read', 'write', 'status']),
  admin: new Set(['public', 'read', 'write', 'status', 'admin']),
};

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export function roleAllows(role: Role, permission: Permission): boolean {
  return GRANTS[role].has(permission);
}

/** The highest of several roles (a token's `roles` array), or null when none is a role. */
export function highestRole(values: readonly unknown[]): Role | null {
  let best = -1;
  for (const v of values) if (isRole(v)) best = Math.max(best, ROLES.indexOf(v));
  return best < 0 ? null : ROLES[best]!;
}

/**
 * What a route needs. `global` routes act on the whole server (every tenant): a credential
 * scoped to one tenant is refused them whatever its role.
 */
export interface RouteRule {
  permission: Permission;
  global?: boolean;
}

const COLLECTION_ROUTES: Record<string, RouteRule> = {
  'POST /collections': { permission: 'write' },
  'GET /collections': { permission: 'read' },
  'GET /collections/:id': { permission: 'read' },
  'DELETE /collections/:id': { permission: 'write' },
  'POST /collections/:id/insert': { permission: 'write' },
  'POST /collections/:id/upsert': { permission: 'write' },
  'POST /collections/:id/query': { permission: 'read' },
  'GET /collections/:id/docs/:doc_id': { permission: 'read' },
  'DELETE /collections/:id/docs/:doc_id': { permission: 'write' },
  'POST /collections/:id/delete': { permission: 'write' },
  'GET /collections/:id/tier': { permission: 'read' },
  'POST /collections/:id/tier': { permission: 'admin' },
};

const prefixed = (prefix: string): Record<string, RouteRule> => Object.fromEntries(Object.entries(COLLECTION_ROUTES).map(([k, v]) => [k.replace(' ', ` ${prefix}`), v]));

/** Every REST route, as `METHOD /path` with Fastify's `:param` syntax. HEAD follows GET. */
export const REST_ROUTES: Readonly<Record<string, RouteRule>> = {
  'GET /health/live': { permission: 'public' },
  'GET /health/ready': { permission: 'public' },
  'GET /health': { permission: 'status', global: true },
  'GET /metrics': { permission: 'status', global: true },
  'GET /openapi.json': { permission: 'read' },
  'GET /api/v1/metrics/tiers': { permission: 'status', global: true },
  'POST /api/v1/tenants': { permission: 'admin', global: true },
  'GET /api/v1/tenants': { permission: 'read' },
  'DELETE /api/v1/tenants/:tenant': { permission: 'admin', global: true },
  'POST /api/v1/tenants/:tenant/databases': { permission: 'admin' },
  'GET /api/v1/tenants/:tenant/databases': { permission: 'read' },
  'DELETE /api/v1/tenants/:tenant/databases/:database': { permission: 'admin' },
  ...prefixed('/api/v1'),
  ...prefixed('/api/v1/tenants/:tenant/databases/:database'),
  'GET /admin/health': { permission: 'admin', global: true },
  'GET /admin/metrics': { permission: 'admin', global: true },
  'GET /admin/config/compaction': { permission: 'admin', global: true },
  'POST /admin/config/compaction': { permission: 'admin', global: true },
  'POST /admin/collections/:id/compact': { permission: 'admin', global: true },
  'GET /admin/collections/:id/dlq': { permission: 'admin', global: true },
  'DELETE /admin/collections/:id/dlq': { permission: 'admin', global: true },
  'POST /admin/collections/:id/dlq/retry': { permission: 'admin', global: true },
  'GET /admin/circuit-breaker': { permission: 'admin', global: true },
  'POST /admin/circuit-breaker/reset': { permission: 'admin', global: true },
  'GET /admin/config/circuit-breaker': { permission: 'admin', global: true },
  'POST /admin/config/circuit-breaker': { permission: 'admin', global: true },
  'GET /admin/config/dlq': { permission: 'admin', global: true },
  'POST /admin/config/dlq': { permission: 'admin', global: true },
  'GET /admin/config/s3-upload': { permission: 'admin', global: true },
  'POST /admin/config/s3-upload': { permission: 'admin', global: true },
  'POST /admin/backups': { permission: 'admin', global: true },
  'GET /admin/backups/:id/files/:path': { permission: 'admin', global: true },
  'DELETE /admin/backups/:id': { permission: 'admin', global: true },
  'POST /admin/api-keys': { permission: 'admin', global: true },
  'GET /admin/api-keys': { permission: 'admin', global: true },
  'DELETE /admin/api-keys/:key_id': { permission: 'admin', global: true },
};

/** The rule for a matched REST route, or null when the table lacks it. */
export function restRule(method: string, url: string): RouteRule | null {
  return REST_ROUTES[`${method === 'HEAD' ? 'GET' : method} ${url}`] ?? null;
}

/** Every gRPC method (service-qualified). Health checking and reflection are public and not listed. */
export const GRPC_METHODS: Readonly<Record<string, RouteRule>> = {
  'akidb.collection.v1.CollectionService/Insert': { permission: 'write' },
  'akidb.collection.v1.CollectionService/Upsert': { permission: 'write' },
  'akidb.collection.v1.CollectionService/Query': { permission: 'read' },
  'akidb.collection.v1.CollectionService/Get': { permission: 'read' },
  'akidb.collection.v1.CollectionService/Delete': { permission: 'write' },
  'akidb.collection.v1.CollectionService/Describe': { permission: 'read' },
  'akidb.collection.v1.CollectionManagementService/CreateCollection': { permission: 'write' },
  'akidb.collection.v1.CollectionManagementService/ListCollections': { permission: 'read' },
  'akidb.collection.v1.CollectionManagementService/GetCollection': { permission: 'read' },
  'akidb.collection.v1.CollectionManagementService/DeleteCollection': { permission: 'write' },
};
