import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import { FullJitterBackoff } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { followStream } from '../core/stream-events.js';
import type { Random } from '../core/random.js';
import { randomUuid } from '../core/uuid.js';
import { formatLocality, type Locality } from '../model/locality.js';
import type { Balancer, Destination, Picked } from './destination.js';
import type { FailureKind } from './endpoint.js';
import {
  appendHeader,
  endToEnd,
  first,
  forwardedFor,
  H,
  IDEMPOTENT_METHODS,
  SAFE_METHODS,
} from './http/headers.js';
import type { ProxyRequest, ProxyResponse } from '../protocol/http1/server.js';
import { relay } from './http/relay.js';
import type { AttemptResult, CancelSlot } from './http/upstream.js';
import { retryableStatus, type RoutePolicy } from './policy.js';
import { ShedError } from './resilience/bulkhead.js';
import type { Stats } from './stats.js';

/** What the request path needs from the proxy around it. */
export interface OutboundContext {
  clock: Clock;
  random: Random;
  stats: Stats;
  locality: Locality;
  /** Bodies up to this size are buffered so the request can be retried. */
  maxRetryBodyBytes: number;
  /** `Via` token of this proxy, e.g. `1.1 isthmus-frontend-1`. */
  via: string;
  /** Deadline (monotonic ms) inherited from an inbound request with the same request id, if any. */
  inheritedDeadline(requestId: string): number | undefined;
}

/** Error answers carry a machine-readable code in `isthmus-error` and a JSON body. */
export function sendError(
  res: ProxyResponse,
  status: number,
  code: string,
  message: string,
  extra: Record<string, unknown> = {},
  headers: OutgoingHttpHeaders = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: code, message, ...extra });
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    [H.error]: code,
  });
  res.end(body);
}

const STATUS_CLASS: Record<number, string> = { 1: '1xx', 2: '2xx', 3: '3xx', 4: '4xx', 5: '5xx' };

/** `region/zone` of an endpoint, computed once per endpoint. */
const localityText = new WeakMap<object, string>();
function servedBy(picked: Picked): string {
  let text = localityText.get(picked.endpoint);
  if (text === undefined) {
    text = formatLocality(picked.endpoint.locality);
    localityText.set(picked.endpoint, text);
  }
  return text;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Reads a request body for retries: whole when it is at most `limit` bytes, otherwise a stream
 * that replays what was read and continues with the rest (and the request is not retryable).
 */
function readBody(req: ProxyRequest, limit: number): Promise<{ buffered: Buffer } | { stream: Readable }> {
  // Events, not `for await`: leaving a for-await loop early destroys the stream it reads.
  const body = req.body;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = followStream(body, {
      data(chunk) {
        size += chunk.length;
        chunks.push(chunk);
        if (size <= limit) return;
        stop();
        body.pause();
        const rest = new PassThrough();
        for (const c of chunks) rest.write(c);
        body.pipe(rest);
        resolve({ stream: rest });
      },
      end: () => resolve({ buffered: Buffer.concat(chunks, size) }),
      error: reject,
    });
  });
}

function hasBody(req: ProxyRequest): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

type Failure = { kind: FailureKind | 'no-endpoint'; detail: string; status?: number };

/**
 * How an outbound request was served, filled in for telemetry when the caller passes one (the
 * response headers carry the same facts, but Node does not keep headers given to writeHead).
 */
export interface HopOutcome {
  route: string;
  attempts: number;
  /** `region/zone` (or the gateway's more precise answer) of the endpoint that answered. */
  servedBy: string | undefined;
  /** Region of the endpoint that answered (a gateway's region for another region). */
  peerRegion: string | undefined;
  /** `failover:pN` or `panic` when a lower-priority tier answered. */
  failover: string | undefined;
  /** `stale` or `static` when a fallback answered. */
  fallback: string | undefined;
}

/**
 * Serves one outbound request to a mesh destination: deadline → limits → attempts (balancer
 * pick, upstream pool, retry decision) → response or fallback. Every decision shows in the
 * response headers and the stats.
 */
