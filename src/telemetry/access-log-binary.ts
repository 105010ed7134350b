import { IsthmusError } from '../core/errors.js';
import { format3ToOtlp, type AccessLogOtlp, type AccessLogSpan, type AccessLogTuple } from './access-log.js';
import { OtlpError, type JsonObject } from './otlp.js';

/**
 * Access-log batches in their binary form (format 4, docs/telemetry-wire.md, "Access logs"): what
 * a proxy writes to its log and posts, one batch per log record. A record is written in place when
 * its request ends, with no array, no JSON and no string built for it, and a text value equal to
 * the previous record's (the service, the route, the peer, often the path and the client) takes
 * one byte. The values are those of format 3 ({@link AccessLogTuple}), in the same order; decoding
 * gives the format-3 batch back, so a collector checks and converts both alike.
 *
 * A batch:
 *
 *     prefixBytes:varint prefix:utf8 count:u32le record×count
 *
 * A record:
 *
 *     flags:u8 startMs:f64le durationUs:varint status:varint attempts:varint
 *     traceId:16 bytes spanId:8 bytes text×13 [parentSpanId:8 bytes] [traceState:text]
 *     [adjustedCount:f64le]
 *
 * `flags`: 1 completed, 2 sampled (the record has a span), 4 forced, 8 client (else server),
 * 16 has a parent span id, 32 has an adjusted count; 4, 8, 16 and 32 only with 2, and the other
 * bits zero. `attempts` is 0 for none, else the count plus one. The 13 texts are service,
 * listener, route, method, path, authority, servedBy, peerRegion, failover, fallback, requestId,
 * client and userAgent; a sampled record's traceState is a 14th. A text starts with a varint: 0
 * for none (null), 1 for the same value as the previous record of the batch (not in the first),
 * n + 2 for n bytes of UTF-8 that follow. Varints are unsigned LEB128 of at most 8 bytes.
 */

/** What a proxy knows of a request once it ended: the values of its record. */
export interface AccessLogFacts {
  readonly startWallMs: number;
  /** Microseconds, an integer. */
  readonly durationUs: number;
  readonly service: string;
  readonly listener: string;
  /** '' for none. */
  readonly route: string;
  readonly method: string;
  readonly path: string | undefined;
  readonly authority: string | undefined;
  readonly status: number;
  readonly completed: boolean;
  /** -1 for none (an inbound hop). */
  readonly attemptCount: number;
  readonly servedBy: string | undefined;
  readonly peerRegion: string | undefined;
  readonly failover: string | undefined;
  readonly fallback: string | undefined;
  readonly traceId: string;
  readonly spanId: string;
  readonly requestId: string;
  readonly client: string | undefined;
  readonly userAgent: string | undefined;
  /** Whether the record carries a span (the request was sampled, or kept anyway). */
  readonly sampled: boolean;
  readonly kind: 'server' | 'client';
  readonly parentSpanId: string | undefined;
  readonly traceState: string | undefined;
  readonly forced: boolean;
  /** -1 for unknown. */
  readonly adjustedCount: number;
}

const F_COMPLETED = 1;
const F_SPAN = 2;
const F_FORCED = 4;
const F_CLIENT = 8;
const F_PARENT = 16;
const F_ADJUSTED = 32;
const F_SPAN_ONLY = F_FORCED | F_CLIENT | F_PARENT | F_ADJUSTED;
const F_ALL = F_COMPLETED | F_SPAN | F_SPAN_ONLY;

/** Text slots, in record order; the last is the span's traceState. */
const TEXT_FIELDS = [
  'service',
  'listener',
  'route',
  'method',
  'path',
  'authority',
  'servedBy',
  'peerRegion',
  'failover',
  'fallback',
  'requestId',
  'client',
  'userAgent',
  'traceState',
] as const;
const TEXTS = TEXT_FIELDS.length;
const T_NULL = 0;
const T_SAME = 1;
const MAX_VARINT_BYTES = 8;
/** A record's fixed part: flags, start, the largest varints, ids, parent and adjusted count. */
const FIXED_MAX = 1 + 8 + 3 * MAX_VARINT_BYTES + 16 + 8 + 8 + 8;
/** A batch's count: at a fixed place after the prefix, written when the batch is taken. */
const COUNT_BYTES = 4;
/** The least a record takes: flags, start, three one-byte varints, the ids, 13 one-byte texts. */
const MIN_RECORD_BYTES = 1 + 8 + 3 + 16 + 8 + 13;
/** A batch's record-id prefix, at most (the format-3 bound is 256 characters). */
const MAX_PREFIX_BYTES = 1024;

