import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../test-support/fault-proxy.js';
import { startS3Server, type S3TestServer } from '../test-support/s3-server.js';
import { runObjectStoreContract } from './object-store-contract.js';
import { ObjectStoreError, type ObjectInfo, type ObjectStore } from './object-store.js';
import { classifyS3Failure, parseBucket, S3ObjectStore, type S3ObjectStoreOptions } from './s3-object-store.js';

const BUCKET = 'akidb-test';
let server: S3TestServer;
let proxy: FaultProxy;
const open: S3ObjectStore[] = [];

beforeAll(async () => {
  server = await startS3Server({ bucket: BUCKET });
  proxy = await startFaultProxy(server.port);
});
afterAll(async () => {
  for (const s of open.splice(0)) s.close();
  await proxy?.stop();
  await server?.stop();
});

/** A store on the test server, directly or through the fault proxy; closed after the file. */
function s3(opts: Partial<S3ObjectStoreOptions> & { via?: 'direct' | 'proxy' } = {}): S3ObjectStore {
  const { via = 'direct', ...rest } = opts;
  const store = new S3ObjectStore({
    bucket: BUCKET,
    endpoint: via === 'proxy' ? proxy.endpoint : server.endpoint,
    credentials: server.credentials,
    ...rest,
  });
  open.push(store);
  return store;
}

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of it) out.push(info);
  return out;
}

/** Empty what a contract test left behind, so the next one starts from an empty store. */
async function emptyStore(store: ObjectStore): Promise<void> {
  const keys = (await collect(store.list(''))).map((i) => i.key);
  for (let i = 0; i < keys.length; i += 32) await Promise.all(keys.slice(i, i + 32).map((k) => store.delete(k)));
}

