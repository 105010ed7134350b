import { closestMatch } from '../core/text.js';
import { parseDurationMs, parseSizeBytes } from '../core/units.js';
import { compareDiagnostics, type Diagnostic, type Position } from './diagnostics.js';
import { mergeLayers, type Effective, type Layer, type Origin } from './effective.js';
import type { LoadedResource } from './load.js';
import { MeshIndex, type Loaded } from './mesh.js';
import { getIn, leavesOf, type JsonSchema } from './schema-walk.js';
import {
  PartitionSettings,
  TelemetrySettings,
  TrafficSettings,
  type EffectiveTelemetry,
  type EffectiveTraffic,
} from './settings.js';

/**
 * Checks that span resources: references, duplicates, conflicting policies, and constraints
 * between fields that only hold (or fail) once policies are merged.
 */
export function checkMesh(loaded: readonly LoadedResource[], rejected: readonly string[] = []): Diagnostic[] {
  const index = new MeshIndex(loaded);
  const out = new Reporter(new Set(rejected));
  checkDuplicates(loaded, out);
  checkRegions(index, out);
  checkServices(index, out);
  checkExternalServices(index, out);
  checkTargets(index, out);
  checkConflicts(index, out);
  checkRouteLevel(index, out);
  checkEffective(index, out);
  return out.sorted();
}

class Reporter {
  readonly #items: Diagnostic[] = [];
  readonly #seen = new Set<string>();
  /** Resources that exist but failed validation: references to them are not also reported. */
  readonly rejected: ReadonlySet<string>;

  constructor(rejected: ReadonlySet<string>) {
    this.rejected = rejected;
  }

