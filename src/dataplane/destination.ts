import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { Locality } from '../model/locality.js';
import type { MeshIndex, RoutingPlan } from '../model/mesh.js';
import type { EffectiveTraffic } from '../model/settings.js';
import type { AttemptOutcome, Endpoint } from './endpoint.js';
import { HealthChecker } from './health-checker.js';
import { LatencyWindow } from './latency-window.js';
import { UpstreamPool } from './http/upstream.js';
import { compilePolicy, type RoutePolicy } from './policy.js';
import { Bulkhead, ConcurrencyLimiter } from './resilience/bulkhead.js';
import { RetryBudget } from './resilience/retry-budget.js';
import { StaleCache } from './resilience/stale-cache.js';
import { RouteTable } from './routing.js';
import type { Stats } from './stats.js';

/** What the request path needs from a load balancer. */
export interface Balancer {
  /** An endpoint not in `exclude`, preferring another locality than `avoid` when given. */
  pick(exclude: ReadonlySet<string>, avoid?: Locality): Picked | undefined;
  /** An attempt to `endpointId` started (counts in-flight load). */
  begin(endpointId: string): void;
  /** How that attempt ended. */
  report(endpointId: string, outcome: AttemptOutcome): void;
  /** The attempt was abandoned by the caller (client gone, hedge lost): no verdict on the endpoint. */
  cancel(endpointId: string): void;
  /** Periodic analysis: outlier sweeps, region state transitions. */
  evaluate(): void;
  /** JSON view for the admin `/endpoints` page. */
  snapshot(): unknown;
  /** Regions currently ejected or recovering (for degradation signals). */
  degradedRegions(): string[];
  /** Smoothed latency of an endpoint, ms, once measured. */
  expectedLatencyMs(endpointId: string): number | undefined;
  /** Result of active health checks for an endpoint. */
  setActiveHealth(endpointId: string, healthy: boolean): void;
  /** Round trip of a passing health check, ms: what remote regions are ordered by. */
  observeProbeRtt(endpointId: string, rttMs: number): void;
  /** Replaces the endpoints, keeping the state of those that stay (same id). */
  setEndpoints(endpoints: readonly Endpoint[]): void;
  /** Monotonic ms of an endpoint's last successful attempt; undefined before one. */
  lastSuccessMs(endpointId: string): number | undefined;
}

export interface Picked {
  endpoint: Endpoint;
  /** 0 for the most preferred tier. */
  priority: number;
  /** Whether health was ignored because too little was healthy. */
  panic: boolean;
}

export type BalancerFactory = (input: {
  service: string;
  endpoints: readonly Endpoint[];
  plan: RoutingPlan;
  traffic: EffectiveTraffic;
}) => Balancer;

/**
 * Identity of an endpoint list regardless of order: two destinations built from lists with the
 * same key balance over the same endpoints.
 */
export function endpointsKey(endpoints: readonly Endpoint[]): string {
  return JSON.stringify(
    [...endpoints]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((e) => [e.id, e.address, e.port, e.locality.region, e.locality.zone ?? '', e.weight, e.kind]),
  );
}

const NOTHING_CHANGED: { dropped: readonly Endpoint[]; restored: readonly Endpoint[] } = Object.freeze({
  dropped: [],
  restored: [],
});

/**
 * Everything the proxy keeps per destination service: its routes and their compiled policies,
 * balancers (one over all replicas, one over the home region for `strong` routes), connection
 * pools, limits, retry budgets and the stale-if-error cache. Limits, budgets, pools and the cache
 * are per destination and sized from the service-level policy.
 */
