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
}

/** Every option the server reads. Defaults, env names, flags and docs all come from this table. */
export const CONFIG_SCHEMA: readonly OptionSpec[] = [
  { key: 'server.host', type: 'string', default: '127.0.0.1', env: 'AKIDB_HOST', flag: 'host', help: 'Address the REST and gRPC servers bind. Loopback by default; set 0.0.0.0 to serve other machines (and put authentication in front).' },
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
  { key: 'storage.tiering_policy', type: 'enum', default: 'Memory', values: ['Memory'], env: 'AKIDB_TIERING_POLICY', help: 'Default tier of new collections. `Memory`: local WAL and segments; an acknowledged write is fsynced to the local WAL.' },
  { key: 'storage.enable_background_compaction', type: 'boolean', default: true, help: 'Flush, merge and index in the background.' },
  { key: 'storage.compaction.threshold_bytes', type: 'integer', default: 100 * 1024 * 1024, min: 1024, max: 64 * 1024 * 1024 * 1024, help: 'Flush the memtable to a segment once the WAL holds this many bytes.' },
  { key: 'storage.compaction.threshold_ops', type: 'integer', default: 10000, min: 1, max: 100_000_000, help: '... or this many operations.' },
  { key: 'storage.compaction.max_segments', type: 'integer', default: 8, min: 1, max: 1024, help: 'Merge when a collection has more segments than this.' },
  { key: 'storage.compaction.idle_flush_ms', type: 'integer', default: 1000, min: 1, max: 3_600_000, help: 'Flush and index what is pending once writes pause this long.' },
  { key: 'api.validation.collection_name_max_length', type: 'integer', default: 255, min: 1, max: 255, help: 'Longest tenant, database or collection name.' },
  { key: 'api.validation.vector_dimension_max', type: 'integer', default: 4096, min: 1, max: 4096, help: 'Largest collection dimension.' },
  { key: 'api.validation.top_k_max', type: 'integer', default: 1000, min: 1, max: 10000, help: 'Largest top_k a query may ask for.' },
  { key: 'api.validation.max_batch_size', type: 'integer', default: 10000, min: 1, max: 100000, help: 'Documents (or ids) one request may carry.' },
  { key: 'api.validation.max_metadata_bytes', type: 'integer', default: 65536, min: 2, max: 16 * 1024 * 1024, help: "JSON size of one document's metadata." },
  { key: 'admin.health_check.timeout_seconds', type: 'number', default: 5, min: 0.01, max: 300, aliases: ['admin.health_check.timeout'], help: 'How long each check of GET /admin/health may take before it counts as unhealthy.' },
  { key: 'query.max_filter_depth', type: 'integer', default: 32, min: 1, max: 256, help: 'Deepest filter nesting.' },
  { key: 'query.max_filter_clauses', type: 'integer', default: 100, min: 1, max: 10000, help: 'Most clauses one filter may hold.' },
];

/** The server's configuration, as `loadConfig` returns it (deep-frozen). */
export interface AkiConfig {
  server: { host: string; rest_port: number; grpc_port: number; timeout_seconds: number; max_body_bytes: number; shutdown_grace_seconds: number };
  database: { path: string; max_connections: number; connection_timeout_seconds: number };
  features: { metrics_enabled: boolean; vector_persistence_enabled: boolean; auto_initialize: boolean };
  hnsw: { m: number; ef_construction: number; ef_search: number; threshold: number; quantization: 'f32' | 'f16' | 'i8'; build_threads: number };
  logging: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'; format: 'json' | 'pretty' };
  storage: {
    data_dir: string;
    tiering_policy: 'Memory';
    enable_background_compaction: boolean;
    compaction: { threshold_bytes: number; threshold_ops: number; max_segments: number; idle_flush_ms: number };
  };
  api: { validation: { collection_name_max_length: number; vector_dimension_max: number; top_k_max: number; max_batch_size: number; max_metadata_bytes: number } };
  query: { max_filter_depth: number; max_filter_clauses: number };
  admin: { health_check: { timeout_seconds: number } };
}

/** Defaults that depend on the machine or on other options, filled in after parsing. */
export function derivedDefault(key: string, partial: { storage: { data_dir: string } }): string | number | null {
  if (key === 'hnsw.build_threads') return availableParallelism();
  if (key === 'database.path') return `${partial.storage.data_dir.replace(/\/+$/, '')}/metadata.db`;
  return null;
}
