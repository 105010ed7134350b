/** What the load benchmarks (bench:proxy, bench:telemetry) share around their measurements. */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { BODY, LOAD_CORE, PROXY_CORE, SERVICE, upstreamNginx, WRK_SUMMARY_LUA } from './configs.js';
import type { Missing, Tools } from './prerequisites.js';
import {
  freePort,
  Processes,
  READY_TIMEOUT_MS,
  startNode,
  type NodeProcess,
  type Pinned,
} from './processes.js';
import { runWrk } from './wrk.js';
import { NODE_FLAGS } from '../../src/core/node-flags.js';

/** GETs `/` through `address` as `Host: bench` until it answers with the upstream's body. */
export async function check(address: string, deadlineMs = READY_TIMEOUT_MS): Promise<void> {
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

/** Waits until `p` serves the upstream's body at `address`; stops it and throws if it exits first. */
export async function checkStarted(procs: Processes, p: Pinned, address: string): Promise<void> {
  try {
    // The exit branch resolves to an error rather than rejecting: it settles later, when the
    // process is stopped, and must not surface then as an unhandled rejection.
    const exited = await Promise.race([
      check(address).then(() => undefined),
      p.exited.then(({ code, signal }) => new Error(`${p.name} exited (${code ?? signal}):\n${p.tail()}`)),
    ]);
    if (exited) throw exited;
  } catch (err) {
    await procs.stop(p);
    throw err;
  }
}

/** Starts nginx on `core` in the folder `tmp/name`, with the configuration `conf(folder)`. */
async function startNginx(
  procs: Processes,
  nginx: string,
  tmp: string,
  name: string,
  core: number,
  conf: (dir: string) => string,
): Promise<Pinned> {
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  // Workers drop root privileges to nobody and must still reach their temp paths.
  await chmod(dir, 0o755);
  await writeFile(path.join(dir, 'nginx.conf'), conf(dir));
  return procs.start(name, core, nginx, [
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

/** Prints what a benchmark needs and is missing, each with the command that provides it. */
function reportMissing(benchmark: string, missing: readonly Missing[]): void {
  console.error(`The ${benchmark} benchmark needs what is missing below (it installs nothing itself):`);
  for (const m of missing) console.error(`  - ${m.what}\n      get it with: ${m.fix}`);
}

function firstLine(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
}

/** The machine and the versions of the tools, HAProxy's only when the benchmark runs it. */
function machine(tools: Pick<Tools, 'nginx' | 'wrk'> & Partial<Tools>): Record<string, unknown> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: os.availableParallelism(),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    kernel: os.release(),
    node: process.version,
    nginx: firstLine(tools.nginx, ['-v']),
    ...(tools.haproxy !== undefined && { haproxy: firstLine(tools.haproxy, ['-v']) }),
    wrk: firstLine(tools.wrk, ['-v']),
  };
}

/** The short commit of `repoRoot`, `-dirty` with uncommitted changes to tracked files. */
function gitRevision(repoRoot: string): string | undefined {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  if (head.status !== 0) return undefined;
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  return `${head.stdout.trim()}${dirty.stdout.trim() ? '-dirty' : ''}`;
}

/**
 * Writes the report of a run to `repoRoot`/bench/results/`name`-<date>.json (`--save`) and says
 * so: the date, the revision, `run` (machine and options), the layout, then `results`.
 */
export async function saveReport(
  repoRoot: string,
  name: string,
  run: { machine: Record<string, unknown>; options: object },
  results: Record<string, unknown>,
): Promise<void> {
  const date = new Date().toISOString().slice(0, 10);
  const dir = path.join(repoRoot, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}-${date}.json`);
  const report = {
    date: new Date().toISOString(),
    revision: gitRevision(repoRoot),
    machine: run.machine,
    options: run.options,
    layout: { proxyCore: PROXY_CORE, loadCore: LOAD_CORE, bodyBytes: BODY.length },
    ...results,
  };
  // Formatted as `npm run lint` (prettier --check) expects of a file in the repository.
  const prettier = await import('prettier');
  const style = (await prettier.resolveConfig(file)) ?? {};
  await writeFile(file, await prettier.format(JSON.stringify(report, null, 2), { ...style, filepath: file }));
  console.log(`\nSaved ${path.relative(process.cwd(), file)}`);
}

/** The processes and the temporary folder of one benchmark run. */
export interface Run {
  procs: Processes;
  tmp: string;
  /** Set once SIGINT or SIGTERM stopped the processes under the run: nothing to report then. */
  readonly interrupted: boolean;
  /** Stops every process and removes the folder; once, however often it is called. */
  cleanup(): Promise<void>;
  /**
   * Runs `body`, then cleans up. The exit code: 0 when it completed, 1 when it failed (with the
   * error), 130 when interrupted (the processes it was using were stopped under it: nothing to
   * report).
   */
  measure(body: () => Promise<void>): Promise<number>;
}

/**
 * Pins this process (which only samples and waits) to {@link LOAD_CORE}, so that
 * {@link PROXY_CORE} is the proxy's alone; makes a temporary folder `tmpPrefix`…; stops everything
 * on SIGINT or SIGTERM (exit 130) and kills what is left on exit.
 */
async function startRun(benchmark: string, taskset: string, tmpPrefix: string): Promise<Run> {
  execFileSync(taskset, ['-a', '-p', '-c', String(LOAD_CORE), String(process.pid)], {
    stdio: 'ignore',
  });
  const procs = new Processes(taskset);
  const tmp = await mkdtemp(path.join(os.tmpdir(), tmpPrefix));
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
  return {
    procs,
    tmp,
    get interrupted() {
      return interrupted;
    },
    cleanup,
    async measure(body) {
      try {
        await body();
        return 0;
      } catch (err) {
        if (interrupted) return 130;
        console.error(`\n${benchmark} benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
        return 1;
      } finally {
        await cleanup();
      }
    },
  };
}

