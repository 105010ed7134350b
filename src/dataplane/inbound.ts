import type { OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { ProxyRequest, ProxyResponse } from '../protocol/http1/server.js';
import type { Clock } from '../core/clock.js';
import { isIsthmusError } from '../core/errors.js';
import { randomUuid } from '../core/uuid.js';
import type { Endpoint } from './endpoint.js';
import { appendHeader, endToEnd, first, forwardedFor, H, SAFE_METHODS } from './http/headers.js';
import { relay } from './http/relay.js';
import type { CancelSlot, UpstreamPool } from './http/upstream.js';
import { sendError } from './outbound.js';
import { parseDeadlineHeader } from './resilience/deadline.js';
import {
  bodyFingerprint,
  idempotencyScope,
  parseIdempotencyKey,
  type IdempotencyStore,
} from './resilience/idempotency-store.js';
import type { Stats } from './stats.js';

export interface InboundContext {
  clock: Clock;
  stats: Stats;
  service: string;
  app: Endpoint;
  pool: UpstreamPool;
  via: string;
  /** Present when the local service's policy turns idempotent replay on. */
  idempotency: IdempotencyStore | undefined;
  /** Largest request body buffered to fingerprint an idempotent request. */
  maxBodyBytes: number;
  /** Longest an app call may take when no deadline came with the request, ms. */
  defaultTimeoutMs: number;
  /** Remembers the deadline of a request id so the app's own outbound calls inherit it. */
  rememberDeadline(requestId: string, deadlineMonoMs: number): void;
  /** Destinations now degraded, and the feature flags their policies switch on. */
  degradation(): { destinations: string[]; flags: string[] };
}

async function readAll(req: ProxyRequest, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/**
 * Serves a request arriving for the local app: honours the caller's deadline, replays
 * responses of idempotent writes seen before, tells the app which dependencies are degraded,
 * and forwards the rest.
 */
export async function serveInbound(
  ctx: InboundContext,
  req: ProxyRequest,
  res: ProxyResponse,
): Promise<void> {
  const method = req.method ?? 'GET';
  const path = req.url ?? '/';
  const labels = { service: ctx.service };
  ctx.stats.inc('isthmus_inbound_requests_total', 'Requests received for the local app.', labels);
  const requestId = first(req.headers[H.requestId]) ?? randomUuid();
  const now = ctx.clock.monotonicMs();

  let budgetMs = ctx.defaultTimeoutMs;
  let bounded = false;
  try {
    const incoming = parseDeadlineHeader(req.headers[H.deadline]);
    if (incoming !== undefined && incoming < budgetMs) {
      budgetMs = incoming;
      bounded = true;
    }
  } catch (err) {
    sendError(res, 400, 'invalid-deadline', isIsthmusError(err) ? err.message : String(err));
    return;
  }
  if (budgetMs <= 0) {
    ctx.stats.inc(
      'isthmus_inbound_deadline_exceeded_total',
      'Requests that arrived with no time left.',
      labels,
    );
    sendError(
      res,
      504,
      'deadline-exceeded',
      'the caller’s deadline had already passed when the request arrived',
    );
    return;
  }
  ctx.rememberDeadline(requestId, now + budgetMs);

  let key: string | undefined;
  try {
    key = SAFE_METHODS.has(method) ? undefined : parseIdempotencyKey(req.headers['idempotency-key']);
  } catch (err) {
    sendError(res, 400, 'invalid-idempotency-key', isIsthmusError(err) ? err.message : String(err));
    return;
  }

  let body: Buffer | Readable | null =
    req.headers['content-length'] === '0' ||
    (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined)
      ? null
      : req.body;
  let replayScope: { scope: string; fingerprint: string; key: string } | undefined;
  if (key !== undefined && ctx.idempotency) {
    const buffered = body === null ? Buffer.alloc(0) : await readAll(req, ctx.maxBodyBytes);
    if (buffered === undefined) {
      sendError(
        res,
        413,
        'body-too-large',
        `requests with an Idempotency-Key may carry at most ${ctx.maxBodyBytes} bytes`,
      );
      return;
    }
    body = buffered.length > 0 ? buffered : null;
    const scope = idempotencyScope(method, path);
    const fingerprint = bodyFingerprint(buffered);
    const state = ctx.idempotency.begin(scope, key, fingerprint);
    if (state.state === 'replay') {
      ctx.stats.inc(
        'isthmus_idempotent_replays_total',
        'Responses replayed for a repeated Idempotency-Key.',
        labels,
      );
      if (state.response.truncated) {
        sendError(
          res,
          409,
          'idempotent-replay-unavailable',
          'this request was already applied; its response was too large to remember',
          {},
          { [H.idempotencyReplay]: 'true' },
        );
        return;
      }
      res.writeHead(state.response.status, {
        ...(state.response.headers as OutgoingHttpHeaders),
        [H.idempotencyReplay]: 'true',
      });
      res.end(state.response.body);
      return;
    }
    if (state.state === 'in-progress') {
      sendError(
        res,
        409,
        'idempotent-request-in-progress',
        'a request with this Idempotency-Key is still being processed',
        {},
        { 'retry-after': '1' },
      );
      return;
    }
    if (state.state === 'mismatch') {
      sendError(
        res,
        422,
        'idempotency-key-reused',
        'this Idempotency-Key was already used with a different request body',
      );
      return;
    }
    replayScope = { scope, fingerprint, key };
  }

  const headers = endToEnd(req.headers);
  headers[H.requestId] = requestId;
  headers[H.deadline] = String(Math.floor(budgetMs));
  const { destinations, flags } = ctx.degradation();
  delete headers[H.degraded];
  delete headers[H.degradedFlags];
  if (destinations.length > 0) headers[H.degraded] = destinations.join(',');
  if (flags.length > 0) headers[H.degradedFlags] = flags.join(',');
  appendHeader(headers, 'via', ctx.via);
  appendHeader(headers, 'forwarded', forwardedFor(req.socket.remoteAddress, 'http', req.headers.host));

  const cancel: CancelSlot = {};
  let gone = false;
  res.once('close', () => {
    if (res.writableFinished) return;
    gone = true;
    cancel.abort?.(new Error('client closed the connection'));
  });
  const result = await ctx.pool.attempt(ctx.app, {
    method,
    path,
    headers,
    body,
    timeoutMs: budgetMs,
    // The caller's deadline bounds the whole call, connecting to the app included.
    ...(bounded && { deadlineMs: budgetMs }),
    cancel,
    accept: () => true,
  });
  if (result.kind !== 'response') {
    if (replayScope && ctx.idempotency)
      ctx.idempotency.abandon(replayScope.scope, replayScope.key, replayScope.fingerprint);
    if (gone) return;
    const status = result.kind === 'failed' && result.failure === 'timeout' ? 504 : 502;
    ctx.stats.inc('isthmus_inbound_app_failures_total', 'Requests the local app did not answer.', {
      ...labels,
      failure: result.kind === 'failed' ? result.failure : 'status',
    });
    sendError(
      res,
      status,
      status === 504 ? 'app-timeout' : 'app-unreachable',
      `the local app did not answer: ${result.kind === 'failed' ? result.error.message : ''}`,
    );
    return;
  }
  const out = endToEnd(result.headers);
  appendHeader(out, 'via', ctx.via);
  res.writeHead(result.status, out);
  const store = ctx.idempotency;
  const abandon = () => {
    if (replayScope && store) store.abandon(replayScope.scope, replayScope.key, replayScope.fingerprint);
  };
  relay(
    res,
    result.body,
    replayScope && store
      ? {
          limit: store.maxEntryBytes,
          done: (body) => {
            // An over-long body is remembered by status and headers only (the store marks it truncated).
            store.complete(replayScope.scope, replayScope.key, replayScope.fingerprint, {
              status: result.status,
              headers: endToEnd(result.headers) as Record<string, string>,
              body,
            });
          },
        }
      : undefined,
    abandon,
  );
}
