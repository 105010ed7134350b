import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACCESS_LOG_BINARY_TYPE,
  AccessLogBatchWriter,
  accessLogBodyHead,
  binaryAccessLogsToOtlp,
  binaryBatchRecords,
  binaryBodyRecords,
  decodeAccessLogBatch,
  decodeAccessLogBody,
  factsOfTuple,
  isBinaryAccessLogBody,
  writeAccessLogEntryHead,
  type AccessLogFacts,
} from '../../src/telemetry/access-log-binary.js';
import {
  ACCESS_LOG_FORMAT,
  accessLogsToOtlp,
  type AccessLogSpan,
  type AccessLogTuple,
} from '../../src/telemetry/access-log.js';
import { OtlpError, type JsonObject } from '../../src/telemetry/otlp.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const PARENT = 'b7ad6b7169203331';
/** 2023-11-14T22:13:20.000Z, plus a quarter of a millisecond (exact in binary). */
const START_MS = 1_700_000_000_000.25;
const PREFIX = 'gw-1-0a1b2c3d4e5f-';
/** The lead byte a proxy writes before a batch in its log ('D'). */
const LEAD = 0x44;

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

/** `t` with the values at the given places replaced. */
function tuple(t: AccessLogTuple, changes: Record<number, unknown>): AccessLogTuple {
  const out = [...t] as unknown[];
  for (const [k, v] of Object.entries(changes)) out[Number(k)] = v;
  return out as AccessLogTuple;
}

/** A span id made of `n` (never all zero). */
const spanId = (n: number): string => (n + 1).toString(16).padStart(16, '0');

const s = (key: string, stringValue: string) => ({ key, value: { stringValue } });

const RESOURCE = {
  attributes: [
    s('service.name', 'catalog'),
    s('isthmus.source', 'proxy/gw@eu-west'),
    s('isthmus.region', 'eu-west'),
    s('isthmus.zone', 'eu-west-a'),
  ],
};
const RESOURCE_JSON = JSON.stringify(RESOURCE);

/** The batch a writer makes of `tuples`: a copy, without a lead byte. */
function encode(tuples: readonly AccessLogTuple[], prefix = PREFIX): Buffer {
  const w = new AccessLogBatchWriter(prefix);
  for (const t of tuples) w.record(factsOfTuple(t));
  const batch = w.take();
  assert.ok(batch !== undefined, 'a batch');
  return Buffer.from(batch);
}

/**
 * Checks that `tuples` come back exactly from their batch, written with and without a lead byte
 * (the same bytes after it).
 */
function assertRoundTrip(tuples: readonly AccessLogTuple[], seq = 17, prefix = PREFIX): void {
  const batch = encode(tuples, prefix);
  assert.deepEqual(decodeAccessLogBatch(batch, seq, 'batch'), [seq, prefix, ...tuples]);
  const w = new AccessLogBatchWriter(prefix, LEAD);
  for (const t of tuples) w.record(factsOfTuple(t));
  assert.equal(w.count, tuples.length);
  const bytes = w.bytes;
  const led = w.take();
  assert.ok(led !== undefined);
  assert.equal(led.length, bytes);
  assert.equal(led[0], LEAD);
  assert.deepEqual(Buffer.from(led.subarray(1)), batch);
}

/** The head of a body and its batches, each after its seq and length. */
function bodyOf(entries: readonly [seq: number, batch: Buffer][], resourceJson = RESOURCE_JSON): Buffer {
  const parts = [accessLogBodyHead(resourceJson)];
  for (const [seq, batch] of entries) {
    const head = Buffer.alloc(16);
    parts.push(head.subarray(0, writeAccessLogEntryHead(head, 0, seq, batch.length)), batch);
  }
  return Buffer.concat(parts);
}

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

/** Checks that `body` is refused naming `path`, with a message matching `message`. */
function assertRefused(body: Buffer, path: string, message: RegExp): void {
  const err = refusal(() => binaryAccessLogsToOtlp(body));
  assert.equal(err.path, path, err.message);
  assert.match(err.message, message);
}

// The format as its header comment describes it, written here on its own, byte by byte: what the
// writer's bytes are compared with, and how malformed batches are made.

/** "Same as the previous record's". */
const SAME = Symbol('same');
/** A text slot: none, the previous record's, a string, or raw bytes (after a correct length). */
type Text = string | null | typeof SAME | Buffer;

function varint(v: number): Buffer {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

function f64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return b;
}

function text(t: Text): Buffer {
  if (t === null) return Buffer.from([0]);
  if (t === SAME) return Buffer.from([1]);
  const bytes = Buffer.isBuffer(t) ? t : Buffer.from(t, 'utf8');
  return Buffer.concat([varint(bytes.length + 2), bytes]);
}

interface SpecRecord {
  flags: number;
  startMs: number;
  /** A number as a varint, or raw bytes. */
  durationUs: number | Buffer;
  status: number | Buffer;
  /** As written: 0 for none, else the count plus one. */
  attempts: number | Buffer;
  traceId: string;
  spanId: string;
  /** The 13 texts, service to userAgent. */
  texts: Text[];
  parentSpanId?: string;
  /** Present exactly when the record is sampled (flag 2). */
  traceState?: Text;
  adjustedCount?: number;
}

const rawVarint = (v: number | Buffer): Buffer => (Buffer.isBuffer(v) ? v : varint(v));

