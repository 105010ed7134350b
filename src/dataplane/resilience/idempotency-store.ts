import { createHash } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { IsthmusError } from '../../core/errors.js';
import { parseDurationMs, parseSizeBytes } from '../../core/units.js';
import type { EffectiveTraffic } from '../../model/settings.js';
import { headerBytes, storableHeaders, type HeaderMap } from './http-headers.js';

/** The request header that marks a write as safe to retry. */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';

/** Longest `Idempotency-Key` accepted, in characters (UUIDs and ULIDs fit many times over). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** A response remembered for replay. */
export interface RememberedResponse {
  readonly status: number;
  /** Response headers, lowercase names, hop-by-hop headers removed. */
  readonly headers: HeaderMap;
  /** The body; undefined when `truncated`. */
  readonly body: Buffer | undefined;
  /** Larger than `maxEntryBytes`: only status and headers were kept, so a replay answers 409. */
  readonly truncated: boolean;
}

/**
 * What to do with a request carrying an `Idempotency-Key`:
 * `new` — forward it, then call `complete` (or `abandon` if the upstream failed);
 * `in-progress` — the first request with this key is still running: answer 409 Conflict;
 * `replay` — answer the remembered response (409 if it is `truncated`);
 * `mismatch` — the key was used with a different request body: answer 422.
 */
export type BeginResult =
  | { readonly state: 'new' }
  | { readonly state: 'in-progress' }
  | { readonly state: 'replay'; readonly response: RememberedResponse }
  | { readonly state: 'mismatch' };

/** Options of an {@link IdempotencyStore}. */
export interface IdempotencyStoreOptions {
  /** How long a response (or a request in flight) is remembered, in milliseconds. */
  readonly windowMs: number;
  /** Keys remembered at most (≥ 1); the oldest is forgotten first. */
  readonly maxEntries: number;
  /** Largest response remembered whole, in bytes (body + headers); larger ones keep status and headers. */
  readonly maxEntryBytes: number;
  readonly clock: Clock;
}

/** Counters of an {@link IdempotencyStore}; `entries` and `inProgress` are gauges. */
export interface IdempotencyStoreStats {
  readonly entries: number;
  readonly inProgress: number;
  readonly replays: number;
  readonly conflicts: number;
  readonly mismatches: number;
  /** Keys forgotten early to stay within `maxEntries`. */
  readonly evicted: number;
  /** Of those, keys whose request was still in flight (a duplicate of it could then run twice). */
  readonly evictedInProgress: number;
}

interface Entry {
  readonly fingerprint: string;
  readonly expiresAtMs: number;
  readonly response: RememberedResponse | undefined;
}

/** The scope a key lives in: a key reused for another method or path is a different key. */
export function idempotencyScope(method: string, path: string): string {
  return `${method} ${path}`;
}

/** The fingerprint of a request body: its SHA-256, hex. */
export function bodyFingerprint(body: Uint8Array | string): string {
  return createHash('sha256').update(body).digest('hex');
}

/**
 * The `Idempotency-Key` of a request, or undefined without one. Throws `ISTHMUS_E_BAD_HEADER`
 * (answer 400) for repeated, empty, overlong or non-printable keys.
 */
export function parseIdempotencyKey(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    if (value.length !== 1) throw badKey('it appears more than once; send it once');
    return parseIdempotencyKey(value[0]);
  }
  // Keys are opaque, often quoted (the IETF draft makes them an sf-string); quotes are kept.
  const key = value.trim();
  if (key.length === 0) throw badKey('it is empty');
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw badKey(`it has ${key.length} characters; use at most ${MAX_IDEMPOTENCY_KEY_LENGTH} (e.g. a UUID)`);
  }
  if (!/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(key)) {
    throw badKey('it has characters outside printable ASCII');
  }
  return key;
}

function badKey(why: string): IsthmusError {
  return new IsthmusError('ISTHMUS_E_BAD_HEADER', `invalid Idempotency-Key header: ${why}`);
}

/**
 * Remembers responses by `Idempotency-Key` at a destination's inbound proxy, so that a write
 * retried (possibly from another region) is applied once. A key is remembered from `begin` for
 * `windowMs` and, once completed, for `windowMs` from `complete`; a request still in flight
 * after `windowMs` is forgotten like any other entry.
 *
 * Entries live in a Map in the order they last changed; since the window is the same for all,
 * that is also the order they expire in, so expiry sweeps from the front in O(1) amortized and
 * eviction past `maxEntries` drops the oldest. Memory is bounded by maxEntries × maxEntryBytes
 * (plus headers of truncated entries).
 */
export class IdempotencyStore {
  readonly windowMs: number;
  readonly maxEntries: number;
  readonly maxEntryBytes: number;
  readonly #clock: Clock;
  readonly #entries = new Map<string, Entry>();
  #inProgress = 0;
  #replays = 0;
  #conflicts = 0;
  #mismatches = 0;
  #evicted = 0;
  #evictedInProgress = 0;

