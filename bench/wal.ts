/**
 * The telemetry write-ahead log benchmark: append rate and replay (readBatch) drain rate of the
 * WAL at the default fsync interval, beside two naive logs in the same run:
 *
 * - `appendFile`: `fs.promises.appendFile` per record (open, write, close), fdatasync every interval;
 * - `write stream`: one `fs.createWriteStream`, a `write()` per record (the stream batches with
 *   writev), backpressure honoured, fdatasync of its fd every interval.
 *
 * Both naive logs write the same bytes per record as a length-prefixed frame (length, time,
 * payload) but have no seqs, checksums, segments, acks or recovery; both replay by reading the
 * whole file and splitting frames. Every timing ends when the last record is fsynced.
 *
 * Usage: npm run bench:wal -- [--records 300000] [--payload 300] [--fsync-interval 200]
 *          [--rounds 3] [--dir /tmp]
 * Figures are the median round. Records of `appendFile` are capped (it is slow); its rate is per
 * record all the same.
 */
import { createWriteStream, fdatasync } from 'node:fs';
import { appendFile, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { WriteAheadLog, type WalAppend } from '../src/telemetry/wal/index.js';

const fdatasyncAsync = promisify(fdatasync);

interface Options {
  records: number;
  payloadBytes: number;
  fsyncIntervalMs: number;
  rounds: number;
  dir: string;
}

interface Measure {
  records: number;
  payloadBytes: number;
  appendMs: number;
  replayMs: number;
  replayed: number;
  fsyncs: number;
}

const APPEND_FILE_MAX_RECORDS = 30_000;
/** Appends in flight before the producer waits for the oldest to be written. */
const WINDOW = 4096;

function options(): Options {
  const { values } = parseArgs({
    options: {
      records: { type: 'string', default: process.env.BENCH_RECORDS ?? '300000' },
      payload: { type: 'string', default: process.env.BENCH_PAYLOAD ?? '300' },
      'fsync-interval': { type: 'string', default: process.env.BENCH_FSYNC_INTERVAL ?? '200' },
      rounds: { type: 'string', default: process.env.BENCH_ROUNDS ?? '3' },
      dir: { type: 'string', default: process.env.BENCH_DIR ?? os.tmpdir() },
    },
  });
  return {
    records: Number(values.records),
    payloadBytes: Number(values.payload),
    fsyncIntervalMs: Number(values['fsync-interval']),
    rounds: Number(values.rounds),
    dir: values.dir,
  };
}

/** Payloads that differ (so nothing compresses or dedupes by accident), made before timing starts. */
function payloads(count: number, bytes: number): Buffer[] {
  const out = [];
  for (let i = 0; i < count; i++) {
    const b = Buffer.allocUnsafe(bytes);
    for (let j = 0; j < bytes; j++) b[j] = (i * 131 + j * 7) & 0xff;
    out.push(b);
  }
  return out;
}

async function benchWal(dir: string, o: Options, data: Buffer[]): Promise<Measure> {
  const wal = await WriteAheadLog.open({ dir, fsyncIntervalMs: o.fsyncIntervalMs });
  const started = performance.now();
  let oldest: Promise<WalAppend> | undefined;
  for (let i = 0; i < o.records; i++) {
    const appended = wal.append(data[i % data.length] as Buffer, Date.now());
    if (i % WINDOW === 0) {
      await oldest;
      oldest = appended;
    }
  }
  await wal.sync();
  const appendMs = performance.now() - started;
  const fsyncs = wal.stats().fsyncs;

  const replayStarted = performance.now();
  let replayed = 0;
  let seq = 1;
  for (;;) {
    const records = await wal.readBatch(seq, 4096, 4 << 20);
    if (records.length === 0) break;
    replayed += records.length;
    seq = (records.at(-1) as { seq: number }).seq + 1;
  }
  const replayMs = performance.now() - replayStarted;
  await wal.close();
  return { records: o.records, payloadBytes: o.payloadBytes, appendMs, replayMs, replayed, fsyncs };
}

/** The naive logs' frame: length u32, time f64, payload. */
function frame(payload: Buffer, timeMs: number): Buffer {
  const out = Buffer.allocUnsafe(12 + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeDoubleLE(timeMs, 4);
  payload.copy(out, 12);
  return out;
}

async function replayFrames(file: string): Promise<number> {
  const bytes = await readFile(file);
  let n = 0;
  for (let at = 0; at + 12 <= bytes.length; n++) {
    const length = bytes.readUInt32LE(at);
    bytes.readDoubleLE(at + 4);
    bytes.subarray(at + 12, at + 12 + length);
    at += 12 + length;
  }
  return n;
}

async function benchAppendFile(dir: string, o: Options, data: Buffer[]): Promise<Measure> {
  const records = Math.min(o.records, APPEND_FILE_MAX_RECORDS);
  const file = path.join(dir, 'naive.log');
  await appendFile(file, '');
  const syncHandle = await open(file, 'r+');
  let fsyncs = 0;
  let syncing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    syncing = syncHandle.datasync().then(() => void (fsyncs += 1));
  }, o.fsyncIntervalMs);
  const started = performance.now();
  for (let i = 0; i < records; i++)
    await appendFile(file, frame(data[i % data.length] as Buffer, Date.now()));
  clearInterval(timer);
  await syncing;
  await syncHandle.datasync();
  fsyncs += 1;
  const appendMs = performance.now() - started;
  await syncHandle.close();
  const replayStarted = performance.now();
  const replayed = await replayFrames(file);
  return {
    records,
    payloadBytes: o.payloadBytes,
    appendMs,
    replayMs: performance.now() - replayStarted,
    replayed,
    fsyncs,
  };
}

