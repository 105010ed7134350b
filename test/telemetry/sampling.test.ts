import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { seededRandom, type Random } from '../../src/core/random.js';
import {
  AdaptiveSampler,
  applyThreshold,
  FORCED_KEEP,
  formatRv,
  formatTh,
  isSampledAt,
  MAX_ADJUSTED_COUNT,
  MIN_PROBABILITY,
  parseRv,
  parseTh,
  probabilityToThreshold,
  randomnessOf,
  samplerOptions,
  ServiceSamplers,
  shouldKeepAnyway,
  thresholdToAdjustedCount,
  thresholdToProbability,
  thresholdTraceState,
  type SamplerOptions,
  type SamplingDecision,
} from '../../src/telemetry/sampling.js';
import { newTraceId, parseTracestate, TraceState } from '../../src/telemetry/trace-context.js';

const threshold56 = fc.bigInt({ min: 0n, max: MAX_ADJUSTED_COUNT - 1n });
const hex = (length: number) =>
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length });
const traceId = hex(32).filter((id) => /[1-9a-f]/.test(id));

describe('thresholds', () => {
  it('are exact at 1, 1/2, 1/4 and 2^-56', () => {
    const exact: [p: number, t: bigint, th: string, adjusted: number][] = [
      [1, 0n, '0', 1],
      [0.5, 1n << 55n, '8', 2],
      [0.25, 3n << 54n, 'c', 4],
      [0.125, 7n << 53n, 'e', 8],
      [2 ** -56, MAX_ADJUSTED_COUNT - 1n, 'ffffffffffffff', 2 ** 56],
    ];
    for (const [p, t, th, adjusted] of exact) {
      assert.equal(probabilityToThreshold(p), t, `p=${p}`);
      assert.equal(probabilityToThreshold(p, 4), t, `p=${p} at precision 4`);
      assert.equal(formatTh(t), th);
      assert.equal(parseTh(th), t);
      assert.equal(thresholdToProbability(t), p);
      assert.equal(thresholdToAdjustedCount(t), adjusted);
    }
    assert.equal(MIN_PROBABILITY, 2 ** -56);
  });

  it('round p · 2^56 to the nearest integer, halves towards more sampling', () => {
    assert.equal(probabilityToThreshold(1.25 * 2 ** -56), MAX_ADJUSTED_COUNT - 1n);
    assert.equal(probabilityToThreshold(1.5 * 2 ** -56), MAX_ADJUSTED_COUNT - 2n);
    assert.equal(probabilityToThreshold(2.5 * 2 ** -56), MAX_ADJUSTED_COUNT - 3n);
    assert.equal(probabilityToThreshold(0.1), 0xe6666666666666n); // the double 0.1 times 2^56 is an integer
    assert.equal(probabilityToThreshold(1 - 2 ** -53), 8n);
  });

  it('reject probabilities and precisions outside their range', () => {
    for (const p of [0, -1, 2 ** -57, 1.0000001, NaN, Infinity])
      assert.throws(() => probabilityToThreshold(p), RangeError);
    for (const precision of [0, 15, 2.5])
      assert.throws(() => probabilityToThreshold(0.5, precision), RangeError);
    for (const t of [-1n, MAX_ADJUSTED_COUNT]) {
      assert.throws(() => thresholdToProbability(t), RangeError);
      assert.throws(() => formatTh(t), RangeError);
    }
  });

  it('match the OpenTelemetry table at precision 3, 4 and 5', () => {
    // "TraceState: Probability Sampling", "Converting floating-point probability to threshold value".
    const table: [p: number, th3: string, th4: string, th5: string][] = [
      [1, '0', '0', '0'],
      [0.5, '8', '8', '8'],
      [1 / 3, 'aab', 'aaab', 'aaaab'],
      [0.25, 'c', 'c', 'c'],
      [0.2, 'ccd', 'cccd', 'ccccd'],
      [0.125, 'e', 'e', 'e'],
      [0.1, 'e66', 'e666', 'e6666'],
      [0.0625, 'f', 'f', 'f'],
      [0.01, 'fd71', 'fd70a', 'fd70a4'],
      [0.001, 'ffbe7', 'ffbe77', 'ffbe76d'],
      [0.0001, 'fff972', 'fff9724', 'fff97247'],
      [0.00001, 'ffff584', 'ffff583a', 'ffff583a5'],
      [0.000001, 'ffffef4', 'ffffef39', 'ffffef391'],
    ];
    for (const [p, ...ths] of table) {
      ths.forEach((th, i) =>
        assert.equal(formatTh(probabilityToThreshold(p, i + 3)), th, `p=${p} precision ${i + 3}`),
      );
    }
  });

  it('keep the probability within 2^-12 (relative) at precision 4', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-12, max: 1, noNaN: true }), (p) => {
        const actual = thresholdToProbability(probabilityToThreshold(p, 4));
        assert.ok(Math.abs(actual - p) / p <= 2 ** -12, `${p} → ${actual}`);
        assert.ok(formatTh(probabilityToThreshold(p, 4)).length <= 14);
      }),
    );
  });

  it('invert the probability to within 2^-56 at full precision', () => {
    fc.assert(
      fc.property(fc.double({ min: MIN_PROBABILITY, max: 1, noNaN: true }), (p) => {
        assert.ok(Math.abs(thresholdToProbability(probabilityToThreshold(p)) - p) <= 2 ** -57 * (1 + 1e-9));
      }),
    );
  });

  it('th round trips: parse(format(T)) = T, with trailing zeros removed', () => {
    fc.assert(
      fc.property(threshold56, (t) => {
        const th = formatTh(t);
        assert.equal(parseTh(th), t);
        assert.ok(th.length >= 1 && th.length <= 14);
        assert.ok(th === '0' || !th.endsWith('0'), th);
        assert.equal(th, th.toLowerCase());
      }),
    );
  });

  it('th parsing pads with trailing zeros, accepts either case and rejects the rest', () => {
    assert.equal(parseTh('8'), 1n << 55n);
    assert.equal(parseTh('80'), 1n << 55n);
    assert.equal(parseTh('80000000000000'), 1n << 55n);
    assert.equal(parseTh('FD70A4'), parseTh('fd70a4'));
    for (const bad of ['', 'g', '800000000000000', ' 8', '-8', '0x8'])
      assert.equal(parseTh(bad), undefined, bad);
  });

  it('rv round trips and is exactly 14 lowercase hex digits', () => {
    fc.assert(fc.property(threshold56, (r) => assert.equal(parseRv(formatRv(r)), r)));
    assert.equal(formatRv(1n), '00000000000001');
    for (const bad of ['', '1', '0000000000000g', '6E6D1A75832A2F', '000000000000000'])
      assert.equal(parseRv(bad), undefined);
  });
});

