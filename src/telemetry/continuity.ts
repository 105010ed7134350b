import { LOSS_REASONS, noLoss, type LostSignals } from './otlp.js';

/**
 * Continuity accounting per source (docs/telemetry-wire.md): which `isthmus.seq` values arrived,
 * kept as sorted disjoint ranges so that millions of consecutive seqs cost one pair of numbers.
 */

/** Sorted, disjoint, non-adjacent inclusive ranges `[lo, hi]`. */
export type SeqRanges = [number, number][];

/** Adds `seq`; returns false when it was already there (a duplicate). Mutates `ranges`. */
export function addSeq(ranges: SeqRanges, seq: number): boolean {
  // Binary search for the last range with lo <= seq.
  let lo = 0;
  let hi = ranges.length - 1;
  let at = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((ranges[mid] as [number, number])[0] <= seq) {
      at = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  const prev = at >= 0 ? ranges[at] : undefined;
  const next = ranges[at + 1];
  if (prev && seq <= prev[1]) return false;
  const joinsPrev = prev !== undefined && prev[1] === seq - 1;
  const joinsNext = next !== undefined && next[0] === seq + 1;
  if (joinsPrev && joinsNext) {
    prev[1] = next[1];
    ranges.splice(at + 1, 1);
  } else if (joinsPrev) prev[1] = seq;
  else if (joinsNext) next[0] = seq;
  else ranges.splice(at + 1, 0, [seq, seq]);
  return true;
}

export function hasSeq(ranges: SeqRanges, seq: number): boolean {
  return ranges.some(([lo, hi]) => lo <= seq && seq <= hi);
}

/** Number of distinct seqs. */
export function countSeqs(ranges: SeqRanges): number {
  let n = 0;
  for (const [lo, hi] of ranges) n += hi - lo + 1;
  return n;
}

export function maxSeq(ranges: SeqRanges): number {
  return ranges.at(-1)?.[1] ?? 0;
}

/** The missing seqs in 1..emitted as ranges (at most `limit` of them), for showing where a gap is. */
export function missingRanges(ranges: SeqRanges, emitted: number, limit = 20): SeqRanges {
  const out: SeqRanges = [];
  let next = 1;
  for (const [lo, hi] of ranges) {
    if (next > emitted || out.length >= limit) break;
    if (lo > next) out.push([next, Math.min(lo - 1, emitted)]);
    next = hi + 1;
  }
  if (next <= emitted && out.length < limit) out.push([next, emitted]);
  return out;
}

/** What is persisted per source. */
export interface SourceState {
  source: string;
  region: string | null;
  zone: string | null;
  /** Highest seq the source reported (heartbeat) or that arrived. */
  emittedSeq: number;
  ranges: SeqRanges;
  /** Records (spans, points, log records) received again and dropped. */
  duplicates: number;
  /** Records stored. */
  records: number;
  lastHeardMs: number | null;
  lastHeartbeatMs: number | null;
  /** Newest original timestamp of a stored record, epoch ms. */
  newestRecordMs: number | null;
  /**
   * Signals the source said it lost (heartbeats), per process of the source, oldest first; a
   * state persisted before this existed has none.
   */
  lost?: { instance: string; signals: LostSignals }[];
}

export interface ContinuityView {
  source: string;
  region: string | null;
  zone: string | null;
  emitted: number;
  received: number;
  duplicates: number;
  gaps: number;
  /** First missing ranges (up to 20), to see where the loss is. */
  missing: SeqRanges;
  records: number;
  lagMs: number | null;
  lastHeardMs: number | null;
  lastHeardAgoMs: number | null;
  stale: boolean;
  /**
   * Signals the source itself counted as lost (its heartbeats), by reason, summed over its
   * processes: what a gap in seqs cannot say, since one record of its log can hold many signals.
   */
  lostAtSource: LostSignals & { total: number };
}

/** Processes of one source whose losses are kept apart; older ones are summed into one entry. */
const MAX_INSTANCES = 32;
const EARLIER_INSTANCES = '(earlier)';

/**
 * Records the losses a heartbeat reports. Counts are cumulative per process, so the highest seen
 * is kept (a late heartbeat cannot lower them); a heartbeat without an instance counts as one
 * process of its own.
 */
export function recordLoss(state: SourceState, instance: string | undefined, lost: LostSignals): void {
  const list = (state.lost ??= []);
  const name = instance ?? '';
  let entry = list.find((e) => e.instance === name);
  if (!entry) {
    entry = { instance: name, signals: noLoss() };
    list.push(entry);
  }
  for (const reason of LOSS_REASONS) entry.signals[reason] = Math.max(entry.signals[reason], lost[reason]);
  while (list.length > MAX_INSTANCES) {
    const [a, b] = list as [(typeof list)[number], (typeof list)[number]];
    const signals = { ...a.signals };
    for (const reason of LOSS_REASONS) signals[reason] += b.signals[reason];
    list.splice(0, 2, { instance: EARLIER_INSTANCES, signals });
  }
}

function lostAtSource(s: SourceState): LostSignals & { total: number } {
  const out = { ...noLoss(), total: 0 };
  for (const e of s.lost ?? [])
    for (const reason of LOSS_REASONS) {
      out[reason] += e.signals[reason];
      out.total += e.signals[reason];
    }
  return out;
}

export function newSourceState(source: string): SourceState {
  return {
    source,
    region: null,
    zone: null,
    emittedSeq: 0,
    ranges: [],
    duplicates: 0,
    records: 0,
    lastHeardMs: null,
    lastHeartbeatMs: null,
    newestRecordMs: null,
  };
}

/** The continuity of one source at `nowMs`; stale when silent for two heartbeat intervals. */
export function continuityView(s: SourceState, nowMs: number, heartbeatIntervalMs: number): ContinuityView {
  const emitted = Math.max(s.emittedSeq, maxSeq(s.ranges));
  const received = countSeqs(s.ranges);
  return {
    source: s.source,
    region: s.region,
    zone: s.zone,
    emitted,
    received,
    duplicates: s.duplicates,
    gaps: emitted - received,
    missing: missingRanges(s.ranges, emitted),
    records: s.records,
    lagMs: s.newestRecordMs === null ? null : Math.max(0, nowMs - s.newestRecordMs),
    lastHeardMs: s.lastHeardMs,
    lastHeardAgoMs: s.lastHeardMs === null ? null : Math.max(0, nowMs - s.lastHeardMs),
    stale: s.lastHeardMs === null || nowMs - s.lastHeardMs > 2 * heartbeatIntervalMs,
    lostAtSource: lostAtSource(s),
  };
}

/** One region's telemetry as a collector sees it: its sources rolled up. */
export interface RegionView {
  region: string;
  sources: number;
  staleSources: number;
  /**
   * `live` when some source was heard within two heartbeat intervals, else `stale`: the region's
   * figures are then as of `lastHeardMs`, and unknown since — never shown as zero traffic.
   */
  state: 'live' | 'stale';
  lastHeardMs: number | null;
  lastHeardAgoMs: number | null;
  emitted: number;
  received: number;
  gaps: number;
  duplicates: number;
  /** Signals the region's sources counted as lost themselves (`lostAtSource.total`, summed). */
  lostAtSource: number;
}

/** Rolls per-source continuity up by region (sources without a region are grouped as `unknown`). */
export function regionViews(sources: readonly ContinuityView[], nowMs: number): RegionView[] {
  const byRegion = new Map<string, RegionView>();
  for (const s of sources) {
    const region = s.region ?? 'unknown';
    let r = byRegion.get(region);
    if (!r) {
      r = {
        region,
        sources: 0,
        staleSources: 0,
        state: 'stale',
        lastHeardMs: null,
        lastHeardAgoMs: null,
        emitted: 0,
        received: 0,
        gaps: 0,
        duplicates: 0,
        lostAtSource: 0,
      };
      byRegion.set(region, r);
    }
    r.sources++;
    if (s.stale) r.staleSources++;
    else r.state = 'live';
    if (s.lastHeardMs !== null && (r.lastHeardMs === null || s.lastHeardMs > r.lastHeardMs))
      r.lastHeardMs = s.lastHeardMs;
    r.emitted += s.emitted;
    r.received += s.received;
    r.gaps += s.gaps;
    r.duplicates += s.duplicates;
    r.lostAtSource += s.lostAtSource.total;
  }
  for (const r of byRegion.values())
    r.lastHeardAgoMs = r.lastHeardMs === null ? null : Math.max(0, nowMs - r.lastHeardMs);
  return [...byRegion.values()].sort((a, b) => a.region.localeCompare(b.region));
}
