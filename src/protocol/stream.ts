import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import { FullJitterBackoff } from '../core/backoff.js';
import { systemClock, type Clock } from '../core/clock.js';
import { systemRandom, type Random } from '../core/random.js';
import {
  PROTOCOL_VERSION,
  SUBPROTOCOL,
  decodeClientMessage,
  decodeServerMessage,
  type ClientMessage,
  type Hello,
  type ServerMessage,
  type Welcome,
} from './messages.js';

/**
 * Both ends of a delivery stream: one WebSocket carrying JSON messages, opened by the client with
 * `hello`, answered with `welcome`, kept alive by heartbeats both ways. A side that hears nothing
 * for three heartbeat intervals drops the connection; the client then reconnects with full-jitter
 * backoff, rotating through its server URLs, and resumes by version. Every frame is validated
 * before it is handed on; a malformed one ends the stream with an `error` message naming it.
 */

/** Frames larger than this are refused (a 10,000-service snapshot is a few MiB). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;
const MISSED_HEARTBEATS = 3;
/** WebSocket close code for protocol violations (RFC 6455: policy violation). */
const CLOSE_PROTOCOL = 1008;
/** A client whose unsent data exceeds this is too slow to keep: it is disconnected. */
const MAX_BUFFERED_BYTES = 512 * 1024 * 1024;

function text(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

function sendJson(ws: WebSocket, message: object): boolean {
  if (ws.readyState !== WebSocket.OPEN) return false;
  if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
    ws.terminate();
    return false;
  }
  ws.send(JSON.stringify(message));
  return true;
}

// ---- server -----------------------------------------------------------------------------------

export interface ServerSessionEvents {
  message: (message: ClientMessage) => void;
  close: (reason: string) => void;
}

/** One connected client, after a valid `hello`. */
export class ServerSession {
  readonly hello: Hello;
  readonly remoteAddress: string;
  readonly connectedAtMs: number;
  /** Monotonic ms of the last frame received. */
  lastHeardMs: number;
  #closed = false;
  #onMessage: ((m: ClientMessage) => void) | undefined;
  readonly #onClose: ((reason: string) => void)[] = [];

