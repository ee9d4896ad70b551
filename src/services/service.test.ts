import { describe, expect, it } from 'vitest';
import { ServiceRunner, sleep, type Service } from './service.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('ServiceRunner', () => {
  it('drains queued work before stopping, then waits for every run loop to return', async () => {
    const events: string[] = [];
    let queued = 3;
    const worker: Service = {
      name: 'worker',
      async run(signal) {
        while (!signal.aborted) {
          if (queued > 0) {
            queued -= 1;
            events.push('work');
          }
          await sleep(5, signal);
        }
        events.push('stopped');
      },
      async drain(deadline) {
        while (queued > 0 && Date.now() < deadline) await sleep(1);
        events.push('drained');
      },
    };
    const runner = new ServiceRunner(quiet);
    runner.start(worker);
    await runner.stop(5000);
    expect(queued).toBe(0);
    expect(events.filter((e) => e === 'work')).toHaveLength(3);
    expect(events.slice(-2)).toEqual(['drained', 'stopped']);
  });

  it('gives up draining at the deadline, and logs a run loop that rejects instead of losing it', async () => {
    const errors: unknown[] = [];
    const runner = new ServiceRunner({ ...quiet, error: (obj) => errors.push(obj) });
    runner.start({ name: 'stuck', run: (signal) => sleep(60_000, signal), drain: (deadline) => sleep(deadline - Date.now()) });
    runner.start({ name: 'broken', run: () => Promise.reject(new Error('boom')) });
    const t0 = Date.now();
    await runner.stop(50);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(errors).toMatchObject([{ service: 'broken' }]);
    expect(() => runner.start({ name: 'late', run: () => Promise.resolve() })).toThrow(/stopped/);
  });

  it('sleep resolves early when its signal aborts', async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    const p = sleep(60_000, ac.signal);
    ac.abort();
    await p;
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});
