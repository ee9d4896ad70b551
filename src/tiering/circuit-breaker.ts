import { AkiError } from '../errors.js';
import type { FailureKind } from '../objectstore/object-store.js';
import type { ServiceLogger } from '../services/service.js';

/** The three states of seed 004's breaker: closed (calls flow), open (calls refused), half-open (probing). */
export type CircuitState = 'closed' | 'open' | 'half-open';

/** `circuit_breaker_state` gauge values (seed 004): 0 closed, 1 open, 2 half-open. */
export const CIRCUIT_STATE_CODES = { closed: 0, open: 1, 'half-open': 2 } as const satisfies Record<CircuitState, number>;

/** Why a transition happened: for logs, metrics labels and the admin API. */
export type CircuitTransitionReason = 'error_rate' | 'cooldown_elapsed' | 'probes_succeeded' | 'probe_failed' | 'probe_timeout' | 'reset';

/** One state change, as given to `onTransition` listeners. */
export interface CircuitTransition {
  readonly from: CircuitState;
  readonly to: CircuitState;
  readonly reason: CircuitTransitionReason;
  /** Clock time of the change, in ms (the injected clock's). */
  readonly at: number;
  /** Error rate of the window at the change, 0..1. */
  readonly errorRate: number;
}

/** Tuning of a CircuitBreaker; keys mirror `[storage.circuit_breaker]` (seed 004), every field has a default. */
export interface CircuitBreakerOptions {
  /** `enabled`: when false the breaker never refuses and never changes state (it still measures). Default true. */
  enabled?: boolean;
  /** `failure_threshold`: open when the window's transient-failure rate is strictly above this (0..1). Default 0.5. */
  failureThreshold?: number;
  /** `window_seconds`: length of the sliding error-rate window. Default 60. */
  windowSeconds?: number;
  /** `cooldown_seconds`: time spent open before probing. Default 300. */
  cooldownSeconds?: number;
  /** `half_open_successes`: consecutive probe successes that close the circuit. Default 10. */
  halfOpenSuccesses?: number;
  /**
   * Calls the window must hold before its error rate can open the circuit. The seed is silent;
   * default 10, so that one failure out of one call (100 %) in a quiet minute does not trip it.
   */
  minimumRequests?: number;
  /** Probes allowed in flight at once while half-open. Default 1: one probe at a time. */
  halfOpenMaxProbes?: number;
  /**
   * A probe that reports no outcome within this time counts as a transient failure (the circuit
   * re-opens), so a lost probe cannot hold the breaker half-open forever. Default: windowSeconds.
   */
  probeTimeoutSeconds?: number;
  /** Name for logs and error details (e.g. the object store's description). Default 'object-store'. */
  name?: string;
  /** Clock in ms; inject one to make the breaker deterministic in tests. Default Date.now. */
  now?: () => number;
  /** Receives one line per transition (warn when opening, info otherwise). */
  logger?: ServiceLogger;
}

/** A ticket for one admitted call: hand it back with its outcome so late answers cannot move a newer state. */
export interface CircuitPermit {
  /** The breaker's generation (bumped at every transition) when the call was admitted. */
  readonly generation: number;
  /** True when the call is a half-open probe holding one of the probe slots. */
  readonly probe: boolean;
}

/**
 * How `run` classifies a thrown error: 'transient' counts as a failure, 'permanent' means the store
 * answered (counts as a reachable call, never as a failure), null means the call says nothing about
 * the store (e.g. the caller aborted it) and is not counted.
 */
export type FailureClassifier = (err: unknown) => FailureKind | null;

/** Default classifier: an error with `kind: 'permanent'` (ObjectStoreError) is permanent, anything else transient. */
export const classifyByKind: FailureClassifier = (err) => {
  const kind = typeof err === 'object' && err !== null && 'kind' in err ? err.kind : undefined;
  return kind === 'permanent' ? 'permanent' : 'transient';
};

// The window is a ring of fixed buckets so memory and the cost of errorRate stay constant at any
// call rate; an outcome is counted for between (1 - 1/BUCKETS) and 1 times windowSeconds.
const BUCKETS = 60;

/**
 * Seed 004's circuit breaker (US-701) for calls to the object store.
 *
 * Closed: every outcome goes into a sliding window; a transient failure that leaves the window with
 * at least `minimumRequests` calls and a failure rate strictly above `failureThreshold` opens it.
 * Open: every request is refused, so no call reaches the store, until `cooldownSeconds` have passed
 * since opening; then half-open. Half-open: at most `halfOpenMaxProbes` calls in flight;
 * `halfOpenSuccesses` consecutive successes close it (with an empty window), any transient
 * failure re-opens it with a fresh cooldown. `reset()` forces closed.
 *
 * Permanent failures (400 / 403 / 404) mean the store answered: they count as calls, never as
 * failures, and advance the half-open streak like a success. Outcomes reported with a permit
 * admitted before the latest transition are measured but move no state, so a slow answer from
 * before an outage cannot close or re-open the circuit. Synchronous and single-threaded: safe
 * for any number of concurrent async callers in one process.
 */
