import { mkdirSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { systemClock, type Clock } from '../../core/clock.js';
import { IsthmusError } from '../../core/errors.js';
import { acquirePidLock, type AbandonedLock } from '../../core/pid-lock.js';
import {
  CHECKPOINT_FILE,
  CHECKPOINT_TEMP_FILE,
  decodeRecordAt,
  encodeCheckpoint,
  encodeRecordInto,
  encodeSegmentHeader,
  encodeTextRecordInto,
  LOCK_FILE,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  segmentName,
} from './format.js';
import { recover, type WalLoss, type WalRecovery } from './recovery.js';

export type WalFullPolicy = 'drop-oldest' | 'block';

/** Options of {@link WriteAheadLog.open}; the sizes and interval map to `telemetry.buffer`. */
export interface WalOptions {
  /** Folder of the log (created if missing); one process per folder. */
  dir: string;
  /** Disk the log may use, bytes: segments plus appends not yet written. Default 256 MiB. */
  maxBytes?: number;
  /** A segment is sealed before it would exceed this, bytes; at most maxBytes / 2. Default 8 MiB. */
  segmentBytes?: number;
  /** Longest a written record waits before it is fsynced, ms. Default 200. */
  fsyncIntervalMs?: number;
  /** At maxBytes: delete the oldest unacked segment (its records counted as dropped) or make appends wait. Default `drop-oldest`. */
  whenFull?: WalFullPolicy;
  /** With `block`: an append that waits longer fails with ISTHMUS_E_WAL_FULL, ms. Default: waits until space is freed. */
  blockTimeoutMs?: number;
  /** Appends are written together once per event-loop turn, or as soon as this many bytes wait, bytes. Default 1 MiB. */
  writeBatchBytes?: number;
  /**
   * Appends wait this long to be written together, ms (0: once per event-loop turn). Default 10:
   * a write is a round trip through libuv's thread pool, which costs a busy proxy more than the
   * write itself. An appended record is durable within this plus `fsyncIntervalMs`.
   */
  writeDelayMs?: number;
  /** Time source of the fsync interval (the timers themselves are real). Default: the system clock. */
  clock?: Clock;
}

/**
 * Records lost, and what they stood for: `signals` sums the weights given at append (a record
 * holding a batch of 100 access-log records weighs 100). A record whose weight is not known
 * counts as 1: one appended by an earlier process (weights live in memory only), or one found
 * corrupt or torn, whose content cannot be read.
 */
export interface WalDrop extends WalLoss {
  signals: number;
}

/** One record as read back. */
export interface WalRecord {
  seq: number;
  /** The time the caller gave to append, epoch ms. */
  timeMs: number;
  payload: Buffer;
}

export interface ReadOptions {
  /**
   * The payloads may be views of a buffer the log reuses: they are valid only until the next
   * readBatch. For a shipper that is done with a batch before it reads the next; it spares a
   * fresh megabyte per batch, which V8 counts as external memory and answers with full
   * collections of the whole heap.
   */
  reuseBuffer?: boolean;
}

/** What append resolves to, once the record is written to the OS. */
export interface WalAppend {
  seq: number;
  /** Resolves once the record is fsynced (survives a power loss); rejects if the log fails first. */
  durable: Promise<void>;
}

export interface WalStats {
  appendedRecords: number;
  /** Bytes of appended records on disk (32-byte record header + payload). */
  appendedBytes: number;
  /** Batched writes (one writev per segment touched). */
  writes: number;
  fsyncs: number;
  /** Records dropped since open, by reason: `full` (drop-oldest), `corrupt` and `torn` (found by recovery or reads). */
  dropped: { full: WalDrop; corrupt: WalDrop; torn: WalDrop };
  /** Records acknowledged since open. */
  ackedRecords: number;
  ackedSeq: number;
  /** Segments on disk (including the one being appended to). */
  segments: number;
  segmentsCreated: number;
  segmentsDeleted: number;
  /** Records and record bytes in the log that are not acknowledged yet. */
  backlogRecords: number;
  backlogBytes: number;
  /** Disk counted against maxBytes: segment files plus appends not yet written, bytes. */
  usedBytes: number;
  /** Highest seq appended (0 before the first). */
  lastSeq: number;
  /** Highest seq written to the OS. */
  writtenSeq: number;
  /** Highest seq fsynced; readBatch returns records up to it. */
  durableSeq: number;
  /** Appends waiting for space now (`block`). */
  blockedAppends: number;
  /** Appends that gave up waiting (`block` with a timeout). */
  blockTimeouts: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody has to observe a failure (most appenders never look at `durable`); those who do still see it.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/**
 * A {@link Deferred} whose promise is made only when someone asks for it. Every write batch has
 * two (written, durable), but records appended with appendText never look at them: at thousands
 * of batches a second, promises nobody awaits would be garbage that outlives the young generation
 * (a batch waits up to the fsync interval) and would keep the old generation collecting.
 */
const RESOLVED = { error: undefined };

class LazyDeferred implements Deferred {
  #inner: Deferred | undefined;
  #outcome: { error: Error | undefined } | undefined;

  get promise(): Promise<void> {
    if (!this.#inner) {
      this.#inner = deferred();
      if (this.#outcome) {
        const { error } = this.#outcome;
        if (error) this.#inner.reject(error);
        else this.#inner.resolve();
      }
    }
    return this.#inner.promise;
  }

  resolve(): void {
    if (this.#outcome) return;
    this.#outcome = RESOLVED;
    this.#inner?.resolve();
  }

  reject(err: Error): void {
    if (this.#outcome) return;
    this.#outcome = { error: err };
    this.#inner?.reject(err);
  }
}

interface Segment {
  firstSeq: number;
  file: string;
  count: number;
  /** File length once every enqueued record is written, bytes. */
  bytes: number;
  /** Bytes the OS has. */
  writtenBytes: number;
  offsets: Uint32Array;
  /** Weight of each record (by index, as offsets) when one was not 1; undefined while all are 1. */
  weights: Uint32Array | undefined;
  /** Open for writing while appended to and until its last write is fsynced. */
  handle: FileHandle | undefined;
  /** Written since the last fsync. */
  dirty: boolean;
  /** Dropped or acked away: no longer in the list. */
  removed: boolean;
}

/** Contiguous bytes for one segment at one file position. */
interface Part {
  segment: Segment;
  position: number;
  chunks: Buffer[];
  bytes: number;
}

/** Appends written by one round of writes; they become written, then durable, together. */
interface Batch {
  parts: Part[];
  lastSeq: number;
  bytes: number;
  written: Deferred;
  durable: Deferred;
}

interface BlockedAppend {
  payload: Uint8Array;
  timeMs: number;
  recordBytes: number;
  weight: number;
  resolve: (appended: Promise<WalAppend>) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const MiB = 1024 * 1024;
/** Appends are encoded into slabs of this size, so that a batch is a few large buffers. */
const SLAB_BYTES = MiB;
/** Records larger than this get a buffer of their own rather than wasting a slab's tail. */
const OWN_BUFFER_BYTES = SLAB_BYTES / 4;
/** Least time between two checkpoints written for acks that keep coming, ms. */
const CHECKPOINT_SPACING_MS = 100;
/** Full slabs kept for reuse while their bytes are still being written. */
const SPARE_SLABS = 4;

const lastSeqOf = (s: { firstSeq: number; count: number }) => s.firstSeq + s.count - 1;

const validWeight = (weight: number) => Number.isInteger(weight) && weight >= 1 && weight <= 0xffff_ffff;
const weightError = (weight: number) =>
  new IsthmusError('ISTHMUS_E_INVALID_VALUE', `weight must be an integer from 1 to 2^32 - 1, not ${weight}`);

/** Records the weight of the segment's record being placed (its index is `count`). */
function setWeight(segment: Segment, weight: number): void {
  let weights = segment.weights;
  if (weights === undefined || weights.length < segment.offsets.length) {
    // Records placed before the first weight other than 1 weigh 1.
    const grown = new Uint32Array(segment.offsets.length).fill(1);
    if (weights) grown.set(weights);
    segment.weights = weights = grown;
  }
  weights[segment.count] = weight;
}

/** The summed weights of the segment's records `fromSeq` … `toSeq`. */
function weightOf(segment: Segment, fromSeq: number, toSeq: number): number {
  const weights = segment.weights;
  if (weights === undefined) return toSeq - fromSeq + 1;
  let sum = 0;
  for (let seq = fromSeq; seq <= toSeq; seq++) sum += weights[seq - segment.firstSeq] as number;
  return sum;
}

function ioError(what: string, err: unknown): IsthmusError {
  if (err instanceof IsthmusError) return err;
  return new IsthmusError('ISTHMUS_E_IO', `${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

function positiveInteger(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min)
    throw new IsthmusError('ISTHMUS_E_INVALID_VALUE', `${name} must be an integer ≥ ${min}, got ${value}`);
  return value;
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The store-and-forward write-ahead log every telemetry signal goes through: appends are numbered,
 * batched into one write per event-loop turn, fsynced on an interval, read back in seq order for
 * shipping and deleted a whole segment at a time once acknowledged. On-disk format, recovery rules
 * and what a crash can lose or resend: docs/telemetry-wal.md.
 */
export class WriteAheadLog {
  /** What opening the folder found and repaired. */
  readonly recovery: WalRecovery;
  /**
   * The process that held the log before and never closed it (it was killed, or crashed), if the
   * lock it left says so. What it had appended but not yet written is lost, and had a seq; what
   * its own callers held in memory before appending (a proxy's access-log batch) had none.
   */
  get previousOwner(): AbandonedLock | undefined {
    return this.#previousOwner;
  }
  #previousOwner: AbandonedLock | undefined;
  readonly dir: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly fsyncIntervalMs: number;
  /** How long appends wait to be written together, ms. */
  readonly writeDelayMs: number;
  readonly whenFull: WalFullPolicy;
  /** Largest payload an append takes: a record must fit an empty segment, bytes. */
  readonly maxPayloadBytes: number;

  readonly #blockTimeoutMs: number | undefined;
  readonly #writeBatchBytes: number;
  readonly #clock: Clock;
  readonly #releaseLock: () => void;

  /** Oldest first; the last one is appended to. */
  #segments: Segment[] = [];
  #usedBytes = 0;
  #nextSeq: number;
  #writtenSeq: number;
  #durableSeq: number;
  #ackedSeq: number;

  /** readBatch's buffer when the caller lets it be reused (ReadOptions.reuseBuffer). */
  #readBuffer = Buffer.allocUnsafeSlow(0);
  // Writing: appends go into #open; one batch is written at a time.
  #open: Batch | undefined;
  #lastBatch: Batch | undefined;
  #writing = false;
  #flushScheduled = false;
  #slab: Buffer = Buffer.allocUnsafeSlow(SLAB_BYTES);
  #slabPos = 0;
  #chunkStart = 0;
  /**
   * Full slabs, oldest first, with the last seq placed in each: once that seq is written no
   * batch refers to the slab and it is used again. A fresh megabyte of external memory per
   * megabyte appended would make V8 run full collections of the whole heap (request latency).
   */
  readonly #fullSlabs: { slab: Buffer; lastSeq: number }[] = [];

  // Syncing.
  #unsynced: Batch[] = [];
  #dirty = new Set<Segment>();
  #handles = new Set<Segment>();
  #dirDirty = false;
  #unsyncedSinceMs: number | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #durableWaiters: { seq: number; done: Deferred }[] = [];

  // Acknowledgements.
  #checkpointedSeq: number;
  #checkpointing: Promise<void> | undefined;
  #checkpointWaiters: { seq: number; done: Deferred }[] = [];
  #toDelete: Segment[] = [];

  #blocked: BlockedAppend[] = [];
  #failed: IsthmusError | undefined;
  #closing = false;
  #closed: Promise<void> | undefined;

  #stats = {
    appendedRecords: 0,
    appendedBytes: 0,
    writes: 0,
    fsyncs: 0,
    dropped: {
      full: { records: 0, bytes: 0, signals: 0 },
      corrupt: { records: 0, bytes: 0, signals: 0 },
      torn: { records: 0, bytes: 0, signals: 0 },
    },
    ackedRecords: 0,
    segmentsCreated: 0,
    segmentsDeleted: 0,
    blockTimeouts: 0,
  };

  private constructor(
    options: WalOptions,
    sizes: { maxBytes: number; segmentBytes: number; fsyncIntervalMs: number },
    opened: ReturnType<typeof recover>,
    releaseLock: () => void,
  ) {
    this.dir = options.dir;
    this.maxBytes = sizes.maxBytes;
    this.segmentBytes = sizes.segmentBytes;
    this.fsyncIntervalMs = sizes.fsyncIntervalMs;
    this.whenFull = options.whenFull ?? 'drop-oldest';
    this.maxPayloadBytes = this.segmentBytes - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES;
    this.#blockTimeoutMs = options.blockTimeoutMs;
    this.#writeBatchBytes = positiveInteger('writeBatchBytes', options.writeBatchBytes ?? MiB, 1);
    this.writeDelayMs = positiveInteger('writeDelayMs', options.writeDelayMs ?? 10, 0);
    this.#clock = options.clock ?? systemClock;
    this.#releaseLock = releaseLock;
    this.recovery = opened.recovery;
    for (const s of opened.segments) {
      this.#segments.push({
        firstSeq: s.firstSeq,
        file: s.file,
        count: s.count,
        bytes: s.bytes,
        writtenBytes: s.bytes,
        offsets: s.offsets,
        weights: undefined,
        handle: undefined,
        dirty: false,
        removed: false,
      });
      this.#usedBytes += s.bytes;
    }
    this.#nextSeq = opened.recovery.nextSeq;
    this.#writtenSeq = this.#durableSeq = this.#nextSeq - 1;
    this.#ackedSeq = this.#checkpointedSeq = opened.recovery.ackedSeq;
    const { corrupt, torn } = opened.recovery;
    this.#stats.dropped.corrupt = { ...corrupt, signals: corrupt.records };
    this.#stats.dropped.torn = { ...torn, signals: torn.records };
  }

  /**
   * Opens (creating if needed) the log in `options.dir` and recovers what a crash left: torn
   * tails are truncated, damaged segments quarantined; foreign files stop it with an error.
   */
  static async open(options: WalOptions): Promise<WriteAheadLog> {
    const maxBytes = positiveInteger('maxBytes', options.maxBytes ?? 256 * MiB, 1);
    const segmentBytes = positiveInteger('segmentBytes', options.segmentBytes ?? 8 * MiB, 4096);
    const fsyncIntervalMs = options.fsyncIntervalMs ?? 200;
    if (!(fsyncIntervalMs >= 0 && Number.isFinite(fsyncIntervalMs)))
      throw new IsthmusError(
        'ISTHMUS_E_INVALID_VALUE',
        `fsyncIntervalMs must be ≥ 0, got ${fsyncIntervalMs}`,
      );
    // drop-oldest deletes whole sealed segments: with fewer than two there is nothing to delete.
    if (maxBytes < 2 * segmentBytes)
      throw new IsthmusError(
        'ISTHMUS_E_INVALID_VALUE',
        `maxBytes (${maxBytes}) must be at least twice segmentBytes (${segmentBytes}): lower segmentBytes or raise maxBytes`,
      );
    if (options.blockTimeoutMs !== undefined && !(options.blockTimeoutMs >= 0))
      throw new IsthmusError(
        'ISTHMUS_E_INVALID_VALUE',
        `blockTimeoutMs must be ≥ 0, got ${options.blockTimeoutMs}`,
      );
    try {
      mkdirSync(options.dir, { recursive: true });
    } catch (err) {
      throw ioError(`${options.dir}: cannot create the log folder`, err);
    }
    // Two writers interleaving appends in one folder would corrupt it.
    let abandoned: AbandonedLock | undefined;
    const releaseLock = acquirePidLock(options.dir, LOCK_FILE, 'telemetry log', (a) => (abandoned = a));
    try {
      const opened = recover(options.dir);
      const wal = new WriteAheadLog(
        options,
        { maxBytes, segmentBytes, fsyncIntervalMs },
        opened,
        releaseLock,
      );
      wal.#previousOwner = abandoned;
      await wal.#openActive();
      return wal;
    } catch (err) {
      releaseLock();
      throw err instanceof IsthmusError ? err : ioError(`${options.dir}: cannot open the telemetry log`, err);
    }
  }

  async #openActive(): Promise<void> {
    const active = this.#segments.at(-1);
    if (!active) return;
    active.handle = await open(active.file, 'r+');
    this.#handles.add(active);
  }

  /** The seq the next admitted append gets. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  get durableSeq(): number {
    return this.#durableSeq;
  }

  get ackedSeq(): number {
    return this.#ackedSeq;
  }

  /**
   * Appends one record and resolves once it is written to the OS (it survives the process being
   * killed), with its seq and a promise of its fsync. The payload is copied before this returns;
   * seqs are given in call order. At maxBytes, `drop-oldest` deletes the oldest segment and
   * `block` waits (FIFO) for acks to free space. `weight` is how many signals the record stands
   * for (a batch's size), counted in `dropped.*.signals` if it is lost.
   */
  append(payload: Uint8Array, timeMs: number, weight = 1): Promise<WalAppend> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#closing) return Promise.reject(this.#closedError());
    if (payload.length > this.maxPayloadBytes)
      return Promise.reject(
        new IsthmusError(
          'ISTHMUS_E_INVALID_VALUE',
          `a ${payload.length}-byte record does not fit a ${this.segmentBytes}-byte segment (at most ${this.maxPayloadBytes} bytes of payload)`,
        ),
      );
    if (!Number.isFinite(timeMs))
      return Promise.reject(new IsthmusError('ISTHMUS_E_INVALID_VALUE', `timeMs must be a finite number`));
    if (!validWeight(weight)) return Promise.reject(weightError(weight));
    const recordBytes = RECORD_HEADER_BYTES + payload.length;
    const room = this.#makeRoom(recordBytes, weight);
    if (room === 'now') return this.#enqueue(payload, timeMs, recordBytes, weight);
    if (room === 'dropped')
      return Promise.reject(
        new IsthmusError(
          'ISTHMUS_E_WAL_FULL',
          `${this.dir}: the telemetry log is full (${this.maxBytes} bytes) of appends not yet written; the record was dropped`,
        ),
      );
    return this.#block(Buffer.from(payload), timeMs, recordBytes, weight);
  }

  /**
   * Appends one record given as text (stored as UTF-8) and never waits: no promise, no copy
   * besides the encoding. Returns whether the log took it; it refuses when it is failed or
   * closing, when the record is too large, and when it is full and cannot make room now (with
   * `drop-oldest`, after dropping what it can, counted as for {@link append}; with `block`, a
   * caller that must wait uses {@link append}). Taken records are written and fsynced like any.
   * `weight` is as for {@link append}.
   */
  appendText(text: string, timeMs: number, weight = 1): boolean {
    return this.#appendNow(text, Buffer.byteLength(text), timeMs, weight);
  }

  /**
   * Appends one record given as bytes and never waits, as {@link appendText} does: the bytes are
   * copied before this returns, so the caller may reuse them.
   */
  appendBytes(payload: Uint8Array, timeMs: number, weight = 1): boolean {
    return this.#appendNow(payload, payload.length, timeMs, weight);
  }

  #appendNow(payload: Uint8Array | string, payloadBytes: number, timeMs: number, weight: number): boolean {
    if (!validWeight(weight)) throw weightError(weight);
    if (this.#failed || this.#closing || !Number.isFinite(timeMs)) return false;
    if (payloadBytes > this.maxPayloadBytes) return false;
    const recordBytes = RECORD_HEADER_BYTES + payloadBytes;
    if (this.#makeRoom(recordBytes, weight) !== 'now') return false;
    this.#place(payload, payloadBytes, timeMs, recordBytes, weight);
    return true;
  }

  /**
   * Whether a record of `recordBytes` can be taken now: it fits (`now`, after drop-oldest made
   * room if it had to), or it must wait behind earlier waiters or for acks (`wait`, policy
   * `block`), or drop-oldest could not make room and the record is counted as dropped
   * (`dropped`: everything droppable is gone and the rest is still being written, appends far
   * ahead of the disk).
   */
  #makeRoom(recordBytes: number, weight: number): 'now' | 'wait' | 'dropped' {
    if (this.#blocked.length > 0) return 'wait';
    if (this.#fits(recordBytes)) return 'now';
    if (this.whenFull !== 'drop-oldest') return 'wait';
    this.#dropOldestFor(recordBytes);
    if (this.#fits(recordBytes)) return 'now';
    this.#stats.dropped.full.records += 1;
    this.#stats.dropped.full.bytes += recordBytes;
    this.#stats.dropped.full.signals += weight;
    return 'dropped';
  }

  /** Whether a record of `recordBytes` fits under maxBytes now (with a new segment's header if it rolls). */
  #fits(recordBytes: number): boolean {
    return (
      this.#usedBytes + recordBytes + (this.#rolls(recordBytes) ? SEGMENT_HEADER_BYTES : 0) <= this.maxBytes
    );
  }

  #rolls(recordBytes: number): boolean {
    const active = this.#segments.at(-1);
    return active === undefined || (active.count > 0 && active.bytes + recordBytes > this.segmentBytes);
  }

  #enqueue(payload: Uint8Array, timeMs: number, recordBytes: number, weight: number): Promise<WalAppend> {
    const { batch, seq } = this.#place(payload, payload.length, timeMs, recordBytes, weight);
    return batch.written.promise.then(() => ({ seq, durable: batch.durable.promise }));
  }

  /** Gives the record its seq, encodes it into the open batch and schedules the write. */
  #place(
    payload: Uint8Array | string,
    payloadBytes: number,
    timeMs: number,
    recordBytes: number,
    weight: number,
  ): { batch: Batch; seq: number } {
    const batch = (this.#open ??= this.#newBatch());
    let segment = this.#segments.at(-1);
    if (segment === undefined || this.#rolls(recordBytes)) segment = this.#roll(batch);
    let part = batch.parts.at(-1);
    if (part?.segment !== segment) {
      if (part) this.#cutChunk(part);
      part = { segment, position: segment.bytes, chunks: [], bytes: 0 };
      batch.parts.push(part);
    }
    const seq = this.#nextSeq++;
    let buf: Buffer;
    let at: number;
    if (recordBytes > OWN_BUFFER_BYTES) {
      this.#cutChunk(part);
      buf = Buffer.allocUnsafe(recordBytes);
      at = 0;
      part.chunks.push(buf);
    } else {
      if (this.#slab.length - this.#slabPos < recordBytes) {
        this.#cutChunk(part);
        this.#slab = this.#nextSlab(seq - 1);
        this.#slabPos = this.#chunkStart = 0;
      }
      buf = this.#slab;
      at = this.#slabPos;
      this.#slabPos += recordBytes;
    }
    if (typeof payload === 'string') encodeTextRecordInto(buf, at, seq, timeMs, payload, payloadBytes);
    else encodeRecordInto(buf, at, seq, timeMs, payload);
    part.bytes += recordBytes;
    batch.bytes += recordBytes;
    batch.lastSeq = seq;

    if (segment.count === segment.offsets.length) {
      const grown = new Uint32Array(segment.offsets.length * 2);
      grown.set(segment.offsets);
      segment.offsets = grown;
    }
    segment.offsets[segment.count] = segment.bytes;
    if (weight !== 1 || segment.weights !== undefined) setWeight(segment, weight);
    segment.count += 1;
    segment.bytes += recordBytes;
    this.#usedBytes += recordBytes;
    this.#stats.appendedRecords += 1;
    this.#stats.appendedBytes += recordBytes;

    if (batch.bytes >= this.#writeBatchBytes) this.#startWrite();
    else this.#scheduleWrite();
    return { batch, seq };
  }

  #newBatch(): Batch {
    const batch: Batch = {
      parts: [],
      lastSeq: 0,
      bytes: 0,
      written: new LazyDeferred(),
      durable: new LazyDeferred(),
    };
    this.#lastBatch = batch;
    return batch;
  }

  /** Starts a new segment at the next seq; its header is written with its first records. */
  #roll(batch: Batch): Segment {
    const previous = batch.parts.at(-1);
    if (previous) this.#cutChunk(previous);
    const segment: Segment = {
      firstSeq: this.#nextSeq,
      file: path.join(this.dir, segmentName(this.#nextSeq)),
      count: 0,
      bytes: SEGMENT_HEADER_BYTES,
      writtenBytes: 0,
      offsets: new Uint32Array(1024),
      weights: undefined,
      handle: undefined,
      dirty: false,
      removed: false,
    };
    this.#segments.push(segment);
    this.#usedBytes += SEGMENT_HEADER_BYTES;
    batch.parts.push({
      segment,
      position: 0,
      chunks: [encodeSegmentHeader(segment.firstSeq)],
      bytes: SEGMENT_HEADER_BYTES,
    });
    batch.bytes += SEGMENT_HEADER_BYTES;
    return segment;
  }

  /** Retires the current slab (its last record is `lastSeq`) and returns one to fill next. */
  #nextSlab(lastSeq: number): Buffer {
    const full = this.#fullSlabs;
    full.push({ slab: this.#slab, lastSeq });
    const oldest = full[0] as { slab: Buffer; lastSeq: number };
    if (oldest.lastSeq <= this.#writtenSeq) {
      full.shift();
      return oldest.slab;
    }
    // Appends outrun the disk: keep a few to reuse later, let the rest go.
    if (full.length > SPARE_SLABS) full.shift();
    return Buffer.allocUnsafeSlow(SLAB_BYTES);
  }

  /** Hands the slab bytes encoded since the last cut to `part`. */
  #cutChunk(part: Part): void {
    if (this.#slabPos > this.#chunkStart)
      part.chunks.push(this.#slab.subarray(this.#chunkStart, this.#slabPos));
    this.#chunkStart = this.#slabPos;
  }

  #scheduleWrite(): void {
    if (this.#flushScheduled || this.#writing) return;
    this.#flushScheduled = true;
    // Never a microtask: appends made by the I/O callbacks of this turn (and, with a delay, of the
    // next few milliseconds) join the batch.
    const run = () => {
      this.#flushScheduled = false;
      this.#startWrite();
    };
    if (this.writeDelayMs === 0) setImmediate(run);
    else setTimeout(run, this.writeDelayMs);
  }

  #startWrite(): void {
    const batch = this.#open;
    if (this.#writing || !batch || this.#failed) return;
    this.#open = undefined;
    this.#cutChunk(batch.parts.at(-1) as Part);
    this.#writing = true;
    void this.#write(batch).then(() => {
      this.#writing = false;
      // What accumulated during this write goes next, right away.
      if (this.#open) this.#startWrite();
    });
  }

  async #write(batch: Batch): Promise<void> {
    try {
      for (const part of batch.parts) {
        const segment = part.segment;
        if (!segment.handle) {
          segment.handle = await open(segment.file, 'wx');
          this.#handles.add(segment);
          this.#dirDirty = true;
          this.#stats.segmentsCreated += 1;
        }
        const { bytesWritten } = await segment.handle.writev(part.chunks, part.position);
        if (bytesWritten !== part.bytes)
          throw new Error(`short write: ${bytesWritten} of ${part.bytes} bytes at ${part.position}`);
        segment.writtenBytes = part.position + part.bytes;
        if (!segment.dirty) {
          segment.dirty = true;
          this.#dirty.add(segment);
        }
      }
    } catch (err) {
      const failure = ioError(`${this.dir}: cannot write the telemetry log`, err);
      batch.written.reject(failure);
      batch.durable.reject(failure);
      this.#fail(failure);
      return;
    }
    // The bytes are the OS's now; only the promises are kept until the fsync.
    batch.parts = [];
    this.#stats.writes += 1;
    this.#writtenSeq = batch.lastSeq;
    this.#unsynced.push(batch);
    this.#unsyncedSinceMs ??= this.#clock.monotonicMs();
    batch.written.resolve();
    this.#armSyncTimer();
  }

  #armSyncTimer(): void {
    if (this.#syncTimer || this.#syncing || this.#failed || this.#unsyncedSinceMs === undefined) return;
    // Not unref'd: it is armed only while written data waits for its fsync, so for one interval at most.
    const since = this.#unsyncedSinceMs;
    const delayMs = Math.max(0, this.fsyncIntervalMs - (this.#clock.monotonicMs() - since));
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      // The injected clock decides whether the interval has passed; the timer only wakes us up.
      if (this.#clock.monotonicMs() - since < this.fsyncIntervalMs) this.#armSyncTimer();
      else void this.#sync().catch(() => {});
    }, delayMs);
  }

  /** One fsync round at a time; a caller that needs a later target calls again. */
  #sync(): Promise<void> {
    this.#syncing ??= this.#runSync().finally(() => {
      this.#syncing = undefined;
      this.#armSyncTimer();
    });
    return this.#syncing;
  }

  async #runSync(): Promise<void> {
    if (this.#failed) throw this.#failed;
    if (this.#syncTimer) {
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
    }
    const target = this.#writtenSeq;
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    for (const segment of dirty) segment.dirty = false;
    const dir = this.#dirDirty;
    this.#dirDirty = false;
    this.#unsyncedSinceMs = undefined;
    try {
      // fdatasync also persists the file length, which is all the metadata a reader needs.
      await Promise.all(dirty.map((segment) => (segment.handle as FileHandle).datasync()));
      // A new segment's directory entry must be durable too, or its fsynced data has no name.
      if (dir) await fsyncDir(this.dir);
    } catch (err) {
      const failure = ioError(`${this.dir}: cannot fsync the telemetry log`, err);
      this.#fail(failure);
      throw failure;
    }
    if (dirty.length > 0 || dir) this.#stats.fsyncs += 1;
    if (target > this.#durableSeq) this.#durableSeq = target;
    while (this.#unsynced.length > 0 && (this.#unsynced[0] as Batch).lastSeq <= this.#durableSeq)
      (this.#unsynced.shift() as Batch).durable.resolve();
    this.#durableWaiters = this.#durableWaiters.filter((w) => {
      if (w.seq > this.#durableSeq) return true;
      w.done.resolve();
      return false;
    });
    // Sealed segments whose every byte is written and fsynced need no handle any more.
    for (const segment of [...this.#handles]) {
      const sealed = segment.removed || segment !== this.#segments.at(-1);
      if (sealed && !segment.dirty && segment.writtenBytes === segment.bytes) {
        this.#handles.delete(segment);
        const handle = segment.handle as FileHandle;
        segment.handle = undefined;
        await handle.close().catch(() => {});
      }
    }
  }

  /** Writes everything appended so far and fsyncs it; resolves when all of it is durable. */
  async sync(): Promise<void> {
    if (this.#failed) throw this.#failed;
    const batch = this.#lastBatch;
    if (!batch || this.#durableSeq >= batch.lastSeq) return;
    if (batch === this.#open) this.#startWrite();
    await batch.written.promise;
    while (this.#durableSeq < batch.lastSeq) await this.#sync();
  }

  /** Resolves once `seq` is durable (and so readable); for a shipper waiting for more. */
  whenDurable(seq: number): Promise<void> {
    if (seq <= this.#durableSeq) return Promise.resolve();
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#closing) return Promise.reject(this.#closedError());
    const done = deferred();
    this.#durableWaiters.push({ seq, done });
    return done.promise;
  }

  #block(payload: Uint8Array, timeMs: number, recordBytes: number, weight: number): Promise<WalAppend> {
    return new Promise<WalAppend>((resolve, reject) => {
      const waiter: BlockedAppend = {
        payload,
        timeMs,
        recordBytes,
        weight,
        resolve,
        reject,
        timer: undefined,
      };
      if (this.#blockTimeoutMs !== undefined)
        waiter.timer = setTimeout(() => {
          this.#blocked.splice(this.#blocked.indexOf(waiter), 1);
          this.#stats.blockTimeouts += 1;
          reject(
            new IsthmusError(
              'ISTHMUS_E_WAL_FULL',
              `${this.dir}: the telemetry log stayed full (${this.maxBytes} bytes, whenFull: block) for ${this.#blockTimeoutMs} ms; nothing was acknowledged to free space`,
            ),
          );
          // A smaller append behind it may fit.
          this.#admitBlocked();
        }, this.#blockTimeoutMs);
      this.#blocked.push(waiter);
    });
  }

  /** Admits waiting appends, oldest first, while they fit. */
  #admitBlocked(): void {
    while (this.#blocked.length > 0) {
      const waiter = this.#blocked[0] as BlockedAppend;
      if (!this.#fits(waiter.recordBytes)) return;
      this.#blocked.shift();
      if (waiter.timer) clearTimeout(waiter.timer);
      waiter.resolve(this.#enqueue(waiter.payload, waiter.timeMs, waiter.recordBytes, waiter.weight));
    }
  }

  /** drop-oldest: deletes the oldest sealed, fully written segments until `recordBytes` fits. */
  #dropOldestFor(recordBytes: number): void {
    while (!this.#fits(recordBytes) && this.#segments.length > 1) {
      const oldest = this.#segments[0] as Segment;
      if (oldest.writtenBytes !== oldest.bytes) return;
      this.#segments.shift();
      const unackedFrom = Math.max(oldest.firstSeq, this.#ackedSeq + 1);
      const last = lastSeqOf(oldest);
      if (unackedFrom <= last) {
        this.#stats.dropped.full.records += last - unackedFrom + 1;
        this.#stats.dropped.full.bytes += oldest.bytes - this.#offsetOf(oldest, unackedFrom);
        this.#stats.dropped.full.signals += weightOf(oldest, unackedFrom, last);
      }
      this.#remove(oldest);
      void this.#deleteFile(oldest);
    }
  }

  #offsetOf(segment: Segment, seq: number): number {
    return seq > lastSeqOf(segment) ? segment.bytes : (segment.offsets[seq - segment.firstSeq] as number);
  }

  #remove(segment: Segment): void {
    segment.removed = true;
    this.#usedBytes -= segment.bytes;
  }

  async #deleteFile(segment: Segment): Promise<void> {
    try {
      await unlink(segment.file);
      this.#stats.segmentsDeleted += 1;
    } catch {
      // Left behind (or already gone): recovery finds it again and deletes or ships it.
    }
  }

  /**
   * Acknowledges every record up to `uptoSeq` (it was shipped): whole segments whose records are
   * all acknowledged are deleted, and the acked seq is checkpointed. Resolves when the
   * checkpoint is durable; until then a crash may resend those records.
   */
  ack(uptoSeq: number): Promise<void> {
    if (this.#closing) return Promise.reject(this.#closedError());
    if (!Number.isSafeInteger(uptoSeq) || uptoSeq < 0)
      return Promise.reject(new IsthmusError('ISTHMUS_E_INVALID_VALUE', `cannot ack seq ${uptoSeq}`));
    if (uptoSeq > this.#durableSeq)
      return Promise.reject(
        new IsthmusError(
          'ISTHMUS_E_INVALID_VALUE',
          `cannot ack seq ${uptoSeq}: no record after ${this.#durableSeq} has been readable yet`,
        ),
      );
    if (uptoSeq > this.#ackedSeq) {
      for (const segment of this.#segments) {
        const from = Math.max(segment.firstSeq, this.#ackedSeq + 1);
        const to = Math.min(lastSeqOf(segment), uptoSeq);
        if (to >= from) this.#stats.ackedRecords += to - from + 1;
      }
      this.#ackedSeq = uptoSeq;
      // Whole segments only, and never the one being appended to.
      while (this.#segments.length > 1 && lastSeqOf(this.#segments[0] as Segment) <= uptoSeq) {
        const segment = this.#segments.shift() as Segment;
        this.#remove(segment);
        this.#toDelete.push(segment);
      }
      this.#admitBlocked();
    }
    if (uptoSeq <= this.#checkpointedSeq) return Promise.resolve();
    const done = deferred();
    this.#checkpointWaiters.push({ seq: uptoSeq, done });
    this.#checkpointing ??= this.#checkpointLoop().finally(() => (this.#checkpointing = undefined));
    return done.promise;
  }

  /** Writes checkpoints until the latest ack is in one; deletes acked segments after each. */
  async #checkpointLoop(): Promise<void> {
    while (this.#checkpointedSeq < this.#ackedSeq) {
      // Back-to-back acks (a shipper that does not wait for them) share a checkpoint at most
      // every fsync interval (and CHECKPOINT_SPACING_MS): each is a file write, two fsyncs and a
      // rename, and a checkpoint that is late only means that a crash resends what the collector
      // already has (it drops the duplicates).
      await this.#checkpointSpacing();
      const seq = this.#ackedSeq;
      const deletions = this.#toDelete.splice(0);
      try {
        await this.#writeCheckpoint(seq);
      } catch (err) {
        this.#toDelete.unshift(...deletions);
        const failure = ioError(`${path.join(this.dir, CHECKPOINT_FILE)}: cannot write the checkpoint`, err);
        for (const w of this.#checkpointWaiters.splice(0)) w.done.reject(failure);
        return;
      }
      this.#checkpointedSeq = seq;
      this.#lastCheckpointMonoMs = this.#clock.monotonicMs();
      // Deleted after the checkpoint: a crash in between leaves acked segments, which open deletes.
      await Promise.all(deletions.map((segment) => this.#deleteFile(segment)));
      this.#checkpointWaiters = this.#checkpointWaiters.filter((w) => {
        if (w.seq > this.#checkpointedSeq) return true;
        w.done.resolve();
        return false;
      });
    }
  }

  #wakeCheckpoint: (() => void) | undefined;
  /** When the last checkpoint was written (monotonic ms); undefined before the first. */
  #lastCheckpointMonoMs: number | undefined;

  /**
   * Writes the next checkpoint without waiting out the spacing between checkpoints: for a caller
   * that waits for its acks to be durable (a flush before exit).
   */
  checkpointNow(): void {
    this.#wakeCheckpoint?.();
  }

  /** Waits until the spacing since the last checkpoint has passed (at once for the first one). */
  #checkpointSpacing(): Promise<void> {
    const last = this.#lastCheckpointMonoMs;
    if (this.#closing || last === undefined) return Promise.resolve();
    const waitMs = last + Math.max(CHECKPOINT_SPACING_MS, this.fsyncIntervalMs) - this.#clock.monotonicMs();
    if (waitMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, waitMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeCheckpoint = () => {
        this.#wakeCheckpoint = undefined;
        done();
      };
    });
  }

  /** temp + fsync + rename + fsync of the folder: a crash leaves the old checkpoint or the new one. */
  async #writeCheckpoint(ackedSeq: number): Promise<void> {
    const file = path.join(this.dir, CHECKPOINT_FILE);
    const temp = path.join(this.dir, CHECKPOINT_TEMP_FILE);
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(encodeCheckpoint(ackedSeq, this.#clock.now()));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
    await fsyncDir(this.dir);
  }

  /**
   * Up to `maxRecords` records (and about `maxBytes` of record bytes, but always at least one)
   * from `fromSeq` on, in seq order. Starts after the acked seq, skips records no longer in the
   * log (dropped or lost: the seqs show the gap), and returns only durable records: a record a
   * crash could still take back is never shipped, so its seq is never reused for another.
   */
  async readBatch(
    fromSeq: number,
    maxRecords = 1000,
    maxBytes = MiB,
    options: ReadOptions = {},
  ): Promise<WalRecord[]> {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw this.#closedError();
    const records: WalRecord[] = [];
    let seq = Math.max(fromSeq, this.#ackedSeq + 1);
    let budget = maxBytes;
    while (records.length < maxRecords && seq <= this.#durableSeq) {
      const segment = this.#segmentFor(seq);
      if (!segment) break;
      seq = Math.max(seq, segment.firstSeq);
      let last = Math.min(lastSeqOf(segment), this.#durableSeq, seq + (maxRecords - records.length) - 1);
      if (last < seq) break;
      const start = this.#offsetOf(segment, seq);
      // Largest `last` within the byte budget (by binary search on the offsets), at least one record overall.
      if (this.#offsetOf(segment, last + 1) - start > budget) {
        let lo = seq;
        let hi = last;
        while (lo < hi) {
          const mid = Math.ceil((lo + hi) / 2);
          if (this.#offsetOf(segment, mid + 1) - start <= budget) lo = mid;
          else hi = mid - 1;
        }
        last = lo;
        if (records.length > 0 && this.#offsetOf(segment, last + 1) - start > budget) break;
      }
      const end = this.#offsetOf(segment, last + 1);
      // Only one segment's range per call may use the shared buffer: a second would overwrite it.
      const shared = options.reuseBuffer === true && records.length === 0;
      const bytes = await this.#readRange(segment, start, end, shared);
      if (!bytes) continue; // deleted while we looked: the next round finds what is left
      for (let s = seq; s <= last; s++) {
        const at = this.#offsetOf(segment, s) - start;
        const limit = (s === last ? end : this.#offsetOf(segment, s + 1)) - start;
        const record = decodeRecordAt(bytes, at, limit);
        if (record && record.seq === s)
          records.push({
            seq: s,
            timeMs: record.timeMs,
            payload: bytes.subarray(record.payloadStart, record.end),
          });
        else {
          // Damaged on disk since it was written or recovered: skip it, count it.
          this.#stats.dropped.corrupt.records += 1;
          this.#stats.dropped.corrupt.bytes += limit - at;
          this.#stats.dropped.corrupt.signals += 1;
        }
      }
      budget -= end - start;
      seq = last + 1;
      if (budget <= 0) break;
    }
    return records;
  }

  /** The segment holding `seq`, or the first one after it (seqs before it were dropped). */
  #segmentFor(seq: number): Segment | undefined {
    const segments = this.#segments;
    let lo = 0;
    let hi = segments.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((segments[mid] as Segment).firstSeq <= seq) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const at = found >= 0 ? (segments[found] as Segment) : undefined;
    if (at && seq <= lastSeqOf(at)) return at;
    for (let i = found + 1; i < segments.length; i++)
      if ((segments[i] as Segment).count > 0) return segments[i];
    return undefined;
  }

  async #readRange(
    segment: Segment,
    start: number,
    end: number,
    shared = false,
  ): Promise<Buffer | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(segment.file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && segment.removed) return undefined;
      throw ioError(`${segment.file}: cannot read the telemetry log`, err);
    }
    try {
      let bytes: Buffer;
      if (shared) {
        if (this.#readBuffer.length < end - start)
          this.#readBuffer = Buffer.allocUnsafeSlow(Math.max(end - start, 2 * this.#readBuffer.length));
        bytes = this.#readBuffer.subarray(0, end - start);
      } else bytes = Buffer.allocUnsafe(end - start);
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await handle.read(bytes, done, bytes.length - done, start + done);
        if (bytesRead === 0)
          throw new Error(`${segment.file} ends at ${start + done}, expected ${end} bytes`);
        done += bytesRead;
      }
      return bytes;
    } catch (err) {
      throw ioError(`${segment.file}: cannot read the telemetry log`, err);
    } finally {
      await handle.close();
    }
  }

  stats(): WalStats {
    let backlogRecords = 0;
    let backlogBytes = 0;
    for (const segment of this.#segments) {
      const from = Math.max(segment.firstSeq, this.#ackedSeq + 1);
      const last = lastSeqOf(segment);
      if (from > last) continue;
      backlogRecords += last - from + 1;
      backlogBytes += segment.bytes - this.#offsetOf(segment, from);
    }
    const s = this.#stats;
    return {
      appendedRecords: s.appendedRecords,
      appendedBytes: s.appendedBytes,
      writes: s.writes,
      fsyncs: s.fsyncs,
      dropped: {
        full: { ...s.dropped.full },
        corrupt: { ...s.dropped.corrupt },
        torn: { ...s.dropped.torn },
      },
      ackedRecords: s.ackedRecords,
      ackedSeq: this.#ackedSeq,
      segments: this.#segments.length,
      segmentsCreated: s.segmentsCreated,
      segmentsDeleted: s.segmentsDeleted,
      backlogRecords,
      backlogBytes,
      usedBytes: this.#usedBytes,
      lastSeq: this.#nextSeq - 1,
      writtenSeq: this.#writtenSeq,
      durableSeq: this.#durableSeq,
      blockedAppends: this.#blocked.length,
      blockTimeouts: s.blockTimeouts,
    };
  }

  #closedError(): IsthmusError {
    return new IsthmusError('ISTHMUS_E_IO', `${this.dir}: the telemetry log is closed`);
  }

  /** After a failed write or fsync nothing more is written: what the OS has is in doubt until reopened. */
  #fail(err: IsthmusError): void {
    if (this.#failed) return;
    this.#failed = err;
    if (this.#syncTimer) clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    for (const batch of [...this.#unsynced.splice(0), ...(this.#open ? [this.#open] : [])]) {
      batch.written.reject(err);
      batch.durable.reject(err);
    }
    this.#open = undefined;
    this.#rejectWaiters(err);
  }

  #rejectWaiters(err: IsthmusError): void {
    for (const waiter of this.#blocked.splice(0)) {
      if (waiter.timer) clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    for (const w of this.#durableWaiters.splice(0)) w.done.reject(err);
  }

  /**
   * Stops taking appends (waiting ones fail), writes and fsyncs what was appended, finishes the
   * checkpoint and releases the folder. Rejects if the log had failed.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    this.#rejectWaiters(this.#closedError());
    try {
      await this.sync();
    } catch {
      // #failed holds the reason; reported below after cleaning up.
    }
    this.#wakeCheckpoint?.();
    while (this.#checkpointing) await this.#checkpointing;
    while (this.#syncing) await this.#syncing.catch(() => {});
    if (this.#syncTimer) clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    for (const segment of this.#handles) await segment.handle?.close().catch(() => {});
    this.#handles.clear();
    this.#releaseLock();
    if (this.#failed) throw this.#failed;
  }
}
