import assert from 'node:assert/strict';
import net, { type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import {
  H1Server,
  type H1Request,
  type H1Response,
  type H1ServerOptions,
} from '../../../src/protocol/http1/server.js';

/** A parsed response, read with a parser independent of the engine's. */
interface Resp {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The head as sent. */
  head: string;
}

/** A raw TCP client: exact bytes out, responses parsed from the bytes that come back. */
class Raw {
  buf = Buffer.alloc(0);
  ended = false;
  closed = false;
  #wake: (() => void) | undefined;

  constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.#notify();
    });
    sock.on('end', () => {
      this.ended = true;
      this.#notify();
    });
    sock.on('close', () => {
      this.closed = true;
      this.#notify();
    });
    sock.on('error', () => {});
  }

  static connect(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  send(data: string | Buffer): void {
    this.sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Waits until `ready` holds, re-checking on every event; fails after `ms`. */
  async until(ready: () => boolean, ms = 2000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.text())}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  text(): string {
    return this.buf.toString('latin1');
  }

  /** Reads the next response off the buffer. `noBody` for HEAD. */
  async response(noBody = false, ms = 2000): Promise<Resp> {
    await this.until(() => this.buf.indexOf('\r\n\r\n') >= 0 || this.ended, ms, 'a response head');
    const at = this.buf.indexOf('\r\n\r\n');
    if (at < 0) throw new Error(`connection ended without a response: ${JSON.stringify(this.text())}`);
    const head = this.buf.subarray(0, at).toString('latin1');
    this.buf = this.buf.subarray(at + 4);
    const [line, ...fields] = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3}) /.exec(`${line} `);
    assert.ok(m, `status line ${line}`);
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const f of fields) {
      const c = f.indexOf(':');
      const name = f.slice(0, c).toLowerCase();
      assert.equal(headers[name], undefined, `repeated header ${name} in ${head}`);
      headers[name] = f.slice(c + 1).trim();
    }
    let body = Buffer.alloc(0);
    if (noBody || status < 200 || status === 204 || status === 304) {
      // none
    } else if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        await this.until(() => this.buf.indexOf('\r\n') >= 0, ms, 'a chunk size');
        const eol = this.buf.indexOf('\r\n');
        const size = parseInt(this.buf.subarray(0, eol).toString('latin1'), 16);
        assert.ok(Number.isInteger(size), 'chunk size');
        if (size === 0) {
          await this.until(() => this.buf.length >= eol + 4, ms, 'the last chunk');
          assert.equal(this.buf.subarray(eol, eol + 4).toString('latin1'), '\r\n\r\n');
          this.buf = this.buf.subarray(eol + 4);
          break;
        }
        await this.until(() => this.buf.length >= eol + 2 + size + 2, ms, 'chunk data');
        parts.push(this.buf.subarray(eol + 2, eol + 2 + size));
        assert.equal(this.buf.subarray(eol + 2 + size, eol + 4 + size).toString('latin1'), '\r\n');
        this.buf = this.buf.subarray(eol + 4 + size);
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      await this.until(() => this.buf.length >= n, ms, `${n} body bytes`);
      body = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
    } else {
      await this.until(() => this.ended, ms, 'the close that ends the body');
      body = this.buf;
      this.buf = Buffer.alloc(0);
    }
    return { status, headers, body, head };
  }

  /** Resolves when the server closed (or ended) the connection. */
  async serverClosed(ms = 2000): Promise<void> {
    await this.until(() => this.ended || this.closed, ms, 'the server to close');
  }

  destroy(): void {
    this.sock.destroy();
  }
}

interface Started {
  h1: H1Server;
  port: number;
  errors: Array<{ code: string; err: Error }>;
  close(): Promise<void>;
}

