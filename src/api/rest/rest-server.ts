import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import secureJson from 'secure-json-parse';
import type { Logger } from 'pino';
import type { AkiConfig } from '../../config/config-schema.js';
import type { AkiDB } from '../../engine/database.js';
import { AkiError, ERROR_CODES, type ErrorCode } from '../../errors.js';
import type { ServerMetrics } from '../../observability/metrics.js';
import type { ServerState } from '../../server/health.js';
import { registerAdminRoutes } from './admin-routes.js';
import { registerCollectionRoutes, registerTenantRoutes } from './collection-routes.js';
import { restSchemas } from './schemas.js';
import type { TieringRuntime } from '../../tiering/tiering-runtime.js';
import { credentialOf, type Authenticator, type Principal } from '../../security/authenticator.js';
import { restRule } from '../../security/permissions.js';
import { DEFAULT_TENANT } from '../../engine/database.js';
import { registerKeyRoutes } from './key-routes.js';
import { bindEmitter, endServerSpan, HTTP_HEADER_GETTER, noteError, runInContext, startServerSpan, tracingEnabled, type Span } from '../../observability/tracing.js';
import { registerBackupRoutes } from './backup-routes.js';

export interface RestServerOptions {
  db: AkiDB;
  config: AkiConfig;
  logger: Logger;
  metrics: ServerMetrics | null;
  state: ServerState;
  /** The object-storage tier, when a bucket is configured. */
  tiering?: TieringRuntime | null;
  /** Which routes: `all` (default), `api` (all but /admin, which then has its own listener) or `admin` (only /admin). */
  routes?: 'all' | 'api' | 'admin';
  /** Credentials, roles, tenants and rate limits; every request passes through it. */
  auth: Authenticator;
  /** TLS certificate and key (PEM); plain HTTP without. */
  tls?: { cert: Buffer; key: Buffer } | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling, set before any handler runs. */
    principal: Principal | null;
  }
}

/** The Fastify instance the REST face runs on. */
export type RestServer = FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>;

/** The tenant a request addresses: its `:tenant`, the default one for the short `/api/v1/collections` form, or none. */
function tenantOf(req: FastifyRequest): string | null {
  const p = req.params as { tenant?: unknown } | undefined;
  if (typeof p?.tenant === 'string') return p.tenant;
  return req.routeOptions.url?.startsWith('/api/v1/collections') ? DEFAULT_TENANT : null;
}

