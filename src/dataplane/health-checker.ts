import http from 'node:http';
import { parseDurationMs } from '../core/units.js';
import type { Random } from '../core/random.js';
import type { EffectiveTraffic } from '../model/settings.js';
import type { Endpoint } from './endpoint.js';

/** Marks the health checks' requests, so the proxies they reach keep them out of telemetry. */
export const HEALTH_CHECK_HEADER = 'isthmus-health-check';

interface Target {
  endpoint: Endpoint;
  consecutiveOk: number;
  consecutiveFail: number;
  healthy: boolean;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Active health checks for one destination: a GET of `healthChecks.path` on each endpoint every
 * `interval` (±10% jitter, so checks of many proxies do not line up), marking it unhealthy after
 * `unhealthyThreshold` failures and healthy again after `healthyThreshold` passes. A check passes
 * on any response below `unhealthyStatusMin`, so an app without the path still proves it is alive.
 */
export class HealthChecker {
  readonly #targets = new Map<string, Target>();
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  #stopped = false;

  constructor(
    private readonly settings: EffectiveTraffic['healthChecks'],
    endpoints: readonly Endpoint[],
    private readonly onChange: (endpointId: string, healthy: boolean) => void,
    private readonly random: Random,
    /** Round trip of each passing check (connect + request to response headers), ms. */
    private readonly onRtt?: (endpointId: string, rttMs: number) => void,
  ) {
    this.#intervalMs = parseDurationMs(settings.interval);
    this.#timeoutMs = parseDurationMs(settings.timeout);
    for (const endpoint of endpoints) {
      this.#targets.set(endpoint.id, {
        endpoint,
        consecutiveOk: 0,
        consecutiveFail: 0,
        healthy: true,
        timer: undefined,
      });
    }
  }

  start(): void {
    if (!this.settings.enabled) return;
    for (const t of this.#targets.values()) this.#schedule(t, this.random.next() * this.#intervalMs);
  }

  #schedule(t: Target, delayMs: number): void {
    if (this.#stopped) return;
    t.timer = setTimeout(() => void this.#check(t), delayMs);
    t.timer.unref();
  }

  async #check(t: Target): Promise<void> {
    const { address, port } = t.endpoint;
    const host = address;
    const startedMs = performance.now();
    let rttMs = 0;
    const ok = await new Promise<boolean>((resolve) => {
      // node:http is enough for a probe every few seconds; the request path's pools stay untouched.
      const req = http.get(
        {
          host,
          port,
          path: this.settings.path,
          headers: { 'user-agent': 'isthmus-health-check', [HEALTH_CHECK_HEADER]: '1' },
          timeout: this.#timeoutMs,
          agent: false,
        },
        (res) => {
          rttMs = performance.now() - startedMs;
          res.resume();
          resolve((res.statusCode ?? 600) < this.settings.unhealthyStatusMin);
        },
      );
      req.once('timeout', () => req.destroy(new Error('health check timed out')));
      req.once('error', () => resolve(false));
    });
    if (this.#stopped) return;
    if (ok) {
      this.onRtt?.(t.endpoint.id, rttMs);
      t.consecutiveOk++;
      t.consecutiveFail = 0;
      if (!t.healthy && t.consecutiveOk >= this.settings.healthyThreshold) {
        t.healthy = true;
        this.onChange(t.endpoint.id, true);
      }
    } else {
      t.consecutiveFail++;
      t.consecutiveOk = 0;
      if (t.healthy && t.consecutiveFail >= this.settings.unhealthyThreshold) {
        t.healthy = false;
        this.onChange(t.endpoint.id, false);
      }
    }
    this.#schedule(t, this.#intervalMs * (0.9 + 0.2 * this.random.next()));
  }

  /** Endpoint id → whether its checks currently pass. */
  states(): Record<string, boolean> {
    return Object.fromEntries([...this.#targets].map(([id, t]) => [id, t.healthy]));
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#targets.values()) clearTimeout(t.timer);
  }
}
