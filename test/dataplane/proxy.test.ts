import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Proxy } from '../../src/dataplane/proxy.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { call, raw, TestLab } from '../support/proxy-harness.js';

const API = 'apiVersion: isthmus.dev/v1alpha1';

/** Three regions; the caller sits in us-east/us-east-a; remote regions are reached via gateways. */
function meshFiles(gw: { euWest: number; apSouth: number }, policies = ''): Record<string, string> {
  return {
    'mesh.yaml': `${API}
kind: Region
metadata: {name: us-east}
spec:
  zones: [{name: us-east-a}, {name: us-east-b}]
  gateway: {address: 127.0.0.1, port: 1}
  latencyHints: {eu-west: 80ms, ap-south: 200ms}
---
${API}
kind: Region
metadata: {name: eu-west}
spec:
  zones: [{name: eu-west-a}]
  gateway: {address: 127.0.0.1, port: ${gw.euWest}}
---
${API}
kind: Region
metadata: {name: ap-south}
spec:
  zones: [{name: ap-south-a}]
  gateway: {address: 127.0.0.1, port: ${gw.apSouth}}
---
${API}
kind: Service
metadata: {name: catalog}
spec:
  ports: [{name: http, port: 8080}]
  routes:
    - {name: list, match: {methods: [GET], path: {prefix: /products}}}
---
${API}
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 8080}]
  homeRegion: us-east
  routes:
    - {name: create, match: {methods: [POST], path: {exact: /orders}}}
---
${API}
kind: TrafficPolicy
metadata: {name: orders-strong}
spec:
  targetRef: {kind: Route, service: orders, name: create}
  consistency: {mode: strong}
---
${API}
kind: TrafficPolicy
metadata: {name: fast}
spec:
  targetRef: {kind: Mesh}
  timeouts: {connect: 200ms, perTry: 500ms, overall: 2s}
  retries: {backoff: {base: 1ms, max: 5ms}, budget: {minPerSecond: 1000}, crossRegion: {minPerSecond: 1000}}
  healthChecks: {enabled: false}
${policies}`,
  };
}

