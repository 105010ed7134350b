import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http, { type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';

/**
 * The demo storefront apps (examples/storefront) as real child processes. The frontend's
 * `--proxy` points at a fake sidecar here that routes by Host to the other apps and adds
 * `isthmus-served-by`/`isthmus-attempts`, as the real outbound listener does.
 */

interface App {
  child: ChildProcess;
  address: string;
  ready: Record<string, unknown>;
  exited: Promise<number | null>;
}

const script = (name: string) =>
  fileURLToPath(new URL(`../../examples/storefront/${name}.js`, import.meta.url));

async function startApp(name: string, args: string[]): Promise<App> {
  const child = spawn(process.execPath, [script(name), '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HTTP_PROXY: '' },
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no ready line in 10s\n${stderr}`)), 10_000);
    child.once('exit', () => reject(new Error(`${name} exited before ready\n${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      if (event.event === 'ready') {
        clearTimeout(timer);
        resolve(event);
      }
    });
  });
  return { child, address: String(ready.address), ready, exited };
}

interface Seen {
  host: string;
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A stand-in for the sidecar's outbound listener: Host routing, served-by headers, a log. */
class FakeSidecar {
  readonly seen: Seen[] = [];
  readonly routes = new Map<string, { address: string; servedBy: string }>();
  readonly #server: Server;

