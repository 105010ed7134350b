/**
 * The embedded store: one SQLite file, owned by one process.
 *
 * - Durability: WAL journal with `synchronous=FULL`, so a transaction whose promise resolved is
 *   on disk (fsynced) and survives kill -9 or power loss of the machine.
 * - Exclusive use: the connection runs in `locking_mode=EXCLUSIVE` and writes at open, which
 *   takes SQLite's EXCLUSIVE lock on the file and holds it until close. These are kernel (fcntl)
 *   locks: a second process, or a second store in this process, fails at once, and the lock
 *   disappears with a process that was killed, so there is no stale lock to clean up. (They are
 *   only as reliable as the file system's locking: keep the file on a local disk, not on NFS.)
 * - Watches are served in-process (no other process can write the file) from a bounded
 *   in-memory log of recent changes; see {@link SqliteKvStoreOptions.eventLogLimit}.
 * - The user's file is never deleted or rewritten when it is not a store: everything that could
 *   be wrong with it is checked before the first write.
 */
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { IsthmusError } from '../../core/errors.js';
import { decodeValue, encodeTxn, StoreCompactedError } from './election.js';
import type { KvEntry, KvStore, KvTxn, KvTxnResult, KvWatchEvent } from './kv.js';

/** Options of {@link SqliteKvStore.open}. */
export interface SqliteKvStoreOptions {
  /**
   * Changes (events) kept in memory so that a watch may start at an older revision; default
   * 10,000. A watch from before the oldest kept change — or from before this process opened the
   * file, whose earlier changes are not known — fails with a {@link StoreCompactedError}.
   */
  eventLogLimit?: number;
}

/** An event as kept in the log: the value stays JSON text so every watcher parses its own copy. */
interface LoggedEvent {
  type: 'put' | 'delete';
  key: string;
  json?: string;
  modRevision: number;
}

interface LoggedBatch {
  revision: number;
  events: LoggedEvent[];
}

interface Watcher {
  prefix: string;
  onEvents: (events: KvWatchEvent[]) => void;
  onError: ((err: Error) => void) | undefined;
  /** Batches waiting for delivery, oldest first. */
  queue: LoggedBatch[];
  scheduled: boolean;
  cancelled: boolean;
}

interface KvRow {
  key: string;
  value: string;
  create_rev: number;
  mod_rev: number;
}

/** Format marker in the meta table: a SQLite file without it is not ours and is left alone. */
const FORMAT = 'isthmus-kv/1';

const DEFAULT_EVENT_LOG_LIMIT = 10_000;

export class SqliteKvStore implements KvStore {
  readonly url: string;
  readonly #file: string;
  readonly #db: Database.Database;
  readonly #eventLogLimit: number;
  #revision: number;
  /** Every change after this revision is in `#log`; older ones are forgotten. */
  #logFloor: number;
  readonly #log: LoggedBatch[] = [];
  #logEvents = 0;
  readonly #watchers = new Set<Watcher>();
  #closed = false;

  readonly #getStmt: Database.Statement<[string], KvRow>;
  readonly #rangeStmt: Database.Statement<[string], KvRow>;
  readonly #modRevStmt: Database.Statement<[string], number>;
  readonly #upsertStmt: Database.Statement<[string, string, number, number]>;
  readonly #deleteStmt: Database.Statement<[string]>;
  readonly #setRevisionStmt: Database.Statement<[number]>;
  readonly #applyTxn: (puts: { key: string; json: string }[], txn: KvTxn) => TxnOutcome;