/** Hex digit values by character code, -1 for anything else (lower case only, as the ids are). */
const NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) NIBBLE[48 + i] = i;
for (let i = 0; i < 6; i++) NIBBLE[97 + i] = 10 + i;
const HEX = '0123456789abcdef';
const HEX16 = /^[0-9a-f]{16}$/;
const BYTE_HEX: string[] = Array.from(
  { length: 256 },
  (_, b) => (HEX[b >> 4] as string) + (HEX[b & 15] as string),
);

/**
 * Gathers one batch at a time: {@link record} writes a record in place, {@link take} hands the
 * batch out (a view of the writer's buffer, valid until the next record) and starts the next.
 */
export class AccessLogBatchWriter {
  #buf: Buffer;
  #pos = 0;
  #count = 0;
  /** Where the records start (after the prefix and the count). */
  readonly #head: Buffer;
  /** The previous record's texts, by slot. */
  readonly #prev: (string | undefined)[] = new Array<string | undefined>(TEXTS).fill(undefined);

  /**
   * `prefix` is the batches' record-id prefix; `lead`, a byte written before each batch (the
   * signal's tag in the proxy's log), none if undefined.
   */
  constructor(prefix: string, lead?: number, initialBytes = 64 * 1024) {
    const p = Buffer.from(prefix, 'utf8');
    const leadBytes = lead === undefined ? 0 : 1;
    const head = Buffer.alloc(leadBytes + varintBytes(p.length) + p.length + COUNT_BYTES);
    if (lead !== undefined) head[0] = lead;
    const at = writeVarint(head, leadBytes, p.length);
    p.copy(head, at);
    this.#head = head;
    this.#buf = Buffer.allocUnsafeSlow(Math.max(initialBytes, head.length + 1024));
  }

  /** Records in the batch being gathered. */
  get count(): number {
    return this.#count;
  }

  /** Bytes of the batch being gathered. */
  get bytes(): number {
    return this.#count === 0 ? 0 : this.#pos;
  }

