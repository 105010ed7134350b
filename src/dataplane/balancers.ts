import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { Locality } from '../model/locality.js';
import type { Tier } from '../model/mesh.js';
import { LocalityBalancer, type BalancerEvent, type BalancerSnapshot } from './balancer/locality-balancer.js';
import type { Balancer, BalancerFactory } from './destination.js';

/** How often remote tiers are reconsidered against measured latency, ms. */
const REORDER_EVERY_MS = 2_000;
/** A region moves ahead of another only when it is this much faster (hysteresis against flapping). */
const REORDER_MARGIN = 1.2;

/**
 * Remote tiers in order of measured round trip to each region's gateway, falling back to the
 * declared hint for regions not measured yet. The measure is the health checks' round trip: it is
 * taken for every region whether or not traffic goes there (request latency would only refresh
 * for the region in use, and includes the remote app's processing time). Without health checks,
 * request latency is used. The current order is kept unless some region is more than
 * REORDER_MARGIN faster than one ahead of it.
 */
export function reorderRemoteTiers(tiers: readonly Tier[], snapshot: BalancerSnapshot): Tier[] | undefined {
  const probed = new Map<string, number>();
  const requested = new Map<string, number>();
  for (const e of snapshot.endpoints) {
    if (e.kind !== 'gateway') continue;
    const region = e.locality.split('/')[0] as string;
    if (typeof e.probeRttMs === 'number')
      probed.set(region, Math.min(probed.get(region) ?? Infinity, e.probeRttMs));
    if (typeof e.latencyMs === 'number')
      requested.set(region, Math.min(requested.get(region) ?? Infinity, e.latencyMs));
  }
  // One kind of measure for every region compared: probes when any region has them.
  const measured = probed.size > 0 ? probed : requested;
  const remote = tiers.filter((t) => t.tier === 'remote');
  if (remote.length < 2 || measured.size === 0) return undefined;
  const key = (t: Tier) => measured.get(t.region) ?? t.rttHintMs ?? Infinity;
  const outOfOrder = remote.some((t, i) =>
    remote.slice(i + 1).some((later) => key(t) > REORDER_MARGIN * key(later)),
  );
  if (!outOfOrder) return undefined;
  const sorted = [...remote].sort((a, b) => key(a) - key(b));
  let r = 0;
  return tiers
    .map((t) => (t.tier === 'remote' ? (sorted[r++] as Tier) : t))
    .map((t, priority) => ({ ...t, priority }));
}

/** Adapts the locality-aware balancer to what the request path needs. */
export function localityBalancers(input: {
  locality: Locality;
  clock: Clock;
  random: Random;
  onEvent?: (service: string, event: BalancerEvent) => void;
  onReorder?: (service: string, regions: string[]) => void;
}): BalancerFactory {
  return ({ service, endpoints, plan, traffic }): Balancer & { inner: LocalityBalancer } => {
    const lb = new LocalityBalancer({
      locality: input.locality,
      traffic,
      clock: input.clock,
      random: input.random,
      ...(input.onEvent && { onEvent: (e: BalancerEvent) => input.onEvent?.(service, e) }),
    });
    let tiers: readonly Tier[] = plan.tiers;
    lb.setEndpoints(endpoints, tiers);
    const regions = [...new Set(tiers.map((t) => t.region))];
    let lastReorderMs = input.clock.monotonicMs();
    return {
      inner: lb,
      pick(exclude, avoid) {
        const r = lb.pick({ exclude, ...(avoid && { preferOtherLocalityThan: avoid }) });
        return r && { endpoint: r.endpoint, priority: r.priority, panic: r.panic };
      },
      begin: (id) => lb.begin(id),
      report: (id, outcome) => lb.report(id, outcome),
      cancel: (id) => lb.cancel(id),
      evaluate() {
        lb.evaluate();
        const now = input.clock.monotonicMs();
        if (now - lastReorderMs < REORDER_EVERY_MS) return;
        lastReorderMs = now;
        const next = reorderRemoteTiers(tiers, lb.snapshot());
        if (next) {
          tiers = next;
          lb.setTiers(tiers);
          input.onReorder?.(
            service,
            tiers.filter((t) => t.tier === 'remote').map((t) => t.region),
          );
        }
      },
      setActiveHealth: (id, healthy) => lb.setActiveHealth(id, healthy),
      observeProbeRtt: (id, rttMs) => lb.observeProbeRtt(id, rttMs),
      setEndpoints: (list) => lb.setEndpoints(list, tiers),
      expectedLatencyMs: (id) => lb.expectedLatencyMs(id),
      lastSuccessMs: (id) => lb.lastSuccessMs(id),
      snapshot: () => lb.snapshot(),
      // Cheap (no snapshot): asked on every inbound request for the degradation headers.
      degradedRegions: () => regions.filter((r) => (lb.region(r)?.state ?? 'healthy') !== 'healthy'),
    };
  };
}