describe('consistent decision', () => {
  it('samples iff R ≥ T, with R from the trace-id or rv', () => {
    fc.assert(
      fc.property(traceId, fc.option(hex(14), { nil: undefined }), threshold56, (id, rv, t) => {
        assert.equal(isSampledAt(id, rv, t), randomnessOf(id, rv) >= t);
      }),
    );
    const id = '0000000000000000001234567890abcd';
    assert.equal(randomnessOf(id), 0x1234567890abcdn);
    assert.equal(isSampledAt(id, undefined, 0x1234567890abcdn), true);
    assert.equal(isSampledAt(id, undefined, 0x1234567890abcen), false);
    assert.equal(isSampledAt(id, 'ffffffffffffff', 0x1234567890abcen), true);
  });

  it('is nested: sampled at a threshold means sampled at every lower one', () => {
    fc.assert(
      fc.property(traceId, threshold56, threshold56, (id, a, b) => {
        const [low, high] = a < b ? [a, b] : [b, a];
        if (isSampledAt(id, undefined, high)) assert.ok(isSampledAt(id, undefined, low));
      }),
    );
  });
});

describe('applyThreshold', () => {
  it('adds an ot entry on the left', () => {
    const state = parseTracestate('congo=1');
    assert.ok(state);
    assert.ok(applyThreshold(state, 1n << 55n));
    assert.equal(state.format(), 'ot=th:8,congo=1');
  });

  it('leaves the list alone when th already has the value', () => {
    const state = parseTracestate('congo=1,ot=th:80;rv:00000000000001');
    assert.ok(state);
    assert.ok(applyThreshold(state, 1n << 55n));
    assert.equal(state.format(), 'congo=1,ot=th:80;rv:00000000000001');
    assert.ok(applyThreshold(state, undefined) && applyThreshold(new TraceState(), undefined));
  });

  it('updates or erases th, keeps rv and unknown sub-keys, and moves ot to the left', () => {
    const state = parseTracestate('congo=1,ot=x:1;th:8;rv:00000000000001');
    assert.ok(state);
    assert.ok(applyThreshold(state, 0xcn << 52n));
    assert.equal(state.format(), 'ot=th:c;rv:00000000000001;x:1,congo=1');
    assert.ok(applyThreshold(state, undefined));
    assert.equal(state.format(), 'ot=rv:00000000000001;x:1,congo=1');
  });

  it('deletes an ot entry that only held th, and replaces a malformed one', () => {
    const state = parseTracestate('ot=th:8,congo=1');
    assert.ok(state);
    assert.ok(applyThreshold(state, undefined));
    assert.equal(state.format(), 'congo=1');
    const bad = parseTracestate('congo=1,ot=not valid');
    assert.ok(bad);
    assert.ok(applyThreshold(bad, 0n));
    assert.equal(bad.format(), 'ot=th:0,congo=1');
  });

  it('refuses, changing nothing, when the ot entry would pass 256 characters', () => {
    const long = `k:${'v'.repeat(250)}`;
    const state = parseTracestate(`ot=${long}`);
    assert.ok(state);
    assert.equal(applyThreshold(state, 0xfd70a4n << 32n), false);
    assert.equal(state.format(), `ot=${long}`);
  });

  it("formats a hop's whole tracestate as applyThreshold on an empty one does (thresholdTraceState)", () => {
    assert.equal(thresholdTraceState(0n), 'ot=th:0');
    assert.equal(thresholdTraceState(0xcn << 52n), 'ot=th:c');
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 56n) - 1n }), (t) => {
        const state = new TraceState();
        assert.ok(applyThreshold(state, t));
        state.truncate();
        assert.equal(thresholdTraceState(t), state.format());
        // Twice: the remembered string is the same.
        assert.equal(thresholdTraceState(t), state.format());
      }),
    );
  });
});

