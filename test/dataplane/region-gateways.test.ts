import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseBootstrap } from '../../src/dataplane/bootstrap.js';
import type { Proxy } from '../../src/dataplane/proxy.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { API, region, service, yamlStream } from '../support/mesh-fixtures.js';
import { call, snapshotOf, TestLab } from '../support/proxy-harness.js';
import { yamlDoc } from '../support/yaml-doc.js';

/**
 * `spec.regionGateways`: a sidecar reaches another region's gateway at the bootstrap's address,
 * not the Region's. Two fake upstreams stand in for the two addresses of eu-west's gateway: the
 * one the Region resource names (which this sidecar must not use) and the one behind the
 * override (a NAT, a private link, or the lab's WAN emulator).
 */
const mesh = (regionGatewayPort: number) =>
  yamlStream(
    region('us-east'),
    `${API}
kind: Region
metadata: {name: eu-west}
spec:
  zones: [{name: eu-west-a}]
  gateway: {address: 127.0.0.1, port: ${regionGatewayPort}}`,
    service('catalog'),
    service('frontend'),
    `${API}
kind: TrafficPolicy
metadata: {name: base}
spec:
  targetRef: {kind: Mesh}
  timeouts: {connect: 200ms, perTry: 500ms, overall: 2s}
  healthChecks: {enabled: false}`,
  );

interface EndpointsPage {
  catalog?: { eventual: { endpoints: { id: string; address?: string; port?: number }[] } };
}

const gatewayEndpoint = async (proxy: Proxy) => {
  const page = JSON.parse((await call(proxy.addresses.admin!, { path: '/endpoints' })).body) as EndpointsPage;
  return page.catalog?.eventual.endpoints.map((e) => e.id);
};

describe('regionGateways: another region’s gateway at the bootstrap’s address', () => {
  const lab = new TestLab();
  let regionAddress: FakeUpstream;
  let overrideAddress: FakeUpstream;
  // catalog runs only in eu-west: every request from us-east crosses to its gateway.
  const endpoints = (port: number) => [{ service: 'catalog', port, locality: 'eu-west/eu-west-a' }];

  before(async () => {
    [regionAddress, overrideAddress] = await lab.upstreams('region-address', 'override-address');
  });
  after(() => lab.close());

  it('static mode: sends to the override, never to the Region’s address, and keeps the gateway id', async () => {
    const sidecar = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: await lab.mesh({ 'mesh.yaml': mesh(regionAddress.port) }),
      endpoints: endpoints(9),
      // ap-south is not in the mesh: accepted, and ignored.
      extra: `  regionGateways: {eu-west: '127.0.0.1:${overrideAddress.port}', ap-south: '127.0.0.1:1'}`,
    });
    for (let i = 0; i < 3; i++) {
      const r = await call(sidecar.addresses.outbound!, { host: 'catalog', path: `/products/${i}` });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-served-by'], 'override-address');
      assert.match(r.headers['isthmus-served-by'] ?? '', /^eu-west/);
    }
    assert.equal(overrideAddress.take().length, 3);
    assert.equal(regionAddress.take().length, 0, 'the Region resource’s address is not used');
    assert.deepEqual(await gatewayEndpoint(sidecar), ['gateway:eu-west']);
  });

  it('without an override the Region’s address is used (the test can tell the two apart)', async () => {
    const sidecar = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: await lab.mesh({ 'mesh.yaml': mesh(regionAddress.port) }),
      endpoints: endpoints(9),
    });
    const r = await call(sidecar.addresses.outbound!, { host: 'catalog', path: '/products/1' });
    assert.equal(r.headers['x-served-by'], 'region-address');
    assert.equal(regionAddress.take().length, 1);
    assert.equal(overrideAddress.take().length, 0);
  });

  it('control-plane mode: the override applies to snapshot endpoints too', async () => {
    const sidecar = await lab.proxy({
      locality: 'us-east/us-east-a',
      controlPlane: { dataDir: path.join(await lab.dir(), 'data') },
      extra: `  regionGateways: {eu-west: '127.0.0.1:${overrideAddress.port}'}`,
    });
    const applied = await sidecar.applySnapshot(
      snapshotOf({ version: 'v1', resources: mesh(regionAddress.port), endpoints: endpoints(9) }),
    );
    assert.deepEqual(applied, { ok: true, version: 'v1' });
    const r = await call(sidecar.addresses.outbound!, { host: 'catalog', path: '/products/1' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-served-by'], 'override-address');
    assert.equal(regionAddress.take().length, 0);
    assert.equal(overrideAddress.take().length, 1);
    assert.deepEqual(await gatewayEndpoint(sidecar), ['gateway:eu-west']);
  });
});

