import type { Random } from '../core/random.js';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/, Level 1 and Level 2): the `traceparent`
 * and `tracestate` request headers, and the OpenTelemetry `ot` tracestate entry with its `th`
 * (sampling threshold) and `rv` (explicit randomness) sub-keys.
 *
 * These run on every proxied request, so each parser walks its input once by char code: no
 * regular expressions (nothing to backtrack), no `split`, and for a valid header the only strings
 * allocated are the fields it returns.
 */

/** trace-flags bit: the caller may have recorded trace data ("Sampled flag"). */
export const TRACE_FLAG_SAMPLED = 0x01;
/** trace-flags bit: the right-most 7 bytes of the trace-id are random (Level 2 "Random Trace ID Flag"). */
export const TRACE_FLAG_RANDOM = 0x02;
/** Flags this implementation understands; "Other Flags": vendors MUST set the rest to zero. */
const KNOWN_FLAGS = TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM;

/** Length of a version-00 traceparent, and the prefix a higher version is parsed from. */
const TRACEPARENT_LENGTH = 55;
/** "There can be a maximum of 32 list-members in a list." */
export const TRACESTATE_MAX_MEMBERS = 32;
/** "Vendors SHOULD propagate at least 512 characters of a combined header." */
export const TRACESTATE_PROPAGATE_CHARS = 512;
/** "Entries larger than 128 characters long SHOULD be removed first" when truncating. */
const TRACESTATE_LARGE_ENTRY = 128;
/** Key and value limits of a tracestate list-member (characters). */
const KEY_MAX = 256;
const VALUE_MAX = 256;

const SP = 0x20;
const HTAB = 0x09;
const DASH = 0x2d;
const COMMA = 0x2c;
const EQUALS = 0x3d;
const AT = 0x40;
const SEMI = 0x3b;
const COLON = 0x3a;

/** Value of a lowercase hex digit (HEXDIGLC) by char code, -1 for anything else. */
const HEXDIGLC = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEXDIGLC[0x30 + i] = i;
for (let i = 0; i < 6; i++) HEXDIGLC[0x61 + i] = 10 + i;

/** keychar without `@`: lcalpha / DIGIT / "_" / "-" / "*" / "/". */
const KEYCHAR = new Uint8Array(128);
for (let c = 0x61; c <= 0x7a; c++) KEYCHAR[c] = 1;
for (let c = 0x30; c <= 0x39; c++) KEYCHAR[c] = 1;
for (const ch of '_-*/') KEYCHAR[ch.charCodeAt(0)] = 1;

/** Two-digit lowercase hex of every byte, so formatting flags allocates nothing. */
const BYTE_HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

const isOws = (c: number) => c === SP || c === HTAB;
const isLcAlpha = (c: number) => c >= 0x61 && c <= 0x7a;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** ORs the digit values of `s[from, to)`: -1 if one is not lowercase hex, 0 if all are zero. */
function hexRun(s: string, from: number, to: number): number {
  let acc = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    const d = c < 128 ? (HEXDIGLC[c] as number) : -1;
    if (d < 0) return -1;
    acc |= d;
  }
  return acc;
}

