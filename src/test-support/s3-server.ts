import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

/** A running s3rver: a real S3-protocol server on loopback holding one bucket, for `*.s3.test.ts` files. */
export interface S3TestServer {
  /** `http://127.0.0.1:<port>`: give it to S3ObjectStore as `endpoint` (path-style). */
  endpoint: string;
  port: number;
  bucket: string;
  /** s3rver's one account. It checks the key id but does not verify SigV4 signatures. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Stop the server (its objects are gone); resolves once its process has exited. Idempotent. */
  stop(): Promise<void>;
}

// Runs in the child, as CommonJS. s3rver 3.7 speaks S3's HTTP, XML and error codes well, but three
// of its parts are not S3 and each breaks a promise of the ObjectStore contract, so they are replaced:
// 1. Routing: its `/:bucket/:key*` route cannot match a key with an empty segment ("a//b") and
//    treats a trailing slash loosely. A first middleware folds the key into one path segment
//    (slashes as %2F) that the router decodes back to the exact key.
// 2. Storage: its filesystem store maps keys onto paths (so "a//b" is "a/b" and a 1024-byte key
//    overflows a file name), writes objects in place (a concurrent GET reads half a body; a cut
//    upload leaves a partial object) and lists in directory-walk order ("a/b" before "a"). The
//    store below keeps objects in memory, replaces them only once a body arrived whole, and lists
//    in UTF-8 byte order, as S3 does.
// 3. Continuation tokens are DES-encrypted, which OpenSSL 3 offers only through its legacy
//    provider: hence --openssl-legacy-provider, without which every truncated listing is a 500.
const CHILD_SOURCE = String.raw`
'use strict';
const path = require('path');
const crypto = require('crypto');
const { PassThrough } = require('stream');
const main = process.env.AKIDB_S3RVER_MAIN;
const S3rver = require(main);
const S3Object = require(path.join(path.dirname(main), 'models', 'object.js'));
const S3Bucket = require(path.join(path.dirname(main), 'models', 'bucket.js'));
const S3Error = require(path.join(path.dirname(main), 'models', 'error.js'));

const byBytes = (a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
const notImplemented = async () => {
  throw new S3Error('NotImplemented', 'Multipart uploads are not supported by this test server');
};

class MemoryStore {
  constructor() { this.buckets = new Map(); }
  reset() { this.buckets.clear(); }
  objects(bucket) { const b = this.buckets.get(bucket); return b ? b.objects : new Map(); }
  async listBuckets() { return [...this.buckets].map(([name, b]) => new S3Bucket(name, b.created)); }
  async getBucket(name) { const b = this.buckets.get(name); return b ? new S3Bucket(name, b.created) : null; }
  async putBucket(name) {
    if (!this.buckets.has(name)) this.buckets.set(name, { created: new Date(), objects: new Map(), sub: new Map() });
    return this.getBucket(name);
  }
  async deleteBucket(name) { this.buckets.delete(name); }
  async listObjects(bucket, options) {
    const prefix = options.prefix || '';
    const startAfter = options.startAfter || '';
    const delimiter = options.delimiter || '';
    const maxKeys = options.maxKeys === undefined ? Infinity : options.maxKeys;
    const all = this.objects(bucket);
    const keys = [...all.keys()].filter((k) => k.startsWith(prefix) && byBytes(k, startAfter) > 0).sort(byBytes);
    const objects = [];
    const commonPrefixes = new Set();
    let isTruncated = false;
    for (const key of keys) {
      if (delimiter) {
        const i = key.indexOf(delimiter, prefix.length);
        if (i !== -1) { commonPrefixes.add(key.slice(0, i + delimiter.length)); continue; }
      }
      if (objects.length >= maxKeys) { isTruncated = true; break; }
      objects.push(new S3Object(bucket, key, null, all.get(key).metadata));
    }
    return { objects, commonPrefixes: [...commonPrefixes].sort(byBytes), isTruncated };
  }
  async existsObject(bucket, key) { return this.objects(bucket).has(key); }
  async getObject(bucket, key, options) {
    const o = this.objects(bucket).get(key);
    if (!o) return null;
    const lastByte = Math.max(0, o.content.length - 1);
    const ranged = options && (options.start !== undefined || options.end);
    const range = { start: (options && options.start) || 0, end: Math.min((options && options.end) || Infinity, lastByte) };
    let content = null;
    if (!(range.start < 0 || range.end < range.start)) {
      content = new PassThrough();
      content.end(o.content.subarray(range.start, range.end + 1));
    }
    const object = new S3Object(bucket, key, content, o.metadata);
    if (ranged) object.range = range;
    return object;
  }
  async putObject(object) {
    const content = await new Promise((resolve, reject) => {
      const src = object.content;
      if (Buffer.isBuffer(src)) return resolve(src);
      const chunks = [];
      src.on('data', (c) => chunks.push(c));
      src.on('end', () => resolve(Buffer.concat(chunks)));
      src.on('error', reject);
      src.on('close', () => { if (!src.readableEnded) reject(new Error('upload cut short')); });
    });
    return this.store(object.bucket, object.key, content, object.metadata);
  }
  store(bucket, key, content, metadata) {
    const md5 = crypto.createHash('md5').update(content).digest('hex');
    this.objects(bucket).set(key, {
      content,
      metadata: { ...metadata, etag: JSON.stringify(md5), 'last-modified': new Date().toUTCString(), 'content-length': content.length },
    });
    return { size: content.length, md5 };
  }
  async copyObject(srcBucket, srcKey, destBucket, destKey, replacementMetadata) {
    const src = this.objects(srcBucket).get(srcKey);
    this.store(destBucket, destKey, src.content, replacementMetadata || src.metadata);
    return this.objects(destBucket).get(destKey).metadata;
  }
  async deleteObject(bucket, key) { this.objects(bucket).delete(key); }
  async getSubresource(bucket, key, type) {
    const b = this.buckets.get(bucket);
    return (b && b.sub.get((key || '') + '\0' + type)) || null;
  }
  async putSubresource(bucket, key, resource) {
    const b = this.buckets.get(bucket);
    if (b) b.sub.set((key || '') + '\0' + resource.type, resource);
  }
  async deleteSubresource(bucket, key, type) {
    const b = this.buckets.get(bucket);
    if (b) b.sub.delete((key || '') + '\0' + type);
  }
}
MemoryStore.prototype.initiateUpload = notImplemented;
MemoryStore.prototype.putPart = notImplemented;
MemoryStore.prototype.putObjectMultipart = notImplemented;

const srv = new S3rver({
  port: 0,
  address: '127.0.0.1',
  silent: true,
  configureBuckets: [{ name: process.env.AKIDB_S3RVER_BUCKET }],
});
srv.store = srv.context.store = new MemoryStore();
srv.middleware.unshift(async (ctx, next) => {
  const m = /^\/([^/]+)\/(.+)$/s.exec(ctx.path);
  if (m) {
    try {
      ctx.path = '/' + m[1] + '/' + encodeURIComponent(decodeURIComponent(m[2]));
    } catch {
      // A malformed escape: leave the path for s3rver to refuse.
    }
  }
  return next();
});
process.on('SIGTERM', () => process.exit(0));
// The parent holds our stdin: when it dies, so do we (no orphaned servers).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
srv.run().then(
  (addr) => process.stdout.write(JSON.stringify({ port: addr.port }) + '\n'),
  (err) => { process.stderr.write(String((err && err.stack) || err)); process.exit(1); },
);
`;

/**
 * Start s3rver on 127.0.0.1 and a free port with `bucket` created, in a child process of its own
 * (it needs Node's OpenSSL legacy provider, and must not share the test's event loop). Objects
 * live in the child's memory, so nothing is left on disk.
 */
export async function startS3Server(opts: { bucket: string }): Promise<S3TestServer> {
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', CHILD_SOURCE], {
    env: { ...process.env, AKIDB_S3RVER_MAIN: createRequire(import.meta.url).resolve('s3rver'), AKIDB_S3RVER_BUCKET: opts.bucket },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s: ${stderr}`)), 15_000);
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const end = out.indexOf('\n');
        if (end < 0) return;
        clearTimeout(timer);
        resolve((JSON.parse(out.slice(0, end)) as { port: number }).port);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with ${String(code)} before listening: ${stderr}`));
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket: opts.bucket,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
      })()),
  };
}
