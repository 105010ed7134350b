import type { ProxyRequest, ProxyResponse } from '../protocol/http1/server.js';
import type { Clock } from '../core/clock.js';
import { fastRandom, type Random } from '../core/random.js';
import { randomUuid } from '../core/uuid.js';
import type { Locality } from '../model/locality.js';
import type { EffectiveTelemetry } from '../model/settings.js';
import {
  applyThreshold,
  samplerOptions,
  thresholdTraceState,
  ServiceSamplers,
  type AdaptiveSampler,
  type SamplingDecision,
} from '../telemetry/sampling.js';
import type { AccessLogFacts } from '../telemetry/access-log-binary.js';
import type { MetricPoint, TelemetrySource } from '../telemetry/source.js';
import {
  newSpanId,
  newTraceId,
  nextTraceparent,
  OT_KEY,
  parseTraceparent,
  parseTracestate,
  TRACE_FLAG_SAMPLED,
  TraceState,
} from '../telemetry/trace-context.js';
import { H } from './http/headers.js';
import type { HopOutcome } from './outbound.js';
import type { Histogram, Stats } from './stats.js';

/**
 * Request telemetry of one proxy: W3C trace propagation, one span per hop (sampled), an access
 * log record per request and per-hop metrics, all handed to a {@link TelemetrySource}. It exists
 * only when the bootstrap turns telemetry on; otherwise the proxy never calls into it.
 *
 * Per request it costs: the traceparent parse, one sampling decision, two random ids, one small
 * state object, one `close` listener (a shared function, not a closure) and, after the response,
 * the access-log record. A sampled (or forced) request's span is not built here: its record
 * carries the facts the span adds, and the collector makes the span of it.
 */

/** Latency buckets, seconds (Prometheus convention); 11 buckets keep the series count small. */
export const LATENCY_BOUNDS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** Past this many (service, peer region) series, new combinations are counted under `other`. */
const MAX_SERIES = 1000;
const OTHER = 'other';

export type HopKind = 'server' | 'client';

interface SeriesHandles {
  service: string;
  peerRegion: string;
  requests: number;
  errors: number;
  histogram: Histogram;
  requestsCounter: { inc(by?: number): void };
  errorsCounter: { inc(by?: number): void };
}

/**
 * What one request carries from its start to its end. It is also the request's outcome slot
 * (client and gateway hops), which serveOutbound fills in, and, once the request ended, the facts
 * its access-log record is written from: one object a request.
 */
class Hop implements HopOutcome, AccessLogFacts {
  // Set by finish, for the record.
  durationUs = 0;
  status = 0;
  completed = false;
  attemptCount = -1;
  sampled = false;
  forced = false;
  adjustedCount = -1;
  method = 'GET';
  path: string | undefined = undefined;
  authority: string | undefined = undefined;
  client: string | undefined = undefined;
  userAgent: string | undefined = undefined;
  // The outcome, set by serveOutbound.
  route = '';
  attempts = 0;
  servedBy: string | undefined = undefined;
  peerRegion: string | undefined = undefined;
  failover: string | undefined = undefined;
  fallback: string | undefined = undefined;

  constructor(
    readonly telemetry: ProxyTelemetry,
    readonly req: ProxyRequest,
    readonly kind: HopKind,
    readonly listener: string,
    readonly service: string,
    readonly sampler: AdaptiveSampler,
    readonly decision: SamplingDecision,
    readonly traceId: string,
    readonly spanId: string,
    readonly parentSpanId: string | undefined,
    readonly traceState: string | undefined,
    readonly requestId: string,
    readonly startWallMs: number,
    readonly startMonoMs: number,
    /** Whether the hop is an outcome slot (begin returned it); an inbound hop is not. */
    readonly withOutcome: boolean,
  ) {}
}

