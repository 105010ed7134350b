/**
 * The storage contract of the control plane: a small revisioned key-value store in the shape of
 * etcd's v3 model, so the embedded SQLite file and an etcd cluster are interchangeable behind it.
 * Everything above this interface (desired state, history, zone inventories) is written once.
 *
 * - Every successful write (`txn`) that changes a key advances the store's revision by exactly one (as in
 *   etcd, a transaction that changes nothing does not), and every key
 *   it touched gets that revision as its `modRevision`.
 * - Values are JSON-serialisable data; the store keeps them as UTF-8 JSON text.
 * - Keys are `/`-separated strings; `range(prefix)` returns keys in byte order.
 */

export interface KvEntry<T = unknown> {
  key: string;
  value: T;
  /** Store revision of the write that created the key (it survives updates, not deletes). */
  createRevision: number;
  /** Store revision of the last write to the key. */
  modRevision: number;
}

/** A condition of a transaction; `modRevision: 0` means "the key must not exist". */
export interface KvCompare {
  key: string;
  modRevision: number;
}

export interface KvTxn {
  /** All must hold, or nothing is written. */
  compare?: KvCompare[];
  put?: { key: string; value: unknown }[];
  delete?: string[];
}

export type KvTxnResult = { ok: true; revision: number } | { ok: false; revision: number };

export interface KvWatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** Absent for deletes. */
  value?: unknown;
  modRevision: number;
}

export interface KvStore {
  /** Human-readable location, e.g. `sqlite:/var/lib/isthmus/global.db` or `etcd://127.0.0.1:2379`. */
  readonly url: string;
  get<T = unknown>(key: string): Promise<KvEntry<T> | undefined>;
  /** Every key starting with `prefix`, in byte order. */
  range<T = unknown>(prefix: string): Promise<KvEntry<T>[]>;
  /** Atomic compare-and-write. A failed compare writes nothing and returns `ok: false`. */
  txn(txn: KvTxn): Promise<KvTxnResult>;
  /** The store's current revision (0 for an empty store). */
  revision(): Promise<number>;
  /**
   * Calls `onEvents` for every change under `prefix` made after `afterRevision` (by this process
   * or another one sharing the store), in revision order, batched per transaction. `onError` is
   * called if the watch cannot continue (the caller may re-watch from its last seen revision).
   */
  watch(
    prefix: string,
    afterRevision: number,
    onEvents: (events: KvWatchEvent[]) => void,
    onError?: (err: Error) => void,
  ): () => void;
  close(): Promise<void>;
}

/** Leadership among processes sharing one store. */
export interface Election {
  /** Whether this process currently leads. */
  readonly isLeader: boolean;
  /** The current leader's advertised identity (e.g. its API URL), if any. */
  leader(): Promise<string | undefined>;
  /** Called on every change of this process's leadership. */
  onChange(listener: (isLeader: boolean) => void): void;
  /** Gives up leadership (if held) and stops campaigning. */
  resign(): Promise<void>;
}
