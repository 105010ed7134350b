import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { loadPaths, loadText } from '../../src/model/load.js';
import { canonical, printResources } from '../../src/model/print.js';
import type { AnyResource } from '../../src/model/resources.js';
import { fromRoot } from '../support/paths.js';

const resourcesOf = (text: string) => {
  const loaded = loadText(text, 'printed.yaml');
  assert.deepEqual(loaded.diagnostics, [], text);
  return loaded.resources.map((r) => r.resource);
};

describe('printing resources', () => {
  it('round-trips the example mesh: parse → print → parse gives the same resources', async () => {
    const loaded = await loadPaths([fromRoot('examples/mesh')]);
    assert.deepEqual(loaded.diagnostics, []);
    const original = loaded.resources.map((r) => r.resource);
    const printed = printResources(original);
    assert.deepEqual(resourcesOf(printed), original);
    // Printing is a fixed point: the canonical text prints to itself.
    assert.equal(printResources(resourcesOf(printed)), printed);
  });

  it('orders fields as the schema declares them', () => {
    const r = {
      spec: { ports: [{ port: 80, name: 'http' }], homeRegion: 'us-east' },
      metadata: { name: 's' },
      kind: 'Service',
      apiVersion: 'isthmus.dev/v1alpha1',
    } as unknown as AnyResource;
    const c = canonical(r) as unknown as { spec: { ports: object[] } };
    assert.deepEqual(Object.keys(c), ['apiVersion', 'kind', 'metadata', 'spec']);
    assert.deepEqual(Object.keys(c.spec), ['ports', 'homeRegion']);
    assert.deepEqual(Object.keys(c.spec.ports[0] as object), ['name', 'port']);
  });

  it('round-trips arbitrary valid traffic policies, strings that look like other types included', () => {
    const duration = fc
      .tuple(fc.integer({ min: 1, max: 59 }), fc.constantFrom('ms', 's'))
      .map(([n, u]) => `${n}${u}`);
    const flag = fc.constantFrom(
      'yes',
      'no',
      'on',
      'off',
      'null',
      '1e3',
      '0x10',
      'true-ish',
      'a:b',
      '#x',
      'ok',
    );
    const policy = fc.record({
      maxAttempts: fc.integer({ min: 1, max: 10 }),
      ratio: fc.double({ min: 0, max: 1, noNaN: true }),
      base: duration,
      flags: fc.uniqueArray(flag, { maxLength: 4 }),
      body: fc.string({ maxLength: 40 }),
    });
    fc.assert(
      fc.property(policy, (p) => {
        const resource = {
          apiVersion: 'isthmus.dev/v1alpha1',
          kind: 'TrafficPolicy',
          metadata: { name: 'p' },
          spec: {
            targetRef: { kind: 'Mesh' },
            retries: {
              maxAttempts: p.maxAttempts,
              budget: { ratio: p.ratio },
              backoff: { base: p.base, max: '5m' },
            },
            degradation: { flags: p.flags.filter((f) => /^[a-z0-9][a-z0-9_.-]*$/.test(f)) },
            fallback: { static: { body: p.body } },
          },
        } as AnyResource;
        assert.deepEqual(resourcesOf(printResources([resource])), [resource]);
      }),
      { numRuns: 150 },
    );
  });
});
