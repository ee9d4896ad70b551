import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startServerProcess, type ServerProcess } from '../test-support/server-process.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

/** TLS on REST and gRPC, with a certificate made for 127.0.0.1 / localhost at test time. */

const tempDir = useTempDirs('akidb-tls-');
const ADMIN_KEY = 'tls-test-admin-key-0123456789';

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
const def = loadSync('akidb/collection/v1/collection.proto', { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] });
const v1 = ((grpc.loadPackageDefinition(def).akidb as grpc.GrpcObject).collection as grpc.GrpcObject).v1 as grpc.GrpcObject;
const CollectionClient = v1.CollectionService as grpc.ServiceClientConstructor;
const ManagementClient = v1.CollectionManagementService as grpc.ServiceClientConstructor;

interface Pems {
  cert: string;
  key: string;
}

async function makeCert(): Promise<Pems> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

interface Answer {
  status: number;
  // Tests read arbitrary JSON answers.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  /** SHA-256 fingerprint of the certificate the server presented. */
  fingerprint: string;
}

/** JSON over HTTPS, trusting only `ca`. */
function httpsJson(port: number, ca: string, method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request({ host: '127.0.0.1', port, method, path: route, ca, agent: false, headers: { ...headers, ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text.length > 0 ? (JSON.parse(text) as unknown) : null, fingerprint }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Send a plain HTTP request to `port` and collect whatever comes back until the server closes. */
function plainHttp(port: number): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1', () => socket.write('GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed: false });
    }, 5_000);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ bytes: Buffer.concat(chunks), closed: true });
    });
  });
}

