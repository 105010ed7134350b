import { IsthmusError } from '../../core/errors.js';
import { closestMatch, listOr } from '../../core/text.js';

/**
 * Toxics: the faults a link applies to the bytes flowing through it. Names, attributes and units
 * follow Toxiproxy (https://github.com/Shopify/toxiproxy#toxics); `loss` and `partition`, and
 * `latency.distribution`, are Isthmus extensions. docs/link.md describes each.
 */

/** `upstream` = client → server bytes; `downstream` = server → client bytes. */
export type ToxicStream = 'upstream' | 'downstream';
export const STREAMS: readonly ToxicStream[] = ['upstream', 'downstream'];

type AttributeSpec =
  | { kind: 'number'; default: number; integer?: boolean; max?: number; unit: string }
  | { kind: 'choice'; default: string; choices: readonly string[] };

const ms = (d = 0): AttributeSpec => ({ kind: 'number', default: d, unit: 'ms' });
const bytes = (d = 0): AttributeSpec => ({ kind: 'number', default: d, integer: true, unit: 'bytes' });

/** Every toxic type and its attributes, with defaults. */
export const TOXIC_TYPES = {
  latency: {
    latency: ms(),
    jitter: ms(),
    distribution: { kind: 'choice', default: 'uniform', choices: ['uniform', 'normal', 'pareto'] },
  },
  bandwidth: { rate: { kind: 'number', default: 0, unit: 'KB/s' } },
  slow_close: { delay: ms() },
  timeout: { timeout: ms() },
  reset_peer: { timeout: ms() },
  slicer: {
    average_size: bytes(),
    size_variation: bytes(),
    delay: { kind: 'number', default: 0, unit: 'µs' },
  },
  limit_data: { bytes: bytes() },
  loss: { probability: { kind: 'number', default: 0, max: 1, unit: 'ratio' }, stall: ms(200) },
  partition: {
    mode: { kind: 'choice', default: 'blackhole', choices: ['blackhole', 'reject', 'reset'] },
    scope: { kind: 'choice', default: 'all', choices: ['new', 'all'] },
  },
} as const satisfies Record<string, Record<string, AttributeSpec>>;

export type ToxicType = keyof typeof TOXIC_TYPES;
export const TOXIC_TYPE_NAMES = Object.keys(TOXIC_TYPES) as ToxicType[];

export type LatencyDistribution = 'uniform' | 'normal' | 'pareto';
export type PartitionMode = 'blackhole' | 'reject' | 'reset';

/** A toxic as the API shows it (Toxiproxy's shape). */
export interface ToxicJson {
  name: string;
  type: ToxicType;
  stream: ToxicStream;
  toxicity: number;
  attributes: Record<string, number | string>;
}

/**
 * A toxic on a link. Immutable: an update makes a new object (so per-connection timers keyed by
 * the object restart). `firstConnection` is the index of the first connection opened after the
 * toxic was added, for `partition` with `scope: new`.
 */
export interface Toxic extends ToxicJson {
  readonly firstConnection: number;
}

const TOXIC_FIELDS = ['name', 'type', 'stream', 'toxicity', 'attributes'];

