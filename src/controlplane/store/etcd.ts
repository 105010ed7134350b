/**
 * The shared store: an etcd v3 cluster, spoken to through its JSON gRPC gateway (`/v3/...` over
 * HTTP), so no gRPC stack is needed. Keys and values travel as base64; int64s arrive as strings.
 *
 * Every key is stored under a namespace prefix (default `/isthmus/`), added on write and removed
 * on read, so one cluster can hold several meshes or other users' data.
 */
import { Agent, request } from 'undici';
import { StringDecoder } from 'node:string_decoder';
import { systemClock, type Clock } from '../../core/clock.js';
import { IsthmusError } from '../../core/errors.js';
import { decodeValue, encodeTxn, StoreCompactedError } from './election.js';
import type { Election, KvEntry, KvStore, KvTxn, KvTxnResult, KvWatchEvent } from './kv.js';
import { sleep } from '../../core/sleep.js';

/** Options of an {@link EtcdKvStore}. */
export interface EtcdKvStoreOptions {
  /** Client URLs such as `http://10.0.0.1:2379`; tried in order, the next on connection failure. */
  endpoints: readonly string[];
  /** Namespace prepended to every key, default `/isthmus/`. */
  prefix?: string;
  /** Time to establish a connection to one endpoint, in milliseconds (default 2,000). */
  connectTimeoutMs?: number;
  /** Time to wait for an answer to a request, in milliseconds (default 10,000). */
  requestTimeoutMs?: number;
}

/** The namespace used when none is given. */
export const DEFAULT_ETCD_PREFIX = '/isthmus/';

/**
 * A watch stream that has been silent this long is considered dead and reopened from the last
 * seen revision. Watches ask for etcd's progress notifications, which etcd sends every 10
 * minutes by default, so a healthy idle stream is never this quiet.
 */
const WATCH_IDLE_TIMEOUT_MS = 15 * 60_000;

/** Errors that happen before a request can have reached etcd: trying the next endpoint is safe. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** gRPC UNAVAILABLE: the member cannot serve now (no leader, stopping); reads may try another. */
const GRPC_UNAVAILABLE = 14;

interface EtcdHeader {
  revision?: string;
}

interface EtcdKv {
  key: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

interface RangeResponse {
  header?: EtcdHeader;
  kvs?: EtcdKv[];
}

interface TxnResponse {
  header?: EtcdHeader;
  succeeded?: boolean;
  responses?: { response_range?: RangeResponse }[];
}

interface WatchResult {
  header?: EtcdHeader;
  created?: boolean;
  canceled?: boolean;
  cancel_reason?: string;
  compact_revision?: string;
  events?: { type?: 'PUT' | 'DELETE'; kv: EtcdKv }[];
}

interface GatewayError {
  error?: unknown;
  message?: unknown;
  code?: unknown;
}

/** Whether a call may be repeated on another endpoint after it was (perhaps) sent. */
type CallKind = 'idempotent' | 'write';

/** The key under a lease, as reported by {@link EtcdKvStore.createWithLease}. */
export interface LeasedKey {
  value: unknown;
  /** Lease ID (an int64, kept as a decimal string), `'0'` if the key has no lease. */
  lease: string;
  modRevision: number;
}

/** A lease granted by etcd. */
export interface EtcdLease {
  /** Lease ID (an int64, kept as a decimal string: it may exceed 2^53). */
  id: string;
  /** Time-to-live the server granted, in milliseconds (it may raise a short one). */
  ttlMs: number;
}

export class EtcdKvStore implements KvStore {
  readonly url: string;
  /** Namespace prepended to every key. */
  readonly prefix: string;
  readonly endpoints: readonly string[];
  readonly #agent: Agent;
  readonly #requestTimeoutMs: number;
  /** Index of the endpoint that answered last; requests start there. */
  #current = 0;
  readonly #watches = new Set<{ abort: AbortController; done: Promise<void> }>();
  #closed = false;

