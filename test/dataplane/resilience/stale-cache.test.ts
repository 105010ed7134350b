import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import {
  ENTRY_OVERHEAD_BYTES,
  StaleCache,
  cacheKey,
  isStaleCacheable,
  parseVary,
  type CacheRequest,
  type CacheResponse,
} from '../../../src/dataplane/resilience/stale-cache.js';

const ok = (body: string | Buffer, headers: CacheResponse['headers'] = {}): CacheResponse => ({
  status: 200,
  headers,
  body: Buffer.isBuffer(body) ? body : Buffer.from(body),
});

const get = (pathWithQuery: string, headers: CacheRequest['headers'] = {}): CacheRequest => ({
  method: 'GET',
  authority: 'catalog',
  pathWithQuery,
  headers,
});

function cache(options: Partial<ConstructorParameters<typeof StaleCache>[0]> = {}) {
  const clock = new ManualClock();
  const c = new StaleCache({
    maxAgeMs: 60_000,
    maxEntries: 100,
    maxBytes: 1 << 20,
    maxEntryBytes: 64 << 10,
    clock,
    ...options,
  });
  return { clock, cache: c };
}

describe('stale cache', () => {
  it('evicts the least recently used entry beyond maxEntries', () => {
    const { cache: c } = cache({ maxEntries: 2 });
    c.put('a', ok('A'));
    c.put('b', ok('B'));
    assert.equal(c.get('a')?.entry.body.toString(), 'A'); // a is now the most recent
    c.put('c', ok('C'));
    assert.equal(c.get('b'), undefined);
    assert.equal(c.get('a')?.entry.body.toString(), 'A');
    assert.equal(c.get('c')?.entry.body.toString(), 'C');
    assert.deepEqual([c.size, c.stats().evicted], [2, 1]);
  });

  it('evicts least recently used entries beyond maxBytes and accounts bytes exactly', () => {
    const entryBytes = 1000 + 1 + ENTRY_OVERHEAD_BYTES; // body + key + overhead, no headers
    const { cache: c } = cache({ maxBytes: 2 * entryBytes + 10 });
    c.put('a', ok(Buffer.alloc(1000)));
    assert.equal(c.bytes, entryBytes);
    c.put('b', ok(Buffer.alloc(1000)));
    c.put('c', ok(Buffer.alloc(1000)));
    assert.equal(c.get('a'), undefined);
    assert.ok(c.get('b') && c.get('c'));
    assert.deepEqual([c.size, c.bytes], [2, 2 * entryBytes]);
    // Replacing an entry frees the old one's bytes.
    c.put('b', ok(Buffer.alloc(10)));
    assert.equal(c.bytes, entryBytes + 10 + 1 + ENTRY_OVERHEAD_BYTES);
    c.delete('b');
    c.delete('c');
    assert.deepEqual([c.size, c.bytes], [0, 0]);
  });

  it('does not store responses above maxEntryBytes, and drops the older entry they replace', () => {
    const { cache: c } = cache({ maxEntryBytes: 1024 });
    assert.equal(c.put('k', ok('small')), true);
    assert.equal(c.put('k', ok(Buffer.alloc(2000))), false);
    assert.equal(c.get('k'), undefined);
    assert.deepEqual([c.size, c.bytes, c.stats().tooLarge], [0, 0, 1]);
  });

  it('serves an entry up to maxAge old and never after', () => {
    const { cache: c, clock } = cache({ maxAgeMs: 5000 });
    c.put('k', ok('v'));
    clock.advance(5000);
    assert.equal(c.get('k')?.ageMs, 5000);
    clock.advance(1);
    assert.equal(c.get('k'), undefined);
    assert.deepEqual([c.size, c.bytes, c.stats().expired], [0, 0, 1]);
  });

  it('returns status, headers without hop-by-hop ones, body and age', () => {
    const { cache: c, clock } = cache();
    c.put('k', {
      status: 404,
      headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked', connection: 'close' },
      body: Buffer.from('nope'),
    });
    clock.advance(1234);
    const hit = c.get('k');
    assert.ok(hit);
    assert.equal(hit.ageMs, 1234);
    assert.equal(hit.entry.status, 404);
    assert.deepEqual(hit.entry.headers, { 'content-type': 'text/plain' });
    assert.equal(hit.entry.body.toString(), 'nope');
  });

  it('finds the variant a request selects through the remembered Vary', () => {
    const { cache: c } = cache();
    const gzip = get('/items', { 'accept-encoding': 'gzip' });
    const br = get('/items', { 'accept-encoding': 'br' });
    assert.equal(c.store(gzip, ok('gz', { vary: 'Accept-Encoding' })), true);
    assert.equal(c.lookup(gzip)?.entry.body.toString(), 'gz');
    assert.equal(c.lookup(br), undefined);
    assert.equal(c.lookup(get('/items')), undefined, 'no header is a different variant');
    assert.equal(c.store(br, ok('br', { vary: 'accept-encoding' })), true);
    assert.equal(c.lookup(br)?.entry.body.toString(), 'br');
    assert.equal(c.lookup(gzip)?.entry.body.toString(), 'gz');
    assert.equal(c.lookup(get('/other', { 'accept-encoding': 'gzip' })), undefined);
    assert.equal(c.size, 2);
  });

  it('never stores Vary: *, no-store, private, Set-Cookie, non-GET, errors or authorized requests', () => {
    const { cache: c } = cache();
    const cases: [CacheRequest, CacheResponse][] = [
      [get('/1'), ok('x', { vary: 'Accept, *' })],
      [get('/2'), ok('x', { 'cache-control': 'max-age=60, no-store' })],
      [get('/3'), ok('x', { 'cache-control': 'Private' })],
      [get('/4'), ok('x', { 'cache-control': 'private="x-user"' })],
      [get('/5'), ok('x', { 'set-cookie': ['a=1'] })],
      [get('/6'), ok('x', { 'cache-control': 'must-revalidate' })],
      [get('/7', { 'cache-control': 'no-store' }), ok('x')],
      [{ ...get('/8'), method: 'POST' }, ok('x')],
      [get('/9'), { ...ok('x'), status: 500 }],
      [get('/10'), { ...ok('x'), status: 206 }],
      [get('/11', { authorization: 'Bearer t' }), ok('x')],
    ];
    for (const [request, response] of cases) {
      assert.equal(c.store(request, response), false, request.pathWithQuery);
    }
    assert.equal(c.size, 0);
    // Authorized requests may be kept when the origin says the response is public.
    assert.equal(
      c.store(get('/12', { authorization: 'Bearer t' }), ok('x', { 'cache-control': 'public' })),
      true,
    );
    assert.equal(isStaleCacheable({ ...get('/'), method: 'HEAD' }, ok('')), true);
  });

  it('drops the stored entry when the origin turns a resource no-store', () => {
    const { cache: c } = cache();
    assert.equal(c.store(get('/p'), ok('old')), true);
    assert.equal(c.store(get('/p'), ok('new', { 'cache-control': 'no-store' })), false);
    assert.equal(c.lookup(get('/p')), undefined);
    assert.equal(c.size, 0);
  });

  it('reads its settings', () => {
    const c = StaleCache.fromSettings(
      { enabled: true, maxAge: '5m', maxEntries: 1000, maxBytes: '16MiB', maxEntryBytes: '256KiB' },
      new ManualClock(),
    );
    assert.deepEqual(
      [c.maxAgeMs, c.maxEntries, c.maxBytes, c.maxEntryBytes],
      [300_000, 1000, 16 << 20, 256 << 10],
    );
  });
});

