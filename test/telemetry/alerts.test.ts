import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Collector } from '../../src/controlplane/collector/collector.js';
import { ManualClock } from '../../src/core/clock.js';
import { parseAlertRules, toPrometheusRules } from '../../src/telemetry/alert-rules.js';
import { AlertEngine, parseExpr, type AlertEvent, type AlertRule } from '../../src/telemetry/alerts.js';
import { get, post } from '../support/telemetry-source.js';

const RULES = `rules:
  - name: FrontendSlow
    expr: p99_latency_ms(frontend) > 250 and error_rate(frontend) > 0.05
    for: 1m
    severity: critical
    summary: frontend is slow and failing
  - name: ProxyGone
    expr: "stale(proxy/frontend-1@eu-west) or backlog_growth(self) > 1000000"
    for: 30s
`;

const rule = (expr: string, forMs: number): AlertRule => ({
  name: 'R',
  exprText: expr,
  expr: parseExpr('R', expr),
  forMs,
  severity: 'warning',
  summary: 's',
});

/** Cumulative hop metrics as a proxy exports them: requests, errors, a duration histogram (s). */
function hopMetrics(clockMs: number, startMs: number, requests: number, errors: number, buckets: number[]) {
  const ns = (ms: number) => (BigInt(ms) * 1_000_000n).toString();
  const attributes = [
    { key: 'service', value: { stringValue: 'frontend' } },
    { key: 'peer_region', value: { stringValue: 'eu-west' } },
  ];
  const point = { startTimeUnixNano: ns(startMs), timeUnixNano: ns(clockMs), attributes };
  return {
    resourceMetrics: [
      {
        resource: {
          attributes: [{ key: 'isthmus.source', value: { stringValue: 'proxy/frontend-1@eu-west' } }],
        },
        scopeMetrics: [
          {
            metrics: [
              { name: 'isthmus.hop.requests', sum: { dataPoints: [{ ...point, asInt: String(requests) }] } },
              { name: 'isthmus.hop.errors', sum: { dataPoints: [{ ...point, asInt: String(errors) }] } },
              {
                name: 'isthmus.hop.duration',
                unit: 's',
                histogram: {
                  dataPoints: [
                    {
                      ...point,
                      count: String(buckets.reduce((a, b) => a + b, 0)),
                      explicitBounds: [0.1, 0.5, 1],
                      bucketCounts: buckets.map(String),
                    },
                  ],
                },
              },
            ],
          },
        ],
      },
    ],
  };
}