function specRecord(r: SpecRecord): Buffer {
  assert.equal(r.texts.length, 13);
  const parts = [
    Buffer.from([r.flags]),
    f64(r.startMs),
    rawVarint(r.durationUs),
    rawVarint(r.status),
    rawVarint(r.attempts),
    Buffer.from(r.traceId, 'hex'),
    Buffer.from(r.spanId, 'hex'),
    ...r.texts.map(text),
  ];
  if (r.parentSpanId !== undefined) parts.push(Buffer.from(r.parentSpanId, 'hex'));
  if (r.traceState !== undefined) parts.push(text(r.traceState));
  if (r.adjustedCount !== undefined) parts.push(f64(r.adjustedCount));
  return Buffer.concat(parts);
}

function specBatch(prefix: string | Buffer, records: readonly Buffer[], count = records.length): Buffer {
  const p = Buffer.isBuffer(prefix) ? prefix : Buffer.from(prefix, 'utf8');
  const c = Buffer.alloc(4);
  c.writeUInt32LE(count);
  return Buffer.concat([varint(p.length), p, c, ...records]);
}

/** bare() as the format writes it. */
const bareSpec = (): SpecRecord => ({
  flags: 1,
  startMs: 1_700_000_000_000,
  durationUs: 7000,
  status: 201,
  attempts: 0,
  traceId: TRACE,
  spanId: SPAN,
  texts: ['frontend', 'inbound', null, 'POST', null, null, null, null, null, null, 'req-1', null, null],
});

/** full() as the format writes it: completed, sampled, client, with an adjusted count. */
const fullSpec = (): SpecRecord => ({
  flags: 1 | 2 | 8 | 32,
  startMs: START_MS,
  durationUs: 12_500,
  status: 200,
  attempts: 3,
  traceId: TRACE,
  spanId: SPAN,
  texts: [
    'catalog',
    'outbound',
    'orders',
    'GET',
    '/users/alice?x="1"',
    'catalog.mesh',
    'eu-west/eu-west-a',
    'us-east',
    'zone-down',
    'stale-config',
    'req-42',
    '203.0.113.7',
    'curl/8.5.0',
  ],
  traceState: null,
  adjustedCount: 16,
});

/** A batch of one record, `spec` changed by `change`, in a body of its own. */
function oneRecordBody(change: (r: SpecRecord) => void, base = bareSpec, seq = 1): Buffer {
  const r = base();
  change(r);
  return bodyOf([[seq, specBatch(PREFIX, [specRecord(r)])]]);
}

/** A deterministic PRNG (mulberry32): numbers in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Records of every kind, for bodies. */
const mixed = (): AccessLogTuple[] => [
  tuple(full(), { 16: spanId(1) }),
  tuple(bare(), { 16: spanId(2) }),
  tuple(withSpan(full(), ['server', PARENT, 'ot=th:fd70a4', true, 100.00009536752259]), {
    16: spanId(3),
    8: 503,
  }),
  tuple(withSpan(bare(), ['server', null, '', false, null]), { 16: spanId(4), 6: '/café/日本/🚀' }),
  tuple(full(), { 16: spanId(5), 9: false, 10: 0, 19: 'Mozilla/5.0 (日本語; 😀)', 20: null }),
];

