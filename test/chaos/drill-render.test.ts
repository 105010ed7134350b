import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  evaluateExpectation,
  verdictExitCode,
  type DrillReport,
  type PhaseStats,
} from '../../src/chaos/drill/report.js';
import {
  escapeHtml,
  faultWindows,
  renderHtml,
  renderProgressLine,
  renderText,
} from '../../src/chaos/drill/render.js';

const phase = (p: Partial<PhaseStats> & Pick<PhaseStats, 'phase' | 'startMs' | 'endMs'>): PhaseStats => ({
  requests: 0,
  ok: 0,
  failed: 0,
  unknown: 0,
  failedIdempotent: 0,
  latencyMs: { p50: null, p99: null, max: null },
  byRoute: {},
  ...p,
});

function passingReport(): DrillReport {
  return {
    drill: {
      name: 'region-partition',
      description: 'Cut eu-west off.',
      file: 'drills/region-partition.yaml',
      seed: 42,
    },
    startedAt: '2025-01-01T00:00:00.000Z',
    durationMs: 40_000,
    verdict: 'pass',
    topology: { regions: ['us-east', 'eu-west', 'ap-south'], source: 'lab' },
    timeline: [
      { atMs: 5000, kind: 'step-start', step: 'cut-eu-west', detail: 'partition eu-west (blackhole)' },
      { atMs: 5010, kind: 'fault-applied', step: 'cut-eu-west', detail: 'eu-west isolated' },
      { atMs: 25_000, kind: 'fault-removed', step: 'cut-eu-west', detail: 'links restored' },
      { atMs: 25_000, kind: 'step-end', step: 'cut-eu-west', detail: '' },
      { atMs: 40_000, kind: 'rollback', detail: 'heal all' },
      { atMs: 40_200, kind: 'heal-verified', detail: 'every link answers' },
    ],
    phases: [
      phase({
        phase: 'baseline',
        startMs: 0,
        endMs: 5000,
        requests: 200,
        ok: 200,
        latencyMs: { p50: 12, p99: 40, max: 55 },
      }),
      phase({
        phase: 'fault',
        startMs: 5000,
        endMs: 25_000,
        requests: 800,
        ok: 798,
        failed: 1,
        unknown: 1,
        failedIdempotent: 0,
        latencyMs: { p50: 20, p99: 900, max: 2900 },
        byRoute: { browse: { requests: 640, ok: 639, failed: 1, unknown: 0 } },
      }),
      phase({
        phase: 'recovery',
        startMs: 25_000,
        endMs: 40_000,
        requests: 600,
        ok: 600,
        latencyMs: { p50: 11, p99: 35, max: 60 },
      }),
    ],
    failover: {
      timeToDetectMs: 850,
      timeToFailoverMs: 1200,
      timeToFailbackMs: 4100,
      routeFlaps: 0,
      byRegion: { 'us-east': { detectMs: 850, failoverMs: 1200, failbackMs: 4100, flaps: 0 } },
    },
    writes: { attempted: 320, duplicateSideEffects: 0 },
    config: { stalenessMaxMs: 1500 },
    signals: {
      rows: [
        {
          source: 'proxy/us-east-1',
          region: 'us-east',
          emitted: 1000,
          received: 1000,
          lost: 0,
          duplicated: 0,
          maxDelayMs: 300,
        },
        {
          source: 'proxy/eu-west-1',
          region: 'eu-west',
          emitted: 500,
          received: 500,
          lost: 0,
          duplicated: 2,
          maxDelayMs: 21_000,
        },
      ],
      lost: 0,
      duplicated: 2,
      maxDelayMs: 21_000,
      complete: true,
    },
    steadyState: [
      { metric: 'success_rate', phase: 'baseline', min: 0.99, actual: 1, unit: 'ratio', pass: true },
    ],
    expectations: [
      { metric: 'failure_rate', phase: 'fault', max: 0.005, actual: 0.0025, unit: 'ratio', pass: true },
      { metric: 'time_to_detect', max: 2000, actual: 850, unit: 'ms', pass: true },
    ],
    series: Array.from({ length: 40 }, (_, i) => ({
      tMs: i * 1000,
      ok: i === 6 ? 38 : 40,
      failed: i === 6 ? 1 : 0,
      unknown: i === 6 ? 1 : 0,
      p99Ms: i >= 5 && i < 25 ? 900 : 40,
    })),
  };
}