async function start(
  onRequest: (req: H1Request, res: H1Response) => void,
  extra: Partial<H1ServerOptions> = {},
): Promise<Started> {
  const errors: Array<{ code: string; err: Error }> = [];
  const h1 = new H1Server({
    headersTimeoutMs: 5000,
    requestTimeoutMs: 5000,
    keepAliveTimeoutMs: 5000,
    maxHeaderBytes: 16 * 1024,
    onRequest,
    onClientError: (code, err) => errors.push({ code, err }),
    ...extra,
  });
  const sockets = new Set<net.Socket>();
  h1.server.on('connection', (sock: net.Socket) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((resolve) => h1.server.listen(0, '127.0.0.1', resolve));
  const port = (h1.server.address() as net.AddressInfo).port;
  return {
    h1,
    port,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const sock of sockets) sock.destroy();
        h1.server.close(() => resolve());
      }),
  };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readAll(req: H1Request): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of req) parts.push(c);
  return Buffer.concat(parts).toString('latin1');
}

/** Errors seen by `/read` handlers while reading a body. */
const readErrors: string[] = [];

/** A route table used by most tests: `/echo`, `/stream`, `/slow?ms=N`, `/pipe`, ... */
function routes(req: H1Request, res: H1Response): void {
  const url = new URL(req.url, 'http://x');
  switch (url.pathname) {
    case '/hello':
      res.writeHead(200, {
        'content-type': 'text/plain',
        'x-method': req.method,
        'x-version': req.httpVersion,
      });
      res.end('hello');
      return;
    case '/echo':
      readAll(req).then(
        (body) => {
          res.writeHead(200, { 'x-te': req.headers['transfer-encoding'] ?? '-' });
          res.end(`${req.method} ${req.url} ${body}`);
        },
        () => res.destroy(),
      );
      return;
    case '/pipe': {
      const parts: Buffer[] = [];
      req.body.pipe(
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            parts.push(chunk);
            cb();
          },
          final(cb) {
            res.end(`piped ${Buffer.concat(parts).toString('latin1')}`);
            cb();
          },
        }),
      );
      return;
    }
    case '/read':
      readAll(req).then(
        (body) => res.end(body),
        (err: Error) => readErrors.push(err.message),
      );
      return;
    case '/ignore':
      res.end(`ignored ${req.url}`);
      return;
    case '/stream':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('one,');
      setTimeout(() => {
        res.write('two,');
        setTimeout(() => res.end('three'), 5);
      }, 5);
      return;
    case '/slow':
      setTimeout(() => res.end(`slow ${url.searchParams.get('ms')}`), Number(url.searchParams.get('ms')));
      return;
    default:
      res.writeHead(404);
      res.end();
  }
}

