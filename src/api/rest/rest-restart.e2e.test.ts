import fs from 'node:fs';
import { request } from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { http, runCli, startServerProcess, type ServerProcess } from '../../test-support/server-process.js';
import { seededRandom } from '../../util/seeded-random.js';
import { useTempDirs } from '../../test-support/temp-dirs.js';

// What survives a process: acknowledged REST writes across SIGTERM and restart, the data-dir lock
// between two processes, a refused start on a bad config, and requests in flight at SIGTERM.

interface Answer {
  status: number;
  body: unknown;
  text: string;
}
interface Match {
  doc_id: string;
  distance: number;
}
interface Doc {
  doc_id: string;
  vector: number[];
  metadata: Record<string, unknown>;
}
interface WireDoc {
  doc_id: string;
  vector: number[];
  metadata: Record<string, unknown>;
}

const api = (s: ServerProcess, method: string, p: string, body?: unknown): Promise<Answer> => http(s.restUrl, method, p, body);

/** `n` documents with float32-exact vectors (so what comes back can be compared with toEqual). */
function makeDocs(n: number, dimension: number, seed: number, prefix: string): WireDoc[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => ({
    doc_id: `${prefix}-${i}`,
    vector: Array.from({ length: dimension }, () => Math.fround(rnd() * 2 - 1)),
    metadata: { i, group: i % 7, name: `document ${i}`, tags: [`t${i % 3}`], nested: { even: i % 2 === 0 } },
  }));
}

async function upsertAll(s: ServerProcess, collection: string, docs: WireDoc[], batch: number): Promise<void> {
  for (let i = 0; i < docs.length; i += batch) {
    const res = await api(s, 'POST', `/api/v1/collections/${collection}/upsert`, { documents: docs.slice(i, i + batch) });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ upserted: Math.min(batch, docs.length - i) });
  }
}

/** Every document in `sample` is stored as written and is its own vector's nearest neighbour. */
async function expectIntact(s: ServerProcess, collection: string, sample: WireDoc[]): Promise<void> {
  for (const d of sample) {
    const got = await api(s, 'GET', `/api/v1/collections/${collection}/docs/${d.doc_id}`);
    expect(got.status).toBe(200);
    const doc = got.body as Doc;
    expect(doc.doc_id).toBe(d.doc_id);
    expect(doc.vector).toEqual(d.vector);
    expect(doc.metadata).toEqual(d.metadata);
    const q = await api(s, 'POST', `/api/v1/collections/${collection}/query`, { query_vector: d.vector, top_k: 1 });
    expect(q.status).toBe(200);
    const [best] = (q.body as { matches: Match[] }).matches;
    expect(best!.doc_id).toBe(d.doc_id);
    expect(best!.distance).toBeLessThan(1e-4);
  }
}

/** Stop with SIGTERM; resolves with the exit code and how long the exit took. */
async function sigterm(s: ServerProcess): Promise<{ code: number | string; ms: number }> {
  const start = performance.now();
  const code = await s.stop('SIGTERM');
  return { code, ms: performance.now() - start };
}

/** The default `[server] shutdown_grace_seconds`. */
const GRACE_MS = 30_000;

