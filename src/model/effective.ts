import type { Position } from './diagnostics.js';
import type { LoadedResource } from './load.js';
import { getIn, leavesOf, setIn, type JsonSchema } from './schema-walk.js';

/**
 * Policy levels, least specific first. For traffic: built-in defaults < the Mesh resource's
 * `spec.defaults` < policies targeting the whole mesh < a service < a route. Partition policies
 * use `region` in place of `service`; there is no level past it.
 */
export const LEVELS = ['builtin', 'mesh-defaults', 'mesh', 'region', 'service', 'route'] as const;
export type Level = (typeof LEVELS)[number];

/** Where an effective value came from. */
export type Origin =
  | { level: 'builtin' }
  | ({ level: Exclude<Level, 'builtin'>; resource: string; fieldPath: string } & Position);

/** One set of settings at one level, and where its fields sit inside its resource. */
export interface Layer {
  level: Level;
  settings: Record<string, unknown>;
  /** The resource the settings come from (absent for built-in defaults). */
  source?: LoadedResource;
  /** Path from the resource root to the settings object, e.g. `['spec']` or `['spec','defaults','traffic']`. */
  basePath: readonly string[];
}

export interface Effective<T> {
  value: T;
  /** Origin of every leaf, keyed by its dotted path within the settings (`retries.maxAttempts`). */
  origins: Map<string, Origin>;
}

export function originOf(layer: Layer, leafPath: readonly string[]): Origin {
  if (!layer.source || layer.level === 'builtin') return { level: 'builtin' };
  const full = [...layer.basePath, ...leafPath];
  const { kind, metadata } = layer.source.resource;
  return {
    level: layer.level,
    resource: `${kind}/${metadata.name}`,
    fieldPath: full.join('.'),
    ...layer.source.locate(full, true),
  };
}

/**
 * Merges layers leaf by leaf: for each leaf of the schema, the most specific layer that sets it
 * wins. Lists and maps are leaves: a policy that sets `retryOn` replaces the whole list.
 */
export function mergeLayers<T>(schema: JsonSchema, layers: readonly Layer[]): Effective<T> {
  const value: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  for (const leaf of leavesOf(schema)) {
    for (let i = layers.length - 1; i >= 0; i--) {
      const layer = layers[i] as Layer;
      const v = getIn(layer.settings, leaf.path);
      if (v === undefined) continue;
      setIn(value, leaf.path, structuredClone(v));
      origins.set(leaf.path.join('.'), originOf(layer, leaf.path));
      break;
    }
  }
  return { value: value as T, origins };
}

/** A policy's settings: its spec without `targetRef`. */
export function settingsOfPolicy(spec: Record<string, unknown>): Record<string, unknown> {
  const { targetRef: _targetRef, ...settings } = spec;
  return settings;
}

export function describeOrigin(origin: Origin | undefined): string {
  if (!origin || origin.level === 'builtin') return 'built-in default';
  return `${origin.resource} (${origin.file}:${origin.line}:${origin.col})`;
}
