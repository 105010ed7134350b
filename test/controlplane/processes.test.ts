import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { FakeUpstream } from '../support/fake-upstream.js';
import { isthmus } from '../support/cli.js';
import { waitUntil } from '../support/control-plane.js';
import { region, service, yamlStream } from '../support/mesh-fixtures.js';
import { startRole, type RoleProcess } from '../support/processes.js';
import { call } from '../support/proxy-harness.js';

const bootstrap = (name: string, service: string, zone: string, dataDir: string, inboundApp?: number) => `
apiVersion: isthmus.dev/v1alpha1
kind: ProxyBootstrap
metadata: {name: ${name}}
spec:
  mode: sidecar
  service: ${service}
  locality: eu-west/eu-west-a
  outbound: {listen: 127.0.0.1:0}
${inboundApp !== undefined ? `  inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:${inboundApp}}\n` : ''}  admin: {listen: 127.0.0.1:0}
  controlPlane:
    zones: [ws://${zone}]
    dataDir: ${dataDir}
`;

/**
 * The real processes: `isthmus global`, `isthmus zone`, two `isthmus proxy` sidecars and the
 * operator commands, killed with SIGKILL and restarted. A request from one sidecar reaches the
 * other's app only through what the control plane delivered (its registration, the policies).
 */
describe('control plane processes', () => {
  const running: RoleProcess[] = [];
  let dir = '';
  let app: FakeUpstream | undefined;
  after(async () => {
    for (const p of running) await p.stop('SIGKILL');
    await app?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const start = async (args: string[]) => {
    const p = await startRole(args);
    running.push(p);
    return p;
  };

  it('delivers, survives kill -9 of zone, proxy and global, and resumes', { timeout: 90_000 }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-procs-'));
    const meshDir = path.join(dir, 'mesh');
    await import('node:fs/promises').then((fs) => fs.mkdir(meshDir));
    await writeFile(
      path.join(meshDir, 'mesh.yaml'),
      yamlStream(region('eu-west', ['eu-west-a']), service('frontend'), service('catalog')),
    );
    app = await FakeUpstream.start('catalog-app');

    let global = await start(['global', '--data-dir', path.join(dir, 'global'), '--listen', '127.0.0.1:0']);
    const server = `http://${String(global.ready.address)}`;
    const applied = await isthmus(['apply', '-f', meshDir, '--server', server]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /applied as revision 1/);
    assert.match(applied.stdout, /\+ Service\/catalog/);

    let zone = await start([
      'zone',
      '--region',
      'eu-west',
      '--global',
      server,
      '--data-dir',
      path.join(dir, 'zone'),
      '--listen',
      '127.0.0.1:0',
    ]);
    const zoneAddress = String(zone.ready.address);
    await writeFile(
      path.join(dir, 'catalog.yaml'),
      bootstrap('catalog-1', 'catalog', zoneAddress, path.join(dir, 'catalog-data'), app.port),
    );
    await writeFile(
      path.join(dir, 'frontend.yaml'),
      bootstrap('frontend-1', 'frontend', zoneAddress, path.join(dir, 'frontend-data')),
    );
    await start(['proxy', '-c', path.join(dir, 'catalog.yaml')]);
    let frontend = await start(['proxy', '-c', path.join(dir, 'frontend.yaml')]);
    const viaFrontend = async () =>
      call(String(frontend.ready.listeners?.outbound), { host: 'catalog', path: '/items' });

    // The catalog sidecar registered its app; the frontend's snapshot carries it.
    await waitUntil(
      async () => (await viaFrontend()).status === 200,
      'a request through the mesh succeeds',
      10_000,
    );
    assert.equal((await viaFrontend()).headers['x-served-by'], 'catalog-app');

    const status = await isthmus(['status', '--server', server, '--zone', `http://${zoneAddress}`]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /eu-west\s+connected/);
    assert.match(status.stdout, /frontend-1.*current/);

    // Zone killed: the sidecars keep serving on what they have.
    await zone.stop('SIGKILL');
    assert.equal((await viaFrontend()).status, 200);
    // A sidecar restarted while its zone is down boots from its last-known-good snapshot.
    await frontend.stop('SIGKILL');
    frontend = await start(['proxy', '-c', path.join(dir, 'frontend.yaml')]);
    await frontend.waitForEvent(
      (e) => e.event === 'started-from-last-known-good',
      'start from last-known-good',
    );
    assert.equal((await viaFrontend()).status, 200, 'served from the last-known-good snapshot');

    // The zone comes back on its address and data; the sidecar reconnects and is current.
    zone = await start([
      'zone',
      '--region',
      'eu-west',
      '--global',
      server,
      '--data-dir',
      path.join(dir, 'zone'),
      '--listen',
      zoneAddress,
    ]);
    await frontend.waitForEvent(
      (e) => e.event === 'zone-connected',
      'reconnect to the restarted zone',
      15_000,
    );

    // Global killed: apply fails with a clear message, nothing else stops.
    const globalAddress = String(global.ready.address);
    await global.stop('SIGKILL');
    const refused = await isthmus(['apply', '-f', meshDir, '--server', server]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /cannot reach the global control plane/);
    assert.equal((await viaFrontend()).status, 200);

    // Global restarted on its data: history is intact and the zone reconnects.
    global = await start(['global', '--data-dir', path.join(dir, 'global'), '--listen', globalAddress]);
    const history = await isthmus(['history', '--server', server]);
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, /^\s+1\s/m);
    await waitUntil(
      async () => {
        const s = await isthmus(['status', '--server', server, '--json']);
        const zones = (
          JSON.parse(s.stdout) as { global: { zones: { region: string; connected: boolean }[] } }
        ).global.zones;
        return zones.find((z) => z.region === 'eu-west' && z.connected);
      },
      'the zone reconnects to the restarted global',
      15_000,
    );
  });
});
