import { IsthmusError } from '../../core/errors.js';
import { parseDurationMs } from '../../core/units.js';
import type { EffectiveTraffic } from '../../model/settings.js';

/** Gives a slot back. Calling it more than once has no further effect. */
export type Release = () => void;

/** Why a request was shed: the queue was full, or its wait in the queue outlasted `pendingTimeoutMs`. */
export type ShedReason = 'queue-full' | 'queue-timeout';

/** A request refused by a per-destination limit; the proxy answers 503 with `Retry-After`. */
export class ShedError extends IsthmusError {
  readonly reason: ShedReason;
  /** Value for the `Retry-After` header, in whole seconds (≥ 1). */
  readonly retryAfterSeconds: number;

  constructor(reason: ShedReason, retryAfterSeconds: number, message: string) {
    super('ISTHMUS_E_SHED', message);
    this.name = 'ShedError';
    this.reason = reason;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The caller gave up (its AbortSignal fired) while the request waited; `cause` is the signal's reason. */
export class AbortedError extends IsthmusError {
  constructor(message: string, reason: unknown) {
    super('ISTHMUS_E_ABORTED', message, { cause: reason });
    this.name = 'AbortedError';
  }
}

/** The timer functions the bulkhead uses for queue timeouts; tests pass fakes. */
export interface Timers {
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Options of a {@link Bulkhead}. */
export interface BulkheadOptions {
  /** Requests in flight at once (≥ 1). */
  readonly maxRequests: number;
  /** Requests that may wait for a slot (≥ 0; 0 sheds as soon as `maxRequests` is reached). */
  readonly maxPendingRequests: number;
  /** Longest wait in the queue before a request is shed, in milliseconds (> 0). */
  readonly pendingTimeoutMs: number;
  /** `Retry-After` of shed requests, in milliseconds (rounded up to whole seconds, at least 1 s). */
  readonly retryAfterMs: number;
  /** Timer functions for queue timeouts (default: the real ones). */
  readonly timers?: Timers;
  /** Names the destination in error messages. */
  readonly name?: string;
}

/** Counters of a {@link Bulkhead}; `active` and `queued` are gauges, the rest count since creation. */
export interface BulkheadStats {
  /** Slots held now. */
  readonly active: number;
  /** Requests waiting now. */
  readonly queued: number;
  /** Slots handed out, at once or after a wait. */
  readonly admitted: number;
  /** Requests shed, by reason. */
  readonly shed: Readonly<Record<ShedReason, number>>;
  /** Waiting requests whose signal aborted. */
  readonly aborted: number;
}

interface Waiter {
  resolve(release: Release): void;
  reject(err: unknown): void;
  timer: unknown;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  prev: Waiter | undefined;
  next: Waiter | undefined;
}

/**
 * A per-destination concurrency limit with a bounded, time-limited FIFO queue. Beyond both, a
 * request is shed at once with {@link ShedError} rather than piling up: an overloaded or
 * partitioned destination costs the caller a fast 503, not its memory and sockets.
 *
 * Invariant: the queue is non-empty only while every slot is held, because a released slot goes
 * straight to the head of the queue. Every operation is O(1); the only timers are those of queued
 * requests.
 */
export class Bulkhead {
  readonly maxRequests: number;
  readonly maxPendingRequests: number;
  readonly pendingTimeoutMs: number;
  readonly retryAfterSeconds: number;
  readonly #timers: Timers;
  readonly #name: string;
  #active = 0;
  #queued = 0;
  #head: Waiter | undefined;
  #tail: Waiter | undefined;
  #admitted = 0;
  #shedFull = 0;
  #shedTimeout = 0;
  #aborted = 0;

  constructor(options: BulkheadOptions) {
    const { maxRequests, maxPendingRequests, pendingTimeoutMs, retryAfterMs } = options;
    if (!(Number.isInteger(maxRequests) && maxRequests >= 1)) {
      throw new RangeError(`bulkhead maxRequests must be an integer ≥ 1, got ${maxRequests}`);
    }
    if (!(Number.isInteger(maxPendingRequests) && maxPendingRequests >= 0)) {
      throw new RangeError(`bulkhead maxPendingRequests must be an integer ≥ 0, got ${maxPendingRequests}`);
    }
    if (!(pendingTimeoutMs > 0))
      throw new RangeError(`bulkhead pendingTimeoutMs must be > 0, got ${pendingTimeoutMs}`);
    if (!(retryAfterMs >= 0)) throw new RangeError(`bulkhead retryAfterMs must be ≥ 0, got ${retryAfterMs}`);
    this.maxRequests = maxRequests;
    this.maxPendingRequests = maxPendingRequests;
    this.pendingTimeoutMs = pendingTimeoutMs;
    this.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    this.#timers = options.timers ?? realTimers;
    this.#name = options.name ?? 'destination';
  }

  /** A bulkhead from the `circuitBreaker` settings of a TrafficPolicy. */
  static fromSettings(
    settings: EffectiveTraffic['circuitBreaker'],
    extra: { timers?: Timers; name?: string } = {},
  ): Bulkhead {
    return new Bulkhead({
      maxRequests: settings.maxRequests,
      maxPendingRequests: settings.maxPendingRequests,
      pendingTimeoutMs: parseDurationMs(settings.pendingTimeout),
      retryAfterMs: parseDurationMs(settings.retryAfter),
      ...extra,
    });
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  stats(): BulkheadStats {
    return {
      active: this.#active,
      queued: this.#queued,
      admitted: this.#admitted,
      shed: { 'queue-full': this.#shedFull, 'queue-timeout': this.#shedTimeout },
      aborted: this.#aborted,
    };
  }

  /** A slot if one is free now, without queueing (no promise, no timer); undefined otherwise. */
  tryAcquire(): Release | undefined {
    if (this.#active >= this.maxRequests) return undefined;
    this.#active++;
    this.#admitted++;
    return this.#releaser();
  }

  /**
   * Resolves with a slot at once when one is free, otherwise waits in the queue. Rejects with
   * {@link ShedError} when the queue is full (at once) or the wait times out, and with
   * {@link AbortedError} when `signal` aborts first (the request then leaves the queue). Once
   * resolved, the caller owns the slot and must call the release, also if it aborts later.
   */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(this.#abortedError(signal));
    const release = this.tryAcquire();
    if (release) return Promise.resolve(release);
    if (this.#queued >= this.maxPendingRequests) {
      this.#shedFull++;
      return Promise.reject(
        new ShedError(
          'queue-full',
          this.retryAfterSeconds,
          `${this.#name}: ${this.maxRequests} requests in flight and ${this.maxPendingRequests} waiting; ` +
            'shed (raise circuitBreaker.maxRequests or maxPendingRequests if the destination can take more)',
        ),
      );
    }
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: undefined,
        signal,
        onAbort: undefined,
        prev: this.#tail,
        next: undefined,
      };
      if (this.#tail) this.#tail.next = waiter;
      else this.#head = waiter;
      this.#tail = waiter;
      this.#queued++;
      waiter.timer = this.#timers.setTimeout(() => {
        waiter.timer = undefined;
        this.#unlink(waiter);
        this.#shedTimeout++;
        reject(
          new ShedError(
            'queue-timeout',
            this.retryAfterSeconds,
            `${this.#name}: waited ${this.pendingTimeoutMs}ms for one of ${this.maxRequests} request slots; ` +
              'shed (circuitBreaker.pendingTimeout)',
          ),
        );
      }, this.pendingTimeoutMs);
      if (signal) {
        waiter.onAbort = () => {
          this.#unlink(waiter);
          this.#aborted++;
          reject(this.#abortedError(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
    });
  }

  #releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#handOver();
    };
  }

  /** A freed slot goes to the oldest waiter, or back to the pool. */
  #handOver(): void {
    const waiter = this.#head;
    if (!waiter) {
      this.#active--;
      return;
    }
    this.#unlink(waiter);
    this.#admitted++;
    waiter.resolve(this.#releaser());
  }

  /** Takes a waiter out of the queue and drops its timer and abort listener. */
  #unlink(waiter: Waiter): void {
    if (waiter.prev) waiter.prev.next = waiter.next;
    else this.#head = waiter.next;
    if (waiter.next) waiter.next.prev = waiter.prev;
    else this.#tail = waiter.prev;
    waiter.prev = waiter.next = undefined;
    this.#queued--;
    if (waiter.timer !== undefined) this.#timers.clearTimeout(waiter.timer);
    waiter.timer = undefined;
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.onAbort = undefined;
  }

  #abortedError(signal: AbortSignal): AbortedError {
    return new AbortedError(
      `${this.#name}: request cancelled by its caller while waiting for a slot`,
      signal.reason,
    );
  }
}

/**
 * A plain counting limit without a queue, for `maxRetries` (retries in flight) and
 * `maxConnections` style limits: a slot or an immediate no.
 */
export class ConcurrencyLimiter {
  readonly max: number;
  #inUse = 0;
  #denied = 0;

  /** `max`: slots at once (integer ≥ 0; 0 denies everything). */
  constructor(max: number) {
    if (!(Number.isInteger(max) && max >= 0))
      throw new RangeError(`limit must be an integer ≥ 0, got ${max}`);
    this.max = max;
  }

  /** Slots held now. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Requests refused since creation. */
  get denied(): number {
    return this.#denied;
  }

  /** A slot (its idempotent release) if one is free; undefined, with a denial counted, otherwise. */
  tryAcquire(): Release | undefined {
    if (this.#inUse >= this.max) {
      this.#denied++;
      return undefined;
    }
    this.#inUse++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inUse--;
    };
  }
}
