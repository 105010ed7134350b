import { request } from 'undici';
import { describeFault, type Fault } from '../fault.js';
import { Workload, type RequestResult } from '../workload.js';
import {
  evaluateExpectation,
  type DrillMetrics,
  type DrillReport,
  type ExpectationResult,
  type PhaseStats,
  type SignalRow,
  type TimelineEvent,
  type Verdict,
} from './report.js';
import type { Progress } from './render.js';
import { type DrillSpec, type FaultSpec, type PhaseName, type ProbeSpec, type StepSpec } from './spec.js';
import { sleep } from '../../core/sleep.js';

/**
 * Runs a drill against a target (a lab): steady load, a baseline, the fault method with its
 * continuous probes, a recovery period, rollbacks that always run, then the figures — requests by
 * phase, detection and failover times read from the proxies, duplicate writes counted by the
 * orders apps, and signal continuity from the collectors.
 */

/** What a drill needs from the system under test. */
export interface DrillTarget {
  regions: string[];
  view(): Promise<TargetView>;
  applyFault(fault: Fault, id: string): Promise<void>;
  removeFault(id: string): Promise<void>;
  /** Removes every fault (and, with restore, starts every stopped process). */
  heal(restore: boolean): Promise<void>;
  verifyHealed(): Promise<{ healed: boolean; problems: string[] }>;
}

export interface TargetView {
  frontends: { region: string; url: string }[];
  proxies: { region: string; name: string; admin: string }[];
  collectors: { region: string; url: string }[];
  /** Base URLs of the orders apps (their /stats count duplicate side effects). */
  orders: string[];
}

export interface RunOptions {
  onProgress?: (p: Progress) => void;
  onEvent?: (e: TimelineEvent) => void;
  /** How long to wait after the rollbacks for telemetry to drain to the global collector, ms. */
  drainTimeoutMs?: number;
}

