import fs from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { http, runCli, startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

const KEY = 'akipkg-admin-key-0123456789';
const H = { 'x-api-key': KEY };
const ENV = { AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: `${KEY}:admin` };
const CLI_ENV = { AKIDB_API_KEY: KEY };
const DIM = 12;

const vector = (i: number): number[] => Array.from({ length: DIM }, (_, d) => Math.sin(i * 1.618 + d * 2.3) + (d === i % DIM ? 1 : 0));

/** Describe plus twenty queries (some filtered), as a node answers them. */
async function answers(s: ServerProcess, name: string): Promise<unknown> {
  const info = (await http(s.restUrl, 'GET', `/api/v1/collections/${name}`, undefined, H)).body as Record<string, unknown>;
  const out: unknown[] = [{ dimension: info.dimension, metric: info.metric, index: info.index, document_count: info.document_count }];
  for (let q = 0; q < 20; q++) {
    const body = { query_vector: vector(10_000 + q), top_k: 10, include_metadata: true, ...(q % 2 ? { filter: { group: { $in: ['a', 'c'] } } } : {}) };
    const r = await http(s.restUrl, 'POST', `/api/v1/collections/${name}/query`, body, H);
    expect(r.status).toBe(200);
    out.push((r.body as { matches: { doc_id: string; score: number; metadata: unknown }[] }).matches.map((m) => [m.doc_id, m.score.toFixed(5), m.metadata]));
  }
  return out;
}

describe('.akipkg export and import (akidb export / import against real servers)', () => {
  const tempDir = useTempDirs('akidb-akipkg-');

  it('export then import into a fresh server gives identical answers; existing names are refused unless asked; a damaged package imports nothing', async () => {
    const dataA = tempDir();
    const a = await startServerProcess({ dataDir: dataA, env: ENV });
    const b = await startServerProcess({ dataDir: tempDir(), env: ENV });
    const work = tempDir();
    const pkg = path.join(work, 'src.akipkg');
    let expected: unknown;
    try {
      expect((await http(a.restUrl, 'POST', '/api/v1/collections', { name: 'src', dimension: DIM, metric: 'cosine', index: { m: 24, ef_construction: 100, ef_search: 80, quantization: 'f32' } }, H)).status).toBe(201);
      for (let s = 0; s < 3000; s += 500) {
        const documents = Array.from({ length: 500 }, (_, j) => ({ doc_id: `d${s + j}`, vector: vector(s + j), metadata: { group: ['a', 'b', 'c'][(s + j) % 3], n: s + j }, ...((s + j) % 7 === 0 ? { text: `text ${s + j}` } : {}) }));
        expect((await http(a.restUrl, 'POST', '/api/v1/collections/src/upsert', { documents }, H)).status).toBe(200);
      }
      // Some rows in segments, some only in the memtable, some deleted, some replaced.
      expect((await http(a.restUrl, 'POST', '/admin/collections/src/compact', undefined, H)).status).toBe(200);
      expect((await http(a.restUrl, 'POST', '/api/v1/collections/src/delete', { doc_ids: ['d1', 'd2', 'd3'] }, H)).status).toBe(200);
      expect((await http(a.restUrl, 'POST', '/api/v1/collections/src/upsert', { documents: [{ doc_id: 'd4', vector: vector(99_999), metadata: { group: 'c', n: -4 } }, { doc_id: 'late', vector: vector(7), metadata: { group: 'a', n: -1 } }] }, H)).status).toBe(200);
      expected = await answers(a, 'src');

      const exported = await runCli(['export', '--url', a.restUrl, '--collection', 'src', '--output', pkg], { env: CLI_ENV });
      expect(exported.code, exported.stderr).toBe(0);
      expect(JSON.parse(exported.stdout)).toMatchObject({ collection: 'src', documents: 2998 });
      // The header carries the schema and index parameters.
      const header = JSON.parse(gunzipSync(fs.readFileSync(pkg)).toString('utf8').split('\n')[0]!) as Record<string, unknown>;
      expect(header).toMatchObject({ format: 'akipkg', version: 1, collection: { name: 'src', dimension: DIM, metric: 'cosine', index: { m: 24, ef_construction: 100, ef_search: 80, quantization: 'f32' } } });

      const imported = await runCli(['import', '--url', b.restUrl, '--file', pkg], { env: CLI_ENV });
      expect(imported.code, imported.stderr).toBe(0);
      expect(JSON.parse(imported.stdout)).toMatchObject({ imported: 2998 });
      expect(await answers(b, 'src')).toEqual(expected);

      // The name exists now: refused, then allowed when asked (same documents, so the same answers).
      const again = await runCli(['import', '--url', b.restUrl, '--file', pkg], { env: CLI_ENV });
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/exists; pass --into-existing/);
      expect((await runCli(['import', '--url', b.restUrl, '--file', pkg, '--into-existing'], { env: CLI_ENV })).code).toBe(0);
      expect(await answers(b, 'src')).toEqual(expected);

      // Altered or truncated packages are refused before anything is created.
      const text = gunzipSync(fs.readFileSync(pkg)).toString('utf8');
      const altered = path.join(work, 'altered.akipkg');
      fs.writeFileSync(altered, gzipSync(text.replace('"d100"', '"x100"')));
      const truncated = path.join(work, 'truncated.akipkg');
      fs.writeFileSync(truncated, gzipSync(text.slice(0, Math.floor(text.length / 2))));
      for (const [file, why] of [
        [altered, /SHA-256/],
        [truncated, /truncated|not JSON/],
      ] as const) {
        const r = await runCli(['import', '--url', b.restUrl, '--file', file, '--collection', 'damaged'], { env: CLI_ENV });
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(why);
        expect((await http(b.restUrl, 'GET', '/api/v1/collections/damaged', undefined, H)).status).toBe(404);
      }
    } finally {
      await a.stop('SIGTERM');
      await b.stop('SIGTERM');
    }

    // The same from a stopped node's data directory, into another stopped node's.
    const offline = path.join(work, 'offline.akipkg');
    const ex = await runCli(['export', '--data-dir', dataA, '--collection', 'src', '--output', offline]);
    expect(ex.code, ex.stderr).toBe(0);
    const dataC = tempDir();
    const im = await runCli(['import', '--data-dir', dataC, '--file', offline, '--collection', 'copy']);
    expect(im.code, im.stderr).toBe(0);
    const c = await startServerProcess({ dataDir: dataC, env: ENV });
    try {
      expect(await answers(c, 'copy')).toEqual(expected);
    } finally {
      await c.stop('SIGTERM');
    }
  }, 120_000);
});
