import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * The on-disk format of the telemetry write-ahead log (docs/telemetry-wal.md describes it for
 * people). All integers are little-endian. Sequence numbers are stored as two u32 halves so that
 * the hot path never touches BigInt; they stay below 2^53.
 */

/** First 8 bytes of every segment file. */
export const SEGMENT_MAGIC = Buffer.from('ISTHMWAL', 'latin1');
export const FORMAT_VERSION = 1;

/** magic[8] version:u16 headerBytes:u16 reserved:u32 firstSeq:u64 reserved:u32 headerCrc:u32 */
export const SEGMENT_HEADER_BYTES = 32;
/** marker:u32 payloadBytes:u32 seq:u64 timeMs:f64 payloadCrc:u32 headerCrc:u32, then the payload. */
export const RECORD_HEADER_BYTES = 32;
/** "WREC": starts every record, so that a scan can find the next record after damaged bytes. */
export const RECORD_MARKER = 0x43455257;
export const RECORD_MARKER_BYTES = Buffer.from('WREC', 'latin1');

const SEGMENT_NAME_RE = /^wal-(\d{20})\.seg$/;
export const CHECKPOINT_FILE = 'wal.checkpoint';
export const CHECKPOINT_FORMAT = 'isthmus.telemetry-wal.checkpoint';
export const LOCK_FILE = 'wal.lock';
export const QUARANTINE_DIR = 'quarantine';
/** The temporary file a checkpoint is written to before its rename. */
export const CHECKPOINT_TEMP_FILE = `.${CHECKPOINT_FILE}.tmp`;
const TEMP_NAME_RE = /^\.(?:wal-\d{20}\.seg|wal\.checkpoint)\.tmp$/;

const TWO_32 = 2 ** 32;

export function segmentName(firstSeq: number): string {
  return `wal-${String(firstSeq).padStart(20, '0')}.seg`;
}

/** The first sequence number a segment file name announces, or undefined for other names. */
export function parseSegmentName(name: string): number | undefined {
  const match = SEGMENT_NAME_RE.exec(name);
  if (!match) return undefined;
  const seq = Number(match[1]);
  return Number.isSafeInteger(seq) ? seq : undefined;
}

/** The temporary file a segment rewritten by recovery is written to before its rename. */
export function segmentTempName(firstSeq: number): string {
  return `.${segmentName(firstSeq)}.tmp`;
}

/** Whether a name is one of our temporary files (safe to delete at open); nothing else is. */
export function isTempName(name: string): boolean {
  return TEMP_NAME_RE.test(name);
}

/*
 * CRC-32 (IEEE, the zlib one). Payloads go through zlib's native crc32 (Node ≥ 20.15); the 28-byte
 * record header is summed in JavaScript, which for so few bytes is twice as fast as a native call
 * plus the subarray it needs.
 */