describe('binary access-log batches (format 4): round trip', () => {
  it('gives back a record with every optional field null, and one with every field set', () => {
    assertRoundTrip([bare()]);
    assertRoundTrip([full()]);
    assertRoundTrip([bare(), full(), bare()]);
  });

  it('gives back the span facts: kind, parent, traceState, forced, adjustedCount, each with and without', () => {
    const spans: AccessLogSpan[] = [
      ['client', null, null, false, 16],
      ['server', null, null, false, null],
      ['server', PARENT, null, false, null],
      ['client', PARENT, 'ot=th:fd70a4,vendor=x', true, 100.00009536752259],
      ['server', null, 'ot=th:8', true, null],
      ['client', null, '', false, 0],
      ['server', PARENT, null, true, 1],
      ['client', null, null, true, 2 ** 52 + 0.5],
    ];
    for (const span of spans) {
      assertRoundTrip([withSpan(full(), span)]);
      assertRoundTrip([withSpan(bare(), span)]);
    }
    // All of them in one batch, unsampled records between them.
    const all = spans.flatMap((span, k) => [
      tuple(withSpan(full(), span), { 16: spanId(2 * k) }),
      tuple(bare(), { 16: spanId(2 * k + 1) }),
    ]);
    assertRoundTrip(all);
  });

  it('gives back the completed flag, the attempts (0, null, and past one byte) and the status', () => {
    for (const attempts of [null, 0, 1, 2, 126, 127, 128, 10_000]) {
      assertRoundTrip([tuple(full(), { 10: attempts })]);
      assertRoundTrip([tuple(bare(), { 10: attempts })]);
    }
    for (const status of [0, 1, 127, 128, 200, 499, 599, 65_535])
      assertRoundTrip([tuple(bare(), { 8: status, 9: false })]);
  });

  it('gives back non-ASCII text: é, 日本, emoji, in the path, the user agent and the others', () => {
    assertRoundTrip([
      tuple(full(), {
        2: 'catalogué',
        6: '/café/日本/🚀?q=✓',
        17: 'ré-1',
        19: 'Mozilla/5.0 (日本語; 😀)',
        20: ['server', PARENT, 'vendor=日本', false, null],
      }),
    ]);
    // ASCII first, then not: the one-byte path gives up half-way.
    assertRoundTrip([tuple(bare(), { 6: 'abcé', 19: `${'a'.repeat(120)}é` })]);
    // Empty strings are strings, not none.
    assertRoundTrip([tuple(bare(), { 2: '', 6: '', 19: '' })]);
  });

  it('gives back long text, with a length of more than one byte', () => {
    for (const n of [124, 125, 126, 127, 128, 300, 16_381, 16_382, 20_000]) {
      assertRoundTrip([tuple(full(), { 6: 'p'.repeat(n), 19: 'u'.repeat(n) })]);
    }
    assertRoundTrip([tuple(bare(), { 6: 'é'.repeat(100), 19: '日'.repeat(50), 7: '😀'.repeat(40) })]);
    // A length of 126 bytes is written as the varint 128: two bytes.
    const batch = encode([tuple(bare(), { 6: 'x'.repeat(126) })]);
    const r = bareSpec();
    r.texts[4] = 'x'.repeat(126);
    assert.deepEqual(batch, specBatch(PREFIX, [specRecord(r)]));
    assert.ok(batch.includes(Buffer.from([0x80, 0x01, 0x78])), 'the two-byte length, then the text');
  });

  it('gives back large and fractional times: startMs to the bit, durationUs to 2^53 − 1', () => {
    for (const [startMs, durationUs] of [
      [1.7e12 + 0.123, 2 ** 40],
      [1_700_000_000_000.25, 0],
      [0, 1],
      [Number.MIN_VALUE, 127],
      [18_446_744_073_709, 128],
      [1.7e12, Number.MAX_SAFE_INTEGER],
    ] as const) {
      assertRoundTrip([tuple(full(), { 0: startMs, 1: durationUs })]);
      assertRoundTrip([tuple(bare(), { 0: startMs, 1: durationUs })]);
    }
  });

  it('gives back a value repeated across records, and one that goes A, none, A', () => {
    const tuples: AccessLogTuple[] = [
      tuple(withSpan(full(), ['client', PARENT, 'ts', false, 4]), { 18: 'A', 6: '/p' }),
      tuple(full(), { 18: null, 6: '/p', 20: null }),
      tuple(withSpan(full(), ['client', PARENT, 'ts', false, 4]), { 18: 'A', 6: null }),
      tuple(withSpan(full(), ['server', null, null, true, null]), { 18: 'A', 6: '/p' }),
      tuple(withSpan(full(), ['server', null, 'ts', true, null]), { 18: 'B', 6: '/p' }),
      tuple(full(), { 18: 'A', 6: '/q' }),
      tuple(full(), { 18: 'A', 6: '/q' }),
    ];
    assertRoundTrip(tuples);
  });

  it('takes records from facts that the caller reuses', () => {
    const tuples = mixed();
    const w = new AccessLogBatchWriter(PREFIX);
    const facts: Record<string, unknown> = {};
    for (const t of tuples) {
      Object.assign(facts, factsOfTuple(t));
      w.record(facts as unknown as AccessLogFacts);
    }
    const batch = w.take();
    assert.ok(batch !== undefined);
    assert.deepEqual(decodeAccessLogBatch(batch, 3, 'b'), [3, PREFIX, ...tuples]);
  });

  it('maps a tuple to the facts a proxy has: -1 and undefined for none, a route of "" for none', () => {
    const f = factsOfTuple(bare());
    assert.equal(f.route, '');
    assert.equal(f.attemptCount, -1);
    assert.equal(f.adjustedCount, -1);
    assert.equal(f.path, undefined);
    assert.equal(f.sampled, false);
    assert.equal(f.kind, 'server');
    const g = factsOfTuple(withSpan(full(), ['client', PARENT, 'ts', true, 3]));
    assert.deepEqual(
      [g.sampled, g.kind, g.parentSpanId, g.traceState, g.forced, g.adjustedCount, g.attemptCount],
      [true, 'client', PARENT, 'ts', true, 3, 2],
    );
  });
});

