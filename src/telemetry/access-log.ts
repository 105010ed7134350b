import { msToNanos, OtlpError, SEVERITY_NUMBER, type Json, type JsonObject } from './otlp.js';

/**
 * The proxy's access-log record in its compact form (docs/telemetry-wire.md, "Access logs"): a
 * JSON array with one value per field, in the order of {@link ACCESS_LOG_FIELDS}. A proxy writes
 * one per request, so its size is what the proxy pays per request to log, store and ship: about
 * 230 bytes, against about 1,500 for the same record as an OTLP log record.
 *
 * The compact form exists between an Isthmus source and an Isthmus collector only. The
 * collector turns each record into the OTLP log record below ({@link accessLogToOtlp}) before it
 * stores or forwards anything, and a source whose collector does not know the compact endpoint
 * sends the same OTLP records itself.
 */

/**
 * The body's `format`. A source sends batches of records in the form below
 * (`isthmus.access-log/3`); a collector also takes the forms of earlier sources:
 * `isthmus.access-log/2` (batches of 24-value records, each with its own record id, region and
 * zone, and no span) and `isthmus.access-log/1` (`records`, one seq per record), and refuses any
 * other.
 */
export const ACCESS_LOG_FORMAT = 'isthmus.access-log/3';
export const ACCESS_LOG_FORMAT_V2 = 'isthmus.access-log/2';
export const ACCESS_LOG_FORMAT_V1 = 'isthmus.access-log/1';

type FieldType = 'string' | 'number' | 'int' | 'bool' | 'hex32' | 'hex16' | 'span';

type FieldSpec = { name: string; type: FieldType; optional: boolean };

/** The request's own values, the same in every format. */
const REQUEST_FIELDS = [
  { name: 'service', type: 'string', optional: false },
  { name: 'listener', type: 'string', optional: false },
  { name: 'route', type: 'string', optional: true },
  { name: 'method', type: 'string', optional: false },
  { name: 'path', type: 'string', optional: true },
  { name: 'authority', type: 'string', optional: true },
  { name: 'status', type: 'int', optional: false },
  { name: 'completed', type: 'bool', optional: false },
  { name: 'attempts', type: 'int', optional: true },
  { name: 'servedBy', type: 'string', optional: true },
  { name: 'peerRegion', type: 'string', optional: true },
  { name: 'failover', type: 'string', optional: true },
  { name: 'fallback', type: 'string', optional: true },
] as const satisfies readonly FieldSpec[];

type RequestValues = [
  service: string,
  listener: string,
  route: string | null,
  method: string,
  path: string | null,
  authority: string | null,
  status: number,
  completed: boolean,
  attempts: number | null,
  servedBy: string | null,
  peerRegion: string | null,
  failover: string | null,
  fallback: string | null,
];

const TRACE_ID = { name: 'traceId', type: 'hex32', optional: false } as const;
const SPAN_ID = { name: 'spanId', type: 'hex16', optional: false } as const;
const REQUEST_ID = { name: 'requestId', type: 'string', optional: false } as const;
const CLIENT = { name: 'client', type: 'string', optional: true } as const;
const USER_AGENT = { name: 'userAgent', type: 'string', optional: true } as const;
const START_MS = { name: 'startMs', type: 'number', optional: false } as const;

/**
 * The values of a record (format 3), in array order, with their types and whether they may be
 * `null` (absent). Each becomes the OTLP attribute of its name, except `startMs`, which becomes
 * `timestamp` (ISO 8601) and, with `durationUs`, the record's time; `durationUs` becomes
 * `durationMs`; and `span`, which is present exactly when the request was sampled (the log
 * record's `sampled`) and makes the request's span (see {@link AccessLogSpan}). The record id,
 * region and zone are not in the record: the id is the batch's prefix, seq and the record's
 * place in the batch, and the region and zone are the resource's.
 */
export const ACCESS_LOG_FIELDS = [
  START_MS,
  { name: 'durationUs', type: 'int', optional: false },
  ...REQUEST_FIELDS,
  TRACE_ID,
  SPAN_ID,
  REQUEST_ID,
  CLIENT,
  USER_AGENT,
  { name: 'span', type: 'span', optional: true },
] as const satisfies readonly FieldSpec[];

