import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { IsthmusError } from '../core/errors.js';
import { NODE_FLAGS } from '../core/node-flags.js';

/**
 * Starts and watches the lab's processes. Every child is a real OS process (an `isthmus` role or
 * a demo app) whose stdout prints JSON event lines; it counts as up once it prints
 * `{"event":"ready",...}`. Children get an IPC channel and the environment variable
 * `ISTHMUS_EXIT_WITH_PARENT=1`, so they shut down on their own if the lab dies without cleaning
 * up (no orphans even after kill -9 of the lab). Output goes to `LOGDIR/NAME.log`.
 */

export interface ProcessSpec {
  /** Unique name, e.g. `zone-eu-west`. */
  name: string;
  /** What it is, for grouping: global, collector, zone, gateway, sidecar, app, link. */
  role: string;
  /** The region it belongs to (`global` for the global plane). */
  region: string;
  /** Script run with this Node binary, and its arguments. */
  script: string;
  args: string[];
  /** How long to wait for its ready event, ms (default 30 s). */
  readyTimeoutMs?: number;
}

export type ProcessState = 'starting' | 'running' | 'stopping' | 'stopped' | 'killed' | 'exited';

export interface ProcessStatus {
  name: string;
  role: string;
  region: string;
  state: ProcessState;
  pid: number | null;
  starts: number;
  exitCode: number | null;
  /** The ready event it printed last. */
  ready: Record<string, unknown> | null;
}

interface Entry {
  spec: ProcessSpec;
  child: ChildProcess | undefined;
  state: ProcessState;
  starts: number;
  exitCode: number | null;
  ready: Record<string, unknown> | null;
  exited: Promise<void>;
  log: WriteStream;
  /** When we last asked it to stop (performance.now()), for the log. */
  signalledAt: number | undefined;
}

/**
 * A child's process handle is unref'd when it starts. While we wait for it to exit it must count:
 * its pipes close first, and with nothing else pending Node would end the lab (exit 13, an
 * unsettled await) before the exit is reported.
 */
function holdUntilExit(child: ChildProcess): void {
  child.ref();
}

export class Supervisor {
  readonly #entries = new Map<string, Entry>();
  readonly #logDir: string;
  readonly #onEvent: (name: string, event: Record<string, unknown>) => void;

