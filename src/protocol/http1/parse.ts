import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * HTTP/1.1 message syntax (RFC 9112) for the data plane's own connections: message heads parsed
 * strictly, body framing decided the way request smuggling cannot exploit, chunked bodies decoded
 * incrementally, and heads serialized without letting a value break a line. Nothing here touches
 * a socket.
 */

/** A message that cannot be accepted; `status` is what a server answers (400, 431, 501, 505). */
export class HttpParseError extends Error {
  override readonly name = 'HttpParseError';
  constructor(
    readonly status: number,
    /** Stable, machine-readable reason, e.g. `invalid-header-name`. */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface RequestHead {
  method: string;
  /** The request target as sent (origin-form, absolute-form or authority-form). */
  target: string;
  /** `1.0` or `1.1`. */
  version: '1.0' | '1.1';
  /** Lower-case names; repeated fields joined (`set-cookie` kept as a list). */
  headers: IncomingHttpHeaders;
}

export interface ResponseHead {
  status: number;
  reason: string;
  version: '1.0' | '1.1';
  headers: IncomingHttpHeaders;
}

/** How a message body is delimited. */
export type Framing =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** Until the connection closes (responses only). */
  | { kind: 'close' };

export const NO_BODY: Framing = Object.freeze({ kind: 'none' });
const CHUNKED: Framing = Object.freeze({ kind: 'chunked' });
const UNTIL_CLOSE: Framing = Object.freeze({ kind: 'close' });

const CR = 0x0d;
const LF = 0x0a;

/**
 * Where the head that starts at `start` ends: the index just past its empty line, or -1 when
 * more bytes are needed. `from` resumes a search that found nothing earlier. A line feed not
 * preceded by a carriage return is refused (lenient parsers disagree on it: a smuggling vector).
 */
export function findHeadEnd(buf: Buffer, start: number, from: number): number {
  let i = Math.max(start, from);
  for (;;) {
    const lf = buf.indexOf(LF, i);
    if (lf < 0) return -1;
    if (lf === start || buf[lf - 1] !== CR)
      throw new HttpParseError(400, 'bare-lf', 'a line ends with LF without CR');
    if (lf - start >= 3 && buf[lf - 2] === LF && buf[lf - 3] === CR) return lf + 1;
    // The head's first line cannot be empty: a CRLF at `start` is skipped by the caller.
    i = lf + 1;
  }
}

/** Skips the empty lines a client may send before a request (RFC 9112 §2.2). */
export function skipLeadingEmptyLines(buf: Buffer, start: number): number {
  let i = start;
  while (i + 1 < buf.length && buf[i] === CR && buf[i + 1] === LF) i += 2;
  return i;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Byte classes: 1 = token character, 2 = allowed in a field value (tab, visible, obs-text). */
const CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  let bits = 0;
  if (c < 128 && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(ch)) bits |= 1;
  if (c === 0x09 || (c >= 0x20 && c !== 0x7f)) bits |= 2;
  CLASS[c] = bits;
}

/** Whether a code unit (any, beyond 255 included) is a token character. */
function isToken(c: number): boolean {
  return c < 256 && ((CLASS[c] as number) & 1) !== 0;
}

/** Whether a code unit may appear in a field value. */
function isValueChar(c: number): boolean {
  return c < 256 && ((CLASS[c] as number) & 2) !== 0;
}

/** Lower-case field names seen before (bounded): most heads repeat the same few names. */
const NAMES = new Map<string, string>();

function lowerName(raw: string): string {
  let name = NAMES.get(raw);
  if (name === undefined) {
    name = raw.toLowerCase();
    if (NAMES.size < 512) NAMES.set(raw, name);
  }
  return name;
}

const COOKIE = 'cookie';
const SET_COOKIE = 'set-cookie';

function versionOf(text: string, at: number): '1.0' | '1.1' {
  if (text.startsWith('HTTP/1.1', at)) return '1.1';
  if (text.startsWith('HTTP/1.0', at)) return '1.0';
  if (/^HTTP\/\d\.\d$/.test(text.slice(at, at + 8)))
    throw new HttpParseError(505, 'unsupported-version', `${text.slice(at, at + 8)} is not supported`);
  throw new HttpParseError(400, 'invalid-version', 'invalid HTTP version');
}

/** Parses header lines `lines[from…]` into `headers`. */
function parseFields(lines: string[], from: number, headers: IncomingHttpHeaders): void {
  for (let i = from; i < lines.length; i++) {
    const line = lines[i] as string;
    const n = line.length;
    if (n === 0) continue;
    let colon = -1;
    for (let j = 0; j < n; j++) {
      const c = line.charCodeAt(j);
      if (c === 0x3a) {
        colon = j;
        break;
      }
      if (!isToken(c)) {
        if (j === 0 && (c === 0x20 || c === 0x09))
          throw new HttpParseError(400, 'obsolete-line-folding', 'a header line starts with whitespace');
        throw new HttpParseError(
          400,
          'invalid-header-name',
          `invalid header name "${printable(line.slice(0, j + 1))}"`,
        );
      }
    }
    if (colon <= 0) throw new HttpParseError(400, 'invalid-header-line', 'a header line has no name');
    const rawName = line.slice(0, colon);
    let s = colon + 1;
    let e = n;
    while (s < e && (line.charCodeAt(s) === 0x20 || line.charCodeAt(s) === 0x09)) s++;
    while (e > s && (line.charCodeAt(e - 1) === 0x20 || line.charCodeAt(e - 1) === 0x09)) e--;
    for (let j = s; j < e; j++) {
      const c = line.charCodeAt(j);
      if (!isValueChar(c))
        throw new HttpParseError(400, 'invalid-header-value', `header ${rawName} has a control character`);
    }
    const value = line.slice(s, e);
    const name = lowerName(rawName);
    const prior = headers[name];
    if (prior === undefined) headers[name] = name === SET_COOKIE ? [value] : value;
    else if (Array.isArray(prior)) prior.push(value);
    else headers[name] = `${prior}${name === COOKIE ? '; ' : ', '}${value}`;
  }
}

/** Parses the request head `buf[start, end)` (`end` as returned by {@link findHeadEnd}). */
export function parseRequestHead(buf: Buffer, start: number, end: number): RequestHead {
  const lines = buf.toString('latin1', start, end - 4).split('\r\n');
  const line = lines[0] as string;
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 < 0 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 <= sp1 + 1 || line.length - sp2 - 1 !== 8)
    throw new HttpParseError(400, 'invalid-request-line', `invalid request line "${printable(line)}"`);
  for (let j = 0; j < sp1; j++) {
    const c = line.charCodeAt(j);
    if (!isToken(c))
      throw new HttpParseError(400, 'invalid-request-line', `invalid method in "${printable(line)}"`);
  }
  for (let j = sp1 + 1; j < sp2; j++) {
    const c = line.charCodeAt(j);
    if (c <= 0x20 || c >= 0x7f)
      throw new HttpParseError(400, 'invalid-request-line', `invalid request target in "${printable(line)}"`);
  }
  const version = versionOf(line, sp2 + 1);
  const headers: IncomingHttpHeaders = Object.create(null) as IncomingHttpHeaders;
  parseFields(lines, 1, headers);
  if (version === '1.1' && headers.host === undefined)
    throw new HttpParseError(400, 'missing-host', 'an HTTP/1.1 request needs a Host header');
  if (headers.host !== undefined && headers.host.includes(','))
    throw new HttpParseError(400, 'repeated-host', 'a request has more than one Host header');
  return { method: line.slice(0, sp1), target: line.slice(sp1 + 1, sp2), version, headers };
}

/** Parses the response head `buf[start, end)`. */
export function parseResponseHead(buf: Buffer, start: number, end: number): ResponseHead {
  const lines = buf.toString('latin1', start, end - 4).split('\r\n');
  const line = lines[0] as string;
  let version: '1.0' | '1.1';
  try {
    version = versionOf(line, 0);
  } catch (err) {
    throw new HttpParseError(502, (err as HttpParseError).code, `invalid status line "${printable(line)}"`);
  }
  const status = Number(line.slice(9, 12));
  if (
    line.charCodeAt(8) !== 0x20 ||
    !/^\d{3}$/.test(line.slice(9, 12)) ||
    status < 100 ||
    (line.length > 12 && line.charCodeAt(12) !== 0x20)
  )
    throw new HttpParseError(502, 'invalid-status-line', `invalid status line "${printable(line)}"`);
  for (let j = 13; j < line.length; j++) {
    const c = line.charCodeAt(j);
    if (!isValueChar(c))
      throw new HttpParseError(502, 'invalid-status-line', `invalid reason phrase in "${printable(line)}"`);
  }
  const headers: IncomingHttpHeaders = Object.create(null) as IncomingHttpHeaders;
  parseFields(lines, 1, headers);
  return { status, reason: line.length > 13 ? line.slice(13) : '', version, headers };
}

/** The single value of Content-Length, refusing lists of different values and non-digits. */
function contentLength(value: string): number {
  let text = value;
  if (text.includes(',')) {
    const parts = text.split(',').map((p) => p.trim());
    if (parts.some((p) => p !== parts[0]))
      throw new HttpParseError(400, 'conflicting-content-length', 'Content-Length values disagree');
    text = parts[0] as string;
  }
  if (!/^\d{1,15}$/.test(text))
    throw new HttpParseError(400, 'invalid-content-length', 'invalid Content-Length');
  return Number(text);
}

function codings(value: string | string[]): string[] {
  const text = Array.isArray(value) ? value.join(',') : value;
  return text
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t.length > 0);
}

