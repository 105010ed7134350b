/**
 * The telemetry benchmark: what request telemetry costs the proxy, and whether the pipeline keeps
 * up with what a proxy emits at full load.
 *
 * 1. Proxy throughput with telemetry off and on, measured as bench/proxy.ts measures proxies: each
 *    variant is a real `isthmus proxy` process pinned alone to core 0; the upstream (nginx, fixed
 *    1 KiB body), wrk (closed loop, `--connections` connections, `Host: bench`), a collector
 *    stand-in (bench/peers/collector-sink.ts: 200 `{}` to every POST, counts records) and this
 *    process share core 1. Variants: (a) no `telemetry` in the bootstrap; (b) telemetry with the
 *    default sampling; (c) telemetry with every request sampled (a TelemetryPolicy with
 *    `minRatio: 1`: a span and an access-log record per request, the worst case). Every round runs
 *    the three in turn (in reverse order every other round), each in a fresh process with a wrk
 *    warm-up before the measured run (20 s by default: the telemetry pipeline's functions run per
 *    batch, about a hundred times a second, and V8 is still optimizing them 10 s into full load,
 *    on core 0, where telemetry off has long finished), so drift hits all alike; each variant reports its median
 *    round, and the cost target takes the median of the rounds' costs, each variant against the
 *    telemetry-off run of its own round. The proxy's telemetry counters
 *    (records emitted, shipped, dropped) are scraped from its admin `/metrics` at the start and end
 *    of the measured run, which gives its live emission rate (signals/s, and records and bytes of
 *    the log per second at that load), and its CPU time (all threads, /proc) around it gives CPU
 *    per request: the same cost asked in a way the machine's drift between one run and the next
 *    moves less.
 * 2. TelemetrySource append rate, in this process: spans encoded and appended until the last one
 *    is durable.
 * 3. Replay, in this process: the backlog of (2), built while an in-process collector answers 503,
 *    drained once it answers 200; the drain rate is set against (2)'s append rate and against the
 *    live emission rate of variant (c), i.e. how fast a proxy at peak load fills its log, both in
 *    bytes of the log per second (a proxy's records and the drained spans differ in size).
 *    After part 1 this process is pinned to core 1, so (2) and (3) run on one core, source and
 *    collector alike, as a proxy does.
 *
 * Usage: npm run bench:telemetry -- [--duration 8] [--warmup 20] [--connections 64] [--rounds 3]
 *          [--records 200000] [--save]
 * Every flag also reads an environment variable: BENCH_DURATION, BENCH_WARMUP, … Nothing is
 * installed: missing tools (nginx, wrk, taskset) are reported with the command that provides them.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { TelemetrySource, type SpanData } from '../src/telemetry/source.js';
import { BODY, LOAD_CORE, PROXY_CORE, isthmusMesh, isthmusTelemetryBootstrap } from './support/configs.js';
import { intFlag, LOAD_FLAGS, parseCommandLine } from './support/flags.js';
import { checkPrerequisites, LOAD_NEEDS, type Tools } from './support/prerequisites.js';
import { alive, CpuMeter, processCpuMs, RssSampler, startNode, type Pinned } from './support/processes.js';
import { ms } from './support/report.js';
import { parseWrkOutput, type WrkResult } from './support/wrk.js';
import { LoadBench, saveReport, setUp, startIsthmusProxy } from './support/run.js';

const API = 'apiVersion: isthmus.dev/v1alpha1';

/** Telemetry cost (throughput lost against "off") the issue allows, and the drain headroom it asks. */
const MAX_COST = 0.1;
const MIN_DRAIN_OVER_EMISSION = 3;

/** The CLI and the collector stand-in of the same build as this file. */
const isthmusMain = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const sinkScript = fileURLToPath(new URL('./peers/collector-sink.js', import.meta.url));

/** The repository root: the first folder above this file with a package.json (the build may live anywhere below it). */
function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}
const repoRoot = findRepoRoot();

const VARIANTS = [
  { key: 'off', label: '(a) telemetry off', telemetry: false, sampleAll: false },
  { key: 'default', label: '(b) on, default sampling', telemetry: true, sampleAll: false },
  { key: 'all', label: '(c) on, every request sampled', telemetry: true, sampleAll: true },
] as const;
type Variant = (typeof VARIANTS)[number];
type VariantKey = Variant['key'];

