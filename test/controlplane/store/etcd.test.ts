import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isIsthmusError } from '../../../src/core/errors.js';
import { StoreCompactedError } from '../../../src/controlplane/store/election.js';
import { EtcdElection, EtcdKvStore } from '../../../src/controlplane/store/etcd.js';
import type { KvStore } from '../../../src/controlplane/store/kv.js';
import { openStore } from '../../../src/controlplane/store/open.js';
import { startEtcd, type TestEtcd } from '../../support/etcd.js';
import { kvConformance, record } from './kv-conformance.js';

const ELECTION_CHILD = fileURLToPath(new URL('./election-child.js', import.meta.url));
/** Short leases keep the election tests fast; 2 s is etcd's minimum with default timing. */
const TTL_MS = 2_000;

let started: TestEtcd | undefined;
let startError: unknown;
before(async () => {
  try {
    started = await startEtcd({ defaultLimits: true });
  } catch (err) {
    startError = err;
  }
});
after(async () => {
  await started?.stop();
});
/**
 * The shared etcd. Without it every test fails (none is skipped) with the reason, e.g. that
 * etcd is not installed and how to install it: CI must not pass without running these.
 */
function running(): TestEtcd {
  if (!started) throw startError;
  return started;
}

it('a real etcd server runs for these tests', () => {
  running();
});

let namespaces = 0;
/** Each test gets a namespace of its own in the shared etcd. */
const freshPrefix = () => `/isthmus-test-${process.pid}-${++namespaces}/`;
const store = (prefix = freshPrefix(), endpoints = [running().endpoint]) =>
  new EtcdKvStore({ endpoints, prefix });

kvConformance('etcd', () => Promise.resolve(store()), {
  // A second client with its own connections: as far as etcd can tell, another process.
  openPeer: (s) => Promise.resolve(store((s as EtcdKvStore).prefix)),
});

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const storeError = (pattern: RegExp) => (err: unknown) => {
  assert.ok(isIsthmusError(err), `an IsthmusError, got ${String(err)}`);
  assert.equal(err.code, 'ISTHMUS_E_STORE');
  assert.match(err.message, pattern);
  return true;
};

