/**
 * Leadership for a store only one process can use (SQLite), and the checks every store runs on a
 * transaction before it touches storage, so both backends accept and refuse the same requests.
 */
import { IsthmusError } from '../../core/errors.js';
import type { Election, KvTxn } from './kv.js';

/**
 * Leadership of a process that holds the store exclusively: the SQLite file lock already
 * guarantees that no other process can write, so this process leads from the start until it
 * resigns.
 */
export class SingleProcessElection implements Election {
  #isLeader = true;
  readonly #listeners: ((isLeader: boolean) => void)[] = [];

  /** @param id this process's advertised identity (e.g. its API URL). */
  constructor(readonly id: string) {}

  get isLeader(): boolean {
    return this.#isLeader;
  }

  leader(): Promise<string | undefined> {
    return Promise.resolve(this.#isLeader ? this.id : undefined);
  }

  onChange(listener: (isLeader: boolean) => void): void {
    this.#listeners.push(listener);
  }

  resign(): Promise<void> {
    if (this.#isLeader) {
      this.#isLeader = false;
      for (const listener of this.#listeners) listener(false);
    }
    return Promise.resolve();
  }
}

/** A put of a transaction with its value already encoded as JSON text. */
export interface EncodedPut {
  key: string;
  json: string;
}

/**
 * Validates a transaction and encodes its values. A key may appear only once among the puts and
 * deletes (etcd refuses such a transaction, so SQLite does too), keys must be non-empty, and
 * values must be JSON-serialisable (`undefined`, functions and cycles are refused here rather
 * than stored as something else).
 */
export function encodeTxn(storeUrl: string, txn: KvTxn): EncodedPut[] {
  const seen = new Set<string>();
  const claim = (key: string) => {
    if (typeof key !== 'string' || key === '')
      throw new IsthmusError('ISTHMUS_E_STORE', `${storeUrl}: a transaction key must be a non-empty string`);
    if (seen.has(key))
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `${storeUrl}: key ${key} is written twice in one transaction; put or delete each key once`,
      );
    seen.add(key);
  };
  for (const c of txn.compare ?? []) {
    if (typeof c.key !== 'string' || c.key === '')
      throw new IsthmusError('ISTHMUS_E_STORE', `${storeUrl}: a compare key must be a non-empty string`);
    if (!Number.isSafeInteger(c.modRevision) || c.modRevision < 0)
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `${storeUrl}: compare of ${c.key} needs a revision ≥ 0, got ${String(c.modRevision)}`,
      );
  }
  const puts: EncodedPut[] = [];
  for (const p of txn.put ?? []) {
    claim(p.key);
    let json: string | undefined;
    try {
      json = JSON.stringify(p.value);
    } catch (err) {
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `${storeUrl}: the value of ${p.key} is not JSON-serialisable: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (json === undefined)
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `${storeUrl}: the value of ${p.key} is not JSON-serialisable (got ${typeof p.value})`,
      );
    puts.push({ key: p.key, json });
  }
  for (const key of txn.delete ?? []) claim(key);
  return puts;
}

/**
 * A watch asked for changes the store no longer has (etcd compacted them, or they are older than
 * the SQLite store's in-memory event log). Read the current state with `range` and watch again
 * from its revision.
 */
export class StoreCompactedError extends IsthmusError {
  /** The oldest revision a new watch may start after. */
  readonly compactRevision: number;

  constructor(message: string, compactRevision: number) {
    super('ISTHMUS_E_STORE', message);
    this.compactRevision = compactRevision;
  }
}

/** Parses a stored value; a value that is not JSON (written by something else) is an error naming the key. */
export function decodeValue(storeUrl: string, key: string, json: string): unknown {
  try {
    return JSON.parse(json) as unknown;
  } catch (err) {
    throw new IsthmusError(
      'ISTHMUS_E_STORE',
      `${storeUrl}: the value of ${key} is not JSON (was it written by another program?)`,
      { cause: err },
    );
  }
}