describe('proxy: locality failover and retries', () => {
  let zoneA: FakeUpstream;
  let zoneB: FakeUpstream;
  let euWest: FakeUpstream;
  let apSouth: FakeUpstream;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    [zoneA, zoneB, euWest, apSouth] = await Promise.all([
      lab.upstream('us-east-a'),
      lab.upstream('us-east-b'),
      lab.upstream('gw-eu-west'),
      lab.upstream('gw-ap-south'),
    ]);
    const dir = await lab.mesh(meshFiles({ euWest: euWest.port, apSouth: apSouth.port }));
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [
        { service: 'catalog', port: zoneA.port, locality: 'us-east/us-east-a' },
        { service: 'catalog', port: zoneB.port, locality: 'us-east/us-east-b' },
        { service: 'catalog', port: 9, locality: 'eu-west/eu-west-a' },
        { service: 'catalog', port: 9, locality: 'ap-south/ap-south-a' },
        { service: 'orders', port: zoneA.port, locality: 'us-east/us-east-a' },
        { service: 'orders', port: 9, locality: 'eu-west/eu-west-a' },
      ],
    });
  });
  after(() => lab.close());

  const reset = () => {
    for (const f of [zoneA, zoneB, euWest, apSouth]) {
      f.behavior = { kind: 'ok' };
      f.take();
    }
  };

  it('serves from its own zone while it is healthy', async () => {
    reset();
    for (let i = 0; i < 10; i++) {
      const r = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products' });
      assert.equal(r.status, 200);
      assert.equal(r.headers['isthmus-served-by'], 'us-east/us-east-a');
      assert.equal(r.headers['isthmus-attempts'], '1');
    }
    assert.equal(zoneA.take().length, 10);
    assert.equal(zoneB.take().length, 0);
  });

  it('routes by Host with a .mesh suffix and as an HTTP forward proxy (absolute-form target)', async () => {
    reset();
    const viaSuffix = await call(proxy.addresses.outbound!, { host: 'catalog.mesh:8080', path: '/products' });
    assert.equal(viaSuffix.status, 200);
    const absolute = await raw(
      proxy.addresses.outbound!,
      'GET http://catalog/products?page=2 HTTP/1.1\r\nhost: catalog\r\nconnection: close\r\n\r\n',
    );
    assert.match(absolute, /^HTTP\/1\.1 200 /);
    const seen = zoneA.take();
    assert.equal(seen.length, 2);
    assert.equal(seen[1]?.url, '/products?page=2', 'the absolute-form target is sent on in origin form');
    assert.ok(
      seen.every(
        (s) => typeof s.headers['x-request-id'] === 'string' && s.headers['x-request-id'].length > 0,
      ),
    );
    assert.ok(seen.every((s) => String(s.headers.via).includes('isthmus')));
  });

  it('retries a failed read in the other zone, then in the nearest remote region, saying so', async () => {
    reset();
    zoneA.behavior = { kind: 'reset' };
    const r1 = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products' });
    assert.equal(r1.status, 200);
    assert.equal(r1.headers['isthmus-served-by'], 'us-east/us-east-b');
    assert.equal(r1.headers['isthmus-attempts'], '2');
    zoneB.behavior = { kind: 'reset' };
    const r2 = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products' });
    assert.equal(r2.status, 200);
    assert.equal(r2.headers['isthmus-served-by'], 'eu-west', 'nearest remote region by latency hint');
    assert.match(r2.headers['isthmus-degraded'] ?? '', /failover/);
    assert.equal(apSouth.take().length, 0);
  });

  it('never retries a POST without an Idempotency-Key, and retries one with a key', async () => {
    reset();
    zoneA.behavior = { kind: 'status', status: 503 };
    zoneB.behavior = { kind: 'status', status: 503 };
    euWest.behavior = { kind: 'status', status: 503 };
    apSouth.behavior = { kind: 'status', status: 503 };
    const plain = await call(proxy.addresses.outbound!, {
      method: 'POST',
      host: 'catalog',
      path: '/cart',
      body: '{}',
    });
    assert.equal(plain.status, 503);
    assert.equal(plain.headers['isthmus-attempts'], '1');
    const upstreamPosts = [zoneA, zoneB, euWest, apSouth].reduce((n, f) => n + f.take().length, 0);
    assert.equal(upstreamPosts, 1, 'the POST reached exactly one endpoint once');

    zoneA.behavior = { kind: 'status', status: 503 };
    zoneB.behavior = { kind: 'ok' };
    const keyed = await call(proxy.addresses.outbound!, {
      method: 'POST',
      host: 'catalog',
      path: '/cart',
      body: '{"item":1}',
      headers: { 'idempotency-key': 'k-1', 'content-type': 'application/json' },
    });
    assert.equal(keyed.status, 200);
    assert.equal(keyed.headers['isthmus-attempts'], '2');
    const resent = zoneB.take();
    assert.equal(resent[0]?.body, '{"item":1}', 'the buffered body is sent again on the retry');
  });

  it('sends strong routes only to the home region and fails fast when it is gone', async () => {
    reset();
    const ok = await call(proxy.addresses.outbound!, {
      method: 'POST',
      host: 'orders',
      path: '/orders',
      body: '{}',
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['isthmus-served-by'], 'us-east/us-east-a');
    zoneA.behavior = { kind: 'reset' };
    const started = Date.now();
    const gone = await call(proxy.addresses.outbound!, {
      method: 'POST',
      host: 'orders',
      path: '/orders',
      body: '{}',
      headers: { 'idempotency-key': 'order-1' },
    });
    assert.ok(gone.status === 502 || gone.status === 503, `status ${gone.status}`);
    assert.equal(euWest.take().length, 0, 'a strong write never goes to another region');
    assert.ok(Date.now() - started < 1500, 'fails fast rather than waiting out the deadline');
  });

  it('answers 404 with a clear body for a destination that is not in the mesh', async () => {
    const r = await call(proxy.addresses.outbound!, { host: 'nope', path: '/' });
    assert.equal(r.status, 404);
    assert.equal(r.headers['isthmus-error'], 'unknown-destination');
    assert.match((JSON.parse(r.body) as { message: string }).message, /"nope" is not a service of this mesh/);
  });

  it('shows endpoint and region health on the admin page', async () => {
    const r = await call(proxy.addresses.admin!, { path: '/endpoints' });
    const body = JSON.parse(r.body) as Record<
      string,
      { eventual: { endpoints: { id: string; locality: string }[] } }
    >;
    const catalog = body.catalog?.eventual.endpoints.map((e) => e.locality).sort();
    assert.deepEqual(catalog, ['ap-south', 'eu-west', 'us-east/us-east-a', 'us-east/us-east-b']);
    const config = JSON.parse((await call(proxy.addresses.admin!, { path: '/config' })).body) as {
      version: string;
      source: string;
    };
    assert.match(config.version, /^[0-9a-f]{16}$/);
    assert.match(config.source, /^static:/);
    const metrics = await call(proxy.addresses.admin!, { path: '/metrics' });
    assert.match(
      metrics.body,
      /isthmus_requests_total\{region="us-east",zone="us-east-a",service="catalog",route="list"\} \d+/,
    );
  });
});

