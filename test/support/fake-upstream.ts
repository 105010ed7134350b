import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How a fake upstream answers a request. Change `behavior` at any time to script a failure. */
export type Behavior =
  | { kind: 'ok'; status?: number; body?: string; delayMs?: number; headers?: Record<string, string> }
  | { kind: 'status'; status: number; body?: string }
  /** Accepts the request and never answers. */
  | { kind: 'hang' }
  /** Destroys the connection as soon as the request arrives (a reset before response headers). */
  | { kind: 'reset' }
  /** Sends headers and part of the body, then destroys the connection. */
  | { kind: 'partial'; bytes?: number }
  /** Streams `chunks` chunks of `chunkBytes`, `intervalMs` apart. */
  | { kind: 'slow'; chunks: number; chunkBytes: number; intervalMs: number };

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/**
 * A scriptable HTTP server on loopback, standing in for an app instance. It reports who it is
 * in the `x-served-by` header and body, and records every request it saw.
 */
export class FakeUpstream {
  behavior: Behavior = { kind: 'ok' };
  /** Status of `GET /healthz`, independent of `behavior` (200 by default). */
  healthStatus = 200;
  readonly seen: SeenRequest[] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #port = 0;

  private constructor(
    readonly name: string,
    readonly host: string,
  ) {
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
  }

  static async start(name: string, host = '127.0.0.1', port = 0): Promise<FakeUpstream> {
    const f = new FakeUpstream(name, host);
    await new Promise<void>((resolve, reject) => {
      f.#server.once('error', reject);
      f.#server.listen({ host, port }, () => resolve());
    });
    f.#port = (f.#server.address() as AddressInfo).port;
    return f;
  }

  get port(): number {
    return this.#port;
  }

  /** Requests seen since the last call, then forgets them. */
  take(): SeenRequest[] {
    return this.seen.splice(0);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    // Health checks are answered apart and not recorded: tests count application requests.
    if (req.url === '/healthz') {
      res.writeHead(this.healthStatus, { 'content-type': 'text/plain' });
      res.end(String(this.healthStatus));
      return;
    }
    this.seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    });
    const b = this.behavior;
    switch (b.kind) {
      case 'ok': {
        if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
        const body = b.body ?? JSON.stringify({ servedBy: this.name, method: req.method, url: req.url });
        res.writeHead(b.status ?? 200, {
          'content-type': 'application/json',
          'x-served-by': this.name,
          ...b.headers,
        });
        res.end(body);
        return;
      }
      case 'status':
        res.writeHead(b.status, { 'content-type': 'text/plain', 'x-served-by': this.name });
        res.end(b.body ?? `status ${b.status} from ${this.name}`);
        return;
      case 'hang':
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'partial':
        res.writeHead(200, {
          'content-type': 'text/plain',
          'content-length': '1000000',
          'x-served-by': this.name,
        });
        res.write('x'.repeat(b.bytes ?? 100));
        setTimeout(() => req.socket.destroy(), 10);
        return;
      case 'slow': {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-served-by': this.name });
        for (let i = 0; i < b.chunks; i++) {
          res.write(Buffer.alloc(b.chunkBytes, 97));
          await new Promise((r) => setTimeout(r, b.intervalMs));
        }
        res.end();
      }
    }
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}