interface Options {
  durationSec: number;
  warmupSec: number;
  connections: number;
  rounds: number;
  records: number;
  /** Also measure each telemetry variant side by side with telemetry off (see sideBySide). */
  paired: boolean;
  save: boolean;
}

const USAGE = `Usage: npm run bench:telemetry -- [options]

  --duration SECONDS  measured wrk run per variant and round (env BENCH_DURATION, default 8)
  --warmup SECONDS    wrk warm-up before each run (env BENCH_WARMUP, default 20)
  --connections N     wrk connections, one thread (env BENCH_CONNECTIONS, default 64)
  --rounds N          rounds over the three variants; each reports its median round (env BENCH_ROUNDS, 3)
  --records N         spans appended, then drained, in parts 2 and 3 (env BENCH_RECORDS, default 200000)
  --paired            also run each telemetry variant and telemetry off side by side on core 0, at
                      once, twice a round (either one started first): CPU per request of each
  --save              also write bench/results/telemetry-<date>.json
`;

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...LOAD_FLAGS,
      records: { type: 'string' },
      paired: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) return undefined;
  return {
    durationSec: intFlag('duration', values.duration, 'BENCH_DURATION', 8, 1, 600),
    warmupSec: intFlag('warmup', values.warmup, 'BENCH_WARMUP', 20, 0, 300),
    connections: intFlag('connections', values.connections, 'BENCH_CONNECTIONS', 64, 1, 10_000),
    rounds: intFlag('rounds', values.rounds, 'BENCH_ROUNDS', 3, 1, 20),
    records: intFlag('records', values.records, 'BENCH_RECORDS', 200_000, 1000, 10_000_000),
    paired: values.paired,
    save: values.save,
  };
}

// ---------------------------------------------------------------------------------------------
// Part 1: processes.

async function getJson(url: string): Promise<unknown> {
  const r = await request(url, { headersTimeout: 5000 });
  if (r.statusCode !== 200) throw new Error(`GET ${url}: ${r.statusCode} ${await r.body.text()}`);
  return r.body.json();
}

/** The proxy's telemetry counters, from its admin `/metrics` (absent when telemetry is off). */
interface TelemetryCounters {
  /** Spans, log records, access-log records and metrics batches handed to the pipeline. */
  signals: number;
  /** Records written to the log (access-log records go in batches) and their bytes. */
  emitted: number;
  emittedBytes: number;
  shipped: number;
  backlogRecords: number;
  shipFailures: number;
  dropped: number;
}