/**
 * What a sampled request's span has beyond its access-log record: `[kind, parentSpanId,
 * traceState, forced, adjustedCount]`. `kind` is `server` (an inbound hop) or `client`;
 * `parentSpanId` (16 hex digits) and `traceState` are null for a trace started here and without
 * tracestate; `forced` marks a span kept outside the probability sample (an error or a slow
 * request); `adjustedCount` is the number of spans it stands for, null when unknown.
 */
export type AccessLogSpan = [
  kind: 'server' | 'client',
  parentSpanId: string | null,
  traceState: string | null,
  forced: boolean,
  adjustedCount: number | null,
];

/** One record as the proxy writes it (without its seq, which the log gives its batch). */
export type AccessLogTuple = [
  startMs: number,
  /** Microseconds, an integer. */
  durationUs: number,
  ...RequestValues,
  traceId: string,
  spanId: string,
  requestId: string,
  client: string | null,
  userAgent: string | null,
  span: AccessLogSpan | null,
];

/** The record of format 2 (and, after its seq, of format 1). */
export const ACCESS_LOG_FIELDS_V2 = [
  { name: 'recordId', type: 'string', optional: false },
  START_MS,
  { name: 'durationMs', type: 'number', optional: false },
  { name: 'region', type: 'string', optional: false },
  { name: 'zone', type: 'string', optional: false },
  ...REQUEST_FIELDS,
  TRACE_ID,
  SPAN_ID,
  { name: 'sampled', type: 'bool', optional: false },
  REQUEST_ID,
  CLIENT,
  USER_AGENT,
] as const satisfies readonly FieldSpec[];

export type AccessLogTupleV2 = [
  recordId: string,
  startMs: number,
  /** Rounded to the microsecond. */
  durationMs: number,
  region: string,
  zone: string,
  ...RequestValues,
  traceId: string,
  spanId: string,
  sampled: boolean,
  requestId: string,
  client: string | null,
  userAgent: string | null,
];

/** The last epoch millisecond an OTLP time (uint64 nanoseconds) can hold, in 2554. */
const MAX_TIME_MS = 18_446_744_073_709;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
/** W3C tracestate: at most 32 list members of at most 256 characters each, with commas. */
const MAX_TRACE_STATE = 32 * 257;
/** A batch's record-id prefix. */
const MAX_PREFIX = 256;

function checkField(v: unknown, type: FieldType, optional: boolean, path: string): void {
  if (v === null && optional) return;
  switch (type) {
    case 'string':
      if (typeof v !== 'string')
        throw new OtlpError(path, optional ? 'must be a string or null' : 'must be a string');
      return;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
        throw new OtlpError(path, 'must be a non-negative number');
      return;
    case 'int':
      if (!Number.isSafeInteger(v) || (v as number) < 0)
        throw new OtlpError(
          path,
          optional ? 'must be a non-negative integer or null' : 'must be a non-negative integer',
        );
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw new OtlpError(path, 'must be true or false');
      return;
    case 'hex32':
      if (typeof v !== 'string' || !HEX32.test(v))
        throw new OtlpError(path, 'must be 32 lower-case hex digits');
      return;
    case 'hex16':
      if (typeof v !== 'string' || !HEX16.test(v))
        throw new OtlpError(path, 'must be 16 lower-case hex digits');
      return;
    case 'span':
      // `path` ends with ` (span)`; the span's own values are named below the array.
      checkSpan(v, path.slice(0, -' (span)'.length));
      return;
  }
}

/** A record's span facts at `path` (the array's place, without a name). */
function checkSpan(v: unknown, path: string): void {
  if (!Array.isArray(v) || v.length !== 5)
    throw new OtlpError(
      `${path} (span)`,
      'must be null or an array of 5 values (kind, parentSpanId, traceState, forced, adjustedCount)',
    );
  const [kind, parent, state, forced, adjusted] = v as unknown[];
  if (kind !== 'server' && kind !== 'client')
    throw new OtlpError(`${path}[0] (kind)`, 'must be "server" or "client"');
  if (parent !== null && (typeof parent !== 'string' || !HEX16.test(parent)))
    throw new OtlpError(`${path}[1] (parentSpanId)`, 'must be 16 lower-case hex digits or null');
  if (state !== null && (typeof state !== 'string' || state.length > MAX_TRACE_STATE))
    throw new OtlpError(
      `${path}[2] (traceState)`,
      `must be a string of at most ${MAX_TRACE_STATE} characters or null`,
    );
  if (typeof forced !== 'boolean') throw new OtlpError(`${path}[3] (forced)`, 'must be true or false');
  if (adjusted !== null && (typeof adjusted !== 'number' || !Number.isFinite(adjusted) || adjusted < 0))
    throw new OtlpError(`${path}[4] (adjustedCount)`, 'must be a non-negative number or null');
}

