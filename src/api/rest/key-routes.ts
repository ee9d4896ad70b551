import type { FastifyInstance } from 'fastify';
import { ROLES, type Role } from '../../security/permissions.js';
import type { RouteContext } from './collection-routes.js';

const keyView = {
  type: 'object',
  properties: {
    key_id: { type: 'string' },
    name: { type: 'string' },
    role: { type: 'string', enum: [...ROLES] },
    tenant: { type: 'string', nullable: true },
    source: { type: 'string', enum: ['catalog', 'environment'] },
    created_at: { type: 'string', nullable: true },
    revoked_at: { type: 'string', nullable: true },
  },
} as const;

/**
 * API key management (admin, all tenants). Keys are stored as SHA-256 hashes; the key itself is
 * in the creation answer only. Keys from AKIDB_API_KEYS are listed but live in the environment.
 */
export function registerKeyRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { auth, schemas: s } = ctx;
  const tags = ['admin'];
  app.post(
    '/admin/api-keys',
    {
      schema: {
        summary: 'Create an API key with a role, optionally scoped to one tenant; the key is shown in this answer only',
        tags,
        body: {
          type: 'object',
          required: ['name', 'role'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[\\x20-\\x7e]+$' },
            role: { type: 'string', enum: [...ROLES] },
            tenant: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,255}$' },
          },
        },
        response: { 201: { ...keyView, properties: { ...keyView.properties, key: { type: 'string' } } }, 400: s.error, 404: s.error },
      },
    },
    async (req, reply) => {
      const b = req.body as { name: string; role: Role; tenant?: string };
      const created = await auth.createKey(b.name, b.role, b.tenant ?? null);
      req.log.info({ keyId: created.key_id, role: created.role, tenant: created.tenant, by: req.principal?.id }, 'API key created');
      return reply.status(201).send(created);
    },
  );
  app.get('/admin/api-keys', { schema: { summary: 'List API keys (ids, names, roles, tenants; never the keys)', tags, response: { 200: { type: 'object', properties: { keys: { type: 'array', items: keyView } } } } } }, async () => ({ keys: auth.listKeys() }));
  app.delete(
    '/admin/api-keys/:key_id',
    { schema: { summary: 'Revoke an API key: refused from the next request on', tags, params: { type: 'object', properties: { key_id: { type: 'string', maxLength: 64 } } }, response: { 204: { type: 'null' }, 400: s.error, 404: s.error } } },
    async (req, reply) => {
      const keyId = (req.params as { key_id: string }).key_id;
      auth.revokeKey(keyId);
      req.log.info({ keyId, by: req.principal?.id }, 'API key revoked');
      return reply.status(204).send();
    },
  );
}
