import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { IsthmusError } from '../../src/core/errors.js';
import {
  DEFAULT_LAB_REGIONS,
  FAULT_TYPES,
  drillSteps,
  loadDrill,
  loadDrillFile,
  plannedDurationMs,
} from '../../src/chaos/drill/spec.js';
import { fromRoot } from '../support/paths.js';
import { textAt, yamlDoc } from '../support/yaml-doc.js';

const FILE = 'drills/test.yaml';

/** `line:col path message` per diagnostic, for compact assertions. */
const problems = (text: string) =>
  loadDrill(text, FILE).diagnostics.map((d) => `${d.line}:${d.col} ${d.path ?? ''} ${d.message}`);

/**
 * A valid drill whose `spec.method` (and optionally more of `spec`) is `tail`, indented for the
 * spec mapping. The header is 13 lines, so the first line of `tail` is line 14.
 */
/**
 * `path message @ token` per diagnostic, where token is the text at the reported line and column
 * up to the next delimiter: shows what each diagnostic points at without counting columns.
 */
const located = (text: string) =>
  loadDrill(text, FILE).diagnostics.map((d) => {
    const token = (textAt(text, d.line, d.col) ?? '').split(/[\s,}\]]/)[0] ?? '';
    return `${d.path ?? ''} ${d.message} @ ${token}`;
  });

const drill = (tail: string, topology = 'lab: { regions: [us-east, eu-west, ap-south] }') =>
  [
    'apiVersion: isthmus.dev/v1alpha1',
    'kind: Drill',
    'metadata: { name: t }',
    'spec:',
    '  topology:',
    `    ${topology}`,
    '  workload:',
    '    rate: 10',
    '    mix:',
    '      - { name: browse, weight: 1, method: GET, path: / }',
    '  expectations:',
    '    - { metric: route_flaps, max: 0 }',
    '  method:',
    ...tail.split('\n').map((l) => (l === '' ? l : `    ${l}`)),
  ].join('\n') + '\n';

const oneStep = (fault: string, duration = '10s') =>
  drill(`- { name: s, duration: ${duration}, fault: ${fault} }`);