  constructor() {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const host = (req.headers.host ?? '').replace(/:\d+$/, '');
        const body = Buffer.concat(chunks).toString();
        this.seen.push({ host, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const route = this.routes.get(host);
        if (!route) {
          res.writeHead(404, { 'content-type': 'application/json', 'isthmus-error': 'unknown-destination' });
          res.end(JSON.stringify({ error: 'unknown-destination', message: `no service ${host}` }));
          return;
        }
        const [h, p] = route.address.split(':');
        const up = http.request(
          { host: h, port: Number(p), method: req.method, path: req.url, headers: { ...req.headers } },
          (r) => {
            res.writeHead(r.statusCode ?? 502, {
              ...r.headers,
              'isthmus-served-by': route.servedBy,
              'isthmus-attempts': '1',
            });
            r.pipe(res);
          },
        );
        up.on('error', () => {
          res.writeHead(502, {
            'content-type': 'application/json',
            'isthmus-error': 'upstream-connect-failure',
          });
          res.end('{"error":"upstream-connect-failure"}');
        });
        up.end(body);
      });
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  take(host: string): Seen[] {
    const out = this.seen.filter((s) => s.host === host);
    this.seen.length = 0;
    return out;
  }

  stop(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

async function call(
  address: string,
  path: string,
  init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; json: Record<string, unknown>; headers: Record<string, unknown> }> {
  const r = await request(`http://${address}${path}`, {
    method: init.method ?? 'GET',
    headers: init.headers ?? {},
    ...(init.body !== undefined && { body: init.body }),
  });
  const text = await r.body.text();
  return { status: r.statusCode, json: JSON.parse(text) as Record<string, unknown>, headers: r.headers };
}

describe('storefront apps', () => {
  const sidecar = new FakeSidecar();
  const apps: App[] = [];
  let catalog: App;
  let orders: App;
  let recs: App;
  let brokenRecs: App;
  let frontend: App;
  const start = async (name: string, args: string[]) => {
    const app = await startApp(name, args);
    apps.push(app);
    return app;
  };
  const useRecommendations = (app: App) =>
    sidecar.routes.set('recommendations', { address: app.address, servedBy: 'us-east/us-east-a' });

  before(async () => {
    const proxy = await sidecar.start();
    [catalog, orders, recs, brokenRecs, frontend] = await Promise.all([
      start('catalog', ['--region', 'eu-west', '--zone', 'eu-west-a', '--instance', 'catalog-1']),
      start('orders', ['--region', 'us-east', '--instance', 'orders-1']),
      start('recommendations', ['--region', 'us-east', '--instance', 'recs-1']),
      start('recommendations', ['--region', 'us-east', '--instance', 'recs-broken', '--fail-rate', '1']),
      start('frontend', [
        '--proxy',
        proxy,
        '--region',
        'us-east',
        '--zone',
        'us-east-a',
        '--instance',
        'fe-1',
      ]),
    ]);
    sidecar.routes.set('catalog', { address: catalog.address, servedBy: 'eu-west/eu-west-a' });
    sidecar.routes.set('orders', { address: orders.address, servedBy: 'us-east/us-east-b' });
    useRecommendations(recs);
  });
  after(async () => {
    for (const app of apps) if (app.child.exitCode === null) app.child.kill('SIGKILL');
    await sidecar.stop();
  });

  it('prints a ready line with role, service and address', () => {
    assert.equal(frontend.ready.role, 'app');
    assert.equal(frontend.ready.service, 'frontend');
    assert.equal(catalog.ready.service, 'catalog');
    assert.match(catalog.address, /^127\.0\.0\.1:\d+$/);
  });

  it('product page: aggregates catalog and recommendations, says who served each, propagates trace headers', async () => {
    useRecommendations(recs);
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const r = await call(frontend.address, '/products/42', {
      headers: { traceparent, 'x-request-id': 'req-42' },
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const body = r.json as {
      product: { id: string; name: string };
      recommendations: string[];
      degraded: string[];
      servedBy: Record<string, string>;
      calls: Record<string, { status: number; attempts: number }>;
      region: string;
      requestId: string;
    };
    assert.equal(body.product.id, '42');
    assert.equal(typeof body.product.name, 'string');
    assert.equal(body.recommendations.length, 4);
    assert.ok(!body.recommendations.includes('42'));
    assert.deepEqual(body.degraded, []);
    assert.deepEqual(body.servedBy, { catalog: 'eu-west/eu-west-a', recommendations: 'us-east/us-east-a' });
    assert.equal(body.calls.catalog?.attempts, 1);
    assert.equal(body.calls.catalog?.status, 200);
    assert.equal(body.region, 'us-east');
    assert.equal(body.requestId, 'req-42');
    const downstream = sidecar.seen.splice(0);
    assert.deepEqual(downstream.map((s) => `${s.host} ${s.url}`).sort(), [
      'catalog /products/42',
      'recommendations /recommendations/42',
    ]);
    for (const s of downstream) {
      assert.equal(s.headers.traceparent, traceparent);
      assert.equal(s.headers['x-request-id'], 'req-42');
    }
    // The same product twice gives the same recommendations: deterministic.
    const again = await call(frontend.address, '/products/42');
    assert.deepEqual((again.json as { recommendations: string[] }).recommendations, body.recommendations);
  });

  it('recommendations failing: still 200, with no recommendations and degraded', async () => {
    useRecommendations(brokenRecs);
    const r = await call(frontend.address, '/products/7');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(r.json.recommendations, []);
    assert.deepEqual(r.json.degraded, ['recommendations']);
    assert.equal((r.json.calls as Record<string, { status: number }>).recommendations?.status, 503);
    useRecommendations(recs);
  });

  it('the sidecar’s static fallback and degradation flags also degrade the page', async () => {
    // The sidecar says recommendations is off: the frontend does not even call it.
    sidecar.seen.length = 0;
    const off = await call(frontend.address, '/products/8', {
      headers: { 'isthmus-degraded': 'recommendations', 'isthmus-degraded-flags': 'recommendations-off' },
    });
    assert.equal(off.status, 200);
    assert.deepEqual(off.json.degraded, ['recommendations']);
    assert.deepEqual(off.json.flags, ['recommendations-off']);
    assert.deepEqual(sidecar.take('recommendations'), []);
    // A fallback answer from the sidecar ({"items":[],"degraded":true} with isthmus-fallback).
    const fallback = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'isthmus-fallback': 'static' });
      res.end('{"items":[],"degraded":true}');
    });
    await new Promise<void>((resolve) => fallback.listen(0, '127.0.0.1', resolve));
    sidecar.routes.set('recommendations', {
      address: `127.0.0.1:${(fallback.address() as AddressInfo).port}`,
      servedBy: 'us-east',
    });
    try {
      const r = await call(frontend.address, '/products/9');
      assert.equal(r.status, 200);
      assert.deepEqual(r.json.degraded, ['recommendations']);
      assert.equal(
        (r.json.calls as Record<string, { fallback: string }>).recommendations?.fallback,
        'static',
      );
    } finally {
      useRecommendations(recs);
      fallback.closeAllConnections();
      fallback.close();
    }
  });

  it('a required dependency failing is 502/503 naming it; an unknown product is 404', async () => {
    const missing = await call(frontend.address, '/products/99999');
    assert.equal(missing.status, 404);
    assert.equal(missing.json.dependency, 'catalog');
    sidecar.routes.set('catalog', { address: '127.0.0.1:1', servedBy: 'eu-west/eu-west-a' });
    try {
      const r = await call(frontend.address, '/products/1');
      assert.equal(r.status, 502);
      assert.equal(r.json.error, 'dependency-failed');
      assert.equal(r.json.dependency, 'catalog');
      assert.equal(r.json.code, 'upstream-connect-failure');
    } finally {
      sidecar.routes.set('catalog', { address: catalog.address, servedBy: 'eu-west/eu-west-a' });
    }
  });

  it('checkout: passes the caller’s Idempotency-Key to orders, or makes one', async () => {
    sidecar.seen.length = 0;
    const r = await call(frontend.address, '/checkout', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'checkout-abc' },
      body: JSON.stringify({ productId: '42', quantity: 2 }),
    });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.idempotencyKey, 'checkout-abc');
    assert.equal(r.json.replayed, false);
    assert.deepEqual(r.json.servedBy, { orders: 'us-east/us-east-b' });
    const order = r.json.order as { idempotencyKey: string; items: unknown[] };
    assert.equal(order.idempotencyKey, 'checkout-abc');
    assert.deepEqual(order.items, [{ productId: '42', quantity: 2 }]);
    const [sent] = sidecar.take('orders');
    assert.equal(sent?.method, 'POST');
    assert.equal(sent?.url, '/orders');
    assert.equal(sent?.headers['idempotency-key'], 'checkout-abc');

    const generated = await call(frontend.address, '/checkout', {
      method: 'POST',
      body: JSON.stringify({ items: [{ productId: '3' }] }),
    });
    assert.equal(generated.status, 201);
    const key = generated.json.idempotencyKey as string;
    assert.match(key, /^[0-9a-f-]{36}$/);
    assert.equal(sidecar.take('orders')[0]?.headers['idempotency-key'], key);

    const bad = await call(frontend.address, '/checkout', { method: 'POST', body: '{not json' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, 'invalid-json');
    const empty = await call(frontend.address, '/checkout', { method: 'POST', body: '{}' });
    assert.equal(empty.status, 400);
    assert.equal(empty.json.error, 'invalid-checkout');
  });

