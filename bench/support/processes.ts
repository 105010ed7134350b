import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';

/** A child process started pinned to one core, in its own process group. */
export interface Pinned {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last few KiB of its stdout and stderr, for error messages. */
  tail(): string;
}

const TAIL_BYTES = 8 * 1024;

/**
 * Every process the benchmark starts. Each runs in its own process group (`detached`), so a
 * proxy's workers (nginx) go with it, and Ctrl-C in the terminal reaches only the benchmark,
 * which then stops them itself: no orphans either way.
 */
export class Processes {
  readonly #running = new Set<Pinned>();
  readonly #taskset: string;

  constructor(tasksetPath: string) {
    this.#taskset = tasksetPath;
  }

  /**
   * Starts `command args` under `taskset -c core`. `onLine` receives stdout lines; output is
   * always drained so a chatty child never blocks on a full pipe.
   */
  start(
    name: string,
    core: number,
    command: string,
    args: readonly string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void } = {},
  ): Pinned {
    const child = spawn(this.#taskset, ['-c', String(core), command, ...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid === undefined) throw new Error(`cannot start ${name} (${command})`);
    let tail = '';
    const keep = (text: string) => {
      tail = (tail + text).slice(-TAIL_BYTES);
    };
    let partial = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      keep(chunk);
      if (!options.onLine) return;
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) options.onLine(line);
    });
    child.stderr?.setEncoding('utf8').on('data', keep);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => {
        keep(`\n${err.message}\n`);
        resolve({ code: null, signal: null });
      });
    });
    const pinned: Pinned = { name, pid: child.pid, child, exited, tail: () => tail };
    this.#running.add(pinned);
    void exited.then(() => this.#running.delete(pinned));
    return pinned;
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs` if it is still there. */
  async stop(p: Pinned, graceMs = 3000): Promise<void> {
    if (!this.#running.has(p)) return;
    signalGroup(p.pid, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(p.pid, 'SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(timer);
    // Workers of a group whose leader already left (nginx) must not survive it.
    signalGroup(p.pid, 'SIGKILL');
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#running].map((p) => this.stop(p)));
  }

  /** Last resort from a synchronous `exit` handler. */
  killAllNow(): void {
    for (const p of this.#running) signalGroup(p.pid, 'SIGKILL');
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** A port that was free a moment ago on 127.0.0.1, for servers that cannot listen on port 0. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Parent pid of every process, from /proc/PID/stat (the field after the parenthesised name). */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(entry), Number(fields[1]));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

function rssBytesOf(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Resident memory of a process and all its descendants, bytes. */
export function treeRssBytes(rootPid: number): number {
  let total = 0;
  for (const pid of descendants(rootPid)) total += rssBytesOf(pid);
  return total;
}

/** Samples a process tree's RSS every `intervalMs` (default 100) and keeps the peak. */
export class RssSampler {
  #peakBytes = 0;
  #firstBytes: number | undefined;
  #samples = 0;
  #lastBytes = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly rootPid: number,
    intervalMs = 100,
  ) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    const bytes = treeRssBytes(this.rootPid);
    this.#lastBytes = bytes;
    this.#firstBytes ??= bytes;
    this.#samples++;
    if (bytes > this.#peakBytes) this.#peakBytes = bytes;
  }

  /** Stops sampling; returns the peak, the first and the last sample. */
  stop(): { peakBytes: number; firstBytes: number; lastBytes: number; samples: number } {
    clearInterval(this.#timer);
    this.#sample();
    return {
      peakBytes: this.#peakBytes,
      firstBytes: this.#firstBytes ?? 0,
      lastBytes: this.#lastBytes,
      samples: this.#samples,
    };
  }
}

/** utime + stime of one process (and, with `children`, of its reaped children), clock ticks. */
function cpuTicksOf(pid: number | 'self', children = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields from the third on (state) follow the parenthesised name; utime is the 14th.
    const f = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    return (f[11] ?? 0) + (f[12] ?? 0) + (children ? (f[13] ?? 0) + (f[14] ?? 0) : 0);
  } catch {
    return 0;
  }
}

let clockTicksPerSec: number | undefined;

/** CPU time a process has used so far (user + system, all its threads), ms; 0 once it is gone. */
export function processCpuMs(pid: number): number {
  if (clockTicksPerSec === undefined) {
    try {
      clockTicksPerSec = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicksPerSec = 100;
    }
  }
  return (cpuTicksOf(pid) * 1000) / clockTicksPerSec;
}

/** A process and all its descendants (listed in any order in /proc, hence the repeat). */
function descendants(rootPid: number): Set<number> {
  const parentOf = parents();
  const tree = new Set([rootPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parentOf)
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
  }
  return tree;
}

interface CpuReading {
  cores: ReturnType<typeof readCpuTimes>;
  /** CPU time of the benchmark's own processes, clock ticks. */
  oursTicks: number;
}

/**
 * Busy share of each core during a run, and how much of the machine processes *other* than the
 * benchmark's used meanwhile: on a shared machine that is what makes a run unrepresentative.
 * Our processes are this one (with its reaped children, e.g. a finished wrk) and the trees of
 * `roots`; read the end after short-lived children have exited.
 */
export class CpuMeter {
  readonly #roots: readonly number[];
  readonly #start: CpuReading;

  constructor(roots: readonly number[]) {
    this.#roots = roots;
    this.#start = this.#read();
  }

  #read(): CpuReading {
    let oursTicks = cpuTicksOf('self', true);
    for (const root of this.#roots) for (const pid of descendants(root)) oursTicks += cpuTicksOf(pid);
    return { cores: readCpuTimes(), oursTicks };
  }

  /** Percent busy per core (`cpu0`, `cpu1`), and `foreign`: others' CPU, percent of one core. */
  stop(): { busyPercent: Record<string, number>; foreignPercent: number } {
    const end = this.#read();
    const busyPercent: Record<string, number> = {};
    let busyTicks = 0;
    let wallTicks = 0;
    for (const [cpu, e] of end.cores) {
      const s = this.#start.cores.get(cpu);
      if (!s || e.total === s.total) continue;
      busyPercent[cpu] = Math.round((1000 * (e.busy - s.busy)) / (e.total - s.total)) / 10;
      busyTicks += e.processBusy - s.processBusy;
      wallTicks = Math.max(wallTicks, e.total - s.total);
    }
    const foreign = busyTicks - (end.oursTicks - this.#start.oursTicks);
    return {
      busyPercent,
      foreignPercent: wallTicks > 0 ? Math.max(0, Math.round((1000 * foreign) / wallTicks) / 10) : 0,
    };
  }
}

function readCpuTimes(): Map<string, { busy: number; processBusy: number; total: number }> {
  const out = new Map<string, { busy: number; processBusy: number; total: number }>();
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^(cpu\d+)\s+(.*)$/.exec(line);
    if (!m?.[1] || m[2] === undefined) continue;
    const v = m[2].trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    // Interrupt time is charged to no process, so compare processes with user + nice + system.
    const processBusy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0);
    out.set(m[1], { busy: total - idle, processBusy, total });
  }
  return out;
}

/** How long a process the benchmarks start has to become ready and serve. */
export const READY_TIMEOUT_MS = 15_000;

/** Whether `p` is still running. */
export function alive(p: Pinned): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

/** A Node.js process that prints JSON lines, one of them `{"event":"ready",...}`. */
export interface NodeProcess {
  process: Pinned;
  ready: Record<string, unknown>;
  /** Its other JSON log lines (health transitions, errors), at most 1000. */
  events: Record<string, unknown>[];
}

/**
 * Starts `node args` on `core` in `cwd` (NODE_ENV=production) and waits for its ready event; a
 * process that exits first or is not ready within {@link READY_TIMEOUT_MS} is stopped, and throws.
 */
export async function startNode(
  procs: Processes,
  name: string,
  core: number,
  args: string[],
  cwd: string,
): Promise<NodeProcess> {
  const events: Record<string, unknown>[] = [];
  let onReady!: (event: Record<string, unknown>) => void;
  const ready = new Promise<Record<string, unknown>>((resolve) => (onReady = resolve));
  const p = procs.start(name, core, process.execPath, args, {
    cwd,
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
