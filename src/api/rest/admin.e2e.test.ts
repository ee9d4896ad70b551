import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startServerProcess, type ServerProcess } from '../../test-support/server-process.js';
import { useTempDirs } from '../../test-support/temp-dirs.js';

const tempDir = useTempDirs('akidb-admin-e2e-');

describe('admin routes over the real CLI', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    const dir = tempDir();
    const cfg = path.join(dir, 'config.toml');
    fs.writeFileSync(cfg, '[storage]\nenable_background_compaction = false\n');
    server = await startServerProcess({ dataDir: path.join(dir, 'data'), args: ['--config', cfg] });
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it('GET /admin/health answers 200 with the database, object store and memory checks, and feeds health_check_* metrics', async () => {
    const res = await http(server.restUrl, 'GET', '/admin/health');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      status: 'healthy',
      checks: { database: { status: 'healthy' }, object_store: { status: 'not_configured' }, memory: { status: 'healthy' } },
    });
    expect((res.body as { checks: { memory: { message: string } } }).checks.memory.message).toMatch(/MiB resident of \d+ MiB/);
    const metrics = await http(server.restUrl, 'GET', '/admin/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/^health_check_status 1$/m);
    expect(metrics.text).toMatch(/^health_check_duration_seconds_count 1$/m);
    expect(metrics.text).toContain('akidb_requests_total');
  });

  it('POST /admin/collections/{id}/compact merges a collection into one segment, by name or by collection_id', async () => {
    const created = await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'cmp', dimension: 4 });
    expect(created.status).toBe(201);
    const id = (created.body as { collection_id: string }).collection_id;
    for (let batch = 0; batch < 3; batch++) {
      const documents = Array.from({ length: 50 }, (_, i) => ({ doc_id: `b${batch}-${i}`, vector: [1, batch + 1, i + 1, 1] }));
      expect((await http(server.restUrl, 'POST', '/api/v1/collections/cmp/upsert', { documents })).status).toBe(200);
    }
    // Background maintenance is off on this server: everything waits in the memtable until asked.
    expect((await http(server.restUrl, 'GET', '/api/v1/collections/cmp')).body).toMatchObject({ indexing: { segments: 0, memtable_documents: 150 } });
    expect((await http(server.restUrl, 'POST', '/api/v1/collections/cmp/delete', { doc_ids: ['b0-0', 'b1-1'] })).body).toMatchObject({ deleted: 2 });
    const byName = await http(server.restUrl, 'POST', '/admin/collections/cmp/compact');
    expect(byName.status).toBe(200);
    expect(byName.body).toMatchObject({ collection_id: id, segments: 1, documents: 148 });
    const byId = await http(server.restUrl, 'POST', `/admin/collections/${id}/compact`);
    expect(byId.body).toMatchObject({ segments: 1, documents: 148 });
    const desc = await http(server.restUrl, 'GET', '/api/v1/collections/cmp');
    expect(desc.body).toMatchObject({ document_count: 148, indexing: { segments: 1, memtable_documents: 0 } });
  });

  it('answers 404 COLLECTION_NOT_FOUND for an unknown collection, and lists the admin routes in /openapi.json', async () => {
    const res = await http(server.restUrl, 'POST', '/admin/collections/nope/compact');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ error: { code: 'COLLECTION_NOT_FOUND' } });
    const doc = (await http(server.restUrl, 'GET', '/openapi.json')).body as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/admin/health', '/admin/metrics', '/admin/collections/{id}/compact']));
  });
});

