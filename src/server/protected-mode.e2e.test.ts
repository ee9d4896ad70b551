import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { http, runCli, startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

/**
 * Protected mode: with authentication off the server binds loopback only unless told
 * `--insecure`; with it on, every route but the two probes wants a credential.
 */

const tempDir = useTempDirs('akidb-protected-');
const ADMIN_KEY = 'protected-mode-admin-key-0123456789';

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
const def = loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
const v1 = ((grpc.loadPackageDefinition(def).akidb as grpc.GrpcObject).collection as grpc.GrpcObject).v1 as grpc.GrpcObject;
const ManagementClient = v1.CollectionManagementService as grpc.ServiceClientConstructor;

function call<T>(client: grpc.Client, method: string, req: object, metadata = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void>)[method]!;
    fn.call(client, req, metadata, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** `serve` on free ports, from a data directory that does not exist yet. */
const serveArgs = (dataDir: string, ...more: string[]): string[] => ['serve', '--data-dir', dataDir, '--rest-port', '0', '--grpc-port', '0', ...more];

/** The JSON log lines a finished run printed. */
const logLines = (stdout: string): Record<string, unknown>[] =>
  stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** A non-loopback IPv4 address of this machine, if it has one. */
function externalAddress(): string | null {
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return null;
}

async function stopped(server: ServerProcess): Promise<void> {
  expect(await server.stop()).toBe(0);
}

describe('protected mode (auth off)', () => {
  it('refuses --host 0.0.0.0: exits non-zero naming protected mode and both ways out, having opened and bound nothing', async () => {
    const dataDir = path.join(tempDir(), 'never-created');
    const run = await runCli(serveArgs(dataDir, '--host', '0.0.0.0'));
    expect(run.code).toBeGreaterThan(0);
    expect(run.stderr).toContain('server.host');
    expect(run.stderr).toContain('protected mode');
    expect(run.stderr).toContain('AKIDB_AUTH_ENABLED');
    expect(run.stderr).toContain('--insecure');
    expect(run.stderr).toContain('0.0.0.0');
    // Refused with the configuration: no data directory opened, nothing listening.
    expect(fs.existsSync(dataDir)).toBe(false);
    expect(logLines(run.stdout).filter((l) => /listening|ready/i.test(String(l.msg)))).toEqual([]);
  });

  it('refuses a non-loopback admin listener (AKIDB_ADMIN_BIND_ADDRESS=0.0.0.0:0) the same way', async () => {
    const dataDir = path.join(tempDir(), 'never-created');
    const run = await runCli(serveArgs(dataDir, '--host', '127.0.0.1'), { env: { AKIDB_ADMIN_BIND_ADDRESS: '0.0.0.0:0' } });
    expect(run.code).toBeGreaterThan(0);
    expect(run.stderr).toContain('admin.bind_address');
    expect(run.stderr).toContain('protected mode');
    expect(run.stderr).toContain('AKIDB_AUTH_ENABLED');
    expect(run.stderr).toContain('--insecure');
    expect(run.stderr).not.toContain('server.host');
    expect(fs.existsSync(dataDir)).toBe(false);
    expect(logLines(run.stdout).filter((l) => /listening|ready/i.test(String(l.msg)))).toEqual([]);
  });

  it('starts with --insecure, warns about it, and serves without credentials on 127.0.0.1', async () => {
    const server = await startServerProcess({ dataDir: tempDir(), args: ['--host', '0.0.0.0', '--insecure'] });
    try {
      const warning = server.logs.find((l) => typeof l.msg === 'string' && l.msg.includes('authentication off'));
      expect(warning).toMatchObject({ level: 40, addresses: ['0.0.0.0'] });
      expect(server.logs.find((l) => l.msg === 'AkiDB ready')).toMatchObject({ host: '0.0.0.0', auth: false });
      expect((await http(server.restUrl, 'GET', '/health/live')).status).toBe(200);
      const created = await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'open', dimension: 2 });
      expect(created.status, created.text).toBe(201);
      expect((await http(server.restUrl, 'GET', '/api/v1/collections')).body).toMatchObject({ collections: [expect.objectContaining({ name: 'open' })] });
    } finally {
      await stopped(server);
    }
  });

  it('a loopback server with auth off starts without a warning', async () => {
    const server = await startServerProcess({ dataDir: tempDir() });
    try {
      expect(server.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('authentication off'))).toBe(false);
      expect((await http(server.restUrl, 'GET', '/api/v1/collections')).status).toBe(200);
    } finally {
      await stopped(server);
    }
  });
});

