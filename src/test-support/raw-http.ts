import net from 'node:net';

/** One HTTP/1.x response read off a raw socket: status, headers (names lower-cased) and body. */
export interface RawResponse {
  statusLine: string;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** What a server did with the bytes written to one connection. */
export interface RawExchange {
  /** Whole responses, in order. */
  responses: RawResponse[];
  /** Bytes after the last whole response (empty unless the server sent something that is not HTTP or was cut off). */
  rest: Buffer;
  /** How it ended: the server closed the connection, reset it, or neither within the time allowed. */
  end: 'closed' | 'reset' | 'timeout';
  /** Milliseconds from the connection to its end. */
  ms: number;
  /** We half-closed (the server had fallen quiet) before the end. */
  halfClosed: boolean;
}

export interface RawExchangeOptions {
  /** Give up (destroying the socket, `end: 'timeout'`) this long after the last chunk was written. */
  timeoutMs: number;
  /**
   * Half-close once the server has sent nothing for this long after the last chunk: a client that has
   * said all it will. Omit to keep the sending side open, as a stalled client does.
   */
  quietMs?: number;
  /** Pause between chunks (default none). */
  pauseMs?: number;
  /** Write each chunk only once every earlier chunk has drawn a final (non-1xx) response; `timeoutMs` bounds each wait. */
  stepwise?: boolean;
}

/**
 * Connect to 127.0.0.1:`port`, write `chunks` (strings as latin1, so every char is the one byte it
 * names), read until the server closes the connection or the time runs out, and parse what came back.
 */
export function rawExchange(port: number, chunks: readonly (string | Buffer)[], opts: RawExchangeOptions): Promise<RawExchange> {
  return new Promise((resolve) => {
    const started = Date.now();
    const received: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1');
    let reset = false;
    let finished = false;
    let halfClosed = false;
    let quiet: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    const timers: NodeJS.Timeout[] = [];
    // With `stepwise`: the chunk waiting for answers to the ones before it.
    let waiting: { answers: number; go: () => void; timer: NodeJS.Timeout } | null = null;
    const answered = (): number => parseResponses(Buffer.concat(received)).responses.filter((r) => r.status >= 200).length;
    const finish = (end: RawExchange['end']): void => {
      if (finished) return;
      finished = true;
      for (const t of [quiet, deadline, waiting?.timer, ...timers]) clearTimeout(t);
      socket.destroy();
      const data = Buffer.concat(received);
      const { responses, rest } = parseResponses(data);
      resolve({ responses, rest, end, ms: Date.now() - started, halfClosed });
    };
    const armQuiet = (): void => {
      if (opts.quietMs === undefined || deadline === undefined) return;
      clearTimeout(quiet);
      quiet = setTimeout(() => {
        if (!socket.destroyed && socket.writable) {
          halfClosed = true;
          socket.end();
        }
      }, opts.quietMs);
    };
    socket.on('data', (d: Buffer) => {
      received.push(d);
      armQuiet();
      if (waiting && answered() >= waiting.answers) {
        const { go, timer } = waiting;
        clearTimeout(timer);
        waiting = null;
        go();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // The server cut the connection: a reset, or our write after it closed (EPIPE).
      reset = reset || err.code === 'ECONNRESET' || err.code === 'EPIPE';
    });
    socket.on('close', () => finish(reset ? 'reset' : 'closed'));
    socket.on('connect', () => {
      const write = (i: number): void => {
        if (socket.destroyed) return;
        if (i === chunks.length) {
          deadline = setTimeout(() => finish('timeout'), opts.timeoutMs);
          armQuiet();
          return;
        }
        if (opts.stepwise && i > 0 && answered() < i) {
          waiting = { answers: i, go: () => write(i), timer: setTimeout(() => finish('timeout'), opts.timeoutMs) };
          return;
        }
        const chunk = chunks[i]!;
        socket.write(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk, () => {
          if (i + 1 < chunks.length && (opts.pauseMs ?? 0) > 0) timers.push(setTimeout(() => write(i + 1), opts.pauseMs));
          else write(i + 1);
        });
      };
      write(0);
    });
  });
}

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * Split what a server sent into whole HTTP/1.x responses (bodies framed by Content-Length or
 * chunked encoding; without either, by the end of the data). What does not parse is `rest`.
 */
export function parseResponses(data: Buffer): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const headEnd = data.indexOf(CRLF2, at);
    if (headEnd < 0) break;
    const lines = data.subarray(at, headEnd).toString('latin1').split('\r\n');
    const statusLine = lines[0]!;
    const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
    if (!m) break;
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(m[1]);
    let bodyStart = headEnd + CRLF2.length;
    let body: Buffer;
    if (status < 200 || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      let p = bodyStart;
      let complete = false;
      for (;;) {
        const lineEnd = data.indexOf('\r\n', p);
        if (lineEnd < 0) break;
        const size = parseInt(data.subarray(p, lineEnd).toString('latin1'), 16);
        if (!Number.isFinite(size) || lineEnd + 2 + size + 2 > data.length) break;
        if (size === 0) {
          // No trailers: the last chunk is followed by the blank line.
          if (data.subarray(lineEnd + 2, lineEnd + 4).toString('latin1') !== '\r\n') break;
          p = lineEnd + 4;
          complete = true;
          break;
        }
        parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
        p = lineEnd + 2 + size + 2;
      }
      if (!complete) break;
      body = Buffer.concat(parts);
      bodyStart = p;
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (!Number.isInteger(length) || bodyStart + length > data.length) break;
      body = data.subarray(bodyStart, bodyStart + length);
      bodyStart += length;
    } else {
      body = data.subarray(bodyStart);
      bodyStart = data.length;
    }
    responses.push({ statusLine, status, headers, body });
    at = bodyStart;
  }
  return { responses, rest: data.subarray(at) };
}