  add(
    source: LoadedResource,
    path: readonly (string | number)[],
    d: Omit<Diagnostic, 'file' | 'line' | 'col' | 'resource' | 'path' | 'severity'> & {
      severity?: Diagnostic['severity'];
      atKey?: boolean;
      /** Problems with the same location and key are reported once (default: the message). */
      dedupeKey?: string;
    },
  ): void {
    const { atKey, severity, dedupeKey, ...rest } = d;
    const pos = source.locate(path, atKey ?? false);
    const resource = `${source.resource.kind}/${source.resource.metadata.name}`;
    const diagnostic: Diagnostic = {
      severity: severity ?? 'error',
      ...pos,
      resource,
      path: path.join('.').replace(/\.(\d+)(?=\.|$)/g, '[$1]'),
      ...rest,
    };
    // Constraints are evaluated per service and per route; a problem in a shared policy is
    // reported once, where it is.
    const key = `${pos.file}:${pos.line}:${pos.col}:${diagnostic.rule}:${dedupeKey ?? diagnostic.message}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#items.push(diagnostic);
  }

  sorted(): Diagnostic[] {
    return [...this.#items].sort(compareDiagnostics);
  }
}

const related = (pos: Position, message: string) => ({
  file: pos.file,
  line: pos.line,
  col: pos.col,
  message,
});
const idOf = (l: LoadedResource) => `${l.resource.kind}/${l.resource.metadata.name}`;

function dangling(
  out: Reporter,
  source: LoadedResource,
  path: (string | number)[],
  what: 'region' | 'service' | 'route',
  name: string,
  known: Iterable<string>,
  scope = '',
) {
  if (what === 'region' && out.rejected.has(`Region/${name}`)) return;
  if (what === 'service' && out.rejected.has(`Service/${name}`)) return;
  const names = [...known];
  const suggestion = closestMatch(name, names);
  out.add(source, path, {
    rule: 'dangling-reference',
    message: `${what} "${name}"${scope ? ` ${scope}` : ''} does not exist`,
    expected: names.length ? `one of ${names.join(', ')}` : `a declared ${what} (none is declared)`,
    found: `"${name}"`,
    hint:
      suggestion !== undefined
        ? `did you mean "${suggestion}"?`
        : `declare the ${what}${scope ? ` ${scope}` : ''} or fix the name`,
  });
}

function checkDuplicates(loaded: readonly LoadedResource[], out: Reporter) {
  const first = new Map<string, LoadedResource>();
  let mesh: LoadedResource | undefined;
  for (const l of loaded) {
    const id = idOf(l);
    const prior = first.get(id);
    if (prior) {
      out.add(l, ['metadata', 'name'], {
        rule: 'duplicate-name',
        message: `${id} is defined more than once`,
        expected: `one ${l.resource.kind} named "${l.resource.metadata.name}"`,
        found: 'a second definition',
        hint: 'rename one of them or delete the copy',
        related: [related(prior.locate(['metadata', 'name']), 'first defined here')],
      });
      continue;
    }
    first.set(id, l);
    if (l.resource.kind === 'Mesh') {
      if (mesh) {
        out.add(l, ['kind'], {
          rule: 'duplicate-mesh',
          message: 'only one Mesh resource may exist',
          expected: 'one Mesh',
          found: `a second Mesh "${l.resource.metadata.name}"`,
          hint: `merge its settings into Mesh/${mesh.resource.metadata.name}`,
          related: [related(mesh.locate(['kind']), 'the first Mesh')],
        });
      } else mesh = l;
    }
  }
}

function checkUniqueNames(
  out: Reporter,
  source: LoadedResource,
  listPath: string[],
  items: readonly { name: string }[] | undefined,
  what: string,
) {
  const seen = new Map<string, number>();
  (items ?? []).forEach((item, i) => {
    const prior = seen.get(item.name);
    if (prior !== undefined) {
      out.add(source, [...listPath, i, 'name'], {
        rule: 'duplicate-name',
        message: `${what} "${item.name}" is declared twice`,
        expected: `unique ${what} names`,
        found: `"${item.name}" again (first at ${listPath.join('.')}[${prior}])`,
        related: [related(source.locate([...listPath, prior, 'name']), 'first declared here')],
      });
    } else seen.set(item.name, i);
  });
}

function checkRegions(index: MeshIndex, out: Reporter) {
  for (const [name, region] of index.regions) {
    checkUniqueNames(out, region, ['spec', 'zones'], region.resource.spec.zones, 'zone');
    for (const other of Object.keys(region.resource.spec.latencyHints ?? {})) {
      if (other === name) {
        out.add(region, ['spec', 'latencyHints', other], {
          rule: 'self-reference',
          atKey: true,
          message: 'a region has no latency hint to itself',
          expected: 'other regions',
          found: `"${other}"`,
          hint: 'remove this entry',
        });
      } else if (!index.regions.has(other)) {
        dangling(out, region, ['spec', 'latencyHints', other], 'region', other, index.regions.keys());
      }
    }
  }
}

/** True when every request `later` matches is matched by `earlier` first. */
function shadows(
  earlier: NonNullable<Loaded<'Service'>['resource']['spec']['routes']>[number]['match'],
  later: NonNullable<Loaded<'Service'>['resource']['spec']['routes']>[number]['match'],
): boolean {
  const methodsCovered =
    earlier.methods === undefined ||
    (later.methods !== undefined && later.methods.every((m) => earlier.methods!.includes(m)));
  if (!methodsCovered) return false;
  const e = earlier.path;
  const l = later.path;
  if (e === undefined) return true;
  if (l === undefined) return false;
  const target = l.exact ?? l.prefix ?? '';
  if (e.exact !== undefined) return l.exact === e.exact;
  const prefix = e.prefix ?? '';
  return (
    prefix === '/' || target === prefix || target.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`)
  );
}

function checkServices(index: MeshIndex, out: Reporter) {
  for (const service of index.services.values()) {
    const spec = service.resource.spec;
    if (spec.homeRegion !== undefined && !index.regions.has(spec.homeRegion)) {
      dangling(out, service, ['spec', 'homeRegion'], 'region', spec.homeRegion, index.regions.keys());
    }
    checkUniqueNames(out, service, ['spec', 'ports'], spec.ports, 'port');
    const ports = new Map<number, number>();
    spec.ports.forEach((p, i) => {
      const prior = ports.get(p.port);
      if (prior !== undefined) {
        out.add(service, ['spec', 'ports', i, 'port'], {
          rule: 'duplicate-port',
          message: `port ${p.port} is declared twice`,
          expected: 'each port number once',
          found: `${p.port} again (first at spec.ports[${prior}])`,
        });
      } else ports.set(p.port, i);
    });
    const routes = spec.routes ?? [];
    checkUniqueNames(out, service, ['spec', 'routes'], routes, 'route');
    routes.forEach((route, i) => {
      const earlier = routes.slice(0, i).findIndex((r) => shadows(r.match, route.match));
      if (earlier >= 0) {
        out.add(service, ['spec', 'routes', i, 'name'], {
          severity: 'warning',
          rule: 'unreachable-route',
          message: `route "${route.name}" can never match: route "${routes[earlier]?.name}" before it matches all its requests`,
          hint: 'routes are matched in order; move the more specific one first',
          related: [
            related(service.locate(['spec', 'routes', earlier, 'name']), 'the route that matches first'),
          ],
        });
      }
    });
  }
}

