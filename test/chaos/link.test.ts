import assert from 'node:assert/strict';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { seededRandom } from '../../src/core/random.js';
import { LinkEmulator } from '../../src/chaos/link/emulator.js';
import type { LinkProxy } from '../../src/chaos/link/proxy.js';
import {
  connectionRandom,
  sampleLatencyMs,
  sampleLossStallMs,
  sliceSizes,
} from '../../src/chaos/link/sampling.js';
import { parseToxic } from '../../src/chaos/link/toxics.js';

// ---- helpers: a loopback echo server and a client that reports what it saw -----------------

async function echoServer(): Promise<{
  address: string;
  accepted: () => number;
  close: () => Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => undefined).on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function connect(address: string): Promise<Socket> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), host, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** 'connected', or the code a connect attempt fails with (ECONNREFUSED). */
function connectOutcome(address: string): Promise<string> {
  return connect(address).then(
    (s) => {
      s.destroy();
      return 'connected';
    },
    (e: NodeJS.ErrnoException) => e.code ?? 'error',
  );
}

/** Reads until `n` bytes arrived; rejects with the socket's error code, 'EOF' or 'TIMEOUT'. */
function readBytes(socket: Socket, n: number, timeoutMs = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (err?: string) => {
      clearTimeout(timer);
      socket.off('data', onData).off('error', onError).off('end', onEnd);
      if (err) reject(new Error(err));
      else resolve(Buffer.concat(chunks));
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) done();
    };
    const onError = (e: NodeJS.ErrnoException) => done(e.code ?? 'error');
    const onEnd = () => done('EOF');
    const timer = setTimeout(() => done('TIMEOUT'), timeoutMs);
    socket.on('data', onData).on('error', onError).on('end', onEnd);
  });
}

/** Sends `text`, waits for the echo and returns the elapsed ms. */
async function roundTrip(socket: Socket, text: string, timeoutMs = 2000): Promise<number> {
  const t0 = performance.now();
  const reply = readBytes(socket, Buffer.byteLength(text), timeoutMs);
  socket.write(text);
  const got = await reply;
  assert.equal(got.toString(), text);
  return performance.now() - t0;
}

/** What a client sees on an open connection when it sends a byte: 'echo', a code, 'EOF' or 'TIMEOUT'. */
async function probe(socket: Socket, timeoutMs = 300): Promise<string> {
  try {
    await roundTrip(socket, 'x', timeoutMs);
    return 'echo';
  } catch (e) {
    return e instanceof assert.AssertionError ? 'garbled' : (e as Error).message;
  }
}

/** Connects and probes: what a client sees, whether the RST beats the connect callback or not. */
async function openAndProbe(address: string, timeoutMs = 300): Promise<string> {
  let s: Socket;
  try {
    s = await connect(address);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'error';
  }
  try {
    return await probe(s, timeoutMs);
  } finally {
    s.destroy();
  }
}

const toxic = (proxy: LinkProxy, body: Record<string, unknown>) =>
  proxy.addToxic(parseToxic(body, 'toxic', proxy.nextConnection));

// ---- pure sampling ---------------------------------------------------------------------------

