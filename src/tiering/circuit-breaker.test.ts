import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isAkiError } from '../errors.js';
import { CircuitBreaker, type CircuitBreakerOptions, type CircuitPermit, type CircuitTransition } from './circuit-breaker.js';

const SECOND = 1000;

/** A breaker on a hand-driven clock, recording every transition. */
function makeBreaker(options: CircuitBreakerOptions = {}): { cb: CircuitBreaker; clock: { t: number }; advance: (ms: number) => void; events: CircuitTransition[] } {
  // Not zero, so bucket boundaries are not all aligned with the start.
  const clock = { t: 1_700_000_000_123 };
  const cb = new CircuitBreaker({ now: () => clock.t, ...options });
  const events: CircuitTransition[] = [];
  cb.onTransition((e) => events.push(e));
  return { cb, clock, advance: (ms) => void (clock.t += ms), events };
}

function succeed(cb: CircuitBreaker, n: number): void {
  for (let i = 0; i < n; i++) cb.recordSuccess(cb.acquire());
}

function fail(cb: CircuitBreaker, n: number, kind: 'transient' | 'permanent' = 'transient'): void {
  for (let i = 0; i < n; i++) cb.recordFailure(kind, cb.acquire());
}

/** Drive a default breaker to open: 4 successes then 6 transient failures (60 % of 10 calls). */
function tripOpen(cb: CircuitBreaker): void {
  succeed(cb, 4);
  fail(cb, 6);
  expect(cb.state).toBe('open');
}

describe('CircuitBreaker: seed 004 US-706 transitions', () => {
  it('test_circuit_breaker_closed_to_open: an error rate above 50 % in the window opens it', () => {
    const { cb, events } = makeBreaker();
    expect(cb.state).toBe('closed');
    expect(cb.stateCode).toBe(0);
    succeed(cb, 4);
    fail(cb, 5);
    // 5 of 9 is above 50 %, but 9 calls are fewer than minimumRequests (10).
    expect(cb.state).toBe('closed');
    fail(cb, 1);
    expect(cb.state).toBe('open');
    expect(cb.stateCode).toBe(1);
    expect(cb.errorRate).toBeCloseTo(0.6);
    expect(cb.canRequest()).toBe(false);
    expect(events).toMatchObject([{ from: 'closed', to: 'open', reason: 'error_rate', errorRate: 0.6 }]);
    expect(cb.transitions).toBe(1);
  });

  it('test_circuit_breaker_open_to_half_open: after the 300 s cooldown, not before', () => {
    const { cb, advance, events } = makeBreaker();
    tripOpen(cb);
    advance(300 * SECOND - 1);
    expect(cb.state).toBe('open');
    expect(cb.retryAfterMs).toBe(1);
    expect(cb.canRequest()).toBe(false);
    advance(1);
    expect(cb.state).toBe('half-open');
    expect(cb.stateCode).toBe(2);
    expect(cb.canRequest()).toBe(true);
    expect(events.map((e) => `${e.from}->${e.to}:${e.reason}`)).toEqual(['closed->open:error_rate', 'open->half-open:cooldown_elapsed']);
  });

  it('test_circuit_breaker_half_open_to_closed: 10 consecutive probe successes close it, one probe at a time', () => {
    const { cb, advance, events } = makeBreaker();
    tripOpen(cb);
    advance(300 * SECOND);
    for (let i = 0; i < 9; i++) {
      const probe = cb.acquire();
      expect(probe.probe).toBe(true);
      // The one probe slot is taken: a second call is refused until the probe reports.
      expect(cb.tryAcquire()).toBeNull();
      cb.recordSuccess(probe);
      expect(cb.halfOpenStreak).toBe(i + 1);
    }
    expect(cb.state).toBe('half-open');
    cb.recordSuccess(cb.acquire());
    expect(cb.state).toBe('closed');
    // The window starts empty when it closes: old failures cannot trip it again at once.
    expect(cb.window).toEqual({ calls: 0, failures: 0 });
    expect(events.at(-1)).toMatchObject({ from: 'half-open', to: 'closed', reason: 'probes_succeeded' });
    expect(cb.transitions).toBe(3);
  });

  it('test_circuit_breaker_half_open_to_open: one failed probe re-opens it with a fresh cooldown', () => {
    const { cb, advance, events } = makeBreaker();
    tripOpen(cb);
    advance(300 * SECOND);
    succeed(cb, 9);
    advance(5 * SECOND);
    cb.recordFailure('transient', cb.acquire());
    expect(cb.state).toBe('open');
    expect(events.at(-1)).toMatchObject({ from: 'half-open', to: 'open', reason: 'probe_failed' });
    // The cooldown counts from the re-opening, not from the first opening.
    expect(cb.retryAfterMs).toBe(300 * SECOND);
    advance(300 * SECOND - 1);
    expect(cb.state).toBe('open');
    advance(1);
    expect(cb.state).toBe('half-open');
    // The streak starts over.
    expect(cb.halfOpenStreak).toBe(0);
    succeed(cb, 10);
    expect(cb.state).toBe('closed');
    expect(cb.transitionCounts).toEqual(new Map([['closed->open', 1], ['open->half-open', 2], ['half-open->open', 1], ['half-open->closed', 1]]));
  });
});

