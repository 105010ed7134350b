import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Collector, CollectorOptions } from '../../src/controlplane/collector/collector.js';
import { ManualClock } from '../../src/core/clock.js';
import { describeRun, isthmus } from '../support/cli.js';
import { collectorHarness } from '../support/collector-harness.js';
import { startRole } from '../support/processes.js';
import { get, post, TestSource, type Continuity, type Summary } from '../support/telemetry-source.js';

/**
 * Retention (docs/collector.md#retention): spans, metric points and log records are deleted by
 * their original timestamp, in bounded chunks, and the continuity state is left alone.
 */

type Obj = Record<string, unknown>;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const T0 = 1_800_000_000_000;
const ns = (ms: number) => (BigInt(ms) * 1_000_000n).toString();
const int = (key: string, value: number) => ({ key, value: { intValue: String(value) } });
const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

/** Builds OTLP JSON with explicit original times; every item gets the next `isthmus.seq`. */
class TimedSource {
  seq = 0;
  readonly #src: TestSource;
  constructor(readonly source: string) {
    this.#src = new TestSource(source, 'eu-west');
  }

  /** One span per [startMs, endMs]; trace id = seq. */
  spans(times: [number, number][]): Obj {
    const spans = times.map(([startMs, endMs]) => {
      const seq = ++this.seq;
      return {
        traceId: hex(seq, 32),
        spanId: hex(seq, 16),
        name: 'GET /items',
        startTimeUnixNano: ns(startMs),
        endTimeUnixNano: ns(endMs),
        attributes: [int('isthmus.seq', seq)],
      };
    });
    return { resourceSpans: [{ resource: this.#src.resource, scopeSpans: [{ spans }] }] };
  }

  /** One gauge point per time (one seq each), all in one series. */
  points(times: number[]): Obj {
    const scopeMetrics = times.map((ms) => {
      const seq = ++this.seq;
      return {
        scope: { name: 'isthmus', attributes: [int('isthmus.seq', seq)] },
        metrics: [
          {
            name: 'isthmus.requests.inflight',
            gauge: { dataPoints: [{ timeUnixNano: ns(ms), asInt: String(seq), attributes: [] }] },
          },
        ],
      };
    });
    return { resourceMetrics: [{ resource: this.#src.resource, scopeMetrics }] };
  }

  /** One log record per time; its body says its seq. */
  logs(times: number[]): Obj {
    const logRecords = times.map((ms) => {
      const seq = ++this.seq;
      return {
        timeUnixNano: ns(ms),
        body: { stringValue: `record seq=${seq};` },
        attributes: [int('isthmus.seq', seq), str('isthmus.record_id', `${this.source}#${seq}`)],
      };
    });
    return { resourceLogs: [{ resource: this.#src.resource, scopeLogs: [{ logRecords }] }] };
  }
}

const ok = async (url: string, route: string, body: Obj) => {
  const r = await post(url, route, body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
};

type RetentionSummary = Summary & { retentionMs: number; lastSweepMs: number | null };

/** The continuity figures a prune must not touch (lagMs and staleness move with the clock). */
const accounting = (c: Continuity) =>
  c.sources.map((s) => {
    const { source, emitted, received, duplicates, gaps } = s;
    const { records, missing } = s as unknown as { records: number; missing: unknown };
    return { source, emitted, received, duplicates, gaps, records, missing };
  });

const pruned = (metrics: string, signal: string): number | undefined => {
  const m = new RegExp(`^isthmus_collector_pruned_total\\{[^}]*signal="${signal}"[^}]*\\} (\\d+)$`, 'm').exec(
    metrics,
  );
  return m ? Number(m[1]) : undefined;
};

describe('collector retention', () => {
  const harness = collectorHarness('isthmus-collector-retention-', {
    logFieldsAllowedOut: ['body'],
    retentionMs: HOUR,
  });
  const start = (name: string, clock: ManualClock, extra: Partial<CollectorOptions> = {}) =>
    harness.start(name, { clock, now: () => clock.now(), ...extra });
  const stop = (c: Collector) => harness.stop(c);

  it('deletes what is older than the window by original time, keeps the rest and the continuity', async () => {
    const clock = new ManualClock(T0);
    const { c, url } = await start('by-time', clock);
    const src = new TimedSource('proxy/frontend-1@eu-west');
    // All arrive now; what differs is what the items say. Seqs 1-3 spans, 4-6 points, 7-9 logs.
    await ok(
      url,
      '/v1/traces',
      src.spans([
        [T0 - 55 * MINUTE, T0 - 50 * MINUTE], // ends before the cutoff below: pruned
        [T0 - 90 * MINUTE, T0 - 30 * MINUTE], // started long ago, ended inside: kept (by end time)
        [T0 - 2 * MINUTE, T0 - MINUTE],
      ]),
    );
    await ok(url, '/v1/metrics', src.points([T0 - 45 * MINUTE, T0 - 41 * MINUTE, T0 - 10 * MINUTE]));
    await ok(url, '/v1/logs', src.logs([T0 - 59 * MINUTE, T0 - 42 * MINUTE, T0 - 5 * MINUTE]));
    await ok(url, '/v1/heartbeat', {
      source: src.source,
      region: 'eu-west',
      emittedSeq: 10, // seq 10 never arrives: one gap, which a prune must not hide or heal
      sentAtMs: T0,
    });
    const before = (await get<RetentionSummary>(url, '/v1/summary')).body;
    assert.deepEqual(before.stored, { spans: 3, points: 3, logs: 3 });
    const continuityBefore = accounting((await get<Continuity>(url, '/v1/continuity')).body);
    assert.equal(continuityBefore[0]?.received, 9);
    assert.equal(continuityBefore[0]?.gaps, 1);

    // 20 minutes later the cutoff is T0 − 40 min. By arrival time nothing would be old enough.
    clock.advance(20 * MINUTE);
    const result = await c.pruneNow();
    assert.deepEqual({ ...result, chunks: undefined }, { spans: 1, points: 2, logs: 2, chunks: undefined });

    const after = (await get<RetentionSummary>(url, '/v1/summary')).body;
    assert.deepEqual(after.stored, { spans: 2, points: 1, logs: 1 });
    assert.equal(after.retentionMs, HOUR);
    assert.equal(after.lastSweepMs, clock.now());
    assert.equal((await get(url, `/v1/traces/${hex(1, 32)}`)).status, 404);
    assert.equal((await get(url, `/v1/traces/${hex(2, 32)}`)).status, 200);
    assert.equal((await get(url, `/v1/traces/${hex(3, 32)}`)).status, 200);
    const metrics = await get<{ series: { points: { timeUnixNano: string }[] }[] }>(url, '/v1/metrics');
    assert.deepEqual(
      metrics.body.series.flatMap((s) => s.points.map((p) => p.timeUnixNano)),
      [ns(T0 - 10 * MINUTE)],
    );
    const logs = await get<{ records: { record: { timeUnixNano: string } }[] }>(url, '/v1/logs');
    assert.deepEqual(
      logs.body.records.map((r) => r.record.timeUnixNano),
      [ns(T0 - 5 * MINUTE)],
    );

    // Continuity is counters, not data: the prune changed none of it.
    assert.deepEqual(accounting((await get<Continuity>(url, '/v1/continuity')).body), continuityBefore);
    const prom = await (await fetch(`${url}/metrics`)).text();
    assert.equal(pruned(prom, 'spans'), 1, prom);
    assert.equal(pruned(prom, 'points'), 2, prom);
    assert.equal(pruned(prom, 'logs'), 2, prom);

    // A second sweep at the same time finds nothing more; the counters stay.
    assert.deepEqual({ ...(await c.pruneNow()), chunks: 0 }, { spans: 0, points: 0, logs: 0, chunks: 0 });
    assert.equal(pruned(await (await fetch(`${url}/metrics`)).text(), 'logs'), 2);
  });

  it('counts a record already older than the window on arrival as received, without storing it', async () => {
    const clock = new ManualClock(T0);
    const { url } = await start('late', clock);
    const src = new TimedSource('proxy/replayer@eu-west');
    // A replay after a long partition: seqs 1-2 are two hours old, seq 3 is recent.
    await ok(url, '/v1/logs', src.logs([T0 - 2 * HOUR, T0 - 2 * HOUR + 1, T0 - MINUTE]));
    await ok(url, '/v1/traces', src.spans([[T0 - 3 * HOUR, T0 - 2 * HOUR]]));
    const summary = (await get<RetentionSummary>(url, '/v1/summary')).body;
    assert.deepEqual(summary.stored, { spans: 0, points: 0, logs: 1 });
    const [s] = accounting((await get<Continuity>(url, '/v1/continuity')).body);
    assert.deepEqual(
      { emitted: s?.emitted, received: s?.received, gaps: s?.gaps, records: s?.records },
      { emitted: 4, received: 4, gaps: 0, records: 1 },
    );
    const prom = await (await fetch(`${url}/metrics`)).text();
    assert.match(prom, /^isthmus_collector_expired_total\{[^}]*signal="logs"[^}]*\} 2$/m);
    assert.match(prom, /^isthmus_collector_expired_total\{[^}]*signal="traces"[^}]*\} 1$/m);
  });

  it('prunes in bounded chunks, yielding between them, until everything old is gone', async () => {
    const clock = new ManualClock(T0);
    const { c, url } = await start('chunks', clock, { pruneChunkRows: 100 });
    const src = new TimedSource('proxy/bulk@eu-west');
    const old = (n: number) => Array.from({ length: n }, (_, i) => T0 - 50 * MINUTE + i);
    await ok(url, '/v1/traces', src.spans(old(250).map((t): [number, number] => [t - 1, t])));
    await ok(url, '/v1/metrics', src.points(old(30)));
    for (let i = 0; i < 3; i++) await ok(url, '/v1/logs', src.logs(old(350)));
    await ok(url, '/v1/logs', src.logs([T0 - MINUTE]));
    clock.advance(20 * MINUTE);

    const sweep = c.pruneNow();
    // The first statement has run, synchronously; the rest waits for later turns of the loop.
    assert.deepEqual(c.store.counts(), { spans: 150, points: 30, logs: 1051 });
    const result = await sweep;
    // spans 100+100+50, points 30, logs 10 × 100 + 50: one statement each.
    assert.deepEqual(result, { spans: 250, points: 30, logs: 1050, chunks: 3 + 1 + 11 });
    assert.deepEqual(c.store.counts(), { spans: 0, points: 0, logs: 1 });
    assert.deepEqual(
      accounting((await get<Continuity>(url, '/v1/continuity')).body).map((s) => [s.received, s.gaps]),
      [[250 + 30 + 1051, 0]],
    );
  });

  it('deletes more than one default chunk (5,000 rows) in one sweep', async () => {
    const clock = new ManualClock(T0);
    const { c, url } = await start('default-chunks', clock);
    const src = new TimedSource('proxy/bulk@eu-west');
    for (let i = 0; i < 3; i++)
      await ok(url, '/v1/logs', src.logs(Array.from({ length: 2_000 }, (_, j) => T0 - 50 * MINUTE + j)));
    clock.advance(20 * MINUTE);
    assert.deepEqual(await c.pruneNow(), { spans: 0, points: 0, logs: 6_000, chunks: 1 + 1 + 2 });
    assert.deepEqual(c.store.counts(), { spans: 0, points: 0, logs: 0 });
  });

  it('sweeps at start: a restart later prunes what aged out meanwhile', async () => {
    const clock = new ManualClock(T0);
    const first = await start('restart', clock);
    const src = new TimedSource('proxy/frontend-1@eu-west');
    await ok(first.url, '/v1/logs', src.logs([T0 - 30 * MINUTE, T0 - MINUTE]));
    await ok(first.url, '/v1/metrics', src.points([T0 - 30 * MINUTE]));
    await stop(first.c);
    clock.advance(40 * MINUTE);
    const { url } = await start('restart', clock);
    let summary = (await get<RetentionSummary>(url, '/v1/summary')).body;
    for (let i = 0; i < 100 && summary.lastSweepMs === null; i++) {
      await new Promise((r) => setTimeout(r, 20));
      summary = (await get<RetentionSummary>(url, '/v1/summary')).body;
    }
    assert.equal(summary.lastSweepMs, clock.now());
    assert.deepEqual(summary.stored, { spans: 0, points: 0, logs: 1 });
    const [s] = accounting((await get<Continuity>(url, '/v1/continuity')).body);
    assert.equal(s?.received, 3, 'continuity survives the restart and the prune');
  });

  it('keeps everything with retention 0', async () => {
    const clock = new ManualClock(T0);
    const { c, url } = await start('forever', clock, { retentionMs: 0 });
    const src = new TimedSource('proxy/frontend-1@eu-west');
    await ok(url, '/v1/logs', src.logs([0, T0 - 400 * 24 * HOUR, T0 - MINUTE]));
    await ok(url, '/v1/traces', src.spans([[T0 - 400 * 24 * HOUR, T0 - 400 * 24 * HOUR + 5]]));
    await ok(url, '/v1/metrics', src.points([T0 - 30 * 24 * HOUR]));
    clock.advance(365 * 24 * HOUR);
    assert.deepEqual(await c.pruneNow(), { spans: 0, points: 0, logs: 0, chunks: 0 });
    const summary = (await get<RetentionSummary>(url, '/v1/summary')).body;
    assert.deepEqual(summary.stored, { spans: 1, points: 1, logs: 3 });
    assert.equal(summary.retentionMs, 0);
    assert.equal(summary.lastSweepMs, null);
    assert.doesNotMatch(
      await (await fetch(`${url}/metrics`)).text(),
      /isthmus_collector_(pruned|expired)_total/,
    );
  });
});

describe('isthmus collector --retention', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-collector-retention-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [value, message] of [
    ['7d', /"7d" is not a retention.*"168h" for 7 days/],
    ['soon', /"soon" is not a retention/],
    ['-1h', /"-1h" is not a retention/],
    ['30s', /"30s" is too short a retention: at least 1m/],
  ] as const) {
    it(`refuses --retention ${value} with a usage error naming the flag`, async () => {
      const args = [
        'collector',
        '--region',
        'eu-west',
        '--data-dir',
        path.join(dir, 'bad'),
        `--retention=${value}`,
      ];
      const r = await isthmus(args);
      assert.equal(r.code, 2, describeRun(args, r));
      assert.match(r.stderr, /--retention/, describeRun(args, r));
      assert.match(r.stderr, message, describeRun(args, r));
    });
  }

  it('takes 12h, forever, and defaults to 7 days', async () => {
    for (const [extra, ms] of [
      [['--retention', '12h'], 12 * HOUR],
      [['--retention', 'forever'], 0],
      [[], 7 * 24 * HOUR],
    ] as const) {
      const p = await startRole([
        'collector',
        '--region',
        'eu-west',
        '--data-dir',
        path.join(dir, `ok-${ms}`),
        '--listen',
        '127.0.0.1:0',
        ...extra,
      ]);
      try {
        assert.equal(p.ready.retentionMs, ms);
        const summary = await get<RetentionSummary>(`http://${String(p.ready.address)}`, '/v1/summary');
        assert.equal(summary.body.retentionMs, ms);
      } finally {
        assert.equal(await p.stop(), 0, p.stderr());
      }
    }
  });
});
