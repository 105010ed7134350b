/**
 * The proxy benchmark: Isthmus's sidecar against nginx, HAProxy, @fastify/http-proxy and a bare
 * undici pass-through, side by side in one run on loopback, then the latency Isthmus adds at a
 * fixed moderate rate. See docs/performance.md.
 *
 * Usage: npm run bench:proxy -- [--duration 8] [--warmup 5] [--connections 64] [--rate 2000]
 *          [--latency-duration 10] [--rounds 3] [--peers isthmus,nginx,haproxy,fastify,undici] [--save]
 * Every flag also reads an environment variable: BENCH_DURATION, BENCH_WARMUP, …
 *
 * Layout: the upstream (nginx, fixed 1 KiB body), the load generators and this process run on
 * core 1; the proxy under test runs alone on core 0. Nothing is installed: missing tools are
 * reported with the command that provides them.
 */
import { mkdir, writeFile } from 'node:fs/promises';
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
  isthmusBootstrap,
  isthmusMesh,
  proxyNginx,
  SERVICE,
} from './support/configs.js';
import { checkPrerequisites, PROXY_NEEDS, type Tools } from './support/prerequisites.js';
import { alive, CpuMeter, freePort, RssSampler, startNode, type Pinned } from './support/processes.js';
import {
  evaluateTargets,
  formatReport,
  PEER_LABEL,
  PEERS,
  type AddedLatency,
  type PeerName,
  type PeerResult,
} from './support/report.js';
import { parseWrkOutput } from './support/wrk.js';
import { intFlag, LOAD_FLAGS, parseCommandLine, UsageError } from './support/flags.js';
import { checkStarted, LoadBench, saveReport, setUp, startIsthmusProxy } from './support/run.js';

const OPEN_LOOP_WARMUP_SEC = 2;

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const isthmusMain = path.join(repoRoot, 'dist/src/cli/main.js');
const script = (name: string) => fileURLToPath(new URL(name, import.meta.url));

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
  --latency-duration SECONDS  open-loop run, each of direct and Isthmus (env BENCH_LATENCY_DURATION, default 10)
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
  after?: () => Promise<Record<string, unknown>>;
}

class Bench extends LoadBench<Tools, Options> {
  /** Isthmus's counters and log events from the throughput run, for the report. */
  isthmusDiagnostics: Record<string, unknown> = {};

  get upstreamUrl(): string {
    return `http://127.0.0.1:${this.upstreamPort}`;
  }

  async startIsthmus(): Promise<RunningPeer & { events: Record<string, unknown>[] }> {
    const dir = path.join(this.tmp, 'isthmus');
    await mkdir(path.join(dir, 'mesh'), { recursive: true });
    await writeFile(path.join(dir, 'mesh', 'mesh.yaml'), isthmusMesh());
    const bootstrap = path.join(dir, 'bootstrap.yaml');
    await writeFile(bootstrap, isthmusBootstrap('mesh', this.upstreamPort));
    const node = await startIsthmusProxy(this.procs, 'isthmus', isthmusMain, bootstrap, repoRoot);
    return {
      process: node.process,
      address: node.address,
      events: node.events,
      after: async () => {
        const r = await request(`http://${node.admin}/stats`, { headersTimeout: 5000 });
        // A copy: the stop that follows adds its own event.
        return { stats: await r.body.json(), events: [...node.events] };
      },
    };
  }

  async #start(peer: PeerName): Promise<RunningPeer> {
    switch (peer) {
      case 'isthmus':
        return this.startIsthmus();
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
      case 'undici': {
        const file = script(`./peers/${peer === 'fastify' ? 'fastify-proxy' : 'undici-proxy'}.js`);
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
      const cpu = new CpuMeter([running.process.pid, this.upstream?.pid ?? 0]);
      const output = await this.wrk(running.address, this.options.durationSec, true);
      const { busyPercent, foreignPercent } = cpu.stop();
      const rss = sampler.stop();
      if (!alive(running.process))
        throw new Error(`${PEER_LABEL[peer]} died during the run:\n${running.process.tail()}`);
      if (running.after) this.isthmusDiagnostics = await running.after();
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
      await this.procs.stop(running.process);
    }
  }

  async #openLoop(address: string, proxy?: Pinned): Promise<OpenLoopResult & { foreignCpuPercent: number }> {
    let result: OpenLoopResult | undefined;
    const cpu = new CpuMeter([this.upstream?.pid ?? 0, ...(proxy ? [proxy.pid] : [])]);
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

  /** p50/p99 at a fixed rate, direct to the upstream and through a fresh, warmed-up Isthmus. */
  async addedLatency(): Promise<AddedLatency> {
    const direct = await this.#openLoop(`127.0.0.1:${this.upstreamPort}`);
    const running = await this.startIsthmus();
    try {
      if (this.options.warmupSec > 0) await this.wrk(running.address, this.options.warmupSec, false);
      const isthmus = await this.#openLoop(running.address, running.process);
      if (!alive(running.process))
        throw new Error(`Isthmus died during the latency run:\n${running.process.tail()}`);
      return {
        rate: this.options.rate,
        direct,
        isthmus,
        addedP50Us: isthmus.p50Us - direct.p50Us,
        addedP99Us: isthmus.p99Us - direct.p99Us,
      };
    } finally {
      await this.procs.stop(running.process);
    }
  }
}

async function main(): Promise<number> {
  const options = parseCommandLine(parseOptions, USAGE);
  if (typeof options === 'number') return options;
  const ready = await setUp('proxy', checkPrerequisites(isthmusMain, PROXY_NEEDS), 'isthmus-bench-');
  if (!ready) return 3;
  const { tools, info, run } = ready;
  const { procs, tmp } = run;

  const o = options;
  const perPeerSec = o.warmupSec + o.durationSec + 2;
  const estimateSec =
    o.rounds * o.peers.length * perPeerSec +
    2 * (OPEN_LOOP_WARMUP_SEC + o.latencyDurationSec) +
    o.warmupSec +
    5;
  console.log(
    `Proxy benchmark: ${o.peers.length} proxies on core ${PROXY_CORE}; upstream (nginx, ${BODY.length} B body) and load on core ${LOAD_CORE}.\n` +
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
    if (o.peers.includes('isthmus')) {
      process.stdout.write(`  added latency at ${o.rate} req/s… `);
      added = await bench.addedLatency();
      console.log(`p99 +${(added.addedP99Us / 1000).toFixed(3)} ms`);
    }
    const targets = evaluateTargets(results, added);
    console.log(`\n${formatReport(results, added, targets)}`);
    const events = (bench.isthmusDiagnostics.events as unknown[] | undefined) ?? [];
    if (events.length > 0)
      console.log(
        `\nIsthmus logged ${events.length} event(s) under load, first: ${JSON.stringify(events[0])}`,
      );

    if (o.save)
      await saveReport(
        repoRoot,
        'proxy',
        { machine: info, options: o },
        {
          results,
          addedLatency: added ?? null,
          targets,
          isthmus: bench.isthmusDiagnostics,
        },
      );
  });
}

process.exitCode = await main();
