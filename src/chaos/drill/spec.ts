import { readFile } from 'node:fs/promises';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { IsthmusError } from '../../core/errors.js';
import { closestMatch, listOr } from '../../core/text.js';
import { isDuration, parseDurationMs } from '../../core/units.js';
import { compareDiagnostics, describeValue, type Diagnostic } from '../../model/diagnostics.js';
import { parseSingleDocument, type LoadedResource } from '../../model/load.js';
import { Bool, Duration, Int, Name, Num, OneOf, Ratio, Text } from '../../model/primitives.js';
import { API_VERSION, HTTP_METHODS } from '../../model/resources.js';
import { formatPath, getIn } from '../../model/schema-walk.js';
import { compileValidator } from '../../model/validator.js';

/**
 * A drill (docs/drills.md): a YAML file that says which faults to inject into a lab, under which
 * workload, and what must hold while they last. This module defines its schema, loads it with
 * every problem located as FILE:LINE:COL, and hands the runner a `DrillSpec` with defaults applied
 * and durations in milliseconds.
 */

/** Regions of the lab when a `lab` topology names none. */
export const DEFAULT_LAB_REGIONS = ['us-east', 'eu-west', 'ap-south'] as const;

/** `to: global` in a partition means the global control plane, not a region. */
export const GLOBAL_TARGET = 'global';

export const FAULT_TYPES = [
  'partition',
  'latency',
  'loss',
  'bandwidth',
  'region-outage',
  'control-plane-loss',
  'proxy-restart',
  'flap',
] as const;
export type FaultType = (typeof FAULT_TYPES)[number];

export const LINK_MODES = ['blackhole', 'reject', 'reset'] as const;
export type LinkMode = (typeof LINK_MODES)[number];
export const LINK_PURPOSES = ['data', 'control', 'telemetry'] as const;
export type LinkPurpose = (typeof LINK_PURPOSES)[number];
export const LATENCY_DISTRIBUTIONS = ['uniform', 'normal', 'pareto'] as const;
export type LatencyDistribution = (typeof LATENCY_DISTRIBUTIONS)[number];

/** How each metric is measured: a ratio 0–1, a duration (limits written with units) or a count. */
export const METRIC_UNITS = {
  success_rate: 'ratio',
  failure_rate: 'ratio',
  latency_p50: 'ms',
  latency_p99: 'ms',
  latency_max: 'ms',
  failed_requests: 'count',
  failed_idempotent_requests: 'count',
  unknown_outcome_requests: 'count',
  time_to_detect: 'ms',
  time_to_failover: 'ms',
  time_to_failback: 'ms',
  route_flaps: 'count',
  duplicate_side_effects: 'count',
  config_staleness_max: 'ms',
  signals_lost: 'count',
  signals_duplicated: 'count',
  signals_max_delay: 'ms',
} as const satisfies Record<string, 'ratio' | 'ms' | 'count'>;
export type Metric = keyof typeof METRIC_UNITS;
export const METRICS = Object.keys(METRIC_UNITS) as Metric[];

/** Metrics computed from the workload's requests, so they exist per phase and per sliding window. */
export const PHASE_METRICS = [
  'success_rate',
  'failure_rate',
  'latency_p50',
  'latency_p99',
  'latency_max',
  'failed_requests',
  'failed_idempotent_requests',
  'unknown_outcome_requests',
] as const satisfies readonly Metric[];
export type PhaseMetric = (typeof PHASE_METRICS)[number];

export function isPhaseMetric(metric: string): metric is PhaseMetric {
  return (PHASE_METRICS as readonly string[]).includes(metric);
}

export const PHASES = ['baseline', 'fault', 'recovery', 'all'] as const;
export type PhaseName = Exclude<(typeof PHASES)[number], 'all'>;

// ---------------------------------------------------------------------------------------------
// Schema

const Region = (description: string) => Name(description);

const MODE = OneOf(LINK_MODES, {
  default: 'blackhole',
  description:
    '`blackhole`: packets vanish (connections hang until timeouts); `reject`: connections are refused at once; `reset`: open connections are reset.',
});

const LINK = {
  from: Region('Region the traffic leaves.'),
  to: Region('Region the traffic enters.'),
};

const PartitionFault = Type.Object(
  {
    type: Type.Literal('partition'),
    region: Type.Optional(
      Region('Cut this region off from every other region (and the global control plane).'),
    ),
    from: Type.Optional(Region('Cut traffic leaving this region (with `to`: only towards `to`).')),
    to: Type.Optional(
      Name(
        'Cut traffic entering this region, or `global` for the global control plane (with `from`: only from `from`).',
      ),
    ),
    mode: Type.Optional(MODE),
    direction: Type.Optional(
      OneOf(['both', 'one-way'] as const, {
        default: 'both',
        description: '`both` cuts both directions; `one-way` only `from` → `to` (needs both).',
      }),
    ),
    scope: Type.Optional(
      OneOf(['new', 'all'] as const, {
        default: 'all',
        description: '`all` also breaks connections already open; `new` only refuses new ones.',
      }),
    ),
    purpose: Type.Optional(
      OneOf(LINK_PURPOSES, {
        description:
          'Only links of this purpose: `data` (gateway traffic), `control` (control-plane streams), `telemetry` (signal shipping). Default: all.',
      }),
    ),
  },
  { additionalProperties: false, description: 'Cut links: a whole region, or from one region to another.' },
);

