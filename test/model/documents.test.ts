import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { validateDocuments, validateText } from '../../src/model/validate.js';
import { region, service, trafficPolicy, yamlStream } from '../support/mesh-fixtures.js';

/** The documents of a YAML stream as plain values, as a control-plane snapshot carries them. */
const docsOf = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS() as unknown);

/** What a diagnostic says, without where it is (files and documents locate differently). */
const said = (d: { rule: string; severity: string; resource?: string; path?: string; message: string }) =>
  `${d.severity} ${d.rule} ${d.resource ?? ''} ${d.path ?? ''}: ${d.message}`;

describe('validateDocuments: in-memory resources get the checks files get', () => {
  it('accepts a valid set and returns its resources', () => {
    const text = yamlStream(region('us-east'), service('catalog'), service('frontend'));
    const result = validateDocuments(docsOf(text), 'snapshot');
    assert.equal(result.ok, true);
    assert.deepEqual(
      result.resources.map((r) => `${r.resource.kind}/${r.resource.metadata.name}@${r.file}`),
      ['Region/us-east@snapshot#0', 'Service/catalog@snapshot#1', 'Service/frontend@snapshot#2'],
    );
  });

  it('reports the same schema and cross-resource problems as validateText, at origin#index line 1', () => {
    const text = yamlStream(
      region('us-east'),
      service('catalog', '  homeRegion: us-west'),
      trafficPolicy('typo', '{kind: Mesh}', '  retrys: {maxAttempts: 2}'),
      trafficPolicy('dangling', '{kind: Service, name: nope}', '  timeouts: {overall: 2s}'),
      '- not a mapping',
    );
    const fromText = validateText(text, 'mesh.yaml');
    const fromDocs = validateDocuments(docsOf(text), 'snapshot');
    assert.equal(fromDocs.ok, false);
    assert.ok(
      fromText.errors >= 4,
      `the fixture has several problems: ${fromText.diagnostics.map(said).join('\n')}`,
    );
    assert.deepEqual(fromDocs.diagnostics.map(said).sort(), fromText.diagnostics.map(said).sort());
    const at = (message: RegExp) => fromDocs.diagnostics.find((d) => message.test(d.message));
    assert.deepEqual(
      { file: at(/unknown field "retrys"/)?.file, line: at(/unknown field "retrys"/)?.line },
      { file: 'snapshot#2', line: 1 },
    );
    assert.equal(at(/us-west/)?.file, 'snapshot#1');
    assert.equal(at(/a document must be a mapping/)?.file, 'snapshot#4');
  });

  it('rejects documents that are not mappings and never throws', () => {
    const result = validateDocuments([null, 42, 'text', [], { kind: 'Service' }], 'x');
    assert.equal(result.ok, false);
    assert.ok(result.diagnostics.some((d) => d.file === 'x#4' && /apiVersion/.test(d.message)));
    assert.equal(result.resources.length, 0);
  });
});