const str = (key: string, value: string): JsonObject => ({ key, value: { stringValue: value } });
const int = (key: string, value: number): JsonObject => ({ key, value: { intValue: String(value) } });
const bool = (key: string, value: boolean): JsonObject => ({ key, value: { boolValue: value } });
/** A number attribute as a proxy's span encodes it: `intValue` when whole, else `doubleValue`. */
const num = (key: string, value: number): JsonObject =>
  Number.isInteger(value) ? int(key, value) : { key, value: { doubleValue: value } };

/** What the log record is made of, whichever form the record came in. */
interface LogFields {
  recordId: string;
  region: string;
  zone: string;
  durationMs: number;
  sampled: boolean;
}

/** The OTLP log record of a record (format 3 order; `f` has what format 3 leaves out of it). */
function logRecord(seq: number, r: AccessLogTuple, f: LogFields): JsonObject {
  const [
    startMs,
    ,
    service,
    listener,
    route,
    method,
    path,
    authority,
    status,
    completed,
    attempts,
    servedBy,
    peerRegion,
    failover,
    fallback,
    traceId,
    spanId,
    requestId,
    client,
    userAgent,
  ] = r;
  const attributes: JsonObject[] = [
    int('isthmus.seq', seq),
    str('isthmus.record_id', f.recordId),
    str('recordId', f.recordId),
    str('timestamp', new Date(startMs).toISOString()),
    str('region', f.region),
    str('zone', f.zone),
    str('service', service),
    str('listener', listener),
  ];
  if (route !== null) attributes.push(str('route', route));
  attributes.push(str('method', method));
  if (path !== null) attributes.push(str('path', path));
  if (authority !== null) attributes.push(str('authority', authority));
  attributes.push(int('status', status), bool('completed', completed), num('durationMs', f.durationMs));
  if (attempts !== null) attributes.push(int('attempts', attempts));
  if (servedBy !== null) attributes.push(str('servedBy', servedBy));
  if (peerRegion !== null) attributes.push(str('peerRegion', peerRegion));
  if (failover !== null) attributes.push(str('failover', failover));
  if (fallback !== null) attributes.push(str('fallback', fallback));
  attributes.push(
    str('traceId', traceId),
    str('spanId', spanId),
    bool('sampled', f.sampled),
    str('requestId', requestId),
  );
  if (client !== null) attributes.push(str('client', client));
  if (userAgent !== null) attributes.push(str('userAgent', userAgent));
  const severity = status >= 500 || !completed ? 'ERROR' : status >= 400 ? 'WARN' : 'INFO';
  const time = msToNanos(startMs + f.durationMs);
  return {
    attributes,
    timeUnixNano: time,
    observedTimeUnixNano: time,
    severityNumber: SEVERITY_NUMBER[severity],
    severityText: severity,
    body: { stringValue: `${method} ${path ?? '/'} ${status}` },
    traceId,
    spanId,
  };
}

/** The id of the record at `index` (0-based) of the batch with `seq` and `prefix`. */
export function accessLogRecordId(prefix: string, seq: number, index: number): string {
  return `${prefix}${seq}.${index}`;
}

/**
 * The OTLP log record of a format-3 record: its seq, and what the batch and the resource give
 * it (the id from the batch's prefix, the seq and the record's place; the region and zone).
 */
export function accessLogToOtlp(
  seq: number,
  recordId: string,
  where: { region: string; zone: string },
  r: AccessLogTuple,
): JsonObject {
  return logRecord(seq, r, {
    recordId,
    region: where.region,
    zone: where.zone,
    durationMs: r[1] / 1000,
    sampled: r[20] !== null,
  });
}

