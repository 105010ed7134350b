import { resourceSchema, type AnyResource } from './resources.js';
import type { JsonSchema } from './schema-walk.js';

/** Orders an object's keys as its schema declares them (unknown keys last, sorted). */
function ordered(value: unknown, schema: JsonSchema | undefined): unknown {
  if (Array.isArray(value)) return value.map((item) => ordered(item, schema?.items));
  if (value === null || typeof value !== 'object') return value;
  const record = value as Record<string, unknown>;
  const declared = Object.keys(schema?.properties ?? {});
  const keys = [
    ...declared.filter((k) => k in record),
    ...Object.keys(record)
      .filter((k) => !declared.includes(k))
      .sort(),
  ];
  const mapSchema =
    typeof schema?.additionalProperties === 'object'
      ? schema.additionalProperties
      : Object.values(schema?.patternProperties ?? {})[0];
  return Object.fromEntries(keys.map((k) => [k, ordered(record[k], schema?.properties?.[k] ?? mapSchema)]));
}

/** Canonical form of one resource: fields in schema order. */
export function canonical(resource: AnyResource): AnyResource {
  return ordered(resource, resourceSchema(resource.kind)) as AnyResource;
}
