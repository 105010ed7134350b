import type { Clock } from '../../core/clock.js';
import { parseDurationMs, parseSizeBytes } from '../../core/units.js';
import type { EffectiveTraffic } from '../../model/settings.js';
import {
  cacheControlDirectives,
  headerBytes,
  headerText,
  headerTokens,
  storableHeaders,
  type HeaderMap,
} from './http-headers.js';

/** A response kept for stale-if-error. Treat it as read-only: it is served as is, maybe many times. */
export interface CachedResponse {
  readonly status: number;
  /** Response headers, lowercase names, hop-by-hop headers removed. */
  readonly headers: HeaderMap;
  readonly body: Buffer;
  /** When it was stored, in the cache clock's monotonic milliseconds. */
  readonly storedAtMs: number;
}

/** A cache hit: the entry and how old it is, in milliseconds (for the `Age` header: ⌊ageMs/1000⌋ s). */
export interface StaleHit {
  readonly entry: CachedResponse;
  readonly ageMs: number;
}

/** The parts of a request the cache key is made from. */
export interface CacheRequest {
  readonly method: string;
  /** Host (and port) the request was for, e.g. `catalog` or `catalog.mesh:8080`. */
  readonly authority: string;
  /** Path and query as sent, e.g. `/items?page=2`. */
  readonly pathWithQuery: string;
  readonly headers: HeaderMap;
}

/** The parts of a response the cache stores. */
export interface CacheResponse {
  readonly status: number;
  readonly headers: HeaderMap;
  readonly body: Buffer;
}

/** Options of a {@link StaleCache}. */
export interface StaleCacheOptions {
  /** Oldest entry ever served, in milliseconds; older ones are dropped when met. */
  readonly maxAgeMs: number;
  /** Entries kept at most (≥ 1). */
  readonly maxEntries: number;
  /** Memory the entries may use in total, in bytes (body + headers + key + fixed overhead). */
  readonly maxBytes: number;
  /** Largest entry stored, in bytes (same measure); larger responses are not cached. */
  readonly maxEntryBytes: number;
  readonly clock: Clock;
}

/** Counters of a {@link StaleCache}; `entries` and `bytes` are gauges, the rest count since creation. */
export interface StaleCacheStats {
  readonly entries: number;
  /** Bytes held now (same measure as `maxBytes`). */
  readonly bytes: number;
  readonly hits: number;
  readonly misses: number;
  /** Entries evicted to stay within `maxEntries` or `maxBytes`. */
  readonly evicted: number;
  /** Entries dropped because they were older than `maxAgeMs`. */
  readonly expired: number;
  /** Responses not stored because they were larger than `maxEntryBytes` (or than `maxBytes`). */
  readonly tooLarge: number;
}

/** Bookkeeping cost counted per entry on top of its body, headers and key, in bytes. */
export const ENTRY_OVERHEAD_BYTES = 128;

/**
 * Statuses kept for stale-if-error: final answers a client may see again (RFC 9110 §15.1's
 * heuristically cacheable set, minus 206 which would need range-aware keys).
 */
const STALE_CACHEABLE_STATUSES = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);

/**
 * Whether a response may be kept to be served stale after an error. Never: methods other than
 * GET and HEAD; `Cache-Control: no-store` on either side; `private`, `no-cache`,
 * `must-revalidate`, `proxy-revalidate` (the origin forbids serving it without asking again); a
 * `Set-Cookie`; `Vary: *`; a request with `Authorization` unless the response says `public`
 * (the proxy serves many users of the calling app, so it acts as a shared cache).
 */
export function isStaleCacheable(request: CacheRequest, response: CacheResponse): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  if (!STALE_CACHEABLE_STATUSES.has(response.status)) return false;
  if (cacheControlDirectives(request.headers).has('no-store')) return false;
  const directives = cacheControlDirectives(response.headers);
  for (const forbidden of ['no-store', 'private', 'no-cache', 'must-revalidate', 'proxy-revalidate']) {
    if (directives.has(forbidden)) return false;
  }
  if (response.headers['set-cookie'] !== undefined) return false;
  if (headerTokens(response.headers, 'vary').includes('*')) return false;
  if (request.headers.authorization !== undefined && !directives.has('public')) return false;
  return true;
}

