import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { WriteAheadLog } from '../../../src/telemetry/wal/index.js';
import {
  appendMany,
  assertIntact,
  payloadFor,
  range,
  readAll,
  rejection,
  segmentFiles,
  seqsOf,
  settlesWithin,
  small,
  TempDirs,
  timeFor,
} from './helpers.js';

describe('telemetry write-ahead log', () => {
  const dirs = new TempDirs();
  after(() => dirs.cleanup());

  it('round-trips records across several segments and continues seqs after reopening', async () => {
    const dir = await dirs.make();
    let wal = await WriteAheadLog.open({ dir, ...small });
    assert.deepEqual(await appendMany(wal, 300), range(1, 300));
    await wal.sync();
    const records = await readAll(wal);
    assert.deepEqual(seqsOf(records), range(1, 300));
    assertIntact(records);
    const files = await segmentFiles(dir);
    assert.ok(files.length >= 10, `expected many segments, got ${files.length}`);
    assert.equal(wal.stats().segments, files.length);
    assert.equal(files[0], 'wal-00000000000000000001.seg');
    await wal.close();

    wal = await WriteAheadLog.open({ dir, ...small });
    assert.equal(wal.recovery.records, 300);
    assert.equal(wal.recovery.nextSeq, 301);
    assert.deepEqual(wal.recovery.torn, { records: 0, bytes: 0 });
    assert.deepEqual(await appendMany(wal, 50), range(301, 350));
    await wal.close();

    wal = await WriteAheadLog.open({ dir, ...small });
    const all = await readAll(wal);
    assert.deepEqual(seqsOf(all), range(1, 350));
    assertIntact(all);
    await wal.close();
  });

  it('append resolves once written; readBatch serves only fsynced records; the interval runs on the injected clock', async () => {
    const dir = await dirs.make();
    const clock = new ManualClock();
    const wal = await WriteAheadLog.open({ dir, ...small, fsyncIntervalMs: 20, clock });
    const appended = await wal.append(payloadFor(1), timeFor(1));
    assert.equal(appended.seq, 1);
    assert.equal(wal.stats().writtenSeq, 1);
    // Real time passes, the clock does not: no fsync, nothing readable.
    assert.equal(await settlesWithin(appended.durable, 80), false);
    assert.equal(wal.stats().fsyncs, 0);
    assert.deepEqual(await wal.readBatch(1, 10, 1 << 20), []);
    clock.advance(20);
    assert.equal(await settlesWithin(appended.durable, 1000), true);
    assert.equal(wal.stats().fsyncs, 1);
    assert.equal(wal.durableSeq, 1);
    assert.deepEqual(seqsOf(await wal.readBatch(1, 10, 1 << 20)), [1]);

    // sync() forces it without the clock.
    const second = await wal.append(payloadFor(2), timeFor(2));
    await wal.sync();
    assert.equal(await settlesWithin(second.durable, 0), true);
    assert.equal(wal.durableSeq, 2);
    await wal.close();
  });

  it('fsyncs on its own at the default-style interval with the system clock, batching appends into few writes', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small, fsyncIntervalMs: 10 });
    const pending = range(1, 2000).map((seq) => wal.append(payloadFor(seq), timeFor(seq)));
    const results = await Promise.all(pending);
    await (results.at(-1) as (typeof results)[number]).durable;
    const stats = wal.stats();
    assert.equal(stats.durableSeq, 2000);
    assert.equal(stats.appendedRecords, 2000);
    // One event-loop turn of appends is one batch: a handful of writes (one per segment touched), not 2000.
    assert.ok(stats.writes <= stats.segmentsCreated + 5, `writes ${stats.writes}`);
    assert.ok(stats.fsyncs >= 1);
    await wal.close();
  });

  it('appendBytes copies the bytes at once (the caller reuses them), and refuses what appendText refuses', async () => {
    const dir = await dirs.make();
    let wal = await WriteAheadLog.open({ dir, ...small });
    const scratch = Buffer.alloc(8);
    for (let seq = 1; seq <= 3; seq++) {
      scratch.fill(0x40 + seq);
      assert.equal(wal.appendBytes(scratch.subarray(0, seq), timeFor(seq), seq), true);
    }
    scratch.fill(0);
    assert.equal(wal.appendBytes(Buffer.alloc(wal.maxPayloadBytes + 1), 1), false, 'too large');
    assert.equal(wal.appendBytes(scratch, Number.NaN), false, 'no time');
    assert.throws(() => wal.appendBytes(scratch, 1, 0), { code: 'ISTHMUS_E_INVALID_VALUE' });
    await wal.close();
    assert.equal(wal.appendBytes(scratch, 1), false, 'closed');
    wal = await WriteAheadLog.open({ dir, ...small });
    const records = await wal.readBatch(1, 10, 1 << 20);
    assert.deepEqual(
      records.map((r) => [r.seq, r.timeMs, r.payload.toString('latin1')]),
      [
        [1, timeFor(1), 'A'],
        [2, timeFor(2), 'BB'],
        [3, timeFor(3), 'CCC'],
      ],
    );
    await wal.close();
  });

  it('writes appends of several event-loop turns together within writeDelayMs, and each turn alone with 0', async () => {
    const writesFor = async (writeDelayMs: number) => {
      const dir = await dirs.make();
      const wal = await WriteAheadLog.open({ dir, ...small, writeDelayMs });
      for (let seq = 1; seq <= 5; seq++) {
        assert.ok(wal.appendText(`record ${seq}`, timeFor(seq)));
        await new Promise((resolve) => setImmediate(resolve));
      }
      await new Promise((resolve) => setTimeout(resolve, writeDelayMs + 50));
      const { writes, writtenSeq } = wal.stats();
      await wal.close();
      return { writes, writtenSeq };
    };
    // Five turns, well within 200 ms: one write. Without a delay the first turn's record goes out
    // alone (the rest follow together once that write completes).
    assert.deepEqual(await writesFor(200), { writes: 1, writtenSeq: 5 });
    const perTurn = await writesFor(0);
    assert.equal(perTurn.writtenSeq, 5);
    assert.ok(perTurn.writes >= 2, `writes ${perTurn.writes}`);
    const bad = await rejection(WriteAheadLog.open({ dir: await dirs.make(), ...small, writeDelayMs: -1 }));
    assert.equal(bad.code, 'ISTHMUS_E_INVALID_VALUE');
    assert.match(bad.message, /writeDelayMs/);
  });

  it('reuses its slabs once written without damaging a record, with writes in flight', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({
      dir,
      segmentBytes: 1 << 20,
      maxBytes: 64 << 20,
      fsyncIntervalMs: 5,
    });
    // About 5 MB in rounds of 2,000 records, a round's appends racing the previous round's write:
    // slabs fill, are written, and are filled again while other writes are still going on.
    let seq = 0;
    const writes: Promise<unknown>[] = [];
    for (let round = 0; round < 15; round++) {
      const last = seq + 2000;
      while (seq < last) {
        seq++;
        assert.ok(wal.appendText(payloadFor(seq).toString('latin1'), timeFor(seq)));
      }
      writes.push(wal.sync());
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(writes);
    await wal.sync();
    const records = await readAll(wal, 1, 5000);
    assert.deepEqual(seqsOf(records), range(1, seq));
    for (const r of records)
      assert.ok(r.payload.equals(Buffer.from(payloadFor(r.seq).toString('latin1'), 'utf8')), `seq ${r.seq}`);
    assert.equal(wal.stats().dropped.corrupt.records, 0);
    await wal.close();
  });

  it('readBatch honours maxRecords and maxBytes (at least one record), crosses segments, starts after the acked seq', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small });
    await appendMany(wal, 120);
    await wal.sync();
    assert.deepEqual(seqsOf(await wal.readBatch(1, 7, 1 << 20)), range(1, 7));
    // Spans several 4 KiB segments in one call.
    assert.deepEqual(seqsOf(await wal.readBatch(5, 100, 1 << 20)), range(5, 104));
    // A byte budget smaller than one record still returns that record.
    assert.deepEqual(seqsOf(await wal.readBatch(10, 100, 1)), [10]);
    const budget = 2000;
    const byBytes = await wal.readBatch(1, 1000, budget);
    const used = byBytes.reduce((n, r) => n + 32 + r.payload.length, 0);
    assert.ok(used <= budget, `${used} bytes over a ${budget} budget`);
    assert.ok(
      used + 32 + payloadFor(byBytes.length + 1).length > budget,
      'stopped before the budget was used',
    );
    assert.deepEqual(seqsOf(byBytes), range(1, byBytes.length));
    assert.deepEqual(await wal.readBatch(121, 10, 1 << 20), []);
    await wal.ack(30);
    assert.deepEqual(seqsOf(await wal.readBatch(1, 3, 1 << 20)), [31, 32, 33]);
    assertIntact(await wal.readBatch(1, 1000, 1 << 30));
    await wal.close();
  });

  it('ack deletes whole segments only, never the active one, and persists the acked seq', async () => {
    const dir = await dirs.make();
    let wal = await WriteAheadLog.open({ dir, ...small });
    await appendMany(wal, 200);
    await wal.sync();
    const before = await segmentFiles(dir);
    const firstSeqs = before.map((n) => Number(n.slice(4, 24)));
    // Ack into the middle of the third segment: the first two go, the third stays.
    const third = firstSeqs[2] as number;
    const fourth = firstSeqs[3] as number;
    const uptoSeq = third + Math.floor((fourth - third) / 2);
    await wal.ack(uptoSeq);
    const afterAck = await segmentFiles(dir);
    assert.deepEqual(afterAck, before.slice(2));
    const stats = wal.stats();
    assert.equal(stats.ackedSeq, uptoSeq);
    assert.equal(stats.ackedRecords, uptoSeq);
    assert.equal(stats.backlogRecords, 200 - uptoSeq);
    assert.equal(stats.segmentsDeleted, 2);
    const checkpoint = JSON.parse(await readFile(path.join(dir, 'wal.checkpoint'), 'utf8')) as {
      ackedSeq: number;
    };
    assert.equal(checkpoint.ackedSeq, uptoSeq);
    assert.equal((await rejection(wal.ack(201))).code, 'ISTHMUS_E_INVALID_VALUE');
    await wal.close();

    wal = await WriteAheadLog.open({ dir, ...small });
    assert.equal(wal.ackedSeq, uptoSeq);
    const rest = await readAll(wal);
    assert.deepEqual(seqsOf(rest), range(uptoSeq + 1, 200));
    // Acking everything keeps the active segment (its name carries the next seq).
    await wal.ack(200);
    assert.deepEqual(await segmentFiles(dir), before.slice(-1));
    assert.equal(wal.stats().backlogRecords, 0);
    await wal.close();

    wal = await WriteAheadLog.open({ dir, ...small });
    assert.equal(wal.nextSeq, 201);
    assert.deepEqual(await readAll(wal), []);
    await wal.close();
  });

  it('writes checkpoints for back-to-back acks at most once per fsync interval, unless asked now', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small, fsyncIntervalMs: 400 });
    await appendMany(wal, 10);
    await wal.sync();
    const checkpointed = async () =>
      (JSON.parse(await readFile(path.join(dir, 'wal.checkpoint'), 'utf8')) as { ackedSeq: number }).ackedSeq;
    // The first ack is checkpointed at once; the next ones wait for the interval, together.
    await wal.ack(1);
    assert.equal(await checkpointed(), 1);
    const second = wal.ack(2);
    const third = wal.ack(3);
    assert.equal(await settlesWithin(third, 150), false, 'a checkpoint only 150 ms after the last one');
    assert.equal(await checkpointed(), 1);
    await Promise.all([second, third]);
    assert.equal(await checkpointed(), 3);
    // checkpointNow ends the wait.
    const fourth = wal.ack(4);
    await new Promise((r) => setTimeout(r, 20));
    wal.checkpointNow();
    assert.equal(await settlesWithin(fourth, 150), true, 'checkpointNow did not end the wait');
    assert.equal(await checkpointed(), 4);
    await wal.close();
  });

  it('refuses a second open of the same folder and bad options', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small });
    const second = await rejection(WriteAheadLog.open({ dir, ...small }));
    assert.equal(second.code, 'ISTHMUS_E_IO');
    assert.match(second.message, /already open/);
    await wal.close();
    const bad = await rejection(WriteAheadLog.open({ dir, segmentBytes: 8 << 20, maxBytes: 1 << 20 }));
    assert.equal(bad.code, 'ISTHMUS_E_INVALID_VALUE');
    assert.match(bad.message, /twice segmentBytes/);
    // Closed and released: it opens again.
    await (await WriteAheadLog.open({ dir, ...small })).close();
  });

  it('rejects oversized records and appends after close; close flushes and fsyncs', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small, fsyncIntervalMs: 10_000 });
    const big = await rejection(wal.append(Buffer.alloc(wal.maxPayloadBytes + 1), 0));
    assert.equal(big.code, 'ISTHMUS_E_INVALID_VALUE');
    const fits = wal.append(Buffer.alloc(wal.maxPayloadBytes), 0);
    const pending = range(1, 10).map((i) => wal.append(payloadFor(i + 1), timeFor(i + 1)));
    await wal.close();
    assert.equal((await fits).seq, 1);
    const last = await (pending.at(-1) as Promise<{ durable: Promise<void> }>);
    assert.equal(await settlesWithin(last.durable, 0), true, 'close fsyncs');
    assert.equal((await rejection(wal.append(payloadFor(1), 0))).code, 'ISTHMUS_E_IO');
  });

  it('appendText stores text as UTF-8 records like append, takes no promise, and refuses what it cannot take now', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small });
    const texts = ['Lplain ascii', 'Lé ü — 漢字 🙂', `L${'x'.repeat(500)}`, 'L'];
    for (const t of texts) assert.equal(wal.appendText(t, timeFor(1)), true);
    assert.equal((await wal.append(Buffer.from('Bbytes'), timeFor(2))).seq, 5);
    await wal.sync();
    const records = await readAll(wal);
    assert.deepEqual(seqsOf(records), range(1, 5));
    assert.deepEqual(
      records.map((r) => r.payload.toString('utf8')),
      [...texts, 'Bbytes'],
    );
    assert.equal(records[0]?.timeMs, timeFor(1));
    // Too large (in UTF-8 bytes, not characters), a bad time, after close: refused, not thrown.
    assert.equal(wal.appendText('é'.repeat(Math.floor(wal.maxPayloadBytes / 2) + 1), 0), false);
    assert.equal(wal.appendText('x', Number.NaN), false);
    assert.equal(wal.stats().lastSeq, 5);
    await wal.close();
    assert.equal(wal.appendText('x', 0), false);

    const reopened = await WriteAheadLog.open({ dir, ...small });
    assert.deepEqual(seqsOf(await readAll(reopened)), range(1, 5));
    await reopened.close();
  });

  it('readBatch with reuseBuffer gives the same records, across segments, from one reused buffer', async () => {
    const dir = await dirs.make();
    const wal = await WriteAheadLog.open({ dir, ...small });
    await appendMany(wal, 120);
    await wal.sync();
    let previous: { first: Uint8Array; copy: Buffer } | undefined;
    for (let from = 1; from <= 120; from += 40) {
      const batch = await wal.readBatch(from, 40, 1024 * 1024, { reuseBuffer: true });
      assert.deepEqual(seqsOf(batch), range(from, from + 39));
      // Spans several 4 KiB segments: every record is intact when the call returns.
      assertIntact(batch);
      // The previous call's first payload was read into the same buffer, so this call overwrote it.
      if (previous) assert.notDeepEqual(Buffer.from(previous.first), previous.copy, 'the buffer is reused');
      const first = (batch[0] as { payload: Uint8Array }).payload;
      previous = { first, copy: Buffer.from(first) };
    }
    await wal.close();
  });
});
