import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { Proxy } from '../../src/dataplane/proxy.js';
import { parseTraceparent } from '../../src/telemetry/trace-context.js';
import { FakeCollector } from '../support/fake-collector.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { API, service } from '../support/mesh-fixtures.js';
import { call, eventually, TestLab } from '../support/proxy-harness.js';

const SIDECAR = 'proxy/sc-us-east@us-east';
const GATEWAY = 'proxy/gw-eu-west@eu-west';

/**
 * Request telemetry across two hops as in production: an app's sidecar in us-east sends to
 * eu-west's gateway, which forwards to an instance there. Both proxies ship to one fake collector.
 */
describe('proxy telemetry', () => {
  let euA: FakeUpstream;
  let gateway: Proxy;
  let sidecar: Proxy;
  let collector: FakeCollector;
  let dataDir: string;
  let sidecarMesh: string;
  let meshText: (gatewayPort: number) => Record<string, string>;
  let gatewayPortOf: number;
  const sidecarEvents: Record<string, unknown>[] = [];
  /** The pid in the lock the sidecar's log folder holds when it starts: a process that is gone. */
  let deadPid: number;
  const lab = new TestLab();

  before(async () => {
    collector = await FakeCollector.start();
    dataDir = await mkdtemp(path.join(tmpdir(), 'isthmus-telemetry-'));
    [euA] = await lab.upstreams('eu-a');
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
  zones: [{name: eu-west-a}]
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
  timeouts: {connect: 200ms, perTry: 1s, overall: 3s}
  healthChecks: {enabled: false}
---
${API}
kind: TelemetryPolicy
metadata: {name: all}
spec:
  targetRef: {kind: Mesh}
  sampling: {minRatio: 1}
  buffer: {fsyncInterval: 5ms}
  accessLog: {batchWindow: 20ms, batchRecords: 64}
  heartbeatInterval: 100ms
  metricsInterval: 1s
`,
    });
    const endpoints = [{ service: 'catalog', port: euA.port, locality: 'eu-west/eu-west-a' }];
    const telemetry = (name: string) =>
      `  telemetry: {collector: "${collector.url}", dataDir: ${JSON.stringify(path.join(dataDir, name))}}`;
    gateway = await lab.proxy({
      name: 'gw-eu-west',
      mode: 'gateway',
      locality: 'eu-west/eu-west-a',
      resources: await lab.mesh(resources(1)),
      endpoints,
      extra: telemetry('gw'),
    });
    const gatewayPort = Number(gateway.addresses.gateway!.split(':')[1]);
    gatewayPortOf = gatewayPort;
    meshText = resources;
    sidecarMesh = await lab.mesh(resources(gatewayPort));
    // The sidecar's log folder as a killed proxy leaves it: a lock naming a process that is gone.
    deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    await mkdir(path.join(dataDir, 'sc'), { recursive: true });
    await writeFile(
      path.join(dataDir, 'sc', 'wal.lock'),
      `${JSON.stringify({ pid: deadPid, startedAtMs: 1_700_000_000_000 })}\n`,
    );
    sidecar = await lab.proxy({
      name: 'sc-us-east',
      locality: 'us-east/us-east-a',
      resources: sidecarMesh,
      endpoints,
      extra: telemetry('sc'),
      log: (e) => sidecarEvents.push(e),
    });
  });
  after(async () => {
    await lab.close();
    await collector.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    euA.seen.length = 0;
  });

  const spansOf = (traceId: string) => collector.spans().filter((s) => s.item.traceId === traceId);

  it('continues a valid trace: one span per hop, parent/child ids line up', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const appSpan = '00f067aa0ba902b7';
    const r = await call(sidecar.addresses.outbound!, {
      host: 'catalog',
      path: '/products?id=1',
      headers: {
        traceparent: `00-${traceId}-${appSpan}-01`,
        tracestate: 'vendor=x',
        baggage: 'user=42',
        'x-request-id': 'req-1',
      },
    });
    assert.equal(r.status, 200);
    const seen = euA.seen.at(-1);
    const tp = parseTraceparent(seen?.headers.traceparent);
    assert.ok(tp, `upstream got a valid traceparent: ${String(seen?.headers.traceparent)}`);
    assert.equal(tp.traceId, traceId);
    assert.equal(tp.flags & 1, 1, 'sampled');
    // Parent-based: the parent sent no th, so the probability is unknown and none is added.
    assert.equal(seen?.headers.tracestate, 'vendor=x');
    assert.equal(seen?.headers.baggage, 'user=42');

    const spans = await eventually(() => {
      const s = spansOf(traceId);
      assert.equal(s.length, 2);
      return s;
    }, 5000);
    const client = spans.find((s) => s.source === SIDECAR);
    const server = spans.find((s) => s.source === GATEWAY);
    assert.ok(client && server);
    assert.equal(client.item.kind, 3);
    assert.equal(server.item.kind, 2);
    assert.equal(client.item.parentSpanId, appSpan);
    assert.equal(server.item.parentSpanId, client.item.spanId);
    assert.equal(tp.parentId, server.item.spanId, 'the upstream sees the gateway span as its parent');
    assert.equal(client.item.traceState, 'vendor=x');
    assert.equal(
      client.attrs['isthmus.failover'],
      'failover:p1',
      'us-east has no catalog: the gateway tier served',
    );
    assert.equal(client.attrs['isthmus.request_id'], 'req-1');
    assert.equal(server.attrs['isthmus.request_id'], 'req-1');
    assert.equal(client.attrs['isthmus.attempts'], 1);
    assert.equal(client.attrs['isthmus.peer_region'], 'eu-west');
    assert.equal(client.attrs['isthmus.served_by'], 'eu-west/eu-west-a');
    assert.equal(server.attrs['isthmus.peer_region'], 'eu-west');
    assert.equal(client.attrs['http.response.status_code'], 200);
    assert.equal(typeof client.attrs['isthmus.seq'], 'number');
    assert.equal(client.resource['isthmus.region'], 'us-east');
    assert.equal(server.resource['isthmus.zone'], 'eu-west-a');
  });

  it('starts a new trace when traceparent is invalid, drops its tracestate, and sets th', async () => {
    const bad = '00-00000000000000000000000000000000-00f067aa0ba902b7-01';
    await call(sidecar.addresses.outbound!, {
      host: 'catalog',
      path: '/x',
      headers: { traceparent: bad, tracestate: 'vendor=x' },
    });
    const tp = parseTraceparent(euA.seen.at(-1)?.headers.traceparent);
    assert.ok(tp);
    assert.notEqual(tp.traceId, '00000000000000000000000000000000');
    assert.equal(tp.flags & 2, 2, 'a new trace has the random flag');
    assert.equal(euA.seen.at(-1)?.headers.tracestate, 'ot=th:0');
    const spans = await eventually(() => {
      const s = spansOf(tp.traceId);
      assert.equal(s.length, 2);
      return s;
    }, 5000);
    const client = spans.find((s) => s.source === SIDECAR);
    assert.equal(client?.item.parentSpanId, undefined, 'a root span');
    const server = spans.find((s) => s.source === GATEWAY);
    assert.equal(server?.item.parentSpanId, client?.item.spanId);
    assert.equal(client?.item.traceState, 'ot=th:0');
    assert.equal(server?.item.traceState, 'ot=th:0', 'the next hop keeps the th it was sent');
  });

  it('writes an access-log record per request and hop, with unique record ids', async () => {
    // Records of earlier tests may still be on their way: count this test's paths only.
    const mine = () => collector.logs().filter((l) => /^\/l\d$/.test(String(l.attrs.path)));
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) await call(sidecar.addresses.outbound!, { host: 'catalog', path: `/l${i}` });
    const logs = await eventually(() => {
      const l = mine();
      assert.equal(l.length, 10, l.map((x) => `${x.source} ${String(x.attrs.path)}`).join('\n'));
      return l;
    }, 5000);
    const t1 = Date.now();
    // Both proxies wrote them compact: they came through /v1/access-logs, never as OTLP.
    const carrying = (p: string) =>
      collector.requests.filter((r) => r.path === p && r.status === 200 && r.body.includes('"/l0"'));
    assert.ok(carrying('/v1/access-logs').length >= 2, 'the sidecar and the gateway sent /l0 compact');
    assert.equal(carrying('/v1/logs').length, 0);
    // In binary batches (format 4, decoded by the stand-in collector to seq, record-id prefix,
    // records): every record of a batch carries the batch's seq, and its id is the prefix, the seq
    // and its place.
    for (const r of carrying('/v1/access-logs')) {
      const b = JSON.parse(r.body) as { format: string; batches: unknown[][] };
      assert.ok(r.binary);
      assert.equal(b.format, 'isthmus.access-log/4');
      assert.ok(b.batches.some((x) => x.slice(2).some((t) => (t as unknown[])[6] === '/l0')));
      for (const x of b.batches) assert.match(String(x[1]), /^(sc-us-east|gw-eu-west)-[0-9a-f]{12}-$/);
    }
    const ids = logs.map((l) => l.attrs['isthmus.record_id']);
    assert.equal(new Set(ids).size, 10);
    const first = logs.find((l) => l.source === SIDECAR && l.attrs.path === '/l0');
    assert.ok(first);
    for (const field of [
      'timestamp',
      'region',
      'zone',
      'service',
      'method',
      'status',
      'durationMs',
      'attempts',
    ])
      assert.notEqual(first.attrs[field], undefined, field);
    assert.equal(first.attrs.status, 200);
    assert.equal(first.attrs.servedBy, 'eu-west/eu-west-a');
    assert.equal(first.item.traceId, first.attrs.traceId);
    // The fields of one request, exactly.
    assert.equal(first.attrs.method, 'GET');
    assert.equal(first.attrs.path, '/l0');
    assert.equal(first.attrs.authority, 'catalog');
    assert.equal(first.attrs.completed, true);
    assert.equal(first.attrs.region, 'us-east');
    assert.equal(first.attrs.zone, 'us-east-a');
    assert.equal(first.attrs.service, 'catalog');
    assert.equal(first.attrs.attempts, 1);
    assert.equal(first.attrs.peerRegion, 'eu-west');
    assert.equal(first.attrs.recordId, first.attrs['isthmus.record_id']);
    assert.equal(first.attrs['isthmus.seq'], first.seq);
    assert.equal(first.item.spanId, first.attrs.spanId);
    assert.match(String(first.attrs.requestId), /./);
    const durationMs = first.attrs.durationMs;
    assert.equal(typeof durationMs, 'number');
    assert.ok(Number.isFinite(durationMs) && (durationMs as number) >= 0, `durationMs ${String(durationMs)}`);
    const timestamp = String(first.attrs.timestamp);
    const startMs = Date.parse(timestamp);
    assert.equal(new Date(startMs).toISOString(), timestamp, 'an ISO 8601 UTC time');
    assert.ok(startMs >= t0 && startMs <= t1, `${timestamp} within the test`);
    // The record's time is its end: start + duration.
    const endMs = Number(BigInt(String(first.item.timeUnixNano)) / 1_000_000n);
    assert.ok(
      Math.abs(endMs - (startMs + (durationMs as number))) <= 1,
      `${String(first.item.timeUnixNano)} vs ${timestamp} + ${String(durationMs)}`,
    );
    assert.ok(endMs <= t1);
    assert.equal(first.item.severityText, 'INFO');
    assert.equal(first.item.severityNumber, 9);
    assert.deepEqual(first.item.body, { stringValue: 'GET /l0 200' });
    const hop = logs.find((l) => l.source === GATEWAY && l.attrs.path === '/l0');
    assert.equal(hop?.attrs.region, 'eu-west');
    assert.equal(hop?.attrs.status, 200);
    assert.equal(hop?.item.traceId, first.item.traceId, 'one trace across the hops');
  });

  it('exports metrics to the collector and as a Prometheus histogram', async () => {
    await call(sidecar.addresses.outbound!, { host: 'catalog', path: '/m' });
    const scope = await eventually(() => {
      const m = collector.of('metrics').filter((x) => x.source === SIDECAR);
      assert.ok(m.length > 0);
      return m.at(-1)?.item as {
        metrics: { name: string; histogram?: { dataPoints: { count: string }[] } }[];
      };
    }, 5000);
    const names = scope.metrics.map((m) => m.name);
    assert.deepEqual(names, ['isthmus.hop.requests', 'isthmus.hop.errors', 'isthmus.hop.duration']);
    const hist = scope.metrics[2]?.histogram?.dataPoints[0];
    assert.ok(Number(hist?.count) > 0);

    const text = (await call(sidecar.addresses.admin!, { path: '/metrics' })).body;
    assert.match(text, /# TYPE isthmus_hop_duration_seconds histogram/);
    assert.match(
      text,
      /isthmus_hop_duration_seconds_bucket\{region="us-east",zone="us-east-a",service="catalog",peer_region="eu-west",le="\+Inf"\} \d+/,
    );
    assert.match(text, /isthmus_hop_requests_total\{[^}]*peer_region="eu-west"\} \d+/);
    assert.match(text, /isthmus_telemetry_backlog_records\{[^}]*\} \d+/);
    // Signals handed to the source, records written to its log (a batch of access logs is one),
    // and the bytes those took (each at least its 32-byte header).
    const value = (name: string) => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'm').exec(text);
      assert.ok(m, `${name} in /metrics`);
      return Number(m[1]);
    };
    const signals = value('isthmus_telemetry_signals');
    const records = value('isthmus_telemetry_emitted_records');
    const bytes = value('isthmus_telemetry_emitted_bytes');
    assert.ok(records > 0, `${records} records`);
    assert.ok(signals >= records, `${signals} signals, ${records} records`);
    assert.ok(bytes >= 32 * records, `${bytes} bytes for ${records} records`);
  });

  it('passes `promtool check metrics` (needs promtool, Debian package prometheus)', async () => {
    const which = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    assert.ok(
      !which.error,
      'promtool is not installed: install the Debian package `prometheus` (as .ci/run does) to check the /metrics exposition',
    );
    const text = (await call(gateway.addresses.admin!, { path: '/metrics' })).body;
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
  });

  it('delivers everything after a collector outage: no loss, counts match', async () => {
    // Records of earlier tests may still be on their way: count this test's paths only.
    const outage = (path: unknown) => /^\/outage\d+$/.test(String(path));
    collector.down = true;
    const n = 20;
    for (let i = 0; i < n; i++) {
      const r = await call(sidecar.addresses.outbound!, { host: 'catalog', path: `/outage${i}` });
      assert.equal(r.status, 200, 'requests are unaffected by the outage');
    }
    await eventually(() => assert.ok((sidecar.telemetry?.source.stats().shipFailures ?? 0) > 0), 5000);
    await new Promise((r) => setTimeout(r, 300));
    collector.down = false;
    await eventually(() => {
      assert.equal(collector.spans().filter((x) => outage(x.attrs['url.path'])).length, 2 * n);
      assert.equal(collector.logs().filter((x) => outage(x.attrs.path)).length, 2 * n);
    }, 20_000);
    for (const p of [sidecar, gateway]) {
      const s = p.telemetry!.source.stats();
      assert.equal(s.dropped.full.records, 0);
      assert.equal(s.appendFailures, 0);
      // The losses in signals, by reason, all zero and all there.
      const text = (await call(p.addresses.admin!, { path: '/metrics' })).body;
      const lost = [...text.matchAll(/^isthmus_telemetry_lost_signals\{[^}]*reason="(\w+)"[^}]*\} (\d+)$/gm)];
      assert.deepEqual(lost.map((m) => `${m[1]} ${m[2]}`).sort(), [
        'corrupt 0',
        'full 0',
        'rejected 0',
        'torn 0',
      ]);
    }
    // A batch's signals go in separate posts, so some of a batch can be stored while the rest
    // waits for the next retry: everything is in only once each log says nothing is left.
    await eventually(() => {
      for (const p of [sidecar, gateway]) {
        const s = p.telemetry!.source.stats();
        assert.equal(s.ackedSeq, s.lastSeq, `${p.bootstrap.name}: everything shipped`);
      }
    }, 20_000);
    // Nothing missing: seqs are dense per source (the access logs of a batch share one).
    for (const source of [SIDECAR, GATEWAY]) {
      const seqs = collector.seqs(source);
      assert.ok(seqs.length > 0);
      assert.deepEqual(
        seqs,
        Array.from({ length: seqs.length }, (_, i) => i + 1),
        `${source}: no gaps`,
      );
    }
    // The heartbeat tells the highest seq emitted: all of it.
    const lastSeq = sidecar.telemetry!.source.stats().lastSeq;
    assert.ok(lastSeq >= 1);
    await eventually(() => {
      const hb = collector.heartbeats.filter((h) => h.source === SIDECAR).at(-1);
      assert.ok(
        Number(hb?.emittedSeq) >= lastSeq,
        `heartbeat ${String(hb?.emittedSeq)}, last seq ${lastSeq}`,
      );
    }, 3000);
  });

  it('says when its log was left by a process that did not close it, whose last access logs are lost uncounted', async () => {
    const unclean = sidecarEvents.filter((e) => e.event === 'telemetry-unclean-start');
    assert.equal(unclean.length, 1);
    assert.equal(unclean[0]?.previousPid, deadPid);
    assert.equal(unclean[0]?.previousStartedAtMs, 1_700_000_000_000);
    assert.match(String(unclean[0]?.reason), /without a count/);
    const metric = async (p: Proxy) =>
      /^isthmus_telemetry_unclean_start(?:\{[^}]*\})? (\d+)$/m.exec(
        (await call(p.addresses.admin!, { path: '/metrics' })).body,
      )?.[1];
    assert.equal(await metric(sidecar), '1');
    assert.equal(await metric(gateway), '0', 'the gateway started on a fresh folder');
  });

  it('says when a new configuration changes telemetry settings that apply only at the next start', async () => {
    const file = path.join(sidecarMesh, 'mesh.yaml');
    const original = meshText(gatewayPortOf)['mesh.yaml'] as string;
    const config = async () =>
      JSON.parse((await call(sidecar.addresses.admin!, { path: '/config' })).body) as {
        telemetryRestartNeeded: boolean;
      };
    const reload = async () =>
      assert.equal((await call(sidecar.addresses.admin!, { method: 'POST', path: '/reload' })).status, 200);
    const restartEvents = () => sidecarEvents.filter((e) => e.event === 'telemetry-restart-needed');
    // What the pipeline opened with: the configured batching of access logs, among others.
    assert.deepEqual(sidecar.telemetry!.source.accessLogBatch, { windowMs: 20, records: 64 });
    // Appends are written after `writeDelay` (100 ms by default), never later than the fsync.
    assert.equal(sidecar.telemetry!.source.wal.writeDelayMs, 5);
    try {
      assert.equal((await config()).telemetryRestartNeeded, false);
      // The access logs' batching applies at the next start, as the buffer does.
      await writeFile(file, original.replace('batchWindow: 20ms', 'batchWindow: 50ms'));
      await reload();
      assert.equal((await config()).telemetryRestartNeeded, true);
      assert.equal(restartEvents().length, 1);
      await writeFile(file, original);
      await reload();
      assert.equal((await config()).telemetryRestartNeeded, false);
      // Sampling applies at once; the buffer does not.
      await writeFile(
        file,
        original.replace('buffer: {fsyncInterval: 5ms}', 'buffer: {fsyncInterval: 50ms}'),
      );
      await reload();
      assert.equal((await config()).telemetryRestartNeeded, true);
      assert.equal(restartEvents().length, 2);
      const e = restartEvents()[1] as { running: { buffer: unknown }; configured: { buffer: unknown } };
      assert.match(JSON.stringify(e.running.buffer), /"fsyncInterval":"5ms"/);
      assert.match(JSON.stringify(e.configured.buffer), /"fsyncInterval":"50ms"/);
      // The same pending change is reported once.
      await reload();
      assert.equal(restartEvents().length, 2);
    } finally {
      await writeFile(file, original);
      await reload();
    }
    assert.equal((await config()).telemetryRestartNeeded, false);
  });
});

describe('proxy without telemetry', () => {
  const lab = new TestLab();
  after(() => lab.close());

  it('has no pipeline and passes trace headers through untouched', async () => {
    const [up] = await lab.upstreams('up');
    const proxy = await lab.proxy({
      locality: 'us-east/us-east-a',
      resources: await lab.mesh({
        'mesh.yaml': `${API}
kind: Region
metadata: {name: us-east}
spec:
  zones: [{name: us-east-a}]
---
${service('catalog').trim()}
---
${service('frontend').trim()}
`,
      }),
      endpoints: [{ service: 'catalog', port: up.port, locality: 'us-east/us-east-a' }],
    });
    assert.equal(proxy.telemetry, undefined);
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await call(proxy.addresses.outbound!, { host: 'catalog', headers: { traceparent: tp } });
    assert.equal(up.seen.at(-1)?.headers.traceparent, tp);
    assert.doesNotMatch((await call(proxy.addresses.admin!, { path: '/metrics' })).body, /isthmus_hop_/);
  });
});

describe('proxy telemetry on the inbound listener', () => {
  const lab = new TestLab();
  let collector: FakeCollector;
  let dataDir: string;
  before(async () => {
    collector = await FakeCollector.start();
    dataDir = await mkdtemp(path.join(tmpdir(), 'isthmus-telemetry-in-'));
  });
  after(async () => {
    await lab.close();
    await collector.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('records a server span whose id the local app sees as its parent', async () => {
    const [app] = await lab.upstreams('app');
    const proxy = await lab.proxy({
      name: 'sc-in',
      service: 'catalog',
      locality: 'us-east/us-east-a',
      inboundApp: app.port,
      resources: await lab.mesh({
        'mesh.yaml': `${API}
kind: Region
metadata: {name: us-east}
spec:
  zones: [{name: us-east-a}]
---
${service('catalog').trim()}
---
${API}
kind: TelemetryPolicy
metadata: {name: all}
spec:
  targetRef: {kind: Mesh}
  sampling: {minRatio: 1}
  buffer: {fsyncInterval: 5ms}
`,
      }),
      endpoints: [],
      extra: `  telemetry: {collector: "${collector.url}", dataDir: ${JSON.stringify(dataDir)}}`,
    });
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const r = await call(proxy.addresses.inbound!, {
      path: '/item',
      headers: { traceparent: `00-${traceId}-b7ad6b7169203331-01`, tracestate: 'ot=th:0' },
    });
    assert.equal(r.status, 200);
    const tp = parseTraceparent(app.seen.at(-1)?.headers.traceparent);
    assert.equal(tp?.traceId, traceId);
    assert.equal(app.seen.at(-1)?.headers.tracestate, 'ot=th:0');
    const span = await eventually(() => {
      const s = collector.spans().find((x) => x.item.traceId === traceId);
      assert.ok(s);
      return s;
    }, 5000);
    assert.equal(span.item.kind, 2);
    assert.equal(span.item.parentSpanId, 'b7ad6b7169203331');
    assert.equal(span.item.spanId, tp?.parentId);
    assert.equal(span.attrs['isthmus.listener'], 'inbound');
    assert.equal(span.attrs['isthmus.service'], 'catalog');
    assert.equal(typeof span.attrs['isthmus.request_id'], 'string');
  });
});
