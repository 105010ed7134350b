import { Type, type Static } from '@sinclair/typebox';
import { Bool, Duration, Int, Num, OneOf, Ratio, Section, Size, Text } from './primitives.js';

/**
 * Policy settings: the fields a TrafficPolicy, PartitionPolicy or TelemetryPolicy can set, with
 * the built-in default of each. Defaults are chosen for meshes that span regions with WAN latency
 * between them; the reason for each is in its description and so in docs/policies.md.
 */

export const RETRY_ON = ['connect-failure', 'reset', 'per-try-timeout', 'gateway-error', '5xx'] as const;
export const LOCALITY_TIERS = ['zone', 'region', 'remote'] as const;
export const PARTITION_MODES = ['freeze', 'decay', 'fail-closed'] as const;

const Timeouts = Section('How long a request and each of its attempts may take.', {
  connect: Duration({
    default: '1s',
    min: '1ms',
    max: '1m',
    description:
      'Time to open a connection to one endpoint. Short, so an unreachable region costs one failed attempt, not the whole deadline.',
  }),
  perTry: Duration({
    default: '3s',
    min: '1ms',
    max: '1h',
    description:
      'Time one attempt may wait for its response headers once the request is sent (connecting is bounded by `connect`); never more than what remains of `overall`.',
  }),
  overall: Duration({
    default: '10s',
    min: '1ms',
    max: '1h',
    description:
      'Deadline of the whole request across all attempts, hedges and backoff. Propagated to the next hop when `propagate` is on.',
  }),
  propagate: Bool({
    default: true,
    description:
      'Send the remaining budget to the next hop in the `isthmus-deadline-ms` header and honour it when it arrives, so a downstream hop never works on a request its caller has given up on.',
  }),
});

const RetryBudget = (what: string, ratio: number, minPerSecond: number) =>
  Section(`Retry budget for ${what}.`, {
    ratio: Ratio({
      default: ratio,
      description: `Retries allowed as a share of ${what} over \`window\`, on top of \`minPerSecond\`. Caps retry storms when a destination fails.`,
    }),
    minPerSecond: Int({
      default: minPerSecond,
      minimum: 0,
      maximum: 100_000,
      description: 'Retries per second always allowed, so low-traffic callers can still retry.',
    }),
    window: Duration({
      default: '10s',
      min: '1s',
      max: '10m',
      description: 'Time window over which requests and retries are counted for the ratio.',
    }),
  });

const Retries = Section('When and how failed attempts are retried. Only safe requests are ever retried.', {
  maxAttempts: Int({
    default: 3,
    minimum: 1,
    maximum: 10,
    description: 'Attempts per request, the first included. 1 turns retries off.',
  }),
  retryOn: Type.Array(OneOf(RETRY_ON, { description: 'A failure class.' }), {
    default: ['connect-failure', 'reset', 'per-try-timeout', 'gateway-error'],
    uniqueItems: true,
    description:
      'Failures that trigger a retry: `connect-failure` (refused, unreachable, connect timeout), `reset` (connection closed before the response headers), `per-try-timeout`, `gateway-error` (502, 503, 504), `5xx` (any 5xx).',
  }),
  retryOnStatusCodes: Type.Array(
    Type.Integer({ minimum: 400, maximum: 599, description: 'An HTTP status.' }),
    {
      default: [],
      uniqueItems: true,
      description: 'Extra response statuses that trigger a retry (e.g. 409 or 429).',
    },
  ),
  nonIdempotent: OneOf(['never', 'with-idempotency-key'] as const, {
    default: 'with-idempotency-key',
    description:
      'Whether requests with non-idempotent methods (POST, PATCH) may be retried: never, or only when they carry an `Idempotency-Key` header.',
  }),
  differentLocality: OneOf(['never', 'on-connect-failure', 'always'] as const, {
    default: 'on-connect-failure',
    description:
      'When a retry should leave the locality of the failed attempt. Connect failures and timeouts suggest the locality is in trouble; a 5xx more often means one bad endpoint. A retry always prefers a different endpoint.',
  }),
  backoff: Section('Delay before a retry: full jitter, uniform between 0 and min(max, base × 2^retry).', {
    base: Duration({
      default: '25ms',
      min: '1ms',
      max: '1m',
      description: 'Backoff before the first retry.',
    }),
    max: Duration({ default: '250ms', min: '1ms', max: '5m', description: 'Upper bound of any backoff.' }),
  }),
  budget: RetryBudget('all requests to the destination', 0.2, 10),
  crossRegion: RetryBudget(
    'requests whose retry leaves the caller’s region (drawn in addition to `budget`)',
    0.1,
    2,
  ),
});