  private constructor(file: string, db: Database.Database, options: SqliteKvStoreOptions) {
    this.#file = file;
    this.url = `sqlite:${file}`;
    this.#db = db;
    this.#eventLogLimit = Math.max(1, Math.floor(options.eventLogLimit ?? DEFAULT_EVENT_LOG_LIMIT));
    this.#getStmt = db.prepare<[string], KvRow>(
      'SELECT key, value, create_rev, mod_rev FROM kv WHERE key = ?',
    );
    // Keys sharing a prefix are contiguous in byte order, so the scan starts at the prefix and
    // `range` stops at the first key that does not start with it (exact, and uses the index —
    // unlike LIKE/GLOB, whose wildcards would need escaping).
    this.#rangeStmt = db.prepare<[string], KvRow>(
      'SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? ORDER BY key',
    );
    this.#modRevStmt = db.prepare<[string], number>('SELECT mod_rev FROM kv WHERE key = ?').pluck();
    this.#upsertStmt = db.prepare<[string, string, number, number]>(
      `INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev`,
    );
    this.#deleteStmt = db.prepare<[string]>('DELETE FROM kv WHERE key = ?');
    this.#setRevisionStmt = db.prepare<[number]>("UPDATE meta SET value = ? WHERE name = 'revision'");
    this.#revision = readRevision(db);
    this.#logFloor = this.#revision;
    const apply = (puts: { key: string; json: string }[], txn: KvTxn): TxnOutcome => {
      for (const c of txn.compare ?? []) {
        if ((this.#modRevStmt.get(c.key) ?? 0) !== c.modRevision) return { ok: false };
      }
      const revision = this.#revision + 1;
      const events: LoggedEvent[] = [];
      for (const p of puts) {
        this.#upsertStmt.run(p.key, p.json, revision, revision);
        events.push({ type: 'put', key: p.key, json: p.json, modRevision: revision });
      }
      for (const key of txn.delete ?? []) {
        if (this.#deleteStmt.run(key).changes > 0)
          events.push({ type: 'delete', key, modRevision: revision });
      }
      // As in etcd, a transaction that changes nothing (only compares, or deletes of absent keys)
      // succeeds without creating a revision: revisions number changes, and the two stores must
      // agree on them.
      if (events.length > 0) this.#setRevisionStmt.run(revision);
      return { ok: true, events };
    };
    // IMMEDIATE: take the write lock at BEGIN, so the compares read what the writes will replace.
    const transaction = db.transaction(apply);
    this.#applyTxn = (puts, txn) => transaction.immediate(puts, txn);
  }

  /**
   * Opens (creating it and its directory if missing) the store file and locks it for this
   * process. Throws `ISTHMUS_E_STORE` if the file is in use, is not an Isthmus store or is corrupt.
   */
  static open(file: string, options: SqliteKvStoreOptions = {}): SqliteKvStore {
    const abs = path.resolve(file);
    try {
      mkdirSync(path.dirname(abs), { recursive: true });
    } catch (err) {
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `store file ${abs}: cannot create its directory: ${(err as Error).message}`,
        { cause: err },
      );
    }
    let isDirectory = false;
    try {
      isDirectory = statSync(abs, { throwIfNoEntry: false })?.isDirectory() ?? false;
    } catch {
      // An unreadable path is reported by SQLite below, in its own words.
    }
    if (isDirectory)
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `store file ${abs} is a directory; give the path of a file (e.g. ${path.join(abs, 'global.db')})`,
      );
    let db: Database.Database;
    try {
      // No busy wait: the file is either ours or in use, and waiting would not change that.
      db = new Database(abs, { timeout: 0 });
    } catch (err) {
      throw openError(abs, err);
    }
    try {
      prepareFile(abs, db);
      return new SqliteKvStore(abs, db, options);
    } catch (err) {
      db.close();
      throw openError(abs, err);
    }
  }

  get<T = unknown>(key: string): Promise<KvEntry<T> | undefined> {
    return this.#run(() => {
      const row = this.#getStmt.get(key);
      return row && this.#entry<T>(row);
    });
  }

  range<T = unknown>(prefix: string): Promise<KvEntry<T>[]> {
    return this.#run(() => {
      const entries: KvEntry<T>[] = [];
      for (const row of this.#rangeStmt.iterate(prefix)) {
        if (!row.key.startsWith(prefix)) break;
        entries.push(this.#entry<T>(row));
      }
      return entries;
    });
  }

  txn(txn: KvTxn): Promise<KvTxnResult> {
    return this.#run(() => {
      const puts = encodeTxn(this.url, txn);
      const outcome = this.#applyTxn(puts, txn);
      if (!outcome.ok) return { ok: false, revision: this.#revision };
      if (outcome.events.length > 0) {
        this.#revision += 1;
        this.#publish({ revision: this.#revision, events: outcome.events });
      }
      return { ok: true, revision: this.#revision };
    });
  }

  revision(): Promise<number> {
    return this.#run(() => this.#revision);
  }

  watch(
    prefix: string,
    afterRevision: number,
    onEvents: (events: KvWatchEvent[]) => void,
    onError?: (err: Error) => void,
  ): () => void {
    const watcher: Watcher = { prefix, onEvents, onError, queue: [], scheduled: false, cancelled: false };
    const fail = (err: Error) =>
      setImmediate(() => {
        if (!watcher.cancelled) onError?.(err);
      });
    const cancel = () => {
      watcher.cancelled = true;
      this.#watchers.delete(watcher);
    };
    if (this.#closed) {
      fail(closedError(this.url));
      return cancel;
    }
    if (!(afterRevision >= this.#logFloor)) {
      fail(
        new StoreCompactedError(
          `${this.url}: cannot watch from revision ${afterRevision}: compacted — this process keeps ` +
            `only the changes after revision ${this.#logFloor} (the last ${this.#eventLogLimit} ` +
            `changes since it opened the file); read the state with range() and watch from its revision`,
          this.#logFloor,
        ),
      );
      return cancel;
    }
    // Missed changes first, then (queued by #publish) every later one: the order is the log's.
    for (const batch of this.#log) {
      if (batch.revision > afterRevision) this.#enqueue(watcher, batch);
    }
    this.#watchers.add(watcher);
    return cancel;
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const w of this.#watchers) w.cancelled = true;
      this.#watchers.clear();
      this.#db.close();
    }
    return Promise.resolve();
  }

  /** Runs a storage call, turning SQLite failures into errors that name the file. */
  #run<R>(fn: () => R): Promise<R> {
    if (this.#closed) return Promise.reject(closedError(this.url));
    try {
      return Promise.resolve(fn());
    } catch (err) {
      if (err instanceof IsthmusError) return Promise.reject(err);
      return Promise.reject(
        new IsthmusError('ISTHMUS_E_STORE', `store file ${this.#file}: ${describeSqliteError(err)}`, {
          cause: err,
        }),
      );
    }
  }

  #entry<T>(row: KvRow): KvEntry<T> {
    return {
      key: row.key,
      value: decodeValue(this.url, row.key, row.value) as T,
      createRevision: row.create_rev,
      modRevision: row.mod_rev,
    };
  }

  #publish(batch: LoggedBatch): void {
    this.#log.push(batch);
    this.#logEvents += batch.events.length;
    while (this.#logEvents > this.#eventLogLimit) {
      const dropped = this.#log.shift()!;
      this.#logEvents -= dropped.events.length;
      this.#logFloor = dropped.revision;
    }
    for (const w of this.#watchers) this.#enqueue(w, batch);
  }

  #enqueue(w: Watcher, batch: LoggedBatch): void {
    const events = batch.events.filter((e) => e.key.startsWith(w.prefix));
    if (events.length === 0) return;
    w.queue.push({ revision: batch.revision, events });
    if (w.scheduled) return;
    w.scheduled = true;
    // Delivered after the txn's caller got its result, never from inside a txn call.
    setImmediate(() => {
      w.scheduled = false;
      while (!w.cancelled) {
        const next = w.queue.shift();
        if (!next) break;
        w.onEvents(next.events.map((e) => this.#watchEvent(e)));
      }
    });
  }

  #watchEvent(e: LoggedEvent): KvWatchEvent {
    return e.type === 'put'
      ? { type: 'put', key: e.key, value: decodeValue(this.url, e.key, e.json!), modRevision: e.modRevision }
      : { type: 'delete', key: e.key, modRevision: e.modRevision };
  }
}

