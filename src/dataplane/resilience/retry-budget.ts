import type { Clock } from '../../core/clock.js';
import { parseDurationMs } from '../../core/units.js';
import type { EffectiveTraffic } from '../../model/settings.js';

/** Options of a {@link RetryBudget}. */
export interface RetryBudgetOptions {
  /** Retries allowed per original request over the window, 0..1 (e.g. 0.2). */
  readonly ratio: number;
  /** Retries per second always allowed on top of the ratio (≥ 0). */
  readonly minPerSecond: number;
  /** Length of the sliding window, in milliseconds (> 0). */
  readonly windowMs: number;
  /** Number of time buckets the window is split into (default 10). */
  readonly buckets?: number;
  readonly clock: Clock;
}

/** Counters of a {@link RetryBudget}; `requests` and `retries` are within the current window. */
export interface RetryBudgetStats {
  /** Original requests recorded in the window. */
  readonly requests: number;
  /** Retries granted in the window. */
  readonly retries: number;
  /** Retries the window allows in total right now (ratio × requests + minPerSecond × window s). */
  readonly allowance: number;
  /** Retries granted since creation. */
  readonly granted: number;
  /** Retries denied since creation. */
  readonly denied: number;
}

/**
 * A retry budget: over a sliding window, retries granted ≤ ratio × requests + minPerSecond ×
 * window seconds. It caps the extra load retries add when a destination fails (a retry storm),
 * while the per-second floor lets quiet callers still retry.
 *
 * The window is a ring of time buckets, so memory and time per call are O(buckets), not
 * O(requests). The oldest bucket leaves the window whole, so the window actually counted is
 * between window × (1 − 1/buckets) and window long.
 *
 * `recordRequest()` is for original requests only: if retries counted as requests, a failing
 * destination would feed its own budget.
 */
export class RetryBudget {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly windowMs: number;
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #requests: number[];
  readonly #retries: number[];
  /** Absolute number (monotonic ms / bucketMs) of the newest bucket. */
  #head: number;
  #requestsInWindow = 0;
  #retriesInWindow = 0;
  #granted = 0;
  #denied = 0;

  constructor(options: RetryBudgetOptions) {
    const { ratio, minPerSecond, windowMs, buckets = 10, clock } = options;
    if (!(ratio >= 0 && ratio <= 1))
      throw new RangeError(`retry budget ratio must be in [0, 1], got ${ratio}`);
    if (!(minPerSecond >= 0))
      throw new RangeError(`retry budget minPerSecond must be ≥ 0, got ${minPerSecond}`);
    if (!(windowMs > 0)) throw new RangeError(`retry budget windowMs must be > 0, got ${windowMs}`);
    if (!(Number.isInteger(buckets) && buckets >= 1)) {
      throw new RangeError(`retry budget buckets must be a positive integer, got ${buckets}`);
    }
    this.ratio = ratio;
    this.minPerSecond = minPerSecond;
    this.windowMs = windowMs;
    this.#clock = clock;
    this.#bucketMs = windowMs / buckets;
    this.#requests = new Array<number>(buckets).fill(0);
    this.#retries = new Array<number>(buckets).fill(0);
    this.#head = this.#bucketAt(clock.monotonicMs());
  }

  /** A budget from `retries.budget` or `retries.crossRegion` of a TrafficPolicy. */
  static fromSettings(settings: EffectiveTraffic['retries']['budget'], clock: Clock): RetryBudget {
    return new RetryBudget({
      ratio: settings.ratio,
      minPerSecond: settings.minPerSecond,
      windowMs: parseDurationMs(settings.window),
      clock,
    });
  }

  /**
   * Takes one retry from every budget, or from none: true only if all of them allow it. A
   * cross-region retry passes `[destinationBudget, crossRegionBudget]`. Each budget that refused
   * counts a denial.
   */
  static tryAcquireAll(budgets: readonly RetryBudget[]): boolean {
    let allowed = true;
    for (const budget of budgets) {
      budget.#advance();
      if (!budget.#hasRoom()) {
        budget.#denied++;
        allowed = false;
      }
    }
    if (allowed) for (const budget of budgets) budget.#take();
    return allowed;
  }

  /** Counts one original request (not a retry) toward the ratio. */
  recordRequest(): void {
    this.#advance();
    this.#requestsInWindow++;
    this.#requests[this.#slot(this.#head)]!++;
  }

  /** Takes one retry if the budget allows it; false (and a denial counted) otherwise. */
  tryAcquireRetry(): boolean {
    return RetryBudget.tryAcquireAll([this]);
  }

  /** Whether a retry would be granted now, without taking it. */
  canRetry(): boolean {
    this.#advance();
    return this.#hasRoom();
  }

  stats(): RetryBudgetStats {
    this.#advance();
    return {
      requests: this.#requestsInWindow,
      retries: this.#retriesInWindow,
      allowance: this.#allowance(),
      granted: this.#granted,
      denied: this.#denied,
    };
  }

  #allowance(): number {
    return this.ratio * this.#requestsInWindow + (this.minPerSecond * this.windowMs) / 1000;
  }

  #hasRoom(): boolean {
    return this.#retriesInWindow + 1 <= this.#allowance();
  }

  #take(): void {
    this.#retriesInWindow++;
    this.#retries[this.#slot(this.#head)]!++;
    this.#granted++;
  }

  #bucketAt(monotonicMs: number): number {
    return Math.floor(monotonicMs / this.#bucketMs);
  }

  #slot(bucket: number): number {
    return bucket % this.#requests.length;
  }

  /** Moves the window to now, dropping buckets that fell out of it. */
  #advance(): void {
    const now = this.#bucketAt(this.#clock.monotonicMs());
    if (now <= this.#head) return;
    const n = this.#requests.length;
    if (now - this.#head >= n) {
      this.#requests.fill(0);
      this.#retries.fill(0);
      this.#requestsInWindow = 0;
      this.#retriesInWindow = 0;
    } else {
      for (let b = this.#head + 1; b <= now; b++) {
        const slot = this.#slot(b);
        this.#requestsInWindow -= this.#requests[slot]!;
        this.#retriesInWindow -= this.#retries[slot]!;
        this.#requests[slot] = 0;
        this.#retries[slot] = 0;
      }
    }
    this.#head = now;
  }
}
