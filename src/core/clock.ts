/**
 * Time source for everything that depends on time (breakers, ejection, backoff, leases, drills).
 * Production code takes a Clock; tests pass a ManualClock and advance it instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch (wall clock, for timestamps that leave the process). */
  now(): number;
  /** Monotonic milliseconds (for measuring intervals; never goes backwards). */
  monotonicMs(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicMs: () => performance.now(),
};

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  #wallMs: number;
  #monoMs = 0;

  constructor(startWallMs = 1_700_000_000_000) {
    this.#wallMs = startWallMs;
  }

  now(): number {
    return this.#wallMs;
  }

  monotonicMs(): number {
    return this.#monoMs;
  }

  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance needs a non-negative number, got ${ms}`);
    this.#wallMs += ms;
    this.#monoMs += ms;
  }
}
