/**
 * The faults a lab can inject, as data: what a drill step or `isthmus lab fault` asks for.
 * Durations are in ms here; the YAML spec (src/chaos/drill/spec.ts) writes them with units.
 */

export type PartitionMode = 'blackhole' | 'reject' | 'reset';

export type Fault =
  | {
      type: 'partition';
      /** Cut every link of this region (both ways unless `direction: one-way`, then outgoing). */
      region?: string;
      from?: string;
      to?: string;
      mode?: PartitionMode;
      direction?: 'both' | 'one-way';
      scope?: 'new' | 'all';
      purpose?: 'data' | 'control' | 'telemetry';
    }
  | { type: 'latency'; from: string; to: string; latencyMs: number; jitterMs?: number; distribution?: string }
  | { type: 'loss'; from: string; to: string; probability: number; stallMs?: number }
  | { type: 'bandwidth'; from: string; to: string; rate: number }
  | { type: 'region-outage'; region: string }
  | { type: 'control-plane-loss'; scope: 'global' | 'zone'; region?: string }
  | { type: 'proxy-restart'; region: string; service: string }
  | { type: 'flap'; from: string; to: string; mode?: PartitionMode; downMs: number; upMs: number };

export const FAULT_TYPES = [
  'partition',
  'latency',
  'loss',
  'bandwidth',
  'region-outage',
  'control-plane-loss',
  'proxy-restart',
  'flap',
] as const;

/** One line for timelines and logs: `partition eu-west (blackhole, both)`. */
export function describeFault(f: Fault): string {
  switch (f.type) {
    case 'partition': {
      const where = f.region !== undefined ? f.region : `${f.from ?? '*'} → ${f.to ?? '*'}`;
      return `partition ${where} (${f.mode ?? 'blackhole'}, ${f.direction ?? 'both'}${f.purpose ? `, ${f.purpose} only` : ''})`;
    }
    case 'latency':
      return `latency ${f.from} → ${f.to} +${f.latencyMs} ms${f.jitterMs ? ` ±${f.jitterMs} ms` : ''}${f.distribution ? ` ${f.distribution}` : ''}`;
    case 'loss':
      return `loss ${f.from} → ${f.to} ${(f.probability * 100).toFixed(1)}%`;
    case 'bandwidth':
      return `bandwidth ${f.from} → ${f.to} ${f.rate} KB/s`;
    case 'region-outage':
      return `outage of ${f.region} (every process killed)`;
    case 'control-plane-loss':
      return f.scope === 'global'
        ? 'global control plane killed'
        : `zone control plane of ${f.region} killed`;
    case 'proxy-restart':
      return `restart of the ${f.service} sidecars in ${f.region}`;
    case 'flap':
      return `flapping ${f.from} → ${f.to} (${f.mode ?? 'blackhole'}: ${f.downMs} ms down, ${f.upMs} ms up)`;
  }
}
