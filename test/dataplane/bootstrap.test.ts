import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadBootstrap, parseBootstrap } from '../../src/dataplane/bootstrap.js';
import { fromRoot } from '../support/paths.js';
import { yamlDoc } from '../support/yaml-doc.js';

const FILE = path.join(path.sep, 'etc', 'isthmus', 'proxy.yaml');

const problems = (text: string) =>
  parseBootstrap(text, FILE).diagnostics.map((d) => `${d.line}:${d.col} ${d.path ?? ''} ${d.message}`);

describe('bootstrap: control-plane mode', () => {
  it('resolves dataDir against the bootstrap file and keeps the zone list', () => {
    const { bootstrap, diagnostics } = parseBootstrap(
      yamlDoc`
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxyBootstrap
        metadata: {name: frontend-1}
        spec:
          mode: sidecar
          service: frontend
          locality: us-east/us-east-a
          outbound: {listen: 127.0.0.1:0}
          admin: {listen: 127.0.0.1:0}
          controlPlane:
            zones: [ws://zone-a.internal:7400, 'wss://[::1]:7401/isthmus']
            dataDir: ../../var/lib/isthmus
      `,
      FILE,
    );
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(bootstrap?.controlPlane, {
      zones: ['ws://zone-a.internal:7400', 'wss://[::1]:7401/isthmus'],
      dataDir: path.resolve(path.dirname(FILE), '../../var/lib/isthmus'),
    });
    assert.deepEqual(bootstrap?.resourcePaths, []);
    assert.deepEqual(bootstrap?.endpoints, []);
  });

  it('rejects static resources or endpoints beside a control plane, located at each', () => {
    const text = yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: ProxyBootstrap
      metadata: {name: frontend-1}
      spec:
        mode: sidecar
        service: frontend
        locality: us-east/us-east-a
        outbound: {listen: 127.0.0.1:0}
        admin: {listen: 127.0.0.1:0}
        resources: [../mesh]
        endpoints: {}
        controlPlane: {zones: [ws://127.0.0.1:7400], dataDir: data}
    `;
    const found = problems(text);
    assert.equal(found.length, 2, found.join('\n'));
    assert.match(found[0] ?? '', /^10:3 spec\.resources static `resources` and `controlPlane` are exclusive/);
    assert.match(found[1] ?? '', /^11:3 spec\.endpoints static `endpoints` and `controlPlane` are exclusive/);
    assert.equal(parseBootstrap(text, FILE).bootstrap, undefined);
  });

  it('still requires resources and endpoints without a control plane', () => {
    const found = problems(yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: ProxyBootstrap
      metadata: {name: frontend-1}
      spec:
        mode: sidecar
        service: frontend
        locality: us-east/us-east-a
        outbound: {listen: 127.0.0.1:0}
        admin: {listen: 127.0.0.1:0}
    `);
    assert.deepEqual(
      found.map((f) => f.replace(/^\d+:\d+ /, '')),
      ['spec missing required field "endpoints"', 'spec missing required field "resources"'],
    );
  });

  it('rejects a zone that is not a ws:// or wss:// URL with a port, and an empty list', () => {
    const found = problems(yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: ProxyBootstrap
      metadata: {name: gw}
      spec:
        mode: gateway
        locality: eu-west/eu-west-a
        gateway: {listen: 127.0.0.1:0}
        admin: {listen: 127.0.0.1:0}
        controlPlane: {zones: ['http://zone:7400', 'ws://zone'], dataDir: data}
    `);
    assert.equal(found.length, 2, found.join('\n'));
    assert.ok(found.every((f) => f.startsWith('9:')));
    assert.match(found.join('\n'), /spec\.controlPlane\.zones\[0\]/);
    assert.match(found.join('\n'), /spec\.controlPlane\.zones\[1\]/);
    const empty = problems(yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: ProxyBootstrap
      metadata: {name: gw}
      spec:
        mode: gateway
        locality: eu-west/eu-west-a
        gateway: {listen: 127.0.0.1:0}
        admin: {listen: 127.0.0.1:0}
        controlPlane: {zones: [], dataDir: data}
    `);
    assert.match(empty.join('\n'), /spec\.controlPlane\.zones list needs at least 1 item/);
  });

  it('parses a static bootstrap as before', () => {
    const { bootstrap, diagnostics } = parseBootstrap(
      yamlDoc`
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxyBootstrap
        metadata: {name: frontend-1}
        spec:
          mode: sidecar
          service: frontend
          locality: us-east/us-east-a
          outbound: {listen: 127.0.0.1:0}
          admin: {listen: 127.0.0.1:0}
          resources: [../mesh]
          endpoints:
            catalog: [{address: 10.0.0.1, port: 8080, locality: eu-west/eu-west-a, weight: 3}]
      `,
      FILE,
    );
    assert.deepEqual(diagnostics, []);
    assert.equal(bootstrap?.controlPlane, undefined);
    assert.deepEqual(bootstrap?.resourcePaths, [path.resolve(path.dirname(FILE), '../mesh')]);
    assert.deepEqual(bootstrap?.endpoints, [
      {
        service: 'catalog',
        address: '10.0.0.1',
        port: 8080,
        locality: { region: 'eu-west', zone: 'eu-west-a' },
        weight: 3,
      },
    ]);
  });

  it('every example in examples/proxy is valid, in both modes', async () => {
    const dir = fromRoot('examples', 'proxy');
    const modes = new Set<string>();
    for (const name of await readdir(dir)) {
      const { bootstrap, diagnostics } = await loadBootstrap(path.join(dir, name));
      assert.deepEqual(diagnostics, [], name);
      modes.add(bootstrap?.controlPlane ? 'control-plane' : 'static');
    }
    assert.deepEqual([...modes].sort(), ['control-plane', 'static']);
  });
});
