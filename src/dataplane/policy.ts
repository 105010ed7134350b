import { parseDurationMs, parseSizeBytes } from '../core/units.js';
import type { EffectiveTraffic } from '../model/settings.js';

/**
 * Traffic settings of one route compiled for the request path: durations in ms, sizes in bytes,
 * lists as sets. Built once per configuration, never per request.
 */
export interface RoutePolicy {
  readonly source: EffectiveTraffic;
  readonly connectMs: number;
  readonly perTryMs: number;
  readonly overallMs: number;
  readonly propagateDeadline: boolean;
  readonly maxAttempts: number;
  readonly retryOn: ReadonlySet<string>;
  readonly retryOnStatus: ReadonlySet<number>;
  readonly nonIdempotent: 'never' | 'with-idempotency-key';
  readonly differentLocality: 'never' | 'on-connect-failure' | 'always';
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly hedging: { enabled: boolean; afterQuantile: number; minDelayMs: number; maxHedges: number };
  readonly fault: { delayRatio: number; delayMs: number; abortRatio: number; abortStatus: number };
  readonly staleIfError: {
    enabled: boolean;
    maxAgeMs: number;
    maxEntries: number;
    maxBytes: number;
    maxEntryBytes: number;
  };
  readonly staticFallback: { enabled: boolean; status: number; contentType: string; body: string };
  readonly consistency: 'eventual' | 'strong';
  readonly maxStalenessMs: number;
  readonly degradationFlags: readonly string[];
}

export function compilePolicy(t: EffectiveTraffic): RoutePolicy {
  const ms = parseDurationMs;
  return {
    source: t,
    connectMs: ms(t.timeouts.connect),
    perTryMs: ms(t.timeouts.perTry),
    overallMs: ms(t.timeouts.overall),
    propagateDeadline: t.timeouts.propagate,
    maxAttempts: t.retries.maxAttempts,
    retryOn: new Set(t.retries.retryOn),
    retryOnStatus: new Set(t.retries.retryOnStatusCodes),
    nonIdempotent: t.retries.nonIdempotent,
    differentLocality: t.retries.differentLocality,
    backoffBaseMs: ms(t.retries.backoff.base),
    backoffMaxMs: ms(t.retries.backoff.max),
    hedging: {
      enabled: t.hedging.enabled,
      afterQuantile: t.hedging.afterQuantile,
      minDelayMs: ms(t.hedging.minDelay),
      maxHedges: t.hedging.maxHedges,
    },
    fault: {
      delayRatio: t.faultInjection.delay.ratio,
      delayMs: ms(t.faultInjection.delay.duration),
      abortRatio: t.faultInjection.abort.ratio,
      abortStatus: t.faultInjection.abort.status,
    },
    staleIfError: {
      enabled: t.fallback.staleIfError.enabled,
      maxAgeMs: ms(t.fallback.staleIfError.maxAge),
      maxEntries: t.fallback.staleIfError.maxEntries,
      maxBytes: parseSizeBytes(t.fallback.staleIfError.maxBytes),
      maxEntryBytes: parseSizeBytes(t.fallback.staleIfError.maxEntryBytes),
    },
    staticFallback: { ...t.fallback.static },
    consistency: t.consistency.mode,
    maxStalenessMs: ms(t.consistency.maxStaleness),
    degradationFlags: t.degradation.flags,
  };
}

/** Whether a response status should be retried under this policy. */
export function retryableStatus(policy: RoutePolicy, status: number): boolean {
  if (policy.retryOnStatus.has(status)) return true;
  if (status >= 500 && policy.retryOn.has('5xx')) return true;
  return (status === 502 || status === 503 || status === 504) && policy.retryOn.has('gateway-error');
}
