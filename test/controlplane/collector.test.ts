import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACCESS_LOG_FORMAT,
  ACCESS_LOG_FORMAT_V1,
  ACCESS_LOG_FORMAT_V2,
  accessLogSpanToOtlp,
  accessLogToOtlp,
  accessLogV2ToOtlp,
  type AccessLogTuple,
  type AccessLogTupleV2,
} from '../../src/telemetry/access-log.js';
import {
  ACCESS_LOG_BINARY_TYPE,
  AccessLogBatchWriter,
  accessLogBodyHead,
  factsOfTuple,
  writeAccessLogEntryHead,
} from '../../src/telemetry/access-log-binary.js';
import { addSeq, missingRanges, type SeqRanges } from '../../src/telemetry/continuity.js';
import { collectorHarness } from '../support/collector-harness.js';
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

const ALLOWED = ['timestamp', 'recordId', 'region', 'status', 'route'];

/** The 24 fields of a format-2 access-log record of request `i` (no seq). */
function accessLogFields(recordId: string, i: number, path: string, status: unknown): unknown[] {
  return [
    recordId,
    1_700_000_000_000 + i,
    2.5,
    'eu-west',
    'eu-west-a',
    'frontend',
    'outbound',
    'orders',
    'GET',
    path,
    'catalog',
    status,
    true,
    1,
    'eu-west/eu-west-a',
    null,
    null,
    null,
    traceIdOf(i),
    spanIdOf(i),
    true,
    `req-${i}`,
    '203.0.113.7',
    null,
  ];
}

