import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LatencyTracker } from '../../../src/dataplane/balancer/ewma.js';

const close = (actual: number, expected: number, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= eps, `${actual} is not ≈ ${expected}`);

describe('peak EWMA latency', () => {
  it('jumps up at once on a higher sample', () => {
    const t = new LatencyTracker(10_000);
    t.observe(5, 0);
    t.observe(100, 1); // 1ms later: a plain EWMA would barely move
    assert.equal(t.peakMs, 100);
    assert.ok(t.smoothMs < 6, `smooth ${t.smoothMs} must not jump`);
  });

  it('decays toward a lower sample with the time constant', () => {
    const t = new LatencyTracker(10_000);
    t.observe(100, 0);
    t.observe(10, 10_000); // exactly one τ later
    close(t.peakMs, 100 * Math.exp(-1) + 10 * (1 - Math.exp(-1)));
    t.observe(10, 10_000); // no time passed: no decay at all
    close(t.peakMs, 100 * Math.exp(-1) + 10 * (1 - Math.exp(-1)));
  });

  it('scores cost × (in-flight + 1), unprobed endpoints at the neutral value', () => {
    const t = new LatencyTracker(10_000);
    t.inflight = 2;
    assert.equal(t.score(0, 7), 21);
    t.observe(4, 0);
    assert.equal(t.score(0, 7), 12);
  });

  it('lets an old cost drift toward neutral, so a shunned endpoint is tried again', () => {
    const t = new LatencyTracker(1_000);
    t.observe(500, 0);
    assert.equal(t.score(0, 10), 500);
    close(t.score(1_000, 10), 10 + 490 * Math.exp(-1));
    assert.ok(t.score(20_000, 10) < 10.001);
  });

  it('charges a fast failure at least penalty × the usual latency, without compounding', () => {
    const t = new LatencyTracker(10_000);
    t.observe(10, 0);
    t.observeFailure(1, 1, 3, 4);
    assert.equal(t.peakMs, 40);
    t.observeFailure(1, 2, 3, 4);
    assert.ok(t.peakMs <= 40, `repeated failures must not compound: ${t.peakMs}`);
    assert.equal(t.smoothMs, 10, 'failures do not feed the smoothed latency');
    const fresh = new LatencyTracker(10_000);
    fresh.observeFailure(1, 0, 3, 4);
    assert.equal(fresh.peakMs, 12, 'unprobed: relative to the neutral value');
    assert.equal(fresh.samples, 0);
  });
});