describe('link sampling (pure)', () => {
  it('the same seed gives the same latency samples; another seed different ones', () => {
    const draw = (seed: number, conn: number) => {
      const r = connectionRandom(seed, 'us-east->eu-west', conn, 'downstream');
      return Array.from({ length: 20 }, () => sampleLatencyMs(r, 100, 30, 'normal'));
    };
    assert.deepEqual(draw(7, 0), draw(7, 0));
    assert.notDeepEqual(draw(7, 0), draw(8, 0));
    assert.notDeepEqual(draw(7, 0), draw(7, 1), 'each connection has its own stream of chance');
    const loss = (seed: number) => {
      const r = connectionRandom(seed, 'l', 0, 'upstream');
      return Array.from({ length: 50 }, () => sampleLossStallMs(r, 0.3, 200, 0));
    };
    assert.deepEqual(loss(1), loss(1));
    assert.notDeepEqual(loss(1), loss(2));
  });

  it('keeps each distribution in its bounds', () => {
    const r = seededRandom(3);
    const uniform = Array.from({ length: 2000 }, () => sampleLatencyMs(r, 100, 20, 'uniform'));
    assert.ok(Math.min(...uniform) >= 80 && Math.max(...uniform) <= 120);
    const mean = uniform.reduce((s, x) => s + x, 0) / uniform.length;
    assert.ok(Math.abs(mean - 100) < 3, `uniform mean ${mean}`);
    const normal = Array.from({ length: 2000 }, () => sampleLatencyMs(r, 100, 20, 'normal'));
    assert.ok(Math.min(...normal) >= 40 && Math.max(...normal) <= 160);
    const pareto = Array.from({ length: 5000 }, () => sampleLatencyMs(r, 100, 20, 'pareto'));
    assert.ok(Math.min(...pareto) >= 100, 'pareto never below the base latency');
    assert.ok(Math.max(...pareto) <= 100 + 100 * 20);
    assert.ok(pareto.filter((x) => x > 100 + 9 * 20).length > 10, 'pareto has a long tail');
    assert.equal(sampleLatencyMs(r, 50, 0, 'pareto'), 50);
    assert.ok(
      Array.from({ length: 100 }, () => sampleLatencyMs(r, 5, 50)).every((x) => x >= 0),
      'never negative',
    );
  });

  it('doubles the stall for consecutive losses, and slices sum to the chunk', () => {
    const always = { next: () => 0 };
    assert.deepEqual(
      [0, 1, 2].map((n) => sampleLossStallMs(always, 0.5, 100, n)),
      [100, 200, 400],
    );
    assert.equal(sampleLossStallMs({ next: () => 0.9 }, 0.5, 100, 3), 0);
    const sizes = sliceSizes(seededRandom(1), 1000, 10, 4);
    assert.equal(
      sizes.reduce((s, x) => s + x, 0),
      1000,
    );
    assert.ok(sizes.every((s) => s >= 1 && s <= 14));
  });
});

// ---- real sockets ----------------------------------------------------------------------------