function failingReport(): DrillReport {
  const r = passingReport();
  r.verdict = 'fail';
  r.reason = '1 of 2 expectations failed: time_to_failback';
  r.expectations = [
    { metric: 'failure_rate', phase: 'fault', max: 0.005, actual: 0.0025, unit: 'ratio', pass: true },
    { metric: 'time_to_failback', max: 10_000, actual: 12_500, unit: 'ms', pass: false },
    {
      metric: 'signals_lost',
      max: 0,
      actual: null,
      unit: 'count',
      pass: false,
      note: 'not measured: no signals',
    },
  ];
  return r;
}

describe('drill report: text', () => {
  it('a passing report shows the verdict, phases, failover, signals with a total row', () => {
    const text = renderText(passingReport(), { color: false });
    assert.match(text, /^Drill region-partition {2}PASS$/m);
    assert.ok(!text.includes('\u001b['), 'no ANSI codes without colour');
    assert.match(text, /^ +t\+5\.0s {2}step-start +cut-eu-west: partition eu-west \(blackhole\)$/m);
    // baseline row: 200 requests, all ok; fault row with p99 900ms and max 2.9s.
    assert.match(text, /^ {2}baseline +t\+0\.0s–5\.0s +200 +200 +0 +0 +0\.0% +12ms +40ms +55ms$/m);
    assert.match(text, /^ {2}fault +t\+5\.0s–25\.0s +800 +798 +1 +1 +0\.3% +20ms +900ms +2\.9s$/m);
    assert.match(text, /time to detect +850ms/);
    assert.match(text, /time to fail back +4\.1s/);
    assert.match(text, /attempted 320, duplicate side effects 0/);
    assert.match(text, /max staleness 1\.5s/);
    assert.match(text, /^ {2}total +1500 +1500 +0 +2 +21s$/m);
    assert.match(text, /✓ failure_rate \[fault\] +0\.0025 \(0\.25%\) +≤ 0\.005/);
    assert.match(text, /✓ time_to_detect +850ms +≤ 2s/);
    assert.doesNotMatch(text, /Reason/);
    assert.match(text, /2\/2 expectations met/);
  });

  it('a failing report names the failing expectation with actual vs limit, and the reason', () => {
    const text = renderText(failingReport(), { color: false });
    assert.match(text, /^Drill region-partition {2}FAIL$/m);
    assert.match(text, /Reason: 1 of 2 expectations failed: time_to_failback/);
    assert.match(text, /✗ time_to_failback +12\.5s > max 10s/);
    assert.match(text, /✗ signals_lost +not measured: no signals +limit ≤ 0/);
    assert.match(text, /1\/3 expectations met/);
  });

  it('colours with ANSI when asked, or with the styler given', () => {
    assert.ok(renderText(failingReport(), { color: true }).includes('\u001b[31m'));
    const tagged = renderText(failingReport(), {
      color: false,
      styler: {
        red: (s) => `<r>${s}</r>`,
        yellow: (s) => s,
        green: (s) => s,
        cyan: (s) => s,
        dim: (s) => s,
        bold: (s) => s,
      },
    });
    assert.match(tagged, /<r>FAIL<\/r>/);
  });

  it('flags incomplete signals', () => {
    const r = passingReport();
    r.signals.complete = false;
    assert.match(renderText(r, { color: false }), /incomplete: a collector could not be queried/);
  });

  it('a progress line says where the drill is', () => {
    assert.equal(
      renderProgressLine({
        elapsedMs: 12_000,
        phase: 'fault',
        ok: 480,
        failed: 0,
        unknown: 0,
        p99Ms: 42,
        steps: ['cut-eu-west'],
      }),
      't+12.0s  phase fault  ok 480 failed 0 unknown 0  p99 42ms  step cut-eu-west',
    );
  });
});

