import { checkKey, kindOfStatus, ObjectStoreError, type ObjectInfo, type ObjectStore, type PutOptions } from './object-store.js';
import { seededRandom } from '../util/seeded-random.js';

/** An object-store operation, as counted and as faults are scoped. */
export type Operation = ObjectStoreError['operation'];

const OPERATIONS: readonly Operation[] = ['put', 'get', 'head', 'list', 'delete'];

/** Which operations a fault applies to; all of them when `operations` is absent. */
export interface FaultScope {
  operations?: readonly Operation[];
}

/** Calls per operation since creation or the last `resetStats()`. */
export interface MemoryStoreStats {
  /** Calls that reached the store (a bad key is refused before, like a request never sent), failed or not. */
  calls: Record<Operation, number>;
  /** Calls that failed by an injected fault. */
  injectedFailures: Record<Operation, number>;
  totalCalls: number;
  totalInjectedFailures: number;
}

/** What one call suffers: an HTTP-like status, or a connection reset (no status). */
type Injected = { status: number } | { reset: true };

interface CountedFault {
  remaining: number;
  injected: Injected;
  operations: ReadonlySet<Operation> | undefined;
}

/**
 * Faults for a MemoryObjectStore (seed 004 US-705). Each call consults, in order: the counted
 * faults (`failNext`, `resetConnections`) in the order they were added, the first one in scope
 * with calls left taking the call; then `failWith`; then `failFraction`. A call suffers at most one
 * fault, and the latency applies to every call in scope, failing or not. Deterministic: the same
 * calls in the same order fail the same way.
 */
export class MemoryStoreFaults {
  private counted: CountedFault[] = [];
  private persistent: { injected: Injected; operations: ReadonlySet<Operation> | undefined } | undefined;
  private fraction: { p: number; status: number; operations: ReadonlySet<Operation> | undefined; random: () => number } | undefined;
  private delay: { ms: number; operations: ReadonlySet<Operation> | undefined } | undefined;

  /** Fail the next `n` calls in scope with `status` (default 503); adds to faults already set. */
  failNext(n: number, opts: FaultScope & { status?: number } = {}): this {
    checkCount(n);
    const injected = { status: checkStatus(opts.status ?? 503) };
    if (n > 0) this.counted.push({ remaining: n, injected, operations: scope(opts) });
    return this;
  }

  /** Fail the next `n` calls in scope as a connection reset: transient, no status, cause ECONNRESET. */
  resetConnections(n: number, opts: FaultScope = {}): this {
    checkCount(n);
    if (n > 0) this.counted.push({ remaining: n, injected: { reset: true }, operations: scope(opts) });
    return this;
  }

  /** Fail every call in scope with `status` until `reset()` (replaces an earlier `failWith`). */
  failWith(status: number, opts: FaultScope = {}): this {
    this.persistent = { injected: { status: checkStatus(status) }, operations: scope(opts) };
    return this;
  }

  /**
   * Fail each call in scope with probability `p` (0..1) with `status` (default 503), drawn from a
   * PRNG seeded with `seed` (default 1) that only calls in scope advance; replaces an earlier one.
   */
  failFraction(p: number, opts: FaultScope & { seed?: number; status?: number } = {}): this {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`failFraction: p must be in 0..1, got ${p}`);
    this.fraction = { p, status: checkStatus(opts.status ?? 503), operations: scope(opts), random: seededRandom(opts.seed ?? 1) };
    return this;
  }

  /** Delay every call in scope by `ms` before it succeeds or fails (replaces an earlier latency). */
  latency(ms: number, opts: FaultScope = {}): this {
    if (!(ms >= 0 && Number.isFinite(ms))) throw new RangeError(`latency: ms must be >= 0, got ${ms}`);
    this.delay = ms === 0 ? undefined : { ms, operations: scope(opts) };
    return this;
  }

  /** Remove every fault and the latency; the store's stats are kept (see `resetStats`). */
  reset(): void {
    this.counted = [];
    this.persistent = undefined;
    this.fraction = undefined;
    this.delay = undefined;
  }

  /** The fault and delay for one call of `operation`; MemoryObjectStore calls this once per call. */
  draw(operation: Operation): { injected: Injected | undefined; delayMs: number } {
    const delayMs = this.delay && inScope(this.delay.operations, operation) ? this.delay.ms : 0;
    return { injected: this.pick(operation), delayMs };
  }

  private pick(operation: Operation): Injected | undefined {
    const counted = this.counted.find((f) => f.remaining > 0 && inScope(f.operations, operation));
    if (counted) {
      counted.remaining--;
      if (counted.remaining === 0) this.counted = this.counted.filter((f) => f !== counted);
      return counted.injected;
    }
    if (this.persistent && inScope(this.persistent.operations, operation)) return this.persistent.injected;
    if (this.fraction && inScope(this.fraction.operations, operation)) {
      if (this.fraction.random() < this.fraction.p) return { status: this.fraction.status };
    }
    return undefined;
  }
}

