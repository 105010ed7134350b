import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import { followStream } from '../../core/stream-events.js';
import {
  ChunkedDecoder,
  findHeadEnd,
  type Framing,
  HttpParseError,
  keepAlive,
  parseResponseHead,
  type ResponseHead,
  requestLine,
  responseFraming,
  serializeFields,
} from './parse.js';

/**
 * The data plane's HTTP/1.1 client: keep-alive connection pools per upstream address, one
 * request at a time per connection, bodies streamed both ways with backpressure and never
 * buffered by the pool. An exchange reports its response head first; the caller then takes the
 * body or has it drained (so the connection can be reused).
 */

export interface ExchangeRequest {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  /** A whole body (sent with Content-Length), a stream (chunked unless a length is given) or none. */
  body: Buffer | Readable | null;
}

/** Receives an exchange's events; exactly one of onError or (onHead …) onEnd ends it. */
export interface ExchangeHandler {
  /**
   * The final response head arrived. Return false to have the body drained and dropped (the
   * exchange then ends without further calls).
   */
  onHead(head: ResponseHead): boolean;
  /** A piece of the body; false pauses the connection until the exchange's `resume`. */
  onData(chunk: Buffer): boolean;
  onEnd(): void;
  /** Connecting, sending or receiving failed; `responded` says whether onHead was called. */
  onError(err: Error, responded: boolean): void;
}

/** A response read whole by {@link ClientPool.request}. */
export interface WholeResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Control of a running exchange. */
export interface Exchange {
  resume(): void;
  pause(): void;
  abort(err: Error): void;
}

export interface ClientPoolOptions {
  connectTimeoutMs: number;
  maxConnections: number;
  /** An idle connection is closed after this long (or sooner when the server asks), ms. */
  keepAliveMs: number;
  /** HTTPS: connections are TLS, with the host as the server name (when it is not an address). */
  tls?: boolean;
}

/** A connection could not be opened in time; `code` lets retry policy call it a connect failure. */
export class ConnectTimeoutError extends Error {
  override readonly name = 'ConnectTimeoutError';
  readonly code = 'ECONNTIMEOUT';
}

/** The upstream answered something that is not HTTP/1.1. */
export class UpstreamProtocolError extends Error {
  override readonly name = 'UpstreamProtocolError';
  readonly code = 'EPROTO';
}

const MAX_RESPONSE_HEAD = 64 * 1024;
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** Connections to one upstream address. */
class OriginPool {
  readonly host: string;
  readonly port: number;
  readonly hostHeader: string;
  readonly options: ClientPoolOptions;
  readonly idle: ClientConnection[] = [];
  /** Every open or opening connection, busy ones included (its size is what the limit counts). */
  readonly all = new Set<ClientConnection>();
  readonly waiting: Array<(conn: ClientConnection) => void> = [];
  closed = false;
  readonly #client: ClientPool;

  constructor(client: ClientPool, host: string, port: number, options: ClientPoolOptions) {
    this.#client = client;
    this.host = host;
    this.port = port;
    this.hostHeader = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    this.options = options;
  }

  /** Calls `use` with a connection now or once one is free; returns a cancel for the wait. */
  acquire(use: (conn: ClientConnection) => void): (() => void) | undefined {
    const conn = this.idle.pop();
    if (conn) {
      conn.idleSince = 0;
      use(conn);
      return undefined;
    }
    if (this.all.size < this.options.maxConnections) {
      use(this.#open());
      return undefined;
    }
    this.waiting.push(use);
    return () => {
      const i = this.waiting.indexOf(use);
      if (i >= 0) this.waiting.splice(i, 1);
    };
  }

  /** A connection finished an exchange and may carry another. */
  release(conn: ClientConnection): void {
    const next = this.waiting.shift();
    if (next) {
      next(conn);
      return;
    }
    if (this.closed) {
      conn.destroy();
      return;
    }
    conn.idleSince = performance.now();
    this.idle.push(conn);
    this.#client.watchIdle();
  }

  /** A connection is gone. */
  gone(conn: ClientConnection): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    // Someone waits for a connection and there is room again: open one for them.
    if (this.waiting.length > 0 && this.all.size < this.options.maxConnections && !this.closed) {
      const next = this.waiting.shift() as (conn: ClientConnection) => void;
      next(this.#open());
    }
  }

  #open(): ClientConnection {
    const conn = new ClientConnection(this);
    this.all.add(conn);
    return conn;
  }

  sweep(now: number): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i] as ClientConnection;
      if (now - c.idleSince > c.keepAliveMs) c.destroy();
    }
  }
}

type ConnState = 'connecting' | 'ready' | 'closed';

