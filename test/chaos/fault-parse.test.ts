import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeFault, type Fault } from '../../src/chaos/fault.js';
import { parseFault } from '../../src/chaos/fault-parse.js';

const ok = (value: unknown): Fault => {
  const r = parseFault(value, 'fault');
  assert.ok(r.ok, `expected ok, got ${r.ok ? '' : r.error}`);
  return r.fault;
};
const err = (value: unknown, where = 'fault'): string => {
  const r = parseFault(value, where);
  assert.ok(!r.ok, `expected an error, got ${JSON.stringify(r.ok && r.fault)}`);
  return r.error;
};

describe('parseFault: each type', () => {
  it('partition: region, or from/to with every option', () => {
    assert.deepEqual(ok({ type: 'partition', region: 'eu-west' }), { type: 'partition', region: 'eu-west' });
    assert.deepEqual(
      ok({
        type: 'partition',
        from: 'us-east',
        to: 'eu-west',
        mode: 'reject',
        direction: 'one-way',
        scope: 'new',
        purpose: 'control',
      }),
      {
        type: 'partition',
        from: 'us-east',
        to: 'eu-west',
        mode: 'reject',
        direction: 'one-way',
        scope: 'new',
        purpose: 'control',
      },
    );
  });

  it('latency: durations with units become ms', () => {
    assert.deepEqual(ok({ type: 'latency', from: 'us-east', to: 'eu-west', latency: '300ms' }), {
      type: 'latency',
      from: 'us-east',
      to: 'eu-west',
      latencyMs: 300,
    });
    assert.deepEqual(
      ok({
        type: 'latency',
        from: 'us-east',
        to: 'eu-west',
        latency: '1s',
        jitter: '50ms',
        distribution: 'pareto',
      }),
      {
        type: 'latency',
        from: 'us-east',
        to: 'eu-west',
        latencyMs: 1000,
        jitterMs: 50,
        distribution: 'pareto',
      },
    );
  });

  it('loss', () => {
    assert.deepEqual(ok({ type: 'loss', from: 'a', to: 'b', probability: 0.25 }), {
      type: 'loss',
      from: 'a',
      to: 'b',
      probability: 0.25,
    });
    assert.deepEqual(ok({ type: 'loss', from: 'a', to: 'b', probability: 1, stall: '1s500ms' }), {
      type: 'loss',
      from: 'a',
      to: 'b',
      probability: 1,
      stallMs: 1500,
    });
    assert.equal(
      (ok({ type: 'loss', from: 'a', to: 'b', probability: 0 }) as { probability: number }).probability,
      0,
    );
  });

  it('bandwidth rounds the rate', () => {
    assert.deepEqual(ok({ type: 'bandwidth', from: 'us-east', to: 'ap-south', rate: 99.6 }), {
      type: 'bandwidth',
      from: 'us-east',
      to: 'ap-south',
      rate: 100,
    });
  });

  it('region-outage, proxy-restart, control-plane-loss', () => {
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
  });

  it('flap', () => {
    assert.deepEqual(ok({ type: 'flap', from: 'us-east', to: 'eu-west', down: '2s', up: '100ms' }), {
      type: 'flap',
      from: 'us-east',
      to: 'eu-west',
      downMs: 2000,
      upMs: 100,
    });
    assert.deepEqual(
      ok({ type: 'flap', from: 'us-east', to: 'eu-west', mode: 'reset', down: '1m', up: '0.5s' }),
      {
        type: 'flap',
        from: 'us-east',
        to: 'eu-west',
        mode: 'reset',
        downMs: 60_000,
        upMs: 500,
      },
    );
  });
});

