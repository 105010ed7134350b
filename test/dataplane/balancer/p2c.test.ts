import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom } from '../../../src/core/random.js';
import { pickP2C, type P2CAccess } from '../../../src/dataplane/balancer/p2c.js';
import { tally } from './fixtures.js';

interface Host {
  id: string;
  weight: number;
  latencyMs: number;
  inflight: number;
}
const access: P2CAccess<Host> = {
  id: (h) => h.id,
  weight: (h) => h.weight,
  score: (h) => h.latencyMs * (h.inflight + 1),
};
const host = (id: string, latencyMs: number, inflight = 0, weight = 1): Host => ({
  id,
  weight,
  latencyMs,
  inflight,
});
const DRAWS = 2000;

describe('power of two choices', () => {
  it('prefers the faster endpoint and never picks the slowest of three', () => {
    const hosts = [host('fast', 5), host('mid', 10), host('slow', 50)];
    const random = seededRandom(1);
    const counts = tally(DRAWS, () => pickP2C(hosts, access, random)?.id);
    // fast wins whenever drawn (2/3), mid only when paired with slow (1/3), slow never.
    assert.ok(within(counts.get('fast'), 1250, 1420), `fast ${counts.get('fast')}`);
    assert.ok(within(counts.get('mid'), 580, 750), `mid ${counts.get('mid')}`);
    assert.equal(counts.get('slow'), undefined);
  });

  it('prefers the less loaded of equally fast endpoints', () => {
    const hosts = [host('idle', 10, 0), host('busy', 10, 1), host('busiest', 10, 5)];
    const random = seededRandom(2);
    const counts = tally(DRAWS, () => pickP2C(hosts, access, random)?.id);
    assert.ok(within(counts.get('idle'), 1250, 1420), `idle ${counts.get('idle')}`);
    assert.equal(counts.get('busiest'), undefined);
  });

  it('draws in proportion to weight when scores tie', () => {
    const hosts = [host('light', 10, 0, 1), host('heavy', 10, 0, 3)];
    const random = seededRandom(3);
    const counts = tally(DRAWS, () => pickP2C(hosts, access, random)?.id);
    assert.ok(within(counts.get('heavy'), 1400, 1600), `heavy ${counts.get('heavy')}`);
    const zero = [host('zero', 1, 0, 0), host('one', 100, 0, 1)];
    assert.equal(pickP2C(zero, access, random)?.id, 'one');
  });

  it('skips excluded endpoints, and gives undefined when all are excluded', () => {
    const hosts = [host('a', 1), host('b', 2), host('c', 3)];
    const random = seededRandom(4);
    const counts = tally(500, () => pickP2C(hosts, access, random, new Set(['a']))?.id);
    assert.deepEqual([...counts.keys()].sort(), ['b']);
    assert.equal(pickP2C(hosts, access, random, new Set(['a', 'b']))?.id, 'c');
    assert.equal(pickP2C(hosts, access, random, new Set(['a', 'b', 'c'])), undefined);
    assert.equal(pickP2C([], access, random), undefined);
  });

  it('honours the eligibility filter', () => {
    const hosts = [host('a', 1), host('b', 2), host('c', 3)];
    const random = seededRandom(5);
    const onlyC = { ...access, eligible: (h: Host) => h.id === 'c' };
    assert.equal(pickP2C(hosts, onlyC, random)?.id, 'c');
  });
});

function within(n: number | undefined, lo: number, hi: number): boolean {
  return n !== undefined && n >= lo && n <= hi;
}
