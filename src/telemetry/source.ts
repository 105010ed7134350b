import { randomBytes } from 'node:crypto';
import {
  ACCESS_LOG_BINARY_TYPE,
  AccessLogBatchWriter,
  accessLogBodyHead,
  binaryBatchRecords,
  decodeAccessLogBatch,
  factsOfTuple,
  writeAccessLogEntryHead,
  type AccessLogFacts,
} from './access-log-binary.js';
import { ClientPool } from '../protocol/http1/client.js';
import { FullJitterBackoff } from '../core/backoff.js';
import { systemClock, type Clock } from '../core/clock.js';
import { systemRandom, type Random } from '../core/random.js';
import {
  ACCESS_LOG_FORMAT,
  ACCESS_LOG_FORMAT_V2,
  accessLogRecordId,
  accessLogSpanToOtlp,
  accessLogToOtlp,
  accessLogV2ToOtlp,
  checkAccessLogBatch,
  checkAccessLogBatchV2,
  type AccessLogTuple,
} from './access-log.js';
import { msToNanos, SEVERITY_NUMBER, type LostSignals } from './otlp.js';
import { WriteAheadLog, type WalDrop, type WalFullPolicy, type WalRecord } from './wal/index.js';

/**
 * The source side of telemetry (docs/telemetry-wire.md): spans, log records and metrics batches
 * are encoded as OTLP JSON items, appended to a local write-ahead log, and shipped from there to a
 * collector by one loop that acks what the collector stored. A collector outage delays signals;
 * only the log's own bound (drop-oldest) loses them, and those losses show as seq gaps.
 *
 * The seq of a record is only known once the log has taken it (append is asynchronous), so the
 * item is stored without it: the payload is one signal letter and the item's JSON, which always
 * starts with its attribute list (`{"attributes":[`, or `{"scope":{"attributes":[` for metrics).
 * The shipper splices `isthmus.seq` into that list while it builds the export body, without
 * parsing the item again. A proxy's access-log records are the exception: they are compact JSON
 * arrays (access-log.ts), gathered for a few milliseconds into one record of the log (one seq for
 * the batch: at thousands of requests a second, a log record, an export item and a checksum per
 * request would cost more than the request's own telemetry), shipped as such to the collector's
 * `/v1/access-logs` with the seq spliced in as the batch's first value, and converted to OTLP only
 * for a collector without that endpoint.
 */

export type AttributeValue = string | number | boolean;
/** Attributes; `undefined` values are left out. Integers are sent as OTLP `intValue`, other numbers as `doubleValue`. */
export type Attributes = Readonly<Record<string, AttributeValue | undefined>>;

export type SpanKind = 'internal' | 'server' | 'client';

export interface SpanData {
  traceId: string;
  spanId: string;
  parentSpanId?: string | undefined;
  traceState?: string | undefined;
  name: string;
  kind: SpanKind;
  startTimeMs: number;
  endTimeMs: number;
  /** OTLP status: error (2) when true, unset otherwise. */
  error?: boolean | undefined;
  statusMessage?: string | undefined;
  attributes: Attributes;
}

export type Severity = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

export interface LogData {
  timeMs: number;
  severity?: Severity | undefined;
  body: string;
  traceId?: string | undefined;
  spanId?: string | undefined;
  attributes: Attributes;
}

/** One metric point. Sums and histograms are cumulative since `startTimeMs`. */
export type MetricPoint =
  | {
      kind: 'sum';
      name: string;
      description?: string;
      unit?: string;
      startTimeMs: number;
      timeMs: number;
      value: number;
      attributes: Attributes;
    }
  | {
      kind: 'gauge';
      name: string;
      description?: string;
      unit?: string;
      timeMs: number;
      value: number;
      attributes: Attributes;
    }
  | {
      kind: 'histogram';
      name: string;
      description?: string;
      unit?: string;
      startTimeMs: number;
      timeMs: number;
      count: number;
      sum: number;
      /** Upper bounds, ascending; `bucketCounts` has one more entry (the +Inf bucket). Not cumulative. */
      explicitBounds: readonly number[];
      bucketCounts: readonly number[];
      attributes: Attributes;
    };

export interface TelemetrySourceOptions {
  /** Folder of the write-ahead log. */
  dir: string;
  /** Collector base URL (`http://host:port`); without it signals stay in the log (bounded by maxBytes). */
  collectorUrl?: string | URL | undefined;
  /** Stable id of the emitting process, e.g. `proxy/frontend-1@eu-west`. */
  source: string;
  resource: { service: string; region: string; zone?: string | undefined };
  buffer?: {
    maxBytes?: number;
    segmentBytes?: number;
    fsyncIntervalMs?: number;
    /** How long appends wait to be written together, ms (the log's `writeDelayMs`). */
    writeDelayMs?: number;
    whenFull?: WalFullPolicy;
  };
  /** Default 2000. */
  heartbeatIntervalMs?: number;
  clock?: Clock;
  random?: Random;
  /** Retry backoff (full jitter) after a failed export, ms. Default 100 … 30,000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /**
   * One export carries at most this many records / record bytes. Default 256 / 256 KiB: a batch
   * is read and encoded in one go on the proxy's event loop (about 5 µs a record), so a bigger
   * one delays the requests waiting behind it; a backlog drains at several times live ingest all
   * the same (docs/performance.md).
   */
  batchRecords?: number;
  batchBytes?: number;
  /** An export (or heartbeat) that takes longer fails and is retried, ms. Default 10,000. */
  requestTimeoutMs?: number;
  /**
   * Access-log records are gathered into one log record for at most this long, ms (default 10),
   * or until `accessLogBatchRecords` (default 128) are waiting. Until then they are in memory
   * only: a crash loses them, as it loses what the log has taken but not yet written.
   */
  accessLogBatchMs?: number;
  accessLogBatchRecords?: number;
  /**
   * Access-log record ids are this, the batch's seq and the record's place in the batch
   * (`<prefix><seq>.<index>`). Default: 12 random hex digits and `-`, new for each process, so
   * that ids stay unique should the log be lost and its seqs start again from 1.
   */
  recordIdPrefix?: string;
}