function checkExternalServices(index: MeshIndex, out: Reporter) {
  const seen = new Map<string, Loaded<'ExternalService'>>();
  for (const ext of index.externalServices.values()) {
    const spec = ext.resource.spec;
    (spec.allowedRegions ?? []).forEach((r, i) => {
      if (!index.regions.has(r))
        dangling(out, ext, ['spec', 'allowedRegions', i], 'region', r, index.regions.keys());
    });
    for (const port of spec.ports) {
      const key = `${spec.host.toLowerCase()}:${port}`;
      const prior = seen.get(key);
      if (prior) {
        out.add(ext, ['spec', 'host'], {
          rule: 'duplicate-destination',
          message: `${key} is already declared by ${idOf(prior)}`,
          hint: 'declare each host and port once',
          related: [related(prior.locate(['spec', 'host']), 'declared here')],
        });
      } else seen.set(key, ext);
    }
  }
}

function checkUnusedTargetFields(
  out: Reporter,
  policy: LoadedResource,
  ref: Record<string, unknown>,
  allowed: string[],
) {
  for (const field of ['name', 'service']) {
    if (ref[field] !== undefined && !allowed.includes(field)) {
      out.add(policy, ['spec', 'targetRef', field], {
        rule: 'unused-field',
        atKey: true,
        message: `targetRef.${field} has no meaning with kind ${String(ref.kind)}`,
        hint: `remove it, or change the kind`,
      });
    }
  }
}

function checkTargets(index: MeshIndex, out: Reporter) {
  for (const policy of index.trafficPolicies) {
    const ref = policy.resource.spec.targetRef;
    const path = ['spec', 'targetRef'];
    if (ref.kind === 'Mesh') checkUnusedTargetFields(out, policy, ref, []);
    if (ref.kind === 'Service') {
      checkUnusedTargetFields(out, policy, ref, ['name']);
      if (ref.name !== undefined && !index.services.has(ref.name))
        dangling(out, policy, [...path, 'name'], 'service', ref.name, index.services.keys());
    }
    if (ref.kind === 'Route' && ref.service !== undefined && ref.name !== undefined) {
      const service = index.services.get(ref.service);
      if (!service) {
        dangling(out, policy, [...path, 'service'], 'service', ref.service, index.services.keys());
      } else {
        const routes = (service.resource.spec.routes ?? []).map((r) => r.name);
        if (!routes.includes(ref.name))
          dangling(out, policy, [...path, 'name'], 'route', ref.name, routes, `of service ${ref.service}`);
      }
    }
  }
  for (const policy of index.partitionPolicies) {
    const ref = policy.resource.spec.targetRef;
    if (ref.kind === 'Mesh') checkUnusedTargetFields(out, policy, ref, []);
    if (ref.kind === 'Region' && ref.name !== undefined && !index.regions.has(ref.name))
      dangling(out, policy, ['spec', 'targetRef', 'name'], 'region', ref.name, index.regions.keys());
  }
  for (const policy of index.telemetryPolicies) {
    const ref = policy.resource.spec.targetRef;
    if (ref.kind === 'Mesh') checkUnusedTargetFields(out, policy, ref, []);
    if (ref.kind === 'Service' && ref.name !== undefined && !index.services.has(ref.name))
      dangling(out, policy, ['spec', 'targetRef', 'name'], 'service', ref.name, index.services.keys());
  }
}

/**
 * Settings the proxy keeps per destination (connection limits, budgets, balancing, health, cache
 * sizes), or per local service (idempotency): a route-level value for them would be silently
 * unused, so it is flagged.
 */
