import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { http, runCli, startServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

const tempDir = useTempDirs('akidb-server-e2e-');

describe('akidb server process', () => {
  it('SIGHUP re-reads the log level from the config file without a restart', async () => {
    const dir = tempDir();
    const cfg = path.join(dir, 'config.toml');
    fs.writeFileSync(cfg, '[logging]\nlevel = "info"\n');
    const server = await startServerProcess({ dataDir: path.join(dir, 'data'), args: ['--config', cfg] });
    try {
      await http(server.restUrl, 'GET', '/health/live', undefined, { 'x-request-id': 'before-hup' });
      fs.writeFileSync(cfg, '[logging]\nlevel = "debug"\n');
      server.child.kill('SIGHUP');
      await waitFor(() => server.logs.some((l) => l.msg === 'Reloaded config (log level)' && l.level === 30));
      await http(server.restUrl, 'GET', '/health/live', undefined, { 'x-request-id': 'after-hup' });
      await waitFor(() => server.logs.some((l) => l.reqId === 'after-hup'));
      // The same request logged nothing at info before the reload.
      expect(server.logs.some((l) => l.reqId === 'before-hup')).toBe(false);
      // A config that no longer loads is reported and ignored; the server keeps serving.
      fs.writeFileSync(cfg, '[logging]\nlevel = "loud"\n');
      server.child.kill('SIGHUP');
      await waitFor(() => server.logs.some((l) => l.msg === 'Config reload failed; keeping the running config'));
      expect((await http(server.restUrl, 'GET', '/health/ready')).status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('with vector persistence off, serves from a temporary directory that is gone after shutdown', async () => {
    const dir = tempDir();
    const dataDir = path.join(dir, 'data');
    const server = await startServerProcess({ dataDir, env: { AKIDB_VECTOR_PERSISTENCE_ENABLED: 'false' } });
    const ready = server.logs.find((l) => l.msg === 'AkiDB ready')!;
    const used = String(ready.dataDir);
    expect(used).not.toBe(dataDir);
    expect(fs.existsSync(used)).toBe(true);
    expect((await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'c', dimension: 2 })).status).toBe(201);
    expect(await server.stop()).toBe(0);
    expect(fs.existsSync(used)).toBe(false);
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  it('`akidb rest` serves REST only, and a second server on the same data dir fails at once', async () => {
    const dir = tempDir();
    const server = await startServerProcess({ dataDir: dir, command: 'rest' });
    try {
      expect(server.grpcPort).toBe(0);
      expect((await http(server.restUrl, 'GET', '/health/ready')).status).toBe(200);
      const second = await runCli(['grpc', '--data-dir', dir, '--host', '127.0.0.1', '--grpc-port', '0']);
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/in use by process \d+/);
    } finally {
      expect(await server.stop('SIGINT')).toBe(0);
    }
  });

  it('answers 503 REQUEST_TIMEOUT past [server] timeout_seconds, and the write still lands', async () => {
    const dir = tempDir();
    const cfg = path.join(dir, 'config.toml');
    fs.writeFileSync(cfg, '[server]\ntimeout_seconds = 0.001\n');
    const server = await startServerProcess({ dataDir: path.join(dir, 'data'), args: ['--config', cfg] });
    try {
      expect((await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'c', dimension: 64 })).status).toBe(201);
      const documents = Array.from({ length: 3000 }, (_, i) => ({ doc_id: `d${i}`, vector: Array.from({ length: 64 }, (_, j) => ((i * 31 + j) % 17) + 1) }));
      const slow = await http(server.restUrl, 'POST', '/api/v1/collections/c/upsert', { documents });
      expect(slow.status).toBe(503);
      expect(slow.body).toMatchObject({ error: { code: 'REQUEST_TIMEOUT', details: { timeoutMs: 1 } } });
      expect(slow.headers.get('retry-after')).toBe('1');
      // Timed out is not rolled back: once in the WAL the batch is durable and applied.
      let count = 0;
      for (let i = 0; i < 100 && count !== 3000; i++) {
        count = ((await http(server.restUrl, 'GET', '/api/v1/collections/c')).body as { document_count: number }).document_count;
        if (count !== 3000) await new Promise((r) => setTimeout(r, 50));
      }
      expect(count).toBe(3000);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('`akidb config check` names every problem and exits 2; `config example` prints a loadable file', async () => {
    const dir = tempDir();
    const bad = await runCli(['config', 'check', '--rest-port', 'x'], { env: { AKIDB_LOG_FORMAT: 'xml' }, cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('server.rest_port (from --rest-port)');
    expect(bad.stderr).toContain('logging.format (from AKIDB_LOG_FORMAT=xml)');
    const example = await runCli(['config', 'example']);
    expect(example.code).toBe(0);
    fs.writeFileSync(path.join(dir, 'config.toml'), example.stdout);
    const ok = await runCli(['config', 'check'], { cwd: dir });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ file: path.join(dir, 'config.toml'), config: { server: { rest_port: 8080 } } });
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