export class Destination {
  readonly name: string;
  readonly routes: RouteTable;
  readonly serviceLevel: RoutePolicy;
  readonly #routePolicies = new Map<string, RoutePolicy>();
  readonly eventual: Balancer;
  readonly strong: Balancer | undefined;
  readonly homeRegion: string | undefined;
  readonly pool: UpstreamPool;
  readonly bulkhead: Bulkhead;
  readonly retryLimiter: ConcurrencyLimiter;
  readonly budget: RetryBudget;
  readonly crossRegionBudget: RetryBudget;
  readonly staleCache: StaleCache;
  readonly healthChecker: HealthChecker;
  /** Latencies of recent successful attempts (drives hedging). */
  readonly latencies = new LatencyWindow();
  /** Monotonic ms until which the destination counts as degraded (recent failover or fallback). */
  degradedUntilMs = 0;
  degradedReason = '';
  /** The endpoints as configured (before any are withheld). */
  readonly endpoints: readonly Endpoint[];
  /** The configured endpoints that are other regions' gateways (what partition policy acts on). */
  readonly remoteEndpoints: readonly Endpoint[];
  /** See {@link endpointsKey}. */
  readonly endpointsKey: string;
  #withheld: ReadonlySet<string> = new Set();

  constructor(input: {
    name: string;
    mesh: MeshIndex;
    from: Locality;
    /** Gateways serve their own region only: no remote tiers. */
    localOnly: boolean;
    endpoints: readonly Endpoint[];
    clock: Clock;
    random: Random;
    balancer: BalancerFactory;
  }) {
    const { name, mesh, from, clock } = input;
    this.name = name;
    this.endpoints = input.endpoints;
    this.remoteEndpoints = input.endpoints.filter((e) => e.kind === 'gateway');
    this.endpointsKey = endpointsKey(input.endpoints);
    const service = mesh.services.get(name);
    this.routes = new RouteTable(service?.resource.spec.routes);
    this.homeRegion = service?.resource.spec.homeRegion;
    const traffic = mesh.traffic(name).value;
    this.serviceLevel = compilePolicy(traffic);
    for (const r of service?.resource.spec.routes ?? [])
      this.#routePolicies.set(r.name, compilePolicy(mesh.traffic(name, r.name).value));

    const plan = mesh.routingPlan(from, name);
    const tiers = input.localOnly ? plan.tiers.filter((t) => t.via === 'local') : plan.tiers;
    this.eventual = input.balancer({
      service: name,
      endpoints: input.endpoints,
      plan: { ...plan, tiers },
      traffic,
    });
    const needsStrong = [this.serviceLevel, ...this.#routePolicies.values()].some(
      (p) => p.consistency === 'strong',
    );
    if (needsStrong && this.homeRegion !== undefined) {
      const strongTiers = tiers.filter((t) => t.region === this.homeRegion);
      const strongPlan = mesh.routingPlan(from, name);
      this.strong = input.balancer({
        service: name,
        endpoints: input.endpoints.filter((e) => e.locality.region === this.homeRegion),
        plan: { ...strongPlan, tiers: strongTiers.length > 0 ? strongTiers : [] },
        traffic,
      });
    } else {
      this.strong = undefined;
    }

    const cb = traffic.circuitBreaker;
    this.pool = new UpstreamPool({
      connectTimeoutMs: this.serviceLevel.connectMs,
      maxConnectionsPerEndpoint: cb.maxConnections,
    });
    this.bulkhead = Bulkhead.fromSettings(cb, { name });
    this.retryLimiter = new ConcurrencyLimiter(cb.maxRetries);
    this.budget = RetryBudget.fromSettings(traffic.retries.budget, clock);
    this.crossRegionBudget = RetryBudget.fromSettings(traffic.retries.crossRegion, clock);
    this.staleCache = StaleCache.fromSettings(traffic.fallback.staleIfError, clock);
    this.healthChecker = new HealthChecker(
      traffic.healthChecks,
      input.endpoints,
      (id, healthy) => {
        this.eventual.setActiveHealth(id, healthy);
        this.strong?.setActiveHealth(id, healthy);
      },
      input.random,
      (id, rttMs) => {
        this.eventual.observeProbeRtt(id, rttMs);
        this.strong?.observeProbeRtt(id, rttMs);
      },
    );
    this.healthChecker.start();
  }

