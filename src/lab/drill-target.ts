import type { DrillTarget, TargetView } from '../chaos/drill/runner.js';
import type { Fault } from '../chaos/fault.js';
import type { LabClient } from './client.js';
import type { Lab } from './lab.js';

/** A drill's view of a lab started in this process. */
export function localLabTarget(lab: Lab): DrillTarget {
  return {
    regions: lab.topology.regions.map((r) => r.name),
    view: () => Promise.resolve(lab.describe()),
    applyFault: async (fault: Fault, id: string) => {
      await lab.applyFault(fault, id);
    },
    removeFault: (id) => lab.removeFault(id),
    heal: (restore) => lab.healAll({ restore }),
    verifyHealed: () => lab.verifyHealed(),
  };
}

/** A drill's view of a running lab, through its control API. */
export async function remoteLabTarget(client: LabClient): Promise<DrillTarget> {
  const first = await client.call<TargetView & { regions: { name: string }[] }>('GET', '/v1/lab');
  return {
    regions: first.regions.map((r) => r.name),
    view: () => client.call<TargetView>('GET', '/v1/lab'),
    applyFault: async (fault, id) => {
      // The API takes faults in the spec's syntax (durations with units).
      await client.call('POST', '/v1/faults', { id, fault: toSpecSyntax(fault) });
    },
    removeFault: async (id) => {
      await client.call('DELETE', `/v1/faults/${encodeURIComponent(id)}`);
    },
    heal: async (restore) => {
      await client.call('POST', '/v1/heal', { restore });
    },
    verifyHealed: () => client.call('GET', '/v1/heal'),
  };
}

/** A fault back in the written form (`latency: 300ms`) that parseFault reads. */
export function toSpecSyntax(f: Fault): Record<string, unknown> {
  const ms = (v: number | undefined) => (v === undefined ? undefined : `${Math.round(v)}ms`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(f)) {
    if (v === undefined) continue;
    if (k === 'rateKBps') out.rate = v;
    else if (k.endsWith('Ms')) out[k.slice(0, -2)] = ms(v as number);
    else out[k] = v;
  }
  return out;
}