const PER_DESTINATION = [
  'circuitBreaker',
  'outlierDetection',
  'localityFailover',
  'healthChecks',
  'retries.budget',
  'retries.crossRegion',
  'fallback.staleIfError.maxEntries',
  'fallback.staleIfError.maxBytes',
  'fallback.staleIfError.maxEntryBytes',
  'idempotency',
  'degradation',
];

function checkRouteLevel(index: MeshIndex, out: Reporter) {
  for (const policy of index.trafficPolicies) {
    if (policy.resource.spec.targetRef.kind !== 'Route') continue;
    for (const section of PER_DESTINATION) {
      const fieldPath = ['spec', ...section.split('.')];
      if (getIn(policy.resource, fieldPath) === undefined) continue;
      out.add(policy, fieldPath, {
        severity: 'warning',
        rule: 'not-per-route',
        atKey: true,
        message: `${section} has no effect in a route-level policy: the proxy keeps it per destination service`,
        hint: 'move it to a policy with targetRef.kind Service (or Mesh)',
      });
    }
  }
}

/** Two policies at the same level for the same target may not set the same field. */
function checkConflicts(index: MeshIndex, out: Reporter) {
  const groups: { schema: JsonSchema; policies: LoadedResource[] }[] = [];
  const group = (schema: JsonSchema, policies: LoadedResource[]) => {
    const byTarget = new Map<string, LoadedResource[]>();
    for (const p of policies) {
      const key = JSON.stringify((p.resource.spec as { targetRef: unknown }).targetRef, [
        'kind',
        'service',
        'name',
      ]);
      byTarget.set(key, [...(byTarget.get(key) ?? []), p]);
    }
    for (const list of byTarget.values()) if (list.length > 1) groups.push({ schema, policies: list });
  };
  group(TrafficSettings, index.trafficPolicies);
  group(PartitionSettings, index.partitionPolicies);
  group(TelemetrySettings, index.telemetryPolicies);

  for (const { schema, policies } of groups) {
    const leaves = leavesOf(schema);
    const setBy = new Map<string, LoadedResource>();
    for (const policy of policies) {
      for (const leaf of leaves) {
        const fieldPath = ['spec', ...leaf.path];
        if (getIn(policy.resource, fieldPath) === undefined) continue;
        const key = leaf.path.join('.');
        const prior = setBy.get(key);
        if (!prior) {
          setBy.set(key, policy);
          continue;
        }
        out.add(policy, fieldPath, {
          rule: 'conflict',
          atKey: true,
          message: `${key} is also set by ${idOf(prior)} for the same target`,
          expected: 'each field set by one policy per target',
          found: `${JSON.stringify(getIn(policy.resource, fieldPath))} here and ${JSON.stringify(getIn(prior.resource, fieldPath))} there`,
          hint: 'policies at the same level are not ordered; set the field in one of them only',
          related: [related(prior.locate(fieldPath, true), `set here by ${idOf(prior)}`)],
        });
      }
    }
  }
}

interface Rule<T> {
  /** Leaf paths involved; the most specifically set one is where the problem is reported. */
  paths: string[];
  /**
   * `error` when the combination cannot work; `warning` when one value silently caps the other
   * (the proxy runs, but not as the author probably meant).
   */
  severity: Diagnostic['severity'];
  holds(v: T): boolean;
  message(v: T): string;
  hint: string;
}

const ms = parseDurationMs;
const bytes = parseSizeBytes;