/** The `close` listener of every traced response: shared, so no closure is made per request. */
function onResponseClose(this: ProxyResponse): void {
  const hop = this.handlerState;
  if (hop instanceof Hop) {
    this.handlerState = undefined;
    hop.telemetry.finish(hop, this);
  }
}

export interface ProxyTelemetryOptions {
  source: TelemetrySource;
  clock: Clock;
  random: Random;
  locality: Locality;
  stats: Stats;
  /** Merged telemetry settings of a service (or of the mesh for `undefined`); undefined without a configuration. */
  settings(service: string | undefined): EffectiveTelemetry | undefined;
  /** Interval of metrics batches written to the pipeline, ms. */
  metricsIntervalMs: number;
}

const DEFAULT_SAMPLING: EffectiveTelemetry['sampling'] = {
  tracesPerSecond: 10,
  minRatio: 0.001,
  keepErrors: true,
  keepSlowerThan: '1s',
};

export class ProxyTelemetry {
  readonly source: TelemetrySource;
  readonly #clock: Clock;
  /** Where trace and span ids come from. */
  readonly #random: Random;
  readonly #region: string;
  readonly #zone: string;
  readonly #stats: Stats;
  readonly #samplers: ServiceSamplers;
  /** Metric handles by service, then peer region. */
  readonly #series = new Map<string, Map<string, SeriesHandles>>();
  #seriesCount = 0;
  readonly #startWallMs: number;
  readonly #timer: NodeJS.Timeout;

