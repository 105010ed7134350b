import type { OpenLoopResult } from '../open-loop.js';
import type { WrkResult } from './wrk.js';

/** The proxies under test, in the order they run and print. */
export const PEERS = [
  'isthmus',
  'isthmus-telemetry',
  'nginx',
  'haproxy',
  'fastify',
  'undici',
  'http1',
] as const;
export type PeerName = (typeof PEERS)[number];

export const PEER_LABEL: Record<PeerName, string> = {
  isthmus: 'Isthmus sidecar',
  'isthmus-telemetry': 'Isthmus sidecar + telemetry',
  nginx: 'nginx proxy_pass',
  haproxy: 'HAProxy',
  fastify: '@fastify/http-proxy',
  undici: 'undici pass-through (floor)',
  http1: 'Isthmus HTTP/1.1 pass-through',
};

/** The Isthmus peers: the sidecar as bench:proxy has always run it, and the same with telemetry on. */
export const ISTHMUS_PEERS = ['isthmus', 'isthmus-telemetry'] as const;
export type IsthmusPeer = (typeof ISTHMUS_PEERS)[number];

/** One proxy's measurements. */
export interface PeerResult {
  peer: PeerName;
  wrk: WrkResult;
  /** Peak resident memory of the proxy's process tree during warm-up and run, bytes. */
  peakRssBytes: number;
  /** Resident memory before any load (started and answered one request), bytes. */
  idleRssBytes: number;
  /** Resident memory when the measured run ended, bytes (compare with the peak for growth). */
  endRssBytes: number;
  /** Busy share of each core during the measured run, percent. */
  cpuBusyPercent: Record<string, number>;
  /** CPU used by processes outside the benchmark during the run, percent of one core. */
  foreignCpuPercent: number;
  /** req/s of every round, in order; the figures above are from the median round. */
  roundsRps?: number[];
}

export type OpenLoopRun = OpenLoopResult & { foreignCpuPercent: number };

/** The peers also measured at a fixed rate, as references for Isthmus's added latency. */
export const REFERENCE_PEERS = ['nginx', 'haproxy'] as const;
export type ReferencePeer = (typeof REFERENCE_PEERS)[number];

/** What an open-loop run through a proxy added to the direct run, microseconds. */
interface Added {
  addedP50Us: number;
  addedP99Us: number;
}

/** An open-loop run through one peer, and what it added to the direct run. */
export interface ThroughPeer extends Added {
  run: OpenLoopRun;
}

/** The same for an Isthmus peer, its run under `isthmus` (the report's shape since it began). */
export interface ThroughIsthmus extends Added {
  isthmus: OpenLoopRun;
}

/**
 * The latency added at a fixed rate. The top-level `isthmus`, `addedP50Us` and `addedP99Us` are the
 * plain sidecar's (absent when it was not run); `telemetry` is the same through the sidecar with
 * telemetry on (absent when that peer was not run); `references` is the same through nginx and
 * HAProxy, measured the same way in the same run to show what any proxy adds on this machine (absent
 * when neither was run; no target applies to them).
 */
export interface AddedLatency extends Partial<ThroughIsthmus> {
  rate: number;
  direct: OpenLoopRun;
  telemetry?: ThroughIsthmus;
  references?: Partial<Record<ReferencePeer, ThroughPeer>>;
}

/** The run through `peer` in `added`, if it was measured. */
export function throughIsthmus(
  added: AddedLatency | undefined,
  peer: IsthmusPeer,
): ThroughIsthmus | undefined {
  if (!added) return undefined;
  if (peer === 'isthmus-telemetry') return added.telemetry;
  const { isthmus, addedP50Us, addedP99Us } = added;
  return isthmus && addedP50Us !== undefined && addedP99Us !== undefined
    ? { isthmus, addedP50Us, addedP99Us }
    : undefined;
}

