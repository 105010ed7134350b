import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { createRequire } from 'node:module';
import type { Agent as UndiciAgent, Dispatcher } from 'undici';
import type { Endpoint, FailureKind } from '../endpoint.js';

// Only undici's Agent: the package index also loads fetch, WebSocket, caches and mocks, which cost
// a proxy ~10 MB of memory for nothing.
const Agent = createRequire(import.meta.url)('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;

/** What one attempt produced before anything was sent to the client. */
export type AttemptResult =
  /** Response headers arrived and the caller committed to them: the body is streaming. */
  | { kind: 'response'; status: number; headers: IncomingHttpHeaders; body: ResponseStream }
  /** Response headers arrived but the caller rejected them (a retryable status); body discarded. */
  | { kind: 'rejected'; status: number; headers: IncomingHttpHeaders }
  /** No response: connect failure, reset, or per-try timeout. */
  | { kind: 'failed'; failure: Exclude<FailureKind, 'status'>; error: Error };

/** The body of a committed response, pushed chunk by chunk with backpressure. */
export interface ResponseStream {
  /**
   * Starts the flow. `onData` returns false to pause until `resume` is called; `onEnd` and
   * `onError` are terminal.
   */
  pipe(sink: {
    onData(chunk: Buffer): boolean;
    onEnd(trailers: IncomingHttpHeaders): void;
    onError(err: Error): void;
  }): { resume(): void; abort(err: Error): void };
}

export interface AttemptRequest {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  /** A buffered body (retryable), a stream (single attempt) or nothing. */
  body: Buffer | Readable | null;
  /** Time allowed from sending the request to its response headers, ms (connecting has its own). */
  timeoutMs: number;
  /**
   * A tighter cap on the whole attempt, connecting included, ms from now (the request's remaining
   * deadline). Costs a timer, so given only when it binds.
   */
  deadlineMs?: number;
  /** Decides, from the status and headers, whether to take the response or try elsewhere. */
  accept(status: number, headers: IncomingHttpHeaders): boolean;
  /** Filled with this attempt's abort while it runs, so the caller can cancel it (client gone). */
  cancel?: CancelSlot;
}

/** Where a running attempt leaves its abort function; cheaper than an AbortSignal per request. */
export interface CancelSlot {
  abort?: (err: Error) => void;
}

class AttemptTimeout extends Error {
  override readonly name = 'AttemptTimeout';
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Classifies a transport error the way retry and outlier policies need it. */
export function classify(err: Error): Exclude<FailureKind, 'status'> {
  if (err instanceof AttemptTimeout) return 'timeout';
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (CONNECT_CODES.has(code)) return 'connect-failure';
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return 'timeout';
  return 'reset';
}

/**
 * Connection pools to the endpoints of one destination, and the attempt primitive: send a
 * request to one endpoint and report what came back, streaming the body only once the caller
 * accepts the response. Built on undici's dispatcher API so no body is buffered by the pool.
 */
export class UpstreamPool {
  readonly #agent: UndiciAgent;

  constructor(options: {
    connectTimeoutMs: number;
    maxConnectionsPerEndpoint: number;
    keepAliveMs?: number;
  }) {
    this.#agent = new Agent({
      connect: { timeout: options.connectTimeoutMs },
      connections: options.maxConnectionsPerEndpoint,
      keepAliveTimeout: options.keepAliveMs ?? 30_000,
      // Our own per-try timer covers headers; the body may legitimately stream for long.
      headersTimeout: 0,
      bodyTimeout: 0,
      pipelining: 1,
    });
  }

  attempt(endpoint: Endpoint, request: AttemptRequest): Promise<AttemptResult> {
    return new Promise<AttemptResult>((resolve) => {
      const origin = `http://${endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address}:${endpoint.port}`;
      let settled = false;
      let controller: Dispatcher.DispatchController | undefined;
      let sink: Parameters<ResponseStream['pipe']>[0] | undefined;
      let pending: Buffer[] = [];
      let ended: IncomingHttpHeaders | undefined;
      let failed: Error | undefined;
      let discard = false;

      const settle = (result: AttemptResult) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (request.cancel?.abort === cancel) request.cancel.abort = undefined;
        resolve(result);
      };
      // undici's own headers timeout covers the common case without a timer per request; a timer
      // is added only when the request's deadline is tighter than connect + headers time.
      const timer =
        request.deadlineMs === undefined
          ? undefined
          : setTimeout(() => {
              const err = new AttemptTimeout(
                `no response headers within the remaining ${request.deadlineMs}ms`,
              );
              controller?.abort(err);
              settle({ kind: 'failed', failure: 'timeout', error: err });
            }, request.deadlineMs);
      const cancel = (err: Error) => {
        controller?.abort(err);
        settle({ kind: 'failed', failure: 'reset', error: err });
      };
      if (request.cancel) request.cancel.abort = cancel;

      const body: ResponseStream = {
        pipe(s) {
          sink = s;
          // Deliver what arrived between the headers and the pipe call.
          const buffered = pending;
          pending = [];
          let paused = false;
          for (const chunk of buffered) if (!s.onData(chunk)) paused = true;
          if (failed) s.onError(failed);
          else if (ended) s.onEnd(ended);
          else if (paused) controller?.pause();
          return {
            resume: () => controller?.resume(),
            abort: (err) => controller?.abort(err),
          };
        },
      };

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(c) {
          controller = c;
        },
        onResponseStart(c, statusCode, headers) {
          if (statusCode < 200) return; // 1xx informational: wait for the final response
          if (settled) return;
          if (!request.accept(statusCode, headers)) {
            // Drain and drop the body so the connection can be reused.
            discard = true;
            settle({ kind: 'rejected', status: statusCode, headers });
            return;
          }
          // The caller pipes the body within the same turn of the event loop; what arrives before
          // that (at most a read or two) waits in `pending`, so no pause/resume round trip is needed.
          settle({ kind: 'response', status: statusCode, headers, body });
        },
        onResponseData(c, chunk) {
          if (discard) return;
          if (!sink) {
            pending.push(chunk);
            return;
          }
          if (!sink.onData(chunk)) c.pause();
        },
        onResponseEnd(_c, trailers) {
          if (discard) return;
          if (sink) sink.onEnd(trailers);
          else ended = trailers;
        },
        onResponseError(_c, error) {
          if (!settled) {
            settle({ kind: 'failed', failure: classify(error), error });
            return;
          }
          if (discard) return;
          if (sink) sink.onError(error);
          else failed = error;
        },
      };

      try {
        this.#agent.dispatch(
          {
            origin,
            path: request.path,
            method: request.method,
            headers: request.headers as Record<string, string | string[]>,
            body: request.body,
            // We decide about retries; undici must never replay a request by itself.
            idempotent: false,
            headersTimeout: request.timeoutMs,
            blocking: true,
          },
          handler,
        );
      } catch (err) {
        // undici rejects some requests synchronously (a header value it will not send, a closed
        // pool): an attempt that failed before anything was sent, never an exception to the caller.
        const error = err instanceof Error ? err : new Error(String(err));
        settle({ kind: 'failed', failure: 'connect-failure', error });
      }
    });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  destroy(): void {
    void this.#agent.destroy().catch(() => undefined);
  }
}