describe('CircuitBreaker: behaviour', () => {
  it('lets no call reach the store while open, and counts the refusals', async () => {
    const { cb, advance } = makeBreaker();
    let storeCalls = 0;
    const store = async (ok: boolean): Promise<string> => {
      storeCalls++;
      if (!ok) throw Object.assign(new Error('503 Slow Down'), { kind: 'transient' as const, status: 503 });
      return 'ok';
    };
    for (let i = 0; i < 10; i++) await expect(cb.run(() => store(false))).rejects.toThrow('503 Slow Down');
    expect(cb.state).toBe('open');
    expect(storeCalls).toBe(10);

    // A retry storm: 10 attempts a second for the whole cooldown.
    let refused = 0;
    for (let ms = 0; ms < 300 * SECOND; ms += 100) {
      const err: unknown = await cb.run(() => store(true)).catch((e: unknown) => e);
      expect(isAkiError(err, 'CIRCUIT_OPEN')).toBe(true);
      refused++;
      advance(100);
    }
    expect(refused).toBe(3000);
    expect(storeCalls).toBe(10);
    expect(cb.refused).toBe(3000);

    // The cooldown is over: probes reach the store again.
    await expect(cb.run(() => store(true))).resolves.toBe('ok');
    expect(storeCalls).toBe(11);
  });

  it('refuses with CIRCUIT_OPEN (503, UNAVAILABLE) and details saying when to come back', () => {
    const { cb, advance } = makeBreaker({ name: 's3://bucket/akidb' });
    tripOpen(cb);
    advance(120 * SECOND);
    let caught: unknown;
    try {
      cb.acquire();
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'CIRCUIT_OPEN', httpStatus: 503, grpcStatus: 'UNAVAILABLE', details: { breaker: 's3://bucket/akidb', state: 'open', retryAfterMs: 180 * SECOND } });
  });

  it('does not open at exactly the threshold: 50 % of the window is not above 50 %', () => {
    const { cb } = makeBreaker();
    succeed(cb, 5);
    fail(cb, 5);
    expect(cb.errorRate).toBe(0.5);
    expect(cb.state).toBe('closed');
    succeed(cb, 1);
    fail(cb, 1);
    expect(cb.errorRate).toBe(0.5);
    expect(cb.state).toBe('closed');
    // 7 of 13 is above.
    fail(cb, 1);
    expect(cb.state).toBe('open');
  });

  it('needs minimumRequests calls in the window: 9 failures out of 9 leave it closed', () => {
    const { cb } = makeBreaker();
    fail(cb, 9);
    expect(cb.errorRate).toBe(1);
    expect(cb.state).toBe('closed');
    fail(cb, 1);
    expect(cb.state).toBe('open');
  });

  it('slides its window: failures older than window_seconds age out', () => {
    const { cb, advance } = makeBreaker();
    succeed(cb, 5);
    fail(cb, 5);
    advance(60 * SECOND);
    // Everything aged out: one more failure is 1 of 1, below minimumRequests.
    expect(cb.window).toEqual({ calls: 0, failures: 0 });
    expect(cb.errorRate).toBe(0);
    fail(cb, 1);
    expect(cb.state).toBe('closed');

    // Control: the same failure half a window later would have opened it (6 of 11).
    const other = makeBreaker();
    succeed(other.cb, 5);
    fail(other.cb, 5);
    other.advance(30 * SECOND);
    fail(other.cb, 1);
    expect(other.cb.state).toBe('open');
  });

  it('slides continuously: only the last minute counts as time passes', () => {
    const { cb, advance } = makeBreaker();
    // One success per second for 5 minutes with a failure every 3 s: about 1/3 failures, never opens.
    for (let s = 0; s < 300; s++) {
      if (s % 3 === 0) fail(cb, 1);
      else succeed(cb, 1);
      advance(SECOND);
      expect(cb.window.calls).toBeLessThanOrEqual(60);
    }
    expect(cb.state).toBe('closed');
    expect(cb.errorRate).toBeGreaterThan(0.3);
    expect(cb.errorRate).toBeLessThan(0.36);
  });

  it('does not count permanent failures (400 / 403 / 404) against the circuit', () => {
    const { cb } = makeBreaker();
    fail(cb, 100, 'permanent');
    expect(cb.state).toBe('closed');
    expect(cb.errorRate).toBe(0);
    expect(cb.permanentFailures).toBe(100);
    // They are calls that reached the store: with them in the window, 60 transient failures are 37.5 %.
    fail(cb, 60);
    expect(cb.state).toBe('closed');

    // While half-open, a permanent failure means the store answered: it does not re-open.
    const h = makeBreaker();
    tripOpen(h.cb);
    h.advance(300 * SECOND);
    h.cb.recordFailure('permanent', h.cb.acquire());
    expect(h.cb.state).toBe('half-open');
    succeed(h.cb, 9);
    expect(h.cb.state).toBe('closed');
  });

  it('run() classifies: permanent errors pass through uncounted, null-classified errors count nothing', async () => {
    const { cb } = makeBreaker();
    const forbidden = Object.assign(new Error('403'), { kind: 'permanent' as const });
    for (let i = 0; i < 20; i++) await expect(cb.run(() => Promise.reject(forbidden))).rejects.toBe(forbidden);
    expect(cb.state).toBe('closed');
    expect(cb.window).toEqual({ calls: 20, failures: 0 });
    const aborted = new Error('aborted');
    await expect(cb.run(() => Promise.reject(aborted), () => null)).rejects.toBe(aborted);
    expect(cb.window).toEqual({ calls: 20, failures: 0 });
  });

  it('reset() forces it closed from open or half-open, with an empty window', () => {
    const { cb, advance, events } = makeBreaker();
    tripOpen(cb);
    cb.reset();
    expect(cb.state).toBe('closed');
    expect(cb.canRequest()).toBe(true);
    expect(cb.errorRate).toBe(0);
    expect(events.at(-1)).toMatchObject({ from: 'open', to: 'closed', reason: 'reset' });
    // A single failure after a reset does not re-open it.
    fail(cb, 1);
    expect(cb.state).toBe('closed');

    advance(60 * SECOND);
    tripOpen(cb);
    advance(300 * SECOND);
    expect(cb.state).toBe('half-open');
    cb.reset();
    expect(cb.state).toBe('closed');
    const before = cb.transitions;
    cb.reset();
    expect(cb.transitions).toBe(before);
  });

  it('when disabled, always allows and never changes state, but still measures', () => {
    const { cb, events } = makeBreaker({ enabled: false });
    fail(cb, 1000);
    expect(cb.state).toBe('closed');
    expect(cb.canRequest()).toBe(true);
    expect(cb.tryAcquire()).not.toBeNull();
    expect(cb.errorRate).toBe(1);
    expect(cb.transitions).toBe(0);
    expect(events).toEqual([]);
  });

  it('ignores the state effect of answers to calls admitted before the latest transition', () => {
    const { cb, advance } = makeBreaker();
    const slow: CircuitPermit = cb.acquire();
    tripOpen(cb);
    advance(300 * SECOND);
    expect(cb.state).toBe('half-open');
    // The slow call from before the outage fails now: it says nothing about the store's recovery.
    cb.recordFailure('transient', slow);
    expect(cb.state).toBe('half-open');
    // ...and its success would not count as a probe either.
    const slow2 = makeBreaker();
    const p = slow2.cb.acquire();
    tripOpen(slow2.cb);
    slow2.advance(300 * SECOND);
    slow2.cb.recordSuccess(p);
    expect(slow2.cb.halfOpenStreak).toBe(0);
  });

  it('re-opens when a probe never reports within probeTimeoutSeconds', () => {
    const { cb, advance, events } = makeBreaker({ probeTimeoutSeconds: 30 });
    tripOpen(cb);
    advance(300 * SECOND);
    const lost = cb.acquire();
    expect(lost.probe).toBe(true);
    advance(29 * SECOND);
    expect(cb.tryAcquire()).toBeNull();
    advance(SECOND);
    expect(cb.state).toBe('open');
    expect(events.at(-1)).toMatchObject({ from: 'half-open', to: 'open', reason: 'probe_timeout' });
  });

  it('release() frees a probe slot without counting an outcome', () => {
    const { cb, advance } = makeBreaker();
    tripOpen(cb);
    advance(300 * SECOND);
    const p = cb.acquire();
    expect(cb.canRequest()).toBe(false);
    cb.release(p);
    expect(cb.canRequest()).toBe(true);
    expect(cb.halfOpenStreak).toBe(0);
  });

  it('keeps going when a transition listener throws, and unsubscribes', () => {
    const errors: object[] = [];
    const logger = { info: () => undefined, warn: () => undefined, error: (o: object) => void errors.push(o) };
    const { cb } = makeBreaker({ logger });
    const seen: string[] = [];
    cb.onTransition(() => {
      throw new Error('metrics hook broke');
    });
    const off = cb.onTransition((e) => seen.push(e.to));
    tripOpen(cb);
    expect(seen).toEqual(['open']);
    expect(errors).toHaveLength(1);
    off();
    cb.reset();
    expect(seen).toEqual(['open']);
  });

  it('honours custom settings: threshold, window, cooldown, successes', () => {
    const { cb, advance } = makeBreaker({ failureThreshold: 0.2, windowSeconds: 10, cooldownSeconds: 5, halfOpenSuccesses: 2, minimumRequests: 5 });
    succeed(cb, 4);
    fail(cb, 1);
    expect(cb.state).toBe('closed');
    fail(cb, 1);
    expect(cb.state).toBe('open');
    advance(5 * SECOND);
    succeed(cb, 2);
    expect(cb.state).toBe('closed');
  });

  it('rejects nonsense options with every problem listed', () => {
    let caught: unknown;
    try {
      new CircuitBreaker({ failureThreshold: 1.5, windowSeconds: 0, halfOpenSuccesses: 0 });
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'INVALID_ARGUMENT', details: { problems: [expect.stringContaining('failureThreshold'), expect.stringContaining('windowSeconds'), expect.stringContaining('halfOpenSuccesses')] } });
  });
});