describe('telemetry collector', () => {
  const { start, stop } = collectorHarness('isthmus-collector-', { logFieldsAllowedOut: ALLOWED });

  it('rejects garbage and malformed OTLP with the right status and stores nothing', async () => {
    const { url } = await start('reject', { maxBodyBytes: 64 * 1024 });
    const src = new TestSource('proxy/frontend-1@eu-west', 'eu-west');
    const badSpan = src.spans(2).body as {
      resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[];
    };
    const spans = badSpan.resourceSpans[0]?.scopeSpans[0]?.spans ?? [];
    (spans[1] as Record<string, unknown>).traceId = 'xyz';
    const cases: [string, string, unknown, string, number, string?][] = [
      ['garbage bytes', '/v1/traces', '\u0000\u0001{{not json', 'application/json', 400],
      ['protobuf', '/v1/traces', new Uint8Array([0x0a, 0x02, 0x08, 0x01]), 'application/x-protobuf', 415],
      ['too large', '/v1/logs', `{"resourceLogs":[],"pad":"${'x'.repeat(70_000)}"}`, 'application/json', 413],
      ['not an object', '/v1/metrics', '[1,2]', 'application/json', 400],
      [
        'bad trace id (first span valid)',
        '/v1/traces',
        badSpan,
        'application/json',
        400,
        'resourceSpans[0].scopeSpans[0].spans[1].traceId',
      ],
      [
        'time not nanos',
        '/v1/traces',
        {
          resourceSpans: [
            {
              scopeSpans: [
                {
                  spans: [
                    {
                      traceId: traceIdOf(1),
                      spanId: spanIdOf(1),
                      name: 'x',
                      startTimeUnixNano: '12:00',
                      endTimeUnixNano: '1',
                    },
                  ],
                },
              ],
            },
          ],
        },
        'application/json',
        400,
        'resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano',
      ],
      [
        'histogram buckets',
        '/v1/metrics',
        {
          resourceMetrics: [
            {
              scopeMetrics: [
                {
                  metrics: [
                    {
                      name: 'h',
                      histogram: {
                        dataPoints: [{ timeUnixNano: '1', bucketCounts: ['1'], explicitBounds: [1, 2] }],
                      },
                    },
                  ],
                },
              ],
            },
          ],
        },
        'application/json',
        400,
        'resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].bucketCounts',
      ],
      [
        'gauge without value',
        '/v1/metrics',
        {
          resourceMetrics: [
            { scopeMetrics: [{ metrics: [{ name: 'g', gauge: { dataPoints: [{ timeUnixNano: '1' }] } }] }] },
          ],
        },
        'application/json',
        400,
        'resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]',
      ],
      [
        'bad seq',
        '/v1/logs',
        {
          resourceLogs: [
            {
              scopeLogs: [
                { logRecords: [{ attributes: [{ key: 'isthmus.seq', value: { intValue: '-3' } }] }] },
              ],
            },
          ],
        },
        'application/json',
        400,
        'resourceLogs[0].scopeLogs[0].logRecords[0].attributes[isthmus.seq]',
      ],
      [
        'heartbeat without source',
        '/v1/heartbeat',
        { region: 'eu-west', emittedSeq: 3, sentAtMs: 1 },
        'application/json',
        400,
        'source',
      ],
      [
        'heartbeat with a loss of no known reason',
        '/v1/heartbeat',
        { source: 's', region: 'eu-west', emittedSeq: 3, sentAtMs: 1, lostSignals: { full: 1, eaten: 2 } },
        'application/json',
        400,
        'lostSignals.eaten',
      ],
      [
        'heartbeat with a negative loss',
        '/v1/heartbeat',
        { source: 's', region: 'eu-west', emittedSeq: 3, sentAtMs: 1, lostSignals: { torn: -1 } },
        'application/json',
        400,
        'lostSignals.torn',
      ],
      [
        'heartbeat with an instance that is not a name',
        '/v1/heartbeat',
        { source: 's', region: 'eu-west', emittedSeq: 3, sentAtMs: 1, instance: 'a b' },
        'application/json',
        400,
        'instance',
      ],
    ];
    for (const [what, p, body, type, status, problemPath] of cases) {
      const r = await post(url, p, body, type);
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(typeof r.body.message, 'string', what);
      if (problemPath) assert.equal(r.body.path, problemPath, `${what}: ${JSON.stringify(r.body)}`);
    }
    const summary = await get<Summary>(url, '/v1/summary');
    assert.deepEqual(summary.body.stored, { spans: 0, points: 0, logs: 0 });
    assert.equal((await get(url, `/v1/traces/${traceIdOf(1)}`)).status, 404);
    assert.deepEqual((await get<Continuity>(url, '/v1/continuity')).body.sources, []);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /isthmus_collector_rejected_total\{region="eu-west",signal="traces"\} 4/);
  });

  it('accepts a foreign OpenTelemetry request without isthmus attributes', async () => {
    const { url } = await start('foreign');
    const traceId = '5b8efff798038103d269b633813fc60c';
    const r = await post(url, '/v1/traces', {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'checkout' } }] },
          scopeSpans: [
            {
              scope: { name: 'my.library', version: '1.0.0' },
              spans: [
                {
                  traceId: traceId.toUpperCase(),
                  spanId: 'EEE19B7EC3C1B174',
                  parentSpanId: 'EEE19B7EC3C1B173',
                  name: 'I am a span!',
                  startTimeUnixNano: 1544712660000000000,
                  endTimeUnixNano: '1544712661000000000',
                  kind: 2,
                  attributes: [{ key: 'my.span.attr', value: { stringValue: 'some value' } }],
                },
              ],
            },
          ],
        },
      ],
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const logs = await post(url, '/v1/logs', {
      resourceLogs: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'checkout' } }] },
          scopeLogs: [
            {
              logRecords: [
                { observedTimeUnixNano: '1544712660300000000', body: { stringValue: 'Example log record' } },
              ],
            },
          ],
        },
      ],
    });
    assert.equal(logs.status, 200, JSON.stringify(logs.body));
    const trace = await get<{
      spans: Record<string, unknown>[];
      incomplete: boolean;
      missingParents: string[];
    }>(url, `/v1/traces/${traceId}`);
    assert.equal(trace.status, 200);
    assert.equal(trace.body.spans.length, 1);
    assert.equal(trace.body.spans[0]?.endTimeUnixNano, '1544712661000000000');
    assert.equal(trace.body.spans[0]?.source, 'otel/checkout');
    assert.equal(trace.body.incomplete, true);
    assert.deepEqual(trace.body.missingParents, ['eee19b7ec3c1b173']);
    const found = await get<{ records: unknown[] }>(url, '/v1/logs?contains=example');
    assert.equal(found.body.records.length, 1);
  });

  it('stores a batch sent twice once and counts the duplicates', async () => {
    const { url } = await start('dedupe');
    const src = new TestSource('proxy/frontend-1@eu-west', 'eu-west');
    const spans = src.spans(20);
    const logs = src.logs(10);
    const metrics = src.metrics(5);
    for (let round = 0; round < 2; round++) {
      assert.equal((await post(url, '/v1/traces', spans.body)).status, 200);
      assert.equal((await post(url, '/v1/logs', logs.body)).status, 200);
      assert.equal((await post(url, '/v1/metrics', metrics.body)).status, 200);
    }
    const summary = await get<Summary>(url, '/v1/summary');
    assert.deepEqual(summary.body.stored, { spans: 20, points: 10, logs: 10 });
    const c = (await get<Continuity>(url, '/v1/continuity')).body.sources[0];
    assert.equal(c?.received, 35);
    assert.equal(c?.emitted, 35);
    assert.equal(c?.gaps, 0);
    assert.equal(c?.duplicates, 20 + 10 + 10);
    const text = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      text,
      /isthmus_collector_duplicates_total\{region="eu-west",signal="traces",source="proxy\/frontend-1@eu-west"\} 20/,
    );
    // Original timestamps are kept.
    const series = await get<{ series: { name: string; points: { timeUnixNano: string }[] }[] }>(
      url,
      '/v1/metrics?name=isthmus.requests.inflight',
    );
    assert.equal(series.body.series.length, 1);
    assert.deepEqual(
      series.body.series[0]?.points.map((p) => p.timeUnixNano),
      metrics.seqs.map((s) => timeNsOf(s)),
    );
  });

  it('takes compact access logs of the record form (format 1) at /v1/access-logs: stored, deduplicated, checked', async () => {
    const { url } = await start('access-logs');
    const src = new TestSource('proxy/frontend-3@eu-west', 'eu-west');
    const record = (i: number, status: unknown = 200): unknown[] => [
      i,
      ...accessLogFields(`frontend-3-abc-${i}`, i, `/compact/${i}`, status),
    ];
    const body = (records: unknown[][], source = src) => ({
      format: ACCESS_LOG_FORMAT_V1,
      resource: source.resource,
      records,
    });
    const good = body([record(1), record(2, 503)]);
    for (let round = 0; round < 2; round++) {
      const r = await post(url, '/v1/access-logs', good);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const found = await get<{
      records: { recordId: string; source: string; record: Record<string, unknown> }[];
    }>(url, '/v1/logs?contains=/compact/');
    assert.equal(found.status, 200);
    const byId = new Map(found.body.records.map((x) => [x.recordId, x]));
    assert.deepEqual([...byId.keys()].sort(), ['frontend-3-abc-1', 'frontend-3-abc-2']);
    for (const i of [1, 2]) {
      const stored = byId.get(`frontend-3-abc-${i}`);
      assert.equal(stored?.source, 'proxy/frontend-3@eu-west');
      // Stored as the OTLP record of the compact one: attributes, severity, body, ids, times.
      const [seq, ...tuple] = record(i, i === 2 ? 503 : 200) as [number, ...AccessLogTupleV2];
      assert.deepEqual(stored?.record, accessLogV2ToOtlp(seq, tuple));
    }
    assert.deepEqual(byId.get('frontend-3-abc-2')?.record.body, { stringValue: 'GET /compact/2 503' });
    assert.equal(byId.get('frontend-3-abc-2')?.record.severityText, 'ERROR');
    assert.deepEqual((await get<Summary>(url, '/v1/summary')).body.stored, { spans: 0, points: 0, logs: 2 });
    let c = (await get<Continuity>(url, '/v1/continuity')).body.sources;
    assert.equal(c.length, 1);
    assert.equal(c[0]?.source, 'proxy/frontend-3@eu-west');
    assert.equal(c[0]?.received, 2);
    assert.equal(c[0]?.duplicates, 2);
    assert.equal(c[0]?.gaps, 0);
    let text = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      text,
      /isthmus_collector_duplicates_total\{region="eu-west",signal="logs",source="proxy\/frontend-3@eu-west"\} 2/,
    );
    assert.match(
      text,
      /isthmus_collector_received_total\{region="eu-west",signal="logs",source="proxy\/frontend-3@eu-west"\} 2/,
    );

    // Malformed: 400 naming the part, and nothing of the body is stored (not even its valid records).
    const other = new TestSource('proxy/frontend-4@eu-west', 'eu-west');
    const cases: [unknown, string][] = [
      [body([record(1, '200')], other), 'records[0][12] (status)'],
      [body([record(3), record(4, '200')]), 'records[1][12] (status)'],
      [{ ...body([record(5)], other), format: 'otlp' }, 'format'],
    ];
    for (const [bad, path] of cases) {
      const r = await post(url, '/v1/access-logs', bad);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.path, path);
      assert.equal(r.body.error, 'ISTHMUS_E_INVALID_VALUE');
      assert.equal(typeof r.body.message, 'string');
    }
    assert.deepEqual((await get<Summary>(url, '/v1/summary')).body.stored, { spans: 0, points: 0, logs: 2 });
    c = (await get<Continuity>(url, '/v1/continuity')).body.sources;
    assert.deepEqual(
      c.map((s) => [s.source, s.received]),
      [['proxy/frontend-3@eu-west', 2]],
    );
    assert.equal(
      (await get<{ records: unknown[] }>(url, '/v1/logs?contains=/compact/')).body.records.length,
      2,
    );
    text = await (await fetch(`${url}/metrics`)).text();
    assert.match(text, /isthmus_collector_rejected_total\{region="eu-west",signal="logs"\} 3/);
  });

  it('takes batches of compact access logs of format 2: every record stored, one seq a batch', async () => {
    const { url } = await start('access-log-batches');
    const src = new TestSource('proxy/frontend-5@eu-west', 'eu-west');
    /** An access-log record (no seq) of request `i`. */
    const record = (i: number, status: unknown = 200): unknown[] =>
      accessLogFields(`frontend-5-abc-${i}`, i, `/batch/${i}`, status);
    const body = (batches: unknown[][], source = src) => ({
      format: ACCESS_LOG_FORMAT_V2,
      resource: source.resource,
      batches,
    });
    /** Request number → the seq its record was sent with. */
    const seqOf = new Map<number, number>([
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 2],
    ]);
    const good = body([
      [1, record(1), record(2), record(3, 503)],
      [2, record(4)],
    ]);
    // The same batches twice, as a source resends after a lost answer.
    for (let round = 0; round < 2; round++) {
      const r = await post(url, '/v1/access-logs', good);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    type Found = { records: { recordId: string; source: string; record: Record<string, unknown> }[] };
    const stored = async () => {
      const found = await get<Found>(url, '/v1/logs?contains=/batch/');
      assert.equal(found.status, 200);
      return new Map(found.body.records.map((x) => [x.recordId, x]));
    };
    let byId = await stored();
    assert.deepEqual(
      [...byId.keys()].sort(),
      [1, 2, 3, 4].map((i) => `frontend-5-abc-${i}`),
    );
    for (const [i, seq] of seqOf) {
      const x = byId.get(`frontend-5-abc-${i}`);
      assert.equal(x?.source, 'proxy/frontend-5@eu-west');
      // The OTLP record of each, with its batch's seq.
      assert.deepEqual(x?.record, accessLogV2ToOtlp(seq, record(i, i === 3 ? 503 : 200) as AccessLogTupleV2));
    }
    assert.equal(byId.get('frontend-5-abc-3')?.record.severityText, 'ERROR');
    assert.deepEqual((await get<Summary>(url, '/v1/summary')).body.stored, { spans: 0, points: 0, logs: 4 });
    // Continuity counts seqs: two batches are two seqs received, whatever their records.
    const continuity = async () => {
      const c = (await get<Continuity>(url, '/v1/continuity')).body.sources;
      assert.equal(c.length, 1);
      assert.equal(c[0]?.source, 'proxy/frontend-5@eu-west');
      return c[0];
    };
    let c = await continuity();
    assert.equal(c?.received, 2);
    assert.equal(c?.emitted, 2);
    assert.equal(c?.gaps, 0);
    // Duplicates are records: the four of the second post.
    assert.equal(c?.duplicates, 4);
    const text = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      text,
      /isthmus_collector_received_total\{region="eu-west",signal="logs",source="proxy\/frontend-5@eu-west"\} 4/,
    );
    assert.match(
      text,
      /isthmus_collector_duplicates_total\{region="eu-west",signal="logs",source="proxy\/frontend-5@eu-west"\} 4/,
    );

    // The record form is still taken from an earlier source, next to batches.
    const v1 = await post(url, '/v1/access-logs', {
      format: ACCESS_LOG_FORMAT_V1,
      resource: src.resource,
      records: [[4, ...record(6)]],
    });
    assert.equal(v1.status, 200, JSON.stringify(v1.body));
    assert.equal((await post(url, '/v1/access-logs', body([[3, record(5), record(7)]]))).status, 200);
    byId = await stored();
    assert.equal(byId.size, 7);
    assert.deepEqual(
      byId.get('frontend-5-abc-6')?.record,
      accessLogV2ToOtlp(4, record(6) as AccessLogTupleV2),
    );
    assert.deepEqual(
      byId.get('frontend-5-abc-7')?.record,
      accessLogV2ToOtlp(3, record(7) as AccessLogTupleV2),
    );
    c = await continuity();
    assert.deepEqual([c?.received, c?.emitted, c?.gaps, c?.duplicates], [4, 4, 0, 4]);

    // Malformed: 400 naming the batch, record and field; nothing of the body is stored.
    const cases: [unknown, string][] = [
      [
        body([
          [5, record(8)],
          [6, record(9), record(10, '200')],
        ]),
        'batches[1][2][11] (status)',
      ],
      [body([[5, record(8)], [6]]), 'batches[1]'],
      [body([[0, record(8)]]), 'batches[0][0]'],
      [body([[5, [5, ...record(8)]]]), 'batches[0][1]'],
      [{ format: ACCESS_LOG_FORMAT_V2, resource: src.resource, records: [[5, ...record(8)]] }, 'batches'],
      [{ ...body([[5, record(8)]]), format: 'isthmus.access-log/4' }, 'format'],
    ];
    for (const [bad, path] of cases) {
      const r = await post(url, '/v1/access-logs', bad);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.path, path);
      assert.equal(r.body.error, 'ISTHMUS_E_INVALID_VALUE');
    }
    assert.equal((await stored()).size, 7);
    c = await continuity();
    assert.deepEqual([c?.received, c?.emitted, c?.gaps, c?.duplicates], [4, 4, 0, 4]);
    assert.deepEqual((await get<Summary>(url, '/v1/summary')).body.stored, { spans: 0, points: 0, logs: 7 });
  });

  it('takes batches of format 3: log records with ids from the batch, and the spans of sampled records', async () => {
    const { url } = await start('access-logs-v3');
    const src = new TestSource('proxy/frontend-6@eu-west', 'eu-west');
    /** A format-3 record of request `i`; sampled ones carry their span's facts. */
    const record = (i: number, sampled: boolean, status: unknown = 200): unknown[] => [
      1_700_000_000_000 + i,
      2500,
      'frontend',
      'outbound',
      'orders',
      'GET',
      `/v3/${i}`,
      'catalog',
      status,
      true,
      1,
      'eu-west/eu-west-a',
      null,
      null,
      null,
      traceIdOf(i),
      spanIdOf(i),
      `req-${i}`,
      '203.0.113.7',
      null,
      sampled ? ['client', null, null, false, 4] : null,
    ];
    const body = (batches: unknown[][], resource: unknown = src.resource) => ({
      format: ACCESS_LOG_FORMAT,
      resource,
      batches,
    });
    const good = body([
      [1, 'f6-', record(1, false), record(2, true), record(3, true, 503)],
      [2, 'f6-', record(4, false)],
    ]);
    for (let round = 0; round < 2; round++) {
      const r = await post(url, '/v1/access-logs', good);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    type Found = { records: { recordId: string; source: string; record: Record<string, unknown> }[] };
    const stored = async () =>
      new Map((await get<Found>(url, '/v1/logs?contains=/v3/')).body.records.map((x) => [x.recordId, x]));
    const byId = await stored();
    assert.deepEqual([...byId.keys()].sort(), ['f6-1.0', 'f6-1.1', 'f6-1.2', 'f6-2.0']);
    const where = { region: 'eu-west', zone: 'eu-west-a' };
    const expected: [id: string, seq: number, i: number, sampled: boolean][] = [
      ['f6-1.0', 1, 1, false],
      ['f6-1.1', 1, 2, true],
      ['f6-1.2', 1, 3, true],
      ['f6-2.0', 2, 4, false],
    ];
    for (const [id, seq, i, sampled] of expected) {
      const tuple = record(i, sampled, i === 3 ? 503 : 200) as AccessLogTuple;
      assert.deepEqual(byId.get(id)?.record, accessLogToOtlp(seq, id, where, tuple), id);
    }
    // The sampled two are spans as well, as the proxy would have sent them.
    for (const i of [2, 3]) {
      const trace = await get<{ spans: Record<string, unknown>[] }>(url, `/v1/traces/${traceIdOf(i)}`);
      assert.equal(trace.status, 200);
      assert.equal(trace.body.spans.length, 1);
      const want = accessLogSpanToOtlp(1, record(i, true, i === 3 ? 503 : 200) as AccessLogTuple);
      assert.equal(trace.body.spans[0]?.name, want?.name);
      assert.equal(trace.body.spans[0]?.spanId, spanIdOf(i));
      assert.deepEqual(trace.body.spans[0]?.status, i === 3 ? { code: 2 } : { code: 0 });
    }
    assert.equal((await get(url, `/v1/traces/${traceIdOf(1)}`)).status, 404);
    assert.deepEqual((await get<Summary>(url, '/v1/summary')).body.stored, { spans: 2, points: 0, logs: 4 });
    // Continuity: two seqs; the second post's four records and two spans are duplicates.
    const c = (await get<Continuity>(url, '/v1/continuity')).body.sources;
    assert.deepEqual(
      c.map((x) => [x.source, x.received, x.emitted, x.gaps, x.duplicates]),
      [['proxy/frontend-6@eu-west', 2, 2, 0, 6]],
    );

    // Malformed: 400 naming the part; nothing of the body is stored, neither records nor spans.
    const noRegion = {
      attributes: [{ key: 'isthmus.source', value: { stringValue: 'proxy/frontend-6@eu-west' } }],
    };
    const badSpan = record(9, true);
    badSpan[20] = ['internal', null, null, false, 1];
    const cases: [unknown, string][] = [
      [body([[3, 'f6-', record(7, true), badSpan]]), 'batches[0][3][20][0] (kind)'],
      [body([[3, '', record(7, true)]]), 'batches[0][1] (prefix)'],
      [body([[3, 'f6-', record(7, true, '200')]]), 'batches[0][2][8] (status)'],
      [body([[3, 'f6-', record(7, true)]], noRegion), 'resource'],
    ];
    for (const [bad, path] of cases) {
      const r = await post(url, '/v1/access-logs', bad);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.path, path);
      assert.equal(r.body.error, 'ISTHMUS_E_INVALID_VALUE');
    }
    assert.equal((await stored()).size, 4);
    assert.equal((await get(url, `/v1/traces/${traceIdOf(7)}`)).status, 404);
    assert.deepEqual((await get<Summary>(url, '/v1/summary')).body.stored, { spans: 2, points: 0, logs: 4 });
  });

  it('takes binary batches (format 4) as the format-3 batches they stand for; refuses a malformed one whole', async () => {
    const { url } = await start('access-logs-v4');
    const src = new TestSource('proxy/frontend-7@eu-west', 'eu-west');
    const record = (i: number, sampled: boolean): AccessLogTuple => [
      1_700_000_000_000 + i,
      1500 + i,
      'frontend',
      'outbound',
      'orders',
      'GET',
      `/v4/${i}`,
      'catalog',
      200,
      true,
      1,
      'eu-west/eu-west-a',
      'eu-west',
      null,
      null,
      traceIdOf(i),
      spanIdOf(i),
      `req-${i}`,
      '203.0.113.7',
      'curl/8',
      sampled ? ['client', spanIdOf(100 + i), 'ot=th:8', false, 2] : null,
    ];
    const batch = (prefix: string, tuples: AccessLogTuple[]): Buffer => {
      const w = new AccessLogBatchWriter(prefix);
      for (const t of tuples) w.record(factsOfTuple(t));
      return Buffer.from(w.take() as Buffer);
    };
    const body = (entries: [seq: number, bytes: Buffer][], resource: unknown = src.resource): Buffer => {
      const head = accessLogBodyHead(JSON.stringify(resource));
      const parts = [head];
      for (const [seq, bytes] of entries) {
        const h = Buffer.alloc(16);
        parts.push(h.subarray(0, writeAccessLogEntryHead(h, 0, seq, bytes.length)), bytes);
      }
      return Buffer.concat(parts);
    };
    const first = [record(1, false), record(2, true), record(3, false)];
    const good = body([
      [1, batch('f7-', first)],
      [2, batch('f7-', [record(4, true)])],
    ]);
    for (let round = 0; round < 2; round++) {
      const r = await post(url, '/v1/access-logs', good, ACCESS_LOG_BINARY_TYPE);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    type Found = { records: { recordId: string; record: Record<string, unknown> }[] };
    const stored = async () =>
      new Map((await get<Found>(url, '/v1/logs?contains=/v4/')).body.records.map((x) => [x.recordId, x]));
    const byId = await stored();
    const where = { region: 'eu-west', zone: 'eu-west-a' };
    const expected: [id: string, seq: number, t: AccessLogTuple][] = [
      ['f7-1.0', 1, first[0] as AccessLogTuple],
      ['f7-1.1', 1, first[1] as AccessLogTuple],
      ['f7-1.2', 1, first[2] as AccessLogTuple],
      ['f7-2.0', 2, record(4, true)],
    ];
    assert.deepEqual(
      [...byId.keys()].sort(),
      expected.map((e) => e[0]),
    );
    for (const [id, seq, t] of expected)
      assert.deepEqual(byId.get(id)?.record, accessLogToOtlp(seq, id, where, t), id);
    for (const i of [2, 4]) {
      const trace = await get<{ spans: Record<string, unknown>[] }>(url, `/v1/traces/${traceIdOf(i)}`);
      assert.equal(trace.status, 200);
      assert.equal(trace.body.spans[0]?.parentSpanId, spanIdOf(100 + i));
    }
    const c = (await get<Continuity>(url, '/v1/continuity')).body.sources;
    assert.deepEqual(
      c.map((x) => [x.source, x.received, x.emitted, x.gaps, x.duplicates]),
      [['proxy/frontend-7@eu-west', 2, 2, 0, 6]],
    );

    // Malformed: 400 naming the part, or 415 for another media type; nothing of the body is kept.
    const bad3 = batch('f7-', [record(9, true)]);
    const truncated = body([[3, bad3]]).subarray(0, -5);
    const cases: [Buffer, string, number, string | undefined][] = [
      [Buffer.from('ISAL\x05'), ACCESS_LOG_BINARY_TYPE, 400, 'magic'],
      [Buffer.from('{"format":"isthmus.access-log/3"}'), ACCESS_LOG_BINARY_TYPE, 400, 'magic'],
      [truncated, ACCESS_LOG_BINARY_TYPE, 400, undefined],
      // Decoded fine, refused by the checks of format 3.
      [body([[3, batch('', [record(8, false)])]]), ACCESS_LOG_BINARY_TYPE, 400, 'batches[0][1] (prefix)'],
      [body([[3, bad3]]), 'application/octet-stream', 415, undefined],
    ];
    for (const [bad, type, status, path] of cases) {
      const r = await post(url, '/v1/access-logs', bad, type);
      assert.equal(r.status, status, JSON.stringify(r.body));
      if (path !== undefined) assert.equal(r.body.path, path, JSON.stringify(r.body));
      else if (status === 400) assert.match(String(r.body.path), /^batches\[0\]/, JSON.stringify(r.body));
    }
    assert.equal((await stored()).size, 4);
    assert.equal((await get(url, `/v1/traces/${traceIdOf(9)}`)).status, 404);
  });

  it('keeps continuity across a restart: gaps, heartbeats, stale sources', async () => {
    const first = await start('continuity', { heartbeatIntervalMs: 100 });
    const src = new TestSource('proxy/frontend-2@eu-west', 'eu-west');
    await post(first.url, '/v1/traces', src.spans(5).body);
    src.spans(3); // seqs 6..8 lost on the way
    await post(first.url, '/v1/traces', src.spans(2).body);
    assert.equal(
      (await post(first.url, '/v1/heartbeat', { ...src.heartbeat(), emittedSeq: 12 })).status,
      200,
    );
    // What the source says it lost, per process: counts are cumulative, so a late heartbeat with
    // lower ones changes nothing, and two processes add up.
    const lost = async (instance: string, lostSignals: Record<string, number>) =>
      assert.equal(
        (
          await post(first.url, '/v1/heartbeat', {
            ...src.heartbeat(),
            emittedSeq: 12,
            instance,
            lostSignals,
          })
        ).status,
        200,
      );
    await lost('a1', { full: 100, rejected: 4 });
    await lost('a1', { full: 50 });
    await lost('b2', { torn: 1 });
    const expectedLoss = { full: 100, corrupt: 0, torn: 1, rejected: 4, total: 105 };
    let c = (await get<Continuity & { sources: { missing: number[][] }[] }>(first.url, '/v1/continuity')).body
      .sources[0];
    assert.equal(c?.emitted, 12);
    assert.equal(c?.received, 7);
    assert.equal(c?.gaps, 5);
    assert.deepEqual(c?.missing, [
      [6, 8],
      [11, 12],
    ]);
    assert.equal(c?.stale, false);
    assert.deepEqual(c?.lostAtSource, expectedLoss);
    await stop(first.c);
    await new Promise((r) => setTimeout(r, 250));
    const second = await start('continuity', { heartbeatIntervalMs: 100 });
    c = (await get<Continuity & { sources: { missing: number[][] }[] }>(second.url, '/v1/continuity')).body
      .sources[0];
    assert.equal(c?.gaps, 5, 'the accounting survives a restart');
    assert.deepEqual(c?.lostAtSource, expectedLoss, 'and so do the losses the source counted');
    assert.equal(c?.stale, true, 'silent for two heartbeat intervals');
    assert.notEqual(c?.lastHeardMs, null);
    const sources = await get<{ sources: { source: string; stale: boolean }[] }>(second.url, '/v1/sources');
    assert.deepEqual(sources.body.sources, [
      {
        source: 'proxy/frontend-2@eu-west',
        region: 'eu-west',
        zone: 'eu-west-a',
        lastHeardMs: c?.lastHeardMs,
        stale: true,
      },
    ]);
    // The region is stale with its last-heard time, and its figures are those as of then.
    const regions = await get<{ regions: Record<string, unknown>[] }>(second.url, '/v1/regions');
    assert.deepEqual(
      regions.body.regions.map(({ lastHeardAgoMs: _ago, ...r }) => r),
      [
        {
          region: 'eu-west',
          sources: 1,
          staleSources: 1,
          state: 'stale',
          lastHeardMs: c?.lastHeardMs,
          emitted: 12,
          received: 7,
          gaps: 5,
          duplicates: 0,
          lostAtSource: 105,
        },
      ],
    );
  });

  it('federates log searches, redacts them, and names the regions that did not answer', async () => {
    const eu = await start('fed-eu', { region: 'eu-west' });
    const us = await start('fed-us', { region: 'us-east' });
    const ap = await start('fed-ap', { region: 'ap-south' });
    const srcEu = new TestSource('proxy/a@eu-west', 'eu-west');
    const srcUs = new TestSource('proxy/b@us-east', 'us-east');
    assert.equal((await post(eu.url, '/v1/logs', srcEu.logs(3).body)).status, 200);
    assert.equal((await post(us.url, '/v1/logs', srcUs.logs(2).body)).status, 200);
    await stop(ap.c);
    const global = await start('fed-global', {
      region: 'global',
      regions: { 'eu-west': eu.url, 'us-east': us.url, 'ap-south': ap.url },
      federationTimeoutMs: 1_000,
    });
    // Locally, a region collector shows every field.
    const local = await get<{ records: { record: { attributes: { key: string }[] } }[] }>(
      eu.url,
      '/v1/logs?contains=alice',
    );
    assert.equal(local.body.records.length, 3);
    assert.ok(local.body.records[0]?.record.attributes.some((a) => a.key === 'path'));

    const r = await get<{
      partial: boolean;
      unanswered: string[];
      records: {
        region: string;
        record: { body?: unknown; traceId?: unknown; attributes: { key: string }[] };
      }[];
    }>(global.url, '/v1/logs?contains=ALICE&limit=50');
    assert.equal(r.status, 200);
    assert.equal(r.body.partial, true);
    assert.deepEqual(r.body.unanswered, ['ap-south']);
    assert.equal(r.body.records.length, 5);
    assert.deepEqual([...new Set(r.body.records.map((x) => x.region))].sort(), ['eu-west', 'us-east']);
    for (const x of r.body.records) {
      assert.equal(x.record.body, undefined, 'the body stays in the region');
      assert.deepEqual(x.record.attributes.map((a) => a.key).sort(), [
        'isthmus.record_id',
        'isthmus.seq',
        'route',
        'status',
      ]);
    }
  });

  it('keeps seq ranges compact', () => {
    const ranges: SeqRanges = [];
    for (const s of [5, 1, 3, 2, 4, 9, 7, 8, 12]) assert.equal(addSeq(ranges, s), true);
    assert.equal(addSeq(ranges, 3), false);
    assert.deepEqual(ranges, [
      [1, 5],
      [7, 9],
      [12, 12],
    ]);
    assert.deepEqual(missingRanges(ranges, 14), [
      [6, 6],
      [10, 11],
      [13, 14],
    ]);
  });
});
