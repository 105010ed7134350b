import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { waitUntil } from '../support/control-plane.js';
import { startRole, type RoleProcess } from '../support/processes.js';
import { get, post, TestSource, type Continuity, type Summary } from '../support/telemetry-source.js';

/**
 * Real `isthmus collector` processes: the region collector is killed with SIGKILL while a source
 * streams to it and restarted on the same data dir. A source resends what was not answered 200;
 * nothing that was answered 200 may be lost, at the region or upstream at global.
 */
describe('collector process killed mid-stream', () => {
  let dir = '';
  const running: RoleProcess[] = [];
  after(async () => {
    for (const p of running) await p.stop('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('loses nothing it answered 200 for, and forwarding resumes', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-collector-kill-'));
    const global = await startRole([
      'collector',
      '--region',
      'global',
      '--data-dir',
      path.join(dir, 'global'),
      '--listen',
      '127.0.0.1:0',
      '--retention', // the test source's timestamps are from 2023
      'forever',
    ]);
    running.push(global);
    const globalUrl = `http://${String(global.ready.address)}`;
    const regionArgs = [
      'collector',
      '--region',
      'eu-west',
      '--data-dir',
      path.join(dir, 'eu-west'),
      '--listen',
      '127.0.0.1:0',
      '--retention', // the test source's timestamps are from 2023
      'forever',
      '--upstream',
      globalUrl,
    ];
    let region = await startRole(regionArgs);
    running.push(region);
    let regionUrl = `http://${String(region.ready.address)}`;

    const src = new TestSource('proxy/frontend-1@eu-west', 'eu-west');
    const bodies: [string, Record<string, unknown>][] = [];
    for (let i = 0; i < 120; i++) {
      if (i % 3 === 1) bodies.push(['/v1/logs', src.logs(20).body]);
      else if (i % 3 === 2) bodies.push(['/v1/metrics', src.metrics(10).body]);
      else bodies.push(['/v1/traces', src.spans(40).body]);
    }
    const total = src.seq;
    let answered200 = 0;
    let failures = 0;
    let next = 0;
    // Like a real source: resend until answered 200.
    const worker = async () => {
      for (;;) {
        const i = next++;
        const item = bodies[i];
        if (!item) return;
        for (;;) {
          const r = await post(regionUrl, item[0], item[1]).catch(() => undefined);
          if (r?.status === 200) break;
          failures++;
          await new Promise((res) => setTimeout(res, 20));
        }
        answered200++;
      }
    };
    const workers = Promise.all([worker(), worker(), worker(), worker()]);
    await waitUntil(() => answered200 >= 40, '40 answers before the kill', 10_000);
    region.child.kill('SIGKILL');
    await region.exited;
    const beforeRestart = answered200;
    assert.ok(beforeRestart < bodies.length, 'killed mid-stream');
    region = await startRole(regionArgs);
    running.push(region);
    regionUrl = `http://${String(region.ready.address)}`;
    await workers;
    assert.equal(answered200, bodies.length);
    assert.equal((await post(regionUrl, '/v1/heartbeat', src.heartbeat())).status, 200);

    const expected = { spans: 40 * 40, points: 40 * 10 * 2, logs: 40 * 20 };
    for (const [where, url] of [
      ['region', regionUrl],
      ['global', globalUrl],
    ] as const) {
      const c = await waitUntil(
        async () => {
          const s = (await get<Continuity>(url, '/v1/continuity')).body.sources[0];
          return s && s.received === total ? s : undefined;
        },
        `${where} to hold every seq`,
        15_000,
        50,
      );
      assert.equal(c.gaps, 0, `${where}: no gap`);
      assert.equal(c.emitted, total);
      assert.deepEqual(
        (await get<Summary>(url, '/v1/summary')).body.stored,
        expected,
        `${where}: exactly once`,
      );
    }
    assert.ok(failures > 0, 'the source saw the collector go away');
    await waitUntil(
      async () => (await get<Summary>(regionUrl, '/v1/summary')).body.forwarding?.backlogRecords === 0,
      'the forwarding backlog to drain after the restart',
    );
    assert.equal(await region.stop(), 0, region.stderr());
    assert.equal(await global.stop(), 0, global.stderr());
  });
});