describe('H1Server: requests and responses', { timeout: 20_000 }, () => {
  let s: Started;
  const clients: Raw[] = [];
  const connect = async () => {
    const c = await Raw.connect(s.port);
    clients.push(c);
    return c;
  };
  before(async () => {
    s = await start(routes);
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await s.close();
  });

  it('answers a simple GET with a content-length', async () => {
    const c = await connect();
    c.send('GET /hello?q=1 HTTP/1.1\r\nHost: test\r\nX-Custom:  v \r\n\r\n');
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.match(r.head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(r.headers['content-length'], '5');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['x-method'], 'GET');
    assert.equal(r.headers['x-version'], '1.1');
    assert.ok(r.headers.date, 'a date header');
    assert.equal(r.headers.connection, undefined);
    assert.equal(r.headers['transfer-encoding'], undefined);
    assert.equal(r.body.toString(), 'hello');
    assert.equal(c.buf.length, 0, 'nothing after the body');
  });

  it('hands the handler the parsed request', async () => {
    let seen: H1Request | undefined;
    const local = await start((req, res) => {
      seen = req;
      res.end();
    });
    try {
      const c = await Raw.connect(local.port);
      c.send('PUT /a/b?c=%20d HTTP/1.1\r\nHost: h\r\nAccept: x\r\nAccept: y\r\nContent-Length: 0\r\n\r\n');
      assert.equal((await c.response()).status, 200);
      assert.ok(seen);
      assert.equal(seen.method, 'PUT');
      assert.equal(seen.url, '/a/b?c=%20d');
      assert.equal(seen.httpVersion, '1.1');
      assert.equal(seen.headers.accept, 'x, y');
      assert.equal(seen.socket.remoteAddress, '127.0.0.1');
      c.destroy();
    } finally {
      await local.close();
    }
  });

  it('chunks a streamed response without a length (HTTP/1.1)', async () => {
    const c = await connect();
    c.send('GET /stream HTTP/1.1\r\nHost: t\r\n\r\n');
    const r = await c.response();
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.equal(r.headers['content-length'], undefined);
    assert.equal(r.body.toString(), 'one,two,three');
    // The connection is still usable.
    c.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.response()).body.toString(), 'hello');
  });

  it('delimits a streamed HTTP/1.0 response by closing, with connection: close', async () => {
    const c = await connect();
    c.send('GET /stream HTTP/1.0\r\n\r\n');
    const r = await c.response();
    assert.equal(r.headers.connection, 'close');
    assert.equal(r.headers['transfer-encoding'], undefined);
    assert.equal(r.headers['content-length'], undefined);
    assert.equal(r.body.toString(), 'one,two,three');
    await c.serverClosed();
  });

  it('keeps an HTTP/1.0 connection alive when asked', async () => {
    const c = await connect();
    c.send('GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const r1 = await c.response();
    assert.equal(r1.headers.connection, 'keep-alive');
    assert.equal(r1.headers['content-length'], '5');
    assert.equal(r1.headers['x-version'], '1.0');
    c.send('GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    assert.equal((await c.response()).body.toString(), 'hello');
    // Without the header, HTTP/1.0 closes after the response.
    c.send('GET /hello HTTP/1.0\r\n\r\n');
    const r3 = await c.response();
    assert.equal(r3.headers.connection, 'close');
    await c.serverClosed();
  });

  it('closes after a response to Connection: close', async () => {
    const c = await connect();
    c.send('GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const r = await c.response();
    assert.equal(r.headers.connection, 'close');
    assert.equal(r.body.toString(), 'hello');
    await c.serverClosed();
  });

  it('answers pipelined requests in order on one connection', async () => {
    const c = await connect();
    c.send(
      'GET /slow?ms=40 HTTP/1.1\r\nHost: t\r\n\r\n' +
        'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\npayload' +
        'GET /slow?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n' +
        'POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
        'GET /hello HTTP/1.1\r\nHost: t\r\n\r\n',
    );
    const bodies: string[] = [];
    for (let i = 0; i < 5; i++) bodies.push((await c.response()).body.toString());
    assert.deepEqual(bodies, ['slow 40', 'POST /echo payload', 'slow 1', 'POST /echo abc', 'hello']);
  });

  it('accepts empty lines before a request and heads split across many packets', async () => {
    const c = await connect();
    const req = '\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n';
    for (const ch of req) {
      c.send(ch);
      await delay(1);
    }
    assert.equal((await c.response()).body.toString(), 'hello');
  });

  it('delivers a content-length body through async iteration', async () => {
    const c = await connect();
    c.send('POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello');
    await delay(10);
    c.send(' world');
    const r = await c.response();
    assert.equal(r.body.toString(), 'POST /echo hello world');
    assert.equal(r.headers['x-te'], '-');
  });

  it('delivers a chunked body through async iteration', async () => {
    const c = await connect();
    c.send('POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n');
    await delay(10);
    c.send('6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n');
    const r = await c.response();
    assert.equal(r.body.toString(), 'POST /echo hello world');
    assert.equal(r.headers['x-te'], 'chunked');
  });

  it('delivers bodies through req.body.pipe', async () => {
    const c = await connect();
    c.send('POST /pipe HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc');
    assert.equal((await c.response()).body.toString(), 'piped abc');
    c.send(
      'POST /pipe HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n',
    );
    assert.equal((await c.response()).body.toString(), 'piped def');
    // No body: the stream is empty and ended.
    c.send('GET /pipe HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.response()).body.toString(), 'piped ');
  });

  it('delivers a large body with backpressure, intact', async () => {
    const size = 3 * 1024 * 1024;
    let got = -1;
    let sum = 0;
    const local = await start((req, res) => {
      let n = 0;
      req.body.pipe(
        new Writable({
          highWaterMark: 1024,
          write(chunk: Buffer, _enc, cb) {
            for (const b of chunk) sum = (sum + b * ((n++ % 7) + 1)) % 1_000_003;
            setImmediate(cb);
          },
          final(cb) {
            got = n;
            res.end('done');
            cb();
          },
        }),
      );
    });
    try {
      const c = await Raw.connect(local.port);
      const body = Buffer.alloc(size);
      let expect = 0;
      for (let i = 0; i < size; i++) {
        body[i] = (i * 31) & 0xff;
        expect = (expect + (body[i] as number) * ((i % 7) + 1)) % 1_000_003;
      }
      c.send(`POST / HTTP/1.1\r\nHost: t\r\nContent-Length: ${size}\r\n\r\n`);
      c.send(body);
      const r = await c.response(false, 5000);
      assert.equal(r.body.toString(), 'done');
      assert.equal(got, size);
      assert.equal(sum, expect);
      c.destroy();
    } finally {
      await local.close();
    }
  });

  it('still serves the next request when a handler answers without reading the body', async () => {
    const c = await connect();
    c.send(
      'POST /ignore?1 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789GET /hello HTTP/1.1\r\nHost: t\r\n\r\n',
    );
    assert.equal((await c.response()).body.toString(), 'ignored /ignore?1');
    assert.equal((await c.response()).body.toString(), 'hello');
    // The body arrives after the response, in pieces; chunked this time.
    c.send('POST /ignore?2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab');
    assert.equal((await c.response()).body.toString(), 'ignored /ignore?2');
    await delay(10);
    c.send('cd\r\n0\r\n\r\n');
    c.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await c.response()).body.toString(), 'hello');
    // The discarded body must not have been taken for a request.
    await delay(20);
    assert.equal(c.buf.length, 0);
    assert.equal(s.errors.length, 0, JSON.stringify(s.errors.map((e) => e.code)));
  });

  it('answers HEAD without a body and keeps the connection in step', async () => {
    const c = await connect();
    c.send('HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    const r = await c.response(true);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/plain');
    c.send('HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n');
    const r2 = await c.response(true);
    assert.equal(r2.status, 200);
    assert.equal(r2.headers['transfer-encoding'], undefined, 'no chunked framing for HEAD');
    await delay(30); // the streamed writes all happen
    c.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    const r3 = await c.response();
    assert.equal(r3.body.toString(), 'hello', `stray bytes before: ${r3.head}`);
    assert.equal(c.buf.length, 0);
  });

  it('sends 100 Continue before the final response when asked', async () => {
    const c = await connect();
    c.send('POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n');
    await c.until(() => c.buf.indexOf('\r\n\r\n') >= 0, 2000, '100 Continue');
    assert.equal(c.text(), 'HTTP/1.1 100 Continue\r\n\r\n');
    c.buf = Buffer.alloc(0);
    c.send('data');
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'POST /echo data');
    // No 100 for a request without the expectation.
    c.send('POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx');
    const r2 = await c.response();
    assert.equal(r2.status, 200);
  });

  it('takes a client that half-closes mid-request as gone, as node:http does', async () => {
    const events: string[] = [];
    let closed!: () => void;
    const done = new Promise<void>((r) => (closed = r));
    const own = await start((_req, res) => {
      // The answer would come later: the client's FIN must reach the handler first.
      res.on('close', () => {
        events.push(`close finished=${res.writableFinished}`);
        closed();
      });
    });
    try {
      const c = await Raw.connect(own.port);
      c.send('GET /slow HTTP/1.1\r\nHost: t\r\n\r\n');
      c.sock.end();
      await Promise.race([done, delay(2000)]);
      assert.deepEqual(events, ['close finished=false']);
      await c.serverClosed();
      assert.equal(c.text(), '', 'no response is written for a client that left');
    } finally {
      await own.close();
    }
  });
});