const LatencyFault = Type.Object(
  {
    type: Type.Literal('latency'),
    ...LINK,
    latency: Duration({ min: '0ms', max: '1m', description: 'Delay added to every packet on the link.' }),
    jitter: Type.Optional(
      Duration({ default: '0ms', min: '0ms', max: '1m', description: 'Spread of the added delay.' }),
    ),
    distribution: Type.Optional(
      OneOf(LATENCY_DISTRIBUTIONS, {
        default: 'uniform',
        description: 'Shape of the jitter: `pareto` gives a long tail.',
      }),
    ),
  },
  { additionalProperties: false, description: 'Add delay to a link.' },
);

const LossFault = Type.Object(
  {
    type: Type.Literal('loss'),
    ...LINK,
    probability: Ratio({ description: 'Share of segments lost, 0 to 1.' }),
    stall: Type.Optional(
      Duration({
        default: '200ms',
        min: '1ms',
        max: '1m',
        description: 'How long a lost segment stalls the stream (TCP retransmission) before it goes through.',
      }),
    ),
  },
  { additionalProperties: false, description: 'Lose a share of segments on a link.' },
);

const BandwidthFault = Type.Object(
  {
    type: Type.Literal('bandwidth'),
    ...LINK,
    rate: Int({ minimum: 1, maximum: 10_000_000, description: 'Throughput cap in KB/s (1000 bytes).' }),
  },
  { additionalProperties: false, description: 'Cap the throughput of a link.' },
);

const RegionOutageFault = Type.Object(
  {
    type: Type.Literal('region-outage'),
    region: Region(
      'Region whose every process (proxies, gateway, apps, zone control plane, collector) is killed.',
    ),
  },
  { additionalProperties: false, description: 'Kill a whole region.' },
);

const ControlPlaneLossFault = Type.Object(
  {
    type: Type.Literal('control-plane-loss'),
    scope: OneOf(['global', 'zone'] as const, {
      description:
        '`global`: the global control plane is stopped; `zone`: the zone control plane of `region`.',
    }),
    region: Type.Optional(Region('Region of the zone control plane (with `scope: zone` only).')),
  },
  { additionalProperties: false, description: 'Stop a control plane; the data plane keeps its last config.' },
);

const ProxyRestartFault = Type.Object(
  {
    type: Type.Literal('proxy-restart'),
    region: Region('Region of the proxies.'),
    service: Name('Service whose sidecar proxies are restarted.'),
  },
  { additionalProperties: false, description: 'Restart the proxies of a service in a region.' },
);

const FlapFault = Type.Object(
  {
    type: Type.Literal('flap'),
    ...LINK,
    mode: Type.Optional(MODE),
    down: Duration({ min: '1ms', max: '1h', description: 'How long the link stays down each cycle.' }),
    up: Duration({ min: '1ms', max: '1h', description: 'How long the link stays up each cycle.' }),
  },
  {
    additionalProperties: false,
    description: 'A link that goes down and up repeatedly for the step’s duration (both directions).',
  },
);

const FAULT_SCHEMAS: Record<FaultType, TSchema> = {
  partition: PartitionFault,
  latency: LatencyFault,
  loss: LossFault,
  bandwidth: BandwidthFault,
  'region-outage': RegionOutageFault,
  'control-plane-loss': ControlPlaneLossFault,
  'proxy-restart': ProxyRestartFault,
  flap: FlapFault,
};

type RawFault =
  | Static<typeof PartitionFault>
  | Static<typeof LatencyFault>
  | Static<typeof LossFault>
  | Static<typeof BandwidthFault>
  | Static<typeof RegionOutageFault>
  | Static<typeof ControlPlaneLossFault>
  | Static<typeof ProxyRestartFault>
  | Static<typeof FlapFault>;

/**
 * Discriminated by `type`. Written as if/then per type rather than anyOf so that a bad fault is
 * reported against its own type's fields only (the validator drops `if` failures), instead of
 * against all eight alternatives.
 */
const Fault = Type.Unsafe<RawFault>({
  type: 'object',
  description: 'The fault a step injects, by `type`.',
  required: ['type'],
  properties: { type: { type: 'string', enum: [...FAULT_TYPES], description: 'Kind of fault.' } },
  allOf: FAULT_TYPES.map((t) => ({
    if: { type: 'object', properties: { type: { const: t } }, required: ['type'] },
    then: FAULT_SCHEMAS[t],
  })),
});

const Step = Type.Object(
  {
    name: Name('Name of the step, unique in the drill; the timeline and the report use it.'),
    fault: Fault,
    duration: Duration({ min: '1ms', max: '24h', description: 'How long the fault stays in place.' }),
    after: Type.Optional(
      Duration({ default: '0s', min: '0ms', max: '24h', description: 'Delay before this step starts.' }),
    ),
  },
  { additionalProperties: false, description: 'A fault held for a duration.' },
);

const Parallel = Type.Object(
  {
    parallel: Type.Array(Step, { description: 'Steps started together (at least 2).' }),
  },
  { additionalProperties: false, description: 'Steps run at once; the entry ends when the last ends.' },
);

const MethodEntry = Type.Unsafe<Static<typeof Step> | Static<typeof Parallel>>({
  type: 'object',
  description: 'A step, or `parallel:` with steps run at once.',
  if: { type: 'object', required: ['parallel'] },
  then: Parallel,
  else: Step,
});

