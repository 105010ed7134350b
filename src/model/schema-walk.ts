/**
 * Walks the settings schemas. A "section" is an object schema with named properties; everything
 * else (scalars, lists, maps) is a leaf, and leaves are the unit of merging and of documentation:
 * a more specific policy replaces a leaf whole, lists included.
 */
export interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  additionalProperties?: boolean | JsonSchema;
  patternProperties?: Record<string, JsonSchema>;
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  uniqueItems?: boolean;
  required?: string[];
  'x-unit'?: 'duration' | 'size' | 'ratio' | 'name' | 'host-port';
  'x-min'?: string;
  'x-max'?: string;
  [key: string]: unknown;
}

export interface Leaf {
  path: readonly string[];
  schema: JsonSchema;
}

export function isSection(schema: JsonSchema): boolean {
  return (
    schema.type === 'object' && schema.properties !== undefined && schema.patternProperties === undefined
  );
}

const leafCache = new WeakMap<JsonSchema, readonly Leaf[]>();

/**
 * The leaves (non-section fields) below `schema`, depth first. Cached per schema object: merging
 * walks the same schema for every service and route of a mesh.
 */
export function leavesOf(schema: JsonSchema, prefix: readonly string[] = []): readonly Leaf[] {
  if (prefix.length === 0) {
    let cached = leafCache.get(schema);
    if (!cached) {
      cached = Object.freeze(collectLeaves(schema, []));
      leafCache.set(schema, cached);
    }
    return cached;
  }
  return collectLeaves(schema, prefix);
}

function collectLeaves(schema: JsonSchema, prefix: readonly string[]): Leaf[] {
  const out: Leaf[] = [];
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    const path = [...prefix, key];
    if (isSection(child)) out.push(...collectLeaves(child, path));
    else out.push({ path, schema: child });
  }
  return out;
}

/** The sections (with their paths) below `schema`, depth first, parents before children. */
export function sectionsOf(schema: JsonSchema, prefix: readonly string[] = []): Leaf[] {
  const out: Leaf[] = [];
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    if (!isSection(child)) continue;
    const path = [...prefix, key];
    out.push({ path, schema: child }, ...sectionsOf(child, path));
  }
  return out;
}

export function getIn(value: unknown, path: readonly (string | number)[]): unknown {
  let cur: unknown = value;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

export function setIn(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = target;
  for (const seg of path.slice(0, -1)) {
    let next = cur[seg];
    if (next === undefined) {
      next = {};
      cur[seg] = next;
    }
    cur = next as Record<string, unknown>;
  }
  cur[path[path.length - 1] as string] = value;
}

/** The built-in default settings: every leaf's `default`, assembled into a complete object. */
export function defaultsOf(schema: JsonSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const leaf of leavesOf(schema)) setIn(out, leaf.path, structuredClone(leaf.schema.default));
  return out;
}

/** `spec.retries[0].maxAttempts` style rendering of a path. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}
