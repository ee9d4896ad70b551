import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { AkiError } from '../errors.js';
import type { WorkerJob } from './hnsw-build-worker.js';

// Tests run the TypeScript sources; the worker always runs the compiled file under dist/.
function workerPath(): string {
  const here = fileURLToPath(import.meta.url);
  const js = here.endsWith('.ts') ? here.replace(/[/\\]src[/\\]index[/\\]index-builder\.ts$/, '/dist/index/index-builder.js') : here;
  return js.replace(/index-builder\.js$/, 'hnsw-build-worker.js');
}

/**
 * Build an HNSW index file in a worker thread, so the event loop keeps serving while the native
 * code uses every core. Aborting terminates the worker; its temp file is left for cleanup.
 */
export function buildIndexInWorker(job: WorkerJob, signal?: AbortSignal): Promise<{ bytes: number; size: number }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AkiError('CLOSED', { indexFile: job.indexFile }, 'Index build aborted'));
      return;
    }
    const worker = new Worker(workerPath(), { workerData: job });
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      reject(new AkiError('CLOSED', { indexFile: job.indexFile }, 'Index build aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (msg: { ok: true; result: { bytes: number; size: number } } | { ok: false; error: string }) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (msg.ok) resolve(msg.result);
      else reject(new AkiError('INTERNAL', { indexFile: job.indexFile }, `Index build failed: ${msg.error}`));
    });
    worker.once('error', (err) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      reject(new AkiError('INTERNAL', { indexFile: job.indexFile }, 'Index build worker crashed', { cause: err }));
    });
    worker.once('exit', (code) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      reject(new AkiError('INTERNAL', { indexFile: job.indexFile, exitCode: code }, 'Index build worker exited early'));
    });
  });
}
