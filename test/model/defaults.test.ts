import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { BUILTIN_PARTITION, BUILTIN_TELEMETRY, BUILTIN_TRAFFIC } from '../../src/model/mesh.js';
import { leavesOf } from '../../src/model/schema-walk.js';
import { PartitionSettings, TelemetrySettings, TrafficSettings } from '../../src/model/settings.js';
import { validateText } from '../../src/model/validate.js';

const SETTINGS = { traffic: TrafficSettings, partition: PartitionSettings, telemetry: TelemetrySettings };

describe('built-in defaults', () => {
  for (const [name, schema] of Object.entries(SETTINGS)) {
    it(`every ${name} field has a default and a description`, () => {
      for (const leaf of leavesOf(schema)) {
        const path = `${name}.${leaf.path.join('.')}`;
        assert.notEqual(leaf.schema.default, undefined, `${path} has no default`);
        assert.ok((leaf.schema.description ?? '').length > 10, `${path} has no description`);
      }
    });
  }

  it('written out in full, the defaults are a valid Mesh with no warnings', () => {
    const text = stringify({
      apiVersion: 'isthmus.dev/v1alpha1',
      kind: 'Mesh',
      metadata: { name: 'default' },
      spec: {
        defaults: { traffic: BUILTIN_TRAFFIC, partition: BUILTIN_PARTITION, telemetry: BUILTIN_TELEMETRY },
      },
    });
    const result = validateText(text, 'defaults.yaml');
    assert.deepEqual(result.diagnostics, []);
    assert.equal(result.resources.length, 1);
  });

  it('keep cross-region choices: failover leaves the region, retries are bounded, fsync is at most 500ms', () => {
    const traffic = BUILTIN_TRAFFIC as {
      localityFailover: { priorities: string[] };
      retries: { budget: { ratio: number } };
    };
    assert.deepEqual(traffic.localityFailover.priorities, ['zone', 'region', 'remote']);
    assert.ok(traffic.retries.budget.ratio <= 0.2);
    const telemetry = BUILTIN_TELEMETRY as { buffer: { fsyncInterval: string } };
    assert.ok(['200ms', '500ms', '100ms'].includes(telemetry.buffer.fsyncInterval));
  });
});
