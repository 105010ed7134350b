import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { failoverFigures, phaseStats, signalRows, type Sample } from '../../src/chaos/drill/runner.js';
import type { StepSpec } from '../../src/chaos/drill/spec.js';
import type { RequestResult } from '../../src/chaos/workload.js';

const T0 = 1_000_000;

const step: StepSpec = {
  name: 'cut-eu-west',
  fault: { type: 'partition', region: 'eu-west', mode: 'blackhole', direction: 'both', scope: 'all' },
  durationMs: 4000,
  afterMs: 0,
};
const window = { step, startMs: 1000, endMs: 5000 };

const sample = (atMs: number, proxy: string, unhealthy: string[], ejected: string[] = []): Sample => ({
  atMs,
  proxy,
  proxyRegion: proxy.split(':')[0] as string,
  unhealthy: new Set(unhealthy),
  ejected: new Set(ejected),
});

const read = (
  atMs: number,
  latencyMs: number,
  served: string | null,
  outcome: RequestResult['outcome'] = 'ok',
): RequestResult => ({
  startMs: T0 + atMs,
  latencyMs,
  region: 'ap-south',
  route: 'browse',
  idempotent: true,
  outcome,
  status: outcome === 'ok' ? 200 : 503,
  ...(served !== null && { servedBy: { catalog: `${served}/${served}-a` } }),
});

describe('drill figures from polls and answers', () => {
  it('detection, failover, failback and flaps of one fault window', () => {
    const samples = [
      sample(900, 'ap-south:frontend', []),
      // Already unhealthy before the fault: cannot be attributed to it, ignored for detection.
      sample(900, 'us-east:catalog', ['eu-west']),
      sample(1150, 'us-east:catalog', ['eu-west']),
      sample(1250, 'ap-south:frontend', []),
      sample(1500, 'ap-south:frontend', ['eu-west']),
      sample(2000, 'ap-south:frontend', ['eu-west'], ['eu-west']),
      // Readmitted, then ejected again while the fault lasts: one flap.
      sample(3000, 'ap-south:frontend', ['eu-west']),
      sample(3500, 'ap-south:frontend', ['eu-west'], ['eu-west']),
      sample(6000, 'ap-south:frontend', []),
      // The faulted region's own proxies never count.
      sample(1100, 'eu-west:catalog', ['us-east'], ['us-east']),
    ];
    const results = [
      read(100, 120, 'eu-west'),
      read(500, 130, 'eu-west'),
      read(1100, 50, null, 'failed'),
      read(1300, 100, 'us-east'),
      read(2000, 110, 'us-east'),
      read(5200, 100, 'us-east'),
      read(7000, 100, 'eu-west'),
      // Slow start splits traffic between the two regions: not a flap.
      read(7100, 100, 'us-east'),
      read(7200, 100, 'eu-west'),
    ];
    const f = failoverFigures([window], samples, results, T0);
    assert.equal(f.timeToDetectMs, 500, 'the first poll after the fault that saw eu-west unhealthy');
    assert.equal(f.timeToFailoverMs, 400, 'first answer served by us-east ended at 1400');
    assert.equal(f.timeToFailbackMs, 2100, 'first answer served by eu-west after the heal ended at 7100');
    assert.equal(f.routeFlaps, 1);
    assert.deepEqual(f.byRegion?.['eu-west'], { detectMs: 500, failoverMs: 400, failbackMs: 2100, flaps: 1 });
  });

  it('a failure late in the window bounds failover; nothing detected is null, not zero', () => {
    const results = [read(100, 100, 'eu-west'), read(1200, 100, 'us-east'), read(3000, 900, null, 'unknown')];
    const f = failoverFigures([window], [sample(900, 'ap-south:frontend', [])], results, T0);
    assert.equal(f.timeToFailoverMs, 2900, 'the last failure ended at 3900');
    assert.equal(f.timeToDetectMs, null);
    assert.equal(f.timeToFailbackMs, null);
  });

  it('phase stats count outcomes, failed idempotent requests and where answers were served', () => {
    const results = [
      read(1100, 50, null, 'failed'),
      read(1300, 100, 'us-east'),
      read(2000, 300, 'us-east'),
      read(2100, 200, 'eu-west'),
      read(6000, 100, 'eu-west'),
    ];
    const p = phaseStats('fault', results, T0, 1000, 5000);
    assert.equal(p.requests, 4);
    assert.equal(p.ok, 3);
    assert.equal(p.failed, 1);
    assert.equal(p.failedIdempotent, 1);
    assert.deepEqual(p.servedBy, { catalog: { 'us-east': 2, 'eu-west': 1 } });
    assert.deepEqual(p.byRoute, { browse: { requests: 4, ok: 3, failed: 1, unknown: 0 } });
    assert.equal(p.latencyMs.max, 300, 'latency of successful requests');
  });

  it('counts what a source lost as its gaps, or as the signals it counted itself when more', () => {
    const source = (name: string, gaps: number, lostAtSource?: number) => ({
      source: name,
      region: 'eu-west',
      emitted: 100,
      received: 100 - gaps,
      duplicates: 0,
      gaps,
      lagMs: 40,
      ...(lostAtSource !== undefined && { lostAtSource: { total: lostAtSource } }),
    });
    const rows = signalRows(
      // A dropped batch of 128 access-log records is one gap; an old collector says nothing more.
      { sources: [source('a', 1, 128), source('b', 2, 0), source('c', 3)] },
      new Map([['a', 900]]),
    );
    assert.deepEqual(
      rows.map((r) => [r.source, r.lost, r.maxDelayMs]),
      [
        ['a', 128, 900],
        ['b', 2, 40],
        ['c', 3, 40],
      ],
    );
  });
});
