import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  ChunkedDecoder,
  findHeadEnd,
  HeaderValueError,
  HttpParseError,
  keepAlive,
  parseRequestHead,
  parseResponseHead,
  requestFraming,
  responseFraming,
  serializeFields,
  skipLeadingEmptyLines,
  type RequestHead,
  type ResponseHead,
} from '../../../src/protocol/http1/parse.js';

const bytes = (text: string) => Buffer.from(text, 'latin1');

/** Parses a whole request head given as text (the head must be complete). */
function req(text: string): RequestHead {
  const buf = bytes(text);
  const end = findHeadEnd(buf, 0, 0);
  assert.ok(end > 0, 'the head is complete');
  return parseRequestHead(buf, 0, end);
}

function res(text: string): ResponseHead {
  const buf = bytes(text);
  const end = findHeadEnd(buf, 0, 0);
  assert.ok(end > 0, 'the head is complete');
  return parseResponseHead(buf, 0, end);
}

/** Asserts `fn` throws an HttpParseError with this status and code. */
function refuses(fn: () => unknown, status: number, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof HttpParseError, `expected HttpParseError, got ${String(err)}`);
    assert.equal(err.status, status, `status for ${err.message}`);
    assert.equal(err.code, code, `code for ${err.message}`);
    return true;
  });
}

const GET = (headers = 'Host: a\r\n') => `GET / HTTP/1.1\r\n${headers}\r\n`;

describe('h1 parse: findHeadEnd', () => {
  it('returns the index just past the empty line, or -1 when more bytes are needed', () => {
    const head = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
    assert.equal(findHeadEnd(bytes(head), 0, 0), head.length);
    assert.equal(findHeadEnd(bytes(`${head}BODY`), 0, 0), head.length);
    assert.equal(findHeadEnd(bytes('GET / HTTP/1.1\r\nHost: a\r\n'), 0, 0), -1);
    assert.equal(findHeadEnd(bytes('GET / HTTP/1.1\r\nHost: a\r\n\r'), 0, 0), -1);
    assert.equal(findHeadEnd(bytes('GET / HTTP/1.1'), 0, 0), -1);
    // A head that starts later in the buffer (after a previous pipelined request).
    const two = `${head}${head}`;
    assert.equal(findHeadEnd(bytes(two), head.length, 0), two.length);
  });

  it('finds the end when the head arrives split at any point, resuming where it stopped', () => {
    const head = 'GET /x HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n';
    const all = bytes(`${head}rest`);
    for (let cut = 1; cut < head.length; cut++) {
      const first = all.subarray(0, cut);
      assert.equal(findHeadEnd(first, 0, 0), -1, `cut at ${cut}`);
      // Resume the way the server and client do: from three bytes before the old end.
      const from = Math.max(0, first.length - 3);
      assert.equal(findHeadEnd(all, 0, from), head.length, `cut at ${cut}`);
    }
    // In many small pushes.
    let from = 0;
    let end = -1;
    for (let n = 1; n <= all.length && end < 0; n++) {
      end = findHeadEnd(all.subarray(0, n), 0, from);
      from = Math.max(0, n - 3);
    }
    assert.equal(end, head.length);
  });

  it('refuses a bare LF anywhere in the head', () => {
    refuses(() => findHeadEnd(bytes('GET / HTTP/1.1\nHost: a\r\n\r\n'), 0, 0), 400, 'bare-lf');
    refuses(() => findHeadEnd(bytes('GET / HTTP/1.1\r\nHost: a\n\r\n'), 0, 0), 400, 'bare-lf');
    refuses(() => findHeadEnd(bytes('GET / HTTP/1.1\r\nHost: a\r\n\n'), 0, 0), 400, 'bare-lf');
    refuses(() => findHeadEnd(bytes('\nGET / HTTP/1.1\r\n\r\n'), 0, 0), 400, 'bare-lf');
    // Even when the bare LF arrives in a later push.
    const all = bytes('GET / HTTP/1.1\r\nHost: a\n\r\n');
    assert.equal(findHeadEnd(all.subarray(0, 20), 0, 0), -1);
    refuses(() => findHeadEnd(all, 0, 17), 400, 'bare-lf');
  });

  it('skips empty lines before a request', () => {
    assert.equal(skipLeadingEmptyLines(bytes('\r\n\r\nGET'), 0), 4);
    assert.equal(skipLeadingEmptyLines(bytes('GET'), 0), 0);
    assert.equal(skipLeadingEmptyLines(bytes('xx\r\nGET'), 2), 4);
    // A lone CR may be the start of a CRLF still to come: not skipped.
    assert.equal(skipLeadingEmptyLines(bytes('\r\n\r'), 0), 2);
  });
});