describe('binary access-log batches (format 4): the bytes', () => {
  it('writes the layout of the format: prefix, count, then each record', () => {
    assert.deepEqual(encode([bare()]), specBatch(PREFIX, [specRecord(bareSpec())]));
    assert.deepEqual(encode([full()]), specBatch(PREFIX, [specRecord(fullSpec())]));
    const sampled = fullSpec();
    sampled.flags = 1 | 2 | 4 | 16;
    sampled.parentSpanId = PARENT;
    sampled.traceState = 'ot=th:8';
    delete sampled.adjustedCount;
    assert.deepEqual(
      encode([withSpan(full(), ['server', PARENT, 'ot=th:8', true, null])]),
      specBatch(PREFIX, [specRecord(sampled)]),
    );
    // Not completed, not sampled: flags 0.
    const r = bareSpec();
    r.flags = 0;
    assert.deepEqual(encode([tuple(bare(), { 9: false })]), specBatch(PREFIX, [specRecord(r)]));
    // A prefix of more than 127 bytes has a two-byte length.
    const long = `${'é'.repeat(70)}-`;
    assert.deepEqual(encode([bare()], long), specBatch(long, [specRecord(bareSpec())]));
  });

  it('writes a text equal to the previous record\'s as one byte, and none as none, not "same"', () => {
    const tuples: AccessLogTuple[] = [
      tuple(bare(), { 18: 'A' }),
      tuple(bare(), { 18: null }),
      tuple(bare(), { 18: 'A' }),
      tuple(bare(), { 18: 'A', 2: 'other' }),
    ];
    const first = bareSpec();
    first.texts[11] = 'A';
    const same = (client: Text, service: Text = SAME): SpecRecord => {
      const r = bareSpec();
      // null stays null; every other text is the previous record's.
      r.texts = r.texts.map((t) => (t === null ? null : SAME));
      r.texts[0] = service;
      r.texts[11] = client;
      return r;
    };
    assert.deepEqual(
      encode(tuples),
      specBatch(PREFIX, [
        specRecord(first),
        specRecord(same(null)),
        // After none, the value again in full: "same" refers to the previous record only.
        specRecord(same('A')),
        specRecord(same(SAME, 'other')),
      ]),
    );
    // traceState is the previous sampled record's, across records without a span.
    const traced: AccessLogTuple[] = [
      withSpan(bare(), ['server', null, 'ts', false, null]),
      bare(),
      withSpan(bare(), ['server', null, 'ts', false, null]),
    ];
    const a = bareSpec();
    a.flags = 3;
    a.traceState = 'ts';
    const b = same(null);
    const c = same(null);
    c.flags = 3;
    c.traceState = SAME;
    assert.deepEqual(encode(traced), specBatch(PREFIX, [specRecord(a), specRecord(b), specRecord(c)]));
    assertRoundTrip(traced);
  });

  it('makes a repeated record much smaller than the first', () => {
    const one = encode([full()]).length;
    const two = encode([full(), full()]).length;
    const first = one - specBatch(PREFIX, []).length;
    const second = two - one;
    // flags, start, three varints, the ids, 13 "same" bytes, no traceState, the adjusted count.
    assert.equal(second, 1 + 8 + 2 + 2 + 1 + 16 + 8 + 13 + 1 + 8);
    assert.ok(second * 3 < first, `${second} bytes against ${first}`);
    assert.equal(first, specRecord(fullSpec()).length);
  });

  it('has no batch without a record, and starts each batch afresh', () => {
    const w = new AccessLogBatchWriter(PREFIX, LEAD);
    assert.equal(w.take(), undefined);
    assert.equal(w.count, 0);
    assert.equal(w.bytes, 0);
    w.record(factsOfTuple(full()));
    w.record(factsOfTuple(bare()));
    const firstBatch = w.take();
    assert.ok(firstBatch !== undefined);
    const first = Buffer.from(firstBatch);
    assert.equal(w.take(), undefined, 'taken once');
    assert.equal(w.count, 0);
    // The same values as the last record of the first batch: still written in full.
    w.record(factsOfTuple(bare()));
    w.record(factsOfTuple(full()));
    const second = w.take();
    assert.ok(second !== undefined);
    const alone = new AccessLogBatchWriter(PREFIX, LEAD);
    alone.record(factsOfTuple(bare()));
    alone.record(factsOfTuple(full()));
    assert.deepEqual(second, alone.take());
    assert.deepEqual(decodeAccessLogBatch(second.subarray(1), 2, 'b'), [2, PREFIX, bare(), full()]);
    assert.deepEqual(decodeAccessLogBatch(first.subarray(1), 1, 'b'), [1, PREFIX, full(), bare()]);
  });

  it('grows past its first buffer', () => {
    const tuples: AccessLogTuple[] = [];
    for (let k = 0; k < 1000; k++) {
      const base =
        k % 10 === 0 ? withSpan(full(), ['client', PARENT, `ts-${k % 3}`, k % 20 === 0, k]) : bare();
      tuples.push(
        tuple(base, {
          0: 1_700_000_000_000 + k * 0.5,
          1: k * 1000,
          6: k % 7 === 0 ? `/items/${k}/${'é'.repeat(k % 50)}` : `/items/${k % 3}`,
          8: 200 + (k % 5),
          10: k % 4 === 0 ? null : k % 3,
          16: spanId(k),
          18: k % 3 === 0 ? null : `10.0.0.${k % 2}`,
          19: k % 100 === 0 ? 'x'.repeat(1000 + k) : null,
        }),
      );
    }
    const w = new AccessLogBatchWriter(PREFIX, LEAD, 64);
    for (const t of tuples) w.record(factsOfTuple(t));
    assert.equal(w.count, 1000);
    const bytes = w.bytes;
    const batch = w.take();
    assert.ok(batch !== undefined);
    assert.equal(batch.length, bytes);
    assert.ok(batch.length > 64 * 1024, `${batch.length} bytes`);
    assert.deepEqual(decodeAccessLogBatch(batch.subarray(1), 9, 'b'), [9, PREFIX, ...tuples]);
    // The next batch, in the grown buffer.
    w.record(factsOfTuple(full()));
    const next = w.take();
    assert.ok(next !== undefined);
    assert.deepEqual(decodeAccessLogBatch(next.subarray(1), 10, 'b'), [10, PREFIX, full()]);
  });

  it('counts the records of a batch from its head, and reads nothing else', () => {
    assert.equal(binaryBatchRecords(encode([bare(), full(), bare()])), 3);
    const w = new AccessLogBatchWriter(PREFIX, LEAD);
    w.record(factsOfTuple(full()));
    const led = w.take();
    assert.ok(led !== undefined);
    assert.equal(binaryBatchRecords(led.subarray(1)), 1);
    assert.equal(binaryBatchRecords(Buffer.alloc(0)), undefined);
    assert.equal(binaryBatchRecords(Buffer.from([5, 0x61])), undefined, 'a prefix past the bytes');
    assert.equal(binaryBatchRecords(Buffer.from([1, 0xff, 1, 0, 0, 0])), undefined, 'not UTF-8');
    assert.equal(binaryBatchRecords(Buffer.from([1, 0x61, 1, 0])), undefined, 'a count cut short');
    assert.equal(binaryBatchRecords(Buffer.from([0xff, 0xff])), undefined, 'a varint cut short');
    assert.equal(
      binaryBatchRecords(Buffer.from('{"not":"a batch"}')),
      undefined,
      'JSON: a prefix of 123 bytes',
    );
  });
});

