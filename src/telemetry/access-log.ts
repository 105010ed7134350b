import { msToNanos, OtlpError, SEVERITY_NUMBER, type Json, type JsonObject } from './otlp.js';

/**
 * The proxy's access-log record in its compact form (docs/telemetry-wire.md, "Access logs"): a
 * JSON array with one value per field, in the order of {@link ACCESS_LOG_FIELDS}. A proxy writes
 * one per request, so its size is what the proxy pays per request to log, store and ship: about
 * 300 bytes, against about 1,500 for the same record as an OTLP log record.
 *
 * The compact form exists between an Isthmus source and an Isthmus collector only. The
 * collector turns each record into the OTLP log record below ({@link accessLogToOtlp}) before it
 * stores or forwards anything, and a source whose collector does not know the compact endpoint
 * sends the same OTLP records itself.
 */

/**
 * The body's `format`. A source sends batches (`isthmus.access-log/2`: `batches`, each a seq and
 * the records the proxy logged in a few milliseconds); a collector also takes the one-record-per-seq
 * form of earlier sources (`isthmus.access-log/1`: `records`), and refuses any other.
 */
export const ACCESS_LOG_FORMAT = 'isthmus.access-log/2';
export const ACCESS_LOG_FORMAT_V1 = 'isthmus.access-log/1';

type FieldType = 'string' | 'number' | 'int' | 'bool' | 'hex32' | 'hex16';

/**
 * The fields of a record, in array order (after the seq), with their types and whether they may
 * be `null` (absent). Each becomes the OTLP attribute of its name, except `startMs`, which
 * becomes `timestamp` (ISO 8601) and, with `durationMs`, the record's time.
 */
export const ACCESS_LOG_FIELDS = [
  { name: 'recordId', type: 'string', optional: false },
  { name: 'startMs', type: 'number', optional: false },
  { name: 'durationMs', type: 'number', optional: false },
  { name: 'region', type: 'string', optional: false },
  { name: 'zone', type: 'string', optional: false },
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
  { name: 'traceId', type: 'hex32', optional: false },
  { name: 'spanId', type: 'hex16', optional: false },
  { name: 'sampled', type: 'bool', optional: false },
  { name: 'requestId', type: 'string', optional: false },
  { name: 'client', type: 'string', optional: true },
  { name: 'userAgent', type: 'string', optional: true },
] as const satisfies readonly { name: string; type: FieldType; optional: boolean }[];

/** One record as the proxy writes it (without its seq, which the log gives it). */
export type AccessLogTuple = [
  recordId: string,
  startMs: number,
  /** Rounded to the microsecond. */
  durationMs: number,
  region: string,
  zone: string,
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
  traceId: string,
  spanId: string,
  sampled: boolean,
  requestId: string,
  client: string | null,
  userAgent: string | null,
];

const FIELD_COUNT = ACCESS_LOG_FIELDS.length;
const MAX_TIME_MS = 8.64e15;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

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
  }
}

const str = (key: string, value: string): JsonObject => ({ key, value: { stringValue: value } });
const int = (key: string, value: number): JsonObject => ({ key, value: { intValue: String(value) } });
const bool = (key: string, value: boolean): JsonObject => ({ key, value: { boolValue: value } });

/**
 * The OTLP log record of a compact one (its seq first, then its fields as a checked tuple): the
 * attributes, severity, body and times the proxy's access log has always carried (docs/proxy.md).
 */
