import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createSnapshot, readBackupManifest, stagingDir } from '../../backup/backup.js';
import { AkiError } from '../../errors.js';
import type { RouteContext } from './collection-routes.js';

/**
 * Online backups for `akidb backup`: the server stages a consistent copy in
 * `<data_dir>/backups/<id>/` (hard links, so it costs little space), the client downloads every
 * file it lists and deletes it. Stale staging is removed at every start.
 */
export function registerBackupRoutes(app: FastifyInstance, ctx: RouteContext, version: string): void {
  const { db, schemas: s } = ctx;
  const tags = ['admin'];
  const notFound = (id: string): AkiError => new AkiError('BACKUP_NOT_FOUND', { backup_id: id.slice(0, 64) }, `No staged backup ${id.slice(0, 64)}`);
  const staged = async (id: string): Promise<string> => {
    const dir = stagingDir(db, id);
    if (!(await stat(path.join(dir, 'backup.json')).catch(() => null))) throw notFound(id);
    return dir;
  };

  app.post(
    '/admin/backups',
    {
      schema: {
        summary: 'Stage a consistent online backup (catalog, manifests, segments) for download; answers its file list. `collection_id` limits it to one collection (what `akidb export` uses)',
        tags,
        querystring: { type: 'object', additionalProperties: false, properties: { collection_id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } } },
        response: { 201: { type: 'object', additionalProperties: true }, 400: s.error, 404: s.error, 503: s.error },
      },
    },
    async (req, reply) => {
      const started = performance.now();
      const only = (req.query as { collection_id?: string }).collection_id;
      if (only !== undefined) await db.getCollectionById(only);
      const m = await createSnapshot(db, version, only !== undefined ? new Set([only]) : undefined);
      req.log.info({ backupId: m.backup_id, collections: m.collections.length, files: m.files.length, bytes: m.files.reduce((n, f) => n + f.bytes, 0), ms: Math.round(performance.now() - started) }, 'Backup staged');
      return reply.status(201).send(m);
    },
  );

  app.get('/admin/backups/:id/files/:path', { schema: { summary: 'One file of a staged backup: `path` is a path its file list names, percent-encoded as one segment', tags, response: { 400: s.error, 404: s.error } } }, async (req, reply) => {
    const { id, path: rel } = req.params as { id: string; path: string };
    const dir = await staged(id);
    const m = await readBackupManifest(dir);
    const f = m.files.find((x) => x.path === rel);
    if (!f) throw new AkiError('BACKUP_NOT_FOUND', { backup_id: id, path: rel.slice(0, 200) }, 'The backup lists no such file');
    return reply.header('content-type', 'application/octet-stream').header('content-length', String(f.bytes)).header('x-akidb-sha256', f.sha256).send(createReadStream(path.join(dir, f.path)));
  });

  app.delete('/admin/backups/:id', { schema: { summary: 'Delete a staged backup', tags, response: { 204: { type: 'null' }, 400: s.error, 404: s.error } } }, async (req, reply) => {
    const id = (req.params as { id: string }).id;
    await rm(await staged(id), { recursive: true, force: true });
    return reply.status(204).send();
  });
}
