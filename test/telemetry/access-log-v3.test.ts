import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACCESS_LOG_FIELDS,
  ACCESS_LOG_FORMAT,
  accessLogRecordId,
  accessLogSpanToOtlp,
  accessLogsToOtlp,
  accessLogToOtlp,
  checkAccessLogBatch,
  type AccessLogSpan,
  type AccessLogTuple,
} from '../../src/telemetry/access-log.js';
import { msToNanos, OtlpError, parseLogs, parseTraces, type JsonObject } from '../../src/telemetry/otlp.js';
import { encodeSpan, type SpanData } from '../../src/telemetry/source.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const PARENT = 'b7ad6b7169203331';
/** 2023-11-14T22:13:20.000Z, plus a quarter of a millisecond (exact in binary). */
const START_MS = 1_700_000_000_000.25;

/** A sampled record with every optional field set: a client hop, 12.5 ms. */
const full = (): AccessLogTuple => [
  START_MS,
  12_500,
  'catalog',
  'outbound',
  'orders',
  'GET',
  '/users/alice?x="1"',
  'catalog.mesh',
  200,
  true,
  2,
  'eu-west/eu-west-a',
  'us-east',
  'zone-down',
  'stale-config',
  TRACE,
  SPAN,
  'req-42',
  '203.0.113.7',
  'curl/8.5.0',
  ['client', null, null, false, 16],
];

/** A record with every optional field null (not sampled): 7 ms. */
const bare = (): AccessLogTuple => [
  1_700_000_000_000,
  7000,
  'frontend',
  'inbound',
  null,
  'POST',
  null,
  null,
  201,
  true,
  null,
  null,
  null,
  null,
  null,
  TRACE,
  SPAN,
  'req-1',
  null,
  null,
  null,
];

/** `t` with its span set to `span`. */
const withSpan = (t: AccessLogTuple, span: AccessLogSpan | null): AccessLogTuple => {
  t[20] = span;
  return t;
};

const s = (key: string, stringValue: string) => ({ key, value: { stringValue } });
const i = (key: string, intValue: string) => ({ key, value: { intValue } });
const b = (key: string, boolValue: boolean) => ({ key, value: { boolValue } });
const d = (key: string, doubleValue: number) => ({ key, value: { doubleValue } });

const resource = {
  attributes: [
    s('service.name', 'catalog'),
    s('isthmus.source', 'proxy/gw@eu-west'),
    s('isthmus.region', 'eu-west'),
    s('isthmus.zone', 'eu-west-a'),
  ],
};
const WHERE = { region: 'eu-west', zone: 'eu-west-a' };
/** A format-3 body: `batches`, each `[seq, prefix, record, record, …]`. */
const body = (batches: unknown[], res: unknown = resource): Record<string, unknown> => ({
  format: ACCESS_LOG_FORMAT,
  resource: res,
  batches,
});

/** The OtlpError `f` throws (failing if it throws nothing or something else). */
function refusal(f: () => unknown): OtlpError {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof OtlpError, `an OtlpError, not ${String(err)}`);
    return err;
  }
  assert.fail('accepted');
}

/** What the proxy sent for a span (encodeSpan), with the shipper's `isthmus.seq` spliced in first. */
function proxySpanText(seq: number, span: SpanData): string {
  const text = encodeSpan(span);
  const head = '{"attributes":[';
  assert.ok(text.startsWith(head));
  return `${head}{"key":"isthmus.seq","value":{"intValue":"${seq}"}},${text.slice(head.length)}`;
}

/** Checks that the span of `t` is, value for value and byte for byte, the span the proxy sent. */
function assertProxySpan(seq: number, t: AccessLogTuple, expected: SpanData): void {
  const got = accessLogSpanToOtlp(seq, t);
  assert.ok(got !== undefined, 'a span');
  const want = JSON.parse(encodeSpan(expected)) as JsonObject;
  want.attributes = [i('isthmus.seq', String(seq)), ...(want.attributes as JsonObject[])];
  assert.deepEqual(got, want);
  // Key order included: the same JSON text as the proxy's item once its seq is spliced in.
  assert.equal(JSON.stringify(got), proxySpanText(seq, expected));
}

