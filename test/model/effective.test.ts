import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadText } from '../../src/model/load.js';
import { BUILTIN_TRAFFIC, MeshIndex } from '../../src/model/mesh.js';
import { leavesOf, type JsonSchema } from '../../src/model/schema-walk.js';
import { TrafficSettings } from '../../src/model/settings.js';
import { API, region, service, trafficPolicy, yamlStream } from '../support/mesh-fixtures.js';

function index(text: string): MeshIndex {
  const loaded = loadText(text, 'mesh.yaml');
  assert.deepEqual(loaded.diagnostics, []);
  return new MeshIndex(loaded.resources);
}

const meshResource = (body: string) =>
  `${API}\nkind: Mesh\nmetadata: {name: default}\nspec:\n  defaults:\n${body}`;

describe('policy merging', () => {
  const text = yamlStream(
    meshResource(
      '    traffic:\n      retries: {maxAttempts: 4, backoff: {base: 50ms}}\n      timeouts: {overall: 20s}',
    ),
    service('orders', '  routes: [{name: create, match: {methods: [POST]}}]'),
    service('catalog'),
    trafficPolicy('all', '{kind: Mesh}', '  retries: {maxAttempts: 3}\n  timeouts: {perTry: 4s}'),
    trafficPolicy('orders', '{kind: Service, name: orders}', '  retries: {maxAttempts: 2, retryOn: [reset]}'),
    trafficPolicy('create', '{kind: Route, service: orders, name: create}', '  retries: {maxAttempts: 1}'),
  );
  const mesh = index(text);

  it('takes each field from the most specific level that sets it', () => {
    const route = mesh.traffic('orders', 'create').value;
    assert.equal(route.retries.maxAttempts, 1); // route
    assert.deepEqual(route.retries.retryOn, ['reset']); // service
    assert.equal(route.timeouts.perTry, '4s'); // mesh-wide policy
    assert.equal(route.timeouts.overall, '20s'); // Mesh defaults
    assert.equal(route.retries.backoff.base, '50ms'); // Mesh defaults, sibling of a field set elsewhere
    assert.equal(
      route.retries.backoff.max,
      (BUILTIN_TRAFFIC.retries as { backoff: { max: string } }).backoff.max,
    );
  });

  it('does not leak a service or route policy to other targets', () => {
    assert.equal(mesh.traffic('orders').value.retries.maxAttempts, 2);
    assert.equal(mesh.traffic('catalog').value.retries.maxAttempts, 3);
    assert.equal(mesh.traffic().value.retries.maxAttempts, 3);
    assert.deepEqual(mesh.traffic('catalog').value.retries.retryOn, [
      'connect-failure',
      'reset',
      'per-try-timeout',
      'gateway-error',
    ]);
  });

  it('records the origin of every field with its source position', () => {
    const { origins } = mesh.traffic('orders', 'create');
    const at = (needle: string) => text.slice(0, text.indexOf(needle)).split('\n').length;
    assert.deepEqual(
      { ...origins.get('retries.maxAttempts') },
      {
        level: 'route',
        resource: 'TrafficPolicy/create',
        fieldPath: 'spec.retries.maxAttempts',
        file: 'mesh.yaml',
        line: at('maxAttempts: 1'),
        col: 13,
      },
    );
    assert.equal(origins.get('timeouts.overall')?.level, 'mesh-defaults');
    assert.equal(origins.get('retries.retryOn')?.level, 'service');
    assert.deepEqual(origins.get('retries.backoff.max'), { level: 'builtin' });
  });

  it('replaces lists whole instead of concatenating them', () => {
    assert.deepEqual(mesh.traffic('orders').value.retries.retryOn, ['reset']);
  });

  it('gives every leaf a value', () => {
    const { value, origins } = mesh.traffic();
    assert.equal(origins.size, leavesOf(TrafficSettings as JsonSchema).length);
    assert.equal(typeof value.hedging.enabled, 'boolean');
  });
});

describe('routing plan', () => {
  const text = yamlStream(
    region('us-east', ['us-east-a', 'us-east-b'], '{eu-west: 80ms, ap-south: 200ms}'),
    region('eu-west', ['eu-west-a', 'eu-west-b'], '{ap-south: 120ms}'),
    region('ap-south', ['ap-south-a']),
    service('catalog'),
    service('orders', '  homeRegion: us-east'),
    trafficPolicy('orders', '{kind: Service, name: orders}', '  consistency: {mode: strong}'),
  );
  const mesh = index(text);

  it('orders tiers: own zone, own region, then remote regions by latency hint', () => {
    const plan = mesh.routingPlan({ region: 'eu-west', zone: 'eu-west-b' }, 'catalog');
    assert.deepEqual(
      plan.tiers.map((t) => [t.tier, t.region, t.zones.join('+'), t.via]),
      [
        ['zone', 'eu-west', 'eu-west-b', 'local'],
        ['region', 'eu-west', 'eu-west-a', 'local'],
        ['remote', 'us-east', 'us-east-a+us-east-b', 'gateway'],
        ['remote', 'ap-south', 'ap-south-a', 'gateway'],
      ],
    );
    assert.deepEqual(
      plan.tiers.map((t) => t.rttHintMs),
      [undefined, undefined, 80, 120],
    );
  });

  it('uses a hint declared by the other region when the caller declares none', () => {
    const plan = mesh.routingPlan({ region: 'ap-south' }, 'catalog');
    assert.deepEqual(
      plan.tiers.map((t) => [t.region, t.rttHintMs]),
      [
        ['ap-south', undefined],
        ['eu-west', 120],
        ['us-east', 200],
      ],
    );
  });

  it('sends strong routes only to the home region', () => {
    const away = mesh.routingPlan({ region: 'eu-west', zone: 'eu-west-a' }, 'orders');
    assert.deepEqual(
      away.tiers.map((t) => [t.tier, t.region, t.via]),
      [['remote', 'us-east', 'gateway']],
    );
    const home = mesh.routingPlan({ region: 'us-east', zone: 'us-east-a' }, 'orders');
    assert.deepEqual(
      home.tiers.map((t) => t.region),
      ['us-east', 'us-east'],
    );
  });
});
