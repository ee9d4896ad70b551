import { availableParallelism } from 'node:os';

/** The kinds of value a config option holds. */
export type OptionType = 'string' | 'integer' | 'number' | 'boolean' | 'enum';

/** One config option: its key in config.toml / YAML, type, default, env var, CLI flag and help. */
export interface OptionSpec {
  /** Dotted key: the TOML section and name (`server.rest_port` is `[server] rest_port`). */
  readonly key: string;
  readonly type: OptionType;
  /** The default; `null` means "derived at load time" (see `help`). */
  readonly default: string | number | boolean | null;
  readonly help: string;
  readonly env?: string;
  /** CLI flag, without the leading dashes. */
  readonly flag?: string;
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
  /** Other keys that set this option (seed 001's YAML layout). */
  readonly aliases?: readonly string[];
  /** Shown in config.example.toml when the default is derived. */
  readonly example?: string | number;
  /** Changes take effect on SIGHUP without a restart. */
  readonly reloadable?: boolean;
  /** A credential: never logged, and shown as `***` by `config check` and in error messages. */
  readonly secret?: boolean;
}

/** Every option the server reads. Defaults, env names, flags and docs all come from this table. */
export const CONFIG_SCHEMA: readonly OptionSpec[] = [
  { key: 'server.host', type: 'string', default: '127.0.0.1', env: 'AKIDB_HOST', flag: 'host', help: 'Address the REST and gRPC servers bind. Loopback by default. Any other address needs `[auth] enabled = true` (or `insecure`): protected mode refuses to serve other machines without authentication.' },
  { key: 'server.insecure', type: 'boolean', default: false, env: 'AKIDB_INSECURE', flag: 'insecure', help: 'Allow binding a non-loopback address (REST, gRPC or admin) with authentication off. For a network you trust completely; logged as a warning at every start.' },
  { key: 'server.tls_cert', type: 'string', default: '', example: '/etc/akidb/tls/server.crt', env: 'AKIDB_TLS_CERT', help: 'PEM certificate (chain) file. With `tls_key`, REST, admin and gRPC serve TLS only.' },
  { key: 'server.tls_key', type: 'string', default: '', example: '/etc/akidb/tls/server.key', env: 'AKIDB_TLS_KEY', help: 'PEM private key file for `tls_cert`.' },
  { key: 'server.rest_port', type: 'integer', default: 8080, env: 'AKIDB_REST_PORT', flag: 'rest-port', min: 0, max: 65535, help: 'REST port; 0 picks a free port (logged at start).' },
  { key: 'server.grpc_port', type: 'integer', default: 9090, env: 'AKIDB_GRPC_PORT', flag: 'grpc-port', min: 0, max: 65535, help: 'gRPC port; 0 picks a free port (logged at start).' },
  { key: 'server.timeout_seconds', type: 'number', default: 30, min: 0.001, max: 3600, help: 'Longest a request may run; past it the client gets 503 REQUEST_TIMEOUT (gRPC DEADLINE_EXCEEDED).' },
  { key: 'server.max_body_bytes', type: 'integer', default: 128 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024, help: 'Largest REST request body; larger ones get 413 PAYLOAD_TOO_LARGE. The default fits a 10,000-document batch of 768-dimension vectors as JSON.' },
  { key: 'server.shutdown_grace_seconds', type: 'number', default: 30, min: 0, max: 3600, help: 'On SIGTERM / SIGINT, how long in-flight requests may take to finish before connections are cut.' },
  { key: 'database.path', type: 'string', default: null, example: 'sqlite:///var/lib/akidb/metadata.db', env: 'AKIDB_DB_PATH', help: 'SQLite catalog file, as a path or `sqlite://PATH` (`sqlite:///abs/path` for an absolute one). Default: `metadata.db` in the data directory.' },
  { key: 'database.max_connections', type: 'integer', default: 10, min: 1, max: 1000, help: 'Accepted so AkiDB 2.0 config files load unchanged. The catalog is one SQLite connection in WAL mode inside the server process, so this has no effect.' },
  { key: 'database.connection_timeout_seconds', type: 'number', default: 5, min: 0, max: 600, help: 'How long a catalog statement waits for a lock held by another connection (SQLite busy timeout).' },
  { key: 'features.metrics_enabled', type: 'boolean', default: true, env: 'AKIDB_METRICS_ENABLED', help: 'Serve Prometheus metrics at /metrics and collect them; false removes both.' },
  { key: 'features.vector_persistence_enabled', type: 'boolean', default: true, env: 'AKIDB_VECTOR_PERSISTENCE_ENABLED', help: 'false keeps everything in a temporary data directory that is deleted at shutdown (for tests and demos; nothing survives a restart).' },
  { key: 'features.auto_initialize', type: 'boolean', default: true, env: 'AKIDB_AUTO_INITIALIZE', help: 'Create tenant `default` and database `default` on first start.' },
  { key: 'hnsw.m', type: 'integer', default: 16, min: 2, max: 128, aliases: ['index.hnsw.m'], help: 'Graph degree of new collections: higher gives better recall, more memory, slower builds.' },
  { key: 'hnsw.ef_construction', type: 'integer', default: 64, min: 8, max: 4096, aliases: ['index.hnsw.ef_construction'], help: 'Build breadth of new collections: higher gives a better graph and slower builds.' },
  { key: 'hnsw.ef_search', type: 'integer', default: 64, min: 1, max: 10000, aliases: ['index.hnsw.ef_search'], help: 'Default search breadth of new collections; a query may pass its own.' },
  { key: 'hnsw.threshold', type: 'integer', default: 10000, min: 0, max: 100_000_000, aliases: ['index.hnsw.min_vectors_threshold'], help: 'Segments with fewer documents are scanned exactly instead of indexed.' },
  { key: 'hnsw.quantization', type: 'enum', default: 'f16', values: ['f32', 'f16', 'i8'], help: 'Scalar type inside the graph (i8 needs the cosine metric); results are ranked in float32 either way.' },
  { key: 'hnsw.build_threads', type: 'integer', default: null, example: 4, min: 1, max: 256, help: 'Threads an index build may use. Default: the number of CPU cores.' },
  { key: 'logging.level', type: 'enum', default: 'info', env: 'AKIDB_LOG_LEVEL', flag: 'log-level', values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], reloadable: true, help: 'Least severe level logged. SIGHUP re-reads it from the config file.' },
  { key: 'logging.format', type: 'enum', default: 'pretty', env: 'AKIDB_LOG_FORMAT', values: ['json', 'pretty'], help: '`json` (one object a line, for production) or `pretty` (for a terminal).' },
  { key: 'storage.data_dir', type: 'string', default: './data', env: 'AKIDB_DATA_DIR', flag: 'data-dir', help: 'Where the catalog, WALs, segments and manifests live. One server process at a time may use it.' },
  { key: 'storage.tiering_policy', type: 'enum', default: 'Memory', values: ['Memory', 'MemoryS3', 'S3Only'], env: 'AKIDB_TIERING_POLICY', help: 'Default tier of new collections (a create request may name its own). `Memory`: an acknowledged write is fsynced to the local WAL. `MemoryS3`: the same, and every write is shipped to the object store within the upload lag. `S3Only`: a write is acknowledged only once its WAL batch is stored in the object store. The last two need `s3_bucket`.' },
  { key: 'storage.s3_bucket', type: 'string', default: '', example: 's3://my-bucket/akidb', env: 'AKIDB_S3_BUCKET', help: 'Object store for MemoryS3 and S3Only collections: `name`, `s3://name/prefix`, or `http://host:port/name/prefix` (the endpoint form, for MinIO). Empty: no object store, only `Memory` collections.' },
  { key: 'storage.s3_region', type: 'string', default: 'us-east-1', env: 'AKIDB_S3_REGION', help: 'Region of the bucket (MinIO and other S3-compatible stores ignore it, but requests are signed with it).' },
  { key: 'storage.s3_endpoint', type: 'string', default: '', example: 'http://localhost:9000', env: 'AKIDB_S3_ENDPOINT', help: 'An S3-compatible endpoint (MinIO, R2, Ceph); path-style addressing is used with one. Empty: AWS S3, or the endpoint given in `s3_bucket`.' },
  { key: 'storage.s3_access_key', type: 'string', default: '', env: 'AKIDB_S3_ACCESS_KEY', secret: true, help: 'Access key id. Empty: the AWS SDK default chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, profiles, instance roles). Set it through the environment, not in a file.' },
  { key: 'storage.s3_secret_key', type: 'string', default: '', env: 'AKIDB_S3_SECRET_KEY', secret: true, help: 'Secret access key, with `s3_access_key`. Never logged or printed.' },
  { key: 'storage.s3_request_timeout_seconds', type: 'number', default: 10, min: 0.1, max: 600, help: 'Longest wait for one object-store request (to the response headers, or between body bytes); past it the call fails as transient.' },
  { key: 'storage.s3_sync_interval_ms', type: 'integer', default: 1000, min: 10, max: 60_000, help: 'MemoryS3: how often each collection ships what changed (WAL bytes, new segments and manifests). The upload lag is this plus the upload time while the store is healthy.' },
  { key: 'storage.max_upload_lag_seconds', type: 'number', default: 5, min: 0, max: 86_400, help: 'MemoryS3: when a collection\'s upload lag passes this while the circuit is closed, its writes wait (up to 30 s each) for the uploads to catch up, so a write burst cannot outrun the bucket. While the circuit is open writes never wait and the lag grows (alert on it). 0: never wait.' },
  { key: 'storage.s3only_group_commit_ms', type: 'integer', default: 0, min: 0, max: 1000, help: 'S3Only: how long the WAL waits before writing a group, to gather concurrent writes into one stored object. 0 (default) waits for nothing: writes arriving while an upload is in flight join the next group anyway.' },
  { key: 'storage.s3only_ack_timeout_seconds', type: 'number', default: 10, min: 0.1, max: 600, help: 'S3Only: longest a write waits for its WAL batch to be stored, retries included, before it is refused with 503 STORE_UNAVAILABLE (and rolled back).' },
  { key: 'storage.cache_size', type: 'integer', default: 10000, min: 0, max: 1_000_000_000, help: 'S3Only local cache, in vectors (seed 000): past it, S3Only collections idle for 30 s whose every write is in the object store are evicted (closed, local files deleted; checked every 5 s), least recently used first; the most recently used one always stays. An evicted collection is fetched back whole on its next use. The cache works per collection, not per segment.' },
  { key: 'storage.enable_background_compaction', type: 'boolean', default: true, help: 'Flush, merge and index in the background.' },
  { key: 'storage.compaction.threshold_bytes', type: 'integer', default: 100 * 1024 * 1024, min: 1024, max: 64 * 1024 * 1024 * 1024, help: 'Flush the memtable to a segment once the WAL holds this many bytes.' },
  { key: 'storage.compaction.threshold_ops', type: 'integer', default: 10000, min: 1, max: 100_000_000, help: '... or this many operations.' },
  { key: 'storage.compaction.max_segments', type: 'integer', default: 8, min: 1, max: 1024, help: 'Merge when a collection has more segments than this.' },
  { key: 'storage.compaction.idle_flush_ms', type: 'integer', default: 1000, min: 1, max: 3_600_000, help: 'Flush and index what is pending once writes pause this long.' },
  { key: 'storage.s3_upload.batch_size', type: 'integer', default: 10, min: 1, max: 1000, help: 'Uploads the upload worker takes from its queue per round.' },
  { key: 'storage.s3_upload.max_concurrency', type: 'integer', default: 5, min: 1, max: 256, help: 'Uploads in flight at once.' },
  { key: 'storage.s3_upload.compression', type: 'enum', default: 'none', values: ['none', 'gzip'], help: '`gzip` stores objects compressed, with `Content-Encoding: gzip`; restores read either.' },
  { key: 'storage.retry.max_retries', type: 'integer', default: 5, min: 0, max: 100, help: 'Retries of an upload after a transient failure (5xx, timeout, reset) before it goes to the dead-letter queue.' },
  { key: 'storage.retry.base_backoff_secs', type: 'number', default: 1, min: 0.001, max: 3600, help: 'First retry delay; it doubles each retry (with jitter) up to `max_backoff_secs`.' },
  { key: 'storage.retry.max_backoff_secs', type: 'number', default: 64, min: 0.001, max: 86_400, help: 'Longest retry delay.' },
  { key: 'storage.circuit_breaker.enabled', type: 'boolean', default: true, help: 'Stop calling the object store while it fails (no retry storms); false keeps calling.' },
  { key: 'storage.circuit_breaker.failure_threshold', type: 'number', default: 0.5, min: 0.01, max: 1, help: 'Open the circuit when the share of failed calls in the window is above this.' },
  { key: 'storage.circuit_breaker.window_seconds', type: 'number', default: 60, min: 1, max: 86_400, help: 'Length of the sliding window the error rate is measured over.' },
  { key: 'storage.circuit_breaker.cooldown_seconds', type: 'number', default: 300, min: 0.1, max: 86_400, help: 'Time the circuit stays open before probing the store again (half-open).' },
  { key: 'storage.circuit_breaker.half_open_successes', type: 'integer', default: 10, min: 1, max: 10_000, help: 'Consecutive successful probes that close the circuit; one failed probe opens it again.' },
  { key: 'storage.circuit_breaker.minimum_requests', type: 'integer', default: 10, min: 1, max: 100_000, help: 'Calls the window must hold before its error rate can open the circuit (one failure in a quiet minute is not an outage).' },
  { key: 'storage.dlq.max_size', type: 'integer', default: 1000, min: 1, max: 10_000_000, help: 'Dead-letter entries kept; adding to a full queue evicts the oldest (counted in `dlq_evictions`).' },
  { key: 'storage.dlq.ttl_days', type: 'number', default: 7, min: 0.0001, max: 3650, help: 'Entries whose last failure is older than this are dropped (counted in `dlq_expirations`).' },
  { key: 'storage.dlq.persistence_enabled', type: 'boolean', default: true, help: 'Keep the dead-letter queue in `persistence_path` (written atomically), so it survives restarts and crashes.' },
  { key: 'storage.dlq.persistence_path', type: 'string', default: null, example: '/var/lib/akidb/dlq.json', help: 'Dead-letter queue file. Default: `dlq.json` in the data directory.' },
  { key: 'storage.dlq.flush_interval_seconds', type: 'number', default: 60, min: 0.01, max: 86_400, help: 'How often a changed dead-letter queue is written to its file (and always at shutdown).' },
  { key: 'api.validation.collection_name_max_length', type: 'integer', default: 255, min: 1, max: 255, help: 'Longest tenant, database or collection name.' },
  { key: 'api.validation.vector_dimension_max', type: 'integer', default: 4096, min: 1, max: 4096, help: 'Largest collection dimension.' },
  { key: 'api.validation.top_k_max', type: 'integer', default: 1000, min: 1, max: 10000, help: 'Largest top_k a query may ask for.' },
  { key: 'api.validation.max_batch_size', type: 'integer', default: 10000, min: 1, max: 100000, help: 'Documents (or ids) one request may carry.' },
  { key: 'api.validation.max_metadata_bytes', type: 'integer', default: 65536, min: 2, max: 16 * 1024 * 1024, help: "JSON size of one document's metadata." },
  { key: 'admin.enabled', type: 'boolean', default: true, help: 'Serve the /admin routes (health, metrics, compaction, dead-letter queue, circuit breaker, runtime config).' },
  { key: 'admin.bind_address', type: 'string', default: '', example: '127.0.0.1:8081', env: 'AKIDB_ADMIN_BIND_ADDRESS', help: 'HOST:PORT of a separate admin listener (port 0 picks a free one). Empty: the admin routes are served on the REST port.' },
  { key: 'admin.health_check.check_database', type: 'boolean', default: true, help: 'The admin health check (GET /admin/health and the background check) checks the catalog.' },
  { key: 'admin.health_check.check_s3', type: 'boolean', default: true, help: 'The admin health check checks the object store (when one is configured) with a listing.' },
  { key: 'admin.health_check.check_memory', type: 'boolean', default: true, help: 'The admin health check checks resident memory against `memory_threshold`.' },
  { key: 'admin.health_check.memory_threshold', type: 'number', default: 0.9, min: 0.01, max: 1, help: 'Share of the memory limit (cgroup limit, else RAM) at or above which the memory check fails.' },
  { key: 'admin.health_check.interval_seconds', type: 'number', default: 30, min: 0, max: 3600, help: 'Run the admin health check at start and this often in the background, so `health_check_status` (and the HealthCheckFailing alert) is current without a caller; a change of state is logged. 0: only when GET /admin/health is called.' },
  { key: 'admin.health_check.timeout_seconds', type: 'number', default: 5, min: 0.01, max: 300, aliases: ['admin.health_check.timeout'], help: 'How long each check of the admin health check may take before it counts as unhealthy.' },
  { key: 'auth.enabled', type: 'boolean', default: false, env: 'AKIDB_AUTH_ENABLED', help: 'Require a credential (API key or JWT) on every route but /health/live and /health/ready, on REST, admin and gRPC alike.' },
  { key: 'auth.api_keys', type: 'string', default: '', example: 'REPLACE_WITH_A_LONG_RANDOM_KEY:admin', env: 'AKIDB_API_KEYS', secret: true, help: 'Bootstrap API keys, comma-separated `KEY:ROLE[:TENANT]` (role `viewer`, `operator` or `admin`, default admin; keys of 16 characters or more). Held in memory only, hashed; create the rest with POST /admin/api-keys.' },
  { key: 'auth.jwt_secret', type: 'string', default: '', env: 'AKIDB_JWT_SECRET', secret: true, help: 'Shared secret for HS256 JSON Web Tokens (at least 32 bytes). Empty: HS256 tokens are refused.' },
  { key: 'auth.jwt_jwks_url', type: 'string', default: '', example: 'https://auth.example.com/.well-known/jwks.json', env: 'AKIDB_JWT_JWKS_URL', help: 'JWKS document with the public keys of RS256/384/512, PS256/384/512, ES256/384 and EdDSA tokens (fetched on demand, cached). Empty: asymmetric tokens are refused.' },
  { key: 'auth.jwt_issuer', type: 'string', default: '', env: 'AKIDB_JWT_ISSUER', help: 'Required `iss` of every token. Empty: not checked.' },
  { key: 'auth.jwt_audience', type: 'string', default: '', env: 'AKIDB_JWT_AUDIENCE', help: 'Required `aud` of every token. Empty: not checked.' },
  { key: 'auth.jwt_role_claim', type: 'string', default: 'role', help: 'Claim naming the role (`monitor`, `viewer`, `operator`, `admin`); an array (e.g. `roles`) grants the highest role it lists.' },
  { key: 'auth.jwt_tenant_claim', type: 'string', default: 'tenant', help: 'Claim naming the one tenant the token may use. Absent: all tenants.' },
  { key: 'auth.jwt_clock_tolerance_seconds', type: 'integer', default: 5, min: 0, max: 600, help: 'Clock skew allowed when checking `exp` and `nbf`.' },
  { key: 'auth.rate_limit_per_second', type: 'number', default: 0, min: 0, max: 1_000_000, env: 'AKIDB_RATE_LIMIT_PER_SECOND', help: 'Requests per second each credential may make (each client address when auth is off), as a token bucket; over it: 429 RATE_LIMITED with Retry-After (gRPC RESOURCE_EXHAUSTED). 0: no limit.' },
  { key: 'auth.rate_limit_burst', type: 'integer', default: 0, min: 0, max: 1_000_000, env: 'AKIDB_RATE_LIMIT_BURST', help: 'Bucket size: requests a credential may make at once. 0: twice `rate_limit_per_second` (at least 1).' },
  { key: 'query.max_filter_depth', type: 'integer', default: 32, min: 1, max: 256, help: 'Deepest filter nesting.' },
  { key: 'query.max_filter_clauses', type: 'integer', default: 100, min: 1, max: 10000, help: 'Most clauses one filter may hold.' },
  { key: 'tracing.enabled', type: 'boolean', default: false, env: 'AKIDB_TELEMETRY_ENABLED', help: 'Export OpenTelemetry traces (a span per REST request and gRPC call, with engine, object-store, upload and compaction spans beneath) to `endpoint`. Off: no span is made and nothing is sent.' },
  { key: 'tracing.endpoint', type: 'string', default: 'http://localhost:4317', env: 'AKIDB_JAEGER_ENDPOINT', help: 'OTLP collector: Jaeger (1.35+), Tempo or the OpenTelemetry Collector. `http://host:4317` is OTLP/gRPC; `http://host:4318/v1/traces` is OTLP/HTTP (see `protocol`). `https://` for TLS.' },
  { key: 'tracing.protocol', type: 'enum', default: 'auto', values: ['auto', 'grpc', 'http/protobuf'], env: 'AKIDB_TRACING_PROTOCOL', help: 'OTLP transport. `auto`: OTLP/HTTP when `endpoint` has a path or port 4318 (a URL on 4318 without a path gets `/v1/traces`), OTLP/gRPC otherwise.' },
  { key: 'tracing.service_name', type: 'string', default: 'akidb', env: 'AKIDB_SERVICE_NAME', help: 'The `service.name` traces are filed under.' },
  { key: 'tracing.sample_rate', type: 'number', default: 0.01, min: 0, max: 1, env: 'AKIDB_SAMPLING_RATIO', aliases: ['tracing.sampling_ratio'], help: 'Share of new traces recorded (0..1); 1.0 records every request. A request that carries a W3C `traceparent` follows its caller\'s sampling decision instead.' },
];

