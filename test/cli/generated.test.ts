/**
 * The generated reference files are committed so that they are readable on GitHub and usable by
 * editors (`# yaml-language-server: $schema=...`). They must match the code that generates them.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { meshJsonSchema, policyReference } from '../../src/model/reference.js';
import { fromRoot } from '../support/paths.js';

const REGENERATE = 'run `npm run docs:generate` and commit the result';

/** The first line where the two texts differ, so a failure says where to look. */
function firstDifference(actual: string, expected: string): string {
  const a = actual.split('\n');
  const e = expected.split('\n');
  for (let i = 0; i < Math.max(a.length, e.length); i++) {
    if (a[i] !== e[i]) {
      return `first difference at line ${i + 1}:\n  committed: ${JSON.stringify(a[i])}\n  generated: ${JSON.stringify(e[i])}`;
    }
  }
  return 'the texts are equal';
}

async function expectGenerated(file: string, expected: string): Promise<void> {
  const committed = await readFile(fromRoot(file), 'utf8');
  assert.ok(
    committed === expected,
    `${file} is out of date: ${REGENERATE}.\n${firstDifference(committed, expected)}`,
  );
}

describe('generated reference files', () => {
  it('docs/policies.md is policyReference()', async () => {
    await expectGenerated('docs/policies.md', policyReference());
  });

  it('schema/isthmus.schema.json is meshJsonSchema()', async () => {
    await expectGenerated('schema/isthmus.schema.json', `${JSON.stringify(meshJsonSchema(), null, 2)}\n`);
  });
});
