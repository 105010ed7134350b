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

const TWO_POW_32 = 0x1_0000_0000;

/**
 * A fast generator seeded from `seedFrom` (so as deterministic as it is), for values made on
 * every request such as trace and span ids, where a general-purpose seeded generator costs more
 * than the rest of the id: sfc32 (Doty-Humphrey's small fast chaotic generator, 128 bits of
 * state), 32 random bits per draw, so `next()` is a multiple of 2^-32.
 */
export function fastRandom(seedFrom: Random): Random {
  let a = (seedFrom.next() * TWO_POW_32) >>> 0;
  let b = (seedFrom.next() * TWO_POW_32) >>> 0;
  let c = (seedFrom.next() * TWO_POW_32) >>> 0;
  let d = 1;
  const next32 = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  // The first outputs still show the seed's structure.
  for (let i = 0; i < 12; i++) next32();
  return { next: () => next32() / TWO_POW_32 };
}

/** Uniform integer in [0, n). */
export function randomInt(random: Random, n: number): number {
  return Math.min(n - 1, Math.floor(random.next() * n));
}