const CircuitBreaker = Section(
  'Per-destination limits (a bulkhead): beyond them requests are shed at once with 503 and `Retry-After`, so an overloaded or partitioned destination cannot exhaust the caller.',
  {
    maxConnections: Int({
      default: 1024,
      minimum: 1,
      maximum: 1_000_000,
      description: 'Open connections to all endpoints of the destination.',
    }),
    maxRequests: Int({
      default: 1024,
      minimum: 1,
      maximum: 1_000_000,
      description: 'Requests in flight to the destination.',
    }),
    maxPendingRequests: Int({
      default: 256,
      minimum: 0,
      maximum: 1_000_000,
      description:
        'Requests queued waiting for `maxRequests` to free a slot. 0 sheds as soon as the limit is hit.',
    }),
    pendingTimeout: Duration({
      default: '250ms',
      min: '1ms',
      max: '1m',
      description: 'Longest a request waits in that queue before it is shed.',
    }),
    maxRetries: Int({
      default: 32,
      minimum: 0,
      maximum: 1_000_000,
      description: 'Retries in flight to the destination at once.',
    }),
    retryAfter: Duration({
      default: '1s',
      min: '1s',
      max: '1h',
      description: 'Value of the `Retry-After` header on shed responses (whole seconds).',
    }),
  },
);

const OutlierDetection = Section(
  'Passive health: endpoints are ejected on evidence from real traffic, for a time that grows with each ejection.',
  {
    consecutiveFailures: Int({
      default: 5,
      minimum: 0,
      maximum: 1000,
      description:
        'Consecutive failed attempts (connect failure, reset, timeout, 5xx) that eject an endpoint. 0 turns this off.',
    }),
    interval: Duration({
      default: '2s',
      min: '100ms',
      max: '10m',
      description: 'How often success-rate and latency outliers are computed.',
    }),
    baseEjectionTime: Duration({
      default: '10s',
      min: '100ms',
      max: '1h',
      description:
        'Ejection time of a first ejection; the n-th consecutive ejection lasts n × this, up to `maxEjectionTime`.',
    }),
    maxEjectionTime: Duration({
      default: '5m',
      min: '100ms',
      max: '24h',
      description: 'Upper bound of one ejection.',
    }),
    maxEjectedRatio: Ratio({
      default: 0.5,
      description:
        'Most of a locality’s endpoints that may be ejected at once. Evidence beyond it still counts toward region health, so a dead region fails over without ejecting everything.',
    }),
    successRate: Section('Eject endpoints whose success rate is far below their locality’s mean.', {
      enabled: Bool({ default: true, description: 'Turns the success-rate detector on.' }),
      minRequests: Int({
        default: 20,
        minimum: 1,
        maximum: 1_000_000,
        description: 'Requests an endpoint needs in an interval to be judged.',
      }),
      minEndpoints: Int({
        default: 3,
        minimum: 1,
        maximum: 10_000,
        description: 'Endpoints with enough requests needed in a locality before any is judged.',
      }),
      stdevFactor: Num({
        default: 1.9,
        minimum: 0.1,
        maximum: 10,
        description: 'Eject below mean − factor × standard deviation of the locality’s success rates.',
      }),
    }),
    latency: Section(
      'Eject endpoints much slower than the median of their own locality. Endpoints are only compared within a locality, so remote endpoints are never ejected for WAN latency.',
      {
        enabled: Bool({ default: true, description: 'Turns the latency detector on.' }),
        factor: Num({
          default: 3,
          minimum: 1.1,
          maximum: 100,
          description: 'Eject when an endpoint’s latency EWMA exceeds factor × the locality median.',
        }),
        minLatency: Duration({
          default: '50ms',
          min: '0s',
          max: '1m',
          description: 'Latencies below this are never outliers, whatever the ratio.',
        }),
        minRequests: Int({
          default: 20,
          minimum: 1,
          maximum: 1_000_000,
          description: 'Requests an endpoint needs in an interval to be judged.',
        }),
      },
    ),
  },
);

