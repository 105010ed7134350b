import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { IsthmusError } from '../../../src/core/errors.js';
import type { WalOptions, WalRecord, WriteAheadLog } from '../../../src/telemetry/wal/index.js';

/** Temporary folders, removed by `cleanup`. */
export class TempDirs {
  #dirs: string[] = [];

  async make(): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'isthmus-wal-'));
    this.#dirs.push(dir);
    return dir;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.#dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  }
}

/** A payload that tells its own seq, of a length that varies with it (60 … 309 bytes). */
export function payloadFor(seq: number): Buffer {
  const length = 60 + ((seq * 7919) % 250);
  const buf = Buffer.alloc(length);
  const label = `seq:${seq};`;
  buf.write(label, 0, 'latin1');
  for (let i = label.length; i < length; i++) buf[i] = (seq * 31 + i) & 0xff;
  return buf;
}

export const timeFor = (seq: number): number => 1_700_000_000_000 + seq * 3;

/** A payload of exactly `bytes` bytes (record = 32 + bytes on disk). */
export const fixedPayload = (seq: number, bytes: number): Buffer => {
  const buf = Buffer.alloc(bytes, seq & 0xff);
  buf.write(`seq:${seq};`, 0, 'latin1');
  return buf;
};

/** Small segments so that a few hundred records span many of them. */
export const small: Omit<WalOptions, 'dir'> = {
  segmentBytes: 4096,
  maxBytes: 1024 * 1024,
  fsyncIntervalMs: 5,
};

/** Appends records whose payloads are payloadFor(their seq); returns the seqs. */
export async function appendMany(wal: WriteAheadLog, n: number): Promise<number[]> {
  const appended = [];
  for (let i = 0; i < n; i++) {
    const seq = wal.nextSeq;
    appended.push(wal.append(payloadFor(seq), timeFor(seq)));
  }
  return (await Promise.all(appended)).map((a) => a.seq);
}

/** Every readable record from `fromSeq` on, in batches. */
export async function readAll(wal: WriteAheadLog, fromSeq = 1, batch = 97): Promise<WalRecord[]> {
  const out: WalRecord[] = [];
  let seq = fromSeq;
  for (;;) {
    const records = await wal.readBatch(seq, batch, 1 << 20);
    if (records.length === 0) return out;
    out.push(...records);
    seq = (records.at(-1) as WalRecord).seq + 1;
  }
}

/** Asserts each record carries payloadFor/timeFor of its seq. */
export function assertIntact(records: readonly WalRecord[]): void {
  for (const r of records) {
    assert.ok(r.payload.equals(payloadFor(r.seq)), `payload of seq ${r.seq} differs`);
    assert.equal(r.timeMs, timeFor(r.seq), `timeMs of seq ${r.seq}`);
  }
}

export const seqsOf = (records: readonly WalRecord[]): number[] => records.map((r) => r.seq);
export const range = (from: number, to: number): number[] =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

export async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => /^wal-\d{20}\.seg$/.test(n)).sort();
}

/** The error `promise` rejects with (fails the test when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<IsthmusError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof IsthmusError, String(err));
    return err;
  }
  assert.fail('expected a rejection');
}

/** Whether `promise` settles within `ms`. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const settled = promise.then(
    () => true as const,
    () => true as const,
  );
  const result = await Promise.race([settled, timeout]);
  clearTimeout(timer);
  return result;
}