  constructor(
    readonly ws: WebSocket,
    hello: Hello,
    remoteAddress: string,
    private readonly clock: Clock,
  ) {
    this.hello = hello;
    this.remoteAddress = remoteAddress;
    this.connectedAtMs = clock.now();
    this.lastHeardMs = clock.monotonicMs();
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(message: ServerMessage): boolean {
    return sendJson(this.ws, message);
  }

  /**
   * Sends a message already serialised — one snapshot shared by many sessions is encoded to
   * UTF-8 once, as a Buffer, instead of once per session.
   */
  sendText(json: string | Buffer): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.ws.terminate();
      return false;
    }
    this.ws.send(json, { binary: false });
    return true;
  }

  onMessage(handler: (message: ClientMessage) => void): void {
    this.#onMessage = handler;
  }

  onClose(handler: (reason: string) => void): void {
    if (this.#closed) handler('closed');
    else this.#onClose.push(handler);
  }

  /** Ends the stream, telling the peer why. */
  fail(code: string, message: string): void {
    this.send({ type: 'error', code, message: message.slice(0, 4000) });
    this.ws.close(CLOSE_PROTOCOL, code.slice(0, 100));
    // A peer that does not complete the close handshake is cut off.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  /** @internal */
  deliver(message: ClientMessage): void {
    this.lastHeardMs = this.clock.monotonicMs();
    this.#onMessage?.(message);
  }

  /** @internal */
  closedWith(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of this.#onClose) h(reason);
  }
}

export interface StreamServerOptions {
  /** HTTP server to attach to; the stream answers upgrades on `path` only. */
  server: Server;
  path: string;
  info: Welcome['server'];
  heartbeatIntervalMs: number;
  leaseTtlMs?: number;
  /** Roles allowed to connect (others are refused after `hello`). */
  roles: readonly Hello['node']['role'][];
  /** Called after a valid hello and the welcome has been sent. */
  onSession: (session: ServerSession) => void;
  /** Time a new connection has to send `hello`, ms (default 10 s). */
  helloTimeoutMs?: number;
  maxPayloadBytes?: number;
  clock?: Clock;
  log?: (event: Record<string, unknown>) => void;
}

/** The server end: accepts streams on an existing HTTP server. */
export class StreamServer {
  readonly #wss: WebSocketServer;
  readonly #options: StreamServerOptions;
  readonly #clock: Clock;
  readonly sessions = new Set<ServerSession>();
  readonly #timer: NodeJS.Timeout;
  readonly #onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

  constructor(options: StreamServerOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.#onUpgrade = (req, socket, head) => this.#upgrade(req, socket, head);
    options.server.on('upgrade', this.#onUpgrade);
    this.#timer = setInterval(() => this.#heartbeat(), options.heartbeatIntervalMs);
    this.#timer.unref();
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = req.url ?? '';
    const path = url.split('?')[0];
    const refuse = (status: number, message: string) => {
      const body = JSON.stringify({ error: 'ISTHMUS_E_PROTOCOL', message });
      socket.end(
        `HTTP/1.1 ${status} ${status === 404 ? 'Not Found' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    };
    if (path !== this.#options.path) {
      refuse(404, `no stream at ${path}; this server streams at ${this.#options.path}`);
      return;
    }
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim());
    if (!offered.includes(SUBPROTOCOL)) {
      refuse(
        400,
        `the stream needs the WebSocket subprotocol "${SUBPROTOCOL}" (offered: ${offered.join(', ') || 'none'})`,
      );
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req.socket.remoteAddress ?? ''));
  }

  #accept(ws: WebSocket, remoteAddress: string): void {
    let session: ServerSession | undefined;
    const early = (code: string, message: string) => {
      sendJson(ws, { type: 'error', code, message });
      ws.close(CLOSE_PROTOCOL, code);
    };
    const helloTimer = setTimeout(
      () => early('ISTHMUS_E_PROTOCOL', 'no hello received in time'),
      this.#options.helloTimeoutMs ?? 10_000,
    );
    helloTimer.unref();
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        (session ? session.fail.bind(session) : early)(
          'ISTHMUS_E_PROTOCOL',
          'binary frames are not part of the protocol',
        );
        return;
      }
      const decoded = decodeClientMessage(text(data));
      if (!decoded.ok) {
        this.#options.log?.({ event: 'stream-protocol-error', remoteAddress, error: decoded.error });
        (session ? session.fail.bind(session) : early)('ISTHMUS_E_PROTOCOL', decoded.error);
        return;
      }
      const message = decoded.message;
      if (!session) {
        if (message.type !== 'hello') {
          early('ISTHMUS_E_PROTOCOL', `the first message must be "hello", got "${message.type}"`);
          return;
        }
        clearTimeout(helloTimer);
        if (message.protocol !== PROTOCOL_VERSION) {
          early(
            'ISTHMUS_E_PROTOCOL',
            `unsupported protocol version ${message.protocol}; this server speaks ${PROTOCOL_VERSION}`,
          );
          return;
        }
        if (!this.#options.roles.includes(message.node.role)) {
          early(
            'ISTHMUS_E_PROTOCOL',
            `a ${message.node.role} cannot connect here; this ${this.#options.info.role} serves ${this.#options.roles.join(', ')}`,
          );
          return;
        }
        session = new ServerSession(ws, message, remoteAddress, this.#clock);
        this.sessions.add(session);
        session.send({
          type: 'welcome',
          protocol: PROTOCOL_VERSION,
          server: this.#options.info,
          heartbeatIntervalMs: this.#options.heartbeatIntervalMs,
          ...(this.#options.leaseTtlMs !== undefined && { leaseTtlMs: this.#options.leaseTtlMs }),
        });
        this.#options.onSession(session);
        return;
      }
      if (message.type === 'hello') {
        session.fail('ISTHMUS_E_PROTOCOL', 'hello was already received on this stream');
        return;
      }
      session.deliver(message);
    });
    ws.on('close', (code, reason) => {
      clearTimeout(helloTimer);
      if (session) {
        this.sessions.delete(session);
        session.closedWith(`closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`);
      }
    });
    ws.on('error', (err) => {
      this.#options.log?.({ event: 'stream-error', remoteAddress, error: err.message });
    });
  }

  #heartbeat(): void {
    const now = this.#clock.monotonicMs();
    const deadMs = this.#options.heartbeatIntervalMs * MISSED_HEARTBEATS;
    for (const s of this.sessions) {
      if (now - s.lastHeardMs > deadMs) {
        this.#options.log?.({
          event: 'stream-silent',
          node: s.hello.node.id,
          silentMs: Math.round(now - s.lastHeardMs),
        });
        s.ws.terminate();
        continue;
      }
      s.send({ type: 'heartbeat', sentAtMs: this.#clock.now() });
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#options.server.off('upgrade', this.#onUpgrade);
    for (const s of this.sessions) s.ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }
}

