import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { seededRandom } from '../../src/core/random.js';
import {
  ACCESS_LOG_FORMAT,
  ACCESS_LOG_FORMAT_V2,
  accessLogSpanToOtlp,
  accessLogToOtlp,
  accessLogV2ToOtlp,
  type AccessLogTuple,
  type AccessLogTupleV2,
} from '../../src/telemetry/access-log.js';
import {
  encodeLog,
  encodeSpan,
  TelemetrySource,
  type LogData,
  type TelemetrySourceOptions,
} from '../../src/telemetry/source.js';
import { WriteAheadLog } from '../../src/telemetry/wal/index.js';
import {
  ACCESS_LOG_FORMAT_V4,
  AccessLogBatchWriter,
  decodeAccessLogBatch,
  factsOfTuple,
} from '../../src/telemetry/access-log-binary.js';
import { FakeCollector } from '../support/fake-collector.js';
import { eventually } from '../support/proxy-harness.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('TelemetrySource', () => {
  let dir: string;
  let collector: FakeCollector;
  const open: TelemetrySource[] = [];

  const start = async (extra: Partial<TelemetrySourceOptions> = {}) => {
    const s = await TelemetrySource.open({
      dir,
      collectorUrl: collector.url,
      source: 'proxy/test@eu-west',
      resource: { service: 'frontend', region: 'eu-west', zone: 'eu-west-a' },
      buffer: { fsyncIntervalMs: 5, segmentBytes: 64 * 1024, maxBytes: 4 * 1024 * 1024 },
      heartbeatIntervalMs: 50,
      backoffBaseMs: 5,
      backoffMaxMs: 40,
      random: seededRandom(1),
      recordIdPrefix: 'rec-',
      ...extra,
    });
    open.push(s);
    return s;
  };
  const span = (i: number) => ({
    traceId: TRACE,
    spanId: (i + 1).toString(16).padStart(16, '0'),
    name: `GET /${i}`,
    kind: 'server' as const,
    startTimeMs: 1_700_000_000_000 + i,
    endTimeMs: 1_700_000_000_000.5 + i,
    attributes: { 'http.response.status_code': 200, i, empty: undefined },
  });
  /**
   * An access-log record as a proxy writes it; every third one without its optional fields, every
   * other one sampled (with the facts of its span).
   */
  const accessLog = (i: number): AccessLogTuple => {
    const some = i % 3 !== 0;
    return [
      1_700_000_000_000 + i,
      i % 2 === 0 ? i * 1000 : i * 1000 + 125,
      'frontend',
      'outbound',
      some ? 'orders' : null,
      'GET',
      some ? `/a${i}?q="é"` : null,
      some ? 'catalog' : null,
      i % 4 === 0 ? 503 : 200,
      i % 5 !== 0,
      some ? 1 : null,
      some ? 'eu-west/eu-west-a' : null,
      some ? 'eu-west' : null,
      null,
      null,
      TRACE,
      (i + 0x1000).toString(16).padStart(16, '0'),
      `req-${i}`,
      some ? '127.0.0.1' : null,
      some ? 'agent "x"' : null,
      i % 2 === 0
        ? ['client', some ? 'f'.repeat(16) : null, some ? 'ot=th:8' : null, i % 4 === 0, some ? 2 : null]
        : null,
    ];
  };
  /** The same record in format 2, as sources before format 3 wrote them, with its own id. */
  const accessLogV2 = (i: number): AccessLogTupleV2 => {
    const t = accessLog(i);
    return [
      `old-${i}`,
      t[0],
      t[1] / 1000,
      'eu-west',
      'eu-west-a',
      ...t.slice(2, 17),
      t[20] !== null,
      ...t.slice(17, 20),
    ] as AccessLogTupleV2;
  };
  const WHERE = { region: 'eu-west', zone: 'eu-west-a' };
  /** The OTLP log record the collector makes of record `index` of the batch with `seq`. */
  const expectedLog = (seq: number, index: number, t: AccessLogTuple) =>
    accessLogToOtlp(seq, `rec-${seq}.${index}`, WHERE, t);
  /** The OTLP spans of the sampled records of the batch with `seq`. */
  const expectedSpans = (seq: number, tuples: AccessLogTuple[]) =>
    tuples.flatMap((t) => accessLogSpanToOtlp(seq, t) ?? []);

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-source-'));
    collector = await FakeCollector.start();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close().catch(() => undefined)));
    await collector.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('ships spans, logs and metrics as OTLP JSON with isthmus.seq, and heartbeats', async () => {
    const s = await start();
    s.span(span(0));
    s.log({ timeMs: 1_700_000_000_000, body: 'GET / 200', attributes: { 'isthmus.record_id': 'r1' } });
    s.metrics([
      {
        kind: 'sum',
        name: 'requests',
        startTimeMs: 1,
        timeMs: 2,
        value: 3,
        attributes: { region: 'eu-west' },
      },
      {
        kind: 'histogram',
        name: 'latency',
        unit: 'ms',
        startTimeMs: 1,
        timeMs: 2,
        count: 2,
        sum: 7,
        explicitBounds: [5, 10],
        bucketCounts: [1, 1, 0],
        attributes: {},
      },
    ]);
    s.span({ ...span(1), attributes: {} });
    assert.equal(await s.flush(5000), true);
    assert.deepEqual(
      collector.items.map((i) => [i.signal, i.seq]).sort((a, b) => Number(a[1]) - Number(b[1])),
      [
        ['traces', 1],
        ['logs', 2],
        ['metrics', 3],
        ['traces', 4],
      ],
    );
    const [first, second] = collector.spans();
    assert.equal(first?.resource['service.name'], 'frontend');
    assert.equal(first?.resource['isthmus.source'], 'proxy/test@eu-west');
    assert.equal(first?.resource['isthmus.zone'], 'eu-west-a');
    assert.equal(first?.item.traceId, TRACE);
    assert.equal(first?.item.kind, 2);
    assert.equal(first?.item.startTimeUnixNano, '1700000000000000000');
    assert.equal(first?.item.endTimeUnixNano, '1700000000000500000');
    assert.equal(first?.attrs['http.response.status_code'], 200);
    assert.equal('empty' in (first?.attrs ?? {}), false);
    assert.deepEqual(second?.attrs, { 'isthmus.seq': 4 });
    assert.equal(collector.logs()[0]?.attrs['isthmus.record_id'], 'r1');
    const scope = collector.of('metrics')[0]?.item as { metrics: { name: string }[] };
    assert.deepEqual(
      scope.metrics.map((m) => m.name),
      ['requests', 'latency'],
    );
    await eventually(() => assert.ok(collector.heartbeats.some((h) => h.emittedSeq === 4)));
    const hb = collector.heartbeats.at(-1);
    assert.equal(hb?.source, 'proxy/test@eu-west');
    assert.equal(hb?.region, 'eu-west');
    assert.equal(hb?.zone, 'eu-west-a');
    assert.equal(typeof hb?.sentAtMs, 'number');
    const st = s.stats();
    assert.equal(st.signals, 4);
    assert.equal(st.emitted, 4);
    assert.equal(st.shipped, 4);
    assert.equal(st.backlogRecords, 0);
    assert.equal(st.shipFailures, 0);
  });

  /**
   * The batches of every compact access-log body of `format` the collector took, in the order
   * they came (a binary body's as the format-3 batches it decodes to).
   */
  const sentBatches = (format = ACCESS_LOG_FORMAT_V4): unknown[][] =>
    collector.accessLogBodies().flatMap((b) => {
      if (b.format !== format) return [];
      assert.equal(b.records, undefined, 'no format-1 records in a batch body');
      assert.ok(
        JSON.stringify(b.resource.attributes).includes('"proxy/test@eu-west"'),
        'the resource names the source',
      );
      return b.batches ?? [];
    });
  /** Bytes a record of this payload takes in the log: its header (32 bytes) and the payload. */
  const recordBytes = (payload: string | Buffer) => 32 + Buffer.byteLength(payload);
  /** The log record's payload of a batch of access-log records: tag D and the binary batch. */
  const binaryBatch = (tuples: readonly AccessLogTuple[], prefix = 'rec-'): Buffer => {
    const w = new AccessLogBatchWriter(prefix, 'D'.charCodeAt(0));
    for (const t of tuples) w.record(factsOfTuple(t));
    return Buffer.from(w.take() ?? Buffer.alloc(0));
  };

  it('gathers the access logs of one window into one log record: one seq, one batch on the wire', async () => {
    const s = await start();
    const tuples: AccessLogTuple[] = [];
    const spans = [];
    for (let i = 0; i < 30; i++) {
      if (i % 10 === 0) {
        spans.push(span(i));
        s.span(span(i));
      }
      const t = accessLog(i);
      s.accessLog(t);
      tuples.push(t);
    }
    const plain: LogData = {
      timeMs: 1_700_000_000_000,
      body: 'plain',
      attributes: { 'isthmus.record_id': 'plain-1' },
    };
    s.log(plain);
    // Spans and the plain log went to the log at once (seqs 1..4); the access logs wait together.
    assert.equal(s.stats().emitted, 4);
    assert.equal(s.wal.stats().lastSeq, 4);
    assert.equal(s.stats().signals, 34);
    assert.equal(await s.flush(5000), true);
    const st = s.stats();
    assert.equal(st.signals, 34, 'spans, the log record and every access-log record');
    assert.equal(st.emitted, 5, 'three spans, one log record, ONE record for 30 access logs');
    assert.equal(st.shipped, 5);
    assert.equal(st.lastSeq, 5);
    assert.equal(st.shipFailures, 0);
    assert.equal(st.appendFailures, 0);
    // What the log took, to the byte: a header and a payload per record, the batch as one.
    assert.equal(
      st.emittedBytes,
      spans.reduce((n, x) => n + recordBytes(`T${encodeSpan(x)}`), 0) +
        recordBytes(`L${encodeLog(plain)}`) +
        recordBytes(binaryBatch(tuples)),
    );
    assert.deepEqual(collector.seqs(), [1, 2, 3, 4, 5]);
    assert.equal(collector.duplicates, 0);
    assert.ok(collector.requests.every((r) => r.status === 200));
    // On the wire: one batch, its seq and record-id prefix first, then the 30 records in the order
    // they were written.
    assert.deepEqual(sentBatches(), [[5, 'rec-', ...tuples]]);
    const otlpLogs = collector.requests.filter((r) => r.path === '/v1/logs');
    assert.equal(otlpLogs.length, 1);
    assert.ok(otlpLogs[0]?.body.includes('"plain-1"'));
    assert.ok(!otlpLogs[0]?.body.includes('rec-'));
    // What the collector made of them is the OTLP record of each, all with the batch's seq.
    const logs = collector.logs();
    assert.equal(logs.length, 31);
    const access = logs.filter((l) => String(l.attrs.recordId).startsWith('rec-'));
    assert.deepEqual(
      access.map((l) => l.item),
      tuples.map((t, i) => expectedLog(5, i, t)),
    );
    assert.equal(logs.find((l) => l.attrs['isthmus.record_id'] === 'plain-1')?.seq, 4);
    // The sampled records' spans (every other one) came with them, besides the three spans sent as such.
    const sent = collector.spans();
    assert.equal(sent.length, 3 + 15);
    assert.deepEqual(
      sent.filter((x) => x.seq === 5).map((x) => x.item),
      expectedSpans(5, tuples),
    );
    assert.deepEqual(
      sent.filter((x) => x.seq !== 5).map((x) => x.seq),
      [1, 2, 3],
    );
  });

  it('appends a batch at once when accessLogBatchRecords are waiting', async () => {
    // A window that never ends in this test: only the count (and the flush) append.
    const s = await start({ accessLogBatchRecords: 4, accessLogBatchMs: 600_000 });
    const tuples = Array.from({ length: 10 }, (_, i) => accessLog(i));
    const emittedAfter: number[] = [];
    for (const t of tuples) {
      s.accessLog(t);
      emittedAfter.push(s.stats().emitted);
    }
    assert.deepEqual(emittedAfter, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]);
    assert.equal(s.wal.stats().lastSeq, 2);
    assert.equal(s.stats().signals, 10);
    // The last two wait for the window, or a flush.
    assert.equal(await s.flush(5000), true);
    assert.equal(s.stats().emitted, 3);
    assert.deepEqual(sentBatches(), [
      [1, 'rec-', ...tuples.slice(0, 4)],
      [2, 'rec-', ...tuples.slice(4, 8)],
      [3, 'rec-', ...tuples.slice(8)],
    ]);
    assert.equal(collector.logs().length, 10);
    assert.equal(s.stats().shipped, 3);
  });

  it('appends what is gathered once accessLogBatchMs have passed, with no flush', async () => {
    const windowMs = 200;
    const s = await start({ accessLogBatchMs: windowMs });
    const first = [accessLog(0), accessLog(1), accessLog(2)];
    const t0 = Date.now();
    for (const t of first) s.accessLog(t);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(s.stats().emitted, 0, 'still inside the window');
    assert.equal(s.wal.stats().lastSeq, 0);
    // Shipped by the loop alone once the timer appended the batch.
    await eventually(() => assert.equal(collector.logs().length, 3), 5000);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= windowMs - 5, `appended after ${elapsed} ms, not before the window`);
    assert.equal(s.stats().emitted, 1);
    // A new window for what comes next.
    const second = [accessLog(3), accessLog(4)];
    for (const t of second) s.accessLog(t);
    assert.equal(s.stats().emitted, 1);
    await eventually(() => assert.equal(collector.logs().length, 5), 5000);
    assert.equal(s.stats().emitted, 2);
    assert.deepEqual(sentBatches(), [
      [1, 'rec-', ...first],
      [2, 'rec-', ...second],
    ]);
    assert.deepEqual(
      collector.logs().map((l) => [l.attrs.recordId, l.seq]),
      [
        ['rec-1.0', 1],
        ['rec-1.1', 1],
        ['rec-1.2', 1],
        ['rec-2.0', 2],
        ['rec-2.1', 2],
      ],
    );
  });

  it('appends what is gathered at close: it is in the log, and shipped after the restart', async () => {
    let s = await start({ collectorUrl: undefined, accessLogBatchMs: 600_000 });
    const tuples = Array.from({ length: 5 }, (_, i) => accessLog(i));
    for (const t of tuples) s.accessLog(t);
    // A record the format cannot hold is refused and counted, and leaves the batch whole.
    const bad = accessLog(50);
    bad[1] = 1.5;
    s.accessLog(bad);
    assert.equal(s.stats().appendFailures, 1);
    assert.equal(s.stats().emitted, 0);
    await s.close();
    open.length = 0;
    assert.equal(s.stats().emitted, 1);
    // After close, an access log is refused and counted, never thrown or kept.
    s.accessLog(accessLog(99));
    assert.equal(s.stats().appendFailures, 2);
    assert.equal(s.stats().signals, 6);

    // The log holds one record: tag D, the binary batch of the five records, in order.
    const wal = await WriteAheadLog.open({ dir, segmentBytes: 64 * 1024, maxBytes: 4 * 1024 * 1024 });
    try {
      const records = await wal.readBatch(1, 100, 1024 * 1024);
      assert.deepEqual(
        records.map((r) => [r.seq, r.payload.toString('utf8', 0, 1)]),
        [[1, 'D']],
      );
      const payload = (records[0] as { payload: Buffer }).payload;
      assert.deepEqual(payload, binaryBatch(tuples));
      assert.deepEqual(decodeAccessLogBatch(payload.subarray(1), 1, 'batch'), [1, 'rec-', ...tuples]);
    } finally {
      await wal.close();
    }

    s = await start();
    assert.equal(await s.flush(5000), true);
    assert.deepEqual(sentBatches(), [[1, 'rec-', ...tuples]]);
    assert.deepEqual(
      collector.logs().map((l) => l.item),
      tuples.map((t, i) => expectedLog(1, i, t)),
    );
  });

  it('with a log that blocks when full, appends each access-log batch whole, though the next batch reuses its bytes', async () => {
    const s = await start({
      buffer: { fsyncIntervalMs: 5, segmentBytes: 64 * 1024, maxBytes: 4 * 1024 * 1024, whenFull: 'block' },
      accessLogBatchRecords: 3,
      accessLogBatchMs: 600_000,
      collectorUrl: undefined,
    });
    // Two batches appended in one turn: the second is encoded over the first's bytes before the
    // first is written.
    const tuples = Array.from({ length: 6 }, (_, i) => accessLog(i));
    for (const t of tuples) s.accessLog(t);
    assert.equal(s.stats().emitted, 2);
    await s.wal.sync();
    const records = await s.wal.readBatch(1, 10, 1024 * 1024);
    assert.deepEqual(
      records.map((r) => decodeAccessLogBatch(r.payload.subarray(1), r.seq, 'batch')),
      [
        [1, 'rec-', ...tuples.slice(0, 3)],
        [2, 'rec-', ...tuples.slice(3)],
      ],
    );
    assert.equal(s.stats().appendFailures, 0);
  });

  it('cuts batches to fit one record of a small log, losing nothing', async () => {
    const s = await start({
      buffer: { fsyncIntervalMs: 5, segmentBytes: 4096, maxBytes: 4 * 1024 * 1024 },
      accessLogBatchMs: 600_000,
    });
    const max = s.wal.maxPayloadBytes;
    // 128 records (the default count) are several times what one record may hold; distinct paths
    // and agents, so that no value repeats the previous record's.
    const tuples = Array.from({ length: 128 }, (_, i) => {
      const t = accessLog(i);
      t[6] = `/items/${i}/${'x'.repeat(40)}`;
      t[19] = `agent/${i}`;
      return t;
    });
    assert.ok(binaryBatch(tuples).length > 4 * max, `${binaryBatch(tuples).length} bytes`);
    for (const t of tuples) s.accessLog(t);
    const st = s.stats();
    assert.ok(st.emitted >= 4, `cut into ${st.emitted} records`);
    assert.equal(st.appendFailures, 0);
    assert.equal(st.dropped.full.records, 0);
    assert.equal(st.signals, 128);
    assert.equal(await s.flush(10_000), true);
    const records = await s.wal.readBatch(1, 1000, 1024 * 1024);
    assert.equal(records.length, 0, 'everything acked');
    const batches = sentBatches();
    assert.equal(batches.length, s.stats().emitted, 'each part is one record of the log');
    // Every part fits, seqs are dense and in order, and the records come back whole and in order.
    assert.deepEqual(
      batches.map((b) => b[0]),
      Array.from({ length: batches.length }, (_, i) => i + 1),
    );
    for (const b of batches) {
      assert.ok(b.length > 2, 'no empty part');
      assert.equal(b[1], 'rec-', 'each part with the prefix');
      assert.ok(binaryBatch(b.slice(2) as AccessLogTuple[]).length <= max, 'each part fits one record');
    }
    assert.deepEqual(
      batches.flatMap((b) => b.slice(2)),
      tuples,
    );
    assert.equal(collector.logs().length, 128);
    assert.equal(collector.duplicates, 0);
  });

  /**
   * Appends records of earlier versions to the log in `dir`: `A` records (one format-2 access log
   * each, as sources before batches wrote them), and with `batch` a `B` record (a batch of them,
   * as sources before format 3 wrote them).
   */
  const writeLegacy = async (tuples: AccessLogTupleV2[], batch: AccessLogTupleV2[] = []) => {
    const wal = await WriteAheadLog.open({ dir, segmentBytes: 64 * 1024, maxBytes: 4 * 1024 * 1024 });
    for (const t of tuples) await wal.append(Buffer.from(`A${JSON.stringify(t)}`), Date.now());
    if (batch.length > 0) await wal.append(Buffer.from(`B${JSON.stringify(batch)}`), Date.now());
    await wal.sync();
    await wal.close();
  };

  it('ships access logs written by earlier versions as format 2: one to a record as batches of one, and batches', async () => {
    const legacy = [accessLogV2(0), accessLogV2(1)];
    const legacyBatch = [accessLogV2(5), accessLogV2(6)];
    await writeLegacy(legacy, legacyBatch);
    const s = await start();
    const fresh = [accessLog(2), accessLog(3), accessLog(4)];
    for (const t of fresh) s.accessLog(t);
    assert.equal(await s.flush(5000), true);
    assert.deepEqual(sentBatches(ACCESS_LOG_FORMAT_V2), [
      [1, legacy[0]],
      [2, legacy[1]],
      [3, ...legacyBatch],
    ]);
    assert.deepEqual(sentBatches(), [[4, 'rec-', ...fresh]]);
    assert.deepEqual(
      collector.logs().map((l) => [l.attrs.recordId, l.seq]),
      [
        ['old-0', 1],
        ['old-1', 2],
        ['old-5', 3],
        ['old-6', 3],
        ['rec-4.0', 4],
        ['rec-4.1', 4],
        ['rec-4.2', 4],
      ],
    );
    assert.deepEqual(collector.logs()[1]?.item, accessLogV2ToOtlp(2, legacy[1] as AccessLogTupleV2));
    assert.deepEqual(collector.logs()[3]?.item, accessLogV2ToOtlp(3, legacyBatch[1] as AccessLogTupleV2));
    assert.deepEqual(
      collector
        .logs()
        .slice(4)
        .map((l) => l.item),
      fresh.map((t, i) => expectedLog(4, i, t)),
    );
    // Format 2 carried no spans (they were sent on their own); the fresh sampled two bring theirs.
    assert.deepEqual(
      collector.spans().map((x) => x.item),
      expectedSpans(4, fresh),
    );
    assert.equal(collector.spans().length, 2);
    assert.equal(s.stats().shipped, 4);
    assert.equal(s.stats().shipFailures, 0);
  });

  it('ships format-3 batches written by the previous version as format 3, and its own as format 4', async () => {
    const old = [accessLog(0), accessLog(1)];
    const wal = await WriteAheadLog.open({ dir, segmentBytes: 64 * 1024, maxBytes: 4 * 1024 * 1024 });
    await wal.append(Buffer.from(`C["old3-",${JSON.stringify(old).slice(1)}`), Date.now(), old.length);
    await wal.sync();
    await wal.close();
    const s = await start();
    const fresh = [accessLog(2), accessLog(3)];
    for (const t of fresh) s.accessLog(t);
    assert.equal(await s.flush(5000), true);
    assert.deepEqual(sentBatches(ACCESS_LOG_FORMAT), [[1, 'old3-', ...old]]);
    assert.deepEqual(sentBatches(), [[2, 'rec-', ...fresh]]);
    assert.deepEqual(
      collector.logs().map((l) => [l.attrs.recordId, l.seq]),
      [
        ['old3-1.0', 1],
        ['old3-1.1', 1],
        ['rec-2.0', 2],
        ['rec-2.1', 2],
      ],
    );
    assert.equal(s.stats().shipped, 2);
  });

  it('sends access logs as OTLP to /v1/logs, at once and for good, when the collector answers 404', async () => {
    collector.accessLogs = false;
    // One access log from an earlier version already in the log: converted as well.
    const legacy = accessLogV2(100);
    await writeLegacy([legacy]);
    // A switch counted as a failure would wait out this backoff, and the flush below would time out.
    const s = await start({ backoffBaseMs: 10_000, backoffMaxMs: 10_000 });
    const written: [seq: number, id: string, log: unknown][] = [[1, 'old-100', accessLogV2ToOtlp(1, legacy)]];
    const sampled: unknown[] = [];
    // Twenty access logs in one window with a span among them: the span is seq 2, the batch 3.
    for (let i = 0; i < 20; i++) {
      if (i === 10) s.span(span(i));
      const t = accessLog(i);
      s.accessLog(t);
      written.push([3, `rec-3.${i}`, expectedLog(3, i, t)]);
      sampled.push(...expectedSpans(3, [t]));
    }
    assert.equal(await s.flush(2000), true);
    // Once more after the switch: straight to /v1/logs (and the spans to /v1/traces).
    for (let i = 20; i < 25; i++) {
      const t = accessLog(i);
      s.accessLog(t);
      written.push([4, `rec-4.${i - 20}`, expectedLog(4, i - 20, t)]);
      sampled.push(...expectedSpans(4, [t]));
    }
    assert.equal(await s.flush(2000), true);

    const compact = collector.requests.filter((r) => r.path === '/v1/access-logs');
    assert.deepEqual(
      compact.map((r) => r.status),
      [404],
      'one refused attempt, then never again',
    );
    const exported = collector.requests.filter((r) => r.path !== '/v1/heartbeat');
    assert.equal(exported[0]?.path, '/v1/access-logs');
    assert.ok(exported.slice(1).every((r) => r.status === 200 && r.path !== '/v1/access-logs'));
    assert.ok(exported.filter((r) => r.path === '/v1/logs').length >= 2);
    assert.deepEqual(collector.seqs(), [1, 2, 3, 4]);
    assert.equal(collector.duplicates, 0);
    // Every record of every batch, each with its batch's seq, in order.
    const logs = collector.logs();
    assert.deepEqual(
      logs.map((l) => [l.seq, l.attrs.recordId]),
      written.map(([seq, id]) => [seq, id]),
    );
    for (const [k, l] of logs.entries()) {
      // Attributes (types and order), severity, body, ids and times as the collector would make them.
      assert.deepEqual(l.item, (written[k] as [number, string, unknown])[2]);
      assert.equal(l.resource['isthmus.source'], 'proxy/test@eu-west');
    }
    assert.equal(logs.find((l) => l.attrs.recordId === 'rec-3.1')?.attrs.path, '/a1?q="é"');
    // The sampled records' spans, converted at the source too, besides the span sent as such.
    assert.deepEqual(
      collector
        .spans()
        .filter((x) => x.seq !== 2)
        .map((x) => x.item),
      sampled,
    );
    assert.equal(collector.spans().length, sampled.length + 1);
    const st = s.stats();
    assert.equal(st.shipFailures, 0);
    // Shipped: the earlier version's record too; emitted: only what this source wrote.
    assert.equal(st.shipped, 4);
    assert.equal(st.emitted, 3);
    assert.equal(st.signals, 26);
    assert.equal(st.backlogRecords, 0);
  });

  it('skips and counts a record the collector refuses as it is, and ships the rest of its batch', async () => {
    // The collector refuses any body holding the poison record, whatever else is in it.
    collector.refuse = (_path, body) => body.includes('"poison"');
    const s = await start({ collectorUrl: undefined });
    for (let i = 1; i <= 10; i++)
      s.log({ timeMs: 1_700_000_000_000 + i, body: i === 5 ? 'poison' : `r${i}`, attributes: {} });
    await s.close();
    open.length = 0;
    // All ten in one batch: refused whole, then sent one record at a time.
    const t = await start({ backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
    assert.equal(await t.flush(5000), true, 'the refusal holds nothing up, and waits out no backoff');
    const st = t.stats();
    assert.equal(st.rejected, 1);
    assert.equal(st.rejectedSignals, 1);
    assert.equal(st.shipped, 9);
    assert.equal(st.ackedSeq, 10);
    assert.equal(st.backlogRecords, 0);
    assert.match(st.lastShipError ?? '', /400 .*record 5 rejected: skipped/);
    assert.deepEqual(collector.seqs(), [1, 2, 3, 4, 6, 7, 8, 9, 10]);
    assert.deepEqual(
      collector.logs().map((l) => (l.item.body as { stringValue: string }).stringValue),
      ['r1', 'r2', 'r3', 'r4', 'r6', 'r7', 'r8', 'r9', 'r10'],
    );
    const logPosts = collector.requests.filter((r) => r.path === '/v1/logs');
    assert.equal(logPosts[0]?.status, 400, 'the whole batch first');
    assert.equal(logPosts.length, 1 + 10, 'then each record once: nine taken, the poison refused');
    // Back to whole batches after the refused one.
    collector.refuse = undefined;
    for (let i = 11; i <= 20; i++) t.log({ timeMs: 1_700_000_000_000 + i, body: `r${i}`, attributes: {} });
    assert.equal(await t.flush(5000), true);
    assert.equal(collector.requests.filter((r) => r.path === '/v1/logs').length, 1 + 10 + 1);
    assert.equal(t.stats().rejected, 1);
  });

  it('counts the access-log records of a refused batch as the signals lost', async () => {
    // Batches of four access-log records; the second batch holds the poison path.
    const s = await start({ collectorUrl: undefined, accessLogBatchRecords: 4 });
    for (let i = 1; i <= 12; i++) {
      const t = accessLog(i);
      if (i === 6) t[6] = '/poison';
      s.accessLog(t);
    }
    await s.close();
    open.length = 0;
    collector.refuse = (path, body) => path === '/v1/access-logs' && body.includes('/poison');
    const t = await start({ backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
    assert.equal(await t.flush(5000), true);
    const st = t.stats();
    assert.equal(st.rejected, 1, 'one record of the log');
    assert.equal(st.rejectedSignals, 4, 'holding four access-log records');
    assert.deepEqual(collector.seqs(), [1, 3]);
    assert.equal(collector.logs().length, 8);
  });

  it('sends access logs as format 3 when the collector refuses the binary body (a collector of formats 1 to 3)', async () => {
    collector.accessLogs = 'format-3';
    const s = await start({ backoffBaseMs: 10_000, backoffMaxMs: 10_000 });
    const tuples = Array.from({ length: 4 }, (_, i) => accessLog(i));
    for (const t of tuples) s.accessLog(t);
    assert.equal(await s.flush(2000), true);
    assert.deepEqual(
      collector.requests.filter((r) => r.path === '/v1/access-logs').map((r) => [r.status, r.binary]),
      [
        [415, true],
        [200, false],
      ],
    );
    assert.deepEqual(sentBatches(ACCESS_LOG_FORMAT), [[1, 'rec-', ...tuples]]);
    assert.deepEqual(
      collector.logs().map((l) => l.item),
      tuples.map((t, i) => expectedLog(1, i, t)),
    );
    assert.deepEqual(
      collector.spans().map((x) => x.item),
      expectedSpans(1, tuples),
    );
    // And from then on, at once.
    s.accessLog(accessLog(4));
    assert.equal(await s.flush(2000), true);
    assert.deepEqual(
      collector.requests.filter((r) => r.path === '/v1/access-logs').map((r) => r.status),
      [415, 200, 200],
    );
    assert.equal(s.stats().rejected, 0, 'nothing skipped: the records went another way');
    assert.equal(s.stats().shipFailures, 0);
  });

  it('sends access logs as OTLP when the collector refuses formats 4 and 3 (a collector of formats 1 and 2)', async () => {
    collector.accessLogs = 'format-2';
    const s = await start({ backoffBaseMs: 10_000, backoffMaxMs: 10_000 });
    const tuples = Array.from({ length: 4 }, (_, i) => accessLog(i));
    for (const t of tuples) s.accessLog(t);
    assert.equal(await s.flush(2000), true);
    assert.deepEqual(
      collector.requests.filter((r) => r.path === '/v1/access-logs').map((r) => r.status),
      [415, 400],
    );
    assert.deepEqual(
      collector.logs().map((l) => l.item),
      tuples.map((t, i) => expectedLog(1, i, t)),
    );
    assert.deepEqual(
      collector.spans().map((x) => x.item),
      expectedSpans(1, tuples),
    );
    assert.equal(s.stats().rejected, 0, 'nothing skipped: the records went another way');
    assert.equal(s.stats().shipFailures, 0);
  });

  it('retries through a collector outage: every record arrives once, in seq order per signal', async () => {
    collector.down = true;
    const s = await start();
    for (let i = 0; i < 300; i++) {
      s.span(span(i));
      if (i % 3 === 0) s.log({ timeMs: i, body: `r${i}`, attributes: { 'isthmus.record_id': `r${i}` } });
    }
    await eventually(() => assert.ok(s.stats().shipFailures >= 3), 5000);
    assert.equal(collector.items.length, 0);
    assert.equal(s.stats().backlogRecords, 400);
    collector.down = false;
    assert.equal(await s.flush(10_000), true);
    const seqs = collector.items.map((i) => i.seq);
    assert.equal(new Set(seqs).size, 400);
    assert.deepEqual(
      [...seqs].sort((a, b) => a - b),
      Array.from({ length: 400 }, (_, i) => i + 1),
    );
    for (const signal of ['traces', 'logs'] as const) {
      const got = collector.of(signal).map((i) => i.seq);
      assert.deepEqual(
        got,
        [...got].sort((a, b) => a - b),
        `${signal} arrive in seq order`,
      );
    }
    assert.equal(s.stats().shipped, 400);
    assert.equal(s.stats().backlogRecords, 0);
  });

  it('releases acked segments, and a restart resumes after the checkpoint without resending', async () => {
    let s = await start({ buffer: { fsyncIntervalMs: 5, segmentBytes: 64 * 1024, maxBytes: 1024 * 1024 } });
    for (let i = 0; i < 1000; i++) s.span(span(i));
    assert.equal(await s.flush(10_000), true);
    const st = s.wal.stats();
    assert.ok(st.segmentsCreated > 2, `segments created: ${st.segmentsCreated}`);
    // Files go once the checkpoint is durable; only the segment being appended to stays.
    await eventually(async () => {
      assert.equal(s.wal.stats().segments, 1);
      assert.equal((await readdir(dir)).filter((f) => f.endsWith('.seg')).length, 1);
    });

    // Records written while the collector is down wait in the log across a restart.
    collector.down = true;
    for (let i = 1000; i < 1100; i++) s.span(span(i));
    await s.wal.sync();
    await s.close();
    open.length = 0;
    collector.down = false;
    s = await start();
    assert.equal(await s.flush(10_000), true);
    const seqs = collector.items.map((i) => i.seq);
    assert.equal(seqs.length, 1100);
    assert.equal(new Set(seqs).size, 1100);
    assert.equal(Math.max(...seqs), 1100);
    assert.equal(collector.duplicates, 0);
    // New records continue the numbering.
    s.span(span(5000));
    assert.equal(await s.flush(5000), true);
    assert.equal(collector.items.at(-1)?.seq, 1101);
  });

  it('never throws on the request path: a full log drops the oldest and counts it', async () => {
    collector.down = true;
    const s = await start({
      buffer: { fsyncIntervalMs: 5, segmentBytes: 64 * 1024, maxBytes: 128 * 1024 },
      backoffBaseMs: 10_000,
      backoffMaxMs: 10_000,
    });
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 200; i++) s.span(span(round * 200 + i));
      await new Promise((r) => setImmediate(r));
    }
    await s.wal.sync();
    const st = s.stats();
    assert.equal(st.signals, 4000);
    assert.equal(st.emitted, 4000);
    assert.ok(st.dropped.full.records > 0, 'drops are counted');
    // The log counts refused appends among its drops: every record is shipped, waiting or counted.
    assert.equal(st.dropped.full.records + st.backlogRecords, 4000);
    assert.ok(st.appendFailures <= st.dropped.full.records);
    assert.equal(st.dropped.full.signals, st.dropped.full.records, 'a span is one signal');
  });

  it('counts the access-log records of the batches a full log drops', async () => {
    collector.down = true;
    const s = await start({
      buffer: { fsyncIntervalMs: 5, segmentBytes: 64 * 1024, maxBytes: 128 * 1024 },
      accessLogBatchRecords: 10,
      backoffBaseMs: 10_000,
      backoffMaxMs: 10_000,
    });
    // Batches of ten records (about 3 KB each): far more than the log holds.
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 100; i++) s.accessLog(accessLog(round * 100 + i));
      await new Promise((r) => setImmediate(r));
    }
    await s.wal.sync();
    const st = s.stats();
    assert.equal(st.emitted, 400);
    assert.ok(st.dropped.full.records > 0, 'drops are counted');
    assert.equal(st.dropped.full.signals, st.dropped.full.records * 10, 'ten access-log records each');
    assert.equal(st.dropped.full.records + st.backlogRecords, 400);
    // The heartbeat tells the collector, in signals, naming this process.
    collector.down = false;
    await s.heartbeat();
    const hb = collector.heartbeats.at(-1) as { instance: string; lostSignals: Record<string, number> };
    assert.match(hb.instance, /^[0-9a-f]{12}$/);
    assert.deepEqual(hb.lostSignals, { full: st.dropped.full.signals, corrupt: 0, torn: 0, rejected: 0 });
    await s.close();
  });

  it('keeps records in the log when no collector is configured', async () => {
    const s = await start({ collectorUrl: undefined });
    s.span(span(0));
    await s.wal.sync();
    assert.equal(s.stats().backlogRecords, 1);
    assert.equal(await s.flush(100), false);
  });

  it('ships text that is not ASCII intact', async () => {
    const s = await start();
    const body = 'GET /caf\u00e9/\u6f22\u5b57?q="\ud83d\ude42" 200';
    s.log({ timeMs: 1_700_000_000_000, body, attributes: { path: '/café/漢字', ua: 'agent "x"\\y\n' } });
    assert.equal(await s.flush(5000), true);
    const logs = collector.logs();
    assert.equal(logs.length, 1);
    assert.deepEqual(logs[0]?.attrs, { 'isthmus.seq': 1, path: '/café/漢字', ua: 'agent "x"\\y\n' });
    assert.deepEqual((logs[0]?.item as { body: unknown }).body, { stringValue: body });
  });
});
