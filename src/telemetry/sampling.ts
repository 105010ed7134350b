import type { Clock } from '../core/clock.js';
import { parseDurationMs } from '../core/units.js';
import type { EffectiveTelemetry } from '../model/settings.js';
import {
  formatOt,
  isRvValue,
  isThValue,
  OT_KEY,
  parseOt,
  readOt,
  type OtTraceState,
  type TraceState,
} from './trace-context.js';

/**
 * Consistent probability sampling with OpenTelemetry thresholds ("TraceState: Probability
 * Sampling"): a trace is sampled iff its 56-bit randomness R is at least the rejection threshold
 * T, where R is the `rv` sub-key of the `ot` tracestate entry if present and otherwise the
 * least-significant 56 bits of the trace-id, and T = (1 − p) · 2^56 travels as `ot=th:…`.
 * Because every participant compares the same R, a trace sampled at probability p is sampled by
 * every participant using a probability ≥ p, so traces stay whole.
 */

/** MaxAdjustedCount = 2^56: the number of distinct 56-bit randomness values. */
export const MAX_ADJUSTED_COUNT = 1n << 56n;
/** Smallest probability a threshold can express, 2^-56 (T = 2^56 − 1). */
export const MIN_PROBABILITY = 2 ** -56;
const TWO_POW_56 = 2 ** 56;
/** Hex digits of a 56-bit value. */
const DIGITS = 14;
/** Offset of the least-significant 56 bits (14 hex digits) in a 32-digit trace-id. */
const TRACE_ID_RANDOMNESS_OFFSET = 18;

function checkThreshold(t: bigint): void {
  if (t < 0n || t >= MAX_ADJUSTED_COUNT) throw new RangeError(`threshold ${t} is outside [0, 2^56)`);
}

/**
 * Rejection threshold for probability `p` ∈ [2^-56, 1]: T = 2^56 − round(p · 2^56), exact (p · 2^56
 * is exact in binary floating point; half rounds away from zero, i.e. towards more sampling).
 *
 * With `precision` < 14 the threshold is rounded to that many significant hex digits, plus one per
 * leading `f` for small probabilities ("Converting floating-point probability to threshold
 * value": precision + exp // -4, where exp is the base-2 exponent of p), so `th` stays short while
 * the relative error of p stays about 16^-precision. OpenTelemetry recommends precision 4.
 */
export function probabilityToThreshold(p: number, precision = DIGITS): bigint {
  if (!(p >= MIN_PROBABILITY && p <= 1)) throw new RangeError(`probability ${p} is outside [2^-56, 1]`);
  if (!Number.isInteger(precision) || precision < 1 || precision > DIGITS)
    throw new RangeError(`precision ${precision} is outside 1–14 hex digits`);
  const t = MAX_ADJUSTED_COUNT - BigInt(Math.round(p * TWO_POW_56));
  if (precision === DIGITS || t === 0n) return t;
  let exp = 0; // p = m · 2^exp with m ∈ [0.5, 1), found exactly by doubling
  for (let m = p; m < 0.5; m *= 2) exp--;
  const digits = Math.min(DIGITS, Math.max(1, precision + Math.floor(exp / -4)));
  return roundThreshold(t, digits, 'nearest');
}

/** Rounds `t` to `digits` leading hex digits (half up, or down), never reaching 2^56. */
function roundThreshold(t: bigint, digits: number, mode: 'nearest' | 'down'): bigint {
  if (digits >= DIGITS) return t;
  const shift = BigInt(4 * (DIGITS - digits));
  const half = mode === 'nearest' ? 1n << (shift - 1n) : 0n;
  const rounded = ((t + half) >> shift) << shift;
  return rounded >= MAX_ADJUSTED_COUNT ? ((MAX_ADJUSTED_COUNT - 1n) >> shift) << shift : rounded;
}

/** Sampling probability of threshold `t`: (2^56 − T) / 2^56. */
export function thresholdToProbability(t: bigint): number {
  checkThreshold(t);
  return Number(MAX_ADJUSTED_COUNT - t) / TWO_POW_56;
}

/** Adjusted count (1/p, the number of spans one sampled span stands for) of threshold `t`. */
export function thresholdToAdjustedCount(t: bigint): number {
  checkThreshold(t);
  return TWO_POW_56 / Number(MAX_ADJUSTED_COUNT - t);
}