/** The OTLP log record of a format-2 (or, after its seq, format-1) record. */
export function accessLogV2ToOtlp(seq: number, r: AccessLogTupleV2): JsonObject {
  const [recordId, startMs, durationMs, region, zone, ...rest] = r;
  // Format 2 after `zone`: the request's values, traceId, spanId, sampled, requestId, client,
  // userAgent. As format 3 (the duration is passed apart, in milliseconds; no span):
  const requestAndIds = rest.slice(0, 15) as [...RequestValues, string, string];
  const [sampled, requestId, client, userAgent] = rest.slice(15) as [
    boolean,
    string,
    string | null,
    string | null,
  ];
  const fields: AccessLogTuple = [startMs, 0, ...requestAndIds, requestId, client, userAgent, null];
  return logRecord(seq, fields, { recordId, region, zone, durationMs, sampled });
}

const SPAN_KIND = { server: 2, client: 3 } as const;

/**
 * The OTLP span of a sampled format-3 record (undefined when it was not sampled): what the proxy
 * would have sent as the hop's span, its seq included. Name `METHOD service`, the record's ids,
 * times and status (error for 5xx or not completed), and the hop's attributes.
 */
export function accessLogSpanToOtlp(seq: number, r: AccessLogTuple): JsonObject | undefined {
  const span = r[20];
  if (span === null) return undefined;
  const [startMs, durationUs, service, listener, route, method, path, , status, completed, attempts] = r;
  const [kind, parentSpanId, traceState, forced, adjustedCount] = span;
  const attributes: JsonObject[] = [int('isthmus.seq', seq), str('http.request.method', method)];
  if (path !== null) attributes.push(str('url.path', path));
  attributes.push(
    int('http.response.status_code', status),
    str('isthmus.listener', listener),
    str('isthmus.service', service),
  );
  if (route !== null && route !== '') attributes.push(str('isthmus.route', route));
  attributes.push(str('isthmus.request_id', r[17]));
  if (attempts !== null) attributes.push(int('isthmus.attempts', attempts));
  if (r[11] !== null) attributes.push(str('isthmus.served_by', r[11]));
  if (r[12] !== null) attributes.push(str('isthmus.peer_region', r[12]));
  if (r[13] !== null) attributes.push(str('isthmus.failover', r[13]));
  if (r[14] !== null) attributes.push(str('isthmus.fallback', r[14]));
  if (forced) attributes.push(bool('isthmus.sampling.forced', true));
  if (adjustedCount !== null) attributes.push(num('isthmus.sampling.adjusted_count', adjustedCount));
  const out: JsonObject = { attributes, traceId: r[15], spanId: r[16] };
  if (parentSpanId !== null) out.parentSpanId = parentSpanId;
  if (traceState !== null && traceState !== '') out.traceState = traceState;
  out.name = `${method} ${service}`;
  out.kind = SPAN_KIND[kind];
  out.startTimeUnixNano = msToNanos(startMs);
  out.endTimeUnixNano = msToNanos(startMs + durationUs / 1000);
  const error = status >= 500 || !completed;
  out.status = completed
    ? { code: error ? 2 : 0 }
    : { code: 2, message: 'the connection closed before the response completed' };
  return out;
}

/** The values of one record at `raw[from…]`, checked against `fields`; `path` names the array in errors. */
function checkFields<T>(
  raw: readonly unknown[],
  from: number,
  path: string,
  fields: readonly FieldSpec[],
  startAt: number,
  durationAt: number,
  durationScale: number,
): T {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i] as (typeof fields)[number];
    checkField(raw[from + i], f.type, f.optional, `${path}[${from + i}] (${f.name})`);
  }
  if ((raw[from + startAt] as number) + (raw[from + durationAt] as number) / durationScale > MAX_TIME_MS)
    throw new OtlpError(
      `${path}[${from + startAt}] (startMs)`,
      `the record ends after the last time OTLP can hold (${MAX_TIME_MS} ms since the epoch, 2^64 − 1 ns): startMs plus the duration`,
    );
  return (from === 0 ? raw : raw.slice(from)) as T;
}

