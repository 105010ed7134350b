import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isIsthmusError } from '../../src/core/errors.js';
import { Lab } from '../../src/lab/lab.js';

describe('lab folder', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('is refused, untouched, while another lab process holds it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'isthmus-lab-folder-'));
    dirs.push(dir);
    // A running lab's folder: its lab.json, the data its processes write, and its lock.
    const owner = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      await writeFile(path.join(dir, 'lab.json'), '{}');
      await writeFile(path.join(dir, 'data'), 'in use');
      await writeFile(path.join(dir, 'lab.lock'), `${JSON.stringify({ pid: owner.pid, startedAtMs: 0 })}\n`);
      const err = await Lab.start({ dir, subnet: 201 }).then(
        () => assert.fail('a second lab started in a folder in use'),
        (e: unknown) => e,
      );
      assert.ok(isIsthmusError(err), String(err));
      assert.equal(err.code, 'ISTHMUS_E_IO');
      assert.match(err.message, new RegExp(`lab folder is in use by process ${owner.pid} \\(lab\\.lock\\)`));
      assert.deepEqual((await readdir(dir)).sort(), ['data', 'lab.json', 'lab.lock']);
      assert.equal(await readFile(path.join(dir, 'data'), 'utf8'), 'in use');
    } finally {
      owner.kill();
    }
  });

  it('still refuses a folder that holds something other than a lab', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'isthmus-lab-folder-'));
    dirs.push(dir);
    await writeFile(path.join(dir, 'notes.txt'), 'mine');
    await assert.rejects(Lab.start({ dir, subnet: 202 }), /is not a lab folder/);
    assert.deepEqual(await readdir(dir), ['notes.txt']);
  });
});
