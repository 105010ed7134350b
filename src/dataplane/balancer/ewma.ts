/**
 * Latency and load of one endpoint, as the picker and the latency detector see them.
 *
 * `peakMs` is a peak-EWMA (Finagle, Linkerd): a sample above the current value replaces it at
 * once, a lower one pulls it down with weight 1 − e^(−Δt/τ), so an endpoint that turns slow is
 * avoided immediately and trusted again only gradually. `smoothMs` is a plain EWMA of measured
 * latencies only: one slow request must not make an endpoint a latency outlier.
 */
export class LatencyTracker {
  /** Time constant τ of both averages, ms. */
  readonly decayMs: number;
  /** Attempts begun and not yet ended. */
  inflight = 0;
  /** Peak-EWMA cost, ms (failures included, penalized); meaningless until `probed`. */
  peakMs = 0;
  /** Symmetric EWMA of measured latencies, ms; meaningless while `samples` is 0. */
  smoothMs = 0;
  /** Latency samples folded into `smoothMs`. */
  samples = 0;
  #probed = false;
  #peakStampMs = 0;
  #smoothStampMs = 0;

  constructor(decayMs: number) {
    this.decayMs = decayMs;
  }

  /** Whether the peak cost has been set by any outcome yet. */
  get probed(): boolean {
    return this.#probed;
  }

  /** Records a measured latency (ms) at monotonic time `nowMs`. */
  observe(latencyMs: number, nowMs: number): void {
    const sample = latencyMs > 0 ? latencyMs : 0;
    if (this.samples === 0) this.smoothMs = sample;
    else {
      const keep = Math.exp(-Math.max(0, nowMs - this.#smoothStampMs) / this.decayMs);
      this.smoothMs = this.smoothMs * keep + sample * (1 - keep);
    }
    this.#smoothStampMs = nowMs;
    this.samples++;
    this.#observePeak(sample, nowMs);
  }

  /**
   * Records a failed attempt on the peak cost only: a failure costs at least `penalty` × the usual
   * (smoothed) latency, so a fast-failing endpoint does not look attractive. Relative to the
   * smoothed value rather than the peak, so consecutive failures do not compound.
   */
  observeFailure(latencyMs: number, nowMs: number, neutralMs: number, penalty: number): void {
    const usual = this.samples > 0 ? this.smoothMs : neutralMs;
    this.#observePeak(Math.max(latencyMs, usual * penalty), nowMs);
  }

  /**
   * Load score for picking (lower is better): peak cost × (in-flight + 1). An unprobed endpoint
   * scores `neutralMs` (its tier's typical cost); a probed one drifts toward `neutralMs` as its
   * last sample ages, so an endpoint that stopped receiving traffic after a bad spell is
   * eventually tried again.
   */
  score(nowMs: number, neutralMs: number): number {
    if (!this.#probed) return neutralMs * (this.inflight + 1);
    const keep = Math.exp(-Math.max(0, nowMs - this.#peakStampMs) / this.decayMs);
    return (neutralMs + (this.peakMs - neutralMs) * keep) * (this.inflight + 1);
  }

  #observePeak(sample: number, nowMs: number): void {
    if (!this.#probed || sample >= this.peakMs) this.peakMs = sample;
    else {
      const keep = Math.exp(-Math.max(0, nowMs - this.#peakStampMs) / this.decayMs);
      this.peakMs = this.peakMs * keep + sample * (1 - keep);
    }
    this.#probed = true;
    this.#peakStampMs = nowMs;
  }
}
