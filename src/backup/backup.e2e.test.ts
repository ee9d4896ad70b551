import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { http, runCli, startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

const KEY = 'backup-admin-key-0123456789';
const H = { 'x-api-key': KEY };
const ENV = { AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: `${KEY}:admin` };
const DIM = 16;
const SCOPES = ['/api/v1', '/api/v1/tenants/acme/databases/prod'];

function vector(i: number): number[] {
  // Deterministic, spread out: a hash of (i, d) mapped to [-1, 1].
  return Array.from({ length: DIM }, (_, d) => Math.sin(i * 12.9898 + d * 78.233) * 0.5 + Math.cos(i * 0.37 + d) * 0.5);
}

/** What a node answers for the documents written before the backup: gets and filtered queries. */
async function view(s: ServerProcess): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const scope of SCOPES) {
    for (let i = 0; i < 1200; i += 97) out.push((await http(s.restUrl, 'GET', `${scope}/collections/docs/docs/d${i}`, undefined, H)).body);
    for (let q = 0; q < 10; q++) {
      const r = await http(s.restUrl, 'POST', `${scope}/collections/docs/query`, { query_vector: vector(5000 + q), top_k: 10, filter: { phase: 'before' }, include_metadata: true }, H);
      expect(r.status).toBe(200);
      out.push((r.body as { matches: { doc_id: string; score: number; metadata: unknown }[] }).matches.map((m) => [m.doc_id, m.score.toFixed(5), m.metadata]));
    }
  }
  return out;
}