/** `th` value of threshold `t`: 14 lowercase hex digits with trailing zeros removed; `0` for T = 0. */
export function formatTh(t: bigint): string {
  checkThreshold(t);
  if (t === 0n) return '0';
  let hex = t.toString(16).padStart(DIGITS, '0');
  let end = hex.length;
  while (hex.charCodeAt(end - 1) === 0x30) end--;
  if (end < hex.length) hex = hex.slice(0, end);
  return hex;
}

/** Threshold of a `th` value (1–14 hex digits, padded with trailing zeros); undefined if malformed. */
export function parseTh(th: string): bigint | undefined {
  return isThValue(th) ? BigInt(`0x${th.padEnd(DIGITS, '0')}`) : undefined;
}

/** `rv` value of 56-bit randomness `r`: exactly 14 lowercase hex digits. */
export function formatRv(r: bigint): string {
  checkThreshold(r);
  return r.toString(16).padStart(DIGITS, '0');
}

/** Randomness of an `rv` value; undefined unless exactly 14 lowercase hex digits. */
export function parseRv(rv: string): bigint | undefined {
  return isRvValue(rv) ? BigInt(`0x${rv}`) : undefined;
}

/** The randomness R of a trace: `rv` when present, else the trace-id's least-significant 56 bits. */
export function randomnessOf(traceId: string, rv?: string): bigint {
  return BigInt(`0x${rv ?? traceId.slice(TRACE_ID_RANDOMNESS_OFFSET)}`);
}

/**
 * R ≥ T, comparing hex text without allocating. `source` holds R as 14 lowercase hex digits at
 * `offset` (an `rv`, or a trace-id at offset 18); `th` is T as a `th` value. Equal-length lowercase
 * hex orders like the numbers it spells ("Lowercase hexadecimal digits are specified to enable
 * direct lexicographical comparison"), and T's omitted digits are zeros, so R ≥ T iff R's first
 * th.length digits are ≥ th.
 */
function atLeastThreshold(source: string, offset: number, th: string): boolean {
  for (let i = 0; i < th.length; i++) {
    const r = source.charCodeAt(offset + i);
    const t = th.charCodeAt(i);
    if (r !== t) return r > t;
  }
  return true;
}

/** The consistent decision: is the trace (trace-id, optional `rv`) sampled at threshold `t`? */
export function isSampledAt(traceId: string, rv: string | undefined, t: bigint): boolean {
  const th = formatTh(t);
  return rv === undefined
    ? atLeastThreshold(traceId, TRACE_ID_RANDOMNESS_OFFSET, th)
    : atLeastThreshold(rv, 0, th);
}

/**
 * Writes a sampling decision's threshold into the `ot` entry of `state`: sets `th` to `threshold`,
 * or erases `th` when it is undefined ("must erase the OpenTelemetry threshold value" when the
 * probability is unknown). `rv` and unknown sub-keys are kept. If `th` already has that value the
 * list is not touched (so a parent-based pass-through keeps the entry where it is); otherwise the
 * modified `ot` entry moves to the left, and an `ot` left empty is deleted. An `ot` entry that
 * cannot be parsed is replaced. Returns false, changing nothing, if the entry would exceed 256
 * characters (OpenTelemetry advises aborting the operation).
 */
export function applyThreshold(state: TraceState, threshold: bigint | undefined): boolean {
  const current = state.get(OT_KEY);
  const ot: OtTraceState | undefined = current === undefined ? undefined : parseOt(current);
  let th: string | undefined;
  if (threshold === undefined) {
    if (ot?.th === undefined) return true;
  } else {
    if (ot?.th !== undefined && parseTh(ot.th) === threshold) return true;
    th = formatTh(threshold);
  }
  const next = formatOt({ th, rv: ot?.rv, extra: ot?.extra ?? [] });
  if (next === '') {
    state.delete(OT_KEY);
    return true;
  }
  if (next.length > 256) return false;
  state.set(OT_KEY, next);
  return true;
}

/** {@link thresholdTraceState}'s strings, by threshold. */
const THRESHOLD_STATES = new Map<bigint, string>();
const MAX_THRESHOLD_STATES = 256;

/**
 * The whole `tracestate` of a hop that received none and samples at `threshold`: what
 * {@link applyThreshold} on an empty {@link TraceState} formats to (`ot=th:…`), without the
 * object. Remembered by threshold: a sampler has one at a time, parents pass a few.
 */
