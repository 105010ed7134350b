import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { WriteAheadLog } from '../../../src/telemetry/wal/index.js';
import {
  fixedPayload,
  range,
  readAll,
  rejection,
  segmentFiles,
  seqsOf,
  settlesWithin,
  TempDirs,
} from './helpers.js';

/*
 * 4 KiB segments and 200-byte records (32-byte header + 168-byte payload): a segment holds exactly
 * 20 records (32 + 20 × 200 = 4032 bytes; a 21st would make 4232).
 */
const SEGMENT = 4096;
const PAYLOAD = 168;
const PER_SEGMENT = 20;

async function appendSerially(wal: WriteAheadLog, n: number): Promise<number[]> {
  const seqs = [];
  for (let i = 0; i < n; i++) seqs.push((await wal.append(fixedPayload(wal.nextSeq, PAYLOAD), i)).seq);
  return seqs;
}

describe('telemetry write-ahead log at maxBytes', () => {
  const dirs = new TempDirs();
  after(() => dirs.cleanup());

  it('drop-oldest deletes the oldest segment and counts exactly its unacked records', async () => {
    const dir = await dirs.make();
    // Room for three segments (3 × 4032 = 12096 ≤ 12288) but not a fourth one's first record.
    const wal = await WriteAheadLog.open({
      dir,
      segmentBytes: SEGMENT,
      maxBytes: 12288,
      whenFull: 'drop-oldest',
    });
    assert.deepEqual(await appendSerially(wal, 3 * PER_SEGMENT), range(1, 60));
    assert.deepEqual(wal.stats().dropped.full, { records: 0, bytes: 0, signals: 0 });
    // Record 61 opens a fourth segment: segment 1 (seqs 1-20) goes. Record 81: segment 2 goes.
    await appendSerially(wal, 40);
    let stats = wal.stats();
    assert.deepEqual(stats.dropped.full, { records: 40, bytes: 40 * 200, signals: 40 });
    assert.ok(stats.usedBytes <= 12288, `${stats.usedBytes} bytes used`);
    assert.equal(stats.segments, 3);
    await wal.sync();
    assert.deepEqual(seqsOf(await readAll(wal)), range(41, 100));

    // Acked records are not counted when their segment is dropped: ack half of segment 3 (41-60).
    await wal.ack(50);
    await appendSerially(wal, 1);
    stats = wal.stats();
    assert.deepEqual(stats.dropped.full, { records: 50, bytes: 50 * 200, signals: 50 });
    assert.equal(stats.backlogRecords, 41);
    await wal.sync();
    assert.deepEqual(seqsOf(await readAll(wal)), range(61, 101));
    assert.deepEqual(await segmentFiles(dir), [
      'wal-00000000000000000061.seg',
      'wal-00000000000000000081.seg',
      'wal-00000000000000000101.seg',
    ]);
    await wal.close();
  });

  it('appendText at maxBytes: drop-oldest makes room and counts, block refuses instead of waiting', async () => {
    const text = (seq: number) => `seq:${seq};`.padEnd(PAYLOAD, '.');
    let dir = await dirs.make();
    let wal = await WriteAheadLog.open({
      dir,
      segmentBytes: SEGMENT,
      maxBytes: 12288,
      whenFull: 'drop-oldest',
    });
    // A segment still being written cannot be dropped: each one is written before the next fills.
    for (let segment = 0; segment < 4; segment++) {
      for (let i = 0; i < PER_SEGMENT; i++) assert.equal(wal.appendText(text(wal.nextSeq), i), true);
      await wal.sync();
    }
    assert.deepEqual(wal.stats().dropped.full, {
      records: PER_SEGMENT,
      bytes: PER_SEGMENT * 200,
      signals: PER_SEGMENT,
    });
    await wal.sync();
    assert.deepEqual(seqsOf(await readAll(wal)), range(21, 80));
    await wal.close();

    dir = await dirs.make();
    wal = await WriteAheadLog.open({ dir, segmentBytes: SEGMENT, maxBytes: 12288, whenFull: 'block' });
    for (let i = 0; i < 3 * PER_SEGMENT; i++) assert.equal(wal.appendText(text(wal.nextSeq), i), true);
    assert.equal(wal.appendText(text(61), 0), false);
    assert.equal(wal.stats().lastSeq, 60);
    await wal.close();
  });

  it('counts the signals of dropped records by the weight given at append; unknown weights as 1', async () => {
    const text = (seq: number) => `seq:${seq};`.padEnd(PAYLOAD, '.');
    const dir = await dirs.make();
    const options = { dir, segmentBytes: SEGMENT, maxBytes: 12288, whenFull: 'drop-oldest' as const };
    let wal = await WriteAheadLog.open(options);
    // Segment 1 (seqs 1-20): weight 1 for seqs 1-4 (before any other weight), then the seq itself.
    for (let i = 0; i < PER_SEGMENT; i++) {
      const seq = wal.nextSeq;
      assert.equal(wal.appendText(text(seq), i, seq <= 4 ? 1 : seq), true);
    }
    await wal.sync();
    // Segment 2 (21-40): every record weighs 1000.
    for (let i = 0; i < PER_SEGMENT; i++) assert.equal(wal.appendText(text(wal.nextSeq), i, 1000), true);
    await wal.sync();
    await wal.ack(10);
    // Segment 3 (41-60) and a fourth: segment 1 goes, its unacked seqs 11-20 counted by weight.
    for (let i = 0; i < PER_SEGMENT + 1; i++) assert.equal(wal.appendText(text(wal.nextSeq), i), true);
    await wal.sync();
    const weightOf11To20 = (11 + 20) * 5;
    assert.deepEqual(wal.stats().dropped.full, { records: 10, bytes: 10 * 200, signals: weightOf11To20 });
    await wal.close();

    // Weights live in memory: after a reopen, segment 2's records count as one signal each.
    wal = await WriteAheadLog.open(options);
    for (let i = 0; i < PER_SEGMENT; i++) assert.equal(wal.appendText(text(wal.nextSeq), i), true);
    await wal.sync();
    assert.deepEqual(wal.stats().dropped.full, {
      records: PER_SEGMENT,
      bytes: PER_SEGMENT * 200,
      signals: 20,
    });
    // A weight must be a whole number of signals, at least one.
    for (const weight of [0, -1, 1.5, Number.NaN, 2 ** 32])
      assert.throws(() => wal.appendText(text(wal.nextSeq), 0, weight), { code: 'ISTHMUS_E_INVALID_VALUE' });
    assert.equal((await rejection(wal.append(Buffer.from('x'), 0, 0))).code, 'ISTHMUS_E_INVALID_VALUE');
    await wal.close();
  });

  it('block makes appends wait, in order, until an ack frees a segment', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, segmentBytes: SEGMENT, maxBytes: 8192, whenFull: 'block' });
    await appendSerially(wal, 2 * PER_SEGMENT);
    const first = wal.append(fixedPayload(41, PAYLOAD), 41);
    const second = wal.append(fixedPayload(42, PAYLOAD), 42);
    assert.equal(await settlesWithin(first, 100), false);
    assert.equal(wal.stats().blockedAppends, 2);
    await wal.sync();
    await wal.ack(19);
    assert.equal(await settlesWithin(first, 50), false, 'a partly acked segment frees nothing');
    await wal.ack(20);
    assert.equal((await first).seq, 41);
    assert.equal((await second).seq, 42);
    assert.equal(wal.stats().blockedAppends, 0);
    assert.deepEqual(wal.stats().dropped.full, { records: 0, bytes: 0, signals: 0 });
    await wal.sync();
    assert.deepEqual(seqsOf(await readAll(wal)), range(21, 42));
    await wal.close();
  });

  it('block with a timeout fails the append with ISTHMUS_E_WAL_FULL, and close fails waiting appends', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({
      dir,
      segmentBytes: SEGMENT,
      maxBytes: 8192,
      whenFull: 'block',
      blockTimeoutMs: 60,
    });
    await appendSerially(wal, 2 * PER_SEGMENT);
    const started = performance.now();
    const err = await rejection(wal.append(fixedPayload(41, PAYLOAD), 0));
    assert.equal(err.code, 'ISTHMUS_E_WAL_FULL');
    assert.ok(performance.now() - started >= 55, 'waited for its timeout');
    assert.equal(wal.stats().blockTimeouts, 1);
    assert.equal(wal.nextSeq, 41, 'the timed-out append took no seq');
    const waiting = rejection(wal.append(fixedPayload(41, PAYLOAD), 0));
    await wal.close();
    assert.equal((await waiting).code, 'ISTHMUS_E_IO');
  });
});