async function getJson<T>(url: string, timeoutMs = 2000): Promise<T | undefined> {
  try {
    const res = await request(url, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode !== 200) return undefined;
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** Regions a fault takes away, whose traffic should move elsewhere. */
function faultedRegions(f: FaultSpec): string[] {
  switch (f.type) {
    case 'partition':
      // A cut between two regions: each side loses the other (for a one-way cut too, since
      // requests need answers).
      return f.region !== undefined
        ? [f.region]
        : [f.to, f.from].filter((r): r is string => r !== undefined && r !== 'global');
    case 'region-outage':
      return [f.region];
    case 'flap':
      return [f.to, f.from].filter((r) => r !== 'global');
    default:
      return [];
  }
}

const percentile = (sorted: number[], q: number): number | null =>
  sorted.length === 0
    ? null
    : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? null);

export interface Sample {
  atMs: number;
  proxy: string;
  proxyRegion: string;
  /** Regions this proxy sees as not healthy (ejected region or ejected gateway). */
  unhealthy: Set<string>;
  /** Regions its balancer has ejected (the region state alone). */
  ejected: Set<string>;
}

export async function runDrill(
  drill: DrillSpec,
  target: DrillTarget,
  options: RunOptions = {},
): Promise<DrillReport> {
  const startedAt = new Date();
  const t0 = Date.now();
  const at = () => Date.now() - t0;
  const timeline: TimelineEvent[] = [];
  const note = (kind: TimelineEvent['kind'], detail: string, step?: string) => {
    const e: TimelineEvent = { atMs: at(), kind, detail, ...(step !== undefined && { step }) };
    timeline.push(e);
    options.onEvent?.(e);
  };
  let view = await target.view();
  const fromRegions = drill.workload.from ?? target.regions;
  const frontends = view.frontends.filter((f) => fromRegions.includes(f.region));
  if (frontends.length === 0) throw new Error(`no frontend runs in ${fromRegions.join(', ')}`);

  const results: RequestResult[] = [];
  const workload = new Workload({
    targets: frontends,
    ratePerSec: drill.workload.ratePerSecond,
    mix: drill.workload.mix,
    timeoutMs: drill.workload.timeoutMs,
    seed: drill.seed,
    onResult: (r) => results.push(r),
  });

  // Monitors: region health as each proxy sees it, config age, telemetry lag.
  const samples: Sample[] = [];
  let stalenessMaxMs: number | null = null;
  const maxLag = new Map<string, number>();
  let monitoring = true;
  const monitorHealth = async () => {
    while (monitoring) {
      const polled = view.proxies.filter((p) => p.name.startsWith('sidecar-'));
      await Promise.all(
        polled.map(async (p) => {
          const seen = await regionHealthSeenBy(p.admin);
          if (!seen) return;
          samples.push({ atMs: at(), proxy: p.name, proxyRegion: p.region, ...seen });
        }),
      );
      await sleep(250);
    }
  };
  const monitorSlow = async () => {
    while (monitoring) {
      await Promise.all(
        view.proxies.map(async (p) => {
          // Staleness: how long since the proxy last heard from its control plane (a quiet mesh
          // has old but current configuration; that is not stale).
          const c = await getJson<{ controlPlane?: { lastContactAgeMs?: number } }>(
            `${p.admin}/config`,
            1000,
          );
          const age = c?.controlPlane?.lastContactAgeMs;
          if (typeof age === 'number') stalenessMaxMs = Math.max(stalenessMaxMs ?? 0, age);
        }),
      );
      const global = view.collectors.find((c) => c.region === 'global');
      if (global) {
        const c = await getJson<{ sources: { source: string; lagMs: number | null }[] }>(
          `${global.url}/v1/continuity`,
        );
        for (const s of c?.sources ?? [])
          if (s.lagMs !== null) maxLag.set(s.source, Math.max(maxLag.get(s.source) ?? 0, s.lagMs));
      }
      await sleep(1000);
    }
  };
  const ordersBefore = await ordersStats(view.orders);

  let verdict: Verdict = 'pass';
  let reason: string | undefined;
  const steadyState: ExpectationResult[] = [];
  let faultStartMs: number | null = null;
  let faultEndMs: number | null = null;
  let recoveryEndMs: number | null = null;
  const activeSteps = new Set<string>();
  const faultWindows: { step: StepSpec; startMs: number; endMs: number }[] = [];

  // Warm-up, outside every phase: connections and balancer state settle (a freshly started lab
  // still has cold pools and may have ejected regions while its processes started).
  note('note', 'warm-up: waiting until every frontend answers and no sidecar sees a region unhealthy');
  await warmUp(frontends, view.proxies, drill.workload.timeoutMs, note);
  const tStart = Date.now();
  workload.start();
  const progressTimer = setInterval(() => {
    const now = at();
    const recent = results.filter((r) => r.startMs - t0 >= now - 1000);
    const lat = recent.map((r) => r.latencyMs).sort((a, b) => a - b);
    options.onProgress?.({
      elapsedMs: now,
      phase:
        faultStartMs === null
          ? 'baseline'
          : faultEndMs === null
            ? 'fault'
            : recoveryEndMs === null
              ? 'recovery'
              : 'rollback',
      ok: recent.filter((r) => r.outcome === 'ok').length,
      failed: recent.filter((r) => r.outcome === 'failed').length,
      unknown: recent.filter((r) => r.outcome === 'unknown').length,
      p99Ms: percentile(lat, 0.99),
      steps: [...activeSteps],
    });
  }, 1000);

  const monitors = [monitorHealth(), monitorSlow()];
  const abort = new AbortController();
  try {
    note(
      'note',
      `workload: ${drill.workload.ratePerSecond} req/s to ${frontends.map((f) => f.region).join(', ')} (after a warm-up of ${((tStart - t0) / 1000).toFixed(1)} s)`,
    );
    await sleep(drill.baselineMs);
    // Steady state over the baseline.
    const baseline = phaseStats('baseline', results, t0, 0, at());
    for (const check of drill.steadyState)
      steadyState.push(evaluateExpectation({ ...check, phase: 'baseline' }, metricsOf([baseline])));
    const unsteady = steadyState.find((r) => !r.pass);
    if (unsteady) {
      verdict = 'not-steady';
      reason = `the baseline failed its steady-state check ${unsteady.metric} (${String(unsteady.actual)}); no fault was injected`;
      note('abort', reason);
    } else {
      faultStartMs = at();
      const probes = runProbes(drill.probes, results, t0, at, abort, (p, value) => {
        note('probe-failed', `${p.name}: ${p.metric} = ${value.toFixed(3)} outside its limits`);
        if (p.abort && !abort.signal.aborted) {
          verdict = 'aborted';
          reason = `probe ${p.name} failed (${p.metric} = ${value.toFixed(3)}) and aborted the method`;
          note('abort', reason);
          abort.abort();
        }
      });
      for (const entry of drill.method) {
        if (abort.signal.aborted) break;
        const group = entry.kind === 'step' ? [entry.step] : entry.steps;
        await Promise.all(group.map((step) => runStep(step)));
      }
      faultEndMs = at();
      abort.abort();
      await probes;
      if (verdict === 'pass') {
        await sleep(drill.recoveryMs);
      }
      recoveryEndMs = at();
    }
  } catch (err) {
    verdict = 'error';
    reason = (err as Error).message;
    note('note', `error: ${reason}`);
  } finally {
    await workload.stop();
  }

  async function runStep(step: StepSpec): Promise<void> {
    await sleep(step.afterMs, abort.signal);
    if (abort.signal.aborted) return;
    const id = `drill-${step.name}`;
    note('step-start', describeFault(step.fault), step.name);
    activeSteps.add(step.name);
    const startMs = at();
    try {
      await target.applyFault(step.fault, id);
      note('fault-applied', describeFault(step.fault), step.name);
      await sleep(step.durationMs, abort.signal);
    } finally {
      const endMs = at();
      await target
        .removeFault(id)
        .catch((err: Error) => note('note', `removing ${id}: ${err.message}`, step.name));
      note('fault-removed', 'fault removed', step.name);
      activeSteps.delete(step.name);
      faultWindows.push({ step, startMs, endMs });
      note('step-end', `after ${((endMs - startMs) / 1000).toFixed(1)} s`, step.name);
    }
  }

  // Rollbacks always run.
  for (const rb of drill.rollbacks) {
    note('rollback', `${rb.action} ${rb.target}`);
    try {
      await target.heal(rb.action === 'restore');
    } catch (err) {
      note('note', `rollback ${rb.action} failed: ${(err as Error).message}`);
    }
  }
  let healed = false;
  for (let i = 0; i < 20 && !healed; i++) {
    const v = await target.verifyHealed().catch((err: Error) => ({ healed: false, problems: [err.message] }));
    healed = v.healed;
    if (healed) note('heal-verified', 'no faults left, every link accepts connections, every process runs');
    else if (i === 19) note('note', `not healed: ${v.problems.join('; ')}`);
    else await sleep(500);
  }
  if (!healed && verdict === 'pass') {
    verdict = 'error';
    reason = 'the rollbacks did not heal the lab';
  }
  clearInterval(progressTimer);

  // Telemetry drains to the global collector; then count.
  view = await target.view().catch(() => view);
  const signals = await collectSignals(view, maxLag, options.drainTimeoutMs ?? 30_000);
  monitoring = false;
  await Promise.all(monitors);
  const ordersAfter = await ordersStats(view.orders);

  const end = at();
  const fs = faultStartMs ?? end;
  const fe = faultEndMs ?? end;
  const phases = [phaseStats('baseline', results, t0, 0, fs)];
  if (faultStartMs !== null) phases.push(phaseStats('fault', results, t0, fs, fe));
  if (faultEndMs !== null) phases.push(phaseStats('recovery', results, t0, fe, recoveryEndMs ?? end));
  const failover = failoverFigures(faultWindows, samples, results, t0);
  const writes = {
    attempted: results.filter(
      (r) => r.route !== undefined && drill.workload.mix.find((m) => m.name === r.route)?.method !== 'GET',
    ).length,
    duplicateSideEffects: Math.max(0, ordersAfter.duplicates - ordersBefore.duplicates),
  };
  const metrics: DrillMetrics = {
    phases,
    failover,
    writes,
    signals,
    config: { stalenessMaxMs },
    overall: { latencyMs: latencyOf(results) },
  };
  const expectations =
    verdict === 'not-steady' || verdict === 'error'
      ? []
      : drill.expectations.map((e) => evaluateExpectation(e, metrics));
  const failed = expectations.filter((e) => !e.pass);
  if (verdict === 'pass' && failed.length > 0) {
    verdict = 'fail';
    reason = `${failed.length} expectation(s) failed: ${failed.map((e) => e.metric).join(', ')}`;
  }
  return {
    drill: {
      name: drill.name,
      ...(drill.description !== undefined && { description: drill.description }),
      file: drill.file,
      seed: drill.seed,
    },
    startedAt: startedAt.toISOString(),
    durationMs: end,
    verdict,
    ...(reason !== undefined && { reason }),
    topology: { regions: target.regions, source: drill.topology.source },
    timeline,
    phases,
    failover,
    writes,
    config: { stalenessMaxMs },
    signals,
    steadyState,
    expectations,
    series: series(results, t0, end),
    overall: { latencyMs: latencyOf(results) },
  };
}

/**
 * Regions a proxy sees as unhealthy: a region its balancer has ejected or is readmitting, or whose
 * gateway endpoint is ejected or failing its health checks. Undefined when the proxy did not answer.
 */
async function regionHealthSeenBy(
  admin: string,
): Promise<{ unhealthy: Set<string>; ejected: Set<string> } | undefined> {
  const eps = await getJson<Record<string, { eventual?: BalancerView; strong?: BalancerView }>>(
    `${admin}/endpoints`,
    1000,
  );
  if (!eps) return undefined;
  const unhealthy = new Set<string>();
  const ejected = new Set<string>();
  for (const d of Object.values(eps))
    for (const b of [d.eventual, d.strong]) {
      if (!b) continue;
      for (const r of b.regions ?? []) {
        if (r.state !== 'healthy') unhealthy.add(r.region);
        if (r.state === 'ejected') ejected.add(r.region);
      }
      for (const e of b.endpoints ?? [])
        if (e.kind === 'gateway' && (e.ejectedUntilMs !== null || e.health !== 'healthy'))
          unhealthy.add(e.locality.split('/')[0] ?? e.locality);
    }
  return { unhealthy, ejected };
}

async function unhealthyRegions(admin: string): Promise<Set<string> | undefined> {
  return (await regionHealthSeenBy(admin))?.unhealthy;
}

interface BalancerView {
  regions?: { region: string; state: string }[];
  endpoints?: { kind: string; locality: string; ejectedUntilMs: number | null; health: string }[];
}

function latencyOf(rs: RequestResult[]) {
  const lat = rs
    .filter((r) => r.outcome === 'ok')
    .map((r) => r.latencyMs)
    .sort((a, b) => a - b);
  const round = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10);
  return {
    p50: round(percentile(lat, 0.5)),
    p99: round(percentile(lat, 0.99)),
    max: round(lat[lat.length - 1] ?? null),
  };
}

