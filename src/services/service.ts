import { detached } from '../observability/tracing.js';

/**
 * Background work with a lifecycle (compaction, uploads, retries, DLQ flushes): `run` loops until
 * its signal aborts and never rejects (a failure is logged with context and retried with
 * backoff); `drain`, when a service has queued work, finishes it before a shutdown stops it.
 */
export interface Service {
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
  /** Finish queued work, or give up at `deadline` (epoch ms); resolves either way. */
  drain?(deadline: number): Promise<void>;
}

/** Minimal logger the services use (pino's shape). */
export interface ServiceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Resolves after `ms`, or at once (without rejecting) when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, ms));
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Starts services, and at shutdown drains then stops them all; no run promise is left floating. */
export class ServiceRunner {
  readonly #abort = new AbortController();
  readonly #running: { service: Service; done: Promise<void> }[] = [];

  constructor(private readonly logger: ServiceLogger) {}

  /** Start `service`; the handle stops it alone (draining it up to `graceMs` first), as when its collection is dropped. */
  start(service: Service): { stop(graceMs: number): Promise<void> } {
    if (this.#abort.signal.aborted) throw new Error(`ServiceRunner is stopped; cannot start ${service.name}`);
    const own = new AbortController();
    const signal = AbortSignal.any([this.#abort.signal, own.signal]);
    // A service started while a request is handled must not run inside that request's trace.
    const done = detached(() => service.run(signal)).catch((err: unknown) => {
      // run() must not reject; if one does, say so loudly rather than lose it.
      this.logger.error({ service: service.name, err }, 'Service stopped with an error');
    });
    const entry = { service, done };
    this.#running.push(entry);
    return {
      stop: async (graceMs: number) => {
        const i = this.#running.indexOf(entry);
        if (i < 0) return;
        this.#running.splice(i, 1);
        if (graceMs > 0 && service.drain) await service.drain(Date.now() + graceMs).catch((err: unknown) => this.logger.error({ service: service.name, err }, 'Service drain failed'));
        own.abort();
        await done;
      },
    };
  }

  /** Drain every service (up to `graceMs` in all), then abort them and wait until each run has returned. */
  async stop(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    await Promise.all(
      this.#running.map(({ service }) => (service.drain ? service.drain(deadline).catch((err: unknown) => this.logger.error({ service: service.name, err }, 'Service drain failed')) : Promise.resolve())),
    );
    this.#abort.abort();
    await Promise.all(this.#running.map((r) => r.done));
  }
}