/** A limit: a number for ratios and counts, a duration with a unit for times; checked per metric. */
const Limit = (description: string) => Type.Unknown({ description });

const MetricName = OneOf(METRICS, { description: 'What is measured (docs/drills.md#metrics).' });

const Check = Type.Object(
  {
    metric: MetricName,
    min: Type.Optional(Limit('Lowest accepted value.')),
    max: Type.Optional(Limit('Highest accepted value.')),
  },
  { additionalProperties: false, description: 'A bound on a metric over the baseline.' },
);

const Probe = Type.Object(
  {
    name: Name('Name of the probe, unique in the drill.'),
    metric: MetricName,
    window: Duration({ min: '1s', max: '1h', description: 'Sliding window the metric is computed over.' }),
    interval: Type.Optional(
      Duration({ default: '1s', min: '100ms', max: '1h', description: 'How often the probe is evaluated.' }),
    ),
    min: Type.Optional(Limit('Lowest accepted value.')),
    max: Type.Optional(Limit('Highest accepted value.')),
    abort: Type.Optional(
      Bool({ default: false, description: 'Stop the method and run the rollbacks when the probe fails.' }),
    ),
  },
  { additionalProperties: false, description: 'A check evaluated continuously during the method.' },
);

const Expectation = Type.Object(
  {
    metric: MetricName,
    phase: Type.Optional(
      OneOf(PHASES, {
        default: 'all',
        description: 'Phase the metric is taken over (request metrics only).',
      }),
    ),
    min: Type.Optional(Limit('Lowest accepted value.')),
    max: Type.Optional(Limit('Highest accepted value.')),
  },
  { additionalProperties: false, description: 'A bound the drill must meet to pass.' },
);

const MixEntry = Type.Object(
  {
    name: Name('Name of the request kind; per-route figures in the report use it.'),
    weight: Num({ minimum: 0, maximum: 1_000_000, description: 'Relative share of the rate (> 0).' }),
    method: OneOf(HTTP_METHODS, { description: 'HTTP method.' }),
    path: Text({
      pattern: '^/',
      maxLength: 2048,
      description: 'Request path; `{id}` is replaced by a seeded random id per request.',
    }),
    idempotent: Type.Optional(
      Bool({
        description:
          'Whether the request may be retried safely; counted in failed_idempotent_requests. Default: true for GET, HEAD, OPTIONS, PUT, DELETE.',
      }),
    ),
    idempotencyKey: Type.Optional(
      Bool({
        default: false,
        description:
          'Send an Idempotency-Key header (one per logical request) so duplicates can be detected.',
      }),
    ),
  },
  { additionalProperties: false, description: 'A kind of request in the workload.' },
);

const Rollback = Type.Object(
  {
    heal: Type.Optional(Name('`all` removes every fault; a step name removes that step’s fault.')),
    restore: Type.Optional(Name('`all` restarts every killed process; a region name restarts that region.')),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1,
    description: 'One rollback action: `heal` or `restore`.',
  },
);

const RegionList = (description: string) =>
  Type.Array(Region('A region.'), { minItems: 1, uniqueItems: true, description });

export const DrillSchema = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION),
    kind: Type.Literal('Drill'),
    metadata: Type.Object(
      {
        name: Name('Name of the drill.'),
        description: Type.Optional(
          Text({ maxLength: 2048, description: 'What the drill shows, for people.' }),
        ),
      },
      { additionalProperties: false, description: 'Identity of the drill.' },
    ),
    spec: Type.Object(
      {
        seed: Type.Optional(
          Int({
            default: 1,
            minimum: 0,
            maximum: 2 ** 31 - 1,
            description: 'Seed of every random choice (request mix, ids, jitter, loss), so a run replays.',
          }),
        ),
        topology: Type.Object(
          {
            lab: Type.Optional(
              Type.Object(
                {
                  regions: Type.Optional(
                    RegionList('Regions the lab starts. Default: us-east, eu-west, ap-south.'),
                  ),
                  placement: Type.Optional(
                    Type.Record(
                      Type.String({ pattern: '^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$' }),
                      Type.Array(
                        Text({
                          pattern: '^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:@[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)?$',
                          maxLength: 127,
                          description: 'SERVICE or SERVICE@ZONE (default: the region’s first zone).',
                        }),
                        { maxItems: 40 },
                      ),
                      {
                        description:
                          'Which demo services run where: REGION → [SERVICE[@ZONE], …]. Default: us-east and eu-west run frontend, catalog, orders and recommendations; ap-south only a frontend.',
                      },
                    ),
                  ),
                },
                { additionalProperties: false, description: 'The drill starts its own lab.' },
              ),
            ),
            endpoints: Type.Optional(
              Type.Object(
                {
                  lab: Text({
                    pattern: '^https?://[!-~]+$',
                    maxLength: 2048,
                    description: 'Control API of a running lab (`isthmus lab` prints it).',
                  }),
                },
                { additionalProperties: false, description: 'Drill a lab that is already running.' },
              ),
            ),
          },
          {
            additionalProperties: false,
            minProperties: 1,
            maxProperties: 1,
            description: 'Where the drill runs: exactly one of `lab` or `endpoints`.',
          },
        ),
        workload: Type.Object(
          {
            rate: Num({ minimum: 0.1, maximum: 100_000, description: 'Requests per second, in total.' }),
            from: Type.Optional(RegionList('Regions whose frontends send the requests. Default: all.')),
            timeout: Type.Optional(
              Duration({ default: '3s', min: '1ms', max: '10m', description: 'Client timeout per request.' }),
            ),
            mix: Type.Array(MixEntry, { minItems: 1, description: 'Kinds of request, by weight.' }),
          },
          { additionalProperties: false, description: 'Traffic sent during the whole drill.' },
        ),
        baseline: Type.Optional(
          Duration({
            default: '5s',
            min: '1s',
            max: '1h',
            description: 'Steady state before the first fault.',
          }),
        ),
        steadyState: Type.Optional(
          Type.Array(Check, { description: 'Checked over the baseline; a failure stops the drill.' }),
        ),
        method: Type.Array(MethodEntry, { minItems: 1, description: 'Steps, in order.' }),
        probes: Type.Optional(Type.Array(Probe, { description: 'Continuous checks during the method.' })),
        recovery: Type.Optional(
          Duration({
            default: '10s',
            min: '0s',
            max: '1h',
            description: 'Workload kept running after the last step ends.',
          }),
        ),
        rollbacks: Type.Optional(
          Type.Array(Rollback, {
            description:
              'Run after recovery, or on abort or error, in order. Default: heal all, restore all.',
          }),
        ),
        expectations: Type.Optional(Type.Array(Expectation, { description: 'What must hold to pass.' })),
      },
      { additionalProperties: false, description: 'The drill.' },
    ),
  },
  { additionalProperties: false, description: 'A failure drill (docs/drills.md).' },
);