  it('orders: counts a key applied twice as a duplicate side effect, and nothing else', async () => {
    const before = (await call(orders.address, '/stats')).json as {
      applied: number;
      duplicates: number;
      keys: number;
    };
    const post = (key: string) =>
      call(orders.address, '/orders', {
        method: 'POST',
        headers: { 'idempotency-key': key },
        body: JSON.stringify({ items: [{ productId: '1', quantity: 1 }] }),
      });
    assert.equal((await post('dup-test-1')).status, 201);
    assert.equal((await post('dup-test-2')).status, 201);
    let stats = (await call(orders.address, '/stats')).json as typeof before;
    assert.deepEqual(
      {
        applied: stats.applied - before.applied,
        duplicates: stats.duplicates - before.duplicates,
        keys: stats.keys - before.keys,
      },
      { applied: 2, duplicates: 0, keys: 2 },
    );
    const second = await post('dup-test-1');
    assert.equal(second.status, 201, 'the app itself does not dedupe: the mesh must');
    await post('dup-test-1');
    stats = (await call(orders.address, '/stats')).json as typeof before;
    assert.deepEqual(
      {
        applied: stats.applied - before.applied,
        duplicates: stats.duplicates - before.duplicates,
        keys: stats.keys - before.keys,
      },
      { applied: 4, duplicates: 1, keys: 2 },
    );
    const keys = (await call(orders.address, '/stats/keys')).json.keys as Record<string, number>;
    assert.equal(keys['dup-test-1'], 3);
    const id = (second.json.order as { id: string }).id;
    const one = await call(orders.address, `/orders/${encodeURIComponent(id)}`);
    assert.equal(one.status, 200);
    assert.equal((one.json.order as { id: string }).id, id);
    const list = await call(orders.address, '/orders?limit=2');
    assert.equal((list.json.orders as unknown[]).length, 2);
  });