  constructor(options: EtcdKvStoreOptions) {
    if (options.endpoints.length === 0)
      throw new IsthmusError('ISTHMUS_E_USAGE', 'etcd store: give at least one endpoint');
    this.endpoints = options.endpoints.map((e) => e.replace(/\/+$/, ''));
    this.prefix = options.prefix ?? DEFAULT_ETCD_PREFIX;
    this.url = `etcd://${this.endpoints.map((e) => e.replace(/^http:\/\//, '')).join(',')}`;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#agent = new Agent({ connect: { timeout: options.connectTimeoutMs ?? 2_000 } });
  }

  async get<T = unknown>(key: string): Promise<KvEntry<T> | undefined> {
    const r = await this.#call<RangeResponse>('/v3/kv/range', { key: b64(this.prefix + key) }, 'idempotent');
    const kv = r.kvs?.[0];
    return kv && this.#entry<T>(kv);
  }

  async range<T = unknown>(prefix: string): Promise<KvEntry<T>[]> {
    const full = Buffer.from(this.prefix + prefix, 'utf8');
    // etcd returns a range in ascending byte order of the keys, which is the contract's order.
    const r = await this.#call<RangeResponse>(
      '/v3/kv/range',
      { key: full.toString('base64'), range_end: prefixEnd(full).toString('base64') },
      'idempotent',
    );
    return (r.kvs ?? []).map((kv) => this.#entry<T>(kv));
  }

  async txn(txn: KvTxn): Promise<KvTxnResult> {
    const puts = encodeTxn(this.url, txn);
    const body = {
      // MOD == 0 holds exactly for absent keys: etcd compares an absent key as revision 0, and a
      // present key's mod_revision is at least 1.
      compare: (txn.compare ?? []).map((c) => ({
        key: b64(this.prefix + c.key),
        target: 'MOD',
        result: 'EQUAL',
        mod_revision: String(c.modRevision),
      })),
      success: [
        ...puts.map((p) => ({ request_put: { key: b64(this.prefix + p.key), value: b64(p.json) } })),
        ...(txn.delete ?? []).map((key) => ({ request_delete_range: { key: b64(this.prefix + key) } })),
      ],
    };
    const r = await this.#call<TxnResponse>('/v3/kv/txn', body, 'write');
    return { ok: r.succeeded === true, revision: int(r.header?.revision) };
  }

  async revision(): Promise<number> {
    // A range of one (absent) key is the cheapest request that reports the current revision.
    const r = await this.#call<RangeResponse>(
      '/v3/kv/range',
      { key: b64(this.prefix), keys_only: true, limit: '1' },
      'idempotent',
    );
    return int(r.header?.revision);
  }

  /**
   * Follows `prefix` through etcd's streaming `/v3/watch`. A broken stream is reopened (on the
   * next endpoint, with backoff, for as long as it takes) from the last delivered revision, so no
   * change is lost or repeated. `onError` is called, and the watch ends, only when it cannot
   * continue: etcd compacted the requested revisions ({@link StoreCompactedError}) or cancelled
   * the watch.
   */
  watch(
    prefix: string,
    afterRevision: number,
    onEvents: (events: KvWatchEvent[]) => void,
    onError?: (err: Error) => void,
  ): () => void {
    const abort = new AbortController();
    if (this.#closed) {
      setImmediate(() => onError?.(closedError(this.url)));
      return () => abort.abort();
    }
    const entry = {
      abort,
      done: this.#watchLoop(prefix, afterRevision, onEvents, onError ?? (() => {}), abort.signal),
    };
    this.#watches.add(entry);
    void entry.done.finally(() => this.#watches.delete(entry));
    return () => abort.abort();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const watches = [...this.#watches];
    for (const w of watches) w.abort.abort();
    await Promise.all(watches.map((w) => w.done));
    await this.#agent.close();
  }

  /** Grants a lease of at least `ttlMs` (etcd counts whole seconds and has a minimum of its own). */
  async grantLease(ttlMs: number): Promise<EtcdLease> {
    const r = await this.#call<{ ID?: string; TTL?: string }>(
      '/v3/lease/grant',
      { TTL: String(Math.max(1, Math.ceil(ttlMs / 1000))) },
      // A repeated grant only leaves an unused lease behind, which expires on its own.
      'idempotent',
    );
    if (!r.ID) throw new IsthmusError('ISTHMUS_E_STORE', `${this.url}: lease grant returned no lease ID`);
    return { id: r.ID, ttlMs: int(r.TTL) * 1000 };
  }

  /**
   * Renews a lease once; returns its fresh time-to-live in milliseconds, or 0 if etcd no longer
   * has the lease (it expired or was revoked).
   */
  async keepAliveLease(id: string, timeoutMs?: number): Promise<number> {
    const r = await this.#call<{ result?: { TTL?: string } }>(
      '/v3/lease/keepalive',
      { ID: id },
      'idempotent',
      timeoutMs,
    );
    return int(r.result?.TTL) * 1000;
  }