export class CircuitBreaker {
  enabled: boolean;
  failureThreshold: number;
  windowSeconds: number;
  cooldownSeconds: number;
  halfOpenSuccesses: number;
  minimumRequests: number;
  readonly halfOpenMaxProbes: number;
  probeTimeoutSeconds: number;
  readonly name: string;

  readonly #now: () => number;
  readonly #logger: ServiceLogger | undefined;
  #bucketMs: number;
  readonly #bucketIds = new Float64Array(BUCKETS).fill(-Infinity);
  readonly #bucketCalls = new Uint32Array(BUCKETS);
  readonly #bucketFailures = new Uint32Array(BUCKETS);
  readonly #listeners = new Set<(t: CircuitTransition) => void>();

  #state: CircuitState = 'closed';
  #generation = 0;
  #openedAt = 0;
  #streak = 0;
  /** Probes in flight (half-open only) and when each was admitted, oldest first. */
  #probes = new Map<CircuitPermit, number>();
  #transitions = 0;
  #transitionCounts = new Map<string, number>();
  #refused = 0;
  #permanentFailures = 0;

  constructor(options: CircuitBreakerOptions = {}) {
    this.enabled = options.enabled ?? true;
    this.failureThreshold = options.failureThreshold ?? 0.5;
    this.windowSeconds = options.windowSeconds ?? 60;
    this.cooldownSeconds = options.cooldownSeconds ?? 300;
    this.halfOpenSuccesses = options.halfOpenSuccesses ?? 10;
    this.minimumRequests = options.minimumRequests ?? 10;
    this.halfOpenMaxProbes = options.halfOpenMaxProbes ?? 1;
    this.probeTimeoutSeconds = options.probeTimeoutSeconds ?? this.windowSeconds;
    this.name = options.name ?? 'object-store';
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    const bad: string[] = [];
    if (!(this.failureThreshold >= 0 && this.failureThreshold <= 1)) bad.push(`failureThreshold must be in 0..1 (got ${this.failureThreshold})`);
    const durations = [['windowSeconds', this.windowSeconds], ['cooldownSeconds', this.cooldownSeconds]] as Array<[string, number]>;
    if (options.probeTimeoutSeconds !== undefined) durations.push(['probeTimeoutSeconds', options.probeTimeoutSeconds]);
    for (const [k, v] of durations) {
      if (!(Number.isFinite(v) && v > 0)) bad.push(`${k} must be a positive number (got ${v})`);
    }
    for (const [k, v] of [['halfOpenSuccesses', this.halfOpenSuccesses], ['minimumRequests', this.minimumRequests], ['halfOpenMaxProbes', this.halfOpenMaxProbes]] as const) {
      if (!(Number.isInteger(v) && v >= 1)) bad.push(`${k} must be an integer >= 1 (got ${v})`);
    }
    if (bad.length > 0) throw new AkiError('INVALID_ARGUMENT', { problems: bad }, `Invalid circuit breaker options: ${bad.join('; ')}`);
    this.#bucketMs = (this.windowSeconds * 1000) / BUCKETS;
  }

  /**
   * Change the thresholds at runtime (POST /admin/config/circuit-breaker); validated like the
   * constructor's options. The state stays; a new window length starts an empty window.
   */
  configure(change: Pick<CircuitBreakerOptions, 'enabled' | 'failureThreshold' | 'windowSeconds' | 'cooldownSeconds' | 'halfOpenSuccesses' | 'minimumRequests'>): void {
    const next = { enabled: this.enabled, failureThreshold: this.failureThreshold, windowSeconds: this.windowSeconds, cooldownSeconds: this.cooldownSeconds, halfOpenSuccesses: this.halfOpenSuccesses, minimumRequests: this.minimumRequests, ...change };
    new CircuitBreaker({ ...next, halfOpenMaxProbes: this.halfOpenMaxProbes }); // throws INVALID_ARGUMENT naming every bad value
    const windowChanged = next.windowSeconds !== this.windowSeconds;
    Object.assign(this, next);
    if (windowChanged) {
      this.probeTimeoutSeconds = next.windowSeconds;
      this.#bucketMs = (next.windowSeconds * 1000) / BUCKETS;
      this.#bucketIds.fill(-Infinity);
      this.#bucketCalls.fill(0);
      this.#bucketFailures.fill(0);
    }
  }

