import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { buildRoot } from '../support/paths.js';

/**
 * The supervisor's children are unref'd, so a lab never stays up for them alone. Waiting for one
 * to exit must still keep the lab's process alive: each case runs a small parent process whose
 * only pending work is the supervisor's wait, and checks that it finishes its script (exit 0, the
 * last line printed) instead of being ended by Node with an unsettled await (exit 13).
 */
describe('lab supervisor', () => {
  let dir = '';
  const supervisorUrl = pathToFileURL(path.join(buildRoot, 'src', 'lab', 'supervisor.js')).href;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-supervisor-'));
    // A child that is ready at once and ignores SIGTERM: only SIGKILL (or its parent's end) stops it.
    await writeFile(
      path.join(dir, 'stubborn.mjs'),
      `process.on('SIGTERM', () => {});\nprocess.on('disconnect', () => process.exit(1));\nconsole.log(JSON.stringify({ event: 'ready', pid: process.pid }));\nsetInterval(() => {}, 1000);\n`,
    );
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function parent(body: string): { code: number | null; stdout: string; stderr: string } {
    const script = `import { Supervisor } from ${JSON.stringify(supervisorUrl)};
const s = new Supervisor({ logDir: ${JSON.stringify(path.join(dir, 'logs'))} });
await s.start({ name: 'stubborn', role: 'app', region: 'r', script: ${JSON.stringify(path.join(dir, 'stubborn.mjs'))}, args: [] });
${body}
console.log('done ' + JSON.stringify(s.status().map((p) => p.state)));
`;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    return { code: res.status, stdout: res.stdout, stderr: res.stderr };
  }

  it('stop escalates to SIGKILL after the grace period and the caller sees it finish', async () => {
    const r = parent('await s.stopAll(200);');
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
    assert.match(r.stdout, /done \["stopped"\]/);
    const log = await readFile(path.join(dir, 'logs', 'stubborn.log'), 'utf8');
    assert.match(log, /signal SIGKILL/);
  });

  it('kill waits for the exit and reports the process killed', () => {
    const r = parent(`await s.kill('stubborn');`);
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
    assert.match(r.stdout, /done \["killed"\]/);
  });
});
