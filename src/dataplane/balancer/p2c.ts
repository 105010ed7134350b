import type { Random } from '../../core/random.js';

/** How the power-of-two-choices picker reads a candidate; one object per balancer, not per pick. */
export interface P2CAccess<H> {
  /** Stable identity, matched against the exclude set. */
  id(host: H): string;
  /** Relative weight (≤ 0 is never picked). */
  weight(host: H): number;
  /** Load score, lower is better (e.g. latency ms × (in-flight + 1)). */
  score(host: H): number;
  /** Further filter (health, locality preference); absent means every host may be picked. */
  eligible?(host: H): boolean;
}

/**
 * Power of two choices: draw two distinct candidates at random in proportion to their weights and
 * take the one with the lower score (the first drawn on a tie). Hosts whose id is in `exclude`
 * (e.g. already tried by this request) are skipped. O(n) time, no allocation.
 */
export function pickP2C<H>(
  hosts: readonly H[],
  access: P2CAccess<H>,
  random: Random,
  exclude?: ReadonlySet<string>,
): H | undefined {
  const usable = (h: H) =>
    access.weight(h) > 0 &&
    (exclude === undefined || exclude.size === 0 || !exclude.has(access.id(h))) &&
    (access.eligible === undefined || access.eligible(h));
  let total = 0;
  let count = 0;
  let only: H | undefined;
  for (const h of hosts) {
    if (!usable(h)) continue;
    total += access.weight(h);
    count++;
    only = h;
  }
  if (count <= 1) return only;
  const first = draw(hosts, usable, access, random.next() * total, undefined);
  const second = draw(hosts, usable, access, random.next() * (total - access.weight(first)), first);
  return access.score(second) < access.score(first) ? second : first;
}

/** The usable host (other than `skip`) where the cumulative weight passes `target`. */
function draw<H>(
  hosts: readonly H[],
  usable: (h: H) => boolean,
  access: P2CAccess<H>,
  target: number,
  skip: H | undefined,
): H {
  let last: H | undefined;
  let acc = 0;
  for (const h of hosts) {
    if (h === skip || !usable(h)) continue;
    last = h;
    acc += access.weight(h);
    if (target < acc) return h;
  }
  // Only reached through floating-point rounding at the very end of the range.
  return last as H;
}