type Op =
  | { op: 'advance'; ms: number }
  | { op: 'acquire' }
  | { op: 'success'; which: number }
  | { op: 'failure'; which: number; kind: 'transient' | 'permanent' }
  | { op: 'anonymous'; failed: boolean }
  | { op: 'reset' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 1_000 }), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 40_000 }), weight: 1 }) }), weight: 2 },
  { arbitrary: fc.constant({ op: 'acquire' as const }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant('success' as const), which: fc.nat() }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant('failure' as const), which: fc.nat(), kind: fc.constantFrom('transient' as const, 'transient' as const, 'permanent' as const) }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('anonymous' as const), failed: fc.boolean() }), weight: 1 },
  { arbitrary: fc.constant({ op: 'reset' as const }), weight: 1 },
);

describe('CircuitBreaker: model property', () => {
  it('never admits a call while open before the cooldown, never has more probes in flight than allowed', () => {
    const COOLDOWN_MS = 30_000;
    let opened = 0;
    let probesAdmitted = 0;
    let recovered = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 400, size: 'max' }), (ops) => {
        const clock = { t: 5_000_000 };
        const cb = new CircuitBreaker({ now: () => clock.t, windowSeconds: 10, cooldownSeconds: COOLDOWN_MS / 1000, halfOpenSuccesses: 3, minimumRequests: 3 });
        // The reference: when the breaker last opened, from its own transition events.
        let openSince = null as number | null;
        // Probes admitted since the latest transition and not yet answered.
        const episodeProbes = new Set<CircuitPermit>();
        cb.onTransition((e) => {
          episodeProbes.clear();
          openSince = e.to === 'open' ? e.at : null;
          if (e.to === 'open') opened++;
          if (e.reason === 'probes_succeeded') recovered++;
        });
        const inFlight: CircuitPermit[] = [];
        for (const o of ops) {
          switch (o.op) {
            case 'advance':
              clock.t += o.ms;
              break;
            case 'acquire': {
              const mustRefuse = openSince !== null && clock.t < openSince + COOLDOWN_MS;
              if (mustRefuse && cb.canRequest()) return false;
              const p = cb.tryAcquire();
              if (mustRefuse && p !== null) return false;
              if (p !== null) {
                if (p.probe) probesAdmitted++;
                inFlight.push(p);
                if (p.probe) episodeProbes.add(p);
              }
              break;
            }
            case 'success':
            case 'failure': {
              if (inFlight.length === 0) break;
              const p = inFlight.splice(o.which % inFlight.length, 1)[0]!;
              episodeProbes.delete(p);
              if (o.op === 'success') cb.recordSuccess(p);
              else cb.recordFailure(o.kind, p);
              break;
            }
            case 'anonymous':
              if (o.failed) cb.recordFailure('transient');
              else cb.recordSuccess();
              break;
            case 'reset':
              cb.reset();
              break;
          }
          const state = cb.state;
          if (state === 'open' && (openSince === null || clock.t >= openSince + COOLDOWN_MS)) return false;
          if (state === 'closed' && !cb.canRequest()) return false;
          if (episodeProbes.size > cb.halfOpenMaxProbes) return false;
        }
        return true;
      }),
      { numRuns: 500, seed: 0x5eed_0701 },
    );
    // The scripts really exercised the open state and the recovery from it.
    console.log(`circuit breaker property: ${opened} openings, ${probesAdmitted} half-open probes admitted, ${recovered} recoveries`);
    expect(opened).toBeGreaterThan(100);
    expect(probesAdmitted).toBeGreaterThan(100);
    expect(recovered).toBeGreaterThan(0);
  });
});