export function accessLogToOtlp(seq: number, r: AccessLogTuple): JsonObject {
  const [
    recordId,
    startMs,
    durationMs,
    region,
    zone,
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
    sampled,
    requestId,
    client,
    userAgent,
  ] = r;
  const attributes: JsonObject[] = [
    int('isthmus.seq', seq),
    str('isthmus.record_id', recordId),
    str('recordId', recordId),
    str('timestamp', new Date(startMs).toISOString()),
    str('region', region),
    str('zone', zone),
    str('service', service),
    str('listener', listener),
  ];
  if (route !== null) attributes.push(str('route', route));
  attributes.push(str('method', method));
  if (path !== null) attributes.push(str('path', path));
  if (authority !== null) attributes.push(str('authority', authority));
  attributes.push(
    int('status', status),
    bool('completed', completed),
    Number.isInteger(durationMs)
      ? int('durationMs', durationMs)
      : { key: 'durationMs', value: { doubleValue: durationMs } },
  );
  if (attempts !== null) attributes.push(int('attempts', attempts));
  if (servedBy !== null) attributes.push(str('servedBy', servedBy));
  if (peerRegion !== null) attributes.push(str('peerRegion', peerRegion));
  if (failover !== null) attributes.push(str('failover', failover));
  if (fallback !== null) attributes.push(str('fallback', fallback));
  attributes.push(
    str('traceId', traceId),
    str('spanId', spanId),
    bool('sampled', sampled),
    str('requestId', requestId),
  );
  if (client !== null) attributes.push(str('client', client));
  if (userAgent !== null) attributes.push(str('userAgent', userAgent));
  const severity = status >= 500 || !completed ? 'ERROR' : status >= 400 ? 'WARN' : 'INFO';
  const time = msToNanos(startMs + durationMs);
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

/** The fields of one record at `raw[from…]`, checked; `path` names the array in errors. */
function checkFields(raw: readonly unknown[], from: number, path: string): AccessLogTuple {
  for (let i = 0; i < FIELD_COUNT; i++) {
    const f = ACCESS_LOG_FIELDS[i] as (typeof ACCESS_LOG_FIELDS)[number];
    checkField(raw[from + i], f.type, f.optional, `${path}[${from + i}] (${f.name})`);
  }
  if ((raw[from + 1] as number) + (raw[from + 2] as number) > MAX_TIME_MS)
    throw new OtlpError(
      `${path}[${from + 1}] (startMs)`,
      'startMs + durationMs must be at most 8.64e15 (epoch ms)',
    );
  return (from === 0 ? raw : raw.slice(from)) as AccessLogTuple;
}

function checkSeq(raw: unknown, path: string): number {
  if (!Number.isSafeInteger(raw) || (raw as number) < 1)
    throw new OtlpError(path, 'isthmus.seq must be a positive integer');
  return raw as number;
}

const FIELD_NAMES = ACCESS_LOG_FIELDS.map((f) => f.name).join(', ');

/** A record of a `/1` body (`[seq, ...fields]`), checked: its seq and its fields. `path` names it in errors. */
export function checkAccessLog(raw: unknown, path: string): { seq: number; tuple: AccessLogTuple } {
  if (!Array.isArray(raw)) throw new OtlpError(path, 'must be an array: [seq, ...fields]');
  if (raw.length !== FIELD_COUNT + 1)
    throw new OtlpError(
      path,
      `must have ${FIELD_COUNT + 1} values (seq, then ${FIELD_NAMES}), not ${raw.length}`,
    );
  const seq = checkSeq(raw[0], `${path}[0]`);
  return { seq, tuple: checkFields(raw, 1, path) };
}

/**
 * A batch of a `/2` body (`[seq, record, record, …]`, each record an array of the fields),
 * checked: its seq and its records. `path` names it in errors.
 */
export function checkAccessLogBatch(raw: unknown, path: string): { seq: number; tuples: AccessLogTuple[] } {
  if (!Array.isArray(raw) || raw.length < 2)
    throw new OtlpError(path, 'must be an array: [seq, record, ...] with at least one record');
  const seq = checkSeq(raw[0], `${path}[0]`);
  const tuples: AccessLogTuple[] = [];
  for (let i = 1; i < raw.length; i++) {
    const r: unknown = raw[i];
    const at = `${path}[${i}]`;
    if (!Array.isArray(r) || r.length !== FIELD_COUNT)
      throw new OtlpError(
        at,
        `must be an array of ${FIELD_COUNT} values (${FIELD_NAMES})${Array.isArray(r) ? `, not ${r.length}` : ''}`,
      );
    tuples.push(checkFields(r, 0, at));
  }
  return { seq, tuples };
}

/**
 * A compact access-log body (`{format, resource, batches}`, or `records` in the `/1` form) as
 * the OTLP logs body it stands for, checked: anything off is an {@link OtlpError} naming the part
 * of the body, and nothing of the body is taken. The records of a batch share its seq.
 */
export function accessLogsToOtlp(body: unknown): JsonObject {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new OtlpError('', 'must be an object: {format, resource, batches}');
  const b = body as JsonObject;
  const v1 = b.format === ACCESS_LOG_FORMAT_V1;
  if (!v1 && b.format !== ACCESS_LOG_FORMAT)
    throw new OtlpError(
      'format',
      `must be ${JSON.stringify(ACCESS_LOG_FORMAT)} (or ${JSON.stringify(ACCESS_LOG_FORMAT_V1)})`,
    );
  if (b.resource === null || typeof b.resource !== 'object' || Array.isArray(b.resource))
    throw new OtlpError('resource', 'must be an object (an OTLP Resource)');
  const logRecords: Json[] = [];
  if (v1) {
    if (!Array.isArray(b.records)) throw new OtlpError('records', 'must be an array');
    b.records.forEach((raw, i) => {
      const { seq, tuple } = checkAccessLog(raw, `records[${i}]`);
      logRecords.push(accessLogToOtlp(seq, tuple));
    });
  } else {
    if (!Array.isArray(b.batches)) throw new OtlpError('batches', 'must be an array');
    b.batches.forEach((raw, i) => {
      const { seq, tuples } = checkAccessLogBatch(raw, `batches[${i}]`);
      for (const tuple of tuples) logRecords.push(accessLogToOtlp(seq, tuple));
    });
  }
  return {
    resourceLogs: [{ resource: b.resource, scopeLogs: [{ scope: { name: 'isthmus' }, logRecords }] }],
  };
}
