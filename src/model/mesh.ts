import { parseDurationMs } from '../core/units.js';
import { mergeLayers, settingsOfPolicy, type Effective, type Layer, type Level } from './effective.js';
import type { LoadedResource } from './load.js';
import type { Locality } from './locality.js';
import type { Kind, Resource } from './resources.js';
import { defaultsOf, type JsonSchema } from './schema-walk.js';
import {
  PartitionSettings,
  TelemetrySettings,
  TrafficSettings,
  type EffectivePartition,
  type EffectiveTelemetry,
  type EffectiveTraffic,
} from './settings.js';

export type Loaded<K extends Kind> = LoadedResource & { resource: Resource<K> };

function isKind<K extends Kind>(kind: K) {
  return (l: LoadedResource): l is Loaded<K> => l.resource.kind === kind;
}

export const BUILTIN_TRAFFIC = defaultsOf(TrafficSettings);
export const BUILTIN_PARTITION = defaultsOf(PartitionSettings);
export const BUILTIN_TELEMETRY = defaultsOf(TelemetrySettings);

const builtinLayer = (settings: Record<string, unknown>): Layer => ({
  level: 'builtin',
  settings,
  basePath: [],
});

/**
 * An indexed, validated set of mesh resources: lookups by name and the effective (merged)
 * settings for any service, route or region. The first resource of a kind/name wins; duplicates
 * are reported by `checkMesh`.
 */
export class MeshIndex {
  readonly all: readonly LoadedResource[];
  readonly byId = new Map<string, LoadedResource>();
  readonly mesh: Loaded<'Mesh'> | undefined;
  readonly regions = new Map<string, Loaded<'Region'>>();
  readonly services = new Map<string, Loaded<'Service'>>();
  readonly externalServices = new Map<string, Loaded<'ExternalService'>>();
  readonly trafficPolicies: Loaded<'TrafficPolicy'>[] = [];
  readonly partitionPolicies: Loaded<'PartitionPolicy'>[] = [];
  readonly telemetryPolicies: Loaded<'TelemetryPolicy'>[] = [];

  constructor(loaded: readonly LoadedResource[]) {
    this.all = loaded;
    for (const l of loaded) {
      const id = `${l.resource.kind}/${l.resource.metadata.name}`;
      if (this.byId.has(id)) continue;
      this.byId.set(id, l);
    }
    const unique = [...this.byId.values()];
    this.mesh = unique.find(isKind('Mesh'));
    for (const r of unique.filter(isKind('Region'))) this.regions.set(r.resource.metadata.name, r);
    for (const s of unique.filter(isKind('Service'))) this.services.set(s.resource.metadata.name, s);
    for (const e of unique.filter(isKind('ExternalService')))
      this.externalServices.set(e.resource.metadata.name, e);
    this.trafficPolicies.push(...unique.filter(isKind('TrafficPolicy')));
    this.partitionPolicies.push(...unique.filter(isKind('PartitionPolicy')));
    this.telemetryPolicies.push(...unique.filter(isKind('TelemetryPolicy')));
  }