const checkV2 = (raw: readonly unknown[], from: number, path: string): AccessLogTupleV2 =>
  checkFields(raw, from, path, ACCESS_LOG_FIELDS_V2, 1, 2, 1);

function checkSeq(raw: unknown, path: string): number {
  if (!Number.isSafeInteger(raw) || (raw as number) < 1)
    throw new OtlpError(path, 'isthmus.seq must be a positive integer');
  return raw as number;
}

const names = (fields: readonly { name: string }[]) => fields.map((f) => f.name).join(', ');
const FIELD_NAMES = names(ACCESS_LOG_FIELDS);
const FIELD_NAMES_V2 = names(ACCESS_LOG_FIELDS_V2);

/** A record of a `/1` body (`[seq, ...fields]`), checked: its seq and its fields. `path` names it in errors. */
export function checkAccessLog(raw: unknown, path: string): { seq: number; tuple: AccessLogTupleV2 } {
  const count = ACCESS_LOG_FIELDS_V2.length;
  if (!Array.isArray(raw)) throw new OtlpError(path, 'must be an array: [seq, ...fields]');
  if (raw.length !== count + 1)
    throw new OtlpError(
      path,
      `must have ${count + 1} values (seq, then ${FIELD_NAMES_V2}), not ${raw.length}`,
    );
  const seq = checkSeq(raw[0], `${path}[0]`);
  return { seq, tuple: checkV2(raw, 1, path) };
}

/** The records of a batch from `raw[first…]`, each an array of `fields.length` values. */
function checkRecords<T>(
  raw: readonly unknown[],
  first: number,
  path: string,
  fields: readonly FieldSpec[],
  fieldNames: string,
  check: (r: readonly unknown[], at: string) => T,
): T[] {
  const out: T[] = [];
  for (let i = first; i < raw.length; i++) {
    const r: unknown = raw[i];
    const at = `${path}[${i}]`;
    if (!Array.isArray(r) || r.length !== fields.length)
      throw new OtlpError(
        at,
        `must be an array of ${fields.length} values (${fieldNames})${Array.isArray(r) ? `, not ${r.length}` : ''}`,
      );
    out.push(check(r, at));
  }
  return out;
}

/**
 * A batch of a `/3` body (`[seq, prefix, record, record, …]`, each record an array of the
 * values), checked: its seq, its record-id prefix and its records. `path` names it in errors.
 */
export function checkAccessLogBatch(
  raw: unknown,
  path: string,
): { seq: number; prefix: string; tuples: AccessLogTuple[] } {
  if (!Array.isArray(raw) || raw.length < 3)
    throw new OtlpError(path, 'must be an array: [seq, prefix, record, ...] with at least one record');
  const seq = checkSeq(raw[0], `${path}[0]`);
  const prefix: unknown = raw[1];
  if (typeof prefix !== 'string' || prefix === '' || prefix.length > MAX_PREFIX)
    throw new OtlpError(`${path}[1] (prefix)`, `must be a string of 1 to ${MAX_PREFIX} characters`);
  const tuples = checkRecords(raw, 2, path, ACCESS_LOG_FIELDS, FIELD_NAMES, (r, at) =>
    checkFields<AccessLogTuple>(r, 0, at, ACCESS_LOG_FIELDS, 0, 1, 1000),
  );
  return { seq, prefix, tuples };
}

/** A batch of a `/2` body (`[seq, record, record, …]`), checked: its seq and its records. */
export function checkAccessLogBatchV2(
  raw: unknown,
  path: string,
): { seq: number; tuples: AccessLogTupleV2[] } {
  if (!Array.isArray(raw) || raw.length < 2)
    throw new OtlpError(path, 'must be an array: [seq, record, ...] with at least one record');
  const seq = checkSeq(raw[0], `${path}[0]`);
  const tuples = checkRecords(raw, 1, path, ACCESS_LOG_FIELDS_V2, FIELD_NAMES_V2, (r, at) =>
    checkV2(r, 0, at),
  );
  return { seq, tuples };
}

