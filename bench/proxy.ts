/**
 * The proxy benchmark: Isthmus's sidecar, without and with request telemetry, against nginx,
 * HAProxy, @fastify/http-proxy and two bare pass-throughs (undici, and the data plane's own
 * HTTP/1.1), side by side in one run on
 * loopback, then the latency Isthmus adds at a fixed moderate rate over a direct call, with what
 * nginx and HAProxy (when among the peers) add measured the same way in the same run as references
 * for this machine's own share. See docs/performance.md.
 *
 * Usage: npm run bench:proxy -- [--duration 8] [--warmup 5] [--connections 64] [--rate 2000]
 *          [--latency-duration 10] [--rounds 3]
 *          [--peers isthmus,isthmus-telemetry,nginx,haproxy,fastify,undici,http1] [--save]
 * Every flag also reads an environment variable: BENCH_DURATION, BENCH_WARMUP, …
 *
 * Layout: the upstream (nginx, fixed 1 KiB body), the load generators, the collector stand-in the
 * telemetry peer ships to (bench/peers/collector-sink.ts) and this process run on core 1; the
 * proxy under test runs alone on core 0. Nothing is installed: missing tools are reported with the
 * command that provides them.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import type { OpenLoopResult } from './open-loop.js';
import {
  BODY,
  LOAD_CORE,
  PROXY_CORE,
  haproxy,
  isthmusMesh,
  isthmusTelemetryBootstrap,
  proxyNginx,
  SERVICE,
} from './support/configs.js';
import { checkPrerequisites, PROXY_NEEDS, type Tools } from './support/prerequisites.js';
import { alive, CpuMeter, freePort, RssSampler, startNode, type Pinned } from './support/processes.js';
import {
  evaluateTargets,
  formatReport,
  ISTHMUS_PEERS,
  PEER_LABEL,
  PEERS,
  type AddedLatency,
  type IsthmusPeer,
  type OpenLoopRun,
  type PeerName,
  type PeerResult,
  REFERENCE_PEERS,
  references,
  type ReferencePeer,
  type ThroughIsthmus,
  type ThroughPeer,
  throughIsthmus,
} from './support/report.js';
import { parseWrkOutput } from './support/wrk.js';
import { intFlag, LOAD_FLAGS, parseCommandLine, UsageError } from './support/flags.js';
import { checkStarted, LoadBench, saveReport, setUp, startIsthmusProxy } from './support/run.js';

/** The Node.js peers started from bench/peers/. */
const NODE_PEER_SCRIPT = { fastify: 'fastify-proxy', undici: 'undici-proxy', http1: 'http1-proxy' } as const;

const OPEN_LOOP_WARMUP_SEC = 2;

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const isthmusMain = path.join(repoRoot, 'dist/src/cli/main.js');
const script = (name: string) => fileURLToPath(new URL(name, import.meta.url));
const sinkScript = script('./peers/collector-sink.js');

interface Options {
  durationSec: number;
  /** Rounds over all peers; each peer's figures are from its median round (noise resistance). */
  rounds: number;
  warmupSec: number;
  connections: number;
  rate: number;
  latencyDurationSec: number;
  peers: PeerName[];
  save: boolean;
}

const USAGE = `Usage: npm run bench:proxy -- [options]

  --duration SECONDS          measured wrk run per proxy and round (env BENCH_DURATION, default 8)
  --warmup SECONDS            wrk warm-up before each run (env BENCH_WARMUP, default 5)
  --connections N             wrk connections, one thread (env BENCH_CONNECTIONS, default 64)
  --rate N                    open-loop rate for the added latency, req/s (env BENCH_RATE, default 2000)
  --latency-duration SECONDS  open-loop run, each of direct, every Isthmus peer, then nginx and haproxy
                              as references when among the peers (env BENCH_LATENCY_DURATION, default 10);
                              with no Isthmus peer, no open-loop run
  --rounds N                  rounds over all peers; each reports its median round (env BENCH_ROUNDS, 3)
  --peers LIST                comma-separated subset of ${PEERS.join(',')} (env BENCH_PEERS)
  --save                      also write bench/results/proxy-<date>.json
`;

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...LOAD_FLAGS,
      rate: { type: 'string' },
      'latency-duration': { type: 'string' },
      peers: { type: 'string' },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const int = intFlag;
  const peerText = values.peers ?? process.env.BENCH_PEERS;
  const peers = peerText ? peerText.split(',').map((p) => p.trim()) : [...PEERS];
  for (const p of peers)
    if (!(PEERS as readonly string[]).includes(p))
      throw new UsageError(`unknown peer ${JSON.stringify(p)} in --peers: use ${PEERS.join(', ')}`);
  return {
    durationSec: int('duration', values.duration, 'BENCH_DURATION', 8, 1, 600),
    rounds: int('rounds', values.rounds, 'BENCH_ROUNDS', 3, 1, 20),
    warmupSec: int('warmup', values.warmup, 'BENCH_WARMUP', 5, 0, 120),
    connections: int('connections', values.connections, 'BENCH_CONNECTIONS', 64, 1, 10_000),
    rate: int('rate', values.rate, 'BENCH_RATE', 2000, 1, 100_000),
    latencyDurationSec: int(
      'latency-duration',
      values['latency-duration'],
      'BENCH_LATENCY_DURATION',
      10,
      1,
      600,
    ),
    // Keep the table's order whatever order the flag lists.
    peers: PEERS.filter((p) => peers.includes(p)),
    save: values.save,
  };
}