  constructor(options: ProxyTelemetryOptions) {
    this.source = options.source;
    this.#clock = options.clock;
    // Ids take six draws a request: from a fast generator, seeded from the proxy's (deterministic
    // when that is seeded).
    this.#random = fastRandom(options.random);
    this.#region = options.locality.region;
    this.#zone = options.locality.zone ?? '';
    this.#stats = options.stats;
    this.#samplers = new ServiceSamplers(options.clock, (service) =>
      samplerOptions(options.settings(service)?.sampling ?? DEFAULT_SAMPLING),
    );
    this.#startWallMs = options.clock.now();
    this.#timer = setInterval(() => this.exportMetrics(), options.metricsIntervalMs);
    this.#timer.unref();
  }

  /** After a configuration change: samplers re-read their settings. */
  reconfigure(): void {
    this.#samplers.reconfigure();
  }

  /**
   * Starts a hop: continues or starts the trace, decides sampling, and rewrites the request's
   * `traceparent`/`tracestate` (and fills in a missing `x-request-id`) so that the listener's
   * forwarding code, which copies the request headers, sends this hop's span as the parent.
   * Returns the outcome slot to pass to serveOutbound (client and gateway hops).
   */
  begin(
    req: ProxyRequest,
    res: ProxyResponse,
    kind: HopKind,
    listener: string,
    service: string,
    withOutcome: boolean,
  ): HopOutcome | undefined {
    const headers = req.headers;
    const parent = headers.traceparent === undefined ? undefined : parseTraceparent(headers.traceparent);
    let state: TraceState | undefined;
    let traceId: string;
    if (parent) {
      traceId = parent.traceId;
      if (headers.tracestate !== undefined) state = parseTracestate(headers.tracestate);
    } else traceId = newTraceId(this.#random);
    const sampler = this.#samplers.get(service);
    const decision = sampler.decide({
      traceId,
      isRoot: parent === undefined,
      parentSampled: parent !== undefined && (parent.flags & TRACE_FLAG_SAMPLED) !== 0,
      tracestate: state,
    });
    const spanId = newSpanId(this.#random);
    let traceState: string | undefined;
    if (state === undefined && decision.threshold !== undefined) {
      // The common case of a sampled request that came without tracestate: the `ot` entry alone,
      // as the general path below would format it.
      traceState = thresholdTraceState(decision.threshold);
      headers.tracestate = traceState;
    } else {
      if (decision.threshold !== undefined || state?.has(OT_KEY)) {
        state ??= new TraceState();
        applyThreshold(state, decision.threshold);
      }
      if (state !== undefined && state.size > 0) {
        state.truncate();
        traceState = state.format();
        headers.tracestate = traceState;
      } else delete headers.tracestate;
    }
    headers.traceparent = nextTraceparent(traceId, spanId, decision.sampled, parent?.flags);
    let requestId = headers[H.requestId];
    if (typeof requestId !== 'string') {
      requestId = randomUuid();
      headers[H.requestId] = requestId;
    }
    const hop = new Hop(
      this,
      req,
      kind,
      listener,
      service,
      sampler,
      decision,
      traceId,
      spanId,
      parent?.parentId,
      traceState,
      requestId,
      this.#clock.now(),
      this.#clock.monotonicMs(),
      withOutcome,
    );
    res.handlerState = hop;
    // Not `once`: a response closes once, and `once` costs a bound wrapper per request.
    res.on('close', onResponseClose);
    return withOutcome ? hop : undefined;
  }

  #handles(service: string, peerRegion: string): SeriesHandles {
    // By service, then peer region: no key string to build and hash per request.
    let byPeer = this.#series.get(service);
    let h = byPeer?.get(peerRegion);
    if (h) return h;
    // Past the bound, new combinations share one series (made even then, once).
    if (this.#seriesCount >= MAX_SERIES && !(service === OTHER && peerRegion === OTHER))
      return this.#handles(OTHER, OTHER);
    const labels = { service, peer_region: peerRegion };
    h = {
      service,
      peerRegion,
      requests: 0,
      errors: 0,
      histogram: this.#stats.histogram(
        'isthmus_hop_duration_seconds',
        'Duration of requests through this proxy, by service and peer region, seconds.',
        LATENCY_BOUNDS_S,
        labels,
      ),
      requestsCounter: this.#stats.counter(
        'isthmus_hop_requests_total',
        'Requests through this proxy (every listener), by service and peer region.',
        labels,
      ),
      errorsCounter: this.#stats.counter(
        'isthmus_hop_errors_total',
        'Requests answered 5xx or not completed, by service and peer region.',
        labels,
      ),
    };
    if (!byPeer) this.#series.set(service, (byPeer = new Map<string, SeriesHandles>()));
    byPeer.set(peerRegion, h);
    this.#seriesCount++;
    return h;
  }

  /** Ends a hop once its response is done (or the connection closed first). */
  finish(hop: Hop, res: ProxyResponse): void {
    const endMono = this.#clock.monotonicMs();
    const durationMs = endMono - hop.startMonoMs;
    const status = res.statusCode;
    const completed = res.writableFinished;
    const error = !completed || status >= 500;
    const o = hop.withOutcome ? hop : undefined;
    const peerRegion = o?.peerRegion ?? '';
    const h = this.#handles(hop.service, peerRegion);
    h.requests++;
    h.requestsCounter.inc();
    if (error) {
      h.errors++;
      h.errorsCounter.inc();
    }
    h.histogram.observe(durationMs / 1000);

    const final = hop.sampler.keepAnyway(hop.decision, { error, durationMs });
    const req = hop.req;
    const headers = req.headers;
    // Every request gets an access-log record, sampled or not (logs are the complete record),
    // written from the hop in the compact form (telemetry/access-log-binary.ts). A sampled
    // request's record also carries what its span adds, and the collector makes the OTLP span of
    // it: one record per request either way.
    hop.durationUs = Math.round(durationMs * 1000);
    hop.status = status;
    hop.completed = completed;
    if (hop.withOutcome) hop.attemptCount = hop.attempts;
    hop.method = req.method ?? 'GET';
    hop.path = req.url;
    hop.authority = headers.host;
    hop.client = req.socket.remoteAddress;
    hop.userAgent = headers['user-agent'];
    if (final.sampled) {
      hop.sampled = true;
      hop.forced = final.forced;
      hop.adjustedCount = final.adjustedCount ?? -1;
    }
    this.source.accessLogRecord(hop);
  }

  /** Writes one metrics batch (cumulative since start) to the pipeline. */
  exportMetrics(): void {
    if (this.#series.size === 0) return;
    const now = this.#clock.now();
    const start = this.#startWallMs;
    const points: MetricPoint[] = [];
    for (const byPeer of this.#series.values())
      for (const h of byPeer.values()) {
        const attributes = {
          region: this.#region,
          zone: this.#zone,
          service: h.service,
          peer_region: h.peerRegion,
        };
        points.push(
          {
            kind: 'sum',
            name: 'isthmus.hop.requests',
            unit: '{request}',
            startTimeMs: start,
            timeMs: now,
            value: h.requests,
            attributes,
          },
          {
            kind: 'sum',
            name: 'isthmus.hop.errors',
            unit: '{request}',
            startTimeMs: start,
            timeMs: now,
            value: h.errors,
            attributes,
          },
          {
            kind: 'histogram',
            name: 'isthmus.hop.duration',
            unit: 's',
            startTimeMs: start,
            timeMs: now,
            count: h.histogram.series.count,
            sum: h.histogram.series.sum,
            explicitBounds: h.histogram.series.bounds,
            bucketCounts: [...h.histogram.series.buckets],
            attributes,
          },
        );
      }
    this.source.metrics(points);
  }

  /** Sets the pipeline's gauges (at scrape time, so requests do no work for them). */
  scrape(): void {
    const s = this.source.stats();
    const set = (name: string, help: string, value: number) => this.#stats.set(name, help, {}, value);
    set(
      'isthmus_telemetry_signals',
      'Telemetry signals since start: spans, log records, access-log records, metrics batches.',
      s.signals,
    );
    set(
      'isthmus_telemetry_emitted_records',
      'Telemetry records written to the log since start (access-log records go in batches, one record each).',
      s.emitted,
    );
    set('isthmus_telemetry_emitted_bytes', 'Bytes written to the telemetry log since start.', s.emittedBytes);
    set(
      'isthmus_telemetry_shipped_records',
      'Telemetry records the collector stored since start.',
      s.shipped,
    );
    set(
      'isthmus_telemetry_backlog_records',
      'Telemetry records in the log not shipped yet.',
      s.backlogRecords,
    );
    set(
      'isthmus_telemetry_backlog_bytes',
      'Bytes of telemetry records in the log not shipped yet.',
      s.backlogBytes,
    );
    set('isthmus_telemetry_ship_failures', 'Failed exports to the collector since start.', s.shipFailures);
    set(
      'isthmus_telemetry_unclean_start',
      '1 when the telemetry log was left by a process that did not close it (killed or crashed): access-log records it held in memory were lost without a count.',
      this.source.wal.previousOwner ? 1 : 0,
    );
    set(
      'isthmus_telemetry_rejected_records',
      'Telemetry records the collector refused as malformed since start: skipped so the rest ships, and lost.',
      s.rejected,
    );
    set(
      'isthmus_telemetry_dropped_records',
      'Telemetry records lost since start (log full with drop-oldest, corrupt, torn).',
      s.dropped.full.records + s.dropped.corrupt.records + s.dropped.torn.records,
    );
    // The same losses in signals: a record of the log can hold a hundred access-log records.
    for (const [reason, value] of Object.entries(this.source.lostSignals()))
      this.#stats.set(
        'isthmus_telemetry_lost_signals',
        'Telemetry signals (spans, log records, access-log records, metrics batches) lost since start, by reason: full (log full with drop-oldest), corrupt, torn (found in the log), rejected (refused by the collector).',
        { reason },
        value,
      );
  }

  /** Writes a last metrics batch, tries to ship what is pending for up to `flushMs`, and closes the log. */
  async close(flushMs = 2000): Promise<void> {
    clearInterval(this.#timer);
    this.exportMetrics();
    await this.source.flush(flushMs);
    await this.source.close();
  }
}
