import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fastRandom, seededRandom, type Random } from '../../src/core/random.js';

describe('fastRandom', () => {
  it('repeats for the same seed and differs for another', () => {
    const a = fastRandom(seededRandom(7));
    const b = fastRandom(seededRandom(7));
    const c = fastRandom(seededRandom(8));
    const fromA = Array.from({ length: 100 }, () => a.next());
    assert.deepEqual(
      Array.from({ length: 100 }, () => b.next()),
      fromA,
    );
    const fromC = Array.from({ length: 100 }, () => c.next());
    assert.ok(fromC.filter((x, i) => x === fromA[i]).length < 3);
  });

  it('draws 32-bit values in [0, 1)', () => {
    const r = fastRandom(seededRandom(1));
    for (let i = 0; i < 10_000; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1, String(x));
      assert.ok(Number.isInteger(x * 2 ** 32), String(x));
    }
  });

  it('spreads its bits evenly, the high byte and the low byte alike', () => {
    const r = fastRandom(seededRandom(3));
    const n = 64_000;
    const high = new Array<number>(16).fill(0);
    const low = new Array<number>(16).fill(0);
    for (let i = 0; i < n; i++) {
      const v = (r.next() * 2 ** 32) >>> 0;
      high[v >>> 28]!++;
      low[v & 15]!++;
    }
    // Chi-square with 15 degrees of freedom: 37.7 is its 0.999 quantile.
    const chi = (counts: number[]) => counts.reduce((s, c) => s + (c - n / 16) ** 2 / (n / 16), 0);
    assert.ok(chi(high) < 37.7, `high nibble ${chi(high)}`);
    assert.ok(chi(low) < 37.7, `low nibble ${chi(low)}`);
  });

  it('varies even when its seed source is degenerate', () => {
    const zero: Random = { next: () => 0 };
    const r = fastRandom(zero);
    const values = new Set(Array.from({ length: 1000 }, () => r.next()));
    assert.ok(values.size > 990, String(values.size));
  });
});
