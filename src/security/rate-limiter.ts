/**
 * Token buckets by key (a credential id or a client address): `ratePerSecond` refill, `burst`
 * capacity. Idle full buckets are dropped so the map stays as small as the set of active callers.
 */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #now: () => number;
  #lastSweep = 0;

  constructor(ratePerSecond: number, burst: number, now: () => number = () => performance.now()) {
    this.#rate = ratePerSecond;
    this.#burst = burst;
    this.#now = now;
  }

  /** Take one token: 0 when granted, else the milliseconds until one is available. */
  take(key: string): number {
    const t = this.#now();
    this.#sweep(t);
    const b = this.#buckets.get(key) ?? { tokens: this.#burst, at: t };
    b.tokens = Math.min(this.#burst, b.tokens + ((t - b.at) / 1000) * this.#rate);
    b.at = t;
    this.#buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return ((1 - b.tokens) / this.#rate) * 1000;
  }

  get size(): number {
    return this.#buckets.size;
  }

  #sweep(t: number): void {
    if (t - this.#lastSweep < 10_000) return;
    this.#lastSweep = t;
    const fullAfterMs = (this.#burst / this.#rate) * 1000;
    for (const [k, b] of this.#buckets) if (t - b.at >= fullAfterMs) this.#buckets.delete(k);
  }
}