describe('cacheKey', () => {
  const key = (headers: CacheRequest['headers'], vary?: string | string[]) =>
    cacheKey('GET', 'Catalog', '/items?page=2', headers, vary);

  it('includes method, authority (any case) and path with query', () => {
    assert.equal(
      cacheKey('GET', 'catalog', '/a', {}, undefined),
      cacheKey('GET', 'CATALOG', '/a', {}, undefined),
    );
    assert.notEqual(
      cacheKey('GET', 'catalog', '/a', {}, undefined),
      cacheKey('HEAD', 'catalog', '/a', {}, undefined),
    );
    assert.notEqual(
      cacheKey('GET', 'catalog', '/a?x=1', {}, undefined),
      cacheKey('GET', 'catalog', '/a', {}, undefined),
    );
    assert.notEqual(
      cacheKey('GET', 'catalog', '/a', {}, undefined),
      cacheKey('GET', 'orders', '/a', {}, undefined),
    );
  });

  it('ignores headers the Vary does not name and distinguishes those it does', () => {
    assert.equal(key({ accept: 'a' }), key({ accept: 'b' }));
    assert.notEqual(key({ accept: 'a' }, 'Accept'), key({ accept: 'b' }, 'Accept'));
    assert.equal(
      key({ accept: 'a', 'x-other': '1' }, 'accept'),
      key({ accept: 'a', 'x-other': '2' }, 'Accept'),
    );
    assert.notEqual(key({}, 'accept'), key({ accept: '' }, 'accept'), 'absent differs from empty');
  });

  it('normalises the Vary list: case, order, duplicates, repeated fields', () => {
    const headers = { accept: 'a', 'accept-language': 'de' };
    const expected = key(headers, 'Accept, Accept-Language');
    assert.equal(key(headers, 'accept-language,ACCEPT, accept'), expected);
    assert.equal(key(headers, ['Accept-Language', 'Accept']), expected);
    assert.deepEqual(parseVary(' Accept-Language ,, Accept '), ['accept', 'accept-language']);
  });

  it('cannot be delimiter-spoofed', () => {
    assert.notEqual(
      cacheKey('GET', 'catalog', '/a","b', {}, undefined),
      cacheKey('GET', 'catalog', '/a', { b: '' }, 'b'),
    );
  });

  it('is undefined for Vary: *', () => {
    assert.equal(key({}, '*'), undefined);
    assert.equal(parseVary('accept, *'), '*');
  });
});
