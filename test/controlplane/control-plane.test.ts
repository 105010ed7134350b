import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import type { ApiCallError } from '../../src/controlplane/api-client.js';
import { PROXY_STREAM_PATH } from '../../src/controlplane/zone.js';
import { SUBPROTOCOL } from '../../src/protocol/messages.js';
import { ControlPlaneLab, names, resources, waitUntil } from '../support/control-plane.js';
import { CuttableLink } from '../support/cuttable-link.js';
import { API, region, service, yamlStream } from '../support/mesh-fixtures.js';

const base = [region('eu-west', ['eu-west-a']), region('us-east', ['us-east-a'])];
const partitionPolicy = (body: string) => `
${API}
kind: PartitionPolicy
metadata: {name: partition}
spec:
  targetRef: {kind: Mesh}
${body}`;

const mesh = (...extra: string[]) => resources(yamlStream(...base, ...extra));

describe('control plane: apply, delivery and history', () => {
  const lab = new ControlPlaneLab();
  after(() => lab.close());

  it('delivers an applied change to every proxy, records who changed what, and rolls back', async () => {
    const g = await lab.global();
    const eu = await lab.zone('eu-west', [g.url]);
    const p = lab.proxy({ zone: eu.address, id: 'p1', locality: 'eu-west/eu-west-a', service: 'web' });

    const r1 = await g.api.post<{ revision: number }>('/v1/apply', {
      resources: mesh(service('web'), service('catalog')),
      actor: 'alice',
      message: 'first',
    });
    assert.equal(r1.revision, 1);
    const s1 = await p.waitFor((s) => s.policyRevision === 1, 'revision 1 at the proxy');
    assert.deepEqual(names(s1), ['Region/eu-west', 'Region/us-east', 'Service/catalog', 'Service/web']);

    // Deleting catalog: the proxy's next snapshot no longer has it.
    const r2 = await g.api.post<{ revision: number; changes: { action: string; name: string }[] }>(
      '/v1/apply',
      {
        resources: mesh(service('web')),
        actor: 'bob',
        baseRevision: 1,
      },
    );
    assert.equal(r2.revision, 2);
    assert.deepEqual(r2.changes, [{ action: 'delete', kind: 'Service', name: 'catalog' }]);
    await p.waitFor(
      (s) => s.policyRevision === 2 && !names(s).includes('Service/catalog'),
      'catalog deleted',
    );
    assert.ok(p.deltas >= 1, 'the change came as a delta');
    // A proxy that claims a version it does not hold (e.g. booted from disk) cannot use a delta:
    // it refuses it, and the zone sends the complete snapshot.
    const amnesiac = lab.proxy({
      zone: eu.address,
      id: 'p2',
      locality: 'eu-west/eu-west-a',
      resume: p.latest?.version,
    });

    // The zone acknowledged, and global's view says so.
    await waitUntil(async () => {
      const { zones } = await g.api.get<{
        zones: { region: string; ackedRevision: number; connected: boolean }[];
      }>('/v1/zones');
      return zones.find((z) => z.region === 'eu-west' && z.connected && z.ackedRevision === 2);
    }, 'zone eu-west acked revision 2');

    const history = await g.api.get<{ revisions: { revision: number; actor: string; changes: unknown[] }[] }>(
      '/v1/history',
    );
    assert.deepEqual(
      history.revisions.map((r) => [r.revision, r.actor]),
      [
        [2, 'bob'],
        [1, 'alice'],
      ],
    );
    const rec = await g.api.get<{ changes: { action: string; before?: { metadata: { name: string } } }[] }>(
      '/v1/history/2',
    );
    assert.equal(rec.changes[0]?.before?.metadata.name, 'catalog', 'the audit trail keeps what was deleted');

    // Rollback to 1 brings catalog back as a new revision 3.
    const r3 = await g.api.post<{ revision: number }>('/v1/rollback', { revision: 1, actor: 'carol' });
    assert.equal(r3.revision, 3);
    await p.waitFor(
      (s) => s.policyRevision === 3 && names(s).includes('Service/catalog'),
      'catalog restored',
    );
    const recovered = await amnesiac.waitFor(
      (s) => s.policyRevision === 3,
      'complete snapshot after a refused delta',
    );
    assert.deepEqual(names(recovered), names(p.latest), 'the rebuilt and the complete snapshot agree');
    assert.equal(recovered.version, p.latest?.version);
    assert.equal(amnesiac.deltas, 1, 'one delta refused, then the complete snapshot');

    // A stale base revision is refused, and nothing changes.
    await assert.rejects(
      g.api.post('/v1/apply', { resources: mesh(), baseRevision: 1 }),
      (e: ApiCallError) => e.code === 'ISTHMUS_E_CONFLICT' && e.status === 409,
    );
    // Invalid resources never reach a zone: refused with diagnostics.
    await assert.rejects(
      g.api.post('/v1/apply', {
        resources: [
          ...mesh(service('web')),
          {
            apiVersion: 'isthmus.dev/v1alpha1',
            kind: 'Service',
            metadata: { name: 'bad' },
            spec: { ports: 'nope' },
          },
        ],
      }),
      (e: ApiCallError) =>
        e.status === 422 && Array.isArray(e.body.diagnostics) && e.body.diagnostics.length > 0,
    );
    const head = await g.api.get<{ revision: number }>('/v1/resources');
    assert.equal(head.revision, 3);
    assert.equal(p.latest?.policyRevision, 3);
  });

  it('refuses malformed API input with a clear error', async () => {
    const g = await lab.global();
    const { request } = await import('undici');
    const post = async (body: string, type = 'application/json') => {
      const res = await request(`${g.url}/v1/apply`, {
        method: 'POST',
        body,
        headers: { 'content-type': type },
      });
      return { status: res.statusCode, json: (await res.body.json()) as { error: string; message: string } };
    };
    const notJson = await post('{"resources": [');
    assert.equal(notJson.status, 400);
    assert.match(notJson.json.message, /not valid JSON/);
    const wrongType = await post('x', 'text/plain');
    assert.equal(wrongType.status, 415);
    const noList = await post('{"resources": 3}');
    assert.equal(noList.status, 400);
    assert.match(noList.json.message, /"resources"/);
    const unknown = await request(`${g.url}/v1/nope`);
    assert.equal(unknown.statusCode, 404);
    await unknown.body.dump();
  });
});

