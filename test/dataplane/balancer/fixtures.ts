import { loadText } from '../../../src/model/load.js';
import type { Locality } from '../../../src/model/locality.js';
import { MeshIndex } from '../../../src/model/mesh.js';
import type { EffectiveTraffic } from '../../../src/model/settings.js';
import type { Endpoint } from '../../../src/dataplane/endpoint.js';
import { region, service, yamlStream } from '../../support/mesh-fixtures.js';

/** Mutable deep copy of a readonly settings type, so a test can tweak one field. */
type Mutable<T> =
  T extends ReadonlyArray<infer U> ? U[] : T extends object ? { -readonly [K in keyof T]: Mutable<T[K]> } : T;

/** The built-in traffic settings, as a fresh mutable copy. */
export function defaults(): Mutable<EffectiveTraffic> {
  return structuredClone(new MeshIndex([]).traffic().value);
}

/** Three regions: eu-west (zones a, b), us-east (a) at 80ms, ap-south (a) at 150ms from eu-west. */
export const mesh = (() => {
  const loaded = loadText(
    yamlStream(
      region('eu-west', ['eu-west-a', 'eu-west-b'], '{us-east: 80ms, ap-south: 150ms}'),
      region('us-east', ['us-east-a']),
      region('ap-south', ['ap-south-a']),
      service('catalog'),
    ),
    'mesh.yaml',
  );
  if (loaded.diagnostics.length > 0) throw new Error(JSON.stringify(loaded.diagnostics));
  return new MeshIndex(loaded.resources);
})();

export const CALLER: Locality = { region: 'eu-west', zone: 'eu-west-b' };

let port = 8000;
export function endpoint(id: string, locality: Locality, extra: Partial<Endpoint> = {}): Endpoint {
  return {
    id,
    address: `127.0.0.${(port % 200) + 1}`,
    port: port++,
    locality,
    weight: 1,
    kind: 'instance',
    ...extra,
  };
}

/** `n` instances named `${prefix}-0..n-1` in a locality. */
export function endpoints(prefix: string, n: number, locality: Locality): Endpoint[] {
  return Array.from({ length: n }, (_, i) => endpoint(`${prefix}-${i}`, locality));
}

/** Counts occurrences of each key. */
export function tally<T>(n: number, draw: () => T): Map<T, number> {
  const counts = new Map<T, number>();
  for (let i = 0; i < n; i++) {
    const k = draw();
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}