export interface TelemetrySourceStats {
  /** Signals handed to the source: spans, log records, access-log records and metrics batches. */
  signals: number;
  /** Records handed to the log: one per span, log record and metrics batch, one per batch of access-log records. */
  emitted: number;
  /** Bytes the log took (records with their headers): the rate a log fills, and a backlog drains, at. */
  emittedBytes: number;
  /**
   * Signals lost because the log refused their record (full with nothing droppable, failed,
   * closed): a refused batch of access-log records counts each of them.
   */
  appendFailures: number;
  /** Records the collector stored (acked). */
  shipped: number;
  /**
   * Records the collector refused as they are (`400`, `413`, `422`: sent again, they would be
   * refused again), each found by sending its batch one record at a time, then skipped so that
   * what follows still ships. Lost, and counted here; their seqs show as gaps downstream.
   */
  rejected: number;
  /** The signals the rejected records held (an access-log batch, its records). */
  rejectedSignals: number;
  exports: number;
  shipFailures: number;
  lastShipError: string | undefined;
  heartbeats: number;
  heartbeatFailures: number;
  backlogRecords: number;
  backlogBytes: number;
  /** Records lost from the log (full with drop-oldest, corrupt, torn), and the signals they held. */
  dropped: { full: WalDrop; corrupt: WalDrop; torn: WalDrop };
  lastSeq: number;
  durableSeq: number;
  ackedSeq: number;
}

/** The first byte of a record's payload says which signal its item is, as an ASCII letter. */
const TAG_SPAN = 'T';
const TAG_LOG = 'L';
const TAG_METRICS = 'M';
/**
 * A batch of access-log records in format 3 (access-log.ts), as written before format 4: a JSON
 * array of the batch's record-id prefix and the records. Still shipped, as format 3.
 */
const TAG_ACCESS_LOGS = 'C';
const BYTE_SPAN = TAG_SPAN.charCodeAt(0);
const BYTE_LOG = TAG_LOG.charCodeAt(0);
const BYTE_METRICS = TAG_METRICS.charCodeAt(0);
const BYTE_ACCESS_LOGS = TAG_ACCESS_LOGS.charCodeAt(0);
/** A batch of access-log records in their binary form (access-log-binary.ts, format 4): what this version writes. */
const BYTE_ACCESS_LOGS_BIN = 'D'.charCodeAt(0);
/** A batch of format-2 records, as written before format 3 (`B` and the records' array): still shipped, as format 2. */
const BYTE_ACCESS_LOGS_V2 = 'B'.charCodeAt(0);
/** One format-2 record per log record, as written before batches (`A` and the record's array): still shipped. */
const BYTE_ACCESS_LOG_SINGLE = 'A'.charCodeAt(0);

/**
 * How many signals a record of the log holds: an access-log batch its records (the payload is
 * read again, which only a rare path does), anything else one, as does a batch that does not parse.
 */
function signalsIn(payload: Buffer): number {
  const tag = payload[0];
  if (tag === BYTE_ACCESS_LOGS_BIN) return binaryBatchRecords(payload.subarray(1)) ?? 1;
  if (tag !== BYTE_ACCESS_LOGS && tag !== BYTE_ACCESS_LOGS_V2) return 1;
  try {
    const batch: unknown = JSON.parse(payload.toString('utf8', 1));
    if (!Array.isArray(batch)) return 1;
    // Format 3 starts with the batch's id prefix.
    return Math.max(1, tag === BYTE_ACCESS_LOGS ? batch.length - 1 : batch.length);
  } catch {
    return 1;
  }
}
const SINGLE_AS_BATCH_HEAD = Buffer.from('B[');
const SINGLE_AS_BATCH_TAIL = Buffer.from(']');
const ITEM_PREFIX = '{"attributes":[';
const METRICS_PREFIX = '{"scope":{"attributes":[';
const SCOPE = '{"name":"isthmus"}';

const KIND: Record<SpanKind, number> = { internal: 1, server: 2, client: 3 };

/** An attribute value as OTLP JSON, with the closing brace of its attribute. */
function attributeValueEnd(v: AttributeValue): string {
  if (typeof v === 'string') return `{"stringValue":${JSON.stringify(v)}}}`;
  if (typeof v === 'boolean') return `{"boolValue":${v}}}`;
  return Number.isInteger(v) ? `{"intValue":"${v}"}}` : `{"doubleValue":${Number.isFinite(v) ? v : 0}}}`;
}

/**
 * `{"key":…,"value":` by key: keys are few (the code's own), and every span and log record
 * repeats them. Bounded, should a caller make keys up as it goes.
 */
const KEY_HEADS = new Map<string, string>();
const MAX_KEY_HEADS = 1000;

function keyHead(key: string): string {
  let head = KEY_HEADS.get(key);
  if (head === undefined) {
    head = `{"key":${JSON.stringify(key)},"value":`;
    if (KEY_HEADS.size < MAX_KEY_HEADS) KEY_HEADS.set(key, head);
  }
  return head;
}

/** The inside of an OTLP attribute list (no brackets). */
export function encodeAttributes(attributes: Attributes): string {
  let out = '';
  for (const key in attributes) {
    const v = attributes[key];
    if (v === undefined) continue;
    out += (out === '' ? '' : ',') + keyHead(key) + attributeValueEnd(v);
  }
  return out;
}