describe('access-log records, format 3', () => {
  it('names format 3 and has 21 fields, in the order of the tuple', () => {
    assert.equal(ACCESS_LOG_FORMAT, 'isthmus.access-log/3');
    assert.equal(ACCESS_LOG_FIELDS.length, 21);
    assert.equal(full().length, 21);
    assert.equal(bare().length, 21);
    assert.deepEqual(
      ACCESS_LOG_FIELDS.map((f) => f.name),
      [
        'startMs',
        'durationUs',
        'service',
        'listener',
        'route',
        'method',
        'path',
        'authority',
        'status',
        'completed',
        'attempts',
        'servedBy',
        'peerRegion',
        'failover',
        'fallback',
        'traceId',
        'spanId',
        'requestId',
        'client',
        'userAgent',
        'span',
      ],
    );
    assert.deepEqual(
      ACCESS_LOG_FIELDS.filter((f) => f.optional).map((f) => f.name),
      [
        'route',
        'path',
        'authority',
        'attempts',
        'servedBy',
        'peerRegion',
        'failover',
        'fallback',
        'client',
        'userAgent',
        'span',
      ],
    );
    assert.equal(accessLogRecordId('gw-0a1b2c-', 17, 0), 'gw-0a1b2c-17.0');
    assert.equal(accessLogRecordId('p', 1, 12), 'p1.12');
  });

  it('becomes the OTLP log record: attributes in order with their types, severity, body, ids, time', () => {
    const rec = accessLogToOtlp(17, 'gw-0a1b2c-17.3', WHERE, full());
    assert.deepEqual(rec.attributes, [
      i('isthmus.seq', '17'),
      s('isthmus.record_id', 'gw-0a1b2c-17.3'),
      s('recordId', 'gw-0a1b2c-17.3'),
      s('timestamp', '2023-11-14T22:13:20.000Z'),
      s('region', 'eu-west'),
      s('zone', 'eu-west-a'),
      s('service', 'catalog'),
      s('listener', 'outbound'),
      s('route', 'orders'),
      s('method', 'GET'),
      s('path', '/users/alice?x="1"'),
      s('authority', 'catalog.mesh'),
      i('status', '200'),
      b('completed', true),
      d('durationMs', 12.5),
      i('attempts', '2'),
      s('servedBy', 'eu-west/eu-west-a'),
      s('peerRegion', 'us-east'),
      s('failover', 'zone-down'),
      s('fallback', 'stale-config'),
      s('traceId', TRACE),
      s('spanId', SPAN),
      b('sampled', true),
      s('requestId', 'req-42'),
      s('client', '203.0.113.7'),
      s('userAgent', 'curl/8.5.0'),
    ]);
    // The record's time is its end: start + duration, in ns as a decimal string.
    assert.equal(rec.timeUnixNano, '1700000000012750000');
    assert.equal(rec.observedTimeUnixNano, '1700000000012750000');
    assert.equal(rec.severityText, 'INFO');
    assert.equal(rec.severityNumber, 9);
    assert.deepEqual(rec.body, { stringValue: 'GET /users/alice?x="1" 200' });
    assert.equal(rec.traceId, TRACE);
    assert.equal(rec.spanId, SPAN);
    // Exactly these keys: nothing of the span (kind, parent, …) leaks into the log record.
    assert.deepEqual(Object.keys(rec).sort(), [
      'attributes',
      'body',
      'observedTimeUnixNano',
      'severityNumber',
      'severityText',
      'spanId',
      'timeUnixNano',
      'traceId',
    ]);
  });

  it('leaves null fields out, writes a whole-ms duration as intValue, "/" for no path, sampled false', () => {
    const rec = accessLogToOtlp(1, 'sc-1.0', { region: 'us-east', zone: '' }, bare());
    assert.deepEqual(rec.attributes, [
      i('isthmus.seq', '1'),
      s('isthmus.record_id', 'sc-1.0'),
      s('recordId', 'sc-1.0'),
      s('timestamp', '2023-11-14T22:13:20.000Z'),
      s('region', 'us-east'),
      s('zone', ''),
      s('service', 'frontend'),
      s('listener', 'inbound'),
      s('method', 'POST'),
      i('status', '201'),
      b('completed', true),
      i('durationMs', '7'),
      s('traceId', TRACE),
      s('spanId', SPAN),
      b('sampled', false),
      s('requestId', 'req-1'),
    ]);
    assert.deepEqual(rec.body, { stringValue: 'POST / 201' });
    assert.equal(rec.timeUnixNano, '1700000000007000000');
    assert.equal(rec.observedTimeUnixNano, '1700000000007000000');
    assert.equal(rec.severityText, 'INFO');
    assert.equal(rec.severityNumber, 9);
    assert.equal(rec.traceId, TRACE);
    assert.equal(rec.spanId, SPAN);
  });

  it('writes the duration in ms from µs: intValue when whole, doubleValue otherwise', () => {
    const cases: [us: number, attr: unknown, timeNs: string][] = [
      [0, i('durationMs', '0'), '1700000000000250000'],
      [1000, i('durationMs', '1'), '1700000000001250000'],
      [12_500, d('durationMs', 12.5), '1700000000012750000'],
      [250, d('durationMs', 0.25), '1700000000000500000'],
      [3_000_000, i('durationMs', '3000'), '1700000003000250000'],
    ];
    for (const [us, attr, timeNs] of cases) {
      const t = full();
      t[1] = us;
      const rec = accessLogToOtlp(1, 'r', WHERE, t);
      const attrs = rec.attributes as JsonObject[];
      assert.deepEqual(
        attrs.find((a) => a.key === 'durationMs'),
        attr,
        String(us),
      );
      assert.equal(rec.timeUnixNano, timeNs, String(us));
      assert.equal(rec.timeUnixNano, msToNanos(START_MS + us / 1000), String(us));
    }
    // A single µs: a double, and the time is msToNanos of start + duration.
    const t = bare();
    t[1] = 1;
    const rec = accessLogToOtlp(1, 'r', WHERE, t);
    assert.deepEqual(
      (rec.attributes as JsonObject[]).find((a) => a.key === 'durationMs'),
      d('durationMs', 0.001),
    );
    assert.equal(rec.timeUnixNano, msToNanos(1_700_000_000_000 + 0.001));
  });

  it('takes its severity from the status and whether the response completed', () => {
    const cases: [status: number, completed: boolean, text: string, number: number][] = [
      [200, true, 'INFO', 9],
      [304, true, 'INFO', 9],
      [399, true, 'INFO', 9],
      [400, true, 'WARN', 13],
      [404, true, 'WARN', 13],
      [499, true, 'WARN', 13],
      [500, true, 'ERROR', 17],
      [503, true, 'ERROR', 17],
      [200, false, 'ERROR', 17],
      [404, false, 'ERROR', 17],
    ];
    for (const [status, completed, text, number] of cases) {
      const t = full();
      t[8] = status;
      t[9] = completed;
      const rec = accessLogToOtlp(1, 'r', WHERE, t);
      assert.equal(rec.severityText, text, `${status} completed=${completed}`);
      assert.equal(rec.severityNumber, number, `${status} completed=${completed}`);
      assert.deepEqual(rec.body, { stringValue: `GET /users/alice?x="1" ${status}` });
    }
  });

  it('marks the log record sampled exactly when the record carries a span', () => {
    const sampled = (t: AccessLogTuple) =>
      (accessLogToOtlp(1, 'r', WHERE, t).attributes as JsonObject[]).find((a) => a.key === 'sampled');
    assert.deepEqual(sampled(full()), b('sampled', true));
    assert.deepEqual(sampled(withSpan(full(), null)), b('sampled', false));
    assert.deepEqual(sampled(bare()), b('sampled', false));
    assert.deepEqual(sampled(withSpan(bare(), ['server', null, null, false, null])), b('sampled', true));
  });
});

