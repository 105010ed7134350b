/**
 * The KvStore contract as tests: every implementation (SQLite, etcd) runs this same suite, so
 * code above the interface can rely on identical behaviour from both.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isIsthmusError } from '../../../src/core/errors.js';
import type { KvEntry, KvStore, KvWatchEvent } from '../../../src/controlplane/store/kv.js';

export interface ConformanceOptions {
  /**
   * Opens a second instance over the same data, as another process would; omitted for stores
   * that only one instance can open (SQLite).
   */
  openPeer?: (store: KvStore) => Promise<KvStore>;
  /** A new store is at revision 0 (SQLite); etcd's revision is cluster-wide and only grows. */
  startsAtZero?: boolean;
}

/** A watch that records what it delivered, with a way to wait for more. */
export interface Recorder {
  batches: KvWatchEvent[][];
  errors: Error[];
  cancel(): void;
  /** Waits until `count` batches arrived (or fails after `timeoutMs`). */
  untilBatches(count: number, timeoutMs?: number): Promise<KvWatchEvent[][]>;
  /** Waits until an error arrived. */
  untilError(timeoutMs?: number): Promise<Error>;
}

export function record(store: KvStore, prefix: string, afterRevision: number): Recorder {
  const batches: KvWatchEvent[][] = [];
  const errors: Error[] = [];
  const cancel = store.watch(
    prefix,
    afterRevision,
    (events) => batches.push(events),
    (err) => errors.push(err),
  );
  const until = async (done: () => boolean, what: string, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline)
        assert.fail(
          `timed out after ${timeoutMs} ms waiting for ${what}; got batches ${JSON.stringify(batches)}, ` +
            `errors ${errors.map((e) => e.message).join('; ') || 'none'}`,
        );
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return {
    batches,
    errors,
    cancel,
    async untilBatches(count, timeoutMs = 5_000) {
      await until(() => batches.length >= count || errors.length > 0, `${count} batches`, timeoutMs);
      assert.deepEqual(errors, [], 'the watch failed');
      return batches;
    },
    async untilError(timeoutMs = 5_000) {
      await until(() => errors.length > 0, 'an error', timeoutMs);
      return errors[0]!;
    },
  };
}

/** Lets asynchronous deliveries that are (wrongly) pending arrive before asserting there are none. */
const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

