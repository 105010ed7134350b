import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import {
  IdempotencyStore,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  bodyFingerprint,
  idempotencyScope,
  parseIdempotencyKey,
} from '../../../src/dataplane/resilience/idempotency-store.js';

const SCOPE = idempotencyScope('POST', '/orders');
const FP = bodyFingerprint('{"item":1}');
const OTHER_FP = bodyFingerprint('{"item":2}');
const created = (body = '{"id":7}') => ({
  status: 201,
  headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
  body: Buffer.from(body),
});

function store(options: Partial<ConstructorParameters<typeof IdempotencyStore>[0]> = {}) {
  const clock = new ManualClock();
  return {
    clock,
    store: new IdempotencyStore({
      windowMs: 60_000,
      maxEntries: 100,
      maxEntryBytes: 1024,
      clock,
      ...options,
    }),
  };
}

describe('idempotency store', () => {
  it('new → in-progress for a concurrent duplicate → replay once completed', () => {
    const { store: s } = store();
    assert.deepEqual(s.begin(SCOPE, 'k1', FP), { state: 'new' });
    assert.deepEqual(s.begin(SCOPE, 'k1', FP), { state: 'in-progress' });
    assert.equal(s.complete(SCOPE, 'k1', FP, created()), true);
    const result = s.begin(SCOPE, 'k1', FP);
    assert.equal(result.state, 'replay');
    assert.equal(result.response.status, 201);
    assert.equal(result.response.truncated, false);
    assert.equal(result.response.body?.toString(), '{"id":7}');
    assert.deepEqual(result.response.headers, { 'content-type': 'application/json' });
    assert.deepEqual(s.stats(), {
      entries: 1,
      inProgress: 0,
      replays: 1,
      conflicts: 1,
      mismatches: 0,
      evicted: 0,
      evictedInProgress: 0,
    });
  });

  it('a reused key with another body is a mismatch, in flight or completed', () => {
    const { store: s } = store();
    s.begin(SCOPE, 'k', FP);
    assert.deepEqual(s.begin(SCOPE, 'k', OTHER_FP), { state: 'mismatch' });
    s.complete(SCOPE, 'k', FP, created());
    assert.deepEqual(s.begin(SCOPE, 'k', OTHER_FP), { state: 'mismatch' });
    assert.equal(
      s.complete(SCOPE, 'k', OTHER_FP, created('other')),
      false,
      'the other request cannot overwrite',
    );
    const replay = s.begin(SCOPE, 'k', FP);
    assert.equal(replay.state === 'replay' && replay.response.body?.toString(), '{"id":7}');
    assert.equal(s.stats().mismatches, 2);
  });

  it('scopes keys by method and path', () => {
    const { store: s } = store();
    s.begin(SCOPE, 'k', FP);
    assert.deepEqual(s.begin(idempotencyScope('POST', '/payments'), 'k', FP), { state: 'new' });
    assert.deepEqual(s.begin(idempotencyScope('PUT', '/orders'), 'k', FP), { state: 'new' });
    assert.equal(s.size, 3);
  });

  it('abandon lets a retry with the same key run again', () => {
    const { store: s } = store();
    s.begin(SCOPE, 'k', FP);
    assert.equal(s.abandon(SCOPE, 'k', OTHER_FP), false, 'not the owner');
    assert.equal(s.abandon(SCOPE, 'k', FP), true);
    assert.deepEqual(s.begin(SCOPE, 'k', FP), { state: 'new' });
    s.complete(SCOPE, 'k', FP, created());
    assert.equal(s.abandon(SCOPE, 'k', FP), false, 'a completed response is kept');
    assert.equal(s.begin(SCOPE, 'k', FP).state, 'replay');
  });

  it('remembers a response for the window after completion, then forgets it', () => {
    const { store: s, clock } = store({ windowMs: 10_000 });
    s.begin(SCOPE, 'k', FP);
    clock.advance(3000);
    s.complete(SCOPE, 'k', FP, created());
    clock.advance(9999);
    assert.equal(s.begin(SCOPE, 'k', FP).state, 'replay');
    clock.advance(1);
    assert.equal(s.size, 0);
    assert.deepEqual(s.begin(SCOPE, 'k', FP), { state: 'new' });
  });

  it('forgets a request still in flight after the window', () => {
    const { store: s, clock } = store({ windowMs: 10_000 });
    s.begin(SCOPE, 'k', FP);
    clock.advance(10_000);
    assert.deepEqual(s.begin(SCOPE, 'k', FP), { state: 'new' });
    assert.equal(s.stats().inProgress, 1);
  });

  it('keeps status and headers only of a response above maxEntryBytes, flagged truncated', () => {
    const { store: s } = store({ maxEntryBytes: 100 });
    s.begin(SCOPE, 'big', FP);
    s.complete(SCOPE, 'big', FP, created('x'.repeat(1000)));
    const replay = s.begin(SCOPE, 'big', FP);
    assert.equal(replay.state, 'replay');
    assert.deepEqual(
      [replay.response.status, replay.response.truncated, replay.response.body],
      [201, true, undefined],
    );
    assert.equal(replay.response.headers['content-type'], 'application/json');
  });

  it('stays within maxEntries, forgetting the oldest first', () => {
    const { store: s } = store({ maxEntries: 3 });
    for (let i = 0; i < 1000; i++) {
      assert.deepEqual(s.begin(SCOPE, `k${i}`, FP), { state: 'new' });
      s.complete(SCOPE, `k${i}`, FP, created());
    }
    assert.equal(s.size, 3);
    assert.equal(s.begin(SCOPE, 'k999', FP).state, 'replay');
    assert.equal(s.begin(SCOPE, 'k997', FP).state, 'replay');
    assert.deepEqual(s.begin(SCOPE, 'k996', FP), { state: 'new' });
    const stats = s.stats();
    assert.equal(stats.evicted, 998);
    assert.equal(stats.evictedInProgress, 0);
  });

  it('counts in-flight keys it had to forget, and remembers their response when it comes', () => {
    const { store: s } = store({ maxEntries: 2 });
    s.begin(SCOPE, 'a', FP);
    s.begin(SCOPE, 'b', FP);
    s.begin(SCOPE, 'c', FP);
    assert.deepEqual([s.size, s.stats().inProgress, s.stats().evictedInProgress], [2, 2, 1]);
    assert.equal(s.complete(SCOPE, 'a', FP, created()), true);
    assert.equal(s.begin(SCOPE, 'a', FP).state, 'replay');
    assert.equal(s.stats().inProgress, 1, 'b was forgotten to make room for a');
  });

  it('reads its settings', () => {
    const s = IdempotencyStore.fromSettings(
      { enabled: true, window: '10m', maxEntries: 10_000, maxEntryBytes: '64KiB' },
      new ManualClock(),
    );
    assert.deepEqual([s.windowMs, s.maxEntries, s.maxEntryBytes], [600_000, 10_000, 65_536]);
  });
});

