import type { OutlierConfig } from './config.js';

/**
 * Outlier state of an endpoint. `ejected`: taken out of picking until `untilMs`. `suspect`: it met
 * an ejection criterion but its locality already has `maxEjectedRatio` ejected, so it stays
 * pickable; it still counts as unhealthy for spill-over and region health.
 */
export type OutlierState = 'healthy' | 'ejected' | 'suspect';

/** Passive-health bookkeeping of one endpoint (mutated only by {@link OutlierDetector}). */
export interface OutlierRecord {
  readonly id: string;
  /** Locality key (`region/zone`) the endpoint is compared and capped within. */
  locality: string;
  state: OutlierState;
  /** Monotonic time of the last state change, ms. */
  sinceMs: number;
  /** Monotonic end of the current ejection or suspicion, ms (meaningless when healthy). */
  untilMs: number;
  /** n of the next ejection's n × baseEjectionTime (consecutive ejections; decays while healthy). */
  multiplier: number;
  /** Times ejected since the endpoint became known. */
  ejections: number;
  /** Times an ejection was held back by `maxEjectedRatio` (became `suspect` instead). */
  capped: number;
  consecutiveFailures: number;
  /** Attempts, successes and latency samples in the current interval. */
  intervalRequests: number;
  intervalSuccesses: number;
  intervalLatencySamples: number;
  /** Why the last state change happened (for the admin page and logs). */
  reason: string;
}

interface Group {
  records: OutlierRecord[];
  ejected: number;
}

/** Called on every state change of a record. */
export type OutlierListener = (record: OutlierRecord, nowMs: number) => void;

/**
 * Passive outlier detection over real traffic: consecutive failures (at once), success-rate and
 * latency outliers (every interval, each endpoint compared only with its own locality, so a
 * remote gateway is never an outlier for WAN latency). The n-th consecutive ejection lasts
 * n × baseEjectionTime, up to maxEjectionTime; n goes down by one per interval an endpoint stays
 * healthy after it is back. Time moves only through the `nowMs` arguments.
 */
export class OutlierDetector {
  readonly config: OutlierConfig;
  readonly #records = new Map<string, OutlierRecord>();
  readonly #groups = new Map<string, Group>();
  readonly #listener: OutlierListener | undefined;
  #nextExpiryMs = Infinity;

  constructor(config: OutlierConfig, listener?: OutlierListener) {
    this.config = config;
    this.#listener = listener;
  }

