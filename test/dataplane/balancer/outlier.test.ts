import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveBalancerConfig, type OutlierConfig } from '../../../src/dataplane/balancer/config.js';
import { OutlierDetector, type OutlierRecord } from '../../../src/dataplane/balancer/outlier.js';
import { defaults } from './fixtures.js';

const LOCAL = 'eu-west/eu-west-b';
const REMOTE = 'us-east';

function config(tweak?: (s: ReturnType<typeof defaults>) => void): OutlierConfig {
  const s = defaults();
  tweak?.(s);
  return resolveBalancerConfig(s).outlier;
}

function detector(
  groups: Record<string, number>,
  cfg = config(),
): { d: OutlierDetector; rec: (id: string) => OutlierRecord; changes: string[] } {
  const changes: string[] = [];
  const d = new OutlierDetector(cfg, (r) => changes.push(`${r.id}:${r.state}`));
  const list: { id: string; locality: string }[] = [];
  for (const [locality, n] of Object.entries(groups)) {
    for (let i = 0; i < n; i++) list.push({ id: `${locality}#${i}`, locality });
  }
  d.setEndpoints(list);
  return { d, rec: (id) => d.get(id) as OutlierRecord, changes };
}

const fail = (d: OutlierDetector, r: OutlierRecord, n: number, now: number) => {
  for (let i = 0; i < n; i++) d.record(r, false, false, now);
};

describe('outlier detection: consecutive failures', () => {
  it('ejects on the 5th consecutive failure, and a success resets the count', () => {
    const { d, rec } = detector({ [LOCAL]: 10 });
    const r = rec(`${LOCAL}#0`);
    fail(d, r, 4, 0);
    d.record(r, true, true, 0);
    fail(d, r, 4, 0);
    assert.equal(r.state, 'healthy');
    fail(d, r, 1, 0);
    assert.equal(r.state, 'ejected');
    assert.equal(r.untilMs, 10_000);
    assert.match(r.reason, /5 consecutive failures: ejected for 10000ms/);
  });

  it('un-ejects when the time is up and ejects for n × base the n-th time, up to the maximum', () => {
    const { d, rec } = detector(
      { [LOCAL]: 10 },
      config((s) => (s.outlierDetection.maxEjectionTime = '25s')),
    );
    const r = rec(`${LOCAL}#0`);
    let now = 0;
    const lengths: number[] = [];
    for (let n = 1; n <= 4; n++) {
      fail(d, r, 5, now);
      assert.equal(r.state, 'ejected');
      lengths.push(r.untilMs - now);
      d.expire(r.untilMs - 1);
      assert.equal(r.state, 'ejected', 'not a millisecond early');
      now = r.untilMs;
      d.expire(now);
      assert.equal(r.state, 'healthy');
    }
    assert.deepEqual(lengths, [10_000, 20_000, 25_000, 25_000]);
    assert.equal(r.ejections, 4);
  });

  it('lets the multiplier decay while the endpoint stays healthy', () => {
    const { d, rec } = detector({ [LOCAL]: 10 });
    const r = rec(`${LOCAL}#0`);
    fail(d, r, 5, 0);
    d.expire(10_000);
    assert.equal(r.multiplier, 1);
    d.sweep(11_000, () => undefined); // healthy for 1s < interval: no decay yet
    assert.equal(r.multiplier, 1);
    d.sweep(12_000, () => undefined);
    assert.equal(r.multiplier, 0);
    fail(d, r, 5, 12_000);
    assert.equal(r.untilMs - 12_000, 10_000, 'back to the base time');
  });

  it('counts 0 as off', () => {
    const { d, rec } = detector(
      { [LOCAL]: 10 },
      config((s) => (s.outlierDetection.consecutiveFailures = 0)),
    );
    const r = rec(`${LOCAL}#0`);
    fail(d, r, 50, 0);
    assert.equal(r.state, 'healthy');
  });
});

describe('outlier detection: max ejected ratio', () => {
  it('never ejects more than half a locality; the rest become suspects', () => {
    const { d, rec } = detector({ [LOCAL]: 5, [REMOTE]: 2 });
    for (let i = 0; i < 5; i++) fail(d, rec(`${LOCAL}#${i}`), 5, 0);
    const states = [0, 1, 2, 3, 4].map((i) => rec(`${LOCAL}#${i}`).state);
    assert.deepEqual(states, ['ejected', 'ejected', 'suspect', 'suspect', 'suspect']);
    assert.equal(d.ejectedIn(LOCAL), 2);
    assert.equal(rec(`${LOCAL}#4`).capped, 1);
    assert.match(rec(`${LOCAL}#4`).reason, /not ejected, 2 of 5 in eu-west\/eu-west-b already are/);
    // The cap is per locality: the other locality can still eject one of its two.
    fail(d, rec(`${REMOTE}#0`), 5, 0);
    assert.equal(rec(`${REMOTE}#0`).state, 'ejected');
  });

  it('frees a slot when an ejection ends', () => {
    const { d, rec } = detector({ [LOCAL]: 2 });
    fail(d, rec(`${LOCAL}#0`), 5, 0);
    fail(d, rec(`${LOCAL}#1`), 5, 1_000);
    assert.equal(rec(`${LOCAL}#1`).state, 'suspect');
    d.expire(11_000);
    assert.equal(d.ejectedIn(LOCAL), 0);
    assert.equal(rec(`${LOCAL}#0`).state, 'healthy');
    assert.equal(rec(`${LOCAL}#1`).state, 'healthy');
    fail(d, rec(`${LOCAL}#1`), 5, 11_000);
    assert.equal(rec(`${LOCAL}#1`).state, 'ejected');
  });

  it('never ejects the only endpoint of a locality (region health handles that)', () => {
    const { d, rec } = detector({ [REMOTE]: 1 });
    fail(d, rec(`${REMOTE}#0`), 5, 0);
    assert.equal(rec(`${REMOTE}#0`).state, 'suspect');
    assert.equal(d.ejectedIn(REMOTE), 0);
  });
});

