/**
 * A separate process using a SQLite store, for tests that need a second process or one that can
 * be killed: `write FILE` applies txns forever, printing each one's revision and key once it
 * resolved; `hold FILE` opens the store, prints `open` and waits to be killed. An open failure
 * prints `error CODE MESSAGE` and exits 3.
 */
import { writeSync } from 'node:fs';
import { isIsthmusError } from '../../../src/core/errors.js';
import { SqliteKvStore } from '../../../src/controlplane/store/sqlite.js';

const [mode, file] = process.argv.slice(2);
// Synchronous writes: a printed line is in the pipe before the next txn starts.
const print = (line: string) => writeSync(1, `${line}\n`);

let store: SqliteKvStore;
try {
  store = SqliteKvStore.open(file!);
} catch (err) {
  print(`error ${isIsthmusError(err) ? err.code : 'unknown'} ${(err as Error).message}`);
  process.exit(3);
}

if (mode === 'hold') {
  print('open');
  setInterval(() => {}, 60_000);
} else if (mode === 'write') {
  for (let i = 0; ; i++) {
    const key = `/k/${i}`;
    const r = await store.txn({ put: [{ key, value: { i, pad: 'x'.repeat(i % 200) } }] });
    print(`${r.revision} ${key}`);
  }
} else {
  print(`error usage unknown mode ${mode}`);
  process.exit(2);
}