export function thresholdTraceState(threshold: bigint): string {
  let state = THRESHOLD_STATES.get(threshold);
  if (state === undefined) {
    state = `${OT_KEY}=${formatOt({ th: formatTh(threshold), rv: undefined, extra: [] })}`;
    if (THRESHOLD_STATES.size >= MAX_THRESHOLD_STATES) THRESHOLD_STATES.clear();
    THRESHOLD_STATES.set(threshold, state);
  }
  return state;
}

// ---------------------------------------------------------------------------------------------
// Decisions

/** The outcome of {@link AdaptiveSampler.decide} (or {@link AdaptiveSampler.keepAnyway}). */
export interface SamplingDecision {
  /** Record this span and set the sampled flag on the outgoing traceparent. */
  readonly sampled: boolean;
  /** Rejection threshold to write as `ot` `th` (see {@link applyThreshold}); undefined erases `th`. */
  readonly threshold: bigint | undefined;
  /**
   * Spans this one stands for: 1/p when sampled with a known threshold, 0 when not sampled,
   * undefined when sampled by a parent with no (or an inconsistent) threshold, 1 when forced.
   */
  readonly adjustedCount: number | undefined;
  /**
   * Kept by {@link AdaptiveSampler.keepAnyway} outside the probability sample. Its adjusted count
   * is 1 and is never re-weighted: estimates of totals (Σ adjusted counts) must leave forced spans
   * out, because the probability sample already represents them.
   */
  readonly forced: boolean;
}

const NOT_SAMPLED: SamplingDecision = Object.freeze({
  sampled: false,
  threshold: undefined,
  adjustedCount: 0,
  forced: false,
});
const SAMPLED_UNKNOWN: SamplingDecision = Object.freeze({
  sampled: true,
  threshold: undefined,
  adjustedCount: undefined,
  forced: false,
});
/** The decision {@link AdaptiveSampler.keepAnyway} returns for a span kept outside the sample. */
export const FORCED_KEEP: SamplingDecision = Object.freeze({
  sampled: true,
  threshold: undefined,
  adjustedCount: 1,
  forced: true,
});

function sampledAt(threshold: bigint): SamplingDecision {
  return Object.freeze({
    sampled: true,
    threshold,
    adjustedCount: thresholdToAdjustedCount(threshold),
    forced: false,
  });
}

/** What a request tells the sampler. */
export interface SamplingInput {
  /** The trace-id (32 lowercase hex digits): the incoming one, or a new one for a root. */
  readonly traceId: string;
  /** True when this hop starts the trace (no valid incoming traceparent). */
  readonly isRoot: boolean;
  /** The sampled flag of the incoming traceparent; needed unless `isRoot` (absent means not sampled). */
  readonly parentSampled?: boolean;
  /** The incoming tracestate, for `ot` `th` and `rv`. */
  readonly tracestate?: TraceState | undefined;
}

/** How a finished request went, for {@link shouldKeepAnyway}. */
export interface RequestOutcome {
  readonly error: boolean;
  /** Milliseconds. */
  readonly durationMs: number;
}

/** The "always keep" rule. */
export interface KeepPolicy {
  /** Keep failed requests (default true). */
  readonly keepErrors: boolean;
  /** Keep requests slower than this, in milliseconds (default 1000). */
  readonly keepSlowerThanMs: number;
}

/** True when a request must be kept whatever the head decision: an error, or slower than the limit. */
export function shouldKeepAnyway(policy: KeepPolicy, outcome: RequestOutcome): boolean {
  return (policy.keepErrors && outcome.error) || outcome.durationMs > policy.keepSlowerThanMs;
}

// ---------------------------------------------------------------------------------------------
// Adaptive sampler

export interface SamplerOptions {
  /** Target sampled traces per second that this sampler starts (default 10). */
  readonly tracesPerSecond?: number;
  /** Probability floor (default 0.001); the probability never drops below it. */
  readonly minRatio?: number;
  /** Keep failed requests (default true). */
  readonly keepErrors?: boolean;
  /** Keep requests slower than this, milliseconds (default 1000). */
  readonly keepSlowerThanMs?: number;
  /** Sliding window the request rate is measured over, milliseconds (default 10 000). */
  readonly windowMs?: number;
  /** Buckets in the window (default 10, i.e. 1 s each). */
  readonly buckets?: number;
  /** Significant hex digits of `th` (default 4, as OpenTelemetry recommends). */
  readonly precision?: number;
  /**
   * Follow the incoming sampled flag and threshold for non-root requests (default true: the
   * "Parent-based threshold" case). When false, every request gets this sampler's own consistent
   * decision (the "Consistent probability" case, which "ignores the parent's sampling threshold").
   */
  readonly respectParent?: boolean;
}

