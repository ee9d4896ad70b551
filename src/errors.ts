/** The one table of error codes: each code's HTTP status, gRPC status name and default message. */
export const ERROR_CODES = {
  INVALID_ARGUMENT: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Invalid argument' },
  INVALID_NAME: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Names must match [A-Za-z0-9_.-]{1,255}' },
  INVALID_DIMENSION: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Dimension must be an integer in 1..4096' },
  INVALID_METRIC: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Metric must be one of cosine, l2, dot' },
  INVALID_INDEX_PARAMS: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Invalid HNSW index parameters' },
  INVALID_VECTOR: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Vectors must hold finite numbers' },
  DIMENSION_MISMATCH: { http: 400, grpc: 'INVALID_ARGUMENT', message: "Vector length does not match the collection's dimension" },
  INVALID_DOCUMENT: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Invalid document' },
  INVALID_FILTER: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Invalid filter' },
  FILTER_TOO_COMPLEX: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'Filter exceeds the depth or clause limit' },
  INVALID_TOP_K: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'topK must be an integer in 1..1000' },
  MALFORMED_JSON: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'The request body is not valid JSON' },
  UNSUPPORTED_MEDIA_TYPE: { http: 415, grpc: 'INVALID_ARGUMENT', message: 'Request bodies must be application/json' },
  PAYLOAD_TOO_LARGE: { http: 413, grpc: 'RESOURCE_EXHAUSTED', message: 'Request exceeds a size limit' },
  UNAUTHENTICATED: { http: 401, grpc: 'UNAUTHENTICATED', message: 'A valid API key or token is required' },
  PERMISSION_DENIED: { http: 403, grpc: 'PERMISSION_DENIED', message: "The credential's role does not allow this" },
  RATE_LIMITED: { http: 429, grpc: 'RESOURCE_EXHAUSTED', message: 'Too many requests for this credential; retry after the time given' },
  AUTH_UNAVAILABLE: { http: 503, grpc: 'UNAVAILABLE', message: 'Credentials cannot be checked right now; retry later' },
  BACKUP_NOT_FOUND: { http: 404, grpc: 'NOT_FOUND', message: 'Backup not found' },
  API_KEY_NOT_FOUND: { http: 404, grpc: 'NOT_FOUND', message: 'API key not found' },
  ROUTE_NOT_FOUND: { http: 404, grpc: 'UNIMPLEMENTED', message: 'No such route' },
  DOCUMENT_NOT_FOUND: { http: 404, grpc: 'NOT_FOUND', message: 'Document not found' },
  TIER_UNAVAILABLE: { http: 422, grpc: 'FAILED_PRECONDITION', message: 'That tiering policy is not available on this server' },
  TENANT_NOT_FOUND: { http: 404, grpc: 'NOT_FOUND', message: 'Tenant not found' },
  DATABASE_NOT_FOUND: { http: 404, grpc: 'NOT_FOUND', message: 'Database not found' },
  COLLECTION_NOT_FOUND: { http: 404, grpc: 'NOT_FOUND', message: 'Collection not found' },
  TENANT_ALREADY_EXISTS: { http: 409, grpc: 'ALREADY_EXISTS', message: 'Tenant already exists' },
  DATABASE_ALREADY_EXISTS: { http: 409, grpc: 'ALREADY_EXISTS', message: 'Database already exists' },
  COLLECTION_ALREADY_EXISTS: { http: 409, grpc: 'ALREADY_EXISTS', message: 'Collection already exists' },
  DATABASE_NOT_EMPTY: { http: 409, grpc: 'FAILED_PRECONDITION', message: 'Database still holds collections' },
  DATA_DIR_LOCKED: { http: 409, grpc: 'FAILED_PRECONDITION', message: 'The data directory is in use by another process' },
  CLOSED: { http: 503, grpc: 'UNAVAILABLE', message: 'The database is closed' },
  SHUTTING_DOWN: { http: 503, grpc: 'UNAVAILABLE', message: 'The server is shutting down' },
  REQUEST_TIMEOUT: { http: 503, grpc: 'DEADLINE_EXCEEDED', message: 'The request did not finish within the server timeout' },
  STORE_UNAVAILABLE: { http: 503, grpc: 'UNAVAILABLE', message: 'The object store did not store the write in time; it was not applied. Retry later' },
  CIRCUIT_OPEN: { http: 503, grpc: 'UNAVAILABLE', message: 'The object store circuit breaker is open; retry after the cooldown' },
  STORAGE_CORRUPT: { http: 500, grpc: 'DATA_LOSS', message: 'Stored data failed its integrity check' },
  STORAGE_IO: { http: 500, grpc: 'INTERNAL', message: 'Storage I/O failed' },
  INTERNAL: { http: 500, grpc: 'INTERNAL', message: 'Internal error' },
} as const satisfies Record<string, { http: number; grpc: string; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Every error AkiDB raises on purpose: a code from ERROR_CODES plus structured details. */
export class AkiError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, details: Record<string, unknown> = {}, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code].message, options);
    this.name = 'AkiError';
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  get grpcStatus(): string {
    return ERROR_CODES[this.code].grpc;
  }
}

/** True when `err` is an AkiError, optionally with the given code. */
export function isAkiError(err: unknown, code?: ErrorCode): err is AkiError {
  return err instanceof AkiError && (code === undefined || err.code === code);
}