describe('drill spec: loading', () => {
  it('applies defaults and converts durations to milliseconds', () => {
    const { drill: d, diagnostics } = loadDrill(
      yamlDoc`
        apiVersion: isthmus.dev/v1alpha1
        kind: Drill
        metadata: { name: example, description: "the brief's example" }
        spec:
          topology:
            endpoints: { lab: "http://127.0.100.1:7300" }
          workload:
            rate: 40
            mix:
              - { name: browse, weight: 80, method: GET, path: "/products/{id}" }
              - { name: checkout, weight: 20, method: POST, path: /checkout }
              - { name: pay, weight: 5, method: POST, path: /pay, idempotent: true, idempotencyKey: true }
          steadyState:
            - { metric: latency_p99, max: 800ms }
          method:
            - name: cut-eu-west
              fault: { type: partition, region: eu-west }
              duration: 20s
              after: 1s
            - parallel:
                - { name: slow, fault: { type: latency, from: us-east, to: eu-west, latency: 300ms }, duration: 10s }
                - { name: lossy, fault: { type: loss, from: eu-west, to: us-east, probability: 0.05 }, duration: 12s }
                - { name: flappy, fault: { type: flap, from: us-east, to: ap-south, down: 1s, up: 500ms }, duration: 5s }
          probes:
            - { name: budget, metric: failure_rate, window: 5s, max: 0.2 }
          expectations:
            - { metric: failure_rate, max: 0.005 }
            - { metric: time_to_detect, max: 1m30s }
      `,
      FILE,
    );
    assert.deepEqual(diagnostics, []);
    assert.ok(d);
    assert.equal(d.seed, 1);
    assert.equal(d.description, "the brief's example");
    assert.deepEqual(d.topology, { source: 'endpoints', lab: 'http://127.0.100.1:7300' });
    // With a running lab, the regions are not known until run time.
    assert.equal(d.workload.from, undefined);
    assert.equal(d.workload.timeoutMs, 3000);
    assert.deepEqual(
      d.workload.mix.map((m) => [m.name, m.idempotent, m.idempotencyKey]),
      [
        ['browse', true, false],
        ['checkout', false, false],
        ['pay', true, true],
      ],
    );
    assert.equal(d.baselineMs, 5000);
    assert.equal(d.recoveryMs, 10_000);
    assert.deepEqual(d.steadyState, [{ metric: 'latency_p99', max: 800 }]);
    assert.deepEqual(d.method[0], {
      kind: 'step',
      step: {
        name: 'cut-eu-west',
        fault: { type: 'partition', region: 'eu-west', mode: 'blackhole', direction: 'both', scope: 'all' },
        durationMs: 20_000,
        afterMs: 1000,
      },
    });
    const par = d.method[1];
    assert.equal(par?.kind, 'parallel');
    assert.deepEqual(par?.kind === 'parallel' && par.steps.map((s) => s.fault), [
      {
        type: 'latency',
        from: 'us-east',
        to: 'eu-west',
        latencyMs: 300,
        jitterMs: 0,
        distribution: 'uniform',
      },
      { type: 'loss', from: 'eu-west', to: 'us-east', probability: 0.05, stallMs: 200 },
      { type: 'flap', from: 'us-east', to: 'ap-south', mode: 'blackhole', downMs: 1000, upMs: 500 },
    ]);
    assert.deepEqual(d.probes, [
      { name: 'budget', metric: 'failure_rate', windowMs: 5000, intervalMs: 1000, abort: false, max: 0.2 },
    ]);
    assert.deepEqual(d.rollbacks, [
      { action: 'heal', target: 'all' },
      { action: 'restore', target: 'all' },
    ]);
    assert.deepEqual(d.expectations, [
      { metric: 'failure_rate', phase: 'all', max: 0.005 },
      { metric: 'time_to_detect', max: 90_000 },
    ]);
    assert.deepEqual(
      drillSteps(d).map((s) => s.name),
      ['cut-eu-west', 'slow', 'lossy', 'flappy'],
    );
    // baseline 5s + (1s + 20s) + max(10s, 12s, 5s) + recovery 10s
    assert.equal(plannedDurationMs(d), 5000 + 21_000 + 12_000 + 10_000);
  });

  it('a lab topology without regions gets the three default regions, and they send', () => {
    const { drill: d, diagnostics } = loadDrill(
      oneStep('{ type: region-outage, region: ap-south }').replace(
        'lab: { regions: [us-east, eu-west, ap-south] }',
        'lab: {}',
      ),
      FILE,
    );
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(d?.topology, { source: 'lab', regions: [...DEFAULT_LAB_REGIONS] });
    assert.deepEqual(d?.workload.from, [...DEFAULT_LAB_REGIONS]);
  });

  it('every shipped drill loads with no diagnostics', async () => {
    const dir = fromRoot('drills');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
    for (const name of [
      'asymmetric-partition.yaml',
      'control-plane-loss.yaml',
      'flapping-link.yaml',
      'latency-spike.yaml',
      'region-outage.yaml',
      'region-partition.yaml',
      'smoke.yaml',
    ])
      assert.ok(files.includes(name), `drills/${name} is missing`);
    for (const f of files) {
      const { drill: d, diagnostics } = await loadDrillFile(path.join(dir, f));
      assert.deepEqual(diagnostics, [], `drills/${f}`);
      assert.equal(d?.name, f.replace(/\.yaml$/, ''), `drills/${f}: metadata.name matches the file name`);
    }
  });

  it('the smoke drill is the small one the test suite runs', async () => {
    const { drill: d } = await loadDrillFile(fromRoot('drills', 'smoke.yaml'));
    assert.ok(d);
    assert.deepEqual(d.topology, {
      source: 'lab',
      regions: ['us-east', 'eu-west', 'ap-south'],
      placement: { 'us-east': ['catalog', 'orders'], 'eu-west': ['catalog'], 'ap-south': ['frontend'] },
    });
    assert.deepEqual(d.workload.from, ['ap-south']);
    assert.equal(d.workload.ratePerSecond, 20);
    assert.equal(d.baselineMs, 2000);
    assert.equal(d.recoveryMs, 15_000);
    const steps = drillSteps(d);
    assert.equal(steps.length, 1);
    assert.equal(steps[0]?.durationMs, 3000);
    assert.deepEqual(steps[0]?.fault, {
      type: 'partition',
      region: 'eu-west',
      mode: 'reject',
      direction: 'both',
      scope: 'all',
    });
  });

  it('a file that cannot be read is an ISTHMUS_E_IO error naming it', async () => {
    const missing = fromRoot('drills', 'no-such-drill.yaml');
    await assert.rejects(
      loadDrillFile(missing),
      (err: unknown) =>
        err instanceof IsthmusError && err.code === 'ISTHMUS_E_IO' && err.message.includes(missing),
    );
  });

  it('garbage never throws: it comes back as diagnostics', () => {
    for (const text of [
      '',
      '# only a comment\n',
      ':::\n',
      '[1, 2',
      'a: b: c\n',
      '- 1\n- 2\n',
      '{}\n',
      'null\n',
      '"just text"\n',
      'kind: Drill\n---\nkind: Drill\n',
      'a: 1\na: 2\n',
      '\u0000\u0001binary\uFFFD',
      'apiVersion: isthmus.dev/v1alpha1\nkind: Drill\nmetadata: {name: x}\nspec: 5\n',
      'apiVersion: isthmus.dev/v1alpha1\nkind: Drill\nmetadata: {name: x}\nspec: {method: [5, [], {parallel: 3}, {fault: []}], probes: {}, workload: []}\n',
      'apiVersion: isthmus.dev/v1alpha1\nkind: Drill\nmetadata: {name: x}\nspec: {expectations: [{metric: failure_rate, min: [], max: {}}], rollbacks: [7]}\n',
    ]) {
      const result = loadDrill(text, FILE);
      assert.equal(result.drill, undefined, JSON.stringify(text));
      assert.ok(result.diagnostics.length > 0, JSON.stringify(text));
      for (const d of result.diagnostics) {
        assert.equal(d.file, FILE);
        assert.ok(d.line >= 1 && d.col >= 1);
      }
    }
  });
});

