import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Collector } from '../../src/controlplane/collector/collector.js';
import { waitUntil } from '../support/control-plane.js';
import { CuttableLink } from '../support/cuttable-link.js';
import {
  get,
  post,
  spanIdOf,
  TestSource,
  timeNsOf,
  traceIdOf,
  type Continuity,
  type Summary,
} from '../support/telemetry-source.js';

const ALLOWED = ['timestamp', 'recordId', 'region', 'zone', 'service', 'route', 'status'];

/**
 * A region collector forwards to the global one through a link that is cut for a while: every
 * span, metric point and log record arrives exactly once with its original timestamp, continuity
 * at global shows no gap for the source, and logs arrive reduced to the allowed fields.
 */
describe('collector forwarding across a partition', () => {
  let dir = '';
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('delivers everything exactly once after the link heals', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-collector-partition-'));
    const global = await Collector.start({
      region: 'global',
      dataDir: path.join(dir, 'global'),
      listen: '127.0.0.1:0',
      heartbeatIntervalMs: 200,
      logFieldsAllowedOut: ALLOWED,
    });
    cleanup.push(() => global.close());
    const link = await CuttableLink.start(global.address);
    cleanup.push(() => link.close());
    const region = await Collector.start({
      region: 'eu-west',
      dataDir: path.join(dir, 'eu-west'),
      listen: '127.0.0.1:0',
      upstream: link.url,
      heartbeatIntervalMs: 200,
      logFieldsAllowedOut: ALLOWED,
    });
    cleanup.push(() => region.close());
    const regionUrl = `http://${region.address}`;
    const globalUrl = `http://${global.address}`;

    const src = new TestSource('proxy/frontend-1@eu-west', 'eu-west');
    // Requests of the whole run: 60 × 50 spans, 20 × 50 log records, 20 × 25 metric batches.
    const requests: [string, () => { body: Record<string, unknown> }][] = [];
    for (let i = 0; i < 100; i++) {
      if (i % 5 === 1) requests.push(['/v1/logs', () => src.logs(50)]);
      else if (i % 5 === 3) requests.push(['/v1/metrics', () => src.metrics(25)]);
      else requests.push(['/v1/traces', () => src.spans(50)]);
    }
    const total = 60 * 50 + 20 * 50 + 20 * 25;

    let sending = true;
    const heartbeats = (async () => {
      while (sending) {
        assert.equal((await post(regionUrl, '/v1/heartbeat', src.heartbeat())).status, 200);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const sendRange = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const [p, make] = requests[i] as [string, () => { body: Record<string, unknown> }];
        const r = await post(regionUrl, p, make().body);
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
    };

    await sendRange(0, 25);
    await waitUntil(
      async () => (await get<Summary>(globalUrl, '/v1/summary')).body.stored.spans > 0,
      'forwarding before the cut',
    );
    link.cut();
    // The source restarts during the cut: the losses of both its processes must reach global,
    // though their heartbeats wait in the region's log and ship in one batch.
    for (const [instance, full] of [
      ['p1', 7],
      ['p2', 3],
    ] as const)
      assert.equal(
        (await post(regionUrl, '/v1/heartbeat', { ...src.heartbeat(), instance, lostSignals: { full } }))
          .status,
        200,
      );
    const atCut = (await get<Summary>(globalUrl, '/v1/summary')).body.stored;
    await sendRange(25, 75);
    await new Promise((r) => setTimeout(r, 700));
    const regionSummary = (await get<Summary>(regionUrl, '/v1/summary')).body;
    assert.ok((regionSummary.forwarding?.backlogRecords ?? 0) > 10, 'the region buffers while cut');
    const duringCut = (await get<Summary>(globalUrl, '/v1/summary')).body.stored;
    assert.deepEqual(duringCut, atCut, 'nothing crosses a cut link');
    const cutContinuity = (await get<Continuity>(globalUrl, '/v1/continuity')).body.sources[0];
    assert.ok(
      (cutContinuity?.gaps ?? 0) > 0 || (cutContinuity?.emitted ?? 0) < src.seq,
      'global sees it behind',
    );
    link.heal();
    await sendRange(75, 100);
    sending = false;
    await heartbeats;
    assert.equal((await post(regionUrl, '/v1/heartbeat', src.heartbeat())).status, 200);
    assert.equal(src.seq, total);

    const c = await waitUntil(
      async () => {
        const s = (await get<Continuity>(globalUrl, '/v1/continuity')).body.sources[0];
        return s && s.emitted === total && s.received === total ? s : undefined;
      },
      'global to receive every seq',
      20_000,
      50,
    );
    assert.equal(c.gaps, 0);
    assert.equal(c.source, 'proxy/frontend-1@eu-west', 'continuity at global is per original source');
    // Both processes' losses reach global: a heartbeat of each, forwarded apart (they may land a
    // moment after the source's latest one, so this waits for them).
    const lost = await waitUntil(
      async () => {
        const s = (await get<Continuity>(globalUrl, '/v1/continuity')).body.sources[0];
        return s?.lostAtSource.total === 10 ? s.lostAtSource : undefined;
      },
      "both processes' losses at global",
      10_000,
      50,
    ).catch(async (err: unknown) => {
      const s = (await get<Continuity>(globalUrl, '/v1/continuity')).body.sources[0];
      throw new Error(`${(err as Error).message}; lostAtSource ${JSON.stringify(s?.lostAtSource)}`);
    });
    assert.deepEqual(lost, { full: 10, corrupt: 0, torn: 0, rejected: 0, total: 10 });
    const stored = (await get<Summary>(globalUrl, '/v1/summary')).body.stored;
    assert.deepEqual(stored, { spans: 3000, points: 1000, logs: 1000 }, 'everything exactly once');
    assert.deepEqual((await get<Summary>(regionUrl, '/v1/summary')).body.stored, stored);
    await waitUntil(
      async () => (await get<Summary>(regionUrl, '/v1/summary')).body.forwarding?.backlogRecords === 0,
      'the region backlog to drain',
    );

    // Original timestamps, from a span sent during the cut.
    const trace = await get<{ regions: string[]; spans: { spanId: string; endTimeUnixNano: string }[] }>(
      globalUrl,
      `/v1/traces/${traceIdOf(2000)}`,
    );
    assert.equal(trace.status, 200);
    assert.deepEqual(trace.body.regions, ['eu-west']);
    assert.equal(trace.body.spans[0]?.spanId, spanIdOf(2000));
    assert.equal(trace.body.spans[0]?.endTimeUnixNano, (BigInt(timeNsOf(2000)) + 5_000_000n).toString());

    // Logs at global carry only allowed fields.
    const logs = await get<{ records: { record: { body?: unknown; attributes: { key: string }[] } }[] }>(
      globalUrl,
      '/v1/logs?limit=10000',
    );
    assert.equal(logs.body.records.length, 1000);
    for (const l of logs.body.records) {
      assert.equal(l.record.body, undefined);
      assert.deepEqual(l.record.attributes.map((a) => a.key).sort(), [
        'isthmus.record_id',
        'isthmus.seq',
        'route',
        'status',
      ]);
    }
    const metrics = await (await fetch(`${regionUrl}/metrics`)).text();
    assert.match(metrics, /isthmus_collector_ship_failures_total\{region="eu-west"\} [1-9]/);
    assert.match(metrics, /isthmus_collector_backlog_records\{region="eu-west"\} 0/);
  });
});
