import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateText } from '../../src/model/validate.js';
import { API, region, service, trafficPolicy, yamlStream } from '../support/mesh-fixtures.js';

function problems(text: string) {
  return validateText(text, 'mesh.yaml').diagnostics.map((d) => ({
    rule: d.rule,
    severity: d.severity,
    line: d.line,
    path: d.path,
    message: d.message,
    hint: d.hint,
    related: d.related,
    resource: d.resource,
  }));
}

/** Line (1-based) of the first line containing `needle` in `text`. */
function lineOf(text: string, needle: string, from = 0): number {
  const idx = text.indexOf(needle, from);
  assert.ok(idx >= 0, `fixture lacks ${needle}`);
  return text.slice(0, idx).split('\n').length;
}

describe('cross-resource checks', () => {
  it('accepts a consistent mesh', () => {
    const text = yamlStream(
      region('us-east', ['us-east-a', 'us-east-b'], '{eu-west: 80ms}'),
      region('eu-west'),
      service(
        'orders',
        '  homeRegion: us-east\n  routes: [{name: create, match: {methods: [POST], path: {exact: /orders}}}]',
      ),
      trafficPolicy(
        'orders-create',
        '{kind: Route, service: orders, name: create}',
        '  consistency: {mode: strong}',
      ),
    );
    assert.deepEqual(problems(text), []);
  });

  it('reports a home region that does not exist, with a suggestion', () => {
    const text = yamlStream(region('us-east'), service('orders', '  homeRegion: us-eats'));
    const [p, ...rest] = problems(text);
    assert.equal(rest.length, 0);
    assert.equal(p?.rule, 'dangling-reference');
    assert.equal(p?.path, 'spec.homeRegion');
    assert.equal(p?.line, lineOf(text, 'homeRegion'));
    assert.match(p?.hint ?? '', /us-east/);
  });

  it('reports policies targeting a missing service or route', () => {
    const text = yamlStream(
      service('catalog', '  routes: [{name: list, match: {methods: [GET]}}]'),
      trafficPolicy('a', '{kind: Service, name: catalogue}', '  retries: {maxAttempts: 2}'),
      trafficPolicy('b', '{kind: Route, service: catalog, name: lst}', '  retries: {maxAttempts: 2}'),
      trafficPolicy('c', '{kind: Route, service: nope, name: list}', '  retries: {maxAttempts: 2}'),
    );
    const got = problems(text);
    assert.deepEqual(
      got.map((p) => [p.resource, p.rule, p.path]),
      [
        ['TrafficPolicy/a', 'dangling-reference', 'spec.targetRef.name'],
        ['TrafficPolicy/b', 'dangling-reference', 'spec.targetRef.name'],
        ['TrafficPolicy/c', 'dangling-reference', 'spec.targetRef.service'],
      ],
    );
    assert.match(got[0]?.hint ?? '', /did you mean "catalog"/);
    assert.match(got[1]?.message ?? '', /route "lst" of service catalog/);
  });

  it('reports duplicate names with the first definition as related', () => {
    const text = yamlStream(service('orders'), service('orders'));
    const [p] = problems(text);
    assert.equal(p?.rule, 'duplicate-name');
    assert.equal(p?.line, lineOf(text, 'name: orders', text.indexOf('---')));
    assert.equal(p?.related?.[0]?.line, lineOf(text, 'name: orders'));
  });

  it('allows the same name in different kinds', () => {
    assert.deepEqual(problems(yamlStream(region('orders'), service('orders'))), []);
  });

  it('allows only one Mesh', () => {
    const mesh = (n: string) => `${API}\nkind: Mesh\nmetadata: {name: ${n}}\nspec: {}`;
    const got = problems(yamlStream(mesh('default'), mesh('other')));
    assert.deepEqual(
      got.map((p) => p.rule),
      ['duplicate-mesh'],
    );
  });

  it('reports two same-level policies setting the same field, but not different fields', () => {
    const text = yamlStream(
      trafficPolicy('one', '{kind: Mesh}', '  retries: {maxAttempts: 2}\n  timeouts: {overall: 5s}'),
      trafficPolicy('two', '{kind: Mesh}', '  retries: {maxAttempts: 4, backoff: {base: 10ms}}'),
    );
    const got = problems(text);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.rule, 'conflict');
    assert.equal(got[0]?.resource, 'TrafficPolicy/two');
    assert.equal(got[0]?.path, 'spec.retries.maxAttempts');
    assert.equal(got[0]?.related?.[0]?.line, lineOf(text, 'maxAttempts: 2'));
  });

  it('does not call policies at different levels a conflict', () => {
    const text = yamlStream(
      service('orders'),
      trafficPolicy('mesh', '{kind: Mesh}', '  retries: {maxAttempts: 2}'),
      trafficPolicy('svc', '{kind: Service, name: orders}', '  retries: {maxAttempts: 4}'),
    );
    assert.deepEqual(problems(text), []);
  });

  it('checks constraints on the merged result and reports them at the most specific field', () => {
    const text = yamlStream(
      service('orders'),
      trafficPolicy('mesh', '{kind: Mesh}', '  timeouts: {overall: 5s}'),
      trafficPolicy('svc', '{kind: Service, name: orders}', '  timeouts: {perTry: 6s}'),
    );
    const got = problems(text);
    assert.equal(got.length, 1, JSON.stringify(got));
    assert.equal(got[0]?.rule, 'inconsistent-settings');
    assert.equal(got[0]?.severity, 'warning');
    assert.equal(got[0]?.resource, 'TrafficPolicy/svc');
    assert.equal(got[0]?.path, 'spec.timeouts.perTry');
    assert.match(got[0]?.message ?? '', /perTry \(6s\) is longer than timeouts.overall \(5s\)/);
    assert.equal(got[0]?.related?.[0]?.line, lineOf(text, 'overall: 5s'));
  });

  it('holds a mesh-wide policy to the built-in defaults it does not override', () => {
    // overall 2s under the built-in perTry of 3s: every attempt would be cut by the deadline.
    const text = yamlStream(trafficPolicy('mesh', '{kind: Mesh}', '  timeouts: {overall: 2s}'));
    assert.deepEqual(
      problems(text).map((p) => [p.path, p.severity]),
      [['spec.timeouts.overall', 'warning']],
    );
  });

  it('reports a violation in a shared policy once, not once per service', () => {
    const text = yamlStream(
      service('a'),
      service('b'),
      trafficPolicy('mesh', '{kind: Mesh}', '  healthChecks: {interval: 1s, timeout: 1s}'),
    );
    const got = problems(text);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.path, 'spec.healthChecks.timeout');
  });

  it('requires hysteresis between region eject and readmit thresholds', () => {
    const text = yamlStream(
      trafficPolicy(
        'mesh',
        '{kind: Mesh}',
        '  localityFailover: {regionHealth: {ejectBelow: 0.6, readmitAbove: 0.6}}',
      ),
    );
    assert.deepEqual(
      problems(text).map((p) => [p.rule, p.severity]),
      [['inconsistent-settings', 'error']],
    );
    assert.equal(validateText(text).ok, false);
  });

  it('requires a home region for strong consistency', () => {
    const text = yamlStream(
      service('catalog'),
      trafficPolicy('strong', '{kind: Service, name: catalog}', '  consistency: {mode: strong}'),
    );
    const got = problems(text);
    assert.deepEqual(
      got.map((p) => [p.rule, p.resource, p.path]),
      [['missing-home-region', 'TrafficPolicy/strong', 'spec.consistency.mode']],
    );
  });

  it('rejects targetRef fields that mean nothing for the kind', () => {
    const text = yamlStream(trafficPolicy('m', '{kind: Mesh, name: orders}', '  retries: {maxAttempts: 2}'));
    assert.deepEqual(
      problems(text).map((p) => [p.rule, p.path]),
      [['unused-field', 'spec.targetRef.name']],
    );
  });

  it('checks latency hints, zones, ports and routes for duplicates and unknown names', () => {
    const text = yamlStream(
      region('us-east', ['a', 'a'], '{us-east: 1ms, mars: 900ms}'),
      service(
        'svc',
        '  routes:\n    - {name: all, match: {path: {prefix: /}}}\n    - {name: items, match: {methods: [GET], path: {prefix: /items}}}',
      ),
    );
    const got = problems(text);
    assert.deepEqual(got.map((p) => [p.rule, p.path, p.severity]).sort(), [
      ['dangling-reference', 'spec.latencyHints.mars', 'error'],
      ['duplicate-name', 'spec.zones[1].name', 'error'],
      ['self-reference', 'spec.latencyHints.us-east', 'error'],
      ['unreachable-route', 'spec.routes[1].name', 'warning'],
    ]);
  });

  it('does not report references to a resource that failed its own validation', () => {
    const text = yamlStream(
      service('orders', '  homeRegion: us-east\n  bogus: 1'),
      trafficPolicy('p', '{kind: Service, name: orders}', '  retries: {maxAttempts: 2}'),
    );
    assert.deepEqual(
      problems(text).map((p) => p.rule),
      ['unknown-field'],
    );
  });

  it('warns about per-destination settings in a route-level policy, where they would be unused', () => {
    const text = yamlStream(
      service('svc', '  routes: [{name: r, match: {methods: [GET]}}]'),
      trafficPolicy(
        'route',
        '{kind: Route, service: svc, name: r}',
        '  retries: {maxAttempts: 2, budget: {ratio: 0.5}}\n  circuitBreaker: {maxRequests: 10}',
      ),
    );
    const got = problems(text);
    assert.deepEqual(got.map((p) => [p.rule, p.severity, p.path]).sort(), [
      ['not-per-route', 'warning', 'spec.circuitBreaker'],
      ['not-per-route', 'warning', 'spec.retries.budget'],
    ]);
    assert.equal(validateText(text).ok, true);
  });

  it('reports warnings without failing validation', () => {
    const text = yamlStream(
      service('svc', '  routes:\n    - {name: all, match: {}}\n    - {name: x, match: {path: {exact: /x}}}'),
    );
    const result = validateText(text);
    assert.equal(result.ok, true);
    assert.equal(result.warnings, 1);
  });
});
