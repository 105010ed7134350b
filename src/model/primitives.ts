import {
  Type,
  type TSchema,
  type TString,
  type TNumber,
  type TInteger,
  type TBoolean,
  type TOptional,
} from '@sinclair/typebox';
import { DURATION_PATTERN, SIZE_PATTERN } from '../core/units.js';

/**
 * Schema building blocks. Every leaf of a policy carries a `description` and, inside policy
 * settings, a `default`: docs/policies.md and the JSON Schema are generated from these, so the
 * schema is the one place a field is defined. Custom annotations (ignored by editors, enforced by
 * the validator): `x-unit` says how a string is read, `x-min`/`x-max` bound durations and sizes.
 */

/** DNS-1123 label: what Kubernetes, DNS and Prometheus labels all accept. */
export const NAME_PATTERN = '^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$';
export const NAME_MAX_LENGTH = 63;

export interface LeafOptions<T> {
  description: string;
  default?: T;
}

export function Name(description: string): TString {
  return Type.String({ pattern: NAME_PATTERN, maxLength: NAME_MAX_LENGTH, description, 'x-unit': 'name' });
}

export function Duration(options: LeafOptions<string> & { min?: string; max?: string }): TString {
  const { min, max, ...rest } = options;
  return Type.String({
    ...rest,
    pattern: DURATION_PATTERN,
    'x-unit': 'duration',
    ...(min !== undefined && { 'x-min': min }),
    ...(max !== undefined && { 'x-max': max }),
  });
}

export function Size(options: LeafOptions<string> & { min?: string; max?: string }): TString {
  const { min, max, ...rest } = options;
  return Type.String({
    ...rest,
    pattern: SIZE_PATTERN,
    'x-unit': 'size',
    ...(min !== undefined && { 'x-min': min }),
    ...(max !== undefined && { 'x-max': max }),
  });
}

/** A share between 0 and 1 inclusive (never a percentage). */
export function Ratio(options: LeafOptions<number>): TNumber {
  return Type.Number({ ...options, minimum: 0, maximum: 1, 'x-unit': 'ratio' });
}

export function Int(options: LeafOptions<number> & { minimum: number; maximum: number }): TInteger {
  return Type.Integer(options);
}

export function Num(options: LeafOptions<number> & { minimum: number; maximum: number }): TNumber {
  return Type.Number(options);
}

export function Bool(options: LeafOptions<boolean>): TBoolean {
  return Type.Boolean(options);
}

/** A string enum as a plain JSON Schema `enum` (clearer validation errors than a union of consts). */
export function OneOf<const T extends readonly string[]>(values: T, options: LeafOptions<T[number]>) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A string with no unit (free text, paths, hosts). */
export function Text(
  options: LeafOptions<string> & { pattern?: string; maxLength?: number; minLength?: number },
) {
  return Type.String(options);
}

/**
 * A settings section: every property optional (a policy sets only what it changes), unknown
 * properties rejected.
 */
export function Section<P extends Record<string, TSchema>>(description: string, properties: P) {
  const optional = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, Type.Optional(v)])) as {
    [K in keyof P]: TOptional<P[K]>;
  };
  return Type.Object(optional, { additionalProperties: false, description });
}