describe('binary access-log bodies (format 4)', () => {
  it('starts with "ISAL", the byte 4 and the resource, and has each batch after its seq and length', () => {
    assert.equal(ACCESS_LOG_BINARY_TYPE, 'application/vnd.isthmus.access-log');
    const head = accessLogBodyHead(RESOURCE_JSON);
    const json = Buffer.from(RESOURCE_JSON);
    assert.deepEqual(head, Buffer.concat([Buffer.from('ISAL\x04', 'latin1'), varint(json.length), json]));
    assert.ok(json.length >= 128, 'a two-byte length');
    assert.ok(isBinaryAccessLogBody(head));
    assert.ok(!isBinaryAccessLogBody(Buffer.from('{"format":"isthmus.access-log/3"}')));
    assert.ok(!isBinaryAccessLogBody(Buffer.from('ISAL\x03')));
    assert.ok(!isBinaryAccessLogBody(Buffer.from('ISAL')));
    const buf = Buffer.alloc(40, 0xee);
    const end = writeAccessLogEntryHead(buf, 3, 2 ** 35, 300);
    assert.equal(end, 3 + 6 + 2);
    assert.deepEqual(buf.subarray(3, end), Buffer.concat([varint(2 ** 35), varint(300)]));
    assert.equal(buf[2], 0xee);
    assert.equal(buf[end], 0xee);
    // At most 16 bytes.
    assert.equal(writeAccessLogEntryHead(buf, 0, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER), 16);
  });

  it('becomes exactly what the same records give as a format-3 body', () => {
    const a = mixed();
    const b = [tuple(bare(), { 16: spanId(9) }), tuple(full(), { 16: spanId(10), 2: 'ünïcode' })];
    const body = bodyOf([
      [17, encode(a)],
      [2 ** 35, encode(b, 'other-')],
    ]);
    const decoded = decodeAccessLogBody(body);
    assert.deepEqual(decoded.resource, RESOURCE);
    assert.deepEqual(decoded.batches, [
      [17, PREFIX, ...a],
      [2 ** 35, 'other-', ...b],
    ]);
    const got = binaryAccessLogsToOtlp(body);
    const want = accessLogsToOtlp({
      format: ACCESS_LOG_FORMAT,
      resource: RESOURCE,
      batches: [
        [17, PREFIX, ...a],
        [2 ** 35, 'other-', ...b],
      ],
    });
    assert.deepEqual(got, want);
    // And what that is: a log record for each record, with its seq, its id and the resource's place.
    const logs = (got.logs.resourceLogs as JsonObject[])[0] as JsonObject;
    assert.deepEqual(logs.resource, RESOURCE);
    const records = ((logs.scopeLogs as JsonObject[])[0] as JsonObject).logRecords as JsonObject[];
    assert.equal(records.length, a.length + b.length);
    const attr = (r: JsonObject, key: string) =>
      (r.attributes as JsonObject[]).find((x) => x.key === key)?.value as JsonObject | undefined;
    const ids = [
      ...a.map((_, k) => [`${PREFIX}17.${k}`, '17']),
      ...b.map((_, k) => [`other-${2 ** 35}.${k}`, String(2 ** 35)]),
    ];
    records.forEach((r, k) => {
      const [id, seq] = ids[k] as [string, string];
      assert.deepEqual(attr(r, 'isthmus.seq'), { intValue: seq });
      assert.deepEqual(attr(r, 'isthmus.record_id'), { stringValue: id });
      assert.deepEqual(attr(r, 'region'), { stringValue: 'eu-west' });
      assert.deepEqual(attr(r, 'zone'), { stringValue: 'eu-west-a' });
    });
    assert.deepEqual(attr(records[3] as JsonObject, 'path'), { stringValue: '/café/日本/🚀' });
    // A span for each sampled record, in order.
    assert.ok(got.traces !== undefined);
    const spans = (
      ((got.traces.resourceSpans as JsonObject[])[0] as JsonObject).scopeSpans as JsonObject[]
    )[0]?.spans as JsonObject[];
    assert.deepEqual(
      spans.map((x) => x.spanId),
      [spanId(1), spanId(3), spanId(4), spanId(10)],
    );
    assert.equal(spans[1]?.parentSpanId, PARENT);
    assert.equal(spans[1]?.traceState, 'ot=th:fd70a4');
  });

  it("counts the records of a body from its batches' heads", () => {
    const body = bodyOf([
      [5, encode(mixed())],
      [6, encode([bare(), full()])],
    ]);
    assert.equal(binaryBodyRecords(body), 7);
    assert.equal(binaryBodyRecords(accessLogBodyHead(RESOURCE_JSON)), 0);
    assert.equal(binaryBodyRecords(body.subarray(0, body.length - 1)), undefined, 'cut short');
    assert.equal(binaryBodyRecords(Buffer.from('{"format":"isthmus.access-log/3"}')), undefined);
    const past = Buffer.concat([Buffer.from('ISAL\x04'), varint(100), Buffer.from('{}')]);
    assert.equal(binaryBodyRecords(past), undefined, 'a resource past the body');
  });

  it('takes a body of no batch, and one without isthmus.zone (zone "")', () => {
    const empty = binaryAccessLogsToOtlp(accessLogBodyHead(RESOURCE_JSON));
    assert.deepEqual(empty, accessLogsToOtlp({ format: ACCESS_LOG_FORMAT, resource: RESOURCE, batches: [] }));
    const res = { attributes: [s('isthmus.region', 'us-east')] };
    const got = binaryAccessLogsToOtlp(bodyOf([[1, encode([bare()])]], JSON.stringify(res)));
    assert.deepEqual(
      got,
      accessLogsToOtlp({ format: ACCESS_LOG_FORMAT, resource: res, batches: [[1, PREFIX, bare()]] }),
    );
    assert.equal(got.traces, undefined);
  });
});

