import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { sleep } from '../../src/core/sleep.js';

describe('sleep', () => {
  it('waits, and leaves no listener on the signal once the wait is over', async () => {
    const abort = new AbortController();
    const start = performance.now();
    for (let i = 0; i < 20; i++) await sleep(1, abort.signal);
    assert.ok(performance.now() - start >= 10);
    assert.equal(getEventListeners(abort.signal, 'abort').length, 0);
  });

  it('ends early when the signal aborts, and at once when it already has', async () => {
    const abort = new AbortController();
    const start = performance.now();
    const waiting = sleep(60_000, abort.signal);
    setTimeout(() => abort.abort(), 10);
    await waiting;
    assert.ok(performance.now() - start < 5_000);
    assert.equal(getEventListeners(abort.signal, 'abort').length, 0);
    const again = performance.now();
    await sleep(60_000, abort.signal);
    assert.ok(performance.now() - again < 1_000);
  });

  it('waits without a signal, and not at all for 0', async () => {
    const start = performance.now();
    await sleep(5);
    assert.ok(performance.now() - start >= 3);
    await sleep(0);
  });
});