/** Sampler options from the merged `telemetry.sampling` settings. */
export function samplerOptions(settings: EffectiveTelemetry['sampling']): SamplerOptions {
  return {
    tracesPerSecond: settings.tracesPerSecond,
    minRatio: settings.minRatio,
    keepErrors: settings.keepErrors,
    keepSlowerThanMs: parseDurationMs(settings.keepSlowerThan),
  };
}

/** Counters of one sampler since it was created. */
export interface SamplerCounts {
  /** Requests decided. */
  readonly seen: number;
  /** Requests sampled by probability (own or parent's), forced ones not included. */
  readonly sampled: number;
  /** Requests kept by {@link AdaptiveSampler.keepAnyway}. */
  readonly forced: number;
  /**
   * Σ adjusted counts of the sampled requests whose probability is known: an unbiased estimate of
   * the requests they represent (≈ seen when every decision has a known threshold).
   */
  readonly estimatedTotal: number;
  /** Sampled requests whose adjusted count is unknown (parent sampled without a usable `th`). */
  readonly unknownWeight: number;
}

/** Parent thresholds remembered with their decision objects; a mesh sees only a few distinct ones. */
const PARENT_CACHE_MAX = 64;

/**
 * Head sampler for one service: consistent probability sampling whose probability adapts so that
 * the traces it starts come to about `tracesPerSecond`. Only the decisions it makes itself (roots,
 * or every request when `respectParent` is off) count towards the rate; parent-based ones follow
 * the parent and do not move the probability.
 *
 * The request rate is counted in a ring of buckets over a sliding window (clocked by the injected
 * Clock). The estimate is the larger of the rate over the whole window and over the last one to
 * two buckets, so a surge is throttled within a bucket while a drop raises the probability only
 * as the window forgets the busy period (fast attack, slow decay: a burst of traces is what
 * overloads a telemetry pipeline). At start-up the rate is measured over the time since the first
 * request, but never over less than a quarter bucket, so a few simultaneous first requests of a
 * quiet service do not read as a high rate; the price is that a busy service samples roughly
 * (target / 4) × (1 + ln(rate / target)) traces in that first quarter bucket instead of target / 4.
 * The probability is re-derived when a bucket starts and whenever the current bucket's count
 * reaches a power of two: O(log rate) threshold conversions per bucket. In between, a root
 * decision compares 14 characters and allocates nothing.
 */
export class AdaptiveSampler {
  readonly #clock: Clock;
  #target = 10;
  #minRatio = 0.001;
  #keep: KeepPolicy = { keepErrors: true, keepSlowerThanMs: 1000 };
  #respectParent = true;
  readonly #precision: number;
  readonly #bucketMs: number;
  readonly #counts: Float64Array;
  #windowSum = 0;
  #bucket = 0;
  #startMs: number | undefined;
  #stale = true;

  #probability = 1;
  #threshold = 0n;
  #th = '0';
  #sampled: SamplingDecision = sampledAt(0n);
  #floorThreshold = 0n;
  readonly #parentDecisions = new Map<string, SamplingDecision>();

  #seen = 0;
  #sampledCount = 0;
  #forced = 0;
  #estimatedTotal = 0;
  #unknownWeight = 0;