  it('orders: a missing key is 400 and applies nothing', async () => {
    const before = (await call(orders.address, '/stats')).json.applied;
    const r = await call(orders.address, '/orders', {
      method: 'POST',
      body: JSON.stringify({ items: [{ productId: '1', quantity: 1 }] }),
    });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'missing-idempotency-key');
    assert.equal((await call(orders.address, '/stats')).json.applied, before);
  });

  it('bad input never crashes an app: 400 for bad bodies and parameters, 404 for unknown paths', async () => {
    const cases: [
      App,
      string,
      { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string },
      number,
      string,
    ][] = [
      [
        orders,
        '/orders',
        { method: 'POST', headers: { 'idempotency-key': 'k-bad' }, body: '{"items":' },
        400,
        'invalid-json',
      ],
      [
        orders,
        '/orders',
        { method: 'POST', headers: { 'idempotency-key': 'k-bad' }, body: '{"items":[]}' },
        400,
        'invalid-order',
      ],
      [orders, '/orders/nope', {}, 404, 'order-not-found'],
      [orders, '/orders?limit=abc', {}, 400, 'invalid-parameter'],
      [catalog, '/products/abc', {}, 404, 'product-not-found'],
      [catalog, '/products/%E0%A4%A', {}, 400, 'invalid-path'],
      [catalog, '/search', {}, 400, 'missing-query'],
      [catalog, '/nowhere', {}, 404, 'not-found'],
      [recs, '/recommendations/0', {}, 404, 'product-not-found'],
      [frontend, '/nowhere', {}, 404, 'not-found'],
    ];
    for (const [app, path, init, status, error] of cases) {
      const r = await call(app.address, path, init);
      assert.equal(r.status, status, `${path}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error, error, path);
    }
    const search = await call(catalog.address, '/search?q=lamp&limit=3');
    assert.equal(search.status, 200);
    assert.ok((search.json.items as { name: string }[]).every((p) => /lamp/i.test(p.name)));
    for (const app of [catalog, orders, recs, frontend]) {
      assert.equal(app.child.exitCode, null);
      assert.equal((await call(app.address, '/healthz')).status, 200);
    }
  });

  it('rejects bad command-line options with exit code 2', async () => {
    const child = spawn(process.execPath, [script('recommendations'), '--fail-rate', '2'], { stdio: 'pipe' });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /--fail-rate: expected a number from 0 to 1/);
  });

  it('SIGTERM: every app exits 0 promptly', async () => {
    const started = Date.now();
    for (const app of apps) app.child.kill('SIGTERM');
    const codes = await Promise.all(apps.map((a) => a.exited));
    assert.deepEqual(
      codes,
      apps.map(() => 0),
    );
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  });
});
