import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { DrillReport } from '../../src/chaos/drill/report.js';
import { isthmus } from '../support/cli.js';
import { fromRoot } from '../support/paths.js';

/** Processes whose command line mentions `needle` (the lab's folder names every child's files). */
function processesMentioning(needle: string): string[] {
  const out = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.includes(needle) && !l.includes('ps -eo'))
    .map((l) => l.trim());
}

function listeningOn(prefix: string): string[] {
  const out = execFileSync('ss', ['-Hltn'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(` ${prefix}`));
}

/**
 * The shipped smoke drill, end to end: `isthmus drill run` starts a three-region lab as real
 * processes (control planes, collectors, gateways, demo apps beside sidecars, the link emulator),
 * cuts eu-west off with refused connections, heals, and reports. ap-south reads its catalog from
 * eu-west, so its traffic must move to us-east without one failed request, come back after the
 * heal, and lose no signal. Afterwards no process of the lab is left and no port is held.
 */
describe('isthmus drill run drills/smoke.yaml', () => {
  const subnet = 100 + Math.floor(Math.random() * 90);
  let dir = '';
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(
    'fails over with no failed request, fails back, loses no signal, and leaves nothing behind',
    { timeout: 240_000 },
    async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'isthmus-drill-test-'));
      const labDir = path.join(dir, 'lab');
      const html = path.join(dir, 'report.html');
      const run = await isthmus(
        [
          'drill',
          'run',
          fromRoot('drills/smoke.yaml'),
          '--subnet',
          String(subnet),
          '--dir',
          labDir,
          '--json',
          '--html',
          html,
        ],
        { timeoutMs: 220_000 },
      );
      let report: DrillReport;
      try {
        report = JSON.parse(run.stdout) as DrillReport;
      } catch {
        assert.fail(`no JSON report (exit ${run.code}):\n${run.stderr.slice(-3000)}`);
      }
      const show = `\n${JSON.stringify({ verdict: report.verdict, reason: report.reason, phases: report.phases, failover: report.failover, expectations: report.expectations, timeline: report.timeline }, null, 1)}\n${run.stderr.slice(-2000)}`;
      assert.equal(report.verdict, 'pass', show);
      assert.equal(run.code, 0, show);

      const fault = report.phases.find((p) => p.phase === 'fault');
      assert.ok(fault && fault.requests >= 30, `the fault phase carried load${show}`);
      assert.equal(fault.failedIdempotent, 0, show);
      // ap-south's catalog reads moved to us-east during the cut and came back after it.
      assert.ok(report.failover.timeToFailoverMs !== null && report.failover.timeToFailoverMs <= 2000, show);
      assert.ok(
        report.failover.timeToFailbackMs !== null && report.failover.timeToFailbackMs <= 15_000,
        show,
      );
      const kinds = report.timeline.map((e) => e.kind);
      for (const k of ['fault-applied', 'fault-removed', 'heal-verified'] as const)
        assert.ok(kinds.includes(k), `${k} in the timeline${show}`);
      // Every source's signals reached the global collector: counted, none lost.
      assert.equal(report.signals.complete, true, show);
      assert.ok(
        report.signals.rows.some((r) => r.region === 'ap-south' && r.received > 100),
        show,
      );
      assert.equal(report.signals.lost, 0, show);

      const page = await readFile(html, 'utf8');
      assert.match(page, /<svg/);
      assert.match(page, /cut-eu-west/);

      // Clean shutdown: no process of the lab and no listener of its subnet remains.
      assert.deepEqual(processesMentioning(labDir), []);
      assert.deepEqual(listeningOn(`127.${subnet}.`), []);
    },
  );

  it('refuses a bad fault or an unreachable lab with a clear message', async () => {
    const bad = await isthmus(['lab', 'fault', 'partition', '--region', 'eu-west', '--mode', 'sideways']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--mode: .*blackhole, reject or reset/);
    const typo = await isthmus(['lab', 'fault', 'partiton', '--region', 'eu-west']);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /did you mean "partition"/);
    const none = await isthmus(['lab', 'status', '--lab', 'http://127.0.0.1:9']);
    assert.equal(none.code, 1);
    assert.match(
      none.stderr,
      /cannot reach the lab at http:\/\/127\.0\.0\.1:9 \(is `isthmus lab` running\?\)/,
    );
  });
});
