import { seededRandom, type Random } from '../../core/random.js';
import type { LatencyDistribution } from './toxics.js';

/**
 * The chance in a link, kept pure so it can be tested without sockets or clocks: every random
 * decision of a connection comes from a generator seeded by (emulator seed, link name, connection
 * index, purpose), so the same seed and the same sequence of connections and chunks replay the
 * same faults and the same delays, whatever the wall-clock timing was.
 */

/** FNV-1a over the parts: a stable 32-bit seed (not for security). */
export function deriveSeed(seed: number, ...parts: readonly (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const ch of `${seed}\u0000${parts.join('\u0000')}`) {
    h ^= ch.codePointAt(0) as number;
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/** The generator of one purpose (`upstream`, `downstream`, `toxicity:NAME`) of one connection. */
export function connectionRandom(seed: number, link: string, connection: number, purpose: string): Random {
  return seededRandom(deriveSeed(seed, link, connection, purpose));
}

/** Pareto shape for the `pareto` latency distribution: finite mean, a long tail. */
const PARETO_SHAPE = 2;
/** The tail is cut here, in multiples of `jitterMs` above `latencyMs`, so one sample cannot stall a link for ever. */
const PARETO_CAP = 100;

/**
 * One latency sample in ms, never negative.
 * - `uniform` (Toxiproxy): latency ± jitter, uniformly.
 * - `normal`: latency + jitter·N(0,1), cut at ±3 jitter.
 * - `pareto`: latency + jitter·(U^(-1/2) − 1): never below `latency`, mean latency + jitter, about
 *   1 % of samples above latency + 9·jitter, capped at latency + 100·jitter.
 */
export function sampleLatencyMs(
  random: Random,
  latencyMs: number,
  jitterMs: number,
  distribution: LatencyDistribution = 'uniform',
): number {
  if (jitterMs <= 0) return latencyMs;
  let offset: number;
  switch (distribution) {
    case 'uniform':
      offset = (random.next() * 2 - 1) * jitterMs;
      break;
    case 'normal': {
      // Box–Muller; 1 - u keeps the logarithm finite.
      const u1 = 1 - random.next();
      const u2 = random.next();
      const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      offset = Math.max(-3, Math.min(3, z)) * jitterMs;
      break;
    }
    case 'pareto': {
      const u = 1 - random.next(); // (0, 1]
      offset = Math.min(PARETO_CAP, u ** (-1 / PARETO_SHAPE) - 1) * jitterMs;
      break;
    }
  }
  return Math.max(0, latencyMs + offset);
}

/**
 * Loss as TCP sees it: a lost segment is retransmitted after a timeout that doubles while losses
 * repeat. Returns the stall for this chunk (0 when not lost) given how many chunks in a row were
 * lost before it; the caller keeps the run length.
 */
export function sampleLossStallMs(
  random: Random,
  probability: number,
  stallMs: number,
  lostInARow: number,
): number {
  if (probability <= 0 || random.next() >= probability) return 0;
  return stallMs * 2 ** Math.min(lostInARow, 6);
}

/** Slice sizes for `slicer`: average ± variation bytes each (at least 1), summing to `total`. */
export function sliceSizes(
  random: Random,
  total: number,
  averageSize: number,
  sizeVariation: number,
): number[] {
  if (averageSize <= 0) return [total];
  const sizes: number[] = [];
  let left = total;
  while (left > 0) {
    const size = Math.max(1, Math.round(averageSize + (random.next() * 2 - 1) * sizeVariation));
    sizes.push(Math.min(size, left));
    left -= size;
  }
  return sizes;
}