const LocalityFailover = Section(
  'Locality-aware priority failover: same zone first, then the same region, then other regions by measured round-trip time.',
  {
    priorities: Type.Array(OneOf(LOCALITY_TIERS, { description: 'A locality tier.' }), {
      default: ['zone', 'region', 'remote'],
      minItems: 1,
      uniqueItems: true,
      description:
        'Tiers in priority order. `remote` expands to one tier per other region, nearest first by measured RTT (declared `latencyHints` until measured). Leave out `remote` to never leave the region.',
    }),
    overprovisioningFactor: Num({
      default: 1.4,
      minimum: 1,
      maximum: 10,
      description:
        'A tier keeps all its traffic while healthy share × factor ≥ 1; below that the shortfall spills to the next tier gradually rather than all at once.',
    }),
    panicThreshold: Ratio({
      default: 0.25,
      description:
        'When the healthy share across all tiers falls below this, balance over every endpoint ignoring health. Lower than Envoy’s 0.5: with remote regions available, sending to unhealthy local endpoints is worse than paying WAN latency.',
    }),
    regionHealth: Section('A region is ejected or readmitted on aggregated evidence, with hysteresis.', {
      ejectBelow: Ratio({
        default: 0.5,
        description:
          'Region health score (share of healthy endpoints × recent success rate) below which it is ejected.',
      }),
      readmitAbove: Ratio({
        default: 0.8,
        description:
          'Score a region must exceed to be readmitted. Must be above `ejectBelow`; the gap is the hysteresis.',
      }),
      ejectAfter: Duration({
        default: '1s',
        min: '0s',
        max: '10m',
        description: 'How long the score must stay below `ejectBelow` before the region is ejected.',
      }),
      readmitAfter: Duration({
        default: '5s',
        min: '0s',
        max: '1h',
        description: 'How long the score must stay above `readmitAbove` before the region is readmitted.',
      }),
      window: Duration({
        default: '5s',
        min: '500ms',
        max: '10m',
        description: 'Rolling window over which the success rate of a region is measured.',
      }),
      flapWindow: Duration({
        default: '5m',
        min: '1s',
        max: '24h',
        description: 'Window in which ejections of a region are counted as flaps.',
      }),
      maxFlaps: Int({
        default: 3,
        minimum: 1,
        maximum: 1000,
        description: 'Flaps within `flapWindow` after which each further `readmitAfter` doubles (damping).',
      }),
    }),
    failback: Section('How traffic returns to a readmitted region or endpoint.', {
      slowStart: Duration({
        default: '15s',
        min: '0s',
        max: '1h',
        description:
          'Time over which a readmitted region’s weight ramps linearly up to full. 0s returns at once.',
      }),
      initialWeight: Ratio({
        default: 0.1,
        description: 'Share of its full weight a readmitted region starts the ramp with.',
      }),
    }),
  },
);

