import { IsthmusError } from '../core/errors.js';

/**
 * The shape of a lab: which regions, which services run where, and the loopback address of
 * every process and every cross-region link. Pure data, computed from a few options, so the
 * same options always give the same addresses (and the lab's printed map matches what runs).
 *
 * Addresses: region number i (1-based, in the order given) owns the block `127.N.i.0/24`, where N
 * is `subnet` (0 by default, so us-east = 127.0.1.x, matching the gateway addresses in
 * examples/mesh/regions.yaml). The global plane owns `127.N.100.0/24`. Inside a region block:
 * .1 gateway, .2 zone control plane, .3 collector, .10+ instances of zone a, .20+ of zone b,
 * .200 the region's end of its links (what its processes dial to leave the region).
 */

export const GLOBAL = 'global';

export interface LabOptions {
  /** Regions, in order; each must be one of the storefront's regions unless `zones` says otherwise. */
  regions?: string[];
  /** Second octet of every lab address (0–254); labs with different subnets do not collide. */
  subnet?: number;
  /** Where services run: REGION → list of `service@zone` (zone defaults to the region's first). */
  placement?: Record<string, string[]>;
  /** One-way delay added on each link between two regions, ms (REGION>REGION → ms). */
  linkLatencyMs?: Record<string, number>;
}

export interface LabInstance {
  /** Unique name, e.g. `catalog-us-east-a-1`. */
  name: string;
  service: string;
  region: string;
  zone: string;
  address: string;
  /** The app's own port (the service's port). */
  appPort: number;
  inbound: string;
  outbound: string;
  admin: string;
}

export interface LabRegion {
  name: string;
  index: number;
  zones: string[];
  gateway: string;
  gatewayAdmin: string;
  zoneListen: string;
  collector: string;
  instances: LabInstance[];
}

/** A directed cross-region link: connections opened from `from` to `to`. */
export interface LabLink {
  name: string;
  from: string;
  to: string;
  purpose: 'data' | 'control' | 'telemetry';
  listen: string;
  upstream: string;
  /** Added one-way latency in each direction, ms (the lab's WAN baseline). */
  latencyMs: number;
}

export interface LabTopology {
  subnet: number;
  regions: LabRegion[];
  links: LabLink[];
  global: { controlPlane: string; collector: string; linkApi: string; labApi: string };
}

/** The storefront's regions and their zones (examples/mesh/regions.yaml). */
export const STOREFRONT_ZONES: Record<string, string[]> = {
  'us-east': ['us-east-a', 'us-east-b'],
  'eu-west': ['eu-west-a', 'eu-west-b'],
  'ap-south': ['ap-south-a'],
};

/** Service ports (examples/mesh/services). */
export const SERVICE_PORTS: Record<string, number> = {
  frontend: 8080,
  catalog: 8081,
  orders: 8082,
  recommendations: 8084,
};

/**
 * Default placement: us-east and eu-west run everything (catalog in two zones of us-east),
 * ap-south runs only its frontend, so its reads cross regions and fail over between them.
 */
export const DEFAULT_PLACEMENT: Record<string, string[]> = {
  'us-east': ['frontend', 'catalog', 'catalog@us-east-b', 'orders', 'recommendations'],
  'eu-west': ['frontend', 'catalog', 'orders', 'recommendations'],
  'ap-south': ['frontend'],
};

/** Typical one-way WAN delays between the storefront's regions, ms (half the RTT hints). */
export const DEFAULT_LINK_LATENCY_MS: Record<string, number> = {
  'us-east>eu-west': 40,
  'us-east>ap-south': 100,
  'eu-west>ap-south': 60,
  'us-east>global': 5,
  'eu-west>global': 40,
  'ap-south>global': 100,
};

const latencyBetween = (table: Record<string, number>, a: string, b: string) =>
  table[`${a}>${b}`] ?? table[`${b}>${a}`] ?? 0;