/** A peer that is up, with the address to load and whatever it needs to report afterwards. */
interface RunningPeer {
  process: Pinned;
  address: string;
  /**
   * Processes the peer needs beside it, on the load core (the telemetry peer's collector
   * stand-in): stopped with it; their CPU counts as the benchmark's, not as interference.
   */
  companions?: Pinned[];
  after?: () => Promise<Record<string, unknown>>;
  /** Removes what the peer left in the run's folder (its telemetry log), once it has stopped. */
  cleanup?: () => Promise<void>;
}

async function getJson(url: string): Promise<unknown> {
  const r = await request(url, { headersTimeout: 5000 });
  if (r.statusCode !== 200) throw new Error(`GET ${url}: ${r.statusCode} ${await r.body.text()}`);
  return r.body.json();
}

/** The `isthmus_telemetry_*` samples of the proxy's admin `/metrics`, by name (labels dropped). */
async function telemetryMetrics(admin: string): Promise<Record<string, number>> {
  const r = await request(`http://${admin}/metrics`, { headersTimeout: 5000 });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`GET http://${admin}/metrics: ${r.statusCode} ${text}`);
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^isthmus_telemetry_(\w+)(?:\{[^}]*\})? (\S+)$/gm))
    if (m[1] !== undefined) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  return out;
}

class Bench extends LoadBench<Tools, Options> {
  /** Each Isthmus peer's counters and log events from its last throughput run, for the report. */
  readonly isthmusDiagnostics: Partial<Record<IsthmusPeer, Record<string, unknown>>> = {};
  /** Numbers the telemetry peer's folders, one per start (a fresh log each time). */
  #telemetryStarts = 0;

  get upstreamUrl(): string {
    return `http://127.0.0.1:${this.upstreamPort}`;
  }

  /**
   * A fresh sidecar; for `isthmus-telemetry`, with `telemetry` in its bootstrap (default sampling),
   * its log in the run's folder, shipping to a collector stand-in started first on the load core.
   */
  async startIsthmus(peer: IsthmusPeer): Promise<RunningPeer> {
    const telemetry = peer === 'isthmus-telemetry';
    const dir = path.join(this.tmp, telemetry ? `isthmus-telemetry-${++this.#telemetryStarts}` : 'isthmus');
    await mkdir(path.join(dir, 'mesh'), { recursive: true });
    await writeFile(path.join(dir, 'mesh', 'mesh.yaml'), isthmusMesh());
    let sink: Pinned | undefined;
    let sinkAddress = '';
    if (telemetry) {
      const node = await startNode(this.procs, 'collector-sink', LOAD_CORE, [sinkScript], repoRoot);
      sink = node.process;
      sinkAddress = String(node.ready.address);
    }
    const cleanup = telemetry ? () => rm(dir, { recursive: true, force: true }) : undefined;
    const bootstrap = path.join(dir, 'bootstrap.yaml');
    await writeFile(
      bootstrap,
      isthmusTelemetryBootstrap(
        'mesh',
        this.upstreamPort,
        telemetry ? { collector: `http://${sinkAddress}`, dataDir: path.join(dir, 'wal') } : undefined,
      ),
    );
    let node: Awaited<ReturnType<typeof startIsthmusProxy>>;
    try {
      node = await startIsthmusProxy(this.procs, peer, isthmusMain, bootstrap, repoRoot);
    } catch (err) {
      if (sink) await this.procs.stop(sink);
      await cleanup?.();
      throw err;
    }
    return {
      process: node.process,
      address: node.address,
      ...(sink && { companions: [sink] }),
      ...(cleanup && { cleanup }),
      after: async () => {
        const stats = await getJson(`http://${node.admin}/stats`);
        // A copy: the stop that follows adds its own event.
        const events = [...node.events];
        if (!telemetry) return { stats, events };
        const counters = await telemetryMetrics(node.admin);
        if (counters.emitted_records === undefined)
          throw new Error(`${PEER_LABEL[peer]}: the proxy's /metrics has no isthmus_telemetry_* counters`);
        return {
          stats,
          telemetry: counters,
          collector: await getJson(`http://${sinkAddress}/count`),
          events,
        };
      },
    };
  }