/** The JSON error body every failure answers with. */
export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Build the REST server (not yet listening): routes, validation, error translation, health and metrics. */
export async function buildRestServer(opts: RestServerOptions): Promise<RestServer> {
  const { config, logger, metrics, state, auth } = opts;
  // Time allowed to receive a whole request. Node reads these only when the server is constructed:
  // left to Fastify (which sets requestTimeout afterwards) they keep Node's defaults, deadlines
  // checked every 30 s and a 60 s headersTimeout that, being above requestTimeout, bounds the body.
  // At least a second: a sub-second handler limit must not cut a large body still on the wire.
  const receiveMs = Math.max(1000, Math.ceil(config.server.timeout_seconds * 1000));
  const timeouts = { requestTimeout: receiveMs, headersTimeout: receiveMs, connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.ceil(receiveMs / 4))) };
  const app = Fastify({
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' as const, ...timeouts } } : { http: timeouts }),
    loggerInstance: logger,
    // One debug line a request from our own hook instead of Fastify's two info lines.
    logController: new LogController({ disableRequestLogging: true }),
    // Names are up to 255 characters and document ids up to 1 KiB, percent-encoded in paths.
    routerOptions: { maxParamLength: 4096 },
    bodyLimit: config.server.max_body_bytes,
    // The handler's own limit is enforced separately.
    requestTimeout: receiveMs,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // false: Fastify would otherwise take the header as is and never call genReqId to check it.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
    // Undecodable URLs and over-long path parameters are rejected by the router, before the error handler.
    frameworkErrors: (err, _req, reply) => {
      const { status, body } = toErrorBody(err);
      // The reply is typed by route schemas this handler never sees.
      void (reply as unknown as FastifyReply).status(status).send(body);
    },
    // Requests Node's HTTP parser refuses (bytes not allowed in a URL, headers over 16 KiB) reach no route.
    clientErrorHandler: (err, socket) => {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ECONNRESET' || socket.destroyed) return;
      const status = e.code === 'HPE_HEADER_OVERFLOW' ? 431 : e.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const { body } = toErrorBody(Object.assign(new Error(status === 431 ? 'Request headers exceed 16 KiB' : status === 408 ? 'Request not received in time' : 'Malformed HTTP request'), { statusCode: status, code: e.code }));
      const text = JSON.stringify(body);
      const refuse = (): void => {
        if (socket.destroyed) return;
        if (socket.writable) socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
        socket.destroy();
      };
      // Whole requests pipelined before the bad bytes were served: their answers go out first, in
      // order (Node hands the socket to each queued response in turn), then the refusal. One whose
      // own bytes are broken (its body) is not waited for.
      const next = (): void => {
        const res = (socket as typeof socket & { _httpMessage?: ServerResponse | null })._httpMessage;
        if (res && res.req.complete && !res.writableFinished) res.once('close', next);
        else refuse();
      };
      next();
    },
  });
  // Fastify parses text/plain by default; bodies must be JSON (415 otherwise).
  app.removeContentTypeParser('text/plain');
  // JSON bodies through secure-json-parse (as Fastify's own parser), but with our codes: the
  // parse error's position in MALFORMED_JSON, a __proto__ / constructor key named as such, and a
  // DELETE or GET whose client sent the JSON content type without a body let through.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    if (text.length === 0) {
      if (req.method === 'DELETE' || req.method === 'GET') return done(null, undefined);
      return done(new AkiError('MALFORMED_JSON', {}, 'The JSON body is empty'), undefined);
    }
    try {
      done(null, secureJson.parse(text, { protoAction: 'error', constructorAction: 'error' }));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (/forbidden (prototype|constructor) property/.test(message)) return done(new AkiError('INVALID_ARGUMENT', { reason: 'forbidden_key' }, 'The body holds a __proto__ or constructor.prototype key, which is refused'), undefined);
      done(new AkiError('MALFORMED_JSON', {}, `The body is not valid JSON: ${message.slice(0, 200)}`), undefined);
    }
  });
  const schemas = restSchemas(config);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'AkiDB REST API', version: state.version, description: 'Collections, documents and vector search. Errors are `{"error":{"code","message","details"}}`; see docs/errors.md.' },
      components: { schemas: { Error: schemas.error } },
    },
  });

  // Every route must be in the permission table; one that is not stops the start.
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      if (!restRule(method, route.url)) throw new Error(`REST route ${method} ${route.url} has no entry in the permission table (src/security/permissions.ts)`);
    }
  });
  app.decorateRequest('principal', null);
  if (tracingEnabled()) addTracingHooks(app, opts.tls ? 'https' : 'http');
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    if (state.shuttingDown && !req.url.startsWith('/health')) throw new AkiError('SHUTTING_DOWN');
    // Before the body is read: an unauthenticated caller gets 401 whatever it sent.
    const url = req.routeOptions.url;
    const rule = url ? restRule(req.method, url) : null;
    if (rule?.permission === 'public') return;
    const principal = await auth.authenticate(credentialOf(req.headers['x-api-key'], req.headers.authorization)).catch((err: unknown) => {
      // Failed attempts draw on their address's bucket, so guessing keys is as slow as the limit.
      if (err instanceof AkiError && err.code === 'UNAUTHENTICATED') auth.limit(`ip:${req.ip}`);
      throw err;
    });
    auth.limit(principal.kind === 'anonymous' ? `ip:${req.ip}` : principal.id);
    if (rule) auth.authorize(principal, rule, tenantOf(req));
    req.principal = principal;
  });
  app.addHook('onResponse', async (req, reply) => {
    const endpoint = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    metrics?.observeRequest('rest', req.method, endpoint, status, status < 400, reply.elapsedTime / 1000);
    const line = { method: req.method, url: endpoint, status, ms: Math.round(reply.elapsedTime * 100) / 100 };
    if (status >= 500) req.log.error(line, 'request failed');
    else req.log.debug(line, 'request');
  });

  app.setErrorHandler((err: FastifyError | AkiError, req, reply) => {
    const body = toErrorBody(err);
    const status = body.status;
    const span = requestSpans.get(req);
    if (span) noteError(span, body.body.error.code);
    if (status >= 500 && !(err instanceof AkiError && (err.code === 'SHUTTING_DOWN' || err.code === 'REQUEST_TIMEOUT'))) req.log.error({ err }, 'unhandled error');
    if (status === 503) void reply.header('retry-after', '1');
    if (err instanceof AkiError && err.code === 'RATE_LIMITED') void reply.header('retry-after', String(err.details.retry_after_seconds));
    if (status === 401) void reply.header('www-authenticate', 'Bearer realm="akidb"');
    return reply.status(status).send(body.body);
  });
  app.setNotFoundHandler((req, reply) => {
    return reply.status(404).send(errorBody(new AkiError('ROUTE_NOT_FOUND', { method: req.method, url: req.url.slice(0, 200) }, `No route ${req.method} ${req.url.slice(0, 200)}`)));
  });

  // Health and metrics.
  app.get('/health', { schema: { summary: 'Component health (503 when unhealthy)', tags: ['health'], response: { 200: schemas.health, 503: schemas.health } } }, async (_req, reply) => {
    const report = await state.report();
    return reply.status(report.status === 'unhealthy' ? 503 : 200).send(report);
  });
  app.get('/health/live', { schema: { summary: 'Liveness: 200 while the process serves requests', tags: ['health'] } }, async () => ({ status: 'alive' }));
  app.get('/health/ready', { schema: { summary: 'Readiness: 200 once collections are open and the catalog answers; 503 while starting or shutting down', tags: ['health'] } }, async (_req, reply) => {
    if (!state.ready) return reply.status(503).send({ status: state.shuttingDown ? 'shutting_down' : 'starting' });
    const report = await state.report();
    if (report.components.catalog.status === 'unhealthy' || report.components.storage.status === 'unhealthy') return reply.status(503).send({ status: 'not_ready', components: report.components });
    return { status: 'ready' };
  });
  if (metrics) {
    app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['health'] } }, async (_req, reply) => {
      const text = await metrics.registry.metrics();
      return reply.header('content-type', metrics.registry.contentType).send(text);
    });
  }
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const ctx = { db: opts.db, config, metrics, schemas, timeoutMs: config.server.timeout_seconds * 1000, tiering: opts.tiering ?? null, auth };
  const routes = opts.routes ?? 'all';
  if (routes !== 'api' && config.admin.enabled) {
    await app.register(async (scope) => {
      registerAdminRoutes(scope, ctx);
      registerKeyRoutes(scope, ctx);
      registerBackupRoutes(scope, ctx, state.version);
    });
  }
  if (routes === 'admin') return app;
  await app.register(
    async (scope) => {
      registerTenantRoutes(scope, ctx);
      registerCollectionRoutes(scope, ctx, false);
    },
    { prefix: '/api/v1' },
  );
  await app.register(async (scope) => registerCollectionRoutes(scope, ctx, true), { prefix: '/api/v1/tenants/:tenant/databases/:database' });
  return app;
}

