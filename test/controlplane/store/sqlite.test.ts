import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { isIsthmusError } from '../../../src/core/errors.js';
import { SingleProcessElection, StoreCompactedError } from '../../../src/controlplane/store/election.js';
import { openStore } from '../../../src/controlplane/store/open.js';
import { SqliteKvStore } from '../../../src/controlplane/store/sqlite.js';
import { kvConformance, record } from './kv-conformance.js';

const CHILD = fileURLToPath(new URL('./sqlite-child.js', import.meta.url));

let root: string;
let n = 0;
/** A fresh file path, two directories deep in directories that do not exist yet. */
const freshFile = () => path.join(root, `s${++n}`, 'nested', 'global.db');

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'isthmus-sqlite-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

kvConformance('sqlite', () => Promise.resolve(SqliteKvStore.open(freshFile())), { startsAtZero: true });

/** A child process using the store; `lines` yields what it prints. */
function child(mode: 'write' | 'hold', file: string) {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const proc: ChildProcess = spawn(process.execPath, [CHILD, mode, file], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const nextLine = async () => {
    const r = await lines.next();
    return r.done ? undefined : r.value;
  };
  const kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  };
  return { proc, lines, nextLine, kill, exited };
}

const storeError = (pattern: RegExp) => (err: unknown) => {
  assert.ok(isIsthmusError(err), `an IsthmusError, got ${String(err)}`);
  assert.equal(err.code, 'ISTHMUS_E_STORE');
  assert.match(err.message, pattern);
  return true;
};

