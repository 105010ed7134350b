import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Proxy } from '../../src/dataplane/proxy.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { region, service } from '../support/mesh-fixtures.js';
import { call, raw, TestLab } from '../support/proxy-harness.js';

const API = 'apiVersion: isthmus.dev/v1alpha1';

const mesh = (extra: string) => ({
  'mesh.yaml': `${region('us-east', ['us-east-a']).trim()}
---
${service('catalog').trim()}
---
${service('recs').trim()}
---
${service('slow').trim()}
---
${service('frontend').trim()}
---
${API}
kind: TrafficPolicy
metadata: {name: base}
spec:
  targetRef: {kind: Mesh}
  timeouts: {connect: 200ms, perTry: 300ms, overall: 1s}
  retries: {backoff: {base: 1ms, max: 2ms}}
  healthChecks: {enabled: false}
  outlierDetection: {consecutiveFailures: 0, successRate: {enabled: false}, latency: {enabled: false}}
---
${API}
kind: TrafficPolicy
metadata: {name: recs}
spec:
  targetRef: {kind: Service, name: recs}
  retries: {maxAttempts: 1}
  fallback: {static: {enabled: true, status: 200, body: '{"items":[]}'}}
  degradation: {flags: [recs-off]}
---
${API}
kind: TrafficPolicy
metadata: {name: slow}
spec:
  targetRef: {kind: Service, name: slow}
  circuitBreaker: {maxRequests: 1, maxPendingRequests: 0, retryAfter: 3s}
  timeouts: {perTry: 2s, overall: 2s}
${extra}`,
});

