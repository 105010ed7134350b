import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { WriteAheadLog } from '../../../src/telemetry/wal/index.js';
import { assertIntact, readAll, TempDirs } from './helpers.js';

const CHILD = fileURLToPath(new URL('./crash-child.js', import.meta.url));
const ROUNDS = 5;

/** Runs the child on `dir` until it has reported durability, then SIGKILLs it at a random moment. */
async function runAndKill(
  dir: string,
): Promise<{ openedAt: number; durable: number; acked: number; pid: number | undefined }> {
  const child = spawn(process.execPath, [CHILD, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  let openedAt = 0;
  let durable = 0;
  let acked = 0;
  let killTimer: NodeJS.Timeout | undefined;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const [what, n] = line.split(' ');
    if (what === 'open') openedAt = Number(n);
    if (what === 'acked') acked = Math.max(acked, Number(n));
    if (what === 'durable') {
      durable = Math.max(durable, Number(n));
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), 20 + Math.random() * 150);
    }
  });
  const signal = await exited;
  clearTimeout(killTimer);
  assert.equal(signal, 'SIGKILL', `the child died on its own: ${stderr}`);
  return { openedAt, durable, acked, pid: child.pid };
}

describe('telemetry write-ahead log under kill -9', () => {
  const dirs = new TempDirs();
  after(() => dirs.cleanup());

  it('keeps every record reported durable and not acked, in order, intact, without duplicates, round after round', async () => {
    const dir = await dirs.make();
    let expectedNext = 1;
    let totalDurable = 0;
    let acks = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { openedAt, durable, acked, pid } = await runAndKill(dir);
      assert.equal(openedAt, expectedNext, `round ${round}: the child continued from seq ${openedAt}`);
      assert.ok(durable >= openedAt, `round ${round}: nothing became durable`);
      const wal = await WriteAheadLog.open({ dir, segmentBytes: 64 * 1024, maxBytes: 256 * 1024 * 1024 });
      // The killed child never released the log: its lock names it.
      assert.equal(wal.previousOwner?.pid, pid, `round ${round}: the abandoned lock`);
      assert.equal(typeof wal.previousOwner?.startedAtMs, 'number');
      assert.deepEqual(
        wal.recovery.corrupt,
        { records: 0, bytes: 0 },
        `round ${round}: ${wal.recovery.notes.join('; ')}`,
      );
      assert.deepEqual(wal.recovery.quarantined, []);
      assert.ok(wal.recovery.torn.records <= 1);
      // Acks whose checkpoint completed are never undone: those records are not shipped again.
      assert.ok(
        wal.ackedSeq >= acked,
        `round ${round}: acked ${acked} but the checkpoint says ${wal.ackedSeq}`,
      );
      const records = await readAll(wal, 1, 5000);
      // Contiguous from after the acked seq: in order, no duplicates, no gaps, at least up to the last durable seq.
      records.forEach((r, i) =>
        assert.equal(r.seq, wal.ackedSeq + 1 + i, `round ${round}: record ${i} has seq ${r.seq}`),
      );
      const last = records.at(-1)?.seq ?? wal.ackedSeq;
      assert.ok(last >= durable, `round ${round}: recovered up to ${last}, ${durable} was reported durable`);
      acks += acked > 0 ? 1 : 0;
      assertIntact(records);
      assert.equal(wal.nextSeq, last + 1);
      expectedNext = wal.nextSeq;
      totalDurable = durable;
      await wal.close();
    }
    assert.ok(totalDurable > ROUNDS * 100, `only ${totalDurable} records in ${ROUNDS} rounds`);
    assert.ok(acks > 0, 'the shipper never acked');
  });
});