describe('SqliteKvStore', () => {
  it('every txn that resolved survives kill -9 of the process', async () => {
    const file = freshFile();
    const writer = child('write', file);
    const printed: { revision: number; key: string }[] = [];
    try {
      for (;;) {
        const line = await writer.nextLine();
        assert.ok(line !== undefined && !line.startsWith('error'), `writer printed ${line}`);
        const [rev, key] = line.split(' ');
        printed.push({ revision: Number(rev), key: key! });
        if (printed.length >= 300) break;
      }
    } finally {
      // Killed in the middle of its stream of txns, with no chance to close the store.
      await writer.kill();
    }
    // Lines it printed before the kill that we had not read yet count too.
    for (let line = await writer.nextLine(); line !== undefined; line = await writer.nextLine()) {
      const [rev, key] = line.split(' ');
      if (key) printed.push({ revision: Number(rev), key });
    }
    const store = SqliteKvStore.open(file);
    try {
      const last = printed.at(-1)!;
      assert.ok(
        (await store.revision()) >= last.revision,
        'the store is at least at the last printed revision',
      );
      for (const { revision, key } of printed) {
        const entry = await store.get<{ i: number }>(key);
        assert.equal(entry?.modRevision, revision, `${key} written at revision ${revision}`);
        assert.equal(entry.value.i, Number(key.split('/')[2]));
      }
    } finally {
      await store.close();
    }
    // Left in WAL mode: writes are appended and fsynced (synchronous=FULL) rather than journaled.
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    } finally {
      db.close();
    }
  });

  it('a second process cannot open the file; the lock goes away with a killed holder', async () => {
    const file = freshFile();
    const holder = child('hold', file);
    try {
      assert.equal(await holder.nextLine(), 'open');
      assert.throws(
        () => SqliteKvStore.open(file),
        storeError(new RegExp(`${escape(file)} is in use by another process`)),
      );
      const second = child('hold', file);
      const line = await second.nextLine();
      await second.exited;
      assert.match(line ?? '', /^error ISTHMUS_E_STORE .* is in use by another process/);
      assert.equal(second.proc.exitCode, 3);
    } finally {
      await holder.kill();
    }
    // The kernel released the killed process's lock: no stale lock file to clean up.
    const store = SqliteKvStore.open(file);
    await store.close();
  });

  it('a second store in this process cannot open the file until the first closes', async () => {
    const file = freshFile();
    const first = SqliteKvStore.open(file);
    await first.txn({ put: [{ key: '/a', value: 1 }] });
    assert.throws(() => SqliteKvStore.open(file), storeError(/in use by another process/));
    // The refused open did not disturb the holder.
    assert.equal((await first.get('/a'))?.value, 1);
    await first.close();
    const second = SqliteKvStore.open(file);
    assert.equal((await second.get('/a'))?.value, 1);
    await second.close();
  });

  it('refuses a file that is not a SQLite database, naming it, and leaves it unchanged', async () => {
    const dir = path.dirname(freshFile());
    const file = path.join(dir, 'mesh.yaml');
    const content = 'apiVersion: isthmus.dev/v1alpha1\nkind: Service\n'.repeat(200);
    await rm(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, content);
    assert.throws(
      () => SqliteKvStore.open(file),
      storeError(new RegExp(`${escape(file)} is not a SQLite database`)),
    );
    assert.equal(readFileSync(file, 'utf8'), content);
    assert.deepEqual(readdirSync(dir), ['mesh.yaml'], 'no journal or WAL files left behind');
  });

  it('refuses a corrupt store, naming it, and leaves it unchanged', async () => {
    const file = freshFile();
    const store = SqliteKvStore.open(file);
    for (let i = 0; i < 20; i++)
      await store.txn({ put: [{ key: `/big/${i}`, value: 'v'.repeat(2000) + String(i) }] });
    await store.close();
    const bytes = readFileSync(file);
    assert.ok(bytes.length >= 8 * 4096, `a multi-page file (${bytes.length} bytes)`);
    // Garble the middle pages, as a bad disk or a partial copy would.
    for (let i = 2 * 4096; i < bytes.length - 4096; i++) bytes[i] = (i * 131) & 0xff;
    writeFileSync(file, bytes);
    assert.throws(() => SqliteKvStore.open(file), storeError(new RegExp(`${escape(file)} is corrupt`)));
    assert.deepEqual(readFileSync(file), bytes);
  });

  it('refuses a SQLite database of another program, and leaves it unchanged', () => {
    const file = freshFile();
    mkdirSync(path.dirname(file), { recursive: true });
    const db = new Database(file);
    db.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada')");
    db.close();
    const before = readFileSync(file);
    assert.throws(
      () => SqliteKvStore.open(file),
      storeError(/is a SQLite database but not an Isthmus store .*users/),
    );
    assert.deepEqual(readFileSync(file), before);
  });

  it('creates missing parent directories; keeps revisions and data across reopen', async () => {
    const file = freshFile();
    assert.equal(existsSync(path.dirname(file)), false);
    const a = SqliteKvStore.open(file);
    assert.equal(a.url, `sqlite:${file}`);
    await a.txn({ put: [{ key: '/x', value: { ok: true } }] });
    await a.txn({ put: [{ key: '/y', value: [1] }] });
    await a.close();
    const b = SqliteKvStore.open(file);
    assert.equal(await b.revision(), 2);
    assert.deepEqual(await b.get('/x'), {
      key: '/x',
      value: { ok: true },
      createRevision: 1,
      modRevision: 1,
    });
    assert.equal((await b.txn({ put: [{ key: '/z', value: null }] })).revision, 3);
    await b.close();
  });

  it('a watch from before the in-memory event log fails with a "compacted" error', async () => {
    const file = freshFile();
    const s = SqliteKvStore.open(file, { eventLogLimit: 5 });
    try {
      for (let i = 1; i <= 10; i++) await s.txn({ put: [{ key: `/e/${i}`, value: i }] });
      const tooOld = record(s, '/e/', 2);
      const err = await tooOld.untilError();
      assert.ok(err instanceof StoreCompactedError);
      assert.equal(err.code, 'ISTHMUS_E_STORE');
      assert.match(err.message, /compacted/);
      assert.equal(err.compactRevision, 5);
      assert.deepEqual(tooOld.batches, []);
      // From the oldest kept revision on, the log replays.
      const oldest = record(s, '/e/', 5);
      const batches = await oldest.untilBatches(5);
      assert.deepEqual(
        batches.map((b) => b[0]!.modRevision),
        [6, 7, 8, 9, 10],
      );
      oldest.cancel();
    } finally {
      await s.close();
    }
    // A reopened store knows nothing of the changes before it opened the file.
    const reopened = SqliteKvStore.open(file);
    try {
      assert.match((await record(reopened, '', 0).untilError()).message, /compacted/);
      const w = record(reopened, '', 10);
      await reopened.txn({ put: [{ key: '/after', value: 1 }] });
      assert.equal((await w.untilBatches(1))[0]![0]!.modRevision, 11);
      w.cancel();
    } finally {
      await reopened.close();
    }
  });

  it('watch callbacks run after the txn resolved, never inside it', async () => {
    const s = SqliteKvStore.open(freshFile());
    try {
      const seen: string[] = [];
      const cancel = s.watch('', 0, () => seen.push('event'));
      const p = s.txn({ put: [{ key: '/a', value: 1 }] });
      seen.push('txn returned');
      await p;
      seen.push('txn resolved');
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(seen, ['txn returned', 'txn resolved', 'event']);
      cancel();
    } finally {
      await s.close();
    }
  });

  it('rejects calls after close with a clear error', async () => {
    const s = SqliteKvStore.open(freshFile());
    await s.close();
    await assert.rejects(s.get('/a'), storeError(/closed/));
    await assert.rejects(s.txn({ put: [{ key: '/a', value: 1 }] }), storeError(/closed/));
    assert.match((await record(s, '', 0).untilError()).message, /closed/);
  });
});

