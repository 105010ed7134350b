import type { Locality } from '../model/locality.js';

/**
 * A place a request can be sent: an instance of a service in the caller's own region, or the
 * gateway of another region (which then balances over that region's instances).
 */
export interface Endpoint {
  /** Stable identity, unique per service, e.g. `127.0.1.5:8080`. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly locality: Locality;
  /** Relative weight within its locality (default 1). */
  readonly weight: number;
  /** `instance`: an app instance reached directly; `gateway`: a remote region's gateway. */
  readonly kind: 'instance' | 'gateway';
}

/** How an attempt against an endpoint ended, as the balancer and detectors see it. */
export type AttemptOutcome =
  { ok: true; latencyMs: number } | { ok: false; latencyMs: number; failure: FailureKind };

/**
 * Failure classes. `connect-failure`: refused, unreachable or connect timeout (nothing was sent);
 * `reset`: the connection broke before the response headers; `timeout`: no response headers in
 * the per-try time; `status`: a 5xx response (the app answered, but with an error).
 */
export type FailureKind = 'connect-failure' | 'reset' | 'timeout' | 'status';