export function phaseStats(
  phase: PhaseName,
  all: RequestResult[],
  t0: number,
  startMs: number,
  endMs: number,
): PhaseStats {
  const rs = all.filter((r) => r.startMs - t0 >= startMs && r.startMs - t0 < endMs);
  const byRoute: PhaseStats['byRoute'] = {};
  const servedBy: NonNullable<PhaseStats['servedBy']> = {};
  for (const r of rs) {
    const b = (byRoute[r.route] ??= { requests: 0, ok: 0, failed: 0, unknown: 0 });
    b.requests++;
    b[r.outcome]++;
    if (r.outcome !== 'ok') continue;
    for (const [dep, locality] of Object.entries(r.servedBy ?? {})) {
      const region = locality.split('/')[0] ?? locality;
      const d = (servedBy[dep] ??= {});
      d[region] = (d[region] ?? 0) + 1;
    }
  }
  return {
    phase,
    startMs,
    endMs,
    requests: rs.length,
    ok: rs.filter((r) => r.outcome === 'ok').length,
    failed: rs.filter((r) => r.outcome === 'failed').length,
    unknown: rs.filter((r) => r.outcome === 'unknown').length,
    failedIdempotent: rs.filter((r) => r.outcome !== 'ok' && r.idempotent).length,
    latencyMs: latencyOf(rs),
    byRoute,
    servedBy,
  };
}