/**
 * How a request's body is delimited. Ambiguous framing is refused rather than guessed: a
 * Transfer-Encoding together with a Content-Length, a Transfer-Encoding in HTTP/1.0, or a coding
 * list that does not end in `chunked`.
 */
export function requestFraming(head: RequestHead): Framing {
  const te = head.headers['transfer-encoding'];
  const cl = head.headers['content-length'];
  if (te !== undefined) {
    if (cl !== undefined)
      throw new HttpParseError(400, 'conflicting-framing', 'both Transfer-Encoding and Content-Length');
    if (head.version === '1.0')
      throw new HttpParseError(400, 'conflicting-framing', 'Transfer-Encoding in an HTTP/1.0 request');
    const list = codings(te);
    if (list[list.length - 1] !== 'chunked')
      throw new HttpParseError(400, 'invalid-transfer-encoding', 'the last transfer coding must be chunked');
    if (list.length > 1)
      throw new HttpParseError(501, 'unsupported-transfer-encoding', `transfer codings ${list.join(', ')}`);
    return CHUNKED;
  }
  if (cl !== undefined) {
    const length = contentLength(cl);
    return length === 0 ? NO_BODY : { kind: 'length', length };
  }
  return NO_BODY;
}

/** How a response's body is delimited, given the request's method. */
export function responseFraming(head: ResponseHead, method: string): Framing {
  const s = head.status;
  if (method === 'HEAD' || s < 200 || s === 204 || s === 304) return NO_BODY;
  const te = head.headers['transfer-encoding'];
  if (te !== undefined) {
    const list = codings(te);
    return list[list.length - 1] === 'chunked' && list.length === 1 ? CHUNKED : UNTIL_CLOSE;
  }
  const cl = head.headers['content-length'];
  if (cl !== undefined) {
    let length: number;
    try {
      length = contentLength(cl);
    } catch (err) {
      throw new HttpParseError(502, (err as HttpParseError).code, (err as Error).message);
    }
    return length === 0 ? NO_BODY : { kind: 'length', length };
  }
  return UNTIL_CLOSE;
}