  constructor(clock: Clock, options: SamplerOptions = {}) {
    this.#clock = clock;
    const windowMs = options.windowMs ?? 10_000;
    const buckets = options.buckets ?? 10;
    if (!Number.isInteger(buckets) || buckets < 1)
      throw new RangeError(`buckets must be ≥ 1, got ${buckets}`);
    if (!(windowMs > 0)) throw new RangeError(`windowMs must be > 0, got ${windowMs}`);
    this.#precision = options.precision ?? 4;
    probabilityToThreshold(1, this.#precision); // validates precision
    this.#bucketMs = windowMs / buckets;
    this.#counts = new Float64Array(buckets);
    this.configure(options);
  }

  /** Changes target, floor, keep rule or parent handling; the window of observed traffic is kept. */
  configure(options: SamplerOptions): void {
    const target = options.tracesPerSecond ?? this.#target;
    const minRatio = options.minRatio ?? this.#minRatio;
    if (!(target >= 0)) throw new RangeError(`tracesPerSecond must be ≥ 0, got ${target}`);
    if (!(minRatio >= 0 && minRatio <= 1))
      throw new RangeError(`minRatio must be in [0, 1], got ${minRatio}`);
    this.#target = target;
    this.#minRatio = minRatio;
    this.#keep = {
      keepErrors: options.keepErrors ?? this.#keep.keepErrors,
      keepSlowerThanMs: options.keepSlowerThanMs ?? this.#keep.keepSlowerThanMs,
    };
    this.#respectParent = options.respectParent ?? this.#respectParent;
    // Rounding the floor's threshold down keeps the effective probability at or above the floor.
    const floor = Math.max(minRatio, MIN_PROBABILITY);
    this.#floorThreshold = roundDownToPrecision(probabilityToThreshold(floor), floor, this.#precision);
    this.#stale = true;
  }

  /** Current sampling probability for traces this sampler starts (after threshold rounding). */
  get probability(): number {
    return this.#probability;
  }

  /** Current rejection threshold. */
  get threshold(): bigint {
    return this.#threshold;
  }

