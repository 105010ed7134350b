import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Proxy } from '../../src/dataplane/proxy.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { region, service } from '../support/mesh-fixtures.js';
import { call, TestLab } from '../support/proxy-harness.js';

const API = 'apiVersion: isthmus.dev/v1alpha1';

const files = {
  'mesh.yaml': `${region('us-east', ['us-east-a']).trim()}
---
${service('frontend').trim()}
---
${API}
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 8080}]
  homeRegion: us-east
---
${API}
kind: TrafficPolicy
metadata: {name: base}
spec:
  targetRef: {kind: Mesh}
  timeouts: {connect: 200ms, perTry: 2s, overall: 3s}
  healthChecks: {enabled: false}
`,
};

/**
 * Two hops, as in production: frontend's sidecar (outbound) → orders' sidecar (inbound) → the
 * orders app (a fake upstream).
 */
describe('proxy: inbound side', () => {
  let app: FakeUpstream;
  let ordersSidecar: Proxy;
  let frontendSidecar: Proxy;
  const lab = new TestLab();

  before(async () => {
    app = await lab.upstream('orders-app');
    const dir = await lab.mesh(files);
    ordersSidecar = await lab.proxy({
      name: 'orders-1',
      service: 'orders',
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [],
      inboundApp: app.port,
    });
    const inboundPort = Number(ordersSidecar.addresses.inbound!.split(':')[1]);
    frontendSidecar = await lab.proxy({
      name: 'frontend-1',
      locality: 'us-east/us-east-a',
      resources: dir,
      endpoints: [{ service: 'orders', port: inboundPort, locality: 'us-east/us-east-a' }],
    });
  });
  after(() => lab.close());

  it('applies a write with an Idempotency-Key once and replays its response', async () => {
    app.take();
    app.behavior = { kind: 'ok', status: 201, body: '{"order":"o-1"}' };
    const send = () =>
      call(frontendSidecar.addresses.outbound!, {
        method: 'POST',
        host: 'orders',
        path: '/orders',
        body: '{"sku":"a"}',
        headers: { 'idempotency-key': 'checkout-42', 'content-type': 'application/json' },
      });
    const first = await send();
    assert.equal(first.status, 201);
    app.behavior = { kind: 'ok', status: 201, body: '{"order":"o-2"}' };
    const again = await send();
    assert.equal(again.status, 201);
    assert.equal(again.body, '{"order":"o-1"}', 'the remembered response, not a second order');
    assert.equal(again.headers['isthmus-idempotent-replay'], 'true');
    assert.equal(app.take().length, 1, 'the app saw the write once');

    const reused = await call(frontendSidecar.addresses.outbound!, {
      method: 'POST',
      host: 'orders',
      path: '/orders',
      body: '{"sku":"b"}',
      headers: { 'idempotency-key': 'checkout-42' },
    });
    assert.equal(reused.status, 422);
    assert.equal(reused.headers['isthmus-error'], 'idempotency-key-reused');
  });

  it('remembers a response too large to replay by its status only, and answers a repeat with 409', async () => {
    app.take();
    app.behavior = { kind: 'ok', status: 201, body: 'x'.repeat(100_000) };
    const send = () =>
      call(frontendSidecar.addresses.outbound!, {
        method: 'POST',
        host: 'orders',
        path: '/exports',
        body: '{}',
        headers: { 'idempotency-key': 'export-7' },
      });
    const first = await send();
    assert.equal(first.status, 201);
    assert.equal(first.body.length, 100_000, 'the large body streams through whole');
    const again = await send();
    assert.equal(again.status, 409);
    assert.equal(again.headers['isthmus-error'], 'idempotent-replay-unavailable');
    assert.equal(app.take().length, 1, 'still applied once');
  });

  it('propagates the remaining deadline to the next hop and the app', async () => {
    app.take();
    app.behavior = { kind: 'ok' };
    const r = await call(frontendSidecar.addresses.outbound!, { host: 'orders', path: '/status' });
    assert.equal(r.status, 200);
    const [seen] = app.take();
    const budget = Number(seen?.headers['isthmus-deadline-ms']);
    assert.ok(budget > 2000 && budget <= 3000, `the app was given ${budget} ms of the 3 s overall deadline`);
    assert.match(r.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/, 'the caller learns the correlation id');
    assert.equal(seen?.headers['x-request-id'], r.headers['x-request-id'], 'and the app sees the same one');
  });

  it('gives up on the app when the propagated deadline passes, with 504', async () => {
    app.behavior = { kind: 'ok', delayMs: 1500 };
    const started = Date.now();
    const r = await call(ordersSidecar.addresses.inbound!, {
      path: '/slow',
      headers: { 'isthmus-deadline-ms': '300' },
    });
    assert.equal(r.status, 504);
    assert.equal(r.headers['isthmus-error'], 'app-timeout');
    assert.ok(Date.now() - started < 1200);
  });

  it('rejects a malformed deadline header with 400 naming it', async () => {
    const r = await call(ordersSidecar.addresses.inbound!, {
      path: '/',
      headers: { 'isthmus-deadline-ms': 'soon' },
    });
    assert.equal(r.status, 400);
    assert.equal(r.headers['isthmus-error'], 'invalid-deadline');
    assert.match(r.body, /isthmus-deadline-ms/);
  });

  it('keeps the running configuration when a reload is invalid', async () => {
    const before = JSON.parse((await call(ordersSidecar.addresses.admin!, { path: '/config' })).body) as {
      version: string;
    };
    const dir = path.dirname(ordersSidecar.bootstrap.file);
    await writeFile(
      path.join(dir, 'broken.yaml'),
      `${API}\nkind: TrafficPolicy\nmetadata: {name: bad}\nspec:\n  targetRef: {kind: Mesh}\n  retrys: {}\n`,
    );
    const reload = await call(ordersSidecar.addresses.admin!, { method: 'POST', path: '/reload' });
    assert.equal(reload.status, 422);
    assert.match(reload.body, /unknown field \\"retrys\\"/);
    const afterReload = JSON.parse(
      (await call(ordersSidecar.addresses.admin!, { path: '/config' })).body,
    ) as {
      version: string;
      lastReloadError: unknown;
    };
    assert.equal(afterReload.version, before.version);
    assert.notEqual(afterReload.lastReloadError, null);
    app.behavior = { kind: 'ok' };
    assert.equal((await call(ordersSidecar.addresses.inbound!, { path: '/still-serving' })).status, 200);
  });
});