/** Value of the two lowercase hex digits at `i`, or -1. */
function hexByte(s: string, i: number): number {
  const hi = hexRun(s, i, i + 1);
  const lo = hexRun(s, i + 1, i + 2);
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

// ---------------------------------------------------------------------------------------------
// traceparent

/** A parsed `traceparent`: "version-format = trace-id "-" parent-id "-" trace-flags". */
export interface TraceParent {
  /** Version received (0–254); formatting always writes `00`, the highest version known here. */
  readonly version: number;
  /** 32 lowercase hex digits, not all zero. */
  readonly traceId: string;
  /** 16 lowercase hex digits, not all zero: the caller's span. */
  readonly parentId: string;
  /** trace-flags reduced to the known bits (sampled, random); unknown bits are dropped as the spec requires. */
  readonly flags: number;
}

/**
 * Parses `traceparent`; undefined means invalid or absent, and the caller starts a new trace
 * (and, per "A traceparent is Received", must then not parse `tracestate`).
 *
 * - More than one `traceparent` field is invalid (the W3C test suite's `test_traceparent_duplicated`);
 *   Node joins repeated unknown headers with `, `, which fails the length/delimiter checks below.
 * - Leading and trailing OWS (space, tab) is ignored, as HTTP field parsing does
 *   (`test_traceparent_ows_handling`); whitespace inside the value is invalid.
 * - Version `00` must be exactly 55 characters. Version `ff` is invalid. A higher version is
 *   parsed per "Versioning of traceparent": its first 55 characters must be a valid version-00
 *   value, followed by the end or a `-`; what follows is not interpreted.
 */
export function parseTraceparent(value: string | readonly string[] | undefined): TraceParent | undefined {
  let s: string;
  if (value === undefined) return undefined;
  if (typeof value === 'string') s = value;
  else if (value.length === 1) s = value[0] as string;
  else return undefined;

  let start = 0;
  let end = s.length;
  while (start < end && isOws(s.charCodeAt(start))) start++;
  while (end > start && isOws(s.charCodeAt(end - 1))) end--;
  const length = end - start;
  if (length < TRACEPARENT_LENGTH) return undefined;

  // "When the version prefix cannot be parsed (it's not 2 hex characters followed by a dash)".
  const version = hexByte(s, start);
  if (version < 0 || version === 0xff || s.charCodeAt(start + 2) !== DASH) return undefined;
  if (version === 0) {
    if (length !== TRACEPARENT_LENGTH) return undefined;
  } else if (length > TRACEPARENT_LENGTH && s.charCodeAt(start + TRACEPARENT_LENGTH) !== DASH) {
    return undefined;
  }
  if (s.charCodeAt(start + 35) !== DASH || s.charCodeAt(start + 52) !== DASH) return undefined;
  // hexRun is 0 for all zeroes ("All zeroes forbidden") and -1 for a non-HEXDIGLC character.
  if (hexRun(s, start + 3, start + 35) <= 0) return undefined;
  if (hexRun(s, start + 36, start + 52) <= 0) return undefined;
  const flags = hexByte(s, start + 53);
  if (flags < 0) return undefined;
  return {
    version,
    traceId: s.slice(start + 3, start + 35),
    parentId: s.slice(start + 36, start + 52),
    flags: flags & KNOWN_FLAGS,
  };
}

/** True for 32 lowercase hex digits, not all zero. */
export function isValidTraceId(id: string): boolean {
  return id.length === 32 && hexRun(id, 0, 32) > 0;
}

/** True for 16 lowercase hex digits, not all zero. */
export function isValidSpanId(id: string): boolean {
  return id.length === 16 && hexRun(id, 0, 16) > 0;
}

/**
 * Formats a `traceparent` at version `00` ("Vendors MUST use these fields to construct the new
 * traceparent field according to the highest version of the specification known") with only the
 * known flags set. Throws RangeError on an invalid id.
 */
export function formatTraceparent(tp: Pick<TraceParent, 'traceId' | 'parentId' | 'flags'>): string {
  if (!isValidTraceId(tp.traceId)) throw new RangeError(`invalid trace-id ${JSON.stringify(tp.traceId)}`);
  if (!isValidSpanId(tp.parentId)) throw new RangeError(`invalid parent-id ${JSON.stringify(tp.parentId)}`);
  return `00-${tp.traceId}-${tp.parentId}-${BYTE_HEX[tp.flags & KNOWN_FLAGS] as string}`;
}

/** Where {@link randomHex} puts its bytes before they are read out as hex. */
const HEX_SCRATCH = Buffer.allocUnsafeSlow(16);

/**
 * `groups` × 8 random hex digits (32 random bits each), read out of a scratch buffer in one go:
 * one flat string per id, where appending digit pairs made a string per pair (ids are made for
 * every request).
 */
function randomHex(random: Random, groups: number): string {
  let any = 0;
  for (let i = 0; i < groups; i++) {
    const x = (random.next() * 0x1_0000_0000) >>> 0;
    any |= x;
    HEX_SCRATCH.writeUInt32BE(x, i * 4);
  }
  const out = HEX_SCRATCH.toString('hex', 0, groups * 4);
  // An all-zero id is invalid. Replacing it (probability 2^-64 or less) rather than drawing again
  // keeps a degenerate Random (e.g. a constant one in a test) from looping forever.
  return any === 0 ? `${out.slice(0, -1)}1` : out;
}

/**
 * A new random trace-id (32 hex digits, never all zero). Every bit is random, so a trace started
 * with it may set the random flag ("at least the right-most 7 bytes ... selected randomly").
 */
export function newTraceId(random: Random): string {
  return randomHex(random, 4);
}

/** A new random span id / parent-id (16 hex digits, never all zero). */
export function newSpanId(random: Random): string {
  return randomHex(random, 2);
}

/**
 * The `traceparent` header this hop sends downstream, as "Mutating the traceparent Field" allows:
 * same trace-id, this hop's span as parent-id, the sampled flag as decided here, version `00`.
 * The random flag is kept from `parentFlags` ("If the flag is set in the incoming traceparent
 * header, it MUST also be set", and unset likewise); without a parent (a trace started here with
 * {@link newTraceId}) it is set, because those ids are random. The ids must already be valid
 * (generated here, or checked by {@link parseTraceparent}): this is the request path's form, with
 * no object and no re-check ({@link formatTraceparent} checks).
 */
export function nextTraceparent(
  traceId: string,
  spanId: string,
  sampled: boolean,
  parentFlags?: number,
): string {
  const random = parentFlags === undefined ? TRACE_FLAG_RANDOM : parentFlags & TRACE_FLAG_RANDOM;
  return `00-${traceId}-${spanId}-${BYTE_HEX[random | (sampled ? TRACE_FLAG_SAMPLED : 0)] as string}`;
}

// ---------------------------------------------------------------------------------------------
// tracestate

/**
 * Which tracestate key grammar to enforce.
 * - `level2`: Level 2's `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, where keychar includes `@`.
 * - `level1`: the Level 1 Recommendation's `simple-key` (lcalpha first, ≤ 256) or
 *   `multi-tenant-key` = tenant-id (≤ 241) `@` system-id (lcalpha first, ≤ 14).
 * Every Level 1 key is a Level 2 key, so `level2` (the default) rejects nothing Level 1 accepts.
 */
export type TracestateKeyGrammar = 'level1' | 'level2';

function keyIsValid(s: string, from: number, to: number, grammar: TracestateKeyGrammar): boolean {
  const length = to - from;
  if (length < 1 || length > KEY_MAX) return false;
  const first = s.charCodeAt(from);
  if (!isLcAlpha(first) && !isDigit(first)) return false;
  let at = -1;
  for (let i = from + 1; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === AT) {
      if (grammar === 'level1' && at >= 0) return false;
      at = i;
    } else if (c >= 128 || KEYCHAR[c] === 0) {
      return false;
    }
  }
  if (grammar === 'level2') return true;
  if (at < 0) return isLcAlpha(first); // simple-key
  const tenant = at - from;
  const system = to - at - 1;
  return tenant <= 241 && system >= 1 && system <= 14 && isLcAlpha(s.charCodeAt(at + 1));
}

