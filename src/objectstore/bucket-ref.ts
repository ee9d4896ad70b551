// Kept apart from s3-object-store.ts so that checking a configuration does not load the AWS SDK.

/** A bucket reference taken apart: bucket name, key prefix without edge slashes, and the endpoint of the URL form. */
export interface ParsedBucket {
  bucket: string;
  prefix: string;
  endpoint?: string;
}

// S3's rules for new buckets are stricter (3..63, lower case); legacy us-east-1 names and other
// stores allow upper case and `_`, so only what can never be a bucket name is refused here.
const BUCKET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

/**
 * Parse `name`, `s3://name/prefix` or `http(s)://host:port/name/prefix` into bucket, prefix and
 * (for the URL form) endpoint. Throws TypeError on a malformed value; the message never repeats a
 * URL's user-info, which could hold credentials.
 */
export function parseBucket(value: string): ParsedBucket {
  if (typeof value !== 'string' || value.trim() === '') throw new TypeError('S3 bucket must be a non-empty string');
  let bucket: string;
  let rest: string;
  let endpoint: string | undefined;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    [bucket, rest] = splitFirst(value);
  } else if (scheme === 's3') {
    [bucket, rest] = splitFirst(value.slice('s3://'.length));
  } else if (scheme === 'http' || scheme === 'https') {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new TypeError('S3 bucket URL is not a valid URL');
    }
    if (url.username !== '' || url.password !== '') {
      throw new TypeError('S3 bucket URL must not carry credentials; use the access key settings');
    }
    if (url.search !== '' || url.hash !== '') throw new TypeError('S3 bucket URL must not have a query or fragment');
    endpoint = `${url.protocol}//${url.host}`;
    const path = url.pathname.replace(/^\/+/, '');
    let decoded: string;
    try {
      decoded = path.split('/').map(decodeURIComponent).join('/');
    } catch {
      throw new TypeError('S3 bucket URL has a malformed percent-encoding');
    }
    [bucket, rest] = splitFirst(decoded);
  } else {
    throw new TypeError(`S3 bucket must be a name, s3://name/prefix or http(s)://host/name, not a ${scheme}:// URL`);
  }
  if (!BUCKET_NAME.test(bucket)) {
    throw new TypeError(`Invalid S3 bucket name "${bucket}": 3..255 characters of A-Z a-z 0-9 . - _`);
  }
  const parsed: ParsedBucket = { bucket, prefix: normalizePrefix(rest) };
  if (endpoint !== undefined) parsed.endpoint = endpoint;
  return parsed;
}

function splitFirst(s: string): [string, string] {
  const i = s.indexOf('/');
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}

/** Strip the edge slashes; refuse what would make stored keys break the key rules. */
export function normalizePrefix(prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, '');
  if (p === '') return '';
  if (p.includes('\0')) throw new TypeError('S3 prefix must not contain NUL');
  if (p.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new TypeError(`Invalid S3 prefix "${p}": no empty, "." or ".." segments`);
  }
  return p;
}