type TxnOutcome = { ok: false } | { ok: true; events: LoggedEvent[] };

/**
 * Checks the file and makes it a store. The order matters: the lock, then every read-only check,
 * and only then the first write (switching to WAL, creating tables), so a file that is not ours
 * is never modified.
 */
function prepareFile(file: string, db: Database.Database): void {
  db.pragma('locking_mode = EXCLUSIVE');
  // The first read: fails with SQLITE_NOTADB for a file that is not SQLite, SQLITE_BUSY if
  // another connection holds the file.
  const tables = db
    .prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .pluck()
    .all();
  if (tables.length > 0) {
    const format = tables.includes('meta')
      ? db.prepare<[], unknown>("SELECT value FROM meta WHERE name = 'format'").pluck().get()
      : undefined;
    if (format !== FORMAT || !tables.includes('kv'))
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `store file ${file} is a SQLite database but not an Isthmus store (it has tables ` +
          `${tables.join(', ')}); it was left unchanged — give the store a file of its own`,
      );
  }
  // Reads every page: corruption is reported now, with the file's name, rather than by some
  // later request. The store is small (desired state and history), so this is quick.
  const check = db.prepare<[], string>('PRAGMA quick_check').pluck().all();
  if (check.length !== 1 || check[0] !== 'ok')
    throw new IsthmusError(
      'ISTHMUS_E_STORE',
      `store file ${file} is corrupt (SQLite quick_check: ${check.slice(0, 3).join('; ')}); it was ` +
        `left unchanged — restore it from a backup or move it away to start empty`,
    );
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal')
    throw new IsthmusError(
      'ISTHMUS_E_STORE',
      `store file ${file}: cannot switch to WAL journal mode (got ${String(mode)})`,
    );
  // FULL: the WAL is fsynced at every commit; NORMAL would only protect against a process crash.
  db.pragma('synchronous = FULL');
  db.transaction(() => {
    db.exec(`
      CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        create_rev INTEGER NOT NULL,
        mod_rev INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value);
    `);
    db.prepare("INSERT INTO meta (name, value) VALUES ('format', ?) ON CONFLICT (name) DO NOTHING").run(
      FORMAT,
    );
    db.prepare("INSERT INTO meta (name, value) VALUES ('revision', 0) ON CONFLICT (name) DO NOTHING").run();
    // A write at every open: it takes the file's EXCLUSIVE lock now, not at the first txn, so a
    // second process fails at its open rather than much later.
    db.prepare(
      "INSERT INTO meta (name, value) VALUES ('opens', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1",
    ).run();
  }).immediate();
}