describe('control plane: registrations and inventories', () => {
  const lab = new ControlPlaneLab();
  after(() => lab.close());

  it('carries a region’s registrations to other regions, and removes an endpoint whose lease runs out', async () => {
    const g = await lab.global();
    await g.api.post('/v1/apply', {
      resources: mesh(service('web'), service('catalog'), partitionPolicy('  leaseTtl: 1s')),
    });
    const eu = await lab.zone('eu-west', [g.url]);
    const us = await lab.zone('us-east', [g.url]);
    const catalog = lab.proxy({
      zone: us.address,
      id: 'catalog-1',
      locality: 'us-east/us-east-a',
      service: 'catalog',
      register: {
        service: 'catalog',
        address: '127.0.0.9',
        port: 9001,
        locality: 'us-east/us-east-a',
        weight: 1,
      },
    });
    const web = lab.proxy({ zone: eu.address, id: 'web-1', locality: 'eu-west/eu-west-a', service: 'web' });
    const gw = lab.proxy({ zone: us.address, id: 'gw-us', locality: 'us-east/us-east-a', role: 'gateway' });

    const seen = await web.waitFor(
      (s) => s.endpoints.some((e) => e.port === 9001),
      'eu-west proxy sees catalog in us-east',
    );
    assert.deepEqual(seen.endpoints.find((e) => e.port === 9001)?.locality, 'us-east/us-east-a');
    await gw.waitFor(
      (s) => s.endpoints.some((e) => e.port === 9001),
      'us-east gateway sees its local catalog',
    );

    // The catalog proxy goes away without deregistering: after the 1 s lease the endpoint is gone.
    await catalog.close();
    const t0 = Date.now();
    await web.waitFor((s) => !s.endpoints.some((e) => e.port === 9001), 'lease expiry reaches eu-west', 5000);
    assert.ok(Date.now() - t0 >= 500, 'the endpoint stays while its lease runs');
  });

  it('a zone cut off from global keeps serving, and after healing deletions propagate and nothing comes back', async () => {
    const g = await lab.global();
    await g.api.post('/v1/apply', { resources: mesh(service('web'), service('catalog'), service('cart')) });
    const link = await CuttableLink.start(g.cp.address);
    lab.defer(() => link.close());
    const eu = await lab.zone('eu-west', [link.url]);
    const us = await lab.zone('us-east', [g.url]);
    const p = lab.proxy({ zone: eu.address, id: 'web-1', locality: 'eu-west/eu-west-a', service: 'web' });
    const watcher = lab.proxy({
      zone: us.address,
      id: 'web-us',
      locality: 'us-east/us-east-a',
      service: 'web',
    });
    await p.waitFor((s) => names(s).includes('Service/cart'), 'initial state');

    link.cut();
    await waitUntil(
      () => !(eu.cp.status().global as { connected: boolean }).connected,
      'zone notices the cut',
    );
    // During the partition: delete cart, add search. The zone cannot know yet.
    await g.api.post('/v1/apply', { resources: mesh(service('web'), service('catalog'), service('search')) });
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(names(p.latest).includes('Service/cart'), 'the zone keeps serving what it had');
    // A proxy connecting during the partition still gets the zone's state.
    const late = lab.proxy({ zone: eu.address, id: 'web-2', locality: 'eu-west/eu-west-a', service: 'web' });
    await late.waitFor((s) => names(s).includes('Service/cart'), 'late proxy served from the zone');
    // A registration made in the cut-off region keeps flowing to its own proxies…
    lab.proxy({
      zone: eu.address,
      id: 'catalog-eu',
      locality: 'eu-west/eu-west-a',
      service: 'catalog',
      register: {
        service: 'catalog',
        address: '127.0.0.7',
        port: 7007,
        locality: 'eu-west/eu-west-a',
        weight: 1,
      },
    });
    await p.waitFor(
      (s) => s.endpoints.some((e) => e.port === 7007),
      'local registration during the partition',
    );
    assert.ok(!watcher.latest?.endpoints.some((e) => e.port === 7007), 'other regions cannot know yet');

    link.heal();
    const healed = await p.waitFor((s) => names(s).includes('Service/search'), 'changes after heal', 10_000);
    assert.ok(!names(healed).includes('Service/cart'), 'the deletion made during the partition propagated');
    // …and reaches the other regions after the heal, exactly once.
    const seen = await watcher.waitFor(
      (s) => s.endpoints.some((e) => e.port === 7007),
      'registration after heal',
      10_000,
    );
    assert.equal(seen.endpoints.filter((e) => e.port === 7007).length, 1);

    // Restarting the zone from its data directory does not resurrect cart either.
    await eu.cp.close();
    const eu2 = await lab.zone('eu-west', [], { dataDir: eu.dataDir, listen: eu.address });
    const p2 = lab.proxy({ zone: eu2.address, id: 'web-3', locality: 'eu-west/eu-west-a', service: 'web' });
    const fromDisk = await p2.waitFor((s) => s.policyRevision === 2, 'restarted zone serves from disk');
    assert.deepEqual(names(fromDisk), names(healed));
  });
});