async function telemetryCounters(admin: string): Promise<TelemetryCounters | undefined> {
  const r = await request(`http://${admin}/metrics`, { headersTimeout: 5000 });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`GET http://${admin}/metrics: ${r.statusCode} ${text}`);
  const read = (name: string) => {
    const m = new RegExp(`^isthmus_telemetry_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1];
    return m === undefined ? undefined : Number(m);
  };
  const emitted = read('emitted_records');
  if (emitted === undefined) return undefined;
  return {
    signals: read('signals') ?? 0,
    emitted,
    emittedBytes: read('emitted_bytes') ?? 0,
    shipped: read('shipped_records') ?? 0,
    backlogRecords: read('backlog_records') ?? 0,
    shipFailures: read('ship_failures') ?? 0,
    dropped: read('dropped_records') ?? 0,
  };
}

interface SinkCount {
  posts: number;
  bytes: number;
  records: number;
}

/** One variant's measured run. */
interface RoundResult {
  wrk: WrkResult;
  /** Peak resident memory of the proxy during warm-up and run, bytes. */
  peakRssBytes: number;
  /** Resident memory before any load (started and answered one request), bytes. */
  idleRssBytes: number;
  /** Busy share of each core during the measured run, percent. */
  cpuBusyPercent: Record<string, number>;
  /** CPU used by processes outside the benchmark during the run, percent of one core. */
  foreignCpuPercent: number;
  /**
   * CPU the proxy process (all its threads) used per request of the measured run, µs: steadier
   * than req/s when the machine's speed drifts, since both variants pay the same per request.
   */
  cpuUsPerRequest: number;
  /** Absent for telemetry off. */
  telemetry?: {
    /** Counters at the end of the measured run (since the proxy started, warm-up included). */
    atEnd: TelemetryCounters;
    /** Records the proxy wrote to its log during the measured run, and per second of it. */
    emittedInRun: number;
    emittedPerSec: number;
    /** Bytes the proxy wrote to its log per second of the measured run: the rate a backlog grows at. */
    emittedBytesPerSec: number;
    /** Signals (spans, access-log records, …) per second of the measured run, and per request. */
    signalsPerSec: number;
    signalsPerRequest: number;
    /** Records the proxy shipped (collector acked) during the measured run, per second. */
    shippedPerSec: number;
    /** What the collector stand-in received during the measured run. */
    sinkInRun: SinkCount;
  };
}

interface VariantResult extends RoundResult {
  key: VariantKey;
  label: string;
  /** req/s of every round, in order; the figures above are from the median round. */
  roundsRps: number[];
  /** Signals per second of every round (empty with telemetry off). */
  roundsSignalsPerSec: number[];
  /** The proxy's CPU per request of every round, µs, and their median. */
  roundsCpuUsPerRequest: number[];
  medianCpuUsPerRequest: number;
}

type LoadTools = Pick<Tools, 'nginx' | 'wrk' | 'taskset'>;

class Bench extends LoadBench<LoadTools, Options> {
  #sink?: Pinned;
  #sinkAddress = '';

  /** nginx answering 1 KiB and the collector stand-in, both on the load core. */
  async startPeers(): Promise<void> {
    await this.startUpstream();
    const sink = await startNode(this.procs, 'collector-sink', LOAD_CORE, [sinkScript], repoRoot);
    this.#sink = sink.process;
    this.#sinkAddress = String(sink.ready.address);
  }

  async stopPeers(): Promise<void> {
    if (this.#sink) await this.procs.stop(this.#sink);
    if (this.upstream) await this.procs.stop(this.upstream);
  }

  #sinkCount(): Promise<SinkCount> {
    return getJson(`http://${this.#sinkAddress}/count`) as Promise<SinkCount>;
  }

  async #startProxy(variant: Variant, round: number, tag = 'r') {
    const dir = path.join(this.tmp, `${tag}${round}-${variant.key}`);
    await mkdir(path.join(dir, 'mesh'), { recursive: true });
    // The mesh of bench:proxy; (c) adds a mesh-wide TelemetryPolicy that samples every request.
    const mesh = variant.sampleAll
      ? `${isthmusMesh()}---
${API}
kind: TelemetryPolicy
metadata: {name: all}
spec:
  targetRef: {kind: Mesh}
  sampling: {minRatio: 1}
`
      : isthmusMesh();
    await writeFile(path.join(dir, 'mesh', 'mesh.yaml'), mesh);
    const bootstrap = path.join(dir, 'bootstrap.yaml');
    await writeFile(
      bootstrap,
      isthmusTelemetryBootstrap(
        'mesh',
        this.upstreamPort,
        variant.telemetry
          ? { collector: `http://${this.#sinkAddress}`, dataDir: path.join(dir, 'wal') }
          : undefined,
      ),
    );
    // As bench:proxy starts it.
    return startIsthmusProxy(this.procs, `isthmus ${variant.key}`, isthmusMain, bootstrap, repoRoot);
  }

  /**
   * Fresh proxies of `first` and `second` on core 0 at once, each under its own wrk (half the
   * connections each, both on the load core), warmed up and then measured together: the CPU per
   * request of each (all its threads, /proc), in that order. Whatever the machine's speed does
   * during the run, it does to both. `tag` names their folders.
   */
  async sideBySide(first: Variant, second: Variant, tag: string): Promise<[number, number]> {
    const a = await this.#startProxy(first, 0, `${tag}-`);
    const b = await this.#startProxy(second, 0, `${tag}-`);
    try {
      const connections = Math.max(1, Math.floor(this.options.connections / 2));
      const both = (sec: number, summary: boolean) =>
        Promise.all([
          this.wrk(a.address, sec, summary, connections),
          this.wrk(b.address, sec, summary, connections),
        ]);
      if (this.options.warmupSec > 0) await both(this.options.warmupSec, false);
      const cpu = () => [processCpuMs(a.process.pid), processCpuMs(b.process.pid)] as const;
      const [a0, b0] = cpu();
      const [outA, outB] = await both(this.options.durationSec, true);
      const [a1, b1] = cpu();
      for (const p of [a, b])
        if (!alive(p.process)) throw new Error(`a proxy died during the run:\n${p.process.tail()}`);
      const perRequest = (cpuMs: number, out: string) => {
        const requests = parseWrkOutput(out).requests;
        return requests > 0 ? (cpuMs * 1000) / requests : 0;
      };
      return [perRequest(a1 - a0, outA), perRequest(b1 - b0, outB)];
    } finally {
      await this.procs.stop(a.process);
      await this.procs.stop(b.process);
    }
  }

  /** A fresh proxy of `variant`: warm-up, then the measured run with its counters around it. */
  async throughput(variant: Variant, round: number): Promise<RoundResult> {
    const proxy = await this.#startProxy(variant, round);
    try {
      const sampler = new RssSampler(proxy.process.pid);
      if (this.options.warmupSec > 0) await this.wrk(proxy.address, this.options.warmupSec, false);
      const roots = [proxy.process.pid, ...[this.upstream, this.#sink].map((p) => p?.pid ?? 0)];
      const sinkBefore = await this.#sinkCount();
      const before = await telemetryCounters(proxy.admin);
      const t0 = performance.now();
      const cpu = new CpuMeter(roots.filter((pid) => pid > 0));
      const proxyCpuMs = processCpuMs(proxy.process.pid);
      const output = await this.wrk(proxy.address, this.options.durationSec, true);
      const proxyCpuUsedMs = processCpuMs(proxy.process.pid) - proxyCpuMs;
      const { busyPercent, foreignPercent } = cpu.stop();
      const after = await telemetryCounters(proxy.admin);
      const scrapeSec = (performance.now() - t0) / 1000;
      const sinkAfter = await this.#sinkCount();
      const rss = sampler.stop();
      if (!alive(proxy.process))
        throw new Error(`${variant.label} died during the run:\n${proxy.process.tail()}`);
      const wrk = parseWrkOutput(output);
      const result: RoundResult = {
        wrk,
        peakRssBytes: rss.peakBytes,
        idleRssBytes: rss.firstBytes,
        cpuBusyPercent: busyPercent,
        foreignCpuPercent: foreignPercent,
        cpuUsPerRequest: wrk.requests > 0 ? (proxyCpuUsedMs * 1000) / wrk.requests : 0,
      };
      if (variant.telemetry && (!before || !after))
        throw new Error(`${variant.label}: the proxy's /metrics has no isthmus_telemetry_* counters`);
      if (before && after) {
        const emittedInRun = after.emitted - before.emitted;
        // Records are written as requests complete: per second of wrk's run (the scrapes around
        // it add a few idle milliseconds), falling back to the time between the scrapes.
        const loadSec = wrk.durationUs > 0 ? wrk.durationUs / 1e6 : scrapeSec;
        result.telemetry = {
          atEnd: after,
          emittedInRun,
          emittedPerSec: emittedInRun / loadSec,
          emittedBytesPerSec: (after.emittedBytes - before.emittedBytes) / loadSec,
          signalsPerSec: (after.signals - before.signals) / loadSec,
          signalsPerRequest: wrk.requests > 0 ? (after.signals - before.signals) / wrk.requests : 0,
          shippedPerSec: (after.shipped - before.shipped) / scrapeSec,
          sinkInRun: {
            posts: sinkAfter.posts - sinkBefore.posts,
            bytes: sinkAfter.bytes - sinkBefore.bytes,
            records: sinkAfter.records - sinkBefore.records,
          },
        };
      }
      return result;
    } finally {
      await this.procs.stop(proxy.process);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Parts 2 and 3: in this process.

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

interface PipelineResult {
  records: number;
  appendSec: number;
  appendPerSec: number;
  bytesPerRecord: number;
  drainSec: number;
  drainPerSec: number;
  drainMBPerSec: number;
  /** Bytes of the log drained per second (what was appended, headers included). */
  drainLogBytesPerSec: number;
  complete: boolean;
  /** CPU time of this process (user + system, every thread) per record while appending / draining, µs. */
  appendCpuUs: number;
  drainCpuUs: number;
}

/** (2) appends `records` spans while the collector is down, (3) drains them once it is back. */
async function pipeline(root: string, records: number): Promise<PipelineResult> {
  const collector = await sinkCollector();
  try {
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
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < records; i++) {
      source.span(span(i));
      // Yield now and then, as a request path would: appends are written once per event-loop turn.
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    await source.wal.sync();
    const appendSec = (performance.now() - t0) / 1000;
    const cpu1 = process.cpuUsage(cpu0);
    const bytes = source.stats().backlogBytes;

    collector.state.down = false;
    collector.state.bytes = 0;
    const t1 = performance.now();
    const cpu2 = process.cpuUsage();
    const complete = await source.flush(300_000);
    const drainSec = (performance.now() - t1) / 1000;
    const cpu3 = process.cpuUsage(cpu2);
    await source.close();
    return {
      records,
      appendSec,
      appendPerSec: records / appendSec,
      bytesPerRecord: bytes / records,
      drainSec,
      drainPerSec: records / drainSec,
      drainMBPerSec: collector.state.bytes / drainSec / 1e6,
      drainLogBytesPerSec: bytes / drainSec,
      complete,
      appendCpuUs: (cpu1.user + cpu1.system) / records,
      drainCpuUs: (cpu3.user + cpu3.system) / records,
    };
  } finally {
    await collector.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Report.

interface Target {
  name: string;
  pass: boolean;
  detail: string;
}

function evaluateTargets(variants: readonly VariantResult[], pipe: PipelineResult): Target[] {
  const off = variants.find((v) => v.key === 'off') as VariantResult;
  const all = variants.find((v) => v.key === 'all') as VariantResult;
  const targets: Target[] = [];
  for (const v of variants) {
    if (v.key === 'off') continue;
    // Paired by round (each variant against the telemetry-off run of its own round, a few seconds
    // apart), then the median: drift between rounds cancels out of each pair.
    const costs = roundCosts(v, off);
    const cost = medianOf(costs);
    targets.push({
      name: `telemetry cost ≤ ${MAX_COST * 100} %, ${v.label}`,
      pass: cost <= MAX_COST,
      detail:
        `${pct(cost)} % (median of the rounds' ${costs.map(pct).join(', ')} %; ` +
        `median rounds ${Math.round(v.wrk.requestsPerSec)} vs ${Math.round(off.wrk.requestsPerSec)} req/s)`,
    });
  }
  // In bytes of the log: a proxy's records (access-log batches, spans, metrics) and the drained
  // spans differ in size, and the log's bound, its backlog and its replay are all in bytes.
  const emission = all.telemetry?.emittedBytesPerSec ?? 0;
  const ratio = emission > 0 ? pipe.drainLogBytesPerSec / emission : Infinity;
  targets.push({
    name: `replay drain ≥ ${MIN_DRAIN_OVER_EMISSION}× ingest (live emission of (c), bytes of the log per second)`,
    pass: ratio >= MIN_DRAIN_OVER_EMISSION && pipe.complete,
    detail: `${ratio.toFixed(2)}× (drain ${mb(pipe.drainLogBytesPerSec)} MB/s, emission ${mb(emission)} MB/s${pipe.complete ? '' : ', drain INCOMPLETE'})`,
  });
  return targets;
}

/** Each round's throughput cost of `v` against telemetry off in the same round (0.1 = 10 %). */
function roundCosts(v: VariantResult, off: VariantResult): number[] {
  return v.roundsRps.map((rps, i) => 1 - rps / (off.roundsRps[i] ?? Infinity));
}

const pct = (cost: number) => (cost * 100).toFixed(1);
const mb = (bytesPerSec: number) => (bytesPerSec / 1e6).toFixed(2);

function errorCount(r: WrkResult): number {
  const e = r.errors;
  return e.connect + e.read + e.write + e.timeout + e.status;
}

function table(header: readonly string[], rows: readonly string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');

function formatReport(
  variants: readonly VariantResult[],
  pipe: PipelineResult,
  targets: readonly Target[],
): string {
  const off = variants.find((v) => v.key === 'off') as VariantResult;
  const out = [
    'Part 1: proxy throughput, one isthmus proxy process per variant on core 0 (figures from each variant’s median round):',
    ...table(
      [
        'variant',
        'req/s',
        '×off',
        'CPU µs/req',
        '×off',
        'p50 ms',
        'p99 ms',
        'peak RSS MB',
        'core0 %',
        'errors',
      ],
      variants.map((v) => [
        v.label,
        int(v.wrk.requestsPerSec),
        (v.wrk.requestsPerSec / off.wrk.requestsPerSec).toFixed(3),
        v.medianCpuUsPerRequest.toFixed(1),
        (v.medianCpuUsPerRequest / off.medianCpuUsPerRequest).toFixed(3),
        ms(v.wrk.p50Us),
        ms(v.wrk.p99Us),
        (v.peakRssBytes / 2 ** 20).toFixed(1),
        String(v.cpuBusyPercent.cpu0 ?? '?'),
        String(errorCount(v.wrk)),
      ]),
    ),
    '',
    'Telemetry of the proxy (rates over the measured run; counters at its end, warm-up included):',
    ...table(
      [
        'variant',
        'signals/s',
        'signals/req',
        'records/s',
        'log MB/s',
        'shipped/s',
        'emitted',
        'shipped',
        'backlog',
        'dropped',
        'ship fails',
      ],
      variants
        .filter((v) => v.telemetry)
        .map((v) => {
          const t = v.telemetry as NonNullable<RoundResult['telemetry']>;
          return [
            v.label,
            int(t.signalsPerSec),
            t.signalsPerRequest.toFixed(3),
            int(t.emittedPerSec),
            mb(t.emittedBytesPerSec),
            int(t.shippedPerSec),
            int(t.atEnd.emitted),
            int(t.atEnd.shipped),
            int(t.atEnd.backlogRecords),
            int(t.atEnd.dropped),
            int(t.atEnd.shipFailures),
          ];
        }),
    ),
  ];
  if (variants.some((v) => v.roundsRps.length > 1)) {
    out.push('', 'By round (req/s; proxy CPU µs per request; signals/s):');
    for (const v of variants)
      out.push(
        `  ${v.label.padEnd(30)}  ${v.roundsRps.join(' / ')};  ${v.roundsCpuUsPerRequest.join(' / ')}` +
          (v.telemetry ? `;  ${v.roundsSignalsPerSec.map((x) => Math.round(x)).join(' / ')}` : ''),
      );
  }
  for (const v of variants) {
    const core0 = v.cpuBusyPercent.cpu0;
    if (core0 !== undefined && core0 < 90)
      out.push(
        `note: ${v.label} kept core 0 only ${core0}% busy (core 1: ${v.cpuBusyPercent.cpu1 ?? '?'}%): bounded by the load generator and upstream, not by the proxy`,
      );
    if (v.foreignCpuPercent >= 5)
      out.push(
        `note: other processes on this machine used ${v.foreignCpuPercent}% of a core during the ${v.label} run: its figures are disturbed`,
      );
    if (errorCount(v.wrk) > 0) out.push(`warning: ${v.label} had errors: ${JSON.stringify(v.wrk.errors)}`);
  }

  const all = variants.find((v) => v.key === 'all');
  const emission = all?.telemetry?.emittedBytesPerSec ?? 0;
  out.push(
    '',
    'Parts 2 and 3: TelemetrySource in this process (core 1), spans:',
    `  append  ${pipe.records} spans in ${pipe.appendSec.toFixed(2)} s = ${int(pipe.appendPerSec)} records/s (${pipe.bytesPerRecord.toFixed(0)} B/record, durable)`,
    `  replay  drained in ${pipe.drainSec.toFixed(2)} s = ${int(pipe.drainPerSec)} records/s, ${mb(pipe.drainLogBytesPerSec)} MB/s of log (${pipe.drainMBPerSec.toFixed(1)} MB/s of OTLP JSON; ${pipe.complete ? 'complete' : 'INCOMPLETE'})`,
    `  CPU per record (this process, every thread): append ${pipe.appendCpuUs.toFixed(1)} µs (encode, log, fsync), drain ${pipe.drainCpuUs.toFixed(1)} µs (read, export, post; the stand-in only counts bytes)`,
    `  drain / append                        ${(pipe.drainPerSec / pipe.appendPerSec).toFixed(2)}×`,
    `  drain / live emission at peak load    ${emission > 0 ? (pipe.drainLogBytesPerSec / emission).toFixed(2) : '-'}× in bytes of the log (${mb(emission)} MB/s, variant (c))`,
    '',
    'Targets:',
    ...targets.map((t) => `  ${t.pass ? 'PASS' : 'MISS'}  ${t.name}: ${t.detail}`),
    // The target is on throughput; CPU per request is the same question asked in a way the
    // machine's drift between one variant's run and the next moves less.
    ...variants
      .filter((v) => v.telemetry)
      .map(
        (v) =>
          `  (for reference) ${v.label}: the proxy's CPU per request ${v.medianCpuUsPerRequest.toFixed(1)} µs against ${off.medianCpuUsPerRequest.toFixed(1)} µs off, +${(100 * (v.medianCpuUsPerRequest / off.medianCpuUsPerRequest - 1)).toFixed(1)} % (medians over rounds)`,
      ),
  );
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

/** The median round by req/s (the lower middle one for an even count), with the peak RSS of all. */
function summarise(variant: Variant, rounds: readonly RoundResult[]): VariantResult {
  const sorted = [...rounds].sort((a, b) => a.wrk.requestsPerSec - b.wrk.requestsPerSec);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as RoundResult;
  return {
    key: variant.key,
    label: variant.label,
    ...median,
    peakRssBytes: Math.max(...rounds.map((r) => r.peakRssBytes)),
    roundsRps: rounds.map((r) => Math.round(r.wrk.requestsPerSec)),
    roundsSignalsPerSec: variant.telemetry ? rounds.map((r) => r.telemetry?.signalsPerSec ?? 0) : [],
    roundsCpuUsPerRequest: rounds.map((r) => Math.round(r.cpuUsPerRequest * 10) / 10),
    medianCpuUsPerRequest: medianOf(rounds.map((r) => r.cpuUsPerRequest)),
  };
}

/** One telemetry variant measured side by side with telemetry off, run after run. */
interface SideBySide {
  key: VariantKey;
  label: string;
  /** Each run's CPU per request of the variant over that of telemetry off, and which started first. */
  runs: { ratio: number; offUs: number; onUs: number; offFirst: boolean }[];
  /** Per round, the geometric mean of its two runs' ratios: a bias for the proxy started first cancels out. */
  roundRatios: number[];
  medianRatio: number;
}

/**
 * Each telemetry variant and telemetry off, side by side on core 0 (Bench.sideBySide), twice a
 * round: telemetry off started first, then the variant first. Which one starts first (and has its
 * wrk launched first) changes the result, by 1.5 % to 15 % in this machine's runs; the geometric
 * mean of the two runs of a round cancels a bias of either size.
 */
async function sideBySide(bench: Bench, rounds: number): Promise<SideBySide[]> {
  const off = VARIANTS.find((v) => v.key === 'off') as Variant;
  const out: SideBySide[] = [];
  for (const v of VARIANTS.filter((x) => x.telemetry)) {
    const runs: SideBySide['runs'] = [];
    for (let round = 1; round <= rounds; round++)
      for (const offFirst of [true, false]) {
        process.stdout.write(
          `  side by side, ${v.label} and telemetry off (${offFirst ? 'off' : 'on'} first)… `,
        );
        const tag = `p${round}-${v.key}-${offFirst ? 'a' : 'b'}`;
        const [x, y] = offFirst ? await bench.sideBySide(off, v, tag) : await bench.sideBySide(v, off, tag);
        const [offUs, onUs] = offFirst ? [x, y] : [y, x];
        runs.push({ ratio: onUs / offUs, offUs, onUs, offFirst });
        console.log(`${onUs.toFixed(1)} against ${offUs.toFixed(1)} µs a request`);
      }
    const roundRatios: number[] = [];
    for (let i = 0; i + 1 < runs.length; i += 2)
      roundRatios.push(
        Math.sqrt((runs[i] as { ratio: number }).ratio * (runs[i + 1] as { ratio: number }).ratio),
      );
    out.push({ key: v.key, label: v.label, runs, roundRatios, medianRatio: medianOf(roundRatios) });
  }
  return out;
}

function formatSideBySide(paired: readonly SideBySide[], connections: number): string {
  const half = Math.max(1, Math.floor(connections / 2));
  return [
    `Side by side (--paired): each telemetry variant and telemetry off on core 0 at once, each under its own wrk (${half} connections), CPU per request of each (all threads, /proc).`,
    'The machine drifts alike for both; but each proxy also pays for the cache misses the other causes at its thread hand-offs, which overstates the cost of the log’s writes (docs/performance.md).',
    ...paired.map(
      (p) =>
        `  ${p.label.padEnd(30)}  CPU per request ×${p.medianRatio.toFixed(3)} of telemetry off (median over rounds: ${p.roundRatios
          .map((r) => r.toFixed(3))
          .join(', ')}; runs, off first then on first: ${p.runs.map((r) => r.ratio.toFixed(3)).join(', ')})`,
    ),
  ].join('\n');
}

/** The median (the lower middle value for an even count). */
function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? 0;
}

async function main(): Promise<number> {
  const options = parseCommandLine(parseOptions, USAGE);
  if (typeof options === 'number') return options;
  const found = checkPrerequisites(isthmusMain, LOAD_NEEDS);
  if (!existsSync(sinkScript))
    found.missing.push({ what: `the built collector stand-in (${sinkScript})`, fix: 'npm run build' });
  const ready = await setUp('telemetry', found, 'isthmus-bench-telemetry-');
  if (!ready) return 3;
  const { tools, info, run } = ready;
  const { procs, tmp } = run;

  const o = options;
  const estimateSec =
    o.rounds * VARIANTS.length * (o.warmupSec + o.durationSec + 2) + 10 + o.records / 20_000;
  console.log(
    `Telemetry benchmark: isthmus proxy (off / default sampling / every request sampled) on core ${PROXY_CORE}; ` +
      `upstream (nginx, ${BODY.length} B body), wrk and the collector stand-in on core ${LOAD_CORE}.\n` +
      `wrk -t1 -c${o.connections} -d${o.durationSec}s after ${o.warmupSec}s warm-up, ${o.rounds} round(s); then ${o.records} spans appended and replayed in process. About ${Math.ceil(estimateSec / 60)} min.\n` +
      `${String(info.cpuModel)}, ${String(info.nproc)} CPUs, ${String(info.node)}, ${String(info.nginx)}\n`,
  );

  return run.measure(async () => {
    const bench = new Bench(procs, tools, tmp, o);
    await bench.startPeers();
    // Variants take turns, round after round, so a burst of noise hits one round of one variant
    // rather than all of a variant's figures.
    const rounds = new Map<VariantKey, RoundResult[]>(VARIANTS.map((v) => [v.key, []]));
    for (let round = 1; round <= o.rounds; round++) {
      if (o.rounds > 1) console.log(`  round ${round}/${o.rounds}`);
      // Every other round runs them in reverse order: the machine's speed drifts over minutes, and
      // in a fixed order the variants run last in each round would be charged with the drift.
      for (const variant of round % 2 === 1 ? VARIANTS : [...VARIANTS].reverse()) {
        process.stdout.write(`  ${variant.label}… `);
        const r = await bench.throughput(variant, round);
        rounds.get(variant.key)?.push(r);
        console.log(
          `${Math.round(r.wrk.requestsPerSec)} req/s` +
            (r.telemetry ? `, ${Math.round(r.telemetry.signalsPerSec)} signals/s` : ''),
        );
      }
    }
    const paired = o.paired ? await sideBySide(bench, o.rounds) : [];
    await bench.stopPeers();
    const variants = VARIANTS.map((v) => summarise(v, rounds.get(v.key) ?? []));

    process.stdout.write(`  append and replay of ${o.records} spans… `);
    const pipe = await pipeline(tmp, o.records);
    console.log(`${Math.round(pipe.drainPerSec)} records/s drained`);

    const targets = evaluateTargets(variants, pipe);
    console.log(`\n${formatReport(variants, pipe, targets)}`);
    if (paired.length > 0) console.log(`\n${formatSideBySide(paired, o.connections)}`);

    if (o.save) {
      const all = variants.find((v) => v.key === 'all');
      await saveReport(
        repoRoot,
        'telemetry',
        { machine: info, options: o },
        {
          variants,
          pipeline: {
            ...pipe,
            liveEmissionPerSec: all?.telemetry?.emittedPerSec ?? null,
            liveEmissionBytesPerSec: all?.telemetry?.emittedBytesPerSec ?? null,
            drainOverAppend: pipe.drainPerSec / pipe.appendPerSec,
            drainOverLiveEmission: all?.telemetry
              ? pipe.drainLogBytesPerSec / all.telemetry.emittedBytesPerSec
              : null,
          },
          targets,
          ...(paired.length > 0 && { sideBySide: paired }),
        },
      );
    }
  });
}

process.exitCode = await main();