function readRevision(db: Database.Database): number {
  const value = db.prepare<[], unknown>("SELECT value FROM meta WHERE name = 'revision'").pluck().get();
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new IsthmusError('ISTHMUS_E_STORE', `the store's revision is not a number (${String(value)})`);
  return value;
}

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

function describeSqliteError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = sqliteCode(err);
  return code ? `${message} (${code})` : message;
}

function openError(file: string, err: unknown): IsthmusError {
  if (err instanceof IsthmusError) {
    // Checks of ours already name the file; wrap only those that do not.
    return err.message.includes(file)
      ? err
      : new IsthmusError('ISTHMUS_E_STORE', `store file ${file}: ${err.message}`, { cause: err });
  }
  const code = sqliteCode(err);
  let what: string;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
    what =
      'is in use by another process (or another store in this process): only one control plane may ' +
      'open it at a time — stop the other one, or use etcd for a store shared by several processes';
  else if (code.startsWith('SQLITE_NOTADB'))
    what =
      'is not a SQLite database; it was left unchanged — give the store a new file or move this one away';
  else if (code.startsWith('SQLITE_CORRUPT'))
    what = `is corrupt (${describeSqliteError(err)}); it was left unchanged — restore it from a backup`;
  else what = `cannot be opened: ${describeSqliteError(err)}`;
  return new IsthmusError('ISTHMUS_E_STORE', `store file ${file} ${what}`, { cause: err });
}

function closedError(url: string): IsthmusError {
  return new IsthmusError('ISTHMUS_E_STORE', `${url}: the store is closed`);
}