export async function serveOutbound(
  ctx: OutboundContext,
  dest: Destination,
  req: ProxyRequest,
  res: ProxyResponse,
  target: { path: string; authority: string },
  outcome?: HopOutcome,
): Promise<void> {
  const { clock, stats } = ctx;
  const method = req.method ?? 'GET';
  const route = dest.routes.match(method, target.path);
  const policy = dest.policy(route);
  const labels = dest.labels(route);
  if (outcome) outcome.route = labels.route;
  dest.counter(stats, 'isthmus_requests_total', 'Requests received per destination and route.', labels).inc();

  const requestId = first(req.headers[H.requestId]) ?? randomUuid();
  const start = clock.monotonicMs();
  let deadline = start + policy.overallMs;
  const inherited = ctx.inheritedDeadline(requestId);
  if (inherited !== undefined && inherited < deadline) deadline = inherited;
  const fromApp = Number(first(req.headers[H.deadline]));
  if (Number.isInteger(fromApp) && fromApp >= 0 && start + fromApp < deadline) deadline = start + fromApp;

  // Fault injection comes first: a drill's abort must look like the destination failing.
  const { fault } = policy;
  if (fault.abortRatio > 0 && ctx.random.next() < fault.abortRatio) {
    stats.inc('isthmus_fault_injected_total', 'Faults injected.', { ...labels, fault: 'abort' });
    sendError(res, fault.abortStatus, 'fault-injected', 'aborted by fault injection');
    return;
  }
  if (fault.delayRatio > 0 && ctx.random.next() < fault.delayRatio) {
    stats.inc('isthmus_fault_injected_total', 'Faults injected.', { ...labels, fault: 'delay' });
    await sleep(Math.min(fault.delayMs, Math.max(0, deadline - clock.monotonicMs())));
  }

  const balancer = dest.balancerFor(policy);
  if (!balancer) {
    sendError(
      res,
      503,
      'home-region-unavailable',
      `${dest.name} has no home region endpoints for a strong route`,
    );
    return;
  }

  // The client going away cancels queued and in-flight work. A slot, not an AbortSignal: this
  // runs for every request and an event target per request is measurable.
  const cancel: CancelSlot = {};
  let gone = false;
  let queued: AbortController | undefined;
  const onClose = () => {
    if (res.writableFinished) return;
    gone = true;
    const err = new Error('client closed the connection');
    queued?.abort(err);
    cancel.abort?.(err);
  };
  res.once('close', onClose);

  let release: (() => void) | undefined = dest.bulkhead.tryAcquire();
  try {
    if (!release) {
      queued = new AbortController();
      release = await dest.bulkhead.acquire(queued.signal);
      queued = undefined;
    }
  } catch (err) {
    if (err instanceof ShedError) {
      stats.inc('isthmus_shed_total', 'Requests shed by a destination limit.', {
        ...labels,
        reason: err.reason,
      });
      sendError(
        res,
        503,
        'overloaded',
        err.message,
        { reason: err.reason },
        { 'retry-after': String(err.retryAfterSeconds) },
      );
    } else if (!res.headersSent) res.destroy();
    return;
  }

  try {
    // Budgets are ratios of original requests; retries and hedges never count as requests.
    dest.budget.recordRequest();
    dest.crossRegionBudget.recordRequest();
    const safe = IDEMPOTENT_METHODS.has(method);
    const keyed =
      req.headers['idempotency-key'] !== undefined && policy.nonIdempotent === 'with-idempotency-key';
    let retryable = (safe || keyed) && policy.maxAttempts > 1;
    let body: Buffer | Readable | null = null;
    if (hasBody(req)) {
      if (retryable) {
        const read = await readBody(req, ctx.maxRetryBodyBytes);
        if ('buffered' in read) body = read.buffered;
        else {
          body = read.stream;
          retryable = false;
        }
      } else body = req.body;
    }

    const headers = endToEnd(req.headers);
    headers[H.requestId] = requestId;
    delete headers[H.deadline];
    appendHeader(headers, 'via', ctx.via);
    appendHeader(headers, 'forwarded', forwardedFor(req.socket.remoteAddress, 'http', req.headers.host));

    let backoff: FullJitterBackoff | undefined;
    const tried = new Set<string>();
    let avoid: Locality | undefined;
    let lastFailure: Failure = { kind: 'no-endpoint', detail: 'no endpoint was tried' };
    let attempt = 0;
    let retryRelease: (() => void) | undefined;

    while (attempt < policy.maxAttempts) {
      const remaining = deadline - clock.monotonicMs();
      if (remaining <= 0) {
        lastFailure = { kind: 'timeout', detail: 'the request deadline passed' };
        break;
      }
      // Another endpoint is preferred for a retry, but with none left the same one may try again.
      let picked: Picked | undefined =
        balancer.pick(tried, avoid) ?? (attempt > 0 ? balancer.pick(new Set(), avoid) : undefined);
      if (!picked) {
        if (attempt === 0) lastFailure = { kind: 'no-endpoint', detail: 'no healthy endpoint' };
        break;
      }
      const first = picked.endpoint;
      // No retry is started that the remaining budget cannot finish: it would only add load.
      const expected = attempt > 0 ? balancer.expectedLatencyMs(first.id) : undefined;
      if (expected !== undefined && expected > remaining) {
        stats.inc(
          'isthmus_retries_skipped_total',
          'Retries not started because the deadline could not fit them.',
          labels,
        );
        break;
      }
      // A retry that leaves the caller's region also draws on the smaller cross-region budget,
      // so a failing region cannot double every caller's WAN traffic.
      if (
        attempt > 0 &&
        first.locality.region !== ctx.locality.region &&
        !dest.crossRegionBudget.tryAcquireRetry()
      ) {
        stats.inc('isthmus_retry_budget_exhausted_total', 'Retries denied by the retry budget.', {
          service: dest.name,
          budget: 'cross-region',
        });
        break;
      }
      attempt++;
      tried.add(first.id);
      if (policy.propagateDeadline) headers[H.deadline] = String(Math.max(0, Math.floor(remaining)));
      headers[H.attempt] = String(attempt);
      const moreAllowed = () =>
        retryable && attempt < policy.maxAttempts && deadline - clock.monotonicMs() > policy.backoffBaseMs;

      let rejectedFor: 'retry' | 'fallback' | undefined;
      let winner: Picked | undefined;
      const accept = (status: number): boolean => {
        if (winner) return false; // a hedge already answered: drop this one
        if (retryableStatus(policy, status) && moreAllowed() && grantRetry(dest, ctx)) {
          rejectedFor = 'retry';
          return false;
        }
        // A final 5xx is an error a fallback may answer instead (as stale-if-error means).
        if (status >= 500 && fallbackAvailable(dest, policy, method, req, target)) {
          rejectedFor = 'fallback';
          return false;
        }
        return true;
      };
      const launch = (p: Picked, slot: CancelSlot) => {
        balancer.begin(p.endpoint.id);
        return dest.pool.attempt(p.endpoint, {
          method,
          path: target.path,
          headers,
          body,
          timeoutMs: Math.min(policy.perTryMs, remaining),
          ...(remaining < policy.connectMs + policy.perTryMs && { deadlineMs: remaining }),
          cancel: slot,
          accept: (status) => {
            const ok = accept(status);
            if (ok) winner = p;
            return ok;
          },
        });
      };
      // Hedge the first attempt of a safe read once it is slower than the destination's usual.
      const hedgeAfter =
        attempt === 1 && policy.hedging.enabled && SAFE_METHODS.has(method)
          ? Math.max(
              policy.hedging.minDelayMs,
              dest.latencies.quantile(policy.hedging.afterQuantile, clock.monotonicMs()) ?? Infinity,
            )
          : Infinity;
      const attemptStart = clock.monotonicMs();
      // Without a hedge to schedule, skip the race machinery (the common case).
      const raced =
        hedgeAfter >= remaining
          ? { result: await launch(picked, cancel), picked, latencyMs: NaN, hedges: 0 }
          : await race(ctx, {
              balancer,
              primary: picked,
              launch,
              hedgeAfterMs: hedgeAfter,
              maxHedges: policy.hedging.maxHedges,
              pickHedge: () => {
                const p = balancer.pick(tried, undefined);
                if (p && dest.budget.tryAcquireRetry()) {
                  tried.add(p.endpoint.id);
                  stats.inc('isthmus_hedges_total', 'Hedged attempts started.', labels);
                  return p;
                }
                return undefined;
              },
              cancel,
              started: attemptStart,
            });
      const result = raced.result;
      const latencyMs = Number.isNaN(raced.latencyMs) ? clock.monotonicMs() - attemptStart : raced.latencyMs;
      attempt += raced.hedges;
      picked = raced.picked;
      const endpoint = picked.endpoint;
      retryRelease?.();
      retryRelease = undefined;

      if (result.kind === 'response') {
        balancer.report(
          endpoint.id,
          result.status >= 500 ? { ok: false, latencyMs, failure: 'status' } : { ok: true, latencyMs },
        );
        if (result.status < 500) dest.latencies.add(latencyMs);
        commit(ctx, dest, req, res, result, {
          requestId,
          attempts: attempt,
          picked,
          labels,
          cacheable: method === 'GET' && policy.staleIfError.enabled,
          authority: target.authority,
          path: target.path,
          outcome,
        });
        return;
      }
      if (gone) {
        balancer.cancel(endpoint.id); // the client left: no verdict on the endpoint
        return;
      }
      if (result.kind === 'rejected') {
        balancer.report(endpoint.id, { ok: false, latencyMs, failure: 'status' });
        lastFailure = { kind: 'status', detail: `status ${result.status}`, status: result.status };
        if (rejectedFor === 'fallback') break;
        // Otherwise the retry was granted when the response was rejected.
      } else {
        balancer.report(endpoint.id, { ok: false, latencyMs, failure: result.failure });
        stats.inc('isthmus_attempt_failures_total', 'Failed attempts by failure class.', {
          ...labels,
          failure: result.failure,
        });
        lastFailure = { kind: result.failure, detail: result.error.message };
        if (body !== null && !Buffer.isBuffer(body)) break; // a streamed body cannot be sent again
        const retryOn = result.failure === 'timeout' ? 'per-try-timeout' : result.failure;
        if (!policy.retryOn.has(retryOn) || !moreAllowed() || !grantRetry(dest, ctx)) break;
      }
      if (attempt >= policy.maxAttempts) break;
      // Retrying: hold a retry slot, pick elsewhere, back off within the deadline.
      retryRelease = dest.retryLimiter.tryAcquire();
      if (!retryRelease) {
        stats.inc('isthmus_retry_limited_total', 'Retries refused by circuitBreaker.maxRetries.', labels);
        break;
      }
      stats.inc('isthmus_retries_total', 'Retries started.', labels);
      const localityTrouble = lastFailure.kind === 'connect-failure' || lastFailure.kind === 'timeout';
      avoid =
        policy.differentLocality === 'always' ||
        (policy.differentLocality === 'on-connect-failure' && localityTrouble)
          ? endpoint.locality
          : undefined;
      backoff ??= new FullJitterBackoff(policy.backoffBaseMs, policy.backoffMaxMs, ctx.random);
      const wait = Math.min(backoff.delayMs(attempt - 1), Math.max(0, deadline - clock.monotonicMs() - 1));
      if (wait > 0) await sleep(wait);
    }
    retryRelease?.();
    fallback(ctx, dest, req, res, policy, {
      attempts: attempt,
      failure: lastFailure,
      labels,
      authority: target.authority,
      path: target.path,
      outcome,
    });
  } finally {
    release();
    res.off('close', onClose);
  }
}

