/** Weights of one priority tier, as the priority-load computation needs them. */
export interface TierWeight {
  /** Sum of the weights of its healthy endpoints (already scaled by any slow-start ramp). */
  readonly healthyWeight: number;
  /** Sum of the weights of all its endpoints. */
  readonly totalWeight: number;
}

/** Traffic split across tiers. */
export interface PriorityLoad {
  /** Share of traffic per tier, same order as the input, summing to 1 (or all 0 when empty). */
  readonly shares: number[];
  /** Health per tier: min(1, factor × healthy / total), 0 for an empty tier. */
  readonly health: number[];
  /** min(1, Σ health): 1 means the tiers together have enough healthy capacity. */
  readonly totalHealth: number;
  /** True when totalHealth < panicThreshold: pick among all endpoints, ignoring health. */
  readonly panic: boolean;
}

/**
 * Envoy's priority load. A tier's health is its healthy share × the overprovisioning factor,
 * capped at 1; tiers take traffic in order, each up to its health, so a tier keeps everything
 * while healthy share × factor ≥ 1 and only the shortfall spills to the next tiers. When the
 * tiers together have less than full health, shares are normalized by the total, so traffic
 * still goes where health remains.
 *
 * Panic (total health below the threshold) does not change the shares — that would be a cliff at
 * the threshold — it tells the picker to ignore endpoint health within each tier. If no tier has
 * any health at all, shares fall back to what they would be with every endpoint healthy.
 */
export function priorityLoad(
  tiers: readonly TierWeight[],
  overprovisioningFactor: number,
  panicThreshold: number,
): PriorityLoad {
  const n = tiers.length;
  const health = new Array<number>(n).fill(0);
  const shares = new Array<number>(n).fill(0);
  let sum = 0;
  let anyEndpoints = false;
  for (let i = 0; i < n; i++) {
    const t = tiers[i] as TierWeight;
    if (t.totalWeight <= 0) continue;
    anyEndpoints = true;
    const h = Math.min(1, (overprovisioningFactor * Math.max(0, t.healthyWeight)) / t.totalWeight);
    health[i] = h;
    sum += h;
  }
  if (!anyEndpoints) return { shares, health, totalHealth: 0, panic: false };
  const totalHealth = Math.min(1, sum);
  const panic = totalHealth < panicThreshold;
  if (sum === 0) {
    // Nothing healthy anywhere: as if all were healthy, i.e. the first tier with endpoints.
    const first = tiers.findIndex((t) => t.totalWeight > 0);
    shares[first] = 1;
    return { shares, health, totalHealth, panic };
  }
  if (sum < 1) {
    for (let i = 0; i < n; i++) shares[i] = (health[i] as number) / sum;
  } else {
    let left = 1;
    for (let i = 0; i < n && left > 0; i++) {
      const take = Math.min(left, health[i] as number);
      shares[i] = take;
      left -= take;
    }
  }
  return { shares, health, totalHealth, panic };
}
