/**
 * An open-loop HTTP load generator (Debian has no wrk2). Requests go out on a fixed schedule
 * from the start time whether or not earlier ones have answered, and each latency is measured
 * from the request's *scheduled* send time, so a stall delays and counts every request it holds
 * up (no coordinated omission).
 *
 * Usage: node dist/bench/open-loop.js --url http://127.0.0.1:PORT/ [--host bench] [--rate 2000]
 *          [--duration 10] [--warmup 2] [--connections 64] [--expect-bytes 1024]
 * Prints one JSON line: counts, and latency percentiles in microseconds.
 */
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

export interface OpenLoopResult {
  rate: number;
  durationSec: number;
  sent: number;
  ok: number;
  /** Transport errors, non-200 answers and bodies of the wrong size. */
  failed: number;
  /** How far the sender fell behind its schedule at worst, µs (its own jitter). */
  maxSendLagUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    host: { type: 'string', default: 'bench' },
    rate: { type: 'string', default: '2000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    'expect-bytes': { type: 'string', default: '1024' },
  },
});

const positive = (name: string, text: string | undefined): number => {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return n;
};

if (!values.url) {
  console.error('usage: open-loop.js --url http://127.0.0.1:PORT/ [--rate N] [--duration SECONDS]');
  process.exit(2);
}
const target = new URL(values.url);
const rate = positive('rate', values.rate);
const durationSec = positive('duration', values.duration);
const warmupSec = Number(values.warmup);
const expectBytes = Number(values['expect-bytes']);
const pool = new Pool(target.origin, {
  connections: positive('connections', values.connections),
  pipelining: 1,
  keepAliveTimeout: 60_000,
  headersTimeout: 10_000,
  bodyTimeout: 10_000,
});
const path = `${target.pathname}${target.search}`;

/** Sends `rate × seconds` requests on schedule; latencies (ms) only when `record`. */
async function phase(seconds: number, record: boolean): Promise<OpenLoopResult> {
  const total = Math.round(rate * seconds);
  const intervalMs = 1000 / rate;
  const latenciesMs = new Float64Array(total);
  let ok = 0;
  let failed = 0;
  let completed = 0;
  let next = 0;
  let maxSendLagMs = 0;
  const startMs = performance.now();
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const fire = (i: number, scheduledMs: number) => {
    pool
      .request({ path, method: 'GET', headers: { host: values.host } })
      .then(async ({ statusCode, body }) => {
        const bytes = (await body.arrayBuffer()).byteLength;
        if (statusCode === 200 && (expectBytes <= 0 || bytes === expectBytes)) ok++;
        else failed++;
      })
      .catch(() => {
        failed++;
      })
      .finally(() => {
        latenciesMs[i] = performance.now() - scheduledMs;
        if (++completed === total) finish();
      });
  };

  // At 2,000 req/s requests are 0.5 ms apart, below timer resolution: poll with setImmediate
  // while the next send is near, sleep with a timer only when it is far.
  const pump = () => {
    const nowMs = performance.now();
    while (next < total && startMs + next * intervalMs <= nowMs) {
      const scheduledMs = startMs + next * intervalMs;
      maxSendLagMs = Math.max(maxSendLagMs, nowMs - scheduledMs);
      fire(next, scheduledMs);
      next++;
    }
    if (next >= total) return;
    const waitMs = startMs + next * intervalMs - performance.now();
    if (waitMs > 2) setTimeout(pump, waitMs - 1);
    else setImmediate(pump);
  };
  pump();
  await finished;

  const sorted = record ? Float64Array.from(latenciesMs).sort() : new Float64Array(1);
  const at = (p: number) => {
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return Math.round((sorted[i] ?? 0) * 1000);
  };
  return {
    rate,
    durationSec: seconds,
    sent: total,
    ok,
    failed,
    maxSendLagUs: Math.round(maxSendLagMs * 1000),
    p50Us: at(50),
    p90Us: at(90),
    p99Us: at(99),
    p999Us: at(99.9),
    maxUs: at(100),
  };
}

if (warmupSec > 0) await phase(warmupSec, false);
const result = await phase(durationSec, true);
await pool.close();
console.log(JSON.stringify({ event: 'result', ...result }));