/**
 * Runs the primary attempt and, when it is slower than `hedgeAfterMs`, up to `maxHedges` hedges
 * on other endpoints: the first accepted response wins and the others are cancelled.
 */
async function race(
  ctx: OutboundContext,
  input: {
    balancer: Balancer;
    primary: Picked;
    launch: (p: Picked, slot: CancelSlot) => Promise<AttemptResult>;
    hedgeAfterMs: number;
    maxHedges: number;
    pickHedge: () => Picked | undefined;
    cancel: CancelSlot;
    started: number;
  },
): Promise<{ result: AttemptResult; picked: Picked; latencyMs: number; hedges: number }> {
  const { balancer } = input;
  type Running = { picked: Picked; slot: CancelSlot; started: number; done: boolean };
  const running: Running[] = [];
  // The client leaving cancels every attempt of the race.
  input.cancel.abort = (err) => running.forEach((r) => r.slot.abort?.(err));
  let hedges = 0;
  try {
    return await new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const failed: { picked: Picked; latencyMs: number; failure: FailureKind }[] = [];
      const start = (p: Picked) => {
        const r: Running = {
          picked: p,
          slot: {},
          started: ctx.clock.monotonicMs(),
          done: false,
        };
        running.push(r);
        void input.launch(p, r.slot).then((result) => {
          r.done = true;
          const latencyMs = ctx.clock.monotonicMs() - r.started;
          if (result.kind === 'response') {
            clearTimeout(timer);
            // The others are cancelled: their verdict is unknown, not a failure.
            for (const other of running) {
              if (other.done) continue;
              other.slot.abort?.(new Error('hedge lost'));
              balancer.cancel(other.picked.endpoint.id);
            }
            for (const f of failed)
              balancer.report(f.picked.endpoint.id, {
                ok: false,
                latencyMs: f.latencyMs,
                failure: f.failure,
              });
            resolve({ result, picked: p, latencyMs, hedges });
            return;
          }
          if (!running.every((x) => x.done)) {
            failed.push({
              picked: p,
              latencyMs,
              failure: result.kind === 'failed' ? result.failure : 'status',
            });
            return;
          }
          // Everything launched has failed: the caller's retry logic takes over from the last one.
          clearTimeout(timer);
          for (const f of failed)
            balancer.report(f.picked.endpoint.id, { ok: false, latencyMs: f.latencyMs, failure: f.failure });
          resolve({ result, picked: p, latencyMs, hedges });
        });
      };
      const scheduleHedge = () => {
        timer = setTimeout(() => {
          timer = undefined;
          if (running.every((x) => x.done)) return;
          const p = input.pickHedge();
          if (!p) return;
          hedges++;
          start(p);
          if (hedges < input.maxHedges) scheduleHedge();
        }, input.hedgeAfterMs);
      };
      start(input.primary);
      scheduleHedge();
    });
  } finally {
    input.cancel.abort = undefined;
  }
}