describe('drill spec: located errors', () => {
  it('a typo’d field points at the key and suggests the right one', () => {
    const text = drill(
      '- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }',
    ).replace('    rate: 10', '    rate: 10\n    timout: 2s');
    const [d, ...rest] = loadDrill(text, FILE).diagnostics;
    assert.deepEqual(rest, []);
    assert.equal(d?.rule, 'unknown-field');
    assert.equal(d?.path, 'spec.workload.timout');
    assert.equal(`${d?.line}:${d?.col}`, '9:5');
    assert.equal(textAt(text, d?.line ?? 0, d?.col ?? 0), 'timout: 2s');
    assert.equal(d?.hint, 'did you mean "timeout"?');
    assert.equal(d?.resource, 'Drill/t');
  });

  it('a duration without a unit points at the value', () => {
    const text = drill('- { name: s, duration: 10, fault: { type: region-outage, region: eu-west } }');
    const [d, ...rest] = loadDrill(text, FILE).diagnostics;
    assert.deepEqual(rest, []);
    assert.equal(d?.path, 'spec.method[0].duration');
    assert.equal(d?.rule, 'wrong-type');
    assert.equal(`${d?.line}:${d?.col}`, '14:28');
    assert.match(d?.hint ?? '', /"10s"/);
    const bad = problems(
      drill('- { name: s, duration: 10 sec, fault: { type: region-outage, region: eu-west } }'),
    );
    assert.equal(bad.length, 1, bad.join('\n'));
    assert.match(bad[0] ?? '', /^14:28 spec\.method\[0\]\.duration not a valid duration/);
  });

  it('an unknown fault type lists the known types and suggests the closest', () => {
    const text = drill('- name: s\n  duration: 10s\n  fault: { type: partiton, region: eu-west }');
    const [d, ...rest] = loadDrill(text, FILE).diagnostics;
    assert.deepEqual(rest, [], 'no noise from the other fault types');
    assert.equal(d?.path, 'spec.method[0].fault.type');
    assert.equal(`${d?.line}:${d?.col}`, '16:22');
    for (const t of FAULT_TYPES) assert.ok(d?.message.includes(t), `${t} missing from: ${d?.message}`);
    assert.equal(d?.hint, 'did you mean "partition"?');
  });

  it('a field of another fault type is reported against the fault’s own type', () => {
    assert.deepEqual(
      problems(oneStep('{ type: latency, from: us-east, to: eu-west, latency: 1s, probability: 0.1 }')),
      ['14:98 spec.method[0].fault.probability unknown field "probability"'],
    );
    assert.deepEqual(problems(oneStep('{ type: latency, from: us-east, to: eu-west }')), [
      '14:40 spec.method[0].fault.latency missing required field "latency"',
    ]);
  });

  it('an unknown metric is located and the closest one suggested', () => {
    const text = drill(
      '- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }',
    ).replace('metric: route_flaps', 'metric: route_flap');
    const [d, ...rest] = loadDrill(text, FILE).diagnostics;
    assert.deepEqual(rest, []);
    assert.equal(d?.path, 'spec.expectations[0].metric');
    assert.equal(`${d?.line}:${d?.col}`, '12:17');
    assert.match(d?.message ?? '', /unknown metric "route_flap"/);
    assert.match(d?.expected ?? '', /signals_max_delay/);
    assert.equal(d?.hint, 'did you mean "route_flaps"?');
  });

  it('wrong apiVersion or kind is reported, not thrown', () => {
    const text = drill('- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }')
      .replace('kind: Drill', 'kind: Dril')
      .replace('v1alpha1', 'v2');
    assert.deepEqual(problems(text).sort(), [
      '1:13 apiVersion expected "isthmus.dev/v1alpha1"',
      '2:7 kind expected "Drill"',
    ]);
  });
});