const TRAFFIC_RULES: Rule<EffectiveTraffic>[] = [
  {
    paths: ['timeouts.perTry', 'timeouts.overall'],
    severity: 'warning',
    holds: (v) => ms(v.timeouts.perTry) <= ms(v.timeouts.overall),
    message: (v) =>
      `timeouts.perTry (${v.timeouts.perTry}) is longer than timeouts.overall (${v.timeouts.overall})`,
    hint: 'an attempt cannot outlive its request: lower perTry or raise overall',
  },
  {
    paths: ['timeouts.connect', 'timeouts.perTry'],
    severity: 'warning',
    holds: (v) => ms(v.timeouts.connect) <= ms(v.timeouts.perTry),
    message: (v) =>
      `timeouts.connect (${v.timeouts.connect}) is longer than timeouts.perTry (${v.timeouts.perTry})`,
    hint: 'connecting is part of an attempt: lower connect or raise perTry',
  },
  {
    paths: ['retries.backoff.base', 'retries.backoff.max'],
    severity: 'warning',
    holds: (v) => ms(v.retries.backoff.base) <= ms(v.retries.backoff.max),
    message: (v) =>
      `retries.backoff.base (${v.retries.backoff.base}) is longer than retries.backoff.max (${v.retries.backoff.max})`,
    hint: 'the first backoff cannot exceed the cap',
  },
  {
    paths: ['healthChecks.timeout', 'healthChecks.interval'],
    severity: 'error',
    holds: (v) => ms(v.healthChecks.timeout) < ms(v.healthChecks.interval),
    message: (v) =>
      `healthChecks.timeout (${v.healthChecks.timeout}) is not shorter than healthChecks.interval (${v.healthChecks.interval})`,
    hint: 'a check must finish before the next one starts',
  },
  {
    paths: ['localityFailover.regionHealth.ejectBelow', 'localityFailover.regionHealth.readmitAbove'],
    severity: 'error',
    holds: (v) => v.localityFailover.regionHealth.readmitAbove > v.localityFailover.regionHealth.ejectBelow,
    message: (v) =>
      `localityFailover.regionHealth.readmitAbove (${v.localityFailover.regionHealth.readmitAbove}) is not above ejectBelow (${v.localityFailover.regionHealth.ejectBelow})`,
    hint: 'without a gap between the two thresholds a region on the edge flaps in and out',
  },
  {
    paths: ['outlierDetection.baseEjectionTime', 'outlierDetection.maxEjectionTime'],
    severity: 'warning',
    holds: (v) => ms(v.outlierDetection.baseEjectionTime) <= ms(v.outlierDetection.maxEjectionTime),
    message: (v) =>
      `outlierDetection.baseEjectionTime (${v.outlierDetection.baseEjectionTime}) is longer than maxEjectionTime (${v.outlierDetection.maxEjectionTime})`,
    hint: 'raise maxEjectionTime or lower baseEjectionTime',
  },
  {
    paths: ['fallback.staleIfError.maxEntryBytes', 'fallback.staleIfError.maxBytes'],
    severity: 'warning',
    holds: (v) => bytes(v.fallback.staleIfError.maxEntryBytes) <= bytes(v.fallback.staleIfError.maxBytes),
    message: (v) =>
      `fallback.staleIfError.maxEntryBytes (${v.fallback.staleIfError.maxEntryBytes}) is larger than maxBytes (${v.fallback.staleIfError.maxBytes})`,
    hint: 'one entry cannot be larger than the whole cache',
  },
  {
    paths: ['hedging.enabled', 'hedging.minDelay', 'timeouts.perTry'],
    severity: 'warning',
    holds: (v) => !v.hedging.enabled || ms(v.hedging.minDelay) < ms(v.timeouts.perTry),
    message: (v) =>
      `hedging.minDelay (${v.hedging.minDelay}) is not shorter than timeouts.perTry (${v.timeouts.perTry})`,
    hint: 'a hedge that starts after the attempt timed out is a retry: lower minDelay',
  },
];

const TELEMETRY_RULES: Rule<EffectiveTelemetry>[] = [
  {
    paths: ['buffer.segmentBytes', 'buffer.maxBytes'],
    severity: 'error',
    holds: (v) => bytes(v.buffer.segmentBytes) * 2 <= bytes(v.buffer.maxBytes),
    message: (v) =>
      `telemetry buffer.maxBytes (${v.buffer.maxBytes}) holds fewer than two segments of ${v.buffer.segmentBytes}`,
    hint: 'the log needs room for the segment being written and one being shipped: raise maxBytes or lower segmentBytes',
  },
];

function layerOf(layers: readonly Layer[], origin: Origin | undefined): Layer | undefined {
  if (!origin || origin.level === 'builtin') return undefined;
  return layers.find((l) => l.source !== undefined && idOf(l.source) === origin.resource);
}

const LEVEL_RANK = { builtin: 0, 'mesh-defaults': 1, mesh: 2, region: 3, service: 3, route: 4 } as const;