describe('access-log spans, format 3', () => {
  it('makes no span of a record that was not sampled', () => {
    assert.equal(accessLogSpanToOtlp(3, bare()), undefined);
    assert.equal(accessLogSpanToOtlp(3, withSpan(full(), null)), undefined);
  });

  it("makes of a sampled record the span the proxy sent: every attribute, the record's ids and times", () => {
    const span = accessLogSpanToOtlp(17, full());
    // Spelled out once, so that a change common to both sides (encodeSpan) still shows.
    assert.deepEqual(span, {
      attributes: [
        i('isthmus.seq', '17'),
        s('http.request.method', 'GET'),
        s('url.path', '/users/alice?x="1"'),
        i('http.response.status_code', '200'),
        s('isthmus.listener', 'outbound'),
        s('isthmus.service', 'catalog'),
        s('isthmus.route', 'orders'),
        s('isthmus.request_id', 'req-42'),
        i('isthmus.attempts', '2'),
        s('isthmus.served_by', 'eu-west/eu-west-a'),
        s('isthmus.peer_region', 'us-east'),
        s('isthmus.failover', 'zone-down'),
        s('isthmus.fallback', 'stale-config'),
        i('isthmus.sampling.adjusted_count', '16'),
      ],
      traceId: TRACE,
      spanId: SPAN,
      name: 'GET catalog',
      kind: 3,
      startTimeUnixNano: '1700000000000250000',
      endTimeUnixNano: '1700000000012750000',
      status: { code: 0 },
    });
    assertProxySpan(17, full(), {
      traceId: TRACE,
      spanId: SPAN,
      name: 'GET catalog',
      kind: 'client',
      startTimeMs: START_MS,
      endTimeMs: START_MS + 12.5,
      error: false,
      attributes: {
        'http.request.method': 'GET',
        'url.path': '/users/alice?x="1"',
        'http.response.status_code': 200,
        'isthmus.listener': 'outbound',
        'isthmus.service': 'catalog',
        'isthmus.route': 'orders',
        'isthmus.request_id': 'req-42',
        'isthmus.attempts': 2,
        'isthmus.served_by': 'eu-west/eu-west-a',
        'isthmus.peer_region': 'us-east',
        'isthmus.failover': 'zone-down',
        'isthmus.fallback': 'stale-config',
        'isthmus.sampling.forced': undefined,
        'isthmus.sampling.adjusted_count': 16,
      },
    });
  });

  it('marks a forced span (kept outside the sample) and its adjusted count of 1, error for 5xx', () => {
    const t = withSpan(full(), ['client', null, null, true, 1]);
    t[8] = 503;
    assertProxySpan(4, t, {
      traceId: TRACE,
      spanId: SPAN,
      name: 'GET catalog',
      kind: 'client',
      startTimeMs: START_MS,
      endTimeMs: START_MS + 12.5,
      error: true,
      attributes: {
        'http.request.method': 'GET',
        'url.path': '/users/alice?x="1"',
        'http.response.status_code': 503,
        'isthmus.listener': 'outbound',
        'isthmus.service': 'catalog',
        'isthmus.route': 'orders',
        'isthmus.request_id': 'req-42',
        'isthmus.attempts': 2,
        'isthmus.served_by': 'eu-west/eu-west-a',
        'isthmus.peer_region': 'us-east',
        'isthmus.failover': 'zone-down',
        'isthmus.fallback': 'stale-config',
        'isthmus.sampling.forced': true,
        'isthmus.sampling.adjusted_count': 1,
      },
    });
    const span = accessLogSpanToOtlp(4, t);
    assert.deepEqual(span?.status, { code: 2 });
    assert.deepEqual((span?.attributes as JsonObject[]).slice(-2), [
      b('isthmus.sampling.forced', true),
      i('isthmus.sampling.adjusted_count', '1'),
    ]);
  });

  it('gives a response that did not complete an error status with its message', () => {
    const t = bare();
    t[9] = false;
    t[1] = 2_500;
    withSpan(t, ['client', null, null, true, 1]);
    assertProxySpan(8, t, {
      traceId: TRACE,
      spanId: SPAN,
      name: 'POST frontend',
      kind: 'client',
      startTimeMs: 1_700_000_000_000,
      endTimeMs: 1_700_000_000_000 + 2.5,
      error: true,
      statusMessage: 'the connection closed before the response completed',
      attributes: {
        'http.request.method': 'POST',
        'url.path': undefined,
        'http.response.status_code': 201,
        'isthmus.listener': 'inbound',
        'isthmus.service': 'frontend',
        'isthmus.route': undefined,
        'isthmus.request_id': 'req-1',
        'isthmus.attempts': undefined,
        'isthmus.served_by': undefined,
        'isthmus.peer_region': undefined,
        'isthmus.failover': undefined,
        'isthmus.fallback': undefined,
        'isthmus.sampling.forced': true,
        'isthmus.sampling.adjusted_count': 1,
      },
    });
    assert.deepEqual(accessLogSpanToOtlp(8, t)?.status, {
      code: 2,
      message: 'the connection closed before the response completed',
    });
  });

  it('continues a trace: a server span with its parent and trace state', () => {
    const t = withSpan(bare(), ['server', PARENT, 'vendor=abc,ot=th:8', false, 2.5]);
    t[6] = '/checkout';
    assertProxySpan(2, t, {
      traceId: TRACE,
      spanId: SPAN,
      parentSpanId: PARENT,
      traceState: 'vendor=abc,ot=th:8',
      name: 'POST frontend',
      kind: 'server',
      startTimeMs: 1_700_000_000_000,
      endTimeMs: 1_700_000_000_000 + 7,
      error: false,
      attributes: {
        'http.request.method': 'POST',
        'url.path': '/checkout',
        'http.response.status_code': 201,
        'isthmus.listener': 'inbound',
        'isthmus.service': 'frontend',
        'isthmus.route': undefined,
        'isthmus.request_id': 'req-1',
        'isthmus.attempts': undefined,
        'isthmus.served_by': undefined,
        'isthmus.peer_region': undefined,
        'isthmus.failover': undefined,
        'isthmus.fallback': undefined,
        'isthmus.sampling.forced': undefined,
        'isthmus.sampling.adjusted_count': 2.5,
      },
    });
    const span = accessLogSpanToOtlp(2, t);
    assert.equal(span?.kind, 2);
    assert.equal(span?.parentSpanId, PARENT);
    assert.equal(span?.traceState, 'vendor=abc,ot=th:8');
    assert.deepEqual((span?.attributes as JsonObject[]).at(-1), d('isthmus.sampling.adjusted_count', 2.5));
  });

  it('leaves out an empty route and trace state and an unknown adjusted count, as the proxy did', () => {
    const t = withSpan(full(), ['server', null, '', false, null]);
    t[4] = '';
    assertProxySpan(6, t, {
      traceId: TRACE,
      spanId: SPAN,
      traceState: '',
      name: 'GET catalog',
      kind: 'server',
      startTimeMs: START_MS,
      endTimeMs: START_MS + 12.5,
      error: false,
      attributes: {
        'http.request.method': 'GET',
        'url.path': '/users/alice?x="1"',
        'http.response.status_code': 200,
        'isthmus.listener': 'outbound',
        'isthmus.service': 'catalog',
        // The proxy sent `route || undefined`.
        'isthmus.route': undefined,
        'isthmus.request_id': 'req-42',
        'isthmus.attempts': 2,
        'isthmus.served_by': 'eu-west/eu-west-a',
        'isthmus.peer_region': 'us-east',
        'isthmus.failover': 'zone-down',
        'isthmus.fallback': 'stale-config',
        'isthmus.sampling.forced': undefined,
        'isthmus.sampling.adjusted_count': undefined,
      },
    });
    const span = accessLogSpanToOtlp(6, t);
    assert.equal(span?.traceState, undefined);
    assert.equal(span?.parentSpanId, undefined);
    assert.equal('traceState' in (span ?? {}), false);
    // The log record keeps the empty route as sent.
    assert.deepEqual(
      (accessLogToOtlp(6, 'r', WHERE, t).attributes as JsonObject[]).find((a) => a.key === 'route'),
      s('route', ''),
    );
  });
});