function metricsOf(phases: PhaseStats[]): DrillMetrics {
  return {
    phases,
    failover: { timeToDetectMs: null, timeToFailoverMs: null, timeToFailbackMs: null, routeFlaps: 0 },
    writes: { attempted: 0, duplicateSideEffects: 0 },
    signals: { rows: [], lost: 0, duplicated: 0, maxDelayMs: null, complete: false },
    config: { stalenessMaxMs: null },
  };
}

async function runProbes(
  probes: ProbeSpec[],
  results: RequestResult[],
  t0: number,
  at: () => number,
  abort: AbortController,
  onFail: (p: ProbeSpec, value: number) => void,
): Promise<void> {
  if (probes.length === 0) return;
  const interval = Math.min(...probes.map((p) => p.intervalMs));
  const failing = new Set<string>();
  while (!abort.signal.aborted) {
    await sleep(interval, abort.signal);
    if (abort.signal.aborted) return;
    for (const p of probes) {
      const now = at();
      const stats = phaseStats('fault', results, t0, Math.max(0, now - p.windowMs), now);
      const r = evaluateExpectation(
        {
          metric: p.metric,
          phase: 'fault',
          ...(p.min !== undefined && { min: p.min }),
          ...(p.max !== undefined && { max: p.max }),
        },
        metricsOf([stats]),
      );
      if (r.actual === null) continue;
      if (!r.pass && !failing.has(p.name)) {
        failing.add(p.name);
        onFail(p, r.actual);
      } else if (r.pass) failing.delete(p.name);
    }
  }
}

