import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFault } from '../../src/chaos/drill/spec.js';
import { describeFault, type Fault } from '../../src/chaos/fault.js';

/** Faults on their own (`isthmus lab fault`, the lab API) go through the drill spec's checks. */

function ok(value: unknown): Fault {
  const r = parseFault(value, 'fault');
  assert.ok(r.ok, `expected ok, got ${r.ok ? '' : r.error}`);
  return r.fault;
}
function err(value: unknown): string {
  const r = parseFault(value, 'fault');
  assert.ok(!r.ok, `expected an error, got ${JSON.stringify(r.ok && r.fault)}`);
  return r.error;
}

describe('parseFault: each type, with the drill spec’s defaults and durations in ms', () => {
  it('partition', () => {
    assert.deepEqual(ok({ type: 'partition', region: 'eu-west' }), {
      type: 'partition',
      region: 'eu-west',
      mode: 'blackhole',
      direction: 'both',
      scope: 'all',
    });
    assert.deepEqual(
      ok({
        type: 'partition',
        from: 'us-east',
        to: 'global',
        mode: 'reset',
        direction: 'one-way',
        scope: 'new',
        purpose: 'control',
      }),
      {
        type: 'partition',
        from: 'us-east',
        to: 'global',
        mode: 'reset',
        direction: 'one-way',
        scope: 'new',
        purpose: 'control',
      },
    );
  });

  it('latency, loss, bandwidth', () => {
    assert.deepEqual(ok({ type: 'latency', from: 'us-east', to: 'eu-west', latency: '300ms' }), {
      type: 'latency',
      from: 'us-east',
      to: 'eu-west',
      latencyMs: 300,
      jitterMs: 0,
      distribution: 'uniform',
    });
    assert.deepEqual(
      ok({ type: 'latency', from: 'a', to: 'b', latency: '1s', jitter: '50ms', distribution: 'pareto' }),
      { type: 'latency', from: 'a', to: 'b', latencyMs: 1000, jitterMs: 50, distribution: 'pareto' },
    );
    assert.deepEqual(ok({ type: 'loss', from: 'a', to: 'b', probability: 0.25 }), {
      type: 'loss',
      from: 'a',
      to: 'b',
      probability: 0.25,
      stallMs: 200,
    });
    assert.deepEqual(ok({ type: 'bandwidth', from: 'us-east', to: 'ap-south', rate: 64 }), {
      type: 'bandwidth',
      from: 'us-east',
      to: 'ap-south',
      rateKBps: 64,
    });
  });

  it('region-outage, proxy-restart, control-plane-loss, flap', () => {
    assert.deepEqual(ok({ type: 'region-outage', region: 'eu-west' }), {
      type: 'region-outage',
      region: 'eu-west',
    });
    assert.deepEqual(ok({ type: 'proxy-restart', region: 'eu-west', service: 'catalog' }), {
      type: 'proxy-restart',
      region: 'eu-west',
      service: 'catalog',
    });
    assert.deepEqual(ok({ type: 'control-plane-loss', scope: 'global' }), {
      type: 'control-plane-loss',
      scope: 'global',
    });
    assert.deepEqual(ok({ type: 'control-plane-loss', scope: 'zone', region: 'us-east' }), {
      type: 'control-plane-loss',
      scope: 'zone',
      region: 'us-east',
    });
    assert.deepEqual(ok({ type: 'flap', from: 'us-east', to: 'eu-west', down: '2s', up: '100ms' }), {
      type: 'flap',
      from: 'us-east',
      to: 'eu-west',
      mode: 'blackhole',
      downMs: 2000,
      upMs: 100,
    });
  });
});

describe('parseFault: errors name the field', () => {
  it('a non-object, an unknown or missing type', () => {
    for (const v of [null, 'x', 3, []]) assert.match(err(v), /^fault: expected mapping/, JSON.stringify(v));
    assert.match(err({ type: 'partiton', region: 'x' }), /^fault\.type: .*did you mean "partition"\?/);
    assert.match(err({ region: 'x' }), /^fault\.type: missing required field "type"/);
  });

  it('unknown and missing fields', () => {
    assert.match(
      err({ type: 'region-outage', region: 'a', latency: '1s' }),
      /^fault\.latency: unknown field/,
    );
    assert.match(err({ type: 'latency', from: 'a', to: 'b' }), /^fault\.latency: missing required field/);
    assert.match(err({ type: 'flap', from: 'a', to: 'b', down: '1s' }), /^fault\.up: missing required field/);
    assert.match(err({ type: 'partition' }), /^fault: a partition needs `region`/);
  });

  it('cross-field rules', () => {
    assert.match(
      err({ type: 'partition', region: 'a', from: 'b' }),
      /^fault\.from: `region` and `from`\/`to` are exclusive/,
    );
    assert.match(
      err({ type: 'partition', from: 'a', to: 'a' }),
      /^fault\.to: `from` and `to` are the same region "a"/,
    );
    assert.match(
      err({ type: 'partition', region: 'a', direction: 'one-way' }),
      /^fault\.direction: a one-way partition needs both `from` and `to`/,
    );
    assert.match(err({ type: 'control-plane-loss', scope: 'zone' }), /^fault: `scope: zone` needs `region`/);
    assert.match(
      err({ type: 'control-plane-loss', scope: 'global', region: 'a' }),
      /^fault\.region: `region` is only for `scope: zone`/,
    );
  });

  it('bad values', () => {
    assert.match(
      err({ type: 'partition', region: 'a', mode: 'sideways' }),
      /^fault\.mode: .*blackhole, reject or reset/,
    );
    assert.match(err({ type: 'partition', region: 'Bad_Name' }), /^fault\.region: not a valid name/);
    assert.match(err({ type: 'latency', from: 'a', to: 'b', latency: '300' }), /^fault\.latency: .*"300ms"/);
    assert.match(
      err({ type: 'loss', from: 'a', to: 'b', probability: 1.5 }),
      /^fault\.probability: 1\.5 is out of range/,
    );
    assert.match(err({ type: 'bandwidth', from: 'a', to: 'b', rate: 0 }), /^fault\.rate: 0 is out of range/);
  });
});

describe('describeFault', () => {
  it('one line per fault', () => {
    assert.equal(
      describeFault(ok({ type: 'partition', region: 'eu-west' })),
      'partition eu-west (blackhole, both)',
    );
    assert.equal(
      describeFault(
        ok({ type: 'partition', from: 'us-east', to: 'global', purpose: 'control', mode: 'reject' }),
      ),
      'partition us-east → global (reject, both, control only)',
    );
    assert.equal(
      describeFault(
        ok({ type: 'latency', from: 'a', to: 'b', latency: '300ms', jitter: '50ms', distribution: 'pareto' }),
      ),
      'latency a → b +300 ms ±50 ms pareto',
    );
    assert.equal(
      describeFault(ok({ type: 'loss', from: 'a', to: 'b', probability: 0.125 })),
      'loss a → b 12.5%',
    );
    assert.equal(
      describeFault(ok({ type: 'bandwidth', from: 'a', to: 'b', rate: 64 })),
      'bandwidth a → b 64 KB/s',
    );
    assert.equal(
      describeFault(ok({ type: 'control-plane-loss', scope: 'zone', region: 'eu-west' })),
      'zone control plane of eu-west killed',
    );
    assert.equal(
      describeFault(ok({ type: 'flap', from: 'a', to: 'b', down: '1s', up: '2s' })),
      'flapping a → b (blackhole: 1000 ms down, 2000 ms up)',
    );
  });
});
