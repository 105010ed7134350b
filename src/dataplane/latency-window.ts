/**
 * Recent attempt latencies of a destination, for hedging: "hedge once the first attempt is slower
 * than the p95". A ring of the last `size` samples; quantiles are recomputed at most every
 * `refreshMs` (a sort of a few hundred numbers), never per request.
 */
export class LatencyWindow {
  readonly #samples: Float64Array;
  #count = 0;
  #next = 0;
  #cache = new Map<number, number>();
  #cachedAtMs = -Infinity;

  constructor(
    readonly size = 512,
    readonly refreshMs = 100,
  ) {
    this.#samples = new Float64Array(size);
  }

  add(latencyMs: number): void {
    this.#samples[this.#next] = latencyMs;
    this.#next = (this.#next + 1) % this.size;
    if (this.#count < this.size) this.#count++;
  }

  get count(): number {
    return this.#count;
  }

  /** The q-quantile (0..1) of the recent samples, or undefined with fewer than 20 samples. */
  quantile(q: number, nowMs: number): number | undefined {
    if (this.#count < 20) return undefined;
    if (nowMs - this.#cachedAtMs > this.refreshMs) {
      this.#cache.clear();
      this.#cachedAtMs = nowMs;
    }
    let v = this.#cache.get(q);
    if (v === undefined) {
      const sorted = this.#samples.slice(0, this.#count).sort();
      v = sorted[Math.min(this.#count - 1, Math.floor(q * this.#count))] ?? 0;
      this.#cache.set(q, v);
    }
    return v;
  }
}
