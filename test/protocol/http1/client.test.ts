import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net, { type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import {
  ClientPool,
  ConnectTimeoutError,
  type ClientPoolOptions,
  type Exchange,
  type ExchangeRequest,
  UpstreamProtocolError,
} from '../../../src/protocol/http1/client.js';
import type { ResponseHead } from '../../../src/protocol/http1/parse.js';
import { HeaderValueError } from '../../../src/protocol/http1/parse.js';

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(check: () => boolean, ms = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** A request as the upstream received it, parsed by the test's own small parser. */
interface SeenRequest {
  line: string;
  head: string;
  headers: Record<string, string[]>;
  body: Buffer;
  conn: number;
  at: number;
}

type Responder = (req: SeenRequest, sock: Socket) => void;

/**
 * A raw upstream: counts connections, parses the requests on each (content-length or chunked
 * bodies) and lets the test write exact response bytes.
 */
class Upstream {
  readonly server: net.Server;
  readonly sockets = new Set<Socket>();
  readonly requests: SeenRequest[] = [];
  connections = 0;
  closedConnections = 0;
  respond: Responder = (_req, sock) => sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  port = 0;

  constructor() {
    this.server = net.createServer((sock) => {
      const conn = ++this.connections;
      this.sockets.add(sock);
      sock.on('close', () => {
        this.closedConnections++;
        this.sockets.delete(sock);
      });
      sock.on('error', () => {});
      let buf = Buffer.alloc(0);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const r = takeRequest(buf);
          if (!r) return;
          buf = buf.subarray(r.used);
          const req = { ...r.req, conn, at: Date.now() };
          this.requests.push(req);
          this.respond(req, sock);
        }
      });
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** One complete request at the start of `buf`, or undefined. */
function takeRequest(buf: Buffer): { req: Omit<SeenRequest, 'conn' | 'at'>; used: number } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const head = buf.subarray(0, end).toString('latin1');
  const [line = '', ...fields] = head.split('\r\n');
  const headers: Record<string, string[]> = {};
  for (const f of fields) {
    const c = f.indexOf(':');
    (headers[f.slice(0, c).toLowerCase()] ??= []).push(f.slice(c + 1).trim());
  }
  let at = end + 4;
  let body: Buffer = Buffer.alloc(0);
  if (headers['transfer-encoding']?.[0] === 'chunked') {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', at);
      if (eol < 0) return undefined;
      const size = parseInt(buf.subarray(at, eol).toString('latin1'), 16);
      if (size === 0) {
        if (buf.length < eol + 4) return undefined;
        at = eol + 4;
        break;
      }
      if (buf.length < eol + 2 + size + 2) return undefined;
      parts.push(buf.subarray(eol + 2, eol + 2 + size));
      at = eol + 4 + size;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length']) {
    const n = Number(headers['content-length'][0]);
    if (buf.length < at + n) return undefined;
    body = buf.subarray(at, at + n);
    at += n;
  }
  return { req: { line, head, headers, body: Buffer.from(body) }, used: at };
}

interface Outcome {
  heads: ResponseHead[];
  body: Buffer;
  ended: number;
  errors: Array<{ err: Error; responded: boolean }>;
}

/** Runs one exchange; resolves on its terminal event. `hooks` adjust the handler. */
function run(
  pool: ClientPool,
  port: number,
  request: Partial<ExchangeRequest> = {},
  hooks: {
    onHead?: (h: ResponseHead) => boolean;
    onData?: (c: Buffer) => boolean;
    started?: (x: Exchange) => void;
  } = {},
): Promise<Outcome> & { outcome: Outcome } {
  const outcome: Outcome = { heads: [], body: Buffer.alloc(0), ended: 0, errors: [] };
  const chunks: Buffer[] = [];
  const p = new Promise<Outcome>((resolve) => {
    const x = pool.exchange(
      '127.0.0.1',
      port,
      { method: 'GET', path: '/', headers: {}, body: null, ...request },
      {
        onHead(head) {
          outcome.heads.push(head);
          const take = hooks.onHead ? hooks.onHead(head) : true;
          if (!take) setTimeout(() => resolve(outcome), 0);
          return take;
        },
        onData(chunk) {
          chunks.push(Buffer.from(chunk));
          outcome.body = Buffer.concat(chunks);
          return hooks.onData ? hooks.onData(chunk) : true;
        },
        onEnd() {
          outcome.ended++;
          resolve(outcome);
        },
        onError(err, responded) {
          outcome.errors.push({ err, responded });
          resolve(outcome);
        },
      },
    );
    hooks.started?.(x);
  });
  return Object.assign(p, { outcome });
}

const OPTIONS: ClientPoolOptions = { connectTimeoutMs: 1000, maxConnections: 10, keepAliveMs: 30_000 };

describe('ClientPool', { timeout: 20_000 }, () => {
  let up: Upstream;
  const pools: ClientPool[] = [];
  const pool = (extra: Partial<ClientPoolOptions> = {}) => {
    const p = new ClientPool({ ...OPTIONS, ...extra });
    pools.push(p);
    return p;
  };
  const key = () => `127.0.0.1:${up.port}`;

  before(async () => {
    up = await new Upstream().listen();
  });
  after(async () => {
    for (const p of pools) p.destroy();
    await up.close();
  });

  const fresh = async (respond?: Responder) => {
    await up.close();
    up = await new Upstream().listen();
    if (respond) up.respond = respond;
    return up;
  };

  it('reuses a keep-alive connection for sequential exchanges', async () => {
    await fresh();
    const p = pool();
    let during: unknown;
    const a = await run(p, up.port, {}, { onHead: () => ((during = p.connections()), true) });
    assert.equal(a.ended, 1);
    assert.equal(a.heads[0]?.status, 200);
    assert.equal(a.body.toString(), 'ok');
    assert.deepEqual(during, { [key()]: { open: 1, idle: 0 } });
    assert.deepEqual(p.connections(), { [key()]: { open: 1, idle: 1 } });
    const b = await run(p, up.port, { path: '/second' });
    assert.equal(b.body.toString(), 'ok');
    assert.equal(up.connections, 1, 'one connection at the upstream');
    assert.deepEqual(
      up.requests.map((r) => [r.line, r.conn]),
      [
        ['GET / HTTP/1.1', 1],
        ['GET /second HTTP/1.1', 1],
      ],
    );
    assert.deepEqual(up.requests[0]?.headers.host, [key()]);
    p.close();
    assert.deepEqual(p.connections(), { [key()]: { open: 0, idle: 0 } });
    await eventually(() => up.closedConnections === 1, 1000, 'the upstream to see the close');
    const c = await run(p, up.port);
    assert.equal(c.errors.length, 1, 'a closed pool refuses new exchanges');
    assert.equal(c.errors[0]?.responded, false);
  });

  it('reads content-length, chunked and close-delimited bodies', async () => {
    await fresh((req, sock) => {
      if (req.line.includes('/length'))
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world');
      else if (req.line.includes('/chunked')) {
        sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n');
        setTimeout(() => sock.write('6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n'), 10);
      } else if (req.line.includes('/close')) {
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ');
        setTimeout(() => sock.end('the end'), 10);
      } else if (req.line.includes('/empty')) sock.write('HTTP/1.1 204 No Content\r\n\r\n');
      else if (req.line.startsWith('HEAD')) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n');
    });
    const p = pool();
    const a = await run(p, up.port, { path: '/length' });
    assert.equal(a.body.toString(), 'hello world');
    assert.equal(a.heads[0]?.headers['content-length'], '11');
    const b = await run(p, up.port, { path: '/chunked' });
    assert.equal(b.body.toString(), 'hello world');
    assert.equal(b.ended, 1);
    const e = await run(p, up.port, { path: '/empty' });
    assert.equal(e.heads[0]?.status, 204);
    assert.equal(e.ended, 1);
    const h = await run(p, up.port, { method: 'HEAD', path: '/head' });
    assert.equal(h.ended, 1);
    assert.equal(h.body.length, 0);
    assert.equal(up.connections, 1, 'length, chunked, 204 and HEAD responses keep the connection');
    const c = await run(p, up.port, { path: '/close' });
    assert.equal(c.body.toString(), 'until the end');
    assert.equal(c.ended, 1);
    assert.equal(c.errors.length, 0);
    assert.deepEqual(
      p.connections(),
      { [key()]: { open: 0, idle: 0 } },
      'a close-delimited body ends the connection',
    );
    const d = await run(p, up.port, { path: '/length' });
    assert.equal(d.body.toString(), 'hello world');
    assert.equal(up.connections, 2);
  });

  it('skips interim responses', async () => {
    await fresh((_req, sock) => {
      sock.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n');
      setTimeout(() => sock.write('HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone'), 5);
    });
    const o = await run(pool(), up.port);
    assert.deepEqual(
      o.heads.map((h) => h.status),
      [201],
    );
    assert.equal(o.body.toString(), 'done');
  });

  it('drains and drops the body when onHead returns false, and reuses the connection', async () => {
    const big = Buffer.alloc(192 * 1024, 'x');
    await fresh((req, sock) => {
      if (req.line.includes('/big')) {
        sock.write('HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n');
        for (let i = 0; i < big.length; i += 16 * 1024)
          sock.write(`4000\r\n${big.subarray(i, i + 16 * 1024).toString()}\r\n`);
        sock.write('0\r\n\r\n');
      } else sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    const p = pool();
    const o = await run(p, up.port, { path: '/big' }, { onHead: () => false });
    assert.equal(o.heads[0]?.status, 503);
    await eventually(() => p.connections()[key()]?.idle === 1, 2000, 'the drained connection to go idle');
    assert.equal(o.body.length, 0, 'no body delivered');
    assert.equal(o.ended, 0, 'no further calls');
    assert.equal(o.errors.length, 0);
    const b = await run(p, up.port);
    assert.equal(b.body.toString(), 'ok');
    assert.equal(up.connections, 1);
  });

  it('pauses on onData false until resume', async () => {
    await fresh((_req, sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc');
      setTimeout(() => sock.write('def'), 20);
    });
    let x: Exchange | undefined;
    let chunks = 0;
    const o = run(pool(), up.port, {}, { onData: () => ++chunks > 1, started: (e) => (x = e) });
    await eventually(() => chunks === 1);
    await delay(60);
    assert.equal(chunks, 1, 'no data while paused');
    x?.resume();
    const r = await o;
    assert.equal(r.body.toString(), 'abcdef');
    assert.equal(r.ended, 1);
  });

  it('reports a refused connection with ECONNREFUSED, before any response', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const p = pool();
    const o = await run(p, port);
    await delay(20);
    assert.equal(o.errors.length, 1);
    assert.equal((o.errors[0]?.err as NodeJS.ErrnoException).code, 'ECONNREFUSED');
    assert.equal(o.errors[0]?.responded, false);
    assert.equal(o.ended, 0);
    assert.deepEqual(p.connections()[`127.0.0.1:${port}`], { open: 0, idle: 0 });
  });

  it('times out a connection that is never accepted', async (t) => {
    // A listener whose process never accepts (its event loop is blocked), backlog 1: once two
    // connections fill its queue, the kernel drops further SYNs and connecting hangs.
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('net').createServer();
         s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
           process.stdout.write(s.address().port + '\\n');
           setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10000), 20);
         });`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const fillers: Socket[] = [];
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
        child.once('error', reject);
      });
      await delay(40);
      let connected = 0;
      for (let i = 0; i < 3; i++) {
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('connect', () => connected++);
        s.on('error', () => {});
        fillers.push(s);
      }
      await delay(50);
      // Whether the queue is full where this runs: a probe must not connect.
      const probe = net.connect({ host: '127.0.0.1', port });
      probe.on('error', () => {});
      fillers.push(probe);
      let probed = false;
      probe.on('connect', () => (probed = true));
      await delay(50);
      if (probed || connected > 2) {
        t.skip('the kernel here accepts past the listen backlog');
        return;
      }
      const p = pool({ connectTimeoutMs: 100 });
      const t0 = Date.now();
      const o = await run(p, port);
      const took = Date.now() - t0;
      assert.equal(o.errors.length, 1);
      assert.ok(o.errors[0]?.err instanceof ConnectTimeoutError, String(o.errors[0]?.err));
      assert.equal(o.errors[0]?.err.code, 'ECONNTIMEOUT');
      assert.equal(o.errors[0]?.responded, false);
      assert.ok(took >= 90 && took < 1000, `timed out after ${took}ms`);
      await delay(10);
      assert.deepEqual(p.connections()[`127.0.0.1:${port}`], { open: 0, idle: 0 });
    } finally {
      for (const s of fillers) s.destroy();
      child.kill();
    }
  });

  it('reports an upstream that closes mid-body as an error after the response', async () => {
    await fresh((_req, sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
      setTimeout(() => sock.destroy(), 10);
    });
    const o = await run(pool(), up.port);
    await delay(10);
    assert.equal(o.heads.length, 1);
    assert.equal(o.body.toString(), 'partial');
    assert.equal(o.ended, 0);
    assert.equal(o.errors.length, 1);
    assert.equal(o.errors[0]?.responded, true);
  });

  it('reports a chunked body cut short, and an upstream closing before answering', async () => {
    await fresh((req, sock) => {
      if (req.line.includes('/chunked'))
        sock.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel');
      else sock.end();
    });
    const p = pool();
    const a = await run(p, up.port, { path: '/chunked' });
    assert.equal(a.ended, 0);
    assert.deepEqual(
      a.errors.map((e) => e.responded),
      [true],
    );
    const b = await run(p, up.port, { path: '/nothing' });
    assert.equal(b.heads.length, 0);
    assert.deepEqual(
      b.errors.map((e) => e.responded),
      [false],
    );
    assert.equal((b.errors[0]?.err as NodeJS.ErrnoException).code, 'ECONNRESET');
  });

  it('reports what is not HTTP/1.1 as an UpstreamProtocolError', async () => {
    const answers: Record<string, string> = {
      '/ssh': 'SSH-2.0-OpenSSH_9.6\r\n\r\n',
      '/bare-lf': 'HTTP/1.1 200 OK\nContent-Length: 0\n\n',
      '/switch': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
      '/bad-length': 'HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n',
      '/bad-chunk': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n',
      '/huge-head': `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}`,
      '/h2': 'HTTP/2.0 200 OK\r\n\r\n',
    };
    await fresh((req, sock) => sock.write(answers[req.line.split(' ')[1] as string] as string));
    const p = pool();
    for (const path of Object.keys(answers)) {
      const o = await run(p, up.port, { path });
      await delay(5);
      assert.equal(o.errors.length, 1, path);
      assert.ok(o.errors[0]?.err instanceof UpstreamProtocolError, `${path}: ${String(o.errors[0]?.err)}`);
      assert.equal(o.errors[0]?.err.code, 'EPROTO');
      assert.equal(o.errors[0]?.responded, path === '/bad-chunk', path);
      assert.equal(o.ended, 0);
    }
    assert.equal(up.connections, Object.keys(answers).length, 'a connection that failed is never reused');
  });

  it('does not reuse a connection that sent more than the response', async () => {
    await fresh((_req, sock) =>
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n'),
    );
    const p = pool();
    const a = await run(p, up.port);
    assert.equal(a.body.toString(), 'ok');
    assert.equal(a.ended, 1);
    const b = await run(p, up.port);
    assert.equal(b.body.toString(), 'ok');
    assert.equal(up.connections, 2);
  });

  it('queues exchanges beyond maxConnections and runs them on the same connection', async () => {
    await fresh((req, sock) => {
      setTimeout(
        () => sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${req.line.length}\r\n\r\n${req.line}`),
        30,
      );
    });
    const p = pool({ maxConnections: 1 });
    const [a, b] = await Promise.all([run(p, up.port, { path: '/a' }), run(p, up.port, { path: '/b' })]);
    assert.equal(a.body.toString(), 'GET /a HTTP/1.1');
    assert.equal(b.body.toString(), 'GET /b HTTP/1.1');
    assert.equal(up.connections, 1);
    assert.equal(up.requests.length, 2);
    assert.ok(
      (up.requests[1]?.at as number) - (up.requests[0]?.at as number) >= 25,
      'the second request is sent only after the first response',
    );
    assert.deepEqual(p.connections(), { [key()]: { open: 1, idle: 1 } });
  });

  it('cancels an exchange still waiting for a connection, calling onError once', async () => {
    await fresh((_req, sock) => {
      setTimeout(() => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 40);
    });
    const p = pool({ maxConnections: 1 });
    const first = run(p, up.port, { path: '/first' });
    let x: Exchange | undefined;
    const second = run(p, up.port, { path: '/second' }, { started: (e) => (x = e) });
    await delay(5);
    const cancel = new Error('client went away');
    x?.abort(cancel);
    x?.abort(new Error('again'));
    const s = await second;
    assert.deepEqual(s.errors, [{ err: cancel, responded: false }]);
    assert.equal((await first).body.toString(), 'ok');
    await delay(30);
    assert.equal(s.errors.length, 1);
    assert.equal(s.ended, 0);
    assert.deepEqual(
      up.requests.map((r) => r.line),
      ['GET /first HTTP/1.1'],
    );
    assert.deepEqual(p.connections(), { [key()]: { open: 1, idle: 1 } }, 'the connection stays in the pool');
  });

  it('aborts a running exchange, closing its connection', async () => {
    await fresh(() => {});
    const p = pool();
    let x: Exchange | undefined;
    const o = run(p, up.port, {}, { started: (e) => (x = e) });
    await eventually(() => up.requests.length === 1);
    const err = new Error('stop');
    x?.abort(err);
    const r = await o;
    assert.deepEqual(r.errors, [{ err, responded: false }]);
    await eventually(() => up.closedConnections === 1, 1000, 'the upstream to see the close');
    assert.deepEqual(p.connections(), { [key()]: { open: 0, idle: 0 } });
  });

  it('ignores an abort of an exchange that already ended', async () => {
    await fresh((req, sock) => {
      const body = req.line.includes('/slow') ? 'slow' : 'ok';
      setTimeout(
        () => sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
        body === 'slow' ? 30 : 0,
      );
    });
    const p = pool({ maxConnections: 1 });
    let first: Exchange | undefined;
    const a = await run(p, up.port, {}, { started: (e) => (first = e) });
    assert.equal(a.ended, 1);
    const b = run(p, up.port, { path: '/slow' });
    await eventually(() => up.requests.length === 2);
    first?.abort(new Error('late abort of the first exchange'));
    first?.pause();
    const r = await b;
    assert.deepEqual(
      r.errors.map((e) => e.err.message),
      [],
    );
    assert.equal(r.body.toString(), 'slow');
  });

  it('sends bodies: Buffer with content-length, stream chunked, null POST with content-length: 0', async () => {
    await fresh();
    const p = pool();
    await run(p, up.port, { method: 'POST', path: '/buffer', body: Buffer.from('hello buffer') });
    await run(p, up.port, {
      method: 'PUT',
      path: '/stream',
      body: Readable.from([Buffer.from('hello '), Buffer.from(''), Buffer.from('stream')]),
    });
    await run(p, up.port, {
      method: 'POST',
      path: '/stream-length',
      headers: { 'content-length': '6' },
      body: Readable.from([Buffer.from('abc'), Buffer.from('def')]),
    });
    await run(p, up.port, { method: 'POST', path: '/null' });
    await run(p, up.port, {
      method: 'GET',
      path: '/get',
      headers: { host: 'named.example', 'x-list': ['a', 'b'] },
    });
    const [buffer, stream, streamLength, nul, get] = up.requests;
    assert.deepEqual(buffer?.headers['content-length'], ['12']);
    assert.equal(buffer?.headers['transfer-encoding'], undefined);
    assert.equal(buffer?.body.toString(), 'hello buffer');
    assert.deepEqual(stream?.headers['transfer-encoding'], ['chunked']);
    assert.equal(stream?.headers['content-length'], undefined);
    assert.equal(stream?.body.toString(), 'hello stream');
    assert.deepEqual(streamLength?.headers['content-length'], ['6']);
    assert.equal(streamLength?.headers['transfer-encoding'], undefined);
    assert.equal(streamLength?.body.toString(), 'abcdef');
    assert.deepEqual(nul?.headers['content-length'], ['0']);
    assert.equal(nul?.headers['transfer-encoding'], undefined);
    assert.equal(get?.headers['content-length'], undefined);
    assert.deepEqual(get?.headers.host, ['named.example']);
    assert.deepEqual(get?.headers['x-list'], ['a', 'b']);
    assert.equal(up.connections, 1, 'every body left the connection in step');
  });

  it('refuses a header that cannot be sent, once, and keeps the connection usable', async () => {
    await fresh();
    const p = pool();
    await run(p, up.port);
    const o = await run(p, up.port, { headers: { 'x-evil': 'a\r\nx-injected: 1' } });
    assert.equal(o.errors.length, 1);
    assert.ok(o.errors[0]?.err instanceof HeaderValueError);
    assert.equal(o.errors[0]?.responded, false);
    const b = await run(p, up.port);
    assert.equal(b.body.toString(), 'ok');
    assert.equal(up.requests.length, 2, 'nothing of the refused request went out');
    assert.equal(up.connections, 1);
    p.destroy();
    await delay(20);
    assert.equal(o.errors.length, 1, 'onError is not called again when the connection closes');
  });

  it('refuses a header that cannot be sent on a fresh connection, calling onError once', async () => {
    await fresh();
    const p = pool();
    const o = await run(p, up.port, { headers: { 'bad name': 'x' } });
    assert.equal(o.errors.length, 1);
    assert.ok(o.errors[0]?.err instanceof HeaderValueError);
    p.destroy();
    await delay(30);
    assert.equal(o.errors.length, 1, 'onError is not called again when the connection closes');
  });

  it('refuses a request target or method that would break the request line', async () => {
    await fresh();
    const p = pool();
    const o = await run(p, up.port, { path: '/a HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /b' });
    await delay(20);
    assert.equal(o.errors.length, 1, 'the exchange fails');
    assert.equal(o.errors[0]?.responded, false);
    assert.equal(up.requests.length, 0, 'nothing was sent');
    const m = await run(p, up.port, { method: 'GET / HTTP/1.1\r\nX: y\r\n\r\nGET' });
    await delay(20);
    assert.equal(m.errors.length, 1);
    assert.equal(up.requests.length, 0);
  });

  it('closes an idle connection sooner when the upstream asks with Keep-Alive: timeout', async () => {
    await fresh((req, sock) =>
      sock.write(
        req.line.includes('/hint')
          ? 'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok'
          : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
      ),
    );
    const hinted = pool();
    const plain = pool({ keepAliveMs: 5000 });
    await Promise.all([run(hinted, up.port, { path: '/hint' }), run(plain, up.port, { path: '/plain' })]);
    assert.equal(up.connections, 2);
    const t0 = Date.now();
    await eventually(() => up.closedConnections >= 1, 1800, 'the hinted connection to close');
    const took = Date.now() - t0;
    assert.ok(took >= 400, `closed after ${took}ms`);
    assert.equal(up.closedConnections, 1, 'only the hinted connection closed');
    assert.deepEqual(hinted.connections(), { [key()]: { open: 0, idle: 0 } });
    assert.deepEqual(plain.connections(), { [key()]: { open: 1, idle: 1 } });
  });

  it('drops an idle connection the upstream closed and opens a new one', async () => {
    await fresh();
    const p = pool();
    await run(p, up.port);
    for (const s of up.sockets) s.end();
    await eventually(() => p.connections()[key()]?.open === 0, 1000, 'the pool to notice');
    const o = await run(p, up.port);
    assert.equal(o.body.toString(), 'ok');
    assert.equal(up.connections, 2);
  });
});