/** Drives a sampler with `perSecond` root requests for `seconds`, evenly spaced on `clock`. */
function drive(
  sampler: AdaptiveSampler,
  clock: ManualClock,
  random: Random,
  perSecond: number,
  seconds: number,
  each?: (d: SamplingDecision) => void,
): { seen: number; sampled: number } {
  const n = Math.round(perSecond * seconds);
  const step = 1000 / perSecond;
  let sampled = 0;
  const start = clock.monotonicMs();
  for (let i = 0; i < n; i++) {
    const target = start + i * step;
    if (target > clock.monotonicMs()) clock.advance(target - clock.monotonicMs());
    const d = sampler.decide({ traceId: newTraceId(random), isRoot: true });
    if (d.sampled) sampled++;
    each?.(d);
  }
  clock.advance(start + seconds * 1000 - clock.monotonicMs());
  return { seen: n, sampled };
}

const within = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= tolerance * expected,
    `${what}: ${actual} not within ±${tolerance * 100}% of ${expected}`,
  );

describe('AdaptiveSampler', () => {
  it('samples everything while traffic is under the target', () => {
    const clock = new ManualClock();
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 10 });
    const { seen, sampled } = drive(sampler, clock, seededRandom(1), 5, 30);
    assert.equal(sampled, seen);
    assert.equal(sampler.probability, 1);
    assert.equal(sampler.threshold, 0n);
  });

  it('adapts toward the target as load changes', () => {
    const clock = new ManualClock();
    const random = seededRandom(2);
    const target = 50;
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: target, minRatio: 0.0001 });
    for (const rate of [500, 5000, 200, 10_000, 1000]) {
      drive(sampler, clock, random, rate, 20); // settle: twice the window
      within(sampler.probability, target / rate, 0.1, `probability at ${rate}/s`);
      const { sampled } = drive(sampler, clock, random, rate, 10);
      within(sampled, target * 10, 0.15, `sampled in 10 s at ${rate}/s`);
    }
  });

  it('throttles a surge within a couple of buckets', () => {
    const clock = new ManualClock();
    const random = seededRandom(3);
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 10, minRatio: 0.0001 });
    drive(sampler, clock, random, 100, 20);
    within(sampler.probability, 0.1, 0.1, 'before the surge');
    // Without adapting, 2 s at 10 000/s and p = 0.1 would sample 2000.
    const first = drive(sampler, clock, random, 10_000, 1);
    const second = drive(sampler, clock, random, 10_000, 1);
    within(sampler.probability, 0.001, 0.1, 'after two buckets of the surge');
    assert.ok(first.sampled + second.sampled < 150, `${first.sampled} + ${second.sampled} sampled in 2 s`);
    assert.ok(second.sampled < 25, `${second.sampled} sampled in the second second`);
  });

  it('never goes below minRatio', () => {
    const clock = new ManualClock();
    const random = seededRandom(4);
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 10, minRatio: 0.05 });
    let sampledCount = 0;
    const { seen } = drive(sampler, clock, random, 20_000, 5, (d) => {
      assert.ok(sampler.probability >= 0.05, `${sampler.probability}`);
      if (d.sampled) {
        sampledCount++;
        assert.ok(thresholdToProbability(d.threshold as bigint) >= 0.05);
      }
    });
    assert.ok(sampler.probability >= 0.05 && sampler.probability < 0.0501, `${sampler.probability}`);
    within(sampledCount, seen * 0.05, 0.1, 'sampled at the floor');

    const zero = new AdaptiveSampler(clock, { tracesPerSecond: 0, minRatio: 0.01 });
    drive(zero, clock, random, 100, 3);
    within(zero.probability, 0.01, 0.001, 'floor with a zero target');
  });

  it('re-weights: Σ adjusted counts is within ±3% of the true total', () => {
    // 100k requests at 10× the target: about 10k sampled at p ≈ 0.1, so the estimate's relative
    // standard deviation is about √((1 − p) / (p · N)) ≈ 0.95% and ±3% is more than three of them.
    const clock = new ManualClock();
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 100, minRatio: 0.0001 });
    const { seen, sampled } = drive(sampler, clock, seededRandom(5), 1000, 100);
    assert.equal(seen, 100_000);
    within(sampled, 100 * 100, 0.05, 'sampled count vs target × duration');
    const counts = sampler.counts();
    assert.equal(counts.seen, seen);
    assert.equal(counts.sampled, sampled);
    within(counts.estimatedTotal, seen, 0.03, 'Σ adjusted counts');
  });

  it('re-weights far above the target too', () => {
    // 500k requests at 500× the target: about 1000 sampled, so ±10% is about three standard
    // deviations of both the sampled count and the estimate.
    const clock = new ManualClock();
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 10, minRatio: 0.00001 });
    const { seen, sampled } = drive(sampler, clock, seededRandom(6), 5000, 100);
    within(sampled, 10 * 100, 0.1, 'sampled count vs target × duration');
    within(sampler.counts().estimatedTotal, seen, 0.1, 'Σ adjusted counts');
  });

  it('is consistent: samplers with the same threshold decide alike', () => {
    const clock = new ManualClock();
    const random = seededRandom(7);
    const a = new AdaptiveSampler(clock, { tracesPerSecond: 20 });
    const b = new AdaptiveSampler(clock, { tracesPerSecond: 20 });
    for (let i = 0; i < 20_000; i++) {
      clock.advance(1);
      const id = newTraceId(random);
      const da = a.decide({ traceId: id, isRoot: true });
      const db = b.decide({ traceId: id, isRoot: true });
      assert.deepEqual(da, db);
      assert.equal(a.threshold, b.threshold);
      assert.equal(da.sampled, isSampledAt(id, undefined, a.threshold));
    }
    assert.ok(a.threshold > 0n);
  });

  it('uses rv as the randomness when present', () => {
    const clock = new ManualClock();
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 10, minRatio: 0.5 });
    drive(sampler, clock, seededRandom(8), 1000, 3);
    assert.equal(sampler.threshold, 1n << 55n);
    const low = '00000000000000ffffffffffffffffff';
    assert.equal(sampler.decide({ traceId: low, isRoot: true }).sampled, true);
    const withRv = parseTracestate('ot=rv:00000000000000');
    assert.equal(sampler.decide({ traceId: low, isRoot: true, tracestate: withRv }).sampled, false);
    // Only the least-significant 56 bits count.
    const high = 'ffffffffffffffffff00000000000000';
    assert.equal(sampler.decide({ traceId: high, isRoot: true }).sampled, false);
  });

  describe('with a parent', () => {
    const clock = new ManualClock();
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 10, minRatio: 0.001 });
    const id = '4bf92f3577b34da6a3ce929d0e0e4736'; // R = 0xce929d0e0e4736
    const ts = (v: string) => parseTracestate(v) as TraceState;

    it('keeps a sampled parent with a consistent th, and its adjusted count', () => {
      const d = sampler.decide({
        traceId: id,
        isRoot: false,
        parentSampled: true,
        tracestate: ts('ot=th:8'),
      });
      assert.deepEqual(d, { sampled: true, threshold: 1n << 55n, adjustedCount: 2, forced: false });
      const again = sampler.decide({
        traceId: id,
        isRoot: false,
        parentSampled: true,
        tracestate: ts('ot=th:80'),
      });
      assert.equal(again.threshold, 1n << 55n);
    });

    it('keeps a sampled parent but erases a missing or inconsistent th', () => {
      const none = sampler.decide({ traceId: id, isRoot: false, parentSampled: true });
      assert.deepEqual(none, {
        sampled: true,
        threshold: undefined,
        adjustedCount: undefined,
        forced: false,
      });
      const inconsistent = sampler.decide({
        traceId: id,
        isRoot: false,
        parentSampled: true,
        tracestate: ts('ot=th:d'),
      });
      assert.equal(inconsistent.sampled, true);
      assert.equal(inconsistent.threshold, undefined);
      const byRv = sampler.decide({
        traceId: id,
        isRoot: false,
        parentSampled: true,
        tracestate: ts('ot=th:d;rv:d0000000000000'),
      });
      assert.equal(byRv.threshold, 0xdn << 52n);
    });

    it('does not sample when the parent did not', () => {
      const d = sampler.decide({
        traceId: id,
        isRoot: false,
        parentSampled: false,
        tracestate: ts('ot=th:0'),
      });
      assert.deepEqual(d, { sampled: false, threshold: undefined, adjustedCount: 0, forced: false });
    });

    it('counts parent decisions but does not adapt to them', () => {
      const counts = sampler.counts();
      assert.equal(counts.seen, 6);
      assert.equal(counts.sampled, 5);
      assert.equal(counts.unknownWeight, 2);
      assert.equal(counts.estimatedTotal, 2 + 2 + 16 / 3);
      assert.equal(sampler.threshold, 0n);
    });

    it('makes its own decision when told not to respect the parent', () => {
      const own = new AdaptiveSampler(clock, { tracesPerSecond: 1, minRatio: 0.5, respectParent: false });
      drive(own, clock, seededRandom(9), 100, 3);
      const low = '00000000000000000000000000000001';
      assert.equal(
        own.decide({ traceId: low, isRoot: false, parentSampled: true, tracestate: ts('ot=th:0') }).sampled,
        false,
      );
    });
  });

  describe('keeping errors and slow requests', () => {
    it('policy', () => {
      const policy = { keepErrors: true, keepSlowerThanMs: 1000 };
      assert.equal(shouldKeepAnyway(policy, { error: true, durationMs: 5 }), true);
      assert.equal(shouldKeepAnyway(policy, { error: false, durationMs: 1000 }), false);
      assert.equal(shouldKeepAnyway(policy, { error: false, durationMs: 1000.5 }), true);
      assert.equal(shouldKeepAnyway({ ...policy, keepErrors: false }, { error: true, durationMs: 5 }), false);
    });

    it('forces unsampled spans with adjusted count 1, flagged, and leaves totals unbiased', () => {
      const clock = new ManualClock();
      const random = seededRandom(10);
      const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 100, keepSlowerThanMs: 500 });
      let forced = 0;
      let errors = 0;
      let slow = 0;
      drive(sampler, clock, random, 1000, 100, (d) => {
        const error = random.next() < 0.02;
        const durationMs = random.next() < 0.01 ? 800 : 20;
        if (error) errors++;
        else if (durationMs > 500) slow++;
        const final = sampler.keepAnyway(d, { error, durationMs });
        if (d.sampled) assert.equal(final, d);
        else if (error || durationMs > 500) {
          assert.equal(final, FORCED_KEEP);
          assert.deepEqual(final, { sampled: true, threshold: undefined, adjustedCount: 1, forced: true });
          forced++;
        } else assert.equal(final, d);
      });
      const counts = sampler.counts();
      assert.equal(counts.forced, forced);
      within(forced, (errors + slow) * 0.9, 0.1, 'forced');
      within(counts.estimatedTotal, 100_000, 0.03, 'Σ adjusted counts without forced spans');
    });
  });

  it('reconfigures without losing the window', () => {
    const clock = new ManualClock();
    const random = seededRandom(11);
    const sampler = new AdaptiveSampler(clock, { tracesPerSecond: 10, minRatio: 0.0001 });
    drive(sampler, clock, random, 1000, 15);
    within(sampler.probability, 0.01, 0.1, 'before');
    sampler.configure({ tracesPerSecond: 100 });
    drive(sampler, clock, random, 1000, 0.01);
    within(sampler.probability, 0.1, 0.1, 'after');
  });

  it('refuses nonsense options', () => {
    const clock = new ManualClock();
    assert.throws(() => new AdaptiveSampler(clock, { buckets: 0 }), RangeError);
    assert.throws(() => new AdaptiveSampler(clock, { windowMs: 0 }), RangeError);
    assert.throws(() => new AdaptiveSampler(clock, { precision: 15 }), RangeError);
    assert.throws(() => new AdaptiveSampler(clock, { tracesPerSecond: -1 }), RangeError);
    assert.throws(() => new AdaptiveSampler(clock, { minRatio: 2 }), RangeError);
  });
});