  /** The current state; reading it moves open to half-open once the cooldown has elapsed. */
  get state(): CircuitState {
    this.#tick(this.#now());
    return this.#state;
  }

  /** The `circuit_breaker_state` gauge value: 0 closed, 1 open, 2 half-open. */
  get stateCode(): 0 | 1 | 2 {
    return CIRCUIT_STATE_CODES[this.state];
  }

  /** Transient failures / calls in the sliding window, 0 when the window is empty (`circuit_breaker_error_rate`). */
  get errorRate(): number {
    const { calls, failures } = this.#windowCounts(this.#now());
    return calls === 0 ? 0 : failures / calls;
  }

  /** Calls and transient failures currently in the sliding window. */
  get window(): { calls: number; failures: number } {
    return this.#windowCounts(this.#now());
  }

  /** State changes since construction (`circuit_breaker_transitions`, all pairs summed). */
  get transitions(): number {
    return this.#transitions;
  }

  /** State changes by `from->to` pair, for the labelled counter `circuit_breaker_transitions{from_state,to_state}`. */
  get transitionCounts(): ReadonlyMap<string, number> {
    return this.#transitionCounts;
  }

  /** Requests refused since construction (open, or half-open with every probe slot taken). */
  get refused(): number {
    return this.#refused;
  }

  /** Permanent failures reported since construction (they never count against the circuit). */
  get permanentFailures(): number {
    return this.#permanentFailures;
  }

  /** Consecutive probe successes so far while half-open (0 in the other states). */
  get halfOpenStreak(): number {
    return this.#state === 'half-open' ? this.#streak : 0;
  }

  /** When open: ms until probing may start (0 when not open). */
  get retryAfterMs(): number {
    this.#tick(this.#now());
    return this.#state === 'open' ? Math.max(0, this.#openedAt + this.cooldownSeconds * 1000 - this.#now()) : 0;
  }

