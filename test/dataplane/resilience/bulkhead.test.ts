import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import {
  AbortedError,
  Bulkhead,
  ConcurrencyLimiter,
  ShedError,
  type Release,
  type Timers,
} from '../../../src/dataplane/resilience/bulkhead.js';

/** Timers driven by a ManualClock: callbacks run, in due order, when the clock is advanced past them. */
class FakeTimers implements Timers {
  readonly #clock = new ManualClock();
  #nextId = 1;
  readonly #pending = new Map<number, { atMs: number; callback: () => void }>();

  setTimeout(callback: () => void, delayMs: number): unknown {
    const id = this.#nextId++;
    this.#pending.set(id, { atMs: this.#clock.monotonicMs() + delayMs, callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#pending.delete(handle as number);
  }

  get pending(): number {
    return this.#pending.size;
  }

  advance(ms: number): void {
    const until = this.#clock.monotonicMs() + ms;
    for (;;) {
      let due: [number, { atMs: number; callback: () => void }] | undefined;
      for (const entry of this.#pending)
        if (entry[1].atMs <= until && (!due || entry[1].atMs < due[1].atMs)) due = entry;
      if (!due) break;
      this.#clock.advance(due[1].atMs - this.#clock.monotonicMs());
      this.#pending.delete(due[0]);
      due[1].callback();
    }
    this.#clock.advance(until - this.#clock.monotonicMs());
  }
}

/** Follows a promise so a test can assert whether it has settled yet. */
function track<T>(promise: Promise<T>) {
  const t: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  promise.then(
    (value) => Object.assign(t, { state: 'resolved', value }),
    (error: unknown) => Object.assign(t, { state: 'rejected', error }),
  );
  return t;
}

function bulkhead(maxRequests: number, maxPendingRequests: number, timers = new FakeTimers()) {
  return new Bulkhead({ maxRequests, maxPendingRequests, pendingTimeoutMs: 250, retryAfterMs: 1500, timers });
}

describe('bulkhead', () => {
  it('gives slots at once while they are free', async () => {
    const b = bulkhead(2, 0);
    const r1 = await b.acquire();
    const r2 = await b.acquire();
    assert.equal(b.active, 2);
    r1();
    r2();
    assert.equal(b.active, 0);
    assert.equal(b.stats().admitted, 2);
  });

  it('serves the queue in FIFO order', async () => {
    const b = bulkhead(1, 3);
    const first = await b.acquire();
    const order: string[] = [];
    const releases = new Map<string, Release>();
    for (const name of ['a', 'b', 'c']) {
      void b.acquire().then((release) => {
        order.push(name);
        releases.set(name, release);
      });
    }
    await tick();
    assert.deepEqual([b.active, b.queued, order], [1, 3, []]);
    first();
    await tick();
    assert.deepEqual(order, ['a']);
    assert.equal(b.active, 1, 'the freed slot went straight to the head of the queue');
    releases.get('a')!();
    await tick();
    releases.get('b')!();
    await tick();
    assert.deepEqual(order, ['a', 'b', 'c']);
    releases.get('c')!();
    assert.deepEqual([b.active, b.queued], [0, 0]);
  });

  it('sheds at once when the queue is full, with the Retry-After in whole seconds', async () => {
    const b = bulkhead(1, 1);
    await b.acquire();
    const queued = track(b.acquire());
    const shed = track(b.acquire());
    await tick();
    assert.equal(queued.state, 'pending');
    assert.equal(shed.state, 'rejected');
    assert.ok(shed.error instanceof ShedError);
    assert.equal(shed.error.code, 'ISTHMUS_E_SHED');
    assert.equal(shed.error.reason, 'queue-full');
    assert.equal(shed.error.retryAfterSeconds, 2);
    assert.deepEqual(b.stats().shed, { 'queue-full': 1, 'queue-timeout': 0 });
  });

  it('with maxPendingRequests 0 sheds as soon as the limit is hit', async () => {
    const b = bulkhead(1, 0);
    await b.acquire();
    await assert.rejects(b.acquire(), { code: 'ISTHMUS_E_SHED', reason: 'queue-full' });
    assert.equal(b.queued, 0);
  });

  it('sheds a queued request whose wait outlasts pendingTimeout', async () => {
    const timers = new FakeTimers();
    const b = bulkhead(1, 2, timers);
    const held = await b.acquire();
    const waiting = track(b.acquire());
    timers.advance(249);
    await tick();
    assert.equal(waiting.state, 'pending');
    timers.advance(1);
    await tick();
    assert.equal(waiting.state, 'rejected');
    assert.ok(waiting.error instanceof ShedError);
    assert.equal(waiting.error.reason, 'queue-timeout');
    assert.equal(b.queued, 0);
    held();
    assert.equal(b.active, 0, 'the slot is not handed to a request that already timed out');
    assert.deepEqual(b.stats().shed, { 'queue-full': 0, 'queue-timeout': 1 });
  });

  it('clears the queue timer when a waiter gets its slot', async () => {
    const timers = new FakeTimers();
    const b = bulkhead(1, 1, timers);
    const held = await b.acquire();
    const waiting = track(b.acquire());
    assert.equal(timers.pending, 1);
    held();
    await tick();
    assert.equal(waiting.state, 'resolved');
    assert.equal(timers.pending, 0);
    timers.advance(1000);
    await tick();
    assert.equal(waiting.state, 'resolved');
  });

  it('an aborted waiter leaves the queue and rejects with the abort reason as cause', async () => {
    const timers = new FakeTimers();
    const b = bulkhead(1, 2, timers);
    const held = await b.acquire();
    const controller = new AbortController();
    const aborted = track(b.acquire(controller.signal));
    const next = track(b.acquire());
    assert.equal(b.queued, 2);
    const reason = new Error('caller went away');
    controller.abort(reason);
    await tick();
    assert.equal(aborted.state, 'rejected');
    assert.ok(aborted.error instanceof AbortedError);
    assert.equal(aborted.error.code, 'ISTHMUS_E_ABORTED');
    assert.equal(aborted.error.cause, reason);
    assert.equal(b.queued, 1);
    assert.equal(timers.pending, 1, 'the aborted waiter’s timer is gone');
    held();
    await tick();
    assert.equal(next.state, 'resolved', 'the slot skips the aborted waiter');
    assert.equal(b.stats().aborted, 1);
  });

  it('rejects an already aborted signal without taking a free slot', async () => {
    const b = bulkhead(1, 1);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(b.acquire(controller.signal), { code: 'ISTHMUS_E_ABORTED' });
    assert.equal(b.active, 0);
  });

  it('release is idempotent and hands over one slot only', async () => {
    const b = bulkhead(1, 2);
    const held = await b.acquire();
    const second = track(b.acquire());
    const third = track(b.acquire());
    held();
    held();
    await tick();
    assert.deepEqual([second.state, third.state], ['resolved', 'pending']);
    assert.deepEqual([b.active, b.queued], [1, 1]);
    second.value!();
    await tick();
    third.value!();
    third.value!();
    second.value!();
    assert.deepEqual([b.active, b.queued], [0, 0]);
  });

  it('tryAcquire takes a free slot without queueing', () => {
    const b = bulkhead(1, 5);
    const release = b.tryAcquire();
    assert.ok(release);
    assert.equal(b.tryAcquire(), undefined);
    assert.equal(b.queued, 0);
    release();
    assert.ok(b.tryAcquire());
  });

  it('reads its settings', () => {
    const b = Bulkhead.fromSettings({
      maxConnections: 10,
      maxRequests: 4,
      maxPendingRequests: 8,
      pendingTimeout: '250ms',
      maxRetries: 2,
      retryAfter: '3s',
    });
    assert.deepEqual(
      [b.maxRequests, b.maxPendingRequests, b.pendingTimeoutMs, b.retryAfterSeconds],
      [4, 8, 250, 3],
    );
  });
});

describe('concurrency limiter', () => {
  it('counts slots, denies beyond the limit, and releases once per slot', () => {
    const limiter = new ConcurrencyLimiter(2);
    const a = limiter.tryAcquire();
    const b = limiter.tryAcquire();
    assert.ok(a && b);
    assert.equal(limiter.tryAcquire(), undefined);
    assert.deepEqual([limiter.inUse, limiter.denied], [2, 1]);
    a();
    a();
    assert.equal(limiter.inUse, 1);
    assert.ok(limiter.tryAcquire());
    assert.equal(limiter.tryAcquire(), undefined);
    assert.deepEqual([limiter.inUse, limiter.denied], [2, 2]);
  });

  it('with a limit of 0 denies everything', () => {
    const limiter = new ConcurrencyLimiter(0);
    assert.equal(limiter.tryAcquire(), undefined);
  });
});