/** The drill file as written (durations as text, defaults not applied). */
export type DrillDocument = Static<typeof DrillSchema>;

// ---------------------------------------------------------------------------------------------
// The loaded drill

export type FaultSpec =
  | {
      type: 'partition';
      /** A whole region cut off; exclusive with `from`/`to`. */
      region?: string;
      from?: string;
      /** A region, or `global` for the global control plane. */
      to?: string;
      /** Default `blackhole`. */
      mode: LinkMode;
      /** Default `both`. */
      direction: 'both' | 'one-way';
      /** Default `all`. */
      scope: 'new' | 'all';
      /** Absent: links of every purpose. */
      purpose?: LinkPurpose;
    }
  | {
      type: 'latency';
      from: string;
      to: string;
      latencyMs: number;
      /** Default 0. */
      jitterMs: number;
      /** Default `uniform`. */
      distribution: LatencyDistribution;
    }
  | { type: 'loss'; from: string; to: string; probability: number; /** Default 200. */ stallMs: number }
  | { type: 'bandwidth'; from: string; to: string; rateKBps: number }
  | { type: 'region-outage'; region: string }
  | { type: 'control-plane-loss'; scope: 'global' | 'zone'; /** Set with scope `zone`. */ region?: string }
  | { type: 'proxy-restart'; region: string; service: string }
  | {
      type: 'flap';
      from: string;
      to: string;
      /** Default `blackhole`. */ mode: LinkMode;
      downMs: number;
      upMs: number;
    };

export interface StepSpec {
  name: string;
  fault: FaultSpec;
  durationMs: number;
  /** Delay before the step starts; default 0. */
  afterMs: number;
}

export type MethodEntrySpec = { kind: 'step'; step: StepSpec } | { kind: 'parallel'; steps: StepSpec[] };

export interface MixEntrySpec {
  name: string;
  weight: number;
  method: (typeof HTTP_METHODS)[number];
  path: string;
  /** Default: true for GET, HEAD, OPTIONS, PUT, DELETE; false for POST, PATCH. */
  idempotent: boolean;
  /** Default false. */
  idempotencyKey: boolean;
}

/** A bound on a metric; durations already in ms. At least one of min and max is set. */
export interface LimitSpec {
  min?: number;
  max?: number;
}

export interface SteadyStateSpec extends LimitSpec {
  metric: PhaseMetric;
}

export interface ProbeSpec extends LimitSpec {
  name: string;
  metric: PhaseMetric;
  windowMs: number;
  /** Default 1000. */
  intervalMs: number;
  /** Default false. */
  abort: boolean;
}

export interface ExpectationSpec extends LimitSpec {
  metric: Metric;
  /** Set (default `all`) for request metrics; absent for drill-wide ones. */
  phase?: PhaseName | 'all';
}

export type RollbackSpec = {
  action: 'heal' | 'restore';
  /** `all`, a step name (heal) or a region (restore). */ target: string;
};

export type TopologySpec =
  | { source: 'lab'; regions: string[]; placement?: Record<string, string[]> }
  | { source: 'endpoints'; lab: string };

export interface DrillSpec {
  name: string;
  description?: string;
  /** The file it was loaded from. */
  file: string;
  /** Default 1. */
  seed: number;
  topology: TopologySpec;
  workload: {
    ratePerSecond: number;
    /** Regions sending. Always set for a `lab` topology; absent (= every region) with `endpoints`. */
    from?: string[];
    /** Default 3000. */
    timeoutMs: number;
    mix: MixEntrySpec[];
  };
  /** Default 5000. */
  baselineMs: number;
  steadyState: SteadyStateSpec[];
  method: MethodEntrySpec[];
  probes: ProbeSpec[];
  /** Default 10000. */
  recoveryMs: number;
  /** Default: heal all, then restore all. */
  rollbacks: RollbackSpec[];
  expectations: ExpectationSpec[];
}