/**
 * The header names a `Vary` value lists, lowercased, deduplicated and sorted; `'*'` when the
 * response varies on something outside the request headers (then it is never cached).
 */
export function parseVary(vary: string | readonly string[] | undefined): readonly string[] | '*' {
  if (vary === undefined) return [];
  const names = headerTokens({ vary }, 'vary');
  if (names.includes('*')) return '*';
  return [...new Set(names)].sort();
}

/**
 * The cache key of a request: method, authority (lowercased), path with query, and the values
 * of the request headers the response's `Vary` names (an absent header differs from an empty
 * one). Undefined for `Vary: *`, which makes a response uncacheable.
 */
export function cacheKey(
  method: string,
  authority: string,
  pathWithQuery: string,
  headers: HeaderMap,
  vary: string | readonly string[] | undefined,
): string | undefined {
  const names = parseVary(vary);
  if (names === '*') return undefined;
  return variantKey(resourceKey({ method, authority, pathWithQuery }), headers, names);
}

interface Stored extends CachedResponse {
  readonly bytes: number;
}

/**
 * The stale-if-error cache of one destination: the last good response of safe reads, served
 * (marked stale) when every attempt failed. LRU, bounded by entries and by bytes; an entry older
 * than `maxAgeMs` is never served. A JavaScript Map keeps recency order (a hit is re-inserted at
 * the end), so every operation is O(1) apart from evictions, which are paid once per entry.
 *
 * Two ways in: `put`/`get` with a key of the caller's making (see {@link cacheKey}), or
 * `store`/`lookup` with the request, which also remember each resource's `Vary` so that the
 * lookup after an error (when there is no response to read `Vary` from) finds the right variant.
 */
export class StaleCache {
  readonly maxAgeMs: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly maxEntryBytes: number;
  readonly #clock: Clock;
  readonly #entries = new Map<string, Stored>();
  /** Last `Vary` seen per resource (method + authority + path), bounded like the entries. */
  readonly #varyByResource = new Map<string, readonly string[]>();
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #evicted = 0;
  #expired = 0;
  #tooLarge = 0;

  constructor(options: StaleCacheOptions) {
    const { maxAgeMs, maxEntries, maxBytes, maxEntryBytes, clock } = options;
    if (!(maxAgeMs > 0)) throw new RangeError(`stale cache maxAgeMs must be > 0, got ${maxAgeMs}`);
    if (!(Number.isInteger(maxEntries) && maxEntries >= 1)) {
      throw new RangeError(`stale cache maxEntries must be an integer ≥ 1, got ${maxEntries}`);
    }
    if (!(maxBytes > 0)) throw new RangeError(`stale cache maxBytes must be > 0, got ${maxBytes}`);
    if (!(maxEntryBytes > 0))
      throw new RangeError(`stale cache maxEntryBytes must be > 0, got ${maxEntryBytes}`);
    this.maxAgeMs = maxAgeMs;
    this.maxEntries = maxEntries;
    this.maxBytes = maxBytes;
    this.maxEntryBytes = maxEntryBytes;
    this.#clock = clock;
  }

