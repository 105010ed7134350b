import assert from 'node:assert/strict';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Forwarder } from '../../src/controlplane/collector/forwarder.js';
import { Stats } from '../../src/dataplane/stats.js';
import { eventually } from '../support/proxy-harness.js';

/** An upstream that answers every body with `answer(path, body)`, and keeps what it took. */
async function upstream(answer: (path: string, body: string) => { status: number; body: string }) {
  const taken: { path: string; body: string }[] = [];
  let posts = 0;
  const server: Server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts++;
      const body = Buffer.concat(chunks).toString('utf8');
      const a = answer(req.url ?? '/', body);
      if (a.status === 200) taken.push({ path: req.url ?? '/', body });
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(a.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    taken,
    posts: () => posts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const spans = (name: string) => ({
  resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans: [{ name }] }] }],
});

describe('collector forwarding', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => undefined);
  });

  const open = async (url: string) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'isthmus-forwarder-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const stats = new Stats();
    const events: Record<string, unknown>[] = [];
    const f = await Forwarder.open({
      dir,
      upstream: url,
      stats,
      log: (e) => events.push(e),
      segmentBytes: 1024 * 1024,
      fsyncIntervalMs: 5,
      backoffBaseMs: 20,
      backoffMaxMs: 50,
    });
    cleanup.push(() => f.close());
    return { f, stats, events };
  };

  it('skips a record the upstream refuses on its own, naming the part, and ships the rest once', async () => {
    const up = await upstream((_, body) =>
      body.includes('poison')
        ? {
            status: 400,
            body: JSON.stringify({
              error: 'ISTHMUS_E_INVALID_VALUE',
              message: 'bad',
              path: 'resourceSpans[0]',
            }),
          }
        : { status: 200, body: '{}' },
    );
    cleanup.push(up.close);
    const { f, stats, events } = await open(up.url);
    const names = Array.from({ length: 10 }, (_, i) => (i === 4 ? 'poison' : `s${i}`));
    for (const name of names) await f.enqueue('traces', spans(name), Date.now());
    await eventually(() => assert.equal(f.status().backlogRecords, 0), 10_000);
    const shipped = up.taken.flatMap((t) => [...t.body.matchAll(/"name":"(\w+)"/g)].map((m) => m[1]));
    // The batch as a whole first (refused), then one at a time: each good one arrives, the poison never.
    assert.ok(!shipped.includes('poison'));
    assert.deepEqual([...new Set(shipped)].sort(), names.filter((n) => n !== 'poison').sort());
    assert.equal(stats.get('isthmus_collector_forward_rejected_records_total'), 1);
    assert.ok(events.some((e) => e.event === 'forward-rejected' && e.seq === 5));
    const posts = up.posts();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(up.posts(), posts, 'nothing is sent again once it is skipped');
  });

  it('retries for ever what the upstream refuses without naming a part: no loss to a misbehaving upstream', async () => {
    let refuse = true;
    const up = await upstream(() =>
      refuse ? { status: 400, body: '<html>bad request</html>' } : { status: 200, body: '{}' },
    );
    cleanup.push(up.close);
    const { f, stats } = await open(up.url);
    for (let i = 0; i < 3; i++) await f.enqueue('traces', spans(`r${i}`), Date.now());
    await eventually(() => assert.ok(up.posts() >= 3), 10_000);
    assert.equal(f.status().backlogRecords, 3);
    assert.equal(stats.get('isthmus_collector_forward_rejected_records_total'), 0);
    refuse = false;
    await eventually(() => assert.equal(f.status().backlogRecords, 0), 10_000);
    assert.equal(up.taken.length, 1, 'the batch, whole, once the upstream takes it');
  });
});