/**
 * An ObjectStore in a Map, with injectable faults (`faults`) and request counts (`stats()`), for
 * unit tests of the code above the store. Contract: object-store.ts; "durable" means for the life
 * of the object. A call that fails by a fault changes nothing (a failed put stores nothing).
 * `list` is one call, made when its iteration starts, over the keys present at that moment.
 */
export class MemoryObjectStore implements ObjectStore {
  readonly description = 'memory://';
  /** The faults the next calls suffer; none until set. */
  readonly faults = new MemoryStoreFaults();
  private readonly objects = new Map<string, { body: Buffer; contentEncoding?: string }>();
  private calls = zeroCounts();
  private failures = zeroCounts();

  async put(key: string, body: Uint8Array, opts: PutOptions = {}): Promise<void> {
    checkKey('put', key);
    // Copied at the call, not after the latency: what is stored is what was passed.
    const copy = Buffer.from(body);
    await this.enter('put', key);
    this.objects.set(key, opts.contentEncoding ? { body: copy, contentEncoding: opts.contentEncoding } : { body: copy });
  }

  async get(key: string): Promise<Uint8Array | null> {
    checkKey('get', key);
    await this.enter('get', key);
    const o = this.objects.get(key);
    return o ? Buffer.from(o.body) : null;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    checkKey('head', key);
    await this.enter('head', key);
    const o = this.objects.get(key);
    return o ? info(key, o) : null;
  }

  async *list(prefix: string): AsyncGenerator<ObjectInfo> {
    await this.enter('list', prefix);
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix))
      .map((k) => ({ k, order: Buffer.from(k, 'utf8') }))
      // UTF-8 byte order, which JavaScript's string order is not beyond U+FFFF.
      .sort((a, b) => Buffer.compare(a.order, b.order));
    for (const { k } of keys) {
      const o = this.objects.get(k);
      if (o) yield info(k, o);
    }
  }

  async delete(key: string): Promise<void> {
    checkKey('delete', key);
    await this.enter('delete', key);
    this.objects.delete(key);
  }

  /** Counts so far; a snapshot the store does not change afterwards. */
  stats(): MemoryStoreStats {
    const sum = (c: Record<Operation, number>): number => OPERATIONS.reduce((s, op) => s + c[op], 0);
    return { calls: { ...this.calls }, injectedFailures: { ...this.failures }, totalCalls: sum(this.calls), totalInjectedFailures: sum(this.failures) };
  }

  /** Zero the counts. */
  resetStats(): void {
    this.calls = zeroCounts();
    this.failures = zeroCounts();
  }

  /** One call reaching the store: count it, wait its latency, fail it if a fault says so. */
  private async enter(operation: Operation, key: string): Promise<void> {
    this.calls[operation]++;
    // Drawn when the call arrives, so concurrent calls take faults in call order.
    const { injected, delayMs } = this.faults.draw(operation);
    if (injected) this.failures[operation]++;
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (!injected) return;
    const what = `${operation} ${JSON.stringify(key)} on ${this.description}`;
    if ('reset' in injected) {
      const cause = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' });
      throw new ObjectStoreError('transient', operation, key, `${what} failed: connection reset (injected)`, undefined, { cause });
    }
    throw new ObjectStoreError(kindOfStatus(injected.status), operation, key, `${what} failed: HTTP ${injected.status} (injected)`, injected.status);
  }
}

function info(key: string, o: { body: Buffer; contentEncoding?: string }): ObjectInfo {
  return o.contentEncoding === undefined ? { key, size: o.body.length } : { key, size: o.body.length, contentEncoding: o.contentEncoding };
}

function zeroCounts(): Record<Operation, number> {
  return { put: 0, get: 0, head: 0, list: 0, delete: 0 };
}

function scope(opts: FaultScope): ReadonlySet<Operation> | undefined {
  return opts.operations ? new Set(opts.operations) : undefined;
}

function inScope(operations: ReadonlySet<Operation> | undefined, operation: Operation): boolean {
  return operations === undefined || operations.has(operation);
}

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`fault count must be an integer >= 0, got ${n}`);
}

function checkStatus(status: number): number {
  if (!Number.isInteger(status) || status < 400 || status > 599) throw new RangeError(`fault status must be an HTTP error status (400..599), got ${status}`);
  return status;
}