/** The string value of resource attribute `key`, if the resource has one. */
function resourceString(resource: JsonObject, key: string): string | undefined {
  const attrs = resource.attributes;
  if (!Array.isArray(attrs)) return undefined;
  for (const a of attrs) {
    if (a !== null && typeof a === 'object' && !Array.isArray(a) && a.key === key) {
      const v = a.value;
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.stringValue === 'string')
        return v.stringValue;
    }
  }
  return undefined;
}

/** What a compact access-log body stands for: OTLP logs, and OTLP spans of its sampled records (format 3). */
export interface AccessLogOtlp {
  logs: JsonObject;
  /** Undefined when no record of the body carries a span. */
  traces: JsonObject | undefined;
}

/**
 * A compact access-log body (`{format, resource, batches}`, or `records` in the `/1` form) as
 * the OTLP bodies it stands for, checked: anything off is an {@link OtlpError} naming the part of
 * the body, and nothing of the body is taken. The records of a batch share its seq.
 */
export function accessLogsToOtlp(body: unknown): AccessLogOtlp {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new OtlpError('', 'must be an object: {format, resource, batches}');
  const b = body as JsonObject;
  if (
    b.format !== ACCESS_LOG_FORMAT &&
    b.format !== ACCESS_LOG_FORMAT_V2 &&
    b.format !== ACCESS_LOG_FORMAT_V1
  )
    throw new OtlpError(
      'format',
      `must be ${JSON.stringify(ACCESS_LOG_FORMAT)} (or ${JSON.stringify(ACCESS_LOG_FORMAT_V2)}, ${JSON.stringify(ACCESS_LOG_FORMAT_V1)})`,
    );
  const resource = b.resource;
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource))
    throw new OtlpError('resource', 'must be an object (an OTLP Resource)');
  const logRecords: Json[] = [];
  const spans: Json[] = [];
  if (b.format === ACCESS_LOG_FORMAT_V1) {
    if (!Array.isArray(b.records)) throw new OtlpError('records', 'must be an array');
    b.records.forEach((raw, i) => {
      const { seq, tuple } = checkAccessLog(raw, `records[${i}]`);
      logRecords.push(accessLogV2ToOtlp(seq, tuple));
    });
  } else if (b.format === ACCESS_LOG_FORMAT_V2) {
    if (!Array.isArray(b.batches)) throw new OtlpError('batches', 'must be an array');
    b.batches.forEach((raw, i) => {
      const { seq, tuples } = checkAccessLogBatchV2(raw, `batches[${i}]`);
      for (const tuple of tuples) logRecords.push(accessLogV2ToOtlp(seq, tuple));
    });
  } else {
    if (!Array.isArray(b.batches)) throw new OtlpError('batches', 'must be an array');
    return format3ToOtlp(resource, b.batches);
  }
  return otlpBodies(resource, logRecords, spans);
}

/**
 * The OTLP bodies of format-3 batches (`[seq, prefix, record, …]` each, as a `/3` body has them
 * or as a binary `/4` body decodes), checked. `resource` is the body's (an object).
 */
export function format3ToOtlp(resource: JsonObject, batches: readonly unknown[]): AccessLogOtlp {
  const region = resourceString(resource, 'isthmus.region');
  if (region === undefined)
    throw new OtlpError(
      'resource',
      'must have the attribute isthmus.region (a string): the records have no region of their own',
    );
  const where = { region, zone: resourceString(resource, 'isthmus.zone') ?? '' };
  const logRecords: Json[] = [];
  const spans: Json[] = [];
  batches.forEach((raw, i) => {
    const { seq, prefix, tuples } = checkAccessLogBatch(raw, `batches[${i}]`);
    tuples.forEach((tuple, k) => {
      logRecords.push(accessLogToOtlp(seq, accessLogRecordId(prefix, seq, k), where, tuple));
      const span = accessLogSpanToOtlp(seq, tuple);
      if (span) spans.push(span);
    });
  });
  return otlpBodies(resource, logRecords, spans);
}

function otlpBodies(resource: JsonObject, logRecords: Json[], spans: Json[]): AccessLogOtlp {
  const scope = { name: 'isthmus' };
  return {
    logs: { resourceLogs: [{ resource, scopeLogs: [{ scope, logRecords }] }] },
    traces: spans.length > 0 ? { resourceSpans: [{ resource, scopeSpans: [{ scope, spans }] }] } : undefined,
  };
}
