import assert from 'node:assert/strict';
import { readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { WriteAheadLog } from '../../../src/telemetry/wal/index.js';
import {
  appendMany,
  assertIntact,
  range,
  readAll,
  rejection,
  segmentFiles,
  seqsOf,
  small,
  TempDirs,
} from './helpers.js';

const SEGMENT_HEADER = 32;
const RECORD_HEADER = 32;

/** Offsets and seqs of the records in a segment file written with payloadFor. */
function recordsIn(bytes: Buffer): { offset: number; seq: number; end: number }[] {
  const out = [];
  let offset = SEGMENT_HEADER;
  while (offset < bytes.length) {
    const seq = bytes.readUInt32LE(offset + 8);
    const end = offset + RECORD_HEADER + bytes.readUInt32LE(offset + 4);
    out.push({ offset, seq, end });
    offset = end;
  }
  return out;
}

describe('telemetry write-ahead log recovery', () => {
  const dirs = new TempDirs();
  after(() => dirs.cleanup());

  /** A closed log of `n` records over many small segments; returns its folder and segment files. */
  async function closedLog(n: number): Promise<{ dir: string; files: string[] }> {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small });
    await appendMany(wal, n);
    await wal.close();
    return { dir, files: (await segmentFiles(dir)).map((f) => path.join(dir, f)) };
  }

  it('truncates a torn tail, counts one torn record, and reuses the lost seq', async () => {
    const { dir, files } = await closedLog(100);
    const last = files.at(-1) as string;
    const records = recordsIn(await readFile(last));
    const torn = records.at(-1) as (typeof records)[number];
    assert.equal(torn.seq, 100);
    // Cut in the middle of the last record's payload.
    await truncate(last, torn.offset + RECORD_HEADER + 10);
    const wal = await WriteAheadLog.open({ dir, ...small });
    assert.deepEqual(wal.recovery.torn, { records: 1, bytes: RECORD_HEADER + 10 });
    assert.deepEqual(wal.stats().dropped.torn, { records: 1, bytes: RECORD_HEADER + 10, signals: 1 });
    assert.deepEqual(wal.recovery.quarantined, []);
    assert.equal((await stat(last)).size, torn.offset);
    const all = await readAll(wal);
    assert.deepEqual(seqsOf(all), range(1, 99));
    assertIntact(all);
    assert.equal(wal.nextSeq, 100, 'the torn record was never durable, so its seq was never shipped');
    await appendMany(wal, 1);
    await wal.close();
  });

  it('truncates a tail torn inside a record header', async () => {
    const { dir, files } = await closedLog(40);
    const last = files.at(-1) as string;
    const torn = recordsIn(await readFile(last)).at(-1) as { offset: number };
    await truncate(last, torn.offset + 7);
    const wal = await WriteAheadLog.open({ dir, ...small });
    assert.deepEqual(wal.recovery.torn, { records: 1, bytes: 7 });
    assert.deepEqual(seqsOf(await readAll(wal)), range(1, 39));
    await wal.close();
  });

  it('completes a segment torn at creation (its header partly written)', async () => {
    const { dir, files } = await closedLog(30);
    const header = (await readFile(files[0] as string)).subarray(0, SEGMENT_HEADER);
    // What a new segment for seq 31 would start with, cut after 12 bytes.
    const fresh = Buffer.from(header);
    fresh.writeUInt32LE(31, 16);
    const next = path.join(dir, 'wal-00000000000000000031.seg');
    await writeFile(next, fresh.subarray(0, 12));
    const wal = await WriteAheadLog.open({ dir, ...small });
    assert.equal(wal.nextSeq, 31);
    assert.equal((await stat(next)).size, SEGMENT_HEADER);
    assert.deepEqual(await appendMany(wal, 5), range(31, 35));
    await wal.sync();
    assert.deepEqual(seqsOf(await readAll(wal)), range(1, 35));
    await wal.close();
  });

  it('quarantines a segment corrupted in the middle, counts the lost record, keeps the rest', async () => {
    const { dir, files } = await closedLog(200);
    const victim = files[2] as string;
    const original = await readFile(victim);
    const records = recordsIn(original);
    const hit = records[Math.floor(records.length / 2)] as (typeof records)[number];
    const damaged = Buffer.from(original);
    for (let i = hit.offset + RECORD_HEADER + 5; i < hit.offset + RECORD_HEADER + 15; i++)
      damaged[i] = (damaged[i] as number) ^ 0xff;
    await writeFile(victim, damaged);

    const wal = await WriteAheadLog.open({ dir, ...small });
    assert.deepEqual(wal.recovery.corrupt, { records: 1, bytes: hit.end - hit.offset });
    assert.deepEqual(wal.stats().dropped.corrupt, { records: 1, bytes: hit.end - hit.offset, signals: 1 });
    assert.equal(wal.recovery.quarantined.length, 1);
    const moved = wal.recovery.quarantined[0] as string;
    assert.equal(moved, path.join(dir, 'quarantine', `${path.basename(victim)}.corrupt`));
    assert.ok((await readFile(moved)).equals(damaged), 'the quarantined file is the damaged original');
    const all = await readAll(wal);
    assert.deepEqual(
      seqsOf(all),
      range(1, 200).filter((s) => s !== hit.seq),
    );
    assertIntact(all);
    // The records after the damage were resynchronised into their own segment.
    assert.ok((await segmentFiles(dir)).includes(`wal-${String(hit.seq + 1).padStart(20, '0')}.seg`));
    assert.equal(wal.nextSeq, 201);
    await wal.close();

    // Nothing left to repair on the next open.
    const again = await WriteAheadLog.open({ dir, ...small });
    assert.deepEqual(again.recovery.corrupt, { records: 0, bytes: 0 });
    assert.equal(again.recovery.records, 199);
    await again.close();
  });

  it('redoes a repair interrupted by a crash, with the same result', async () => {
    const { dir, files } = await closedLog(120);
    const victim = files[1] as string;
    const damaged = await readFile(victim);
    const hit = recordsIn(damaged)[4] as { offset: number; seq: number };
    damaged[hit.offset + RECORD_HEADER + 1] = (damaged[hit.offset + RECORD_HEADER + 1] as number) ^ 1;
    await writeFile(victim, damaged);
    // The state a crash leaves after the quarantine link and the rename of the second run, before
    // the first run (which takes the original name) was renamed: made by hand from a full repair.
    const secondRun = path.join(dir, `wal-${String(hit.seq + 1).padStart(20, '0')}.seg`);
    const repaired = await WriteAheadLog.open({ dir, ...small });
    await repaired.close();
    const secondRunBytes = await readFile(secondRun);
    const firstRunBytes = await readFile(victim);
    await writeFile(victim, damaged);
    await writeFile(path.join(dir, `.${path.basename(victim)}.tmp`), firstRunBytes);
    assert.ok(secondRunBytes.length > 32);

    const wal = await WriteAheadLog.open({ dir, ...small });
    assert.equal(wal.recovery.corrupt.records, 1);
    assert.deepEqual(
      seqsOf(await readAll(wal)),
      range(1, 120).filter((s) => s !== hit.seq),
    );
    assert.ok((await readFile(victim)).equals(firstRunBytes));
    assert.ok((await readFile(secondRun)).equals(secondRunBytes));
    assert.deepEqual((await readdir(path.join(dir, 'quarantine'))).sort(), [
      `${path.basename(victim)}.1.corrupt`,
      `${path.basename(victim)}.corrupt`,
    ]);
    await wal.close();
  });

  it('counts the records lost when a non-last segment is damaged up to its end', async () => {
    const { dir, files } = await closedLog(200);
    const victim = files[1] as string;
    const original = await readFile(victim);
    const records = recordsIn(original);
    const from = records[3] as (typeof records)[number];
    const damaged = Buffer.from(original);
    damaged.fill(0, from.offset + 1);
    await writeFile(victim, damaged);
    const wal = await WriteAheadLog.open({ dir, ...small });
    const lost = records.slice(3).map((r) => r.seq);
    assert.deepEqual(wal.recovery.corrupt, { records: lost.length, bytes: original.length - from.offset });
    assert.deepEqual(
      seqsOf(await readAll(wal)),
      range(1, 200).filter((s) => !lost.includes(s)),
    );
    await wal.close();
  });

  it('stops with an error naming a foreign file that has the segment naming pattern, and leaves it alone', async () => {
    const dir = await dirs.make();
    const foreign = path.join(dir, 'wal-00000000000000000001.seg');
    const content = 'these are not the records you are looking for, not at all\n';
    await writeFile(foreign, content);
    await writeFile(path.join(dir, 'README'), 'notes\n');
    const err = await rejection(WriteAheadLog.open({ dir, ...small }));
    assert.equal(err.code, 'ISTHMUS_E_CORRUPT');
    assert.ok(err.message.includes(foreign), err.message);
    assert.match(err.message, /not an Isthmus telemetry log segment/);
    assert.equal(await readFile(foreign, 'utf8'), content);
    // The failed open released the folder.
    assert.deepEqual((await readdir(dir)).sort(), ['README', 'wal-00000000000000000001.seg']);
  });

  it('stops with an error on an unknown format version or a foreign checkpoint', async () => {
    const { dir, files } = await closedLog(10);
    const file = files[0] as string;
    const bytes = await readFile(file);
    const newer = Buffer.from(bytes);
    newer.writeUInt16LE(2, 8);
    await writeFile(file, newer);
    const err = await rejection(WriteAheadLog.open({ dir, ...small }));
    assert.equal(err.code, 'ISTHMUS_E_CORRUPT');
    assert.ok(err.message.includes(file), err.message);
    assert.match(err.message, /format version 2/);
    await writeFile(file, bytes);

    const checkpoint = path.join(dir, 'wal.checkpoint');
    await writeFile(checkpoint, '{"format":"something-else","ackedSeq":3}\n');
    const ckErr = await rejection(WriteAheadLog.open({ dir, ...small }));
    assert.ok(ckErr.message.includes(checkpoint), ckErr.message);
    assert.match(ckErr.message, /not an Isthmus telemetry log checkpoint/);
  });

  it('ignores unrelated files and removes only its own leftovers', async () => {
    const { dir } = await closedLog(10);
    await writeFile(path.join(dir, 'README.md'), '# mine\n');
    await writeFile(path.join(dir, 'wal-1.seg'), 'not quite our pattern\n');
    await writeFile(path.join(dir, '.wal.checkpoint.tmp'), 'half a checkpoint');
    await writeFile(path.join(dir, '.wal-notes.tmp'), 'not ours');
    const wal = await WriteAheadLog.open({ dir, ...small });
    assert.equal(wal.previousOwner, undefined, 'the log was closed: no abandoned lock');
    assert.deepEqual(seqsOf(await readAll(wal)), range(1, 10));
    await wal.close();
    const names = await readdir(dir);
    assert.ok(names.includes('README.md') && names.includes('wal-1.seg') && names.includes('.wal-notes.tmp'));
    assert.ok(!names.includes('.wal.checkpoint.tmp'));
    assert.ok(!names.includes('wal.lock'), 'close releases the lock');
  });
});
