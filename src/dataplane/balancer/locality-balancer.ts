import type { Clock } from '../../core/clock.js';
import type { Random } from '../../core/random.js';
import { formatLocality, type Locality } from '../../model/locality.js';
import type { Tier } from '../../model/mesh.js';
import type { AttemptOutcome, Endpoint } from '../endpoint.js';
import { resolveBalancerConfig, type BalancerConfig, type BalancerSettings } from './config.js';
import { LatencyTracker } from './ewma.js';
import { OutlierDetector, type OutlierRecord, type OutlierState } from './outlier.js';
import { pickP2C, type P2CAccess } from './p2c.js';
import { priorityLoad, type PriorityLoad, type TierWeight } from './priority.js';
import { RegionHealth, type RegionState } from './region-health.js';

/** Options of a {@link LocalityBalancer}. */
export interface LocalityBalancerOptions {
  /** Where the calling proxy runs. */
  readonly locality: Locality;
  /** Effective traffic settings of the destination; `outlierDetection` and `localityFailover` are read once. */
  readonly traffic: BalancerSettings;
  readonly clock: Clock;
  readonly random: Random;
  /** Time constant of the latency averages, ms (default 10000, as Finagle and Linkerd). */
  readonly ewmaDecayMs?: number;
  /** In the pick score a failed attempt costs at least this × the endpoint's usual latency (default 4). */
  readonly failurePenalty?: number;
  /** Called on every endpoint or region health transition, synchronously (keep it cheap). */
  readonly onEvent?: (event: BalancerEvent) => void;
}

/** Health of an endpoint as the balancer uses it; `unhealthy`: failed active health checks. */
export type EndpointHealth = OutlierState | 'unhealthy';

/** A health transition, for logs and the event stream. `atMs` is wall-clock epoch ms. */
export type BalancerEvent =
  | {
      readonly kind: 'endpoint';
      readonly id: string;
      readonly health: EndpointHealth;
      readonly reason: string;
      readonly atMs: number;
    }
  | {
      readonly kind: 'region';
      readonly region: string;
      readonly state: RegionState;
      readonly reason: string;
      readonly atMs: number;
    };

/** Per-attempt pick options. */
export interface PickOptions {
  /** Endpoint ids this request already tried; never picked again (a hard filter). */
  readonly exclude?: ReadonlySet<string>;
  /** Prefer endpoints outside this locality (a zone if it has one, else the whole region); soft. */
  readonly preferOtherLocalityThan?: Locality;
}

/**
 * Why a pick landed where it did. `primary`: the first tier with traffic share; `spillover`: a
 * later tier, by the share earlier tiers could not keep; `panic`: panic mode, health ignored;
 * `fallback`: the drawn tier had no candidate left after `exclude`/preference, another tier served;
 * `same-locality`: nothing outside `preferOtherLocalityThan` was left, so the preference was dropped.
 */
export type PickReason = 'primary' | 'spillover' | 'panic' | 'fallback' | 'same-locality';

/** The endpoint for one attempt. */
export interface PickResult {
  readonly endpoint: Endpoint;
  /** Index of the serving tier in the current tier list (0 = most preferred). */
  readonly priority: number;
  /** The serving tier, as given to {@link LocalityBalancer.setEndpoints}. */
  readonly tier: Tier;
  /** Whether the balancer was in panic mode (endpoint health ignored). */
  readonly panic: boolean;
  readonly reason: PickReason;
}