async function waitUntil(cond: () => boolean, what: string, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

describe('EtcdKvStore', () => {
  it('keeps every key under its namespace prefix, and strips it on read', async () => {
    const prefix = freshPrefix();
    const s = store(prefix);
    const raw = store('');
    try {
      await s.txn({ put: [{ key: 'desired/a', value: 1 }] });
      assert.deepEqual(
        (await raw.range(prefix)).map((e) => e.key),
        [`${prefix}desired/a`],
      );
      assert.deepEqual(
        (await s.range('')).map((e) => e.key),
        ['desired/a'],
      );
      assert.equal(s.url, `etcd://${running().endpoint.replace('http://', '')}`);
    } finally {
      await s.close();
      await raw.close();
    }
  });

  it('skips an endpoint that refuses connections, and names every endpoint when none answers', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const s = store(freshPrefix(), [dead, running().endpoint]);
    try {
      const r = await s.txn({ put: [{ key: 'k', value: 'v' }] });
      assert.equal(r.ok, true);
      assert.equal((await s.get('k'))?.value, 'v');
    } finally {
      await s.close();
    }
    const dead2 = `http://127.0.0.1:${await deadPort()}`;
    const none = store(freshPrefix(), [dead, dead2]);
    try {
      const started = Date.now();
      await assert.rejects(
        none.get('k'),
        storeError(new RegExp(`cannot reach etcd at ${dead}, ${dead2} .*ECONNREFUSED`)),
      );
      await assert.rejects(none.txn({ put: [{ key: 'k', value: 1 }] }), storeError(/cannot reach etcd/));
      assert.ok(Date.now() - started < 2_000, 'fails fast');
    } finally {
      await none.close();
    }
  });

  it('turns an error from etcd into ISTHMUS_E_STORE with etcd’s own message', async () => {
    const s = store();
    try {
      // etcd refuses requests over 1.5 MiB by default.
      await assert.rejects(
        s.txn({ put: [{ key: 'huge', value: 'x'.repeat(1.6 * 1024 * 1024) }] }),
        storeError(new RegExp(`^etcd at ${running().endpoint}: etcdserver: request is too large`)),
      );
    } finally {
      await s.close();
    }
    // Something that is not etcd answering on the address.
    const server = http.createServer((_req, res) => res.writeHead(404).end('404 page not found\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const wrong = store(freshPrefix(), [url]);
    try {
      await assert.rejects(
        wrong.get('k'),
        storeError(new RegExp(`etcd at ${url}: HTTP 404 .*404 page not found`)),
      );
    } finally {
      await wrong.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('reports a watch from a compacted revision to onError', async () => {
    const s = store();
    try {
      const r0 = await s.revision();
      for (let i = 0; i < 3; i++) await s.txn({ put: [{ key: `c/${i}`, value: i }] });
      const now = await s.revision();
      const res = await fetch(`${running().endpoint}/v3/kv/compaction`, {
        method: 'POST',
        body: JSON.stringify({ revision: String(now), physical: true }),
      });
      assert.equal(res.status, 200, await res.text());
      const w = record(s, 'c/', r0);
      const err = await w.untilError();
      assert.ok(err instanceof StoreCompactedError, String(err));
      assert.match(err.message, /compacted/);
      assert.equal(err.compactRevision, now - 1);
      assert.deepEqual(w.batches, []);
      // From the compaction point on, a watch works: it replays the last kept change, then follows.
      const ok = record(s, 'c/', err.compactRevision);
      await s.txn({ put: [{ key: 'c/new', value: 1 }] });
      assert.deepEqual(
        (await ok.untilBatches(2)).map((b) => b.map((e) => e.key)),
        [['c/2'], ['c/new']],
      );
      ok.cancel();
    } finally {
      await s.close();
    }
  });
});

describe('openStore (etcd)', () => {
  it('opens etcd:// and etcd+http:// URLs, with the given namespace', async () => {
    const host = running().endpoint.replace('http://', '');
    const prefix = freshPrefix();
    for (const url of [`etcd://${host}`, `etcd+http://${host}/`]) {
      const s = await openStore(url, { prefix });
      try {
        assert.ok(s instanceof EtcdKvStore);
        assert.equal(s.prefix, prefix);
        await s.txn({ put: [{ key: 'x', value: url }] });
        assert.equal((await s.get('x'))?.value, url);
      } finally {
        await s.close();
      }
    }
    const dead = await deadPort();
    const s = await openStore(`etcd://127.0.0.1:${dead},${host}`, {});
    assert.equal((s as EtcdKvStore).prefix, '/isthmus/');
    await s.close();
  });

  it('fails at open, naming the endpoints, when etcd is not there', async () => {
    const port = await deadPort();
    await assert.rejects(
      openStore(`etcd://127.0.0.1:${port}`, {}),
      storeError(new RegExp(`cannot reach etcd at http://127.0.0.1:${port}`)),
    );
  });
});

describe('EtcdElection', () => {
  const campaigners: EtcdElection[] = [];
  const stores: KvStore[] = [];
  after(async () => {
    for (const e of campaigners) await e.resign().catch(() => {});
    for (const s of stores) await s.close();
  });
  const campaign = async (prefix: string, name: string, id: string) => {
    const s = store(prefix);
    stores.push(s);
    const e = await EtcdElection.campaign(s, { name, id, ttlMs: TTL_MS });
    campaigners.push(e);
    return e;
  };

  it('of two campaigners one leads, both name it, and resigning hands over at once', async () => {
    const prefix = freshPrefix();
    const a = await campaign(prefix, 'global', 'http://a:7400');
    const b = await campaign(prefix, 'global', 'http://b:7400');
    assert.equal(a.isLeader, true);
    assert.equal(b.isLeader, false);
    assert.equal(await a.leader(), 'http://a:7400');
    assert.equal(await b.leader(), 'http://a:7400');
    const changes: boolean[] = [];
    a.onChange((l) => changes.push(l));
    await a.resign();
    assert.equal(a.isLeader, false);
    assert.deepEqual(changes, [false]);
    // Revoking the lease deletes the key; the watching campaigner takes over well within the TTL.
    const took = await waitUntil(() => b.isLeader, 'b leads', TTL_MS);
    assert.ok(took < TTL_MS / 2, `handover took ${took} ms`);
    assert.equal(await b.leader(), 'http://b:7400');
    await b.resign();
    assert.equal(await b.leader(), undefined);
  });

  it('when the leader’s process is killed (-9), another campaigner leads within the TTL and some slack', async () => {
    const prefix = freshPrefix();
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(
      process.execPath,
      [ELECTION_CHILD, running().endpoint, prefix, 'global', 'http://child:7400', String(TTL_MS)],
      { stdio: ['ignore', 'pipe', 'inherit'], env },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, 'leading');
      const b = await campaign(prefix, 'global', 'http://b:7400');
      assert.equal(b.isLeader, false);
      assert.equal(await b.leader(), 'http://child:7400');
      child.kill('SIGKILL');
      await exited;
      // The lease runs out at most TTL after the last renewal; etcd checks expiry every 500 ms.
      const took = await waitUntil(() => b.isLeader, 'b leads', TTL_MS + 2_000);
      assert.ok(took > 0);
      assert.equal(await b.leader(), 'http://b:7400');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
  });

  // Last: it crashes and restarts the shared etcd.
  it('a leader that cannot reach etcd steps down before its lease could expire, and leads again after', async () => {
    const prefix = freshPrefix();
    const a = await campaign(prefix, 'global', 'http://a:7400');
    assert.equal(a.isLeader, true);
    const w = record(stores.at(-1)!, 'probe/', await stores.at(-1)!.revision());
    let steppedDownAt = 0;
    a.onChange((l) => {
      if (!l) steppedDownAt = Date.now();
    });
    // Let a renewal happen, so the lease is not fresh from the grant.
    await new Promise((r) => setTimeout(r, TTL_MS / 2));
    const killedAt = Date.now();
    await running().kill();
    await waitUntil(() => steppedDownAt > 0, 'a steps down', TTL_MS + 1_000);
    // The last renewal was sent before the kill, so etcd could expire the lease TTL after the kill
    // at the earliest: stepping down must happen before that.
    const after = steppedDownAt - killedAt;
    assert.ok(after < TTL_MS, `stepped down ${after} ms after losing etcd (TTL ${TTL_MS} ms)`);
    await running().restart();
    await waitUntil(() => a.isLeader, 'a leads again', 3 * TTL_MS);
    assert.equal(await a.leader(), 'http://a:7400');
    // The watch of a store that lived through the restart still works, from where it was.
    await stores.at(-1)!.txn({ put: [{ key: 'probe/1', value: 1 }] });
    assert.equal((await w.untilBatches(1))[0]![0]!.key, 'probe/1');
    w.cancel();
  });
});
