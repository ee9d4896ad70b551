import { parentPort, workerData } from 'node:worker_threads';
import { SegmentFile } from '../storage/segment-file.js';
import { buildHnswIndexFile, type BuildIndexJob } from './hnsw-index.js';

/** What the main thread sends: an index job over the rows of one segment file. */
export interface WorkerJob extends BuildIndexJob {
  segmentFile: string;
  /** Row positions to add (ascending); all rows when absent. */
  addPositions?: number[];
}

const BATCH_ROWS = 8192;

async function run(job: WorkerJob): Promise<{ bytes: number; size: number }> {
  const seg = SegmentFile.open(job.segmentFile);
  try {
    const keys = seg.readKeys();
    const positions = job.addPositions;
    function* batches(): Generator<{ keys: Float64Array; vectors: Float32Array }> {
      if (positions === undefined) {
        for (let s = 0; s < keys.length; s += BATCH_ROWS) {
          const e = Math.min(keys.length, s + BATCH_ROWS);
          yield { keys: keys.subarray(s, e), vectors: seg.readVectorRange(s, e) };
        }
        return;
      }
      for (let s = 0; s < positions.length; s += BATCH_ROWS) {
        const rows = positions.slice(s, s + BATCH_ROWS);
        yield { keys: Float64Array.from(rows, (r) => keys[r]!), vectors: seg.readVectorRows(rows) };
      }
    }
    return await buildHnswIndexFile(job, batches());
  } finally {
    seg.close();
  }
}

run(workerData as WorkerJob).then(
  (result) => parentPort?.postMessage({ ok: true, result }),
  (err: unknown) => parentPort?.postMessage({ ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }),
);
