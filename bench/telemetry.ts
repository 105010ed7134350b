/**
 * The telemetry benchmark: what request telemetry costs the proxy, and whether the pipeline keeps
 * up. Everything runs in this process on loopback, so the figures compare, they do not rank:
 *
 * 1. Proxy throughput with telemetry off and on, in the same run: a sidecar in front of a small
 *    Node upstream, closed-loop load from undici (`--connections` requests in flight), rounds
 *    alternating off/on so drift hits both alike. Every request is sampled (minRatio 1), so "on"
 *    measures the worst case: a span and an access-log record per request.
 * 2. TelemetrySource append rate: spans encoded and appended until the last one is durable.
 * 3. Replay: a backlog built while the collector is down, drained once it is back, against the
 *    ingest rate of (2).
 *
 * Usage: npm run bench:telemetry -- [--duration 5] [--connections 32] [--rounds 3] [--records 200000]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { parseBootstrap } from '../src/dataplane/bootstrap.js';
import { Proxy } from '../src/dataplane/proxy.js';
import { TelemetrySource, type SpanData } from '../src/telemetry/source.js';
import { writeFile } from 'node:fs/promises';

const API = 'apiVersion: isthmus.dev/v1alpha1';
const BODY = 'x'.repeat(1024);

/** A collector that answers 200 (or 503 while `down`) and counts bytes, nothing else. */
async function sinkCollector(): Promise<{
  url: string;
  state: { down: boolean; bytes: number };
  close(): Promise<void>;
}> {
  const state = { down: false, bytes: 0 };
  const server = http.createServer((req, res) => {
    req.on('data', (c: Buffer) => (state.bytes += c.length));
    req.on('end', () => {
      res.writeHead(state.down ? 503 : 200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function upstream(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function startSidecar(
  dir: string,
  upstreamPort: number,
  telemetry: string | undefined,
  sampleAll = false,
): Promise<Proxy> {
  await writeFile(
    path.join(dir, 'mesh.yaml'),
    `${API}
kind: Region
metadata: {name: local}
spec:
  zones: [{name: local-a}]
---
${API}
kind: Service
metadata: {name: bench}
spec:
  ports: [{name: http, port: 8080}]
---
${API}
kind: TrafficPolicy
metadata: {name: base}
spec:
  targetRef: {kind: Mesh}
  healthChecks: {enabled: false}
${
  sampleAll
    ? `---
${API}
kind: TelemetryPolicy
metadata: {name: all}
spec:
  targetRef: {kind: Mesh}
  sampling: {minRatio: 1}
`
    : ''
}`,
  );
  const text = `${API}
kind: ProxyBootstrap
metadata: {name: bench-${path.basename(dir).split('-')[0]}}
spec:
  mode: sidecar
  service: client
  locality: local/local-a
  outbound: {listen: 127.0.0.1:0}
  admin: {listen: 127.0.0.1:0}
  resources: [.]
  endpoints:
    bench:
      - {address: 127.0.0.1, port: ${upstreamPort}, locality: local/local-a}
${telemetry ? `  telemetry: {collector: "${telemetry}", dataDir: ${JSON.stringify(path.join(dir, 'wal'))}}` : ''}
`;
  const { bootstrap, diagnostics } = parseBootstrap(text, path.join(dir, 'bootstrap.yaml'));
  if (!bootstrap) throw new Error(JSON.stringify(diagnostics, null, 2));
  return Proxy.start(bootstrap, {});
}

/** Closed-loop load: `connections` requests in flight for `durationMs`; requests per second. */
async function load(address: string, connections: number, durationMs: number): Promise<number> {
  const pool = new Pool(`http://${address}`, { connections, pipelining: 1 });
  const until = performance.now() + durationMs;
  let done = 0;
  let failed = 0;
  const worker = async () => {
    while (performance.now() < until) {
      const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'bench' } });
      await r.body.dump();
      if (r.statusCode === 200) done++;
      else failed++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = (performance.now() - start) / 1000;
  await pool.close();
  if (failed > 0) console.error(`  ${failed} requests failed`);
  return done / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function span(i: number): SpanData {
  return {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: (i + 1).toString(16).padStart(16, '0'),
    parentSpanId: '00f067aa0ba902b7',
    name: 'GET catalog',
    kind: 'client',
    startTimeMs: 1_700_000_000_000 + i,
    endTimeMs: 1_700_000_000_003 + i,
    attributes: {
      'http.request.method': 'GET',
      'url.path': '/products?id=42',
      'http.response.status_code': 200,
      'isthmus.listener': 'outbound',
      'isthmus.request_id': '7d3f2a0e-5b1c-4f8e-9a7d-2c6b1e0f4a93',
      'isthmus.attempts': 1,
      'isthmus.served_by': 'eu-west/eu-west-a',
      'isthmus.peer_region': 'eu-west',
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: process.env.BENCH_DURATION ?? '5' },
      connections: { type: 'string', default: process.env.BENCH_CONNECTIONS ?? '32' },
      rounds: { type: 'string', default: process.env.BENCH_ROUNDS ?? '3' },
      records: { type: 'string', default: process.env.BENCH_RECORDS ?? '200000' },
    },
  });
  const durationMs = Number(values.duration) * 1000;
  const connections = Number(values.connections);
  const rounds = Number(values.rounds);
  const records = Number(values.records);
  const root = await mkdtemp(path.join(os.tmpdir(), 'isthmus-bench-telemetry-'));
  const collector = await sinkCollector();
  const up = await upstream();
  try {
    // 1. Throughput, off vs on.
    const offDir = await mkdtemp(path.join(root, 'off-'));
    const onDir = await mkdtemp(path.join(root, 'on-'));
    const allDir = await mkdtemp(path.join(root, 'all-'));
    const variants = [
      { label: 'telemetry off', proxy: await startSidecar(offDir, up.port, undefined), rps: [] as number[] },
      {
        label: 'on, default sampling',
        proxy: await startSidecar(onDir, up.port, collector.url),
        rps: [] as number[],
      },
      {
        label: 'on, every request sampled',
        proxy: await startSidecar(allDir, up.port, collector.url, true),
        rps: [] as number[],
      },
    ];
    for (const v of variants) await load(v.proxy.addresses.outbound!, connections, 1000);
    for (let r = 0; r < rounds; r++)
      for (const v of variants) v.rps.push(await load(v.proxy.addresses.outbound!, connections, durationMs));
    console.log('proxy throughput (req/s, median of rounds, [rounds]):');
    const offRps = median(variants[0]!.rps);
    for (const v of variants) {
      const st = v.proxy.telemetry?.source.stats();
      const m = median(v.rps);
      console.log(
        `  ${v.label.padEnd(26)} ${m.toFixed(0).padStart(6)}  ×${(m / offRps).toFixed(3)}  [${v.rps.map((x) => x.toFixed(0)).join(', ')}]` +
          (st ? `  records ${st.emitted}, shipped ${st.shipped}, dropped ${st.dropped.full.records}` : ''),
      );
      await v.proxy.stop();
    }

    // 2. Append rate.
    const walDir = await mkdtemp(path.join(root, 'wal-'));
    collector.state.down = true;
    const source = await TelemetrySource.open({
      dir: walDir,
      collectorUrl: collector.url,
      source: 'bench',
      resource: { service: 'bench', region: 'local' },
      backoffBaseMs: 50,
      backoffMaxMs: 200,
    });
    const t0 = performance.now();
    for (let i = 0; i < records; i++) {
      source.span(span(i));
      // Yield now and then, as a request path would: appends are written once per event-loop turn.
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    await source.wal.sync();
    const appendSec = (performance.now() - t0) / 1000;
    const bytes = source.stats().backlogBytes;
    console.log(
      `append: ${records} spans in ${appendSec.toFixed(2)} s = ${(records / appendSec).toFixed(0)} spans/s (${(bytes / records).toFixed(0)} B/record, durable)`,
    );

    // 3. Drain of the backlog once the collector is back.
    collector.state.down = false;
    const t1 = performance.now();
    const drained = await source.flush(300_000);
    const drainSec = (performance.now() - t1) / 1000;
    console.log(
      `replay: ${records} spans drained in ${drainSec.toFixed(2)} s = ${(records / drainSec).toFixed(0)} spans/s` +
        ` (${(collector.state.bytes / drainSec / 1e6).toFixed(1)} MB/s of OTLP JSON; ${drained ? 'complete' : 'INCOMPLETE'})` +
        `; drain/ingest ${(records / drainSec / (records / appendSec)).toFixed(2)}`,
    );
    await source.close();
  } finally {
    await up.close();
    await collector.close();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