function fallbackAvailable(
  dest: Destination,
  policy: RoutePolicy,
  method: string,
  req: ProxyRequest,
  target: { path: string; authority: string },
): boolean {
  if (policy.staticFallback.enabled) return true;
  if (!policy.staleIfError.enabled || (method !== 'GET' && method !== 'HEAD')) return false;
  const hit = dest.staleCache.lookup({
    method: 'GET',
    authority: target.authority,
    pathWithQuery: target.path,
    headers: req.headers,
  });
  return hit !== undefined && hit.ageMs <= policy.staleIfError.maxAgeMs;
}

/** The destination's retry budget must allow every retry. */
function grantRetry(dest: Destination, ctx: OutboundContext): boolean {
  if (!dest.budget.tryAcquireRetry()) {
    ctx.stats.inc('isthmus_retry_budget_exhausted_total', 'Retries denied by the retry budget.', {
      service: dest.name,
      budget: 'all',
    });
    return false;
  }
  return true;
}

/** Adds the headers that say how the answer was produced. */
function explain(
  ctx: OutboundContext,
  dest: Destination,
  out: OutgoingHttpHeaders,
  attempts: number,
  picked: Picked | undefined,
): OutgoingHttpHeaders {
  out[H.attempts] = ATTEMPTS[attempts] ?? String(attempts);
  if (picked) {
    out[H.servedBy] = servedBy(picked);
    if (picked.priority > 0 || picked.panic) {
      const reason = picked.panic ? 'panic' : `failover:p${picked.priority}`;
      out[H.degraded] = reason;
      dest.markDegraded(ctx.clock.monotonicMs(), reason);
    }
  }
  return out;
}

