import type { EventEmitter } from 'node:events';
import { context, diag, DiagLogLevel, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, INVALID_SPAN_CONTEXT, type Attributes, type Context, type Span, type TextMapGetter, type Tracer } from '@opentelemetry/api';
import type { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { Logger } from 'pino';
import type { AkiConfig } from '../config/config-schema.js';
import { AkiError } from '../errors.js';

export { SpanKind, type Span, type Attributes };

/** Attributes of a span, or a function that builds them: called only when the span is recorded. */
export type SpanAttrs = Attributes | (() => Attributes);

/** Options of `withSpan`. */
export interface SpanOptions {
  kind?: SpanKind;
  /** Parent span, instead of the active context's (for callbacks that run in another caller's context). */
  parent?: Span;
}

const ATTR_ERROR_TYPE = 'error.type';

/** The span handed to `withSpan`'s function while tracing is off: records nothing, allocates nothing. */
const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

interface TracingState {
  provider: NodeTracerProvider;
  tracer: Tracer;
}

/** Null while tracing is off: every helper below then returns after one check. */
let state: TracingState | null = null;

/** Whether spans are being made (tracing started and not stopped). */
export function tracingEnabled(): boolean {
  return state !== null;
}

/** How spans travel to the collector, and where. */
export interface TracingTarget {
  protocol: 'grpc' | 'http/protobuf';
  url: string;
}

/**
 * The transport and URL `[tracing] endpoint` and `protocol` name. `auto` takes OTLP/HTTP when the
 * endpoint has a path (`…/v1/traces`) or is on port 4318, OTLP/gRPC otherwise (`http://jaeger:4317`).
 * An OTLP/HTTP endpoint without a path gets the standard `/v1/traces`.
 */
export function tracingTarget(cfg: Pick<AkiConfig['tracing'], 'endpoint' | 'protocol'>): TracingTarget {
  const url = new URL(cfg.endpoint);
  const bare = url.pathname === '/' || url.pathname === '';
  const protocol = cfg.protocol !== 'auto' ? cfg.protocol : !bare || url.port === '4318' ? 'http/protobuf' : 'grpc';
  if (protocol === 'http/protobuf' && bare) url.pathname = '/v1/traces';
  return { protocol, url: protocol === 'grpc' ? url.origin : url.toString() };
}

/**
 * Start exporting spans to `[tracing] endpoint` (OTLP over gRPC or HTTP/protobuf, batched),
 * sampling root spans at `sample_rate` and following a caller's sampling decision otherwise. Does
 * nothing when `[tracing] enabled` is false. Registers the async-local-storage context manager and
 * the W3C `traceparent` propagator for the process. Call `stopTracing` at shutdown to send what is
 * queued.
 */
export async function startTracing(cfg: AkiConfig['tracing'], meta: { version: string; logger: Logger }): Promise<boolean> {
  if (!cfg.enabled || state !== null) return state !== null;
  const target = tracingTarget(cfg);
  // Loaded only when enabled: the SDK and exporter take longer to import than the rest of the server.
  const [exporterModule, { resourceFromAttributes }, { BatchSpanProcessor, NodeTracerProvider, ParentBasedSampler, TraceIdRatioBasedSampler }, { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION }] = await Promise.all([
    target.protocol === 'grpc' ? import('@opentelemetry/exporter-trace-otlp-grpc') : import('@opentelemetry/exporter-trace-otlp-proto'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/semantic-conventions'),
  ]);
  if (state !== null) return true;
  const log = meta.logger.child({ component: 'tracing' });
  // Export failures reach the OpenTelemetry diagnostic logger only; without this they are silent.
  diag.setLogger(
    {
      error: (message, ...args) => log.warn({ detail: args.map(String).join(' ') }, `OpenTelemetry: ${message}`),
      warn: (message, ...args) => log.warn({ detail: args.map(String).join(' ') }, `OpenTelemetry: ${message}`),
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
  const exporter = new exporterModule.OTLPTraceExporter({ url: target.url, timeoutMillis: 5000 });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: cfg.service_name, [ATTR_SERVICE_VERSION]: meta.version }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(cfg.sample_rate) }),
    spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: 4096, maxExportBatchSize: 512, scheduledDelayMillis: 2000, exportTimeoutMillis: 5000 })],
  });
  provider.register();
  state = { provider, tracer: provider.getTracer('akidb', meta.version) };
  log.info({ endpoint: target.url, protocol: target.protocol, serviceName: cfg.service_name, sampleRate: cfg.sample_rate }, 'OpenTelemetry initialized');
  return true;
}

/** Send every ended span still queued, then stop tracing; waits at most `timeoutMs`. Idempotent. */
export async function stopTracing(timeoutMs = 5000): Promise<void> {
  const s = state;
  if (s === null) return;
  state = null;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
    timer.unref();
  });
  await Promise.race([s.provider.shutdown().catch(() => undefined), expired]);
  clearTimeout(timer);
  trace.disable();
  context.disable();
  propagation.disable();
  diag.disable();
}