/**
 * Detection: the first poll after a fault started at which a proxy outside the faulted region —
 * one that saw it healthy at its last poll before the fault — sees that region (or its gateway) as
 * unhealthy. Failover: for every (caller region, dependency) served by the faulted region before
 * the fault, the first success served elsewhere — and, in any case, no later than the last failure
 * in the fault window. Failback: after the fault is removed, the first success served by the
 * original region again. Flaps: ejections of the region by one proxy beyond the first, from the
 * fault's start to the next fault (or the end); the worst proxy counts. Traffic split between
 * regions while a readmitted one ramps up (slow start) is not a flap.
 */
export function failoverFigures(
  windows: { step: StepSpec; startMs: number; endMs: number }[],
  samples: Sample[],
  results: RequestResult[],
  t0: number,
): DrillReport['failover'] {
  const byRegion: NonNullable<DrillReport['failover']['byRegion']> = {};
  const rel = (r: RequestResult) => r.startMs - t0;
  const done = (r: RequestResult) => r.startMs - t0 + r.latencyMs;
  const ordered = [...windows].sort((a, b) => a.startMs - b.startMs);
  let flapsTotal = 0;
  for (const [wi, w] of ordered.entries()) {
    const until = ordered[wi + 1]?.startMs ?? Infinity;
    for (const region of faultedRegions(w.step.fault)) {
      const observers = new Map<string, Sample[]>();
      for (const s of samples)
        if (s.proxyRegion !== region) observers.set(s.proxy, [...(observers.get(s.proxy) ?? []), s]);
      let detectAt: number | undefined;
      let flaps = 0;
      for (const list of observers.values()) {
        const before = list.filter((s) => s.atMs < w.startMs).at(-1);
        if (before === undefined || !before.unhealthy.has(region)) {
          const seen = list.find((s) => s.atMs >= w.startMs && s.unhealthy.has(region));
          if (seen && (detectAt === undefined || seen.atMs < detectAt)) detectAt = seen.atMs;
        }
        let ejections = 0;
        let was = before?.ejected.has(region) ?? false;
        for (const s of list) {
          if (s.atMs < w.startMs || s.atMs >= until) continue;
          const is = s.ejected.has(region);
          if (is && !was) ejections++;
          was = is;
        }
        flaps = Math.max(flaps, Math.max(0, ejections - 1));
      }
      // Pairs that the faulted region served before the fault.
      const before = results.filter((r) => rel(r) < w.startMs && r.outcome === 'ok' && r.servedBy);
      const pairs = new Set<string>();
      for (const r of before)
        for (const [dep, loc] of Object.entries(r.servedBy ?? {}))
          if (loc.split('/')[0] === region && r.region !== region) pairs.add(`${r.region}|${dep}`);
      let failoverMs: number | null = null;
      let failbackMs: number | null = null;
      const during = results.filter((r) => rel(r) >= w.startMs && rel(r) < w.endMs);
      const lastFailure = during.filter((r) => r.outcome !== 'ok').reduce((m, r) => Math.max(m, done(r)), -1);
      for (const pair of pairs) {
        const [from, dep] = pair.split('|') as [string, string];
        const served = results
          .filter(
            (r) =>
              r.region === from &&
              r.outcome === 'ok' &&
              r.servedBy?.[dep] !== undefined &&
              rel(r) >= w.startMs,
          )
          .sort((a, b) => a.startMs - b.startMs);
        const moved = served.find((r) => rel(r) < w.endMs && r.servedBy?.[dep]?.split('/')[0] !== region);
        if (moved) failoverMs = Math.max(failoverMs ?? 0, done(moved) - w.startMs);
        const back = served.find((r) => rel(r) >= w.endMs && r.servedBy?.[dep]?.split('/')[0] === region);
        if (back) failbackMs = Math.max(failbackMs ?? 0, done(back) - w.endMs);
      }
      if (lastFailure >= 0) failoverMs = Math.max(failoverMs ?? 0, lastFailure - w.startMs);
      else if (failoverMs === null && pairs.size === 0) failoverMs = 0;
      const prev = byRegion[region];
      byRegion[region] = {
        detectMs: detectAt !== undefined ? detectAt - w.startMs : (prev?.detectMs ?? null),
        failoverMs: failoverMs ?? prev?.failoverMs ?? null,
        failbackMs: failbackMs ?? prev?.failbackMs ?? null,
        flaps: (prev?.flaps ?? 0) + flaps,
      };
      flapsTotal += flaps;
    }
  }
  const values = Object.values(byRegion);
  const worst = (pick: (v: (typeof values)[number]) => number | null) => {
    const xs = values.map(pick).filter((x): x is number => x !== null);
    return xs.length === 0 ? null : Math.round(Math.max(...xs));
  };
  return {
    timeToDetectMs: worst((v) => v.detectMs),
    timeToFailoverMs: worst((v) => v.failoverMs),
    timeToFailbackMs: worst((v) => v.failbackMs),
    routeFlaps: flapsTotal,
    byRegion,
  };
}

