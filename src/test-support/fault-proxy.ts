import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream';

/**
 * An HTTP proxy in front of a loopback server (s3rver) that stages outages on demand: failures
 * with S3-style XML errors, connection resets, latency and silence. One-shot faults (`failNext`,
 * `resetNext`) are queued in front of the standing mode (`pass`, `delay`, `failAll`, `resetAll`,
 * `blackhole`); `pass()` clears both. Requests are forwarded byte for byte with their Host header
 * as the client sent it, so SigV4 signatures (which cover Host) still verify at the target.
 */
export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: the endpoint to give the client instead of the target's. */
  readonly endpoint: string;
  readonly port: number;
  /** Forward everything at once; clears queued one-shot faults and any delay. */
  pass(): void;
  /** Answer the next `n` requests with `status` and an S3 XML error (code from the status unless given), unforwarded. */
  failNext(n: number, status: number, code?: string): void;
  /** Answer every request with `status` until the mode changes (a "503 storm", a revoked key's 403). */
  failAll(status: number, code?: string): void;
  /** Reset the connection (TCP RST) of the next `n` requests instead of forwarding them. */
  resetNext(n: number): void;
  /** Reset every request's connection until the mode changes. */
  resetAll(): void;
  /** Forward every request after `ms` of added latency (`delay(0)` is `pass` without clearing the queue). */
  delay(ms: number): void;
  /** Accept requests and never answer (the client's timeout must fire). */
  blackhole(): void;
  /** Requests received, whatever became of them. */
  readonly requests: number;
  /** Requests received by HTTP method (`GET`, `PUT`, `HEAD`, `DELETE`, ...). */
  readonly byMethod: Readonly<Record<string, number>>;
  /** Requests sent on to the target. */
  readonly forwarded: number;
  /** Requests answered by a fault (failure, reset or blackhole) instead of the target. */
  readonly injected: number;
  /** Zero every counter. */
  resetCounters(): void;
  /** Close the proxy, cutting every open connection (blackholed ones included). */
  stop(): Promise<void>;
}

type Fault = { kind: 'fail'; status: number; code: string } | { kind: 'reset' } | { kind: 'blackhole' };
type Standing = Fault | { kind: 'forward'; delayMs: number };

const S3_ERROR_CODES: Record<number, string> = {
  400: 'InvalidRequest',
  403: 'AccessDenied',
  404: 'NoSuchBucket',
  408: 'RequestTimeout',
  429: 'TooManyRequests',
  500: 'InternalError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

// Per-connection headers (RFC 9110 §7.6.1): each hop sets its own. Host and signed headers stay.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade']);

function endToEnd(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function sendS3Error(res: http.ServerResponse, status: number, code: string, message: string): void {
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`;
  // Node sends no body for a HEAD, as S3 does: the client then sees only the status.
  res.writeHead(status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
    'x-amz-request-id': 'fault-proxy',
  });
  res.end(body);
}

/** Start a fault-injecting proxy on 127.0.0.1 (free port) forwarding to 127.0.0.1:`targetPort`, in pass mode. */
export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  let standing: Standing = { kind: 'forward', delayMs: 0 };
  let queue: Fault[] = [];
  let requests = 0;
  let forwarded = 0;
  let injected = 0;
  let byMethod: Record<string, number> = {};
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const agent = new http.Agent({ keepAlive: true });

  const forward = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.socket.destroyed || res.destroyed) return; // the client gave up while we waited
    forwarded++;
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: endToEnd(req.headers), agent },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.statusMessage, endToEnd(up.headers));
        pipeline(up, res, () => undefined);
      },
    );
    upstream.on('error', () => {
      // The target is down or cut us off: answer as a gateway would, or cut the client if we had begun.
      if (!res.headersSent) sendS3Error(res, 502, 'BadGateway', 'The fault proxy could not reach its target');
      else res.destroy();
    });
    pipeline(req, upstream, () => undefined);
  };

  const inject = (fault: Fault, req: http.IncomingMessage, res: http.ServerResponse): void => {
    injected++;
    switch (fault.kind) {
      case 'fail':
        // Read the body first so the client is not cut off mid-upload (that would be a reset, not a status).
        req.on('end', () => sendS3Error(res, fault.status, fault.code, 'Injected by the fault proxy'));
        req.on('error', () => undefined);
        req.resume();
        return;
      case 'reset':
        req.socket.resetAndDestroy();
        return;
      case 'blackhole':
        return; // keep the socket open and say nothing: stop() or the client's timeout ends it
    }
  };

  const server = http.createServer((req, res) => {
    requests++;
    const method = req.method ?? 'UNKNOWN';
    byMethod[method] = (byMethod[method] ?? 0) + 1;
    const next = queue.shift() ?? standing;
    if (next.kind !== 'forward') return inject(next, req, res);
    if (next.delayMs <= 0) return forward(req, res);
    const timer = setTimeout(() => {
      timers.delete(timer);
      forward(req, res);
    }, next.delayMs);
    timers.add(timer);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // A client that resets its own connection (a timeout) must not crash the proxy.
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const fault = (status: number, code?: string): Fault => ({
    kind: 'fail',
    status,
    code: code ?? S3_ERROR_CODES[status] ?? (status >= 500 ? 'InternalError' : 'InvalidRequest'),
  });
  const count = (n: number): number => {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`count must be a non-negative integer, got ${n}`);
    return n;
  };

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    pass() {
      queue = [];
      standing = { kind: 'forward', delayMs: 0 };
    },
    failNext(n, status, code) {
      for (let i = count(n); i > 0; i--) queue.push(fault(status, code));
    },
    failAll(status, code) {
      standing = fault(status, code);
    },
    resetNext(n) {
      for (let i = count(n); i > 0; i--) queue.push({ kind: 'reset' });
    },
    resetAll() {
      standing = { kind: 'reset' };
    },
    delay(ms) {
      standing = { kind: 'forward', delayMs: ms };
    },
    blackhole() {
      standing = { kind: 'blackhole' };
    },
    get requests() {
      return requests;
    },
    get byMethod() {
      return { ...byMethod };
    },
    get forwarded() {
      return forwarded;
    },
    get injected() {
      return injected;
    },
    resetCounters() {
      requests = forwarded = injected = 0;
      byMethod = {};
    },
    async stop() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      agent.destroy();
      await closed;
    },
  };
}
