import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { RetryBudget } from '../../../src/dataplane/resilience/retry-budget.js';

describe('retry budget', () => {
  it('under sustained failure grants at most ratio × requests + minPerSecond × window per window', () => {
    const clock = new ManualClock();
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000, clock });
    // 100 requests per second, every one fails and asks for a retry, for five windows.
    const grantedPerWindow: number[] = [];
    for (let w = 0; w < 5; w++) {
      let granted = 0;
      let requests = 0;
      for (let i = 0; i < 1000; i++) {
        budget.recordRequest();
        requests++;
        if (budget.tryAcquireRetry()) granted++;
        clock.advance(10);
      }
      assert.equal(requests, 1000);
      grantedPerWindow.push(granted);
    }
    for (const granted of grantedPerWindow) {
      assert.ok(granted <= 0.2 * 1000 + 1 * 10, `granted ${granted} > 210 in one window`);
      // The window counted is at least 9/10 of the configured one, so nearly the whole allowance is usable.
      assert.ok(granted >= 190, `granted only ${granted} in one window`);
    }
    // The first window starts empty, so it is allowed exactly the full amount.
    assert.equal(grantedPerWindow[0], 210);
    const stats = budget.stats();
    assert.equal(
      stats.granted,
      grantedPerWindow.reduce((a, b) => a + b, 0),
    );
    assert.equal(stats.denied, 5000 - stats.granted);
  });

  it('without requests allows only minPerSecond × window', () => {
    const clock = new ManualClock();
    const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 2, windowMs: 5000, clock });
    let granted = 0;
    for (let i = 0; i < 50; i++) if (budget.tryAcquireRetry()) granted++;
    assert.equal(granted, 10);
    assert.equal(budget.stats().denied, 40);
  });

  it('counts requests toward the ratio', () => {
    const clock = new ManualClock();
    const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 0, windowMs: 1000, clock });
    assert.equal(budget.tryAcquireRetry(), false);
    budget.recordRequest();
    assert.equal(budget.tryAcquireRetry(), false, 'half a retry is not a retry');
    budget.recordRequest();
    assert.equal(budget.tryAcquireRetry(), true);
    assert.equal(budget.tryAcquireRetry(), false);
    assert.deepEqual(budget.stats(), { requests: 2, retries: 1, allowance: 1, granted: 1, denied: 3 });
  });

  it('refills as the window slides, bucket by bucket', () => {
    const clock = new ManualClock();
    const budget = new RetryBudget({ ratio: 0, minPerSecond: 1, windowMs: 10_000, buckets: 10, clock });
    for (let i = 0; i < 5; i++) assert.equal(budget.tryAcquireRetry(), true);
    clock.advance(5000);
    for (let i = 0; i < 5; i++) assert.equal(budget.tryAcquireRetry(), true);
    assert.equal(budget.tryAcquireRetry(), false, 'window full');
    clock.advance(4999); // t = 9.999 s: the retries of t = 0 still count
    assert.equal(budget.canRetry(), false);
    clock.advance(1); // t = 10 s: the first five left the window
    let granted = 0;
    while (budget.tryAcquireRetry()) granted++;
    assert.equal(granted, 5);
    clock.advance(5000); // t = 15 s: the five of t = 5 s left too
    granted = 0;
    while (budget.tryAcquireRetry()) granted++;
    assert.equal(granted, 5);
    clock.advance(60_000); // long idle: everything forgotten at once
    assert.deepEqual(
      { requests: budget.stats().requests, retries: budget.stats().retries },
      { requests: 0, retries: 0 },
    );
    granted = 0;
    while (budget.tryAcquireRetry()) granted++;
    assert.equal(granted, 10);
  });

  it('forgets requests as the window slides', () => {
    const clock = new ManualClock();
    const budget = new RetryBudget({ ratio: 1, minPerSecond: 0, windowMs: 1000, buckets: 4, clock });
    for (let i = 0; i < 3; i++) budget.recordRequest();
    clock.advance(1000);
    assert.equal(
      budget.tryAcquireRetry(),
      false,
      'the requests of the last window no longer pay for retries',
    );
  });

  it('a cross-region retry needs both budgets and takes from both or neither', () => {
    const clock = new ManualClock();
    const destination = new RetryBudget({ ratio: 0, minPerSecond: 1, windowMs: 3000, clock });
    const crossRegion = new RetryBudget({ ratio: 0, minPerSecond: 1, windowMs: 1000, clock });
    assert.equal(RetryBudget.tryAcquireAll([destination, crossRegion]), true);
    // The cross-region budget (1 retry per window) is spent; the destination one has 2 left.
    assert.equal(RetryBudget.tryAcquireAll([destination, crossRegion]), false);
    assert.deepEqual(
      [destination.stats().retries, destination.stats().denied, crossRegion.stats().denied],
      [1, 0, 1],
      'a refused cross-region retry takes nothing from the destination budget',
    );
    // A retry that stays in the region still may.
    assert.equal(destination.tryAcquireRetry(), true);
    assert.equal(destination.tryAcquireRetry(), true);
    clock.advance(1000);
    // Now the cross-region budget has room but the destination budget does not.
    assert.equal(crossRegion.canRetry(), true);
    assert.equal(RetryBudget.tryAcquireAll([destination, crossRegion]), false);
    assert.equal(crossRegion.stats().retries, 0);
    assert.equal(destination.stats().denied, 1);
  });

  it('reads its settings', () => {
    const clock = new ManualClock();
    const budget = RetryBudget.fromSettings({ ratio: 0.2, minPerSecond: 10, window: '10s' }, clock);
    assert.equal(budget.stats().allowance, 100);
    assert.equal(budget.windowMs, 10_000);
  });

  it('rejects nonsense options', () => {
    const clock = new ManualClock();
    assert.throws(() => new RetryBudget({ ratio: 1.5, minPerSecond: 0, windowMs: 1000, clock }), RangeError);
    assert.throws(() => new RetryBudget({ ratio: 0.1, minPerSecond: -1, windowMs: 1000, clock }), RangeError);
    assert.throws(() => new RetryBudget({ ratio: 0.1, minPerSecond: 0, windowMs: 0, clock }), RangeError);
    assert.throws(
      () => new RetryBudget({ ratio: 0.1, minPerSecond: 0, windowMs: 1000, buckets: 0, clock }),
      RangeError,
    );
  });
});