  /** A cache from `fallback.staleIfError` of a TrafficPolicy (`enabled` is the caller's to check). */
  static fromSettings(settings: EffectiveTraffic['fallback']['staleIfError'], clock: Clock): StaleCache {
    return new StaleCache({
      maxAgeMs: parseDurationMs(settings.maxAge),
      maxEntries: settings.maxEntries,
      maxBytes: parseSizeBytes(settings.maxBytes),
      maxEntryBytes: parseSizeBytes(settings.maxEntryBytes),
      clock,
    });
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Bytes held now (body + headers + key + {@link ENTRY_OVERHEAD_BYTES} per entry). */
  get bytes(): number {
    return this.#bytes;
  }

  stats(): StaleCacheStats {
    return {
      entries: this.#entries.size,
      bytes: this.#bytes,
      hits: this.#hits,
      misses: this.#misses,
      evicted: this.#evicted,
      expired: this.#expired,
      tooLarge: this.#tooLarge,
    };
  }

  /**
   * Stores a response under `key`, replacing what was there, and evicts least recently used
   * entries until the bounds hold. Returns false, and drops the old entry under `key` (it is
   * older than what the origin now says), when the response is too large. Storability
   * (see {@link isStaleCacheable}) is the caller's to check.
   */
  put(key: string, response: CacheResponse): boolean {
    this.delete(key);
    const headers = storableHeaders(response.headers);
    const bytes = response.body.length + headerBytes(headers) + key.length + ENTRY_OVERHEAD_BYTES;
    if (bytes > this.maxEntryBytes || bytes > this.maxBytes) {
      this.#tooLarge++;
      return false;
    }
    const entry: Stored = {
      status: response.status,
      headers,
      body: response.body,
      storedAtMs: this.#clock.monotonicMs(),
      bytes,
    };
    this.#entries.set(key, entry);
    this.#bytes += bytes;
    while (this.#entries.size > this.maxEntries || this.#bytes > this.maxBytes) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
      this.#evicted++;
    }
    return true;
  }

  /** The entry under `key` and its age, unless absent or older than `maxAgeMs` (then dropped). */
  get(key: string): StaleHit | undefined {
    const entry = this.#entries.get(key);
    if (!entry) {
      this.#misses++;
      return undefined;
    }
    const ageMs = this.#clock.monotonicMs() - entry.storedAtMs;
    if (ageMs > this.maxAgeMs) {
      this.delete(key);
      this.#expired++;
      this.#misses++;
      return undefined;
    }
    // Re-insert to mark it most recently used.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    this.#hits++;
    const { bytes: _bytes, ...visible } = entry;
    return { entry: visible, ageMs };
  }

  delete(key: string): boolean {
    const entry = this.#entries.get(key);
    if (!entry) return false;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
    return true;
  }

  /**
   * Stores the response to `request` if it is stale-cacheable, under the key its `Vary` gives;
   * when it is not, drops the entry the request would have replaced. Returns whether it stored.
   */
  store(request: CacheRequest, response: CacheResponse): boolean {
    const resource = resourceKey(request);
    const vary = parseVary(response.headers.vary);
    if (vary === '*' || !isStaleCacheable(request, response)) {
      const previous = this.#keyFor(request, resource);
      if (previous !== undefined) this.delete(previous);
      return false;
    }
    this.#varyByResource.delete(resource);
    this.#varyByResource.set(resource, vary);
    if (this.#varyByResource.size > this.maxEntries) {
      const oldest = this.#varyByResource.keys().next();
      if (!oldest.done) this.#varyByResource.delete(oldest.value);
    }
    return this.put(variantKey(resource, request.headers, vary), response);
  }

  /** The stored response for `request` (the variant its headers select), if fresh enough. */
  lookup(request: CacheRequest): StaleHit | undefined {
    const key = this.#keyFor(request, resourceKey(request));
    if (key === undefined) {
      this.#misses++;
      return undefined;
    }
    return this.get(key);
  }

  #keyFor(request: CacheRequest, resource: string): string | undefined {
    const vary = this.#varyByResource.get(resource);
    return vary === undefined ? undefined : variantKey(resource, request.headers, vary);
  }
}

/** The key of a resource regardless of variants: method, authority, path with query. */
function resourceKey(request: Omit<CacheRequest, 'headers'>): string {
  return JSON.stringify([request.method, request.authority.toLowerCase(), request.pathWithQuery]);
}

/** A resource key extended with the values of the `Vary`'d request headers. */
function variantKey(resource: string, headers: HeaderMap, vary: readonly string[]): string {
  if (vary.length === 0) return resource;
  const parts: (string | null)[] = [];
  for (const name of vary) parts.push(name, headerText(headers, name) ?? null);
  return `${resource.slice(0, -1)},${JSON.stringify(parts).slice(1)}`;
}