/** Keys in byte order of their UTF-8 encoding: the order `range` promises (not JS string order). */
const byteOrder = (keys: string[]) =>
  [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

const summary = (entries: KvEntry[]) => entries.map((e) => [e.key, e.value]);

export function kvConformance(
  name: string,
  factory: () => Promise<KvStore>,
  options: ConformanceOptions = {},
): void {
  const withStore = async (fn: (store: KvStore) => Promise<void>) => {
    const store = await factory();
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  };

  describe(`KvStore conformance: ${name}`, () => {
    it('a new store is empty', () =>
      withStore(async (s) => {
        assert.equal(await s.get('/missing'), undefined);
        assert.deepEqual(await s.range(''), []);
        const rev = await s.revision();
        assert.ok(Number.isSafeInteger(rev) && rev >= 0, `revision ${rev}`);
        if (options.startsAtZero) assert.equal(rev, 0);
      }));

    it('each txn that writes advances the revision by exactly one; its keys get that revision', () =>
      withStore(async (s) => {
        const r0 = await s.revision();
        assert.deepEqual(await s.txn({ put: [{ key: '/a', value: 1 }] }), { ok: true, revision: r0 + 1 });
        assert.equal(await s.revision(), r0 + 1);
        const r = await s.txn({
          put: [
            { key: '/b', value: 2 },
            { key: '/c', value: 3 },
          ],
          delete: ['/a'],
        });
        assert.deepEqual(r, { ok: true, revision: r0 + 2 });
        assert.equal(await s.revision(), r0 + 2);
        assert.equal((await s.get('/b'))?.modRevision, r0 + 2);
        assert.equal((await s.get('/c'))?.modRevision, r0 + 2);
        assert.equal(await s.get('/a'), undefined);
      }));

    it('createRevision survives updates but not a delete; modRevision follows every write', () =>
      withStore(async (s) => {
        const r1 = (await s.txn({ put: [{ key: '/k', value: 'one' }] })).revision;
        const r2 = (await s.txn({ put: [{ key: '/k', value: 'two' }] })).revision;
        assert.deepEqual(await s.get('/k'), { key: '/k', value: 'two', createRevision: r1, modRevision: r2 });
        await s.txn({ delete: ['/k'] });
        const r4 = (await s.txn({ put: [{ key: '/k', value: 'three' }] })).revision;
        assert.deepEqual(await s.get('/k'), {
          key: '/k',
          value: 'three',
          createRevision: r4,
          modRevision: r4,
        });
      }));

    it('a txn whose compares hold writes; one whose compare fails writes nothing', () =>
      withStore(async (s) => {
        const r1 = (
          await s.txn({
            put: [
              { key: '/k', value: 1 },
              { key: '/other', value: 'x' },
            ],
          })
        ).revision;
        const ok = await s.txn({ compare: [{ key: '/k', modRevision: r1 }], put: [{ key: '/k', value: 2 }] });
        assert.deepEqual(ok, { ok: true, revision: r1 + 1 });

        const stale = await s.txn({
          compare: [{ key: '/k', modRevision: r1 }],
          put: [
            { key: '/k', value: 3 },
            { key: '/new', value: 'n' },
          ],
          delete: ['/other'],
        });
        assert.deepEqual(stale, { ok: false, revision: r1 + 1 }, 'failure reports the current revision');
        assert.equal(await s.revision(), r1 + 1, 'no revision for a failed txn');
        assert.equal((await s.get('/k'))?.value, 2);
        assert.equal(await s.get('/new'), undefined);
        assert.equal((await s.get('/other'))?.value, 'x');

        // All compares must hold: one good and one stale is a failure.
        const mixed = await s.txn({
          compare: [
            { key: '/k', modRevision: r1 + 1 },
            { key: '/other', modRevision: r1 + 1 },
          ],
          put: [{ key: '/k', value: 4 }],
        });
        assert.equal(mixed.ok, false);
        assert.equal((await s.get('/k'))?.value, 2);
      }));

    it('modRevision 0 means "absent": create-if-absent succeeds once, and fails on a present key', () =>
      withStore(async (s) => {
        const create = { compare: [{ key: '/lock', modRevision: 0 }], put: [{ key: '/lock', value: 'me' }] };
        const first = await s.txn(create);
        assert.equal(first.ok, true);
        const second = await s.txn({ ...create, put: [{ key: '/lock', value: 'you' }] });
        assert.deepEqual(second, { ok: false, revision: first.revision });
        assert.equal((await s.get('/lock'))?.value, 'me');
        // A nonzero revision on an absent key fails too, and writes nothing.
        const ghost = await s.txn({
          compare: [{ key: '/ghost', modRevision: first.revision }],
          put: [{ key: '/ghost', value: 1 }],
        });
        assert.equal(ghost.ok, false);
        assert.equal(await s.get('/ghost'), undefined);
        assert.equal(await s.revision(), first.revision);
      }));

    it('a txn that changes nothing succeeds without a new revision (as in etcd)', () =>
      withStore(async (s) => {
        const r1 = (await s.txn({ put: [{ key: '/k', value: 1 }] })).revision;
        assert.deepEqual(await s.txn({ delete: ['/absent'] }), { ok: true, revision: r1 });
        assert.deepEqual(await s.txn({ compare: [{ key: '/k', modRevision: r1 }] }), {
          ok: true,
          revision: r1,
        });
        assert.deepEqual(await s.txn({}), { ok: true, revision: r1 });
        assert.equal(await s.revision(), r1);
      }));

    it('deletes remove keys from get and range', () =>
      withStore(async (s) => {
        await s.txn({ put: ['/d/1', '/d/2', '/d/3'].map((key) => ({ key, value: key })) });
        const r = await s.txn({ delete: ['/d/2', '/d/missing'] });
        assert.equal(r.ok, true);
        assert.equal(await s.get('/d/2'), undefined);
        assert.deepEqual(
          (await s.range('/d/')).map((e) => e.key),
          ['/d/1', '/d/3'],
        );
      }));

    it('range returns the keys under a prefix in byte order; /a/ does not match /a or /ab', () =>
      withStore(async (s) => {
        // '～' (U+FF5E) sorts before '😀' in UTF-8 bytes but after it in JS (UTF-16) order.
        const under = ['/a/', '/a/b', '/a/b/c', '/a/Z', '/a/z', '/a/é', '/a/日本', '/a/😀', '/a/～', '/a/0'];
        const outside = ['/a', '/ab', '/ab/x', '/b', '/'];
        const all = [...under, ...outside];
        // Written in a scrambled order, over several txns.
        const scrambled = all.map((k, i) => ({ k, i: (i * 7) % all.length })).sort((x, y) => x.i - y.i);
        for (let i = 0; i < scrambled.length; i += 4)
          await s.txn({ put: scrambled.slice(i, i + 4).map(({ k }) => ({ key: k, value: k })) });

        const got = await s.range('/a/');
        assert.deepEqual(
          got.map((e) => e.key),
          byteOrder(under),
        );
        assert.notDeepEqual(byteOrder(under), [...under].sort(), 'the keys tell byte order from JS order');
        assert.deepEqual(
          summary(got),
          byteOrder(under).map((k) => [k, k]),
        );
        assert.deepEqual(
          (await s.range('/a')).map((e) => e.key),
          byteOrder([...under, '/a', '/ab', '/ab/x']),
        );
        assert.deepEqual(
          (await s.range('')).map((e) => e.key),
          byteOrder(all),
        );
        assert.deepEqual(await s.range('/nothing/'), []);
      }));

    it('values round-trip: unicode, nested objects, arrays, numbers, null, booleans', () =>
      withStore(async (s) => {
        const values: Record<string, unknown> = {
          '/v/string': 'plain',
          '/v/unicode': 'Grüße, 日本語, emoji 😀👍🏽, combining é, RTL עברית, nul \u0000 and \u2028',
          '/v/empty': '',
          '/v/number': -12.5e-3,
          '/v/int': Number.MAX_SAFE_INTEGER,
          '/v/null': null,
          '/v/true': true,
          '/v/false': false,
          '/v/array': [1, 'two', [3, [4]], { five: 5 }, null],
          '/v/nested': {
            spec: {
              routes: [{ match: { path: '/ü' }, weight: 0.25 }],
              labels: { 'app.kubernetes.io/name': 'x' },
            },
            deep: { a: { b: { c: { d: { e: ['f'] } } } } },
            '': 'empty key',
          },
        };
        const w = record(s, '/v/', await s.revision());
        await s.txn({ put: Object.entries(values).map(([key, value]) => ({ key, value })) });
        for (const [key, value] of Object.entries(values))
          assert.deepEqual((await s.get(key))?.value, value, key);
        assert.deepEqual(Object.fromEntries((await s.range('/v/')).map((e) => [e.key, e.value])), values);
        const [batch] = await w.untilBatches(1);
        assert.deepEqual(Object.fromEntries(batch!.map((e) => [e.key, e.value])), values);
        w.cancel();
      }));

    it('refuses a txn that writes one key twice, and writes nothing', () =>
      withStore(async (s) => {
        const r0 = await s.revision();
        await assert.rejects(
          s.txn({ put: [{ key: '/dup', value: 1 }], delete: ['/dup'] }),
          (err: unknown) =>
            isIsthmusError(err) && err.code === 'ISTHMUS_E_STORE' && /\/dup/.test(err.message),
        );
        await assert.rejects(
          s.txn({
            put: [
              { key: '/dup', value: 1 },
              { key: '/dup', value: 2 },
            ],
          }),
          /\/dup/,
        );
        assert.equal(await s.get('/dup'), undefined);
        assert.equal(await s.revision(), r0);
      }));

    it('watch delivers this store’s writes under the prefix, in order, one batch per txn', () =>
      withStore(async (s) => {
        const r0 = await s.revision();
        const w = record(s, '/w/', r0);
        await s.txn({ put: [{ key: '/w/a', value: 'a' }] });
        await s.txn({
          put: [
            { key: '/w/b', value: 'b' },
            { key: '/x', value: 'outside' },
            { key: '/w/c', value: { c: true } },
          ],
        });
        await s.txn({ put: [{ key: '/wx', value: 'outside: /wx is not under /w/' }] });
        await s.txn({ put: [{ key: '/w/d', value: 'd' }], delete: ['/w/a'] });
        const batches = await w.untilBatches(3);
        await settle();
        assert.deepEqual(w.batches, [
          [{ type: 'put', key: '/w/a', value: 'a', modRevision: r0 + 1 }],
          [
            { type: 'put', key: '/w/b', value: 'b', modRevision: r0 + 2 },
            { type: 'put', key: '/w/c', value: { c: true }, modRevision: r0 + 2 },
          ],
          [
            { type: 'put', key: '/w/d', value: 'd', modRevision: r0 + 4 },
            { type: 'delete', key: '/w/a', modRevision: r0 + 4 },
          ],
        ]);
        assert.ok(!('value' in batches[2]![1]!), 'a delete event has no value');
        w.cancel();
      }));

    it('watch from an older revision first replays the changes it missed, then follows', () =>
      withStore(async (s) => {
        const r0 = await s.revision();
        await s.txn({ put: [{ key: '/h/1', value: 1 }] });
        await s.txn({ put: [{ key: '/h/2', value: 2 }] });
        await s.txn({ delete: ['/h/1'] });
        const all = record(s, '/h/', r0);
        const late = record(s, '/h/', r0 + 2);
        await all.untilBatches(3);
        await late.untilBatches(1);
        await s.txn({ put: [{ key: '/h/3', value: 3 }] });
        await all.untilBatches(4);
        await late.untilBatches(2);
        await settle();
        assert.deepEqual(
          all.batches.map((b) => b.map((e) => `${e.type} ${e.key} @${e.modRevision - r0}`)),
          [['put /h/1 @1'], ['put /h/2 @2'], ['delete /h/1 @3'], ['put /h/3 @4']],
        );
        assert.deepEqual(
          late.batches.map((b) => b.map((e) => `${e.type} ${e.key} @${e.modRevision - r0}`)),
          [['delete /h/1 @3'], ['put /h/3 @4']],
        );
        all.cancel();
        late.cancel();
      }));

    it('a cancelled watch delivers nothing more', () =>
      withStore(async (s) => {
        const w = record(s, '/c/', await s.revision());
        await s.txn({ put: [{ key: '/c/1', value: 1 }] });
        await w.untilBatches(1);
        w.cancel();
        await s.txn({ put: [{ key: '/c/2', value: 2 }] });
        await settle();
        assert.equal(w.batches.length, 1);
      }));

    it('concurrent compare-and-swap increments never lose an update', () =>
      withStore(async (s) => {
        await s.txn({ put: [{ key: '/counter', value: 0 }] });
        const increment = async () => {
          for (;;) {
            const cur = (await s.get<number>('/counter'))!;
            const r = await s.txn({
              compare: [{ key: '/counter', modRevision: cur.modRevision }],
              put: [{ key: '/counter', value: cur.value + 1 }],
            });
            if (r.ok) return r.revision;
          }
        };
        const revisions = await Promise.all(Array.from({ length: 12 }, increment));
        assert.equal((await s.get('/counter'))?.value, 12);
        assert.equal(new Set(revisions).size, 12, 'each increment has its own revision');
      }));

    const openPeer = options.openPeer;
    if (openPeer)
      it('watch delivers writes made through another instance (another process), in order', () =>
        withStore(async (s) => {
          const peer = await openPeer(s);
          try {
            const r0 = await s.revision();
            const w = record(s, '/p/', r0);
            await peer.txn({ put: [{ key: '/p/1', value: 'from peer' }] });
            await s.txn({ put: [{ key: '/p/2', value: 'from self' }] });
            await peer.txn({
              put: [
                { key: '/p/3', value: 3 },
                { key: '/p/4', value: 4 },
              ],
            });
            await w.untilBatches(3);
            assert.deepEqual(
              w.batches.map((b) => b.map((e) => `${e.key} @${e.modRevision - r0}`)),
              [['/p/1 @1'], ['/p/2 @2'], ['/p/3 @3', '/p/4 @3']],
            );
            assert.deepEqual((await peer.get('/p/2'))?.value, 'from self');
            w.cancel();
          } finally {
            await peer.close();
          }
        }));
  });
}
