import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { closestMatch, listOr } from '../core/text.js';
import { parseDurationMs, parseSizeBytes, isDuration, isSize } from '../core/units.js';
import { describeValue, type Rule } from './diagnostics.js';
import { rangeText, shortType, typeText, unitText } from './schema-text.js';
import { KINDS, resourceSchema, type Kind } from './resources.js';
import type { JsonSchema } from './schema-walk.js';

/** One schema violation, before it is located in a file. */
export interface SchemaProblem {
  rule: Rule;
  /** Path inside the document; for unknown fields it ends with the unknown key. */
  path: (string | number)[];
  /** True when the location is the key at `path` rather than its value. */
  atKey: boolean;
  message: string;
  expected?: string;
  found?: string;
  hint?: string;
}

function parseBound(unit: string | undefined, text: string): number {
  return unit === 'size' ? parseSizeBytes(text) : parseDurationMs(text);
}

function withinBound(keyword: 'x-min' | 'x-max') {
  return (bound: string, data: unknown, parentSchema?: JsonSchema): boolean => {
    if (typeof data !== 'string') return true;
    const unit = parentSchema?.['x-unit'];
    // Malformed values are reported by `pattern`; don't report them twice.
    if (unit === 'size' ? !isSize(data) : !isDuration(data)) return true;
    const value = parseBound(unit, data);
    const limit = parseBound(unit, bound);
    return keyword === 'x-min' ? value >= limit : value <= limit;
  };
}

function createAjv(): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    strict: true,
    strictRequired: false,
    allowUnionTypes: false,
  });
  ajv.addKeyword({ keyword: 'x-unit', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'x-min', type: 'string', schemaType: 'string', validate: withinBound('x-min') });
  ajv.addKeyword({ keyword: 'x-max', type: 'string', schemaType: 'string', validate: withinBound('x-max') });
  return ajv;
}

let compiled: Map<Kind, ValidateFunction> | undefined;

function validators(): Map<Kind, ValidateFunction> {
  if (!compiled) {
    const ajv = createAjv();
    compiled = new Map(KINDS.map((kind) => [kind, ajv.compile(resourceSchema(kind))]));
  }
  return compiled;
}

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((seg) => (/^(0|[1-9]\d*)$/.test(seg) ? Number(seg) : seg));
}

function unitHint(schema: JsonSchema, data: unknown): string | undefined {
  const unit = schema['x-unit'];
  if (unit === 'duration' && typeof data === 'number')
    return `durations need a unit: write "${data}ms" or "${data}s" (a bare number is ambiguous)`;
  if (unit === 'size' && typeof data === 'number')
    return `sizes need a unit: write "${data}B", "${data}KiB" or "${data}MiB"`;
  if (unit === 'duration' && typeof data === 'string') {
    const m =
      /^(\d+(?:\.\d+)?)\s*(sec|secs|second|seconds|min|mins|minute|minutes|hour|hours|d|day|days|us|µs|ns)$/.exec(
        data.trim(),
      );
    if (m)
      return `use the units ms, s, m or h, e.g. "${m[1]}${/^m/.test(m[2] as string) ? 'm' : /^h/.test(m[2] as string) ? 'h' : 's'}"`;
    if (/^\d+(\.\d+)?$/.test(data)) return `add a unit: "${data}ms" or "${data}s"`;
  }
  if (unit === 'size' && typeof data === 'string') {
    const m = /^(\d+(?:\.\d+)?)\s*(k|kb|kib|m|mb|mib|g|gb|gib)$/i.exec(data.trim());
    if (m) return `units are case-sensitive: write e.g. "${m[1]}MiB" (binary) or "${m[1]}MB" (decimal)`;
  }
  if (unit === 'ratio' && typeof data === 'number' && data > 1 && data <= 100)
    return `ratios are between 0 and 1: for ${data}% write ${data / 100}`;
  if (unit === 'ratio' && typeof data === 'string' && /^\d+(\.\d+)?%$/.test(data))
    return `ratios are numbers between 0 and 1: for ${data} write ${Number(data.slice(0, -1)) / 100}`;
  return undefined;
}