function invalid(where: string, message: string): IsthmusError {
  return new IsthmusError('ISTHMUS_E_INVALID_VALUE', `${where}: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function unknownField(where: string, field: string, known: readonly string[]): IsthmusError {
  const guess = closestMatch(field, known);
  return invalid(
    where,
    `unknown field "${field}"${guess ? `; did you mean "${guess}"?` : ` (known: ${known.join(', ')})`}`,
  );
}

function parseType(value: unknown, where: string): ToxicType {
  if (typeof value !== 'string' || !(value in TOXIC_TYPES)) {
    const guess = typeof value === 'string' ? closestMatch(value, TOXIC_TYPE_NAMES) : undefined;
    throw invalid(
      `${where}.type`,
      `${value === undefined ? 'missing' : `unknown toxic type ${JSON.stringify(value)}`}${guess ? ` (did you mean "${guess}"?)` : ''}; known types: ${TOXIC_TYPE_NAMES.join(', ')}`,
    );
  }
  return value as ToxicType;
}

function parseStream(value: unknown, where: string): ToxicStream {
  if (value === 'upstream' || value === 'downstream') return value;
  throw invalid(`${where}.stream`, `${JSON.stringify(value)} is not a stream; use upstream or downstream`);
}

function parseToxicity(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1)
    throw invalid(`${where}.toxicity`, `${JSON.stringify(value)} is not a probability between 0 and 1`);
  return value;
}

/** Validates `attributes` of a toxic of `type`, over `base` (defaults, or the toxic being updated). */
function parseAttributes(
  type: ToxicType,
  value: unknown,
  where: string,
  base: Record<string, number | string>,
): Record<string, number | string> {
  const specs = TOXIC_TYPES[type] as Record<string, AttributeSpec>;
  const out = { ...base };
  if (value === undefined || value === null) return out;
  if (!isObject(value)) throw invalid(`${where}.attributes`, 'must be an object');
  for (const [key, v] of Object.entries(value)) {
    const spec = specs[key];
    const at = `${where}.attributes.${key}`;
    if (!spec) {
      const known = Object.keys(specs);
      const guess = closestMatch(key, known);
      throw invalid(
        at,
        `${type} has no attribute "${key}"${guess ? `; did you mean "${guess}"?` : ''} (attributes: ${known.join(', ')})`,
      );
    }
    if (spec.kind === 'choice') {
      if (typeof v !== 'string' || !spec.choices.includes(v))
        throw invalid(at, `${JSON.stringify(v)} is not one of ${listOr([...spec.choices])}`);
      out[key] = v;
    } else {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (spec.integer && !Number.isInteger(v)))
        throw invalid(
          at,
          `${JSON.stringify(v)} is not a non-negative ${spec.integer ? 'integer' : 'number'} (${spec.unit})`,
        );
      if (spec.max !== undefined && v > spec.max)
        throw invalid(at, `${v} is above the maximum ${spec.max} (${spec.unit})`);
      out[key] = v;
    }
  }
  return out;
}

function defaults(type: ToxicType): Record<string, number | string> {
  return Object.fromEntries(
    Object.entries(TOXIC_TYPES[type] as Record<string, AttributeSpec>).map(([k, s]) => [k, s.default]),
  );
}

/**
 * Validates a toxic as sent to `POST /proxies/{name}/toxics` (Toxiproxy's body) and fills in its
 * defaults: stream `downstream`, toxicity 1, name `${type}_${stream}`. Unknown top-level fields
 * are ignored as Toxiproxy does, unless `strict` (config files, where they are likely typos).
 */
export function parseToxic(value: unknown, where: string, firstConnection: number, strict = false): Toxic {
  if (!isObject(value)) throw invalid(where, 'a toxic must be an object with at least "type"');
  if (strict)
    for (const k of Object.keys(value))
      if (!TOXIC_FIELDS.includes(k)) throw unknownField(where, k, TOXIC_FIELDS);
  const type = parseType(value.type, where);
  const stream = value.stream === undefined ? 'downstream' : parseStream(value.stream, where);
  const toxicity = value.toxicity === undefined ? 1 : parseToxicity(value.toxicity, where);
  let name = `${type}_${stream}`;
  if (value.name !== undefined && value.name !== '') {
    if (typeof value.name !== 'string') throw invalid(`${where}.name`, 'must be a string');
    name = value.name;
  }
  const attributes = parseAttributes(type, value.attributes, where, defaults(type));
  return Object.freeze({
    name,
    type,
    stream,
    toxicity,
    attributes: Object.freeze(attributes),
    firstConnection,
  });
}

/**
 * Applies `POST /proxies/{name}/toxics/{toxic}` to an existing toxic: toxicity, stream and
 * attributes may change (attributes merge over the current ones); type and name may not.
 */
export function updateToxic(current: Toxic, value: unknown, where: string): Toxic {
  if (!isObject(value)) throw invalid(where, 'the body must be an object');
  if (value.type !== undefined && value.type !== current.type)
    throw invalid(
      `${where}.type`,
      `a toxic's type cannot change (it is ${current.type}); delete it and add a new one`,
    );
  if (value.name !== undefined && value.name !== current.name)
    throw invalid(`${where}.name`, `a toxic cannot be renamed (it is ${current.name})`);
  const stream = value.stream === undefined ? current.stream : parseStream(value.stream, where);
  const toxicity = value.toxicity === undefined ? current.toxicity : parseToxicity(value.toxicity, where);
  const attributes = parseAttributes(current.type, value.attributes, where, current.attributes);
  return Object.freeze({ ...current, stream, toxicity, attributes: Object.freeze(attributes) });
}

export function toxicJson(t: Toxic): ToxicJson {
  return {
    name: t.name,
    type: t.type,
    stream: t.stream,
    toxicity: t.toxicity,
    attributes: { ...t.attributes },
  };
}

/** Typed attribute access (the parser guarantees the kind). */
export function num(t: Toxic, key: string): number {
  return t.attributes[key] as number;
}

export function str(t: Toxic, key: string): string {
  return t.attributes[key] as string;
}
