import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomUuid } from '../../src/core/uuid.js';

describe('randomUuid', () => {
  it('makes version-4, variant-1 UUIDs in lower case, none twice, across pool refills', () => {
    const seen = new Set<string>();
    // The pool holds 256 ids: several refills.
    for (let i = 0; i < 2000; i++) {
      const id = randomUuid();
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, id);
      seen.add(id);
    }
    assert.equal(seen.size, 2000);
  });

  it('spreads the random digits evenly', () => {
    const counts = new Array<number>(16).fill(0);
    const n = 4000;
    for (let i = 0; i < n; i++) {
      const hex = randomUuid().replaceAll('-', '');
      // Every digit but the version (12) and the variant (16).
      for (let d = 0; d < 32; d++) if (d !== 12 && d !== 16) counts[parseInt(hex[d] as string, 16)]!++;
    }
    const expected = (n * 30) / 16;
    // Chi-square with 15 degrees of freedom: 37.7 is its 0.999 quantile.
    const chi = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    assert.ok(chi < 37.7, `chi-square ${chi}: ${counts.join()}`);
  });
});