/** The rejection of `p` as an ObjectStoreError (fails the test when `p` resolves or rejects otherwise). */
async function failure(p: Promise<unknown>): Promise<ObjectStoreError> {
  const err = await p.then(
    () => new Error('resolved, but a rejection was expected'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ObjectStoreError);
  return err as ObjectStoreError;
}

// Every operation once, as a failed call would be made by the upload, retry and read paths.
const OPERATIONS: [ObjectStoreError['operation'], (s: ObjectStore) => Promise<unknown>][] = [
  ['put', (s) => s.put('faults/k', new Uint8Array(2048).fill(7))],
  ['get', (s) => s.get('faults/k')],
  ['head', (s) => s.head('faults/k')],
  ['list', (s) => collect(s.list('faults/'))],
  ['delete', (s) => s.delete('faults/k')],
];

// (a) The shared contract, straight to s3rver and through the fault proxy in pass mode (which also
// proves the proxy forwards bodies, odd keys and concurrent requests faithfully). Each test gets a
// prefix of its own, so it starts from an empty store without a cleanup pass over the bucket.
let contractRun = 0;
runObjectStoreContract('S3ObjectStore (s3rver)', async () => ({ store: s3({ bucket: `s3://${BUCKET}/contract/direct/${++contractRun}` }) }));
runObjectStoreContract('S3ObjectStore (s3rver, through the fault proxy)', async () => {
  proxy.pass();
  return { store: s3({ bucket: `s3://${BUCKET}/contract/proxied/${++contractRun}`, via: 'proxy' }) };
});

describe('S3ObjectStore failures through the fault proxy (maxAttempts 1: one request per failed call)', () => {
  const TIMEOUT_MS = 300;
  let store: S3ObjectStore;
  beforeAll(() => {
    store = s3({ via: 'proxy', requestTimeoutMs: TIMEOUT_MS });
  });
  beforeEach(() => {
    proxy.pass();
    proxy.resetCounters();
  });
  afterEach(() => proxy.pass());

  const cases: { status: number; kind: 'transient' | 'permanent'; code?: string }[] = [
    { status: 503, kind: 'transient' },
    { status: 503, kind: 'transient', code: 'SlowDown' },
    { status: 500, kind: 'transient' },
    { status: 502, kind: 'transient' },
    { status: 429, kind: 'transient' },
    { status: 408, kind: 'transient' },
    { status: 403, kind: 'permanent' },
    { status: 400, kind: 'permanent' },
    { status: 404, kind: 'permanent', code: 'NoSuchBucket' },
  ];
  for (const c of cases) {
    it(`HTTP ${c.status}${c.code ? ` ${c.code}` : ''} → ${c.kind} ObjectStoreError with the status, on every operation`, async () => {
      for (const [operation, call] of OPERATIONS) {
        // A HEAD answer has no body: a 404 cannot say NoSuchBucket and reads as a missing key (documented).
        if (operation === 'head' && c.status === 404) {
          proxy.failNext(1, 404, c.code);
          await expect(store.head('faults/k')).resolves.toBeNull();
          continue;
        }
        const before = proxy.requests;
        proxy.failNext(1, c.status, c.code);
        const err = await failure(call(store));
        expect(err, operation).toMatchObject({ name: 'ObjectStoreError', kind: c.kind, status: c.status, operation });
        expect(err.message).toContain(`s3://${BUCKET}/`);
        expect(proxy.requests - before, `${operation}: HTTP requests for one failed call`).toBe(1);
      }
      expect(proxy.injected).toBe(OPERATIONS.length);
      expect(proxy.forwarded).toBe(0);
    });
  }

  it('a 503 storm: every call fails transient, one request each, and the next call after it succeeds', async () => {
    proxy.failAll(503);
    for (let i = 0; i < 10; i++) await expect(failure(store.get('faults/storm'))).resolves.toMatchObject({ kind: 'transient', status: 503 });
    expect(proxy.requests).toBe(10);
    expect(proxy.byMethod).toEqual({ GET: 10 });
    proxy.pass();
    await store.put('faults/storm', new Uint8Array([1, 2, 3]));
    expect(await store.get('faults/storm')).toEqual(new Uint8Array([1, 2, 3]));
    expect(proxy.forwarded).toBe(2);
  });

  it('a connection reset → transient, without a status, on every operation; the pool recovers', async () => {
    for (const [operation, call] of OPERATIONS) {
      const before = proxy.requests;
      proxy.resetNext(1);
      const err = await failure(call(store));
      expect(err, operation).toMatchObject({ kind: 'transient', status: undefined, operation });
      expect(proxy.requests - before, operation).toBe(1);
    }
    proxy.resetAll();
    await expect(failure(store.head('faults/k'))).resolves.toMatchObject({ kind: 'transient' });
    proxy.pass();
    await store.put('faults/after-reset', new Uint8Array([9]));
    expect(await store.head('faults/after-reset')).toEqual({ key: 'faults/after-reset', size: 1 });
  });

  it('a blackhole → transient timeout after requestTimeoutMs, one request, no retry', async () => {
    proxy.blackhole();
    for (const [operation, call] of OPERATIONS) {
      const before = proxy.requests;
      const t0 = performance.now();
      const err = await failure(call(store));
      const elapsed = performance.now() - t0;
      expect(err, operation).toMatchObject({ kind: 'transient', status: undefined, operation });
      expect(err.message).toMatch(/TimeoutError/);
      expect(elapsed, operation).toBeGreaterThanOrEqual(TIMEOUT_MS - 20);
      expect(elapsed, operation).toBeLessThan(TIMEOUT_MS + 1500);
      expect(proxy.requests - before, operation).toBe(1);
    }
  });

  it('latency below the timeout is only latency; above it, a transient timeout', async () => {
    await store.put('faults/slow', new Uint8Array([5]));
    proxy.delay(100);
    const t0 = performance.now();
    expect(await store.get('faults/slow')).toEqual(new Uint8Array([5]));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    proxy.delay(TIMEOUT_MS * 3);
    await expect(failure(store.get('faults/slow'))).resolves.toMatchObject({ kind: 'transient', operation: 'get' });
  });

  it('a store whose bucket does not exist fails permanent 404 NoSuchBucket (real s3rver answer)', async () => {
    const missing = s3({ bucket: 'no-such-bucket' });
    for (const [operation, call] of OPERATIONS) {
      if (operation === 'head') {
        await expect(missing.head('k')).resolves.toBeNull();
        continue;
      }
      const err = await failure(call(missing));
      expect(err, operation).toMatchObject({ kind: 'permanent', status: 404, operation });
      expect(err.message).toContain('NoSuchBucket');
    }
  });

  it('an unreachable endpoint → transient ECONNREFUSED', async () => {
    const gone = await startFaultProxy(server.port);
    const port = gone.port;
    await gone.stop();
    const store = s3({ endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: TIMEOUT_MS });
    await expect(failure(store.get('k'))).resolves.toMatchObject({ kind: 'transient', status: undefined, message: expect.stringMatching(/ECONNREFUSED/) as unknown });
  });

  it('never puts the secret key in errors or the description', async () => {
    const secret = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY';
    // s3rver checks the key id only, so any secret is accepted and calls succeed.
    const store = s3({ via: 'proxy', credentials: { accessKeyId: 'S3RVER', secretAccessKey: secret }, requestTimeoutMs: TIMEOUT_MS });
    await store.put('faults/secret', new Uint8Array([1]));
    expect(store.description).toBe(`s3://${BUCKET}`);
    for (const status of [403, 503]) {
      proxy.failNext(1, status);
      const err = await failure(store.get('faults/secret'));
      expect(`${err.message} ${String(err)} ${JSON.stringify(err)} ${String(err.stack)}`).not.toContain(secret);
    }
  });
});

describe('S3ObjectStore keys, prefixes and listing', () => {
  it('a prefix store lists, gets and deletes only its own keys, not a sibling prefix that shares its text', async () => {
    const root = s3();
    const a = s3({ bucket: `s3://${BUCKET}/some/prefix` });
    const sibling = s3({ bucket: `s3://${BUCKET}/some/prefix2` });
    const viaOption = s3({ bucket: `s3://${BUCKET}/some`, prefix: '/prefix/' });
    expect(a.description).toBe(`s3://${BUCKET}/some/prefix`);
    expect(viaOption.description).toBe(a.description);

    await a.put('x/1', new Uint8Array([1]));
    await a.put('y', new Uint8Array([2, 2]));
    await sibling.put('x/1', new Uint8Array([3, 3, 3]));
    await root.put('some/prefixless', new Uint8Array([4]));

    expect(await collect(a.list(''))).toEqual([{ key: 'x/1', size: 1 }, { key: 'y', size: 2 }]);
    expect(await collect(viaOption.list('x/'))).toEqual([{ key: 'x/1', size: 1 }]);
    expect(await collect(sibling.list(''))).toEqual([{ key: 'x/1', size: 3 }]);
    expect((await collect(root.list('some/'))).map((i) => i.key)).toEqual(['some/prefix/x/1', 'some/prefix/y', 'some/prefix2/x/1', 'some/prefixless']);
    expect(await a.get('x/1')).toEqual(new Uint8Array([1]));
    expect(await sibling.get('x/1')).toEqual(new Uint8Array([3, 3, 3]));
    expect(await a.get('some/prefixless')).toBeNull();
    expect(await a.head('y')).toEqual({ key: 'y', size: 2 });

    await a.delete('x/1');
    expect(await sibling.get('x/1')).toEqual(new Uint8Array([3, 3, 3]));
    for (const s of [a, sibling]) await emptyStore(s);
    await root.delete('some/prefixless');
  });

  it('follows continuation tokens: 7 keys in pages of 2 are 4 ListObjectsV2 requests, in order', async () => {
    proxy.pass();
    proxy.resetCounters();
    const store = s3({ bucket: `s3://${BUCKET}/paged`, via: 'proxy', listPageSize: 2 });
    const keys = ['g', 'a', 'e', 'b', 'f', 'c', 'd'];
    for (const k of keys) await store.put(k, new Uint8Array([1]));
    proxy.resetCounters();
    expect((await collect(store.list(''))).map((i) => i.key)).toEqual([...keys].sort());
    expect(proxy.byMethod).toEqual({ GET: 4 });
    await emptyStore(store);
  });

  it('stores a view of a larger buffer as just the view, and gzip as a label', async () => {
    const store = s3({ bucket: `s3://${BUCKET}/views` });
    const backing = new Uint8Array(100).map((_, i) => i);
    await store.put('view', backing.subarray(10, 20), { contentEncoding: 'gzip' });
    expect(await store.get('view')).toEqual(backing.slice(10, 20));
    expect(await store.head('view')).toEqual({ key: 'view', size: 10, contentEncoding: 'gzip' });
    await emptyStore(store);
  });

  it('rejects an invalid listPageSize at construction', () => {
    expect(() => s3({ listPageSize: 0 })).toThrow(/listPageSize/);
    expect(() => s3({ listPageSize: 1001 })).toThrow(/listPageSize/);
  });
});

describe('parseBucket', () => {
  it.each([
    ['my-bucket', { bucket: 'my-bucket', prefix: '' }],
    ['s3://my-bucket', { bucket: 'my-bucket', prefix: '' }],
    ['s3://my-bucket/', { bucket: 'my-bucket', prefix: '' }],
    ['s3://my-bucket/akidb', { bucket: 'my-bucket', prefix: 'akidb' }],
    ['s3://my-bucket/a/b/c/', { bucket: 'my-bucket', prefix: 'a/b/c' }],
    ['S3://my.bucket_1//deep/', { bucket: 'my.bucket_1', prefix: 'deep' }],
    ['my-bucket/some/prefix', { bucket: 'my-bucket', prefix: 'some/prefix' }],
    ['http://localhost:9000/akidb', { bucket: 'akidb', prefix: '', endpoint: 'http://localhost:9000' }],
    ['https://minio.internal/akidb/p%20x/y/', { bucket: 'akidb', prefix: 'p x/y', endpoint: 'https://minio.internal' }],
  ])('%s', (value, expected) => {
    expect(parseBucket(value)).toEqual(expected);
  });

  it.each([
    ['', /non-empty/],
    ['   ', /non-empty/],
    ['s3://', /bucket name/],
    ['s3:///prefix', /bucket name/],
    ['ab', /bucket name/],
    ['my bucket', /bucket name/],
    ['-bucket', /bucket name/],
    ['ftp://host/bucket', /ftp:\/\//],
    ['s3://my-bucket/a/../b', /prefix/],
    ['s3://my-bucket/a//b', /prefix/],
    ['s3://my-bucket/a/./b', /prefix/],
    ['http://host:9000/bucket?x=1', /query/],
    ['http://host:9000/', /bucket name/],
  ])('rejects %j', (value, message) => {
    expect(() => parseBucket(value)).toThrow(message);
  });

  it('refuses credentials in a bucket URL without repeating them', () => {
    let message = '';
    try {
      parseBucket('http://admin:hunter2secret@localhost:9000/akidb');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/credentials/);
    expect(message).not.toContain('hunter2secret');
  });

  it('gives the store its endpoint in the URL form, with path-style addressing', async () => {
    const store = new S3ObjectStore({ bucket: `${server.endpoint}/${BUCKET}/url-form`, credentials: server.credentials });
    open.push(store);
    expect(store.description).toBe(`s3://${BUCKET}/url-form`);
    await store.put('k', new Uint8Array([42]));
    expect(await s3().get('url-form/k')).toEqual(new Uint8Array([42]));
    await emptyStore(store);
  });
});

describe('classifyS3Failure', () => {
  const withStatus = (name: string, status: number, code?: string) =>
    Object.assign(new Error(name), { name, ...(code ? { Code: code } : {}), $metadata: { httpStatusCode: status } });
  it.each([
    ['SlowDown 503', withStatus('SlowDown', 503), { kind: 'transient', status: 503 }],
    ['InternalError 500', withStatus('InternalError', 500), { kind: 'transient', status: 500 }],
    ['bare 504', withStatus('UnknownError', 504), { kind: 'transient', status: 504 }],
    ['429', withStatus('TooManyRequests', 429), { kind: 'transient', status: 429 }],
    ['RequestTimeout is a 400 worth retrying', withStatus('RequestTimeout', 400), { kind: 'transient', status: 400 }],
    ['AccessDenied 403', withStatus('AccessDenied', 403), { kind: 'permanent', status: 403 }],
    ['NoSuchBucket 404', withStatus('NoSuchBucket', 404), { kind: 'permanent', status: 404 }],
    ['InvalidArgument 400', withStatus('InvalidArgument', 400), { kind: 'permanent', status: 400 }],
    ['PermanentRedirect 301 (wrong region)', withStatus('PermanentRedirect', 301), { kind: 'permanent', status: 301 }],
    ['an unreadable 200 answer', withStatus('SyntaxError', 200), { kind: 'transient', status: 200 }],
    ['TimeoutError', Object.assign(new Error('t'), { name: 'TimeoutError', code: 'ETIMEDOUT' }), { kind: 'transient' }],
    ['AbortError', Object.assign(new Error('a'), { name: 'AbortError' }), { kind: 'transient' }],
    ['ECONNRESET', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), { kind: 'transient', reason: 'ECONNRESET' }],
    ['ECONNREFUSED', Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), { kind: 'transient', reason: 'ECONNREFUSED' }],
    ['EPIPE', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }), { kind: 'transient', reason: 'EPIPE' }],
    ['socket hang up', new Error('socket hang up'), { kind: 'transient' }],
    ['no credentials', Object.assign(new Error('Could not load credentials'), { name: 'CredentialsProviderError' }), { kind: 'permanent' }],
    ['a non-Error', 'boom', { kind: 'transient' }],
  ])('%s', (_label, err, expected) => {
    const c = classifyS3Failure(err);
    expect(c).toMatchObject(expected);
    if (!('status' in expected)) expect(c.status).toBeUndefined();
  });
});