/** JSON-able view for the admin `/endpoints` page. Times are wall-clock epoch ms. */
export interface BalancerSnapshot {
  readonly atMs: number;
  readonly locality: string;
  readonly panic: boolean;
  /** min(1, Σ tier health): below `panicThreshold` the balancer panics. */
  readonly totalHealth: number;
  readonly tiers: readonly {
    readonly priority: number;
    readonly tier: Tier['tier'];
    readonly region: string;
    readonly zones: readonly string[];
    readonly via: Tier['via'];
    /** Share of traffic this tier receives now, 0..1. */
    readonly share: number;
    /** min(1, factor × healthy / total weight), after the region's weight multiplier. */
    readonly health: number;
    readonly healthyWeight: number;
    readonly totalWeight: number;
    readonly endpoints: number;
  }[];
  readonly regions: readonly {
    readonly region: string;
    readonly state: RegionState;
    readonly sinceMs: number;
    /** Healthy share × success rate at the last evaluate(), 0..1 (null: no endpoints). */
    readonly score: number | null;
    readonly healthyShare: number | null;
    /** Success rate over the window, 0..1 (null: no traffic in the window). */
    readonly successRate: number | null;
    readonly flaps: number;
    /** Weight multiplier now: 0 ejected, ramping while recovering, 1 healthy. */
    readonly weight: number;
    /** Readmission wait in force, ms (grows with flap damping). */
    readonly readmitAfterMs: number;
    readonly reason: string;
  }[];
  readonly endpoints: readonly {
    readonly id: string;
    readonly address: string;
    readonly port: number;
    readonly locality: string;
    readonly kind: Endpoint['kind'];
    readonly weight: number;
    /** Tier index, null when no tier holds its locality (never picked). */
    readonly priority: number | null;
    readonly health: EndpointHealth;
    readonly reason: string;
    /** End of the current ejection or suspicion, null when healthy. */
    readonly ejectedUntilMs: number | null;
    readonly ejections: number;
    /** Ejections held back by maxEjectedRatio. */
    readonly cappedEjections: number;
    readonly consecutiveFailures: number;
    /** Peak-EWMA cost used for picking, ms (null: never measured). */
    readonly ewmaMs: number | null;
    /** Smoothed measured latency used by the latency detector, ms. */
    readonly latencyMs: number | null;
    /** Smoothed round trip of passing health checks, ms (null: none yet). */
    readonly probeRttMs: number | null;
    readonly inflight: number;
  }[];
}

interface Slot {
  endpoint: Endpoint;
  localityKey: string;
  readonly latency: LatencyTracker;
  outlier: OutlierRecord;
  activeHealthy: boolean;
  /** Monotonic ms of the last successful attempt, -Infinity before one (partition decay reads it). */
  lastOkMs: number;
  /** Smoothed round trip of passing health checks, ms (undefined: none yet). */
  probeRttMs: number | undefined;
  /** Tier index, -1 when unplaced. */
  tier: number;
  region: RegionHealth | undefined;
}

interface TierSlot extends TierWeight {
  readonly tier: Tier;
  readonly slots: Slot[];
  readonly region: RegionHealth;
  totalWeight: number;
  /** Healthy weight × the region's weight multiplier (what the priority load sees). */
  healthyWeight: number;
  rawHealthyWeight: number;
  /** Score of an unprobed endpoint: the mean peak cost of the probed ones, ms. */
  neutralMs: number;
}

const DEFAULT_EWMA_DECAY_MS = 10_000;
const DEFAULT_FAILURE_PENALTY = 4;
/** Neutral score of a tier where nothing was measured yet (all candidates equal then). */
const DEFAULT_NEUTRAL_MS = 1;
/** While a region ramps up, tier shares are recomputed at most this often, ms. */
const RAMP_STEP_MS = 100;

const inLocality = (l: Locality, of: Locality) =>
  l.region === of.region && (of.zone === undefined || l.zone === of.zone);

/**
 * The proxy's load balancer for one destination: priority tiers of localities (own zone, own
 * region, remote regions in the order given), Envoy-style priority load with overprovisioning and
 * panic, power of two choices over peak-EWMA × in-flight within a tier, passive outlier detection
 * per endpoint and health with hysteresis per region.
 *
 * Pure logic: time comes from the Clock, chance from the Random, and periodic work happens only
 * in {@link evaluate}, which the proxy calls on its own timer (every 100–250 ms is plenty; region
 * transitions are only as punctual as these calls). `pick` is O(endpoints of one tier) and does
 * not allocate beyond its result.
 */