  /** Revokes a lease, deleting the keys attached to it; a lease that is already gone is fine. */
  async revokeLease(id: string, timeoutMs?: number): Promise<void> {
    try {
      await this.#call('/v3/lease/revoke', { ID: id }, 'idempotent', timeoutMs);
    } catch (err) {
      if (err instanceof IsthmusError && /lease not found/.test(err.message)) return;
      throw err;
    }
  }

  /**
   * Creates `key` with `value` attached to a lease if the key does not exist. Returns whether it
   * did, the store revision, and otherwise who holds the key now.
   */
  async createWithLease(
    key: string,
    value: unknown,
    lease: string,
  ): Promise<{ created: boolean; revision: number; current?: LeasedKey }> {
    const k = b64(this.prefix + key);
    const r = await this.#call<TxnResponse>(
      '/v3/kv/txn',
      {
        compare: [{ key: k, target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
        success: [{ request_put: { key: k, value: b64(JSON.stringify(value)), lease } }],
        failure: [{ request_range: { key: k } }],
      },
      'write',
    );
    const revision = int(r.header?.revision);
    if (r.succeeded === true) return { created: true, revision };
    const kv = r.responses?.[0]?.response_range?.kvs?.[0];
    if (!kv) return { created: false, revision };
    const entry = this.#entry(kv);
    return {
      created: false,
      revision,
      current: { value: entry.value, lease: kv.lease ?? '0', modRevision: entry.modRevision },
    };
  }

  #entry<T>(kv: EtcdKv): KvEntry<T> {
    const key = this.#stripPrefix(kv.key);
    return {
      key,
      value: decodeValue(this.url, key, unb64(kv.value ?? '')) as T,
      createRevision: int(kv.create_revision),
      modRevision: int(kv.mod_revision),
    };
  }