  /** Starts a batch: its head, and no previous record. */
  #start(): void {
    this.#head.copy(this.#buf, 0);
    this.#pos = this.#head.length;
    this.#prev.fill(undefined);
  }

  /** Makes room for `bytes` more. */
  #room(bytes: number): void {
    if (this.#pos + bytes <= this.#buf.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.#buf.length * 2, this.#pos + bytes));
    this.#buf.copy(grown, 0, 0, this.#pos);
    this.#buf = grown;
  }

  /**
   * Writes one record. Values the format cannot hold (a negative or fractional duration, a
   * status that is not an integer, an id that is not lower-case hex of its length, a missing
   * service) are an {@link IsthmusError} `ISTHMUS_E_INVALID_VALUE`, and nothing of the record is
   * written: the batch stays whole.
   */
  record(f: AccessLogFacts): void {
    const bad = invalidFacts(f);
    if (bad !== undefined) throw new IsthmusError('ISTHMUS_E_INVALID_VALUE', `access-log record: ${bad}`);
    if (this.#count === 0) this.#start();
    this.#room(FIXED_MAX);
    const buf = this.#buf;
    let p = this.#pos;
    const sampled = f.sampled;
    let flags = f.completed ? F_COMPLETED : 0;
    if (sampled) {
      flags |= F_SPAN;
      if (f.forced) flags |= F_FORCED;
      if (f.kind === 'client') flags |= F_CLIENT;
      if (f.parentSpanId !== undefined) flags |= F_PARENT;
      if (f.adjustedCount >= 0) flags |= F_ADJUSTED;
    }
    buf[p++] = flags;
    buf.writeDoubleLE(f.startWallMs, p);
    p = writeVarint(buf, p + 8, f.durationUs);
    p = writeVarint(buf, p, f.status);
    p = writeVarint(buf, p, f.attemptCount + 1);
    p = writeHex(buf, p, f.traceId, 16, 'traceId');
    p = writeHex(buf, p, f.spanId, 8, 'spanId');
    // Nothing before this point is kept if an id is not hex: the record starts at #pos.
    this.#pos = p;
    this.#text(0, f.service);
    this.#text(1, f.listener);
    this.#text(2, f.route === '' ? undefined : f.route);
    this.#text(3, f.method);
    this.#text(4, f.path);
    this.#text(5, f.authority);
    this.#text(6, f.servedBy);
    this.#text(7, f.peerRegion);
    this.#text(8, f.failover);
    this.#text(9, f.fallback);
    this.#text(10, f.requestId);
    this.#text(11, f.client);
    this.#text(12, f.userAgent);
    if (sampled) {
      if (f.parentSpanId !== undefined) {
        this.#room(8);
        this.#pos = writeHex(this.#buf, this.#pos, f.parentSpanId, 8, 'parentSpanId'); // checked above
      }
      this.#text(13, f.traceState);
      if (f.adjustedCount >= 0) {
        this.#room(8);
        this.#buf.writeDoubleLE(f.adjustedCount, this.#pos);
        this.#pos += 8;
      }
    }
    this.#count++;
  }

  /** One text: none, the previous record's, or its bytes. ASCII is copied here; the rest is encoded by Buffer. */
  #text(slot: number, s: string | undefined): void {
    const prev = this.#prev;
    if (s === undefined) {
      this.#room(1);
      this.#buf[this.#pos++] = T_NULL;
      prev[slot] = undefined;
      return;
    }
    if (s === prev[slot]) {
      this.#room(1);
      this.#buf[this.#pos++] = T_SAME;
      return;
    }
    prev[slot] = s;
    const n = s.length;
    this.#room(n * 3 + MAX_VARINT_BYTES);
    const buf = this.#buf;
    const at = this.#pos;
    // The common case: ASCII short enough for a one-byte length.
    if (n + 2 < 0x80) {
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at + 1 + i] = c;
      }
      if (i === n) {
        buf[at] = n + 2;
        this.#pos = at + 1 + n;
        return;
      }
    }
    const bytes = Buffer.byteLength(s, 'utf8');
    const start = writeVarint(buf, at, bytes + 2);
    buf.write(s, start, bytes, 'utf8');
    this.#pos = start + bytes;
  }

  /**
   * The batch gathered so far (`undefined` if it has no record) and a fresh start. The bytes are
   * the writer's own: valid until the next {@link record}.
   */
  take(): Buffer | undefined {
    if (this.#count === 0) return undefined;
    this.#buf.writeUInt32LE(this.#count, this.#head.length - COUNT_BYTES);
    this.#count = 0;
    // The next record starts the next batch over the same bytes: the caller copies these first.
    return this.#buf.subarray(0, this.#pos);
  }
}