describe('link emulator on loopback', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let emulator: LinkEmulator;
  let n = 0;
  const link = (extra: Record<string, unknown> = {}) =>
    emulator.createProxy({ name: `l${n++}`, listen: '127.0.0.1:0', upstream: echo.address, ...extra });
  before(async () => {
    echo = await echoServer();
    emulator = new LinkEmulator({ seed: 42 });
  });
  after(async () => {
    await emulator.close();
    await echo.close();
  });

  it('forwards bytes both ways and reports the bound listen address', async () => {
    const p = await link({ from: 'us-east', to: 'eu-west', purpose: 'data' });
    assert.match(p.listen, /^127\.0\.0\.1:[1-9]\d*$/);
    const s = await connect(p.listen);
    await roundTrip(s, 'hello');
    s.destroy();
    const j = p.toJSON();
    assert.equal(j.stats.bytes.upstream, 5);
    assert.equal(j.stats.bytes.downstream, 5);
    assert.equal(j.stats.connections.total, 1);
    assert.deepEqual([j.from, j.to, j.purpose], ['us-east', 'eu-west', 'data']);
  });

  it('adds latency within tolerance, and jitter stays bounded', async () => {
    const p = await link();
    await toxic(p, { type: 'latency', stream: 'downstream', attributes: { latency: 100, jitter: 20 } });
    const s = await connect(p.listen);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) times.push(await roundTrip(s, `m${i}`));
    s.destroy();
    for (const t of times) assert.ok(t >= 75 && t < 400, `round trip ${t.toFixed(0)} ms not ≈100±20`);
    assert.ok(p.stats.chunksDelayed >= 5);
  });

  it('keeps data order when later chunks draw shorter delays', async () => {
    const p = await link();
    await toxic(p, { type: 'latency', attributes: { latency: 30, jitter: 30 } });
    const s = await connect(p.listen);
    const parts = Array.from({ length: 40 }, (_, i) => `<${i}>`);
    const expected = parts.join('');
    const reply = readBytes(s, expected.length, 5000);
    for (const part of parts) {
      s.write(part);
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal((await reply).toString(), expected);
    s.destroy();
  });

  it('tells refused, reset and silent apart by what the client sees', async () => {
    const refused = await link();
    await toxic(refused, { type: 'partition', stream: 'upstream', attributes: { mode: 'reject' } });
    assert.equal(await connectOutcome(refused.listen), 'ECONNREFUSED');

    const reset = await link();
    await toxic(reset, { type: 'partition', attributes: { mode: 'reset' } });
    assert.equal(await openAndProbe(reset.listen), 'ECONNRESET');

    const silent = await link();
    await toxic(silent, { type: 'partition', stream: 'upstream', attributes: { mode: 'blackhole' } });
    const ss = await connect(silent.listen);
    assert.equal(await probe(ss), 'TIMEOUT');
    assert.equal(ss.destroyed, false, 'a blackholed connection stays open');
    ss.destroy();

    await refused.removeToxic('partition_upstream');
    assert.equal(await connectOutcome(refused.listen), 'connected', 'healing a reject listens again');
  });

  it('one-way blackhole: the request never arrives, the reply path still works, nothing closes', async () => {
    const p = await link();
    const s = await connect(p.listen);
    await roundTrip(s, 'before');
    await toxic(p, { type: 'partition', stream: 'upstream' });
    const pending = readBytes(s, 5, 3000);
    s.write('after');
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(p.stats.bytes.upstream, 6, 'the bytes sent into the cut were not forwarded');
    // Healing delivers what TCP would have retransmitted, in order.
    await p.removeToxic('partition_upstream');
    assert.equal((await pending).toString(), 'after');
    // The other direction alone: requests reach the server, answers are held.
    await toxic(p, { type: 'partition', stream: 'downstream' });
    assert.equal(await probe(s), 'TIMEOUT');
    assert.equal(p.stats.bytes.upstream, 12);
    s.destroy();
  });

  it('scope new spares open connections; scope all cuts them too', async () => {
    const p = await link();
    const old = await connect(p.listen);
    await roundTrip(old, 'warm');
    await toxic(p, {
      name: 'cut',
      type: 'partition',
      stream: 'upstream',
      attributes: { mode: 'blackhole', scope: 'new' },
    });
    assert.equal(await probe(old), 'echo', 'an open connection still works');
    const fresh = await connect(p.listen);
    assert.equal(await probe(fresh), 'TIMEOUT', 'a new one is cut');
    fresh.destroy();
    await p.removeToxic('cut');
    await toxic(p, { name: 'reset-all', type: 'partition', attributes: { mode: 'reset', scope: 'all' } });
    assert.equal(await probe(old), 'ECONNRESET', 'scope all resets open connections');
    assert.ok(p.stats.connections.reset >= 1);
  });

  it('disabling refuses connects and closes open connections; enabling listens on the same port', async () => {
    const p = await link();
    const s = await connect(p.listen);
    await roundTrip(s, 'x');
    const closed = new Promise((r) => s.once('close', r));
    await emulator.update(p.name, { enabled: false });
    await closed;
    assert.equal(await connectOutcome(p.listen), 'ECONNREFUSED');
    await emulator.update(p.name, { enabled: true });
    assert.equal(await connectOutcome(p.listen), 'connected');
  });

  it('bandwidth limits throughput roughly to the rate', async () => {
    const p = await link();
    await toxic(p, { type: 'bandwidth', attributes: { rate: 100 } }); // 100 KB/s
    const s = await connect(p.listen);
    const payload = 'x'.repeat(30_000);
    const t0 = performance.now();
    const reply = readBytes(s, payload.length, 5000);
    s.write(payload);
    await reply;
    const ms = performance.now() - t0;
    s.destroy();
    assert.ok(ms >= 220 && ms < 1500, `30 kB at 100 KB/s took ${ms.toFixed(0)} ms (≈300 expected)`);
  });

  it('limit_data closes the connection after N bytes', async () => {
    const p = await link();
    await toxic(p, { type: 'limit_data', attributes: { bytes: 10 } });
    const s = await connect(p.listen);
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    const ended = new Promise((r) => s.once('close', r));
    s.on('error', () => undefined);
    s.write('0123456789abcdef');
    await ended;
    assert.equal(Buffer.concat(got).toString(), '0123456789');
  });

  it('slicer splits a chunk into small writes', async () => {
    const p = await link();
    await toxic(p, { type: 'slicer', attributes: { average_size: 10, size_variation: 2, delay: 2000 } });
    const s = await connect(p.listen);
    let chunks = 0;
    s.on('data', () => chunks++);
    await roundTrip(s, 'y'.repeat(200));
    s.destroy();
    assert.ok(chunks >= 8, `200 bytes arrived in ${chunks} chunks`);
  });

  it('loss delays chunks but delivers every byte, in order', async () => {
    const p = await link();
    await toxic(p, { type: 'loss', attributes: { probability: 0.3, stall: 20 } });
    const s = await connect(p.listen);
    const parts = Array.from({ length: 30 }, (_, i) => `[${i}]`);
    const expected = parts.join('');
    const reply = readBytes(s, expected.length, 8000);
    for (const part of parts) {
      s.write(part);
      await new Promise((r) => setTimeout(r, 3));
    }
    assert.equal((await reply).toString(), expected);
    s.destroy();
    assert.ok(p.stats.stalls > 0, 'some chunks were lost and stalled');
  });

  it('toxicity draws from the seed: the same connections are hit on every run', async () => {
    const hits = async (seed: number) => {
      const em = new LinkEmulator({ seed });
      try {
        const p = await em.createProxy({ name: 'drawn', listen: '127.0.0.1:0', upstream: echo.address });
        await toxic(p, { type: 'partition', toxicity: 0.5, attributes: { mode: 'reset' } });
        const out: string[] = [];
        for (let i = 0; i < 8; i++) out.push(await openAndProbe(p.listen, 400));
        return out.join(',');
      } finally {
        await em.close();
      }
    };
    const a = await hits(5);
    assert.equal(await hits(5), a);
    assert.match(a, /echo/);
    assert.match(a, /ECONNRESET/);
  });

  it('timeout stops data and closes after its timeout; reset_peer resets', async () => {
    const p = await link();
    await toxic(p, { type: 'timeout', attributes: { timeout: 150 } });
    const s = await connect(p.listen);
    const t0 = performance.now();
    const outcome = await probe(s, 2000);
    assert.equal(outcome, 'EOF');
    assert.ok(performance.now() - t0 >= 120);
    const q = await link();
    await toxic(q, { type: 'reset_peer', attributes: { timeout: 50 } });
    const r = await connect(q.listen);
    assert.equal(await probe(r), 'echo', 'data flows until the timeout');
    const code = await new Promise((resolve) =>
      r.once('error', (e: NodeJS.ErrnoException) => resolve(e.code)),
    );
    assert.equal(code, 'ECONNRESET');
  });

  it('close() leaves no listening socket and no open connection', async () => {
    const em = new LinkEmulator();
    const p = await em.createProxy({ name: 'x', listen: '127.0.0.1:0', upstream: echo.address });
    const s = await connect(p.listen);
    await roundTrip(s, 'hi');
    const closed = new Promise((r) => s.once('close', r));
    await em.close();
    await closed;
    assert.equal(await connectOutcome(p.listen), 'ECONNREFUSED');
  });
});