  /** Stops a peer, then what it needed beside it, then removes what it left. */
  async #stop(running: RunningPeer): Promise<void> {
    await this.procs.stop(running.process);
    for (const p of running.companions ?? []) await this.procs.stop(p);
    await running.cleanup?.();
  }

  async #start(peer: PeerName): Promise<RunningPeer> {
    switch (peer) {
      case 'isthmus':
      case 'isthmus-telemetry':
        return this.startIsthmus(peer);
      case 'nginx': {
        const port = await freePort();
        const p = await this.startNginx('nginx-proxy', PROXY_CORE, (dir) =>
          proxyNginx(dir, port, this.upstreamPort),
        );
        await checkStarted(this.procs, p, `127.0.0.1:${port}`);
        return { process: p, address: `127.0.0.1:${port}` };
      }
      case 'haproxy': {
        const dir = path.join(this.tmp, 'haproxy');
        await mkdir(dir, { recursive: true });
        const port = await freePort();
        const cfg = path.join(dir, 'haproxy.cfg');
        await writeFile(cfg, haproxy(port, this.upstreamPort));
        const p = this.procs.start('haproxy', PROXY_CORE, this.tools.haproxy, [
          '-f',
          cfg,
          '-db',
          '-p',
          path.join(dir, 'haproxy.pid'),
        ]);
        await checkStarted(this.procs, p, `127.0.0.1:${port}`);
        return { process: p, address: `127.0.0.1:${port}` };
      }
      case 'fastify':
      case 'undici':
      case 'http1': {
        const file = script(`./peers/${NODE_PEER_SCRIPT[peer]}.js`);
        const node = await startNode(this.procs, peer, PROXY_CORE, [file, this.upstreamUrl], repoRoot);
        const address = String(node.ready.address);
        await checkStarted(this.procs, node.process, address);
        return { process: node.process, address };
      }
    }
  }

  /** Warm-up, then the measured closed-loop run, sampling the proxy's memory throughout. */
  async throughput(peer: PeerName): Promise<PeerResult> {
    const running = await this.#start(peer);
    try {
      const sampler = new RssSampler(running.process.pid);
      if (this.options.warmupSec > 0) await this.wrk(running.address, this.options.warmupSec, false);
      const cpu = new CpuMeter([
        running.process.pid,
        this.upstream?.pid ?? 0,
        ...(running.companions ?? []).map((p) => p.pid),
      ]);
      const output = await this.wrk(running.address, this.options.durationSec, true);
      const { busyPercent, foreignPercent } = cpu.stop();
      const rss = sampler.stop();
      if (!alive(running.process))
        throw new Error(`${PEER_LABEL[peer]} died during the run:\n${running.process.tail()}`);
      if (running.after && (ISTHMUS_PEERS as readonly string[]).includes(peer))
        this.isthmusDiagnostics[peer as IsthmusPeer] = await running.after();
      return {
        peer,
        wrk: parseWrkOutput(output),
        peakRssBytes: rss.peakBytes,
        idleRssBytes: rss.firstBytes,
        endRssBytes: rss.lastBytes,
        cpuBusyPercent: busyPercent,
        foreignCpuPercent: foreignPercent,
      };
    } finally {
      await this.#stop(running);
    }
  }

  async #openLoop(address: string, proxy?: RunningPeer): Promise<OpenLoopRun> {
    let result: OpenLoopResult | undefined;
    const cpu = new CpuMeter([
      this.upstream?.pid ?? 0,
      ...(proxy ? [proxy.process, ...(proxy.companions ?? [])].map((p) => p.pid) : []),
    ]);
    const p = this.procs.start(
      'open-loop',
      LOAD_CORE,
      process.execPath,
      [
        script('./open-loop.js'),
        '--url',
        `http://${address}/`,
        '--host',
        SERVICE,
        '--rate',
        String(this.options.rate),
        '--duration',
        String(this.options.latencyDurationSec),
        '--warmup',
        String(OPEN_LOOP_WARMUP_SEC),
        '--expect-bytes',
        String(BODY.length),
      ],
      {
        onLine: (line) => {
          if (!line.startsWith('{"event":"result"')) return;
          const { event: _event, ...measured } = JSON.parse(line) as OpenLoopResult & { event: string };
          result = measured;
        },
      },
    );
    const guard = setTimeout(
      () => void this.procs.stop(p),
      (this.options.latencyDurationSec + OPEN_LOOP_WARMUP_SEC + 30) * 1000,
    );
    const { code, signal } = await p.exited;
    clearTimeout(guard);
    const { foreignPercent } = cpu.stop();
    if (code !== 0 || !result)
      throw new Error(`the open-loop generator failed (${code ?? signal}):\n${p.tail()}`);
    return { ...result, foreignCpuPercent: foreignPercent };
  }

  /** p50/p99 through a fresh, warmed-up `peer`, against the `direct` run. */
  async #through(peer: PeerName, direct: OpenLoopRun): Promise<ThroughPeer> {
    const running = await this.#start(peer);
    try {
      if (this.options.warmupSec > 0) await this.wrk(running.address, this.options.warmupSec, false);
      const run = await this.#openLoop(running.address, running);
      if (!alive(running.process))
        throw new Error(`${PEER_LABEL[peer]} died during the latency run:\n${running.process.tail()}`);
      return {
        run,
        addedP50Us: run.p50Us - direct.p50Us,
        addedP99Us: run.p99Us - direct.p99Us,
      };
    } finally {
      await this.#stop(running);
    }
  }

  /** {@link #through} for an Isthmus peer, its run under `isthmus` as the report has always had it. */
  async #throughIsthmus(peer: IsthmusPeer, direct: OpenLoopRun): Promise<ThroughIsthmus> {
    const { run: isthmus, ...added } = await this.#through(peer, direct);
    return { isthmus, ...added };
  }

  /**
   * p50/p99 at a fixed rate, direct to the upstream, then through a fresh, warmed-up sidecar of
   * each Isthmus peer in `peers` (without telemetry, then with it), then through each of the
   * `referencePeers` (nginx, HAProxy) the same way.
   */
  async addedLatency(
    peers: readonly IsthmusPeer[],
    referencePeers: readonly ReferencePeer[],
  ): Promise<AddedLatency> {
    const direct = await this.#openLoop(`127.0.0.1:${this.upstreamPort}`);
    const added: AddedLatency = { rate: this.options.rate, direct };
    if (peers.includes('isthmus')) Object.assign(added, await this.#throughIsthmus('isthmus', direct));
    if (peers.includes('isthmus-telemetry'))
      added.telemetry = await this.#throughIsthmus('isthmus-telemetry', direct);
    if (referencePeers.length > 0) {
      const measured: NonNullable<AddedLatency['references']> = {};
      for (const peer of referencePeers) measured[peer] = await this.#through(peer, direct);
      added.references = measured;
    }
    return added;
  }
}

