import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { Locality } from '../model/locality.js';
import { LocalityBalancer, type BalancerEvent } from './balancer/locality-balancer.js';
import type { Balancer, BalancerFactory } from './destination.js';

/** Adapts the locality-aware balancer to what the request path needs. */
export function localityBalancers(input: {
  locality: Locality;
  clock: Clock;
  random: Random;
  onEvent?: (service: string, event: BalancerEvent) => void;
}): BalancerFactory {
  return ({ service, endpoints, plan, traffic }): Balancer & { inner: LocalityBalancer } => {
    const lb = new LocalityBalancer({
      locality: input.locality,
      traffic,
      clock: input.clock,
      random: input.random,
      ...(input.onEvent && { onEvent: (e: BalancerEvent) => input.onEvent?.(service, e) }),
    });
    lb.setEndpoints(endpoints, plan.tiers);
    return {
      inner: lb,
      pick(exclude, avoid) {
        const r = lb.pick({ exclude, ...(avoid && { preferOtherLocalityThan: avoid }) });
        return r && { endpoint: r.endpoint, priority: r.priority, panic: r.panic };
      },
      begin: (id) => lb.begin(id),
      report: (id, outcome) => lb.report(id, outcome),
      cancel: (id) => lb.cancel(id),
      evaluate: () => lb.evaluate(),
      setActiveHealth: (id, healthy) => lb.setActiveHealth(id, healthy),
      snapshot: () => lb.snapshot(),
      degradedRegions: () =>
        lb
          .snapshot()
          .regions.filter((r) => r.state !== 'healthy')
          .map((r) => r.region),
    };
  };
}