describe('proxy: failback after a region heals', () => {
  let local: FakeUpstream;
  let euWest: FakeUpstream;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    [local, euWest] = await Promise.all([lab.upstream('us-east-a'), lab.upstream('gw-eu-west')]);
    const dir = await lab.mesh(
      meshFiles(
        { euWest: euWest.port, apSouth: 9 },
        `---
${API}
kind: TrafficPolicy
metadata: {name: quick-regions}
spec:
  targetRef: {kind: Service, name: catalog}
  outlierDetection: {consecutiveFailures: 2, baseEjectionTime: 300ms, interval: 200ms}
  localityFailover:
    regionHealth: {ejectAfter: 100ms, readmitAfter: 400ms, window: 1s}
    failback: {slowStart: 400ms}`,
      ),
    );
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [
        { service: 'catalog', port: local.port, locality: 'us-east/us-east-a' },
        { service: 'catalog', port: 9, locality: 'eu-west/eu-west-a' },
      ],
    });
  });
  after(() => lab.close());

  const servedBy = async (n: number) => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const r = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products' });
      assert.equal(r.status, 200, 'every read succeeds, through failover and failback');
      const where = r.headers['isthmus-served-by'] ?? '?';
      counts[where] = (counts[where] ?? 0) + 1;
      await new Promise((res) => setTimeout(res, 20));
    }
    return counts;
  };

  it('moves traffic away while the local region fails and back once it is healthy again, without flapping', async () => {
    assert.deepEqual(await servedBy(5), { 'us-east/us-east-a': 5 });
    local.behavior = { kind: 'reset' };
    const during = await servedBy(20);
    assert.ok((during['eu-west'] ?? 0) >= 18, JSON.stringify(during));
    local.behavior = { kind: 'ok' };
    // The failures age out of the 1 s window, then readmitAfter 400 ms and a 400 ms ramp: with
    // traffic flowing, within 3 s of the heal nearly everything is local again.
    const healedAt = Date.now();
    while (Date.now() - healedAt < 3000) await servedBy(5);
    const healed = await servedBy(20);
    assert.ok((healed['us-east/us-east-a'] ?? 0) >= 19, JSON.stringify(healed));
    const endpoints = JSON.parse((await call(proxy.addresses.admin!, { path: '/endpoints' })).body) as {
      catalog: { eventual: { regions: { region: string; state: string; flaps: number }[] } };
    };
    const usEast = endpoints.catalog.eventual.regions.find((r) => r.region === 'us-east');
    assert.equal(usEast?.state, 'healthy');
    assert.ok((usEast?.flaps ?? 0) <= 1, `flaps: ${usEast?.flaps}`);
  });
});