describe('per service', () => {
  it('reads settings and keeps one sampler and its counts per service', () => {
    const defaults = samplerOptions({
      tracesPerSecond: 10,
      minRatio: 0.001,
      keepErrors: true,
      keepSlowerThan: '1s',
    });
    assert.deepEqual(defaults, {
      tracesPerSecond: 10,
      minRatio: 0.001,
      keepErrors: true,
      keepSlowerThanMs: 1000,
    });
    const clock = new ManualClock();
    const options: Record<string, SamplerOptions> = {
      busy: { ...defaults, tracesPerSecond: 1 },
      quiet: defaults,
    };
    const samplers = new ServiceSamplers(clock, (service) => options[service] ?? defaults);
    const random = seededRandom(12);
    assert.equal(samplers.get('busy'), samplers.get('busy'));
    drive(samplers.get('busy'), clock, random, 100, 15);
    drive(samplers.get('quiet'), clock, random, 5, 15);
    assert.ok(samplers.get('busy').probability < 0.02);
    assert.equal(samplers.get('quiet').probability, 1);
    const counts = samplers.counts();
    assert.equal(counts.get('busy')?.seen, 1500);
    assert.equal(counts.get('quiet')?.sampled, 75);
    options.quiet = { ...defaults, tracesPerSecond: 1 };
    samplers.reconfigure();
    drive(samplers.get('quiet'), clock, random, 5, 1);
    within(samplers.get('quiet').probability, 0.2, 0.15, 'quiet after reconfigure');
  });
});