  #meshDefaults(section: 'traffic' | 'partition' | 'telemetry'): Layer[] {
    const settings = this.mesh?.resource.spec.defaults?.[section];
    if (!this.mesh || !settings) return [];
    return [
      {
        level: 'mesh-defaults',
        settings: settings,
        source: this.mesh,
        basePath: ['spec', 'defaults', section],
      },
    ];
  }

  #policyLayers(
    policies: readonly LoadedResource[],
    level: Level,
    matches: (ref: Record<string, unknown>) => boolean,
  ) {
    return policies
      .filter((p) => matches((p.resource.spec as { targetRef: Record<string, unknown> }).targetRef))
      .map((p): Layer => ({
        level,
        settings: settingsOfPolicy(p.resource.spec as Record<string, unknown>),
        source: p,
        basePath: ['spec'],
      }));
  }

  /** Traffic layers for the mesh as a whole, a service, or a route of a service, least specific first. */
  trafficLayers(service?: string, route?: string): Layer[] {
    const tp = this.trafficPolicies;
    return [
      builtinLayer(BUILTIN_TRAFFIC),
      ...this.#meshDefaults('traffic'),
      ...this.#policyLayers(tp, 'mesh', (t) => t.kind === 'Mesh'),
      ...(service === undefined
        ? []
        : this.#policyLayers(tp, 'service', (t) => t.kind === 'Service' && t.name === service)),
      ...(service === undefined || route === undefined
        ? []
        : this.#policyLayers(
            tp,
            'route',
            (t) => t.kind === 'Route' && t.service === service && t.name === route,
          )),
    ];
  }

  partitionLayers(region?: string): Layer[] {
    const pp = this.partitionPolicies;
    return [
      builtinLayer(BUILTIN_PARTITION),
      ...this.#meshDefaults('partition'),
      ...this.#policyLayers(pp, 'mesh', (t) => t.kind === 'Mesh'),
      ...(region === undefined
        ? []
        : this.#policyLayers(pp, 'region', (t) => t.kind === 'Region' && t.name === region)),
    ];
  }

  telemetryLayers(service?: string): Layer[] {
    const tp = this.telemetryPolicies;
    return [
      builtinLayer(BUILTIN_TELEMETRY),
      ...this.#meshDefaults('telemetry'),
      ...this.#policyLayers(tp, 'mesh', (t) => t.kind === 'Mesh'),
      ...(service === undefined
        ? []
        : this.#policyLayers(tp, 'service', (t) => t.kind === 'Service' && t.name === service)),
    ];
  }

  traffic(service?: string, route?: string): Effective<EffectiveTraffic> {
    return mergeLayers(TrafficSettings as JsonSchema, this.trafficLayers(service, route));
  }

  partition(region?: string): Effective<EffectivePartition> {
    return mergeLayers(PartitionSettings as JsonSchema, this.partitionLayers(region));
  }

  telemetry(service?: string): Effective<EffectiveTelemetry> {
    return mergeLayers(TelemetrySettings as JsonSchema, this.telemetryLayers(service));
  }

  /** Region names ordered by expected round-trip time from `from` (declared hints; then by name). */
  regionsByDistance(from: string): { region: string; rttHintMs?: number }[] {
    const hints = this.regions.get(from)?.resource.spec.latencyHints ?? {};
    const backHint = (r: string) => this.regions.get(r)?.resource.spec.latencyHints?.[from];
    return [...this.regions.keys()]
      .filter((r) => r !== from)
      .map((region) => {
        const hint = hints[region] ?? backHint(region);
        return hint === undefined ? { region } : { region, rttHintMs: parseDurationMs(hint) };
      })
      .sort(
        (a, b) => (a.rttHintMs ?? Infinity) - (b.rttHintMs ?? Infinity) || a.region.localeCompare(b.region),
      );
  }

  /**
   * The priority tiers a proxy at `from` uses to reach `service` (for one route, if given): the
   * static plan the balancer starts from. At run time remote tiers are reordered by measured RTT.
   */
  routingPlan(from: Locality, service: string, route?: string): RoutingPlan {
    const { value } = this.traffic(service, route);
    const home = this.services.get(service)?.resource.spec.homeRegion;
    const strong = value.consistency.mode === 'strong';
    const tiers: Tier[] = [];
    const notes: string[] = [];
    const zonesOf = (region: string) =>
      this.regions.get(region)?.resource.spec.zones.map((z) => z.name) ?? [];
    const priorities = value.localityFailover.priorities;
    const local = from.region;

    if (strong && home !== undefined && home !== local) {
      notes.push(`strong consistency: only the home region ${home} may serve, through its gateway`);
      if (!priorities.includes('remote'))
        notes.push(
          'localityFailover.priorities has no `remote` tier, so this route cannot be served from here',
        );
      else tiers.push({ priority: 0, tier: 'remote', region: home, zones: zonesOf(home), via: 'gateway' });
      return { tiers, notes };
    }
    for (const tier of priorities) {
      if (tier === 'zone') {
        if (from.zone === undefined) {
          notes.push('no zone given: the `zone` tier is merged into the `region` tier');
          continue;
        }
        tiers.push({ priority: tiers.length, tier, region: local, zones: [from.zone], via: 'local' });
      } else if (tier === 'region') {
        const zones = zonesOf(local).filter((z) => !(priorities.includes('zone') && z === from.zone));
        if (zones.length > 0)
          tiers.push({ priority: tiers.length, tier, region: local, zones, via: 'local' });
      } else {
        if (strong) {
          notes.push('strong consistency: remote regions never serve this route');
          continue;
        }
        for (const { region, rttHintMs } of this.regionsByDistance(local)) {
          tiers.push({
            priority: tiers.length,
            tier,
            region,
            zones: zonesOf(region),
            via: 'gateway',
            ...(rttHintMs !== undefined && { rttHintMs }),
          });
        }
      }
    }
    return { tiers, notes };
  }
}

export interface Tier {
  priority: number;
  tier: 'zone' | 'region' | 'remote';
  region: string;
  zones: string[];
  /** `local`: endpoints reached directly; `gateway`: through the region's gateway. */
  via: 'local' | 'gateway';
  rttHintMs?: number;
}

export interface RoutingPlan {
  tiers: Tier[];
  notes: string[];
}
