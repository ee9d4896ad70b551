import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { memoryLimitBytes } from '../util/memory-limit.js';

/** Buckets for request and search latency: 100 µs to 10 s. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What the metrics read from the database when scraped. */
export interface MetricsSource {
  collectionCount(): number;
  vectorCount(): Promise<number>;
}

/**
 * The server's Prometheus metrics, with seed 000's names, plus prom-client's process metrics.
 * `status` is "success" or "error" (seed 000's alert rule), `code` the HTTP status or gRPC code.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'akidb_requests_total', help: 'Requests served, by protocol, endpoint, status (success | error) and code', labelNames: ['protocol', 'method', 'endpoint', 'status', 'code'] as const, registers: [this.registry] });
  readonly requestDuration = new Histogram({ name: 'akidb_request_duration_seconds', help: 'Request latency by protocol and endpoint', labelNames: ['protocol', 'method', 'endpoint'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly searchLatency = new Histogram({ name: 'akidb_search_latency_seconds', help: 'Time the engine spent answering vector searches', buckets: LATENCY_BUCKETS, registers: [this.registry] });
  /** seed 004 US-714: the admin health check's outcome (1 healthy, 0 unhealthy) and duration. */
  readonly healthCheckStatus = new Gauge({ name: 'health_check_status', help: 'Admin health check: 1 healthy, 0 unhealthy', registers: [this.registry] });
  readonly healthCheckDuration = new Histogram({ name: 'health_check_duration_seconds', help: 'Time an admin health check took', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [this.registry] });
  readonly indexBuildDuration = new Histogram({ name: 'akidb_index_build_duration_seconds', help: 'HNSW index build time (full or incremental)', labelNames: ['kind'] as const, buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800], registers: [this.registry] });

  constructor(source: MetricsSource) {
    new Gauge({ name: 'akidb_collections_total', help: 'Collections in the catalog', registers: [this.registry], collect() {
      this.set(source.collectionCount());
    } });
    new Gauge({ name: 'akidb_vectors_total', help: 'Live vectors across all collections', registers: [this.registry], async collect() {
      this.set(await source.vectorCount());
    } });
    // What process_resident_memory_bytes is measured against (the admin health check's memory limit).
    new Gauge({ name: 'akidb_memory_limit_bytes', help: 'Memory this process may use: its cgroup limit, else the machine RAM', registers: [this.registry], collect() {
      this.set(memoryLimitBytes());
    } });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Count and time one request. */
  observeRequest(protocol: 'rest' | 'grpc', method: string, endpoint: string, code: string | number, ok: boolean, seconds: number): void {
    this.requests.inc({ protocol, method, endpoint, status: ok ? 'success' : 'error', code: String(code) });
    this.requestDuration.observe({ protocol, method, endpoint }, seconds);
  }
}