/**
 * Starts `isthmus proxy --config bootstrap` on {@link PROXY_CORE} as the `isthmus` bin does (the
 * V8 flag its shebang sets, src/cli/main.ts) and waits until it serves; with its listeners.
 */
export async function startIsthmusProxy(
  procs: Processes,
  name: string,
  isthmusMain: string,
  bootstrap: string,
  cwd: string,
): Promise<NodeProcess & { address: string; admin: string }> {
  const node = await startNode(
    procs,
    name,
    PROXY_CORE,
    [...NODE_FLAGS, isthmusMain, 'proxy', '--config', bootstrap],
    cwd,
  );
  const listeners = node.ready.listeners as Record<string, string> | undefined;
  const address = listeners?.outbound;
  const admin = listeners?.admin;
  if (!address || !admin) {
    await procs.stop(node.process);
    throw new Error(`Isthmus ready event names no outbound/admin listener: ${JSON.stringify(node.ready)}`);
  }
  await checkStarted(procs, node.process, address);
  return { ...node, address, admin };
}

/**
 * What both load benchmarks hold: their processes, tools, folder and options, the upstream (nginx
 * on {@link LOAD_CORE} answering the 1 KiB body) and wrk.
 */
export class LoadBench<T extends Pick<Tools, 'nginx' | 'wrk'>, O extends { connections: number }> {
  protected readonly procs: Processes;
  protected readonly tools: T;
  protected readonly tmp: string;
  protected readonly options: O;
  readonly #lua: string;
  protected upstreamPort = 0;
  protected upstream: Pinned | undefined;

  constructor(procs: Processes, tools: T, tmp: string, options: O) {
    this.procs = procs;
    this.tools = tools;
    this.tmp = tmp;
    this.options = options;
    this.#lua = path.join(tmp, 'summary.lua');
  }

  /** Writes wrk's summary script and starts the upstream. */
  async startUpstream(): Promise<void> {
    await writeFile(this.#lua, WRK_SUMMARY_LUA);
    await chmod(this.tmp, 0o755);
    this.upstreamPort = await freePort();
    const p = await this.startNginx('upstream', LOAD_CORE, (dir) => upstreamNginx(dir, this.upstreamPort));
    await checkStarted(this.procs, p, `127.0.0.1:${this.upstreamPort}`);
    this.upstream = p;
  }

  protected startNginx(name: string, core: number, conf: (dir: string) => string): Promise<Pinned> {
    return startNginx(this.procs, this.tools.nginx, this.tmp, name, core, conf);
  }

  /**
   * wrk on {@link LOAD_CORE} against `address` as `Host: bench`; `summary` for a measured run;
   * `connections` when not the run's own (two wrk at once share them).
   */
  protected wrk(
    address: string,
    durationSec: number,
    summary: boolean,
    connections = this.options.connections,
  ): Promise<string> {
    return runWrk(this.procs, {
      wrk: this.tools.wrk,
      core: LOAD_CORE,
      url: `http://${address}/`,
      host: SERVICE,
      connections,
      durationSec,
      ...(summary && { script: this.#lua }),
    });
  }
}

/**
 * What a load benchmark does once its options are read: reports what `found` lacks (then returns
 * undefined: exit 3), or reads the machine (before pinning: afterwards this process sees one CPU)
 * and starts the run.
 */
export async function setUp<T extends Pick<Tools, 'nginx' | 'wrk' | 'taskset'> & Partial<Tools>>(
  benchmark: string,
  found: { tools?: T; missing: readonly Missing[] },
  tmpPrefix: string,
): Promise<{ tools: T; info: Record<string, unknown>; run: Run } | undefined> {
  const { tools, missing } = found;
  if (!tools || missing.length > 0) {
    reportMissing(benchmark, missing);
    return undefined;
  }
  const info = machine(tools);
  const run = await startRun(benchmark, tools.taskset, tmpPrefix);
  return { tools, info, run };
}