  #stripPrefix(b64key: string): string {
    const full = unb64(b64key);
    return full.startsWith(this.prefix) ? full.slice(this.prefix.length) : full;
  }

  /**
   * POSTs one request, trying each endpoint in turn from the one that answered last. A request
   * moves on to the next endpoint only when it cannot have been applied: the connection failed,
   * or (for idempotent calls) anything went wrong on the way. A write that failed after it was
   * sent is reported as of unknown outcome rather than repeated.
   */
  async #call<R>(path: string, body: unknown, kind: CallKind, timeoutMs?: number): Promise<R> {
    if (this.#closed) throw closedError(this.url);
    const failures: string[] = [];
    const n = this.endpoints.length;
    for (let i = 0; i < n; i++) {
      const index = (this.#current + i) % n;
      const endpoint = this.endpoints[index]!;
      let status: number;
      let text: string;
      try {
        const res = await request(`${endpoint}${path}`, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
          dispatcher: this.#agent,
          headersTimeout: timeoutMs ?? this.#requestTimeoutMs,
          bodyTimeout: timeoutMs ?? this.#requestTimeoutMs,
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        const code = errorCode(err);
        if (kind === 'write' && !NOT_SENT_CODES.has(code))
          throw new IsthmusError(
            'ISTHMUS_E_STORE',
            `etcd at ${endpoint}: the request failed after it was sent, so it may or may not have ` +
              `been applied: ${describe(err)}`,
            { cause: err },
          );
        failures.push(`${endpoint}: ${describe(err)}`);
        continue;
      }
      // Streaming endpoints (lease keepalive) answer newline-delimited JSON: the first line is ours.
      let parsed: unknown;
      try {
        parsed = JSON.parse(text.split('\n', 1)[0] ?? '');
      } catch {
        throw new IsthmusError(
          'ISTHMUS_E_STORE',
          `etcd at ${endpoint}: HTTP ${status} with a body that is not JSON (${text.slice(0, 120).trim()}); ` +
            `is this the client URL of an etcd v3.4 or later?`,
        );
      }
      const error = gatewayError(parsed);
      if (status !== 200 || error) {
        if (kind === 'idempotent' && error?.code === GRPC_UNAVAILABLE && i < n - 1) {
          failures.push(`${endpoint}: ${error.message}`);
          continue;
        }
        throw new IsthmusError(
          'ISTHMUS_E_STORE',
          `etcd at ${endpoint}: ${error?.message ?? `HTTP ${status}: ${text.slice(0, 200)}`}`,
        );
      }
      this.#current = index;
      return parsed as R;
    }
    throw new IsthmusError(
      'ISTHMUS_E_STORE',
      `cannot reach etcd at ${this.endpoints.join(', ')} (${failures.join('; ')}); check the store ` +
        `URL and that etcd is running`,
    );
  }

  async #watchLoop(
    prefix: string,
    afterRevision: number,
    onEvents: (events: KvWatchEvent[]) => void,
    onError: (err: Error) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const full = Buffer.from(this.prefix + prefix, 'utf8');
    // A callback's own exception is not a stream failure: it is rethrown as an uncaught exception
    // (as an event emitter would) and ends the watch, instead of feeding a silent reconnect loop.
    const deliver = (fn: () => void): boolean => {
      try {
        fn();
        return true;
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
        return false;
      }
    };
    let last = afterRevision;
    let failures = 0;
    let endpointIndex = this.#current;
    while (!signal.aborted) {
      const endpoint = this.endpoints[endpointIndex % this.endpoints.length]!;
      try {
        const res = await request(`${endpoint}/v3/watch`, {
          method: 'POST',
          body: JSON.stringify({
            create_request: {
              key: full.toString('base64'),
              range_end: prefixEnd(full).toString('base64'),
              start_revision: String(last + 1),
              progress_notify: true,
            },
          }),
          headers: { 'content-type': 'application/json' },
          dispatcher: this.#agent,
          signal,
          headersTimeout: this.#requestTimeoutMs,
          bodyTimeout: WATCH_IDLE_TIMEOUT_MS,
        });
        if (res.statusCode !== 200) {
          const text = await res.body.text();
          throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
        }
        const decoder = new StringDecoder('utf8');
        let pending = '';
        for await (const chunk of res.body) {
          pending += decoder.write(chunk as Buffer);
          let nl: number;
          while ((nl = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, nl).trim();
            pending = pending.slice(nl + 1);
            if (line === '') continue;
            const message = JSON.parse(line) as { result?: WatchResult } & GatewayError;
            const error = gatewayError(message);
            if (error) throw new Error(error.message);
            const result = message.result ?? {};
            if (result.created) failures = 0;
            const compacted = int(result.compact_revision);
            if (compacted > 0) {
              deliver(() =>
                onError(
                  new StoreCompactedError(
                    `etcd at ${endpoint}: cannot watch ${prefix} from revision ${last + 1}: compacted ` +
                      `(the oldest revision kept is ${compacted}); read the state with range() and ` +
                      `watch from its revision`,
                    compacted - 1,
                  ),
                ),
              );
              return;
            }
            if (result.canceled) {
              const reason = result.cancel_reason ?? 'no reason given';
              deliver(() =>
                onError(
                  new IsthmusError(
                    'ISTHMUS_E_STORE',
                    `etcd at ${endpoint}: the watch of ${prefix} was cancelled: ${reason}`,
                  ),
                ),
              );
              return;
            }
            if (result.events && result.events.length > 0) {
              let batches: KvWatchEvent[][];
              try {
                batches = this.#batches(result.events, last);
              } catch (err) {
                // A value that is not JSON: reopening would meet it again, so the watch ends.
                deliver(() => onError(err as Error));
                return;
              }
              for (const batch of batches) {
                last = batch[0]!.modRevision;
                if (signal.aborted || !deliver(() => onEvents(batch))) return;
              }
            } else if (!result.created && result.header?.revision) {
              // A progress notification: everything up to this revision has been sent.
              last = Math.max(last, int(result.header.revision));
            }
          }
        }
        throw new Error('the stream ended');
      } catch {
        // Any stream failure is handled alike: reopen, on the next endpoint, from the last
        // delivered revision.
        if (signal.aborted) return;
        failures++;
        endpointIndex++;
        await sleep(Math.min(2_000, 50 * 2 ** Math.min(failures, 6)), signal);
      }
    }
  }

  /** Groups etcd events into one batch per revision (one per transaction), skipping any ≤ `after`. */
  #batches(events: NonNullable<WatchResult['events']>, after: number): KvWatchEvent[][] {
    const batches: KvWatchEvent[][] = [];
    for (const e of events) {
      const modRevision = int(e.kv.mod_revision);
      if (modRevision <= after) continue;
      const key = this.#stripPrefix(e.kv.key);
      const event: KvWatchEvent =
        e.type === 'DELETE'
          ? { type: 'delete', key, modRevision }
          : { type: 'put', key, value: decodeValue(this.url, key, unb64(e.kv.value ?? '')), modRevision };
      const current = batches.at(-1);
      if (current && current[0]!.modRevision === modRevision) current.push(event);
      else batches.push([event]);
    }
    return batches;
  }
}

