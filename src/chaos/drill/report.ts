import { METRIC_UNITS, isPhaseMetric, type Metric, type PhaseName } from './spec.js';

/**
 * What a drill run produces (docs/drills.md#report): the runner fills it in, the renderers print
 * it, `--json` writes it as is. Times are milliseconds; `atMs`/`startMs`/`tMs` count from the
 * drill's start.
 */

/**
 * `pass`: every expectation held. `fail`: one did not. `not-steady`: the baseline failed its
 * steady-state checks, so no fault was injected. `aborted`: a probe with `abort: true` stopped the
 * method. `error`: the drill could not be carried out (lab did not start, a fault could not be
 * applied).
 */
export type Verdict = 'pass' | 'fail' | 'not-steady' | 'aborted' | 'error';

export interface PhaseStats {
  phase: PhaseName;
  startMs: number;
  endMs: number;
  requests: number;
  ok: number;
  /** Requests that failed (an error answer, a refused connection, a timed-out read). */
  failed: number;
  /** Non-idempotent requests that timed out or were cut: they may or may not have taken effect. */
  unknown: number;
  /** Failed requests whose mix entry is idempotent: the mesh could have retried them elsewhere. */
  failedIdempotent: number;
  latencyMs: { p50: number | null; p99: number | null; max: number | null };
  /** Per mix entry (its `name`). */
  byRoute: Record<string, { requests: number; ok: number; failed: number; unknown: number }>;
  /**
   * Where successful requests' downstream calls were served: dependency → region → count (from
   * the frontends' answers). Shows traffic moving between regions.
   */
  servedBy?: Record<string, Record<string, number>>;
}

export interface TimelineEvent {
  /** Since the drill's start. */
  atMs: number;
  kind:
    | 'step-start'
    | 'step-end'
    | 'fault-applied'
    | 'fault-removed'
    | 'probe-failed'
    | 'abort'
    | 'rollback'
    | 'heal-verified'
    | 'note';
  step?: string;
  detail: string;
}

/** Continuity of one telemetry source over the drill, from its collector. */
export interface SignalRow {
  source: string;
  region: string;
  emitted: number;
  received: number;
  lost: number;
  duplicated: number;
  maxDelayMs: number | null;
}

export interface ExpectationResult {
  metric: string;
  phase?: string;
  min?: number;
  max?: number;
  /** The measured value; null when it could not be measured (which fails). */
  actual: number | null;
  unit: 'ratio' | 'ms' | 'count';
  pass: boolean;
  note?: string;
}

export interface DrillReport {
  drill: { name: string; description?: string; file: string; seed: number };
  /** ISO 8601. */
  startedAt: string;
  durationMs: number;
  verdict: Verdict;
  /** Why the verdict is not `pass`, in a sentence. */
  reason?: string;
  topology: { regions: string[]; source: 'lab' | 'endpoints' };
  timeline: TimelineEvent[];
  phases: PhaseStats[];
  failover: {
    timeToDetectMs: number | null;
    timeToFailoverMs: number | null;
    timeToFailbackMs: number | null;
    routeFlaps: number;
    byRegion?: Record<
      string,
      { detectMs: number | null; failoverMs: number | null; failbackMs: number | null; flaps: number }
    >;
  };
  writes: { attempted: number; duplicateSideEffects: number };
  config: { stalenessMaxMs: number | null };
  signals: {
    rows: SignalRow[];
    lost: number;
    duplicated: number;
    maxDelayMs: number | null;
    /** False when a collector could not be queried: the figures are then a lower bound. */
    complete: boolean;
  };
  steadyState: ExpectationResult[];
  expectations: ExpectationResult[];
  /** Per-second buckets, for the HTML chart. */
  series?: { tMs: number; ok: number; failed: number; unknown: number; p99Ms: number | null }[];
  /**
   * Latency over the whole drill (all phases together). Optional: percentiles of a union cannot be
   * computed from the phases', so without it phase `all` latency percentiles are an upper bound.
   */
  overall?: { latencyMs: { p50: number | null; p99: number | null; max: number | null } };
}

/** The figures an expectation can be evaluated against. */
export type DrillMetrics = Pick<DrillReport, 'phases' | 'failover' | 'writes' | 'signals' | 'config'> &
  Partial<Pick<DrillReport, 'overall'>>;

/** An expectation or steady-state check, limits in the metric's unit (ms for times). */
export interface MetricCheck {
  metric: Metric;
  /** For request metrics; default `all`. Ignored for drill-wide metrics. */
  phase?: PhaseName | 'all';
  min?: number;
  max?: number;
}

/** Exit status of `isthmus drill` for a verdict: 0 only when everything passed. */
export function verdictExitCode(verdict: Verdict): 0 | 1 {
  return verdict === 'pass' ? 0 : 1;
}

