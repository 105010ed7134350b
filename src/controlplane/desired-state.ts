import { IsthmusError } from '../core/errors.js';
import { canonical } from '../model/canonical.js';
import type { AnyResource } from '../model/resources.js';
import type { KvStore } from './store/kv.js';

/**
 * The global control plane's desired state, kept in a KvStore:
 *
 * - `resources/KIND/NAME` — the resource as of its last change, with `version` = the policy
 *   revision that wrote it; a deleted resource stays as a **tombstone** (`deleted`), so a zone
 *   that was away learns about deletions, and nothing deleted comes back.
 * - `revisions/NNNNNNNNNNNN` — one record per applied change set: when, who, from where, and every
 *   resource's before and after (the audit trail and the history `rollback` restores from).
 * - `head` — the latest policy revision. Every write compares it, so two writers (or two global
 *   processes) can never both apply on the same revision.
 *
 * Policy revisions count applied change sets only (1, 2, 3, …); the store's own revision also
 * moves with zone inventory writes and is not exposed.
 */

export interface StoredResource {
  key: string;
  kind: string;
  name: string;
  /** Policy revision of the last change. */
  version: number;
  resource?: AnyResource;
  /** Set on tombstones. */
  deleted?: { atMs: number };
}

export interface Change {
  action: 'create' | 'update' | 'delete';
  key: string;
  kind: string;
  name: string;
  before?: AnyResource;
  after?: AnyResource;
}

export interface RevisionRecord {
  revision: number;
  atMs: number;
  /** Who applied it (user name as given by the client). */
  actor: string;
  /** From where: client address and tool. */
  origin: string;
  message: string;
  /** For a rollback: the revision whose state was restored. */
  rollbackTo?: number;
  changes: Change[];
}

export interface ApplyMeta {
  actor: string;
  origin: string;
  message?: string;
  /** Refuse unless the head is still this revision (optimistic concurrency). */
  baseRevision?: number;
  atMs: number;
}

export type ApplyResult =
  | { ok: true; revision: number; changes: Change[]; unchanged: boolean }
  | { ok: false; conflict: { head: number; base: number } };

const pad = (n: number) => String(n).padStart(12, '0');
export const resourceKey = (r: { kind: string; metadata: { name: string } }) =>
  `${r.kind}/${r.metadata.name}`;
const sameResource = (a: AnyResource, b: AnyResource) =>
  JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

interface Head {
  revision: number;
  atMs: number;
}

export class DesiredState {
  /**
   * The stored resources as of one head write, so an apply or a zone update does not re-read and
   * re-parse the whole desired state. Valid while the head's modRevision is unchanged; a write by
   * another global process sharing the store changes it and the next call reloads.
   */
  #cache: { headModRevision: number; byKey: Map<string, StoredResource> } | undefined;

  constructor(readonly store: KvStore) {}

  async #stored(head: { modRevision: number }): Promise<Map<string, StoredResource>> {
    if (this.#cache?.headModRevision === head.modRevision) return this.#cache.byKey;
    // Read after the head: the data can only be newer than the tag, which at worst costs a reload.
    const byKey = new Map((await this.all()).map((s) => [s.key, s]));
    this.#cache = { headModRevision: head.modRevision, byKey };
    return byKey;
  }