const ATTEMPTS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10'];

function commit(
  ctx: OutboundContext,
  dest: Destination,
  req: ProxyRequest,
  res: ProxyResponse,
  result: Extract<AttemptResult, { kind: 'response' }>,
  info: {
    requestId: string;
    attempts: number;
    picked: Picked;
    labels: { service: string; route: string };
    cacheable: boolean;
    authority: string;
    path: string;
    outcome: HopOutcome | undefined;
  },
): void {
  const headers = explain(ctx, dest, endToEnd(result.headers), info.attempts, info.picked);
  // A gateway knows the zone that served; keep its more precise answer.
  if (result.headers[H.servedBy] !== undefined) headers[H.servedBy] = result.headers[H.servedBy];
  const outcome = info.outcome;
  if (outcome) {
    outcome.attempts = info.attempts;
    const served = headers[H.servedBy];
    outcome.servedBy = typeof served === 'string' ? served : undefined;
    outcome.peerRegion = info.picked.endpoint.locality.region;
    const degraded = headers[H.degraded];
    outcome.failover = typeof degraded === 'string' ? degraded : undefined;
  }
  appendHeader(headers, 'via', ctx.via);
  // The correlation id goes back to the caller too, so a client can quote it.
  headers[H.requestId] ??= info.requestId;
  dest
    .counter(
      ctx.stats,
      'isthmus_responses_total',
      'Responses by status class.',
      info.labels,
      STATUS_CLASS[Math.floor(result.status / 100)] ?? 'other',
      info.picked.endpoint.locality.region,
    )
    .inc();
  if (info.picked.priority > 0)
    ctx.stats.inc(
      'isthmus_failover_responses_total',
      'Responses served by a lower-priority tier.',
      info.labels,
    );
  res.writeHead(result.status, headers);

  const request = {
    method: 'GET',
    authority: info.authority,
    pathWithQuery: info.path,
    headers: req.headers,
  };
  relay(
    res,
    result.body,
    info.cacheable &&
      result.status < 500 &&
      dest.shouldRefreshStale(`${info.authority} ${info.path}`, ctx.clock.monotonicMs())
      ? {
          limit: dest.staleCache.maxEntryBytes,
          done: (body) => {
            if (body)
              dest.staleCache.store(request, {
                status: result.status,
                headers: endToEnd(result.headers) as Record<string, string>,
                body,
              });
          },
        }
      : undefined,
  );
}