  /** Subscribe to state changes; returns the unsubscribe function. A throwing listener is logged and ignored. */
  onTransition(listener: (t: CircuitTransition) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Whether a call would be admitted now, without taking a probe slot. */
  canRequest(): boolean {
    if (!this.enabled) return true;
    this.#tick(this.#now());
    if (this.#state === 'closed') return true;
    return this.#state === 'half-open' && this.#probes.size < this.halfOpenMaxProbes;
  }

  /** Admit one call and return its permit, or null when refused (counted in `refused`). Half-open: takes a probe slot. */
  tryAcquire(): CircuitPermit | null {
    const now = this.#now();
    if (!this.enabled) return { generation: this.#generation, probe: false };
    this.#tick(now);
    if (this.#state === 'closed') return { generation: this.#generation, probe: false };
    if (this.#state === 'half-open' && this.#probes.size < this.halfOpenMaxProbes) {
      const permit: CircuitPermit = Object.freeze({ generation: this.#generation, probe: true });
      this.#probes.set(permit, now);
      return permit;
    }
    this.#refused++;
    return null;
  }

  /** Admit one call and return its permit; throws AkiError CIRCUIT_OPEN (503) when refused. */
  acquire(): CircuitPermit {
    const permit = this.tryAcquire();
    if (permit === null) throw this.#openError();
    return permit;
  }

  /**
   * Report a successful call. Pass its permit to tie the outcome to the state it was admitted in
   * and free its probe slot; without one the outcome applies to the current state (only permits
   * hold probe slots, so the one-probe-at-a-time limit needs acquire / run).
   */
  recordSuccess(permit?: CircuitPermit): void {
    this.#record(false, permit);
  }

  /** Report a failed call: 'transient' counts against the circuit, 'permanent' counts as a call that reached the store. */
  recordFailure(kind: FailureKind, permit?: CircuitPermit): void {
    if (kind === 'permanent') {
      this.#permanentFailures++;
      this.#record(false, permit);
    } else {
      this.#record(true, permit);
    }
  }

  /** Give back a permit whose call says nothing about the store (e.g. aborted by the caller): frees its probe slot, counts nothing. */
  release(permit: CircuitPermit): void {
    this.#probes.delete(permit);
  }

  /**
   * Run `fn` through the breaker: throws CIRCUIT_OPEN without calling it when refused, otherwise
   * records its outcome (errors classified by `classify`) and returns or rethrows what it did.
   */
  async run<T>(fn: () => Promise<T>, classify: FailureClassifier = classifyByKind): Promise<T> {
    const permit = this.acquire();
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      const kind = classify(err);
      if (kind === null) this.release(permit);
      else this.recordFailure(kind, permit);
      throw err;
    }
    this.recordSuccess(permit);
    return result;
  }

  /** Force the circuit closed with an empty window (`POST /admin/circuit-breaker/reset`); counts a transition unless already closed. */
  reset(): void {
    const now = this.#now();
    this.#clearWindow();
    if (this.#state !== 'closed') this.#transition('closed', 'reset', now);
  }

  // Lazy clock-driven moves: open -> half-open after the cooldown, lost probes -> re-open.
  #tick(now: number): void {
    if (!this.enabled) return;
    if (this.#state === 'open' && now - this.#openedAt >= this.cooldownSeconds * 1000) {
      this.#transition('half-open', 'cooldown_elapsed', now);
    } else if (this.#state === 'half-open') {
      const oldest = this.#probes.values().next();
      if (oldest.done !== true && now - oldest.value >= this.probeTimeoutSeconds * 1000) this.#transition('open', 'probe_timeout', now);
    }
  }

  #record(failed: boolean, permit: CircuitPermit | undefined): void {
    const now = this.#now();
    this.#addToWindow(now, failed);
    if (!this.enabled) return;
    // A permit from before the latest transition: measured above, but it must not steer the new state.
    if (permit !== undefined && permit.generation !== this.#generation) return;
    this.#tick(now);
    if (this.#state === 'closed') {
      if (failed) {
        const { calls, failures } = this.#windowCounts(now);
        if (calls >= this.minimumRequests && failures / calls > this.failureThreshold) this.#transition('open', 'error_rate', now);
      }
    } else if (this.#state === 'half-open') {
      // A probe permit answers once; a second answer (or one for a released permit) moves nothing.
      if (permit?.probe === true && !this.#probes.delete(permit)) return;
      if (failed) {
        this.#transition('open', 'probe_failed', now);
      } else if (++this.#streak >= this.halfOpenSuccesses) {
        this.#clearWindow();
        this.#transition('closed', 'probes_succeeded', now);
      }
    }
    // Open: outcomes of calls admitted earlier only feed the window.
  }

  #transition(to: CircuitState, reason: CircuitTransitionReason, now: number): void {
    const from = this.#state;
    this.#state = to;
    this.#generation++;
    this.#streak = 0;
    this.#probes.clear();
    if (to === 'open') this.#openedAt = now;
    this.#transitions++;
    const pair = `${from}->${to}`;
    this.#transitionCounts.set(pair, (this.#transitionCounts.get(pair) ?? 0) + 1);
    const { calls, failures } = this.#windowCounts(now);
    const t: CircuitTransition = { from, to, reason, at: now, errorRate: calls === 0 ? 0 : failures / calls };
    const ctx = { breaker: this.name, from, to, reason, errorRate: t.errorRate, calls, failures, ...(to === 'open' ? { cooldownSeconds: this.cooldownSeconds } : {}) };
    if (to === 'open') this.#logger?.warn(ctx, 'circuit breaker opened');
    else this.#logger?.info(ctx, `circuit breaker ${to}`);
    for (const listener of this.#listeners) {
      try {
        listener(t);
      } catch (err) {
        // A metrics or logging hook must never break the state machine it observes.
        this.#logger?.error({ breaker: this.name, err }, 'circuit breaker transition listener threw');
      }
    }
  }

  #openError(): AkiError {
    const state = this.#state;
    return new AkiError(
      'CIRCUIT_OPEN',
      { breaker: this.name, state, retryAfterMs: this.retryAfterMs, errorRate: this.errorRate },
      state === 'open' ? `The circuit breaker for ${this.name} is open; calls resume after the cooldown` : `The circuit breaker for ${this.name} is half-open and its probe slots are taken`,
    );
  }

  #addToWindow(now: number, failed: boolean): void {
    const id = Math.floor(now / this.#bucketMs);
    const slot = ((id % BUCKETS) + BUCKETS) % BUCKETS;
    if (this.#bucketIds[slot] !== id) {
      this.#bucketIds[slot] = id;
      this.#bucketCalls[slot] = 0;
      this.#bucketFailures[slot] = 0;
    }
    this.#bucketCalls[slot]!++;
    if (failed) this.#bucketFailures[slot]!++;
  }

  #windowCounts(now: number): { calls: number; failures: number } {
    const current = Math.floor(now / this.#bucketMs);
    let calls = 0;
    let failures = 0;
    for (let i = 0; i < BUCKETS; i++) {
      const id = this.#bucketIds[i]!;
      if (id > current - BUCKETS && id <= current) {
        calls += this.#bucketCalls[i]!;
        failures += this.#bucketFailures[i]!;
      }
    }
    return { calls, failures };
  }

  #clearWindow(): void {
    this.#bucketIds.fill(-Infinity);
  }
}