class ClientConnection {
  readonly pool: OriginPool;
  readonly socket: Socket;
  state: ConnState = 'connecting';
  idleSince = 0;
  keepAliveMs: number;
  #connectTimer: NodeJS.Timeout | undefined;
  /** Written while connecting; sent once connected. */
  #handler: ExchangeHandler | undefined;
  #method = 'GET';
  #buf: Buffer | undefined;
  #scanFrom = 0;
  #head: ResponseHead | undefined;
  #framing: Framing | undefined;
  #remaining = 0;
  #chunked: ChunkedDecoder | undefined;
  #drop = false;
  #requestSent = true;
  #reusable = true;
  #body: Readable | undefined;
  /** Exchanges started on this connection; tells a finished exchange's control from the current one. */
  #exchanges = 0;

  constructor(pool: OriginPool) {
    this.pool = pool;
    this.keepAliveMs = pool.options.keepAliveMs;
    const o = pool.options;
    this.socket = o.tls
      ? tls.connect({
          host: pool.host,
          port: pool.port,
          ...(net.isIP(pool.host) === 0 && { servername: pool.host }),
          ALPNProtocols: ['http/1.1'],
        })
      : net.connect({ host: pool.host, port: pool.port, noDelay: true });
    if (o.tls) this.socket.setNoDelay(true);
    this.#connectTimer = setTimeout(() => {
      this.#fail(
        new ConnectTimeoutError(
          `no connection to ${pool.hostHeader} within ${pool.options.connectTimeoutMs}ms`,
        ),
      );
    }, pool.options.connectTimeoutMs);
    this.socket.once(o.tls ? 'secureConnect' : 'connect', this.#onConnect);
    this.socket.on('data', this.#onData);
    this.socket.on('error', this.#onError);
    this.socket.on('close', this.#onClose);
    this.socket.on('end', this.#onEnd);
  }

  readonly #onConnect = () => {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.state = 'ready';
  };

  /** Starts an exchange on this connection (connected or still connecting: writes queue). */
  start(request: ExchangeRequest, handler: ExchangeHandler): Exchange {
    // Everything that can refuse the request runs before the connection takes it on, so a
    // refused request leaves the connection as it was (free, with no handler).
    const headers = request.headers;
    let text = serializeFields(requestLine(request.method, request.path), headers);
    if (headers.host === undefined) text += `host: ${this.pool.hostHeader}\r\n`;
    const body = request.body;
    this.#handler = handler;
    this.#method = request.method;
    this.#head = undefined;
    this.#framing = undefined;
    this.#chunked = undefined;
    this.#drop = false;
    this.#scanFrom = 0;
    this.#reusable = true;
    const exchange = ++this.#exchanges;
    const socket = this.socket;
    if (body === null) {
      this.#requestSent = true;
      if (headers['content-length'] === undefined && BODY_METHODS.has(request.method))
        text += 'content-length: 0\r\n';
      socket.write(`${text}\r\n`, 'latin1');
    } else if (Buffer.isBuffer(body)) {
      this.#requestSent = true;
      if (headers['content-length'] === undefined) text += `content-length: ${body.length}\r\n`;
      socket.cork();
      socket.write(`${text}\r\n`, 'latin1');
      if (body.length > 0) socket.write(body);
      socket.uncork();
    } else {
      const chunked = headers['content-length'] === undefined;
      if (chunked) text += 'transfer-encoding: chunked\r\n';
      socket.write(`${text}\r\n`, 'latin1');
      this.#requestSent = false;
      this.#streamBody(body, chunked);
    }
    // Control of this exchange only: once it ended, the connection may carry another one.
    const current = () => this.#exchanges === exchange && this.#handler === handler;
    return {
      resume: () => {
        if (current()) this.socket.resume();
      },
      pause: () => {
        if (current()) this.socket.pause();
      },
      abort: (err: Error) => {
        if (current()) this.#fail(err);
      },
    };
  }

  #streamBody(body: Readable, chunked: boolean): void {
    this.#body = body;
    const socket = this.socket;
    followStream(body, {
      data: (chunk) => {
        if (chunk.length === 0) return;
        const ok = chunked
          ? (socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1'),
            socket.write(chunk),
            socket.write('\r\n', 'latin1'))
          : socket.write(chunk);
        if (!ok) {
          body.pause();
          socket.once('drain', () => body.resume());
        }
      },
      end: () => {
        if (chunked) socket.write('0\r\n\r\n', 'latin1');
        this.#requestSent = true;
        this.#body = undefined;
        if (this.#handler === undefined) this.#done();
      },
      error: (err) => {
        this.#body = undefined;
        this.#fail(err);
      },
    });
  }

  readonly #onData = (chunk: Buffer) => {
    if (this.#handler === undefined) {
      // Bytes nobody asked for: the connection is out of step, never reuse it.
      this.destroy();
      return;
    }
    if (this.#buf === undefined) this.#buf = chunk;
    else {
      this.#buf = Buffer.concat([this.#buf, chunk]);
    }
    try {
      this.#process();
    } catch (err) {
      this.#fail(err instanceof HttpParseError ? new UpstreamProtocolError(err.message) : (err as Error));
    }
  };

  #process(): void {
    while (this.#buf !== undefined && this.#handler !== undefined) {
      const buf = this.#buf;
      if (this.#head === undefined) {
        const end = findHeadEnd(buf, 0, this.#scanFrom);
        if (end < 0) {
          if (buf.length > MAX_RESPONSE_HEAD) throw new UpstreamProtocolError('response head too large');
          this.#scanFrom = Math.max(0, buf.length - 3);
          return;
        }
        const head = parseResponseHead(buf, 0, end);
        this.#buf = end < buf.length ? buf.subarray(end) : undefined;
        this.#scanFrom = 0;
        if (head.status < 200) {
          if (head.status === 101) throw new UpstreamProtocolError('unexpected protocol switch');
          continue; // 100 Continue and other interim responses
        }
        const framing = responseFraming(head, this.#method);
        this.#head = head;
        this.#framing = framing;
        this.#reusable = keepAlive(head.version, head.headers) && framing.kind !== 'close';
        const hint = head.headers['keep-alive'];
        if (hint !== undefined) this.#honourKeepAlive(hint);
        if (framing.kind === 'length') this.#remaining = framing.length;
        else if (framing.kind === 'chunked') this.#chunked = new ChunkedDecoder();
        const handler = this.#handler;
        this.#drop = !handler.onHead(head);
        if (this.#handler !== handler) return; // aborted from onHead
        if (framing.kind === 'none') {
          this.#done();
          return;
        }
        continue;
      }
      const framing = this.#framing as Framing;
      if (framing.kind === 'length') {
        const take = Math.min(this.#remaining, buf.length);
        const rest = take < buf.length ? buf.subarray(take) : undefined;
        this.#buf = undefined;
        this.#remaining -= take;
        this.#deliver(take === buf.length ? buf : buf.subarray(0, take));
        if (this.#remaining === 0) {
          if (rest !== undefined) {
            // More than the response: the server is out of step.
            this.#reusable = false;
          }
          this.#done();
        }
        return;
      }
      if (framing.kind === 'chunked') {
        const decoder = this.#chunked as ChunkedDecoder;
        const stop = decoder.push(buf, 0, (data) => this.#deliver(data));
        this.#buf = undefined;
        if (decoder.done) {
          if (stop < buf.length) this.#reusable = false;
          this.#done();
        }
        return;
      }
      // Until close.
      this.#buf = undefined;
      this.#deliver(buf);
      return;
    }
  }

  /** A server's `Keep-Alive: timeout=N`: close idle a second before the server would. */
  #honourKeepAlive(hint: string | string[]): void {
    const m = /(?:^|[,;\s])timeout=(\d+)/i.exec(String(hint));
    if (!m) return;
    this.keepAliveMs = Math.min(this.pool.options.keepAliveMs, Math.max(500, Number(m[1]) * 1000 - 1000));
  }

  #deliver(data: Buffer): void {
    if (this.#drop || data.length === 0) return;
    const handler = this.#handler;
    if (handler && !handler.onData(data)) this.socket.pause();
  }

  /** The response ended: the handler hears it, and the connection goes back or away. */
  #done(): void {
    const handler = this.#handler;
    const dropped = this.#drop;
    if (!this.#requestSent) {
      // Answered before the request body was all sent: the connection cannot be reused.
      this.#reusable = false;
      this.#body?.destroy();
    }
    this.#handler = undefined;
    this.#head = undefined;
    this.#chunked = undefined;
    this.#buf = undefined;
    if (this.socket.isPaused()) this.socket.resume();
    if (this.#reusable && this.state === 'ready') this.pool.release(this);
    else this.destroy();
    if (!dropped) handler?.onEnd();
  }

  readonly #onEnd = () => {
    if (this.#handler && this.#framing?.kind === 'close' && this.#head !== undefined) {
      this.#reusable = false;
      this.#done();
      return;
    }
    this.destroy();
  };

  readonly #onError = (err: Error) => {
    this.#fail(err);
  };

  readonly #onClose = () => {
    if (this.#handler)
      this.#fail(Object.assign(new Error('upstream closed the connection'), { code: 'ECONNRESET' }));
    this.#closeState();
  };

  #closeState(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.#connectTimer);
    this.pool.gone(this);
  }

  /** Ends the current exchange with an error and closes the connection. */
  #fail(err: Error): void {
    const handler = this.#handler;
    const responded = this.#head !== undefined;
    const dropped = this.#drop;
    this.#handler = undefined;
    this.#body?.destroy();
    this.#body = undefined;
    this.destroy();
    if (handler && !(responded && dropped)) handler.onError(err, responded);
  }

  destroy(): void {
    this.socket.destroy();
    this.#closeState();
  }
}

/** Pools of connections to upstream addresses, made as addresses are used. */
export class ClientPool {
  readonly #options: ClientPoolOptions;
  readonly #origins = new Map<string, OriginPool>();
  #sweeper: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ClientPoolOptions) {
    this.#options = options;
  }

  /**
   * Sends `request` to `host:port` and reports to `handler`. Returns the exchange's control; an
   * exchange still waiting for a connection is cancelled by `abort`.
   */
  exchange(host: string, port: number, request: ExchangeRequest, handler: ExchangeHandler): Exchange {
    if (this.#closed) {
      queueMicrotask(() => handler.onError(new Error('the client pool is closed'), false));
      return NOOP_EXCHANGE;
    }
    const key = `${host}|${port}`;
    let origin = this.#origins.get(key);
    if (origin === undefined) {
      origin = new OriginPool(this, host, port, this.#options);
      this.#origins.set(key, origin);
    }
    let control: Exchange | undefined;
    let aborted: Error | undefined;
    const cancelWait = origin.acquire((conn) => {
      if (aborted) {
        origin.release(conn);
        return;
      }
      try {
        control = conn.start(request, handler);
      } catch (err) {
        // A header that cannot be sent: nothing went out, the connection stays usable.
        origin.release(conn);
        handler.onError(err as Error, false);
      }
    });
    return {
      resume: () => control?.resume(),
      pause: () => control?.pause(),
      abort: (err) => {
        if (control) control.abort(err);
        else if (!aborted) {
          aborted = err;
          cancelWait?.();
          handler.onError(err, false);
        }
      },
    };
  }

  /**
   * One whole request: the response with its body read (at most `maxBodyBytes`, 1 MiB by
   * default), or a rejection when connecting, sending or receiving fails or `timeoutMs` passes.
   */
  request(
    host: string,
    port: number,
    request: ExchangeRequest,
    options: { timeoutMs: number; maxBodyBytes?: number },
  ): Promise<WholeResponse> {
    const limit = options.maxBodyBytes ?? 1024 * 1024;
    return new Promise<WholeResponse>((resolve, reject) => {
      let head: ResponseHead | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      const timer = setTimeout(() => {
        exchange.abort(new Error(`no complete response within ${options.timeoutMs}ms`));
      }, options.timeoutMs);
      const exchange = this.exchange(host, port, request, {
        onHead(h) {
          head = h;
          return true;
        },
        onData(chunk) {
          size += chunk.length;
          if (size > limit) exchange.abort(new Error(`response body over ${limit} bytes`));
          else chunks.push(chunk);
          return true;
        },
        onEnd() {
          clearTimeout(timer);
          const h = head as ResponseHead;
          resolve({ status: h.status, headers: h.headers, body: Buffer.concat(chunks, size) });
        },
        onError(err) {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  }

  /** Starts (if needed) the once-a-second close of connections idle past their keep-alive. */
  watchIdle(): void {
    if (this.#sweeper) return;
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      let idle = 0;
      for (const o of this.#origins.values()) {
        o.sweep(now);
        idle += o.idle.length;
      }
      if (idle === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
      }
    }, 1000);
    this.#sweeper.unref();
  }

  /** Open connections per address, for stats and tests. */
  connections(): Record<string, { open: number; idle: number }> {
    const out: Record<string, { open: number; idle: number }> = {};
    for (const o of this.#origins.values()) out[o.hostHeader] = { open: o.all.size, idle: o.idle.length };
    return out;
  }

  /** Closes idle connections now and the others once their exchange ends. */
  close(): void {
    this.#closed = true;
    for (const o of this.#origins.values()) {
      o.closed = true;
      for (const c of [...o.idle]) c.destroy();
    }
    if (this.#sweeper) clearInterval(this.#sweeper);
  }

  /** Closes every connection now. */
  destroy(): void {
    this.close();
    for (const o of this.#origins.values()) for (const c of [...o.all]) c.destroy();
  }
}

const NOOP_EXCHANGE: Exchange = { resume() {}, pause() {}, abort() {} };
