import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { priorityLoad } from '../../../src/dataplane/balancer/priority.js';

const tiers = (...pairs: [number, number][]) =>
  pairs.map(([healthyWeight, totalWeight]) => ({ healthyWeight, totalWeight }));
const rounded = (xs: readonly number[]) => xs.map((x) => Math.round(x * 1e6) / 1e6);

describe('priority load', () => {
  it('keeps everything in the first tier while healthy share × factor ≥ 1', () => {
    assert.deepEqual(rounded(priorityLoad(tiers([10, 10], [4, 4]), 1.4, 0.25).shares), [1, 0]);
    // 8 of 11 healthy: 8/11 × 1.4 = 1.018 ≥ 1
    assert.deepEqual(rounded(priorityLoad(tiers([8, 11], [4, 4]), 1.4, 0.25).shares), [1, 0]);
  });

  it('spills only the shortfall: 5 healthy of 10 with factor 1.4 keeps 70%', () => {
    const load = priorityLoad(tiers([5, 10], [4, 4], [1, 1]), 1.4, 0.25);
    assert.deepEqual(rounded(load.shares), [0.7, 0.3, 0]);
    assert.equal(load.panic, false);
  });

  it('spills through several tiers in order', () => {
    const load = priorityLoad(tiers([5, 10], [1, 10], [1, 1]), 1.4, 0.25);
    assert.deepEqual(rounded(load.shares), [0.7, 0.14, 0.16]);
  });

  it('never falls off a cliff: each lost endpoint moves at most factor/total of the traffic', () => {
    let previous = 1;
    for (let healthy = 10; healthy >= 0; healthy--) {
      const share = priorityLoad(tiers([healthy, 10], [4, 4]), 1.4, 0.25).shares[0] as number;
      assert.ok(share <= previous + 1e-12, `share grew at ${healthy}`);
      assert.ok(previous - share <= 0.14 + 1e-9, `cliff at ${healthy}: ${previous} → ${share}`);
      previous = share;
    }
    assert.equal(previous, 0);
  });

  it('normalizes shares when the tiers together lack health, without panicking above the threshold', () => {
    const load = priorityLoad(tiers([1, 10], [1, 10]), 1.4, 0.25);
    assert.deepEqual(rounded(load.shares), [0.5, 0.5]);
    assert.equal(Math.round(load.totalHealth * 100), 28);
    assert.equal(load.panic, false);
  });

  it('panics below the threshold, keeping the health-proportional shares', () => {
    const load = priorityLoad(tiers([1, 10], [0, 10]), 1.4, 0.25);
    assert.equal(load.panic, true);
    assert.deepEqual(rounded(load.shares), [1, 0]);
    const load2 = priorityLoad(tiers([1, 10], [1, 20]), 1.4, 0.25); // 0.14 + 0.07 = 0.21
    assert.equal(load2.panic, true);
    assert.deepEqual(rounded(load2.shares), [0.666667, 0.333333]);
    assert.equal(priorityLoad(tiers([1, 10], [1, 20]), 1.4, 0.2).panic, false);
  });

  it('sends everything to the first non-empty tier when nothing is healthy', () => {
    const load = priorityLoad(tiers([0, 0], [0, 3], [0, 2]), 1.4, 0.25);
    assert.equal(load.panic, true);
    assert.deepEqual(load.shares, [0, 1, 0]);
  });

  it('has no shares and no panic without endpoints', () => {
    const load = priorityLoad(tiers([0, 0], [0, 0]), 1.4, 0.25);
    assert.deepEqual(load.shares, [0, 0]);
    assert.equal(load.panic, false);
  });
});