/**
 * Sends each frontend a read every 100 ms until ten in a row succeed everywhere and no sidecar
 * sees any region as unhealthy (at most 60 s): the steady state a baseline is measured in.
 */
async function warmUp(
  frontends: { region: string; url: string }[],
  proxies: TargetView['proxies'],
  timeoutMs: number,
  note: (kind: TimelineEvent['kind'], detail: string) => void,
): Promise<void> {
  const deadline = Date.now() + 60_000;
  const streak = new Map(frontends.map((f) => [f.url, 0]));
  const sidecars = proxies.filter((p) => p.name.startsWith('sidecar-'));
  let sick: string[] = [];
  while (Date.now() < deadline) {
    if ([...streak.values()].every((n) => n >= 10)) {
      sick = [];
      for (const p of sidecars) {
        const u = await unhealthyRegions(p.admin);
        if (u === undefined || u.size > 0)
          sick.push(`${p.name} (${u === undefined ? 'no answer' : [...u].join(', ')})`);
      }
      if (sick.length === 0) break;
    }
    await Promise.all(
      frontends.map(async (f) => {
        try {
          const res = await request(`${f.url}/products/1`, {
            headersTimeout: timeoutMs,
            bodyTimeout: timeoutMs,
          });
          await res.body.dump();
          streak.set(f.url, res.statusCode === 200 ? (streak.get(f.url) ?? 0) + 1 : 0);
        } catch {
          streak.set(f.url, 0);
        }
      }),
    );
    await sleep(100);
  }
  const cold = frontends.filter((f) => (streak.get(f.url) ?? 0) < 10);
  if (cold.length > 0)
    note('note', `warm-up gave up after 60 s: ${cold.map((f) => f.region).join(', ')} still failing`);
  else if (sick.length > 0)
    note('note', `warm-up gave up after 60 s: unhealthy regions seen by ${sick.join('; ')}`);
}