/** Every step of the method, parallel branches included, in order. */
export function drillSteps(drill: Pick<DrillSpec, 'method'>): StepSpec[] {
  return drill.method.flatMap((e) => (e.kind === 'step' ? [e.step] : e.steps));
}

/** How long the method lasts when nothing aborts it: each entry ends when its last step ends. */
export function methodDurationMs(drill: Pick<DrillSpec, 'method'>): number {
  let total = 0;
  for (const e of drill.method) {
    const steps = e.kind === 'step' ? [e.step] : e.steps;
    total += Math.max(...steps.map((s) => s.afterMs + s.durationMs));
  }
  return total;
}

/** Planned length of the whole drill (baseline + method + recovery), rollbacks excluded. */
export function plannedDurationMs(drill: Pick<DrillSpec, 'method' | 'baselineMs' | 'recoveryMs'>): number {
  return drill.baselineMs + methodDurationMs(drill) + drill.recoveryMs;
}

// ---------------------------------------------------------------------------------------------
// Loading

let validate: ReturnType<typeof compileValidator> | undefined;

const NON_IDEMPOTENT = new Set(['POST', 'PATCH']);

type Path = (string | number)[];

const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asString = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Parses and validates a drill file's text; every problem is a diagnostic located in `file`. */
export function loadDrill(text: string, file: string): { drill?: DrillSpec; diagnostics: Diagnostic[] } {
  validate ??= compileValidator(DrillSchema);
  const single = parseSingleDocument(text, file, 'Drill');
  if (single.diagnostics) return { diagnostics: single.diagnostics };
  const { doc } = single;
  const diagnostics: Diagnostic[] = [];
  const value = doc.value;
  const name = isRecord(value) && isRecord(value.metadata) ? asString(value.metadata.name) : undefined;
  const resource = name !== undefined ? `Drill/${name}` : 'Drill';
  const report = (
    rule: Diagnostic['rule'],
    at: Path,
    message: string,
    extra: Partial<Pick<Diagnostic, 'expected' | 'found' | 'hint' | 'related'>> & { atKey?: boolean } = {},
  ) => {
    const { atKey = false, ...details } = extra;
    diagnostics.push({
      severity: 'error',
      rule,
      ...doc.locate(at, atKey),
      resource,
      path: formatPath(at),
      message,
      ...details,
    });
  };

  for (const p of validate(value)) {
    let message = p.message;
    // An unknown fault type: say which exist right in the message, it is the one line people read.
    const last = p.path[p.path.length - 1];
    const found = getIn(value, p.path);
    if (p.rule === 'invalid-value' && last === 'type' && p.path.includes('fault'))
      message = `unknown fault type ${JSON.stringify(found)}; known types: ${FAULT_TYPES.join(', ')}`;
    if (p.rule === 'invalid-value' && last === 'metric' && typeof found === 'string')
      message = `unknown metric ${JSON.stringify(found)}`;
    report(p.rule, p.path, message, {
      atKey: p.atKey,
      ...(p.expected !== undefined && { expected: p.expected }),
      ...(p.found !== undefined && { found: p.found }),
      ...(p.hint !== undefined && { hint: p.hint }),
    });
  }
  const schemaProblems = diagnostics.length;
  // Cross-field checks run even when the schema found problems, so one run reports everything;
  // each guards the shapes it reads.
  crossCheck(isRecord(value) && isRecord(value.spec) ? value.spec : {}, report, doc.locate);
  diagnostics.sort(compareDiagnostics);
  if (diagnostics.length > 0 || schemaProblems > 0) return { diagnostics };
  return { diagnostics, drill: normalize(value as DrillDocument, file) };
}

type Report = (
  rule: Diagnostic['rule'],
  at: Path,
  message: string,
  extra?: Partial<Pick<Diagnostic, 'expected' | 'found' | 'hint' | 'related'>> & { atKey?: boolean },
) => void;

function durationOf(v: unknown): number | undefined {
  return typeof v === 'string' && isDuration(v) ? parseDurationMs(v) : undefined;
}

