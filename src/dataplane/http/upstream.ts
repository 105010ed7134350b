import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Endpoint, FailureKind } from '../endpoint.js';
import { ClientPool, type Exchange } from '../../protocol/http1/client.js';

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
  'ECONNTIMEOUT',
]);

/** Classifies a transport error the way retry and outlier policies need it. */
export function classify(err: Error): Exclude<FailureKind, 'status'> {
  if (err instanceof AttemptTimeout) return 'timeout';
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (CONNECT_CODES.has(code)) return 'connect-failure';
  return 'reset';
}

/**
 * Connection pools to the endpoints of one destination, and the attempt primitive: send a
 * request to one endpoint and report what came back, streaming the body only once the caller
 * accepts the response. Built on the data plane's own HTTP/1.1 client (../h1/client.ts), so no
 * body is buffered by the pool.
 */
export class UpstreamPool {
  readonly #client: ClientPool;

  constructor(options: {
    connectTimeoutMs: number;
    maxConnectionsPerEndpoint: number;
    keepAliveMs?: number;
  }) {
    this.#client = new ClientPool({
      connectTimeoutMs: options.connectTimeoutMs,
      maxConnections: options.maxConnectionsPerEndpoint,
      keepAliveMs: options.keepAliveMs ?? 30_000,
    });
  }

  attempt(endpoint: Endpoint, request: AttemptRequest): Promise<AttemptResult> {
    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      let sink: Parameters<ResponseStream['pipe']>[0] | undefined;
      let pending: Buffer[] = [];
      let ended = false;
      let failed: Error | undefined;

      const settle = (result: AttemptResult) => {
        if (settled) return;
        settled = true;
        if (deadlineTimer !== undefined) clearTimeout(deadlineTimer);
        clearTimeout(headersTimer);
        if (request.cancel?.abort === cancel) request.cancel.abort = undefined;
        resolve(result);
      };
      const timeout = (ms: number, what: string) => {
        const err = new AttemptTimeout(`no response headers within ${what}${ms}ms`);
        exchange.abort(err);
        settle({ kind: 'failed', failure: 'timeout', error: err });
      };
      // The per-try timeout runs from sending; a tighter deadline (connecting included) gets its
      // own timer only when given.
      const deadlineTimer =
        request.deadlineMs === undefined
          ? undefined
          : setTimeout(timeout, request.deadlineMs, request.deadlineMs, 'the remaining ');
      const cancel = (err: Error) => {
        exchange.abort(err);
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
          else if (ended) s.onEnd({});
          else if (paused) exchange.pause();
          return {
            resume: () => exchange.resume(),
            abort: (err) => exchange.abort(err),
          };
        },
      };

      const headersTimer = setTimeout(timeout, request.timeoutMs, request.timeoutMs, '');
      const exchange: Exchange = this.#client.exchange(
        endpoint.address,
        endpoint.port,
        { method: request.method, path: request.path, headers: request.headers, body: request.body },
        {
          onHead(head) {
            if (settled) return false;
            if (!request.accept(head.status, head.headers)) {
              // The body is drained and dropped so the connection can be reused.
              settle({ kind: 'rejected', status: head.status, headers: head.headers });
              return false;
            }
            // The caller pipes the body within the same turn of the event loop; what arrives
            // before that waits in `pending`.
            settle({ kind: 'response', status: head.status, headers: head.headers, body });
            return true;
          },
          onData(chunk) {
            if (!sink) {
              pending.push(chunk);
              return true;
            }
            return sink.onData(chunk);
          },
          onEnd() {
            if (sink) sink.onEnd({});
            else ended = true;
          },
          onError(error, responded) {
            if (!responded) {
              settle({ kind: 'failed', failure: classify(error), error });
              return;
            }
            if (sink) sink.onError(error);
            else failed = error;
          },
        },
      );
    });
  }

  close(): Promise<void> {
    this.#client.close();
    return Promise.resolve();
  }

  destroy(): void {
    this.#client.destroy();
  }
}
