import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { lastKnownGoodFiles, loadLastKnownGood } from '../../src/dataplane/last-known-good.js';
import type { Proxy } from '../../src/dataplane/proxy.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { region, service, yamlStream } from '../support/mesh-fixtures.js';
import { call, eventually, raw, snapshotOf, TestLab, type EndpointSpec } from '../support/proxy-harness.js';

const API = 'apiVersion: isthmus.dev/v1alpha1';

const basePolicy = (
  outlier = '{consecutiveFailures: 0, successRate: {enabled: false}, latency: {enabled: false}}',
  extra = '',
) => `
${API}
kind: TrafficPolicy
metadata: {name: base}
spec:
  targetRef: {kind: Mesh}
  timeouts: {connect: 200ms, perTry: 500ms, overall: 2s}
  retries: {backoff: {base: 1ms, max: 2ms}, budget: {minPerSecond: 1000}, crossRegion: {minPerSecond: 1000}}
  healthChecks: {enabled: false}
  outlierDetection: ${outlier}
${extra}`;

/** One region, the sidecar's own service and two more. */
const localMesh = (...extra: string[]) =>
  yamlStream(
    region('us-east'),
    service('catalog'),
    service('recs'),
    service('frontend'),
    basePolicy(),
    ...extra,
  );

interface Config {
  hasConfig: boolean;
  version: string | null;
  policyRevision: number | null;
  source: string | null;
  generatedAt: string | null;
  ageMs: number | null;
  controlPlane?: { connected: boolean; lastContactAgeMs: number };
  partition?: { mode: string; withheld: Record<string, string[]> } | null;
  lastRejectedSnapshot: { version: string; reason: string; details: string[]; at: string } | null;
}

const configOf = async (p: Proxy) =>
  JSON.parse((await call(p.addresses.admin!, { path: '/config' })).body) as Config;
