import type { Random } from './random.js';

/** Delay before retry number `retry` (0 for the first retry), in milliseconds. */
export interface Backoff {
  delayMs(retry: number): number;
}

/**
 * Exponential backoff with full jitter: uniform in [0, min(maxMs, baseMs × 2^retry)].
 * Full jitter spreads synchronized retries best (callers that failed together do not retry
 * together), which matters most when a whole region fails at once.
 */
export class FullJitterBackoff implements Backoff {
  constructor(
    readonly baseMs: number,
    readonly maxMs: number,
    private readonly random: Random,
  ) {
    if (!(baseMs >= 0 && maxMs >= baseMs)) throw new RangeError(`invalid backoff ${baseMs}..${maxMs}ms`);
  }

  delayMs(retry: number): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(retry, 30));
    return this.random.next() * ceiling;
  }
}