type Measured = { value: number | null; note?: string };

const NOT_MEASURED = 'not measured';

function phaseValue(metric: Metric, phase: PhaseName | 'all', m: DrillMetrics): Measured {
  const stats = phase === 'all' ? m.phases : m.phases.filter((p) => p.phase === phase);
  if (stats.length === 0) return { value: null, note: `${NOT_MEASURED}: the drill had no ${phase} phase` };
  const sum = (pick: (p: PhaseStats) => number) => stats.reduce((n, p) => n + pick(p), 0);
  const requests = sum((p) => p.requests);
  switch (metric) {
    case 'success_rate':
    case 'failure_rate': {
      if (requests === 0) return { value: null, note: `${NOT_MEASURED}: no requests in phase ${phase}` };
      const ok = sum((p) => p.ok);
      // Anything not ok counts against the rate: a timed-out write is not a success either.
      return { value: metric === 'success_rate' ? ok / requests : (requests - ok) / requests };
    }
    case 'failed_requests':
      return { value: sum((p) => p.failed) };
    case 'failed_idempotent_requests':
      return { value: sum((p) => p.failedIdempotent) };
    case 'unknown_outcome_requests':
      return { value: sum((p) => p.unknown) };
    case 'latency_p50':
    case 'latency_p99':
    case 'latency_max': {
      const key = metric === 'latency_p50' ? 'p50' : metric === 'latency_p99' ? 'p99' : 'max';
      if (phase === 'all' && m.overall) {
        const v = m.overall.latencyMs[key];
        return v === null ? { value: null, note: `${NOT_MEASURED}: no latencies recorded` } : { value: v };
      }
      const values = stats.map((p) => p.latencyMs[key]).filter((v): v is number => v !== null);
      if (values.length === 0) return { value: null, note: `${NOT_MEASURED}: no latencies recorded` };
      const value = Math.max(...values);
      return stats.length > 1 && key !== 'max'
        ? { value, note: 'upper bound: the highest of the phases' }
        : { value };
    }
    default:
      throw new Error(`not a request metric: ${metric}`);
  }
}

function drillWideValue(metric: Metric, m: DrillMetrics): Measured {
  const orNull = (v: number | null, what: string): Measured =>
    v === null ? { value: null, note: `${NOT_MEASURED}: ${what}` } : { value: v };
  const signals = (v: number | null): Measured =>
    !m.signals.complete
      ? { value: v, note: 'incomplete: a collector could not be queried' }
      : orNull(v, 'no signals');
  switch (metric) {
    case 'time_to_detect':
      return orNull(m.failover.timeToDetectMs, 'no failure was detected');
    case 'time_to_failover':
      return orNull(m.failover.timeToFailoverMs, 'traffic never moved');
    case 'time_to_failback':
      return orNull(m.failover.timeToFailbackMs, 'traffic never returned');
    case 'route_flaps':
      return { value: m.failover.routeFlaps };
    case 'duplicate_side_effects':
      return { value: m.writes.duplicateSideEffects };
    case 'config_staleness_max':
      return orNull(m.config.stalenessMaxMs, 'no proxy reported its config age');
    case 'signals_lost':
      return signals(m.signals.lost);
    case 'signals_duplicated':
      return signals(m.signals.duplicated);
    case 'signals_max_delay':
      return signals(m.signals.maxDelayMs);
    default:
      throw new Error(`not a drill-wide metric: ${metric}`);
  }
}

/**
 * Picks the measured value of `check.metric` (over `check.phase` for request metrics) and compares
 * it with the limits. A value that could not be measured fails: a drill that could not see
 * something has not shown it holds. Signal figures from an incomplete collection fail too.
 */
export function evaluateExpectation(check: MetricCheck, metrics: DrillMetrics): ExpectationResult {
  const unit = METRIC_UNITS[check.metric];
  const phaseMetric = isPhaseMetric(check.metric);
  const phase = phaseMetric ? (check.phase ?? 'all') : undefined;
  const measured =
    phase !== undefined ? phaseValue(check.metric, phase, metrics) : drillWideValue(check.metric, metrics);
  const { value } = measured;
  const within =
    value !== null &&
    (check.min === undefined || value >= check.min) &&
    (check.max === undefined || value <= check.max);
  const incomplete = measured.note?.startsWith('incomplete') === true;
  return {
    metric: check.metric,
    ...(phase !== undefined && { phase }),
    ...(check.min !== undefined && { min: check.min }),
    ...(check.max !== undefined && { max: check.max }),
    actual: value,
    unit,
    pass: within && !incomplete,
    ...(measured.note !== undefined && { note: measured.note }),
  };
}