/** Options of {@link EtcdElection.campaign}. */
export interface EtcdElectionOptions {
  /** Election name; the key is `election/NAME` under the store's namespace. */
  name: string;
  /** This process's advertised identity (e.g. its API URL), stored as the key's value. */
  id: string;
  /** Lease time-to-live in milliseconds; etcd counts whole seconds and grants at least about 2 s. */
  ttlMs: number;
  /** Time source for lease bookkeeping (default: the system clock). */
  clock?: Clock;
  /** Called with errors met while campaigning (the campaign goes on; leadership follows the lease). */
  onError?: (err: Error) => void;
}

/**
 * Leader election on etcd: the leader is the process whose lease holds the key `election/NAME`.
 *
 * Each campaigner holds a lease, renewed every TTL/3, and tries to create the key under it (a txn
 * that succeeds only if the key does not exist). The others watch the key and retry when it is
 * deleted — when the leader resigns (revoking its lease) or its lease expires because it died —
 * and also every TTL/2 in case a watch event is missed.
 *
 * Safety: etcd expires a lease no earlier than TTL after it received the last renewal, which is
 * after this process sent it. So a leader that could not confirm its lease for TTL minus a margin
 * (a fifth of the TTL, at least 250 ms, for timer delay and clock-rate drift) steps down before
 * any other process can have been elected.
 */
export class EtcdElection implements Election {
  readonly #store: EtcdKvStore;
  readonly #ownsStore: boolean;
  readonly #key: string;
  readonly #id: string;
  readonly #ttlMs: number;
  readonly #clock: Clock;
  readonly #onError: (err: Error) => void;
  readonly #listeners: ((isLeader: boolean) => void)[] = [];
  #isLeader = false;
  #stopped = false;
  /** The lease we campaign with; `confirmedAt` is when the last confirmed renewal was sent. */
  #lease: { id: string; ttlMs: number; confirmedAt: number } | undefined;
  /** Leases given up while etcd was unreachable: revoked as soon as it answers again. */
  readonly #staleLeases = new Set<string>();
  #keepAliveInFlight = false;
  #tickRunning: Promise<void> | undefined;
  #tickAgain = false;
  readonly #timers: NodeJS.Timeout[] = [];
  #cancelWatch: (() => void) | undefined;

  private constructor(store: EtcdKvStore, ownsStore: boolean, options: EtcdElectionOptions) {
    if (!(options.ttlMs > 0)) throw new IsthmusError('ISTHMUS_E_USAGE', `election ttlMs must be > 0`);
    this.#store = store;
    this.#ownsStore = ownsStore;
    this.#key = `election/${options.name}`;
    this.#id = options.id;
    this.#ttlMs = options.ttlMs;
    this.#clock = options.clock ?? systemClock;
    this.#onError = options.onError ?? (() => {});
  }

