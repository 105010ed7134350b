/**
 * Child of the crash test: appends continuously to the log in argv[2] and prints `durable N`
 * once every record up to N is fsynced; meanwhile a slower shipper reads batches, checks them,
 * acks them and prints `acked N` once the ack is checkpointed. Runs until it is killed.
 * Payloads are payloadFor(seq), so that the parent can check every recovered record.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WriteAheadLog, type WalAppend } from '../../../src/telemetry/wal/index.js';
import { payloadFor, timeFor } from './helpers.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: crash-child.js DIR');
const wal = await WriteAheadLog.open({
  dir,
  segmentBytes: 64 * 1024,
  maxBytes: 256 * 1024 * 1024,
  fsyncIntervalMs: 3,
});
// Pipes are synchronous on Linux: a line is in the parent's pipe before the next statement runs.
process.stdout.write(`open ${wal.nextSeq} ${wal.ackedSeq}\n`);

async function ship(): Promise<void> {
  let cursor = wal.ackedSeq + 1;
  for (;;) {
    await wal.whenDurable(cursor);
    const records = await wal.readBatch(cursor, 1000, 1 << 20);
    for (const r of records) {
      if (r.seq !== cursor || !r.payload.equals(payloadFor(r.seq)))
        throw new Error(`shipper: bad record ${r.seq}`);
      cursor += 1;
    }
    await wal.ack(cursor - 1);
    process.stdout.write(`acked ${cursor - 1}\n`);
    // Slower than the appender, so that a backlog builds up.
    await sleep(15);
  }
}
void ship().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

for (;;) {
  const appended: Promise<WalAppend>[] = [];
  const batch = 50 + Math.floor(Math.random() * 400);
  for (let i = 0; i < batch; i++) {
    const seq = wal.nextSeq;
    appended.push(wal.append(payloadFor(seq), timeFor(seq)));
  }
  const last = (await Promise.all(appended)).at(-1) as WalAppend;
  void last.durable.then(() => process.stdout.write(`durable ${last.seq}\n`));
}