describe('openStore (SQLite and usage)', () => {
  it('sqlite:PATH resolves a relative path against the working directory', async () => {
    const file = freshFile();
    const store = await openStore(`sqlite:${path.relative(process.cwd(), file)}`, {});
    try {
      assert.equal(store.url, `sqlite:${file}`);
      assert.ok(store instanceof SqliteKvStore);
    } finally {
      await store.close();
    }
  });

  it('sqlite: alone, or no URL, is DATA_DIR/global.db', async () => {
    const dataDir = path.join(root, `data${++n}`);
    for (const url of ['sqlite:', undefined, '']) {
      const store = await openStore(url, { dataDir });
      assert.equal(store.url, `sqlite:${path.join(dataDir, 'global.db')}`);
      await store.close();
    }
    await assert.rejects(openStore('sqlite:', {}), (err: unknown) => {
      assert.ok(isIsthmusError(err) && err.code === 'ISTHMUS_E_USAGE');
      assert.match(err.message, /data directory/);
      return true;
    });
  });

  it('anything else is a usage error that lists the accepted forms', async () => {
    for (const url of [
      'mysql://localhost/db',
      '/var/lib/isthmus/global.db',
      'etcd://',
      'etcd://host:99999',
      'etcd://a b',
    ]) {
      await assert.rejects(openStore(url, { dataDir: root }), (err: unknown) => {
        assert.ok(isIsthmusError(err), String(err));
        assert.equal(err.code, 'ISTHMUS_E_USAGE', `${url}: ${err.message}`);
        assert.match(err.message, /sqlite:PATH/);
        assert.match(err.message, /etcd:\/\/HOST:PORT/);
        return true;
      });
    }
  });
});

describe('SingleProcessElection', () => {
  it('leads from the start and steps down on resign', async () => {
    const e = new SingleProcessElection('http://127.0.0.1:7400');
    const changes: boolean[] = [];
    e.onChange((l) => changes.push(l));
    assert.equal(e.isLeader, true);
    assert.equal(await e.leader(), 'http://127.0.0.1:7400');
    await e.resign();
    await e.resign();
    assert.equal(e.isLeader, false);
    assert.equal(await e.leader(), undefined);
    assert.deepEqual(changes, [false]);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
