import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACCESS_LOG_FIELDS_V2 as ACCESS_LOG_FIELDS,
  ACCESS_LOG_FORMAT_V2 as ACCESS_LOG_FORMAT,
  ACCESS_LOG_FORMAT_V1,
  accessLogsToOtlp as toOtlp,
  accessLogV2ToOtlp as accessLogToOtlp,
  checkAccessLog,
  checkAccessLogBatchV2 as checkAccessLogBatch,
  type AccessLogTupleV2 as AccessLogTuple,
} from '../../src/telemetry/access-log.js';
import { msToNanos, OtlpError, parseLogs } from '../../src/telemetry/otlp.js';

/** The logs body a format-1 or format-2 body stands for (those formats carry no spans). */
function accessLogsToOtlp(body: unknown) {
  const otlp = toOtlp(body);
  assert.equal(otlp.traces, undefined);
  return otlp.logs;
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
/** 2023-11-14T22:13:20.000Z, plus a quarter of a millisecond (exact in binary). */
const START_MS = 1_700_000_000_000.25;

/** A record with every optional field set. */
const full = (): AccessLogTuple => [
  'gw-eu-west-0a1b2c-7',
  START_MS,
  12.5,
  'eu-west',
  'eu-west-a',
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
  true,
  'req-42',
  '203.0.113.7',
  'curl/8.5.0',
];

/** A record with every optional field null. */
const bare = (): AccessLogTuple => [
  'sc-1',
  1_700_000_000_000,
  7,
  'us-east',
  'us-east-b',
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
  false,
  'req-1',
  null,
  null,
];

const s = (key: string, stringValue: string) => ({ key, value: { stringValue } });
const i = (key: string, intValue: string) => ({ key, value: { intValue } });
const b = (key: string, boolValue: boolean) => ({ key, value: { boolValue } });

const resource = {
  attributes: [
    s('service.name', 'catalog'),
    s('isthmus.source', 'proxy/gw@eu-west'),
    s('isthmus.region', 'eu-west'),
    s('isthmus.zone', 'eu-west-a'),
  ],
};
/** A body of the one-record-per-seq form (`/1`): `records`, each `[seq, ...fields]`. */
const body = (records: unknown[]): Record<string, unknown> => ({
  format: ACCESS_LOG_FORMAT_V1,
  resource,
  records,
});
/** A body of the batch form (`/2`): `batches`, each `[seq, record, record, …]`. */
const batchBody = (batches: unknown[]): Record<string, unknown> => ({
  format: ACCESS_LOG_FORMAT,
  resource,
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

describe('access-log records, formats 1 and 2 (sources from before format 3)', () => {
  it('has 24 fields, in the order of the tuple', () => {
    assert.equal(ACCESS_LOG_FIELDS.length, 24);
    assert.equal(full().length, 24);
    assert.deepEqual(
      ACCESS_LOG_FIELDS.map((f) => f.name),
      [
        'recordId',
        'startMs',
        'durationMs',
        'region',
        'zone',
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
        'sampled',
        'requestId',
        'client',
        'userAgent',
      ],
    );
  });

  it('becomes the OTLP log record: attributes in order with their types, severity, body, ids, time', () => {
    const rec = accessLogToOtlp(17, full());
    assert.deepEqual(rec.attributes, [
      i('isthmus.seq', '17'),
      s('isthmus.record_id', 'gw-eu-west-0a1b2c-7'),
      s('recordId', 'gw-eu-west-0a1b2c-7'),
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
      { key: 'durationMs', value: { doubleValue: 12.5 } },
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
    // Exactly these keys: nothing else (no stray field) on the record.
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

  it('leaves null fields out, writes an integer duration as intValue, and "/" for no path', () => {
    const rec = accessLogToOtlp(1, bare());
    assert.deepEqual(rec.attributes, [
      i('isthmus.seq', '1'),
      s('isthmus.record_id', 'sc-1'),
      s('recordId', 'sc-1'),
      s('timestamp', '2023-11-14T22:13:20.000Z'),
      s('region', 'us-east'),
      s('zone', 'us-east-b'),
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
      t[11] = status;
      t[12] = completed;
      const rec = accessLogToOtlp(1, t);
      assert.equal(rec.severityText, text, `${status} completed=${completed}`);
      assert.equal(rec.severityNumber, number, `${status} completed=${completed}`);
      assert.deepEqual(rec.body, { stringValue: `GET /users/alice?x="1" ${status}` });
    }
  });

  it('names the batch form as the format a source sends, and the record form as the earlier one', () => {
    assert.equal(ACCESS_LOG_FORMAT, 'isthmus.access-log/2');
    assert.equal(ACCESS_LOG_FORMAT_V1, 'isthmus.access-log/1');
  });

  it("turns a batch body into an OTLP logs body: every record of a batch with the batch's seq", () => {
    const third = full();
    third[0] = 'gw-eu-west-0a1b2c-8';
    third[11] = 503;
    const otlp = accessLogsToOtlp(
      batchBody([
        [5, full(), bare()],
        [9, third],
      ]),
    );
    const items = parseLogs(otlp);
    assert.deepEqual(
      items.map((x) => [x.seq, x.recordId, x.source, x.region, x.zone, x.timeNs]),
      [
        [5, 'gw-eu-west-0a1b2c-7', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000012750000'],
        [5, 'sc-1', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000007000000'],
        [9, 'gw-eu-west-0a1b2c-8', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000012750000'],
      ],
    );
    const rl = (otlp.resourceLogs as { resource: unknown; scopeLogs: { logRecords: unknown[] }[] }[])[0];
    assert.equal((otlp.resourceLogs as unknown[]).length, 1);
    assert.deepEqual(rl?.resource, resource);
    assert.deepEqual(rl?.scopeLogs[0]?.logRecords, [
      accessLogToOtlp(5, full()),
      accessLogToOtlp(5, bare()),
      accessLogToOtlp(9, third),
    ]);
    // No batches is a valid, empty OTLP body.
    assert.deepEqual(parseLogs(accessLogsToOtlp(batchBody([]))), []);
    // checkAccessLogBatch gives the seq and the records back, in order.
    assert.deepEqual(checkAccessLogBatch([9, full(), bare()], 'b'), { seq: 9, tuples: [full(), bare()] });
    assert.deepEqual(checkAccessLogBatch([1, bare()], 'b'), { seq: 1, tuples: [bare()] });
  });

  it('still takes the record form (format 1) of earlier sources, seq and record id intact', () => {
    const otlp = accessLogsToOtlp(
      body([
        [5, ...full()],
        [6, ...bare()],
      ]),
    );
    const items = parseLogs(otlp);
    assert.deepEqual(
      items.map((x) => [x.seq, x.recordId, x.source, x.region, x.zone, x.timeNs]),
      [
        [5, 'gw-eu-west-0a1b2c-7', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000012750000'],
        [6, 'sc-1', 'proxy/gw@eu-west', 'eu-west', 'eu-west-a', '1700000000007000000'],
      ],
    );
    const rl = (otlp.resourceLogs as { resource: unknown; scopeLogs: { logRecords: unknown[] }[] }[])[0];
    assert.deepEqual(rl?.resource, resource);
    assert.deepEqual(rl?.scopeLogs[0]?.logRecords, [accessLogToOtlp(5, full()), accessLogToOtlp(6, bare())]);
    // An empty batch is a valid, empty OTLP body.
    assert.deepEqual(parseLogs(accessLogsToOtlp(body([]))), []);
    // checkAccessLog gives the seq and the fields back.
    assert.deepEqual(checkAccessLog([9, ...full()], 'r'), { seq: 9, tuple: full() });
  });

  it('refuses a malformed body, naming the offending part', () => {
    const rec = (patch: (r: unknown[]) => void): unknown[] => {
      const r: unknown[] = [1, ...full()];
      patch(r);
      return r;
    };
    const valid = [1, ...full()];
    const cases: [what: string, body: unknown, path: string][] = [
      ['not an object', [valid], ''],
      ['null', null, ''],
      ['unknown format', { ...body([valid]), format: 'isthmus.access-log/4' }, 'format'],
      ['no format', { resource, records: [valid] }, 'format'],
      [
        'format 1 with batches instead of records',
        { ...body([]), records: undefined, batches: [] },
        'records',
      ],
      ['resource null', { ...body([valid]), resource: null }, 'resource'],
      ['resource an array', { ...body([valid]), resource: [] }, 'resource'],
      ['resource a string', { ...body([valid]), resource: 'frontend' }, 'resource'],
      ['records an object', { ...body([]), records: { 0: valid } }, 'records'],
      ['records missing', { format: ACCESS_LOG_FORMAT_V1, resource }, 'records'],
      ['a record not an array', body([valid, { seq: 2 }]), 'records[1]'],
      ['a record without its seq', body([full()]), 'records[0]'],
      ['a record too long', body([[...valid, 'extra']]), 'records[0]'],
      ['seq 0', body([rec((r) => (r[0] = 0))]), 'records[0][0]'],
      ['seq negative', body([rec((r) => (r[0] = -1))]), 'records[0][0]'],
      ['seq not an integer', body([rec((r) => (r[0] = 1.5))]), 'records[0][0]'],
      ['seq a string', body([rec((r) => (r[0] = '1'))]), 'records[0][0]'],
      [
        'status a string (third record)',
        body([valid, valid, rec((r) => (r[12] = '200'))]),
        'records[2][12] (status)',
      ],
      ['status fractional', body([rec((r) => (r[12] = 200.5))]), 'records[0][12] (status)'],
      ['trace id upper-case', body([rec((r) => (r[19] = TRACE.toUpperCase()))]), 'records[0][19] (traceId)'],
      ['trace id short', body([rec((r) => (r[19] = TRACE.slice(1)))]), 'records[0][19] (traceId)'],
      ['span id not hex', body([rec((r) => (r[20] = 'zzzzzzzzzzzzzzzz'))]), 'records[0][20] (spanId)'],
      ['region null', body([rec((r) => (r[4] = null))]), 'records[0][4] (region)'],
      ['method null', body([rec((r) => (r[9] = null))]), 'records[0][9] (method)'],
      ['status null', body([rec((r) => (r[12] = null))]), 'records[0][12] (status)'],
      ['recordId a number', body([rec((r) => (r[1] = 7))]), 'records[0][1] (recordId)'],
      ['duration negative', body([rec((r) => (r[3] = -1))]), 'records[0][3] (durationMs)'],
      ['start a string', body([rec((r) => (r[2] = '1700000000000'))]), 'records[0][2] (startMs)'],
      ['start not finite', body([rec((r) => (r[2] = Number.POSITIVE_INFINITY))]), 'records[0][2] (startMs)'],
      // Past the end of ECMAScript's time range there is no ISO timestamp to give it.
      ['start past the time range', body([rec((r) => (r[2] = 1e16))]), 'records[0][2] (startMs)'],
      [
        'end past the time range',
        body([rec((r) => ((r[2] = 18_446_744_073_709), (r[3] = 1)))]),
        'records[0][2] (startMs)',
      ],
      ['completed a string', body([rec((r) => (r[13] = 'true'))]), 'records[0][13] (completed)'],
      ['attempts fractional', body([rec((r) => (r[14] = 1.5))]), 'records[0][14] (attempts)'],
      ['route a number', body([rec((r) => (r[8] = 5))]), 'records[0][8] (route)'],
      ['userAgent missing', body([rec((r) => (r[24] = undefined))]), 'records[0][24] (userAgent)'],
    ];
    for (const [what, b, path] of cases) {
      const err = refusal(() => accessLogsToOtlp(b));
      assert.equal(err.path, path, `${what}: ${err.message}`);
      assert.equal(err.code, 'ISTHMUS_E_INVALID_VALUE', what);
    }
  });

  it('refuses a malformed batch body, naming the batch, the record and the field', () => {
    /** A record (no seq) with `patch` applied. */
    const rec = (patch: (r: unknown[]) => void): unknown[] => {
      const r: unknown[] = full();
      patch(r);
      return r;
    };
    const batch = (seq: unknown, ...records: unknown[]): unknown[] => [seq, ...records];
    const ok = batch(1, full(), bare());
    const cases: [what: string, body: unknown, path: string][] = [
      ['not an object', [ok], ''],
      ['batches missing', { format: ACCESS_LOG_FORMAT, resource }, 'batches'],
      ['records instead of batches', { format: ACCESS_LOG_FORMAT, resource, records: [] }, 'batches'],
      ['batches an object', { ...batchBody([]), batches: { 0: ok } }, 'batches'],
      ['resource missing', { format: ACCESS_LOG_FORMAT, batches: [ok] }, 'resource'],
      ['a batch not an array (second)', batchBody([ok, { seq: 2 }]), 'batches[1]'],
      ['a batch a number', batchBody([7]), 'batches[0]'],
      ['an empty batch: its seq only', batchBody([ok, [2]]), 'batches[1]'],
      ['an empty array', batchBody([[]]), 'batches[0]'],
      ['seq 0', batchBody([batch(0, full())]), 'batches[0][0]'],
      ['seq negative', batchBody([batch(-4, full())]), 'batches[0][0]'],
      ['seq fractional', batchBody([batch(1.5, full())]), 'batches[0][0]'],
      ['seq a string', batchBody([batch('1', full())]), 'batches[0][0]'],
      ['seq null', batchBody([batch(null, full())]), 'batches[0][0]'],
      ['seq missing: records only', batchBody([[full(), bare()]]), 'batches[0][0]'],
      // The record form inside a batch: a seq of its own makes 25 values.
      ['a record with its own seq', batchBody([batch(1, [1, ...full()])]), 'batches[0][1]'],
      ['a record a field short', batchBody([batch(1, full().slice(0, 23))]), 'batches[0][1]'],
      ['a record a field too many', batchBody([batch(1, full(), [...bare(), 'extra'])]), 'batches[0][2]'],
      ['a record not an array', batchBody([batch(1, full(), { recordId: 'x' })]), 'batches[0][2]'],
      ['a record null', batchBody([batch(1, null)]), 'batches[0][1]'],
      // The records spread into the batch instead of nested in it.
      ['fields not nested', batchBody([[1, ...full()]]), 'batches[0][1]'],
      [
        'status a string in record 2 of batch 1',
        batchBody([
          ok,
          batch(
            2,
            full(),
            rec((r) => (r[11] = '200')),
          ),
        ]),
        'batches[1][2][11] (status)',
      ],
      [
        'recordId a number',
        batchBody([
          batch(
            1,
            rec((r) => (r[0] = 7)),
          ),
        ]),
        'batches[0][1][0] (recordId)',
      ],
      [
        'start a string',
        batchBody([
          batch(
            1,
            rec((r) => (r[1] = '1')),
          ),
        ]),
        'batches[0][1][1] (startMs)',
      ],
      [
        'duration negative',
        batchBody([
          batch(
            1,
            rec((r) => (r[2] = -1)),
          ),
        ]),
        'batches[0][1][2] (durationMs)',
      ],
      [
        'region null',
        batchBody([
          batch(
            1,
            rec((r) => (r[3] = null)),
          ),
        ]),
        'batches[0][1][3] (region)',
      ],
      [
        'route a number',
        batchBody([
          batch(
            1,
            rec((r) => (r[7] = 5)),
          ),
        ]),
        'batches[0][1][7] (route)',
      ],
      [
        'completed a string',
        batchBody([
          batch(
            1,
            rec((r) => (r[12] = 'yes')),
          ),
        ]),
        'batches[0][1][12] (completed)',
      ],
      [
        'attempts fractional',
        batchBody([
          batch(
            1,
            rec((r) => (r[13] = 1.5)),
          ),
        ]),
        'batches[0][1][13] (attempts)',
      ],
      [
        'trace id upper-case',
        batchBody([
          batch(
            1,
            bare(),
            rec((r) => (r[18] = TRACE.toUpperCase())),
          ),
        ]),
        'batches[0][2][18] (traceId)',
      ],
      [
        'span id short',
        batchBody([
          batch(
            1,
            rec((r) => (r[19] = SPAN.slice(1))),
          ),
        ]),
        'batches[0][1][19] (spanId)',
      ],
      [
        'sampled a number',
        batchBody([
          batch(
            1,
            rec((r) => (r[20] = 1)),
          ),
        ]),
        'batches[0][1][20] (sampled)',
      ],
      [
        'userAgent missing',
        batchBody([
          batch(
            1,
            rec((r) => (r[23] = undefined)),
          ),
        ]),
        'batches[0][1][23] (userAgent)',
      ],
      [
        'end past the time range',
        batchBody([
          batch(
            1,
            rec((r) => ((r[1] = 18_446_744_073_709), (r[2] = 1))),
          ),
        ]),
        'batches[0][1][1] (startMs)',
      ],
    ];
    for (const [what, b, path] of cases) {
      const err = refusal(() => accessLogsToOtlp(b));
      assert.equal(err.path, path, `${what}: ${err.message}`);
      assert.equal(err.code, 'ISTHMUS_E_INVALID_VALUE', what);
    }
    // The refusal of an unknown format names the forms a collector takes.
    const err = refusal(() => accessLogsToOtlp({ ...batchBody([ok]), format: 'isthmus.access-log/4' }));
    assert.equal(err.path, 'format');
    assert.match(err.message, /isthmus\.access-log\/3/);
    assert.match(err.message, /isthmus\.access-log\/2/);
    assert.match(err.message, /isthmus\.access-log\/1/);
    // Called directly, the path given is the prefix of every path it names.
    assert.equal(refusal(() => checkAccessLogBatch([3], 'b')).path, 'b');
    assert.equal(
      refusal(() => checkAccessLogBatch([3, rec((r) => (r[8] = null))], 'b')).path,
      'b[1][8] (method)',
    );
  });
});

describe('msToNanos', () => {
  it('writes epoch ms as ns, exactly, including a fraction that rounds up to a whole ms', () => {
    const cases: [ms: number, ns: string][] = [
      [1_700_000_000_000, '1700000000000000000'],
      [1_700_000_000_000.5, '1700000000000500000'],
      [1_700_000_000_000.25, '1700000000000250000'],
      [1000, '1000000000'],
      [1000.000001, '1000000001'],
      [1000.25, '1000250000'],
      [12.000123, '12000123'],
      // A fraction below half a ns is nothing.
      [1000.0000001, '1000000000'],
      // A fraction that rounds to 1e6 ns is the next whole ms, not "1000" + "1000000".
      [1000.9999999, '1001000000'],
      // Below one ms, no leading zeros.
      [0.5, '500000'],
      [0, '0'],
      [5.9999996, '6000000'],
      [5.9999994, '5999999'],
    ];
    for (const [ms, ns] of cases) assert.equal(msToNanos(ms), ns, String(ms));
  });
});