describe('alert rules', () => {
  it('locates expression errors by rule and column, and file errors by line and column', () => {
    assert.throws(
      () => parseExpr('A', 'p99_latency_ms(api) >> 3'),
      /alert rule "A": expr column 22: expected a number/,
    );
    assert.throws(() => parseExpr('A', 'stale(x) and'), /column 13: expected p99_latency_ms/);
    assert.throws(() => parseExpr('A', 'cpu(x) > 1'), /column 1: .*found "cpu"/);
    assert.throws(() => parseExpr('A', 'error_rate(api) > 2'), /column 19: error_rate is a ratio/);
    assert.throws(
      () => parseExpr('A', 'backlog_bytes(proxy-1) > 5'),
      /column 15: backlog_bytes is known only .*backlog_bytes\(self\)/,
    );
    assert.throws(() => parseExpr('A', '(stale(x)'), /column 10: expected "\)", found the end/);
    assert.throws(() => parseExpr('A', 'stale(x) ; 1'), /column 10: unexpected ";"/);
    const e = parseExpr('A', 'stale(a) or stale(b) and p99_latency_ms(s) > 3');
    assert.equal(e.op, 'or', '"and" binds tighter than "or"');

    assert.throws(
      () => parseAlertRules('rules:\n  - name: X\n    expr: p99_latency_ms(a) >> 3\n', 'r.yaml'),
      /^IsthmusError: r\.yaml:3:30: alert rule "X": expr column 20/,
    );
    assert.throws(
      () => parseAlertRules('rules:\n  - name: X\n    expr: "stale(a) ;"\n', 'r.yaml'),
      /r\.yaml:3:21: alert rule "X": expr column 10/,
    );
    assert.throws(
      () => parseAlertRules('rules:\n  - name: X\n    expr: stale(a)\n    for: 5\n', 'r.yaml'),
      /r\.yaml:4:10: rules\[0\]\.for/,
    );
    assert.throws(
      () => parseAlertRules('rules:\n  - name: X\n    exp: stale(a)\n', 'r.yaml'),
      /r\.yaml:3:5: rules\[0\]: unknown field "exp"/,
    );
    assert.throws(
      () => parseAlertRules('rules:\n  - name: X\n', 'r.yaml'),
      /r\.yaml:2:5: rules\[0\]\.expr is missing/,
    );
    assert.throws(() => parseAlertRules('rules: [\n', 'r.yaml'), /ISTHMUS_E_YAML|r\.yaml:2:1/);
    const ok = parseAlertRules(RULES, 'r.yaml');
    assert.deepEqual(
      ok.map((r) => [r.name, r.forMs, r.severity]),
      [
        ['FrontendSlow', 60_000, 'critical'],
        ['ProxyGone', 30_000, 'warning'],
      ],
    );
  });

  it('goes pending → firing after `for`, resolves when the condition stops, and is unknown without data', () => {
    const clock = new ManualClock();
    let stale: boolean | undefined;
    const events: AlertEvent[] = [];
    const engine = new AlertEngine({
      rules: [rule('stale(p)', 30_000), rule('backlog_bytes(self) > 100', 0)].map((r, k) => ({
        ...r,
        name: `R${k}`,
      })),
      clock,
      signals: { backlogBytes: () => undefined, stale: () => stale },
      onEvent: (e) => events.push(e),
    });
    const states = () => engine.status().map((s) => s.state);
    engine.evaluate();
    assert.deepEqual(states(), ['unknown', 'unknown'], 'no source, no forwarding log: unknown, not false');
    stale = true;
    const t0 = clock.now();
    engine.evaluate();
    assert.equal(engine.status()[0]?.state, 'pending');
    clock.advance(20_000);
    engine.evaluate();
    assert.equal(engine.status()[0]?.state, 'pending');
    assert.equal(engine.status()[0]?.sinceMs, t0);
    // Missing data breaks the countdown: it starts over once the data is back.
    stale = undefined;
    clock.advance(5_000);
    engine.evaluate();
    assert.equal(engine.status()[0]?.state, 'unknown');
    stale = true;
    clock.advance(5_000);
    engine.evaluate();
    clock.advance(29_000);
    engine.evaluate();
    assert.equal(engine.status()[0]?.state, 'pending');
    assert.equal(events.length, 0);
    clock.advance(1_000);
    engine.evaluate();
    assert.equal(engine.status()[0]?.state, 'firing');
    assert.deepEqual(
      events.map((e) => [e.rule, e.kind, e.values]),
      [['R0', 'firing', { 'stale(p)': true }]],
    );
    clock.advance(10_000);
    engine.evaluate();
    assert.equal(events.length, 1, 'firing is announced once');
    stale = false;
    clock.advance(10_000);
    engine.evaluate();
    assert.equal(engine.status()[0]?.state, 'inactive');
    assert.deepEqual(
      engine.events().map((e) => [e.kind, e.atMs - t0]),
      [
        ['firing', 60_000],
        ['resolved', 80_000],
      ],
    );
    assert.equal(engine.status()[1]?.state, 'unknown');
  });

  it('computes p99 and error rate over the window from cumulative hop points, in a collector', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'isthmus-alerts-'));
    const hooks: AlertEvent[] = [];
    let failFirst = 1;
    const hook: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        // The first delivery fails: the webhook retries.
        if (failFirst-- > 0) res.writeHead(500).end();
        else {
          hooks.push(JSON.parse(Buffer.concat(chunks).toString()) as AlertEvent);
          res.writeHead(204).end();
        }
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const clock = new ManualClock(1_800_000_000_000);
    const c = await Collector.start({
      region: 'eu-west',
      dataDir: dir,
      listen: '127.0.0.1:0',
      heartbeatIntervalMs: 2_000,
      logFieldsAllowedOut: [],
      alertRules: parseAlertRules(RULES, 'r.yaml'),
      alertIntervalMs: 3_600_000,
      alertWebhook: `http://127.0.0.1:${(hook.address() as { port: number }).port}`,
      clock,
      now: () => clock.now(),
    });
    try {
      const url = `http://${c.address}`;
      const engine = c.alerts as AlertEngine;
      const start = clock.now() - 600_000;
      const state = async () =>
        (
          await get<{ rules: { name: string; state: string; values: Record<string, unknown> }[] }>(
            url,
            '/v1/alerts',
          )
        ).body.rules[0];
      engine.evaluate();
      assert.equal((await state())?.state, 'unknown', 'no hop points yet');
      // 5 min ago: 1000 requests, all fast. Now: 1000 more, 100 errors, 20 of them over 1 s.
      assert.equal(
        (await post(url, '/v1/metrics', hopMetrics(clock.now() - 300_000, start, 1000, 0, [1000, 0, 0, 0])))
          .status,
        200,
      );
      assert.equal(
        (await post(url, '/v1/metrics', hopMetrics(clock.now(), start, 2000, 100, [1900, 50, 30, 20])))
          .status,
        200,
      );
      engine.evaluate();
      const s = await state();
      assert.equal(s?.state, 'pending');
      assert.equal(s?.values['error_rate(frontend)'], 0.1);
      // 1000 in the window: rank 990 lies in (0.5, 1] (counts 900, 50, 30, 20) → 0.5 + 0.5 × 40/30 s.
      assert.ok(
        Math.abs((s?.values['p99_latency_ms(frontend)'] as number) - 1000) < 1e-6,
        String(s?.values['p99_latency_ms(frontend)']),
      );
      clock.advance(60_000);
      // The newest point is now a minute old but inside the window, so the rule still holds.
      engine.evaluate();
      assert.equal((await state())?.state, 'firing');
      // Everything aged out of the window: the rule cannot tell, which does not resolve it.
      clock.advance(600_000);
      engine.evaluate();
      assert.equal((await state())?.state, 'firing');
      assert.equal(
        (
          await post(
            url,
            '/v1/metrics',
            hopMetrics(clock.now() - 300_000, start, 5000, 100, [4900, 50, 30, 20]),
          )
        ).status,
        200,
      );
      assert.equal(
        (await post(url, '/v1/metrics', hopMetrics(clock.now(), start, 6000, 100, [5900, 50, 30, 20])))
          .status,
        200,
      );
      engine.evaluate();
      assert.equal((await state())?.state, 'inactive');
      // ProxyGone: the proxy went silent during the 10 minutes without points (stale, firing);
      // now heard again, its `or` partner has no forwarding log to read: unknown, so still firing.
      const events = (await get<{ events: AlertEvent[] }>(url, '/v1/alerts/events')).body.events;
      const expected = [
        ['FrontendSlow', 'firing', 'critical'],
        ['ProxyGone', 'firing', 'warning'],
        ['FrontendSlow', 'resolved', 'critical'],
      ];
      assert.deepEqual(
        events.map((e) => [e.rule, e.kind, e.severity]),
        expected,
      );
      const second = (
        await get<{ rules: { state: string; values: Record<string, unknown> }[] }>(url, '/v1/alerts')
      ).body.rules[1];
      assert.deepEqual(second, {
        ...second,
        state: 'firing',
        values: { 'stale(proxy/frontend-1@eu-west)': false, 'backlog_growth(self)': null },
      });
      const deadline = Date.now() + 5_000;
      while (hooks.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // Delivered in any order (each post retries on its own); the first answer was a 500.
      assert.deepEqual(hooks.map((e) => [e.rule, e.kind, e.severity]).sort(), [...expected].sort());
    } finally {
      await c.close();
      await new Promise<void>((r) => hook.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe('Prometheus export', () => {
    let dir = '';
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'isthmus-promtool-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('translates every form to PromQL that promtool accepts', async () => {
      const rules = parseAlertRules(
        `${RULES}  - name: BacklogBig
    expr: backlog_bytes(self) > 1000000000 or (error_rate(api) > 0.01 and stale(p))
`,
        'r.yaml',
      );
      const text = toPrometheusRules(rules);
      assert.match(
        text,
        /histogram_quantile\(0\.99, sum by \(le, service\) \(rate\(isthmus_hop_duration_seconds_bucket\{service="frontend"\}\[5m\]\)\)\) \* 1000 > 250/,
      );
      assert.match(text, /isthmus_collector_source_stale\{source="proxy\/frontend-1@eu-west"\} == 1/);
      const file = path.join(dir, 'rules.yml');
      await writeFile(file, text);
      const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      if (r.error)
        assert.fail(
          `promtool is needed for this test and could not be run (${r.error.message}): install Prometheus (Debian: apt-get install prometheus)`,
        );
      assert.equal(r.status, 0, `promtool rejected the export:\n${r.stdout}${r.stderr}\n${text}`);
      assert.match(r.stdout, /SUCCESS: 3 rules found/);
    });
  });
});