describe('outlier detection: success rate', () => {
  function traffic(d: OutlierDetector, r: OutlierRecord, requests: number, successes: number) {
    for (let i = 0; i < requests; i++) {
      // Interleave so consecutive failures never reach 5.
      d.record(r, i % 2 === 0 ? i / 2 < successes : i >= 2 * (requests - successes), true, 0);
    }
  }

  it('ejects an endpoint far below its locality mean', () => {
    const { d, rec } = detector({ [LOCAL]: 10 });
    for (let i = 0; i < 9; i++) traffic(d, rec(`${LOCAL}#${i}`), 40, 40);
    const bad = rec(`${LOCAL}#9`);
    for (let i = 0; i < 40; i++) d.record(bad, i % 2 === 0, true, 0); // 50%, never 5 in a row
    assert.equal(bad.state, 'healthy');
    d.sweep(2_000, () => undefined);
    assert.equal(bad.state, 'ejected');
    assert.match(bad.reason, /success rate 50\.0% below/);
    assert.equal(rec(`${LOCAL}#0`).state, 'healthy');
    assert.equal(bad.intervalRequests, 0, 'a new interval starts');
  });

  it('compares only within a locality', () => {
    const { d, rec } = detector({ [LOCAL]: 10, [REMOTE]: 3 });
    for (let i = 0; i < 10; i++) traffic(d, rec(`${LOCAL}#${i}`), 40, 40);
    // The remote locality is uniformly worse: no outlier there, and not judged against LOCAL.
    for (let i = 0; i < 3; i++) {
      for (let k = 0; k < 40; k++) d.record(rec(`${REMOTE}#${i}`), k % 5 !== 0, true, 0);
    }
    d.sweep(2_000, () => undefined);
    for (let i = 0; i < 3; i++) assert.equal(rec(`${REMOTE}#${i}`).state, 'healthy');
  });

  it('judges nobody with fewer than minEndpoints endpoints having minRequests', () => {
    const { d, rec } = detector({ [LOCAL]: 10 });
    traffic(d, rec(`${LOCAL}#0`), 40, 40);
    traffic(d, rec(`${LOCAL}#1`), 40, 40);
    for (let i = 0; i < 40; i++) d.record(rec(`${LOCAL}#2`), i % 2 === 0, true, 0);
    for (let i = 3; i < 10; i++) traffic(d, rec(`${LOCAL}#${i}`), 19, 19); // below minRequests
    d.sweep(2_000, () => undefined);
    assert.equal(rec(`${LOCAL}#2`).state, 'healthy');
  });
});

describe('outlier detection: latency', () => {
  function run(groups: Record<string, number>, latency: Record<string, number>) {
    const { d, rec } = detector(groups);
    for (const id of Object.keys(latency)) {
      for (let k = 0; k < 20; k++) d.record(rec(id), true, true, 0);
    }
    d.sweep(2_000, (id) => latency[id]);
    return rec;
  }

  it('ejects an endpoint slower than factor × its locality median', () => {
    const rec = run(
      { [LOCAL]: 5 },
      { [`${LOCAL}#0`]: 20, [`${LOCAL}#1`]: 22, [`${LOCAL}#2`]: 21, [`${LOCAL}#3`]: 19, [`${LOCAL}#4`]: 80 },
    );
    assert.equal(rec(`${LOCAL}#4`).state, 'ejected');
    assert.match(rec(`${LOCAL}#4`).reason, /latency 80\.0ms above 3 × locality median 21\.0ms/);
    assert.equal(rec(`${LOCAL}#0`).state, 'healthy');
  });

  it('does not eject a remote gateway at 80ms against local endpoints at 2ms', () => {
    const rec = run(
      { [LOCAL]: 4, [REMOTE]: 3 },
      {
        [`${LOCAL}#0`]: 2,
        [`${LOCAL}#1`]: 2,
        [`${LOCAL}#2`]: 2.5,
        [`${LOCAL}#3`]: 2,
        [`${REMOTE}#0`]: 80,
        [`${REMOTE}#1`]: 82,
        [`${REMOTE}#2`]: 79,
      },
    );
    for (const id of [`${REMOTE}#0`, `${REMOTE}#1`, `${REMOTE}#2`, `${LOCAL}#2`]) {
      assert.equal(rec(id).state, 'healthy', id);
    }
  });

  it('never ejects below minLatency, whatever the ratio', () => {
    const rec = run(
      { [LOCAL]: 4 },
      { [`${LOCAL}#0`]: 2, [`${LOCAL}#1`]: 2, [`${LOCAL}#2`]: 2, [`${LOCAL}#3`]: 40 },
    );
    assert.equal(rec(`${LOCAL}#3`).state, 'healthy');
  });
});