function call<T>(client: grpc.Client, method: string, req: object, metadata = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void>)[method]!;
    fn.call(client, req, metadata, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

const keyMetadata = (): grpc.Metadata => {
  const md = new grpc.Metadata();
  md.set('x-api-key', ADMIN_KEY);
  return md;
};

describe('TLS (AKIDB_TLS_CERT / AKIDB_TLS_KEY)', () => {
  let pems: Pems;
  let certFile: string;
  let keyFile: string;
  let server: ServerProcess;
  let fingerprint: string;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-tls-certs-'));
    pems = await makeCert();
    certFile = path.join(dir, 'server.crt');
    keyFile = path.join(dir, 'server.key');
    fs.writeFileSync(certFile, pems.cert);
    fs.writeFileSync(keyFile, pems.key, { mode: 0o600 });
    fingerprint = new X509Certificate(pems.cert).fingerprint256;
    server = await startServerProcess({
      dataDir: fs.mkdtempSync(path.join(dir, 'data-')),
      env: { AKIDB_TLS_CERT: certFile, AKIDB_TLS_KEY: keyFile, AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: `${ADMIN_KEY}:admin` },
    });
  });

  afterAll(async () => {
    if (server) expect(await server.stop()).toBe(0);
    if (certFile) fs.rmSync(path.dirname(certFile), { recursive: true, force: true });
  });

  it('starts saying TLS is on', () => {
    expect(server.logs.find((l) => l.msg === 'AkiDB ready')).toMatchObject({ tls: true, auth: true });
  });

  it('serves REST over HTTPS with this certificate: probes, then an authenticated create, insert and query', async () => {
    const port = server.restPort;
    const live = await httpsJson(port, pems.cert, 'GET', '/health/live');
    expect(live).toMatchObject({ status: 200, body: { status: 'alive' } });
    expect(live.fingerprint).toBe(fingerprint);
    expect((await httpsJson(port, pems.cert, 'GET', '/health/ready')).status).toBe(200);

    const key = { 'x-api-key': ADMIN_KEY };
    expect((await httpsJson(port, pems.cert, 'POST', '/api/v1/collections', { name: 'secure', dimension: 3 })).status).toBe(401);
    expect((await httpsJson(port, pems.cert, 'POST', '/api/v1/collections', { name: 'secure', dimension: 3, metric: 'l2' }, key)).status).toBe(201);
    for (const [id, vector] of [
      ['x', [1, 0, 0]],
      ['y', [0, 1, 0]],
      ['z', [0, 0, 1]],
    ] as const) {
      expect((await httpsJson(port, pems.cert, 'POST', '/api/v1/collections/secure/insert', { doc_id: id, vector }, key)).status).toBe(200);
    }
    const q = await httpsJson(port, pems.cert, 'POST', '/api/v1/collections/secure/query', { query_vector: [0, 0.9, 0.1], top_k: 2 }, { authorization: `Bearer ${ADMIN_KEY}` });
    expect(q.status).toBe(200);
    expect((q.body as { matches: { doc_id: string }[] }).matches.map((m) => m.doc_id)).toEqual(['y', 'z']);
  });

  it('is refused by a client that does not trust the certificate', async () => {
    const other = await makeCert();
    await expect(httpsJson(server.restPort, other.cert, 'GET', '/health/live')).rejects.toMatchObject({ code: expect.stringMatching(/SELF_SIGNED|UNABLE_TO_VERIFY|CERT/) as string });
  });

  it('gives plain HTTP on the same port no HTTP answer', async () => {
    const { bytes, closed } = await plainHttp(server.restPort);
    expect(closed).toBe(true);
    expect(bytes.toString('latin1')).not.toMatch(/^HTTP\//);
    await expect(fetch(`http://127.0.0.1:${server.restPort}/health/live`)).rejects.toThrow();
  });

  it('serves gRPC over TLS to a client with x-api-key, and refuses plaintext clients', async () => {
    const creds = grpc.credentials.createSsl(Buffer.from(pems.cert));
    // Checked against the certificate's DNS name (TLS forbids an IP address as server name).
    const options = { 'grpc.ssl_target_name_override': 'localhost' };
    const mgmt = new ManagementClient(server.grpcAddress, creds, options);
    const coll = new CollectionClient(server.grpcAddress, creds, options);
    const plain = new ManagementClient(server.grpcAddress, grpc.credentials.createInsecure());
    const untrusting = new ManagementClient(server.grpcAddress, grpc.credentials.createSsl(Buffer.from((await makeCert()).cert)), options);
    try {
      const info = await call<{ name: string; dimension: number }>(mgmt, 'CreateCollection', { name: 'grpc-secure', dimension: 2 }, keyMetadata());
      expect(info).toMatchObject({ name: 'grpc-secure', dimension: 2 });
      await call(coll, 'Upsert', { collection: 'grpc-secure', documents: [{ doc_id: 'a', vector: [1, 0] }, { doc_id: 'b', vector: [0, 1] }] }, keyMetadata());
      const q = await call<{ matches: { doc_id: string }[] }>(coll, 'Query', { collection: 'grpc-secure', query_vector: [0.1, 1], top_k: 1 }, keyMetadata());
      expect(q.matches.map((m) => m.doc_id)).toEqual(['b']);

      // Over TLS but without a key: refused by auth, not by the transport.
      const noKey = (await call(mgmt, 'ListCollections', {}).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(noKey.code).toBe(grpc.status.UNAUTHENTICATED);

      const refused = (await call(plain, 'ListCollections', {}, keyMetadata()).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(refused).toBeInstanceOf(Error);
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);
      const distrusted = (await call(untrusting, 'ListCollections', {}, keyMetadata()).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(distrusted.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      for (const c of [mgmt, coll, plain, untrusting]) c.close();
    }
  });
});

describe('TLS misconfiguration', () => {
  it('refuses to start when the certificate file is missing, naming it', async () => {
    const dir = tempDir();
    const { key } = await makeCert();
    fs.writeFileSync(path.join(dir, 'server.key'), key);
    const missing = path.join(dir, 'no-such-cert.pem');
    const run = await runCli(['serve', '--data-dir', path.join(dir, 'data'), '--rest-port', '0', '--grpc-port', '0'], { env: { AKIDB_TLS_CERT: missing, AKIDB_TLS_KEY: path.join(dir, 'server.key') } });
    expect(run.code).toBeGreaterThan(0);
    expect(run.stderr).toContain('cannot read the TLS certificate or key');
    expect(run.stderr).toContain(missing);
    expect(run.stderr).not.toContain('PRIVATE KEY');
    expect(run.stdout).not.toMatch(/listening|AkiDB ready/);
  });

  it('treats only one of certificate and key as a configuration error', async () => {
    const dir = tempDir();
    for (const env of [{ AKIDB_TLS_CERT: path.join(dir, 'server.crt') }, { AKIDB_TLS_KEY: path.join(dir, 'server.key') }]) {
      const run = await runCli(['serve', '--data-dir', path.join(dir, 'data'), '--rest-port', '0', '--grpc-port', '0'], { env });
      expect(run.code).toBeGreaterThan(0);
      expect(run.stderr).toContain('Invalid configuration');
      expect(run.stderr).toContain('server.tls_cert / server.tls_key: set both');
      expect(fs.existsSync(path.join(dir, 'data'))).toBe(false);
    }
  });
});