const metricsOf = async (p: Proxy) => (await call(p.addresses.admin!, { path: '/metrics' })).body;
const metric = (text: string, name: string, labels = '') => {
  const m = new RegExp(`^${name}\\{region="us-east",zone="us-east-a"${labels}\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

describe('proxy with a control plane: first snapshot, NACKs, last-known-good', () => {
  const lab = new TestLab();
  const events: Record<string, unknown>[] = [];
  let app: FakeUpstream;
  let dataDir: string;
  let proxy: Proxy;
  const good = (version: string, endpoints: EndpointSpec[] = []) =>
    snapshotOf({
      version,
      policyRevision: 3,
      generatedAtMs: Date.now() - 5000,
      resources: localMesh(),
      endpoints: [{ service: 'catalog', port: app.port, locality: 'us-east/us-east-a' }, ...endpoints],
    });

  before(async () => {
    app = await lab.upstream('catalog-1');
    dataDir = path.join(await lab.dir(), 'state');
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      controlPlane: { dataDir },
      log: (e) => events.push(e),
    });
  });
  after(() => lab.close());

  it('starts with no configuration: not ready, 503 no-config for the app, and nothing breaks', async () => {
    assert.equal(proxy.hasConfig, false);
    assert.ok(events.some((e) => e.event === 'waiting-for-control-plane'));
    const ready = await call(proxy.addresses.admin!, { path: '/ready' });
    assert.equal(ready.status, 503);
    assert.deepEqual(
      { ...(JSON.parse(ready.body) as object), listeners: undefined, mode: undefined },
      {
        ready: false,
        reason: 'waiting for the first snapshot from the control plane',
        listeners: undefined,
        mode: undefined,
      },
    );
    const r = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['isthmus-error'], 'no-config');
    assert.match(r.body, /no configuration yet: it is waiting for the first snapshot from the control plane/);
    const tunnel = await raw(
      proxy.addresses.outbound!,
      'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n',
    );
    assert.match(tunnel, /^HTTP\/1\.1 503 [^]*isthmus-error: no-config/);
    const config = await configOf(proxy);
    assert.equal(config.hasConfig, false);
    assert.equal(config.version, null);
    assert.equal(config.controlPlane?.connected, false);
    assert.equal((await call(proxy.addresses.admin!, { path: '/endpoints' })).body.trim(), '{}');
    const metrics = await metricsOf(proxy);
    assert.equal(metric(metrics, 'isthmus_control_plane_connected'), 0);
    assert.equal(metric(metrics, 'isthmus_config_age_seconds'), undefined, 'no configuration, no age');
    assert.equal(app.take().length, 0);
  });

  it('applies a valid snapshot: serves, says where it came from, and saves it as last-known-good', async () => {
    const snapshot = good('v1');
    assert.deepEqual(await proxy.applySnapshot(snapshot, 'ws://zone-a:7400'), { ok: true, version: 'v1' });
    assert.equal(proxy.hasConfig, true);
    assert.equal((await call(proxy.addresses.admin!, { path: '/ready' })).status, 200);
    const r = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/products' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-served-by'], 'catalog-1');
    const config = await configOf(proxy);
    assert.equal(config.version, 'v1');
    assert.equal(config.policyRevision, 3);
    assert.equal(config.source, 'zone:ws://zone-a:7400');
    assert.equal(config.generatedAt, new Date(snapshot.generatedAtMs).toISOString());
    assert.ok((config.ageMs ?? 0) >= 5000, 'age counts from when the control plane generated it');
    assert.equal(config.controlPlane?.connected, true, 'a snapshot is contact with the control plane');
    assert.deepEqual((await loadLastKnownGood(dataDir))?.snapshot, snapshot);
    const metrics = await metricsOf(proxy);
    assert.equal(metric(metrics, 'isthmus_config_applied_total'), 1);
    assert.equal(metric(metrics, 'isthmus_control_plane_connected'), 1);
    assert.ok((metric(metrics, 'isthmus_config_age_seconds') ?? -1) >= 5);
  });

  it('NACKs endpoints of an unknown service and keeps running, and keeps the saved file', async () => {
    const result = await proxy.applySnapshot(
      good('v2', [
        { service: 'ghost', port: 1, locality: 'us-east/us-east-a' },
        { service: 'ghost', port: 2, locality: 'us-east/us-east-a' },
      ]),
    );
    assert.equal(result.ok, false);
    assert.ok(!result.ok);
    assert.match(result.reason, /^snapshot v2 rejected, the running configuration stays: 1 problem/);
    assert.deepEqual(result.details, [
      '2 endpoints of service "ghost", which is not a Service in the snapshot\'s resources',
    ]);
    const config = await configOf(proxy);
    assert.equal(config.version, 'v1');
    assert.equal(config.lastRejectedSnapshot?.version, 'v2');
    assert.equal(config.lastRejectedSnapshot?.reason, result.reason);
    assert.equal((await call(proxy.addresses.outbound!, { host: 'catalog', path: '/' })).status, 200);
    assert.equal(
      (await loadLastKnownGood(dataDir))?.snapshot.version,
      'v1',
      'a NACKed snapshot is never saved',
    );
    assert.equal(metric(await metricsOf(proxy), 'isthmus_config_rejected_total'), 1);
  });

  it('NACKs invalid resources, bad localities and a missing own service, saying where', async () => {
    const typo = snapshotOf({
      version: 'v3',
      resources: localMesh(
        `${API}\nkind: TrafficPolicy\nmetadata: {name: bad}\nspec:\n  targetRef: {kind: Mesh}\n  retrys: {}`,
      ),
      endpoints: [],
    });
    const r1 = await proxy.applySnapshot(typo);
    assert.ok(!r1.ok);
    assert.match(r1.details[0] ?? '', /^resources#5 TrafficPolicy\/bad spec\.retrys: unknown field "retrys"/);

    const badLocality = good('v4');
    badLocality.endpoints.push({
      service: 'catalog',
      address: '10.0.0.9',
      port: 80,
      locality: 'us-east/a/b',
      weight: 1,
    });
    const r2 = await proxy.applySnapshot(badLocality);
    assert.ok(!r2.ok);
    assert.match(
      r2.details[0] ?? '',
      /^endpoints\[1\] \(catalog 10\.0\.0\.9:80\): invalid locality "us-east\/a\/b"/,
    );

    const noFrontend = snapshotOf({
      version: 'v5',
      resources: yamlStream(region('us-east'), service('catalog'), basePolicy()),
      endpoints: [],
    });
    const r3 = await proxy.applySnapshot(noFrontend);
    assert.ok(!r3.ok);
    assert.match(
      r3.reason,
      /this sidecar's own service "frontend" \(bootstrap spec\.service\) is not a Service/,
    );
    assert.equal((await configOf(proxy)).version, 'v1');
    assert.equal(proxy.lastRejectedSnapshot?.version, 'v5');
  });

  it('refuses a file reload: its configuration comes from the control plane', async () => {
    const r = await call(proxy.addresses.admin!, { method: 'POST', path: '/reload' });
    assert.equal(r.status, 422);
    assert.match(r.body, /takes its configuration from the control plane/);
    assert.equal((await configOf(proxy)).version, 'v1');
  });

  it('a restarted proxy starts from the last-known-good snapshot and serves at once', async () => {
    const restartEvents: Record<string, unknown>[] = [];
    const second = await lab.proxy({
      name: 'restarted',
      locality: 'us-east/us-east-a',
      controlPlane: { dataDir },
      log: (e) => restartEvents.push(e),
    });
    assert.equal(second.hasConfig, true);
    const config = await configOf(second);
    assert.equal(config.version, 'v1');
    assert.equal(config.source, `last-known-good:${lastKnownGoodFiles(dataDir).current}`);
    assert.equal(config.controlPlane?.connected, false);
    assert.equal((await call(second.addresses.admin!, { path: '/ready' })).status, 200);
    const r = await call(second.addresses.outbound!, { host: 'catalog', path: '/' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-served-by'], 'catalog-1');
    assert.ok(restartEvents.some((e) => e.event === 'started-from-last-known-good' && e.version === 'v1'));
  });

  it('starts from .prev when the current last-known-good file is damaged', async () => {
    assert.equal((await proxy.applySnapshot(good('v6'))).ok, true);
    const { current, previous } = lastKnownGoodFiles(dataDir);
    const bytes = await readFile(current);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0x01;
    await writeFile(current, bytes);
    const restartEvents: Record<string, unknown>[] = [];
    const third = await lab.proxy({
      name: 'restarted-2',
      locality: 'us-east/us-east-a',
      controlPlane: { dataDir },
      log: (e) => restartEvents.push(e),
    });
    const config = await configOf(third);
    assert.equal(config.version, 'v1');
    assert.equal(config.source, `last-known-good:${previous}`);
    const skipped = restartEvents.find((e) => e.event === 'last-known-good-skipped');
    assert.equal(skipped?.file, current);
    assert.match(String(skipped?.problem), /checksum mismatch/);
  });
});

describe('proxy in static mode', () => {
  const lab = new TestLab();
  after(() => lab.close());

  it('refuses snapshots: its configuration comes from its bootstrap file', async () => {
    const proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: await lab.mesh({ 'mesh.yaml': localMesh() }),
      endpoints: [],
    });
    const before = (await configOf(proxy)).version;
    const r = await proxy.applySnapshot(snapshotOf({ version: 'v1', resources: localMesh(), endpoints: [] }));
    assert.ok(!r.ok);
    assert.match(r.reason, /static mode/);
    const config = await configOf(proxy);
    assert.equal(config.version, before);
    assert.match(config.source ?? '', /^static:/);
    assert.equal(config.controlPlane, undefined);
    assert.equal(metric(await metricsOf(proxy), 'isthmus_control_plane_connected'), undefined);
  });
});

describe('proxy with a control plane: per-destination state survives unrelated updates', () => {
  const lab = new TestLab();
  let a: FakeUpstream;
  let b: FakeUpstream;
  let recs: FakeUpstream;
  let proxy: Proxy;
  // One failure ejects, for an hour: whatever the test does after, only lost state ends it.
  const resources = yamlStream(
    region('us-east'),
    service('catalog'),
    service('recs'),
    service('frontend'),
    basePolicy(
      '{consecutiveFailures: 1, baseEjectionTime: 1h, successRate: {enabled: false}, latency: {enabled: false}}',
      // Half the region is ejected: keep the region itself in (no panic) for the whole test.
      '  localityFailover: {regionHealth: {ejectAfter: 10m}}',
    ),
  );
  const catalog = () => [
    { service: 'catalog', port: a.port, locality: 'us-east/us-east-a' },
    { service: 'catalog', port: b.port, locality: 'us-east/us-east-a' },
  ];
  const health = async (port: number) => {
    const endpoints = JSON.parse((await call(proxy.addresses.admin!, { path: '/endpoints' })).body) as Record<
      string,
      { eventual: { endpoints: { id: string; health: string }[] } }
    >;
    return endpoints.catalog?.eventual.endpoints.find((e) => e.id === `127.0.0.1:${port}`)?.health;
  };

  before(async () => {
    [a, b, recs] = await lab.upstreams('a', 'b', 'recs');
    proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      controlPlane: { dataDir: path.join(await lab.dir(), 'state') },
    });
    const first = await proxy.applySnapshot(
      snapshotOf({
        version: 'v1',
        resources,
        endpoints: [...catalog(), { service: 'recs', port: recs.port, locality: 'us-east/us-east-a' }],
      }),
    );
    assert.equal(first.ok, true);
  });
  after(() => lab.close());

  it('keeps an ejected endpoint ejected across a snapshot that changes only another service', async () => {
    a.behavior = { kind: 'reset' };
    // Both are equally good until `a` is tried; then its first failure ejects it.
    for (let i = 0; i < 40 && (await health(a.port)) !== 'ejected'; i++)
      assert.equal((await call(proxy.addresses.outbound!, { host: 'catalog', path: '/' })).status, 200);
    assert.equal(await health(a.port), 'ejected');
    const catalogBefore = proxy.config?.destinations.get('catalog');
    const recsBefore = proxy.config?.destinations.get('recs');

    const update = await proxy.applySnapshot(
      snapshotOf({
        version: 'v2',
        resources,
        endpoints: [
          ...catalog(),
          { service: 'recs', port: recs.port, locality: 'us-east/us-east-a' },
          { service: 'recs', port: 9, locality: 'us-east/us-east-a', address: '127.0.0.2' },
        ],
      }),
    );
    assert.deepEqual(update, { ok: true, version: 'v2' });
    // `a` works again but is still within its ejection: a rebuilt destination would have
    // forgotten that and sent it about half of these requests.
    a.behavior = { kind: 'ok' };
    a.take();
    assert.equal(await health(a.port), 'ejected');
    for (let i = 0; i < 10; i++) {
      const r = await call(proxy.addresses.outbound!, { host: 'catalog', path: '/' });
      assert.equal(r.headers['x-served-by'], 'b');
    }
    assert.equal(a.take().length, 0);
    assert.equal(
      proxy.config?.destinations.get('catalog'),
      catalogBefore,
      'the same destination carried over',
    );
    assert.notEqual(proxy.config?.destinations.get('recs'), recsBefore, 'recs changed: rebuilt');
    assert.equal(proxy.config?.version, 'v2');
  });

  it('rebuilds a destination whose resources changed', async () => {
    const catalogBefore = proxy.config?.destinations.get('catalog');
    const r = await proxy.applySnapshot(
      snapshotOf({
        version: 'v3',
        resources: yamlStream(resources, service('search')),
        endpoints: catalog(),
      }),
    );
    assert.equal(r.ok, true);
    assert.notEqual(proxy.config?.destinations.get('catalog'), catalogBefore);
  });
});

/**
 * A sidecar in us-east; catalog runs in eu-west and ap-south (reached through their gateways,
 * fake upstreams here) and, when `local` is given, in us-east too. The partition policy's
 * grace period is 10 s on a manual clock.
 */
async function partitionLab(mode: 'freeze' | 'decay' | 'fail-closed', withLocal: boolean) {
  const lab = new TestLab();
  const clock = new ManualClock();
  const [local, euGw, apGw] = await lab.upstreams('local', 'gw-eu-west', 'gw-ap-south');
  const events: Record<string, unknown>[] = [];
  const resources = yamlStream(
    `${API}
kind: Region
metadata: {name: us-east}
spec:
  zones: [{name: us-east-a}]
  latencyHints: {eu-west: 80ms, ap-south: 200ms}`,
    `${API}
kind: Region
metadata: {name: eu-west}
spec:
  zones: [{name: eu-west-a}]
  gateway: {address: 127.0.0.1, port: ${euGw.port}}`,
    `${API}
kind: Region
metadata: {name: ap-south}
spec:
  zones: [{name: ap-south-a}]
  gateway: {address: 127.0.0.1, port: ${apGw.port}}`,
    service('catalog'),
    service('frontend'),
    basePolicy(),
    `${API}
kind: PartitionPolicy
metadata: {name: partition}
spec:
  targetRef: {kind: Mesh}
  proxy: {remoteEndpoints: ${mode}, decayAfter: 10s}`,
  );
  const endpoints: EndpointSpec[] = [
    ...(withLocal ? [{ service: 'catalog', port: local.port, locality: 'us-east/us-east-a' }] : []),
    { service: 'catalog', port: 9, locality: 'eu-west/eu-west-a' },
    { service: 'catalog', port: 9, locality: 'ap-south/ap-south-a' },
  ];
  const proxy = await lab.proxy({
    locality: 'us-east/us-east-a',
    controlPlane: { dataDir: path.join(await lab.dir(), 'state') },
    clock,
    log: (e) => events.push(e),
  });
  const snapshot = (version: string) =>
    snapshotOf({ version, resources, endpoints, generatedAtMs: clock.now() });
  assert.equal((await proxy.applySnapshot(snapshot('v1'))).ok, true);
  const withheld = async () => (await configOf(proxy)).partition?.withheld.catalog ?? [];
  // A fresh path for requests that must not be answered from the stale-if-error cache.
  const get = (path = '/') => call(proxy.addresses.outbound!, { host: 'catalog', path });
  const disconnect = () =>
    proxy.controlPlaneContact({ connected: false, lastContactMs: clock.monotonicMs() });
  const reconnect = () => proxy.controlPlaneContact({ connected: true, lastContactMs: clock.monotonicMs() });
  return { lab, clock, proxy, local, euGw, apGw, events, snapshot, withheld, get, disconnect, reconnect };
}

describe('partition policy for remote endpoints (control plane unreachable)', () => {
  it('decay: drops each remote endpoint not seen answering within decayAfter, restores them on contact', async () => {
    const t = await partitionLab('decay', false);
    try {
      assert.equal((await t.get()).headers['x-served-by'], 'gw-eu-west');
      t.disconnect();
      t.clock.advance(9_000);
      assert.equal((await t.get()).headers['x-served-by'], 'gw-eu-west', 'within the grace period');
      assert.deepEqual(await t.withheld(), []);
      t.clock.advance(2_000); // contact lost 11 s ago; eu-west answered 2 s ago, ap-south never
      assert.deepEqual(
        await eventually(async () => {
          const w = await t.withheld();
          assert.deepEqual(w, ['gateway:ap-south']);
          return w;
        }),
        ['gateway:ap-south'],
      );
      const metrics = await metricsOf(t.proxy);
      assert.equal(
        metric(
          metrics,
          'isthmus_partition_endpoints_dropped_total',
          ',service="catalog",peer_region="ap-south",mode="decay"',
        ),
        1,
      );
      assert.equal(metric(metrics, 'isthmus_control_plane_connected'), 0);
      assert.ok(t.events.some((e) => e.event === 'partition-endpoints-dropped' && e.mode === 'decay'));

      // eu-west fails now: with ap-south dropped, no retry goes there.
      t.euGw.behavior = { kind: 'status', status: 503 };
      t.apGw.take();
      const failed = await t.get('/not-cached');
      assert.equal(failed.status, 503);
      assert.equal(failed.headers['x-served-by'], 'gw-eu-west');
      assert.equal(t.apGw.take().length, 0);

      t.clock.advance(10_000); // eu-west's last success is now 12 s old
      await eventually(async () =>
        assert.deepEqual((await t.withheld()).sort(), ['gateway:ap-south', 'gateway:eu-west']),
      );
      const none = await t.get('/nothing-left');
      assert.equal(none.status, 503);
      assert.equal(none.headers['isthmus-error'], 'no-healthy-endpoint');

      t.euGw.behavior = { kind: 'ok' };
      t.reconnect();
      assert.deepEqual(await t.withheld(), [], 'contact restores everything at once');
      assert.equal((await t.get()).headers['x-served-by'], 'gw-eu-west');
      assert.ok(t.events.some((e) => e.event === 'partition-endpoints-restored'));
    } finally {
      await t.lab.close();
    }
  });

  it('fail-closed: drops all remote endpoints once decayAfter has passed, even recently good ones; a snapshot restores them', async () => {
    const t = await partitionLab('fail-closed', true);
    try {
      t.local.behavior = { kind: 'reset' };
      t.disconnect();
      t.clock.advance(5_000);
      assert.equal(
        (await t.get()).headers['x-served-by'],
        'gw-eu-west',
        'fails over within the grace period',
      );
      t.clock.advance(6_000);
      await eventually(async () =>
        assert.deepEqual((await t.withheld()).sort(), ['gateway:ap-south', 'gateway:eu-west']),
      );
      t.euGw.take();
      assert.equal((await t.get('/not-cached')).status, 502, 'no failover to other regions any more');
      assert.equal(t.euGw.take().length, 0);
      t.local.behavior = { kind: 'ok' };
      assert.equal((await t.get()).headers['x-served-by'], 'local', 'the own region still serves');

      t.local.behavior = { kind: 'reset' };
      assert.equal((await t.proxy.applySnapshot(t.snapshot('v2'))).ok, true);
      assert.deepEqual(await t.withheld(), []);
      assert.equal((await t.get()).headers['x-served-by'], 'gw-eu-west');
    } finally {
      await t.lab.close();
    }
  });

  it('freeze: keeps remote endpoints however long the control plane is gone', async () => {
    const t = await partitionLab('freeze', true);
    try {
      t.disconnect();
      t.clock.advance(3_600_000);
      await new Promise((r) => setTimeout(r, 150)); // a few ticks
      assert.deepEqual(await t.withheld(), []);
      t.local.behavior = { kind: 'reset' };
      assert.equal((await t.get()).headers['x-served-by'], 'gw-eu-west');
      assert.equal(
        metric(
          await metricsOf(t.proxy),
          'isthmus_partition_endpoints_dropped_total',
          ',service="catalog",peer_region="eu-west",mode="freeze"',
        ),
        undefined,
      );
    } finally {
      await t.lab.close();
    }
  });
});
