import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_MIX, Workload, type MixEntry, type RequestResult } from '../../src/chaos/workload.js';

interface Seen {
  method: string;
  path: string;
  requestId: string;
  idempotencyKey: string | undefined;
  body: string;
}

/**
 * A stand-in frontend. The first path segment picks the behaviour: `/products/N` (200 with a
 * servedBy), `/checkout` (201), `/down/...` (503), `/hang/...` (never answers), `/slow/...` (200
 * after 300 ms).
 */
async function frontend(): Promise<{ url: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const hanging = new Set<ServerResponse>();
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const path = req.url ?? '';
      seen.push({
        method: req.method ?? '',
        path,
        requestId: String(req.headers['x-request-id']),
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
        body,
      });
      if (path.startsWith('/products/')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: path.slice(10), servedBy: { catalog: 'eu-west/eu-west-a', n: 3 } }));
      } else if (path === '/checkout') {
        res.writeHead(201, { 'content-type': 'application/json' }).end('{"order":"o-1"}');
      } else if (path.startsWith('/down')) {
        res.writeHead(503).end('no healthy upstream');
      } else if (path.startsWith('/slow')) {
        setTimeout(() => res.writeHead(200).end('{}'), 300);
      } else {
        hanging.add(res);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of hanging) r.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const entry = (name: string, path: string, extra: Partial<MixEntry> = {}): MixEntry => ({
  name,
  weight: 1,
  method: 'GET',
  path,
  idempotent: true,
  ...extra,
});

/** Runs a workload for `ms`, stops it, and returns what it reported. */
async function run(
  options: Omit<ConstructorParameters<typeof Workload>[0], 'onResult'>,
  ms: number,
): Promise<{ results: RequestResult[]; sent: number }> {
  const results: RequestResult[] = [];
  const w = new Workload({ ...options, onResult: (r) => results.push(r) });
  w.start();
  await new Promise((r) => setTimeout(r, ms));
  await w.stop();
  return { results, sent: w.sent };
}

