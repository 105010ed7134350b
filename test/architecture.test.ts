import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { fromRoot } from './support/paths.js';

const run = promisify(execFile);

/**
 * The import-layering check (`npm run check:imports`) must reject what it is there to reject:
 * it runs the project's own dependency-cruiser configuration over a small tree of bad imports.
 */
describe('import layering check', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-layers-'));
    const files: Record<string, string> = {
      'tsconfig.json': JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' },
      }),
      'package.json': JSON.stringify({ type: 'module' }),
      // core importing model: upward.
      'src/core/clock.ts': "import { b } from '../model/b.js';\nexport const a = b;\n",
      // model/b ↔ model/c: a cycle within one layer.
      'src/model/b.ts': "import { c } from './c.js';\nexport const b = 1;\nexport const bc = c;\n",
      'src/model/c.ts': "import { b } from './b.js';\nexport const c = b;\n",
      // cli importing model: downward, allowed.
      'src/cli/main.ts': "import { b } from '../model/b.js';\nexport const m = b;\n",
    };
    for (const [name, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), text);
    }
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('reports an upward import and a cycle, and nothing else', async () => {
    const bin = fromRoot('node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
    const result = await run(
      process.execPath,
      [bin, 'src', '--config', fromRoot('.dependency-cruiser.cjs'), '--output-type', 'json'],
      { cwd: dir, maxBuffer: 16 * 1024 * 1024 },
    ).catch((e: { stdout: string; code: number }) => e);
    const report = JSON.parse(result.stdout) as {
      summary: { violations: { rule: { name: string }; from: string; to: string }[] };
    };
    const violations = report.summary.violations.map((v) => `${v.rule.name} ${v.from} → ${v.to}`).sort();
    assert.deepEqual(violations, [
      'layer-core src/core/clock.ts → src/model/b.ts',
      'no-circular src/model/b.ts → src/model/c.ts',
    ]);
  });
});
