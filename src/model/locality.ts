import { IsthmusError } from '../core/errors.js';
import { NAME_PATTERN } from './primitives.js';

/** Where a process runs: a region and, usually, a zone within it. */
export interface Locality {
  region: string;
  zone?: string;
}

const NAME_RE = new RegExp(NAME_PATTERN);

/** Parses `region/zone` or `region`. */
export function parseLocality(text: string): Locality {
  const parts = text.split('/');
  if (parts.length > 2 || !parts.every((p) => NAME_RE.test(p))) {
    throw new IsthmusError(
      'ISTHMUS_E_INVALID_VALUE',
      `invalid locality ${JSON.stringify(text)}: write REGION/ZONE (e.g. "eu-west/eu-west-b") or REGION`,
    );
  }
  const [region, zone] = parts as [string, string | undefined];
  return zone === undefined ? { region } : { region, zone };
}

export function formatLocality(locality: Locality): string {
  return locality.zone === undefined ? locality.region : `${locality.region}/${locality.zone}`;
}