describe('REST across a restart', () => {
  const tempDir = useTempDirs('akidb-rest-restart-');

  it('2,000 upserted documents (dimension 16, metadata) are all intact after SIGTERM and a restart on the same data dir', async () => {
    const dataDir = tempDir();
    const docs = makeDocs(2000, 16, 1, 'doc');
    let server = await startServerProcess({ dataDir });
    const created = await api(server, 'POST', '/api/v1/collections', { name: 'keep', dimension: 16, metric: 'l2' });
    expect(created.status).toBe(201);
    const collectionId = (created.body as { collection_id: string }).collection_id;
    await upsertAll(server, 'keep', docs, 250);
    expect((await api(server, 'GET', '/api/v1/collections/keep')).body).toMatchObject({ document_count: 2000 });
    // Replace some and delete some, so the restart must also replay updates and tombstones.
    const replaced = docs.slice(0, 20).map((d) => ({ ...d, metadata: { ...d.metadata, replaced: true } }));
    await upsertAll(server, 'keep', replaced, 20);
    const del = await api(server, 'POST', '/api/v1/collections/keep/delete', { doc_ids: docs.slice(1990).map((d) => d.doc_id) });
    expect(del.body).toMatchObject({ deleted: 10 });

    const stopped = await sigterm(server);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(GRACE_MS);

    server = await startServerProcess({ dataDir });
    try {
      const described = await api(server, 'GET', '/api/v1/collections/keep');
      expect(described.body).toMatchObject({ collection_id: collectionId, name: 'keep', dimension: 16, metric: 'l2', document_count: 1990 });
      expect((await api(server, 'GET', `/api/v1/collections/${collectionId}`)).status).toBe(200);
      const rnd = seededRandom(7);
      const sample = Array.from({ length: 60 }, () => docs[20 + Math.floor(rnd() * 1970)]!);
      await expectIntact(server, 'keep', [...sample, docs[20]!, docs[1989]!]);
      await expectIntact(server, 'keep', replaced.slice(0, 5));
      for (const d of docs.slice(1990)) expect((await api(server, 'GET', `/api/v1/collections/keep/docs/${d.doc_id}`)).status).toBe(404);
      // A filtered query over the restarted data: group 3 holds every 7th document.
      const q = await api(server, 'POST', '/api/v1/collections/keep/query', { query_vector: docs[3]!.vector, top_k: 5, filter: { group: 3 } });
      const matches = (q.body as { matches: (Match & { metadata: { group: number } })[] }).matches;
      expect(matches).toHaveLength(5);
      expect(matches[0]!.doc_id).toBe('doc-3');
      for (const m of matches) expect(m.metadata.group).toBe(3);
      // And it takes writes again.
      expect((await api(server, 'POST', '/api/v1/collections/keep/insert', { doc_id: 'after', vector: docs[0]!.vector })).status).toBe(200);
      expect((await api(server, 'GET', '/api/v1/collections/keep')).body).toMatchObject({ document_count: 1991 });
    } finally {
      expect(await server.stop('SIGTERM')).toBe(0);
    }
  });

  it('a second `akidb serve` on a data dir in use exits at once, non-zero, saying the directory is in use; the first keeps serving', async () => {
    const dataDir = tempDir();
    const first = await startServerProcess({ dataDir });
    try {
      expect((await api(first, 'POST', '/api/v1/collections', { name: 'mine', dimension: 2 })).status).toBe(201);
      const start = performance.now();
      const second = await runCli(['serve', '--data-dir', dataDir, '--host', '127.0.0.1', '--rest-port', '0', '--grpc-port', '0'], { timeoutMs: 15_000 });
      expect(performance.now() - start).toBeLessThan(15_000);
      expect(second.code).not.toBe(0);
      expect(second.code).not.toBeNull();
      expect(second.stderr).toMatch(/data directory/i);
      expect(second.stderr).toMatch(/in use/i);
      expect(second.stderr).toContain(dataDir);
      expect(second.stdout).not.toContain('AkiDB ready');
      // The lock was not taken from under the first process.
      expect((await api(first, 'GET', '/health/ready')).status).toBe(200);
      expect((await api(first, 'POST', '/api/v1/collections/mine/insert', { doc_id: 'a', vector: [1, 2] })).status).toBe(200);
    } finally {
      expect(await first.stop('SIGTERM')).toBe(0);
    }
    // Once the first has exited, the directory is free again.
    const again = await startServerProcess({ dataDir });
    expect((await api(again, 'GET', '/api/v1/collections/mine/docs/a')).status).toBe(200);
    expect(await again.stop('SIGTERM')).toBe(0);
  });

  it('an invalid config stops the start with exit code 2 and a stderr naming every bad key', async () => {
    const dir = tempDir();
    const config = path.join(dir, 'config.toml');
    fs.writeFileSync(config, '[hnsw]\nmm = 3\n\n[server]\nshutdown_grace_seconds = "soon"\n');
    const res = await runCli(['serve', '--data-dir', path.join(dir, 'data'), '--host', '127.0.0.1', '--config', config], { env: { AKIDB_REST_PORT: 'abc', AKIDB_GRPC_PORT: '0' }, timeoutMs: 15_000 });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/hnsw\.mm.*unknown key/);
    expect(res.stderr).toMatch(/server\.rest_port.*AKIDB_REST_PORT=abc.*integer/);
    expect(res.stderr).toMatch(/server\.shutdown_grace_seconds.*number/);
    expect(res.stdout).not.toContain('AkiDB ready');
    // Nothing was opened: the data directory was not created.
    expect(fs.existsSync(path.join(dir, 'data'))).toBe(false);
    // An unknown flag is the same kind of mistake.
    const flag = await runCli(['serve', '--data-dir', path.join(dir, 'data'), '--rest-prot', '1'], { timeoutMs: 15_000 });
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--rest-prot');
  });

  it('a large upsert in flight at SIGTERM is answered 200, the process exits 0, and its documents are there after a restart', async () => {
    const dataDir = tempDir();
    const docs = makeDocs(5000, 128, 2, 'big');
    // Debug logs a line per request, which shows the order of the signal and the answer.
    let server = await startServerProcess({ dataDir, args: ['--log-level', 'debug'] });
    expect((await api(server, 'POST', '/api/v1/collections', { name: 'flight', dimension: 128, metric: 'l2' })).status).toBe(201);
    const body = JSON.stringify({ documents: docs });
    expect(body.length).toBeGreaterThan(8 * 1024 * 1024);

    // Wait for the exit without signalling: the only SIGTERM is the one sent once the body is out.
    const exited = new Promise<number | string>((resolve) => server.child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
    const answer = new Promise<Answer>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server.restPort, method: 'POST', path: '/api/v1/collections/flight/upsert', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, text, body: JSON.parse(text) });
          } catch (err) {
            reject(new Error(`not JSON (${String(err)}): ${text.slice(0, 200)}`));
          }
        });
      });
      req.on('error', reject);
      // Every byte has been handed to the socket: far more than the socket buffers hold, so the
      // server has read the headers and is reading the body when the signal lands.
      req.end(body, () => server.child.kill('SIGTERM'));
    });
    const [res, code] = await Promise.all([answer, exited]);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ upserted: 5000 });
    expect(code).toBe(0);
    // The signal landed while the upsert was in flight: the drain began before it was answered,
    // and the process finished shutting down after.
    const msgs = server.logs.map((l) => `${typeof l.msg === 'string' ? l.msg : ''} ${typeof l.url === 'string' ? l.url : ''}`);
    const drainAt = msgs.indexOf('Shutting down: no new requests; waiting for in-flight ones ');
    const answeredAt = msgs.indexOf('request /api/v1/collections/:id/upsert');
    expect(drainAt).toBeGreaterThanOrEqual(0);
    expect(answeredAt).toBeGreaterThan(drainAt);
    expect(msgs.indexOf('Shutdown complete ')).toBeGreaterThan(answeredAt);

    server = await startServerProcess({ dataDir });
    try {
      expect((await api(server, 'GET', '/api/v1/collections/flight')).body).toMatchObject({ document_count: 5000 });
      const rnd = seededRandom(3);
      await expectIntact(server, 'flight', [docs[0]!, docs[4999]!, ...Array.from({ length: 20 }, () => docs[Math.floor(rnd() * 5000)]!)]);
    } finally {
      expect(await server.stop('SIGTERM')).toBe(0);
    }
  });
});
