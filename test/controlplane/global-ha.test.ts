import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ApiClient } from '../../src/controlplane/api-client.js';
import { isthmus } from '../support/cli.js';
import { ControlPlaneLab, waitUntil } from '../support/control-plane.js';
import { startEtcd, type TestEtcd } from '../support/etcd.js';
import { region, service, yamlStream } from '../support/mesh-fixtures.js';
import { startRole, type RoleProcess } from '../support/processes.js';

interface Status {
  id: string;
  revision: number;
  leader: { self: boolean; id: string | null };
}

/**
 * Two `isthmus global` processes sharing a real etcd: one leads, writes sent to the other are
 * forwarded, and killing the leader with SIGKILL moves leadership without losing an applied change.
 */
describe('global control plane on etcd (two processes)', () => {
  const lab = new ControlPlaneLab();
  const globals: RoleProcess[] = [];
  let etcd: TestEtcd | undefined;
  let dir = '';
  after(async () => {
    await lab.close();
    for (const g of globals) await g.stop('SIGKILL');
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('elects one leader, follows it for writes, and fails over on kill -9', { timeout: 60_000 }, async () => {
    etcd = await startEtcd();
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-ha-'));
    const start = async (id: string) => {
      const g = await startRole([
        'global',
        '--data-dir',
        path.join(dir, id),
        '--store',
        etcd!.url,
        '--listen',
        '127.0.0.1:0',
        '--id',
        id,
        '--election-ttl',
        '2000',
      ]);
      globals.push(g);
      return { process: g, url: `http://${String(g.ready.address)}` };
    };
    const [g1, g2] = [await start('g1'), await start('g2')];
    const status = (url: string) => new ApiClient(url).get<Status>('/v1/status');
    const leaderUrl = await waitUntil(
      async () => {
        const [a, b] = [await status(g1.url), await status(g2.url)];
        if (a.leader.self && b.leader.self) throw new Error('two leaders at once');
        return a.leader.self ? g1.url : b.leader.self ? g2.url : undefined;
      },
      'a leader',
      10_000,
    );
    const [leader, follower] = leaderUrl === g1.url ? [g1, g2] : [g2, g1];

    // A zone that knows both globals, with one proxy.
    const zone = await lab.zone('eu-west', [follower.url, leader.url]);
    const proxy = lab.proxy({ zone: zone.address, id: 'p1', locality: 'eu-west/eu-west-a' });

    // An apply sent to the follower is forwarded to the leader.
    const meshDir = path.join(dir, 'mesh');
    await import('node:fs/promises').then((fs) => fs.mkdir(meshDir));
    await writeFile(
      path.join(meshDir, 'a.yaml'),
      yamlStream(region('eu-west', ['eu-west-a']), service('web')),
    );
    const first = await isthmus(['apply', '-f', meshDir, '--server', follower.url]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /applied as revision 1/);
    await proxy.waitFor((s) => s.policyRevision === 1, 'revision 1 delivered', 10_000);

    // Kill the leader outright: the follower takes over within about the election TTL.
    const killedAt = Date.now();
    await leader.process.stop('SIGKILL');
    await waitUntil(async () => (await status(follower.url)).leader.self, 'the follower leads', 15_000);
    const failoverMs = Date.now() - killedAt;
    assert.ok(failoverMs < 10_000, `leadership moved in ${failoverMs} ms`);

    // Nothing applied was lost, and the new leader takes writes that reach the zone.
    await writeFile(path.join(meshDir, 'b.yaml'), yamlStream(service('cart')));
    const second = await isthmus(['apply', '-f', meshDir, '--server', follower.url]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /applied as revision 2/);
    const history = await new ApiClient(follower.url).get<{ revisions: { revision: number }[] }>(
      '/v1/history',
    );
    assert.deepEqual(
      history.revisions.map((r) => r.revision),
      [2, 1],
    );
    await proxy.waitFor((s) => s.policyRevision === 2, 'revision 2 delivered after failover', 15_000);
  });
});
