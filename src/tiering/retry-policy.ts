/** When to retry a failed object-store call ([storage.retry], seed 000 / 004). */
export interface RetryOptions {
  /** Retries after the first attempt (default 5). */
  maxRetries: number;
  baseBackoffMs: number;
  maxBackoffMs: number;
  /** Uniform [0, 1); injectable so tests are deterministic. */
  random?: () => number;
}

export const DEFAULT_RETRY: RetryOptions = { maxRetries: 5, baseBackoffMs: 1000, maxBackoffMs: 64_000 };

/**
 * Delay before retry number `retry` (1-based): exponential from `baseBackoffMs`, capped at
 * `maxBackoffMs`, with "equal jitter": half the step is fixed and half random, so delays keep
 * growing (no hammering of a struggling store) while many writers spread out instead of retrying
 * in lockstep.
 */
export function backoffMs(retry: number, opts: RetryOptions): number {
  const step = Math.min(opts.maxBackoffMs, opts.baseBackoffMs * 2 ** Math.max(0, retry - 1));
  const random = opts.random ?? Math.random;
  return Math.round(step / 2 + (step / 2) * random());
}

/** What to do with a failed call: retry after a delay, or give up (to the dead-letter queue). */
export type RetryDecision = { action: 'retry'; delayMs: number } | { action: 'dead-letter'; reason: 'permanent' | 'retries-exhausted' };

/** Transient failures are retried up to `maxRetries` times; permanent ones, and transient ones past that, are dead-lettered. */
export function decideRetry(kind: 'transient' | 'permanent', retriesSoFar: number, opts: RetryOptions): RetryDecision {
  if (kind === 'permanent') return { action: 'dead-letter', reason: 'permanent' };
  if (retriesSoFar >= opts.maxRetries) return { action: 'dead-letter', reason: 'retries-exhausted' };
  return { action: 'retry', delayMs: backoffMs(retriesSoFar + 1, opts) };
}