  /**
   * Joins the election and makes a first attempt to lead; resolves once this process knows
   * whether it leads. `store` may be an {@link EtcdKvStore} (shared, not closed by `resign`) or
   * the client URLs of the cluster (a store of its own is opened, with the default namespace).
   */
  static async campaign(
    store: KvStore | readonly string[],
    options: EtcdElectionOptions,
  ): Promise<EtcdElection> {
    let s: EtcdKvStore;
    if (store instanceof EtcdKvStore) s = store;
    else if (Array.isArray(store)) s = new EtcdKvStore({ endpoints: store as readonly string[] });
    else
      throw new IsthmusError(
        'ISTHMUS_E_USAGE',
        `an etcd election needs an etcd store, not ${(store as KvStore).url}; a SQLite store uses SingleProcessElection`,
      );
    const election = new EtcdElection(s, s !== store, options);
    try {
      await election.#start();
    } catch (err) {
      await election.resign().catch(() => {});
      throw err;
    }
    return election;
  }

  get isLeader(): boolean {
    return this.#isLeader;
  }

  async leader(): Promise<string | undefined> {
    const entry = await this.#store.get(this.#key);
    return typeof entry?.value === 'string' ? entry.value : undefined;
  }

  onChange(listener: (isLeader: boolean) => void): void {
    this.#listeners.push(listener);
  }