/** Probes and scrapes: every few seconds from every load balancer and Prometheus, and nothing to learn from a trace. */
const UNTRACED_ROUTES = new Set(['/health', '/health/live', '/health/ready', '/metrics', '/admin/health', '/admin/metrics']);

/** The span of each request in flight (tracing on only). */
const requestSpans = new WeakMap<FastifyRequest, Span>();

/**
 * One server span a request, `METHOD route`, from onRequest to onResponse; the caller's W3C
 * `traceparent` is continued. Registered first, so authentication, body parsing and the handler
 * all run in the span's context. Only added while tracing is on.
 */
function addTracingHooks(app: RestServer, scheme: 'http' | 'https'): void {
  app.addHook('onRequest', (req, _reply, done) => {
    const route = req.routeOptions.url;
    if (route !== undefined && UNTRACED_ROUTES.has(route)) return done();
    const server = startServerSpan(route ? `${req.method} ${route}` : req.method, req.headers, HTTP_HEADER_GETTER, () => {
      const q = req.url.indexOf('?');
      const ua = req.headers['user-agent'];
      return {
        'http.request.method': req.method,
        'url.path': q < 0 ? req.url : req.url.slice(0, q),
        'url.scheme': scheme,
        'client.address': req.ip,
        'akidb.request_id': req.id,
        ...(route ? { 'http.route': route } : {}),
        ...(typeof ua === 'string' ? { 'user_agent.original': ua.slice(0, 256) } : {}),
      };
    });
    if (!server) return done();
    requestSpans.set(req, server.span);
    // The body's 'data' and 'end' events come from the socket, outside this context, unless bound.
    bindEmitter(server.context, req.raw);
    runInContext(server.context, done);
  });
  app.addHook('onResponse', (req, reply, done) => {
    const span = requestSpans.get(req);
    if (span) {
      requestSpans.delete(req);
      endServerSpan(span, reply.statusCode >= 500, { 'http.response.status_code': reply.statusCode });
    }
    done();
  });
  app.addHook('onRequestAbort', (req, done) => {
    const span = requestSpans.get(req);
    if (span) {
      requestSpans.delete(req);
      endServerSpan(span, false, { 'error.type': 'ABORTED' });
    }
    done();
  });
}

