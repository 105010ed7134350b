import { EventEmitter } from 'node:events';
import { STATUS_CODES, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import net, { type Socket } from 'node:net';
import { Readable } from 'node:stream';
import {
  ChunkedDecoder,
  findHeadEnd,
  HttpParseError,
  keepAlive,
  parseRequestHead,
  requestFraming,
  serializeFields,
  skipLeadingEmptyLines,
} from './parse.js';

/**
 * The data plane's HTTP/1.1 server: one small state machine per connection over a plain socket,
 * with the request and response objects the proxy's handlers use (a subset of node:http's, so a
 * handler reads the same either way). It exists because node:http spends more CPU per request on
 * its general machinery than the whole proxy spends on its own work; see docs/performance.md.
 *
 * Requests on a connection are served one after the other (pipelined ones wait, buffered, while
 * the previous response is written). Framing is strict (parse.ts); timeouts follow node:http's
 * meaning: `headersTimeoutMs` for a request head, `requestTimeoutMs` for a whole request, and
 * `keepAliveTimeoutMs` for an idle connection between requests.
 */

/** What a data-plane handler reads of a request. */
export interface ProxyRequest extends AsyncIterable<Buffer> {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly httpVersion: string;
  readonly socket: { readonly remoteAddress?: string | undefined };
  /** The body as a stream (empty and ended when there is none). */
  readonly body: Readable;
  pipe<T extends NodeJS.WritableStream>(destination: T): T;
  /** Reads and discards the body. */
  resume(): unknown;
}

/** What a data-plane handler does with a response (node:http's ServerResponse fits it too). */
export interface ProxyResponse {
  statusCode: number;
  /**
   * What a handler keeps with the response until it closes (the request's telemetry). A field of
   * its own, declared on every response, rather than a property added to some: responses keep one
   * shape, and the code that handles them stays monomorphic.
   */
  handlerState?: unknown;
  readonly headersSent: boolean;
  readonly writableFinished: boolean;
  readonly destroyed: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): unknown;
  destroy(): unknown;
  on(event: 'close' | 'finish' | 'drain', listener: () => void): unknown;
  once(event: 'close' | 'finish' | 'drain', listener: () => void): unknown;
  off(event: 'close' | 'finish' | 'drain', listener: () => void): unknown;
}

export interface H1ServerOptions {
  /** Time allowed for a request head to arrive, from its first byte, ms. */
  headersTimeoutMs: number;
  /** Time allowed for a whole request (head and body) to arrive, ms. */
  requestTimeoutMs: number;
  /** An idle connection is closed after this long without a request, ms. */
  keepAliveTimeoutMs: number;
  /** Largest request head, bytes (431 beyond). */
  maxHeaderBytes: number;
  onRequest(req: H1Request, res: H1Response): void;
  /** CONNECT requests: the socket is the handler's from here on (`head` is what followed). */
  onConnect?(req: H1Request, socket: Socket, head: Buffer): void;
  /** A request refused before a handler saw it (malformed, too large, too slow) or a socket error. */
  onClientError?(code: string, err: Error): void;
}

/** `Date` header values, computed at most once a second. */
let dateText = '';
let dateSecond = -1;
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

const EMPTY = Buffer.alloc(0);
const CRLF = '\r\n';