describe('h1 parse: request line', () => {
  it('parses method, target and version', () => {
    const h = req('POST /a/b?c=d&e HTTP/1.1\r\nHost: example.com\r\n\r\n');
    assert.equal(h.method, 'POST');
    assert.equal(h.target, '/a/b?c=d&e');
    assert.equal(h.version, '1.1');
    assert.deepEqual({ ...h.headers }, { host: 'example.com' });
    const abs = req('GET http://example.com:8080/x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n');
    assert.equal(abs.target, 'http://example.com:8080/x');
    const auth = req('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assert.equal(auth.method, 'CONNECT');
    assert.equal(auth.target, 'example.com:443');
    assert.equal(req('GET * HTTP/1.0\r\n\r\n').version, '1.0');
  });

  it('refuses methods that are not tokens', () => {
    for (const method of ['G(T', 'GE@T', 'G"T', 'GET\x01', 'GÉT', 'G{T'])
      refuses(() => req(`${method} / HTTP/1.1\r\nHost: a\r\n\r\n`), 400, 'invalid-request-line');
  });

  it('refuses spaces, controls and non-ASCII in the target', () => {
    for (const target of ['/a b', '/a\x01b', '/a\tb', '/a\x7fb', '/caf\xe9', '/a\x00'])
      refuses(() => req(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`), 400, 'invalid-request-line');
  });

  it('refuses malformed request lines with 400', () => {
    for (const line of [
      'GET  / HTTP/1.1',
      ' / HTTP/1.1',
      'GET / HTTP/1.1 ',
      'GET /',
      'GET / ',
      'GET',
      'GET / HTTP/1.10',
      'hello world',
    ])
      refuses(() => req(`${line}\r\nHost: a\r\n\r\n`), 400, 'invalid-request-line');
    for (const version of ['HTTX/1.1', 'http/1.1', 'HTTP/1.x', 'HTTP-1.1', 'HTTP/1,1'])
      refuses(() => req(`GET / ${version}\r\nHost: a\r\n\r\n`), 400, 'invalid-version');
  });

  it('answers 505 to other HTTP versions', () => {
    for (const version of ['HTTP/2.0', 'HTTP/0.9', 'HTTP/1.2', 'HTTP/3.0'])
      refuses(() => req(`GET / ${version}\r\nHost: a\r\n\r\n`), 505, 'unsupported-version');
  });
});

describe('h1 parse: header fields', () => {
  it('lower-cases names and trims optional whitespace around values', () => {
    const h = req(GET('HOST: a\r\nX-Thing:   v  a l  \t\r\nEmpty:\r\nTabbed:\tx\ty\r\nLatin: caf\xe9\r\n'));
    assert.equal(h.headers.host, 'a');
    assert.equal(h.headers['x-thing'], 'v  a l');
    assert.equal(h.headers.empty, '');
    assert.equal(h.headers.tabbed, 'x\ty');
    assert.equal(h.headers.latin, 'caf\xe9');
  });

  it('refuses whitespace between the name and the colon', () => {
    refuses(() => req(GET('Host : a\r\n')), 400, 'invalid-header-name');
    refuses(() => req(GET('Host: a\r\nX-A\t: b\r\n')), 400, 'invalid-header-name');
  });

  it('refuses other invalid names and lines without a name', () => {
    refuses(() => req(GET('Host: a\r\nX(A): b\r\n')), 400, 'invalid-header-name');
    refuses(() => req(GET('Host: a\r\nX\xe9: b\r\n')), 400, 'invalid-header-name');
    refuses(() => req(GET('Host: a\r\n: b\r\n')), 400, 'invalid-header-line');
    refuses(() => req(GET('Host: a\r\nnocolon\r\n')), 400, 'invalid-header-line');
  });

  it('refuses obsolete line folding', () => {
    refuses(() => req(GET('Host: a\r\nX-A: b\r\n c\r\n')), 400, 'obsolete-line-folding');
    refuses(() => req(GET('Host: a\r\nX-A: b\r\n\tc\r\n')), 400, 'obsolete-line-folding');
  });

  it('refuses NUL, CR and other controls in values', () => {
    refuses(() => req(GET('Host: a\r\nX-A: b\x00c\r\n')), 400, 'invalid-header-value');
    refuses(() => req(GET('Host: a\r\nX-A: b\rc\r\n')), 400, 'invalid-header-value');
    refuses(() => req(GET('Host: a\r\nX-A: b\x7fc\r\n')), 400, 'invalid-header-value');
    refuses(() => req(GET('Host: a\r\nX-A: b\x1bc\r\n')), 400, 'invalid-header-value');
    // A CR right before the line's CRLF is a control too, not whitespace.
    refuses(() => req(GET('Host: a\r\nX-A: b\r\r\n')), 400, 'invalid-header-value');
  });

  it('joins repeated fields with ", ", cookies with "; ", and keeps set-cookie as a list', () => {
    const h = req(GET('Host: a\r\nAccept: x\r\naccept: y\r\nACCEPT: z\r\nCookie: a=1\r\ncookie: b=2\r\n'));
    assert.equal(h.headers.accept, 'x, y, z');
    assert.equal(h.headers.cookie, 'a=1; b=2');
    const r = res(
      'HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nset-cookie: b=2, c\r\nVary: a\r\nVary: b\r\n\r\n',
    );
    assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2, c']);
    assert.equal(r.headers.vary, 'a, b');
    assert.deepEqual(res('HTTP/1.1 200 OK\r\nSet-Cookie: one\r\n\r\n').headers['set-cookie'], ['one']);
  });

  it('keeps fields named like Object.prototype members intact', () => {
    const h = req(GET('Host: a\r\nConstructor: x\r\ntoString: y\r\nhasOwnProperty: z\r\n'));
    assert.equal(h.headers.constructor, 'x');
    assert.equal(h.headers.tostring, 'y');
    assert.equal(h.headers.hasownproperty, 'z');
  });

  it('needs exactly one Host in HTTP/1.1', () => {
    refuses(() => req('GET / HTTP/1.1\r\nX: y\r\n\r\n'), 400, 'missing-host');
    refuses(() => req('GET / HTTP/1.1\r\n\r\n'), 400, 'missing-host');
    refuses(() => req(GET('Host: a\r\nHost: b\r\n')), 400, 'repeated-host');
    refuses(() => req(GET('Host: a\r\nhost: a\r\n')), 400, 'repeated-host');
    refuses(() => req('GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n'), 400, 'repeated-host');
    assert.equal(req('GET / HTTP/1.0\r\n\r\n').headers.host, undefined);
  });
});

describe('h1 parse: status line', () => {
  it('parses status, reason and version', () => {
    const r = res('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    assert.equal(r.status, 404);
    assert.equal(r.reason, 'Not Found');
    assert.equal(r.version, '1.1');
    assert.equal(r.headers['content-length'], '0');
    assert.equal(res('HTTP/1.0 204\r\n\r\n').reason, '');
    assert.equal(res('HTTP/1.0 204\r\n\r\n').version, '1.0');
    assert.equal(res('HTTP/1.1 200 \r\n\r\n').reason, '');
    assert.equal(res('HTTP/1.1 299 any\tthing \xe9\r\n\r\n').reason, 'any\tthing \xe9');
  });

  it('refuses malformed status lines with 502', () => {
    for (const line of [
      'HTTP/1.1 2000 OK',
      'HTTP/1.1 20 OK',
      'HTTP/1.1 abc OK',
      'HTTP/1.1 099 Low',
      'HTTP/1.1  200 OK',
      'HTTP/1.1',
      'HTTP/1.1 200 O\x01K',
    ])
      refuses(() => res(`${line}\r\n\r\n`), 502, 'invalid-status-line');
    assert.throws(
      () => res('SSH-2.0-OpenSSH_9.0\r\n\r\n'),
      (e: unknown) => e instanceof HttpParseError && e.status === 502,
    );
    assert.throws(
      () => res('HTTP/2.0 200 OK\r\n\r\n'),
      (e: unknown) => e instanceof HttpParseError && e.status === 502,
    );
  });

  it('refuses malformed response fields', () => {
    const code = (c: string) => (e: unknown) => e instanceof HttpParseError && e.code === c;
    assert.throws(() => res('HTTP/1.1 200 OK\r\nX : y\r\n\r\n'), code('invalid-header-name'));
    assert.throws(() => res('HTTP/1.1 200 OK\r\nX: y\x00\r\n\r\n'), code('invalid-header-value'));
    assert.throws(() => res('HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n'), code('obsolete-line-folding'));
  });
});

describe('h1 parse: request framing', () => {
  const framing = (headers: string, version = '1.1') =>
    requestFraming(req(`POST / HTTP/${version}\r\nHost: a\r\n${headers}\r\n`));

  it('reads Content-Length and chunked', () => {
    assert.deepEqual(framing(''), { kind: 'none' });
    assert.deepEqual(framing('Content-Length: 0\r\n'), { kind: 'none' });
    assert.deepEqual(framing('Content-Length: 42\r\n'), { kind: 'length', length: 42 });
    assert.deepEqual(framing('Content-Length: 007\r\n'), { kind: 'length', length: 7 });
    assert.deepEqual(framing('Content-Length: 5\r\n', '1.0'), { kind: 'length', length: 5 });
    assert.deepEqual(framing('Transfer-Encoding: chunked\r\n'), { kind: 'chunked' });
    assert.deepEqual(framing('Transfer-Encoding: Chunked\r\n'), { kind: 'chunked' });
    assert.deepEqual(framing('Content-Length: 999999999999999\r\n'), {
      kind: 'length',
      length: 999999999999999,
    });
  });

  it('refuses Transfer-Encoding with Content-Length, and Transfer-Encoding in HTTP/1.0', () => {
    refuses(() => framing('Transfer-Encoding: chunked\r\nContent-Length: 5\r\n'), 400, 'conflicting-framing');
    refuses(() => framing('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n'), 400, 'conflicting-framing');
    refuses(() => framing('Transfer-Encoding: chunked\r\n', '1.0'), 400, 'conflicting-framing');
  });

  it('answers 501 to codings before chunked and 400 when chunked is not last', () => {
    refuses(() => framing('Transfer-Encoding: gzip, chunked\r\n'), 501, 'unsupported-transfer-encoding');
    refuses(
      () => framing('Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n'),
      501,
      'unsupported-transfer-encoding',
    );
    refuses(() => framing('Transfer-Encoding: chunked, gzip\r\n'), 400, 'invalid-transfer-encoding');
    refuses(() => framing('Transfer-Encoding: gzip\r\n'), 400, 'invalid-transfer-encoding');
    refuses(() => framing('Transfer-Encoding: \r\n'), 400, 'invalid-transfer-encoding');
    refuses(() => framing('Transfer-Encoding: xchunked\r\n'), 400, 'invalid-transfer-encoding');
    // chunked twice is never acceptable.
    assert.throws(
      () => framing('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n'),
      (e: unknown) => e instanceof HttpParseError && e.status >= 400,
    );
  });

  it('accepts Content-Length lists of one value and refuses different ones', () => {
    assert.deepEqual(framing('Content-Length: 5, 5\r\n'), { kind: 'length', length: 5 });
    assert.deepEqual(framing('Content-Length: 5\r\nContent-Length: 5\r\n'), { kind: 'length', length: 5 });
    refuses(() => framing('Content-Length: 5, 6\r\n'), 400, 'conflicting-content-length');
    refuses(() => framing('Content-Length: 5\r\nContent-Length: 6\r\n'), 400, 'conflicting-content-length');
    refuses(() => framing('Content-Length: 5,\r\n'), 400, 'conflicting-content-length');
  });

  it('refuses Content-Length values that are not plain digits', () => {
    for (const v of ['abc', '-1', '+5', '0x5', '5.0', '1e3', '5 5', '', '1234567890123456'])
      refuses(() => framing(`Content-Length: ${v}\r\n`), 400, 'invalid-content-length');
  });
});

describe('h1 parse: response framing', () => {
  const head = (status: number, headers: string) => res(`HTTP/1.1 ${status} X\r\n${headers}\r\n`);

  it('has no body for HEAD, 1xx, 204 and 304 whatever the headers say', () => {
    assert.deepEqual(responseFraming(head(200, 'Content-Length: 10\r\n'), 'HEAD'), { kind: 'none' });
    assert.deepEqual(responseFraming(head(200, 'Transfer-Encoding: chunked\r\n'), 'HEAD'), { kind: 'none' });
    assert.deepEqual(responseFraming(head(204, 'Content-Length: 10\r\n'), 'GET'), { kind: 'none' });
    assert.deepEqual(responseFraming(head(304, 'Content-Length: 10\r\n'), 'GET'), { kind: 'none' });
    assert.deepEqual(responseFraming(head(100, ''), 'GET'), { kind: 'none' });
    assert.deepEqual(responseFraming(head(103, 'Link: </a>\r\n'), 'GET'), { kind: 'none' });
  });

  it('reads chunked, Content-Length, and otherwise delimits by close', () => {
    assert.deepEqual(responseFraming(head(200, 'Transfer-Encoding: chunked\r\n'), 'GET'), {
      kind: 'chunked',
    });
    // Transfer-Encoding wins over Content-Length.
    assert.deepEqual(
      responseFraming(head(200, 'Transfer-Encoding: chunked\r\nContent-Length: 3\r\n'), 'GET'),
      {
        kind: 'chunked',
      },
    );
    assert.deepEqual(responseFraming(head(200, 'Content-Length: 10\r\n'), 'GET'), {
      kind: 'length',
      length: 10,
    });
    assert.deepEqual(responseFraming(head(200, 'Content-Length: 0\r\n'), 'GET'), { kind: 'none' });
    assert.deepEqual(responseFraming(head(200, 'Content-Length: 4, 4\r\n'), 'POST'), {
      kind: 'length',
      length: 4,
    });
    assert.deepEqual(responseFraming(head(200, ''), 'GET'), { kind: 'close' });
    assert.deepEqual(responseFraming(head(404, ''), 'POST'), { kind: 'close' });
    // A coding the client cannot undo: the body runs to the close.
    assert.deepEqual(responseFraming(head(200, 'Transfer-Encoding: gzip\r\n'), 'GET'), { kind: 'close' });
    assert.deepEqual(responseFraming(head(200, 'Transfer-Encoding: gzip, chunked\r\n'), 'GET'), {
      kind: 'close',
    });
  });

  it('refuses a bad Content-Length with 502', () => {
    refuses(() => responseFraming(head(200, 'Content-Length: x\r\n'), 'GET'), 502, 'invalid-content-length');
    refuses(
      () => responseFraming(head(200, 'Content-Length: 1, 2\r\n'), 'GET'),
      502,
      'conflicting-content-length',
    );
  });
});

describe('h1 parse: keepAlive', () => {
  it('follows the version default and the Connection header', () => {
    assert.equal(keepAlive('1.1', {}), true);
    assert.equal(keepAlive('1.0', {}), false);
    assert.equal(keepAlive('1.0', { connection: 'keep-alive' }), true);
    assert.equal(keepAlive('1.0', { connection: 'Keep-Alive' }), true);
    assert.equal(keepAlive('1.1', { connection: 'close' }), false);
    assert.equal(keepAlive('1.1', { connection: 'CLOSE' }), false);
    assert.equal(keepAlive('1.0', { connection: 'close' }), false);
    assert.equal(keepAlive('1.1', { connection: 'upgrade, close' }), false);
    assert.equal(keepAlive('1.1', { connection: 'keep-alive, close' }), false);
    assert.equal(keepAlive('1.1', { connection: 'upgrade' }), true);
    assert.equal(keepAlive('1.0', { connection: 'upgrade' }), false);
    assert.equal(keepAlive('1.0', { connection: 'te, Keep-Alive' }), true);
    assert.equal(keepAlive('1.1', { connection: '  close ' }), false);
  });
});

/** Feeds `pieces` to a decoder; returns the data and the absolute offset where the body ended. */
function decode(pieces: Buffer[]): { data: Buffer; end: number; done: boolean } {
  const d = new ChunkedDecoder();
  const out: Buffer[] = [];
  let offset = 0;
  let end = -1;
  for (const p of pieces) {
    const wasDone = d.done;
    const stop = d.push(p, 0, (c) => out.push(Buffer.from(c)));
    if (wasDone) assert.equal(stop, 0, 'nothing is consumed after the body');
    else if (d.done) end = offset + stop;
    else assert.equal(stop, p.length, 'everything is consumed before the end');
    offset += p.length;
  }
  return { data: Buffer.concat(out), end, done: d.done };
}

function decodeText(text: string): { data: string; end: number; done: boolean } {
  const r = decode([bytes(text)]);
  return { data: r.data.toString('latin1'), end: r.end, done: r.done };
}

describe('h1 parse: ChunkedDecoder', () => {
  it('decodes chunks and reports where the body ended', () => {
    const body = '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
    assert.deepEqual(decodeText(`${body}GET /next`), { data: 'hello world', end: body.length, done: true });
    assert.deepEqual(decodeText('0\r\n\r\n'), { data: '', end: 5, done: true });
    assert.deepEqual(
      decodeText('A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n').data,
      '0123456789abcdefghij',
    );
    assert.deepEqual(decodeText('00005\r\nhello\r\n000\r\n\r\n').data, 'hello');
  });

  it('stops partway and continues on the next push', () => {
    const d = new ChunkedDecoder();
    const got: string[] = [];
    const on = (c: Buffer) => got.push(c.toString('latin1'));
    assert.equal(d.push(bytes('5\r\nhe'), 0, on), 5);
    assert.equal(d.done, false);
    assert.equal(d.push(bytes('xxllo\r\n0\r\n'), 2, on), 10);
    assert.equal(d.done, false);
    assert.equal(d.push(bytes('\r\nZZ'), 0, on), 2);
    assert.equal(d.done, true);
    assert.equal(d.push(bytes('ZZ'), 0, on), 0);
    assert.equal(got.join(''), 'hello');
  });

  it('skips chunk extensions and drops trailers', () => {
    const body =
      '5;name=value;q="a b"\r\nhello\r\n3 ; x\r\nabc\r\n0;last\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n';
    assert.deepEqual(decodeText(`${body}after`), { data: 'helloabc', end: body.length, done: true });
    const tab = '2\t;ext\r\nhi\r\n0\r\n\r\n';
    assert.deepEqual(decodeText(tab), { data: 'hi', end: tab.length, done: true });
  });

  const bad = (text: string, message: RegExp) =>
    assert.throws(
      () => decodeText(text),
      (e: unknown) =>
        e instanceof HttpParseError &&
        e.status === 400 &&
        e.code === 'invalid-chunked-body' &&
        message.test(e.message),
    );

  it('refuses chunk data not followed by CRLF', () => {
    bad('5\r\nhelloX\r\n0\r\n\r\n', /not followed by CRLF/);
    bad('5\r\nhello\rX0\r\n\r\n', /not followed by CRLF/);
    bad('5\r\nhello\n0\r\n\r\n', /not followed by CRLF/);
    bad('3\r\nhello\r\n0\r\n\r\n', /not followed by CRLF/);
  });

  it('refuses bad sizes and size lines', () => {
    bad('G\r\nhello\r\n', /size missing/);
    bad('\r\n', /size missing/);
    bad('-5\r\nhello\r\n', /size missing/);
    bad('5X\r\nhello\r\n', /invalid chunk size/);
    bad('0x5\r\nhello\r\n', /invalid chunk size/);
    bad('5\nhello\r\n', /invalid chunk size/);
    bad('5\rhello\r\n', /not ended by CRLF/);
    bad('ffffffffffffff\r\n', /too large/);
    bad('00000000000005\r\nhello\r\n', /too large/);
    bad('5;a\nb\r\nhello\r\n', /extension/);
    bad('5;a\x00\r\nhello\r\n', /extension/);
    bad(`5;${'x'.repeat(ChunkedDecoder.MAX_LINE + 1)}\r\nhello\r\n`, /extension too long/);
    // Thirteen digits are still accepted (the size may not be reached, but it parses).
    const d = new ChunkedDecoder();
    assert.doesNotThrow(() => d.push(bytes('0000000000005\r\nhel'), 0, () => {}));
  });

  it('refuses malformed and oversized trailers', () => {
    bad('0\r\nX: 1\nY: 2\r\n\r\n', /invalid trailer/);
    bad('0\r\nX: 1\r\r\n', /not ended by CRLF/);
    bad('0\r\nX: \x01\r\n\r\n', /invalid trailer/);
    bad(`0\r\nX: ${'a'.repeat(ChunkedDecoder.MAX_TRAILERS)}\r\n\r\n`, /trailers too large/);
    // Many small trailer lines count together.
    bad(`0\r\n${'X: 1234567890\r\n'.repeat(ChunkedDecoder.MAX_TRAILERS / 10)}\r\n`, /trailers too large/);
    // Just under the bound is fine.
    const ok = `0\r\nX: ${'a'.repeat(ChunkedDecoder.MAX_TRAILERS - 10)}\r\n\r\n`;
    assert.equal(decodeText(ok).done, true);
  });

  it('decodes any body, framed in any chunk sizes and fed in any pieces, stopping at its end', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        fc.boolean(),
        fc.uint8Array({ maxLength: 40 }),
        (raw, sizes, cuts, withExtensions, withTrailers, extra) => {
          const body = Buffer.from(raw);
          const parts: Buffer[] = [];
          let at = 0;
          let k = 0;
          while (at < body.length) {
            const size = Math.min(sizes[k++ % sizes.length] as number, body.length - at);
            const ext = withExtensions ? `;n${k}=v` : '';
            const hex = size.toString(16);
            parts.push(bytes(`${k % 2 === 0 ? hex : hex.toUpperCase()}${ext}\r\n`));
            parts.push(body.subarray(at, at + size), bytes('\r\n'));
            at += size;
          }
          parts.push(bytes(withExtensions ? '0;end\r\n' : '0\r\n'));
          if (withTrailers) parts.push(bytes('X-Sum: 1\r\nY: two\r\n'));
          parts.push(bytes('\r\n'));
          const encoded = Buffer.concat(parts);
          const wire = Buffer.concat([encoded, Buffer.from(extra)]);
          const pieces: Buffer[] = [];
          let from = 0;
          let c = 0;
          while (from < wire.length) {
            const n = cuts[c++ % cuts.length] as number;
            pieces.push(wire.subarray(from, from + n));
            from += n;
          }
          const r = decode(pieces);
          assert.equal(r.done, true);
          assert.ok(r.data.equals(body), 'the body decodes to the original');
          assert.equal(r.end, encoded.length, 'the end is reported just past the last chunk');
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('h1 parse: serializeFields', () => {
  it('emits name: value lines, arrays as repeated lines, and skips undefined', () => {
    const text = serializeFields('HTTP/1.1 200 OK\r\n', {
      'content-type': 'text/plain',
      'content-length': 5,
      'set-cookie': ['a=1', 'b=2'],
      'x-missing': undefined,
      'x-latin': 'caf\xe9',
      'x-empty': '',
    });
    assert.equal(
      text,
      'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-latin: caf\xe9\r\nx-empty: \r\n',
    );
  });

  it('refuses CR, LF and NUL in values, in lists too', () => {
    for (const value of ['a\r\nX-Injected: 1', 'a\rb', 'a\nb', 'a\0b', '\r\n'])
      assert.throws(() => serializeFields('', { 'x-a': value }), HeaderValueError);
    assert.throws(() => serializeFields('', { 'set-cookie': ['ok', 'bad\r\nx: y'] }), HeaderValueError);
  });

  it('refuses names that are not tokens', () => {
    for (const name of ['', 'a b', 'a:b', 'a\r\nb', 'caf\xe9', 'a(b)', 'x\0'])
      assert.throws(() => serializeFields('', { [name]: 'v' }), HeaderValueError, JSON.stringify(name));
  });
});