  /** Replaces the endpoint set; endpoints that stay keep their state, others are forgotten. */
  setEndpoints(endpoints: Iterable<{ readonly id: string; readonly locality: string }>): void {
    const seen = new Set<string>();
    this.#groups.clear();
    for (const { id, locality } of endpoints) {
      if (seen.has(id)) continue;
      seen.add(id);
      let rec = this.#records.get(id);
      if (rec === undefined) {
        rec = newRecord(id, locality);
        this.#records.set(id, rec);
      }
      rec.locality = locality;
      const group = this.#groups.get(locality) ?? { records: [], ejected: 0 };
      this.#groups.set(locality, group);
      group.records.push(rec);
      if (rec.state === 'ejected') group.ejected++;
    }
    for (const id of [...this.#records.keys()]) if (!seen.has(id)) this.#records.delete(id);
    this.#recomputeNextExpiry();
  }

  get(id: string): OutlierRecord | undefined {
    return this.#records.get(id);
  }

  /** Ejected endpoints of a locality right now. */
  ejectedIn(locality: string): number {
    return this.#groups.get(locality)?.ejected ?? 0;
  }

  /** Monotonic time of the next ejection or suspicion that ends, ms (Infinity if none). */
  get nextExpiryMs(): number {
    return this.#nextExpiryMs;
  }

  /**
   * Counts one attempt outcome. `latencySample`: the attempt measured the endpoint's latency
   * (successes and timeouts), for the latency detector's minimum.
   */
  record(rec: OutlierRecord, ok: boolean, latencySample: boolean, nowMs: number): void {
    rec.intervalRequests++;
    if (latencySample) rec.intervalLatencySamples++;
    if (ok) {
      rec.intervalSuccesses++;
      rec.consecutiveFailures = 0;
      return;
    }
    rec.consecutiveFailures++;
    const limit = this.config.consecutiveFailures;
    if (limit > 0 && rec.consecutiveFailures >= limit && rec.state === 'healthy') {
      this.#eject(rec, `${rec.consecutiveFailures} consecutive failures`, nowMs);
    }
  }

  /** Ends ejections and suspicions whose time is up (cheap when none is due). */
  expire(nowMs: number): void {
    if (nowMs < this.#nextExpiryMs) return;
    for (const rec of this.#records.values()) {
      if (rec.state === 'healthy' || rec.untilMs > nowMs) continue;
      if (rec.state === 'ejected') {
        const group = this.#groups.get(rec.locality);
        if (group) group.ejected--;
      }
      const was = rec.state;
      rec.state = 'healthy';
      rec.sinceMs = nowMs;
      rec.consecutiveFailures = 0;
      rec.reason = `${was === 'ejected' ? 'ejection' : 'suspicion'} time over`;
      this.#listener?.(rec, nowMs);
    }
    this.#recomputeNextExpiry();
  }

  /**
   * The periodic analysis: success-rate and latency outliers per locality over the interval's
   * counters, multiplier decay, then a fresh interval. `latencyMsOf` gives the smoothed latency
   * of an endpoint (undefined when unmeasured).
   */
  sweep(nowMs: number, latencyMsOf: (id: string) => number | undefined): void {
    this.expire(nowMs);
    const { successRate, latency, intervalMs } = this.config;
    for (const group of this.#groups.values()) {
      if (successRate.enabled) this.#successRateOutliers(group, nowMs);
      if (latency.enabled) this.#latencyOutliers(group, nowMs, latencyMsOf);
      for (const rec of group.records) {
        if (rec.state === 'healthy' && rec.multiplier > 0 && nowMs - rec.sinceMs >= intervalMs) {
          rec.multiplier--;
        }
        rec.intervalRequests = 0;
        rec.intervalSuccesses = 0;
        rec.intervalLatencySamples = 0;
      }
    }
  }

  #successRateOutliers(group: Group, nowMs: number): void {
    const { minRequests, minEndpoints, stdevFactor } = this.config.successRate;
    const judged = (rec: OutlierRecord) => rec.state !== 'ejected' && rec.intervalRequests >= minRequests;
    const rateOf = (rec: OutlierRecord) => rec.intervalSuccesses / rec.intervalRequests;
    let n = 0;
    let sum = 0;
    for (const rec of group.records) {
      if (!judged(rec)) continue;
      n++;
      sum += rateOf(rec);
    }
    if (n < minEndpoints || n === 0) return;
    const mean = sum / n;
    let squares = 0;
    for (const rec of group.records) if (judged(rec)) squares += (rateOf(rec) - mean) ** 2;
    const stdev = Math.sqrt(squares / n);
    const threshold = mean - stdevFactor * stdev;
    for (const rec of group.records) {
      if (rec.state !== 'healthy' || !judged(rec)) continue;
      const rate = rateOf(rec);
      // The tolerance keeps rounding in the mean from ejecting endpoints that are all equal.
      if (rate < threshold - 1e-9) {
        this.#eject(
          rec,
          `success rate ${pct(rate)} below ${pct(threshold)} (locality mean ${pct(mean)} − ${stdevFactor} × stdev ${pct(stdev)})`,
          nowMs,
        );
      }
    }
  }

  #latencyOutliers(group: Group, nowMs: number, latencyMsOf: (id: string) => number | undefined): void {
    const { factor, minLatencyMs, minRequests } = this.config.latency;
    const judged: { rec: OutlierRecord; ms: number }[] = [];
    for (const rec of group.records) {
      if (rec.state === 'ejected' || rec.intervalLatencySamples < minRequests) continue;
      const ms = latencyMsOf(rec.id);
      if (ms !== undefined) judged.push({ rec, ms });
    }
    if (judged.length < Math.max(2, this.config.successRate.minEndpoints)) return;
    const sorted = judged.map((j) => j.ms).sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median =
      sorted.length % 2 === 1
        ? (sorted[mid] as number)
        : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
    const limit = Math.max(minLatencyMs, factor * median);
    for (const { rec, ms } of judged) {
      if (rec.state === 'healthy' && ms > limit) {
        this.#eject(
          rec,
          `latency ${ms.toFixed(1)}ms above ${factor} × locality median ${median.toFixed(1)}ms`,
          nowMs,
        );
      }
    }
  }

  #eject(rec: OutlierRecord, why: string, nowMs: number): void {
    const { baseEjectionMs, maxEjectionMs, maxEjectedRatio } = this.config;
    const group = this.#groups.get(rec.locality);
    const allowed = group ? Math.floor(maxEjectedRatio * group.records.length + 1e-9) : 0;
    rec.multiplier++;
    const durationMs = Math.min(baseEjectionMs * rec.multiplier, Math.max(baseEjectionMs, maxEjectionMs));
    rec.sinceMs = nowMs;
    rec.untilMs = nowMs + durationMs;
    if (group && group.ejected < allowed) {
      rec.state = 'ejected';
      rec.ejections++;
      group.ejected++;
      rec.reason = `${why}: ejected for ${durationMs}ms`;
    } else {
      rec.state = 'suspect';
      rec.capped++;
      rec.reason = `${why}: not ejected, ${group?.ejected ?? 0} of ${group?.records.length ?? 0} in ${rec.locality} already are (maxEjectedRatio ${maxEjectedRatio}); suspect for ${durationMs}ms`;
    }
    if (rec.untilMs < this.#nextExpiryMs) this.#nextExpiryMs = rec.untilMs;
    this.#listener?.(rec, nowMs);
  }

  #recomputeNextExpiry(): void {
    let next = Infinity;
    for (const rec of this.#records.values()) {
      if (rec.state !== 'healthy' && rec.untilMs < next) next = rec.untilMs;
    }
    this.#nextExpiryMs = next;
  }
}

function newRecord(id: string, locality: string): OutlierRecord {
  return {
    id,
    locality,
    state: 'healthy',
    sinceMs: 0,
    untilMs: 0,
    multiplier: 0,
    ejections: 0,
    capped: 0,
    consecutiveFailures: 0,
    intervalRequests: 0,
    intervalSuccesses: 0,
    intervalLatencySamples: 0,
    reason: 'new',
  };
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
