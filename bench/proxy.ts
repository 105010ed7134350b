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
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import type { OpenLoopResult } from './open-loop.js';
import {
  BODY,
  haproxy,
  isthmusBootstrap,
  isthmusMesh,
  proxyNginx,
  SERVICE,
  upstreamNginx,
  WRK_SUMMARY_LUA,
} from './support/configs.js';
import { checkPrerequisites, type Tools } from './support/prerequisites.js';
import { CpuMeter, freePort, Processes, RssSampler, type Pinned } from './support/processes.js';
import {
  evaluateTargets,
  formatReport,
  PEER_LABEL,
  PEERS,
  type AddedLatency,
  type PeerName,
  type PeerResult,
} from './support/report.js';
import { parseWrkOutput, runWrk } from './support/wrk.js';
import { UsageError, intFlag } from './support/flags.js';

/** The core the proxy under test owns, and the one everything else shares. */
const PROXY_CORE = 0;
const LOAD_CORE = 1;
const READY_TIMEOUT_MS = 15_000;
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
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      rate: { type: 'string' },
      'latency-duration': { type: 'string' },
      peers: { type: 'string' },
      rounds: { type: 'string' },
      save: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
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

/** GETs `/` through `address` as `Host: bench` until it answers with the upstream's body. */
async function check(address: string, deadlineMs = READY_TIMEOUT_MS): Promise<void> {
  const until = Date.now() + deadlineMs;
  let last = '';
  while (Date.now() < until) {
    try {
      const r = await request(`http://${address}/`, { headers: { host: SERVICE }, headersTimeout: 5000 });
      const body = await r.body.text();
      if (r.statusCode === 200 && body === BODY) return;
      last = `status ${r.statusCode}, ${body.length} bytes: ${body.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `${address} did not serve the 1 KiB body as Host: ${SERVICE} within ${deadlineMs} ms (last: ${last})`,
  );
}

function alive(p: Pinned): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

/** A Node.js process that prints JSON lines, one of them `{"event":"ready",...}`. */
interface NodeProcess {
  process: Pinned;
  ready: Record<string, unknown>;
  /** Its other JSON log lines (health transitions, errors), at most 1000. */
  events: Record<string, unknown>[];
}

async function startNode(procs: Processes, name: string, args: string[]): Promise<NodeProcess> {
  const events: Record<string, unknown>[] = [];
  let onReady!: (event: Record<string, unknown>) => void;
  const ready = new Promise<Record<string, unknown>>((resolve) => (onReady = resolve));
  const p = procs.start(name, PROXY_CORE, process.execPath, args, {
    cwd: repoRoot,
    env: { ...process.env, NODE_ENV: 'production' },
    onLine: (line) => {
      let event: Record<string, unknown>;
      try {
        event = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (event.event === 'ready') onReady(event);
      else if (events.length < 1000) events.push(event);
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready,
    p.exited.then(
      ({ code, signal }) => new Error(`${name} exited (${code ?? signal}) before it was ready:\n${p.tail()}`),
    ),
    new Promise<Error>((resolve) => {
      timer = setTimeout(
        () => resolve(new Error(`${name} not ready within ${READY_TIMEOUT_MS} ms:\n${p.tail()}`)),
        READY_TIMEOUT_MS,
      );
    }),
  ]);
  clearTimeout(timer);
  if (outcome instanceof Error) {
    await procs.stop(p);
    throw outcome;
  }
  return { process: p, ready: outcome, events };
}

/** A peer that is up, with the address to load and whatever it needs to report afterwards. */
interface RunningPeer {
  process: Pinned;
  address: string;
  after?: () => Promise<Record<string, unknown>>;
}

class Bench {
  readonly #procs: Processes;
  readonly #tools: Tools;
  readonly #tmp: string;
  readonly #options: Options;
  readonly #lua: string;
  #upstreamPort = 0;
  #upstreamPid = 0;
  /** Isthmus's counters and log events from the throughput run, for the report. */
  isthmusDiagnostics: Record<string, unknown> = {};

  constructor(procs: Processes, tools: Tools, tmp: string, options: Options) {
    this.#procs = procs;
    this.#tools = tools;
    this.#tmp = tmp;
    this.#options = options;
    this.#lua = path.join(tmp, 'summary.lua');
  }

  get upstreamUrl(): string {
    return `http://127.0.0.1:${this.#upstreamPort}`;
  }

  async #nginx(name: string, core: number, conf: (dir: string) => string): Promise<Pinned> {
    const dir = path.join(this.#tmp, name);
    await mkdir(dir, { recursive: true });
    // Workers drop root privileges to nobody and must still reach their temp paths.
    await chmod(dir, 0o755);
    await writeFile(path.join(dir, 'nginx.conf'), conf(dir));
    return this.#procs.start(name, core, this.#tools.nginx, [
      '-p',
      dir,
      '-c',
      path.join(dir, 'nginx.conf'),
      '-e',
      path.join(dir, 'error.log'),
      '-g',
      'daemon off;',
    ]);
  }

  async startUpstream(): Promise<void> {
    await writeFile(this.#lua, WRK_SUMMARY_LUA);
    await chmod(this.#tmp, 0o755);
    this.#upstreamPort = await freePort();
    const p = await this.#nginx('upstream', LOAD_CORE, (dir) => upstreamNginx(dir, this.#upstreamPort));
    await this.#checkStarted(p, `127.0.0.1:${this.#upstreamPort}`);
    this.#upstreamPid = p.pid;
  }

  async #checkStarted(p: Pinned, address: string): Promise<void> {
    try {
      // The exit branch resolves to an error rather than rejecting: it settles later, when the
      // peer is stopped, and must not surface then as an unhandled rejection.
      const exited = await Promise.race([
        check(address).then(() => undefined),
        p.exited.then(({ code, signal }) => new Error(`${p.name} exited (${code ?? signal}):\n${p.tail()}`)),
      ]);
      if (exited) throw exited;
    } catch (err) {
      await this.#procs.stop(p);
      throw err;
    }
  }

  async startIsthmus(): Promise<RunningPeer & { events: Record<string, unknown>[] }> {
    const dir = path.join(this.#tmp, 'isthmus');
    await mkdir(path.join(dir, 'mesh'), { recursive: true });
    await writeFile(path.join(dir, 'mesh', 'mesh.yaml'), isthmusMesh());
    const bootstrap = path.join(dir, 'bootstrap.yaml');
    await writeFile(bootstrap, isthmusBootstrap('mesh', this.#upstreamPort));
    // The same V8 flag the `isthmus` bin's shebang sets (src/cli/main.ts).
    const node = await startNode(this.#procs, 'isthmus', [
      '--max-semi-space-size=4',
      isthmusMain,
      'proxy',
      '--config',
      bootstrap,
    ]);
    const listeners = node.ready.listeners as Record<string, string> | undefined;
    const address = listeners?.outbound;
    const admin = listeners?.admin;
    if (!address || !admin)
      throw new Error(`Isthmus ready event names no outbound/admin listener: ${JSON.stringify(node.ready)}`);
    await this.#checkStarted(node.process, address);
    return {
      process: node.process,
      address,
      events: node.events,
      after: async () => {
        const r = await request(`http://${admin}/stats`, { headersTimeout: 5000 });
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
        const p = await this.#nginx('nginx-proxy', PROXY_CORE, (dir) =>
          proxyNginx(dir, port, this.#upstreamPort),
        );
        await this.#checkStarted(p, `127.0.0.1:${port}`);
        return { process: p, address: `127.0.0.1:${port}` };
      }
      case 'haproxy': {
        const dir = path.join(this.#tmp, 'haproxy');
        await mkdir(dir, { recursive: true });
        const port = await freePort();
        const cfg = path.join(dir, 'haproxy.cfg');
        await writeFile(cfg, haproxy(port, this.#upstreamPort));
        const p = this.#procs.start('haproxy', PROXY_CORE, this.#tools.haproxy, [
          '-f',
          cfg,
          '-db',
          '-p',
          path.join(dir, 'haproxy.pid'),
        ]);
        await this.#checkStarted(p, `127.0.0.1:${port}`);
        return { process: p, address: `127.0.0.1:${port}` };
      }
      case 'fastify':
      case 'undici': {
        const file = script(`./peers/${peer === 'fastify' ? 'fastify-proxy' : 'undici-proxy'}.js`);
        const node = await startNode(this.#procs, peer, [file, this.upstreamUrl]);
        const address = String(node.ready.address);
        await this.#checkStarted(node.process, address);
        return { process: node.process, address };
      }
    }
  }

  #wrk(address: string, durationSec: number, summary: boolean): Promise<string> {
    return runWrk(this.#procs, {
      wrk: this.#tools.wrk,
      core: LOAD_CORE,
      url: `http://${address}/`,
      host: SERVICE,
      connections: this.#options.connections,
      durationSec,
      ...(summary && { script: this.#lua }),
    });
  }

  /** Warm-up, then the measured closed-loop run, sampling the proxy's memory throughout. */
  async throughput(peer: PeerName): Promise<PeerResult> {
    const running = await this.#start(peer);
    try {
      const sampler = new RssSampler(running.process.pid);
      if (this.#options.warmupSec > 0) await this.#wrk(running.address, this.#options.warmupSec, false);
      const cpu = new CpuMeter([running.process.pid, this.#upstreamPid]);
      const output = await this.#wrk(running.address, this.#options.durationSec, true);
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
      await this.#procs.stop(running.process);
    }
  }

  async #openLoop(address: string, proxy?: Pinned): Promise<OpenLoopResult & { foreignCpuPercent: number }> {
    let result: OpenLoopResult | undefined;
    const cpu = new CpuMeter([this.#upstreamPid, ...(proxy ? [proxy.pid] : [])]);
    const p = this.#procs.start(
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
        String(this.#options.rate),
        '--duration',
        String(this.#options.latencyDurationSec),
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
      () => void this.#procs.stop(p),
      (this.#options.latencyDurationSec + OPEN_LOOP_WARMUP_SEC + 30) * 1000,
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
    const direct = await this.#openLoop(`127.0.0.1:${this.#upstreamPort}`);
    const running = await this.startIsthmus();
    try {
      if (this.#options.warmupSec > 0) await this.#wrk(running.address, this.#options.warmupSec, false);
      const isthmus = await this.#openLoop(running.address, running.process);
      if (!alive(running.process))
        throw new Error(`Isthmus died during the latency run:\n${running.process.tail()}`);
      return {
        rate: this.#options.rate,
        direct,
        isthmus,
        addedP50Us: isthmus.p50Us - direct.p50Us,
        addedP99Us: isthmus.p99Us - direct.p99Us,
      };
    } finally {
      await this.#procs.stop(running.process);
    }
  }
}

function firstLine(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
}

function machine(tools: Tools): Record<string, unknown> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: os.availableParallelism(),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    kernel: os.release(),
    node: process.version,
    nginx: firstLine(tools.nginx, ['-v']),
    haproxy: firstLine(tools.haproxy, ['-v']),
    wrk: firstLine(tools.wrk, ['-v']),
  };
}

function gitRevision(): string | undefined {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  if (head.status !== 0) return undefined;
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  return `${head.stdout.trim()}${dirty.stdout.trim() ? '-dirty' : ''}`;
}

async function main(): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!options) {
    console.log(USAGE);
    return 0;
  }
  const { tools, missing } = checkPrerequisites(isthmusMain);
  if (!tools) {
    console.error('The proxy benchmark needs what is missing below (it installs nothing itself):');
    for (const m of missing) console.error(`  - ${m.what}\n      get it with: ${m.fix}`);
    return 3;
  }

  // Read before pinning: afterwards this process sees one CPU.
  const info = machine(tools);
  // This process only samples and waits; it shares core 1 so that core 0 is the proxy's alone.
  execFileSync(tools.taskset, ['-a', '-p', '-c', String(LOAD_CORE), String(process.pid)], {
    stdio: 'ignore',
  });

  const procs = new Processes(tools.taskset);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'isthmus-bench-'));
  let cleaning: Promise<void> | undefined;
  let interrupted = false;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await procs.stopAll();
      await rm(tmp, { recursive: true, force: true });
    })());
  process.on('exit', () => procs.killAllNow());
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      interrupted = true;
      console.error(`\n${signal}: stopping every process the benchmark started…`);
      void cleanup().finally(() => process.exit(130));
    });

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

  try {
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

    if (o.save) {
      const date = new Date().toISOString().slice(0, 10);
      const dir = path.join(repoRoot, 'bench', 'results');
      await mkdir(dir, { recursive: true });
      const file = path.join(dir, `proxy-${date}.json`);
      const report = {
        date: new Date().toISOString(),
        revision: gitRevision(),
        machine: info,
        options: o,
        layout: { proxyCore: PROXY_CORE, loadCore: LOAD_CORE, bodyBytes: BODY.length },
        results,
        addedLatency: added ?? null,
        targets,
        isthmus: bench.isthmusDiagnostics,
      };
      // Formatted as `npm run lint` (prettier --check) expects of a file in the repository.
      const prettier = await import('prettier');
      const style = (await prettier.resolveConfig(file)) ?? {};
      await writeFile(
        file,
        await prettier.format(JSON.stringify(report, null, 2), { ...style, filepath: file }),
      );
      console.log(`\nSaved ${path.relative(process.cwd(), file)}`);
    }
    return 0;
  } catch (err) {
    // Once interrupted, the processes it was using were stopped under it: nothing to report.
    if (interrupted) return 130;
    console.error(`\nproxy benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