describe('Idempotency-Key header', () => {
  it('accepts one printable key, trimmed', () => {
    assert.equal(parseIdempotencyKey(undefined), undefined);
    assert.equal(
      parseIdempotencyKey(' 8e03978e-40d5-43e8-bc93-6894a57f9324 '),
      '8e03978e-40d5-43e8-bc93-6894a57f9324',
    );
    assert.equal(parseIdempotencyKey(['"abc"']), '"abc"');
    assert.equal(
      parseIdempotencyKey('x'.repeat(MAX_IDEMPOTENCY_KEY_LENGTH))?.length,
      MAX_IDEMPOTENCY_KEY_LENGTH,
    );
  });

  it('rejects repeated, empty, overlong and non-printable keys', () => {
    for (const value of [
      ['a', 'b'],
      [],
      '',
      '   ',
      'x'.repeat(MAX_IDEMPOTENCY_KEY_LENGTH + 1),
      'a\tb',
      'ключ',
    ]) {
      assert.throws(
        () => parseIdempotencyKey(value),
        { code: 'ISTHMUS_E_BAD_HEADER' },
        JSON.stringify(value),
      );
    }
  });

  it('fingerprints bodies with SHA-256', () => {
    assert.equal(bodyFingerprint('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(bodyFingerprint(Buffer.from('abc')), bodyFingerprint('abc'));
  });
});