export function planLab(options: LabOptions = {}): LabTopology {
  const names = options.regions ?? Object.keys(STOREFRONT_ZONES);
  const subnet = options.subnet ?? 0;
  if (!Number.isInteger(subnet) || subnet < 0 || subnet > 254)
    throw new IsthmusError('ISTHMUS_E_USAGE', `subnet ${subnet} is not 0–254`);
  if (names.length === 0) throw new IsthmusError('ISTHMUS_E_USAGE', 'a lab needs at least one region');
  if (new Set(names).size !== names.length)
    throw new IsthmusError('ISTHMUS_E_USAGE', `a region is named twice in ${names.join(', ')}`);
  const placement = options.placement ?? DEFAULT_PLACEMENT;
  const latency = options.linkLatencyMs ?? DEFAULT_LINK_LATENCY_MS;
  const ip = (block: number, host: number) => `127.${subnet}.${block}.${host}`;

  const regions: LabRegion[] = names.map((name, i) => {
    const zones = STOREFRONT_ZONES[name];
    if (!zones)
      throw new IsthmusError(
        'ISTHMUS_E_USAGE',
        `"${name}" is not a region of the storefront (${Object.keys(STOREFRONT_ZONES).join(', ')})`,
      );
    const index = i + 1;
    const perZone = new Map<string, number>();
    const instances: LabInstance[] = [];
    for (const entry of placement[name] ?? []) {
      const [service = '', zone = zones[0] as string] = entry.split('@');
      const appPort = SERVICE_PORTS[service];
      if (appPort === undefined)
        throw new IsthmusError(
          'ISTHMUS_E_USAGE',
          `"${service}" in the placement of ${name} is not a demo service (${Object.keys(SERVICE_PORTS).join(', ')})`,
        );
      const zoneIndex = zones.indexOf(zone);
      if (zoneIndex < 0)
        throw new IsthmusError('ISTHMUS_E_USAGE', `"${zone}" is not a zone of ${name} (${zones.join(', ')})`);
      const n = perZone.get(zone) ?? 0;
      perZone.set(zone, n + 1);
      if (n >= 10) throw new IsthmusError('ISTHMUS_E_USAGE', `more than 10 instances in ${zone}`);
      const address = ip(index, 10 * (zoneIndex + 1) + n);
      const k = instances.filter((i) => i.service === service && i.zone === zone).length + 1;
      instances.push({
        name: `${service}-${zone}-${k}`,
        service,
        region: name,
        zone,
        address,
        appPort,
        inbound: `${address}:15006`,
        outbound: `${address}:15001`,
        admin: `${address}:15000`,
      });
    }
    return {
      name,
      index,
      zones,
      gateway: `${ip(index, 1)}:15443`,
      gatewayAdmin: `${ip(index, 1)}:15000`,
      zoneListen: `${ip(index, 2)}:7401`,
      collector: `${ip(index, 3)}:4318`,
      instances,
    };
  });

  const global = {
    controlPlane: `${ip(100, 1)}:7400`,
    collector: `${ip(100, 2)}:4318`,
    linkApi: `${ip(100, 3)}:8474`,
    labApi: `${ip(100, 4)}:7300`,
  };
  const links: LabLink[] = [];
  for (const from of regions) {
    const edge = ip(from.index, 200);
    for (const to of regions) {
      if (to === from) continue;
      links.push({
        name: `${from.name}>${to.name}`,
        from: from.name,
        to: to.name,
        purpose: 'data',
        listen: `${edge}:${16000 + to.index}`,
        upstream: to.gateway,
        latencyMs: latencyBetween(latency, from.name, to.name),
      });
    }
    const toGlobal = latencyBetween(latency, from.name, GLOBAL);
    links.push(
      {
        name: `${from.name}>global.control`,
        from: from.name,
        to: GLOBAL,
        purpose: 'control',
        listen: `${edge}:17400`,
        upstream: global.controlPlane,
        latencyMs: toGlobal,
      },
      {
        name: `${from.name}>global.telemetry`,
        from: from.name,
        to: GLOBAL,
        purpose: 'telemetry',
        listen: `${edge}:14318`,
        upstream: global.collector,
        latencyMs: toGlobal,
      },
    );
  }
  return { subnet, regions, links, global };
}

/** The link a process in `from` dials to reach `to` for `purpose`. */
export function linkFor(
  topology: LabTopology,
  from: string,
  to: string,
  purpose: LabLink['purpose'] = 'data',
): LabLink {
  const link = topology.links.find((l) => l.from === from && l.to === to && l.purpose === purpose);
  if (!link) throw new Error(`no ${purpose} link ${from} > ${to}`);
  return link;
}
