import { createHash } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';

/**
 * OTLP/HTTP JSON requests (traces, metrics, logs) and Isthmus heartbeats: strict validation of the
 * parts Isthmus uses, and the items a collector stores, each with the source it came from and its
 * `isthmus.seq` (docs/telemetry-wire.md). Pure: no I/O, so sources can validate what they send.
 */

/** A request that does not follow the contract; `path` names the offending part of the body. */
export class OtlpError extends IsthmusError {
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super('ISTHMUS_E_INVALID_VALUE', `${path || 'body'}: ${problem}`);
  }
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Where an item came from: resource attributes `isthmus.source`, `isthmus.region`, `isthmus.zone`. */
export interface SourceRef {
  /** `isthmus.source`, or for a foreign SDK `otel/<service.name>`. */
  source: string;
  region: string | undefined;
  zone: string | undefined;
}

interface ItemBase extends SourceRef {
  /** `isthmus.seq` of the source's write-ahead-log record, if the source is an Isthmus one. */
  seq: number | undefined;
  /** The item's original timestamp, epoch nanoseconds as a decimal string. */
  timeNs: string;
  resource: JsonObject;
}

export interface SpanItem extends ItemBase {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** The span as sent, with ids lower-cased and times as decimal strings. */
  span: JsonObject;
}

export interface PointItem extends ItemBase {
  name: string;
  /** Metric name + sorted point attributes + source: the series a point is unique in (with its time). */
  series: string;
  type: 'gauge' | 'sum' | 'histogram';
  /** The metric's name, unit, description and (sum, histogram) temporality and monotonicity. */
  metric: JsonObject;
  point: JsonObject;
}

export interface LogItem extends ItemBase {
  /** `isthmus.record_id`, or `sha256:<hash of the record>` for a foreign SDK's record. */
  recordId: string;
  record: JsonObject;
  /** Body and attribute values, lower-cased, for `contains` searches. */
  searchText: string;
}

export interface Heartbeat {
  source: string;
  region: string;
  zone: string | undefined;
  emittedSeq: number;
  sentAtMs: number;
  /** The sending process (its losses count since it started); undefined for a source without one. */
  instance: string | undefined;
  /** Signals the source lost since `instance` started, by reason. */
  lostSignals: LostSignals | undefined;
}

/** Why a source lost signals: its log was full (drop-oldest), corrupt or torn; or a collector refused them. */
export const LOSS_REASONS = ['full', 'corrupt', 'torn', 'rejected'] as const;
export type LossReason = (typeof LOSS_REASONS)[number];
export type LostSignals = Record<LossReason, number>;
/** No signal lost, for any reason. */
export const noLoss = (): LostSignals => ({ full: 0, corrupt: 0, torn: 0, rejected: 0 });
const INSTANCE = /^[A-Za-z0-9._:-]{1,64}$/;

export const SIGNALS = ['traces', 'metrics', 'logs'] as const;
export type Signal = (typeof SIGNALS)[number];

const HEX32 = /^[0-9a-fA-F]{32}$/;
const HEX16 = /^[0-9a-fA-F]{16}$/;
const ZERO = /^0+$/;

/** A scalar JSON value as text ('' for objects, arrays and null). */
export function jsonText(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function object(v: unknown, path: string): JsonObject {
  if (!isObject(v)) throw new OtlpError(path, 'must be an object');
  return v;
}

/** An optional array (OTLP JSON omits empty repeated fields). */
function array(v: unknown, path: string): Json[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new OtlpError(path, 'must be an array');
  return v as Json[];
}

function string(v: unknown, path: string, optional = false): string {
  if (optional && (v === undefined || v === null)) return '';
  if (typeof v !== 'string') throw new OtlpError(path, 'must be a string');
  return v;
}

/** OTLP `severityNumber` of the severities Isthmus writes (the first of each range). */
export const SEVERITY_NUMBER = { DEBUG: 5, INFO: 9, WARN: 13, ERROR: 17 } as const;

/** Epoch milliseconds (fractional) as OTLP epoch nanoseconds, a decimal string, without float rounding noise. */
export function msToNanos(ms: number): string {
  const whole = Math.floor(ms);
  const frac = Math.round((ms - whole) * 1e6);
  if (frac === 1e6) return `${whole + 1}000000`;
  if (whole === 0) return String(frac);
  return frac === 0 ? `${whole}000000` : `${whole}${String(frac).padStart(6, '0')}`;
}

/** A fixed64/uint64 in OTLP JSON: a decimal string or a non-negative integer; returned as a decimal string. */
export function nanos(v: unknown, path: string, optional = false): string {
  if (optional && (v === undefined || v === null)) return '0';
  if (typeof v === 'string' && /^\d{1,20}$/.test(v)) {
    const n = BigInt(v);
    if (n < 2n ** 64n) return n.toString();
  }
  // A JSON number above 2^53 has already lost precision in JSON.parse; it is kept as parsed.
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && Number.isInteger(v))
    return BigInt(v).toString();
  throw new OtlpError(path, 'must be epoch nanoseconds: a decimal string (or a non-negative integer)');
}

