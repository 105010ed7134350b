import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ErrorCodes } from '../src/core/errors.js';
import { RULES } from '../src/model/diagnostics.js';
import { fromRoot } from './support/paths.js';

const read = (p: string) => readFileSync(fromRoot(p), 'utf8');

describe('documentation stays true', () => {
  it('docs/errors.md lists every error code', () => {
    const doc = read('docs/errors.md');
    for (const code of Object.keys(ErrorCodes))
      assert.ok(doc.includes(`\`${code}\``), `${code} missing from docs/errors.md`);
  });

  it('docs/cli.md lists every diagnostic rule', () => {
    const doc = read('docs/cli.md');
    for (const rule of Object.keys(RULES))
      assert.match(
        doc,
        new RegExp(`^\\|\\s*\`${rule}\`\\s*\\|`, 'm'),
        `rule ${rule} missing from docs/cli.md`,
      );
  });

  it('the README shows the test command that .ci/run runs, and the main job', () => {
    const readme = read('README.md');
    const ci = read('.ci/run');
    assert.match(ci, /^npm test$/m);
    assert.ok(readme.includes('npm install && npm test'), 'README lacks the test command');
    assert.ok(readme.includes('npm install && npx isthmus lab'), 'README lacks the main job');
  });
});
