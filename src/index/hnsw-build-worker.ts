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
    // Under cosine the graph stores unit vectors: f16 / i8 keep their precision whatever the scale.
    function* unit(): Generator<{ keys: Float64Array; vectors: Float32Array }> {
      const d = job.dimension;
      for (const b of batches()) {
        const v = b.vectors;
        for (let r = 0; r < v.length; r += d) {
          let s = 0;
          for (let i = r; i < r + d; i++) s += v[i]! * v[i]!;
          const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
          for (let i = r; i < r + d; i++) v[i] = v[i]! * inv;
        }
        yield b;
      }
    }
    return await buildHnswIndexFile(job, job.metric === 'cosine' ? unit() : batches());
  } finally {
    seg.close();
  }
}

run(workerData as WorkerJob).then(
  (result) => parentPort?.postMessage({ ok: true, result }),
  (err: unknown) => parentPort?.postMessage({ ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }),
);