function fallback(
  ctx: OutboundContext,
  dest: Destination,
  req: ProxyRequest,
  res: ProxyResponse,
  policy: RoutePolicy,
  info: {
    attempts: number;
    failure: Failure;
    labels: Record<string, string>;
    authority: string;
    path: string;
    outcome: HopOutcome | undefined;
  },
): void {
  if (info.outcome) info.outcome.attempts = info.attempts;
  if (res.headersSent || res.destroyed) return;
  const method = req.method ?? 'GET';
  const now = ctx.clock.monotonicMs();
  if (policy.staleIfError.enabled && (method === 'GET' || method === 'HEAD')) {
    const hit = dest.staleCache.lookup({
      method: 'GET',
      authority: info.authority,
      pathWithQuery: info.path,
      headers: req.headers,
    });
    if (hit && hit.ageMs <= policy.staleIfError.maxAgeMs) {
      ctx.stats.inc('isthmus_fallback_total', 'Responses served by a fallback.', {
        ...info.labels,
        fallback: 'stale',
      });
      dest.markDegraded(now, 'stale-if-error');
      if (info.outcome) info.outcome.fallback = 'stale';
      res.writeHead(hit.entry.status, {
        ...(hit.entry.headers as OutgoingHttpHeaders),
        [H.fallback]: 'stale',
        [H.staleness]: String(Math.round(hit.ageMs)),
        [H.attempts]: String(info.attempts),
        [H.degraded]: 'stale-if-error',
        warning: '110 - "Response is Stale"',
      });
      res.end(method === 'HEAD' ? undefined : hit.entry.body);
      return;
    }
  }
  if (policy.staticFallback.enabled) {
    ctx.stats.inc('isthmus_fallback_total', 'Responses served by a fallback.', {
      ...info.labels,
      fallback: 'static',
    });
    dest.markDegraded(now, 'static-fallback');
    if (info.outcome) info.outcome.fallback = 'static';
    res.writeHead(policy.staticFallback.status, {
      'content-type': policy.staticFallback.contentType,
      'content-length': Buffer.byteLength(policy.staticFallback.body),
      [H.fallback]: 'static',
      [H.attempts]: String(info.attempts),
      [H.degraded]: 'static-fallback',
    });
    res.end(policy.staticFallback.body);
    return;
  }
  const f = info.failure;
  ctx.stats.inc('isthmus_responses_total', 'Responses by status class.', {
    ...info.labels,
    code: '5xx',
    peer_region: '',
  });
  const strong = policy.consistency === 'strong';
  if (f.kind === 'no-endpoint') {
    sendError(
      res,
      503,
      strong ? 'home-region-unavailable' : 'no-healthy-endpoint',
      strong
        ? `${dest.name} is served only by its home region ${dest.homeRegion ?? ''}, which has no healthy endpoint`
        : `${dest.name} has no healthy endpoint`,
      { attempts: info.attempts },
      { [H.attempts]: String(info.attempts) },
    );
    return;
  }
  const status = f.kind === 'timeout' ? 504 : (f.status ?? 502);
  const code =
    f.kind === 'timeout' ? 'upstream-timeout' : f.kind === 'status' ? 'upstream-error' : `upstream-${f.kind}`;
  sendError(
    res,
    status,
    code,
    `${dest.name}: ${f.detail}`,
    { attempts: info.attempts },
    { [H.attempts]: String(info.attempts) },
  );
}

export type { IncomingHttpHeaders };