export class LocalityBalancer {
  readonly locality: Locality;
  readonly config: BalancerConfig;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #decayMs: number;
  readonly #failurePenalty: number;
  readonly #onEvent: ((event: BalancerEvent) => void) | undefined;
  readonly #outlier: OutlierDetector;
  readonly #slots = new Map<string, Slot>();
  readonly #regions = new Map<string, RegionHealth>();
  #tiers: TierSlot[] = [];
  #load: PriorityLoad = { shares: [], health: [], totalHealth: 0, panic: false };
  /** Endpoint health changed: tier weights must be recomputed. */
  #dirty = true;
  /** Tier weights changed: shares must be recomputed. */
  #stale = true;
  #ramping = false;
  #sharesAtMs = -Infinity;
  #nextSweepMs: number;
  // Per-pick state read by #access (set and cleared inside pick, which is synchronous).
  #pickNowMs = 0;
  #pickPanic = false;
  #pickNeutralMs = DEFAULT_NEUTRAL_MS;
  #pickAvoid: Locality | undefined;
  readonly #access: P2CAccess<Slot> = {
    id: (s) => s.endpoint.id,
    weight: (s) => s.endpoint.weight,
    score: (s) => s.latency.score(this.#pickNowMs, this.#pickNeutralMs),
    eligible: (s) =>
      (this.#pickPanic || (s.outlier.state !== 'ejected' && s.activeHealthy)) &&
      (this.#pickAvoid === undefined || !inLocality(s.endpoint.locality, this.#pickAvoid)),
  };

  constructor(options: LocalityBalancerOptions) {
    this.locality = options.locality;
    this.config = resolveBalancerConfig(options.traffic);
    this.#clock = options.clock;
    this.#random = options.random;
    this.#decayMs = options.ewmaDecayMs ?? DEFAULT_EWMA_DECAY_MS;
    this.#failurePenalty = options.failurePenalty ?? DEFAULT_FAILURE_PENALTY;
    this.#onEvent = options.onEvent;
    this.#outlier = new OutlierDetector(this.config.outlier, (rec, nowMs) => {
      this.#dirty = true;
      this.#onEvent?.({
        kind: 'endpoint',
        id: rec.id,
        health: rec.state,
        reason: rec.reason,
        atMs: this.#wall(nowMs),
      });
    });
    this.#nextSweepMs = this.#clock.monotonicMs() + this.config.outlier.intervalMs;
  }

  /**
   * Replaces the endpoints and the tiers (e.g. `MeshIndex.routingPlan(...).tiers`, remote tiers
   * in measured-RTT order). Each endpoint goes to the first tier of its region that lists its zone
   * (a remote tier takes every endpoint of its region); endpoints no tier covers are never picked.
   * Endpoints that stay (same id) keep their latency, in-flight count and health.
   */
  setEndpoints(endpoints: readonly Endpoint[], tiers: readonly Tier[]): void {
    const now = this.#clock.monotonicMs();
    const next = new Map<string, Slot>();
    for (const endpoint of endpoints) {
      if (next.has(endpoint.id)) continue;
      const old = this.#slots.get(endpoint.id);
      const localityKey = formatLocality(endpoint.locality);
      if (old) {
        old.endpoint = endpoint;
        old.localityKey = localityKey;
        next.set(endpoint.id, old);
      } else {
        next.set(endpoint.id, {
          endpoint,
          localityKey,
          latency: new LatencyTracker(this.#decayMs),
          outlier: undefined as unknown as OutlierRecord, // set just below
          activeHealthy: true,
          lastOkMs: -Infinity,
          probeRttMs: undefined,
          tier: -1,
          region: undefined,
        });
      }
    }
    this.#outlier.setEndpoints(
      [...next.values()].map((s) => ({ id: s.endpoint.id, locality: s.localityKey })),
    );
    this.#slots.clear();
    for (const [id, slot] of next) {
      slot.outlier = this.#outlier.get(id) as OutlierRecord;
      this.#slots.set(id, slot);
    }

    const regions = new Map<string, RegionHealth>();
    const regionOf = (name: string) => {
      let r = regions.get(name) ?? this.#regions.get(name);
      if (r === undefined) r = new RegionHealth(name, this.config.region, now);
      regions.set(name, r);
      return r;
    };
    this.#tiers = tiers.map((tier) => ({
      tier,
      slots: [],
      region: regionOf(tier.region),
      totalWeight: 0,
      healthyWeight: 0,
      rawHealthyWeight: 0,
      neutralMs: DEFAULT_NEUTRAL_MS,
    }));
    for (const slot of this.#slots.values()) {
      slot.tier = placeInTier(slot.endpoint.locality, tiers);
      const tier = this.#tiers[slot.tier];
      slot.region = tier?.region;
      tier?.slots.push(slot);
    }
    this.#regions.clear();
    for (const [name, r] of regions) this.#regions.set(name, r);
    this.#ramping = [...regions.values()].some((r) => r.state === 'recovering');
    this.#dirty = true;
  }

  /** Re-orders or replaces the tiers (e.g. remote regions by measured RTT), keeping all state. */
  setTiers(tiers: readonly Tier[]): void {
    this.setEndpoints(
      [...this.#slots.values()].map((s) => s.endpoint),
      tiers,
    );
  }

  /**
   * Picks the endpoint for one attempt, or undefined when nothing can be picked (no endpoints, or
   * none healthy and panic disabled, or all excluded). Call {@link begin} when the attempt starts.
   */
  pick(options?: PickOptions): PickResult | undefined {
    const now = this.#clock.monotonicMs();
    this.#refresh(now);
    const tiers = this.#tiers;
    const { shares, panic } = this.#load;
    let r = this.#random.next();
    let drawn = -1;
    let first = -1;
    for (let i = 0; i < shares.length; i++) {
      const share = shares[i] as number;
      if (share <= 0) continue;
      if (first < 0) first = i;
      drawn = i;
      if (r < share) break;
      r -= share;
    }
    if (drawn < 0) return undefined;

    const exclude = options?.exclude;
    this.#pickNowMs = now;
    this.#pickPanic = panic;
    this.#pickAvoid = options?.preferOtherLocalityThan;
    let reason: PickReason = panic ? 'panic' : drawn === first ? 'primary' : 'spillover';
    let at = drawn;
    let hit = this.#pickInTier(drawn, exclude);
    for (let i = 0; hit === undefined && i < tiers.length; i++) {
      if (i === drawn) continue;
      hit = this.#pickInTier(i, exclude);
      if (hit) [at, reason] = [i, 'fallback'];
    }
    if (hit === undefined && this.#pickAvoid !== undefined) {
      this.#pickAvoid = undefined;
      for (let k = 0; hit === undefined && k < tiers.length; k++) {
        const i = k === 0 ? drawn : k <= drawn ? k - 1 : k;
        hit = this.#pickInTier(i, exclude);
        if (hit) [at, reason] = [i, 'same-locality'];
      }
    }
    this.#pickAvoid = undefined;
    if (hit === undefined) return undefined;
    return { endpoint: hit.endpoint, priority: at, tier: (tiers[at] as TierSlot).tier, panic, reason };
  }

  /** An attempt to `endpointId` starts: counts it in flight until {@link report} or {@link cancel}. */
  begin(endpointId: string): void {
    const slot = this.#slots.get(endpointId);
    if (slot) slot.latency.inflight++;
  }

  /** An attempt ended without an outcome worth judging (caller gone, hedge lost): in-flight only. */
  cancel(endpointId: string): void {
    const slot = this.#slots.get(endpointId);
    if (slot && slot.latency.inflight > 0) slot.latency.inflight--;
  }

  /**
   * An attempt begun with {@link begin} ended. Feeds the latency averages, outlier detection and
   * the region's success rate. Report 4xx responses as `ok: true`: the endpoint worked.
   */
  report(endpointId: string, outcome: AttemptOutcome): void {
    const slot = this.#slots.get(endpointId);
    if (slot === undefined) return;
    if (slot.latency.inflight > 0) slot.latency.inflight--;
    const now = this.#clock.monotonicMs();
    if (outcome.ok) {
      slot.lastOkMs = now;
      slot.latency.observe(outcome.latencyMs, now);
      this.#outlier.record(slot.outlier, true, true, now);
    } else {
      const timeout = outcome.failure === 'timeout';
      const neutral = slot.tier >= 0 ? (this.#tiers[slot.tier] as TierSlot).neutralMs : DEFAULT_NEUTRAL_MS;
      if (timeout) slot.latency.observe(outcome.latencyMs, now);
      slot.latency.observeFailure(outcome.latencyMs, now, neutral, this.#failurePenalty);
      this.#outlier.record(slot.outlier, false, timeout, now);
    }
    slot.region?.record(outcome.ok, now);
  }

  /**
   * Round trip of a passing health check: network distance without the app's processing time,
   * and measured for every gateway whether or not traffic flows there (EWMA, α = 0.3).
   */
  observeProbeRtt(endpointId: string, rttMs: number): void {
    const slot = this.#slots.get(endpointId);
    if (slot === undefined || !Number.isFinite(rttMs) || rttMs < 0) return;
    slot.probeRttMs =
      slot.probeRttMs === undefined ? rttMs : slot.probeRttMs + 0.3 * (rttMs - slot.probeRttMs);
  }

  /** Result of an active health check round: unhealthy endpoints are not picked (outside panic). */
  setActiveHealth(endpointId: string, healthy: boolean): void {
    const slot = this.#slots.get(endpointId);
    if (slot === undefined || slot.activeHealthy === healthy) return;
    slot.activeHealthy = healthy;
    this.#dirty = true;
    this.#onEvent?.({
      kind: 'endpoint',
      id: endpointId,
      health: this.#healthOf(slot),
      reason: healthy ? 'active health check passed' : 'active health check failed',
      atMs: this.#clock.now(),
    });
  }

  /**
   * The periodic analysis: ends ejections whose time is up, runs the outlier interval sweep when
   * `outlierDetection.interval` has passed, re-scores regions and makes their transitions.
   */
  evaluate(): void {
    const now = this.#clock.monotonicMs();
    this.#outlier.expire(now);
    if (now >= this.#nextSweepMs) {
      this.#outlier.sweep(now, (id) => {
        const t = this.#slots.get(id)?.latency;
        return t !== undefined && t.samples > 0 ? t.smoothMs : undefined;
      });
      this.#nextSweepMs = now + this.config.outlier.intervalMs;
    }
    this.#recomputeWeights();
    const perRegion = new Map<RegionHealth, { healthy: number; total: number }>();
    for (const slot of this.#slots.values()) {
      if (slot.region === undefined) continue;
      const acc = perRegion.get(slot.region) ?? { healthy: 0, total: 0 };
      perRegion.set(slot.region, acc);
      acc.total += slot.endpoint.weight;
      if (this.#countsHealthy(slot)) acc.healthy += slot.endpoint.weight;
    }
    let ramping = false;
    for (const region of this.#regions.values()) {
      const acc = perRegion.get(region);
      const share = acc === undefined || acc.total <= 0 ? undefined : acc.healthy / acc.total;
      if (region.update(share, now)) {
        this.#onEvent?.({
          kind: 'region',
          region: region.region,
          state: region.state,
          reason: region.reason,
          atMs: this.#wall(now),
        });
      }
      if (region.state === 'recovering') ramping = true;
    }
    this.#ramping = ramping;
    this.#stale = true;
  }

  /** State of one region (undefined if no tier or endpoint names it). */
  region(name: string): RegionHealth | undefined {
    return this.#regions.get(name);
  }

  /** Current traffic split across tiers (same order as the tiers). */
  load(): PriorityLoad {
    this.#refresh(this.#clock.monotonicMs());
    return this.#load;
  }

  /** Current health of one endpoint (undefined when unknown). */
  endpointHealth(endpointId: string): EndpointHealth | undefined {
    const slot = this.#slots.get(endpointId);
    if (slot === undefined) return undefined;
    this.#outlier.expire(this.#clock.monotonicMs());
    return this.#healthOf(slot);
  }

  /** Monotonic ms of the endpoint's last successful attempt; undefined before one (or when unknown). O(1). */
  lastSuccessMs(endpointId: string): number | undefined {
    const t = this.#slots.get(endpointId)?.lastOkMs;
    return t === undefined || t === -Infinity ? undefined : t;
  }

  /** Smoothed latency of an endpoint's attempts, ms; undefined until measured. O(1). */
  expectedLatencyMs(endpointId: string): number | undefined {
    const slot = this.#slots.get(endpointId);
    return slot !== undefined && slot.latency.samples > 0 ? slot.latency.smoothMs : undefined;
  }

  /** A JSON-able view of everything the balancer knows; not for the request path. */
  snapshot(): BalancerSnapshot {
    const now = this.#clock.monotonicMs();
    this.#refresh(now);
    const load = this.#load;
    const round = (x: number) => Math.round(x * 1000) / 1000;
    return {
      atMs: this.#clock.now(),
      locality: formatLocality(this.locality),
      panic: load.panic,
      totalHealth: round(load.totalHealth),
      tiers: this.#tiers.map((t, i) => ({
        priority: i,
        tier: t.tier.tier,
        region: t.tier.region,
        zones: [...t.tier.zones],
        via: t.tier.via,
        share: round(load.shares[i] ?? 0),
        health: round(load.health[i] ?? 0),
        healthyWeight: round(t.healthyWeight),
        totalWeight: t.totalWeight,
        endpoints: t.slots.length,
      })),
      regions: [...this.#regions.values()].map((r) => {
        const rate = r.successRate(now);
        return {
          region: r.region,
          state: r.state,
          sinceMs: this.#wall(r.sinceMs),
          score: r.score === undefined ? null : round(r.score),
          healthyShare: r.healthyShare === undefined ? null : round(r.healthyShare),
          successRate: rate === undefined ? null : round(rate),
          flaps: r.flaps(now),
          weight: round(r.weight(now)),
          readmitAfterMs: r.readmitAfterMs(now),
          reason: r.reason,
        };
      }),
      endpoints: [...this.#slots.values()].map((s) => ({
        id: s.endpoint.id,
        address: s.endpoint.address,
        port: s.endpoint.port,
        locality: s.localityKey,
        kind: s.endpoint.kind,
        weight: s.endpoint.weight,
        priority: s.tier >= 0 ? s.tier : null,
        health: this.#healthOf(s),
        reason: s.activeHealthy ? s.outlier.reason : 'active health check failed',
        ejectedUntilMs: s.outlier.state === 'healthy' ? null : this.#wall(s.outlier.untilMs),
        ejections: s.outlier.ejections,
        cappedEjections: s.outlier.capped,
        consecutiveFailures: s.outlier.consecutiveFailures,
        ewmaMs: s.latency.probed ? round(s.latency.peakMs) : null,
        latencyMs: s.latency.samples > 0 ? round(s.latency.smoothMs) : null,
        probeRttMs: s.probeRttMs === undefined ? null : round(s.probeRttMs),
        inflight: s.latency.inflight,
      })),
    };
  }

  #pickInTier(i: number, exclude: ReadonlySet<string> | undefined): Slot | undefined {
    const tier = this.#tiers[i] as TierSlot;
    if (!this.#pickPanic && tier.region.state === 'ejected') return undefined;
    this.#pickNeutralMs = tier.neutralMs;
    return pickP2C(tier.slots, this.#access, this.#random, exclude);
  }

  /** Brings tier weights and shares up to date; O(tiers) unless endpoint health changed. */
  #refresh(now: number): void {
    this.#outlier.expire(now);
    if (this.#dirty) this.#recomputeWeights();
    if (this.#stale || (this.#ramping && now - this.#sharesAtMs >= RAMP_STEP_MS)) {
      for (const t of this.#tiers) t.healthyWeight = t.rawHealthyWeight * t.region.weight(now);
      const { overprovisioningFactor, panicThreshold } = this.config;
      this.#load = priorityLoad(this.#tiers, overprovisioningFactor, panicThreshold);
      this.#sharesAtMs = now;
      this.#stale = false;
    }
  }

  #recomputeWeights(): void {
    for (const t of this.#tiers) {
      let total = 0;
      let healthy = 0;
      let costSum = 0;
      let probed = 0;
      for (const s of t.slots) {
        const w = s.endpoint.weight > 0 ? s.endpoint.weight : 0;
        total += w;
        if (this.#countsHealthy(s)) healthy += w;
        if (s.latency.probed) {
          costSum += s.latency.peakMs;
          probed++;
        }
      }
      t.totalWeight = total;
      t.rawHealthyWeight = healthy;
      t.neutralMs = probed > 0 && costSum > 0 ? costSum / probed : DEFAULT_NEUTRAL_MS;
    }
    this.#dirty = false;
    this.#stale = true;
  }

  #countsHealthy(s: Slot): boolean {
    return s.activeHealthy && s.outlier.state === 'healthy';
  }

  #healthOf(s: Slot): EndpointHealth {
    return s.activeHealthy ? s.outlier.state : 'unhealthy';
  }

  /** Wall-clock epoch ms of a monotonic instant. */
  #wall(monoMs: number): number {
    return this.#clock.now() + (monoMs - this.#clock.monotonicMs());
  }
}

/**
 * Index of the tier an endpoint belongs to: the first tier of its region listing its zone, or
 * that region's remote (gateway) tier, or else its region's `region` tier; -1 when none fits.
 */
export function placeInTier(locality: Locality, tiers: readonly Tier[]): number {
  let fallback = -1;
  for (let i = 0; i < tiers.length; i++) {
    const t = tiers[i] as Tier;
    if (t.region !== locality.region) continue;
    if (t.via === 'gateway') return i;
    if (locality.zone !== undefined && t.zones.includes(locality.zone)) return i;
    if (fallback < 0 && t.tier !== 'zone') fallback = i;
  }
  return fallback;
}