function int64(v: unknown, path: string): string {
  if (typeof v === 'string' && /^-?\d{1,19}$/.test(v)) return BigInt(v).toString();
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v).toString();
  throw new OtlpError(path, 'must be an integer (a decimal string or a JSON integer)');
}

function hexId(v: unknown, path: string, re: RegExp, digits: number, optional: boolean): string {
  if (optional && (v === undefined || v === null || v === '')) return '';
  if (typeof v !== 'string' || !re.test(v) || ZERO.test(v))
    throw new OtlpError(path, `must be ${digits} hex digits, not all zero`);
  return v.toLowerCase();
}

function anyValue(v: unknown, path: string, depth = 0): void {
  const o = object(v, path);
  if (depth > 16) throw new OtlpError(path, 'is nested too deeply');
  const keys = Object.keys(o);
  if (keys.length > 1) throw new OtlpError(path, `must have one of stringValue, boolValue, intValue, ...`);
  const key = keys[0];
  if (key === undefined) return; // An empty AnyValue is allowed (an unset value).
  const value = o[key];
  switch (key) {
    case 'stringValue':
    case 'bytesValue':
      string(value, `${path}.${key}`);
      return;
    case 'boolValue':
      if (typeof value !== 'boolean') throw new OtlpError(`${path}.${key}`, 'must be true or false');
      return;
    case 'intValue':
      int64(value, `${path}.${key}`);
      return;
    case 'doubleValue':
      if (typeof value !== 'number' && !['NaN', 'Infinity', '-Infinity'].includes(jsonText(value)))
        throw new OtlpError(`${path}.${key}`, 'must be a number');
      return;
    case 'arrayValue':
      array(object(value, `${path}.${key}`).values, `${path}.${key}.values`).forEach((x, i) =>
        anyValue(x, `${path}.${key}.values[${i}]`, depth + 1),
      );
      return;
    case 'kvlistValue':
      attributes(object(value, `${path}.${key}`).values, `${path}.${key}.values`, depth + 1);
      return;
    default:
      throw new OtlpError(`${path}.${key}`, 'is not an OTLP AnyValue field');
  }
}

function attributes(v: unknown, path: string, depth = 0): JsonObject[] {
  return array(v, path).map((kv, i) => {
    const o = object(kv, `${path}[${i}]`);
    string(o.key, `${path}[${i}].key`);
    if (o.value !== undefined) anyValue(o.value, `${path}[${i}].value`, depth);
    return o;
  });
}

/** A scalar attribute value as a string (undefined when missing or not a scalar). */
function scalar(attrs: readonly JsonObject[], key: string): string | undefined {
  const kv = attrs.find((a) => a.key === key);
  if (!kv || !isObject(kv.value)) return undefined;
  const v = kv.value;
  const x = v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue;
  return x === undefined || x === null ? undefined : jsonText(x);
}

function seqOf(attrs: readonly JsonObject[], path: string): number | undefined {
  const kv = attrs.find((a) => a.key === 'isthmus.seq');
  if (!kv) return undefined;
  const text = scalar([kv], 'isthmus.seq');
  const n = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1)
    throw new OtlpError(`${path}[isthmus.seq]`, 'must be a positive integer (intValue)');
  return n;
}

function sourceOf(resourceAttrs: readonly JsonObject[]): SourceRef {
  const source = scalar(resourceAttrs, 'isthmus.source');
  return {
    source: source ?? `otel/${scalar(resourceAttrs, 'service.name') ?? 'unknown'}`,
    region: scalar(resourceAttrs, 'isthmus.region'),
    zone: scalar(resourceAttrs, 'isthmus.zone'),
  };
}