  constructor(options: IdempotencyStoreOptions) {
    const { windowMs, maxEntries, maxEntryBytes, clock } = options;
    if (!(windowMs > 0)) throw new RangeError(`idempotency windowMs must be > 0, got ${windowMs}`);
    if (!(Number.isInteger(maxEntries) && maxEntries >= 1)) {
      throw new RangeError(`idempotency maxEntries must be an integer ≥ 1, got ${maxEntries}`);
    }
    if (!(maxEntryBytes >= 0))
      throw new RangeError(`idempotency maxEntryBytes must be ≥ 0, got ${maxEntryBytes}`);
    this.windowMs = windowMs;
    this.maxEntries = maxEntries;
    this.maxEntryBytes = maxEntryBytes;
    this.#clock = clock;
  }

  /** A store from the `idempotency` settings of a TrafficPolicy (`enabled` is the caller's to check). */
  static fromSettings(settings: EffectiveTraffic['idempotency'], clock: Clock): IdempotencyStore {
    return new IdempotencyStore({
      windowMs: parseDurationMs(settings.window),
      maxEntries: settings.maxEntries,
      maxEntryBytes: parseSizeBytes(settings.maxEntryBytes),
      clock,
    });
  }

  get size(): number {
    this.#sweep();
    return this.#entries.size;
  }

  stats(): IdempotencyStoreStats {
    this.#sweep();
    return {
      entries: this.#entries.size,
      inProgress: this.#inProgress,
      replays: this.#replays,
      conflicts: this.#conflicts,
      mismatches: this.#mismatches,
      evicted: this.#evicted,
      evictedInProgress: this.#evictedInProgress,
    };
  }

  /**
   * Looks the key up and, when it is new, marks it in progress. Never waits: a concurrent
   * duplicate gets `in-progress` at once. A different body fingerprint is a `mismatch` whatever
   * the state of the first request.
   */
  begin(scope: string, key: string, fingerprint: string): BeginResult {
    this.#sweep();
    const id = entryId(scope, key);
    const entry = this.#entries.get(id);
    if (entry) {
      if (entry.fingerprint !== fingerprint) {
        this.#mismatches++;
        return { state: 'mismatch' };
      }
      if (entry.response === undefined) {
        this.#conflicts++;
        return { state: 'in-progress' };
      }
      this.#replays++;
      return { state: 'replay', response: entry.response };
    }
    this.#insert(id, { fingerprint, expiresAtMs: this.#expiry(), response: undefined });
    return { state: 'new' };
  }

  /**
   * Remembers the response of the request `begin` answered `new` for. A response larger than
   * `maxEntryBytes` keeps status and headers only (`truncated`). Ignored (returns false) when the
   * key now belongs to a request with another fingerprint or is already completed; a key
   * forgotten while its request was in flight is remembered again.
   */
  complete(
    scope: string,
    key: string,
    fingerprint: string,
    /** `body` undefined: the response was too long to keep (remembered as `truncated`). */
    response: { status: number; headers: HeaderMap; body: Buffer | undefined },
  ): boolean {
    this.#sweep();
    const id = entryId(scope, key);
    const entry = this.#entries.get(id);
    if (entry && (entry.fingerprint !== fingerprint || entry.response !== undefined)) return false;
    const headers = storableHeaders(response.headers);
    const body = response.body;
    const truncated = body === undefined || body.length + headerBytes(headers) > this.maxEntryBytes;
    const remembered: RememberedResponse = Object.freeze({
      status: response.status,
      headers,
      body: truncated ? undefined : body,
      truncated,
    });
    if (entry) this.#remove(id, entry);
    this.#insert(id, { fingerprint, expiresAtMs: this.#expiry(), response: remembered });
    return true;
  }

  /**
   * Forgets an in-progress key whose request failed before it could have had an effect (e.g. the
   * upstream was unreachable), so a retry with the same key runs again. Returns whether it did.
   */
  abandon(scope: string, key: string, fingerprint: string): boolean {
    const id = entryId(scope, key);
    const entry = this.#entries.get(id);
    if (!entry || entry.response !== undefined || entry.fingerprint !== fingerprint) return false;
    this.#remove(id, entry);
    return true;
  }

  #expiry(): number {
    return this.#clock.monotonicMs() + this.windowMs;
  }

  #insert(id: string, entry: Entry): void {
    this.#entries.set(id, entry);
    if (entry.response === undefined) this.#inProgress++;
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.entries().next();
      if (oldest.done) break;
      const [oldId, old] = oldest.value;
      this.#remove(oldId, old);
      this.#evicted++;
      if (old.response === undefined) this.#evictedInProgress++;
    }
  }

  #remove(id: string, entry: Entry): void {
    this.#entries.delete(id);
    if (entry.response === undefined) this.#inProgress--;
  }

  /** Drops expired entries; they sit at the front because every entry lives `windowMs`. */
  #sweep(): void {
    const now = this.#clock.monotonicMs();
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAtMs > now) break;
      this.#remove(id, entry);
    }
  }
}

/** Length-prefixed, so no scope/key pair can collide with another. */
function entryId(scope: string, key: string): string {
  return `${scope.length}:${scope}${key}`;
}