  /** The compiled policy of a route (or of the service when no route matched). */
  policy(route: string | undefined): RoutePolicy {
    return (route !== undefined && this.#routePolicies.get(route)) || this.serviceLevel;
  }

  balancerFor(policy: RoutePolicy): Balancer | undefined {
    if (policy.consistency !== 'strong') return this.eventual;
    return this.strong;
  }

  readonly #counters = new Map<string, { inc(by?: number): void }>();
  readonly #labels = new Map<string, { readonly service: string; readonly route: string }>();

  /** Metric labels of a route (shared, frozen: built once per route, not per request). */
  labels(route: string | undefined): { readonly service: string; readonly route: string } {
    const key = route ?? '';
    let l = this.#labels.get(key);
    if (!l) {
      l = Object.freeze({ service: this.name, route: key });
      this.#labels.set(key, l);
    }
    return l;
  }

  /**
   * A cached counter handle for `labels` (service, route) plus, for response counters, the status
   * class and peer region: the request path asks for the same few series over and over.
   */
  counter(
    stats: Stats,
    name: string,
    help: string,
    labels: { service: string; route: string },
    code?: string,
    peerRegion?: string,
  ): { inc(by?: number): void } {
    const key =
      code === undefined ? `${name} ${labels.route}` : `${name} ${labels.route} ${code} ${peerRegion ?? ''}`;
    let c = this.#counters.get(key);
    if (!c) {
      c = stats.counter(
        name,
        help,
        code === undefined ? { ...labels } : { ...labels, code, peer_region: peerRegion ?? '' },
      );
      this.#counters.set(key, c);
    }
    return c;
  }

  readonly #lastStoredMs = new Map<string, number>();

  /**
   * Whether a fresh copy of this response should go to the stale cache: at most once a second per
   * resource, since a stale answer a second older is no worse and copying every body costs.
   */
  shouldRefreshStale(resource: string, nowMs: number): boolean {
    const last = this.#lastStoredMs.get(resource);
    if (last !== undefined && nowMs - last < 1000) return false;
    if (this.#lastStoredMs.size > 2 * this.staleCache.maxEntries) this.#lastStoredMs.clear();
    this.#lastStoredMs.set(resource, nowMs);
    return true;
  }

  markDegraded(nowMs: number, reason: string, holdMs = 10_000): void {
    this.degradedUntilMs = Math.max(this.degradedUntilMs, nowMs + holdMs);
    this.degradedReason = reason;
  }

  isDegraded(nowMs: number): boolean {
    return nowMs < this.degradedUntilMs || this.eventual.degradedRegions().length > 0;
  }

  evaluate(): void {
    this.eventual.evaluate();
    this.strong?.evaluate();
  }

  /** Ids of configured endpoints currently taken out of balancing (see {@link withhold}). */
  get withheld(): ReadonlySet<string> {
    return this.#withheld;
  }

  /**
   * Takes the endpoints with these ids out of balancing and puts back every other configured
   * one (partition policy); endpoints that stay keep their state. Returns what changed.
   */
  withhold(ids: ReadonlySet<string>): { dropped: readonly Endpoint[]; restored: readonly Endpoint[] } {
    const before = this.#withheld;
    let same = ids.size === before.size;
    if (same) for (const id of ids) if (!before.has(id)) same = false;
    if (same) return NOTHING_CHANGED;
    const dropped = this.endpoints.filter((e) => ids.has(e.id) && !before.has(e.id));
    const restored = this.endpoints.filter((e) => !ids.has(e.id) && before.has(e.id));
    this.#withheld = new Set(ids);
    const live = this.endpoints.filter((e) => !ids.has(e.id));
    this.eventual.setEndpoints(live);
    this.strong?.setEndpoints(live.filter((e) => e.locality.region === this.homeRegion));
    return { dropped, restored };
  }

  /** Monotonic ms of the endpoint's last successful attempt through either balancer. */
  lastSuccessMs(endpointId: string): number | undefined {
    const a = this.eventual.lastSuccessMs(endpointId);
    const b = this.strong?.lastSuccessMs(endpointId);
    return a === undefined ? b : b === undefined ? a : Math.max(a, b);
  }

  close(): Promise<void> {
    this.healthChecker.stop();
    return this.pool.close();
  }
}