describe('H1Server: refusals', { timeout: 20_000 }, () => {
  let s: Started;
  const clients: Raw[] = [];
  before(async () => {
    s = await start(routes, { maxHeaderBytes: 1024 });
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await s.close();
  });

  const refused = async (bytes: string, status: number, code: string) => {
    s.errors.length = 0;
    const c = await Raw.connect(s.port);
    clients.push(c);
    c.send(bytes);
    const r = await c.response();
    assert.equal(r.status, status, `status for ${JSON.stringify(bytes.slice(0, 60))}`);
    assert.equal(r.headers.connection, 'close');
    await c.serverClosed();
    assert.deepEqual(
      s.errors.map((e) => e.code),
      [code],
    );
  };

  it('answers 400 to malformed requests, reports them, and keeps serving others', async () => {
    const healthy = await Raw.connect(s.port);
    clients.push(healthy);
    healthy.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await healthy.response()).status, 200);

    await refused('GET / HTTP/1.1\r\nHost : t\r\n\r\n', 400, 'invalid-header-name');
    await refused('GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n', 400, 'obsolete-line-folding');
    await refused('GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n', 400, 'invalid-header-value');
    await refused('G@T / HTTP/1.1\r\nHost: t\r\n\r\n', 400, 'invalid-request-line');
    await refused('GET / HTTP/1.1\nHost: t\r\n\r\n', 400, 'bare-lf');
    await refused('GET / HTTP/1.1\r\n\r\n', 400, 'missing-host');
    await refused('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, 'repeated-host');
    await refused('GET / HTTP/2.0\r\nHost: t\r\n\r\n', 505, 'unsupported-version');
    await refused(
      'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
      'conflicting-framing',
    );
    await refused(
      'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
      501,
      'unsupported-transfer-encoding',
    );
    await refused(
      'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\n',
      400,
      'conflicting-content-length',
    );

    // The healthy connection still works, and so do new ones.
    healthy.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await healthy.response()).body.toString(), 'hello');
    const fresh = await Raw.connect(s.port);
    clients.push(fresh);
    fresh.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await fresh.response()).body.toString(), 'hello');
  });

  it('answers 400 to a malformed chunked body after the handler got the request', async () => {
    readErrors.length = 0;
    await refused(
      'POST /read HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n',
      400,
      'invalid-chunked-body',
    );
    assert.equal(readErrors.length, 1, 'the handler’s read fails');
  });

  it('answers 431 to a head larger than maxHeaderBytes, complete or not', async () => {
    const big = `X-Big: ${'a'.repeat(1100)}\r\n`;
    await refused(`GET / HTTP/1.1\r\nHost: t\r\n${big}\r\n`, 431, 'header-overflow');
    // Still arriving, already too large.
    await refused(`GET / HTTP/1.1\r\nHost: t\r\n${big}`, 431, 'header-overflow');
    // Just under the bound is fine.
    const c = await Raw.connect(s.port);
    clients.push(c);
    const head = 'GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n';
    c.send(head.replace('X-Pad: ', `X-Pad: ${'b'.repeat(1024 - head.length)}`));
    assert.equal((await c.response()).status, 200);
  });

  it('refuses CONNECT with 405 when no handler takes it', async () => {
    const c = await Raw.connect(s.port);
    clients.push(c);
    c.send('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    const r = await c.response();
    assert.equal(r.status, 405);
    await c.serverClosed();
  });
});