async function ordersStats(urls: string[]): Promise<{ duplicates: number }> {
  let duplicates = 0;
  for (const u of urls) {
    const s = await getJson<{ duplicates?: number }>(`${u}/stats`);
    duplicates += s?.duplicates ?? 0;
  }
  return { duplicates };
}

export interface ContinuityJson {
  sources: {
    source: string;
    region: string | null;
    emitted: number;
    received: number;
    duplicates: number;
    gaps: number;
    lagMs: number | null;
    /** Absent from a collector older than this field. */
    lostAtSource?: { total: number };
  }[];
}

/**
 * One row per source of the global collector's continuity. A gap is a record of the source's log,
 * which can hold many signals; what the source counted itself (in signals) is at least as many
 * when it knows, so the larger of the two is what was lost.
 */
export function signalRows(continuity: ContinuityJson, maxLag: ReadonlyMap<string, number>): SignalRow[] {
  return continuity.sources.map((s) => ({
    source: s.source,
    region: s.region ?? 'unknown',
    emitted: s.emitted,
    received: s.received,
    lost: Math.max(s.gaps, s.lostAtSource?.total ?? 0),
    duplicated: s.duplicates,
    maxDelayMs: maxLag.get(s.source) ?? s.lagMs,
  }));
}

async function collectSignals(
  view: TargetView,
  maxLag: Map<string, number>,
  drainTimeoutMs: number,
): Promise<DrillReport['signals']> {
  const global = view.collectors.find((c) => c.region === 'global');
  const empty = { rows: [], lost: 0, duplicated: 0, maxDelayMs: null, complete: false };
  if (!global) return empty;
  const deadline = Date.now() + drainTimeoutMs;
  let last: ContinuityJson | undefined;
  // Drained when two polls in a row show no gap (sources keep emitting — health checks, heartbeats —
  // so the counts never stand still).
  let clean = 0;
  while (Date.now() < deadline) {
    last = await getJson<ContinuityJson>(`${global.url}/v1/continuity`, 3000);
    const gaps = last?.sources.reduce((n, s) => n + s.gaps, 0) ?? -1;
    clean = gaps === 0 ? clean + 1 : 0;
    if (clean >= 2) break;
    await sleep(1000);
  }
  if (!last) return empty;
  const rows = signalRows(last, maxLag);
  const delays = rows.map((r) => r.maxDelayMs).filter((x): x is number => x !== null);
  return {
    rows,
    lost: rows.reduce((n, r) => n + r.lost, 0),
    duplicated: rows.reduce((n, r) => n + r.duplicated, 0),
    maxDelayMs: delays.length === 0 ? null : Math.max(...delays),
    complete: true,
  };
}

function series(results: RequestResult[], t0: number, endMs: number): NonNullable<DrillReport['series']> {
  const out: NonNullable<DrillReport['series']> = [];
  for (let t = 0; t < endMs; t += 1000) {
    const rs = results.filter((r) => r.startMs - t0 >= t && r.startMs - t0 < t + 1000);
    if (rs.length === 0 && t > 0 && out.length > 0 && t > (out[out.length - 1]?.tMs ?? 0) + 1000) continue;
    const lat = rs.map((r) => r.latencyMs).sort((a, b) => a - b);
    out.push({
      tMs: t,
      ok: rs.filter((r) => r.outcome === 'ok').length,
      failed: rs.filter((r) => r.outcome === 'failed').length,
      unknown: rs.filter((r) => r.outcome === 'unknown').length,
      p99Ms: percentile(lat, 0.99),
    });
  }
  return out;
}