function nameHint(schema: JsonSchema, data: unknown): string | undefined {
  if (schema['x-unit'] !== 'name' || typeof data !== 'string') return undefined;
  const fixed = data
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return fixed && fixed !== data ? `try "${fixed}"` : undefined;
}

function toProblem(err: ErrorObject): SchemaProblem | undefined {
  const path = pointerToPath(err.instancePath);
  const schema = (err.parentSchema ?? {}) as JsonSchema;
  const data: unknown = err.data;
  const found = describeValue(data);
  switch (err.keyword) {
    case 'additionalProperties': {
      const key = String((err.params as { additionalProperty: string }).additionalProperty);
      if (schema.patternProperties) {
        return {
          rule: 'invalid-key',
          path: [...path, key],
          atKey: true,
          message: `invalid key "${key}"`,
          expected: `keys that are names: ${unitText({ 'x-unit': 'name' })}`,
          found: `"${key}"`,
          ...(nameHint({ 'x-unit': 'name' }, key) !== undefined && {
            hint: nameHint({ 'x-unit': 'name' }, key),
          }),
        };
      }
      const known = Object.keys(schema.properties ?? {});
      const suggestion = closestMatch(key, known);
      return {
        rule: 'unknown-field',
        path: [...path, key],
        atKey: true,
        message: `unknown field "${key}"`,
        expected: known.length ? `one of ${listOr(known)}` : 'no fields here',
        found: `"${key}"`,
        ...(suggestion !== undefined && { hint: `did you mean "${suggestion}"?` }),
      };
    }
    case 'required': {
      const missing = String((err.params as { missingProperty: string }).missingProperty);
      const child = schema.properties?.[missing];
      return {
        rule: 'missing-field',
        path: [...path, missing],
        atKey: false,
        message: `missing required field "${missing}"`,
        expected: child ? `${missing}: ${typeText(child)}` : missing,
        found: 'nothing',
        ...(child?.description !== undefined && { hint: child.description }),
      };
    }
    case 'type':
    case 'pattern':
    case 'x-min':
    case 'x-max': {
      const unit = schema['x-unit'];
      const rule: Rule =
        err.keyword === 'type'
          ? 'wrong-type'
          : unit === 'duration' || unit === 'size'
            ? (`invalid-${unit}` as const)
            : 'invalid-text';
      const outOfRange = err.keyword === 'x-min' || err.keyword === 'x-max';
      const hint = unitHint(schema, data) ?? nameHint(schema, data);
      const expected = err.keyword === 'type' ? typeText(schema) : unitText(schema);
      return {
        rule: outOfRange ? 'out-of-range' : rule,
        path,
        atKey: false,
        message: outOfRange
          ? `${String(data)} is ${err.keyword === 'x-min' ? 'below the minimum' : 'above the maximum'} ${String(schema[err.keyword])}`
          : err.keyword === 'type'
            ? `expected ${shortType(schema)}, found ${typeof data === 'object' ? (Array.isArray(data) ? 'a list' : data === null ? 'null' : 'a mapping') : `a ${typeof data}`}`
            : `not a valid ${unit === 'duration' || unit === 'size' || unit === 'name' ? unit : unit === 'host-port' ? 'address' : 'value'}`,
        expected,
        found,
        ...(hint !== undefined && { hint }),
      };
    }
    case 'enum': {
      const allowed = (schema.enum ?? []).map(String);
      const suggestion = typeof data === 'string' ? closestMatch(data, allowed) : undefined;
      return {
        rule: 'invalid-value',
        path,
        atKey: false,
        // `data` can be any YAML value here (a mapping, a list); never String() it.
        message: `${typeof data === 'string' ? JSON.stringify(data) : describeValue(data)} is not an accepted value`,
        expected: `one of ${listOr(allowed)}`,
        found,
        ...(suggestion !== undefined && { hint: `did you mean "${suggestion}"?` }),
      };
    }
    case 'const': {
      const want = String(schema.const);
      return {
        rule: 'invalid-value',
        path,
        atKey: false,
        message: `expected "${want}"`,
        expected: `"${want}"`,
        found,
      };
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum': {
      const hint = unitHint(schema, data);
      return {
        rule: 'out-of-range',
        path,
        atKey: false,
        message: `${String(data)} is out of range`,
        expected: rangeText(schema),
        found,
        ...(hint !== undefined && { hint }),
      };
    }
    case 'minItems':
    case 'maxItems': {
      const n = (err.params as { limit: number }).limit;
      return {
        rule: 'invalid-length',
        path,
        atKey: false,
        message: `list needs ${err.keyword === 'minItems' ? 'at least' : 'at most'} ${n} item${n === 1 ? '' : 's'}`,
        expected: `${err.keyword === 'minItems' ? 'at least' : 'at most'} ${n} item${n === 1 ? '' : 's'}`,
        found,
      };
    }
    case 'uniqueItems': {
      const { i, j } = err.params as { i: number; j: number };
      return {
        rule: 'duplicate-item',
        path: [...path, Math.max(i, j)],
        atKey: false,
        message: `duplicate list item (same as item ${Math.min(i, j)})`,
        expected: 'each item once',
        found,
      };
    }
    case 'minLength':
    case 'maxLength': {
      const n = (err.params as { limit: number }).limit;
      return {
        rule: 'invalid-length',
        path,
        atKey: false,
        message: err.keyword === 'minLength' ? 'must not be empty' : `longer than ${n} characters`,
        expected:
          err.keyword === 'minLength'
            ? `at least ${n} character${n === 1 ? '' : 's'}`
            : `at most ${n} characters`,
        found: typeof data === 'string' ? `${data.length} characters` : found,
      };
    }
    case 'minProperties':
    case 'maxProperties': {
      const names = Object.keys(schema.properties ?? {});
      return {
        rule: 'invalid-choice',
        path,
        atKey: false,
        message: `set exactly one of ${listOr(names)}`,
        expected: `exactly one of ${listOr(names)}`,
        found: data && typeof data === 'object' ? `${Object.keys(data).length} fields` : found,
      };
    }
    case 'propertyNames':
      // Reported through the nested `pattern` error on the key itself.
      return undefined;
    case 'if':
      // Its consequence (a `required` error) is what the user needs to see.
      return undefined;
    default:
      return { rule: 'invalid', path, atKey: false, message: err.message ?? 'invalid value', found };
  }
}