const HealthChecks = Section('Active health checks, in addition to passive outlier detection.', {
  enabled: Bool({ default: true, description: 'Turns active checks on.' }),
  path: Text({
    default: '/healthz',
    pattern: '^/',
    maxLength: 2048,
    description: 'HTTP path probed with GET on each endpoint.',
  }),
  interval: Duration({
    default: '2s',
    min: '100ms',
    max: '10m',
    description: 'Time between checks of one endpoint (±10% jitter).',
  }),
  timeout: Duration({
    default: '1s',
    min: '10ms',
    max: '1m',
    description: 'Deadline of one check. Must be below `interval`.',
  }),
  unhealthyThreshold: Int({
    default: 2,
    minimum: 1,
    maximum: 100,
    description: 'Consecutive failed checks that mark an endpoint unhealthy.',
  }),
  healthyThreshold: Int({
    default: 2,
    minimum: 1,
    maximum: 100,
    description: 'Consecutive passed checks that mark it healthy again.',
  }),
  unhealthyStatusMin: Int({
    default: 500,
    minimum: 200,
    maximum: 600,
    description:
      'Responses with this status or higher fail a check; anything lower proves the endpoint alive (so an app without the path still passes). 600 accepts every response.',
  }),
});

const Hedging = Section('Hedged requests: a second attempt for a slow safe read, first answer wins.', {
  enabled: Bool({ default: false, description: 'Turns hedging on (safe methods only: GET, HEAD, OPTIONS).' }),
  afterQuantile: Ratio({
    default: 0.95,
    description:
      'Send the hedge once the first attempt is slower than this latency quantile of the destination.',
  }),
  minDelay: Duration({
    default: '20ms',
    min: '1ms',
    max: '1m',
    description: 'Never hedge earlier than this.',
  }),
  maxHedges: Int({ default: 1, minimum: 1, maximum: 3, description: 'Hedges per request.' }),
});

const FaultInjection = Section(
  'Faults injected by the caller’s proxy, for drills. A ratio of 0 turns a fault off.',
  {
    delay: Section('Added latency.', {
      ratio: Ratio({ default: 0, description: 'Share of requests delayed.' }),
      duration: Duration({ default: '100ms', min: '0s', max: '1h', description: 'Delay added to each one.' }),
    }),
    abort: Section('Requests answered by the proxy with an error status, without reaching the destination.', {
      ratio: Ratio({ default: 0, description: 'Share of requests aborted.' }),
      status: Int({
        default: 503,
        minimum: 400,
        maximum: 599,
        description: 'Status of the aborted requests.',
      }),
    }),
  },
);

const Fallback = Section('What is answered when every attempt failed.', {
  staleIfError: Section(
    'Serve the last good response of a safe read (GET, HEAD) from a bounded in-memory cache, marked stale.',
    {
      enabled: Bool({ default: true, description: 'Turns the stale-if-error cache on.' }),
      maxAge: Duration({
        default: '5m',
        min: '1s',
        max: '168h',
        description: 'Oldest response that may be served.',
      }),
      maxEntries: Int({
        default: 1000,
        minimum: 1,
        maximum: 10_000_000,
        description: 'Responses kept per destination.',
      }),
      maxBytes: Size({
        default: '16MiB',
        min: '1KiB',
        max: '16GiB',
        description: 'Memory the cache may use per destination.',
      }),
      maxEntryBytes: Size({
        default: '256KiB',
        min: '1B',
        max: '1GiB',
        description: 'Larger responses are not cached (they stream through unbuffered).',
      }),
    },
  ),
  static: Section('A fixed response, used when no stale response is available.', {
    enabled: Bool({ default: false, description: 'Turns the static fallback on.' }),
    status: Int({ default: 503, minimum: 200, maximum: 599, description: 'Status of the static response.' }),
    contentType: Text({ default: 'application/json', maxLength: 256, description: 'Its `Content-Type`.' }),
    body: Text({ default: '', maxLength: 65536, description: 'Its body (at most 64 KiB).' }),
  }),
});

const Consistency = Section(
  'Where reads and writes may be served. `strong` goes only to the service’s home region and, when it is unreachable, fails fast with 503 and `isthmus-error: home-region-unavailable` rather than serving stale data. `eventual` goes to the nearest healthy replica and reports its staleness in `isthmus-staleness-ms`.',
  {
    mode: OneOf(['eventual', 'strong'] as const, {
      default: 'eventual',
      description: 'Consistency of the route.',
    }),
    maxStaleness: Duration({
      default: '30s',
      min: '0s',
      max: '24h',
      description:
        '`eventual` only: replicas that report more staleness than this are used only when nothing fresher is healthy.',
    }),
  },
);