describe('auth on', () => {
  it('refuses to start when no credential could ever be verified, binding nothing', async () => {
    const run = await runCli(serveArgs(tempDir(), '--host', '0.0.0.0'), { env: { AKIDB_AUTH_ENABLED: 'true' } });
    expect(run.code).toBeGreaterThan(0);
    expect(run.stderr).toContain('auth is enabled but no credential can be verified');
    expect(run.stderr).toContain('AKIDB_API_KEYS');
    expect(logLines(run.stdout).filter((l) => /listening|ready/i.test(String(l.msg)))).toEqual([]);
  });

  it('with a bootstrap key serves 0.0.0.0: 401 with WWW-Authenticate without a key, the probes stay open', async () => {
    const server = await startServerProcess({ dataDir: tempDir(), args: ['--host', '0.0.0.0'], env: { AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: `${ADMIN_KEY}:admin` } });
    try {
      expect(server.logs.find((l) => l.msg === 'AkiDB ready')).toMatchObject({ host: '0.0.0.0', auth: true });
      expect(server.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('authentication off'))).toBe(false);
      const key = { 'x-api-key': ADMIN_KEY };

      for (const [method, route, body] of [
        ['GET', '/api/v1/collections', undefined],
        ['POST', '/api/v1/collections', { name: 'locked', dimension: 2 }],
        ['GET', '/health', undefined],
        ['GET', '/metrics', undefined],
        ['GET', '/admin/api-keys', undefined],
        ['GET', '/no/such/route', undefined],
      ] as const) {
        const res = await http(server.restUrl, method, route, body);
        expect(res.status, `${method} ${route}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer realm="akidb"');
        expect(res.body).toMatchObject({ error: { code: 'UNAUTHENTICATED', details: { reason: 'missing_credential' } } });
      }
      const wrong = await http(server.restUrl, 'GET', '/api/v1/collections', undefined, { 'x-api-key': 'wrong-key-0123456789abcdef' });
      expect(wrong.status).toBe(401);
      expect(wrong.text).not.toContain('wrong-key-0123456789abcdef');
      // Nothing was created by the refused POST.
      expect((await http(server.restUrl, 'GET', '/api/v1/collections', undefined, key)).body).toEqual({ collections: [] });

      for (const probe of ['/health/live', '/health/ready']) {
        expect((await http(server.restUrl, 'GET', probe)).status, probe).toBe(200);
        expect((await http(server.restUrl, 'HEAD', probe)).status, `HEAD ${probe}`).toBe(200);
      }

      expect((await http(server.restUrl, 'POST', '/api/v1/collections', { name: 'mine', dimension: 2 }, key)).status).toBe(201);
      expect((await http(server.restUrl, 'GET', '/health', undefined, { authorization: `Bearer ${ADMIN_KEY}` })).status).toBe(200);

      // gRPC on the same address wants the key too.
      const mgmt = new ManagementClient(server.grpcAddress, grpc.credentials.createInsecure());
      try {
        const refused = await call(mgmt, 'ListCollections', {}).catch((e: grpc.ServiceError) => e);
        expect((refused as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
        const md = new grpc.Metadata();
        md.set('x-api-key', ADMIN_KEY);
        const listed = await call<{ collections: { name: string }[] }>(mgmt, 'ListCollections', {}, md);
        expect(listed.collections.map((c) => c.name)).toEqual(['mine']);
      } finally {
        mgmt.close();
      }

      // Bound to every interface, not just loopback: reachable on this machine's own address when it has one.
      const external = externalAddress();
      if (external !== null) {
        const res = await http(`http://${external}:${server.restPort}`, 'GET', '/health/live');
        expect(res.status).toBe(200);
      }
    } finally {
      await stopped(server);
    }
  });
});
