import type { AnyResource } from './resources.js';
import { formatPath } from './schema-walk.js';

/** A field that differs between two versions of a resource. */
export interface FieldChange {
  /** `spec.retries.maxAttempts`, `spec.ports[name=http].port`. */
  path: string;
  /** Absent when the field was added. */
  old?: unknown;
  /** Absent when the field was removed. */
  new?: unknown;
}

export interface ResourceChange {
  op: 'add' | 'remove' | 'change';
  kind: string;
  name: string;
  /** For `change`: the fields that differ. */
  fields: FieldChange[];
}

export interface MeshDiff {
  changes: ResourceChange[];
  summary: { add: number; remove: number; change: number };
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function isNamedList(v: unknown): v is { name: string }[] {
  return (
    Array.isArray(v) &&
    v.length > 0 &&
    v.every((item) => isRecord(item) && typeof item.name === 'string') &&
    new Set(v.map((item) => (item as { name: string }).name)).size === v.length
  );
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (isRecord(a) && isRecord(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && equal(a[k], b[k]));
  }
  return false;
}

/**
 * Field-level differences. Mappings are compared key by key; lists whose items all have a unique
 * `name` are matched by name (so reordering or inserting a route is not a change to every
 * route after it); other lists are values compared whole.
 */
export function diffValues(oldValue: unknown, newValue: unknown, path: string[] = []): FieldChange[] {
  if (equal(oldValue, newValue)) return [];
  const at = (seg: string) => [...path, seg];
  const render = (p: string[]) =>
    p.reduce((acc, seg) => (seg.startsWith('[') ? acc + seg : acc ? `${acc}.${seg}` : seg), '');
  if (isRecord(oldValue) && isRecord(newValue)) {
    const keys = [...new Set([...Object.keys(oldValue), ...Object.keys(newValue)])];
    return keys.flatMap((k) => {
      const key = formatPath([k]);
      if (!(k in newValue)) return [{ path: render(at(key)), old: oldValue[k] }];
      if (!(k in oldValue)) return [{ path: render(at(key)), new: newValue[k] }];
      return diffValues(oldValue[k], newValue[k], at(key));
    });
  }
  if (isNamedList(oldValue) && isNamedList(newValue)) {
    const oldByName = new Map(oldValue.map((i) => [i.name, i]));
    const newByName = new Map(newValue.map((i) => [i.name, i]));
    const changes: FieldChange[] = [];
    for (const [name, item] of oldByName) {
      const seg = `[name=${name}]`;
      if (!newByName.has(name)) changes.push({ path: render(at(seg)), old: item });
      else changes.push(...diffValues(item, newByName.get(name), at(seg)));
    }
    for (const [name, item] of newByName)
      if (!oldByName.has(name)) changes.push({ path: render(at(`[name=${name}]`)), new: item });
    const oldOrder = oldValue.map((i) => i.name).filter((n) => newByName.has(n));
    const newOrder = newValue.map((i) => i.name).filter((n) => oldByName.has(n));
    if (!equal(oldOrder, newOrder))
      changes.push({ path: `${render(path)} (order)`, old: oldOrder, new: newOrder });
    return changes;
  }
  return [{ path: render(path), old: oldValue, new: newValue }];
}

const idOf = (r: AnyResource) => `${r.kind}/${r.metadata.name}`;

/** The plan from `before` to `after`: resources added, removed and changed, in a stable order. */
export function diffMeshes(before: readonly AnyResource[], after: readonly AnyResource[]): MeshDiff {
  const oldById = new Map(before.map((r) => [idOf(r), r]));
  const newById = new Map(after.map((r) => [idOf(r), r]));
  const ids = [...new Set([...oldById.keys(), ...newById.keys()])].sort();
  const changes: ResourceChange[] = [];
  for (const id of ids) {
    const o = oldById.get(id);
    const n = newById.get(id);
    const [kind, name] = id.split('/') as [string, string];
    if (!o && n) changes.push({ op: 'add', kind, name, fields: [] });
    else if (o && !n) changes.push({ op: 'remove', kind, name, fields: [] });
    else if (o && n) {
      const { apiVersion: _a, kind: _k, ...oldRest } = o;
      const { apiVersion: _b, kind: _l, ...newRest } = n;
      const fields = diffValues(oldRest, newRest);
      if (fields.length > 0) changes.push({ op: 'change', kind, name, fields });
    }
  }
  const count = (op: ResourceChange['op']) => changes.filter((c) => c.op === op).length;
  return { changes, summary: { add: count('add'), remove: count('remove'), change: count('change') } };
}