/** The server's configuration, as `loadConfig` returns it (deep-frozen). */
export interface AkiConfig {
  server: { host: string; insecure: boolean; tls_cert: string; tls_key: string; rest_port: number; grpc_port: number; timeout_seconds: number; max_body_bytes: number; shutdown_grace_seconds: number };
  database: { path: string; max_connections: number; connection_timeout_seconds: number };
  features: { metrics_enabled: boolean; vector_persistence_enabled: boolean; auto_initialize: boolean };
  hnsw: { m: number; ef_construction: number; ef_search: number; threshold: number; quantization: 'f32' | 'f16' | 'i8'; build_threads: number };
  logging: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'; format: 'json' | 'pretty' };
  storage: {
    data_dir: string;
    tiering_policy: 'Memory' | 'MemoryS3' | 'S3Only';
    s3_bucket: string;
    s3_region: string;
    s3_endpoint: string;
    s3_access_key: string;
    s3_secret_key: string;
    s3_request_timeout_seconds: number;
    s3_sync_interval_ms: number;
    max_upload_lag_seconds: number;
    s3only_group_commit_ms: number;
    s3only_ack_timeout_seconds: number;
    cache_size: number;
    enable_background_compaction: boolean;
    compaction: { threshold_bytes: number; threshold_ops: number; max_segments: number; idle_flush_ms: number };
    s3_upload: { batch_size: number; max_concurrency: number; compression: 'none' | 'gzip' };
    retry: { max_retries: number; base_backoff_secs: number; max_backoff_secs: number };
    circuit_breaker: { enabled: boolean; failure_threshold: number; window_seconds: number; cooldown_seconds: number; half_open_successes: number; minimum_requests: number };
    dlq: { max_size: number; ttl_days: number; persistence_enabled: boolean; persistence_path: string; flush_interval_seconds: number };
  };
  api: { validation: { collection_name_max_length: number; vector_dimension_max: number; top_k_max: number; max_batch_size: number; max_metadata_bytes: number } };
  query: { max_filter_depth: number; max_filter_clauses: number };
  auth: { enabled: boolean; api_keys: string; jwt_secret: string; jwt_jwks_url: string; jwt_issuer: string; jwt_audience: string; jwt_role_claim: string; jwt_tenant_claim: string; jwt_clock_tolerance_seconds: number; rate_limit_per_second: number; rate_limit_burst: number };
  admin: { enabled: boolean; bind_address: string; health_check: { check_database: boolean; check_s3: boolean; check_memory: boolean; memory_threshold: number; interval_seconds: number; timeout_seconds: number } };
  tracing: { enabled: boolean; endpoint: string; protocol: 'auto' | 'grpc' | 'http/protobuf'; service_name: string; sample_rate: number };
}

/** Defaults that depend on the machine or on other options, filled in after parsing. */
export function derivedDefault(key: string, partial: { storage: { data_dir: string } }): string | number | null {
  if (key === 'hnsw.build_threads') return availableParallelism();
  if (key === 'database.path') return `${partial.storage.data_dir.replace(/\/+$/, '')}/metadata.db`;
  if (key === 'storage.dlq.persistence_path') return `${partial.storage.data_dir.replace(/\/+$/, '')}/dlq.json`;
  return null;
}