function crossCheck(spec: Record<string, unknown>, report: Report, locate: LoadedResource['locate']): void {
  const base: Path = ['spec'];
  // Regions the drill may name: known only for a lab the drill starts itself.
  const topology = isRecord(spec.topology) ? spec.topology : {};
  const lab = isRecord(topology.lab) ? topology.lab : undefined;
  const labRegions = lab
    ? Array.isArray(lab.regions)
      ? lab.regions.filter((r): r is string => typeof r === 'string')
      : [...DEFAULT_LAB_REGIONS]
    : undefined;
  const checkRegion = (at: Path, v: unknown, allowGlobal = false) => {
    if (typeof v !== 'string') return;
    if (v === GLOBAL_TARGET) {
      if (!allowGlobal)
        report('invalid-value', at, '`global` is not a region here', {
          found: '"global"',
          hint: 'only a partition’s `to` may be `global` (the global control plane)',
        });
      return;
    }
    if (labRegions && !labRegions.includes(v)) {
      const suggestion = closestMatch(v, labRegions);
      report('dangling-reference', at, `region "${v}" is not in the topology`, {
        expected: `one of ${listOr(labRegions)}`,
        found: `"${v}"`,
        ...(suggestion !== undefined && { hint: `did you mean "${suggestion}"?` }),
      });
    }
  };

  const workload = isRecord(spec.workload) ? spec.workload : {};
  asArray(workload.from).forEach((r, i) => checkRegion([...base, 'workload', 'from', i], r));
  const mixNames = new Map<string, Path>();
  asArray(workload.mix).forEach((m, i) => {
    if (!isRecord(m)) return;
    const at: Path = [...base, 'workload', 'mix', i];
    if (m.weight === 0)
      report('out-of-range', [...at, 'weight'], 'a weight must be greater than 0', {
        found: 'the number 0',
        hint: 'remove the entry to send none of these requests',
      });
    unique(mixNames, m.name, [...at, 'name'], 'request kind', report, locate);
  });

  // Steps.
  const stepNames = new Map<string, Path>();
  const checkStep = (step: unknown, at: Path) => {
    if (!isRecord(step)) return;
    unique(stepNames, step.name, [...at, 'name'], 'step', report, locate);
    const durationMs = durationOf(step.duration);
    if (isRecord(step.fault)) checkFault(step.fault, [...at, 'fault'], durationMs, checkRegion, report);
  };
  asArray(spec.method).forEach((entry, i) => {
    const at: Path = [...base, 'method', i];
    if (isRecord(entry) && 'parallel' in entry) {
      const branches = asArray(entry.parallel);
      if (Array.isArray(entry.parallel) && branches.length < 2)
        report('invalid-length', [...at, 'parallel'], 'a parallel entry needs at least 2 steps', {
          found: `${branches.length} step${branches.length === 1 ? '' : 's'}`,
          hint: 'write a single step directly in `method`, without `parallel`',
          atKey: true,
        });
      branches.forEach((s, j) => checkStep(s, [...at, 'parallel', j]));
    } else checkStep(entry, at);
  });

  // Metric limits.
  asArray(spec.steadyState).forEach((c, i) =>
    checkLimits(c, [...base, 'steadyState', i], 'steady-state check', report),
  );
  const probeNames = new Map<string, Path>();
  asArray(spec.probes).forEach((p, i) => {
    const at: Path = [...base, 'probes', i];
    checkLimits(p, at, 'probe', report);
    if (!isRecord(p)) return;
    unique(probeNames, p.name, [...at, 'name'], 'probe', report, locate);
    const windowMs = durationOf(p.window);
    const intervalMs = durationOf(p.interval);
    if (windowMs !== undefined && intervalMs !== undefined && intervalMs > windowMs)
      report('inconsistent-settings', [...at, 'interval'], 'the interval is longer than the window', {
        hint: 'a probe evaluated less often than its window misses part of the traffic',
      });
  });
  asArray(spec.expectations).forEach((e, i) =>
    checkLimits(e, [...base, 'expectations', i], 'expectation', report),
  );

  // Rollbacks name things that exist.
  asArray(spec.rollbacks).forEach((r, i) => {
    if (!isRecord(r)) return;
    const at: Path = [...base, 'rollbacks', i];
    if (typeof r.heal === 'string' && r.heal !== 'all' && !stepNames.has(r.heal)) {
      const suggestion = closestMatch(r.heal, stepNames.keys());
      report('dangling-reference', [...at, 'heal'], `no step named "${r.heal}"`, {
        expected: `all or one of ${listOr([...stepNames.keys()])}`,
        found: `"${r.heal}"`,
        ...(suggestion !== undefined && { hint: `did you mean "${suggestion}"?` }),
      });
    }
    if (typeof r.restore === 'string' && r.restore !== 'all') checkRegion([...at, 'restore'], r.restore);
  });
}

function unique(
  seen: Map<string, Path>,
  name: unknown,
  at: Path,
  what: string,
  report: Report,
  locate: LoadedResource['locate'],
): void {
  if (typeof name !== 'string') return;
  const first = seen.get(name);
  if (first) {
    const pos = locate(first);
    report('duplicate-name', at, `two ${what}s are named "${name}"`, {
      hint: `give each ${what} its own name`,
      related: [{ ...pos, message: `first ${what} named "${name}"` }],
    });
  } else seen.set(name, at);
}

function checkFault(
  fault: Record<string, unknown>,
  at: Path,
  stepDurationMs: number | undefined,
  checkRegion: (at: Path, v: unknown, allowGlobal?: boolean) => void,
  report: Report,
): void {
  const type = fault.type;
  const has = (k: string) => fault[k] !== undefined;
  if (has('region')) checkRegion([...at, 'region'], fault.region);
  if (has('from')) checkRegion([...at, 'from'], fault.from);
  if (has('to')) checkRegion([...at, 'to'], fault.to, type === 'partition');
  if (typeof fault.from === 'string' && fault.from === fault.to)
    report('self-reference', [...at, 'to'], `\`from\` and \`to\` are the same region "${fault.from}"`, {
      hint: 'a link joins two different regions',
    });
  switch (type) {
    case 'partition':
      if (has('region') && (has('from') || has('to')))
        report(
          'invalid-choice',
          [...at, has('from') ? 'from' : 'to'],
          '`region` and `from`/`to` are exclusive',
          {
            atKey: true,
            hint: '`region` cuts a region off from all others; `from`/`to` cut one link',
          },
        );
      else if (!has('region') && !has('from') && !has('to'))
        report('missing-field', at, 'a partition needs `region`, or `from` and/or `to`', {
          hint: 'e.g. {type: partition, region: eu-west}',
        });
      if (fault.direction === 'one-way' && !(has('from') && has('to')))
        report('missing-field', [...at, 'direction'], 'a one-way partition needs both `from` and `to`', {
          hint: 'one-way cuts traffic from `from` to `to` only',
        });
      break;
    case 'control-plane-loss':
      if (fault.scope === 'zone' && !has('region'))
        report('missing-field', at, '`scope: zone` needs `region`', {
          hint: 'name the region whose zone control plane is lost',
        });
      if (fault.scope === 'global' && has('region'))
        report('unused-field', [...at, 'region'], '`region` is only for `scope: zone`', {
          atKey: true,
          hint: 'remove it: the global control plane serves every region',
        });
      break;
    case 'flap': {
      const downMs = durationOf(fault.down);
      const upMs = durationOf(fault.up);
      if (
        downMs !== undefined &&
        upMs !== undefined &&
        stepDurationMs !== undefined &&
        downMs + upMs >= stepDurationMs
      )
        report(
          'inconsistent-settings',
          [...at, 'down'],
          `down + up (${downMs + upMs}ms) must be shorter than the step's duration (${stepDurationMs}ms)`,
          { hint: 'lengthen the step or shorten the cycle, so the link flaps at least once' },
        );
      break;
    }
    default:
      break;
  }
}

