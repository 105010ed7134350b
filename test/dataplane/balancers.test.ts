import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BalancerSnapshot } from '../../src/dataplane/balancer/locality-balancer.js';
import { reorderRemoteTiers } from '../../src/dataplane/balancers.js';
import type { Tier } from '../../src/model/mesh.js';

const tiers: Tier[] = [
  { priority: 0, tier: 'zone', region: 'us-east', zones: ['us-east-a'], via: 'local' },
  { priority: 1, tier: 'remote', region: 'eu-west', zones: [], via: 'gateway', rttHintMs: 80 },
  { priority: 2, tier: 'remote', region: 'ap-south', zones: [], via: 'gateway', rttHintMs: 200 },
];

const snapshot = (latency: Record<string, number | null>, probes: Record<string, number | null> = {}) =>
  ({
    endpoints: Object.entries(latency).map(([region, latencyMs]) => ({
      kind: 'gateway',
      locality: region,
      latencyMs,
      probeRttMs: probes[region] ?? null,
    })),
  }) as unknown as BalancerSnapshot;

describe('remote tiers by measured latency', () => {
  it('moves a region ahead when it is measurably faster than the one before it', () => {
    const next = reorderRemoteTiers(tiers, snapshot({ 'eu-west': 300, 'ap-south': 150 }));
    assert.deepEqual(
      next?.map((t) => [t.priority, t.region]),
      [
        [0, 'us-east'],
        [1, 'ap-south'],
        [2, 'eu-west'],
      ],
    );
  });

  it('keeps the order within the hysteresis margin, so near-equal regions do not flap', () => {
    assert.equal(reorderRemoteTiers(tiers, snapshot({ 'eu-west': 110, 'ap-south': 100 })), undefined);
  });

  it('uses declared hints for regions not measured yet', () => {
    assert.equal(reorderRemoteTiers(tiers, snapshot({ 'eu-west': 90, 'ap-south': null })), undefined);
    const next = reorderRemoteTiers(tiers, snapshot({ 'eu-west': 500, 'ap-south': null }));
    assert.deepEqual(
      next?.map((t) => t.region),
      ['us-east', 'ap-south', 'eu-west'],
    );
  });

  it('orders by health-check round trips when there are any: they exclude the remote app’s time and stay fresh for idle regions', () => {
    // eu-west's requests are slow (its app is), but the network to it is short: it stays first.
    assert.equal(
      reorderRemoteTiers(
        tiers,
        snapshot({ 'eu-west': 500, 'ap-south': null }, { 'eu-west': 90, 'ap-south': 210 }),
      ),
      undefined,
    );
    // The network to eu-west got long (a latency spike): ap-south moves ahead even though no
    // request has gone there to measure it.
    const next = reorderRemoteTiers(
      tiers,
      snapshot({ 'eu-west': 120, 'ap-south': null }, { 'eu-west': 400, 'ap-south': 210 }),
    );
    assert.deepEqual(
      next?.map((t) => t.region),
      ['us-east', 'ap-south', 'eu-west'],
    );
  });
});