// SigV4 signs the Host header, the path and query as sent, and the body's hash. s3rver does not
// verify V4 signatures, so a verifying target stands in for S3 to prove the proxy breaks none.
describe('the fault proxy keeps SigV4 signatures valid', () => {
  const SECRET = 'verifier-secret-key';
  interface Seen { method: string; url: string; headers: http.IncomingHttpHeaders; bodySha256: string; valid: boolean }
  const seen: Seen[] = [];
  let verifier: http.Server;
  let verifierPort: number;
  let signedProxy: FaultProxy;

  beforeAll(async () => {
    verifier = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const record = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodySha256: createHash('sha256').update(Buffer.concat(chunks)).digest('hex') };
        const valid = verifySigV4(record, SECRET);
        seen.push({ ...record, valid });
        if (!valid) {
          const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>bad signature</Message></Error>';
          res.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) }).end(body);
        } else if (req.method === 'GET' && (req.url ?? '').includes('list-type=2')) {
          const body = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>${BUCKET}</Name><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>signed/listed</Key><Size>2</Size></Contents></ListBucketResult>`;
          res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) }).end(body);
        } else if (req.method === 'GET' || req.method === 'HEAD') {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 2 }).end('ok');
        } else if (req.method === 'DELETE') {
          res.writeHead(204).end();
        } else {
          res.writeHead(200, { etag: '"0"', 'content-length': 0 }).end();
        }
      });
    });
    await new Promise<void>((resolve) => verifier.listen(0, '127.0.0.1', resolve));
    verifierPort = (verifier.address() as AddressInfo).port;
    signedProxy = await startFaultProxy(verifierPort);
  });
  afterAll(async () => {
    await signedProxy?.stop();
    verifier?.closeAllConnections();
    await new Promise((resolve) => verifier?.close(resolve));
  });
  beforeEach(() => {
    seen.length = 0;
  });

  const KEY = 'signed/sp ace+plus%25?q#h&=~/ünï/😀';
  async function everyOperation(store: S3ObjectStore): Promise<void> {
    await store.put(KEY, new Uint8Array([1, 2, 3, 4]), { contentEncoding: 'gzip' });
    expect(await store.get(KEY)).toEqual(new TextEncoder().encode('ok'));
    expect(await store.head(KEY)).toEqual({ key: KEY, size: 2 });
    expect(await collect(store.list('signed/ü &'))).toEqual([]); // the listed key lacks that prefix
    expect(await collect(store.list('signed/'))).toEqual([{ key: 'signed/listed', size: 2 }]);
    await store.delete(KEY);
  }
  const signedStore = (endpoint: string, secret = SECRET): S3ObjectStore => {
    const store = new S3ObjectStore({ bucket: BUCKET, endpoint, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: secret } });
    open.push(store);
    return store;
  };

  it('the verifier accepts the SDK signing directly and refuses a wrong secret (it is not vacuous)', async () => {
    await everyOperation(signedStore(`http://127.0.0.1:${verifierPort}`));
    expect(seen.map((s) => [s.method, s.valid])).toEqual([['PUT', true], ['GET', true], ['HEAD', true], ['GET', true], ['GET', true], ['DELETE', true]]);
    await expect(failure(signedStore(`http://127.0.0.1:${verifierPort}`, 'wrong').get(KEY))).resolves.toMatchObject({ kind: 'permanent', status: 403 });
    expect(seen.at(-1)?.valid).toBe(false);
  });

  it('every request through the proxy still verifies, bodies and hashes intact; a rewritten Host would not', async () => {
    await everyOperation(signedStore(signedProxy.endpoint));
    expect(seen).toHaveLength(6);
    expect(seen.every((s) => s.valid)).toBe(true);
    expect(signedProxy.forwarded).toBeGreaterThanOrEqual(6);
    const put = seen[0];
    expect(put?.headers.host).toBe(`127.0.0.1:${signedProxy.port}`);
    expect(put?.bodySha256).toBe(createHash('sha256').update(new Uint8Array([1, 2, 3, 4])).digest('hex'));
    if (put) expect(verifySigV4({ ...put, headers: { ...put.headers, host: `127.0.0.1:${verifierPort}` } }, SECRET)).toBe(false);
  });
});

/** Check an AWS SigV4 header signature (S3 flavour: the path is signed as sent, not re-encoded). */
function verifySigV4(req: { method: string; url: string; headers: http.IncomingHttpHeaders; bodySha256: string }, secret: string): boolean {
  const auth = /^AWS4-HMAC-SHA256 Credential=[^/]+\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
    String(req.headers.authorization),
  );
  if (!auth) return false;
  const [, date = '', region = '', service = '', signedHeaders = '', signature = ''] = auth;
  const payloadHash = String(req.headers['x-amz-content-sha256']);
  if (payloadHash !== 'UNSIGNED-PAYLOAD' && payloadHash !== req.bodySha256) return false;
  const url = new URL(req.url, 'http://placeholder');
  const enc = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...url.searchParams]
    .map(([k, v]) => [enc(k), enc(v)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const headers = signedHeaders
    .split(';')
    .map((h) => `${h}:${String(req.headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonical = [req.method, url.pathname, query, headers, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', String(req.headers['x-amz-date']), scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
  return hmac(key, toSign).toString('hex') === signature;
}