async function main(): Promise<number> {
  const options = parseCommandLine(parseOptions, USAGE);
  if (typeof options === 'number') return options;
  const found = checkPrerequisites(isthmusMain, PROXY_NEEDS);
  if (options.peers.includes('isthmus-telemetry') && !existsSync(sinkScript))
    found.missing.push({ what: `the built collector stand-in (${sinkScript})`, fix: 'npm run build' });
  const ready = await setUp('proxy', found, 'isthmus-bench-');
  if (!ready) return 3;
  const { tools, info, run } = ready;
  const { procs, tmp } = run;

  const o = options;
  // The Isthmus peers measured at a fixed rate too (each against one shared direct run), then,
  // when any was, nginx and HAProxy the same way as references.
  const latencyPeers = ISTHMUS_PEERS.filter((p) => o.peers.includes(p));
  const referencePeers = latencyPeers.length > 0 ? REFERENCE_PEERS.filter((p) => o.peers.includes(p)) : [];
  // Each through-peer run: a start, its wrk warm-up and an open-loop run; plus the direct one.
  const throughRuns = latencyPeers.length + referencePeers.length;
  const perPeerSec = o.warmupSec + o.durationSec + 2;
  const estimateSec =
    o.rounds * o.peers.length * perPeerSec +
    (throughRuns > 0 ? (1 + throughRuns) * (OPEN_LOOP_WARMUP_SEC + o.latencyDurationSec) : 0) +
    throughRuns * o.warmupSec +
    5;
  const sinkNote = o.peers.includes('isthmus-telemetry')
    ? ', with the telemetry peer’s collector stand-in,'
    : '';
  console.log(
    `Proxy benchmark: ${o.peers.length} proxies on core ${PROXY_CORE}; upstream (nginx, ${BODY.length} B body)${sinkNote} and load on core ${LOAD_CORE}.\n` +
      `wrk -t1 -c${o.connections} -d${o.durationSec}s after ${o.warmupSec}s warm-up; open loop at ${o.rate} req/s for ${o.latencyDurationSec}s. About ${Math.ceil(estimateSec / 60)} min.\n` +
      `${String(info.cpuModel)}, ${String(info.nproc)} CPUs, ${String(info.node)}, ${String(info.nginx)}, ${String(info.haproxy)}\n`,
  );

  return run.measure(async () => {
    const bench = new Bench(procs, tools, tmp, o);
    await bench.startUpstream();
    // Peers take turns, round after round, so a burst of noise from other tenants of the machine
    // hits one round of one peer rather than all of a peer's figures; each peer reports its median
    // round.
    const rounds = new Map<PeerName, PeerResult[]>(o.peers.map((p) => [p, []]));
    for (let round = 1; round <= o.rounds; round++) {
      if (o.rounds > 1) console.log(`  round ${round}/${o.rounds}`);
      for (const peer of o.peers) {
        process.stdout.write(`  ${PEER_LABEL[peer]}… `);
        const r = await bench.throughput(peer);
        rounds.get(peer)?.push(r);
        console.log(`${Math.round(r.wrk.requestsPerSec)} req/s`);
      }
    }
    const results: PeerResult[] = o.peers.map((peer) => {
      const all = rounds.get(peer) ?? [];
      const sorted = [...all].sort((a, b) => a.wrk.requestsPerSec - b.wrk.requestsPerSec);
      const median = sorted[Math.floor((sorted.length - 1) / 2)] as PeerResult;
      return {
        ...median,
        peakRssBytes: Math.max(...all.map((r) => r.peakRssBytes)),
        roundsRps: all.map((r) => Math.round(r.wrk.requestsPerSec)),
      };
    });
    let added: AddedLatency | undefined;
    if (latencyPeers.length > 0) {
      process.stdout.write(`  added latency at ${o.rate} req/s… `);
      added = await bench.addedLatency(latencyPeers, referencePeers);
      const measured = added;
      const p99 = (t: { addedP99Us: number } | undefined) =>
        t ? `p99 +${(t.addedP99Us / 1000).toFixed(3)} ms` : 'not measured';
      console.log(
        [
          ...latencyPeers.map((peer) => {
            const t = p99(throughIsthmus(measured, peer));
            return peer === 'isthmus' ? t : `with telemetry ${t}`;
          }),
          ...references(measured).map((t) => `${PEER_LABEL[t.peer]} (reference) ${p99(t)}`),
        ].join(', '),
      );
    }
    const targets = evaluateTargets(results, added);
    console.log(`\n${formatReport(results, added, targets)}`);
    for (const peer of ISTHMUS_PEERS) {
      const events = (bench.isthmusDiagnostics[peer]?.events as unknown[] | undefined) ?? [];
      // "Isthmus" for the sidecar, as this report has always said; the telemetry peer by its label.
      const name = peer === 'isthmus' ? 'Isthmus' : PEER_LABEL[peer];
      if (events.length > 0)
        console.log(
          `\n${name} logged ${events.length} event(s) under load, first: ${JSON.stringify(events[0])}`,
        );
    }
    const shipped = bench.isthmusDiagnostics['isthmus-telemetry'];
    if (shipped) {
      const t = shipped.telemetry as Record<string, number>;
      const c = shipped.collector as { records?: number; posts?: number };
      console.log(
        `\n${PEER_LABEL['isthmus-telemetry']} (its last run, warm-up included): ${t.emitted_records ?? 0} records written to its log, ` +
          `${t.shipped_records ?? 0} shipped, ${t.dropped_records ?? 0} dropped, ${t.ship_failures ?? 0} failed exports; ` +
          `the collector stand-in received ${c.records ?? 0} records in ${c.posts ?? 0} posts`,
      );
    }

    if (o.save)
      await saveReport(
        repoRoot,
        'proxy',
        { machine: info, options: o },
        {
          results,
          addedLatency: added ?? null,
          targets,
          isthmus: bench.isthmusDiagnostics.isthmus ?? {},
          ...(o.peers.includes('isthmus-telemetry') && {
            isthmusTelemetry: bench.isthmusDiagnostics['isthmus-telemetry'] ?? {},
          }),
        },
      );
  });
}

process.exitCode = await main();