describe('online backup, restore and verify (akidb backup / restore / verify against real servers)', () => {
  const tempDir = useTempDirs('akidb-backup-');

  it('a backup taken while writes continue restores every write acknowledged before it began, and verify catches a flipped byte', async () => {
    const dataA = tempDir();
    const a = await startServerProcess({ dataDir: dataA, env: ENV });
    let b: ServerProcess | undefined;
    try {
      expect((await http(a.restUrl, 'POST', '/api/v1/tenants', { name: 'acme' }, H)).status).toBe(201);
      expect((await http(a.restUrl, 'POST', '/api/v1/tenants/acme/databases', { name: 'prod' }, H)).status).toBe(201);
      for (const scope of SCOPES) {
        expect((await http(a.restUrl, 'POST', `${scope}/collections`, { name: 'docs', dimension: DIM, metric: 'l2' }, H)).status).toBe(201);
        for (let s = 0; s < 1200; s += 300) {
          const documents = Array.from({ length: 300 }, (_, j) => ({ doc_id: `d${s + j}`, vector: vector(s + j), metadata: { phase: 'before', n: s + j } }));
          expect((await http(a.restUrl, 'POST', `${scope}/collections/docs/upsert`, { documents }, H)).status).toBe(200);
        }
        // Acknowledged deletes and overwrites before the backup are part of what it must keep.
        expect((await http(a.restUrl, 'POST', `${scope}/collections/docs/delete`, { doc_ids: ['d0', 'd97', 'd194'] }, H)).status).toBe(200);
        expect((await http(a.restUrl, 'POST', `${scope}/collections/docs/upsert`, { documents: [{ doc_id: 'd291', vector: vector(9_999), metadata: { phase: 'before', n: -1 } }] }, H)).status).toBe(200);
      }
      const before = await view(a);

      // Writers keep going during the backup: new documents, and overwrites marked `during`.
      let writing = true;
      let written = 0;
      const writer = (async () => {
        for (let i = 0; writing; i++) {
          const scope = SCOPES[i % 2]!;
          const r = await http(a.restUrl, 'POST', `${scope}/collections/docs/upsert`, { documents: [{ doc_id: `late${i}`, vector: vector(20_000 + i), metadata: { phase: 'during' } }] }, H);
          expect(r.status).toBe(200);
          written += 1;
        }
      })();
      const out = path.join(tempDir(), 'backup');
      const res = await runCli(['backup', '--url', a.restUrl, '--out', out], { env: { AKIDB_API_KEY: KEY } });
      writing = false;
      await writer;
      expect(res.stderr).not.toContain('Error');
      expect(res.code, res.stderr).toBe(0);
      expect(written).toBeGreaterThan(0);
      const summary = JSON.parse(res.stdout) as { collections: number; files: number };
      expect(summary.collections).toBe(2);
      // The server deleted its staging once the client had everything.
      expect(fs.existsSync(path.join(dataA, 'backups')) ? fs.readdirSync(path.join(dataA, 'backups')) : []).toEqual([]);

      const verified = await runCli(['verify', '--backup', out]);
      expect(verified.code, verified.stdout).toBe(0);
      expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, problems: [] });

      const dataB = tempDir();
      const restored = await runCli(['restore', '--from', out, '--data-dir', dataB]);
      expect(restored.code, restored.stderr).toBe(0);
      // A second restore into the same (now full) directory is refused.
      expect((await runCli(['restore', '--from', out, '--data-dir', dataB])).code).toBe(1);

      b = await startServerProcess({ dataDir: dataB, env: ENV });
      expect(await view(b)).toEqual(before);
      for (const scope of SCOPES) {
        expect((await http(b.restUrl, 'GET', `${scope}/collections/docs/docs/d97`, undefined, H)).status).toBe(404);
        expect((await http(b.restUrl, 'GET', `${scope}/collections/docs/docs/d291`, undefined, H)).body).toMatchObject({ metadata: { n: -1 } });
      }
      // The restored node takes writes.
      expect((await http(b.restUrl, 'POST', '/api/v1/collections/docs/insert', { doc_id: 'after', vector: vector(1) }, H)).status).toBe(200);

      // A flipped byte in a backed-up segment: verify says which file, and restore refuses the backup.
      const seg = fs.readdirSync(path.join(out, 'collections'), { recursive: true }).map(String).find((f) => f.includes(`segments${path.sep}`) && f.endsWith('.seg'));
      expect(seg).toBeDefined();
      const file = path.join(out, 'collections', seg!);
      const bytes = fs.readFileSync(file);
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      fs.writeFileSync(file, bytes);
      const bad = await runCli(['verify', '--backup', out]);
      expect(bad.code).toBe(1);
      const report = JSON.parse(bad.stdout) as { ok: boolean; problems: string[] };
      expect(report.ok).toBe(false);
      expect(report.problems.join('\n')).toContain(path.basename(seg!));
      expect((await runCli(['restore', '--from', out, '--data-dir', tempDir()])).code).toBe(1);
    } finally {
      await a.stop('SIGTERM');
      await b?.stop('SIGTERM');
    }
    // A stopped node's data directory verifies.
    const v = await runCli(['verify', '--data-dir', dataA]);
    expect(v.code, v.stdout).toBe(0);
    expect((JSON.parse(v.stdout) as { checked: { segments: number } }).checked.segments).toBeGreaterThan(0);
  }, 120_000);

  it('the backup routes need an admin credential; a backup id that does not exist is 404', async () => {
    const a = await startServerProcess({ dataDir: tempDir(), env: ENV });
    try {
      expect((await http(a.restUrl, 'POST', '/admin/backups')).status).toBe(401);
      expect((await http(a.restUrl, 'GET', '/admin/backups/00000000-0000-0000-0000-000000000000/files/metadata.db', undefined, H)).status).toBe(404);
      expect((await http(a.restUrl, 'GET', '/admin/backups/..%2F..%2Fetc/files/passwd', undefined, H)).status).toBe(400);
      const staged = await http(a.restUrl, 'POST', '/admin/backups', undefined, H);
      expect(staged.status).toBe(201);
      const id = (staged.body as { backup_id: string }).backup_id;
      expect((await http(a.restUrl, 'GET', `/admin/backups/${id}/files/..%2Fmetadata.db`, undefined, H)).status).toBe(404);
      expect((await http(a.restUrl, 'GET', `/admin/backups/${id}/files/metadata.db`, undefined, H)).status).toBe(200);
      expect((await http(a.restUrl, 'DELETE', `/admin/backups/${id}`, undefined, H)).status).toBe(204);
      expect((await http(a.restUrl, 'DELETE', `/admin/backups/${id}`, undefined, H)).status).toBe(404);
    } finally {
      await a.stop('SIGTERM');
    }
  });
});