function varintBytes(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Writes a non-negative safe integer as LEB128 at `p`; returns the position after it. */
function writeVarint(buf: Buffer, p: number, v: number): number {
  if (v < 0x80) {
    buf[p] = v;
    return p + 1;
  }
  while (v >= 0x80) {
    buf[p++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[p] = v;
  return p + 1;
}

/**
 * Writes `bytes` bytes of a lower-case hex id at `p`; an id of another length or with another
 * character is an IsthmusError naming `field` (the bytes written so far are left behind).
 */
function writeHex(buf: Buffer, p: number, hex: string, bytes: number, field: string): number {
  let bad = hex.length === 2 * bytes ? 0 : -1;
  for (let i = 0; i < bytes && bad === 0; i++) {
    const c1 = hex.charCodeAt(2 * i);
    const c2 = hex.charCodeAt(2 * i + 1);
    const hi = c1 < 0x80 ? (NIBBLE[c1] as number) : -1;
    const lo = c2 < 0x80 ? (NIBBLE[c2] as number) : -1;
    if ((hi | lo) < 0) bad = -1;
    buf[p + i] = (hi << 4) | lo;
  }
  if (bad !== 0)
    throw new IsthmusError(
      'ISTHMUS_E_INVALID_VALUE',
      `access-log record: ${field} must be ${2 * bytes} lower-case hex digits`,
    );
  return p + bytes;
}

/** What is wrong with a record's numbers and required texts, if anything (ids are checked as they are written). */
function invalidFacts(f: AccessLogFacts): string | undefined {
  if (!Number.isFinite(f.startWallMs) || f.startWallMs < 0)
    return 'startWallMs must be a non-negative number';
  if (!Number.isSafeInteger(f.durationUs) || f.durationUs < 0)
    return 'durationUs must be a non-negative integer';
  if (!Number.isSafeInteger(f.status) || f.status < 0) return 'status must be a non-negative integer';
  if (!Number.isSafeInteger(f.attemptCount) || f.attemptCount < -1)
    return 'attemptCount must be a non-negative integer, or -1 for none';
  if (f.sampled) {
    if (f.adjustedCount >= 0 && !Number.isFinite(f.adjustedCount))
      return 'adjustedCount must be a finite number, or -1 for unknown';
    // Written after the texts, so checked before anything (the other ids are written first).
    if (f.parentSpanId !== undefined && !HEX16.test(f.parentSpanId))
      return 'parentSpanId must be 16 lower-case hex digits';
  }
  if (typeof f.service !== 'string' || typeof f.listener !== 'string' || typeof f.method !== 'string')
    return 'service, listener and method must be strings';
  if (typeof f.requestId !== 'string') return 'requestId must be a string';
  return undefined;
}

/**
 * Reads bytes in order, each step checked against the bytes left; any fault is an OtlpError
 * naming `path` and the value read.
 */
class Reader {
  p = 0;
  constructor(
    readonly buf: Buffer,
    public path: string,
  ) {}

  fail(field: string, problem: string): never {
    throw new OtlpError(`${this.path} (${field})`, `${problem} (at byte ${this.p})`);
  }

  need(n: number, field: string): void {
    if (this.buf.length - this.p < n) this.fail(field, `the bytes end inside it`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.p++] as number;
  }

  varint(field: string): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      const b = this.u8(field);
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(v)) this.fail(field, 'is past 2^53');
        return v;
      }
      scale *= 0x80;
    }
    return this.fail(field, `is a varint longer than ${MAX_VARINT_BYTES} bytes`);
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32LE(this.p);
    this.p += 4;
    return v;
  }

  f64(field: string): number {
    this.need(8, field);
    const v = this.buf.readDoubleLE(this.p);
    this.p += 8;
    return v;
  }

  hex(bytes: number, field: string): string {
    this.need(bytes, field);
    let s = '';
    for (let i = 0; i < bytes; i++) s += BYTE_HEX[this.buf[this.p + i] as number] as string;
    this.p += bytes;
    return s;
  }

  utf8(bytes: number, field: string): string {
    this.need(bytes, field);
    let s: string;
    try {
      s = STRICT_UTF8.decode(this.buf.subarray(this.p, this.p + bytes));
    } catch {
      return this.fail(field, 'is not UTF-8');
    }
    this.p += bytes;
    return s;
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A binary batch (as {@link AccessLogBatchWriter} writes it, without the lead byte) as the
 * format-3 batch it stands for, `[seq, prefix, record, …]`. Structure only: the values are checked
 * as any format-3 batch's (checkAccessLogBatch). Anything malformed, truncated or left over
 * is an {@link OtlpError} at `path` (the batch) or below it (`path[k] (field)` for the value of
 * the record at `k`, counted as in the format-3 array: the first record is at 2).
 */
export function decodeAccessLogBatch(bytes: Buffer, seq: number, path: string): unknown[] {
  const r = new Reader(bytes, path);
  const prefixBytes = r.varint('prefix');
  if (prefixBytes > MAX_PREFIX_BYTES)
    r.fail('prefix', `is ${prefixBytes} bytes, more than ${MAX_PREFIX_BYTES}`);
  const prefix = r.utf8(prefixBytes, 'prefix');
  const count = r.u32('count');
  if (count === 0) r.fail('count', 'is 0: a batch has at least one record');
  // A record takes at least its fixed part: a count past what the bytes can hold is refused
  // before anything is made for it.
  if (count > (bytes.length - r.p) / MIN_RECORD_BYTES)
    r.fail('count', `is ${count}, more records than ${bytes.length - r.p} bytes can hold`);
  const batch: unknown[] = [seq, prefix];
  const prev: (string | null)[] = new Array<string | null>(TEXTS).fill(null);
  const text = (slot: number, first: boolean): string | null => {
    const name = TEXT_FIELDS[slot] as string;
    const h = r.varint(name);
    if (h === T_NULL) return (prev[slot] = null);
    if (h === T_SAME) {
      if (first) r.fail(name, 'refers to the previous record, and this is the first');
      return prev[slot] as string | null;
    }
    return (prev[slot] = r.utf8(h - 2, name));
  };
  for (let i = 0; i < count; i++) {
    r.path = `${path}[${i + 2}]`;
    const first = i === 0;
    const flags = r.u8('flags');
    if ((flags & ~F_ALL) !== 0) r.fail('flags', `${flags} has bits this format does not define`);
    if ((flags & F_SPAN) === 0 && (flags & F_SPAN_ONLY) !== 0)
      r.fail('flags', `${flags} has span bits without the span bit (2)`);
    const startMs = r.f64('startMs');
    const durationUs = r.varint('durationUs');
    const status = r.varint('status');
    const attempts = r.varint('attempts');
    const traceId = r.hex(16, 'traceId');
    const spanId = r.hex(8, 'spanId');
    const texts: (string | null)[] = [];
    for (let slot = 0; slot < TEXTS - 1; slot++) texts.push(text(slot, first));
    let span: AccessLogSpan | null = null;
    if ((flags & F_SPAN) !== 0) {
      const parent = (flags & F_PARENT) !== 0 ? r.hex(8, 'parentSpanId') : null;
      const traceState = text(TEXTS - 1, first);
      const adjusted = (flags & F_ADJUSTED) !== 0 ? r.f64('adjustedCount') : null;
      span = [
        (flags & F_CLIENT) !== 0 ? 'client' : 'server',
        parent,
        traceState,
        (flags & F_FORCED) !== 0,
        adjusted,
      ];
    }
    // In format 3's order: the texts are service … fallback (0–9), requestId, client, userAgent.
    const t = texts;
    batch.push([
      startMs,
      durationUs,
      t[0],
      t[1],
      t[2],
      t[3],
      t[4],
      t[5],
      status,
      (flags & F_COMPLETED) !== 0,
      attempts === 0 ? null : attempts - 1,
      t[6],
      t[7],
      t[8],
      t[9],
      traceId,
      spanId,
      t[10],
      t[11],
      t[12],
      span,
    ]);
  }
  r.path = path;
  if (r.p !== bytes.length) r.fail('records', `${bytes.length - r.p} bytes follow the ${count} records`);
  return batch;
}

/**
 * The media type of a binary access-log body, and its first bytes: "ISAL" and the format's
 * number.
 */
export const ACCESS_LOG_BINARY_TYPE = 'application/vnd.isthmus.access-log';
/** Format 4's name, as the JSON formats are named (it is not in the body: the magic says it). */
export const ACCESS_LOG_FORMAT_V4 = 'isthmus.access-log/4';
const MAGIC = Buffer.from([0x49, 0x53, 0x41, 0x4c, 4]);

/**
 * The head of a binary access-log body: the magic and the resource (an OTLP Resource as JSON).
 * Batches follow, each {@link accessLogEntryHead} and the batch's bytes.
 */
export function accessLogBodyHead(resourceJson: string): Buffer {
  const resource = Buffer.from(resourceJson, 'utf8');
  const head = Buffer.allocUnsafe(MAGIC.length + varintBytes(resource.length) + resource.length);
  MAGIC.copy(head, 0);
  resource.copy(head, writeVarint(head, MAGIC.length, resource.length));
  return head;
}

/** What precedes a batch in a body: its seq and its length, as varints. At most 16 bytes. */
export function writeAccessLogEntryHead(buf: Buffer, at: number, seq: number, batchBytes: number): number {
  return writeVarint(buf, writeVarint(buf, at, seq), batchBytes);
}

/** Whether a body starts as a binary access-log body does. */
export function isBinaryAccessLogBody(body: Buffer): boolean {
  return body.length >= MAGIC.length && body.subarray(0, MAGIC.length).equals(MAGIC);
}

/**
 * A binary access-log body as the resource and the format-3 batches it holds (unchecked values;
 * see {@link decodeAccessLogBatch}). Errors name `magic`, `resource`, or `batches[i]` and below.
 */
export function decodeAccessLogBody(body: Buffer): { resource: unknown; batches: unknown[] } {
  const r = new Reader(body, 'body');
  if (!isBinaryAccessLogBody(body))
    throw new OtlpError('magic', `a binary access-log body starts with "ISAL" and the byte 4`);
  r.p = MAGIC.length;
  const resourceBytes = r.varint('resource');
  const resourceText = r.utf8(resourceBytes, 'resource');
  let resource: unknown;
  try {
    resource = JSON.parse(resourceText);
  } catch (err) {
    throw new OtlpError('resource', `is not JSON: ${(err as Error).message}`);
  }
  const batches: unknown[] = [];
  while (r.p < body.length) {
    r.path = `batches[${batches.length}]`;
    const seq = r.varint('seq');
    const bytes = r.varint('length');
    r.need(bytes, 'batch');
    batches.push(decodeAccessLogBatch(body.subarray(r.p, r.p + bytes), seq, r.path));
    r.p += bytes;
  }
  return { resource, batches };
}

/**
 * A binary access-log body as the OTLP bodies it stands for, checked as a format-3 body is:
 * anything off is an {@link OtlpError} naming the part, and nothing of the body is taken.
 */
export function binaryAccessLogsToOtlp(body: Buffer): AccessLogOtlp {
  const { resource, batches } = decodeAccessLogBody(body);
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource))
    throw new OtlpError('resource', 'must be an object (an OTLP Resource)');
  return format3ToOtlp(resource as JsonObject, batches);
}

