import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { EndpointRecord, Snapshot } from '../../src/protocol/messages.js';
import {
  applySnapshotDelta,
  diffSnapshots,
  endpointKeyOf,
  resourceKeyOf,
} from '../../src/protocol/snapshot-delta.js';

const resource = fc.record({
  kind: fc.constantFrom('Service', 'Region', 'TrafficPolicy'),
  metadata: fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd', 'e') }),
  spec: fc.record({ n: fc.integer({ min: 0, max: 3 }) }, { noNullPrototype: true }),
});
const endpoint: fc.Arbitrary<EndpointRecord> = fc.record({
  service: fc.constantFrom('web', 'cart'),
  address: fc.constantFrom('127.0.0.1', '127.0.0.2'),
  port: fc.integer({ min: 1, max: 4 }),
  locality: fc.constantFrom('eu-west/eu-west-a', 'us-east/us-east-a'),
  weight: fc.integer({ min: 1, max: 3 }),
});
const uniqueBy = <T>(items: T[], key: (t: T) => string) => [
  ...new Map(items.map((i) => [key(i), i])).values(),
];
const snapshot = (version: string) =>
  fc
    .record({
      resources: fc.array(resource, { maxLength: 12 }),
      endpoints: fc.array(endpoint, { maxLength: 12 }),
    })
    .map(({ resources, endpoints }): Snapshot => ({
      type: 'snapshot',
      version,
      policyRevision: 1,
      generatedAtMs: 1,
      // Plain JSON objects, as snapshots are after parsing.
      resources: JSON.parse(JSON.stringify(uniqueBy(resources, resourceKeyOf))) as Snapshot['resources'],
      endpoints: JSON.parse(JSON.stringify(uniqueBy(endpoints, endpointKeyOf))) as EndpointRecord[],
      regions: [],
    }));
const sorted = (s: Snapshot) => ({
  resources: [...s.resources].sort((a, b) => resourceKeyOf(a).localeCompare(resourceKeyOf(b))),
  endpoints: [...s.endpoints].sort((a, b) => endpointKeyOf(a).localeCompare(endpointKeyOf(b))),
});

describe('snapshot deltas', () => {
  it('applying the delta from A to B to A gives B (same resources and endpoints)', () => {
    fc.assert(
      fc.property(snapshot('v1'), snapshot('v2'), (a, b) => {
        const delta = diffSnapshots(a, b);
        const rebuilt = applySnapshotDelta(a, delta);
        assert.ok(rebuilt);
        assert.equal(rebuilt.version, 'v2');
        assert.deepEqual(sorted(rebuilt), sorted(b));
      }),
    );
  });

  it('is small when little changed, and refuses a base it was not made from', () => {
    const base: Snapshot = {
      type: 'snapshot',
      version: 'v1',
      policyRevision: 1,
      generatedAtMs: 1,
      resources: Array.from({ length: 100 }, (_, i) => ({ kind: 'Service', metadata: { name: `s${i}` } })),
      endpoints: [],
      regions: [],
    };
    const next = {
      ...base,
      version: 'v2',
      resources: [...base.resources.slice(1), { kind: 'Service', metadata: { name: 'new' } }],
    };
    const delta = diffSnapshots(base, next);
    assert.deepEqual(delta.resources.deletes, ['Service/s0']);
    assert.equal(delta.resources.upserts.length, 1);
    assert.equal(applySnapshotDelta({ ...base, version: 'other' }, delta), undefined);
  });
});