export class H1Request implements ProxyRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly httpVersion: string;
  readonly socket: Socket;
  #stream: Readable | undefined;
  /** Body data that arrived before anyone asked for the stream. */
  #early: Buffer[] | undefined;
  #ended: boolean;
  #error: Error | undefined;
  readonly #conn: Connection;

  constructor(
    conn: Connection,
    method: string,
    url: string,
    version: string,
    headers: IncomingHttpHeaders,
    hasBody: boolean,
  ) {
    this.#conn = conn;
    this.socket = conn.socket;
    this.method = method;
    this.url = url;
    this.httpVersion = version;
    this.headers = headers;
    this.#ended = !hasBody;
  }

  /** The body as a stream, made on first use (most requests have none and never ask). */
  get body(): Readable {
    if (this.#stream) return this.#stream;
    const stream = new Readable({ read: () => this.#conn.resumeBody() });
    this.#stream = stream;
    if (this.#early) for (const chunk of this.#early) stream.push(chunk);
    this.#early = undefined;
    if (this.#error) stream.destroy(this.#error);
    else if (this.#ended) stream.push(null);
    return stream;
  }

  pipe<T extends NodeJS.WritableStream>(destination: T): T {
    return this.body.pipe(destination);
  }

  resume(): this {
    this.body.resume();
    return this;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.body[Symbol.asyncIterator]();
  }

  /** Body data from the connection; false asks the connection to stop reading. */
  push(chunk: Buffer): boolean {
    if (this.#stream) return this.#stream.push(chunk);
    (this.#early ??= []).push(chunk);
    return this.#early.length < 16;
  }

  end(): void {
    this.#ended = true;
    this.#stream?.push(null);
  }

  abort(err: Error): void {
    if (this.#ended) return;
    this.#error = err;
    this.#stream?.destroy(err);
  }
}

export class H1Response extends EventEmitter implements ProxyResponse {
  statusCode = 200;
  handlerState: unknown = undefined;
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  destroyed = false;
  #headers: OutgoingHttpHeaders | undefined;
  /** The serialized head, until it goes out with the first body bytes. */
  #headPending = false;
  #chunked = false;
  readonly #conn: Connection;
  readonly #noBody: boolean;

  constructor(conn: Connection, noBody: boolean) {
    super();
    this.#conn = conn;
    this.#noBody = noBody;
  }

  writeHead(status: number, headers?: OutgoingHttpHeaders): this {
    if (this.headersSent) throw new Error('response head already written');
    this.statusCode = status;
    this.#headers = headers;
    this.headersSent = true;
    this.#headPending = true;
    return this;
  }

  /**
   * Body bytes held with the unsent head until the end of this tick: a response whose body comes
   * in the same turn (the usual case when relaying) then goes out as one buffer and one write.
   */
  #held: Buffer[] | undefined;
  #heldBytes = 0;
  /** A write was refused while holding: 'drain' is owed once the head is out. */
  #heldFull = false;

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.destroyed) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.#headPending) {
      if (this.#held === undefined) {
        this.#held = [];
        process.nextTick(flushHeld, this);
      }
      if (data.length > 0 && !this.#bodyless()) {
        this.#held.push(data);
        this.#heldBytes += data.length;
      }
      if (this.#heldBytes < HOLD_LIMIT) return true;
      this.#heldFull = true;
      return false;
    }
    if (data.length === 0 || this.#bodyless()) return !this.#conn.socket.writableNeedDrain;
    return this.#conn.socket.write(this.#chunked ? chunkOf(data) : data);
  }

  /** Sends the head with what is held, if the response has not ended in the meantime. */
  flushHeld(): void {
    if (!this.#headPending || this.writableEnded || this.destroyed) return;
    this.#sendHead(undefined, false);
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded || this.destroyed) return this;
    const data = chunk === undefined ? EMPTY : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (!this.headersSent) this.writeHead(this.statusCode);
    this.writableEnded = true;
    const body = this.#bodyless() ? EMPTY : data;
    if (this.#headPending) {
      if (body.length > 0) {
        (this.#held ??= []).push(body);
        this.#heldBytes += body.length;
      }
      this.#sendHead(this.#heldBytes, true);
    } else {
      const socket = this.#conn.socket;
      if (this.#chunked) {
        const last = body.length > 0 ? Buffer.concat([chunkOf(body), LAST_CHUNK_BYTES]) : LAST_CHUNK_BYTES;
        socket.write(last, this.#finished);
      } else if (body.length > 0) socket.write(body, this.#finished);
      else if (socket.writableLength === 0) process.nextTick(this.#finished);
      else socket.write(EMPTY, this.#finished);
    }
    this.#conn.responseEnded(this);
    return this;
  }

  /** Writes the head and the held body as one buffer; `knownLength` when the body is complete. */
  #sendHead(knownLength: number | undefined, last: boolean): void {
    const head = this.#head(knownLength);
    const held = this.#held ?? [];
    this.#held = undefined;
    let size = head.length;
    const parts: Buffer[] = [];
    for (const c of held) {
      if (this.#chunked) {
        const framed = chunkOf(c);
        parts.push(framed);
        size += framed.length;
      } else {
        parts.push(c);
        size += c.length;
      }
    }
    if (last && this.#chunked) {
      parts.push(LAST_CHUNK_BYTES);
      size += LAST_CHUNK_BYTES.length;
    }
    const out = Buffer.allocUnsafe(size);
    let at = out.write(head, 0, 'latin1');
    for (const p of parts) at += p.copy(out, at);
    this.#heldBytes = 0;
    const socket = this.#conn.socket;
    const room = socket.write(out, last ? this.#finished : undefined);
    if (this.#heldFull && !last) {
      this.#heldFull = false;
      if (room) this.emit('drain'); // otherwise the socket's own drain follows
    }
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#conn.socket.destroy();
    return this;
  }

  /** The connection closed (or finished this response): `close`, once. */
  closed(): void {
    if (this.#closedEmitted) return;
    this.#closedEmitted = true;
    if (!this.writableFinished) this.destroyed = true;
    this.emit('close');
  }

  #closedEmitted = false;

  readonly #finished = (err?: Error | null) => {
    if (err || this.writableFinished) return;
    this.writableFinished = true;
    this.emit('finish');
    this.closed();
  };

  #bodyless(): boolean {
    const s = this.statusCode;
    return this.#noBody || s < 200 || s === 204 || s === 304;
  }

  /** The response head; `knownLength` is the whole body's size when `end` comes with it. */
  #head(knownLength: number | undefined): string {
    this.#headPending = false;
    const headers = this.#headers;
    const status = this.statusCode;
    let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}${CRLF}`;
    let hasLength = false;
    let hasDate = false;
    let te: string | undefined;
    if (headers) {
      text = serializeFields(text, headers);
      hasLength = headers['content-length'] !== undefined;
      hasDate = headers.date !== undefined;
      const t = headers['transfer-encoding'];
      te = t === undefined ? undefined : String(t).toLowerCase();
    }
    const conn = this.#conn;
    if (!this.#bodyless()) {
      if (te !== undefined) this.#chunked = te === 'chunked';
      else if (!hasLength) {
        if (knownLength !== undefined) text += `content-length: ${knownLength}${CRLF}`;
        else if (conn.version === '1.1') {
          text += `transfer-encoding: chunked${CRLF}`;
          this.#chunked = true;
        } else conn.keepAlive = false; // HTTP/1.0 without a length: the body ends with the connection
      }
    }
    if (!hasDate) text += `date: ${httpDate()}${CRLF}`;
    if (!conn.keepAlive) text += `connection: close${CRLF}`;
    else if (conn.version === '1.0') text += `connection: keep-alive${CRLF}`;
    return `${text}${CRLF}`;
  }
}

function flushHeld(res: H1Response): void {
  res.flushHeld();
}

/** Most body bytes held with an unsent head before the writer is asked to wait. */
const HOLD_LIMIT = 64 * 1024;
const LAST_CHUNK_BYTES = Buffer.from('0\r\n\r\n', 'latin1');

/** A chunk of a chunked body, framing included. */
function chunkOf(data: Buffer): Buffer {
  const size = `${data.length.toString(16)}\r\n`;
  const out = Buffer.allocUnsafe(size.length + data.length + 2);
  out.write(size, 0, 'latin1');
  data.copy(out, size.length);
  out[out.length - 2] = 0x0d;
  out[out.length - 1] = 0x0a;
  return out;
}

type Phase = 'head' | 'body' | 'respond' | 'closed';

/** Most pipelined bytes buffered while a response is pending before the socket is paused. */
const PIPELINE_BUFFER = 64 * 1024;
/** How long a closing connection waits for the peer's side to close, ms. */
const CLOSE_GRACE_MS = 2000;

function destroySocket(socket: Socket): void {
  socket.destroy();
}

/** Most unread request body discarded after the response to keep the connection, bytes. */
const DISCARD_LIMIT = 256 * 1024;

class Connection {
  readonly socket: Socket;
  readonly #options: H1ServerOptions;
  readonly #server: H1Server;
  #buf: Buffer | undefined;
  #pos = 0;
  #scanFrom = 0;
  #phase: Phase = 'head';
  #processing = false;
  #req: H1Request | undefined;
  #res: H1Response | undefined;
  /** What is left of a length-framed request body. */
  #remaining = 0;
  #chunked: ChunkedDecoder | undefined;
  /** The response went out before the body was read: the rest is read and dropped. */
  #discarding = false;
  #discarded = 0;
  #bodyPaused = false;
  version: '1.0' | '1.1' = '1.1';
  keepAlive = true;
  /** performance.now() when the current head's first byte came, or 0. */
  headStart = 0;
  /** When the current request's head came, while its body is still arriving, or 0. */
  requestStart = 0;
  /** When the connection became idle (no request in progress), or 0. */
  idleSince: number;

  constructor(server: H1Server, socket: Socket, options: H1ServerOptions) {
    this.#server = server;
    this.socket = socket;
    this.#options = options;
    this.idleSince = performance.now();
    socket.setNoDelay(true);
    socket.on('data', this.#onData);
    socket.on('drain', this.#onDrain);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.on('end', this.#onEnd);
  }

  readonly #onData = (chunk: Buffer) => {
    if (this.#phase === 'closed') return;
    if (this.#buf === undefined || this.#pos >= this.#buf.length) {
      this.#buf = chunk;
      this.#pos = 0;
      this.#scanFrom = 0;
    } else {
      const rest = this.#buf.subarray(this.#pos);
      this.#scanFrom = Math.max(0, this.#scanFrom - this.#pos);
      this.#buf = Buffer.concat([rest, chunk]);
      this.#pos = 0;
    }
    this.#process();
  };

  readonly #onDrain = () => {
    this.#res?.emit('drain');
  };

  readonly #onError = (err: Error) => {
    this.#options.onClientError?.((err as NodeJS.ErrnoException).code ?? 'socket-error', err);
  };

  readonly #onEnd = () => {
    // The client sent FIN. Between requests that ends the connection. With a request in progress
    // it is taken as the client leaving, as node:http does: the handler hears 'close' at once and
    // can cancel the upstream work instead of finishing it for nobody.
    if (this.#phase === 'head' && this.#req === undefined && this.#buf === undefined) {
      this.#closeAfterWrite();
      return;
    }
    this.socket.destroy();
  };

  readonly #onClose = () => {
    const was = this.#phase;
    this.#phase = 'closed';
    this.#server.connections.delete(this);
    if (was === 'body' && !this.#discarding)
      this.#req?.abort(new Error('aborted: the client closed the connection'));
    this.#res?.closed();
  };

  /** Parses and dispatches whatever the buffer holds, as far as the current phase allows. */
  #process(): void {
    if (this.#processing) return;
    this.#processing = true;
    try {
      for (;;) {
        const phase = this.#phase;
        if (phase === 'head') {
          if (!this.#readHead()) return;
        } else if (phase === 'body') {
          if (!this.#readBody()) return;
        } else {
          if (phase === 'respond' && this.#buf && this.#buf.length - this.#pos > PIPELINE_BUFFER)
            this.socket.pause();
          return;
        }
      }
    } finally {
      this.#processing = false;
    }
  }

  /** Reads one request head and hands it to the handler; false when more bytes are needed. */
  #readHead(): boolean {
    const buf = this.#buf;
    if (buf === undefined) return false;
    let pos = skipLeadingEmptyLines(buf, this.#pos);
    this.#pos = pos;
    if (pos >= buf.length) {
      this.#buf = undefined;
      return false;
    }
    if (this.headStart === 0) {
      this.headStart = performance.now();
      this.idleSince = 0;
    }
    const max = this.#options.maxHeaderBytes;
    let end: number;
    try {
      end = findHeadEnd(buf, pos, this.#scanFrom);
      if (end < 0) {
        if (buf.length - pos > max)
          throw new HttpParseError(431, 'header-overflow', 'request head too large');
        this.#scanFrom = Math.max(pos, buf.length - 3);
        return false;
      }
      if (end - pos > max) throw new HttpParseError(431, 'header-overflow', 'request head too large');
    } catch (err) {
      this.#refuse(err as HttpParseError);
      return false;
    }
    let req: H1Request;
    let res: H1Response;
    try {
      const head = parseRequestHead(buf, pos, end);
      const framing = requestFraming(head);
      pos = end;
      this.#pos = end;
      this.#scanFrom = 0;
      this.headStart = 0;
      this.version = head.version;
      this.keepAlive = this.keepAlive && keepAlive(head.version, head.headers);
      const hasBody = framing.kind !== 'none';
      req = new H1Request(this, head.method, head.target, head.version, head.headers, hasBody);
      if (head.method === 'CONNECT') {
        this.#handOver(req);
        return false;
      }
      res = new H1Response(this, head.method === 'HEAD');
      this.#req = req;
      this.#res = res;
      this.#discarding = false;
      this.#discarded = 0;
      if (framing.kind === 'length') this.#remaining = framing.length;
      this.#chunked = framing.kind === 'chunked' ? new ChunkedDecoder() : undefined;
      if (hasBody) {
        this.#phase = 'body';
        this.requestStart = performance.now();
        const expect = head.headers.expect;
        if (expect !== undefined && expect.toLowerCase() === '100-continue' && head.version === '1.1')
          this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
      } else this.#phase = 'respond';
    } catch (err) {
      this.#refuse(err as HttpParseError);
      return false;
    }
    if (pos >= buf.length) this.#buf = undefined;
    this.#options.onRequest(req, res);
    return true;
  }

  /** Moves body bytes to the request; false when more are needed (or reading is paused). */
  #readBody(): boolean {
    const buf = this.#buf;
    if (buf === undefined) return false;
    if (this.#bodyPaused) return false;
    const req = this.#req as H1Request;
    let pos = this.#pos;
    try {
      if (this.#chunked) {
        pos = this.#chunked.push(buf, pos, (data) => this.#bodyData(req, data));
        if (this.#chunked.done) return this.#bodyDone(pos);
      } else {
        const take = Math.min(this.#remaining, buf.length - pos);
        this.#bodyData(req, buf.subarray(pos, pos + take));
        pos += take;
        this.#remaining -= take;
        if (this.#remaining === 0) return this.#bodyDone(pos);
      }
    } catch (err) {
      req.abort(err as Error);
      this.#refuse(err as HttpParseError);
      return false;
    }
    this.#pos = pos;
    if (pos >= buf.length) this.#buf = undefined;
    return false;
  }

  #bodyData(req: H1Request, data: Buffer): void {
    if (this.#discarding) {
      this.#discarded += data.length;
      if (this.#discarded > DISCARD_LIMIT) {
        this.keepAlive = false;
        this.socket.destroySoon();
        this.#phase = 'closed';
      }
      return;
    }
    if (!req.push(data)) {
      this.#bodyPaused = true;
      this.socket.pause();
    }
  }

  #bodyDone(pos: number): boolean {
    this.#pos = pos;
    if (this.#buf && pos >= this.#buf.length) this.#buf = undefined;
    this.requestStart = 0;
    if (this.#discarding) {
      // The response is already out: on to the next request.
      this.#next();
      return this.#phase === 'head';
    }
    this.#req?.end();
    this.#phase = 'respond';
    return false;
  }

  /** The request's body stream wants more. */
  resumeBody(): void {
    if (!this.#bodyPaused) return;
    this.#bodyPaused = false;
    this.socket.resume();
    if (this.#phase === 'body') this.#process();
  }

  /** The handler ended its response: the connection moves on to the next request. */
  responseEnded(res: H1Response): void {
    if (res !== this.#res) return;
    if (this.#phase === 'body') {
      // The handler answered without reading the whole body.
      if (!this.keepAlive) {
        this.#closeAfterWrite();
        return;
      }
      this.#discarding = true;
      this.#req?.abort(new Error('the response was sent before the request body was read'));
      if (this.#bodyPaused) {
        this.#bodyPaused = false;
        this.socket.resume();
      }
      return;
    }
    this.#next();
  }

  #next(): void {
    if (!this.keepAlive) {
      this.#closeAfterWrite();
      return;
    }
    this.#req = undefined;
    this.#res = undefined;
    this.#chunked = undefined;
    this.#discarding = false;
    this.#phase = 'head';
    this.idleSince = performance.now();
    if (this.socket.isPaused()) this.socket.resume();
    if (this.#buf !== undefined) queueMicrotask(() => this.#process());
  }

  #closeAfterWrite(): void {
    this.#phase = 'closed';
    this.socket.end();
    // A peer that never closes its side does not keep the socket forever.
    setTimeout(destroySocket, CLOSE_GRACE_MS, this.socket).unref();
  }

  /** Answers a request that will not reach a handler, and closes the connection. */
  #refuse(err: HttpParseError | Error): void {
    const status = err instanceof HttpParseError ? err.status : 400;
    const code = err instanceof HttpParseError ? err.code : 'invalid-request';
    this.#options.onClientError?.(code, err);
    this.#phase = 'closed';
    this.#buf = undefined;
    if (this.#res?.headersSent) {
      this.socket.destroy();
      return;
    }
    this.#writeRefusal(status);
  }

  #writeRefusal(status: number): void {
    if (!this.socket.writable) {
      this.socket.destroy();
      return;
    }
    this.socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
      'latin1',
    );
    setTimeout(destroySocket, CLOSE_GRACE_MS, this.socket).unref();
  }

  /** A CONNECT request: the handler gets the socket and what followed the head. */
  #handOver(req: H1Request): void {
    const socket = this.socket;
    const rest =
      this.#buf && this.#pos < this.#buf.length ? Buffer.from(this.#buf.subarray(this.#pos)) : EMPTY;
    this.#buf = undefined;
    this.#phase = 'closed';
    this.#server.connections.delete(this);
    socket.off('data', this.#onData);
    socket.off('drain', this.#onDrain);
    socket.off('error', this.#onError);
    socket.off('close', this.#onClose);
    socket.off('end', this.#onEnd);
    // Held until the handler pipes the socket somewhere: nothing may flow to no listener.
    socket.pause();
    if (!this.#options.onConnect) {
      this.#writeRefusal(405);
      return;
    }
    this.#options.onConnect(req, socket, rest);
  }

  /** The server is closing: idle now, busy after the current response. */
  shutdown(): void {
    this.keepAlive = false;
    if (this.#phase === 'head' && this.#req === undefined && this.#buf === undefined) this.#closeAfterWrite();
  }

  /** Enforces the timeouts; called by the server's periodic check. */
  check(now: number): void {
    const o = this.#options;
    if (this.headStart !== 0 && now - this.headStart > o.headersTimeoutMs) {
      this.#timeout('headers-timeout');
    } else if (this.requestStart !== 0 && now - this.requestStart > o.requestTimeoutMs) {
      this.#req?.abort(new Error('request timeout'));
      this.#timeout('request-timeout');
    } else if (this.idleSince !== 0 && now - this.idleSince > o.keepAliveTimeoutMs) {
      this.#phase = 'closed';
      this.socket.destroy();
    }
  }

  #timeout(code: string): void {
    this.#options.onClientError?.(code, new Error(code));
    this.#phase = 'closed';
    this.#buf = undefined;
    if (this.#res?.headersSent) this.socket.destroy();
    else this.#writeRefusal(408);
    this.headStart = 0;
    this.requestStart = 0;
    this.idleSince = 0;
  }
}

/** A listening data-plane server; `server` is a plain net.Server. */
export class H1Server {
  readonly server: net.Server;
  readonly connections = new Set<Connection>();
  readonly #timer: NodeJS.Timeout;

  constructor(options: H1ServerOptions) {
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      this.connections.add(new Connection(this, socket, options));
    });
    const period = Math.max(
      100,
      Math.min(1000, Math.min(options.headersTimeoutMs, options.keepAliveTimeoutMs) / 2),
    );
    this.#timer = setInterval(() => {
      const now = performance.now();
      for (const c of this.connections) c.check(now);
    }, period);
    this.#timer.unref();
    this.server.once('close', () => clearInterval(this.#timer));
  }

  /**
   * Stops accepting connections, closes idle ones at once and the others after the response in
   * progress; resolves once every connection is gone.
   */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const c of this.connections) c.shutdown();
    });
  }
}
