import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffMeshes, diffValues } from '../../src/model/diff.js';
import type { AnyResource } from '../../src/model/resources.js';

const svc = (name: string, spec: object) =>
  ({ apiVersion: 'isthmus.dev/v1alpha1', kind: 'Service', metadata: { name }, spec }) as AnyResource;

describe('semantic diff', () => {
  it('lists added, removed and changed resources in a stable order with a summary', () => {
    const before = [
      svc('a', { ports: [{ name: 'http', port: 80 }] }),
      svc('b', { ports: [{ name: 'http', port: 80 }] }),
    ];
    const after = [
      svc('c', { ports: [{ name: 'http', port: 80 }] }),
      svc('a', { ports: [{ name: 'http', port: 81 }] }),
    ];
    const diff = diffMeshes(before, after);
    assert.deepEqual(
      diff.changes.map((c) => [c.op, `${c.kind}/${c.name}`]),
      [
        ['change', 'Service/a'],
        ['remove', 'Service/b'],
        ['add', 'Service/c'],
      ],
    );
    assert.deepEqual(diff.changes[0]?.fields, [{ path: 'spec.ports[name=http].port', old: 80, new: 81 }]);
    assert.deepEqual(diff.summary, { add: 1, remove: 1, change: 1 });
  });

  it('reports nothing for identical trees, whatever the key order', () => {
    const a = svc('a', { ports: [{ name: 'http', port: 80 }], homeRegion: 'x' });
    const b = svc('a', { homeRegion: 'x', ports: [{ port: 80, name: 'http' }] });
    assert.deepEqual(diffMeshes([a], [b]).changes, []);
  });

  it('matches named list items by name, so an insertion is one addition', () => {
    const changes = diffValues(
      {
        routes: [
          { name: 'a', v: 1 },
          { name: 'b', v: 2 },
        ],
      },
      {
        routes: [
          { name: 'new', v: 0 },
          { name: 'a', v: 1 },
          { name: 'b', v: 2 },
        ],
      },
    );
    assert.deepEqual(changes, [{ path: 'routes[name=new]', new: { name: 'new', v: 0 } }]);
  });

  it('reports a reorder of named items, since route order matters', () => {
    const changes = diffValues(
      { routes: [{ name: 'a' }, { name: 'b' }] },
      { routes: [{ name: 'b' }, { name: 'a' }] },
    );
    assert.deepEqual(changes, [{ path: 'routes (order)', old: ['a', 'b'], new: ['b', 'a'] }]);
  });

  it('treats scalar lists as single values and reports added and removed fields', () => {
    assert.deepEqual(diffValues({ r: ['a'], x: 1 }, { r: ['a', 'b'], y: 2 }), [
      { path: 'r', old: ['a'], new: ['a', 'b'] },
      { path: 'x', old: 1 },
      { path: 'y', new: 2 },
    ]);
  });
});