/**
 * `value = 0*255(chr) nblk-chr`: 1–256 printable ASCII characters except `,` and `=`, not ending
 * in a space.
 */
function valueIsValid(s: string, from: number, to: number): boolean {
  const length = to - from;
  if (length < 1 || length > VALUE_MAX || s.charCodeAt(to - 1) === SP) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < SP || c > 0x7e || c === COMMA || c === EQUALS) return false;
  }
  return true;
}

/** True when `key` is a valid tracestate key under `grammar` (default Level 2). */
export function isValidTracestateKey(key: string, grammar: TracestateKeyGrammar = 'level2'): boolean {
  return keyIsValid(key, 0, key.length, grammar);
}

/** True when `value` is a valid tracestate value. */
export function isValidTracestateValue(value: string): boolean {
  return valueIsValid(value, 0, value.length);
}

/**
 * The `tracestate` list, left-most (most recently written) first. Mutations follow "Mutating the
 * tracestate Field": a set key moves to the left; more than 32 members drops the right-most.
 */
export class TraceState {
  readonly #keys: string[] = [];
  readonly #values: string[] = [];
  readonly #grammar: TracestateKeyGrammar;

  /** An empty list; `grammar` is the key grammar {@link set} enforces. */
  constructor(grammar: TracestateKeyGrammar = 'level2') {
    this.#grammar = grammar;
  }

