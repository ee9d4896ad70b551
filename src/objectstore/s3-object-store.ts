import http from 'node:http';
import https from 'node:https';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { normalizePrefix, parseBucket } from './bucket-ref.js';
import { setSpanAttributes, SpanKind, withSpan, type Span } from '../observability/tracing.js';

export { parseBucket, type ParsedBucket } from './bucket-ref.js';
import {
  checkKey,
  kindOfStatus,
  ObjectStoreError,
  type FailureKind,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './object-store.js';

/** Options of an S3ObjectStore; `bucket` may carry a prefix and, in seed 000's URL form, the endpoint. */
export interface S3ObjectStoreOptions {
  /** `name`, `s3://name/prefix` or `http(s)://host:port/name/prefix` (seed 000's MinIO form). */
  bucket: string;
  /** Appended to the prefix given in `bucket`; every key is stored under `prefix/`. */
  prefix?: string;
  /** An S3-compatible endpoint (MinIO, s3rver, R2); overrides one given in `bucket`. */
  endpoint?: string;
  /** Default `us-east-1` (MinIO and s3rver ignore it but SigV4 needs one). */
  region?: string;
  /** Path-style addressing (`host/bucket/key`); default true when an endpoint is given, as MinIO needs. */
  forcePathStyle?: boolean;
  /** Static credentials; without them the SDK's default chain (`AWS_*` variables, profiles, IMDS) applies. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Time to the response's headers, and the longest silence while a body streams (default 10000). */
  requestTimeoutMs?: number;
  /** Time to establish a TCP connection (default min(3000, requestTimeoutMs)). */
  connectionTimeoutMs?: number;
  /** HTTP attempts per call (default 1; see the constructor for why). */
  maxAttempts?: number;
  /** Keys per ListObjectsV2 page (1..1000, default 1000); small values let tests exercise pagination. */
  listPageSize?: number;
}


/** How an S3 failure is classified: transient (retry) or permanent (DLQ), with its HTTP status if any. */
export interface S3FailureClass {
  kind: FailureKind;
  status?: number;
  /** The error's name or code, for messages and metrics labels. */
  reason: string;
}

// Network failures: the request may or may not have reached S3, and nothing says it was wrong.
const TRANSIENT_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EAI_AGAIN', 'ENOTFOUND', 'ERR_STREAM_PREMATURE_CLOSE', 'ECANCELED',
]);
// S3 error codes that mean "try again" whatever status they come with (RequestTimeout is a 400).
const TRANSIENT_NAMES = new Set([
  'TimeoutError', 'AbortError', 'RequestTimeout', 'RequestTimeoutException', 'SlowDown',
  'ServiceUnavailable', 'InternalError', 'Throttling', 'ThrottlingException', 'RequestThrottled',
  'TooManyRequestsException', 'RequestLimitExceeded', 'BandwidthLimitExceeded',
]);
// Failures no retry can cure: missing credentials, a malformed request built on our side.
const PERMANENT_NAMES = new Set(['CredentialsProviderError', 'InvalidSignatureException', 'SignatureDoesNotMatch']);

/** Classify any error the SDK (or a body stream) throws: by S3 error name, then HTTP status, then network code. */
export function classifyS3Failure(err: unknown): S3FailureClass {
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: unknown };
  };
  const name = typeof e.name === 'string' ? e.name : 'Error';
  const code = typeof e.code === 'string' ? e.code : undefined;
  const rawStatus = e.$metadata?.httpStatusCode;
  const status = typeof rawStatus === 'number' && rawStatus >= 100 ? rawStatus : undefined;
  const withStatus = (kind: FailureKind, reason: string): S3FailureClass =>
    status === undefined ? { kind, reason } : { kind, status, reason };

  if (TRANSIENT_NAMES.has(name)) return withStatus('transient', name);
  if (PERMANENT_NAMES.has(name)) return withStatus('permanent', name);
  // A 2xx here means the answer could not be read (cut or garbled body): the request itself was fine.
  if (status !== undefined) return withStatus(status < 300 ? 'transient' : kindOfStatus(status), name);
  if (code !== undefined && TRANSIENT_CODES.has(code)) return { kind: 'transient', reason: code };
  const message = typeof e.message === 'string' ? e.message : '';
  if (/socket hang up|aborted|premature close/i.test(message)) return { kind: 'transient', reason: code ?? name };
  // Unexplained, status-less failures are retried: nothing proves the request bad, and the retry
  // worker's budget and the circuit breaker bound what a wrong guess costs.
  return { kind: 'transient', reason: code ?? name };
}

