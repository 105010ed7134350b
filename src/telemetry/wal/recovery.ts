import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { IsthmusError } from '../../core/errors.js';
import {
  CHECKPOINT_FILE,
  checkSegmentHeader,
  decodeCheckpoint,
  decodeRecordAt,
  encodeSegmentHeader,
  isTempName,
  parseSegmentName,
  QUARANTINE_DIR,
  RECORD_MARKER_BYTES,
  SEGMENT_HEADER_BYTES,
  segmentName,
  segmentTempName,
} from './format.js';

/**
 * Opening a log folder after a clean close or a crash (sync I/O: it runs once, before anything
 * is appended). The rules, documented in docs/telemetry-wal.md:
 *
 * - every segment is scanned record by record (marker, header checksum, seq one more than the
 *   last, payload checksum);
 * - bad bytes at the end of the **last** segment are a torn tail: truncated, counted as one torn
 *   record (a crash tears at most the record being written; the rest of a batch write is whole);
 * - bad bytes anywhere else are corruption: the scan resynchronises on the next record marker
 *   whose checksums hold, the records in between are counted as lost (their number is the gap in
 *   seqs), the file is moved to `quarantine/` and the surviving records are rewritten as one
 *   segment per run of consecutive seqs (so that within a segment seqs stay consecutive);
 * - files that look like ours but are not (wrong magic, unknown version, a checkpoint in another
 *   format) stop the open with an error naming the file: they are never deleted or renamed.
 */

export interface RecoveredSegment {
  firstSeq: number;
  file: string;
  /** Records in the segment (seqs firstSeq … firstSeq + count - 1). */
  count: number;
  /** File length, bytes. */
  bytes: number;
  /** Offset of each record in the file (count entries used). */
  offsets: Uint32Array;
}

export interface WalLoss {
  records: number;
  bytes: number;
}

/** What opening the folder found and did. */
export interface WalRecovery {
  segments: number;
  records: number;
  /** From the checkpoint (0 without one). */
  ackedSeq: number;
  /** The seq the next append gets. */
  nextSeq: number;
  torn: WalLoss;
  corrupt: WalLoss;
  /** Files moved to quarantine/ (paths). */
  quarantined: string[];
  /** Fully acknowledged segments left by a crash between checkpoint and delete, now deleted. */
  ackedSegmentsDeleted: number;
  /** One line per repair, for people. */
  notes: string[];
}

interface Scan {
  /** Accepted records as [offset, end, seq]. */
  records: { offset: number; end: number; seq: number }[];
  /** Bytes of damage before or between accepted records, and the records they held. */
  lost: WalLoss;
  /** Where the accepted data ends (bytes after it are a torn tail or damage to the end). */
  validEnd: number;
}

const corrupt = (file: string, problem: string) =>
  new IsthmusError('ISTHMUS_E_CORRUPT', `${file}: ${problem}`);
const notOurs = (file: string, problem: string) =>
  corrupt(
    file,
    `${problem}. It is not part of this telemetry log: move it out of the folder (the log never deletes files it did not write).`,
  );

/** Scans records from after the header; `firstSeq` is the seq the first record must have. */
function scanSegment(bytes: Buffer, firstSeq: number): Scan {
  const records: Scan['records'] = [];
  const lost: WalLoss = { records: 0, bytes: 0 };
  let pos = SEGMENT_HEADER_BYTES;
  let lastSeq = firstSeq - 1;
  for (;;) {
    if (pos >= bytes.length) return { records, lost, validEnd: pos };
    const record = decodeRecordAt(bytes, pos);
    if (record && record.seq === lastSeq + 1) {
      records.push({ offset: pos, end: record.end, seq: record.seq });
      lastSeq = record.seq;
      pos = record.end;
      continue;
    }
    // Resynchronise: the next marker whose record is whole, intact and further along in seqs.
    let next = pos;
    let found: { seq: number; end: number } | undefined;
    while ((next = bytes.indexOf(RECORD_MARKER_BYTES, next)) >= 0) {
      const candidate = decodeRecordAt(bytes, next);
      if (candidate && candidate.seq > lastSeq) {
        found = candidate;
        break;
      }
      next += 1;
    }
    if (!found) return { records, lost, validEnd: pos };
    lost.records += found.seq - lastSeq - 1;
    lost.bytes += next - pos;
    pos = next;
    lastSeq = found.seq - 1;
  }
}