const Idempotency = Section(
  'Applied by the destination’s inbound proxy: responses to requests with an `Idempotency-Key` are remembered, so a write retried across regions is applied once.',
  {
    enabled: Bool({ default: true, description: 'Turns idempotent replay on.' }),
    window: Duration({
      default: '10m',
      min: '1s',
      max: '168h',
      description: 'How long a response is remembered.',
    }),
    maxEntries: Int({
      default: 10_000,
      minimum: 1,
      maximum: 10_000_000,
      description: 'Responses remembered at most.',
    }),
    maxEntryBytes: Size({
      default: '64KiB',
      min: '1B',
      max: '16MiB',
      description: 'Larger responses are remembered by status and headers only; a replay of one answers 409.',
    }),
  },
);

const Degradation = Section('Signals to the calling app while this destination is degraded.', {
  flags: Type.Array(Text({ pattern: '^[a-z0-9][a-z0-9_.-]*$', maxLength: 63, description: 'A flag name.' }), {
    default: [],
    uniqueItems: true,
    description:
      'Feature flags switched on for the caller (header `isthmus-degraded-flags` and the local `/degraded` endpoint) while the destination runs failed-over, on fallbacks, or without its home region.',
  }),
});

export const TrafficSettings = Section('Traffic settings.', {
  timeouts: Timeouts,
  retries: Retries,
  circuitBreaker: CircuitBreaker,
  outlierDetection: OutlierDetection,
  localityFailover: LocalityFailover,
  healthChecks: HealthChecks,
  hedging: Hedging,
  faultInjection: FaultInjection,
  fallback: Fallback,
  consistency: Consistency,
  idempotency: Idempotency,
  degradation: Degradation,
});

const PartitionSide = (
  who: string,
  target: string,
  mode: (typeof PARTITION_MODES)[number],
  decayAfter: string,
) =>
  Section(`What ${who} does while its control plane is unreachable.`, {
    remoteEndpoints: OneOf(PARTITION_MODES, {
      default: mode,
      description: `What happens to ${target}: \`freeze\` keeps them as last known; \`decay\` drops each one not seen answering within \`decayAfter\`; \`fail-closed\` drops them once \`decayAfter\` has passed.`,
    }),
    decayAfter: Duration({
      default: decayAfter,
      min: '1s',
      max: '168h',
      description:
        'Grace period for `decay` and `fail-closed`, counted from the last contact with the control plane.',
    }),
  });

export const PartitionSettings = Section('Partition settings.', {
  proxy: PartitionSide('a proxy or gateway', 'remote-region endpoints it knows', 'decay', '5m'),
  zone: PartitionSide(
    'a zone control plane',
    'other regions’ inventories it serves to its proxies',
    'freeze',
    '30m',
  ),
  leaseTtl: Duration({
    default: '15s',
    min: '1s',
    max: '1h',
    description:
      'Endpoint registration lease: an endpoint that does not renew within it is removed from its zone’s inventory. Kept separate from partition handling, so "the zone cannot hear you" and "the endpoint is gone" stay different states.',
  }),
});