describe('drill report: HTML', () => {
  it('is one self-contained page with the verdict, a chart and the signals total', () => {
    const html = renderHtml(failingReport());
    assert.match(html, /^<!doctype html>/);
    assert.match(html, /<span class="verdict v-fail">FAIL<\/span>/);
    assert.match(html, /<svg [^>]*viewBox=/);
    assert.match(html, /<rect class="ok"/);
    assert.match(html, /<rect class="failed"/);
    assert.match(html, /<rect class="fault" x="[\d.]+"/, 'the fault window is shaded');
    assert.match(html, /<tr class="total"><td>total<\/td><td><\/td><td class="n">1500<\/td>/);
    assert.match(html, /time_to_failback.*12\.5s &#62; max 10s/);
    assert.match(html, /Reason:<\/strong> 1 of 2 expectations failed/);
    // Nothing loaded from elsewhere, nothing run.
    assert.doesNotMatch(html, /<script|<link|src=|href=|url\(/i);
  });

  it('escapes every string that comes from the report', () => {
    const r = failingReport();
    r.drill.name = '<script>alert(1)</script>';
    r.drill.description = 'a & b "quoted"';
    r.timeline.push({ atMs: 1, kind: 'note', step: '<b>', detail: "it's <img src=x onerror=alert(1)>" });
    r.signals.rows.push({
      source: '<svg onload=x>',
      region: 'r',
      emitted: 0,
      received: 0,
      lost: 0,
      duplicated: 0,
      maxDelayMs: null,
    });
    const html = renderHtml(r);
    assert.ok(!html.includes('<script>'), 'raw <script> in the page');
    assert.ok(!html.includes('<img'), 'raw <img> in the page');
    assert.ok(!html.includes('<svg onload'), 'raw source name in the page');
    assert.ok(html.includes('&#60;script&#62;alert(1)&#60;/script&#62;'));
    assert.ok(html.includes('a &#38; b &#34;quoted&#34;'));
    assert.equal(escapeHtml(`<&>"'`), '&#60;&#38;&#62;&#34;&#39;');
  });

  it('without a series there is no chart, and the page still renders', () => {
    const r = passingReport();
    delete r.series;
    const html = renderHtml(r);
    assert.doesNotMatch(html, /<svg/);
    assert.match(html, /v-pass/);
  });

  it('fault windows come from applied/removed events, closed by a heal or the end', () => {
    assert.deepEqual(faultWindows(passingReport()), [{ step: 'cut-eu-west', startMs: 5010, endMs: 25_000 }]);
    assert.deepEqual(
      faultWindows({
        durationMs: 30_000,
        timeline: [
          { atMs: 1000, kind: 'fault-applied', step: 'a', detail: '' },
          { atMs: 2000, kind: 'fault-applied', step: 'b', detail: '' },
          { atMs: 8000, kind: 'heal-verified', detail: '' },
          { atMs: 9000, kind: 'fault-applied', step: 'c', detail: '' },
        ],
      }),
      [
        { step: 'a', startMs: 1000, endMs: 8000 },
        { step: 'b', startMs: 2000, endMs: 8000 },
        { step: 'c', startMs: 9000, endMs: 30_000 },
      ],
    );
  });
});

describe('drill report: evaluateExpectation', () => {
  const metrics = passingReport();

  it('takes request metrics from the named phase', () => {
    assert.deepEqual(evaluateExpectation({ metric: 'failure_rate', phase: 'fault', max: 0.005 }, metrics), {
      metric: 'failure_rate',
      phase: 'fault',
      max: 0.005,
      actual: 2 / 800,
      unit: 'ratio',
      pass: true,
    });
    const strict = evaluateExpectation({ metric: 'failure_rate', phase: 'fault', max: 0.001 }, metrics);
    assert.equal(strict.pass, false);
    assert.equal(
      evaluateExpectation({ metric: 'success_rate', phase: 'baseline', min: 1 }, metrics).pass,
      true,
    );
    assert.equal(
      evaluateExpectation({ metric: 'unknown_outcome_requests', phase: 'fault', max: 0 }, metrics).actual,
      1,
    );
    assert.equal(
      evaluateExpectation({ metric: 'failed_requests', phase: 'recovery', max: 0 }, metrics).pass,
      true,
    );
    assert.equal(
      evaluateExpectation({ metric: 'failed_idempotent_requests', phase: 'fault', max: 0 }, metrics).pass,
      true,
    );
  });

  it('phase all (the default) adds the phases up', () => {
    const r = evaluateExpectation({ metric: 'failed_requests', max: 0 }, metrics);
    assert.equal(r.phase, 'all');
    assert.equal(r.actual, 1);
    assert.equal(r.pass, false);
    // 2 not ok out of 1600.
    assert.equal(evaluateExpectation({ metric: 'failure_rate', max: 1 }, metrics).actual, 2 / 1600);
    assert.equal(evaluateExpectation({ metric: 'latency_max', max: 3000 }, metrics).actual, 2900);
  });

  it('percentiles over all phases are an upper bound unless the overall figure is given', () => {
    const bound = evaluateExpectation({ metric: 'latency_p99', max: 1000 }, metrics);
    assert.equal(bound.actual, 900);
    assert.match(bound.note ?? '', /upper bound/);
    const exact = evaluateExpectation(
      { metric: 'latency_p99', max: 1000 },
      { ...metrics, overall: { latencyMs: { p50: 15, p99: 700, max: 2900 } } },
    );
    assert.equal(exact.actual, 700);
    assert.equal(exact.note, undefined);
  });

  it('honours min, max and both, inclusively', () => {
    assert.equal(evaluateExpectation({ metric: 'time_to_detect', max: 850 }, metrics).pass, true);
    assert.equal(evaluateExpectation({ metric: 'time_to_detect', max: 849 }, metrics).pass, false);
    assert.equal(evaluateExpectation({ metric: 'time_to_detect', min: 850, max: 900 }, metrics).pass, true);
    assert.equal(evaluateExpectation({ metric: 'time_to_detect', min: 851 }, metrics).pass, false);
  });

  it('drill-wide metrics take no phase and read failover, writes, config and signals', () => {
    const cases = [
      ['time_to_detect', 850, 'ms'],
      ['time_to_failover', 1200, 'ms'],
      ['time_to_failback', 4100, 'ms'],
      ['route_flaps', 0, 'count'],
      ['duplicate_side_effects', 0, 'count'],
      ['config_staleness_max', 1500, 'ms'],
      ['signals_lost', 0, 'count'],
      ['signals_duplicated', 2, 'count'],
      ['signals_max_delay', 21_000, 'ms'],
    ] as const;
    for (const [metric, actual, unit] of cases) {
      const r = evaluateExpectation({ metric, phase: 'fault', max: 1e9 }, metrics);
      assert.equal(r.actual, actual, metric);
      assert.equal(r.unit, unit, metric);
      assert.equal(r.phase, undefined, metric);
      assert.equal(r.pass, true, metric);
    }
  });

  it('a value that was not measured fails with a note', () => {
    const r = evaluateExpectation(
      { metric: 'time_to_failback', max: 10_000 },
      { ...metrics, failover: { ...metrics.failover, timeToFailbackMs: null } },
    );
    assert.equal(r.actual, null);
    assert.equal(r.pass, false);
    assert.match(r.note ?? '', /^not measured/);
    // A phase that never ran (the drill was not steady) is not measured either.
    const noFault = { ...metrics, phases: metrics.phases.filter((p) => p.phase === 'baseline') };
    const f = evaluateExpectation({ metric: 'failure_rate', phase: 'fault', max: 1 }, noFault);
    assert.deepEqual([f.actual, f.pass], [null, false]);
    assert.match(f.note ?? '', /not measured/);
    // Neither is a rate over no requests, whatever the limit.
    const empty = { ...metrics, phases: [phase({ phase: 'fault', startMs: 0, endMs: 1 })] };
    assert.equal(evaluateExpectation({ metric: 'success_rate', phase: 'fault', min: 0 }, empty).pass, false);
    assert.equal(evaluateExpectation({ metric: 'latency_p99', phase: 'fault', max: 1e9 }, empty).pass, false);
  });

  it('signal figures from an incomplete collection fail', () => {
    const r = evaluateExpectation(
      { metric: 'signals_lost', max: 0 },
      { ...metrics, signals: { ...metrics.signals, complete: false } },
    );
    assert.equal(r.actual, 0);
    assert.equal(r.pass, false);
    assert.match(r.note ?? '', /incomplete/);
  });

  it('only pass exits 0', () => {
    assert.equal(verdictExitCode('pass'), 0);
    for (const v of ['fail', 'not-steady', 'aborted', 'error'] as const) assert.equal(verdictExitCode(v), 1);
  });
});