describe('access-log bodies, format 3', () => {
  /** Batch 5: three records, the second sampled. Batch 9: two records, the second sampled. */
  const first = bare();
  const second = full();
  const third = withSpan(full(), null);
  third[8] = 404;
  third[0] = START_MS + 1;
  const fourth = bare();
  fourth[8] = 500;
  const fifth = withSpan(bare(), ['server', PARENT, 'k=v', true, 1]);
  fifth[5] = 'PUT';
  const twoBatches = () => [
    [5, 'gw-0a1b2c-', first, second, third],
    [9, 'gw-ffee00-', fourth, fifth],
  ];

  it("makes the OTLP logs of every record, in order, ids from the batch's prefix, seq and place", () => {
    const { logs, traces } = accessLogsToOtlp(body(twoBatches()));
    assert.deepEqual(logs, {
      resourceLogs: [
        {
          resource,
          scopeLogs: [
            {
              scope: { name: 'isthmus' },
              logRecords: [
                accessLogToOtlp(5, 'gw-0a1b2c-5.0', WHERE, first),
                accessLogToOtlp(5, 'gw-0a1b2c-5.1', WHERE, second),
                accessLogToOtlp(5, 'gw-0a1b2c-5.2', WHERE, third),
                accessLogToOtlp(9, 'gw-ffee00-9.0', WHERE, fourth),
                accessLogToOtlp(9, 'gw-ffee00-9.1', WHERE, fifth),
              ],
            },
          ],
        },
      ],
    });
    const items = parseLogs(logs);
    assert.deepEqual(
      items.map((x) => [x.seq, x.recordId, x.source, x.region, x.zone, x.timeNs]),
      [
        [5, 'gw-0a1b2c-5.0', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000007000000'],
        [5, 'gw-0a1b2c-5.1', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000012750000'],
        [5, 'gw-0a1b2c-5.2', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000013750000'],
        [9, 'gw-ffee00-9.0', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000007000000'],
        [9, 'gw-ffee00-9.1', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000007000000'],
      ],
    );
    const attr = (k: number, key: string) =>
      ((items[k]?.record.attributes ?? []) as JsonObject[]).find((a) => a.key === key);
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((k) => attr(k, 'sampled')),
      [false, true, false, false, true].map((v) => b('sampled', v)),
    );
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((k) => [attr(k, 'region'), attr(k, 'zone')]),
      [0, 1, 2, 3, 4].map(() => [s('region', 'eu-west'), s('zone', 'eu-west-a')]),
    );
    assert.deepEqual(
      items.map((x) => x.record.severityText),
      ['INFO', 'INFO', 'WARN', 'ERROR', 'INFO'],
    );
    assert.ok(traces !== undefined);
  });

  it('makes the OTLP traces of the sampled records only, in order, with their seqs', () => {
    const { traces } = accessLogsToOtlp(body(twoBatches()));
    assert.deepEqual(traces, {
      resourceSpans: [
        {
          resource,
          scopeSpans: [
            {
              scope: { name: 'isthmus' },
              spans: [accessLogSpanToOtlp(5, second), accessLogSpanToOtlp(9, fifth)],
            },
          ],
        },
      ],
    });
    const items = parseTraces(traces);
    assert.deepEqual(
      items.map((x) => [
        x.seq,
        x.source,
        x.region,
        x.zone,
        x.traceId,
        x.spanId,
        x.parentSpanId,
        x.name,
        x.timeNs,
      ]),
      [
        [
          5,
          'proxy/gw@eu-west',
          'eu-west',
          'eu-west-a',
          TRACE,
          SPAN,
          '',
          'GET catalog',
          '1700000000012750000',
        ],
        [
          9,
          'proxy/gw@eu-west',
          'eu-west',
          'eu-west-a',
          TRACE,
          SPAN,
          PARENT,
          'PUT frontend',
          '1700000000007000000',
        ],
      ],
    );
    assert.equal(items[1]?.span.traceState, 'k=v');
    assert.equal(items[1]?.span.kind, 2);
    assert.deepEqual(items[1]?.span.status, { code: 0 });
  });

  it('makes no traces body when no record is sampled, and empty logs of no batches', () => {
    const none = accessLogsToOtlp(body([[3, 'p-', bare(), withSpan(full(), null)]]));
    assert.equal(none.traces, undefined);
    assert.deepEqual(
      parseLogs(none.logs).map((x) => [x.seq, x.recordId]),
      [
        [3, 'p-3.0'],
        [3, 'p-3.1'],
      ],
    );
    const empty = accessLogsToOtlp(body([]));
    assert.equal(empty.traces, undefined);
    assert.deepEqual(empty.logs, {
      resourceLogs: [{ resource, scopeLogs: [{ scope: { name: 'isthmus' }, logRecords: [] }] }],
    });
    assert.deepEqual(parseLogs(empty.logs), []);
  });

  it("takes the region and zone from the resource: zone '' when the resource has none", () => {
    const noZone = {
      attributes: [s('isthmus.source', 'proxy/gw@us-east'), s('isthmus.region', 'us-east')],
    };
    const { logs, traces } = accessLogsToOtlp(body([[2, 'x-', bare(), full()]], noZone));
    const items = parseLogs(logs);
    assert.deepEqual(
      items.map((x) => x.record),
      [
        accessLogToOtlp(2, 'x-2.0', { region: 'us-east', zone: '' }, bare()),
        accessLogToOtlp(2, 'x-2.1', { region: 'us-east', zone: '' }, full()),
      ],
    );
    const attrs = items[0]?.record.attributes as JsonObject[];
    assert.deepEqual(attrs.slice(4, 6), [s('region', 'us-east'), s('zone', '')]);
    assert.deepEqual(
      items.map((x) => [x.source, x.region, x.zone]),
      [
        ['proxy/gw@us-east', 'us-east', undefined],
        ['proxy/gw@us-east', 'us-east', undefined],
      ],
    );
    assert.deepEqual(
      parseTraces(traces).map((x) => [x.seq, x.region, x.zone]),
      [[2, 'us-east', undefined]],
    );
  });

  it('checks a batch directly: its seq, its prefix and its records back, in order', () => {
    assert.deepEqual(checkAccessLogBatch([9, 'p-', full(), bare()], 'b'), {
      seq: 9,
      prefix: 'p-',
      tuples: [full(), bare()],
    });
    assert.deepEqual(checkAccessLogBatch([1, 'x'.repeat(256), bare()], 'b'), {
      seq: 1,
      prefix: 'x'.repeat(256),
      tuples: [bare()],
    });
    // Called directly, the path given is the prefix of every path it names.
    assert.equal(refusal(() => checkAccessLogBatch([3, 'p'], 'b')).path, 'b');
    assert.equal(refusal(() => checkAccessLogBatch([3, 'p', bare().slice(1)], 'b')).path, 'b[2]');
    const t: unknown[] = bare();
    t[5] = null;
    assert.equal(refusal(() => checkAccessLogBatch([3, 'p', bare(), t], 'b')).path, 'b[3][5] (method)');
  });

  it('takes the bounds: a trace state of 32 × 257 characters, the end of the time range', () => {
    const long = withSpan(bare(), ['client', null, 'a'.repeat(32 * 257), false, null]);
    assert.equal(accessLogSpanToOtlp(1, long)?.traceState, 'a'.repeat(32 * 257));
    assert.doesNotThrow(() => accessLogsToOtlp(body([[1, 'p', long]])));
    const last = bare();
    last[0] = 18_446_744_073_709;
    last[1] = 0;
    const { logs } = accessLogsToOtlp(body([[1, 'p', last]]));
    const records = (logs.resourceLogs as { scopeLogs: { logRecords: JsonObject[] }[] }[])[0]?.scopeLogs[0]
      ?.logRecords;
    assert.equal(records?.[0]?.timeUnixNano, '18446744073709000000');
    // The collector's OTLP check takes it (a time past the bound would be refused there, naming the OTLP body).
    assert.equal(parseLogs(logs).length, 1);
    assert.deepEqual(
      (records?.[0]?.attributes as JsonObject[])[3],
      s('timestamp', '2554-07-21T23:34:33.709Z'),
    );
    const zero = bare();
    zero[0] = 0;
    zero[1] = 0;
    assert.doesNotThrow(() => accessLogsToOtlp(body([[1, 'p', zero]])));
  });
});

describe('access-log body refusals, format 3', () => {
  /** A record (a copy of full()) with `patch` applied. */
  const rec = (patch: (r: unknown[]) => void, base: () => AccessLogTuple = full): unknown[] => {
    const r: unknown[] = base();
    patch(r);
    return r;
  };
  /** A record whose span has `patch` applied. */
  const span = (patch: (x: unknown[]) => void): unknown[] =>
    rec((r) => {
      const x: unknown[] = ['server', PARENT, 'k=v', false, 1];
      patch(x);
      r[20] = x;
    });
  /** A body of one batch (seq 1, prefix 'p-') of a valid record then `r`: errors are at record [3]. */
  const one = (r: unknown) => body([[1, 'p-', bare(), r]]);
  const ok = [1, 'p-', full(), bare()];

  it('refuses a malformed body or batch, naming the offending part', () => {
    const cases: [what: string, body: unknown, path: string][] = [
      ['an array', [ok], ''],
      ['null', null, ''],
      ['a string', 'isthmus.access-log/3', ''],
      ['unknown format', { ...body([ok]), format: 'isthmus.access-log/4' }, 'format'],
      ['no format', { resource, batches: [ok] }, 'format'],
      ['resource missing', { format: ACCESS_LOG_FORMAT, batches: [ok] }, 'resource'],
      ['resource null', body([ok], null), 'resource'],
      ['resource an array', body([ok], []), 'resource'],
      ['resource without attributes', body([ok], {}), 'resource'],
      [
        'resource without isthmus.region',
        body([ok], { attributes: [s('isthmus.source', 'proxy/gw@eu-west'), s('isthmus.zone', 'eu-west-a')] }),
        'resource',
      ],
      ['isthmus.region not a string', body([ok], { attributes: [i('isthmus.region', '1')] }), 'resource'],
      ['batches missing', { format: ACCESS_LOG_FORMAT, resource }, 'batches'],
      ['records instead of batches', { format: ACCESS_LOG_FORMAT, resource, records: [ok] }, 'batches'],
      ['batches an object', { ...body([]), batches: { 0: ok } }, 'batches'],
      ['batches null', { ...body([]), batches: null }, 'batches'],
      ['a batch not an array (second)', body([ok, { seq: 2 }]), 'batches[1]'],
      ['a batch a number', body([7]), 'batches[0]'],
      ['a batch with no record', body([ok, [2, 'p-']]), 'batches[1]'],
      ['a batch of its seq only', body([[2]]), 'batches[0]'],
      ['an empty batch', body([[]]), 'batches[0]'],
      ['seq 0', body([[0, 'p-', full()]]), 'batches[0][0]'],
      ['seq -1', body([[-1, 'p-', full()]]), 'batches[0][0]'],
      ['seq 1.5', body([[1.5, 'p-', full()]]), 'batches[0][0]'],
      ["seq '3'", body([['3', 'p-', full()]]), 'batches[0][0]'],
      ['seq null', body([[null, 'p-', full()]]), 'batches[0][0]'],
      ['no prefix: format 2 batch', body([[1, full(), bare()]]), 'batches[0][1] (prefix)'],
      ["prefix ''", body([[1, '', full()]]), 'batches[0][1] (prefix)'],
      ['prefix 7', body([[1, 7, full()]]), 'batches[0][1] (prefix)'],
      ['prefix null', body([[1, null, full()]]), 'batches[0][1] (prefix)'],
      ['prefix of 257 characters', body([[1, 'x'.repeat(257), full()]]), 'batches[0][1] (prefix)'],
      ['a record not an array', one({ startMs: 1 }), 'batches[0][3]'],
      ['a record null', one(null), 'batches[0][3]'],
      ['a record of 20 values', one(full().slice(0, 20)), 'batches[0][3]'],
      ['a record of 22 values', one([...full(), 'extra']), 'batches[0][3]'],
      ['a record spread into the batch', body([[1, 'p-', ...full()]]), 'batches[0][2]'],
    ];
    for (const [what, b, path] of cases) {
      const err = refusal(() => accessLogsToOtlp(b));
      assert.equal(err.path, path, `${what}: ${err.message}`);
      assert.equal(err.code, 'ISTHMUS_E_INVALID_VALUE', what);
    }
  });

  it('names the 21 values of a record when one has the wrong length', () => {
    const names =
      'startMs, durationUs, service, listener, route, method, path, authority, status, completed, ' +
      'attempts, servedBy, peerRegion, failover, fallback, traceId, spanId, requestId, client, userAgent, span';
    assert.equal(
      refusal(() => accessLogsToOtlp(one(full().slice(0, 20)))).message,
      `batches[0][3]: must be an array of 21 values (${names}), not 20`,
    );
    assert.equal(
      refusal(() => accessLogsToOtlp(one([...full(), null]))).message,
      `batches[0][3]: must be an array of 21 values (${names}), not 22`,
    );
    assert.equal(
      refusal(() => accessLogsToOtlp(one('r'))).message,
      `batches[0][3]: must be an array of 21 values (${names})`,
    );
    // The refusal of an unknown format names the forms a collector takes.
    const err = refusal(() => accessLogsToOtlp({ ...body([ok]), format: 'isthmus.access-log/4' }));
    assert.match(err.message, /isthmus\.access-log\/3/);
    assert.match(err.message, /isthmus\.access-log\/2/);
    assert.match(err.message, /isthmus\.access-log\/1/);
    assert.match(refusal(() => accessLogsToOtlp(body([ok], {}))).message, /isthmus\.region/);
  });

  it('refuses a field of the wrong type at its index, with its name', () => {
    const cases: [what: string, record: unknown[], path: string][] = [
      ['startMs negative', rec((r) => (r[0] = -1)), '[0] (startMs)'],
      ['startMs a string', rec((r) => (r[0] = '1700000000000')), '[0] (startMs)'],
      ['startMs not finite', rec((r) => (r[0] = Number.POSITIVE_INFINITY)), '[0] (startMs)'],
      ['startMs null', rec((r) => (r[0] = null)), '[0] (startMs)'],
      ['durationUs 1.5', rec((r) => (r[1] = 1.5)), '[1] (durationUs)'],
      ['durationUs -1', rec((r) => (r[1] = -1)), '[1] (durationUs)'],
      ['durationUs a string', rec((r) => (r[1] = '7')), '[1] (durationUs)'],
      ['service null', rec((r) => (r[2] = null)), '[2] (service)'],
      ['listener a number', rec((r) => (r[3] = 1)), '[3] (listener)'],
      ['route 7', rec((r) => (r[4] = 7)), '[4] (route)'],
      ['method null', rec((r) => (r[5] = null)), '[5] (method)'],
      ['path false', rec((r) => (r[6] = false)), '[6] (path)'],
      ['authority a number', rec((r) => (r[7] = 80)), '[7] (authority)'],
      ["status '200'", rec((r) => (r[8] = '200')), '[8] (status)'],
      ['status 200.5', rec((r) => (r[8] = 200.5)), '[8] (status)'],
      ['status null', rec((r) => (r[8] = null)), '[8] (status)'],
      ["completed 'yes'", rec((r) => (r[9] = 'yes')), '[9] (completed)'],
      ['completed null', rec((r) => (r[9] = null)), '[9] (completed)'],
      ['attempts -1', rec((r) => (r[10] = -1)), '[10] (attempts)'],
      ['attempts 1.5', rec((r) => (r[10] = 1.5)), '[10] (attempts)'],
      ['servedBy a number', rec((r) => (r[11] = 1)), '[11] (servedBy)'],
      ['peerRegion true', rec((r) => (r[12] = true)), '[12] (peerRegion)'],
      ['failover an array', rec((r) => (r[13] = [])), '[13] (failover)'],
      ['fallback an object', rec((r) => (r[14] = {})), '[14] (fallback)'],
      ['traceId upper-case', rec((r) => (r[15] = TRACE.toUpperCase())), '[15] (traceId)'],
      ['traceId short', rec((r) => (r[15] = TRACE.slice(1))), '[15] (traceId)'],
      ['traceId null', rec((r) => (r[15] = null)), '[15] (traceId)'],
      ['spanId too short', rec((r) => (r[16] = SPAN.slice(1))), '[16] (spanId)'],
      ['spanId not hex', rec((r) => (r[16] = 'zzzzzzzzzzzzzzzz')), '[16] (spanId)'],
      ['requestId null', rec((r) => (r[17] = null)), '[17] (requestId)'],
      ['client a number', rec((r) => (r[18] = 1)), '[18] (client)'],
      ['userAgent missing', rec((r) => (r[19] = undefined)), '[19] (userAgent)'],
      ["span 'x'", rec((r) => (r[20] = 'x')), '[20] (span)'],
      ['span true', rec((r) => (r[20] = true)), '[20] (span)'],
      ['span an object', rec((r) => (r[20] = { kind: 'server' })), '[20] (span)'],
      ['span missing', rec((r) => (r[20] = undefined)), '[20] (span)'],
      ['span of 4 values', rec((r) => (r[20] = ['server', null, null, false])), '[20] (span)'],
      ['span of 6 values', rec((r) => (r[20] = ['server', null, null, false, 1, 'x'])), '[20] (span)'],
      ['span empty', rec((r) => (r[20] = [])), '[20] (span)'],
      // Past the end of ECMAScript's time range there is no ISO timestamp to give it.
      ['start past the time range', rec((r) => ((r[0] = 1e16), (r[1] = 0))), '[0] (startMs)'],
      ['end past the time range', rec((r) => ((r[0] = 18_446_744_073_709), (r[1] = 1000))), '[0] (startMs)'],
      [
        'end 1 ms past the time range',
        rec((r) => ((r[0] = 18_446_744_073_709 - 1000), (r[1] = 1_001_000))),
        '[0] (startMs)',
      ],
    ];
    for (const [what, r, at] of cases) {
      const err = refusal(() => accessLogsToOtlp(one(r)));
      assert.equal(err.path, `batches[0][3]${at}`, `${what}: ${err.message}`);
      assert.equal(err.code, 'ISTHMUS_E_INVALID_VALUE', what);
    }
    // The same field in the first record of a second batch.
    const err = refusal(() => accessLogsToOtlp(body([ok, [2, 'p-', rec((r) => (r[8] = '200'))]])));
    assert.equal(err.path, 'batches[1][2][8] (status)');
    assert.equal(err.message, 'batches[1][2][8] (status): must be a non-negative integer');
    assert.equal(
      refusal(() => accessLogsToOtlp(one(rec((r) => (r[4] = 7))))).message,
      'batches[0][3][4] (route): must be a string or null',
    );
    assert.equal(
      refusal(() => accessLogsToOtlp(one(rec((r) => ((r[0] = 18_446_744_073_709), (r[1] = 1000)))))).message,
      'batches[0][3][0] (startMs): the record ends after the last time OTLP can hold (18446744073709 ms since the epoch, 2^64 − 1 ns): startMs plus the duration',
    );
  });

  it("refuses a bad value of the span's, naming the span's value under the span's index", () => {
    const cases: [what: string, record: unknown[], path: string][] = [
      ["kind 'internal'", span((x) => (x[0] = 'internal')), '[0] (kind)'],
      ['kind null', span((x) => (x[0] = null)), '[0] (kind)'],
      ['kind a number', span((x) => (x[0] = 2)), '[0] (kind)'],
      ['parentSpanId upper-case', span((x) => (x[1] = PARENT.toUpperCase())), '[1] (parentSpanId)'],
      ['parentSpanId short', span((x) => (x[1] = PARENT.slice(1))), '[1] (parentSpanId)'],
      ["parentSpanId ''", span((x) => (x[1] = '')), '[1] (parentSpanId)'],
      ['parentSpanId a number', span((x) => (x[1] = 1)), '[1] (parentSpanId)'],
      ['traceState 7', span((x) => (x[2] = 7)), '[2] (traceState)'],
      ['traceState too long', span((x) => (x[2] = 'a'.repeat(32 * 257 + 1))), '[2] (traceState)'],
      ['forced null', span((x) => (x[3] = null)), '[3] (forced)'],
      ["forced 'true'", span((x) => (x[3] = 'true')), '[3] (forced)'],
      ['adjustedCount -1', span((x) => (x[4] = -1)), '[4] (adjustedCount)'],
      ["adjustedCount '1'", span((x) => (x[4] = '1')), '[4] (adjustedCount)'],
      ['adjustedCount not finite', span((x) => (x[4] = Number.POSITIVE_INFINITY)), '[4] (adjustedCount)'],
      ['adjustedCount missing', span((x) => (x[4] = undefined)), '[4] (adjustedCount)'],
    ];
    for (const [what, r, at] of cases) {
      const err = refusal(() => accessLogsToOtlp(one(r)));
      assert.equal(err.path, `batches[0][3][20]${at}`, `${what}: ${err.message}`);
      assert.equal(err.code, 'ISTHMUS_E_INVALID_VALUE', what);
    }
  });

  it('takes nothing of a body whose last batch alone is bad', () => {
    const bad = [7, 'p-', full(), rec((r) => (r[17] = null))];
    let result: unknown = 'nothing';
    const err = refusal(() => {
      result = accessLogsToOtlp(body([ok, [2, 'q-', bare()], bad]));
    });
    assert.equal(err.path, 'batches[2][3][17] (requestId)');
    assert.equal(result, 'nothing');
    // The same body without its bad batch is accepted: the refusal is the last batch's alone.
    const { logs, traces } = accessLogsToOtlp(body([ok, [2, 'q-', bare()]]));
    assert.equal(parseLogs(logs).length, 3);
    assert.equal(parseTraces(traces).length, 1);
  });
});