function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeFileDurably(file: string, chunks: Buffer[]): void {
  const fd = openSync(file, 'w');
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Hard-links `file` into quarantine/ under a name not yet taken; returns the new path. */
function quarantine(dir: string, file: string): string {
  const qdir = path.join(dir, QUARANTINE_DIR);
  mkdirSync(qdir, { recursive: true });
  const base = path.basename(file);
  for (let n = 0; ; n++) {
    const target = path.join(qdir, n === 0 ? `${base}.corrupt` : `${base}.${n}.corrupt`);
    if (existsSync(target)) continue;
    linkSync(file, target);
    return target;
  }
}

function offsetsOf(records: Scan['records']): Uint32Array {
  const offsets = new Uint32Array(Math.max(16, records.length));
  records.forEach((r, i) => (offsets[i] = r.offset));
  return offsets;
}

/** Reads the folder, repairs what a crash or damage left, and returns the segments in seq order. */
export function recover(dir: string): { segments: RecoveredSegment[]; recovery: WalRecovery } {
  const notes: string[] = [];
  const torn: WalLoss = { records: 0, bytes: 0 };
  const lostToCorruption: WalLoss = { records: 0, bytes: 0 };
  const quarantined: string[] = [];

  const found: { firstSeq: number; file: string }[] = [];
  let ackedSeq = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (isTempName(entry.name) && entry.isFile()) {
      // A rewrite or checkpoint interrupted before its rename: the original is still in place.
      unlinkSync(file);
      continue;
    }
    const firstSeq = parseSegmentName(entry.name);
    if (firstSeq !== undefined) {
      if (!entry.isFile()) throw notOurs(file, 'named like a log segment but not a regular file');
      found.push({ firstSeq, file });
    } else if (entry.name === CHECKPOINT_FILE) {
      const decoded = decodeCheckpoint(readFileSync(file));
      if ('problem' in decoded)
        throw corrupt(
          file,
          `${decoded.problem}. If it is damaged, delete it: every record still in the log will be shipped again.`,
        );
      ackedSeq = decoded.ackedSeq;
    }
    // Anything else (a README, quarantine/, the lock) is left alone.
  }
  found.sort((a, b) => a.firstSeq - b.firstSeq);

  const segments: RecoveredSegment[] = [];
  /** Names written by salvage in this pass; an older pass's leftovers with those names are stale. */
  const rewritten = new Set<string>();
  for (let i = 0; i < found.length; i++) {
    const { firstSeq, file } = found[i] as (typeof found)[number];
    if (rewritten.has(file)) continue;
    const isLast = i === found.length - 1;
    const nextFirstSeq = found[i + 1]?.firstSeq;
    const bytes = readFileSync(file);
    const header = checkSegmentHeader(bytes, firstSeq);
    if (header.kind === 'foreign') throw notOurs(file, header.problem);
    if (header.kind === 'version')
      throw corrupt(
        file,
        `segment format version ${header.version} is not one this release reads (it reads 1); was it written by a newer Isthmus?`,
      );
    if (header.kind === 'torn') {
      // Killed between creating the file and writing its header: it never held a record.
      if (isLast) {
        writeFileDurably(file, [encodeSegmentHeader(firstSeq)]);
        segments.push({
          firstSeq,
          file,
          count: 0,
          bytes: SEGMENT_HEADER_BYTES,
          offsets: new Uint32Array(16),
        });
        notes.push(`${file}: completed a header torn at creation`);
      } else {
        unlinkSync(file);
        notes.push(`${file}: removed an empty segment torn at creation`);
      }
      continue;
    }

    const scan = scanSegment(bytes, firstSeq);
    const tailBytes = bytes.length - scan.validEnd;
    const lastScanned = scan.records.at(-1)?.seq ?? firstSeq - 1;
    const damaged = header.kind === 'damaged' || scan.lost.bytes > 0 || (tailBytes > 0 && !isLast);

    if (!damaged) {
      if (tailBytes > 0) {
        // Torn tail of the last segment: the record being written when the process died.
        const fd = openSync(file, 'r+');
        try {
          ftruncateSync(fd, scan.validEnd);
          fdatasyncSync(fd);
        } finally {
          closeSync(fd);
        }
        torn.records += 1;
        torn.bytes += tailBytes;
        notes.push(`${file}: truncated a torn tail of ${tailBytes} bytes after seq ${lastScanned}`);
      }
      segments.push({
        firstSeq,
        file,
        count: scan.records.length,
        bytes: scan.validEnd,
        offsets: offsetsOf(scan.records),
      });
      continue;
    }

    // Damage: count it, salvage the intact records as runs of consecutive seqs, quarantine the file.
    const lost: WalLoss = { records: scan.lost.records, bytes: scan.lost.bytes };
    if (header.kind === 'damaged') {
      lost.bytes += SEGMENT_HEADER_BYTES;
      notes.push(`${file}: ${header.problem}`);
    }
    if (tailBytes > 0 && isLast) {
      torn.records += 1;
      torn.bytes += tailBytes;
    } else if (tailBytes > 0) {
      lost.bytes += tailBytes;
      if (nextFirstSeq !== undefined) lost.records += Math.max(0, nextFirstSeq - lastScanned - 1);
    }
    lostToCorruption.records += lost.records;
    lostToCorruption.bytes += lost.bytes;

    const runs: Scan['records'][] = [];
    for (const record of scan.records) {
      const run = runs.at(-1);
      if (run && (run.at(-1) as Scan['records'][number]).seq + 1 === record.seq) run.push(record);
      else runs.push([record]);
    }
    // The last segment keeps a file even when nothing survived: its name is the floor of the next seq.
    if (runs.length === 0 && isLast) runs.push([]);
    const outputs = runs.map((run) => {
      const runFirst = run[0]?.seq ?? firstSeq;
      const target = path.join(dir, segmentName(runFirst));
      const temp = path.join(dir, segmentTempName(runFirst));
      const chunks = [encodeSegmentHeader(runFirst)];
      const offsets: Scan['records'] = [];
      let at = SEGMENT_HEADER_BYTES;
      for (const r of run) {
        chunks.push(bytes.subarray(r.offset, r.end));
        offsets.push({ offset: at, end: at + r.end - r.offset, seq: r.seq });
        at += r.end - r.offset;
      }
      writeFileDurably(temp, chunks);
      return { runFirst, target, temp, count: run.length, bytes: at, offsets: offsetsOf(offsets) };
    });
    const moved = quarantine(dir, file);
    quarantined.push(moved);
    // The run that reuses the original name goes last, so that until then a crash finds the
    // original and redoes this whole salvage.
    outputs.sort((a, b) => Number(a.target === file) - Number(b.target === file));
    for (const out of outputs) renameSync(out.temp, out.target);
    if (!outputs.some((o) => o.target === file)) unlinkSync(file);
    fsyncPath(dir);
    fsyncPath(path.dirname(moved));
    for (const out of outputs) {
      rewritten.add(out.target);
      segments.push({
        firstSeq: out.runFirst,
        file: out.target,
        count: out.count,
        bytes: out.bytes,
        offsets: out.offsets,
      });
    }
    notes.push(
      `${file}: damaged; ${lost.records} records (${lost.bytes} bytes) lost, ${scan.records.length} salvaged into ${outputs.length} segment(s), original moved to ${moved}`,
    );
  }

  // Seqs must increase from segment to segment: an overlap means files from two logs were mixed.
  segments.sort((a, b) => a.firstSeq - b.firstSeq);
  for (let i = 1; i < segments.length; i++) {
    const prev = segments[i - 1] as RecoveredSegment;
    const seg = segments[i] as RecoveredSegment;
    if (seg.firstSeq <= prev.firstSeq + prev.count - 1)
      throw corrupt(
        seg.file,
        `its seqs overlap those of ${prev.file}: segments of two different logs in one folder? Move one set out.`,
      );
  }

  // Empty segments before the last and fully acknowledged ones hold nothing to ship.
  let ackedSegmentsDeleted = 0;
  const kept = segments.filter((seg, i) => {
    if (i === segments.length - 1) return true;
    if (seg.count > 0 && seg.firstSeq + seg.count - 1 > ackedSeq) return true;
    unlinkSync(seg.file);
    if (seg.count > 0) ackedSegmentsDeleted += 1;
    return false;
  });
  // What a crash left in the page cache becomes durable here, so every recovered record may be shipped.
  for (const seg of kept) {
    const fd = openSync(seg.file, 'r+');
    try {
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  if (kept.length < segments.length || ackedSegmentsDeleted > 0) fsyncPath(dir);

  const last = kept.at(-1);
  const lastSeq = last ? last.firstSeq + last.count - 1 : 0;
  const nextSeq = Math.max(lastSeq + 1, last?.firstSeq ?? 1, ackedSeq + 1, 1);
  return {
    segments: kept,
    recovery: {
      segments: kept.length,
      records: kept.reduce((n, s) => n + s.count, 0),
      ackedSeq,
      nextSeq,
      torn,
      corrupt: lostToCorruption,
      quarantined,
      ackedSegmentsDeleted,
      notes,
    },
  };
}