/** The facts of a format-3 record, for {@link AccessLogBatchWriter.record}. */
export function factsOfTuple(t: AccessLogTuple): AccessLogFacts {
  const span = t[20];
  return {
    startWallMs: t[0],
    durationUs: t[1],
    service: t[2],
    listener: t[3],
    route: t[4] ?? '',
    method: t[5],
    path: t[6] ?? undefined,
    authority: t[7] ?? undefined,
    status: t[8],
    completed: t[9],
    attemptCount: t[10] ?? -1,
    servedBy: t[11] ?? undefined,
    peerRegion: t[12] ?? undefined,
    failover: t[13] ?? undefined,
    fallback: t[14] ?? undefined,
    traceId: t[15],
    spanId: t[16],
    requestId: t[17],
    client: t[18] ?? undefined,
    userAgent: t[19] ?? undefined,
    sampled: span !== null,
    kind: span?.[0] ?? 'server',
    parentSpanId: span?.[1] ?? undefined,
    traceState: span?.[2] ?? undefined,
    forced: span?.[3] ?? false,
    adjustedCount: span?.[4] ?? -1,
  };
}

/** How many records a binary batch says it holds; undefined if its head does not read. */
export function binaryBatchRecords(batch: Buffer): number | undefined {
  try {
    const r = new Reader(batch, 'batch');
    r.utf8(r.varint('prefix'), 'prefix');
    return r.u32('count');
  } catch {
    return undefined;
  }
}

/**
 * How many records a binary body's batches say they hold, read from their heads only (the
 * records are not decoded); undefined if the body's structure does not read.
 */
export function binaryBodyRecords(body: Buffer): number | undefined {
  if (!isBinaryAccessLogBody(body)) return undefined;
  try {
    const r = new Reader(body, 'body');
    r.p = MAGIC.length;
    const resourceBytes = r.varint('resource');
    r.need(resourceBytes, 'resource');
    r.p += resourceBytes;
    let records = 0;
    while (r.p < body.length) {
      r.varint('seq');
      const bytes = r.varint('length');
      r.need(bytes, 'batch');
      const count = binaryBatchRecords(body.subarray(r.p, r.p + bytes));
      if (count === undefined) return undefined;
      records += count;
      r.p += bytes;
    }
    return records;
  } catch {
    return undefined;
  }
}
