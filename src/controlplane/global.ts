import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { systemClock, type Clock } from '../core/clock.js';
import { validateDocuments } from '../model/validate.js';
import type { Inventories, Inventory } from '../protocol/messages.js';
import { StreamServer, type ServerSession } from '../protocol/stream.js';
import { Stats } from '../dataplane/stats.js';
import { DesiredState, type Change, type RevisionRecord } from './desired-state.js';
import {
  ApiError,
  createApiServer,
  listen,
  methodNotAllowed,
  readJson,
  sendJson,
  sendText,
} from './http-api.js';
import type { Election, KvStore } from './store/kv.js';

/** Where the global control plane serves zones. */
export const ZONE_STREAM_PATH = '/v1/zones/stream';
const MAX_APPLY_BYTES = 64 * 1024 * 1024;

export interface GlobalOptions {
  store: KvStore;
  /** Starts campaigning once the API listens; `advertise` is this process's API URL. */
  elect: (advertise: string) => Promise<Election>;
  /** HOST:PORT for the API and the zone streams. */
  listen: string;
  /** Identity in status pages and elections (default: host name + random suffix). */
  id?: string;
  heartbeatIntervalMs?: number;
  clock?: Clock;
  log?: (event: Record<string, unknown>) => void;
}

/** A zone's view as stored: what it last pushed, and how its stream to a global is doing. */
interface ZoneRecord {
  region: string;
  epoch: string;
  revision: number;
  generatedAtMs: number;
  endpoints: Inventory['endpoints'];
  receivedAtMs: number;
}

interface ZoneStatus {
  region: string;
  connected: boolean;
  /** Global process the zone is (or was last) connected to. */
  global: string;
  node: string;
  sinceMs: number;
  lastHeardAtMs: number;
  ackedRevision: number;
  nack?: { revision: number; reason: string; details: string[]; atMs: number };
}

interface ZoneSession {
  session: ServerSession;
  region: string;
  acked: number;
  sent: number;
  status: ZoneStatus;
  lastStatusWriteMs: number;
}

/**
 * `isthmus global`: the mesh's desired state with its history, the API to change it, and the
 * delivery of policies to zones (and of each zone's inventory to the others). Several global
 * processes may share an etcd store: all serve reads and zone streams, the elected leader takes
 * writes (others answer 421 with the leader's address).
 */
export class GlobalControlPlane {
  readonly id: string;
  readonly stats: Stats;
  readonly state: DesiredState;
  address = '';
  readonly #options: GlobalOptions;
  readonly #clock: Clock;
  readonly #zones = new Set<ZoneSession>();
  #server!: Server;
  #streams!: StreamServer;
  #unwatch: (() => void)[] = [];
  #pushing: Promise<void> = Promise.resolve();
  #inventoryTimer: NodeJS.Timeout | undefined;
  #startedAtMs: number;
  #election!: Election;

  private constructor(options: GlobalOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.id = options.id ?? `${os.hostname()}-${randomUUID().slice(0, 8)}`;
    this.state = new DesiredState(options.store);
    this.stats = new Stats({ role: 'global' });
    this.#startedAtMs = this.#clock.now();
  }

  static async start(options: GlobalOptions): Promise<GlobalControlPlane> {
    const g = new GlobalControlPlane(options);
    await g.#start();
    return g;
  }