  /** Stored resources in key order, from the cache. */
  async #sorted(head: { modRevision: number }): Promise<StoredResource[]> {
    const byKey = await this.#stored(head);
    return [...byKey.keys()].sort().map((k) => byKey.get(k) as StoredResource);
  }

  async head(): Promise<{ revision: number; modRevision: number }> {
    const h = await this.store.get<Head>('head');
    return { revision: h?.value.revision ?? 0, modRevision: h?.modRevision ?? 0 };
  }

  /** Every stored resource, tombstones included, in key order. */
  async all(): Promise<StoredResource[]> {
    return (await this.store.range<StoredResource>('resources/')).map((e) => e.value);
  }

  /** The live resources at the head. */
  async current(): Promise<{ revision: number; resources: AnyResource[] }> {
    // Read head first: a concurrent apply can only make the resource list newer, never older.
    const head = await this.head();
    const resources = (await this.#sorted(head)).flatMap((s) =>
      s.resource && !s.deleted ? [s.resource] : [],
    );
    return { revision: head.revision, resources };
  }

  /**
   * Makes the live set equal to `resources` (the complete desired state): creates, updates and
   * deletes as needed, in one atomic write. Applying an identical set writes nothing.
   */
  async apply(
    resources: readonly AnyResource[],
    meta: ApplyMeta & { rollbackTo?: number },
  ): Promise<ApplyResult> {
    const seen = new Set<string>();
    for (const r of resources) {
      const key = resourceKey(r);
      if (seen.has(key)) throw new IsthmusError('ISTHMUS_E_INVALID_RESOURCE', `${key} is given twice`);
      seen.add(key);
    }
    const head = await this.head();
    if (meta.baseRevision !== undefined && meta.baseRevision !== head.revision)
      return { ok: false, conflict: { head: head.revision, base: meta.baseRevision } };
    const stored = await this.#stored(head);
    const revision = head.revision + 1;
    const changes: Change[] = [];
    const puts: { key: string; value: unknown }[] = [];
    for (const r of resources) {
      const key = resourceKey(r);
      const old = stored.get(key);
      const live = old?.resource && !old.deleted ? old.resource : undefined;
      if (live && sameResource(live, r)) continue;
      changes.push({
        action: live ? 'update' : 'create',
        key,
        kind: r.kind,
        name: r.metadata.name,
        ...(live && { before: live }),
        after: r,
      });
      puts.push({
        key: `resources/${key}`,
        value: {
          key,
          kind: r.kind,
          name: r.metadata.name,
          version: revision,
          resource: r,
        } satisfies StoredResource,
      });
    }
    for (const [key, old] of stored) {
      if (seen.has(key) || old.deleted || !old.resource) continue;
      changes.push({ action: 'delete', key, kind: old.kind, name: old.name, before: old.resource });
      puts.push({
        key: `resources/${key}`,
        value: {
          key,
          kind: old.kind,
          name: old.name,
          version: revision,
          deleted: { atMs: meta.atMs },
        } satisfies StoredResource,
      });
    }
    if (changes.length === 0) return { ok: true, revision: head.revision, changes, unchanged: true };
    const record: RevisionRecord = {
      revision,
      atMs: meta.atMs,
      actor: meta.actor,
      origin: meta.origin,
      message: meta.message ?? '',
      ...(meta.rollbackTo !== undefined && { rollbackTo: meta.rollbackTo }),
      changes,
    };
    const result = await this.store.txn({
      compare: [{ key: 'head', modRevision: head.modRevision }],
      put: [
        { key: 'head', value: { revision, atMs: meta.atMs } satisfies Head },
        { key: `revisions/${pad(revision)}`, value: record },
        ...puts,
      ],
    });
    if (!result.ok) {
      const now = await this.head();
      return { ok: false, conflict: { head: now.revision, base: head.revision } };
    }
    // The head was written by this transaction: its modRevision is the transaction's revision.
    for (const p of puts) {
      const value = p.value as StoredResource;
      stored.set(value.key, value);
    }
    this.#cache = { headModRevision: result.revision, byKey: stored };
    return { ok: true, revision, changes, unchanged: false };
  }

  /** Revision records, newest first. */
  async history(options: { limit?: number } = {}): Promise<RevisionRecord[]> {
    const all = (await this.store.range<RevisionRecord>('revisions/')).map((e) => e.value);
    all.reverse();
    return options.limit !== undefined ? all.slice(0, options.limit) : all;
  }

  async revision(n: number): Promise<RevisionRecord | undefined> {
    return (await this.store.get<RevisionRecord>(`revisions/${pad(n)}`))?.value;
  }

  /** The live set as it was right after revision `n` (0: empty). */
  async stateAt(n: number): Promise<AnyResource[]> {
    const head = await this.head();
    if (!Number.isInteger(n) || n < 0 || n > head.revision)
      throw new IsthmusError(
        'ISTHMUS_E_NOT_FOUND',
        `revision ${n} does not exist; the latest is ${head.revision}`,
      );
    const state = new Map<string, AnyResource>();
    for (const e of await this.store.range<RevisionRecord>('revisions/')) {
      if (e.value.revision > n) break;
      for (const c of e.value.changes) {
        if (c.after) state.set(c.key, c.after);
        else state.delete(c.key);
      }
    }
    return [...state.values()];
  }

  /**
   * What a follower at `sinceRevision` needs to reach the head: every resource changed after it,
   * live ones as upserts and tombstones as deletes. `sinceRevision` 0 (or one from another
   * history, i.e. newer than the head) gets the complete set.
   */
  async changesSince(sinceRevision: number): Promise<{
    revision: number;
    base: number;
    upserts: { key: string; version: number; resource: AnyResource }[];
    deletes: { key: string; version: number }[];
  }> {
    const head = await this.head();
    const { revision } = head;
    const all = await this.#sorted(head);
    const full = sinceRevision <= 0 || sinceRevision > revision;
    const base = full ? 0 : sinceRevision;
    const upserts: { key: string; version: number; resource: AnyResource }[] = [];
    const deletes: { key: string; version: number }[] = [];
    for (const s of all) {
      if (s.version > revision) continue; // written after we read the head: the next update carries it
      if (!full && s.version <= base) continue;
      if (s.deleted || !s.resource) {
        if (!full) deletes.push({ key: s.key, version: s.version });
      } else upserts.push({ key: s.key, version: s.version, resource: s.resource });
    }
    return { revision, base, upserts, deletes };
  }
}