async function benchWriteStream(dir: string, o: Options, data: Buffer[]): Promise<Measure> {
  const file = path.join(dir, 'stream.log');
  const stream = createWriteStream(file);
  await new Promise<void>((resolve, reject) => stream.once('open', () => resolve()).once('error', reject));
  const fd = (stream as unknown as { fd: number }).fd;
  let fsyncs = 0;
  let syncing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    syncing = fdatasyncAsync(fd).then(() => void (fsyncs += 1));
  }, o.fsyncIntervalMs);
  const started = performance.now();
  for (let i = 0; i < o.records; i++) {
    if (!stream.write(frame(data[i % data.length] as Buffer, Date.now())))
      await new Promise<void>((resolve) => stream.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve, reject) =>
    stream.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve())),
  );
  clearInterval(timer);
  await syncing;
  await fdatasyncAsync(fd);
  fsyncs += 1;
  const appendMs = performance.now() - started;
  await new Promise<void>((resolve) => stream.end(() => resolve()));
  const replayStarted = performance.now();
  const replayed = await replayFrames(file);
  return {
    records: o.records,
    payloadBytes: o.payloadBytes,
    appendMs,
    replayMs: performance.now() - replayStarted,
    replayed,
    fsyncs,
  };
}

const PEERS = [
  { name: 'Isthmus WAL', run: benchWal },
  { name: 'write stream (naive)', run: benchWriteStream },
  { name: 'appendFile per record (naive)', run: benchAppendFile },
] as const;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const rate = (n: number, ms: number) => (n / ms) * 1000;
const fmt = (x: number, digits = 0) =>
  x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main(): Promise<void> {
  const o = options();
  const data = payloads(1024, o.payloadBytes);
  console.log(
    `telemetry WAL benchmark: ${fmt(o.records)} records of ${o.payloadBytes} B, fsync every ${o.fsyncIntervalMs} ms, ` +
      `${o.rounds} rounds (median), ${os.cpus().length} cores, Node ${process.version}, folder ${o.dir}`,
  );
  const results = new Map<string, Measure[]>();
  for (let round = 0; round < o.rounds; round++) {
    for (const peer of PEERS) {
      const dir = await mkdtemp(path.join(o.dir, 'isthmus-bench-wal-'));
      try {
        const m = await peer.run(dir, o, data);
        if (m.replayed !== m.records) throw new Error(`${peer.name}: replayed ${m.replayed} of ${m.records}`);
        results.set(peer.name, [...(results.get(peer.name) ?? []), m]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  }

  const summary = PEERS.map((peer) => {
    const ms = results.get(peer.name) as Measure[];
    const first = ms[0] as Measure;
    const appendRates = ms.map((m) => rate(m.records, m.appendMs));
    const appendRate = median(appendRates);
    const replayRate = median(ms.map((m) => rate(m.records, m.replayMs)));
    return {
      name: peer.name,
      records: first.records,
      appendRate,
      appendRange: `${fmt(Math.min(...appendRates) / 1000)}k–${fmt(Math.max(...appendRates) / 1000)}k`,
      replayRate,
      fsyncs: median(ms.map((m) => m.fsyncs)),
    };
  });
  const wal = summary[0] as (typeof summary)[number];
  const mb = (recordsPerSec: number) => (recordsPerSec * o.payloadBytes) / 1e6;
  const rows = [
    [
      'log',
      'records',
      'append rec/s',
      'rounds',
      'append MB/s',
      'WAL ×',
      'fsyncs',
      'replay rec/s',
      'replay MB/s',
      'WAL ×',
    ],
    ...summary.map((s) => [
      s.name,
      fmt(s.records),
      fmt(s.appendRate),
      s.appendRange,
      fmt(mb(s.appendRate), 1),
      s === wal ? '—' : `${fmt(wal.appendRate / s.appendRate, 2)}×`,
      fmt(s.fsyncs),
      fmt(s.replayRate),
      fmt(mb(s.replayRate), 1),
      s === wal ? '—' : `${fmt(wal.replayRate / s.replayRate, 2)}×`,
    ]),
  ];
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  const line = (r: string[]) =>
    `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] as number) : cell.padStart(widths[c] as number))).join(' | ')} |`;
  console.log('');
  console.log(line(rows[0] as string[]));
  console.log(
    `|${widths.map((w, c) => (c === 0 ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|`,
  );
  for (const r of rows.slice(1)) console.log(line(r));
  console.log('');
  console.log(
    `MB = 10^6 payload bytes. Append timings end when the last record is fsynced; "WAL ×" is the WAL's rate over the peer's.`,
  );
  const target = 100_000;
  console.log(
    `target ≥ ${fmt(target)} records/s of ${o.payloadBytes} B: ${wal.appendRate >= target ? 'pass' : 'FAIL'} (${fmt(wal.appendRate)} records/s)`,
  );
}

await main();
