import { listOr } from '../core/text.js';
import type { JsonSchema } from './schema-walk.js';

/** Plain-words descriptions of what a schema accepts, shared by error messages and the reference. */

export function rangeText(schema: JsonSchema): string {
  const integer = schema.type === 'integer' ? 'an integer' : 'a number';
  if (schema['x-unit'] === 'ratio') return 'a ratio from 0 to 1 (e.g. 0.2 for 20%)';
  if (schema.minimum !== undefined && schema.maximum !== undefined)
    return `${integer} from ${schema.minimum} to ${schema.maximum}`;
  if (schema.minimum !== undefined) return `${integer} of at least ${schema.minimum}`;
  if (schema.maximum !== undefined) return `${integer} of at most ${schema.maximum}`;
  return integer;
}

export function unitText(schema: JsonSchema): string {
  const unit = schema['x-unit'];
  const bounds =
    schema['x-min'] !== undefined && schema['x-max'] !== undefined
      ? ` from ${schema['x-min']} to ${schema['x-max']}`
      : schema['x-min'] !== undefined
        ? ` of at least ${schema['x-min']}`
        : schema['x-max'] !== undefined
          ? ` of at most ${schema['x-max']}`
          : '';
  if (unit === 'duration') return `a duration${bounds}, written with a unit: 250ms, 5s, 1m30s, 2h`;
  if (unit === 'size') return `a size${bounds}, written with a unit: 512B, 64KiB, 16MiB, 1GiB`;
  if (unit === 'host-port')
    return 'an address HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:15001 or [::1]:15001';
  if (unit === 'name')
    return 'a name of lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters';
  return `text matching /${schema.pattern}/`;
}

export function typeText(schema: JsonSchema): string {
  if (schema['x-unit'] === 'duration' || schema['x-unit'] === 'size') return unitText(schema);
  switch (schema.type) {
    case 'object':
      return schema.properties
        ? `a mapping with fields ${Object.keys(schema.properties).join(', ')}`
        : 'a mapping';
    case 'array':
      return 'a list';
    case 'integer':
    case 'number':
      return rangeText(schema);
    case 'boolean':
      return 'true or false';
    case 'string':
      return schema.enum ? `one of ${listOr(schema.enum.map(String))}` : 'text';
    default:
      return String(schema.type);
  }
}

/** A compact type for reference tables: `duration 1ms–1m`, `integer 1–10`, `list of zone \| region`. */
export function shortType(schema: JsonSchema): string {
  const unit = schema['x-unit'];
  const bounds = (lo: string | number | undefined, hi: string | number | undefined) =>
    lo !== undefined && hi !== undefined
      ? ` ${String(lo)}–${String(hi)}`
      : lo !== undefined
        ? ` ≥ ${String(lo)}`
        : hi !== undefined
          ? ` ≤ ${String(hi)}`
          : '';
  if (unit === 'duration' || unit === 'size') return `${unit}${bounds(schema['x-min'], schema['x-max'])}`;
  if (unit === 'ratio') return 'ratio 0–1';
  if (unit === 'name') return 'name';
  if (schema.enum) return schema.enum.map((v) => `\`${String(v)}\``).join(' | ');
  switch (schema.type) {
    case 'integer':
    case 'number':
      return `${schema.type}${bounds(schema.minimum, schema.maximum)}`;
    case 'boolean':
      return 'boolean';
    case 'array':
      return `list of ${schema.items ? shortType(schema.items) : 'values'}`;
    case 'object': {
      const value =
        typeof schema.additionalProperties === 'object'
          ? schema.additionalProperties
          : Object.values(schema.patternProperties ?? {})[0];
      return value ? `map of ${shortType(value)}` : 'mapping';
    }
    case 'string':
      return schema.pattern === '^/' ? 'path' : 'text';
    default:
      return String(schema.type ?? 'value');
  }
}
