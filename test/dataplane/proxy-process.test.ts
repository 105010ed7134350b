import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { FakeUpstream } from '../support/fake-upstream.js';
import { BIN, isthmus } from '../support/cli.js';
import { call, meshDir } from '../support/proxy-harness.js';
import { fromRoot } from '../support/paths.js';

/** The real `isthmus proxy` process: starts from a bootstrap file, serves, stops on SIGTERM. */
describe('isthmus proxy (process)', () => {
  let app: FakeUpstream;
  let dir: string;
  let cleanup: () => Promise<void>;

  before(async () => {
    app = await FakeUpstream.start('catalog-1');
    const m = await meshDir({});
    dir = m.dir;
    cleanup = m.cleanup;
    await writeFile(
      path.join(dir, 'proxy.yaml'),
      `apiVersion: isthmus.dev/v1alpha1
kind: ProxyBootstrap
metadata: {name: frontend-1}
spec:
  mode: sidecar
  service: frontend
  locality: us-east/us-east-a
  outbound: {listen: 127.0.0.1:0}
  admin: {listen: 127.0.0.1:0}
  resources: [${fromRoot('examples/mesh')}]
  endpoints:
    catalog:
      - {address: 127.0.0.1, port: ${app.port}, locality: us-east/us-east-a}
`,
    );
    await writeFile(
      path.join(dir, 'broken.yaml'),
      `apiVersion: isthmus.dev/v1alpha1
kind: ProxyBootstrap
metadata: {name: frontend-1}
spec:
  mode: sidecar
  locality: us-east/us-east-a
  outbound: {listen: 127.0.0.1:99999}
  admin: {listen: nowhere}
  resources: []
  endpoints: {}
`,
    );
  });
  after(async () => {
    await app.stop();
    await cleanup();
  });

  it('prints a ready line with its listeners, serves, and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, [BIN, 'proxy', '--config', path.join(dir, 'proxy.yaml')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const lines = createInterface({ input: child.stdout });
      let ready: { listeners: Record<string, string> } | undefined;
      for await (const line of lines) {
        const event = JSON.parse(line) as { event: string; listeners: Record<string, string> };
        if (event.event === 'ready') {
          ready = event;
          break;
        }
      }
      assert.ok(ready, 'a ready event');
      const r = await call(ready.listeners.outbound!, { host: 'catalog', path: '/products' });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-served-by'], 'catalog-1');
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses an invalid bootstrap with located errors and exit 1', async () => {
    const r = await isthmus(['proxy', '--config', path.join(dir, 'broken.yaml')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /broken\.yaml:7:\d+: error: ProxyBootstrap spec\.outbound\.listen/);
    assert.match(r.stderr, /broken\.yaml:8:\d+: error: ProxyBootstrap spec\.admin\.listen/);
    assert.match(r.stderr, /broken\.yaml:9:\d+: error: ProxyBootstrap spec\.resources/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});
