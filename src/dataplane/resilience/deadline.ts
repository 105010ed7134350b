import type { Clock } from '../../core/clock.js';
import { IsthmusError } from '../../core/errors.js';

/**
 * The header that carries a request's remaining time budget to the next hop, in whole
 * milliseconds.
 *
 * It is relative ("you have 850 ms"), not an absolute instant ("until 12:00:00.850"), because
 * the hops of one request run in different regions on different machines whose wall clocks
 * differ by unknown amounts: an absolute deadline would be shortened or stretched by that skew,
 * and a clock a second off would turn every deadline into an instant timeout. A relative budget
 * needs no shared clock; each hop measures it on its own monotonic clock from the moment it reads
 * the header. The cost is that the one-way transit time of each hop is not deducted (gRPC's
 * `grpc-timeout` makes the same trade).
 */
export const DEADLINE_HEADER = 'isthmus-deadline-ms';

/** Largest budget accepted from the header, in milliseconds (1 h, the largest `timeouts.overall`). */
export const MAX_DEADLINE_MS = 3_600_000;

/**
 * Parses an `isthmus-deadline-ms` header: undefined when absent, else the budget in milliseconds
 * (0 means already expired). Throws `ISTHMUS_E_BAD_HEADER` (answer 400) for anything but one
 * non-negative integer of at most {@link MAX_DEADLINE_MS}: a garbled budget must not silently
 * become "no deadline" or "already expired".
 */
export function parseDeadlineHeader(value: string | readonly string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    if (value.length !== 1) throw badDeadline(`${value.length} values`, 'send the header once');
    return parseDeadlineHeader(value[0]);
  }
  const text = value.trim();
  // Node joins repeated headers it does not know with ", ".
  if (text.includes(',')) throw badDeadline(JSON.stringify(value), 'send the header once, with one value');
  if (!/^\d+$/.test(text)) {
    throw badDeadline(JSON.stringify(value), 'write a non-negative whole number of milliseconds, e.g. "850"');
  }
  const ms = Number(text);
  if (ms > MAX_DEADLINE_MS) {
    throw badDeadline(JSON.stringify(value), `use at most ${MAX_DEADLINE_MS} (1h)`);
  }
  return ms;
}

function badDeadline(what: string, fix: string): IsthmusError {
  return new IsthmusError('ISTHMUS_E_BAD_HEADER', `invalid ${DEADLINE_HEADER} header ${what}: ${fix}`);
}

/**
 * A point in time by which a request must be done, on a Clock's monotonic time. Immutable:
 * `child` makes a new, never later, deadline for one attempt.
 */
export class Deadline {
  readonly #clock: Clock;
  /** Expiry instant, in the clock's monotonic milliseconds. */
  readonly expiresAtMs: number;

  /** `budgetMs`: time left from now, in milliseconds (negative counts as 0). */
  constructor(clock: Clock, budgetMs: number) {
    if (Number.isNaN(budgetMs))
      throw new RangeError('deadline budget must be a number of milliseconds, got NaN');
    this.#clock = clock;
    this.expiresAtMs = clock.monotonicMs() + Math.max(0, budgetMs);
  }

  /**
   * The deadline of an arriving request: the local `timeouts.overall` in milliseconds, shortened
   * to the caller's remaining budget when the request carried one (see {@link parseDeadlineHeader}).
   */
  static start(clock: Clock, overallMs: number, propagatedMs?: number): Deadline {
    return new Deadline(clock, propagatedMs === undefined ? overallMs : Math.min(overallMs, propagatedMs));
  }

  /** Time left, in milliseconds (0 once expired; fractional with a real clock). */
  remainingMs(): number {
    return Math.max(0, this.expiresAtMs - this.#clock.monotonicMs());
  }

  expired(): boolean {
    return this.remainingMs() <= 0;
  }

  /** Whether work taking `ms` milliseconds can finish in time (so a retry is worth starting). */
  canFit(ms: number): boolean {
    return ms <= this.remainingMs() && !this.expired();
  }

  /** The deadline of one attempt: `perTryMs` from now, but never past this deadline. */
  child(perTryMs: number): Deadline {
    return new Deadline(this.#clock, Math.min(perTryMs, this.remainingMs()));
  }

  /** Value for {@link DEADLINE_HEADER}: the remaining budget rounded down, so it never overstates. */
  headerValue(): string {
    return String(Math.floor(this.remainingMs()));
  }
}
