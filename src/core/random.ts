import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

/**
 * Source of chance for everything random (balancer picks, jitter, sampling, fault injection).
 * Seeded in tests and drills so a run can be replayed exactly.
 */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
}

/** A deterministic generator: the same seed gives the same sequence. */
export function seededRandom(seed: number): Random {
  const rng = xoroshiro128plus(seed | 0);
  return { next: () => uniformFloat64(rng) };
}

export const systemRandom: Random = { next: () => Math.random() };

/** Uniform integer in [0, n). */
export function randomInt(random: Random, n: number): number {
  return Math.min(n - 1, Math.floor(random.next() * n));
}
