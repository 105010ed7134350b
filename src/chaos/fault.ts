import { FAULT_TYPES, type FaultSpec, type LinkMode } from './drill/spec.js';

/**
 * The faults a lab can inject, as data: what a drill step or `isthmus lab fault` asks for.
 * Durations are in ms here; the YAML spec (src/chaos/drill/spec.ts) writes them with units.
 */

/** A fault as loaded (defaults applied, durations in ms): the drill spec's `FaultSpec`. */
export type Fault = FaultSpec;
export type PartitionMode = LinkMode;
export { FAULT_TYPES };

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
      return `bandwidth ${f.from} → ${f.to} ${f.rateKBps} KB/s`;
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