export function encodeSpan(s: SpanData): string {
  return (
    `${ITEM_PREFIX}${encodeAttributes(s.attributes)}],"traceId":"${s.traceId}","spanId":"${s.spanId}"` +
    (s.parentSpanId ? `,"parentSpanId":"${s.parentSpanId}"` : '') +
    (s.traceState ? `,"traceState":${JSON.stringify(s.traceState)}` : '') +
    `,"name":${JSON.stringify(s.name)},"kind":${KIND[s.kind]}` +
    `,"startTimeUnixNano":"${msToNanos(s.startTimeMs)}","endTimeUnixNano":"${msToNanos(s.endTimeMs)}"` +
    `,"status":{"code":${s.error ? 2 : 0}${s.statusMessage ? `,"message":${JSON.stringify(s.statusMessage)}` : ''}}}`
  );
}

export function encodeLog(r: LogData): string {
  const severity = r.severity ?? 'INFO';
  const t = msToNanos(r.timeMs);
  return (
    `${ITEM_PREFIX}${encodeAttributes(r.attributes)}],"timeUnixNano":"${t}","observedTimeUnixNano":"${t}"` +
    `,"severityNumber":${SEVERITY_NUMBER[severity]},"severityText":"${severity}","body":{"stringValue":${JSON.stringify(r.body)}}` +
    (r.traceId ? `,"traceId":"${r.traceId}"` : '') +
    (r.spanId ? `,"spanId":"${r.spanId}"` : '') +
    '}'
  );
}

function encodePoint(p: MetricPoint): string {
  const attrs = `"attributes":[${encodeAttributes(p.attributes)}]`;
  const time = `"timeUnixNano":"${msToNanos(p.timeMs)}"`;
  switch (p.kind) {
    case 'gauge':
      return `{${attrs},${time},"asDouble":${p.value}}`;
    case 'sum':
      return `{${attrs},"startTimeUnixNano":"${msToNanos(p.startTimeMs)}",${time},"asDouble":${p.value}}`;
    case 'histogram':
      return (
        `{${attrs},"startTimeUnixNano":"${msToNanos(p.startTimeMs)}",${time},"count":"${p.count}","sum":${p.sum}` +
        `,"bucketCounts":[${p.bucketCounts.map((c) => `"${c}"`).join(',')}],"explicitBounds":[${p.explicitBounds.join(',')}]}`
      );
  }
}

/** One OTLP ScopeMetrics (one batch = one seq): points grouped into metrics by name, in first-seen order. */
export function encodeMetrics(points: readonly MetricPoint[]): string {
  const byName = new Map<string, MetricPoint[]>();
  for (const p of points) {
    const list = byName.get(p.name);
    if (list) list.push(p);
    else byName.set(p.name, [p]);
  }
  const metrics: string[] = [];
  for (const [name, list] of byName) {
    const head = list[0] as MetricPoint;
    const dataPoints = `"dataPoints":[${list.map(encodePoint).join(',')}]`;
    const data =
      head.kind === 'gauge'
        ? `"gauge":{${dataPoints}}`
        : head.kind === 'sum'
          ? `"sum":{${dataPoints},"aggregationTemporality":2,"isMonotonic":true}`
          : `"histogram":{${dataPoints},"aggregationTemporality":2}`;
    metrics.push(
      `{"name":${JSON.stringify(name)}` +
        (head.description ? `,"description":${JSON.stringify(head.description)}` : '') +
        (head.unit ? `,"unit":${JSON.stringify(head.unit)}` : '') +
        `,${data}}`,
    );
  }
  return `${METRICS_PREFIX}],"name":"isthmus"},"metrics":[${metrics.join(',')}]}`;
}

const ITEM_PREFIX_BYTES = Buffer.byteLength(ITEM_PREFIX);
const METRICS_PREFIX_BYTES = Buffer.byteLength(METRICS_PREFIX);
const SEQ_ATTR_HEAD = Buffer.from('{"key":"isthmus.seq","value":{"intValue":"', 'latin1');
const SEQ_ATTR_TAIL = Buffer.from('"}}', 'latin1');
/** A batch of access-log records has its seq as its array's first value: `[` + seq + `,` + the records. */
const NO_BYTES = Buffer.alloc(0);
/** A binary batch's seq and length before it in a body: two varints of at most 8 bytes. */
const MAX_ENTRY_HEAD_BYTES = 16;
const CLOSE_BRACKET = 0x5d; // ']'
const COMMA = 0x2c;

/**
 * One export body, as bytes: `head`, the items of `records` (payloads whose item JSON starts
 * with a `prefixBytes`-long list opening) with their seq spliced in as the list's first element
 * (by default the OTLP attribute `isthmus.seq`: `seqHead` + seq + `seqTail`) and joined by
 * commas, then `tail`. The items are copied once, never decoded: the payloads are UTF-8 already
 * and the splice point is a fixed offset.
 */
export function exportBody(
  head: Buffer,
  records: readonly WalRecord[],
  prefixBytes: number,
  tail: Buffer,
  alloc: (size: number) => Buffer = (size) => Buffer.allocUnsafe(size),
  seqHead: Buffer = SEQ_ATTR_HEAD,
  seqTail: Buffer = SEQ_ATTR_TAIL,
): Buffer {
  const seqs = new Array<string>(records.length);
  let size = head.length + tail.length + Math.max(0, records.length - 1);
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as WalRecord;
    const seq = String(r.seq);
    seqs[i] = seq;
    const itemBytes = r.payload.length - 1;
    // The attribute, and a comma unless the item's own attribute list is empty.
    size += itemBytes + seqHead.length + seq.length + seqTail.length;
    if (r.payload[1 + prefixBytes] !== CLOSE_BRACKET) size += 1;
  }
  const out = alloc(size);
  out.set(head, 0);
  let at = head.length;
  for (let i = 0; i < records.length; i++) {
    const payload = (records[i] as WalRecord).payload;
    if (i > 0) out[at++] = COMMA;
    out.set(payload.subarray(1, 1 + prefixBytes), at);
    at += prefixBytes;
    out.set(seqHead, at);
    at += seqHead.length;
    at += out.write(seqs[i] as string, at, 'latin1');
    out.set(seqTail, at);
    at += seqTail.length;
    if (payload[1 + prefixBytes] !== CLOSE_BRACKET) out[at++] = COMMA;
    out.set(payload.subarray(1 + prefixBytes), at);
    at += payload.length - 1 - prefixBytes;
  }
  out.set(tail, at);
  return out;
}