describe('binary access-log bodies (format 4): refusals', () => {
  const good = bodyOf([[1, encode([bare()])]]);

  it('refuses a body without the magic, naming magic', () => {
    for (const body of [
      Buffer.alloc(0),
      Buffer.from('ISAL'),
      Buffer.from('isal\x04'),
      Buffer.concat([Buffer.from('ISAL\x03'), good.subarray(5)]),
      Buffer.concat([Buffer.from('ISAL\x05'), good.subarray(5)]),
      Buffer.from(JSON.stringify({ format: ACCESS_LOG_FORMAT, resource: RESOURCE, batches: [] })),
    ])
      assertRefused(body, 'magic', /starts with "ISAL" and the byte 4/);
  });

  it('refuses a resource that is not JSON, not an object, or without isthmus.region, naming resource', () => {
    assertRefused(bodyOf([], '{"attributes":'), 'resource', /is not JSON/);
    assertRefused(bodyOf([[1, encode([bare()])]], 'nope'), 'resource', /is not JSON/);
    for (const json of ['null', '[]', '"eu-west"', '7', 'true'])
      assertRefused(bodyOf([[1, encode([bare()])]], json), 'resource', /must be an object/);
    for (const json of [
      '{}',
      '{"attributes":[]}',
      '{"attributes":[{"key":"isthmus.region","value":{"intValue":"1"}}]}',
    ])
      assertRefused(bodyOf([[1, encode([bare()])]], json), 'resource', /isthmus\.region/);
    // Its length past the body, and bytes that are not UTF-8. (The path names the resource.)
    for (const body of [
      Buffer.concat([Buffer.from('ISAL\x04'), varint(100), Buffer.from('{}')]),
      Buffer.concat([Buffer.from('ISAL\x04'), Buffer.from([2, 0xc3, 0x28])]),
      Buffer.concat([Buffer.from('ISAL\x04'), Buffer.from([0x80])]),
    ]) {
      const err = refusal(() => binaryAccessLogsToOtlp(body));
      assert.match(err.path, /resource/, err.message);
    }
  });

  it('refuses a body cut at any byte, except between batches, where it has fewer batches', () => {
    const batches: [number, Buffer][] = [
      [5, encode(mixed().slice(0, 3))],
      [6, encode(mixed().slice(3))],
    ];
    const body = bodyOf(batches);
    const head = accessLogBodyHead(RESOURCE_JSON).length;
    const afterFirst = bodyOf(batches.slice(0, 1)).length;
    assert.deepEqual(decodeAccessLogBody(body).batches.length, 2);
    const whole = binaryAccessLogsToOtlp(body);
    const records = (r: ReturnType<typeof binaryAccessLogsToOtlp>) =>
      (((r.logs.resourceLogs as JsonObject[])[0]?.scopeLogs as JsonObject[])[0]?.logRecords as JsonObject[])
        .length;
    assert.equal(records(whole), 5);
    for (let cut = 0; cut < body.length; cut++) {
      const part = body.subarray(0, cut);
      if (cut === head || cut === afterFirst) {
        const n = cut === head ? 0 : 1;
        assert.equal(decodeAccessLogBody(part).batches.length, n, `cut at ${cut}`);
        assert.equal(records(binaryAccessLogsToOtlp(part)), n === 0 ? 0 : 3, `cut at ${cut}`);
        continue;
      }
      const err = refusal(() => binaryAccessLogsToOtlp(part));
      const where =
        cut < 5 ? /^magic$/ : cut < head ? /resource/ : cut < afterFirst ? /^batches\[0\]/ : /^batches\[1\]/;
      assert.match(err.path, where, `cut at ${cut}: ${err.message}`);
    }
  });

  it('refuses an entry cut short or longer than the body, naming the batch', () => {
    const head = accessLogBodyHead(RESOURCE_JSON);
    assertRefused(Buffer.concat([head, Buffer.from([0x80])]), 'batches[0] (seq)', /the bytes end inside it/);
    assertRefused(Buffer.concat([head, Buffer.from([1, 0x80])]), 'batches[0] (length)', /end inside it/);
    assertRefused(
      Buffer.concat([head, Buffer.from([1, 100]), Buffer.alloc(10)]),
      'batches[0] (batch)',
      /end inside it/,
    );
    assertRefused(
      Buffer.concat([good, Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])]),
      'batches[1] (seq)',
      /is a varint longer than 8 bytes/,
    );
  });

  it('refuses flags with bits the format does not define, or span bits without the span bit', () => {
    for (const flags of [64, 65, 128, 255])
      assertRefused(
        oneRecordBody((r) => (r.flags = flags)),
        'batches[0][2] (flags)',
        new RegExp(`^batches\\[0\\]\\[2\\] \\(flags\\): ${flags} has bits this format does not define`),
      );
    for (const bit of [4, 8, 16, 32])
      assertRefused(
        oneRecordBody((r) => (r.flags = 1 | bit)),
        'batches[0][2] (flags)',
        new RegExp(`${1 | bit} has span bits without the span bit \\(2\\)`),
      );
  });

  it('refuses "same as previous" in the first record, naming the text', () => {
    assertRefused(
      oneRecordBody((r) => (r.texts[0] = SAME)),
      'batches[0][2] (service)',
      /refers to the previous record, and this is the first/,
    );
    assertRefused(
      oneRecordBody((r) => (r.texts[12] = SAME)),
      'batches[0][2] (userAgent)',
      /refers to the previous record/,
    );
    assertRefused(
      oneRecordBody((r) => (r.traceState = SAME), fullSpec),
      'batches[0][2] (traceState)',
      /refers to the previous record/,
    );
    // In a second record it is the first's value.
    const second = fullSpec();
    second.texts = second.texts.map(() => SAME);
    const body = bodyOf([[1, specBatch(PREFIX, [specRecord(fullSpec()), specRecord(second)])]]);
    assert.deepEqual(decodeAccessLogBody(body).batches, [[1, PREFIX, full(), full()]]);
  });

  it('refuses a count of 0, or more records than the bytes can hold, naming count', () => {
    assertRefused(
      bodyOf([[1, specBatch(PREFIX, [specRecord(bareSpec())], 0)]]),
      'batches[0] (count)',
      /is 0: a batch has at least one record/,
    );
    for (const count of [2, 1000, 2 ** 32 - 1])
      assertRefused(
        bodyOf([[1, specBatch(PREFIX, [specRecord(bareSpec())], count)]]),
        'batches[0] (count)',
        new RegExp(`is ${count}, more records than \\d+ bytes can hold`),
      );
    // A count the bytes could hold, one record short: the missing record is named.
    const long = specRecord(fullSpec());
    assert.ok(long.length >= 2 * 49);
    assertRefused(
      bodyOf([[1, specBatch(PREFIX, [long], 2)]]),
      'batches[0][3] (flags)',
      /the bytes end inside it/,
    );
    // A count cut short.
    assertRefused(
      bodyOf([[1, Buffer.concat([varint(1), Buffer.from('p'), Buffer.from([1, 0])])]]),
      'batches[0] (count)',
      /end inside it/,
    );
  });

  it('refuses bytes after the records, and a record cut short, naming where', () => {
    const batch = specBatch(PREFIX, [specRecord(bareSpec())]);
    assertRefused(
      bodyOf([[1, Buffer.concat([batch, Buffer.from([0])])]]),
      'batches[0] (records)',
      /^batches\[0\] \(records\): 1 bytes follow the 1 records/,
    );
    assertRefused(
      bodyOf([[1, batch.subarray(0, batch.length - 1)]]),
      'batches[0][2] (userAgent)',
      /the bytes end inside it/,
    );
    const two = specBatch(PREFIX, [specRecord(bareSpec()), specRecord(fullSpec())]);
    assertRefused(
      bodyOf([[1, two.subarray(0, two.length - 4)]]),
      'batches[0][3] (adjustedCount)',
      /end inside it/,
    );
  });

  it('refuses text, a prefix or a resource that is not UTF-8', () => {
    for (const bad of [
      Buffer.from([0xc3, 0x28]),
      Buffer.from([0xff]),
      Buffer.from([0xc0, 0x80]),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from([0x61, 0xe6, 0x97]),
    ]) {
      assertRefused(
        oneRecordBody((r) => (r.texts[0] = bad)),
        'batches[0][2] (service)',
        /is not UTF-8/,
      );
      assertRefused(
        oneRecordBody((r) => (r.texts[4] = bad)),
        'batches[0][2] (path)',
        /is not UTF-8/,
      );
      assertRefused(
        bodyOf([[1, specBatch(bad, [specRecord(bareSpec())])]]),
        'batches[0] (prefix)',
        /is not UTF-8/,
      );
    }
    const err = refusal(() =>
      binaryAccessLogsToOtlp(Buffer.concat([Buffer.from('ISAL\x04'), Buffer.from([3, 0x7b, 0xff, 0x7d])])),
    );
    assert.match(err.path, /resource/);
    assert.match(err.message, /is not UTF-8/);
  });

  it('refuses a varint longer than 8 bytes, or past 2^53', () => {
    const nine = Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    assertRefused(
      oneRecordBody((r) => (r.durationUs = nine)),
      'batches[0][2] (durationUs)',
      /is a varint longer than 8 bytes/,
    );
    assertRefused(
      oneRecordBody((r) => (r.status = nine)),
      'batches[0][2] (status)',
      /longer than 8 bytes/,
    );
    assertRefused(
      oneRecordBody((r) => (r.attempts = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))),
      'batches[0][2] (attempts)',
      /is past 2\^53/,
    );
    // 8 bytes at most: the largest safe integer takes all 8.
    assert.equal(varint(Number.MAX_SAFE_INTEGER).length, 8);
    const r = bareSpec();
    r.durationUs = Number.MAX_SAFE_INTEGER;
    const batch = specBatch(PREFIX, [specRecord(r)]);
    assert.equal((decodeAccessLogBatch(batch, 1, 'b')[2] as unknown[])[1], Number.MAX_SAFE_INTEGER);
  });

  it('refuses what the format-3 checks refuse, naming it as in format 3', () => {
    assertRefused(
      bodyOf([[1, specBatch('', [specRecord(bareSpec())])]]),
      'batches[0][1] (prefix)',
      /must be a string of 1 to 256 characters/,
    );
    assertRefused(
      bodyOf([[1, encode([bare()], 'p'.repeat(257))]]),
      'batches[0][1] (prefix)',
      /1 to 256 characters/,
    );
    // The binary form's own bound on the prefix, before anything is read for it.
    assertRefused(
      bodyOf([[1, specBatch('p'.repeat(1025), [specRecord(bareSpec())])]]),
      'batches[0] (prefix)',
      /is 1025 bytes, more than 1024/,
    );
    assertRefused(
      bodyOf([[0, encode([bare()])]]),
      'batches[0][0]',
      /isthmus\.seq must be a positive integer/,
    );
    for (const startMs of [NaN, -1, Infinity])
      assertRefused(
        oneRecordBody((r) => (r.startMs = startMs)),
        'batches[0][2][0] (startMs)',
        /must be a non-negative number/,
      );
    assertRefused(
      oneRecordBody((r) => {
        r.startMs = 18_446_744_073_000;
        r.durationUs = 10 ** 9;
      }),
      'batches[0][2][0] (startMs)',
      /the last time OTLP can hold/,
    );
    for (const adjusted of [NaN, -1, Infinity])
      assertRefused(
        oneRecordBody((r) => (r.adjustedCount = adjusted), fullSpec),
        'batches[0][2][20][4] (adjustedCount)',
        /must be a non-negative number or null/,
      );
    assertRefused(
      oneRecordBody((r) => (r.traceState = 'a'.repeat(32 * 257 + 1)), fullSpec),
      'batches[0][2][20][2] (traceState)',
      /at most 8224 characters/,
    );
    // Required texts may not be none.
    assertRefused(
      oneRecordBody((r) => (r.texts[0] = null)),
      'batches[0][2][2] (service)',
      /must be a string$/,
    );
    assertRefused(
      oneRecordBody((r) => (r.texts[10] = null)),
      'batches[0][2][17] (requestId)',
      /must be a string$/,
    );
    // Named in its batch and at its place: the second record of the second batch.
    const bad = bareSpec();
    bad.startMs = -5;
    assertRefused(
      bodyOf([
        [1, encode([bare()])],
        [2, specBatch(PREFIX, [specRecord(bareSpec()), specRecord(bad)])],
      ]),
      'batches[1][3][0] (startMs)',
      /must be a non-negative number/,
    );
  });

  it('refuses to write what the format cannot hold, and keeps the batch whole', () => {
    const w = new AccessLogBatchWriter(PREFIX);
    w.record(factsOfTuple(bare()));
    const cases: [Partial<Record<keyof AccessLogFacts, unknown>>, RegExp][] = [
      [{ startWallMs: Number.NaN }, /startWallMs must be a non-negative number/],
      [{ startWallMs: -1 }, /startWallMs/],
      [{ durationUs: 1.5 }, /durationUs must be a non-negative integer/],
      [{ durationUs: Infinity }, /durationUs/],
      [{ status: -1 }, /status must be a non-negative integer/],
      [{ status: 200.5 }, /status/],
      [{ attemptCount: -2 }, /attemptCount/],
      [{ sampled: true, adjustedCount: Infinity }, /adjustedCount must be a finite number/],
      [{ service: undefined }, /service, listener and method must be strings/],
      [{ requestId: undefined }, /requestId must be a string/],
      [{ traceId: 'A'.repeat(32) }, /traceId must be 32 lower-case hex digits/],
      [{ traceId: '0'.repeat(33) }, /traceId must be 32/],
      [{ spanId: `${'0'.repeat(15)}é` }, /spanId must be 16 lower-case hex digits/],
      [{ sampled: true, parentSpanId: 'xyz' }, /parentSpanId must be 16/],
    ];
    for (const [change, message] of cases) {
      const facts = { ...factsOfTuple(bare()), ...change } as AccessLogFacts;
      assert.throws(
        () => w.record(facts),
        { code: 'ISTHMUS_E_INVALID_VALUE', message },
        JSON.stringify(change),
      );
    }
    assert.equal(w.count, 1);
    w.record(factsOfTuple(bare()));
    assert.deepEqual(decodeAccessLogBatch(w.take() as Buffer, 1, 'b'), [1, PREFIX, bare(), bare()]);
  });

  it('decodes or refuses with an OtlpError any mutation of a valid body (2,000, seeded)', () => {
    const body = bodyOf([
      [5, encode(mixed())],
      [6, encode([tuple(full(), { 16: spanId(20) }), tuple(bare(), { 16: spanId(21) })])],
    ]);
    const random = prng(0x15a1);
    const int = (n: number) => Math.floor(random() * n);
    let decoded = 0;
    let refusedInBatches = 0;
    for (let k = 0; k < 2000; k++) {
      let b = Buffer.from(body);
      const mutations = 1 + int(3);
      const done: string[] = [];
      for (let m = 0; m < mutations; m++) {
        const at = int(b.length);
        const kind = int(3);
        if (kind === 0) {
          b[at] = (b[at] as number) ^ (1 + int(255));
          done.push(`flip ${at}`);
        } else if (kind === 1) {
          b = Buffer.concat([b.subarray(0, at), Buffer.from([int(256)]), b.subarray(at)]);
          done.push(`insert ${at}`);
        } else {
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
          done.push(`delete ${at}`);
        }
      }
      try {
        binaryAccessLogsToOtlp(b);
        decoded++;
      } catch (err) {
        assert.ok(err instanceof OtlpError, `mutation ${k} (${done.join(', ')}): ${String(err)}`);
        if (err.path.startsWith('batches[')) refusedInBatches++;
      }
    }
    // Both outcomes happen: the mutations reach the records.
    assert.ok(decoded > 50, `${decoded} decoded`);
    assert.ok(refusedInBatches > 500, `${refusedInBatches} refused in a batch`);
  });
});