describe('parseFault: errors name the field', () => {
  it('a non-object', () => {
    for (const v of [null, undefined, 'partition', 3, ['partition']])
      assert.equal(err(v), 'fault: expected a mapping with a `type`', JSON.stringify(v));
  });

  it('an unknown type, with a hint when close', () => {
    assert.equal(
      err({ type: 'latancy', from: 'a', to: 'b' }, 'steps[2].fault'),
      'steps[2].fault.type: expected one of partition, latency, loss, bandwidth, region-outage, ' +
        'control-plane-loss, proxy-restart, flap (did you mean "latency"?)',
    );
    assert.match(err({ type: 'region_outage', region: 'x' }), /\(did you mean "region-outage"\?\)$/);
    const far = err({ type: 'earthquake' });
    assert.match(far, /^fault\.type: expected one of partition, /);
    assert.doesNotMatch(far, /did you mean/);
    assert.doesNotMatch(err({ region: 'x' }), /did you mean/);
    assert.match(err({ region: 'x' }), /^fault\.type: expected one of/);
  });

  it('an unknown field', () => {
    assert.equal(
      err({ type: 'region-outage', region: 'eu-west', duration: '5s' }),
      'fault.duration: not a field of a region-outage fault (fields: type, region)',
    );
    assert.match(
      err({ type: 'latency', from: 'a', to: 'b', latency: '1s', mode: 'reject' }),
      /^fault\.mode: not a field/,
    );
  });

  it('a missing required field', () => {
    assert.equal(err({ type: 'latency', from: 'a', to: 'b' }), 'fault.latency: a latency fault needs it');
    assert.equal(
      err({ type: 'proxy-restart', region: 'a' }),
      'fault.service: a proxy-restart fault needs it',
    );
    assert.equal(err({ type: 'control-plane-loss' }), 'fault.scope: a control-plane-loss fault needs it');
    assert.equal(err({ type: 'flap', from: 'a', to: 'b', down: '1s' }), 'fault.up: a flap fault needs it');
    assert.equal(
      err({ type: 'partition', from: 'a' }),
      'fault: a partition needs `region`, or both `from` and `to`',
    );
    assert.equal(err({ type: 'partition' }), 'fault: a partition needs `region`, or both `from` and `to`');
  });

  it('region with from/to, and from equal to to', () => {
    assert.equal(
      err({ type: 'partition', region: 'a', from: 'b', to: 'c' }),
      'fault.region: give either `region` or `from`/`to`, not both',
    );
    assert.equal(
      err({ type: 'partition', region: 'a', to: 'c' }),
      'fault.region: give either `region` or `from`/`to`, not both',
    );
    assert.equal(err({ type: 'partition', from: 'a', to: 'a' }), 'fault.to: must differ from `from`');
    assert.equal(
      err({ type: 'latency', from: 'a', to: 'a', latency: '1s' }),
      'fault.to: must differ from `from`',
    );
    assert.equal(
      err({ type: 'flap', from: 'a', to: 'a', down: '1s', up: '1s' }),
      'fault.to: must differ from `from`',
    );
  });

  it('bad names and enum values', () => {
    assert.equal(
      err({ type: 'region-outage', region: 'EU_WEST' }),
      'fault.region: expected a region or service name',
    );
    assert.equal(
      err({ type: 'region-outage', region: 7 }),
      'fault.region: expected a region or service name',
    );
    assert.equal(
      err({ type: 'partition', region: 'a', mode: 'drop' }),
      'fault.mode: expected one of blackhole, reject, reset',
    );
    assert.equal(
      err({ type: 'control-plane-loss', scope: 'region' }),
      'fault.scope: expected one of global, zone',
    );
  });

  it('a bad duration', () => {
    assert.equal(
      err({ type: 'latency', from: 'a', to: 'b', latency: 300 }),
      'fault.latency: expected a duration with a unit, e.g. 300ms',
    );
    assert.match(
      err({ type: 'latency', from: 'a', to: 'b', latency: '300' }),
      /^fault\.latency: invalid duration "300"/,
    );
    assert.match(
      err({ type: 'loss', from: 'a', to: 'b', probability: 0.1, stall: 'soon' }),
      /^fault\.stall: invalid duration/,
    );
  });

  it('a probability or rate out of range', () => {
    for (const p of [-0.1, 1.01, Number.NaN, '0.5'])
      assert.equal(
        err({ type: 'loss', from: 'a', to: 'b', probability: p }),
        'fault.probability: expected a number from 0 to 1',
        String(p),
      );
    assert.equal(
      err({ type: 'bandwidth', from: 'a', to: 'b', rate: 0 }),
      'fault.rate: expected a number from 1 to 10000000',
    );
  });

  it('flap down/up of at least 100ms', () => {
    assert.equal(
      err({ type: 'flap', from: 'a', to: 'b', down: '99ms', up: '1s' }),
      'fault.down: at least 100ms',
    );
    assert.equal(
      err({ type: 'flap', from: 'a', to: 'b', down: '1s', up: '50ms' }),
      'fault.up: at least 100ms',
    );
  });

  it('control-plane-loss: zone needs a region, global takes none', () => {
    assert.equal(
      err({ type: 'control-plane-loss', scope: 'zone' }),
      'fault.region: a zone control-plane loss needs the region',
    );
    assert.equal(
      err({ type: 'control-plane-loss', scope: 'global', region: 'us-east' }),
      'fault.region: only with scope: zone',
    );
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
        ok({
          type: 'partition',
          from: 'us-east',
          to: 'eu-west',
          mode: 'reject',
          direction: 'one-way',
          purpose: 'data',
        }),
      ),
      'partition us-east → eu-west (reject, one-way, data only)',
    );
    assert.equal(
      describeFault(
        ok({ type: 'latency', from: 'us-east', to: 'eu-west', latency: '300ms', jitter: '20ms' }),
      ),
      'latency us-east → eu-west +300 ms ±20 ms',
    );
    assert.equal(
      describeFault(ok({ type: 'loss', from: 'a', to: 'b', probability: 0.125 })),
      'loss a → b 12.5%',
    );
    assert.equal(
      describeFault(ok({ type: 'control-plane-loss', scope: 'zone', region: 'eu-west' })),
      'zone control plane of eu-west killed',
    );
    assert.equal(
      describeFault(ok({ type: 'control-plane-loss', scope: 'global' })),
      'global control plane killed',
    );
    assert.equal(
      describeFault(ok({ type: 'flap', from: 'a', to: 'b', down: '1s', up: '2s' })),
      'flapping a → b (blackhole: 1000 ms down, 2000 ms up)',
    );
  });
});