describe('drill spec: cross-field checks', () => {
  it('from and to must differ', () => {
    assert.deepEqual(located(oneStep('{ type: loss, from: eu-west, to: eu-west, probability: 0.1 }')), [
      'spec.method[0].fault.to `from` and `to` are the same region "eu-west" @ eu-west',
    ]);
  });

  it('regions must be in an explicit lab topology', () => {
    const found = located(
      drill(
        '- { name: s, duration: 10s, fault: { type: latency, from: us-east, to: ap-south, latency: 1s } }',
        'lab: { regions: [us-east, eu-west] }',
      ),
    );
    assert.deepEqual(found, ['spec.method[0].fault.to region "ap-south" is not in the topology @ ap-south']);
    const workload = located(
      drill(
        '- { name: s, duration: 10s, fault: { type: region-outage, region: us-east } }',
        'lab: { regions: [us-east, eu-west] }',
      ).replace('    rate: 10', '    rate: 10\n    from: [us-east, eu-wset]'),
    );
    assert.deepEqual(workload, ['spec.workload.from[1] region "eu-wset" is not in the topology @ eu-wset']);
  });

  it('a lab with default regions checks against them; a running lab checks nothing', () => {
    const fault = '{ type: region-outage, region: mars }';
    assert.deepEqual(located(drill(`- { name: s, duration: 10s, fault: ${fault} }`, 'lab: {}')), [
      'spec.method[0].fault.region region "mars" is not in the topology @ mars',
    ]);
    assert.deepEqual(
      located(
        drill(`- { name: s, duration: 10s, fault: ${fault} }`, 'endpoints: { lab: "http://127.0.0.1:7300" }'),
      ),
      [],
    );
  });

  it('only a partition may target `global`', () => {
    assert.deepEqual(
      located(oneStep('{ type: partition, from: eu-west, to: global, purpose: control }')),
      [],
    );
    assert.deepEqual(located(oneStep('{ type: latency, from: eu-west, to: global, latency: 1s }')), [
      'spec.method[0].fault.to `global` is not a region here @ global',
    ]);
  });

  it('parallel needs at least two steps', () => {
    assert.deepEqual(
      located(
        drill(
          '- parallel:\n    - { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }',
        ),
      ),
      ['spec.method[0].parallel a parallel entry needs at least 2 steps @ parallel:'],
    );
  });

  it('step names are unique across the method, parallel branches included', () => {
    const { diagnostics } = loadDrill(
      drill(
        [
          '- { name: a, duration: 10s, fault: { type: region-outage, region: eu-west } }',
          '- parallel:',
          '    - { name: b, duration: 10s, fault: { type: region-outage, region: us-east } }',
          '    - { name: a, duration: 10s, fault: { type: region-outage, region: ap-south } }',
        ].join('\n'),
      ),
      FILE,
    );
    assert.equal(diagnostics.length, 1);
    const [d] = diagnostics;
    assert.equal(d?.rule, 'duplicate-name');
    assert.equal(d?.path, 'spec.method[1].parallel[1].name');
    assert.equal(`${d?.line}:${d?.col}`, '17:19');
    assert.deepEqual(
      d?.related?.map((r) => `${r.line}:${r.col}`),
      ['14:15'],
    );
  });

  it('a partition takes region, or from/to, not both; one-way needs both ends', () => {
    assert.deepEqual(located(oneStep('{ type: partition, region: eu-west, from: us-east }')), [
      'spec.method[0].fault.from `region` and `from`/`to` are exclusive @ from:',
    ]);
    assert.deepEqual(located(oneStep('{ type: partition, mode: reject }')), [
      'spec.method[0].fault a partition needs `region`, or `from` and/or `to` @ {',
    ]);
    assert.deepEqual(located(oneStep('{ type: partition, from: us-east, direction: one-way }')), [
      'spec.method[0].fault.direction a one-way partition needs both `from` and `to` @ one-way',
    ]);
    assert.deepEqual(
      located(oneStep('{ type: partition, from: us-east, to: eu-west, direction: one-way, scope: new }')),
      [],
    );
  });

  it('a flap cycle must fit in the step', () => {
    assert.deepEqual(located(oneStep('{ type: flap, from: us-east, to: eu-west, down: 2s, up: 3s }', '5s')), [
      "spec.method[0].fault.down down + up (5000ms) must be shorter than the step's duration (5000ms) @ 2s",
    ]);
    assert.deepEqual(
      located(oneStep('{ type: flap, from: us-east, to: eu-west, down: 2s, up: 3s }', '30s')),
      [],
    );
  });

  it('a loss probability is between 0 and 1', () => {
    assert.deepEqual(located(oneStep('{ type: loss, from: us-east, to: eu-west, probability: 1.5 }')), [
      'spec.method[0].fault.probability 1.5 is out of range @ 1.5',
    ]);
  });

  it('mix weights are greater than 0', () => {
    assert.deepEqual(
      located(
        drill('- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }').replace(
          'weight: 1,',
          'weight: 0,',
        ),
      ),
      ['spec.workload.mix[0].weight a weight must be greater than 0 @ 0'],
    );
    assert.deepEqual(
      located(
        drill('- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }').replace(
          'weight: 1,',
          'weight: -1,',
        ),
      ),
      ['spec.workload.mix[0].weight -1 is out of range @ -1'],
    );
  });

  it('a zone control-plane loss names its region; a global one does not', () => {
    assert.deepEqual(located(oneStep('{ type: control-plane-loss, scope: zone }')), [
      'spec.method[0].fault `scope: zone` needs `region` @ {',
    ]);
    assert.deepEqual(located(oneStep('{ type: control-plane-loss, scope: global, region: eu-west }')), [
      'spec.method[0].fault.region `region` is only for `scope: zone` @ region:',
    ]);
    assert.deepEqual(located(oneStep('{ type: control-plane-loss, scope: zone, region: eu-west }')), []);
  });

  it('drill-wide metrics take no phase and cannot be steady-state checks or probes', () => {
    const base = drill('- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }');
    assert.deepEqual(
      located(
        base.replace('{ metric: route_flaps, max: 0 }', '{ metric: route_flaps, phase: fault, max: 0 }'),
      ),
      ['spec.expectations[0].phase route_flaps is measured over the whole drill and takes no phase @ phase:'],
    );
    assert.deepEqual(
      located(
        base.replace(
          '  expectations:',
          '  steadyState:\n    - { metric: time_to_detect, max: 1s }\n  expectations:',
        ),
      ),
      [
        'spec.steadyState[0].metric time_to_detect is drill-wide: a steady-state check can only use a request metric @ time_to_detect',
      ],
    );
    assert.deepEqual(
      located(
        base.replace(
          '  expectations:',
          '  probes:\n    - { name: p, metric: signals_lost, window: 5s, max: 0 }\n  expectations:',
        ),
      ),
      [
        'spec.probes[0].metric signals_lost is drill-wide: a probe can only use a request metric @ signals_lost',
      ],
    );
  });

  it('limits are in the metric’s unit', () => {
    const base = drill('- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }');
    const withExp = (e: string) => located(base.replace('{ metric: route_flaps, max: 0 }', e));
    assert.deepEqual(withExp('{ metric: time_to_detect, max: 2 }'), [
      'spec.expectations[0].max time_to_detect is a time: write a duration @ 2',
    ]);
    assert.deepEqual(withExp('{ metric: failure_rate, max: 5 }'), [
      'spec.expectations[0].max failure_rate is a ratio from 0 to 1 @ 5',
    ]);
    assert.deepEqual(withExp('{ metric: route_flaps, max: 0.5 }'), [
      'spec.expectations[0].max route_flaps is a count @ 0.5',
    ]);
    assert.deepEqual(withExp('{ metric: route_flaps }'), [
      'spec.expectations[0] an expectation needs `min`, `max` or both @ {',
    ]);
    assert.deepEqual(withExp('{ metric: success_rate, min: 0.9, max: 0.5 }'), [
      'spec.expectations[0].min `min` is above `max`: nothing can pass @ 0.9',
    ]);
  });

  it('a heal rollback names a step, a restore rollback a region', () => {
    const base = drill('- { name: cut, duration: 10s, fault: { type: region-outage, region: eu-west } }');
    const withRollbacks = (r: string) =>
      located(base.replace('  expectations:', `  rollbacks:\n${r}\n  expectations:`));
    assert.deepEqual(withRollbacks('    - heal: cut\n    - restore: eu-west'), []);
    assert.deepEqual(withRollbacks('    - heal: cutt'), [
      'spec.rollbacks[0].heal no step named "cutt" @ cutt',
    ]);
    assert.deepEqual(withRollbacks('    - { heal: all, restore: all }'), [
      'spec.rollbacks[0] set exactly one of heal or restore @ {',
    ]);
  });

  it('the topology is exactly one of lab or endpoints', () => {
    assert.deepEqual(
      located(
        drill(
          '- { name: s, duration: 10s, fault: { type: region-outage, region: eu-west } }',
          'lab: {}\n    endpoints: { lab: "http://x:1" }',
        ),
      ),
      ['spec.topology set exactly one of lab or endpoints @ lab:'],
    );
  });

  it('reports every problem of a file in one run', () => {
    const found = located(
      drill(
        [
          '- { name: a, duration: 5s, fault: { type: flap, from: us-east, to: us-east, down: 3s, up: 3s } }',
          '- { name: a, duration: 1x, fault: { type: nope } }',
        ].join('\n'),
      ),
    );
    assert.equal(found.length, 5, found.join('\n'));
  });
});
