import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveBalancerConfig } from '../../../src/dataplane/balancer/config.js';
import { RegionHealth } from '../../../src/dataplane/balancer/region-health.js';
import { defaults } from './fixtures.js';

// Defaults: ejectBelow 0.5 for 1s, readmitAbove 0.8 for 5s, flaps: 3 in 5m, slow start 15s from 0.1.
const config = resolveBalancerConfig(defaults()).region;

/** Drives `update` every `stepMs` from `from` to `to` with a share chosen per instant. */
function drive(r: RegionHealth, from: number, to: number, share: (t: number) => number, stepMs = 100) {
  const states: string[] = [];
  for (let t = from; t <= to; t += stepMs) {
    r.update(share(t), t);
    if (states.at(-1) !== r.state) states.push(r.state);
  }
  return states;
}

describe('region health', () => {
  it('ejects only after the score stayed below ejectBelow for ejectAfter', () => {
    const r = new RegionHealth('us-east', config, 0);
    r.update(0.4, 0);
    r.update(0.4, 999);
    assert.equal(r.state, 'healthy');
    assert.equal(r.update(0.4, 1_000), true);
    assert.equal(r.state, 'ejected');
    assert.equal(r.sinceMs, 1_000);
    assert.match(r.reason, /^ejected: score 0\.40 \(healthy 0\.40, success n\/a\) below 0\.5 for 1000ms$/);
    assert.equal(r.weight(1_000), 0);
  });

  it('restarts the ejection timer when the score recovers briefly', () => {
    const r = new RegionHealth('us-east', config, 0);
    r.update(0.4, 0);
    r.update(0.6, 900);
    r.update(0.4, 1_000);
    r.update(0.4, 1_900);
    assert.equal(r.state, 'healthy');
    r.update(0.4, 2_000);
    assert.equal(r.state, 'ejected');
  });

  it('does not flap while the score oscillates between the two thresholds', () => {
    const r = new RegionHealth('us-east', config, 0);
    const oscillate = (t: number) => (Math.floor(t / 700) % 2 === 0 ? 0.55 : 0.75);
    assert.deepEqual(drive(r, 0, 60_000, oscillate), ['healthy']);
    drive(r, 60_000, 61_000, () => 0.2);
    assert.equal(r.state, 'ejected');
    assert.deepEqual(drive(r, 61_100, 120_000, oscillate), ['ejected']);
    assert.equal(r.transitions, 1);
    assert.equal(r.flaps(120_000), 1);
  });

  it('counts the success rate of the window in the score', () => {
    const r = new RegionHealth('us-east', config, 0);
    for (let i = 0; i < 10; i++) r.record(i < 3, 0);
    assert.equal(r.successRate(0), 0.3);
    r.update(1, 0);
    assert.equal(r.score, 0.3);
    r.update(1, 1_000);
    assert.equal(r.state, 'ejected');
    assert.equal(r.successRate(5_000), undefined, 'the window has moved past the failures');
  });

  it('readmits after readmitAfter above readmitAbove, then ramps its weight linearly', () => {
    const r = new RegionHealth('us-east', config, 0);
    drive(r, 0, 1_000, () => 0);
    assert.equal(r.state, 'ejected');
    r.update(0.9, 2_000);
    r.update(0.7, 4_000); // dips: the readmission timer restarts
    r.update(0.9, 5_000);
    r.update(0.9, 9_999);
    assert.equal(r.state, 'ejected');
    r.update(0.9, 10_000);
    assert.equal(r.state, 'recovering');
    assert.match(r.reason, /^readmitted: score 0\.90 .* above 0\.8 for 5000ms$/);
    assert.equal(r.weight(10_000), 0.1);
    assert.equal(Math.round(r.weight(17_500) * 1000) / 1000, 0.55);
    assert.equal(r.weight(30_000), 1);
    r.update(0.9, 24_999);
    assert.equal(r.state, 'recovering');
    r.update(0.9, 25_000);
    assert.equal(r.state, 'healthy');
    assert.equal(r.weight(25_000), 1);
  });

  it('goes straight to healthy when slow start is 0s', () => {
    const r = new RegionHealth('us-east', { ...config, slowStartMs: 0 }, 0);
    drive(r, 0, 1_000, () => 0);
    drive(r, 1_100, 6_100, () => 1);
    assert.equal(r.state, 'healthy');
    assert.equal(r.weight(6_100), 1);
  });

  it('doubles the readmission wait for each flap beyond maxFlaps', () => {
    const r = new RegionHealth('us-east', { ...config, slowStartMs: 0 }, 0);
    const waits: number[] = [];
    let t = 0;
    for (let flap = 1; flap <= 5; flap++) {
      while (r.state !== 'ejected') r.update(0, (t += 100));
      const ejectedAt = t;
      while (r.state === 'ejected') r.update(1, (t += 100));
      waits.push(t - ejectedAt);
    }
    // The first update after the ejection starts the above-timer, hence +100ms.
    assert.deepEqual(waits, [5_100, 5_100, 5_100, 10_100, 20_100]);
    assert.equal(r.flaps(t), 5);
    assert.equal(r.readmitAfterMs(t), 20_000);
    assert.equal(r.flaps(t + 300_000), 0, 'flaps leave the window');
    assert.equal(r.readmitAfterMs(t + 300_000), 5_000);
  });

  it('can be ejected again while recovering, which counts as a flap', () => {
    const r = new RegionHealth('us-east', config, 0);
    drive(r, 0, 1_000, () => 0);
    drive(r, 1_100, 6_100, () => 1);
    assert.equal(r.state, 'recovering');
    drive(r, 6_200, 7_200, () => 0.1);
    assert.equal(r.state, 'ejected');
    assert.equal(r.flaps(7_200), 2);
  });
});