// ---- client -----------------------------------------------------------------------------------

export interface ClientState {
  connected: boolean;
  /** Server URL of the current or last connection. */
  url: string | undefined;
  /** Monotonic ms of the last frame from a server; undefined before the first one. */
  lastContactMs: number | undefined;
  /** Why the last connection attempt or stream ended. */
  lastError: string | undefined;
  /** Connections established since start. */
  connects: number;
}

export interface StreamClientOptions {
  /** Server stream URLs (`ws://HOST:PORT/PATH`), tried in turn. */
  urls: readonly string[];
  /** Built afresh for every connection (so it carries the latest applied version). */
  hello: () => Hello;
  onMessage: (message: ServerMessage, client: StreamClient) => void;
  /** Called when the stream goes up or down. */
  onState?: (state: ClientState) => void;
  /** Called after `welcome`, before any other message: the place to (re)send registrations. */
  onWelcome?: (welcome: Welcome, client: StreamClient) => void;
  /** Reconnect backoff, ms (default 100 .. 5000). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  connectTimeoutMs?: number;
  maxPayloadBytes?: number;
  clock?: Clock;
  random?: Random;
  log?: (event: Record<string, unknown>) => void;
}

/** The client end: keeps one stream open to one of its servers for as long as it runs. */
export class StreamClient {
  readonly #options: StreamClientOptions;
  readonly #clock: Clock;
  readonly #backoff: FullJitterBackoff;
  #ws: WebSocket | undefined;
  #urlIndex = 0;
  #failures = 0;
  #stopped = false;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #heartbeatIntervalMs = 1000;
  #welcomed = false;
  /** The client's current version, echoed in heartbeats. */
  version: string | undefined;
  readonly state: ClientState = {
    connected: false,
    url: undefined,
    lastContactMs: undefined,
    lastError: undefined,
    connects: 0,
  };

  constructor(options: StreamClientOptions) {
    if (options.urls.length === 0) throw new RangeError('StreamClient needs at least one server URL');
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#backoff = new FullJitterBackoff(
      options.backoffBaseMs ?? 100,
      options.backoffMaxMs ?? 5000,
      options.random ?? systemRandom,
    );
  }

  start(): this {
    this.#connect();
    return this;
  }

  get connected(): boolean {
    return this.state.connected;
  }

  send(message: ClientMessage): boolean {
    return this.#ws !== undefined && this.#welcomed ? sendJson(this.#ws, message) : false;
  }

