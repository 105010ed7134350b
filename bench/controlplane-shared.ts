/**
 * What the control-plane benchmark's processes share: the generated mesh, the endpoints the
 * simulated proxies register, the messages between the benchmark and its proxy workers, and
 * small statistics helpers. See bench/controlplane.ts.
 */
import type { EndpointRecord } from '../src/protocol/messages.js';

export const API_VERSION = 'isthmus.dev/v1alpha1';
export const REGIONS = ['eu-west', 'us-east', 'ap-south'] as const;
export type RegionName = (typeof REGIONS)[number];

/** A mesh resource as a plain object, the way `POST /v1/apply` takes it. */
export type Doc = Record<string, unknown> & {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
};

/** `svc-0042`: fixed width, so names sort the way they are numbered. */
export function serviceName(i: number, count: number): string {
  return `svc-${String(i).padStart(Math.max(4, String(count - 1).length), '0')}`;
}

export function regionDoc(name: string): Doc {
  return {
    apiVersion: API_VERSION,
    kind: 'Region',
    metadata: { name },
    spec: { zones: [{ name: `${name}-a` }] },
  };
}

export function serviceDoc(name: string, port = 8080): Doc {
  return {
    apiVersion: API_VERSION,
    kind: 'Service',
    metadata: { name, labels: { team: 'bench' } },
    spec: { ports: [{ name: 'http', port, protocol: 'http' }] },
  };
}

/** Policies that stay put, so every change set carries a realistic mix of kinds. */
const FIXED_POLICIES = 3;

/**
 * The mesh: the three regions, `services` services and a few TrafficPolicies. `variant` selects
 * the mesh-wide policy's overall timeout; consecutive variants always differ, so applying variant
 * N+1 over N is exactly one changed resource (one new policy revision).
 */
export function meshDocs(services: number, variant = 0): Doc[] {
  const docs: Doc[] = REGIONS.map((r) => regionDoc(r));
  for (let i = 0; i < services; i++) docs.push(serviceDoc(serviceName(i, services)));
  docs.push({
    apiVersion: API_VERSION,
    kind: 'TrafficPolicy',
    metadata: { name: 'bench-mesh' },
    spec: { targetRef: { kind: 'Mesh' }, timeouts: { overall: `${10 + (variant % 50)}s` } },
  });
  for (let i = 0; i < Math.min(FIXED_POLICIES, services); i++)
    docs.push({
      apiVersion: API_VERSION,
      kind: 'TrafficPolicy',
      metadata: { name: `bench-${serviceName(i, services)}` },
      spec: {
        targetRef: { kind: 'Service', name: serviceName(i, services) },
        retries: { maxAttempts: 3 },
        timeouts: { perTry: '1s' },
      },
    });
  return docs;
}

/** The endpoint simulated proxy `i` of a region registers: a distinct port per proxy mesh-wide. */
export function proxyEndpoint(regionIndex: number, i: number, services: number): EndpointRecord {
  const region = REGIONS[regionIndex] as string;
  return {
    service: serviceName(i % services, services),
    address: `10.${regionIndex + 1}.0.1`,
    port: 20_000 + regionIndex * 10_000 + i,
    locality: `${region}/${region}-a`,
    weight: 1,
  };
}

export const endpointKey = (e: { service: string; address: string; port: number }) =>
  `${e.service}@${e.address}:${e.port}`;

// ---- benchmark ⇄ proxy worker (child_process IPC) ---------------------------------------------

/** What a watch waits for, per simulated proxy. */
export type Condition =
  | { kind: 'revision'; revision: number }
  | { kind: 'endpoint'; key: string }
  | { kind: 'ready'; revision: number; endpoints: number };

export type ToWorker =
  | {
      type: 'start';
      region: string;
      regionIndex: number;
      /** Zone API address, HOST:PORT. */
      zone: string;
      proxies: number;
      services: number;
    }
  /** Answered with `watched` once every proxy met the condition, or after `timeoutMs`. */
  | { type: 'watch'; id: number; condition: Condition; timeoutMs: number }
  /** Proxy `proxy` registers one more endpoint on its stream. */
  | { type: 'register'; id: number; proxy: number; endpoint: EndpointRecord }
  | { type: 'decode-cost'; id: number }
  /** Answered with `status`: where the proxies are (for error messages), snapshots so far. */
  | { type: 'status'; id: number }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'started'; proxies: number }
  | {
      type: 'watched';
      id: number;
      /** Date.now() at which each proxy first received a snapshot meeting the condition; null: not in time. */
      times: (number | null)[];
    }
  | { type: 'registered'; id: number; atMs: number }
  | {
      type: 'decode-cost';
      id: number;
      /** Median time to parse and validate one snapshot the way every proxy does, ms. */
      ms: number;
      bytes: number;
      snapshots: number;
    }
  | {
      type: 'status';
      id: number;
      connected: number;
      proxies: number;
      minRevision: number;
      minEndpoints: number;
      maxEndpoints: number;
      /** Snapshots received by all of this worker's proxies since it started. */
      snapshots: number;
    }
  | { type: 'error'; message: string };

// ---- statistics -------------------------------------------------------------------------------

/** Nearest-rank percentile (q in 0..1) of unsorted values; NaN for none. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] as number;
}

export function median(values: readonly number[]): number {
  return percentile(values, 0.5);
}

/** Heap used and RSS after a full collection when `gc` is exposed (the scale child runs with it). */
export function memory(): { heapUsedBytes: number; rssBytes: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { heapUsedBytes: m.heapUsed, rssBytes: m.rss };
}