/** Validates one document against its kind's schema and explains every violation. */
export function validateDocument(kind: Kind, value: unknown): SchemaProblem[] {
  const validate = validators().get(kind);
  if (!validate) throw new Error(`no validator for kind ${kind}`);
  return explain(validate, value);
}

let sharedAjv: Ajv | undefined;

/**
 * A validator for any schema built from the model's primitives (e.g. a process's bootstrap
 * file), explaining violations the same way as resources.
 */
export function compileValidator(schema: object): (value: unknown) => SchemaProblem[] {
  sharedAjv ??= createAjv();
  const validate = sharedAjv.compile(schema);
  return (value) => explain(validate, value);
}

function explain(validate: ValidateFunction, value: unknown): SchemaProblem[] {
  if (validate(value)) return [];
  const problems: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const err of validate.errors ?? []) {
    // A key rejected by `propertyNames` surfaces as a pattern error whose instancePath is the
    // object; the key itself is in params.propertyName.
    const propertyName = (err.params as { propertyName?: string }).propertyName;
    let problem = toProblem(err);
    if (problem && propertyName !== undefined && err.propertyName !== undefined) {
      problem = {
        ...problem,
        path: [...problem.path, propertyName],
        atKey: true,
        found: `the key "${propertyName}"`,
      };
    }
    if (!problem) continue;
    const at = JSON.stringify(problem.path);
    const id = `${at}|${problem.rule}`;
    if (seen.has(id)) continue;
    // A value of the wrong type fails its `enum`/`const` too; the type error says it all.
    if (problem.rule === 'invalid-value' && seen.has(`${at}|wrong-type`)) continue;
    seen.add(id);
    problems.push(problem);
  }
  return problems;
}