/** The HTTP status and JSON body for any error a request raised: the one REST translation point. */
export function toErrorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof AkiError) return { status: err.httpStatus, body: errorBody(err) };
  const e = err as Partial<FastifyError> & { validation?: { instancePath?: string; keyword?: string; params?: Record<string, unknown>; message?: string }[] };
  if (e.validation && e.validation.length > 0) {
    const v = e.validation[0]!;
    const where = `${e.validationContext ?? 'body'}${v.instancePath ?? ''}`;
    const code = validationCode(v.instancePath ?? '', v.keyword ?? '');
    const ae = new AkiError(code, { field: where, rule: v.keyword, ...v.params }, `${where} ${v.message ?? 'is invalid'}`);
    return { status: ae.httpStatus, body: errorBody(ae) };
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return wrap('PAYLOAD_TOO_LARGE', 'The request body exceeds [server] max_body_bytes');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return wrap('UNSUPPORTED_MEDIA_TYPE', 'Request bodies must be sent as application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return wrap('MALFORMED_JSON', 'The JSON body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return wrap('MALFORMED_JSON', e.message ?? 'The body is not valid JSON');
    default:
  }
  if (err instanceof SyntaxError || e.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') return wrap('MALFORMED_JSON', (err as Error).message);
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    // Anything else Fastify rejected before our code ran (bad headers, prototype poisoning ...).
    return { status: e.statusCode, body: { error: { code: 'INVALID_ARGUMENT', message: e.message ?? 'Bad request', details: { reason: e.code ?? null } } } };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: ERROR_CODES.INTERNAL.message, details: {} } } };
}

function wrap(code: ErrorCode, message: string): { status: number; body: ErrorBody } {
  const e = new AkiError(code, {}, message);
  return { status: e.httpStatus, body: errorBody(e) };
}

export function errorBody(e: AkiError): ErrorBody {
  return { error: { code: e.code, message: e.message, details: { ...e.details } } };
}

/** The specific code for a schema violation at `path`, so REST answers like the engine does. */
function validationCode(path: string, keyword: string): ErrorCode {
  if (path === '/top_k') return 'INVALID_TOP_K';
  if (path === '/dimension') return 'INVALID_DIMENSION';
  if (path === '/metric') return 'INVALID_METRIC';
  if (path === '/name') return 'INVALID_NAME';
  if (path.startsWith('/index')) return 'INVALID_INDEX_PARAMS';
  if (/(^|\/)(query_)?vector(\/|$)/.test(path)) return 'INVALID_VECTOR';
  if (path.startsWith('/filter')) return 'INVALID_FILTER';
  if (/^\/documents\/\d+/.test(path)) return 'INVALID_DOCUMENT';
  if (keyword === 'additionalProperties' || keyword === 'required') return 'INVALID_ARGUMENT';
  return 'INVALID_ARGUMENT';
}