function checkLimits(entry: unknown, at: Path, what: string, report: Report): void {
  if (!isRecord(entry) || typeof entry.metric !== 'string') return;
  const metric = entry.metric;
  if (!(metric in METRIC_UNITS)) return; // reported by the schema
  const unit = METRIC_UNITS[metric as Metric];
  const phaseMetric = isPhaseMetric(metric);
  if (what !== 'expectation' && !phaseMetric)
    report(
      'invalid-value',
      [...at, 'metric'],
      `${metric} is drill-wide: a ${what} can only use a request metric`,
      {
        expected: `one of ${listOr([...PHASE_METRICS])}`,
        found: `"${metric}"`,
        hint: 'put it in `expectations` instead',
      },
    );
  if (what === 'expectation' && !phaseMetric && entry.phase !== undefined)
    report(
      'unused-field',
      [...at, 'phase'],
      `${metric} is measured over the whole drill and takes no phase`,
      {
        atKey: true,
        hint: 'remove `phase`',
      },
    );
  if (entry.min === undefined && entry.max === undefined)
    report(
      'missing-field',
      at,
      `${what === 'expectation' ? 'an' : 'a'} ${what} needs \`min\`, \`max\` or both`,
      {
        hint: unit === 'ms' ? 'e.g. max: 2s' : unit === 'ratio' ? 'e.g. max: 0.01' : 'e.g. max: 0',
      },
    );
  const values: Record<string, number> = {};
  for (const bound of ['min', 'max'] as const) {
    const v = entry[bound];
    if (v === undefined) continue;
    const where = [...at, bound];
    if (unit === 'ms') {
      const ms = durationOf(v);
      if (ms === undefined)
        report(
          typeof v === 'string' ? 'invalid-duration' : 'wrong-type',
          where,
          `${metric} is a time: write a duration`,
          {
            expected: 'a duration written with a unit: 250ms, 5s, 1m30s',
            found: describeValue(v),
            ...(typeof v === 'number' && { hint: `write "${v}ms" or "${v}s"` }),
          },
        );
      else values[bound] = ms;
    } else if (unit === 'ratio') {
      if (typeof v !== 'number' || v < 0 || v > 1)
        report(
          typeof v === 'number' ? 'out-of-range' : 'wrong-type',
          where,
          `${metric} is a ratio from 0 to 1`,
          {
            expected: 'a ratio from 0 to 1 (e.g. 0.2 for 20%)',
            found: describeValue(v),
            ...(typeof v === 'number' && v > 1 && v <= 100 && { hint: `for ${v}% write ${v / 100}` }),
          },
        );
      else values[bound] = v;
    } else if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      report(typeof v === 'number' ? 'out-of-range' : 'wrong-type', where, `${metric} is a count`, {
        expected: 'an integer of at least 0',
        found: describeValue(v),
      });
    else values[bound] = v;
  }
  if (values.min !== undefined && values.max !== undefined && values.min > values.max)
    report('inconsistent-settings', [...at, 'min'], '`min` is above `max`: nothing can pass', {
      hint: 'swap them',
    });
}

function limits(entry: { min?: unknown; max?: unknown }, metric: Metric): LimitSpec {
  const read = (v: unknown): number =>
    METRIC_UNITS[metric] === 'ms' ? parseDurationMs(v as string) : (v as number);
  return {
    ...(entry.min !== undefined && { min: read(entry.min) }),
    ...(entry.max !== undefined && { max: read(entry.max) }),
  };
}

function normalizeFault(f: RawFault): FaultSpec {
  switch (f.type) {
    case 'partition':
      return {
        type: f.type,
        ...(f.region !== undefined && { region: f.region }),
        ...(f.from !== undefined && { from: f.from }),
        ...(f.to !== undefined && { to: f.to }),
        mode: f.mode ?? 'blackhole',
        direction: f.direction ?? 'both',
        scope: f.scope ?? 'all',
        ...(f.purpose !== undefined && { purpose: f.purpose }),
      };
    case 'latency':
      return {
        type: f.type,
        from: f.from,
        to: f.to,
        latencyMs: parseDurationMs(f.latency),
        jitterMs: parseDurationMs(f.jitter ?? '0ms'),
        distribution: f.distribution ?? 'uniform',
      };
    case 'loss':
      return {
        type: f.type,
        from: f.from,
        to: f.to,
        probability: f.probability,
        stallMs: parseDurationMs(f.stall ?? '200ms'),
      };
    case 'bandwidth':
      return { type: f.type, from: f.from, to: f.to, rateKBps: f.rate };
    case 'region-outage':
      return { type: f.type, region: f.region };
    case 'control-plane-loss':
      return { type: f.type, scope: f.scope, ...(f.region !== undefined && { region: f.region }) };
    case 'proxy-restart':
      return { type: f.type, region: f.region, service: f.service };
    case 'flap':
      return {
        type: f.type,
        from: f.from,
        to: f.to,
        mode: f.mode ?? 'blackhole',
        downMs: parseDurationMs(f.down),
        upMs: parseDurationMs(f.up),
      };
  }
}