  #setState(patch: Partial<ClientState>): void {
    const was = this.state.connected;
    Object.assign(this.state, patch);
    if (patch.connected !== undefined && patch.connected !== was) this.#options.onState?.({ ...this.state });
  }

  #connect(): void {
    if (this.#stopped) return;
    const url = this.#options.urls[this.#urlIndex % this.#options.urls.length] as string;
    this.state.url = url;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, SUBPROTOCOL, {
        handshakeTimeout: this.#options.connectTimeoutMs ?? 5000,
        maxPayload: this.#options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
        perMessageDeflate: false,
      });
    } catch (err) {
      this.#ended(`cannot connect to ${url}: ${(err as Error).message}`);
      return;
    }
    this.#ws = ws;
    this.#welcomed = false;
    ws.on('open', () => {
      sendJson(ws, this.#options.hello());
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 2000) body += c;
      });
      res.on('end', () => {
        ws.terminate();
        this.#ended(`${url} refused the stream: HTTP ${res.statusCode} ${body.slice(0, 500)}`);
      });
    });
    ws.on('message', (data, isBinary) => {
      if (ws !== this.#ws) return;
      this.state.lastContactMs = this.#clock.monotonicMs();
      if (isBinary) {
        this.#fail(ws, 'binary frames are not part of the protocol');
        return;
      }
      const decoded = decodeServerMessage(text(data));
      if (!decoded.ok) {
        this.#fail(ws, decoded.error);
        return;
      }
      const message = decoded.message;
      if (!this.#welcomed) {
        if (message.type === 'error') {
          this.state.lastError = `${url}: ${message.code}: ${message.message}`;
          return;
        }
        if (message.type !== 'welcome') {
          this.#fail(ws, `expected "welcome" first, got "${message.type}"`);
          return;
        }
        this.#welcomed = true;
        this.#failures = 0;
        this.#heartbeatIntervalMs = message.heartbeatIntervalMs;
        this.#startHeartbeats(ws);
        this.#setState({ connected: true, lastError: undefined, connects: this.state.connects + 1 });
        this.#options.log?.({ event: 'stream-connected', url });
        this.#options.onWelcome?.(message, this);
        return;
      }
      if (message.type === 'error') {
        this.state.lastError = `${url}: ${message.code}: ${message.message}`;
        this.#options.log?.({
          event: 'stream-error-received',
          url,
          code: message.code,
          message: message.message,
        });
        return;
      }
      this.#options.onMessage(message, this);
    });
    ws.on('close', (code, reason) => {
      if (ws !== this.#ws) return;
      const why =
        this.state.lastError ??
        `stream to ${url} closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`;
      this.#ended(why);
    });
    ws.on('error', (err) => {
      if (ws !== this.#ws) return;
      this.state.lastError = `${url}: ${err.message}`;
    });
  }

  #fail(ws: WebSocket, error: string): void {
    this.state.lastError = `${this.state.url}: ${error}`;
    this.#options.log?.({ event: 'stream-protocol-error', url: this.state.url, error });
    sendJson(ws, { type: 'error', code: 'ISTHMUS_E_PROTOCOL', message: error.slice(0, 4000) });
    ws.terminate();
  }

  #startHeartbeats(ws: WebSocket): void {
    clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = setInterval(() => {
      const last = this.state.lastContactMs ?? 0;
      if (this.#clock.monotonicMs() - last > this.#heartbeatIntervalMs * MISSED_HEARTBEATS) {
        this.state.lastError = `${this.state.url}: no message for ${MISSED_HEARTBEATS} heartbeat intervals`;
        ws.terminate();
        return;
      }
      sendJson(ws, {
        type: 'heartbeat',
        sentAtMs: this.#clock.now(),
        ...(this.version !== undefined && { version: this.version }),
      });
    }, this.#heartbeatIntervalMs);
    this.#heartbeatTimer.unref();
  }

  #ended(reason: string): void {
    clearInterval(this.#heartbeatTimer);
    this.#ws = undefined;
    this.#welcomed = false;
    this.#setState({ connected: false, lastError: reason });
    if (this.#stopped) return;
    this.#options.log?.({ event: 'stream-disconnected', reason });
    // Rotate to the next server and back off (the first retry after a good stream is quick).
    this.#urlIndex++;
    const delay = this.#backoff.delayMs(this.#failures++);
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay);
    this.#reconnectTimer.unref();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#heartbeatTimer);
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close(1000, 'client stopping');
        setTimeout(() => {
          ws.terminate();
          resolve();
        }, 1000).unref();
      });
    }
    this.#setState({ connected: false });
  }
}