describe('Workload', () => {
  let fe: Awaited<ReturnType<typeof frontend>>;
  before(async () => {
    fe = await frontend();
  });
  after(async () => {
    await fe.close();
  });

  it('rejects options it cannot run', () => {
    const onResult = () => undefined;
    const targets = [{ region: 'us-east', url: 'http://127.0.0.1:1' }];
    assert.throws(
      () => new Workload({ targets: [], ratePerSec: 1, mix: DEFAULT_MIX, onResult }),
      /at least one target/,
    );
    for (const ratePerSec of [0, -5, Number.NaN])
      assert.throws(() => new Workload({ targets, ratePerSec, mix: DEFAULT_MIX, onResult }), /rate above 0/);
    assert.throws(
      () => new Workload({ targets, ratePerSec: 1, mix: [], onResult }),
      /at least one request kind/,
    );
  });

  it('keeps its rate and spreads requests evenly over the targets', async () => {
    const before = fe.seen.length;
    const { results, sent } = await run(
      {
        targets: [
          { region: 'us-east', url: fe.url },
          { region: 'eu-west', url: fe.url },
        ],
        ratePerSec: 50,
        mix: [entry('browse', '/products/{id}')],
        seed: 3,
      },
      1000,
    );
    assert.equal(results.length, sent);
    assert.ok(sent >= 45 && sent <= 55, `sent ${sent}`);
    assert.equal(fe.seen.length - before, sent);
    const us = results.filter((r) => r.region === 'us-east').length;
    const eu = results.filter((r) => r.region === 'eu-west').length;
    assert.ok(Math.abs(us - eu) <= 1, `us-east ${us}, eu-west ${eu}`);
    for (const r of results) {
      assert.equal(r.outcome, 'ok');
      assert.equal(r.status, 200);
      assert.equal(r.route, 'browse');
      assert.equal(r.idempotent, true);
      assert.ok(r.latencyMs >= 0 && r.latencyMs < 1000, `latency ${r.latencyMs}`);
      // Only string values of servedBy are kept.
      assert.deepEqual(r.servedBy, { catalog: 'eu-west/eu-west-a' });
      assert.equal(r.error, undefined);
    }
    // Request ids number the requests per workload, tagged with the target's region.
    const ids = fe.seen.slice(before).map((s) => s.requestId);
    assert.deepEqual(
      [...ids].sort(),
      Array.from({ length: sent }, (_, i) => `load-${i % 2 === 0 ? 'us-east' : 'eu-west'}-${i + 1}`).sort(),
    );
  });

  it('substitutes {id} with product ids 1–1000 and follows the mix weights', async () => {
    const before = fe.seen.length;
    const { results } = await run(
      {
        targets: [{ region: 'us-east', url: fe.url }],
        ratePerSec: 300,
        mix: [
          entry('browse', '/products/{id}', { weight: 3 }),
          entry('checkout', '/checkout', { weight: 1, method: 'POST', idempotencyKey: true }),
        ],
      },
      300,
    );
    const seen = fe.seen.slice(before);
    assert.equal(seen.length, results.length);
    assert.ok(seen.length >= 80, `only ${seen.length}`);
    const browse = seen.filter((s) => s.path.startsWith('/products/'));
    const checkout = seen.filter((s) => s.path === '/checkout');
    assert.equal(browse.length + checkout.length, seen.length);
    const share = browse.length / seen.length;
    assert.ok(share > 0.6 && share < 0.9, `browse share ${share}`);
    for (const s of browse) {
      assert.equal(s.method, 'GET');
      assert.equal(s.idempotencyKey, undefined);
      assert.match(s.path, /^\/products\/\d+$/);
      const id = Number(s.path.slice(10));
      assert.ok(Number.isInteger(id) && id >= 1 && id <= 1000, s.path);
    }
    assert.ok(new Set(browse.map((s) => s.path)).size > browse.length / 2, 'ids should vary');
    for (const r of results) assert.equal(r.outcome, 'ok');
    assert.deepEqual([...new Set(results.map((r) => `${r.route} ${r.status}`))].sort(), [
      'browse 200',
      'checkout 201',
    ]);
  });

  it('100% checkout: POSTs a JSON body with a fresh idempotency key each time', async () => {
    const before = fe.seen.length;
    const { results } = await run(
      {
        targets: [{ region: 'eu-west', url: fe.url }],
        ratePerSec: 40,
        mix: [entry('checkout', '/checkout', { method: 'POST', idempotencyKey: true, idempotent: false })],
      },
      300,
    );
    const seen = fe.seen.slice(before);
    assert.ok(seen.length >= 10, `only ${seen.length}`);
    assert.equal(seen.length, results.length);
    for (const s of seen) {
      assert.equal(s.method, 'POST');
      assert.equal(s.path, '/checkout');
      assert.match(s.idempotencyKey ?? '', /^load-\d+-\d+$/);
      const body = JSON.parse(s.body) as { productId: number; quantity: number };
      assert.equal(body.quantity, 1);
      assert.ok(body.productId >= 1 && body.productId <= 1000);
    }
    assert.equal(new Set(seen.map((s) => s.idempotencyKey)).size, seen.length);
    for (const r of results) {
      assert.equal(r.outcome, 'ok');
      assert.equal(r.status, 201);
      assert.equal(r.idempotent, false);
      assert.equal(r.servedBy, undefined);
    }
  });

  it('classifies answers: 503 failed, no answer in time unknown, refused failed', async () => {
    const port = await closedPort();
    const one = async (url: string, path: string, idempotent = true) => {
      const { results } = await run(
        {
          targets: [{ region: 'ap-south', url }],
          ratePerSec: 1,
          mix: [entry('x', path, { idempotent })],
          timeoutMs: 200,
        },
        20,
      );
      assert.equal(results.length, 1, path);
      return results[0]!;
    };

    const down = await one(fe.url, '/down/1');
    assert.equal(down.outcome, 'failed');
    assert.equal(down.status, 503);
    assert.equal(down.error, undefined);

    const t0 = performance.now();
    const hung = await one(fe.url, '/hang/1');
    const waited = performance.now() - t0;
    assert.equal(hung.outcome, 'unknown', `error ${String(hung.error)}`);
    assert.equal(hung.status, null);
    assert.equal(typeof hung.error, 'string');
    assert.ok(hung.latencyMs >= 180 && hung.latencyMs < 1500, `latency ${hung.latencyMs}`);
    assert.ok(waited < 2000, `waited ${waited}`);

    const refused = await one(`http://127.0.0.1:${port}`, '/products/1');
    assert.equal(refused.outcome, 'failed');
    assert.equal(refused.status, null);
    assert.equal(refused.error, 'ECONNREFUSED');

    // Refused is failed even for a write: it certainly did not happen.
    const refusedWrite = await one(`http://127.0.0.1:${port}`, '/checkout', false);
    assert.equal(refusedWrite.outcome, 'failed');
  });

  it('stop() waits for the requests in flight', async () => {
    const results: RequestResult[] = [];
    const w = new Workload({
      targets: [{ region: 'us-east', url: fe.url }],
      ratePerSec: 10,
      mix: [entry('slow', '/slow/1')],
      onResult: (r) => results.push(r),
    });
    w.start();
    assert.equal(w.sent, 1);
    const t0 = performance.now();
    await w.stop();
    const waited = performance.now() - t0;
    assert.equal(results.length, 1);
    assert.equal(results[0]!.outcome, 'ok');
    assert.ok(waited >= 250, `stop returned after ${waited} ms`);
    // Nothing more is sent after stop.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(w.sent, 1);
    assert.equal(results.length, 1);
  });

  it('the same seed gives the same sequence of paths; another seed a different one', async () => {
    const pathsFor = async (seed: number) => {
      const before = fe.seen.length;
      await run(
        {
          targets: [{ region: 'us-east', url: fe.url }],
          ratePerSec: 80,
          mix: DEFAULT_MIX,
          seed,
        },
        250,
      );
      // Order by the request sequence number, not by arrival.
      return fe.seen
        .slice(before)
        .map((s) => [Number(s.requestId.split('-').at(-1)), s.path] as const)
        .sort((a, b) => a[0] - b[0])
        .map(([, p]) => p);
    };
    const a = await pathsFor(42);
    const b = await pathsFor(42);
    const c = await pathsFor(43);
    const n = Math.min(a.length, b.length, c.length);
    assert.ok(n >= 10, `only ${n}`);
    assert.deepEqual(b.slice(0, n), a.slice(0, n));
    assert.notDeepEqual(c.slice(0, n), a.slice(0, n));
  });
});
