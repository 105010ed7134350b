/**
 * Runs the real `isthmus` bin (the compiled `dist/src/cli/main.js`) as a child process, the way a
 * user or a CI job would, and collects what it printed.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { buildRoot, repoRoot } from './paths.js';

/**
 * The bin as installed by npm (package.json "bin": dist/src/cli/main.js), from the same build as
 * the tests; it must have been built (`npm run build`).
 */
export const BIN = path.join(buildRoot, 'src', 'cli', 'main.js');

export interface CliResult {
  /** Exit code, or null when the process was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Working directory; the repository root unless given. */
  cwd?: string;
  /** Close our end of the child's stdout at once, as `isthmus … | head -0` would. */
  closeStdout?: boolean;
  /** Kill the child after this long (ms); a hung CLI fails the test instead of hanging it. */
  timeoutMs?: number;
}

/** At most this many children at once: tests may start many runs concurrently. */
const MAX_CHILDREN = Math.max(2, os.availableParallelism());
let running = 0;
const waiting: (() => void)[] = [];

async function slot(): Promise<() => void> {
  if (running >= MAX_CHILDREN) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  return () => {
    running--;
    waiting.shift()?.();
  };
}

/** Runs `node dist/src/cli/main.js ...args` with NO_COLOR=1; never rejects for a non-zero exit. */
export async function isthmus(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const release = await slot();
  try {
    return await spawnBin(args, options);
  } finally {
    release();
  }
}

function spawnBin(args: readonly string[], options: CliOptions): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  // Set by `node --test` for its own children; the bin is not a test file.
  delete env.NODE_TEST_CONTEXT;
  delete env.FORCE_COLOR;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    if (options.closeStdout) child.stdout.destroy();
    else child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
  });
}

/** A run as text, for assertion messages: a failing test shows what the CLI actually printed. */
export function describeRun(args: readonly string[], r: CliResult): string {
  const block = (name: string, text: string) =>
    text === '' ? `${name}: (empty)` : `${name}:\n${text.replace(/^/gm, '  | ')}`;
  return [
    `isthmus ${args.join(' ')} → exit ${r.code ?? `signal ${r.signal}`}`,
    block('stdout', r.stdout),
    block('stderr', r.stderr),
  ].join('\n');
}