const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 of `bytes[start, end)`. */
export function crc32Range(bytes: Uint8Array, start: number, end: number): number {
  let c = -1;
  for (let i = start; i < end; i++) c = (CRC_TABLE[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

export function crc32(bytes: Uint8Array): number {
  return zlibCrc32(bytes) >>> 0;
}

export function writeSeq(buf: Buffer, seq: number, offset: number): void {
  buf.writeUInt32LE(seq % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(seq / TWO_32), offset + 4);
}

export function readSeq(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * TWO_32;
}

export function encodeSegmentHeader(firstSeq: number): Buffer {
  const buf = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(buf, 0);
  buf.writeUInt16LE(FORMAT_VERSION, 8);
  buf.writeUInt16LE(SEGMENT_HEADER_BYTES, 10);
  writeSeq(buf, firstSeq, 16);
  buf.writeUInt32LE(crc32Range(buf, 0, 28), 28);
  return buf;
}

export type SegmentHeaderCheck =
  | { kind: 'ok' }
  /** Shorter than a header, and what is there matches the header we would have written: torn at creation. */
  | { kind: 'torn' }
  | { kind: 'foreign'; problem: string }
  | { kind: 'version'; version: number }
  /** Our magic and version, but the header's checksum or first seq is wrong: salvage its records. */
  | { kind: 'damaged'; problem: string };

export function checkSegmentHeader(bytes: Buffer, firstSeqFromName: number): SegmentHeaderCheck {
  if (bytes.length < SEGMENT_HEADER_BYTES) {
    const expected = encodeSegmentHeader(firstSeqFromName);
    return bytes.equals(expected.subarray(0, bytes.length))
      ? { kind: 'torn' }
      : { kind: 'foreign', problem: `only ${bytes.length} bytes, not an Isthmus telemetry log segment` };
  }
  if (!bytes.subarray(0, 8).equals(SEGMENT_MAGIC))
    return {
      kind: 'foreign',
      problem: `not an Isthmus telemetry log segment: it does not start with "${SEGMENT_MAGIC.toString('latin1')}"`,
    };
  const version = bytes.readUInt16LE(8);
  if (version !== FORMAT_VERSION) return { kind: 'version', version };
  if (bytes.readUInt32LE(28) !== crc32Range(bytes, 0, 28))
    return { kind: 'damaged', problem: 'segment header checksum mismatch' };
  const firstSeq = readSeq(bytes, 16);
  if (firstSeq !== firstSeqFromName)
    return {
      kind: 'damaged',
      problem: `header says first seq ${firstSeq}, the file name ${firstSeqFromName}`,
    };
  return { kind: 'ok' };
}

/**
 * Writes one record (header and payload) into `buf` at `offset`; returns the offset after it.
 * `buf` must have RECORD_HEADER_BYTES + payload.length bytes free there.
 */
export function encodeRecordInto(
  buf: Buffer,
  offset: number,
  seq: number,
  timeMs: number,
  payload: Uint8Array,
): number {
  buf.set(payload, offset + RECORD_HEADER_BYTES);
  return writeRecordHeader(buf, offset, seq, timeMs, payload.length);
}

/**
 * Like {@link encodeRecordInto} for a payload given as text, written as UTF-8 straight into
 * `buf` (no intermediate buffer). `payloadBytes` must be its UTF-8 length.
 */
export function encodeTextRecordInto(
  buf: Buffer,
  offset: number,
  seq: number,
  timeMs: number,
  text: string,
  payloadBytes: number,
): number {
  buf.write(text, offset + RECORD_HEADER_BYTES, payloadBytes, 'utf8');
  return writeRecordHeader(buf, offset, seq, timeMs, payloadBytes);
}

/** The header of the record whose payload is already in `buf` after it; returns the offset past the record. */
function writeRecordHeader(
  buf: Buffer,
  offset: number,
  seq: number,
  timeMs: number,
  payloadBytes: number,
): number {
  const payloadStart = offset + RECORD_HEADER_BYTES;
  buf.writeUInt32LE(RECORD_MARKER, offset);
  buf.writeUInt32LE(payloadBytes, offset + 4);
  writeSeq(buf, seq, offset + 8);
  buf.writeDoubleLE(timeMs, offset + 16);
  buf.writeUInt32LE(crc32(buf.subarray(payloadStart, payloadStart + payloadBytes)), offset + 24);
  buf.writeUInt32LE(crc32Range(buf, offset, offset + 28), offset + 28);
  return payloadStart + payloadBytes;
}

export interface DecodedRecord {
  seq: number;
  timeMs: number;
  payloadStart: number;
  /** Offset just past the record. */
  end: number;
}

/**
 * The record at `offset` if it is whole and both checksums hold, else undefined. A record whose
 * header is intact but whose payload runs past `limit` is undefined too (torn).
 */
export function decodeRecordAt(
  bytes: Buffer,
  offset: number,
  limit = bytes.length,
): DecodedRecord | undefined {
  if (offset + RECORD_HEADER_BYTES > limit) return undefined;
  if (bytes.readUInt32LE(offset) !== RECORD_MARKER) return undefined;
  if (bytes.readUInt32LE(offset + 28) !== crc32Range(bytes, offset, offset + 28)) return undefined;
  const payloadBytes = bytes.readUInt32LE(offset + 4);
  const payloadStart = offset + RECORD_HEADER_BYTES;
  const end = payloadStart + payloadBytes;
  if (end > limit) return undefined;
  if (bytes.readUInt32LE(offset + 24) !== crc32(bytes.subarray(payloadStart, end))) return undefined;
  return { seq: readSeq(bytes, offset + 8), timeMs: bytes.readDoubleLE(offset + 16), payloadStart, end };
}

export interface CheckpointContent {
  format: typeof CHECKPOINT_FORMAT;
  formatVersion: number;
  /** Every record with a seq up to this one was acknowledged by the shipper. */
  ackedSeq: number;
  /** When it was written, wall-clock epoch ms. */
  savedAtMs: number;
}

export function encodeCheckpoint(ackedSeq: number, savedAtMs: number): Buffer {
  const content: CheckpointContent = {
    format: CHECKPOINT_FORMAT,
    formatVersion: FORMAT_VERSION,
    ackedSeq,
    savedAtMs,
  };
  return Buffer.from(`${JSON.stringify(content)}\n`, 'utf8');
}

/** The acked seq in a checkpoint file's bytes, or a problem naming what is wrong. */
export function decodeCheckpoint(bytes: Buffer): { ackedSeq: number } | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { problem: 'not an Isthmus telemetry log checkpoint: it is not JSON' };
  }
  const c = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Partial<
    Record<keyof CheckpointContent, unknown>
  >;
  if (c.format !== CHECKPOINT_FORMAT)
    return {
      problem: `not an Isthmus telemetry log checkpoint: format ${JSON.stringify(c.format) ?? 'missing'}, expected "${CHECKPOINT_FORMAT}"`,
    };
  if (c.formatVersion !== FORMAT_VERSION)
    return {
      problem: `format version ${JSON.stringify(c.formatVersion) ?? 'missing'} is not one this release reads (it reads ${FORMAT_VERSION}); was it written by a newer Isthmus?`,
    };
  if (typeof c.ackedSeq !== 'number' || !Number.isSafeInteger(c.ackedSeq) || c.ackedSeq < 0)
    return { problem: `ackedSeq ${JSON.stringify(c.ackedSeq) ?? 'missing'} is not a non-negative integer` };
  return { ackedSeq: c.ackedSeq };
}
