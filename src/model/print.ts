import { stringify } from 'yaml';
import { canonical } from './canonical.js';
import type { AnyResource } from './resources.js';

export { canonical };

/** Prints resources as one multi-document YAML stream in canonical field order. */
export function printResources(resources: readonly AnyResource[]): string {
  return resources
    .map((r) => stringify(canonical(r), { lineWidth: 0, indent: 2, version: '1.2' }))
    .join('---\n');
}