const sleep = (ms: number, wake: Promise<void>) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    void wake.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });

/** A failed export: the collector answered `path` with something other than 200 (`status`). */
class ExportError extends Error {
  constructor(
    message: string,
    readonly path: string,
    readonly status: number,
    /** The `path` of the collector's error body, when it names the part of the body it refused. */
    readonly refusedPart?: string,
  ) {
    super(message);
  }
}

/** Statuses by which a collector refuses what a body holds: sent again as it is, it would be refused again. */
const REFUSED_STATUSES = new Set([400, 413, 422]);

/** The `path` of an Isthmus error body (`{error, message, path}`), if it is one. */
function refusedPart(body: Buffer): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    const part = (parsed as { path?: unknown } | null)?.path;
    return typeof part === 'string' ? part : undefined;
  } catch {
    return undefined;
  }
}

/** One body to post: where, and its media type when it is not JSON. */
interface Export {
  path: string;
  body: Buffer;
  contentType?: string;
}

/** Where a collector takes compact access-log records (docs/telemetry-wire.md). */
const ACCESS_LOGS_PATH = '/v1/access-logs';

/** The collector exports are posted to. */
interface Collector {
  pool: ClientPool;
  host: string;
  port: number;
  hostHeader: string;
}

export class TelemetrySource {
  readonly wal: WriteAheadLog;
  readonly source: string;
  readonly #clock: Clock;
  /** The bytes before and after the items of each signal's export body. */
  readonly #bodyEnds: Record<'spans' | 'logs' | 'metrics' | 'accessLogs' | 'accessLogsV2', [Buffer, Buffer]>;
  /**
   * How access-log batches are posted: `binary` (format 4) to begin with; `json` (format 3,
   * converted here) once the collector refused the binary body's media type or format (an older
   * Isthmus collector); `otlp` (OTLP log records and spans, converted here) once it answered the
   * endpoint 404 or 405, or refused format 3 too (not an Isthmus collector).
   */
  #accessLogForm: 'binary' | 'json' | 'otlp' = 'binary';
  /** Export bodies are built in here (see #exportBodies). */
  #arena = Buffer.allocUnsafeSlow(0);
  readonly #resource: { service: string; region: string; zone?: string | undefined };
  /** Where exports go (with their connection pool); none without a collector URL. */
  readonly #collector: Collector | undefined;
  readonly #basePath: string;
  readonly #backoff: FullJitterBackoff;
  /** The latest ack's checkpoint, written while shipping goes on. */
  #acking: Promise<void> = Promise.resolve();
  readonly #batchRecords: number;
  readonly #batchBytes: number;
  readonly #timeoutMs: number;
  readonly #heartbeatTimer: NodeJS.Timeout | undefined;
  #signals = 0;
  #emitted = 0;
  #appendFailures = 0;
  #shipped = 0;
  #exports = 0;
  #shipFailures = 0;
  #rejected = 0;
  #rejectedSignals = 0;
  /** This process, in heartbeats: its losses count from its start, so a collector keeps each apart. */
  readonly #instance = randomBytes(6).toString('hex');
  /** While `next` is at most this, batches are read one record at a time (a refused batch is searched). */
  #searchUntil = 0;
  #lastShipError: string | undefined;
  #heartbeats = 0;
  #heartbeatFailures = 0;
  #closing = false;
  /** Highest seq whose ack (checkpoint) is durable. */
  #checkpointedSeq = 0;
  #wakeClose!: () => void;
  readonly #closed: Promise<void>;
  #loop: Promise<void> | undefined;
  #closePromise: Promise<void> | undefined;
  // Bound once: appends run on the request path, where a closure per call is measurable.
  readonly #onAppendFailed = () => {
    this.#appendFailures++;
  };
  /** Access-log records waiting to be appended as one record of the log, already encoded (see accessLog). */
  readonly #accessLogs: AccessLogBatchWriter;
  /** The head of every binary access-log body: the format's magic and the resource. */
  readonly #accessLogBodyHead: Buffer;
  #accessLogTimer: NodeJS.Timeout | undefined;
  readonly #accessLogBatchMs: number;
  readonly #accessLogBatchRecords: number;
  readonly #accessLogBatchBytes: number;
  readonly #flushAccessLogs = (): void => {
    if (this.#accessLogTimer !== undefined) {
      clearTimeout(this.#accessLogTimer);
      this.#accessLogTimer = undefined;
    }
    const signals = this.#accessLogs.count;
    const batch = this.#accessLogs.take();
    if (batch !== undefined) this.#append(batch, signals);
  };

  private constructor(wal: WriteAheadLog, options: TelemetrySourceOptions) {
    this.wal = wal;
    this.#checkpointedSeq = wal.ackedSeq;
    this.source = options.source;
    this.#clock = options.clock ?? systemClock;
    this.#resource = options.resource;
    const { service, region, zone } = options.resource;
    const res = `{"attributes":[${encodeAttributes({
      'service.name': service,
      'isthmus.source': options.source,
      'isthmus.region': region,
      'isthmus.zone': zone,
    })}]}`;
    const ends = (head: string, tail: string): [Buffer, Buffer] => [Buffer.from(head), Buffer.from(tail)];
    this.#bodyEnds = {
      spans: ends(`{"resourceSpans":[{"resource":${res},"scopeSpans":[{"scope":${SCOPE},"spans":[`, ']}]}]}'),
      logs: ends(
        `{"resourceLogs":[{"resource":${res},"scopeLogs":[{"scope":${SCOPE},"logRecords":[`,
        ']}]}]}',
      ),
      metrics: ends(`{"resourceMetrics":[{"resource":${res},"scopeMetrics":[`, ']}]}'),
      accessLogs: ends(`{"format":${JSON.stringify(ACCESS_LOG_FORMAT)},"resource":${res},"batches":[`, ']}'),
      accessLogsV2: ends(
        `{"format":${JSON.stringify(ACCESS_LOG_FORMAT_V2)},"resource":${res},"batches":[`,
        ']}',
      ),
    };
    this.#backoff = new FullJitterBackoff(
      options.backoffBaseMs ?? 100,
      options.backoffMaxMs ?? 30_000,
      options.random ?? systemRandom,
    );
    this.#batchRecords = options.batchRecords ?? 256;
    this.#batchBytes = options.batchBytes ?? 256 * 1024;
    this.#timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#accessLogBatchMs = options.accessLogBatchMs ?? 10;
    this.#accessLogBatchRecords = Math.max(1, options.accessLogBatchRecords ?? 128);
    // A batch is one record of the log: it is cut well before the log's bound on a record.
    this.#accessLogBatchBytes = Math.min(1024 * 1024, wal.maxPayloadBytes >> 1);
    this.#accessLogs = new AccessLogBatchWriter(
      options.recordIdPrefix ?? `${randomBytes(6).toString('hex')}-`,
      BYTE_ACCESS_LOGS_BIN,
    );
    this.#accessLogBodyHead = accessLogBodyHead(res);
    this.#closed = new Promise((resolve) => (this.#wakeClose = resolve));
    if (options.collectorUrl !== undefined) {
      const url = new URL(options.collectorUrl);
      const secure = url.protocol === 'https:';
      this.#collector = {
        pool: new ClientPool({
          connectTimeoutMs: this.#timeoutMs,
          maxConnections: 2,
          keepAliveMs: 30_000,
          tls: secure,
        }),
        // URL keeps IPv6 hosts bracketed; a socket wants them bare.
        host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: Number(url.port || (secure ? 443 : 80)),
        hostHeader: url.host,
      };
      this.#basePath = url.pathname.replace(/\/$/, '');
      this.#loop = this.#shipLoop();
      this.#heartbeatTimer = setInterval(() => void this.#heartbeat(), options.heartbeatIntervalMs ?? 2000);
      this.#heartbeatTimer.unref();
    } else {
      this.#basePath = '';
      this.#collector = undefined;
    }
  }

  static async open(options: TelemetrySourceOptions): Promise<TelemetrySource> {
    const b = options.buffer ?? {};
    const wal = await WriteAheadLog.open({
      dir: options.dir,
      ...(b.maxBytes !== undefined && { maxBytes: b.maxBytes }),
      ...(b.segmentBytes !== undefined && { segmentBytes: b.segmentBytes }),
      ...(b.fsyncIntervalMs !== undefined && { fsyncIntervalMs: b.fsyncIntervalMs }),
      ...(b.writeDelayMs !== undefined && { writeDelayMs: b.writeDelayMs }),
      // Telemetry never stalls requests unless the mesh asks for it.
      whenFull: b.whenFull ?? 'drop-oldest',
      ...(options.clock && { clock: options.clock }),
    });
    return new TelemetrySource(wal, options);
  }

  /**
   * Appends one record and returns at once: nothing on the request path waits for the disk, and
   * a refused append (log full, failed, closing) is counted, never thrown.
   */
  #append(payload: string | Uint8Array, signals = 1): void {
    if (this.#closing) {
      this.#appendFailures += signals;
      return;
    }
    this.#emitted++;
    const now = this.#clock.now();
    // A log that blocks when full must queue the record (and may fail it later; it copies the
    // bytes at once, so an access-log batch's writer may reuse them); any other takes it or
    // refuses it now, with no promise and no copy per record.
    if (this.wal.whenFull === 'block')
      this.wal
        .append(typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload, now, signals)
        .catch(signals === 1 ? this.#onAppendFailed : () => (this.#appendFailures += signals));
    else if (
      !(typeof payload === 'string'
        ? this.wal.appendText(payload, now, signals)
        : this.wal.appendBytes(payload, now, signals))
    )
      this.#appendFailures += signals;
  }

  span(span: SpanData): void {
    this.#signals++;
    this.#append(TAG_SPAN + encodeSpan(span));
  }

  spans(spans: readonly SpanData[]): void {
    for (const s of spans) this.span(s);
  }

  log(record: LogData): void {
    this.#signals++;
    this.#append(TAG_LOG + encodeLog(record));
  }

  /** How access-log records are gathered: for up to `windowMs`, or until `records` are waiting. */
  get accessLogBatch(): { windowMs: number; records: number } {
    return { windowMs: this.#accessLogBatchMs, records: this.#accessLogBatchRecords };
  }

  /**
   * A proxy's access-log record (one per request), kept compact in the log and on the wire: about
   * 90 bytes, against about 1,500 for the same record as an OTLP log record. It is encoded at
   * once (access-log-binary.ts), so `facts` may be reused after the call; records are gathered for
   * up to `accessLogBatchMs` and appended as one record of the log, with one seq. A sampled
   * request's record carries what its span adds and stands for the span: the collector makes the
   * OTLP span of it, so the caller does not also call {@link span}. A record the format cannot
   * hold (see AccessLogBatchWriter.record) is counted in `appendFailures`, never thrown.
   */
  accessLogRecord(facts: AccessLogFacts): void {
    if (this.#closing) {
      this.#appendFailures++;
      return;
    }
    this.#signals++;
    const w = this.#accessLogs;
    try {
      w.record(facts);
    } catch {
      // Values the format cannot hold (a caller's bug): refused like an append the log refuses,
      // and the batch stays whole.
      this.#appendFailures++;
      return;
    }
    if (w.count >= this.#accessLogBatchRecords || w.bytes >= this.#accessLogBatchBytes)
      this.#flushAccessLogs();
    else if (w.count === 1) {
      this.#accessLogTimer = setTimeout(this.#flushAccessLogs, this.#accessLogBatchMs);
      this.#accessLogTimer.unref();
    }
  }

  /** {@link accessLogRecord} of a record given as its format-3 values. */
  accessLog(record: AccessLogTuple): void {
    this.accessLogRecord(factsOfTuple(record));
  }

  /** One batch of points: one record, one OTLP scope, one seq. */
  metrics(points: readonly MetricPoint[]): void {
    if (points.length === 0) return;
    this.#signals++;
    this.#append(TAG_METRICS + encodeMetrics(points));
  }

  stats(): TelemetrySourceStats {
    const w = this.wal.stats();
    return {
      signals: this.#signals,
      emitted: this.#emitted,
      emittedBytes: w.appendedBytes,
      appendFailures: this.#appendFailures,
      shipped: this.#shipped,
      rejected: this.#rejected,
      rejectedSignals: this.#rejectedSignals,
      exports: this.#exports,
      shipFailures: this.#shipFailures,
      lastShipError: this.#lastShipError,
      heartbeats: this.#heartbeats,
      heartbeatFailures: this.#heartbeatFailures,
      backlogRecords: w.backlogRecords,
      backlogBytes: w.backlogBytes,
      dropped: w.dropped,
      lastSeq: w.lastSeq,
      durableSeq: w.durableSeq,
      ackedSeq: w.ackedSeq,
    };
  }

  async #post(path: string, body: string | Buffer, contentType = 'application/json'): Promise<void> {
    const c = this.#collector as Collector;
    const res = await c.pool.request(
      c.host,
      c.port,
      {
        method: 'POST',
        path: `${this.#basePath}${path}`,
        headers: { host: c.hostHeader, 'content-type': contentType },
        body: typeof body === 'string' ? Buffer.from(body) : body,
      },
      { timeoutMs: this.#timeoutMs, maxBodyBytes: 64 * 1024 },
    );
    if (res.status !== 200)
      throw new ExportError(
        `POST ${path}: ${res.status} ${res.body.toString('utf8', 0, 300)}`,
        path,
        res.status,
        REFUSED_STATUSES.has(res.status) ? refusedPart(res.body) : undefined,
      );
  }

  /** Builds the export bodies of one batch, by signal, with each item's seq spliced in. */
  #exportBodies(records: readonly WalRecord[]): Export[] {
    const spans: WalRecord[] = [];
    const logs: WalRecord[] = [];
    const metrics: WalRecord[] = [];
    const accessLogs: WalRecord[] = [];
    const accessLogsV2: WalRecord[] = [];
    const accessLogsBinary: WalRecord[] = [];
    for (const r of records) {
      switch (r.payload[0]) {
        case BYTE_SPAN:
          spans.push(r);
          break;
        case BYTE_LOG:
          logs.push(r);
          break;
        case BYTE_METRICS:
          metrics.push(r);
          break;
        case BYTE_ACCESS_LOGS_BIN:
          accessLogsBinary.push(r);
          break;
        case BYTE_ACCESS_LOGS:
          accessLogs.push(r);
          break;
        case BYTE_ACCESS_LOGS_V2:
          accessLogsV2.push(r);
          break;
        case BYTE_ACCESS_LOG_SINGLE:
          // A batch of one.
          accessLogsV2.push({
            seq: r.seq,
            timeMs: r.timeMs,
            payload: Buffer.concat([SINGLE_AS_BATCH_HEAD, r.payload.subarray(1), SINGLE_AS_BATCH_TAIL]),
          });
          break;
        default:
          // Not written by this version: skipped (its seq shows as a gap downstream).
          break;
      }
    }
    const out: Export[] = [];
    const b = this.#bodyEnds;
    // The bodies of a batch are cut from one arena that is reused batch after batch (the loop
    // posts a batch's bodies before it builds the next): megabytes of fresh buffers per batch
    // would make V8 run full collections of the whole heap just for their external memory.
    let used = 0;
    const alloc = (size: number): Buffer => {
      if (used + size > this.#arena.length) {
        // Grows between batches only; bodies already cut keep the old arena alive until posted.
        this.#arena = Buffer.allocUnsafeSlow(Math.max(2 * this.#arena.length, used + size, 64 * 1024));
        used = 0;
      }
      const body = this.#arena.subarray(used, used + size);
      used += size;
      return body;
    };
    // First: a collector that does not know the endpoint refuses it before anything else is sent.
    const compact = (ends: [Buffer, Buffer], batches: WalRecord[]) =>
      out.push({
        path: ACCESS_LOGS_PATH,
        body: exportBody(ends[0], batches, 1, ends[1], alloc, NO_BYTES, NO_BYTES),
      });
    if (accessLogs.length > 0 || accessLogsV2.length > 0 || accessLogsBinary.length > 0) {
      if (this.#accessLogForm === 'otlp')
        out.push(...this.#accessLogsAsOtlp(accessLogsV2, accessLogs, accessLogsBinary));
      else {
        if (accessLogsV2.length > 0) compact(b.accessLogsV2, accessLogsV2);
        if (accessLogs.length > 0) compact(b.accessLogs, accessLogs);
        if (accessLogsBinary.length === 0) {
          // Nothing more.
        } else if (this.#accessLogForm === 'binary')
          out.push({
            path: ACCESS_LOGS_PATH,
            body: this.#binaryBody(accessLogsBinary, alloc),
            contentType: ACCESS_LOG_BINARY_TYPE,
          });
        else out.push({ path: ACCESS_LOGS_PATH, body: this.#binaryAsJson(accessLogsBinary) });
      }
    }
    if (spans.length > 0)
      out.push({
        path: '/v1/traces',
        body: exportBody(b.spans[0], spans, ITEM_PREFIX_BYTES, b.spans[1], alloc),
      });
    if (logs.length > 0)
      out.push({ path: '/v1/logs', body: exportBody(b.logs[0], logs, ITEM_PREFIX_BYTES, b.logs[1], alloc) });
    if (metrics.length > 0)
      out.push({
        path: '/v1/metrics',
        body: exportBody(b.metrics[0], metrics, METRICS_PREFIX_BYTES, b.metrics[1], alloc),
      });
    return out;
  }

  /**
   * The form to post access logs in after `err`, when it says the collector does not take the
   * current one: a binary body refused for its media type (415) or its format, or the endpoint
   * unknown (404, 405; straight to OTLP), or format 3 refused too.
   */
  #accessLogFallback(err: ExportError): 'json' | 'otlp' | undefined {
    if (err.path !== ACCESS_LOGS_PATH || this.#accessLogForm === 'otlp') return undefined;
    if (err.status === 404 || err.status === 405) return 'otlp';
    const format = err.refusedPart === 'format' || err.refusedPart === 'magic';
    if (this.#accessLogForm === 'binary' && (err.status === 415 || format)) return 'json';
    if (this.#accessLogForm === 'json' && format) return 'otlp';
    return undefined;
  }

  /**
   * A binary access-log body (format 4): the head, then each batch with its seq and length. The
   * batches are copied once, as they are in the log.
   */
  #binaryBody(records: readonly WalRecord[], alloc: (size: number) => Buffer): Buffer {
    const head = this.#accessLogBodyHead;
    let size = head.length;
    for (const r of records) size += MAX_ENTRY_HEAD_BYTES + r.payload.length - 1;
    const out = alloc(size);
    out.set(head, 0);
    let at = head.length;
    for (const r of records) {
      const batch = r.payload.subarray(1);
      at = writeAccessLogEntryHead(out, at, r.seq, batch.length);
      out.set(batch, at);
      at += batch.length;
    }
    return out.subarray(0, at);
  }

  /** Binary batches as a format-3 body, for a collector that does not take format 4. */
  #binaryAsJson(records: readonly WalRecord[]): Buffer {
    const batches: string[] = [];
    for (const r of records) {
      try {
        batches.push(JSON.stringify(decodeAccessLogBatch(r.payload.subarray(1), r.seq, 'batch')));
      } catch {
        // Intact on disk but not a batch this version can read: skipped, its seq shows as a gap.
      }
    }
    const [head, tail] = this.#bodyEnds.accessLogs;
    return Buffer.concat([head, Buffer.from(batches.join(',')), tail]);
  }

  /**
   * Batches of compact access-log records (formats 2, 3 and 4) as OTLP bodies, for a collector
   * without the compact endpoint: the log records, and the spans of the sampled records.
   */
  #accessLogsAsOtlp(v2: readonly WalRecord[], v3: readonly WalRecord[], v4: readonly WalRecord[]): Export[] {
    const logs: string[] = [];
    const spans: string[] = [];
    const batch = (r: WalRecord): unknown => JSON.parse(`[${r.seq},${r.payload.toString('utf8', 2)}`);
    for (const r of v2) {
      try {
        for (const tuple of checkAccessLogBatchV2(batch(r), 'batch').tuples)
          logs.push(JSON.stringify(accessLogV2ToOtlp(r.seq, tuple)));
      } catch {
        // Intact on disk but not a batch this version can read: skipped, its seq shows as a gap.
      }
    }
    const where = { region: this.#resource.region, zone: this.#resource.zone ?? '' };
    const format3 = [
      ...v3.map((r) => ({ seq: r.seq, read: () => batch(r) })),
      ...v4.map((r) => ({
        seq: r.seq,
        read: () => decodeAccessLogBatch(r.payload.subarray(1), r.seq, 'batch'),
      })),
    ];
    for (const r of format3) {
      let checked: ReturnType<typeof checkAccessLogBatch>;
      try {
        checked = checkAccessLogBatch(r.read(), 'batch');
      } catch {
        continue; // as above
      }
      checked.tuples.forEach((tuple, i) => {
        logs.push(
          JSON.stringify(accessLogToOtlp(r.seq, accessLogRecordId(checked.prefix, r.seq, i), where, tuple)),
        );
        const span = accessLogSpanToOtlp(r.seq, tuple);
        if (span) spans.push(JSON.stringify(span));
      });
    }
    const body = (ends: [Buffer, Buffer], items: string[]) =>
      Buffer.concat([ends[0], Buffer.from(items.join(',')), ends[1]]);
    const out: Export[] = [];
    if (logs.length > 0) out.push({ path: '/v1/logs', body: body(this.#bodyEnds.logs, logs) });
    if (spans.length > 0) out.push({ path: '/v1/traces', body: body(this.#bodyEnds.spans, spans) });
    return out;
  }

  /**
   * Reads durable records in seq order, exports them, acks once every signal of the batch was
   * stored. A failure retries the same batch after a full-jitter backoff, forever: the log's
   * bound, not the shipper, decides what is lost. The exception is a refusal of what the batch
   * holds (`400`, `413`, `422`): its records are sent again one at a time, and one refused on its
   * own is skipped and counted in `rejected`. A batch resent after a partial failure is
   * deduplicated by the collector.
   */
  async #shipLoop(): Promise<void> {
    let next = this.wal.ackedSeq + 1;
    let retry = 0;
    while (!this.#closing) {
      // Only the export bodies live while they are posted, not the records they were built from.
      let exports: Export[];
      let count: number;
      let last: number;
      // A batch of one record may be refused on its own; what it stood for is counted then.
      let single: WalRecord | undefined;
      try {
        const max = next <= this.#searchUntil ? 1 : this.#batchRecords;
        const batch = await this.wal.readBatch(next, max, this.#batchBytes, { reuseBuffer: true });
        count = batch.length;
        last = count > 0 ? (batch[count - 1] as WalRecord).seq : 0;
        single = count === 1 ? batch[0] : undefined;
        exports = count > 0 ? this.#exportBodies(batch) : [];
      } catch (err) {
        if (this.#closing) return;
        this.#lastShipError = (err as Error).message;
        await sleep(this.#backoff.delayMs(retry++), this.#closed);
        continue;
      }
      if (count === 0) {
        // Caught up: wait for a record past the durable seq, or for close. Not `next`: when
        // drop-oldest removed everything up to the durable seq, `next` is already durable and
        // waiting on it would spin without ever yielding to the fsync that makes progress.
        const wanted = Math.max(next, this.wal.durableSeq + 1);
        await Promise.race([this.wal.whenDurable(wanted).catch(() => undefined), this.#closed]);
        continue;
      }
      try {
        for (const { path, body, contentType } of exports) {
          this.#exports++;
          await this.#post(path, body, contentType);
        }
        // Stored by the collector: shipped, whether or not the checkpoint below is durable yet.
        this.#shipped += count;
        next = last + 1;
        retry = 0;
        this.#ackThrough(last);
      } catch (err) {
        const fallback = err instanceof ExportError ? this.#accessLogFallback(err) : undefined;
        if (fallback !== undefined) {
          // An older Isthmus collector, or none: the same batch again at once, in a form it takes.
          this.#accessLogForm = fallback;
          continue;
        }
        if (err instanceof ExportError && REFUSED_STATUSES.has(err.status)) {
          this.#shipFailures++;
          if (count > 1) {
            // Something in this batch is refused: the same records again one at a time, to ship
            // all but the refused ones.
            this.#searchUntil = last;
            this.#lastShipError = err.message;
            continue;
          }
          // A record the collector will never take, and that would hold up everything after it:
          // skipped, and counted as lost (its seq shows as a gap downstream).
          this.#rejected++;
          this.#rejectedSignals += single ? signalsIn(single.payload) : 1;
          this.#lastShipError = `${err.message} (record ${last} rejected: skipped)`;
          next = last + 1;
          retry = 0;
          this.#ackThrough(last);
          continue;
        }
        this.#shipFailures++;
        this.#lastShipError = (err as Error).message;
        await sleep(this.#backoff.delayMs(retry++), this.#closed);
      }
    }
  }

  /**
   * Acks the log through `last`. The checkpoint's write and fsync go on while the next batch is
   * read and posted: waiting for them would cap shipping at one batch per fsync. A crash before it
   * is durable only means the batch is sent again, and the collector drops the duplicates.
   */
  #ackThrough(last: number): void {
    this.#acking = this.wal.ack(last).then(
      () => {
        if (last > this.#checkpointedSeq) this.#checkpointedSeq = last;
      },
      (err: unknown) => {
        if (!this.#closing) this.#lastShipError = (err as Error).message;
      },
    );
  }

  async #heartbeat(): Promise<void> {
    if (this.#closing) return;
    const { region, zone } = this.#resource;
    try {
      // Durable seqs only: a seq that a crash could still give to another record is not "emitted" yet.
      await this.#post(
        '/v1/heartbeat',
        JSON.stringify({
          source: this.source,
          region,
          ...(zone !== undefined && { zone }),
          emittedSeq: this.wal.durableSeq,
          sentAtMs: this.#clock.now(),
          // What this process lost, in signals: a gap in seqs downstream cannot say how many.
          instance: this.#instance,
          lostSignals: this.lostSignals(),
        }),
      );
      this.#heartbeats++;
    } catch {
      this.#heartbeatFailures++;
    }
  }

  /** Signals this process lost, by reason: what its heartbeats report. */
  lostSignals(): LostSignals {
    const d = this.wal.stats().dropped;
    return {
      full: d.full.signals,
      corrupt: d.corrupt.signals,
      torn: d.torn.signals,
      rejected: this.#rejectedSignals,
    };
  }

  /** Sends a heartbeat now (at start, and for tests). */
  heartbeat(): Promise<void> {
    return this.#heartbeat();
  }

  /**
   * Waits until everything appended so far is stored by the collector and checkpointed, or `timeoutMs` passes;
   * resolves whether it was (true) or not (false).
   */
  async flush(timeoutMs: number): Promise<boolean> {
    this.#flushAccessLogs();
    if (!this.#collector) return false;
    const until = Date.now() + timeoutMs;
    await this.wal.sync().catch(() => undefined);
    const target = this.wal.stats().lastSeq;
    while (this.#checkpointedSeq < target) {
      if (Date.now() >= until || this.#closing) return false;
      this.wal.checkpointNow();
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  /** Stops shipping and heartbeats and closes the log; what is not shipped yet stays in it for the next start. */
  close(): Promise<void> {
    this.#closePromise ??= (async () => {
      // What is gathered goes to the log first: it is shipped after the next start.
      this.#flushAccessLogs();
      this.#closing = true;
      if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
      this.#wakeClose();
      // An export in flight is abandoned: unacked, it is sent again after the restart.
      this.#collector?.pool.destroy();
      await this.#loop?.catch(() => undefined);
      await this.#acking;
      await this.wal.close();
    })();
    return this.#closePromise;
  }
}