  constructor(options: { logDir: string; onEvent?: (name: string, event: Record<string, unknown>) => void }) {
    this.#logDir = options.logDir;
    mkdirSync(this.#logDir, { recursive: true });
    this.#onEvent = options.onEvent ?? (() => {});
  }

  /** Starts a new process (or starts a known, stopped one again) and waits for its ready event. */
  async start(spec: ProcessSpec): Promise<Record<string, unknown>> {
    let entry = this.#entries.get(spec.name);
    if (entry && (entry.state === 'running' || entry.state === 'starting'))
      throw new IsthmusError('ISTHMUS_E_USAGE', `${spec.name} is already ${entry.state}`);
    if (!entry) {
      entry = {
        spec,
        child: undefined,
        state: 'stopped',
        starts: 0,
        exitCode: null,
        ready: null,
        exited: Promise.resolve(),
        signalledAt: undefined,
        log: createWriteStream(path.join(this.#logDir, `${spec.name}.log`), { flags: 'a' }),
      };
      this.#entries.set(spec.name, entry);
    }
    return this.#spawn(entry);
  }

  /** Starts again a process the lab knows (after a kill or stop). */
  async restart(name: string): Promise<Record<string, unknown>> {
    const entry = this.#get(name);
    if (entry.state === 'running' || entry.state === 'starting') await this.kill(name, 'SIGKILL');
    return this.#spawn(entry);
  }

  async #spawn(entry: Entry): Promise<Record<string, unknown>> {
    const { spec } = entry;
    const child = spawn(process.execPath, [...NODE_FLAGS, spec.script, ...spec.args], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, NO_COLOR: '1', ISTHMUS_EXIT_WITH_PARENT: '1' },
    });
    // The channel only tells the child when the lab is gone; it must not keep the lab alive.
    child.channel?.unref();
    child.unref();
    entry.child = child;
    entry.state = 'starting';
    entry.starts++;
    entry.exitCode = null;
    entry.ready = null;
    entry.signalledAt = undefined;
    entry.log.write(`--- start ${entry.starts} at ${new Date().toISOString()}: ${spec.args.join(' ')}\n`);
    let stderrTail = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      entry.log.write(chunk);
      stderrTail = (stderrTail + chunk).slice(-4000);
    });
    let resolveReady: (event: Record<string, unknown>) => void = () => {};
    let rejectReady: (err: Error) => void = () => {};
    const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      entry.log.write(line + '\n');
      let event: Record<string, unknown>;
      try {
        event = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (event.event === 'ready' && entry.child === child) {
        entry.state = 'running';
        entry.ready = event;
        resolveReady(event);
      }
      this.#onEvent(spec.name, event);
    });
    entry.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        if (entry.child === child) {
          entry.exitCode = code;
          if (entry.state !== 'killed' && entry.state !== 'stopping') entry.state = 'exited';
          else if (entry.state === 'stopping') entry.state = 'stopped';
        }
        const after =
          entry.signalledAt === undefined
            ? ''
            : ` ${Math.round(performance.now() - entry.signalledAt)} ms after it was signalled`;
        entry.log.write(`--- exit code ${code} signal ${signal ?? 'none'}${after}\n`);
        rejectReady(
          new IsthmusError(
            'ISTHMUS_E_IO',
            `${spec.name} exited (code ${code}, signal ${signal ?? 'none'}) before it was ready: ${stderrTail.trim().split('\n').slice(-5).join(' | ') || 'no output'} (log: ${path.join(this.#logDir, `${spec.name}.log`)})`,
          ),
        );
        resolve();
      });
    });
    const timeoutMs = spec.readyTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new IsthmusError(
              'ISTHMUS_E_IO',
              `${spec.name} was not ready within ${timeoutMs} ms (log: ${path.join(this.#logDir, `${spec.name}.log`)})`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([ready, timeout]);
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      entry.state = 'exited';
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` (SIGKILL by default: a crash) and waits for the exit. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const entry = this.#get(name);
    const child = entry.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    entry.state = signal === 'SIGKILL' ? 'killed' : 'stopping';
    holdUntilExit(child);
    entry.signalledAt ??= performance.now();
    child.kill(signal);
    await entry.exited;
  }

  /** Stops gracefully (SIGTERM), then SIGKILL after `graceMs`. */
  async stop(name: string, graceMs = 5000): Promise<void> {
    const entry = this.#get(name);
    const child = entry.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    entry.state = 'stopping';
    holdUntilExit(child);
    entry.signalledAt ??= performance.now();
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
    if ((await Promise.race([entry.exited.then(() => 'done' as const), late])) === 'late') {
      child.kill('SIGKILL');
      await entry.exited;
    }
    clearTimeout(timer);
    entry.state = 'stopped';
  }

  /** Stops everything, in the reverse order of first start, `parallel` at a time. */
  async stopAll(graceMs = 5000): Promise<void> {
    const names = [...this.#entries.keys()].reverse();
    await Promise.all(names.map((n) => this.stop(n, graceMs)));
    await Promise.all([...this.#entries.values()].map((e) => new Promise<void>((r) => e.log.end(r))));
  }

  status(): ProcessStatus[] {
    return [...this.#entries.values()].map((e) => ({
      name: e.spec.name,
      role: e.spec.role,
      region: e.spec.region,
      state: e.state,
      pid: e.child?.pid ?? null,
      starts: e.starts,
      exitCode: e.exitCode,
      ready: e.ready,
    }));
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  spec(name: string): ProcessSpec {
    return this.#get(name).spec;
  }

  #get(name: string): Entry {
    const entry = this.#entries.get(name);
    if (!entry) throw new IsthmusError('ISTHMUS_E_NOT_FOUND', `no lab process named "${name}"`);
    return entry;
  }
}