describe('proxy: fallbacks, shedding, budgets', () => {
  let catalog: FakeUpstream;
  let recs: FakeUpstream;
  let slow: FakeUpstream;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    [catalog, recs, slow] = await Promise.all([
      lab.upstream('catalog'),
      lab.upstream('recs'),
      lab.upstream('slow'),
    ]);
    const dir = await lab.mesh(mesh(''));
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [
        { service: 'catalog', port: catalog.port, locality: 'us-east/us-east-a' },
        { service: 'recs', port: recs.port, locality: 'us-east/us-east-a' },
        { service: 'slow', port: slow.port, locality: 'us-east/us-east-a' },
      ],
    });
  });
  after(() => lab.close());

  it('serves the last good response of a read, marked stale, when every attempt fails', async () => {
    catalog.behavior = { kind: 'ok', body: '{"products":[1,2,3]}' };
    const fresh = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products?page=1' });
    assert.equal(fresh.status, 200);
    catalog.behavior = { kind: 'reset' };
    const stale = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products?page=1' });
    assert.equal(stale.status, 200);
    assert.equal(stale.body, '{"products":[1,2,3]}');
    assert.equal(stale.headers['isthmus-fallback'], 'stale');
    assert.match(stale.headers['isthmus-staleness-ms'] ?? '', /^\d+$/);
    // Another page was never cached: no stale answer to give.
    const miss = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products?page=2' });
    assert.equal(miss.status, 502);
    assert.equal(miss.headers['isthmus-error'], 'upstream-reset');
  });

  it('answers with the static fallback and tells the app which flags are on', async () => {
    recs.behavior = { kind: 'status', status: 500 };
    const r = await call(proxy.addresses.outbound!, { host: 'recs', path: '/for/me' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '{"items":[]}');
    assert.equal(r.headers['isthmus-fallback'], 'static');
    const degraded = JSON.parse((await call(proxy.addresses.admin!, { path: '/degraded' })).body) as {
      destinations: string[];
      flags: string[];
    };
    assert.deepEqual(degraded.destinations.includes('recs'), true);
    assert.deepEqual(degraded.flags, ['recs-off']);
  });

  it('sheds at once with 503 and Retry-After when the destination is at its limit', async () => {
    slow.behavior = { kind: 'ok', delayMs: 400 };
    const first = call(proxy.addresses.outbound!, { host: 'slow', path: '/' });
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const second = await call(proxy.addresses.outbound!, { host: 'slow', path: '/' });
    assert.equal(second.status, 503);
    assert.equal(second.headers['retry-after'], '3');
    assert.equal(second.headers['isthmus-error'], 'overloaded');
    assert.ok(Date.now() - started < 200, 'shed without waiting');
    assert.equal((await first).status, 200);
  });

  it('keeps retries within the budget under sustained failure (no retry storm)', async () => {
    catalog.behavior = { kind: 'status', status: 503 };
    catalog.take();
    const n = 200;
    for (let i = 0; i < n; i++) await call(proxy.addresses.outbound!, { host: 'catalog', path: `/x/${i}` });
    const attempts = catalog.take().length;
    // Budget: 20% of requests plus 10 per second over the window; a single endpoint means every
    // retry lands on it. Without a budget, 3 attempts per request would be 600.
    const seconds = 10;
    assert.ok(attempts <= n + Math.ceil(0.2 * n) + 10 * seconds, `${attempts} attempts for ${n} requests`);
    assert.ok(attempts > n, 'some retries were still allowed');
    const stats = JSON.parse((await call(proxy.addresses.admin!, { path: '/stats' })).body) as {
      destinations: { catalog: { retryBudget: { denied: number } } };
    };
    assert.ok(stats.destinations.catalog.retryBudget.denied > 0);
  });

  it('answers malformed requests with 4xx and keeps serving', async () => {
    catalog.behavior = { kind: 'ok' };
    const badName = await raw(
      proxy.addresses.outbound!,
      'GET / HTTP/1.1\r\nhost: catalog\r\nbad header: x\r\n\r\n',
    );
    assert.match(badName, /^HTTP\/1\.1 400 /);
    const smuggle = await raw(
      proxy.addresses.outbound!,
      'POST / HTTP/1.1\r\nhost: catalog\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    assert.match(smuggle, /^HTTP\/1\.1 400 /);
    const huge = await raw(
      proxy.addresses.outbound!,
      `GET / HTTP/1.1\r\nhost: catalog\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    assert.match(huge, /^HTTP\/1\.1 431 /);
    const ok = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/after' });
    assert.equal(ok.status, 200);
  });
});

describe('proxy: CONNECT egress', () => {
  let tcp: Server;
  let tcpPort = 0;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    tcp = createServer((s) => s.end('hello from outside'));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
    tcpPort = (tcp.address() as { port: number }).port;
    const dir = await lab.mesh(
      mesh(`---
${API}
kind: ExternalService
metadata: {name: payments}
spec:
  host: localhost
  ports: [${tcpPort}]
  protocol: tls`),
    );
    proxy = await lab.proxy({ locality: 'us-east/us-east-a', resources: dir, endpoints: [] });
  });
  after(async () => {
    await lab.close();
    tcp.close();
  });

  it('tunnels to a declared external service and refuses anything else', async () => {
    const ok = await raw(
      proxy.addresses.outbound!,
      `CONNECT localhost:${tcpPort} HTTP/1.1\r\nhost: localhost:${tcpPort}\r\n\r\n`,
    );
    assert.match(ok, /^HTTP\/1\.1 200 Connection Established\r\n\r\nhello from outside/);
    const refused = await raw(
      proxy.addresses.outbound!,
      'CONNECT example.org:443 HTTP/1.1\r\nhost: example.org:443\r\n\r\n',
    );
    assert.match(refused, /^HTTP\/1\.1 403 /);
    assert.match(refused, /not a declared ExternalService/);
  });
});

describe('proxy: hedging', () => {
  let fast: FakeUpstream;
  let stuck: FakeUpstream;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    [fast, stuck] = await Promise.all([lab.upstream('fast'), lab.upstream('stuck')]);
    const dir = await lab.mesh(
      mesh(`---
${API}
kind: TrafficPolicy
metadata: {name: hedge}
spec:
  targetRef: {kind: Service, name: catalog}
  hedging: {enabled: true, afterQuantile: 0.9, minDelay: 30ms}
  timeouts: {perTry: 900ms, overall: 1s}
  retries: {maxAttempts: 1}`),
    );
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [
        { service: 'catalog', port: fast.port, locality: 'us-east/us-east-a' },
        { service: 'catalog', port: stuck.port, locality: 'us-east/us-east-a' },
      ],
    });
  });
  after(() => lab.close());

  it('answers a read from a second endpoint when the first is slower than usual', async () => {
    // Learn the usual latency, with the soon-stuck endpoint the faster one so primaries go there;
    // then make it hang.
    fast.behavior = { kind: 'ok', delayMs: 5 };
    for (let i = 0; i < 40; i++)
      assert.equal((await call(proxy.addresses.outbound!, { host: 'catalog', path: '/warm' })).status, 200);
    stuck.behavior = { kind: 'hang' };
    stuck.take();
    const started = Date.now();
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        call(proxy.addresses.outbound!, { host: 'catalog', path: `/p/${i}` }),
      ),
    );
    assert.ok(
      replies.every((r) => r.status === 200 && r.headers['x-served-by'] === 'fast'),
      JSON.stringify(replies.map((r) => r.status)),
    );
    assert.ok(Date.now() - started < 800, 'no read waited for its per-try timeout');
    const hedged = replies.filter((r) => r.headers['isthmus-attempts'] === '2').length;
    // Reads only: an active health check (/healthz, every 2 s) may land in the window too.
    const stuckHits = stuck.take().filter((r) => r.url.startsWith('/p/')).length;
    assert.ok(stuckHits > 0, 'some reads were first sent to the stuck endpoint');
    assert.equal(hedged, stuckHits, 'each of them was hedged to the other endpoint');
  });

  it('never hedges a write', async () => {
    stuck.behavior = { kind: 'hang' };
    fast.take();
    stuck.take();
    const replies = await Promise.all(
      Array.from({ length: 6 }, () =>
        call(proxy.addresses.outbound!, { method: 'POST', host: 'catalog', path: '/w', body: 'x' }),
      ),
    );
    const total = fast.take().length + stuck.take().length;
    assert.equal(total, 6, 'one attempt per write');
    assert.ok(replies.every((r) => r.headers['isthmus-attempts'] === '1'));
  });
});

describe('proxy: slow senders and admission', () => {
  let app: FakeUpstream;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    app = await lab.upstream('catalog');
    const dir = await lab.mesh(mesh(''));
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [{ service: 'catalog', port: app.port, locality: 'us-east/us-east-a' }],
      extra: '  limits: {headersTimeout: 300ms, maxInflight: 2}',
    });
  });
  after(() => lab.close());

  it('answers 408 to a client that does not finish its headers in time', async () => {
    const started = Date.now();
    const reply = await raw(
      proxy.addresses.outbound!,
      'GET / HTTP/1.1\r\nhost: catalog\r\nx-partial: ',
      3000,
    );
    assert.match(reply, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - started < 2500);
  });

  it('sheds beyond the proxy-wide in-flight limit and serves again once below it', async () => {
    app.behavior = { kind: 'ok', delayMs: 200 };
    const held = [
      call(proxy.addresses.outbound!, { host: 'catalog', path: '/1' }),
      call(proxy.addresses.outbound!, { host: 'catalog', path: '/2' }),
    ];
    await new Promise((r) => setTimeout(r, 50));
    const shed = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/3' });
    assert.equal(shed.status, 503);
    assert.equal(shed.headers['retry-after'], '1');
    assert.deepEqual(
      (await Promise.all(held)).map((r) => r.status),
      [200, 200],
    );
    app.behavior = { kind: 'ok' };
    assert.equal((await call(proxy.addresses.outbound!, { host: 'catalog', path: '/4' })).status, 200);
  });
});

describe('proxy: deadline-aware retries', () => {
  let app: FakeUpstream;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    app = await lab.upstream('catalog');
    const dir = await lab.mesh(
      mesh(`---
${API}
kind: TrafficPolicy
metadata: {name: tight}
spec:
  targetRef: {kind: Service, name: catalog}
  timeouts: {perTry: 700ms, overall: 800ms}
  fallback: {staleIfError: {enabled: false}}`),
    );
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [{ service: 'catalog', port: app.port, locality: 'us-east/us-east-a' }],
    });
  });
  after(() => lab.close());

  it('does not start a retry the remaining deadline cannot finish', async () => {
    app.behavior = { kind: 'ok', delayMs: 400 };
    for (let i = 0; i < 3; i++)
      assert.equal((await call(proxy.addresses.outbound!, { host: 'catalog', path: '/learn' })).status, 200);
    app.behavior = { kind: 'ok', status: 503, delayMs: 450 };
    app.take();
    const r = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/x' });
    // 450 ms spent, 350 ms left, and this endpoint usually takes ~400 ms: no second attempt.
    assert.equal(r.status, 503);
    assert.equal(r.headers['isthmus-attempts'], '1');
    assert.equal(app.take().length, 1);
    const metrics = (await call(proxy.addresses.admin!, { path: '/metrics' })).body;
    assert.match(metrics, /isthmus_retries_skipped_total\{[^}]*service="catalog"[^}]*\} 1/);
  });
});
