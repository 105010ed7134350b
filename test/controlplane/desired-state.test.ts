import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { DesiredState } from '../../src/controlplane/desired-state.js';
import { SqliteKvStore } from '../../src/controlplane/store/sqlite.js';
import { resources } from '../support/control-plane.js';
import { region, service, yamlStream } from '../support/mesh-fixtures.js';

const meta = (actor: string, baseRevision?: number) => ({
  actor,
  origin: 'test',
  atMs: 1,
  ...(baseRevision !== undefined && { baseRevision }),
});

describe('DesiredState', () => {
  let dir = '';
  after(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

  it('two writers on one store: each sees the other’s changes, and a stale base is refused', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-ds-'));
    const store = SqliteKvStore.open(path.join(dir, 'g.db'));
    try {
      // Two DesiredState objects stand for two global processes sharing the store.
      const a = new DesiredState(store);
      const b = new DesiredState(store);
      const r1 = await a.apply(resources(yamlStream(region('eu'), service('web'))), meta('a'));
      assert.ok(r1.ok && r1.revision === 1);
      const r2 = await b.apply(
        resources(yamlStream(region('eu'), service('web'), service('cart'))),
        meta('b', 1),
      );
      assert.ok(r2.ok && r2.revision === 2);
      // a's cached view is from revision 1: its next apply must still diff against revision 2.
      const r3 = await a.apply(resources(yamlStream(region('eu'), service('cart'))), meta('a', 2));
      assert.ok(r3.ok);
      assert.deepEqual(
        r3.changes.map((c) => `${c.action} ${c.key}`),
        ['delete Service/web'],
      );
      const stale = await b.apply(resources(yamlStream(region('eu'))), meta('b', 2));
      assert.deepEqual(stale, { ok: false, conflict: { head: 3, base: 2 } });
      const live = await b.current();
      assert.equal(live.revision, 3);
      assert.deepEqual(
        live.resources.map((r) => `${r.kind}/${r.metadata.name}`),
        ['Region/eu', 'Service/cart'],
      );
      // Tombstones: a follower at revision 1 learns that web was deleted at 3.
      const delta = await a.changesSince(1);
      assert.deepEqual(delta.deletes, [{ key: 'Service/web', version: 3 }]);
      assert.deepEqual(await a.stateAt(2).then((s) => s.map((r) => r.metadata.name).sort()), [
        'cart',
        'eu',
        'web',
      ]);
    } finally {
      await store.close();
    }
  });
});