export const TelemetrySettings = Section('Telemetry settings.', {
  sampling: Section('Adaptive, consistent-probability trace sampling (OpenTelemetry `th` threshold).', {
    tracesPerSecond: Num({
      default: 10,
      minimum: 0,
      maximum: 1_000_000,
      description:
        'Target of sampled traces per second per service on each proxy; the probability adapts to traffic.',
    }),
    minRatio: Ratio({ default: 0.001, description: 'The sampling probability never drops below this.' }),
    keepErrors: Bool({ default: true, description: 'Always keep traces of failed requests.' }),
    keepSlowerThan: Duration({
      default: '1s',
      min: '0s',
      max: '1h',
      description: 'Always keep traces of requests slower than this.',
    }),
  }),
  buffer: Section(
    'The local write-ahead log every signal goes through before it is shipped, so a partition delays signals instead of losing them.',
    {
      maxBytes: Size({ default: '256MiB', min: '1MiB', max: '1TiB', description: 'Disk the log may use.' }),
      segmentBytes: Size({
        default: '8MiB',
        min: '64KiB',
        max: '1GiB',
        description: 'Size of one segment file.',
      }),
      fsyncInterval: Duration({
        default: '500ms',
        min: '1ms',
        max: '10s',
        description:
          'Longest time a written signal waits before it is fsynced (acks are checkpointed as often). Signals reach the log `writeDelay` after they are appended, and a proxy gathers its access-log records for up to `accessLog.batchWindow` before that, so a crash of the machine may lose up to this plus `writeDelay` plus the batch window, and a crash of the process up to `writeDelay` plus the batch window.',
      }),
      writeDelay: Duration({
        default: '100ms',
        min: '0ms',
        max: '1s',
        description:
          'Appends wait this long to be written to the log together (never longer than `fsyncInterval`; 0: once per event-loop turn). A write is a round trip through a thread, which costs a busy proxy more than the bytes: 100 ms makes about ten writes a second. Nothing is shipped before it is fsynced, so this delays no signal beyond `fsyncInterval`; a crash of the process loses what waits (see `fsyncInterval`).',
      }),
      whenFull: OneOf(['drop-oldest', 'block'] as const, {
        default: 'drop-oldest',
        description:
          'At `maxBytes`: drop the oldest unshipped segment (counted as lost), or block the producer. Dropping is the default so that telemetry never stalls requests.',
      }),
    },
  ),
  accessLog: Section(
    'How a proxy gathers its access-log records (one per request, and the span of a sampled one) before they go to the log.',
    {
      batchWindow: Duration({
        default: '10ms',
        min: '1ms',
        max: '1s',
        description:
          'Records are kept in memory for up to this long, or until `batchRecords` are waiting, then appended to the log as one record with one seq. Longer: fewer, larger log records and less work per request, but a crash of the process loses up to this much of the access log, with no gap to show for it.',
      }),
      batchRecords: Int({
        default: 128,
        minimum: 1,
        maximum: 10_000,
        description:
          'A batch is appended at once when this many records are waiting. A batch too large for one record of the log is split.',
      }),
    },
  ),
  heartbeatInterval: Duration({
    default: '2s',
    min: '100ms',
    max: '1m',
    description:
      'Every source sends a heartbeat this often; a source silent for two intervals is shown as stale.',
  }),
  metricsInterval: Duration({
    default: '10s',
    min: '1s',
    max: '10m',
    description: 'Interval of metric points written to the log.',
  }),
  residency: Section(
    'Which access-log fields may leave their region (other fields stay in the region collector).',
    {
      logFieldsAllowedOut: Type.Array(
        Text({ pattern: '^[A-Za-z][A-Za-z0-9_.]*$', maxLength: 128, description: 'A field.' }),
        {
          default: [
            'timestamp',
            'recordId',
            'region',
            'zone',
            'service',
            'route',
            'method',
            'status',
            'durationMs',
            'attempts',
            'servedBy',
            'fallback',
            'traceId',
            'spanId',
            'requestId',
          ],
          uniqueItems: true,
          description:
            'Fields allowed out of the region. The default keeps out the path, query, client address, user agent and headers, which may carry personal data.',
        },
      ),
    },
  ),
});

export type TrafficSettings = Static<typeof TrafficSettings>;
export type PartitionSettings = Static<typeof PartitionSettings>;
export type TelemetrySettings = Static<typeof TelemetrySettings>;

/** Settings with every field present (after merging over the built-in defaults). */
export type Complete<T> =
  T extends ReadonlyArray<unknown>
    ? T
    : T extends object
      ? { readonly [K in keyof T]-?: Complete<NonNullable<T[K]>> }
      : T;

export type EffectiveTraffic = Complete<TrafficSettings>;
export type EffectivePartition = Complete<PartitionSettings>;
export type EffectiveTelemetry = Complete<TelemetrySettings>;
