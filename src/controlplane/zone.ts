import { createHash, randomUUID } from 'node:crypto';
import os from 'node:os';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { systemClock, type Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import { parseDurationMs } from '../core/units.js';
import { MeshIndex } from '../model/mesh.js';
import type { AnyResource } from '../model/resources.js';
import { validateDocuments } from '../model/validate.js';
import type {
  EndpointRecord,
  Inventories,
  PolicyUpdate,
  ServerMessage,
  Snapshot,
} from '../protocol/messages.js';
import { PROTOCOL_VERSION } from '../protocol/messages.js';
import { diffSnapshots } from '../protocol/snapshot-delta.js';
import { StreamClient, StreamServer, type ServerSession } from '../protocol/stream.js';
import { Stats } from '../dataplane/stats.js';
import { ZONE_STREAM_PATH } from './global.js';
import { ApiError, createApiServer, listen, methodNotAllowed, sendJson, sendText } from './http-api.js';
import type { KvStore } from './store/kv.js';

/** Where a zone serves its proxies and gateways. */
export const PROXY_STREAM_PATH = '/v1/stream';
const DEFAULT_LEASE_TTL_MS = 15_000;

export interface ZoneOptions {
  region: string;
  /** Base URLs of global control planes (`http://HOST:PORT`); empty runs the zone standalone. */
  globalUrls: readonly string[];
  store: KvStore;
  /** HOST:PORT for the API and the proxy streams. */
  listen: string;
  id?: string;
  /** Heartbeat interval on proxy streams, ms (default 1000). */
  heartbeatIntervalMs?: number;
  /** Delay that coalesces bursts of changes into one snapshot, ms (default 10). */
  coalesceMs?: number;
  clock?: Clock;
  random?: Random;
  log?: (event: Record<string, unknown>) => void;
}

interface PolicyState {
  revision: number;
  resources: Record<string, { version: number; resource: AnyResource }>;
  /** Deleted keys with the revision that deleted them: a delta can never bring them back. */
  tombstones: Record<string, number>;
}

interface Registration {
  id: string;
  endpoint: EndpointRecord;
  node: string;
  registeredAtMs: number;
  /**
   * Wall-clock ms when the lease ran out as of the last write of this record. The live lease is
   * per node (`#leases`): every frame from a node renews all its registrations at once.
   */
  expiresAtMs: number;
}

type RemoteRecord = Inventories['regions'][number] & { receivedAtMs: number };

interface ProxySession {
  session: ServerSession;
  kind: 'sidecar' | 'gateway';
  node: string;
  sent: string | undefined;
  /** Whether `sent` went out as a delta (a NACK of it asks for the complete snapshot). */
  sentDelta: boolean;
  acked: string | undefined;
  nack: { version: string; reason: string; details: string[]; atMs: number } | undefined;
}

/** A snapshot as built once for all proxies of a kind, with the delta from the previous one. */
interface BuiltSnapshot {
  version: string;
  text: Buffer;
  snapshot: Snapshot;
  /** The snapshot built before this one, while a delta from it may be needed. */
  previous: BuiltSnapshot | undefined;
  /** The delta from `previous`, serialised once when first needed. */
  delta: Buffer | undefined;
}

const registrationId = (e: { service: string; address: string; port: number }) =>
  `${e.service}@${e.address}:${e.port}`;

/**
 * `isthmus zone`: its region's endpoint inventory (registrations with leases), snapshots for the
 * region's proxies and gateways, and the link to global. Everything it serves is persisted, so a
 * zone restarted while global is unreachable serves what it had.
 */
export class ZoneControlPlane {
  readonly id: string;
  readonly region: string;
  readonly stats: Stats;
  address = '';
  readonly #options: ZoneOptions;
  readonly #clock: Clock;
  readonly #store: KvStore;
  #epoch = '';
  #inventoryRevision = 0;
  #policy: PolicyState = { revision: 0, resources: {}, tombstones: {} };
  #mesh: MeshIndex = new MeshIndex([]);
  readonly #remote = new Map<string, RemoteRecord>();
  readonly #registrations = new Map<string, Registration>();
  readonly #proxies = new Set<ProxySession>();
  #lastGlobalContactAtMs = 0;
  #global: StreamClient | undefined;
  #server!: Server;
  #streams!: StreamServer;
  #snapshotTimer: NodeJS.Timeout | undefined;
  #inventoryTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #snapshots: { sidecar: BuiltSnapshot; gateway: BuiltSnapshot } | undefined;
  #droppedRegions = '';
  #leaseDirty = false;
  #leaseTtlMs = DEFAULT_LEASE_TTL_MS;
  /** Registration ids by the node (proxy) that made them, for lease renewal on every frame. */
  readonly #byNode = new Map<string, Set<string>>();
  /** Lease expiry (wall-clock ms) per node that registered something. */
  readonly #leases = new Map<string, number>();
  /** Registration changes not yet written; flushed together in one transaction. */
  readonly #pendingPuts = new Map<string, Registration>();
  readonly #pendingDeletes = new Set<string>();
  #flushScheduled = false;
  #lastPersistMs = 0;
  #lastNack: { revision: number; reason: string; atMs: number } | undefined;
  #work: Promise<void> = Promise.resolve();

  private constructor(options: ZoneOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#store = options.store;
    this.region = options.region;
    this.id = options.id ?? `${options.region}-${os.hostname()}-${randomUUID().slice(0, 8)}`;
    this.stats = new Stats({ role: 'zone', region: options.region });
  }

  static async start(options: ZoneOptions): Promise<ZoneControlPlane> {
    const zone = new ZoneControlPlane(options);
    await zone.#start();
    return zone;
  }

  #log(event: Record<string, unknown>): void {
    this.#options.log?.({ ts: new Date(this.#clock.now()).toISOString(), zone: this.id, ...event });
  }

  /** Runs state changes one at a time (stream callbacks arrive concurrently). */
  #serial(task: () => Promise<void> | void): Promise<void> {
    const next = this.#work.then(task).catch((err: Error) => {
      this.#log({ event: 'zone-task-failed', error: err.stack ?? err.message });
    });
    this.#work = next;
    return next;
  }

  async #start(): Promise<void> {
    await this.#loadState();
    this.#server = createApiServer(
      (req, res, url) => this.#route(req, res, url),
      (e) => this.#log(e),
    );
    this.#streams = new StreamServer({
      server: this.#server,
      path: PROXY_STREAM_PATH,
      info: { id: this.id, role: 'zone', region: this.region },
      heartbeatIntervalMs: this.#options.heartbeatIntervalMs ?? 1000,
      leaseTtlMs: this.leaseTtlMs,
      roles: ['proxy', 'gateway'],
      clock: this.#clock,
      onSession: (s) => this.#onProxy(s),
      log: (e) => this.#log(e),
    });
    this.address = await listen(this.#server, this.#options.listen);
    this.#rebuildSnapshots();
    if (this.#options.globalUrls.length > 0) {
      this.#global = new StreamClient({
        urls: this.#options.globalUrls.map(
          (u) => `${u.replace(/^http/, 'ws').replace(/\/+$/, '')}${ZONE_STREAM_PATH}`,
        ),
        hello: () => ({
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          node: { id: this.id, role: 'zone', locality: this.region },
          ...(this.#policy.revision > 0 && { resume: { version: String(this.#policy.revision) } }),
        }),
        onWelcome: () => {
          this.#touchGlobal();
          this.#pushInventory();
        },
        onMessage: (m) => this.#onGlobal(m),
        onState: (s) => {
          this.#log({
            event: s.connected ? 'global-connected' : 'global-disconnected',
            url: s.url,
            error: s.lastError,
          });
          this.#scheduleSnapshot();
        },
        clock: this.#clock,
        ...(this.#options.random && { random: this.#options.random }),
        log: (e) => this.#log(e),
      }).start();
    }
    const sweepMs = Math.max(100, Math.min(1000, this.leaseTtlMs / 4));
    this.#sweepTimer = setInterval(() => void this.#serial(() => this.sweep()), sweepMs);
    this.#sweepTimer.unref();
    this.#log({ event: 'zone-started', address: this.address, policyRevision: this.#policy.revision });
  }

  async #loadState(): Promise<void> {
    const meta = await this.#store.get<{ epoch: string; inventoryRevision: number }>('meta');
    if (meta) {
      this.#epoch = meta.value.epoch;
      this.#inventoryRevision = meta.value.inventoryRevision;
    } else {
      this.#epoch = randomUUID();
      await this.#store.txn({ put: [{ key: 'meta', value: { epoch: this.#epoch, inventoryRevision: 0 } }] });
    }
    const policy = await this.#store.get<PolicyState>('policy');
    if (policy) this.#setPolicy(policy.value);
    for (const e of await this.#store.range<RemoteRecord>('remote/'))
      this.#remote.set(e.value.region, e.value);
    const contact = await this.#store.get<{ atMs: number }>('global-contact');
    this.#lastGlobalContactAtMs = contact?.value.atMs ?? 0;
    // Registrations survive a restart; each gets a fresh lease so its proxy has time to reconnect.
    const now = this.#clock.now();
    for (const e of await this.#store.range<Registration>('registrations/')) {
      this.#remember(e.value);
      this.#leases.set(
        e.value.node,
        Math.max(this.#leases.get(e.value.node) ?? 0, e.value.expiresAtMs, now + this.leaseTtlMs),
      );
    }
  }

  #setPolicy(policy: PolicyState): void {
    this.#policy = policy;
    const resources = Object.values(policy.resources).map((r) => ({
      resource: r.resource,
      file: `global@${policy.revision}`,
      docIndex: 0,
      locate: () => ({ file: `global@${policy.revision}`, line: 1, col: 1 }),
    }));
    this.#mesh = new MeshIndex(resources);
    // Read on every frame from a proxy: merged once per policy change.
    this.#leaseTtlMs = parseDurationMs(this.#mesh.partition(this.region).value.leaseTtl);
  }

  get leaseTtlMs(): number {
    return this.#leaseTtlMs;
  }

  get policyRevision(): number {
    return this.#policy.revision;
  }

  // ---- global ---------------------------------------------------------------------------------

  #touchGlobal(): void {
    this.#lastGlobalContactAtMs = this.#clock.now();
    this.#leaseDirty = true;
  }

  #onGlobal(m: ServerMessage): void {
    this.#touchGlobal();
    switch (m.type) {
      case 'policy':
        void this.#serial(() => this.#applyPolicy(m));
        break;
      case 'inventories':
        void this.#serial(() => this.#receiveInventories(m));
        break;
      case 'inventory-ack':
        this.#log({ event: 'inventory-acked', revision: m.revision });
        break;
      case 'heartbeat':
        break;
      default:
        this.#log({ event: 'unexpected-message', from: 'global', type: m.type });
    }
  }

  async #applyPolicy(update: PolicyUpdate): Promise<void> {
    const version = String(update.revision);
    if (update.revision <= this.#policy.revision && update.base !== 0) {
      this.#global?.send({ type: 'ack', version: String(this.#policy.revision) });
      return;
    }
    if (update.base !== 0 && update.base !== this.#policy.revision) {
      this.#global?.send({
        type: 'nack',
        version,
        reason: `the update applies on revision ${update.base} but this zone is at ${this.#policy.revision}; send the complete set`,
      });
      return;
    }
    const next: PolicyState = {
      revision: update.revision,
      resources: update.base === 0 ? {} : { ...this.#policy.resources },
      tombstones: update.base === 0 ? {} : { ...this.#policy.tombstones },
    };
    for (const u of update.upserts) {
      next.resources[u.key] = { version: u.version, resource: u.resource as unknown as AnyResource };
      delete next.tombstones[u.key];
    }
    for (const d of update.deletes) {
      delete next.resources[d.key];
      next.tombstones[d.key] = d.version;
    }
    const validation = validateDocuments(
      Object.values(next.resources).map((r) => r.resource),
      `global@${update.revision}`,
    );
    if (!validation.ok) {
      const details = validation.diagnostics
        .filter((d) => d.severity === 'error')
        .slice(0, 20)
        .map((d) => `${d.resource ?? ''} ${d.path ?? ''}: ${d.message}`.trim());
      this.#lastNack = {
        revision: update.revision,
        reason: `${validation.errors} validation error(s)`,
        atMs: this.#clock.now(),
      };
      this.stats.inc('isthmus_zone_policy_rejected_total', 'Policy updates from global this zone refused.');
      this.#log({ event: 'policy-rejected', revision: update.revision, details });
      this.#global?.send({
        type: 'nack',
        version,
        reason: `${validation.errors} validation error(s)`,
        details,
      });
      return;
    }
    await this.#store.txn({ put: [{ key: 'policy', value: next }] });
    this.#setPolicy(next);
    this.#lastNack = undefined;
    this.#global?.send({ type: 'ack', version });
    this.#log({
      event: 'policy-applied',
      revision: update.revision,
      resources: Object.keys(next.resources).length,
    });
    this.#rebuildSnapshots();
  }

  async #receiveInventories(m: Inventories): Promise<void> {
    const now = this.#clock.now();
    const puts: { key: string; value: unknown }[] = [];
    const seen = new Set<string>();
    for (const r of m.regions) {
      if (r.region === this.region) continue;
      seen.add(r.region);
      const old = this.#remote.get(r.region);
      // An unchanged inventory keeps its endpoint objects: snapshot deltas compare by identity first.
      const same = old && old.epoch === r.epoch && old.revision === r.revision;
      const record: RemoteRecord = { ...r, endpoints: same ? old.endpoints : r.endpoints, receivedAtMs: now };
      this.#remote.set(r.region, record);
      if (!old || old.epoch !== r.epoch || old.revision !== r.revision || old.connected !== r.connected)
        puts.push({ key: `remote/${r.region}`, value: record });
    }
    // Global's list is complete: a region it no longer knows is gone.
    const deletes = [...this.#remote.keys()].filter((r) => !seen.has(r));
    for (const r of deletes) this.#remote.delete(r);
    if (puts.length > 0 || deletes.length > 0)
      await this.#store.txn({ put: puts, delete: deletes.map((r) => `remote/${r}`) });
    this.#scheduleSnapshot();
  }

  #inventory(): EndpointRecord[] {
    return [...this.#registrations.values()]
      .map((r) => r.endpoint)
      .sort((a, b) => registrationId(a).localeCompare(registrationId(b)));
  }

  #pushInventory(): void {
    if (this.#inventoryTimer) return;
    this.#inventoryTimer = setTimeout(() => {
      this.#inventoryTimer = undefined;
      this.#global?.send({
        type: 'inventory',
        region: this.region,
        epoch: this.#epoch,
        revision: this.#inventoryRevision,
        generatedAtMs: this.#clock.now(),
        endpoints: this.#inventory(),
      });
    }, this.#options.coalesceMs ?? 10);
    this.#inventoryTimer.unref();
  }

  #remember(reg: Registration): void {
    const old = this.#registrations.get(reg.id);
    if (old && old.node !== reg.node) this.#byNode.get(old.node)?.delete(reg.id);
    this.#registrations.set(reg.id, reg);
    let ids = this.#byNode.get(reg.node);
    if (!ids) this.#byNode.set(reg.node, (ids = new Set()));
    ids.add(reg.id);
  }

  #forget(id: string): Registration | undefined {
    const reg = this.#registrations.get(id);
    if (!reg) return undefined;
    this.#registrations.delete(id);
    const ids = this.#byNode.get(reg.node);
    ids?.delete(id);
    if (ids?.size === 0) this.#byNode.delete(reg.node);
    return reg;
  }

  /**
   * Records an inventory change in memory at once and persists it with others made in the same
   * turn: one transaction and one new inventory revision per burst (hundreds of proxies
   * registering after a zone restart cost one fsync, not hundreds).
   */
  #inventoryChanged(puts: Registration[], deletes: string[]): void {
    for (const r of puts) {
      this.#pendingPuts.set(r.id, r);
      this.#pendingDeletes.delete(r.id);
    }
    for (const id of deletes) {
      this.#pendingPuts.delete(id);
      this.#pendingDeletes.add(id);
    }
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.#serial(() => this.#flushInventory());
    });
  }

  async #flushInventory(): Promise<void> {
    if (this.#pendingPuts.size === 0 && this.#pendingDeletes.size === 0) return;
    const puts = [...this.#pendingPuts.values()].map((r) => ({ key: `registrations/${r.id}`, value: r }));
    const deletes = [...this.#pendingDeletes].map((id) => `registrations/${id}`);
    this.#pendingPuts.clear();
    this.#pendingDeletes.clear();
    this.#inventoryRevision++;
    await this.#store.txn({
      put: [
        ...puts,
        { key: 'meta', value: { epoch: this.#epoch, inventoryRevision: this.#inventoryRevision } },
      ],
      delete: deletes,
    });
    this.#pushInventory();
    this.#scheduleSnapshot();
  }

  // ---- proxies --------------------------------------------------------------------------------

  #onProxy(session: ServerSession): void {
    const node = session.hello.node;
    const region = node.locality.split('/')[0];
    if (region !== this.region) {
      session.fail(
        'ISTHMUS_E_PROTOCOL',
        `${node.id} is in region ${region}; this zone serves region ${this.region}`,
      );
      return;
    }
    const p: ProxySession = {
      session,
      kind: node.role === 'gateway' ? 'gateway' : 'sidecar',
      node: node.id,
      sent: session.hello.resume?.version,
      sentDelta: false,
      acked: session.hello.resume?.version,
      nack: undefined,
    };
    this.#proxies.add(p);
    this.#log({ event: 'proxy-connected', node: node.id, role: node.role, resume: p.acked });
    session.onMessage((m) => {
      this.#renew(p.node);
      switch (m.type) {
        case 'register':
          this.#register(p, m.endpoint);
          break;
        case 'deregister':
          this.#deregister(registrationId(m));
          break;
        case 'ack':
          p.acked = m.version;
          if (p.nack?.version === m.version) p.nack = undefined;
          break;
        case 'nack':
          p.nack = {
            version: m.version,
            reason: m.reason,
            details: m.details ?? [],
            atMs: this.#clock.now(),
          };
          this.stats.inc('isthmus_zone_proxy_nacks_total', 'Snapshots a proxy refused.');
          this.#log({ event: 'proxy-nack', node: p.node, version: m.version, reason: m.reason });
          // A delta it could not use (it lacks the base): send the complete snapshot instead.
          if (p.sentDelta && p.sent === m.version) {
            p.sent = undefined;
            this.#sendSnapshot(p);
          }
          break;
        case 'heartbeat':
          break;
        default:
          session.fail('ISTHMUS_E_PROTOCOL', `a proxy does not send "${m.type}" to its zone`);
      }
    });
    session.onClose((reason) => {
      this.#proxies.delete(p);
      this.#log({ event: 'proxy-disconnected', node: p.node, reason });
    });
    this.#sendSnapshot(p);
  }

  /** Any frame from a node renews the lease of everything it registered: O(1) per frame. */
  #renew(node: string): void {
    if (this.#leases.has(node)) this.#leases.set(node, this.#clock.now() + this.#leaseTtlMs);
  }

  #register(p: ProxySession, endpoint: EndpointRecord): void {
    const region = endpoint.locality.split('/')[0];
    if (region !== this.region) {
      p.session.fail(
        'ISTHMUS_E_PROTOCOL',
        `cannot register ${registrationId(endpoint)} in region ${region} with the zone of region ${this.region}`,
      );
      return;
    }
    const id = registrationId(endpoint);
    const now = this.#clock.now();
    const old = this.#registrations.get(id);
    const reg: Registration = {
      id,
      endpoint,
      node: p.node,
      registeredAtMs: old?.registeredAtMs ?? now,
      expiresAtMs: now + this.leaseTtlMs,
    };
    this.#remember(reg);
    this.#leases.set(p.node, reg.expiresAtMs);
    if (old && JSON.stringify(old.endpoint) === JSON.stringify(endpoint) && old.node === p.node) return;
    this.#log({ event: 'registered', id, node: p.node });
    this.#inventoryChanged([reg], []);
  }

  #deregister(id: string): void {
    if (!this.#forget(id)) return;
    this.#log({ event: 'deregistered', id });
    this.#inventoryChanged([], [id]);
  }

  /** Removes registrations whose lease ran out; re-evaluates the partition policy. */
  async sweep(): Promise<void> {
    const now = this.#clock.now();
    const expired: Registration[] = [];
    for (const [node, until] of this.#leases) {
      if (until >= now) continue;
      this.#leases.delete(node);
      for (const id of [...(this.#byNode.get(node) ?? [])]) {
        const r = this.#registrations.get(id);
        if (r) expired.push(r);
      }
    }
    for (const r of expired) {
      this.#forget(r.id);
      this.stats.inc(
        'isthmus_zone_leases_expired_total',
        'Registrations removed because their lease ran out.',
      );
      this.#log({ event: 'lease-expired', id: r.id, node: r.node });
    }
    if (expired.length > 0)
      this.#inventoryChanged(
        [],
        expired.map((r) => r.id),
      );
    if (this.#leaseDirty && now - this.#lastPersistMs > 5000) {
      // Lease renewals are not persisted (a restarted zone grants fresh leases anyway); the time
      // of the last contact with global is, now and then, so a restarted zone knows how stale its
      // view of other regions is.
      this.#leaseDirty = false;
      this.#lastPersistMs = now;
      await this.#store.txn({
        put: [{ key: 'global-contact', value: { atMs: this.#lastGlobalContactAtMs } }],
      });
    }
    const dropped = this.#droppedRemoteRegions().join(',');
    if (dropped !== this.#droppedRegions) {
      this.#log({ event: 'partition-policy', droppedRegions: dropped });
      this.#droppedRegions = dropped;
      this.#rebuildSnapshots();
    }
  }

  /** Other regions this zone stops serving while global is unreachable (its PartitionPolicy). */
  #droppedRemoteRegions(): string[] {
    if (!this.#global || this.#global.connected) return [];
    const policy = this.#mesh.partition(this.region).value.zone;
    if (policy.remoteEndpoints === 'freeze') return [];
    const decayMs = parseDurationMs(policy.decayAfter);
    const now = this.#clock.now();
    if (now - this.#lastGlobalContactAtMs <= decayMs) return [];
    if (policy.remoteEndpoints === 'fail-closed') return [...this.#remote.keys()].sort();
    return [...this.#remote.values()]
      .filter((r) => now - Math.max(r.lastHeardAtMs, r.generatedAtMs) > decayMs)
      .map((r) => r.region)
      .sort();
  }

  // ---- snapshots ------------------------------------------------------------------------------

  #scheduleSnapshot(): void {
    if (this.#snapshotTimer) return;
    this.#snapshotTimer = setTimeout(() => {
      this.#snapshotTimer = undefined;
      this.#rebuildSnapshots();
    }, this.#options.coalesceMs ?? 10);
    this.#snapshotTimer.unref();
  }

  #rebuildSnapshots(): void {
    const started = performance.now();
    const now = this.#clock.now();
    const resources = Object.keys(this.#policy.resources)
      .sort()
      .map((k) => (this.#policy.resources[k] as { resource: AnyResource }).resource);
    const local = this.#inventory();
    const dropped = new Set(this.#droppedRemoteRegions());
    const remote: EndpointRecord[] = [];
    const regions: Snapshot['regions'] = [];
    for (const r of [...this.#remote.values()].sort((a, b) => a.region.localeCompare(b.region))) {
      regions.push({ region: r.region, connected: r.connected, ageMs: Math.max(0, now - r.generatedAtMs) });
      if (!dropped.has(r.region)) remote.push(...r.endpoints);
    }
    const build = (endpoints: EndpointRecord[]) => {
      const resourcesText = JSON.stringify(resources);
      const endpointsText = JSON.stringify(endpoints);
      const digest = createHash('sha256')
        .update(resourcesText)
        .update(endpointsText)
        .digest('hex')
        .slice(0, 12);
      const version = `${this.#policy.revision}-${digest}`;
      // Hand-assembled so the (large) resource and endpoint lists are serialised once.
      const text = `{"type":"snapshot","version":${JSON.stringify(version)},"policyRevision":${this.#policy.revision},"generatedAtMs":${now},"resources":${resourcesText},"endpoints":${endpointsText},"regions":${JSON.stringify(regions)}}`;
      const snapshot: Snapshot = {
        type: 'snapshot',
        version,
        policyRevision: this.#policy.revision,
        generatedAtMs: now,
        resources: resources,
        endpoints,
        regions,
      };
      const built: BuiltSnapshot = {
        version,
        text: Buffer.from(text),
        snapshot,
        previous: undefined,
        delta: undefined,
      };
      return built;
    };
    const withDelta = (next: BuiltSnapshot, prev: BuiltSnapshot | undefined): BuiltSnapshot => {
      if (!prev || prev.version === next.version) return prev ?? next;
      // Only one step back is kept; the delta is computed when a proxy first needs it.
      prev.previous = undefined;
      next.previous = prev;
      return next;
    };
    const sidecar = withDelta(build([...local, ...remote]), this.#snapshots?.sidecar);
    const gateway = withDelta(build(local), this.#snapshots?.gateway);
    const changed =
      sidecar.version !== this.#snapshots?.sidecar.version ||
      gateway.version !== this.#snapshots?.gateway.version;
    this.#snapshots = { sidecar, gateway };
    this.stats.set(
      'isthmus_zone_snapshot_build_seconds',
      'Time to compute the last snapshots.',
      {},
      (performance.now() - started) / 1000,
    );
    if (changed) for (const p of this.#proxies) this.#sendSnapshot(p);
  }

  #delta(snap: BuiltSnapshot): Buffer | undefined {
    if (!snap.delta && snap.previous)
      snap.delta = Buffer.from(JSON.stringify(diffSnapshots(snap.previous.snapshot, snap.snapshot)));
    return snap.delta;
  }

  #sendSnapshot(p: ProxySession): void {
    const snap = this.#snapshots?.[p.kind];
    if (!snap || p.session.closed) return;
    // A proxy that resumed with (or already has) this version needs nothing.
    if (p.sent === snap.version) return;
    if (this.#policy.revision === 0 && Object.keys(this.#policy.resources).length === 0) return;
    // A proxy that has the previous snapshot gets only the changes.
    const delta = snap.previous && p.sent === snap.previous.version ? this.#delta(snap) : undefined;
    p.sent = snap.version;
    p.sentDelta = delta !== undefined;
    p.session.sendText(delta ?? snap.text);
  }

  // ---- API ------------------------------------------------------------------------------------

  status(): Record<string, unknown> {
    const now = this.#clock.now();
    const mono = this.#clock.monotonicMs();
    return {
      id: this.id,
      region: this.region,
      address: this.address,
      store: this.#store.url,
      epoch: this.#epoch,
      policyRevision: this.#policy.revision,
      lastNack: this.#lastNack ?? null,
      global: this.#global
        ? {
            connected: this.#global.connected,
            url: this.#global.state.url ?? null,
            lastContactAgeMs: this.#lastGlobalContactAtMs > 0 ? now - this.#lastGlobalContactAtMs : null,
            lastError: this.#global.state.lastError ?? null,
          }
        : null,
      inventory: { revision: this.#inventoryRevision, endpoints: this.#registrations.size },
      snapshot: {
        sidecar: this.#snapshots?.sidecar.version ?? null,
        gateway: this.#snapshots?.gateway.version ?? null,
      },
      droppedRegions: this.#droppedRegions ? this.#droppedRegions.split(',') : [],
      regions: [...this.#remote.values()].map((r) => ({
        region: r.region,
        connected: r.connected,
        endpoints: r.endpoints.length,
        ageMs: now - r.generatedAtMs,
      })),
      proxies: [...this.#proxies].map((p) => ({
        node: p.node,
        role: p.session.hello.node.role,
        service: p.session.hello.node.service ?? null,
        remoteAddress: p.session.remoteAddress,
        connectedAtMs: p.session.connectedAtMs,
        lastHeardAgeMs: Math.round(mono - p.session.lastHeardMs),
        sent: p.sent ?? null,
        acked: p.acked ?? null,
        current: p.acked === this.#snapshots?.[p.kind].version,
        nack: p.nack ?? null,
      })),
    };
  }

  #route(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const method = req.method ?? 'GET';
    if (method !== 'GET') methodNotAllowed('GET');
    switch (url.pathname) {
      case '/ready':
        sendJson(res, 200, { ready: true, region: this.region, policyRevision: this.#policy.revision });
        return;
      case '/metrics':
        this.#refreshGauges();
        sendText(res, 200, this.stats.prometheus());
        return;
      case '/v1/status':
        sendJson(res, 200, this.status());
        return;
      case '/v1/registrations':
        sendJson(res, 200, {
          registrations: [...this.#registrations.values()].map((r) => ({
            ...r,
            leaseRemainingMs: (this.#leases.get(r.node) ?? r.expiresAtMs) - this.#clock.now(),
          })),
        });
        return;
      default:
        throw new ApiError(
          404,
          'ISTHMUS_E_NOT_FOUND',
          `no page ${url.pathname}; see /v1/status, /v1/registrations, /metrics`,
        );
    }
  }

  #refreshGauges(): void {
    const now = this.#clock.now();
    const g = (name: string, help: string, value: number, labels: Record<string, string> = {}) =>
      this.stats.set(name, help, labels, value);
    g('isthmus_zone_policy_revision', 'Policy revision this zone serves.', this.#policy.revision);
    g(
      'isthmus_control_plane_connected',
      'Whether the stream to the control plane above is up (1) or not (0).',
      this.#global?.connected ? 1 : 0,
    );
    g(
      'isthmus_config_age_seconds',
      'Time since this zone last heard from global (its view of the mesh is at most this stale).',
      this.#lastGlobalContactAtMs > 0 ? (now - this.#lastGlobalContactAtMs) / 1000 : -1,
    );
    g('isthmus_zone_registrations', 'Endpoints registered in this zone.', this.#registrations.size);
    g('isthmus_zone_proxies_connected', 'Proxies and gateways with an open stream.', this.#proxies.size);
    for (const r of this.#remote.values())
      g(
        'isthmus_zone_remote_inventory_age_seconds',
        'Age of another region’s inventory as this zone has it.',
        (now - r.generatedAtMs) / 1000,
        {
          peer_region: r.region,
        },
      );
  }

  async close(): Promise<void> {
    clearInterval(this.#sweepTimer);
    clearTimeout(this.#snapshotTimer);
    clearTimeout(this.#inventoryTimer);
    await this.#global?.close();
    await this.#streams.close();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    await this.#work;
    await this.#store.close();
  }
}