/**
 * The ObjectStore on S3 or any S3-compatible service (MinIO, R2, s3rver), through
 * @aws-sdk/client-s3. Keys live under the configured prefix; `put` is one PutObject, which S3
 * applies atomically (a reader sees the old or the new object, never a part). `head` cannot tell
 * a missing bucket from a missing key (S3 answers a HEAD with a bare 404) and resolves null for both.
 * S3 caps the full key at 1024 bytes, so under a prefix the longest key is shorter by the prefix and
 * its slash; longer ones fail permanent (400 KeyTooLongError) at S3, not here.
 * Call `close()` to release pooled sockets.
 */
export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly bucket: string;
  /** The key prefix without edge slashes ('' for the bucket's root). */
  readonly prefix: string;
  #client: S3Client;
  #keyPrefix: string;
  #listPageSize: number;
  #secret: string | undefined;

  constructor(options: S3ObjectStoreOptions) {
    const parsed = parseBucket(options.bucket);
    this.bucket = parsed.bucket;
    this.prefix = [parsed.prefix, normalizePrefix(options.prefix ?? '')].filter((p) => p !== '').join('/');
    this.#keyPrefix = this.prefix === '' ? '' : `${this.prefix}/`;
    this.description = `s3://${this.bucket}${this.prefix === '' ? '' : `/${this.prefix}`}`;
    this.#listPageSize = options.listPageSize ?? 1000;
    if (!Number.isInteger(this.#listPageSize) || this.#listPageSize < 1 || this.#listPageSize > 1000) {
      throw new TypeError('listPageSize must be an integer in 1..1000');
    }
    this.#secret = options.credentials?.secretAccessKey;

    const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    const endpoint = options.endpoint ?? parsed.endpoint;
    const requestHandler = new NodeHttpHandler({
      connectionTimeout: options.connectionTimeoutMs ?? Math.min(3000, requestTimeoutMs),
      requestTimeout: requestTimeoutMs,
      // Without this flag the SDK only logs a warning when requestTimeout passes and keeps waiting.
      throwOnRequestTimeout: true,
      // requestTimeout stops at the response's headers; this bounds a body that stalls mid-stream.
      socketTimeout: requestTimeoutMs,
      // Keep-alive: the upload worker makes many small requests; a TLS handshake each would dominate.
      httpAgent: new http.Agent({ keepAlive: true, maxSockets: 64 }),
      httpsAgent: new https.Agent({ keepAlive: true, maxSockets: 64 }),
    });
    this.#client = new S3Client({
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(options.credentials === undefined ? {} : { credentials: { ...options.credentials } }),
      // Retries belong to our retry worker, not the SDK: it backs off with jitter, counts
      // storage_s3_retries, and feeds every failure to the circuit breaker. SDK retries underneath
      // would hide failures from both and multiply every call during an outage (a retry storm).
      maxAttempts: options.maxAttempts ?? 1,
      requestHandler,
    });
  }

  async put(key: string, body: Uint8Array, opts?: PutOptions): Promise<void> {
    checkKey('put', key);
    await this.#call('put', key, body.byteLength, () =>
      this.#client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.#keyPrefix + key,
          Body: body,
          ContentLength: body.byteLength,
          ContentType: 'application/octet-stream',
          // An empty encoding means none (the contract); S3 would store an empty header.
          ...(opts?.contentEncoding ? { ContentEncoding: opts.contentEncoding } : {}),
        }),
      ),
    );
  }

  async get(key: string): Promise<Uint8Array | null> {
    checkKey('get', key);
    return this.#call('get', key, undefined, async (span) => {
      let out;
      try {
        out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#keyPrefix + key }));
      } catch (err) {
        if (isMissingKey(err)) return null;
        throw err;
      }
      // Reading the body is part of the call: a reset or stall mid-stream must classify like any failure.
      const bytes = out.Body === undefined ? new Uint8Array(0) : await out.Body.transformToByteArray();
      if (out.ContentLength !== undefined && bytes.byteLength !== out.ContentLength) {
        // The contract promises the whole body: a short read is a cut connection, not an object.
        throw Object.assign(new Error(`body cut short: ${bytes.byteLength} of ${out.ContentLength} bytes`), {
          code: 'ERR_STREAM_PREMATURE_CLOSE',
        });
      }
      setSpanAttributes(span, () => ({ 'akidb.objectstore.bytes': bytes.byteLength }));
      return bytes;
    });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    checkKey('head', key);
    return this.#call('head', key, undefined, async () => {
      try {
        const out = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#keyPrefix + key }));
        const info: ObjectInfo = { key, size: out.ContentLength ?? 0 };
        if (out.ContentEncoding) info.contentEncoding = out.ContentEncoding;
        return info;
      } catch (err) {
        // A HEAD error has no body, so any 404 but an explicit NoSuchBucket is taken for a missing key.
        if (isMissingKey(err) || (statusOf(err) === 404 && (err as { name?: unknown }).name !== 'NoSuchBucket')) return null;
        throw err;
      }
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (typeof prefix !== 'string' || prefix.includes('\0')) {
      throw new ObjectStoreError('permanent', 'list', String(prefix), 'Invalid list prefix: contains NUL');
    }
    const fullPrefix = this.#keyPrefix + prefix;
    let token: string | undefined;
    do {
      const page = await this.#call('list', prefix, undefined, () =>
        this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            MaxKeys: this.#listPageSize,
            ...(fullPrefix === '' ? {} : { Prefix: fullPrefix }),
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        ),
      );
      for (const o of page.Contents ?? []) {
        // S3 only returns keys under Prefix; the check guards against a store that does not.
        if (o.Key === undefined || !o.Key.startsWith(fullPrefix)) continue;
        yield { key: o.Key.slice(this.#keyPrefix.length), size: o.Size ?? 0 };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      if (page.IsTruncated === true && token === undefined) {
        // Stopping here would silently drop the rest of the listing.
        throw new ObjectStoreError('transient', 'list', prefix, `S3 list ${this.description}: truncated page without a continuation token`);
      }
    } while (token !== undefined);
  }

  async delete(key: string): Promise<void> {
    checkKey('delete', key);
    await this.#call('delete', key, undefined, async () => {
      try {
        await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#keyPrefix + key }));
      } catch (err) {
        // S3 answers 204 for a missing key; some compatible stores answer NoSuchKey. Both mean done.
        if (!isMissingKey(err)) throw err;
      }
    });
  }

  /** Release pooled sockets; the store must not be used afterwards. */
  close(): void {
    this.#client.destroy();
  }

  /** One SDK call, in a span `objectstore.<operation>` (key and bytes, never credentials); failures classified. */
  #call<T>(operation: ObjectStoreError['operation'], key: string, bytes: number | undefined, run: (span: Span) => Promise<T>): Promise<T> {
    return withSpan(
      `objectstore.${operation}`,
      () => ({ 'akidb.objectstore.operation': operation, 'akidb.objectstore.bucket': this.bucket, 'akidb.objectstore.key': this.#keyPrefix + key, ...(bytes !== undefined ? { 'akidb.objectstore.bytes': bytes } : {}) }),
      (span) => this.#classified(operation, key, span, run),
      { kind: SpanKind.CLIENT },
    );
  }

  async #classified<T>(operation: ObjectStoreError['operation'], key: string, span: Span, run: (span: Span) => Promise<T>): Promise<T> {
    try {
      return await run(span);
    } catch (err) {
      if (err instanceof ObjectStoreError) throw err;
      const c = classifyS3Failure(err);
      setSpanAttributes(span, () => ({ 'akidb.objectstore.failure': c.kind, 'akidb.objectstore.reason': c.reason, ...(c.status === undefined ? {} : { 'http.response.status_code': c.status }) }));
      const detail = err instanceof Error ? err.message : String(err);
      let message = `S3 ${operation} ${this.description}/${key} failed: ${c.reason}${c.status === undefined ? '' : ` (HTTP ${c.status})`}: ${detail}`;
      // The secret never travels in a request, but a message must never be the place it leaks.
      if (this.#secret !== undefined && this.#secret !== '') message = message.split(this.#secret).join('***');
      throw new ObjectStoreError(c.kind, operation, key, message, c.status, { cause: err });
    }
  }
}

function statusOf(err: unknown): number | undefined {
  const s = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

/** NoSuchKey (GET, DELETE) or the bodiless 404 "NotFound" the SDK makes of a HEAD; never NoSuchBucket. */
function isMissingKey(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'NoSuchKey' || (name === 'NotFound' && statusOf(err) === 404);
}