let validateFault: ReturnType<typeof compileValidator> | undefined;

/**
 * One fault on its own, written as in a drill step (`isthmus lab fault`, the lab's API): the same
 * schema and checks as a drill, without the step's duration or the topology's regions. Errors
 * name the field: `fault.latency: ...`.
 */
export function parseFault(
  value: unknown,
  where: string,
): { ok: true; fault: FaultSpec } | { ok: false; error: string } {
  validateFault ??= compileValidator(Fault);
  const problems: string[] = [];
  const at = (path: Path) => [where, ...path].join('.');
  for (const p of validateFault(value))
    problems.push(
      `${at(p.path)}: ${p.message}` +
        (p.expected !== undefined && p.rule !== 'missing-field' ? `; expected ${p.expected}` : '') +
        (p.hint !== undefined && p.rule !== 'missing-field' ? ` (${p.hint})` : ''),
    );
  if (problems.length === 0)
    checkFault(
      value as Record<string, unknown>,
      [],
      undefined,
      () => {},
      (_rule, path, message, extra) =>
        problems.push(`${at(path)}: ${message}${extra?.hint !== undefined ? ` (${extra.hint})` : ''}`),
    );
  if (problems.length > 0) return { ok: false, error: problems.join('; ') };
  return { ok: true, fault: normalizeFault(value as RawFault) };
}

function normalize(doc: DrillDocument, file: string): DrillSpec {
  const s = doc.spec;
  const step = (raw: Static<typeof Step>): StepSpec => ({
    name: raw.name,
    fault: normalizeFault(raw.fault),
    durationMs: parseDurationMs(raw.duration),
    afterMs: parseDurationMs(raw.after ?? '0s'),
  });
  const topology: TopologySpec = s.topology.endpoints
    ? { source: 'endpoints', lab: s.topology.endpoints.lab }
    : {
        source: 'lab',
        regions: [...(s.topology.lab?.regions ?? DEFAULT_LAB_REGIONS)],
        ...(s.topology.lab?.placement && { placement: s.topology.lab.placement }),
      };
  const from = s.workload.from ?? (topology.source === 'lab' ? topology.regions : undefined);
  return {
    name: doc.metadata.name,
    ...(doc.metadata.description !== undefined && { description: doc.metadata.description }),
    file,
    seed: s.seed ?? 1,
    topology,
    workload: {
      ratePerSecond: s.workload.rate,
      ...(from !== undefined && { from: [...from] }),
      timeoutMs: parseDurationMs(s.workload.timeout ?? '3s'),
      mix: s.workload.mix.map((m) => ({
        name: m.name,
        weight: m.weight,
        method: m.method,
        path: m.path,
        idempotent: m.idempotent ?? !NON_IDEMPOTENT.has(m.method),
        idempotencyKey: m.idempotencyKey ?? false,
      })),
    },
    baselineMs: parseDurationMs(s.baseline ?? '5s'),
    steadyState: (s.steadyState ?? []).map((c) => ({
      metric: c.metric as PhaseMetric,
      ...limits(c, c.metric),
    })),
    method: s.method.map((e): MethodEntrySpec =>
      'parallel' in e ? { kind: 'parallel', steps: e.parallel.map(step) } : { kind: 'step', step: step(e) },
    ),
    probes: (s.probes ?? []).map((p) => ({
      name: p.name,
      metric: p.metric as PhaseMetric,
      windowMs: parseDurationMs(p.window),
      intervalMs: parseDurationMs(p.interval ?? '1s'),
      abort: p.abort ?? false,
      ...limits(p, p.metric),
    })),
    recoveryMs: parseDurationMs(s.recovery ?? '10s'),
    rollbacks: (s.rollbacks ?? [{ heal: 'all' }, { restore: 'all' }]).map((r): RollbackSpec =>
      r.heal !== undefined
        ? { action: 'heal', target: r.heal }
        : { action: 'restore', target: r.restore as string },
    ),
    expectations: (s.expectations ?? []).map((e) => ({
      metric: e.metric,
      ...(isPhaseMetric(e.metric) && { phase: e.phase ?? 'all' }),
      ...limits(e, e.metric),
    })),
  };
}

/** Reads and loads a drill file; a file that cannot be read is an ISTHMUS_E_IO error. */
export async function loadDrillFile(file: string): Promise<{ drill?: DrillSpec; diagnostics: Diagnostic[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new IsthmusError(
      'ISTHMUS_E_IO',
      `cannot read drill file ${file}: ${(err as Error).message}; pass the path of a drill YAML file (see drills/)`,
      { cause: err },
    );
  }
  return loadDrill(text, file);
}