/** The reference runs in `added`, in {@link REFERENCE_PEERS} order. */
export function references(added: AddedLatency | undefined): (ThroughPeer & { peer: ReferencePeer })[] {
  return REFERENCE_PEERS.flatMap((peer) => {
    const t = added?.references?.[peer];
    return t ? [{ peer, ...t }] : [];
  });
}

export interface Target {
  name: string;
  /** The Isthmus peer the target is evaluated for. */
  peer: IsthmusPeer;
  /** Undefined when the peers it needs were not run. */
  pass?: boolean;
  detail: string;
}

/** The goals from the issue, for one Isthmus peer: throughput against two peers, memory, added latency. */
function targetsFor(
  results: readonly PeerResult[],
  added: AddedLatency | undefined,
  peer: IsthmusPeer,
): Target[] {
  const by = (p: PeerName) => results.find((r) => r.peer === p);
  const isthmus = by(peer);
  const label = (name: string) => `${PEER_LABEL[peer]}: ${name}`;
  const ratio = (other: PeerName, min: number): Target => {
    const o = by(other);
    const name = label(`throughput ≥ ${min}× ${PEER_LABEL[other]}`);
    if (!isthmus || !o) return { name, peer, detail: 'not run' };
    const r = isthmus.wrk.requestsPerSec / o.wrk.requestsPerSec;
    return { name, peer, pass: r >= min, detail: `${r.toFixed(2)}×` };
  };
  const mb = isthmus ? isthmus.peakRssBytes / 2 ** 20 : undefined;
  const through = throughIsthmus(added, peer);
  return [
    ratio('fastify', 2),
    ratio('nginx', 0.3),
    {
      name: label('peak RSS ≤ 80 MB'),
      peer,
      ...(mb !== undefined && { pass: mb <= 80 }),
      detail:
        isthmus && mb !== undefined
          ? `${mb.toFixed(1)} MB (${(isthmus.idleRssBytes / 2 ** 20).toFixed(1)} MB before load)`
          : 'not run',
    },
    {
      name: label(`added p99 ≤ 1 ms at ${added?.rate ?? 2000} req/s`),
      peer,
      ...(through && { pass: through.addedP99Us <= 1000 && through.isthmus.failed === 0 }),
      detail: through
        ? `${ms(through.addedP99Us)} ms${through.isthmus.failed ? `, ${through.isthmus.failed} failed` : ''}`
        : 'not run',
    },
  ];
}

/**
 * The goals from the issue (throughput against two peers, memory, latency added at a fixed rate),
 * for each Isthmus peer that ran: the sidecar, then the sidecar with telemetry. With neither run,
 * the sidecar's, all "not run".
 */
export function evaluateTargets(results: readonly PeerResult[], added: AddedLatency | undefined): Target[] {
  const ran = ISTHMUS_PEERS.filter((p) => results.some((r) => r.peer === p));
  return (ran.length > 0 ? ran : (['isthmus'] as const)).flatMap((p) => targetsFor(results, added, p));
}

/** Above this much CPU used by other processes during a run, the report says so. */
const FOREIGN_NOTE_PERCENT = 5;

/** Microseconds as milliseconds with three decimals. */
export function ms(us: number): string {
  return (us / 1000).toFixed(3);
}

function errorCount(r: WrkResult): number {
  const e = r.errors;
  return e.connect + e.read + e.write + e.timeout + e.status;
}