  /**
   * Parses one or more `tracestate` fields. Multiple fields are combined in order, as RFC 9110
   * "Field Order" requires (the same as joining them with `,`). Returns an empty list when there
   * is no field, and undefined when the combined value is invalid.
   *
   * - Empty and whitespace-only list-members are ignored ("Empty and whitespace-only list members
   *   are allowed"); OWS (spaces, tabs) around members is ignored; leading spaces of a value are
   *   kept ("All leading spaces MUST be preserved as part of the value").
   * - Any malformed member, or more than 32 members, makes the whole header invalid: "If the
   *   tracestate header cannot be parsed the vendor MAY discard the entire header", which is what
   *   the W3C test suite expects. Keeping the valid members of a malformed header would propagate
   *   a list no vendor wrote.
   * - A repeated key keeps its left-most (most recent) entry and drops the others ("vendors MAY
   *   also discard duplicate keys that were not generated by them"). Level 2 does not make
   *   duplicates invalid, and its test suite expects the header to be inherited.
   */
  static parse(
    values: string | readonly string[] | undefined,
    grammar: TracestateKeyGrammar = 'level2',
  ): TraceState | undefined {
    const state = new TraceState(grammar);
    if (values === undefined) return state;
    if (typeof values === 'string') return state.#parseField(values) ? state : undefined;
    for (const value of values) if (!state.#parseField(value)) return undefined;
    return state;
  }

  #parseField(s: string): boolean {
    const n = s.length;
    let i = 0;
    while (i < n) {
      let c = s.charCodeAt(i);
      if (isOws(c) || c === COMMA) {
        i++;
        continue;
      }
      const keyStart = i;
      while (i < n && (c = s.charCodeAt(i)) !== EQUALS && c !== COMMA) i++;
      if (i === n || c !== EQUALS || !keyIsValid(s, keyStart, i, this.#grammar)) return false;
      const keyEnd = i++;
      const valueStart = i;
      // End of the value: after its last non-blank character. Trailing spaces and tabs before the
      // comma are OWS; a tab followed by more value is not (tabs are not value characters).
      let valueEnd = i;
      let inTrailingOws = false;
      while (i < n && (c = s.charCodeAt(i)) !== COMMA) {
        if (c === HTAB) inTrailingOws = true;
        else if (c > SP && c <= 0x7e && c !== EQUALS) {
          if (inTrailingOws) return false;
          valueEnd = i + 1;
        } else if (c !== SP) return false;
        i++;
      }
      if (valueEnd === valueStart || valueEnd - valueStart > VALUE_MAX) return false;
      const key = s.slice(keyStart, keyEnd);
      if (this.#keys.includes(key)) continue;
      if (this.#keys.length === TRACESTATE_MAX_MEMBERS) return false;
      this.#keys.push(key);
      this.#values.push(s.slice(valueStart, valueEnd));
    }
    return true;
  }

  /** Number of list-members. */
  get size(): number {
    return this.#keys.length;
  }

  get(key: string): string | undefined {
    const i = this.#keys.indexOf(key);
    return i < 0 ? undefined : this.#values[i];
  }

  has(key: string): boolean {
    return this.#keys.includes(key);
  }

  /** Keys, left to right. */
  keys(): readonly string[] {
    return this.#keys.slice();
  }

  /** [key, value] pairs, left to right. */
  entries(): [string, string][] {
    return this.#keys.map((k, i) => [k, this.#values[i] as string]);
  }

  /**
   * Adds or updates `key` and moves it to the left ("Modified keys MUST be moved to the beginning
   * (left) of the list"); if that makes 33 members the right-most is removed. Throws RangeError
   * on a key or value outside the grammar.
   */
  set(key: string, value: string): void {
    if (!keyIsValid(key, 0, key.length, this.#grammar))
      throw new RangeError(`invalid tracestate key ${JSON.stringify(key)}`);
    if (!valueIsValid(value, 0, value.length))
      throw new RangeError(`invalid tracestate value ${JSON.stringify(value)}`);
    const i = this.#keys.indexOf(key);
    if (i >= 0) {
      this.#keys.splice(i, 1);
      this.#values.splice(i, 1);
    }
    this.#keys.unshift(key);
    this.#values.unshift(value);
    if (this.#keys.length > TRACESTATE_MAX_MEMBERS) {
      this.#keys.pop();
      this.#values.pop();
    }
  }

  /** Removes `key`; false if it was not there. */
  delete(key: string): boolean {
    const i = this.#keys.indexOf(key);
    if (i < 0) return false;
    this.#keys.splice(i, 1);
    this.#values.splice(i, 1);
    return true;
  }

  /** Length of {@link format}'s output (characters). */
  get formattedLength(): number {
    let length = Math.max(0, this.#keys.length - 1);
    for (let i = 0; i < this.#keys.length; i++) {
      length += (this.#keys[i] as string).length + 1 + (this.#values[i] as string).length;
    }
    return length;
  }

  /**
   * Removes whole entries until {@link format} is at most `maxChars` (default 512) long, per
   * "tracestate Limits": entries longer than 128 characters first (right-most first), then entries
   * from the end. Stops as soon as it fits. Returns how many entries were removed.
   */
  truncate(maxChars: number = TRACESTATE_PROPAGATE_CHARS): number {
    let length = this.formattedLength;
    let removed = 0;
    const remove = (i: number) => {
      const entry = (this.#keys[i] as string).length + 1 + (this.#values[i] as string).length;
      length -= entry + (this.#keys.length > 1 ? 1 : 0);
      this.#keys.splice(i, 1);
      this.#values.splice(i, 1);
      removed++;
    };
    for (let i = this.#keys.length - 1; i >= 0 && length > maxChars; i--) {
      const entry = (this.#keys[i] as string).length + 1 + (this.#values[i] as string).length;
      if (entry > TRACESTATE_LARGE_ENTRY) remove(i);
    }
    while (length > maxChars && this.#keys.length > 0) remove(this.#keys.length - 1);
    return removed;
  }

  /**
   * The header value: `key=value` members joined by `,` without OWS ("a caller SHOULD NOT
   * generate optional whitespace"). Empty for an empty list, which callers should not send.
   */
  format(): string {
    let out = '';
    for (let i = 0; i < this.#keys.length; i++) {
      out += `${i === 0 ? '' : ','}${this.#keys[i] as string}=${this.#values[i] as string}`;
    }
    return out;
  }

  toString(): string {
    return this.format();
  }

  /** An independent copy. */
  clone(): TraceState {
    const copy = new TraceState(this.#grammar);
    copy.#keys.push(...this.#keys);
    copy.#values.push(...this.#values);
    return copy;
  }
}

/** Parses `tracestate` fields; see {@link TraceState.parse}. Undefined means invalid: discard it. */
export function parseTracestate(
  values: string | readonly string[] | undefined,
  grammar: TracestateKeyGrammar = 'level2',
): TraceState | undefined {
  return TraceState.parse(values, grammar);
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry `ot` entry (OpenTelemetry "TraceState Handling")

/** The tracestate key OpenTelemetry keeps all its sub-keys under. */
export const OT_KEY = 'ot';
/** "The complete list length MUST NOT exceed 256 characters". */
const OT_MAX = 256;

/** The sub-keys of an `ot` tracestate entry: `ot=th:e666;rv:6e6d1a75832a2f;k:v`. */
export interface OtTraceState {
  /** `th` rejection threshold: 1–14 hex digits, lowercased; undefined when absent or malformed. */
  readonly th: string | undefined;
  /** `rv` explicit randomness: exactly 14 lowercase hex digits; undefined when absent or malformed. */
  readonly rv: string | undefined;
  /** Other sub-fields, verbatim `key:value`, in their original order. */
  readonly extra: readonly string[];
}

const NO_EXTRA: readonly string[] = Object.freeze([]);

/** `th` syntax: 1–14 hex digits ("Valid values of the th sub-fields include between 1 and 14 hexadecimal digits"). */
export function isThValue(s: string): boolean {
  if (s.length < 1 || s.length > 14) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) | 0x20; // folds A–F onto a–f; digits already have bit 0x20
    if (c >= 128 || (HEXDIGLC[c] as number) < 0) return false;
  }
  return true;
}

/** `rv` syntax: "Values of rv MUST be exactly 14 lower-case hexadecimal digits". */
export function isRvValue(s: string): boolean {
  return s.length === 14 && hexRun(s, 0, 14) >= 0;
}

/** ot value chr = ucalpha / lcalpha / DIGIT / "." / "_" / "-". */
function isOtValueChar(c: number): boolean {
  return isLcAlpha(c) || isDigit(c) || (c >= 0x41 && c <= 0x5a) || c === 0x2e || c === 0x5f || c === DASH;
}

/**
 * Parses the value of an `ot` entry: `list = list-member *( ";" list-member )`, `list-member = key
 * ":" value`, keys `lcalpha *(lcalpha / DIGIT)` and unique, at most 256 characters. Undefined when
 * the syntax is invalid. A `th` or `rv` whose own syntax is wrong is dropped (treated as absent):
 * a threshold that cannot be read must be erased ("Sampling stages that yield spans with unknown
 * sampling probability ... must erase the OpenTelemetry threshold value"), and an unreadable
 * randomness value cannot be used.
 */
export function parseOt(value: string): OtTraceState | undefined {
  const n = value.length;
  if (n === 0 || n > OT_MAX) return undefined;
  let th: string | undefined;
  let rv: string | undefined;
  let extra: string[] | undefined;
  let seenTh = false;
  let seenRv = false;
  let i = 0;
  while (i <= n) {
    const start = i;
    if (!isLcAlpha(value.charCodeAt(i))) return undefined;
    i++;
    let c = 0;
    while (i < n && (isLcAlpha((c = value.charCodeAt(i))) || isDigit(c))) i++;
    if (value.charCodeAt(i) !== COLON) return undefined;
    const keyEnd = i++;
    const valueStart = i;
    while (i < n && isOtValueChar(value.charCodeAt(i))) i++;
    if (i < n && value.charCodeAt(i) !== SEMI) return undefined;
    const keyLength = keyEnd - start;
    const isTh = keyLength === 2 && value.charCodeAt(start) === 0x74 && value.charCodeAt(start + 1) === 0x68;
    const isRv = keyLength === 2 && value.charCodeAt(start) === 0x72 && value.charCodeAt(start + 1) === 0x76;
    if (isTh) {
      if (seenTh) return undefined;
      seenTh = true;
      const v = value.slice(valueStart, i);
      if (isThValue(v)) th = v.toLowerCase();
    } else if (isRv) {
      if (seenRv) return undefined;
      seenRv = true;
      const v = value.slice(valueStart, i);
      if (isRvValue(v)) rv = v;
    } else {
      const field = value.slice(start, i);
      extra ??= [];
      const key = field.slice(0, keyLength + 1);
      if (extra.some((e) => e.startsWith(key))) return undefined;
      extra.push(field);
    }
    i++; // past ';' (or past the end, which ends the loop)
  }
  return { th, rv, extra: extra ?? NO_EXTRA };
}

/** Formats an `ot` value: `th`, then `rv`, then the other sub-fields. Empty when there is nothing. */
export function formatOt(ot: OtTraceState): string {
  let out = ot.th === undefined ? '' : `th:${ot.th}`;
  if (ot.rv !== undefined) out += `${out === '' ? '' : ';'}rv:${ot.rv}`;
  for (const field of ot.extra) out += `${out === '' ? '' : ';'}${field}`;
  return out;
}

/** The parsed `ot` entry of `state`; undefined when there is none or it is malformed. */
export function readOt(state: TraceState): OtTraceState | undefined {
  const value = state.get(OT_KEY);
  return value === undefined ? undefined : parseOt(value);
}
