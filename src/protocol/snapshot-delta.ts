import type { EndpointRecord, Snapshot, SnapshotDelta } from './messages.js';

/**
 * Snapshot deltas: a zone sends a proxy only what changed since the snapshot it sent before
 * (a one-resource policy change in a 1,000-service mesh is a few hundred bytes instead of the
 * whole mesh), and the proxy rebuilds the complete snapshot it runs on and keeps on disk.
 */

type Resource = Snapshot['resources'][number];

export const resourceKeyOf = (r: { kind: string; metadata: { name: string } }): string =>
  `${r.kind}/${r.metadata.name}`;
export const endpointKeyOf = (e: { service: string; address: string; port: number }): string =>
  `${e.service}@${e.address}:${e.port}`;

/** The changes from `prev` to `next` (both complete snapshots). */
export function diffSnapshots(prev: Snapshot, next: Snapshot): SnapshotDelta {
  const resources = diffBy(prev.resources, next.resources, resourceKeyOf);
  const endpoints = diffBy(prev.endpoints, next.endpoints, endpointKeyOf);
  return {
    type: 'snapshot-delta',
    version: next.version,
    base: prev.version,
    policyRevision: next.policyRevision,
    generatedAtMs: next.generatedAtMs,
    resources,
    endpoints,
    regions: next.regions,
  };
}

function diffBy<T extends object>(
  prev: readonly T[],
  next: readonly T[],
  key: (item: T) => string,
): { upserts: T[]; deletes: string[] } {
  // Unchanged items are usually the very same objects (a zone reuses them between builds):
  // match by identity first, and by key and content only what is left.
  const prevSet = new Set(prev);
  const nextSet = new Set(next);
  const gone = new Map<string, T>();
  for (const item of prev) if (!nextSet.has(item)) gone.set(key(item), item);
  const upserts: T[] = [];
  for (const item of next) {
    if (prevSet.has(item)) continue;
    const k = key(item);
    const old = gone.get(k);
    if (old !== undefined) {
      gone.delete(k);
      if (JSON.stringify(old) === JSON.stringify(item)) continue;
    }
    upserts.push(item);
  }
  return { upserts, deletes: [...gone.keys()] };
}

/**
 * The complete snapshot `delta` describes, built on `base`; undefined when `base` is not the
 * snapshot the delta was made from (the caller then asks for the complete one).
 */
export function applySnapshotDelta(base: Snapshot, delta: SnapshotDelta): Snapshot | undefined {
  if (base.version !== delta.base) return undefined;
  const resources = new Map<string, Resource>();
  for (const r of base.resources) resources.set(resourceKeyOf(r), r);
  for (const k of delta.resources.deletes) resources.delete(k);
  for (const r of delta.resources.upserts) resources.set(resourceKeyOf(r), r);
  const endpoints = new Map<string, EndpointRecord>();
  for (const e of base.endpoints) endpoints.set(endpointKeyOf(e), e);
  for (const k of delta.endpoints.deletes) endpoints.delete(k);
  for (const e of delta.endpoints.upserts) endpoints.set(endpointKeyOf(e), e);
  const byKey = <T>(m: Map<string, T>) => [...m.keys()].sort().map((k) => m.get(k) as T);
  return {
    type: 'snapshot',
    version: delta.version,
    policyRevision: delta.policyRevision,
    generatedAtMs: delta.generatedAtMs,
    resources: byKey(resources),
    endpoints: byKey(endpoints),
    regions: delta.regions,
  };
}
