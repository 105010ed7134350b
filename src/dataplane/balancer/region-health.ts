import type { RegionHealthConfig } from './config.js';

/** `recovering`: readmitted and ramping its weight up (slow start). */
export type RegionState = 'healthy' | 'ejected' | 'recovering';

const BUCKETS = 10;
/** Beyond this many doublings the readmission wait stops growing (2^16 × readmitAfter). */
const MAX_DOUBLINGS = 16;

/**
 * Health of one region as one caller sees it, with hysteresis. Score = share of healthy endpoint
 * weight × success rate over the rolling window (1 when the window saw no traffic: no evidence
 * against). The region is ejected once the score stayed below `ejectBelow` for `ejectAfter`, and
 * readmitted once it stayed above `readmitAbove` for `readmitAfter`, so a score wandering between
 * the two thresholds changes nothing. Ejections within `flapWindow` are flaps; beyond `maxFlaps`
 * each further readmission wait doubles. A readmitted region ramps its weight linearly from
 * `initialWeight` to 1 over `slowStart`. Transitions happen only in {@link update}.
 */
export class RegionHealth {
  readonly region: string;
  readonly config: RegionHealthConfig;
  #state: RegionState = 'healthy';
  #sinceMs: number;
  #reason = 'new';
  #score: number | undefined;
  #healthyShare: number | undefined;
  #belowSinceMs: number | undefined;
  #aboveSinceMs: number | undefined;
  readonly #ejectionTimesMs: number[] = [];
  readonly #bucketMs: number;
  readonly #ok = new Array<number>(BUCKETS).fill(0);
  readonly #total = new Array<number>(BUCKETS).fill(0);
  #head: number;
  #okInWindow = 0;
  #totalInWindow = 0;
  /** Transitions since creation. */
  transitions = 0;

  constructor(region: string, config: RegionHealthConfig, nowMs: number) {
    this.region = region;
    this.config = config;
    this.#sinceMs = nowMs;
    this.#bucketMs = config.windowMs / BUCKETS;
    this.#head = Math.floor(nowMs / this.#bucketMs);
  }

  get state(): RegionState {
    return this.#state;
  }
  /** Monotonic time the current state began, ms. */
  get sinceMs(): number {
    return this.#sinceMs;
  }
  /** Why the last transition happened. */
  get reason(): string {
    return this.#reason;
  }
  /** Score at the last {@link update}, 0..1 (undefined when the region had no endpoints). */
  get score(): number | undefined {
    return this.#score;
  }
  /** Healthy share of endpoint weight at the last {@link update}, 0..1. */
  get healthyShare(): number | undefined {
    return this.#healthyShare;
  }

  /** Counts one attempt outcome toward the rolling success rate. */
  record(ok: boolean, nowMs: number): void {
    this.#advance(nowMs);
    const i = this.#head % BUCKETS;
    this.#total[i] = (this.#total[i] as number) + 1;
    this.#totalInWindow++;
    if (ok) {
      this.#ok[i] = (this.#ok[i] as number) + 1;
      this.#okInWindow++;
    }
  }

  /** Success rate over the window, 0..1; undefined when the window saw no attempts. */
  successRate(nowMs: number): number | undefined {
    this.#advance(nowMs);
    return this.#totalInWindow === 0 ? undefined : this.#okInWindow / this.#totalInWindow;
  }

  /** Ejections within the flap window ending at `nowMs`. */
  flaps(nowMs: number): number {
    const from = nowMs - this.config.flapWindowMs;
    while (this.#ejectionTimesMs.length > 0 && (this.#ejectionTimesMs[0] as number) <= from) {
      this.#ejectionTimesMs.shift();
    }
    return this.#ejectionTimesMs.length;
  }

  /** The readmission wait in force now, ms (doubled per flap beyond maxFlaps). */
  readmitAfterMs(nowMs: number): number {
    const extra = Math.min(MAX_DOUBLINGS, Math.max(0, this.flaps(nowMs) - this.config.maxFlaps));
    return this.config.readmitAfterMs * 2 ** extra;
  }

  /** Weight multiplier of the region's endpoints: 0 ejected, ramping while recovering, else 1. */
  weight(nowMs: number): number {
    if (this.#state === 'healthy') return 1;
    if (this.#state === 'ejected') return 0;
    const { slowStartMs, initialWeight } = this.config;
    const progress = slowStartMs <= 0 ? 1 : Math.min(1, Math.max(0, nowMs - this.#sinceMs) / slowStartMs);
    return initialWeight + (1 - initialWeight) * progress;
  }

  /**
   * Re-scores the region from the healthy share of its endpoints (undefined: it has none) and the
   * window's success rate, and makes any transition due. Returns true when the state changed.
   */
  update(healthyShare: number | undefined, nowMs: number): boolean {
    const rate = this.successRate(nowMs);
    this.#healthyShare = healthyShare;
    const score = healthyShare === undefined ? undefined : healthyShare * (rate ?? 1);
    this.#score = score;
    const c = this.config;
    const why = (cmp: string, threshold: number, forMs: number) =>
      `score ${fmt(score)} (healthy ${fmt(healthyShare)}, success ${rate === undefined ? 'n/a' : fmt(rate)}) ${cmp} ${threshold} for ${forMs}ms`;

    if (this.#state === 'ejected') {
      this.#belowSinceMs = undefined;
      if (score === undefined || score <= c.readmitAbove) {
        this.#aboveSinceMs = undefined;
        return false;
      }
      this.#aboveSinceMs ??= nowMs;
      const waitMs = this.readmitAfterMs(nowMs);
      if (nowMs - this.#aboveSinceMs < waitMs) return false;
      const reason = why('above', c.readmitAbove, nowMs - this.#aboveSinceMs);
      this.#aboveSinceMs = undefined;
      if (c.slowStartMs > 0) this.#enter('recovering', `readmitted: ${reason}`, nowMs);
      else this.#enter('healthy', `readmitted: ${reason}`, nowMs);
      return true;
    }

    this.#aboveSinceMs = undefined;
    if (score !== undefined && score < c.ejectBelow) {
      this.#belowSinceMs ??= nowMs;
      if (nowMs - this.#belowSinceMs >= c.ejectAfterMs) {
        const reason = why('below', c.ejectBelow, nowMs - this.#belowSinceMs);
        this.#belowSinceMs = undefined;
        this.#ejectionTimesMs.push(nowMs);
        this.#enter('ejected', `ejected: ${reason}`, nowMs);
        return true;
      }
    } else {
      this.#belowSinceMs = undefined;
    }
    if (this.#state === 'recovering' && nowMs - this.#sinceMs >= c.slowStartMs) {
      this.#enter('healthy', `slow start of ${c.slowStartMs}ms complete`, nowMs);
      return true;
    }
    return false;
  }

  #enter(state: RegionState, reason: string, nowMs: number): void {
    this.#state = state;
    this.#sinceMs = nowMs;
    this.#reason = reason;
    this.transitions++;
  }

  #advance(nowMs: number): void {
    const head = Math.floor(nowMs / this.#bucketMs);
    if (head <= this.#head) return;
    const steps = Math.min(BUCKETS, head - this.#head);
    for (let s = 1; s <= steps; s++) {
      const i = (this.#head + s) % BUCKETS;
      this.#okInWindow -= this.#ok[i] as number;
      this.#totalInWindow -= this.#total[i] as number;
      this.#ok[i] = 0;
      this.#total[i] = 0;
    }
    this.#head = head;
  }
}

const fmt = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(2));