  async resign(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#cancelWatch?.();
    await this.#tickRunning?.catch(() => {});
    const lease = this.#lease;
    this.#lease = undefined;
    // Step down first: from here on this process must not act as leader, whatever etcd says.
    this.#setLeader(false);
    try {
      // Revoking deletes the key at once, so a successor need not wait for the TTL.
      if (lease) await this.#store.revokeLease(lease.id, this.#ttlMs);
    } finally {
      if (this.#ownsStore) await this.#store.close();
    }
  }

  async #start(): Promise<void> {
    const from = await this.#store.revision();
    this.#watchKey(from);
    await this.#tick();
    if (this.#lease === undefined) throw new IsthmusError('ISTHMUS_E_STORE', `${this.#store.url}: no lease`);
    const ttl = this.#lease.ttlMs;
    this.#timers.push(
      setInterval(() => void this.#keepAlive(), ttl / 3),
      setInterval(() => this.#scheduleTick(), ttl / 2),
      setInterval(() => this.#checkLease(), Math.min(100, ttl / 20)),
    );
  }

  #watchKey(from: number): void {
    this.#cancelWatch = this.#store.watch(
      this.#key,
      from,
      (events) => {
        // The prefix also matches longer names: react to this election's key only.
        if (events.some((e) => e.key === this.#key && e.type === 'delete')) this.#scheduleTick();
      },
      (err) => {
        // Compacted or cancelled: polling covers the gap; watch again from now.
        this.#onError(err);
        if (this.#stopped) return;
        void this.#store.revision().then(
          (rev) => {
            if (!this.#stopped) this.#watchKey(rev);
          },
          (e: unknown) => this.#onError(e as Error),
        );
      },
    );
  }

  /** Runs a campaign step now, or right after the one in progress. */
  #scheduleTick(): void {
    if (this.#stopped) return;
    if (this.#tickRunning) {
      this.#tickAgain = true;
      return;
    }
    void this.#tick().catch((err: unknown) => this.#onError(err as Error));
  }

  async #tick(): Promise<void> {
    const run = async () => {
      do {
        this.#tickAgain = false;
        await this.#campaignOnce();
      } while (this.#tickAgain && !this.#stopped);
    };
    this.#tickRunning = run();
    try {
      await this.#tickRunning;
    } finally {
      this.#tickRunning = undefined;
    }
  }

  /** One attempt: make sure we hold a live lease, then try to create the key under it. */
  async #campaignOnce(): Promise<void> {
    if (this.#stopped) return;
    for (const id of this.#staleLeases) {
      await this.#store.revokeLease(id, this.#ttlMs / 3).then(
        () => this.#staleLeases.delete(id),
        () => {},
      );
    }
    if (!this.#lease) {
      const sentAt = this.#clock.monotonicMs();
      const granted = await this.#store.grantLease(this.#ttlMs);
      if (this.#stopped) {
        await this.#store.revokeLease(granted.id).catch(() => {});
        return;
      }
      this.#lease = { id: granted.id, ttlMs: granted.ttlMs, confirmedAt: sentAt };
    }
    const lease = this.#lease;
    const r = await this.#store.createWithLease(this.#key, this.#id, lease.id);
    // The lease may have been given up while we waited; then this answer is stale.
    if (this.#stopped || this.#lease !== lease || !this.#leaseLive(lease)) return;
    this.#setLeader(r.created || r.current?.lease === lease.id);
  }

  async #keepAlive(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#keepAliveInFlight || this.#stopped) return;
    this.#keepAliveInFlight = true;
    const sentAt = this.#clock.monotonicMs();
    try {
      const ttlMs = await this.#store.keepAliveLease(lease.id, this.#ttlMs / 3);
      if (this.#lease !== lease) return;
      if (ttlMs <= 0) {
        this.#dropLease(new IsthmusError('ISTHMUS_E_STORE', `${this.#store.url}: the lease expired`));
        return;
      }
      lease.confirmedAt = Math.max(lease.confirmedAt, sentAt);
      lease.ttlMs = ttlMs;
    } catch (err) {
      // The deadline check (#checkLease) decides when failures have lasted too long.
      this.#onError(err as Error);
    } finally {
      this.#keepAliveInFlight = false;
    }
  }

  #leaseLive(lease: { ttlMs: number; confirmedAt: number }): boolean {
    const margin = Math.max(250, lease.ttlMs / 5);
    return this.#clock.monotonicMs() < lease.confirmedAt + lease.ttlMs - margin;
  }

  #checkLease(): void {
    const lease = this.#lease;
    if (lease && !this.#leaseLive(lease))
      this.#dropLease(
        new IsthmusError(
          'ISTHMUS_E_STORE',
          `${this.#store.url}: could not renew the election lease for ${Math.round(this.#clock.monotonicMs() - lease.confirmedAt)} ms; stepping down`,
        ),
      );
  }

  /** Gives up the current lease (it may still exist on the server) and campaigns afresh. */
  #dropLease(reason: Error): void {
    const lease = this.#lease;
    if (!lease) return;
    this.#lease = undefined;
    this.#setLeader(false);
    this.#onError(reason);
    this.#staleLeases.add(lease.id);
    this.#scheduleTick();
  }

  #setLeader(isLeader: boolean): void {
    if (this.#isLeader === isLeader) return;
    this.#isLeader = isLeader;
    for (const listener of this.#listeners) listener(isLeader);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

function unb64(s: string): string {
  return Buffer.from(s, 'base64').toString('utf8');
}

/** etcd's range end for "every key starting with `prefix`": the prefix with its last byte + 1. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff (or empty): etcd reads "\0" as "to the end of the key space".
  return Buffer.from([0]);
}

/** An int64 from etcd's JSON (a string, or absent for 0). */
function int(value: string | undefined): number {
  return value === undefined ? 0 : Number(value);
}

function gatewayError(body: unknown): { message: string; code: number | undefined } | undefined {
  if (typeof body !== 'object' || body === null || !('error' in body)) return undefined;
  const e = body as Record<string, unknown>;
  // Unary calls answer {error, message, code}; streams wrap it: {error: {message, grpc_code, ...}}.
  const inner = typeof e.error === 'object' && e.error !== null ? (e.error as Record<string, unknown>) : e;
  const message = [inner.message, inner.error].find((m): m is string => typeof m === 'string');
  const code = inner.code ?? inner.grpc_code;
  return { message: message ?? JSON.stringify(body), code: typeof code === 'number' ? code : undefined };
}

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === 'string' ? code : '';
}

function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = errorCode(err);
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

function closedError(url: string): IsthmusError {
  return new IsthmusError('ISTHMUS_E_STORE', `${url}: the store is closed`);
}