describe('H1Server: timeouts', { timeout: 20_000 }, () => {
  let s: Started;
  const clients: Raw[] = [];
  const connect = async () => {
    const c = await Raw.connect(s.port);
    clients.push(c);
    return c;
  };
  before(async () => {
    s = await start(routes, { headersTimeoutMs: 200, requestTimeoutMs: 300, keepAliveTimeoutMs: 250 });
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await s.close();
  });

  it('answers 408 to a head that arrives too slowly', async () => {
    s.errors.length = 0;
    const c = await connect();
    const t0 = Date.now();
    c.send('GET /hello HTTP/1.1\r\n');
    await delay(60);
    c.send('Host: t\r\n');
    const r = await c.response();
    const took = Date.now() - t0;
    assert.equal(r.status, 408);
    assert.ok(took >= 190 && took < 1000, `408 after ${took}ms`);
    await c.serverClosed();
    assert.deepEqual(
      s.errors.map((e) => e.code),
      ['headers-timeout'],
    );
  });

  it('answers 408 to a body that arrives too slowly, failing the handler’s read', async () => {
    s.errors.length = 0;
    const c = await connect();
    readErrors.length = 0;
    c.send('POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab');
    const r = await c.response();
    assert.equal(r.status, 408);
    await c.serverClosed();
    assert.deepEqual(readErrors, ['request timeout']);
    assert.deepEqual(
      s.errors.map((e) => e.code),
      ['request-timeout'],
    );
  });

  it('closes a keep-alive connection left idle', async () => {
    const c = await connect();
    c.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    await c.response();
    const t0 = Date.now();
    await c.serverClosed();
    const took = Date.now() - t0;
    assert.ok(took >= 200 && took < 1000, `closed after ${took}ms idle`);
  });

  it('does not time out a connection that keeps sending requests', async () => {
    const c = await connect();
    for (let i = 0; i < 4; i++) {
      c.send('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
      assert.equal((await c.response()).status, 200);
      await delay(120);
    }
    assert.equal(c.closed || c.ended, false);
  });
});

describe('H1Server: response lifecycle', { timeout: 20_000 }, () => {
  it('emits close with writableFinished false when the client leaves mid-response', async () => {
    let res: H1Response | undefined;
    let closed: (v: { finished: boolean; destroyed: boolean; finish: boolean }) => void = () => {};
    const done = new Promise<{ finished: boolean; destroyed: boolean; finish: boolean }>((r) => (closed = r));
    const s = await start((_req, r) => {
      res = r;
      let finish = false;
      r.on('finish', () => (finish = true));
      // A streaming response (as when relaying): it keeps writing until the client is gone.
      const tick = setInterval(() => r.write('more'), 5);
      r.on('close', () => {
        clearInterval(tick);
        closed({ finished: r.writableFinished, destroyed: r.destroyed, finish });
      });
      r.writeHead(200);
      r.write('partial');
    });
    try {
      const c = await Raw.connect(s.port);
      c.send('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
      await c.until(() => c.text().includes('partial'));
      c.destroy();
      const outcome = await Promise.race([done, delay(2000).then(() => 'no close event')]);
      assert.deepEqual(outcome, { finished: false, destroyed: true, finish: false });
      assert.equal(res?.write('more'), false, 'writes after close are refused');
    } finally {
      await s.close();
    }
  });

  it('emits finish then close with writableFinished true after a normal end', async () => {
    const events: string[] = [];
    let closedWith: boolean | undefined;
    const s = await start((_req, r) => {
      r.on('finish', () => events.push('finish'));
      r.on('close', () => {
        events.push('close');
        closedWith = r.writableFinished;
      });
      r.write('a');
      setTimeout(() => r.end('b'), 5);
    });
    try {
      const c = await Raw.connect(s.port);
      c.send('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
      assert.equal((await c.response()).body.toString(), 'ab');
      await c.until(() => events.length === 2, 1000, 'finish and close');
      assert.deepEqual(events, ['finish', 'close']);
      assert.equal(closedWith, true);
      c.destroy();
      await delay(20);
      assert.deepEqual(events, ['finish', 'close'], 'close only once');
    } finally {
      await s.close();
    }
  });

  it('applies backpressure to a large streamed response read slowly, and delivers it whole', async () => {
    const total = 8 * 1024 * 1024;
    const piece = 64 * 1024;
    let refusedWrites = 0;
    let drains = 0;
    let resolveFull: () => void = () => {};
    const full = new Promise<void>((r) => (resolveFull = r));
    const s = await start((_req, res) => {
      res.writeHead(200, { 'content-length': String(total) });
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          const chunk = Buffer.alloc(piece);
          for (let i = 0; i < piece; i += 4096) chunk[i] = ((sent + i) / 4096) & 0xff;
          sent += piece;
          if (sent >= total) {
            res.end(chunk);
            return;
          }
          if (!res.write(chunk)) {
            refusedWrites++;
            resolveFull();
            res.once('drain', () => {
              drains++;
              pump();
            });
            return;
          }
        }
      };
      pump();
    });
    try {
      const c = await Raw.connect(s.port);
      c.sock.pause();
      let received = 0;
      let head = '';
      let bad = 0;
      let pending = Buffer.alloc(0);
      c.sock.removeAllListeners('data');
      const finished = new Promise<void>((resolve) => {
        c.sock.on('data', (d: Buffer) => {
          if (!head) {
            pending = Buffer.concat([pending, d]);
            const at = pending.indexOf('\r\n\r\n');
            if (at < 0) return;
            head = pending.subarray(0, at).toString('latin1');
            d = pending.subarray(at + 4);
          }
          for (let i = 0; i < d.length; i++) {
            const off = received + i;
            if (off % 4096 === 0 && d[i] !== ((off / 4096) & 0xff)) bad++;
            else if (off % 4096 !== 0 && d[i] !== 0) bad++;
          }
          received += d.length;
          if (received >= total) resolve();
          // Read slowly: a pause after every piece.
          c.sock.pause();
          setTimeout(() => c.sock.resume(), 1);
        });
      });
      c.send('GET /big HTTP/1.1\r\nHost: t\r\n\r\n');
      // Read nothing until the server is told to wait (or long enough that it should have been).
      await Promise.race([full, delay(1000)]);
      c.sock.resume();
      await finished;
      assert.match(head, /content-length: 8388608/);
      assert.equal(received, total);
      assert.equal(bad, 0, 'the bytes arrive in order, unchanged');
      // The first refusal may come from the head being held; more must come from the socket.
      assert.ok(refusedWrites >= 2, `write returned false ${refusedWrites} times`);
      assert.ok(drains >= 1 && drains === refusedWrites, `${drains} drains for ${refusedWrites} refusals`);
      c.destroy();
    } finally {
      await s.close();
    }
  });

  it('hands a CONNECT socket over with the bytes that followed the head', async () => {
    let seen: { method: string; url: string; head: string } | undefined;
    const s = await start(() => assert.fail('CONNECT must not reach onRequest'), {
      onConnect(req, socket, head) {
        seen = { method: req.method, url: req.url, head: head.toString('latin1') };
        socket.resume(); // the engine may hand the socket over paused
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        socket.on('data', (d: Buffer) => socket.write(`echo:${d.toString('latin1')}`));
      },
    });
    try {
      const c = await Raw.connect(s.port);
      c.send('CONNECT upstream.example:443 HTTP/1.1\r\nHost: upstream.example:443\r\n\r\nHELLO\r\n\r\nGET');
      await c.until(() => c.text().startsWith('HTTP/1.1 200 Connection Established\r\n\r\n'));
      assert.deepEqual(seen, { method: 'CONNECT', url: 'upstream.example:443', head: 'HELLO\r\n\r\nGET' });
      assert.equal(s.h1.connections.size, 0, 'the server no longer tracks the socket');
      c.send('tunnel bytes GET / HTTP/1.1\r\n\r\n');
      await c.until(() => c.text().includes('echo:tunnel bytes GET / HTTP/1.1\r\n\r\n'));
      c.destroy();
    } finally {
      await s.close();
    }
  });
});

describe('H1Server: handler-provided framing', { timeout: 20_000 }, () => {
  let s: Started;
  before(async () => {
    s = await start((req, res) => {
      if (req.url === '/len') {
        res.writeHead(200, { 'content-length': '6' });
        res.write('ab');
        setTimeout(() => res.end('cdef'), 5);
      } else if (req.url === '/204') {
        res.writeHead(204, { 'x-a': '1' });
        res.end('ignored');
      } else {
        res.writeHead(200, { 'set-cookie': ['a=1', 'b=2'] });
        res.end();
      }
    });
  });
  after(() => s.close());

  it('uses a given content-length while streaming', async () => {
    const c = await Raw.connect(s.port);
    c.send('GET /len HTTP/1.1\r\nHost: t\r\n\r\nGET /204 HTTP/1.1\r\nHost: t\r\n\r\n');
    const r = await c.response();
    assert.equal(r.headers['content-length'], '6');
    assert.equal(r.headers['transfer-encoding'], undefined);
    assert.equal(r.body.toString(), 'abcdef');
    const r2 = await c.response();
    assert.equal(r2.status, 204);
    assert.equal(r2.headers['content-length'], undefined);
    assert.equal(r2.headers['x-a'], '1');
    c.send('GET /cookies HTTP/1.1\r\nHost: t\r\n\r\n');
    await c.until(() => c.text().includes('\r\n\r\n'));
    assert.match(c.text(), /set-cookie: a=1\r\nset-cookie: b=2\r\n/);
    assert.match(c.text(), /content-length: 0\r\n/);
    c.destroy();
  });
});
