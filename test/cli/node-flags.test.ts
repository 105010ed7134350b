import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { NODE_FLAGS } from '../../src/core/node-flags.js';
import { fromRoot } from '../support/paths.js';

describe('runtime flags', () => {
  it('the isthmus bin runs node with NODE_FLAGS, the flags the lab and the benchmarks pass', async () => {
    const source = await readFile(fromRoot('src/cli/main.ts'), 'utf8');
    const shebang = source.split('\n')[0] ?? '';
    assert.equal(shebang, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
  });

  it('every flag is one this node accepts', async () => {
    // An unknown V8 flag is ignored with a warning only: a typo would silently change nothing.
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [
      ...NODE_FLAGS,
      '-e',
      'console.log("ok")',
    ]);
    assert.equal(stdout.trim(), 'ok');
    assert.equal(stderr, '');
  });
});
