import { parseDurationMs } from '../../core/units.js';
import type { EffectiveTraffic } from '../../model/settings.js';

/** Outlier-detection settings with durations in milliseconds (see `outlierDetection` in settings). */
export interface OutlierConfig {
  /** Consecutive failed attempts that eject an endpoint; 0 turns this off. */
  readonly consecutiveFailures: number;
  /** Period of the success-rate and latency analysis, ms. */
  readonly intervalMs: number;
  /** Length of a first ejection, ms; the n-th consecutive one lasts n × this. */
  readonly baseEjectionMs: number;
  /** Upper bound of one ejection, ms. */
  readonly maxEjectionMs: number;
  /** Most of a locality's endpoints that may be ejected at once, 0..1. */
  readonly maxEjectedRatio: number;
  readonly successRate: {
    readonly enabled: boolean;
    /** Attempts an endpoint needs in an interval to be judged. */
    readonly minRequests: number;
    /** Judged endpoints a locality needs before any is judged (also used by the latency detector). */
    readonly minEndpoints: number;
    /** Eject below mean − stdevFactor × stdev of the locality's success rates. */
    readonly stdevFactor: number;
  };
  readonly latency: {
    readonly enabled: boolean;
    /** Eject when the smoothed latency exceeds factor × the locality median. */
    readonly factor: number;
    /** Latencies below this are never outliers, ms. */
    readonly minLatencyMs: number;
    /** Latency samples an endpoint needs in an interval to be judged. */
    readonly minRequests: number;
  };
}

/** Region-health and failback settings with durations in milliseconds. */
export interface RegionHealthConfig {
  /** Score (0..1) below which a region is ejected once it stayed there `ejectAfterMs`. */
  readonly ejectBelow: number;
  /** Score (0..1) above which an ejected region is readmitted once it stayed there `readmitAfterMs`. */
  readonly readmitAbove: number;
  /** How long the score must stay below `ejectBelow`, ms. */
  readonly ejectAfterMs: number;
  /** How long the score must stay above `readmitAbove`, ms (doubled per flap beyond `maxFlaps`). */
  readonly readmitAfterMs: number;
  /** Rolling window of the success rate, ms. */
  readonly windowMs: number;
  /** Window in which ejections count as flaps, ms. */
  readonly flapWindowMs: number;
  /** Flaps in `flapWindowMs` after which each further readmission wait doubles. */
  readonly maxFlaps: number;
  /** Ramp time of a readmitted region's weight up to full, ms (0 = at once). */
  readonly slowStartMs: number;
  /** Weight multiplier (0..1) a readmitted region starts its ramp with. */
  readonly initialWeight: number;
}

/** Everything the balancer reads from the traffic settings, parsed once. */
export interface BalancerConfig {
  readonly outlier: OutlierConfig;
  readonly region: RegionHealthConfig;
  /** A tier keeps all its traffic while healthy share × this ≥ 1 (≥ 1). */
  readonly overprovisioningFactor: number;
  /** Normalized total health (0..1) below which the balancer panics. */
  readonly panicThreshold: number;
}

/** The parts of the effective traffic settings the balancer uses. */
export type BalancerSettings = Pick<EffectiveTraffic, 'outlierDetection' | 'localityFailover'>;

/** Parses the durations of the balancer's settings once, so the hot path only sees numbers. */
export function resolveBalancerConfig(settings: BalancerSettings): BalancerConfig {
  const od = settings.outlierDetection;
  const lf = settings.localityFailover;
  const rh = lf.regionHealth;
  return Object.freeze({
    outlier: Object.freeze({
      consecutiveFailures: od.consecutiveFailures,
      intervalMs: parseDurationMs(od.interval),
      baseEjectionMs: parseDurationMs(od.baseEjectionTime),
      maxEjectionMs: parseDurationMs(od.maxEjectionTime),
      maxEjectedRatio: od.maxEjectedRatio,
      successRate: Object.freeze({ ...od.successRate }),
      latency: Object.freeze({
        enabled: od.latency.enabled,
        factor: od.latency.factor,
        minLatencyMs: parseDurationMs(od.latency.minLatency),
        minRequests: od.latency.minRequests,
      }),
    }),
    region: Object.freeze({
      ejectBelow: rh.ejectBelow,
      readmitAbove: rh.readmitAbove,
      ejectAfterMs: parseDurationMs(rh.ejectAfter),
      readmitAfterMs: parseDurationMs(rh.readmitAfter),
      windowMs: parseDurationMs(rh.window),
      flapWindowMs: parseDurationMs(rh.flapWindow),
      maxFlaps: rh.maxFlaps,
      slowStartMs: parseDurationMs(lf.failback.slowStart),
      initialWeight: lf.failback.initialWeight,
    }),
    overprovisioningFactor: lf.overprovisioningFactor,
    panicThreshold: lf.panicThreshold,
  });
}
