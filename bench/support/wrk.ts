import type { Pinned, Processes } from './processes.js';

/** What one wrk run measured. Latencies in microseconds. */
export interface WrkResult {
  requestsPerSec: number;
  requests: number;
  durationUs: number;
  bytes: number;
  p50Us: number;
  p75Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  /** Socket errors (connect, read, write, timeout) and non-2xx/3xx responses. */
  errors: { connect: number; read: number; write: number; timeout: number; status: number };
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };

/** `390.00us`, `1.23ms`, `2.00s` → microseconds. */
export function parseWrkTime(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m?.[1] || !m[2]) throw new Error(`cannot read wrk time ${JSON.stringify(text)}`);
  return Number(m[1]) * (UNIT_US[m[2]] ?? NaN);
}

/**
 * Reads wrk's `--latency` report (req/s and the 50/75/90/99 lines) and the JSON line our Lua
 * `done` hook prints (p99.9, errors, bytes).
 */
export function parseWrkOutput(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text)?.[1];
  const pct = (p: number) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(text)?.[1];
    if (m === undefined) throw new Error(`wrk output has no ${p}% latency line:\n${text}`);
    return parseWrkTime(m);
  };
  const jsonLine = /^WRK_JSON (.*)$/m.exec(text)?.[1];
  if (rps === undefined || jsonLine === undefined) throw new Error(`unexpected wrk output:\n${text}`);
  const j = JSON.parse(jsonLine) as Record<string, number>;
  const n = (k: string) => j[k] ?? 0;
  return {
    requestsPerSec: Number(rps),
    requests: n('requests'),
    durationUs: n('durationUs'),
    bytes: n('bytes'),
    p50Us: pct(50),
    p75Us: pct(75),
    p90Us: pct(90),
    p99Us: pct(99),
    p999Us: n('p999Us'),
    maxUs: n('maxUs'),
    errors: {
      connect: n('connectErrors'),
      read: n('readErrors'),
      write: n('writeErrors'),
      timeout: n('timeouts'),
      status: n('statusErrors'),
    },
  };
}

export interface WrkRun {
  wrk: string;
  core: number;
  url: string;
  host: string;
  connections: number;
  durationSec: number;
  /** Path of the summary Lua script; absent for warm-ups. */
  script?: string;
}

/** Runs wrk pinned to `core` (closed loop, one thread, keep-alive) and returns its stdout. */
export async function runWrk(processes: Processes, run: WrkRun): Promise<string> {
  const args = [
    '-t1',
    `-c${run.connections}`,
    `-d${run.durationSec}s`,
    '--timeout',
    '5s',
    '--latency',
    '-H',
    `Host: ${run.host}`,
    ...(run.script ? ['-s', run.script] : []),
    run.url,
  ];
  const p: Pinned = processes.start('wrk', run.core, run.wrk, args);
  // wrk stops itself after -d; this only guards against a hung run.
  const guard = setTimeout(() => void processes.stop(p), (run.durationSec + 30) * 1000);
  const { code, signal } = await p.exited;
  clearTimeout(guard);
  if (code !== 0) throw new Error(`wrk exited with ${code ?? signal}:\n${p.tail()}`);
  return p.tail();
}