describe('regionGateways: validation', () => {
  const FILE = path.join(path.sep, 'etc', 'isthmus', 'proxy.yaml');
  const problems = (text: string) =>
    parseBootstrap(text, FILE).diagnostics.map(
      (d) => `${d.line}:${d.col} ${d.rule} ${d.path ?? ''} ${d.message}`,
    );
  const bootstrap = (mode: string, listeners: string, gateways: string) => yamlDoc`
    apiVersion: isthmus.dev/v1alpha1
    kind: ProxyBootstrap
    metadata: {name: p}
    spec:
      mode: ${mode}
      service: frontend
      locality: us-east/us-east-a
      ${listeners}
      admin: {listen: 127.0.0.1:0}
      resources: [../mesh]
      endpoints: {}
      regionGateways: ${gateways}
  `;
  const sidecar = (gateways: string) => bootstrap('sidecar', 'outbound: {listen: 127.0.0.1:0}', gateways);

  it('resolves HOST:PORT per region, IPv6 without brackets', () => {
    const { bootstrap: b, diagnostics } = parseBootstrap(
      sidecar(`{eu-west: 'gw.eu-west.internal:15443', ap-south: '[fd00::1]:15443', mars: '10.0.0.1:1'}`),
      FILE,
    );
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(
      [...(b?.regionGateways ?? [])],
      [
        ['eu-west', { address: 'gw.eu-west.internal', port: 15443 }],
        ['ap-south', { address: 'fd00::1', port: 15443 }],
        ['mars', { address: '10.0.0.1', port: 1 }],
      ],
    );
  });

  it('is empty without the field', () => {
    const text = sidecar('{}');
    assert.equal(parseBootstrap(text, FILE).bootstrap?.regionGateways.size, 0);
  });

  it('rejects the proxy’s own region, located at its key', () => {
    const text = sidecar(`{eu-west: '127.0.0.1:15443', us-east: '127.0.0.1:15443'}`);
    const found = problems(text);
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(
      found[0] ?? '',
      /^12:48 self-reference spec\.regionGateways\.us-east "us-east" is this proxy's own region/,
    );
    assert.equal(parseBootstrap(text, FILE).bootstrap, undefined);
  });

  it('rejects bad region names, bad addresses and port 0, every one in one run', () => {
    const found = problems(sidecar(`{Eu_West: '127.0.0.1:1', eu-west: 'no-port', ap-south: '127.0.0.1:0'}`));
    assert.equal(found.length, 3, found.join('\n'));
    assert.ok(
      found.some((f) => f.includes('Eu_West')),
      found.join('\n'),
    );
    assert.ok(
      found.some((f) => f.includes('spec.regionGateways.eu-west')),
      found.join('\n'),
    );
    assert.ok(
      found.some((f) => /spec\.regionGateways\.ap-south port 0 cannot be reached/.test(f)),
      found.join('\n'),
    );
  });

  it('is for sidecars: a gateway never sends traffic on to another region', () => {
    const found = problems(
      bootstrap('gateway', 'gateway: {listen: 127.0.0.1:0}', `{eu-west: '127.0.0.1:1'}`),
    );
    assert.ok(
      found.some((f) => /spec\.regionGateways `regionGateways` is for sidecars/.test(f)),
      found.join('\n'),
    );
  });
});