/**
 * Run `fn` inside a new span named `name`, a child of the active span (or of `options.parent`),
 * and end it when `fn` returns or its promise settles. A throw or rejection sets the span's status
 * to ERROR with the AkiError code (or the error's name) and rethrows. While tracing is off, `fn`
 * runs at once with a shared non-recording span: no span, context or attribute object is made.
 * Never put vectors, documents, metadata or credentials in `attrs`.
 */
export function withSpan<T>(name: string, attrs: SpanAttrs | undefined, fn: (span: Span) => T, options?: SpanOptions): T {
  const s = state;
  if (s === null) return fn(NOOP_SPAN);
  const parent = options?.parent !== undefined ? trace.setSpan(context.active(), options.parent) : context.active();
  const span = s.tracer.startSpan(name, options?.kind !== undefined ? { kind: options.kind } : undefined, parent);
  if (attrs !== undefined && span.isRecording()) span.setAttributes(typeof attrs === 'function' ? attrs() : attrs);
  let out: T;
  try {
    out = context.with(trace.setSpan(parent, span), fn, undefined, span);
  } catch (err) {
    markError(span, err);
    span.end();
    throw err;
  }
  if (out instanceof Promise) {
    return out.then(
      (value: unknown) => {
        span.end();
        return value;
      },
      (err: unknown) => {
        markError(span, err);
        span.end();
        throw err;
      },
    ) as T;
  }
  span.end();
  return out;
}

/** Set `attrs` on `span` only when it is recorded: the function is not called otherwise. */
export function setSpanAttributes(span: Span, attrs: () => Attributes): void {
  if (span.isRecording()) span.setAttributes(attrs());
}

/** Status ERROR with the AkiError code (or the error's name), and the same in `error.type`. No message: it may quote a request. */
export function markError(span: Span, err: unknown): void {
  if (!span.isRecording()) return;
  const type = errorType(err);
  span.setAttribute(ATTR_ERROR_TYPE, type);
  span.setStatus({ code: SpanStatusCode.ERROR, message: type });
}

/** Record the error code a request was answered with as `error.type` only: a server span's status follows its protocol's status (see `endServerSpan`). */
export function noteError(span: Span, code: string): void {
  if (span.isRecording()) span.setAttribute(ATTR_ERROR_TYPE, code);
}

function errorType(err: unknown): string {
  if (err instanceof AkiError) return err.code;
  if (err instanceof Error) return err.name;
  return 'Error';
}

/** A server span and the context to run its request in. */
export interface ServerSpan {
  span: Span;
  context: Context;
}

/**
 * Start the span of one incoming request (REST or gRPC), continuing the caller's trace when
 * `carrier` holds a W3C `traceparent`. Null while tracing is off. Only the propagation headers are
 * read from `carrier`; credentials never reach a span.
 */
export function startServerSpan<C>(name: string, carrier: C, getter: TextMapGetter<C>, attrs: () => Attributes): ServerSpan | null {
  const s = state;
  if (s === null) return null;
  const parent = propagation.extract(ROOT_CONTEXT, carrier, getter);
  const span = s.tracer.startSpan(name, { kind: SpanKind.SERVER }, parent);
  if (span.isRecording()) span.setAttributes(attrs());
  return { span, context: trace.setSpan(parent, span) };
}

/** End a server span; `failed` marks a fault of the server (5xx, or a gRPC INTERNAL-class status), which alone sets ERROR. */
export function endServerSpan(span: Span, failed: boolean, attrs: Attributes): void {
  if (span.isRecording()) {
    span.setAttributes(attrs);
    if (failed) span.setStatus({ code: SpanStatusCode.ERROR, ...(typeof attrs[ATTR_ERROR_TYPE] === 'string' ? { message: attrs[ATTR_ERROR_TYPE] } : {}) });
  }
  span.end();
}

/** Run `fn` with `ctx` active. */
export function runInContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** Make listeners added to `emitter` from now on run in `ctx` (a request's body arrives in the socket's context, not the request's). */
export function bindEmitter(ctx: Context, emitter: EventEmitter): void {
  context.bind(ctx, emitter);
}

/**
 * Run `fn` outside any request's trace: background work started from a request (a flush, a
 * replication loop) must not be recorded as part of it, long after it ended.
 */
export function detached<T>(fn: () => T): T {
  return state === null ? fn() : context.with(ROOT_CONTEXT, fn);
}

/** Reads W3C trace headers from Node's lower-cased IncomingHttpHeaders. */
export const HTTP_HEADER_GETTER: TextMapGetter<Record<string, string | string[] | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key.toLowerCase()],
};