/** Whether the connection may carry another message after this one. */
export function keepAlive(version: '1.0' | '1.1', headers: IncomingHttpHeaders): boolean {
  const c = headers.connection;
  if (c === undefined) return version === '1.1';
  const v = c.toLowerCase();
  if (v === 'keep-alive') return true;
  if (v === 'close') return false;
  const list = codings(v);
  if (list.includes('close')) return false;
  return version === '1.1' || list.includes('keep-alive');
}

/**
 * Incremental decoder of a chunked body (RFC 9112 §7.1). Extensions are skipped and trailers
 * read and dropped, each within a bound.
 */
export class ChunkedDecoder {
  static readonly MAX_LINE = 4096;
  static readonly MAX_TRAILERS = 16 * 1024;

  #state: 'size' | 'ext' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'done' = 'size';
  #size = 0;
  #digits = 0;
  #line = 0;
  #trailerBytes = 0;
  /** Bytes of the current trailer line seen so far (0 at a line start). */
  #trailerLine = 0;
  #trailerCr = false;

  get done(): boolean {
    return this.#state === 'done';
  }

  /**
   * Consumes bytes from `buf[start…]`, calling `onData` for each piece of body data, and returns
   * the index where it stopped: the end of the buffer, or just past the body when it ended.
   */
  push(buf: Buffer, start: number, onData: (data: Buffer) => void): number {
    let i = start;
    const n = buf.length;
    while (i < n) {
      switch (this.#state) {
        case 'size': {
          const c = buf[i] as number;
          const d = hexValue(c);
          if (d >= 0) {
            if (++this.#digits > 13) throw chunkError('chunk size too large');
            this.#size = this.#size * 16 + d;
            i++;
          } else if (this.#digits === 0) throw chunkError('chunk size missing');
          else if (c === CR) {
            this.#state = 'size-lf';
            i++;
          } else if (c === 0x3b || c === 0x20 || c === 0x09) {
            this.#state = 'ext';
            this.#line = 0;
            i++;
          } else throw chunkError('invalid chunk size');
          break;
        }
        case 'ext': {
          const c = buf[i] as number;
          if (c === CR) this.#state = 'size-lf';
          else if (c === LF || (c < 0x20 && c !== 0x09) || c === 0x7f)
            throw chunkError('invalid chunk extension');
          else if (++this.#line > ChunkedDecoder.MAX_LINE) throw chunkError('chunk extension too long');
          i++;
          break;
        }
        case 'size-lf': {
          if (buf[i] !== LF) throw chunkError('chunk size line not ended by CRLF');
          i++;
          this.#digits = 0;
          if (this.#size === 0) {
            this.#state = 'trailer';
            this.#trailerLine = 0;
            this.#trailerCr = false;
          } else this.#state = 'data';
          break;
        }
        case 'data': {
          const take = Math.min(this.#size, n - i);
          onData(buf.subarray(i, i + take));
          i += take;
          this.#size -= take;
          if (this.#size === 0) this.#state = 'data-cr';
          break;
        }
        case 'data-cr': {
          if (buf[i] !== CR) throw chunkError('chunk data not followed by CRLF');
          this.#state = 'data-lf';
          i++;
          break;
        }
        case 'data-lf': {
          if (buf[i] !== LF) throw chunkError('chunk data not followed by CRLF');
          this.#state = 'size';
          this.#size = 0;
          i++;
          break;
        }
        case 'trailer': {
          const c = buf[i] as number;
          i++;
          if (++this.#trailerBytes > ChunkedDecoder.MAX_TRAILERS) throw chunkError('trailers too large');
          if (this.#trailerCr) {
            if (c !== LF) throw chunkError('trailer line not ended by CRLF');
            this.#trailerCr = false;
            if (this.#trailerLine === 0) {
              this.#state = 'done';
              return i;
            }
            this.#trailerLine = 0;
          } else if (c === CR) this.#trailerCr = true;
          else if (c === LF || (c < 0x20 && c !== 0x09) || c === 0x7f) throw chunkError('invalid trailer');
          else this.#trailerLine++;
          break;
        }
        case 'done':
          return i;
      }
    }
    return i;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

function chunkError(message: string): HttpParseError {
  return new HttpParseError(400, 'invalid-chunked-body', message);
}

function printable(text: string): string {
  const clipped = text.length > 80 ? `${text.slice(0, 80)}…` : text;
  return clipped.replace(/[^\x20-\x7e]/g, '?');
}

/** Thrown for a header the code was asked to send that would not be a valid header line. */
export class HeaderValueError extends Error {
  override readonly name = 'HeaderValueError';
}

/** The request line of a request to send: a token method and a target of visible ASCII only. */
export function requestLine(method: string, target: string): string {
  if (!SENDABLE_TOKENS.has(method)) checkToken(method, 'method');
  if (!TARGET.test(target)) throw new HeaderValueError(`invalid request target "${printable(target)}"`);
  return `${method} ${target} HTTP/1.1\r\n`;
}

/** A request target cannot break the request line. */
const TARGET = /^[\x21-\x7e]+$/;

/**
 * Appends `name: value` lines for `headers` to `out`. Names must be tokens and values must not
 * break the line; the result is sent as latin1, so values keep their bytes.
 */
export function serializeFields(out: string, headers: OutgoingHttpHeaders): string {
  let text = out;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (!SENDABLE_TOKENS.has(name)) checkToken(name, 'header name');
    if (Array.isArray(value)) {
      for (const v of value) text = fieldLine(text, name, v);
    } else text = fieldLine(text, name, typeof value === 'string' ? value : String(value));
  }
  return text;
}

/** Header names and methods already checked (bounded): the same few recur on every request. */
const SENDABLE_TOKENS = new Set<string>();

function checkToken(text: string, what: string): void {
  if (!TOKEN.test(text)) throw new HeaderValueError(`invalid ${what} "${printable(text)}"`);
  if (SENDABLE_TOKENS.size < 512) SENDABLE_TOKENS.add(text);
}

function fieldLine(out: string, name: string, value: string): string {
  if (value.includes('\n') || value.includes('\r') || value.includes('\0'))
    throw new HeaderValueError(`header ${name} has a line break or NUL`);
  return `${out}${name}: ${value}\r\n`;
}
