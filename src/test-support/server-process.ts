import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI; end-to-end tests run it as users do (`npm test` builds first). */
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** A server started by a test through the real CLI, listening on free loopback ports. */
export interface ServerProcess {
  child: ChildProcess;
  restUrl: string;
  grpcAddress: string;
  restPort: number;
  grpcPort: number;
  /** The admin listener's port when `[admin] bind_address` is set, else null. */
  adminPort: number | null;
  /** Every JSON log line the server printed so far. */
  logs: Record<string, unknown>[];
  /** Everything the server wrote to stderr. */
  stderr: () => string;
  /** Send `signal` and wait for the exit; resolves with the exit code (or the signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export interface StartOptions {
  dataDir: string;
  command?: 'serve' | 'rest' | 'grpc';
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** How long to wait for "AkiDB ready" (default 30 s). */
  readyTimeoutMs?: number;
}

/** Run `akidb <command>` with JSON logs on ports chosen by the OS, and wait until it is ready. */
export async function startServerProcess(opts: StartOptions): Promise<ServerProcess> {
  const args = [CLI, opts.command ?? 'serve', '--data-dir', opts.dataDir, '--host', '127.0.0.1', '--rest-port', '0', '--grpc-port', '0', ...(opts.args ?? [])];
  const child = spawn(process.execPath, args, {
    cwd: opts.cwd ?? process.cwd(),
    env: { ...process.env, AKIDB_LOG_FORMAT: 'json', AKIDB_CONFIG: '', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let err = '';
  let partial = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready after ${opts.readyTimeoutMs ?? 30_000} ms; stderr: ${err}`)), opts.readyTimeoutMs ?? 30_000);
    child.stdout.on('data', (d: Buffer) => {
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        const rec = JSON.parse(line) as Record<string, unknown>;
        logs.push(rec);
        if (rec.msg === 'AkiDB ready') {
          clearTimeout(timer);
          resolve(rec);
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before it was ready; stderr: ${err}`));
    });
  });
  const rec = await ready;
  const restPort = Number(rec.restPort ?? 0);
  const grpcPort = Number(rec.grpcPort ?? 0);
  return {
    child,
    restUrl: `http://127.0.0.1:${restPort}`,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    restPort,
    grpcPort,
    adminPort: typeof rec.adminPort === 'number' ? rec.adminPort : null,
    logs,
    stderr: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Run the CLI to completion (for commands that should fail fast); resolves with exit code and output. */
export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? process.cwd(), env: { ...process.env, AKIDB_LOG_FORMAT: 'json', AKIDB_CONFIG: '', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`akidb ${args.join(' ')} did not exit within ${opts.timeoutMs ?? 20_000} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, opts.timeoutMs ?? 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** JSON over HTTP: the status, the parsed body (or null), and the raw text. */
// Tests read arbitrary JSON answers; typing every shape would add nothing.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function http(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; text: string; headers: Headers }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}