function resourceOf(item: JsonObject, path: string): { resource: JsonObject; ref: SourceRef } {
  const resource = item.resource === undefined ? {} : object(item.resource, `${path}.resource`);
  const attrs = attributes(resource.attributes, `${path}.resource.attributes`);
  return { resource, ref: sourceOf(attrs) };
}

function scopeOf(scopeItem: JsonObject, path: string): JsonObject[] {
  if (scopeItem.scope === undefined) return [];
  const scope = object(scopeItem.scope, `${path}.scope`);
  string(scope.name, `${path}.scope.name`, true);
  return attributes(scope.attributes, `${path}.scope.attributes`);
}

export function parseTraces(body: unknown): SpanItem[] {
  const root = object(body, '');
  const items: SpanItem[] = [];
  array(root.resourceSpans, 'resourceSpans').forEach((rs, r) => {
    const rp = `resourceSpans[${r}]`;
    const { resource, ref } = resourceOf(object(rs, rp), rp);
    array((rs as JsonObject).scopeSpans, `${rp}.scopeSpans`).forEach((ss, s) => {
      const sp = `${rp}.scopeSpans[${s}]`;
      scopeOf(object(ss, sp), sp);
      array((ss as JsonObject).spans, `${sp}.spans`).forEach((raw, i) => {
        const p = `${sp}.spans[${i}]`;
        const span = object(raw, p);
        const traceId = hexId(span.traceId, `${p}.traceId`, HEX32, 32, false);
        const spanId = hexId(span.spanId, `${p}.spanId`, HEX16, 16, false);
        const parentSpanId = hexId(span.parentSpanId, `${p}.parentSpanId`, HEX16, 16, true);
        const name = string(span.name, `${p}.name`);
        if (name === '') throw new OtlpError(`${p}.name`, 'must not be empty');
        const startNs = nanos(span.startTimeUnixNano, `${p}.startTimeUnixNano`);
        const endNs = nanos(span.endTimeUnixNano, `${p}.endTimeUnixNano`);
        if (BigInt(endNs) < BigInt(startNs))
          throw new OtlpError(`${p}.endTimeUnixNano`, 'must not be before startTimeUnixNano');
        if (span.kind !== undefined && !Number.isInteger(span.kind) && typeof span.kind !== 'string')
          throw new OtlpError(`${p}.kind`, 'must be an integer');
        const attrs = attributes(span.attributes, `${p}.attributes`);
        items.push({
          ...ref,
          seq: seqOf(attrs, `${p}.attributes`),
          timeNs: endNs,
          resource,
          traceId,
          spanId,
          parentSpanId,
          name,
          span: {
            ...span,
            traceId,
            spanId,
            parentSpanId,
            startTimeUnixNano: startNs,
            endTimeUnixNano: endNs,
          },
        });
      });
    });
  });
  return items;
}

function sortedAttributes(attrs: readonly JsonObject[]): string {
  return JSON.stringify(
    [...attrs].sort((a, b) =>
      jsonText(a.key) < jsonText(b.key) ? -1 : jsonText(a.key) > jsonText(b.key) ? 1 : 0,
    ),
  );
}

function dataPoint(raw: unknown, p: string, type: PointItem['type']): { point: JsonObject; timeNs: string } {
  const point = object(raw, p);
  const timeNs = nanos(point.timeUnixNano, `${p}.timeUnixNano`);
  const startNs = nanos(point.startTimeUnixNano, `${p}.startTimeUnixNano`, true);
  attributes(point.attributes, `${p}.attributes`);
  if (type === 'histogram') {
    int64(point.count ?? '0', `${p}.count`);
    if (point.sum !== undefined && typeof point.sum !== 'number')
      throw new OtlpError(`${p}.sum`, 'must be a number');
    const counts = array(point.bucketCounts, `${p}.bucketCounts`);
    counts.forEach((c, i) => int64(c, `${p}.bucketCounts[${i}]`));
    const bounds = array(point.explicitBounds, `${p}.explicitBounds`);
    bounds.forEach((b, i) => {
      if (typeof b !== 'number') throw new OtlpError(`${p}.explicitBounds[${i}]`, 'must be a number');
    });
    if (counts.length > 0 && counts.length !== bounds.length + 1)
      throw new OtlpError(`${p}.bucketCounts`, 'must have one more entry than explicitBounds');
  } else {
    const hasDouble = point.asDouble !== undefined;
    const hasInt = point.asInt !== undefined;
    if (hasDouble === hasInt) throw new OtlpError(p, 'must have exactly one of asDouble and asInt');
    if (hasDouble && typeof point.asDouble !== 'number')
      throw new OtlpError(`${p}.asDouble`, 'must be a number');
    if (hasInt) int64(point.asInt, `${p}.asInt`);
  }
  return { point: { ...point, timeUnixNano: timeNs, startTimeUnixNano: startNs }, timeNs };
}

