import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { BIN } from './cli.js';

/** A running `isthmus ROLE ...` child process and the JSON events it printed. */
export interface RoleProcess {
  child: ChildProcess;
  /** The `ready` event. */
  ready: Record<string, unknown> & { address?: string; listeners?: Record<string, string> };
  events: Record<string, unknown>[];
  stderr: () => string;
  exited: Promise<number | null>;
  /** Waits for an event matching `check`, seen before or after the call. */
  waitForEvent: (
    check: (e: Record<string, unknown>) => boolean,
    what: string,
    timeoutMs?: number,
  ) => Promise<Record<string, unknown>>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Starts `isthmus ARGS` and resolves once it prints its `ready` event (or fails with its stderr). */
export async function startRole(args: string[], timeoutMs = 15_000): Promise<RoleProcess> {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const events: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      events.push({ event: 'non-json-output', line });
    }
    for (const w of waiters) w();
  });
  const waitForEvent = (check: (e: Record<string, unknown>) => boolean, what: string, ms = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const look = () => {
        const found = events.find(check);
        if (found) {
          done();
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `isthmus ${args.join(' ')}: no ${what} within ${ms} ms\nstderr: ${stderr}\nevents: ${JSON.stringify(events.slice(-20))}`,
          ),
        );
      }, ms);
      const onExit = () => {
        done();
        reject(new Error(`isthmus ${args.join(' ')} exited before ${what}\nstderr: ${stderr}`));
      };
      const done = () => {
        clearTimeout(timer);
        waiters.delete(look);
        child.off('exit', onExit);
      };
      waiters.add(look);
      child.once('exit', onExit);
      look();
    });
  const ready = await waitForEvent((e) => e.event === 'ready', 'ready event', timeoutMs);
  return {
    child,
    ready,
    events,
    stderr: () => stderr,
    exited,
    waitForEvent,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