describe('control plane: bad peers', () => {
  const lab = new ControlPlaneLab();
  after(() => lab.close());

  const open = (url: string, protocol: string | undefined = SUBPROTOCOL) =>
    new Promise<{ ws: WebSocket; messages: unknown[]; closed: Promise<number> }>((resolve, reject) => {
      const ws = new WebSocket(url, protocol);
      const messages: unknown[] = [];
      const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
      ws.on('message', (d: Buffer) => messages.push(JSON.parse(d.toString())));
      ws.once('open', () => resolve({ ws, messages, closed }));
      ws.once('error', reject);
    });

  it('answers garbage on a stream with an error naming it, and keeps serving others', async () => {
    const g = await lab.global();
    await g.api.post('/v1/apply', { resources: mesh(service('web')) });
    const eu = await lab.zone('eu-west', [g.url]);
    const good = lab.proxy({ zone: eu.address, id: 'good', locality: 'eu-west/eu-west-a' });
    await good.waitFor((s) => s.policyRevision === 1, 'good proxy configured');

    const bad = await open(`ws://${eu.address}${PROXY_STREAM_PATH}`);
    bad.ws.send('this is not json');
    assert.equal(await bad.closed, 1008);
    assert.match(JSON.stringify(bad.messages), /not JSON/);

    const noHello = await open(`ws://${eu.address}${PROXY_STREAM_PATH}`);
    noHello.ws.send(JSON.stringify({ type: 'ack', version: '1' }));
    assert.equal(await noHello.closed, 1008);
    assert.match(JSON.stringify(noHello.messages), /first message must be \\"hello\\"/);

    const future = await open(`ws://${eu.address}${PROXY_STREAM_PATH}`);
    future.ws.send(
      JSON.stringify({ type: 'hello', protocol: 7, node: { id: 'x', role: 'proxy', locality: 'eu-west' } }),
    );
    assert.equal(await future.closed, 1008);
    assert.match(JSON.stringify(future.messages), /unsupported protocol version 7/);

    const wrongRegion = await open(`ws://${eu.address}${PROXY_STREAM_PATH}`);
    wrongRegion.ws.send(
      JSON.stringify({
        type: 'hello',
        protocol: 1,
        node: { id: 'x', role: 'proxy', locality: 'us-east/us-east-a' },
      }),
    );
    assert.equal(await wrongRegion.closed, 1008);
    assert.match(JSON.stringify(wrongRegion.messages), /this zone serves region eu-west/);

    await assert.rejects(open(`ws://${eu.address}${PROXY_STREAM_PATH}`, 'other'), /400/);

    // A peer that says hello and then stalls is dropped after three missed heartbeats (3 × 100 ms).
    const staller = await open(`ws://${eu.address}${PROXY_STREAM_PATH}`);
    staller.ws.send(
      JSON.stringify({
        type: 'hello',
        protocol: 1,
        node: { id: 'slow', role: 'proxy', locality: 'eu-west' },
      }),
    );
    const stalledAt = Date.now();
    await staller.closed;
    assert.ok(Date.now() - stalledAt < 2000, 'dropped promptly');

    // The good proxy is still served: a new revision reaches it.
    await g.api.post('/v1/apply', { resources: mesh(service('web'), service('cart')) });
    await good.waitFor((s) => s.policyRevision === 2, 'good proxy still served');
  });

  it('a refused snapshot is visible on the zone and not sent again until something changes', async () => {
    const g = await lab.global();
    await g.api.post('/v1/apply', { resources: mesh(service('web')) });
    const eu = await lab.zone('eu-west', [g.url]);
    const p = lab.proxy({ zone: eu.address, id: 'picky', locality: 'eu-west/eu-west-a' });
    p.refuseWith = 'cannot use it';
    await p.waitFor((s) => s.policyRevision === 1, 'snapshot delivered');
    const status = await waitUntil(() => {
      const s = eu.cp.status() as { proxies: { node: string; nack: { reason: string } | null }[] };
      return s.proxies.find((x) => x.node === 'picky' && x.nack);
    }, 'the NACK recorded');
    assert.equal(status.nack?.reason, 'cannot use it');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(p.snapshots.length, 1, 'not resent');
  });
});