  #log(event: Record<string, unknown>): void {
    this.#options.log?.({ ts: new Date(this.#clock.now()).toISOString(), global: this.id, ...event });
  }

  async #start(): Promise<void> {
    const heartbeatIntervalMs = this.#options.heartbeatIntervalMs ?? 1000;
    this.#server = createApiServer(
      (req, res, url) => this.#route(req, res, url),
      (e) => this.#log(e),
    );
    this.#streams = new StreamServer({
      server: this.#server,
      path: ZONE_STREAM_PATH,
      info: { id: this.id, role: 'global' },
      heartbeatIntervalMs,
      roles: ['zone'],
      clock: this.#clock,
      onSession: (s) => this.#onZone(s),
      log: (e) => this.#log(e),
    });
    this.address = await listen(this.#server, this.#options.listen);
    this.#election = await this.#options.elect(`http://${this.address}`);
    const rev = await this.#options.store.revision();
    // Commits by this process or another global sharing the store reach zones the same way.
    this.#unwatch.push(
      this.#options.store.watch(
        'head',
        rev,
        () => this.#schedulePush(),
        (err) => this.#log({ event: 'watch-failed', prefix: 'head', error: err.message }),
      ),
      this.#options.store.watch(
        'zones/',
        rev,
        () => this.#scheduleInventories(),
        (err) => this.#log({ event: 'watch-failed', prefix: 'zones/', error: err.message }),
      ),
    );
    this.#election.onChange((leader) => this.#log({ event: leader ? 'leading' : 'following' }));
    this.#log({ event: 'global-started', address: this.address, store: this.#options.store.url });
  }

  // ---- zones ----------------------------------------------------------------------------------

  #onZone(session: ServerSession): void {
    const region = session.hello.node.locality.split('/')[0] as string;
    const resume = Number(session.hello.resume?.version ?? '0');
    const acked = Number.isSafeInteger(resume) && resume > 0 ? resume : 0;
    const now = this.#clock.now();
    const z: ZoneSession = {
      session,
      region,
      acked,
      sent: acked,
      lastStatusWriteMs: 0,
      status: {
        region,
        connected: true,
        global: this.id,
        node: session.hello.node.id,
        sinceMs: now,
        lastHeardAtMs: now,
        ackedRevision: acked,
      },
    };
    this.#zones.add(z);
    this.#log({ event: 'zone-connected', region, node: session.hello.node.id, resume: acked });
    void this.#writeStatus(z);
    session.onMessage((m) => {
      z.status.lastHeardAtMs = this.#clock.now();
      switch (m.type) {
        case 'inventory':
          void this.#receiveInventory(z, m).catch((err: Error) =>
            this.#log({ event: 'inventory-store-failed', region, error: err.message }),
          );
          break;
        case 'ack': {
          const v = Number(m.version);
          if (Number.isSafeInteger(v) && v > z.acked) z.acked = v;
          z.status.ackedRevision = z.acked;
          if (z.status.nack && z.status.nack.revision <= v) delete z.status.nack;
          void this.#writeStatus(z);
          break;
        }
        case 'nack':
          z.status.nack = {
            revision: Number(m.version),
            reason: m.reason,
            details: m.details ?? [],
            atMs: this.#clock.now(),
          };
          this.stats.inc('isthmus_global_zone_nacks_total', 'Policy updates a zone refused.', { region });
          this.#log({ event: 'zone-nack', region, revision: m.version, reason: m.reason });
          void this.#writeStatus(z);
          break;
        case 'heartbeat':
          if (this.#clock.now() - z.lastStatusWriteMs > 5000) void this.#writeStatus(z);
          break;
        default:
          session.fail('ISTHMUS_E_PROTOCOL', `a zone does not send "${m.type}" to global`);
      }
    });
    session.onClose((reason) => {
      this.#zones.delete(z);
      z.status.connected = false;
      z.status.sinceMs = this.#clock.now();
      this.#log({ event: 'zone-disconnected', region, reason });
      void this.#writeStatus(z);
    });
    void this.#pushTo(z).then(() => this.#sendInventories(z));
  }

  async #writeStatus(z: ZoneSession): Promise<void> {
    z.lastStatusWriteMs = this.#clock.now();
    try {
      await this.#options.store.txn({ put: [{ key: `zone-status/${z.region}`, value: z.status }] });
    } catch (err) {
      this.#log({ event: 'status-store-failed', region: z.region, error: (err as Error).message });
    }
  }

  async #receiveInventory(z: ZoneSession, inv: Inventory): Promise<void> {
    if (inv.region !== z.region) {
      z.session.fail(
        'ISTHMUS_E_PROTOCOL',
        `the zone of region ${z.region} sent an inventory for region ${inv.region}`,
      );
      return;
    }
    const key = `zones/${inv.region}`;
    // Newest wins within an epoch; a new epoch (a zone with a fresh data directory) replaces all.
    // The compare makes two globals receiving from the same zone safe.
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.#options.store.get<ZoneRecord>(key);
      const old = current?.value;
      if (old && old.epoch === inv.epoch && old.revision >= inv.revision) break;
      const record: ZoneRecord = {
        region: inv.region,
        epoch: inv.epoch,
        revision: inv.revision,
        generatedAtMs: inv.generatedAtMs,
        endpoints: inv.endpoints,
        receivedAtMs: this.#clock.now(),
      };
      const r = await this.#options.store.txn({
        compare: [{ key, modRevision: current?.modRevision ?? 0 }],
        put: [{ key, value: record }],
      });
      if (r.ok) break;
    }
    z.session.send({ type: 'inventory-ack', region: inv.region, epoch: inv.epoch, revision: inv.revision });
  }

  #schedulePush(): void {
    this.#pushing = this.#pushing.then(async () => {
      for (const z of this.#zones) await this.#pushTo(z);
    });
  }

  /** Sends the zone what it lacks since the revision it last acknowledged. */
  async #pushTo(z: ZoneSession): Promise<void> {
    try {
      const { revision } = await this.state.head();
      if (z.session.closed || z.sent >= revision) return;
      const delta = await this.state.changesSince(z.acked);
      if (delta.revision <= z.sent && z.sent !== 0) return;
      z.session.send({ type: 'policy', ...delta });
      z.sent = delta.revision;
      this.#log({
        event: 'policy-sent',
        region: z.region,
        revision: delta.revision,
        base: delta.base,
        upserts: delta.upserts.length,
        deletes: delta.deletes.length,
      });
    } catch (err) {
      this.#log({ event: 'policy-send-failed', region: z.region, error: (err as Error).message });
    }
  }

  #scheduleInventories(): void {
    if (this.#inventoryTimer) return;
    // Coalesce bursts (many zones reporting at once) into one broadcast.
    this.#inventoryTimer = setTimeout(() => {
      this.#inventoryTimer = undefined;
      for (const z of this.#zones) void this.#sendInventories(z);
    }, 20);
    this.#inventoryTimer.unref();
  }

  async #zoneRecords(): Promise<{ records: ZoneRecord[]; status: Map<string, ZoneStatus> }> {
    const [records, status] = await Promise.all([
      this.#options.store.range<ZoneRecord>('zones/'),
      this.#options.store.range<ZoneStatus>('zone-status/'),
    ]);
    return {
      records: records.map((r) => r.value),
      status: new Map(status.map((s) => [s.value.region, s.value])),
    };
  }

  async #sendInventories(z: ZoneSession): Promise<void> {
    try {
      const { records, status } = await this.#zoneRecords();
      const regions: Inventories['regions'] = records
        .filter((r) => r.region !== z.region)
        .map((r) => {
          const s = status.get(r.region);
          const live = [...this.#zones].some((o) => o.region === r.region);
          return {
            region: r.region,
            epoch: r.epoch,
            revision: r.revision,
            generatedAtMs: r.generatedAtMs,
            endpoints: r.endpoints,
            connected: live || (s?.connected ?? false),
            lastHeardAtMs: Math.max(s?.lastHeardAtMs ?? 0, r.receivedAtMs),
          };
        });
      z.session.send({ type: 'inventories', regions });
    } catch (err) {
      this.#log({ event: 'inventories-send-failed', region: z.region, error: (err as Error).message });
    }
  }

  // ---- API ------------------------------------------------------------------------------------

  async #route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const parts = url.pathname.split('/').filter(Boolean);
    const method = req.method ?? 'GET';
    if (url.pathname === '/ready') {
      sendJson(res, 200, { ready: true, id: this.id, leader: this.#election.isLeader });
      return;
    }
    if (url.pathname === '/metrics') {
      await this.#refreshGauges();
      sendText(res, 200, this.stats.prometheus());
      return;
    }
    if (parts[0] !== 'v1')
      throw new ApiError(404, 'ISTHMUS_E_NOT_FOUND', `no page ${url.pathname}; the API is under /v1`);
    const [, what, a, b] = parts;
    switch (what) {
      case 'resources': {
        if (method !== 'GET') methodNotAllowed('GET');
        const { revision, resources } = await this.state.current();
        const kind = url.searchParams.get('kind');
        let list = kind ? resources.filter((r) => r.kind === kind) : resources;
        if (a !== undefined) {
          list = list.filter((r) => r.kind === a && (b === undefined || r.metadata.name === b));
          if (b !== undefined && list.length === 0)
            throw new ApiError(404, 'ISTHMUS_E_NOT_FOUND', `no resource ${a}/${b} at revision ${revision}`);
        }
        sendJson(res, 200, { revision, resources: list });
        return;
      }
      case 'apply': {
        if (method !== 'POST') methodNotAllowed('POST');
        const body = await readJson(req, MAX_APPLY_BYTES);
        if (!Array.isArray(body.resources))
          throw new ApiError(
            400,
            'ISTHMUS_E_USAGE',
            'the body needs "resources": an array of mesh resources',
          );
        const result = await this.#apply(req, body, body.resources as unknown[], undefined);
        sendJson(res, 200, result);
        return;
      }
      case 'rollback': {
        if (method !== 'POST') methodNotAllowed('POST');
        const body = await readJson(req, 64 * 1024);
        const to = body.revision;
        if (typeof to !== 'number' || !Number.isSafeInteger(to) || to < 0)
          throw new ApiError(400, 'ISTHMUS_E_USAGE', '"revision" must be a revision number (0 or more)');
        const resources = await this.state.stateAt(to);
        const result = await this.#apply(
          req,
          { message: `rollback to revision ${to}`, ...body },
          resources,
          to,
        );
        sendJson(res, 200, result);
        return;
      }
      case 'history': {
        if (method !== 'GET') methodNotAllowed('GET');
        if (a !== undefined) {
          const n = Number(a);
          const record = Number.isSafeInteger(n) ? await this.state.revision(n) : undefined;
          if (!record) throw new ApiError(404, 'ISTHMUS_E_NOT_FOUND', `revision ${a} does not exist`);
          sendJson(res, 200, record);
          return;
        }
        const limitText = url.searchParams.get('limit');
        const limit = limitText === null ? 50 : Number(limitText);
        if (!Number.isSafeInteger(limit) || limit < 1)
          throw new ApiError(400, 'ISTHMUS_E_USAGE', '"limit" must be a positive integer');
        const records = await this.state.history({ limit });
        sendJson(res, 200, { revisions: records.map(summary) });
        return;
      }
      case 'zones':
        if (method !== 'GET') methodNotAllowed('GET');
        sendJson(res, 200, { zones: await this.zones() });
        return;
      case 'status': {
        if (method !== 'GET') methodNotAllowed('GET');
        const { revision } = await this.state.head();
        sendJson(res, 200, {
          id: this.id,
          address: this.address,
          store: this.#options.store.url,
          leader: { self: this.#election.isLeader, id: (await this.#election.leader()) ?? null },
          revision,
          startedAtMs: this.#startedAtMs,
          zones: await this.zones(),
        });
        return;
      }
      default:
        throw new ApiError(404, 'ISTHMUS_E_NOT_FOUND', `no API ${url.pathname}`);
    }
  }

  async #apply(
    req: IncomingMessage,
    body: Record<string, unknown>,
    docs: unknown[],
    rollbackTo: number | undefined,
  ): Promise<Record<string, unknown>> {
    const election = this.#election;
    if (!election.isLeader) {
      const leader = await election.leader();
      throw new ApiError(
        421,
        'ISTHMUS_E_NOT_LEADER',
        `this global (${this.id}) does not lead; send writes to the leader`,
        {
          leader: leader ?? null,
        },
      );
    }
    const validation = validateDocuments(docs, 'request');
    if (!validation.ok)
      throw new ApiError(
        422,
        'ISTHMUS_E_INVALID_RESOURCE',
        `the resources have ${validation.errors} error(s); nothing was applied`,
        {
          diagnostics: validation.diagnostics,
        },
      );
    const base = body.baseRevision;
    if (base !== undefined && (typeof base !== 'number' || !Number.isSafeInteger(base)))
      throw new ApiError(400, 'ISTHMUS_E_USAGE', '"baseRevision" must be a revision number');
    const str = (v: unknown, fallback: string) =>
      typeof v === 'string' && v.length > 0 ? v.slice(0, 500) : fallback;
    const resources = validation.resources.map((r) => r.resource);
    if (body.dryRun === true) {
      const { revision, resources: live } = await this.state.current();
      return { dryRun: true, revision, live: live.length, proposed: resources.length };
    }
    const result = await this.state.apply(resources, {
      actor: str(body.actor, 'unknown'),
      origin: `${req.socket.remoteAddress ?? '?'} ${str(req.headers['user-agent'], '')}`.trim(),
      message: str(body.message, ''),
      atMs: this.#clock.now(),
      ...(typeof base === 'number' && { baseRevision: base }),
      ...(rollbackTo !== undefined && { rollbackTo }),
    });
    if (!result.ok)
      throw new ApiError(
        409,
        'ISTHMUS_E_CONFLICT',
        `the desired state moved to revision ${result.conflict.head} since revision ${result.conflict.base}; review the new diff and apply again`,
        { head: result.conflict.head },
      );
    if (!result.unchanged) {
      this.stats.inc('isthmus_global_applies_total', 'Change sets applied.');
      this.#log({ event: 'applied', revision: result.revision, changes: result.changes.length, rollbackTo });
    }
    return {
      revision: result.revision,
      unchanged: result.unchanged,
      changes: result.changes.map(changeSummary),
      warnings: validation.warnings,
    };
  }

  /** The mesh-wide view of zones: connected or not, since when, how old their inventory is. */
  async zones(): Promise<Record<string, unknown>[]> {
    const { records, status } = await this.#zoneRecords();
    const { revision } = await this.state.head();
    const regions = new Set([...records.map((r) => r.region), ...status.keys()]);
    const now = this.#clock.now();
    return [...regions].sort().map((region) => {
      const r = records.find((x) => x.region === region);
      const s = status.get(region);
      const live = [...this.#zones].find((z) => z.region === region);
      const st = live?.status ?? s;
      return {
        region,
        connected: st?.connected ?? false,
        sinceMs: st?.sinceMs ?? null,
        lastHeardAgeMs: st ? now - st.lastHeardAtMs : null,
        global: st?.global ?? null,
        ackedRevision: st?.ackedRevision ?? 0,
        behind: revision - (st?.ackedRevision ?? 0),
        nack: st?.nack ?? null,
        inventory: r
          ? {
              epoch: r.epoch,
              revision: r.revision,
              endpoints: r.endpoints.length,
              ageMs: now - r.generatedAtMs,
            }
          : null,
      };
    });
  }

  async #refreshGauges(): Promise<void> {
    const { revision } = await this.state.head();
    this.stats.set('isthmus_global_policy_revision', 'Latest applied policy revision.', {}, revision);
    this.stats.set(
      'isthmus_global_leader',
      'Whether this global process leads (1) or follows (0).',
      {},
      this.#election.isLeader ? 1 : 0,
    );
    for (const z of await this.zones()) {
      const labels = { peer_region: z.region as string };
      this.stats.set(
        'isthmus_global_zone_connected',
        'Whether a zone is connected to a global process.',
        labels,
        z.connected ? 1 : 0,
      );
      this.stats.set(
        'isthmus_global_zone_behind_revisions',
        'Policy revisions a zone has not acknowledged.',
        labels,
        z.behind as number,
      );
      const inv = z.inventory as { ageMs: number } | null;
      if (inv)
        this.stats.set(
          'isthmus_global_zone_inventory_age_seconds',
          'Age of the zone’s last inventory.',
          labels,
          inv.ageMs / 1000,
        );
    }
  }

  async close(): Promise<void> {
    for (const u of this.#unwatch) u();
    clearTimeout(this.#inventoryTimer);
    await this.#streams.close();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    await this.#pushing.catch(() => undefined);
    await this.#election.resign().catch(() => undefined);
    await this.#options.store.close();
  }
}

function changeSummary(c: Change) {
  return { action: c.action, kind: c.kind, name: c.name };
}

function summary(r: RevisionRecord) {
  return {
    revision: r.revision,
    atMs: r.atMs,
    actor: r.actor,
    origin: r.origin,
    message: r.message,
    ...(r.rollbackTo !== undefined && { rollbackTo: r.rollbackTo }),
    changes: r.changes.map(changeSummary),
  };
}
