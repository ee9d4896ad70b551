import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffMs, decideRetry, DEFAULT_RETRY } from './retry-policy.js';

describe('retry policy', () => {
  it("follows seed 000's defaults: 1 s doubling to a 64 s cap, 5 retries", () => {
    const high = { ...DEFAULT_RETRY, random: () => 1 - Number.EPSILON };
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((r) => backoffMs(r, high))).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 64000, 64000]);
    const low = { ...DEFAULT_RETRY, random: () => 0 };
    expect([1, 2, 3, 7, 8].map((r) => backoffMs(r, low))).toEqual([500, 1000, 2000, 32000, 32000]);
  });

  it('keeps every delay between half the step and the step, and never above the cap', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 100_000 }), (retry, r, base, cap) => {
        const opts = { maxRetries: 5, baseBackoffMs: base, maxBackoffMs: Math.max(base, cap), random: () => r };
        const step = Math.min(opts.maxBackoffMs, base * 2 ** (retry - 1));
        const d = backoffMs(retry, opts);
        return d >= Math.floor(step / 2) && d <= Math.ceil(step) && d <= opts.maxBackoffMs;
      }),
    );
  });

  it('retries transient failures up to maxRetries, then dead-letters; permanent ones go straight to the DLQ', () => {
    const opts = { ...DEFAULT_RETRY, random: () => 0.5 };
    expect(decideRetry('transient', 0, opts)).toEqual({ action: 'retry', delayMs: 750 });
    expect(decideRetry('transient', 4, opts)).toEqual({ action: 'retry', delayMs: 12000 });
    expect(decideRetry('transient', 5, opts)).toEqual({ action: 'dead-letter', reason: 'retries-exhausted' });
    expect(decideRetry('permanent', 0, opts)).toEqual({ action: 'dead-letter', reason: 'permanent' });
  });
});