function mostSpecific(
  origins: Map<string, Origin>,
  paths: string[],
): { origin: Origin; path: string } | undefined {
  let best: { origin: Origin; path: string } | undefined;
  for (const path of paths) {
    const origin = origins.get(path);
    if (!origin) continue;
    if (!best || LEVEL_RANK[origin.level] > LEVEL_RANK[best.origin.level]) best = { origin, path };
  }
  return best;
}

function applyRules<T>(
  out: Reporter,
  effective: Effective<T>,
  layers: Layer[],
  rules: Rule<T>[],
  context: string,
) {
  for (const rule of rules) {
    if (rule.holds(effective.value)) continue;
    const at = mostSpecific(effective.origins, rule.paths);
    // Built-in defaults are tested to be consistent, so some policy set one of the fields.
    const layer = at && layerOf(layers, at.origin);
    if (!at || !layer?.source) continue;
    const others = rule.paths
      .filter((p) => p !== at.path)
      .map((p) => ({ p, o: effective.origins.get(p) }))
      .filter((x) => x.o && x.o.level !== 'builtin');
    out.add(layer.source, [...layer.basePath, ...at.path.split('.')], {
      severity: rule.severity,
      rule: 'inconsistent-settings',
      dedupeKey: rule.paths.join(),
      message: `${rule.message(effective.value)}${context}`,
      hint: rule.hint,
      ...(others.length > 0 && {
        related: others.map(({ p, o }) => related(o as Position, `${p} set here`)),
      }),
    });
  }
}

function checkEffective(index: MeshIndex, out: Reporter) {
  const targets: { service?: string; route?: string }[] = [{}];
  for (const [name, svc] of index.services) {
    targets.push({ service: name });
    for (const route of svc.resource.spec.routes ?? []) targets.push({ service: name, route: route.name });
  }
  // Most services and routes merge the same layers (built-in, mesh defaults, mesh-wide policies):
  // merge and check each distinct list of layers once. A problem found for one of them would be
  // reported once anyway (it is deduplicated by location), so nothing is lost.
  const merged = new Map<string, Effective<EffectiveTraffic>>();
  for (const { service, route } of targets) {
    const layers = index.trafficLayers(service, route);
    const key = layersKey(layers);
    let effective = merged.get(key);
    const context =
      service === undefined
        ? ''
        : ` (effective for ${service}${route === undefined ? '' : ` route ${route}`})`;
    if (!effective) {
      effective = mergeLayers<EffectiveTraffic>(TrafficSettings, layers);
      merged.set(key, effective);
      applyRules(out, effective, layers, TRAFFIC_RULES, context);
    }
    if (service !== undefined && effective.value.consistency.mode === 'strong') {
      const svc = index.services.get(service);
      if (svc && svc.resource.spec.homeRegion === undefined) {
        const layer = layerOf(layers, effective.origins.get('consistency.mode'));
        const source = layer?.source ?? svc;
        const path = layer ? [...layer.basePath, 'consistency', 'mode'] : ['spec'];
        out.add(source, path, {
          rule: 'missing-home-region',
          dedupeKey: service,
          message: `strong consistency for ${service}${route === undefined ? '' : ` route ${route}`} needs a home region, and Service/${service} has none`,
          hint: `set spec.homeRegion on Service/${service}`,
          related: [related(svc.locate(['spec'], true), `Service/${service}`)],
        });
      }
    }
  }
  const checkedTelemetry = new Set<string>();
  for (const service of [undefined, ...index.services.keys()]) {
    const layers = index.telemetryLayers(service);
    const key = layersKey(layers);
    if (checkedTelemetry.has(key)) continue;
    checkedTelemetry.add(key);
    applyRules(
      out,
      mergeLayers<EffectiveTelemetry>(TelemetrySettings as JsonSchema, layers),
      layers,
      TELEMETRY_RULES,
      '',
    );
  }
}

/** Identity of a list of layers: which resources contribute, at which level. */
function layersKey(layers: readonly Layer[]): string {
  return layers
    .map((l) =>
      l.source ? `${l.level}:${l.source.resource.kind}/${l.source.resource.metadata.name}` : l.level,
    )
    .join('|');
}
