import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Proxy } from '../../src/dataplane/proxy.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { API, region, service } from '../support/mesh-fixtures.js';
import { call, TestLab } from '../support/proxy-harness.js';

/**
 * A cross-region path as in production: a sidecar in us-east sends to eu-west's gateway (a real
 * Proxy in gateway mode), which balances over eu-west's own instances only.
 */
describe('gateway', () => {
  let euA: FakeUpstream;
  let euB: FakeUpstream;
  let usApp: FakeUpstream;
  let gateway: Proxy;
  let sidecar: Proxy;
  const lab = new TestLab();

  before(async () => {
    [euA, euB, usApp] = await lab.upstreams('eu-a', 'eu-b', 'us-app');
    const resources = (gatewayPort: number) => ({
      'mesh.yaml': `${API}
kind: Region
metadata: {name: us-east}
spec:
  zones: [{name: us-east-a}]
  latencyHints: {eu-west: 80ms}
---
${API}
kind: Region
metadata: {name: eu-west}
spec:
  zones: [{name: eu-west-a}, {name: eu-west-b}]
  gateway: {address: 127.0.0.1, port: ${gatewayPort}}
---
${service('catalog').trim()}
---
${service('frontend').trim()}
---
${API}
kind: TrafficPolicy
metadata: {name: base}
spec:
  targetRef: {kind: Mesh}
  timeouts: {connect: 200ms, perTry: 500ms, overall: 2s}
  healthChecks: {enabled: false}
`,
    });
    const endpoints = [
      { service: 'catalog', port: usApp.port, locality: 'us-east/us-east-a' },
      { service: 'catalog', port: euA.port, locality: 'eu-west/eu-west-a' },
      { service: 'catalog', port: euB.port, locality: 'eu-west/eu-west-b' },
    ];
    // The gateway's own port is only known once it listens: start it with a placeholder mesh.
    gateway = await lab.proxy({
      name: 'gw-eu-west',
      mode: 'gateway',
      locality: 'eu-west/eu-west-a',
      resources: await lab.mesh(resources(1)),
      endpoints,
    });
    const gatewayPort = Number(gateway.addresses.gateway!.split(':')[1]);
    sidecar = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: await lab.mesh(resources(gatewayPort)),
      endpoints,
    });
  });
  after(() => lab.close());

  it('carries traffic to another region through its gateway when the local region fails', async () => {
    usApp.behavior = { kind: 'reset' };
    const r = await call(sidecar.addresses.outbound!, { host: 'catalog', path: '/products' });
    assert.equal(r.status, 200);
    assert.match(r.headers['x-served-by'] ?? '', /^eu-[ab]$/);
    // The gateway names the zone that served; the sidecar keeps that more precise answer.
    assert.match(r.headers['isthmus-served-by'] ?? '', /^eu-west\/eu-west-[ab]$/);
    assert.match(r.headers.via ?? '', /isthmus-gw-eu-west/);
  });

  it('balances only over its own region and fails over between its zones', async () => {
    euA.behavior = { kind: 'reset' };
    euA.take();
    euB.take();
    usApp.take();
    for (let i = 0; i < 5; i++) {
      const r = await call(gateway.addresses.gateway!, { host: 'catalog', path: `/p/${i}` });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-served-by'], 'eu-b');
    }
    assert.equal(usApp.take().length, 0, 'a gateway never sends traffic on to another region');
  });
});

describe('active health checks', () => {
  let a: FakeUpstream;
  let b: FakeUpstream;
  let proxy: Proxy;
  const lab = new TestLab();

  before(async () => {
    [a, b] = await lab.upstreams('a', 'b');
    const dir = await lab.mesh({
      'mesh.yaml': `${region('us-east', ['us-east-a', 'us-east-b']).trim()}
---
${service('catalog').trim()}
---
${service('frontend').trim()}
---
${API}
kind: TrafficPolicy
metadata: {name: checks}
spec:
  targetRef: {kind: Mesh}
  healthChecks: {enabled: true, interval: 100ms, timeout: 50ms, unhealthyThreshold: 2, healthyThreshold: 2}
`,
    });
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [
        { service: 'catalog', port: a.port, locality: 'us-east/us-east-a' },
        { service: 'catalog', port: b.port, locality: 'us-east/us-east-b' },
      ],
    });
  });
  after(() => lab.close());

  it('moves traffic off an endpoint that fails its checks before any request fails, and back', async () => {
    assert.equal(
      (await call(proxy.addresses.outbound!, { host: 'catalog', path: '/' })).headers['x-served-by'],
      'a',
    );
    a.healthStatus = 503;
    await new Promise((r) => setTimeout(r, 600));
    a.take();
    for (let i = 0; i < 5; i++) {
      const r = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/' });
      assert.equal(r.headers['x-served-by'], 'b');
      assert.equal(r.headers['isthmus-attempts'], '1', 'no request had to fail first');
    }
    assert.equal(a.take().length, 0);
    a.healthStatus = 200;
    await new Promise((r) => setTimeout(r, 800));
    const back = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/' });
    assert.equal(back.headers['x-served-by'], 'a');
  });
});