  /**
   * Head decision for a request, made before it is forwarded: its `sampled` goes into the
   * outgoing traceparent and its `threshold` into the `ot` entry ({@link applyThreshold}).
   */
  decide(input: SamplingInput): SamplingDecision {
    this.#seen++;
    const ot = input.tracestate === undefined ? undefined : readOt(input.tracestate);
    if (!input.isRoot && this.#respectParent) return this.#count(this.#followParent(input, ot));
    this.#observe(this.#clock.monotonicMs());
    const sampled =
      ot?.rv === undefined
        ? atLeastThreshold(input.traceId, TRACE_ID_RANDOMNESS_OFFSET, this.#th)
        : atLeastThreshold(ot.rv, 0, this.#th);
    return this.#count(sampled ? this.#sampled : NOT_SAMPLED);
  }

  /**
   * Final decision once the request has finished: `decision` unchanged if it was sampled or the
   * keep rule does not apply, else {@link FORCED_KEEP} (adjusted count 1, `forced`). A forced span
   * was not sampled at the head, so the traceparent sent downstream said "not sampled" and only
   * this hop's span is kept; it carries no `th`, which tells OpenTelemetry consumers its adjusted
   * count is unknown ("not defined for spans obtained via non-probabilistic sampling").
   */
  keepAnyway(decision: SamplingDecision, outcome: RequestOutcome): SamplingDecision {
    if (decision.sampled || !shouldKeepAnyway(this.#keep, outcome)) return decision;
    this.#forced++;
    return FORCED_KEEP;
  }

  counts(): SamplerCounts {
    return {
      seen: this.#seen,
      sampled: this.#sampledCount,
      forced: this.#forced,
      estimatedTotal: this.#estimatedTotal,
      unknownWeight: this.#unknownWeight,
    };
  }

  #count(decision: SamplingDecision): SamplingDecision {
    if (decision.sampled) {
      this.#sampledCount++;
      if (decision.adjustedCount === undefined) this.#unknownWeight++;
      else this.#estimatedTotal += decision.adjustedCount;
    }
    return decision;
  }

  /**
   * "Parent-based threshold": keep the parent's decision and propagate its threshold, erasing it
   * when absent or "apparently inconsistent" (sampled flag set but R < T).
   */
  #followParent(input: SamplingInput, ot: OtTraceState | undefined): SamplingDecision {
    if (input.parentSampled !== true) return NOT_SAMPLED;
    const th = ot?.th;
    if (th === undefined) return SAMPLED_UNKNOWN;
    const consistent =
      ot?.rv === undefined
        ? atLeastThreshold(input.traceId, TRACE_ID_RANDOMNESS_OFFSET, th)
        : atLeastThreshold(ot.rv, 0, th);
    if (!consistent) return SAMPLED_UNKNOWN;
    let decision = this.#parentDecisions.get(th);
    if (decision === undefined) {
      if (this.#parentDecisions.size >= PARENT_CACHE_MAX) this.#parentDecisions.clear();
      decision = sampledAt(parseTh(th) as bigint);
      this.#parentDecisions.set(th, decision);
    }
    return decision;
  }

  #observe(now: number): void {
    const buckets = this.#counts.length;
    const bucket = Math.floor(now / this.#bucketMs);
    if (this.#startMs === undefined) {
      this.#startMs = now;
      this.#bucket = bucket;
    }
    let evaluate = this.#stale;
    if (bucket > this.#bucket) {
      const last = Math.min(bucket, this.#bucket + buckets);
      for (let b = this.#bucket + 1; b <= last; b++) {
        const slot = b % buckets;
        this.#windowSum -= this.#counts[slot] as number;
        this.#counts[slot] = 0;
      }
      this.#bucket = bucket;
      evaluate = true;
    }
    const slot = bucket % buckets;
    const count = (this.#counts[slot] as number) + 1;
    this.#counts[slot] = count;
    this.#windowSum++;
    if (evaluate || (count & (count - 1)) === 0) this.#evaluate(now);
  }

  #evaluate(now: number): void {
    this.#stale = false;
    const buckets = this.#counts.length;
    const b = this.#bucketMs;
    const sinceStart = now - (this.#startMs as number);
    const intoBucket = now - this.#bucket * b;
    // Spans are capped by the time since the first request (start-up), and floored at a quarter
    // bucket so that a few simultaneous first requests do not read as a high rate.
    const minSpan = b / 4;
    const longSpan = Math.max(minSpan, Math.min(sinceStart, (buckets - 1) * b + intoBucket));
    const shortSpan = Math.max(minSpan, Math.min(sinceStart, b + intoBucket));
    const current = this.#counts[this.#bucket % buckets] as number;
    const previous = buckets > 1 ? (this.#counts[(this.#bucket - 1 + buckets) % buckets] as number) : 0;
    const perSecond = 1000 * Math.max(this.#windowSum / longSpan, (current + previous) / shortSpan);
    const floor = Math.max(this.#minRatio, MIN_PROBABILITY);
    const p = Math.min(1, Math.max(floor, perSecond > 0 ? this.#target / perSecond : 1));
    let t = probabilityToThreshold(p, this.#precision);
    if (t > this.#floorThreshold) t = this.#floorThreshold;
    if (t === this.#threshold) return;
    this.#threshold = t;
    this.#th = formatTh(t);
    this.#probability = thresholdToProbability(t);
    this.#sampled = sampledAt(t);
  }
}

/**
 * `threshold` (for probability `p`) rounded down to the digits {@link probabilityToThreshold} would
 * keep at `precision`, so that its probability is at least `p`.
 */
function roundDownToPrecision(threshold: bigint, p: number, precision: number): bigint {
  if (precision >= DIGITS || threshold === 0n) return threshold;
  let exp = 0;
  for (let m = p; m < 0.5; m *= 2) exp--;
  const digits = Math.min(DIGITS, Math.max(1, precision + Math.floor(exp / -4)));
  return roundThreshold(threshold, digits, 'down');
}

/** One {@link AdaptiveSampler} per service, created on first use. */
export class ServiceSamplers {
  readonly #clock: Clock;
  readonly #optionsFor: (service: string) => SamplerOptions;
  readonly #samplers = new Map<string, AdaptiveSampler>();

  /** `optionsFor` gives a service's options (e.g. {@link samplerOptions} of its merged settings). */
  constructor(clock: Clock, optionsFor: (service: string) => SamplerOptions) {
    this.#clock = clock;
    this.#optionsFor = optionsFor;
  }

  /** The sampler of `service`. */
  get(service: string): AdaptiveSampler {
    let sampler = this.#samplers.get(service);
    if (sampler === undefined) {
      sampler = new AdaptiveSampler(this.#clock, this.#optionsFor(service));
      this.#samplers.set(service, sampler);
    }
    return sampler;
  }

  /** Re-reads every existing sampler's options (after a configuration reload). */
  reconfigure(): void {
    for (const [service, sampler] of this.#samplers) sampler.configure(this.#optionsFor(service));
  }

  /** Counters per service. */
  counts(): Map<string, SamplerCounts> {
    const out = new Map<string, SamplerCounts>();
    for (const [service, sampler] of this.#samplers) out.set(service, sampler.counts());
    return out;
  }
}
