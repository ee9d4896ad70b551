import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startServerProcess, type ServerProcess } from '../../test-support/server-process.js';

describe('admin routes over the real CLI', () => {
  let server: ServerProcess;
  let dataDir = '';
  let configFile = '';
  // One directory for the whole block (the server restarts on it), removed at the end.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-admin-e2e-'));
  beforeAll(async () => {
    configFile = path.join(dir, 'config.toml');
    dataDir = path.join(dir, 'data');
    fs.writeFileSync(configFile, '[storage]\nenable_background_compaction = false\n');
    server = await startServerProcess({ dataDir, args: ['--config', configFile] });
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('GET /admin/health answers 200 with the database, object store and memory checks, and feeds health_check_* metrics', async () => {
    // The check ran once at start, before anyone asked.
    const before = await http(server.restUrl, 'GET', '/admin/metrics');
    expect(before.text).toMatch(/^health_check_status 1$/m);
    expect(before.text).toMatch(/^health_check_duration_seconds_count 1$/m);
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
    expect(metrics.text).toMatch(/^health_check_duration_seconds_count 2$/m);
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

  it('POST /admin/config/compaction changes the settings for every collection, refuses bad values naming them, and the change survives a restart', async () => {
    expect((await http(server.restUrl, 'GET', '/admin/config/compaction')).body).toEqual({ threshold_bytes: 104857600, threshold_ops: 10000, max_segments: 8, idle_flush_ms: 1000, enable_background_compaction: false });
    const bad = await http(server.restUrl, 'POST', '/admin/config/compaction', { threshold_ops: 0, max_segments: 5000 });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: { code: 'INVALID_ARGUMENT', details: { problems: { thresholdOps: 'an integer in 1..100000000', maxSegments: 'an integer in 1..1024' } } } });
    expect((await http(server.restUrl, 'POST', '/admin/config/compaction', {})).status).toBe(400);
    const ok = await http(server.restUrl, 'POST', '/admin/config/compaction', { threshold_ops: 40, enable_background_compaction: true });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ threshold_ops: 40, enable_background_compaction: true, max_segments: 8 });
    // In force at once: 50 writes pass the new threshold and are flushed without being asked.
    await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'rt', dimension: 2 });
    await http(server.restUrl, 'POST', '/api/v1/collections/rt/upsert', { documents: Array.from({ length: 50 }, (_, i) => ({ doc_id: `d${i}`, vector: [1, i + 1] })) });
    for (let i = 0; i < 200; i++) {
      const d = (await http(server.restUrl, 'GET', '/api/v1/collections/rt')).body as { indexing: { segments: number } };
      if (d.indexing.segments > 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect((await http(server.restUrl, 'GET', '/api/v1/collections/rt')).body).toMatchObject({ indexing: { memtable_documents: 0 } });
    expect(server.logs.some((l) => l.msg === 'Compaction settings changed at runtime')).toBe(true);
    // Stored in the catalog: a restart (with the same config file saying otherwise) keeps them.
    expect(await server.stop()).toBe(0);
    server = await startServerProcess({ dataDir: dataDir, args: ['--config', configFile] });
    expect((await http(server.restUrl, 'GET', '/admin/config/compaction')).body).toMatchObject({ threshold_ops: 40, enable_background_compaction: true });
  });

  it('answers 404 COLLECTION_NOT_FOUND for an unknown collection, and lists the admin routes in /openapi.json', async () => {
    const res = await http(server.restUrl, 'POST', '/admin/collections/nope/compact');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ error: { code: 'COLLECTION_NOT_FOUND' } });
    const doc = (await http(server.restUrl, 'GET', '/openapi.json')).body as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/admin/health', '/admin/metrics', '/admin/collections/{id}/compact', '/admin/config/compaction']));
  });
});


describe('the background admin health check (its run against an object-store outage is in tiering.e2e)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-admin-health-e2e-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const count = (text: string): number => Number(/^health_check_duration_seconds_count (\d+)$/m.exec(text)?.[1] ?? -1);

  it('runs only when asked with interval_seconds = 0', async () => {
    const configFile = path.join(dir, 'off.toml');
    fs.writeFileSync(configFile, '[admin.health_check]\ninterval_seconds = 0\n');
    const server = await startServerProcess({ dataDir: path.join(dir, 'off'), args: ['--config', configFile] });
    try {
      expect(count((await http(server.restUrl, 'GET', '/metrics')).text)).toBe(0);
      expect((await http(server.restUrl, 'GET', '/admin/health')).status).toBe(200);
      const text = (await http(server.restUrl, 'GET', '/metrics')).text;
      expect(count(text)).toBe(1);
      expect(text).toMatch(/^health_check_status 1$/m);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