export function parseMetrics(body: unknown): PointItem[] {
  const root = object(body, '');
  const items: PointItem[] = [];
  array(root.resourceMetrics, 'resourceMetrics').forEach((rm, r) => {
    const rp = `resourceMetrics[${r}]`;
    const { resource, ref } = resourceOf(object(rm, rp), rp);
    array((rm as JsonObject).scopeMetrics, `${rp}.scopeMetrics`).forEach((sm, s) => {
      const sp = `${rp}.scopeMetrics[${s}]`;
      // One scope = one metrics batch = one seq (docs/telemetry-wire.md).
      const seq = seqOf(scopeOf(object(sm, sp), sp), `${sp}.scope.attributes`);
      array((sm as JsonObject).metrics, `${sp}.metrics`).forEach((rawMetric, m) => {
        const mp = `${sp}.metrics[${m}]`;
        const metric = object(rawMetric, mp);
        const name = string(metric.name, `${mp}.name`);
        if (name === '') throw new OtlpError(`${mp}.name`, 'must not be empty');
        const types = (['gauge', 'sum', 'histogram'] as const).filter((t) => metric[t] !== undefined);
        const type = types[0];
        if (types.length !== 1 || type === undefined) {
          const other = ['exponentialHistogram', 'summary'].find((t) => metric[t] !== undefined);
          throw new OtlpError(
            mp,
            other
              ? `${other} is not supported: send gauge, sum or histogram`
              : 'must have exactly one of gauge, sum, histogram',
          );
        }
        const data = object(metric[type], `${mp}.${type}`);
        const meta: JsonObject = { name, type };
        for (const k of ['unit', 'description'] as const) {
          if (metric[k] !== undefined) meta[k] = string(metric[k], `${mp}.${k}`);
        }
        if (data.aggregationTemporality !== undefined)
          meta.aggregationTemporality = data.aggregationTemporality;
        if (data.isMonotonic !== undefined) meta.isMonotonic = data.isMonotonic;
        array(data.dataPoints, `${mp}.${type}.dataPoints`).forEach((raw, i) => {
          const { point, timeNs } = dataPoint(raw, `${mp}.${type}.dataPoints[${i}]`, type);
          const attrs = array(point.attributes, '') as JsonObject[];
          items.push({
            ...ref,
            seq,
            timeNs,
            resource,
            name,
            series: `${name}|${sortedAttributes(attrs)}|${ref.source}`,
            type,
            metric: meta,
            point,
          });
        });
      });
    });
  });
  return items;
}

function textOf(v: Json | undefined): string {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'object') return String(v);
  return Object.values(v)
    .map((x) => textOf(x))
    .join(' ');
}

export function parseLogs(body: unknown): LogItem[] {
  const root = object(body, '');
  const items: LogItem[] = [];
  array(root.resourceLogs, 'resourceLogs').forEach((rl, r) => {
    const rp = `resourceLogs[${r}]`;
    const { resource, ref } = resourceOf(object(rl, rp), rp);
    array((rl as JsonObject).scopeLogs, `${rp}.scopeLogs`).forEach((sl, s) => {
      const sp = `${rp}.scopeLogs[${s}]`;
      scopeOf(object(sl, sp), sp);
      array((sl as JsonObject).logRecords, `${sp}.logRecords`).forEach((raw, i) => {
        const p = `${sp}.logRecords[${i}]`;
        const rec = object(raw, p);
        const time = nanos(rec.timeUnixNano, `${p}.timeUnixNano`, true);
        const observed = nanos(rec.observedTimeUnixNano, `${p}.observedTimeUnixNano`, true);
        if (rec.body !== undefined) anyValue(rec.body, `${p}.body`);
        if (rec.severityNumber !== undefined && !Number.isInteger(rec.severityNumber))
          throw new OtlpError(`${p}.severityNumber`, 'must be an integer');
        string(rec.severityText, `${p}.severityText`, true);
        const traceId = hexId(rec.traceId, `${p}.traceId`, HEX32, 32, true);
        const spanId = hexId(rec.spanId, `${p}.spanId`, HEX16, 16, true);
        const attrs = attributes(rec.attributes, `${p}.attributes`);
        const record: JsonObject = { ...rec, timeUnixNano: time, observedTimeUnixNano: observed };
        if (traceId) record.traceId = traceId;
        if (spanId) record.spanId = spanId;
        const given = scalar(attrs, 'isthmus.record_id');
        const recordId =
          given ??
          `sha256:${createHash('sha256')
            .update(JSON.stringify([ref.source, record]))
            .digest('hex')}`;
        items.push({
          ...ref,
          seq: seqOf(attrs, `${p}.attributes`),
          timeNs: time !== '0' ? time : observed,
          resource,
          recordId,
          record,
          searchText: `${textOf(rec.body)} ${textOf(rec.attributes)}`.toLowerCase(),
        });
      });
    });
  });
  return items;
}