/** The results table, the added-latency lines and the targets, as printed text. */
export function formatReport(
  results: readonly PeerResult[],
  added: AddedLatency | undefined,
  targets: readonly Target[],
): string {
  const isthmus = results.find((r) => r.peer === 'isthmus');
  const header = ['peer', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'peak RSS MB', 'Isthmus/peer', 'errors'];
  const rows = results.map((r) => [
    PEER_LABEL[r.peer],
    Math.round(r.wrk.requestsPerSec).toLocaleString('en-US'),
    ms(r.wrk.p50Us),
    ms(r.wrk.p99Us),
    ms(r.wrk.p999Us),
    (r.peakRssBytes / 2 ** 20).toFixed(1),
    isthmus ? `${(isthmus.wrk.requestsPerSec / r.wrk.requestsPerSec).toFixed(2)}×` : '-',
    String(errorCount(r.wrk)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  if (results.some((r) => (r.roundsRps?.length ?? 0) > 1)) {
    out.push('req/s by round (figures above are from each peer’s median round):');
    for (const r of results)
      out.push(`  ${PEER_LABEL[r.peer].padEnd(widths[0] ?? 0)}  ${(r.roundsRps ?? []).join(' / ')}`);
  }

  // A proxy that did not keep its core busy was held back by the load generator's core instead.
  for (const r of results) {
    const core0 = r.cpuBusyPercent.cpu0;
    if (core0 !== undefined && core0 < 90)
      out.push(
        `note: ${PEER_LABEL[r.peer]} kept core 0 only ${core0}% busy (core 1: ${r.cpuBusyPercent.cpu1 ?? '?'}%): its figure is bounded by the load generator and upstream, not by the proxy`,
      );
    if (r.foreignCpuPercent >= FOREIGN_NOTE_PERCENT)
      out.push(
        `note: other processes on this machine used ${r.foreignCpuPercent}% of a core during the ${PEER_LABEL[r.peer]} run: its figures are disturbed`,
      );
    if (errorCount(r.wrk) > 0)
      out.push(`warning: ${PEER_LABEL[r.peer]} had errors: ${JSON.stringify(r.wrk.errors)}`);
  }

  out.push('');
  if (added) {
    // "Isthmus" for the sidecar, as this report has always said; the telemetry peer by its label.
    const name = (peer: IsthmusPeer) => (peer === 'isthmus' ? 'Isthmus' : PEER_LABEL[peer]);
    const through = [
      ...ISTHMUS_PEERS.flatMap((peer) => {
        const t = throughIsthmus(added, peer);
        return t ? [{ name: name(peer), run: t.isthmus, ...t }] : [];
      }),
      ...references(added).map((t) => ({ name: `${PEER_LABEL[t.peer]} (reference)`, ...t })),
    ];
    const labels = ['direct to upstream', ...through.map((t) => `through ${t.name}`)];
    const width = Math.max(...labels.map((l) => l.length));
    const l = (label: string, o: OpenLoopResult) =>
      `${label.padEnd(width)}: p50 ${ms(o.p50Us)} ms, p99 ${ms(o.p99Us)} ms, p99.9 ${ms(o.p999Us)} ms (${o.ok}/${o.sent} ok, sender lag ≤ ${ms(o.maxSendLagUs)} ms)`;
    out.push(`Latency at ${added.rate} req/s, open loop, ${added.direct.durationSec}s:`);
    out.push(`  ${l('direct to upstream', added.direct)}`);
    for (const t of through) out.push(`  ${l(`through ${t.name}`, t.run)}`);
    for (const t of through)
      out.push(`  added by ${t.name}: p50 +${ms(t.addedP50Us)} ms, p99 +${ms(t.addedP99Us)} ms`);
    if (added.references)
      out.push(
        '  (references: measured the same way in this run, a yardstick for what any proxy adds on this machine; no target applies)',
      );
    for (const [label, o] of [
      ['direct', added.direct],
      ...through.map((t) => [t.name, t.run] as const),
    ] as const)
      if (o.foreignCpuPercent >= FOREIGN_NOTE_PERCENT)
        out.push(`  note: other processes used ${o.foreignCpuPercent}% of a core during the ${label} run`);
    out.push('');
  }
  out.push('Targets:');
  for (const t of targets)
    out.push(`  ${t.pass === undefined ? 'n/a ' : t.pass ? 'PASS' : 'MISS'}  ${t.name}: ${t.detail}`);
  return out.join('\n');
}