export function parseHeartbeat(body: unknown): Heartbeat {
  const o = object(body, '');
  const source = string(o.source, 'source');
  if (source === '') throw new OtlpError('source', 'must not be empty');
  const region = string(o.region, 'region');
  const zone = o.zone === undefined || o.zone === null ? undefined : string(o.zone, 'zone');
  if (!Number.isSafeInteger(o.emittedSeq) || (o.emittedSeq as number) < 0)
    throw new OtlpError('emittedSeq', 'must be a non-negative integer');
  if (typeof o.sentAtMs !== 'number' || !Number.isFinite(o.sentAtMs))
    throw new OtlpError('sentAtMs', 'must be epoch milliseconds');
  let instance: string | undefined;
  if (o.instance !== undefined && o.instance !== null) {
    instance = string(o.instance, 'instance');
    if (!INSTANCE.test(instance))
      throw new OtlpError('instance', 'must be 1 to 64 letters, digits, `.`, `_`, `:` or `-`');
  }
  let lostSignals: LostSignals | undefined;
  if (o.lostSignals !== undefined && o.lostSignals !== null) {
    const l = object(o.lostSignals, 'lostSignals');
    lostSignals = noLoss();
    for (const [reason, count] of Object.entries(l)) {
      if (!(LOSS_REASONS as readonly string[]).includes(reason))
        throw new OtlpError(`lostSignals.${reason}`, `is not a reason of loss (${LOSS_REASONS.join(', ')})`);
      if (!Number.isSafeInteger(count) || (count as number) < 0)
        throw new OtlpError(`lostSignals.${reason}`, 'must be a non-negative integer');
      lostSignals[reason as LossReason] = count as number;
    }
  }
  return {
    source,
    region,
    zone,
    emittedSeq: o.emittedSeq as number,
    sentAtMs: o.sentAtMs,
    instance,
    lostSignals,
  };
}

/**
 * A log record reduced to the fields allowed out of its region: attributes named in `allowed`
 * and the `isthmus.*` bookkeeping attributes (record id, seq: needed downstream for dedupe and
 * continuity, and free of personal data); the body only if `body` is allowed; trace and span ids
 * only if `traceId`/`spanId` are. Times and severity are kept (`timestamp`).
 */
export function redactLogRecord(
  record: JsonObject,
  allowed: ReadonlySet<string>,
  recordId: string,
): JsonObject {
  const out: JsonObject = {};
  for (const key of ['timeUnixNano', 'observedTimeUnixNano', 'severityNumber', 'severityText', 'flags']) {
    const v = record[key];
    if (v !== undefined) out[key] = v;
  }
  if (allowed.has('body') && record.body !== undefined) out.body = record.body;
  if (allowed.has('traceId') && record.traceId !== undefined) out.traceId = record.traceId;
  if (allowed.has('spanId') && record.spanId !== undefined) out.spanId = record.spanId;
  const attrs = (Array.isArray(record.attributes) ? record.attributes : []).filter(
    (a): a is JsonObject =>
      isObject(a) && typeof a.key === 'string' && (a.key.startsWith('isthmus.') || allowed.has(a.key)),
  );
  // A foreign record's id is a hash of all of it; carrying it keeps the reduced copy unique upstream.
  if (!attrs.some((a) => a.key === 'isthmus.record_id'))
    attrs.push({ key: 'isthmus.record_id', value: { stringValue: recordId } });
  out.attributes = attrs;
  return out;
}
