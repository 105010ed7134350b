import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { systemClock, type Clock } from '../core/clock.js';
import { seededRandom, systemRandom, type Random } from '../core/random.js';
import { formatDurationMs, parseDurationMs, parseSizeBytes } from '../core/units.js';
import type { Diagnostic } from '../model/diagnostics.js';
import type { LoadedResource } from '../model/load.js';
import { formatLocality, parseLocality } from '../model/locality.js';
import { HEALTH_CHECK_HEADER } from './health-checker.js';
import { MeshIndex } from '../model/mesh.js';
import { canonical } from '../model/canonical.js';
import type { EffectiveTelemetry, PARTITION_MODES } from '../model/settings.js';
import type { Snapshot } from '../protocol/messages.js';
import { splitHostPort } from './address.js';
import type { Bootstrap, GatewayAddress, StaticEndpoint } from './bootstrap.js';
import { localityBalancers } from './balancers.js';
import { Destination, endpointsKey, type BalancerFactory } from './destination.js';
import type { Endpoint } from './endpoint.js';
import { H } from './http/headers.js';
import { H1Server, type ProxyRequest, type ProxyResponse } from '../protocol/http1/server.js';
import { UpstreamPool } from './http/upstream.js';
import { serveInbound, type InboundContext } from './inbound.js';
import { loadLastKnownGood, saveLastKnownGood } from './last-known-good.js';
import { sendError, serveOutbound, type OutboundContext } from './outbound.js';
import { IdempotencyStore } from './resilience/idempotency-store.js';
import { loadConfigInWorker, validateDocumentsInWorker } from './load-config.js';
import { serviceHost } from './routing.js';
import { Stats } from './stats.js';
import type { ProxyTelemetry } from './telemetry.js';

export type PartitionMode = (typeof PARTITION_MODES)[number];

/** A loaded, validated configuration the proxy runs on. */
export interface RunningConfig {
  /** The snapshot's version; in static mode a hash of the resources and endpoints. */
  version: string;
  /** Revision of the policies the snapshot carries; undefined in static mode. */
  policyRevision: number | undefined;
  /** When the control plane generated the snapshot, wall-clock epoch ms; undefined in static mode. */
  generatedAtMs: number | undefined;
  /** When this proxy started running it, wall-clock epoch ms. */
  loadedAtMs: number;
  /** Where it came from: `static:FILE`, `zone:URL-OR-LABEL` or `last-known-good:FILE`. */
  source: string;
  mesh: MeshIndex;
  destinations: Map<string, Destination>;
  /** SHA-256 of the canonical resources: configurations with equal hashes share destinations. */
  resourcesHash: string;
  /** The proxy's region's `PartitionPolicy` proxy side, parsed. */
  partition: { mode: PartitionMode; decayAfterMs: number };
  idempotency: IdempotencyStore | undefined;
  /** Canonical JSON of the idempotency settings the store was built from. */
  idempotencyKey: string;
}

export type ApplyResult = { ok: true; version: string } | { ok: false; reason: string; details: string[] };

export type ReloadResult =
  { ok: true; version: string } | { ok: false; reason: string; diagnostics: Diagnostic[] };

/** What the control-plane client last reported. */
export interface ControlPlaneContact {
  connected: boolean;
  /** Last message from the control plane, on the proxy clock's `monotonicMs()` timeline. */
  lastContactMs: number;
}

export interface ProxyOptions {
  clock?: Clock;
  random?: Random;
  /** How often balancers run their periodic analysis and partition policy is evaluated, ms (default 250). */
  evaluateIntervalMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

export class ConfigError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(`configuration has ${diagnostics.filter((d) => d.severity === 'error').length} error(s)`);
  }
}

const NO_CONFIG_REASON = 'waiting for the first snapshot from the control plane';
const REJECTED_HELP = 'Configurations rejected (invalid reload or NACKed snapshot); the running one stays.';
/** NACK limits of the delivery protocol: at most 100 details of at most 4096 characters. */
const MAX_DETAILS = 100;
const MAX_TEXT = 4096;
const NONE: ReadonlySet<string> = new Set();

const clip = (text: string, max = MAX_TEXT) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

function formatDiagnostic(d: Diagnostic): string {
  const where = [d.resource, d.path].filter(Boolean).join(' ');
  return clip(
    `${d.file}${where ? ` ${where}` : ''}: ${d.message}` +
      (d.expected !== undefined ? `; expected ${d.expected}` : '') +
      (d.found !== undefined ? `, found ${d.found}` : '') +
      (d.hint !== undefined ? ` (${d.hint})` : ''),
    1000,
  );
}

function toEndpoints(
  list: readonly StaticEndpoint[],
  service: string,
  from: { region: string },
  mesh: MeshIndex,
  gateway: boolean,
  regionGateways: ReadonlyMap<string, GatewayAddress>,
): Endpoint[] {
  const own = list.filter((e) => e.service === service && e.locality.region === from.region);
  const out: Endpoint[] = own.map((e) => ({
    id: `${e.address}:${e.port}`,
    address: e.address,
    port: e.port,
    locality: e.locality,
    weight: e.weight,
    kind: 'instance',
  }));
  if (gateway) return out;
  // Other regions are reached through their gateway, for services that run there.
  const remoteRegions = new Set(
    list
      .filter((e) => e.service === service && e.locality.region !== from.region)
      .map((e) => e.locality.region),
  );
  for (const region of remoteRegions) {
    const known = mesh.regions.get(region);
    // The bootstrap's address for a region wins over the Region's: the same gateway is reached
    // through different NATs, private links or emulated WAN links from different sources.
    const gw = known && (regionGateways.get(region) ?? known.resource.spec.gateway);
    if (!gw) continue;
    out.push({
      id: `gateway:${region}`,
      address: gw.address,
      port: gw.port,
      locality: { region },
      weight: 1,
      kind: 'gateway',
    });
  }
  return out;
}

/**
 * The sidecar proxy and the gateway: listeners, the running configuration, and the admin
 * surface. Configuration comes from a bootstrap file (static mode) or from snapshots of a zone
 * control plane (`applySnapshot`, with the last applied one kept on disk). A reload or snapshot
 * that fails validation keeps the running configuration. Without any configuration yet the
 * listeners run and answer 503 `no-config`.
 */
/** The telemetry settings that only take effect when the pipeline opens, as a comparable string. */
function openingTelemetrySettings(settings: EffectiveTelemetry | undefined): string {
  return JSON.stringify({
    buffer: settings?.buffer ?? null,
    accessLog: settings?.accessLog ?? null,
    heartbeatInterval: settings?.heartbeatInterval ?? null,
    metricsInterval: settings?.metricsInterval ?? null,
  });
}

export class Proxy {
  readonly bootstrap: Bootstrap;
  readonly stats: Stats;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #options: ProxyOptions;
  readonly #balancers: BalancerFactory;
  readonly #servers: { name: string; server: net.Server }[] = [];
  readonly #deadlines = new Map<string, number>();
  readonly #sockets = new Set<Socket>();
  #config: RunningConfig | undefined;
  #inflight = 0;
  #timer: NodeJS.Timeout | undefined;
  #appPool: UpstreamPool | undefined;
  #idempotency: IdempotencyStore | undefined;
  /** Configuration changes run one at a time, in call order (validation is asynchronous). */
  #changes: Promise<unknown> = Promise.resolve();
  /** Destinations replaced by a newer configuration, closed once in-flight requests are done. */
  readonly #retiring = new Map<Destination, NodeJS.Timeout>();
  #contact: ControlPlaneContact | undefined;
  /** Present only when the bootstrap turns telemetry on: the request path checks it once. */
  #telemetry: ProxyTelemetry | undefined;
  /** The telemetry settings the pipeline was opened with (see #checkTelemetrySettings). */
  #telemetryOpenedWith: string | undefined;
  /** Settings that differ from those and wait for a restart, once reported. */
  #telemetryPending: string | undefined;
  readonly addresses: Record<string, string> = {};
  lastReloadError: { atMs: number; diagnostics: Diagnostic[] } | undefined;
  /** The last snapshot this proxy refused (what it NACKed), wall-clock `atMs`. */
  lastRejectedSnapshot: { version: string; reason: string; details: string[]; atMs: number } | undefined;
  /** Why the last-known-good snapshot could not be used at start, if it could not. */
  lastKnownGoodProblem: string | undefined;

  private constructor(bootstrap: Bootstrap, options: ProxyOptions) {
    this.bootstrap = bootstrap;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#random =
      options.random ??
      (bootstrap.spec.seed !== undefined ? seededRandom(bootstrap.spec.seed) : systemRandom);
    this.stats = new Stats({ region: bootstrap.locality.region, zone: bootstrap.locality.zone ?? '' });
    // A proxy cannot know how long the control plane was unreachable before it started: the
    // grace period of the partition policy counts from its start until the client reports.
    if (bootstrap.controlPlane)
      this.#contact = { connected: false, lastContactMs: this.#clock.monotonicMs() };
    this.#balancers = localityBalancers({
      locality: bootstrap.locality,
      clock: this.#clock,
      random: this.#random,
      onEvent: (service, event) => {
        this.stats.inc('isthmus_health_transitions_total', 'Endpoint and region health transitions.', {
          service,
          kind: event.kind,
          state: event.kind === 'region' ? event.state : event.health,
          peer_region: event.kind === 'region' ? event.region : '',
        });
        this.#log({ event: `${event.kind}-health`, service, ...event });
      },
      onReorder: (service, regions) => {
        this.stats.inc('isthmus_remote_reorders_total', 'Remote tiers reordered by measured latency.', {
          service,
        });
        this.#log({ event: 'remote-tiers-reordered', service, regions });
      },
    });
  }

  /**
   * Starts the listeners. Static mode first loads and validates the resources (a ConfigError
   * when invalid). With a control plane it starts from the last-known-good snapshot when one is
   * usable, else with no configuration until `applySnapshot`.
   */
  static async start(bootstrap: Bootstrap, options: ProxyOptions): Promise<Proxy> {
    const proxy = new Proxy(bootstrap, options);
    if (bootstrap.controlPlane) await proxy.#startFromLastKnownGood(bootstrap.controlPlane.dataDir);
    else proxy.#install(await proxy.#loadStatic());
    if (bootstrap.telemetry) await proxy.#startTelemetry(bootstrap.telemetry);
    try {
      await proxy.#listen();
    } catch (err) {
      await proxy.#telemetry?.close(0).catch(() => undefined);
      throw err;
    }
    proxy.#timer = setInterval(() => proxy.#tick(), options.evaluateIntervalMs ?? 250);
    proxy.#timer.unref();
    return proxy;
  }

  /**
   * Opens the telemetry pipeline. Its buffer and intervals come from the mesh-wide telemetry
   * settings of the configuration at start (built-in defaults without one); the log is opened
   * once, so later changes to them apply at the next start.
   */
  async #startTelemetry(config: { collector: string; dataDir: string }): Promise<void> {
    const spec = this.bootstrap.spec;
    const settings = this.#config?.mesh.telemetry().value;
    const buffer = settings?.buffer;
    this.#telemetryOpenedWith = openingTelemetrySettings(settings);
    const { region, zone } = this.bootstrap.locality;
    // Loaded only when telemetry is configured: a proxy without it does not carry the pipeline
    // (the write-ahead log, the OTLP client) in memory.
    const [{ TelemetrySource }, { ProxyTelemetry }] = await Promise.all([
      import('../telemetry/source.js'),
      import('./telemetry.js'),
    ]);
    const source = await TelemetrySource.open({
      dir: config.dataDir,
      collectorUrl: config.collector,
      source: `proxy/${this.bootstrap.name}@${region}`,
      resource: { service: spec.service ?? this.bootstrap.name, region, zone },
      // Access-log record ids: this proxy, this process, then the batch's seq and place.
      recordIdPrefix: `${this.bootstrap.name}-${randomBytes(6).toString('hex')}-`,
      ...(buffer && {
        buffer: {
          maxBytes: parseSizeBytes(buffer.maxBytes),
          segmentBytes: parseSizeBytes(buffer.segmentBytes),
          fsyncIntervalMs: parseDurationMs(buffer.fsyncInterval),
          // Written no later than fsynced: the delay never holds up durability past the interval.
          writeDelayMs: Math.min(parseDurationMs(buffer.writeDelay), parseDurationMs(buffer.fsyncInterval)),
          whenFull: buffer.whenFull,
        },
      }),
      heartbeatIntervalMs: parseDurationMs(settings?.heartbeatInterval ?? '2s'),
      ...(settings?.accessLog && {
        accessLogBatchMs: parseDurationMs(settings.accessLog.batchWindow),
        accessLogBatchRecords: settings.accessLog.batchRecords,
      }),
      clock: this.#clock,
      random: this.#random,
    });
    this.#telemetry = new ProxyTelemetry({
      source,
      clock: this.#clock,
      random: this.#random,
      locality: this.bootstrap.locality,
      stats: this.stats,
      settings: (service) => this.#config?.mesh.telemetry(service).value,
      metricsIntervalMs: parseDurationMs(settings?.metricsInterval ?? '10s'),
    });
    const previous = source.wal.previousOwner;
    if (previous)
      // What the last run held in memory (the access-log records of its last batch window) died
      // with it, with no seq to show as a gap: said here, since nothing downstream can count it.
      this.#log({
        event: 'telemetry-unclean-start',
        reason:
          'the telemetry log was left by a process that did not close it (killed or crashed): the access-log records it had not yet appended (up to telemetry.accessLog.batchWindow of them) are lost without a count',
        previousPid: previous.pid ?? null,
        previousStartedAtMs: previous.startedAtMs ?? null,
      });
    void source.heartbeat();
  }

  /** The telemetry pipeline; undefined when the bootstrap has no `telemetry`. */
  get telemetry(): ProxyTelemetry | undefined {
    return this.#telemetry;
  }

  /** The running configuration; undefined until the first one (control-plane mode). */
  get config(): RunningConfig | undefined {
    return this.#config;
  }

  get hasConfig(): boolean {
    return this.#config !== undefined;
  }

  /** What the control-plane client last reported; undefined in static mode. */
  get controlPlaneState(): Readonly<ControlPlaneContact> | undefined {
    return this.#contact;
  }

  get #via(): string {
    return `1.1 isthmus-${this.bootstrap.name}`;
  }

  /** Runs configuration changes one at a time, so a slow validation never overtakes a newer one. */
  #serially<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#changes.then(change, change);
    this.#changes = run.catch(() => undefined);
    return run;
  }

  /**
   * The one way a RunningConfig is built, from validated resources and endpoints. When the
   * resources are the same as the running ones, a service whose endpoints are unchanged keeps
   * its Destination (health, latency averages, ejections, pools); so does the idempotency store
   * while its settings are unchanged.
   */
  #build(input: {
    resources: readonly LoadedResource[];
    endpoints: readonly StaticEndpoint[];
    source: string;
    version?: string;
    policyRevision?: number;
    generatedAtMs?: number;
  }): RunningConfig {
    const mesh = new MeshIndex(input.resources);
    const canonicalResources = input.resources
      .map((r) => ({ id: `${r.resource.kind}/${r.resource.metadata.name}`, doc: canonical(r.resource) }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((r) => r.doc);
    const resourcesHash = createHash('sha256').update(JSON.stringify(canonicalResources)).digest('hex');
    const previous = this.#config?.resourcesHash === resourcesHash ? this.#config : undefined;
    const gateway = this.bootstrap.spec.mode === 'gateway';
    // Grouped once: a snapshot may list every instance of every service in every region.
    const byService = new Map<string, StaticEndpoint[]>();
    for (const e of input.endpoints) {
      const list = byService.get(e.service);
      if (list) list.push(e);
      else byService.set(e.service, [e]);
    }
    const destinations = new Map<string, Destination>();
    for (const name of mesh.services.keys()) {
      const endpoints = toEndpoints(
        byService.get(name) ?? [],
        name,
        this.bootstrap.locality,
        mesh,
        gateway,
        this.bootstrap.regionGateways,
      );
      const kept = previous?.destinations.get(name);
      if (kept && kept.endpointsKey === endpointsKey(endpoints)) {
        destinations.set(name, kept);
        continue;
      }
      destinations.set(
        name,
        new Destination({
          name,
          mesh,
          from: this.bootstrap.locality,
          localOnly: gateway,
          endpoints,
          clock: this.#clock,
          random: this.#random,
          balancer: this.#balancers,
        }),
      );
    }
    let idempotency: IdempotencyStore | undefined;
    let idempotencyKey = '';
    if (this.bootstrap.spec.mode === 'sidecar' && this.bootstrap.spec.service) {
      const idem = mesh.traffic(this.bootstrap.spec.service).value.idempotency;
      idempotencyKey = JSON.stringify(idem);
      idempotency =
        this.#config && this.#config.idempotencyKey === idempotencyKey
          ? this.#config.idempotency
          : idem.enabled
            ? IdempotencyStore.fromSettings(idem, this.#clock)
            : undefined;
    }
    const partition = mesh.partition(this.bootstrap.locality.region).value.proxy;
    return {
      version:
        input.version ??
        createHash('sha256')
          .update(resourcesHash)
          .update(JSON.stringify(input.endpoints))
          .digest('hex')
          .slice(0, 16),
      policyRevision: input.policyRevision,
      generatedAtMs: input.generatedAtMs,
      loadedAtMs: this.#clock.now(),
      source: input.source,
      mesh,
      destinations,
      resourcesHash,
      partition: { mode: partition.remoteEndpoints, decayAfterMs: parseDurationMs(partition.decayAfter) },
      idempotency,
      idempotencyKey,
    };
  }

  /** Makes `next` the running configuration; destinations it did not keep close after a grace period. */
  #install(next: RunningConfig): void {
    const previous = this.#config;
    this.#config = next;
    this.#idempotency = next.idempotency;
    this.stats.inc(
      'isthmus_config_applied_total',
      'Configurations applied (at start, by reload or snapshot).',
    );
    if (previous) {
      const kept = new Set(next.destinations.values());
      for (const d of previous.destinations.values()) {
        if (kept.has(d) || this.#retiring.has(d)) continue;
        // Let in-flight requests on the old pools finish before closing them.
        const timer = setTimeout(() => {
          this.#retiring.delete(d);
          void d.close().catch(() => undefined);
        }, 30_000);
        timer.unref();
        this.#retiring.set(d, timer);
      }
    }
    // Carried-over destinations keep what partition policy withheld; re-decide for the new config.
    this.#evaluatePartition();
    this.#telemetry?.reconfigure();
    this.#checkTelemetrySettings();
  }

  /**
   * Sampling follows every new configuration, but the log's buffer and the heartbeat and
   * metrics intervals are fixed when the pipeline opens. A configuration that changes them is
   * reported once (event `telemetry-restart-needed`, and `/config`), not silently ignored.
   */
  #checkTelemetrySettings(): void {
    if (!this.#telemetry || this.#telemetryOpenedWith === undefined) return;
    const now = openingTelemetrySettings(this.#config?.mesh.telemetry().value);
    if (now === this.#telemetryOpenedWith) {
      this.#telemetryPending = undefined;
      return;
    }
    if (now === this.#telemetryPending) return;
    this.#telemetryPending = now;
    this.#log({
      event: 'telemetry-restart-needed',
      reason:
        'the telemetry buffer, accessLog, heartbeatInterval or metricsInterval changed; they are read when the telemetry pipeline opens, so the new values apply at the next start',
      running: JSON.parse(this.#telemetryOpenedWith) as unknown,
      configured: JSON.parse(now) as unknown,
    });
  }

  async #loadStatic(): Promise<RunningConfig> {
    const result = await loadConfigInWorker(this.bootstrap.resourcePaths);
    if (!result.ok) throw new ConfigError(result.diagnostics);
    return this.#build({
      resources: result.resources,
      endpoints: this.bootstrap.endpoints,
      source: `static:${this.bootstrap.file}`,
    });
  }

  /** Re-reads the resources (static mode); on any error the running configuration stays and the error is kept. */
  reload(): Promise<ReloadResult> {
    return this.#serially(async (): Promise<ReloadResult> => {
      if (this.bootstrap.controlPlane) {
        const reason =
          'this proxy takes its configuration from the control plane (bootstrap `controlPlane`): there are no resource files to reload';
        this.#log({ event: 'reload-refused', reason });
        return { ok: false, reason, diagnostics: [] };
      }
      try {
        const next = await this.#loadStatic();
        this.#install(next);
        this.lastReloadError = undefined;
        this.#log({ event: 'config-reloaded', version: next.version });
        return { ok: true, version: next.version };
      } catch (err) {
        const diagnostics = err instanceof ConfigError ? err.diagnostics : [];
        this.lastReloadError = { atMs: this.#clock.now(), diagnostics };
        this.stats.inc('isthmus_config_rejected_total', REJECTED_HELP);
        this.#log({ event: 'config-rejected', errors: diagnostics.length, message: (err as Error).message });
        return { ok: false, reason: (err as Error).message, diagnostics };
      }
    });
  }

  /**
   * Checks a snapshot without touching the running configuration: its resources (in the config
   * worker, with every check files get), its endpoints (known services, parseable localities),
   * and that a sidecar's own service is in it. Problems come back as a NACK-ready reason.
   */
  async #checkSnapshot(
    snapshot: Snapshot,
  ): Promise<
    | { ok: true; resources: LoadedResource[]; endpoints: StaticEndpoint[] }
    | { ok: false; reason: string; details: string[] }
  > {
    const details: string[] = [];
    const s = snapshot as Partial<Snapshot> | null;
    if (
      s === null ||
      typeof s !== 'object' ||
      typeof s.version !== 'string' ||
      s.version === '' ||
      !Array.isArray(s.resources) ||
      !Array.isArray(s.endpoints)
    ) {
      return {
        ok: false,
        reason: 'not a snapshot: it needs a non-empty `version` and `resources` and `endpoints` lists',
        details: [],
      };
    }
    let validated;
    try {
      validated = await validateDocumentsInWorker(snapshot.resources, 'resources');
    } catch (err) {
      return {
        ok: false,
        reason: `the resources could not be validated: ${(err as Error).message}`,
        details: [],
      };
    }
    const errors = validated.diagnostics.filter((d) => d.severity === 'error');
    for (const d of errors) details.push(formatDiagnostic(d));

    const services = new Set(
      validated.resources.filter((r) => r.resource.kind === 'Service').map((r) => r.resource.metadata.name),
    );
    const endpoints: StaticEndpoint[] = [];
    const unknownServices = new Map<string, number>();
    snapshot.endpoints.forEach((e, i) => {
      const where = `endpoints[${i}]`;
      if (
        typeof e !== 'object' ||
        e === null ||
        typeof e.service !== 'string' ||
        typeof e.address !== 'string' ||
        e.address === '' ||
        !Number.isInteger(e.port) ||
        e.port < 1 ||
        e.port > 65535 ||
        !Number.isInteger(e.weight) ||
        e.weight < 1
      ) {
        details.push(`${where}: needs service, address, port 1-65535 and a positive integer weight`);
        return;
      }
      let locality;
      try {
        locality = parseLocality(String(e.locality));
      } catch (err) {
        details.push(`${where} (${e.service} ${e.address}:${e.port}): ${(err as Error).message}`);
        return;
      }
      // Resources that failed validation are reported above; don't also blame their endpoints.
      if (errors.length === 0 && !services.has(e.service)) {
        unknownServices.set(e.service, (unknownServices.get(e.service) ?? 0) + 1);
        return;
      }
      endpoints.push({ service: e.service, address: e.address, port: e.port, locality, weight: e.weight });
    });
    for (const [service, n] of unknownServices)
      details.push(
        `${n === 1 ? '1 endpoint' : `${n} endpoints`} of service "${service}", which is not a Service in the snapshot's resources`,
      );
    const own = this.bootstrap.spec.mode === 'sidecar' ? this.bootstrap.spec.service : undefined;
    if (own !== undefined && errors.length === 0 && !services.has(own))
      details.push(
        `this sidecar's own service "${own}" (bootstrap spec.service) is not a Service in the snapshot's resources`,
      );
    if (details.length === 0) return { ok: true, resources: validated.resources, endpoints };
    const shown = details.length > MAX_DETAILS ? details.slice(0, MAX_DETAILS - 1) : details;
    if (shown.length < details.length) shown.push(`… and ${details.length - shown.length} more`);
    return {
      ok: false,
      reason: clip(
        `snapshot ${snapshot.version} rejected, the running configuration stays: ${details.length} problem${details.length === 1 ? '' : 's'}, the first: ${details[0]}`,
      ),
      details: shown,
    };
  }

  #rejectSnapshot(version: string, reason: string, details: string[]): ApplyResult {
    this.lastRejectedSnapshot = { version, reason, details, atMs: this.#clock.now() };
    this.stats.inc('isthmus_config_rejected_total', REJECTED_HELP);
    this.#log({ event: 'snapshot-rejected', version, reason, problems: details.length });
    return { ok: false, reason, details };
  }

  /**
   * Validates a snapshot from the zone control plane and, when it is good, swaps it in like a
   * reload and saves it as the last-known-good one. On any problem the running configuration
   * stays and the result says why (what the client sends as the NACK). Receiving a snapshot
   * counts as contact with the control plane. `from` labels the source (default: the zones).
   */
  applySnapshot(snapshot: Snapshot, from?: string): Promise<ApplyResult> {
    const cp = this.bootstrap.controlPlane;
    if (cp) this.controlPlaneContact({ connected: true, lastContactMs: this.#clock.monotonicMs() });
    return this.#serially(async (): Promise<ApplyResult> => {
      const version = typeof snapshot?.version === 'string' ? snapshot.version : '(none)';
      if (!cp)
        return this.#rejectSnapshot(
          version,
          'this proxy runs in static mode (its bootstrap has no `controlPlane`): it does not take snapshots',
          [],
        );
      const checked = await this.#checkSnapshot(snapshot);
      if (!checked.ok) return this.#rejectSnapshot(version, checked.reason, checked.details);
      const next = this.#build({
        resources: checked.resources,
        endpoints: checked.endpoints,
        source: `zone:${from ?? cp.zones.join(',')}`,
        version: snapshot.version,
        policyRevision: snapshot.policyRevision,
        generatedAtMs: snapshot.generatedAtMs,
      });
      this.#install(next);
      this.#log({
        event: 'snapshot-applied',
        version: next.version,
        policyRevision: next.policyRevision,
        source: next.source,
      });
      // Only what was applied is saved: a restart must never start from a snapshot we refused.
      try {
        const file = await saveLastKnownGood(cp.dataDir, snapshot, { savedAtMs: this.#clock.now() });
        this.#log({ event: 'last-known-good-saved', version: next.version, file });
      } catch (err) {
        this.stats.inc(
          'isthmus_last_known_good_save_failures_total',
          'Applied snapshots that could not be saved as last-known-good.',
        );
        this.#log({
          event: 'last-known-good-save-failed',
          version: next.version,
          message: (err as Error).message,
        });
      }
      return { ok: true, version: next.version };
    });
  }

  async #startFromLastKnownGood(dir: string): Promise<void> {
    let found;
    try {
      found = await loadLastKnownGood(dir);
    } catch (err) {
      this.lastKnownGoodProblem = (err as Error).message;
      this.#log({ event: 'last-known-good-unusable', message: this.lastKnownGoodProblem });
      return;
    }
    if (!found) {
      this.#log({ event: 'waiting-for-control-plane', reason: `no last-known-good snapshot in ${dir} yet` });
      return;
    }
    for (const s of found.skipped)
      this.#log({ event: 'last-known-good-skipped', file: s.file, problem: s.problem });
    const checked = await this.#checkSnapshot(found.snapshot);
    if (!checked.ok) {
      this.lastKnownGoodProblem = `${found.file}: ${checked.reason}`;
      this.#rejectSnapshot(found.snapshot.version, checked.reason, checked.details);
      return;
    }
    const next = this.#build({
      resources: checked.resources,
      endpoints: checked.endpoints,
      source: `last-known-good:${found.file}`,
      version: found.snapshot.version,
      policyRevision: found.snapshot.policyRevision,
      generatedAtMs: found.snapshot.generatedAtMs,
    });
    this.#install(next);
    this.#log({
      event: 'started-from-last-known-good',
      file: found.file,
      version: next.version,
      savedAt: new Date(found.envelope.savedAtMs).toISOString(),
    });
  }

  /**
   * The control-plane client reports its connection (on every change and heartbeat). While
   * not connected, the region's partition policy applies to remote-region endpoints; once
   * connected again, everything it withheld comes back at once. Ignored in static mode.
   */
  controlPlaneContact(state: ControlPlaneContact): void {
    const was = this.#contact;
    if (!was) return;
    this.#contact = { connected: state.connected, lastContactMs: state.lastContactMs };
    if (was.connected !== state.connected)
      this.#log({
        event: state.connected ? 'control-plane-connected' : 'control-plane-disconnected',
        lastContactAgeMs: Math.max(0, this.#clock.monotonicMs() - state.lastContactMs),
      });
    this.#evaluatePartition();
  }

  /**
   * Applies the partition policy to remote-region endpoints (the gateways a sidecar uses for
   * other regions): `freeze` keeps them; once contact has been lost longer than `decayAfter`,
   * `decay` withholds each one without a successful answer within `decayAfter`, and
   * `fail-closed` withholds all. Connected again: all are restored. Cheap when nothing applies.
   */
  #evaluatePartition(): void {
    const cfg = this.#config;
    const contact = this.#contact;
    if (!cfg || !contact) return;
    const now = this.#clock.monotonicMs();
    const { mode, decayAfterMs } = cfg.partition;
    const lostForMs = now - contact.lastContactMs;
    const partitioned = !contact.connected && mode !== 'freeze' && lostForMs > decayAfterMs;
    for (const d of cfg.destinations.values()) {
      if (d.remoteEndpoints.length === 0) continue;
      if (!partitioned && d.withheld.size === 0) continue;
      let ids = NONE;
      if (partitioned) {
        const out = new Set<string>();
        for (const e of d.remoteEndpoints) {
          if (mode === 'fail-closed' || d.withheld.has(e.id)) {
            out.add(e.id);
            continue;
          }
          const ok = d.lastSuccessMs(e.id);
          if (ok === undefined || now - ok > decayAfterMs) out.add(e.id);
        }
        ids = out;
      }
      const { dropped, restored } = d.withhold(ids);
      for (const e of dropped) {
        this.stats.inc(
          'isthmus_partition_endpoints_dropped_total',
          'Remote-region endpoints withheld by partition policy while the control plane was unreachable.',
          { service: d.name, peer_region: e.locality.region, mode },
        );
      }
      if (dropped.length > 0)
        this.#log({
          event: 'partition-endpoints-dropped',
          service: d.name,
          mode,
          endpoints: dropped.map((e) => e.id),
          contactLostForMs: lostForMs,
          decayAfterMs,
        });
      if (restored.length > 0)
        this.#log({
          event: 'partition-endpoints-restored',
          service: d.name,
          endpoints: restored.map((e) => e.id),
          reason: contact.connected ? 'control plane reachable again' : 'new configuration',
        });
    }
  }

  #log(event: Record<string, unknown>): void {
    this.#options.log?.({
      ts: new Date(this.#clock.now()).toISOString(),
      proxy: this.bootstrap.name,
      ...event,
    });
  }

  #tick(): void {
    const cfg = this.#config;
    if (cfg) {
      for (const d of cfg.destinations.values()) d.evaluate();
      this.#evaluatePartition();
    }
    // Forget inherited deadlines that have passed.
    const now = this.#clock.monotonicMs();
    for (const [id, until] of this.#deadlines) if (until < now) this.#deadlines.delete(id);
  }

  #limitsCache: ReturnType<Proxy['computeLimits']> | undefined;

  /** Process-wide limits, parsed once (they are read on every request). */
  #limits() {
    this.#limitsCache ??= this.computeLimits();
    return this.#limitsCache;
  }

  private computeLimits() {
    const l = this.bootstrap.spec.limits ?? {};
    return {
      maxRetryBodyBytes: parseSizeBytes(l.maxRetryBodyBytes ?? '1MiB'),
      maxInflight: l.maxInflight ?? 10_000,
      headersTimeoutMs: parseDurationMs(l.headersTimeout ?? '10s'),
      requestTimeoutMs: parseDurationMs(l.requestTimeout ?? '5m'),
    };
  }

  #outbound: OutboundContext | undefined;

  #outboundContext(): OutboundContext {
    return (this.#outbound ??= {
      clock: this.#clock,
      random: this.#random,
      stats: this.stats,
      locality: this.bootstrap.locality,
      maxRetryBodyBytes: this.#limits().maxRetryBodyBytes,
      via: this.#via,
      inheritedDeadline: (id) => this.#deadlines.get(id),
    });
  }

  degradation(): { destinations: string[]; flags: string[] } {
    const now = this.#clock.monotonicMs();
    const destinations: string[] = [];
    const flags = new Set<string>();
    for (const d of this.#config?.destinations.values() ?? []) {
      if (!d.isDegraded(now)) continue;
      destinations.push(d.name);
      for (const f of d.serviceLevel.degradationFlags) flags.add(f);
    }
    return { destinations, flags: [...flags] };
  }

  /** Admission control across listeners: past maxInflight, shed at once. */
  #admit(res: ProxyResponse): boolean {
    if (this.#inflight >= this.#limits().maxInflight) {
      this.stats.inc('isthmus_shed_total', 'Requests shed by a destination limit.', {
        service: '',
        route: '',
        reason: 'proxy-inflight',
      });
      sendError(res, 503, 'overloaded', 'the proxy is at its in-flight limit', {}, { 'retry-after': '1' });
      return false;
    }
    this.#inflight++;
    res.once('close', () => this.#inflight--);
    return true;
  }

  async #onOutbound(req: ProxyRequest, res: ProxyResponse, mode: 'outbound' | 'gateway'): Promise<void> {
    if (!this.#admit(res)) return;
    const cfg = this.#config;
    // Another region's health check of this gateway: answered here, kept out of telemetry (at one
    // check per second per caller, they would outnumber real requests in the access logs).
    if (mode === 'gateway' && req.headers[HEALTH_CHECK_HEADER] !== undefined) {
      req.resume();
      const ok = cfg !== undefined;
      const body = JSON.stringify({
        ok,
        gateway: this.bootstrap.name,
        locality: formatLocality(this.bootstrap.locality),
      });
      res.writeHead(ok ? 200 : 503, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    if (cfg === undefined) {
      sendError(
        res,
        503,
        'no-config',
        `the proxy has no configuration yet: it is ${NO_CONFIG_REASON}`,
        {},
        { 'retry-after': '1' },
      );
      return;
    }
    const url = req.url ?? '/';
    let authority = req.headers.host ?? '';
    let path = url;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
      // Absolute form: the app uses us as its HTTP_PROXY.
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        sendError(
          res,
          400,
          'invalid-target',
          `cannot parse the request target ${JSON.stringify(url.slice(0, 200))}`,
        );
        return;
      }
      if (parsed.protocol !== 'http:') {
        sendError(
          res,
          400,
          'unsupported-scheme',
          `${parsed.protocol} URLs go through CONNECT, not as absolute-form requests`,
        );
        return;
      }
      authority = parsed.host;
      path = `${parsed.pathname}${parsed.search}`;
    } else if (!url.startsWith('/')) {
      sendError(res, 400, 'invalid-target', 'the request target must be a path or an absolute http:// URL');
      return;
    }
    if (!authority) {
      sendError(
        res,
        400,
        'missing-host',
        'the request has no Host header and no absolute target, so its destination is unknown',
      );
      return;
    }
    const service = serviceHost(authority);
    const dest = cfg.destinations.get(service);
    if (!dest) {
      const known = [...cfg.destinations.keys()];
      sendError(
        res,
        mode === 'gateway' ? 404 : 404,
        'unknown-destination',
        `"${service}" is not a service of this mesh${mode === 'outbound' ? ' nor a declared ExternalService reachable over http' : ''}`,
        {
          services: known,
        },
      );
      return;
    }
    // A gateway is the server side of the hop from another region; a sidecar's outbound, the client side.
    const outcome = this.#telemetry?.begin(
      req,
      res,
      mode === 'gateway' ? 'server' : 'client',
      mode,
      service,
      true,
    );
    await serveOutbound(this.#outboundContext(), dest, req, res, { path, authority }, outcome);
  }

  #onConnect(req: ProxyRequest, socket: Socket, head: Buffer): void {
    const target = req.url ?? '';
    const refuse = (status: number, reason: string, message: string) => {
      const body = JSON.stringify({ error: reason, message });
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${H.error}: ${reason}\r\nconnection: close\r\n\r\n${body}`,
      );
    };
    let host: string;
    let port: number;
    try {
      ({ host, port } = splitHostPort(target));
    } catch {
      refuse(400, 'invalid-target', 'CONNECT needs HOST:PORT');
      return;
    }
    const cfg = this.#config;
    if (cfg === undefined) {
      refuse(503, 'no-config', `the proxy has no configuration yet: it is ${NO_CONFIG_REASON}`);
      return;
    }
    const ext = [...cfg.mesh.externalServices.values()].find((e) => {
      const spec = e.resource.spec;
      const h = spec.host.toLowerCase();
      const matches = h.startsWith('*.') ? host.toLowerCase().endsWith(h.slice(1)) : host.toLowerCase() === h;
      return matches && spec.ports.includes(port) && (spec.protocol ?? 'https') !== 'http';
    });
    if (!ext) {
      this.stats.inc('isthmus_egress_refused_total', 'CONNECT requests to undeclared destinations.');
      refuse(
        403,
        'undeclared-destination',
        `${host}:${port} is not a declared ExternalService; declare it to allow egress`,
      );
      return;
    }
    const allowed = ext.resource.spec.allowedRegions;
    if (allowed && !allowed.includes(this.bootstrap.locality.region)) {
      refuse(
        403,
        'egress-not-allowed-here',
        `${ext.resource.metadata.name} may not be reached from region ${this.bootstrap.locality.region}`,
      );
      return;
    }
    const upstream = net.connect({ host, port });
    upstream.setTimeout(parseDurationMs(cfg.mesh.traffic().value.timeouts.connect));
    upstream.once('timeout', () => upstream.destroy(new Error('connect timeout')));
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
      this.stats.inc('isthmus_egress_tunnels_total', 'CONNECT tunnels opened.', {
        external: ext.resource.metadata.name,
      });
    });
    upstream.once('error', (err) => {
      if (!socket.writableEnded && upstream.readyState === 'opening')
        refuse(502, 'egress-connect-failure', err.message);
      else socket.destroy();
    });
    socket.once('error', () => upstream.destroy());
    socket.once('close', () => upstream.destroy());
  }

  #inbound: InboundContext | undefined;

  /** Built once per configuration (the idempotency store belongs to the configuration). */
  #inboundContext(): InboundContext {
    if (this.#inbound && this.#inbound.idempotency === this.#idempotency) return this.#inbound;
    const spec = this.bootstrap.spec;
    const app = splitHostPort(spec.inbound?.app ?? '127.0.0.1:1');
    this.#appPool ??= new UpstreamPool({ connectTimeoutMs: 1000, maxConnectionsPerEndpoint: 1024 });
    return (this.#inbound = {
      clock: this.#clock,
      stats: this.stats,
      service: spec.service ?? '',
      app: {
        id: 'app',
        address: app.host,
        port: app.port,
        locality: this.bootstrap.locality,
        weight: 1,
        kind: 'instance',
      },
      pool: this.#appPool,
      via: this.#via,
      idempotency: this.#idempotency,
      maxBodyBytes: this.#limits().maxRetryBodyBytes,
      defaultTimeoutMs: this.#limits().requestTimeoutMs,
      rememberDeadline: (id, until) => {
        if (this.#deadlines.size < 100_000) this.#deadlines.set(id, until);
      },
      degradation: () => this.degradation(),
    });
  }

  /** The admin listener: node:http, whose generality costs nothing at its request rate. */
  #serveAdmin(listen: string): Promise<void> {
    const limits = this.#limits();
    const server = http.createServer({
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks those timeouts on this period (30 s by default): check often enough to honour them.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeoutMs / 2)),
      keepAliveTimeout: 65_000,
      insecureHTTPParser: false,
      maxHeaderSize: 16 * 1024,
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onAdmin(req, res));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      this.#clientError('admin', err.code ?? 'unknown');
      if (!socket.writable) socket.destroy();
      else socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    });
    return this.#listenOn('admin', server, listen);
  }

  /** A data listener on the data plane's own HTTP/1.1 server (h1/server.ts). */
  #serve(
    name: string,
    listen: string,
    handler: (req: ProxyRequest, res: ProxyResponse) => Promise<void> | void,
  ): Promise<void> {
    const limits = this.#limits();
    const { server } = new H1Server({
      headersTimeoutMs: limits.headersTimeoutMs,
      requestTimeoutMs: limits.requestTimeoutMs,
      keepAliveTimeoutMs: 65_000,
      maxHeaderBytes: 16 * 1024,
      onRequest: (req, res) => {
        let result: Promise<void> | void;
        try {
          result = handler(req, res);
        } catch (err) {
          this.#handlerError(name, err, res);
          return;
        }
        if (result) result.catch((err: unknown) => this.#handlerError(name, err, res));
      },
      onConnect: name === 'outbound' ? (req, socket, head) => this.#onConnect(req, socket, head) : undefined,
      onClientError: (code) => this.#clientError(name, code),
    });
    return this.#listenOn(name, server, listen);
  }

  #handlerError(listener: string, err: unknown, res: ProxyResponse): void {
    this.#log({
      event: 'handler-error',
      listener,
      message: err instanceof Error ? err.message : String(err),
    });
    if (!res.headersSent) sendError(res, 500, 'proxy-error', 'the proxy failed to handle the request');
    else res.destroy();
  }

  #clientError(listener: string, code: string): void {
    this.stats.inc('isthmus_client_errors_total', 'Malformed or too slow client requests.', {
      listener,
      code,
    });
  }

  #listenOn(name: string, server: net.Server, listen: string): Promise<void> {
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    const { host, port } = splitHostPort(listen);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        const a = server.address() as AddressInfo;
        this.addresses[name] = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
        this.#servers.push({ name, server });
        resolve();
      });
    });
  }

  async #listen(): Promise<void> {
    const spec = this.bootstrap.spec;
    try {
      await this.#serveAdmin(spec.admin.listen);
      if (spec.outbound)
        await this.#serve('outbound', spec.outbound.listen, (req, res) =>
          this.#onOutbound(req, res, 'outbound'),
        );
      if (spec.gateway)
        await this.#serve('gateway', spec.gateway.listen, (req, res) =>
          this.#onOutbound(req, res, 'gateway'),
        );
      if (spec.inbound) {
        const ctx = () => this.#inboundContext();
        await this.#serve('inbound', spec.inbound.listen, (req, res) => {
          if (!this.#admit(res)) return;
          // Health checks reach the app (its health is what they test) but not the telemetry.
          if (req.headers[HEALTH_CHECK_HEADER] === undefined)
            this.#telemetry?.begin(req, res, 'server', 'inbound', spec.service ?? '', false);
          return serveInbound(ctx(), req, res);
        });
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  #onAdmin(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://admin');
    const json = (status: number, body: unknown) => {
      const text = `${JSON.stringify(body, null, 2)}\n`;
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    };
    const cfg = this.#config;
    const destinations = [...(cfg?.destinations.values() ?? [])];
    switch (url.pathname) {
      case '/ready':
        if (!cfg) {
          json(503, {
            ready: false,
            reason: NO_CONFIG_REASON,
            mode: this.bootstrap.spec.mode,
            listeners: this.addresses,
          });
          return;
        }
        json(200, { ready: true, mode: this.bootstrap.spec.mode, listeners: this.addresses });
        return;
      case '/config': {
        const ageMs = this.#configAgeMs();
        const contact = this.#contact;
        const rejected = this.lastRejectedSnapshot;
        json(200, {
          hasConfig: cfg !== undefined,
          version: cfg?.version ?? null,
          policyRevision: cfg?.policyRevision ?? null,
          source: cfg?.source ?? null,
          generatedAt: cfg?.generatedAtMs !== undefined ? new Date(cfg.generatedAtMs).toISOString() : null,
          loadedAt: cfg ? new Date(cfg.loadedAtMs).toISOString() : null,
          ageMs: ageMs ?? null,
          age: ageMs === undefined ? null : formatDurationMs(Math.round(ageMs / 1000) * 1000),
          locality: formatLocality(this.bootstrap.locality),
          services: [...(cfg?.destinations.keys() ?? [])],
          ...(this.bootstrap.controlPlane &&
            contact && {
              controlPlane: {
                zones: this.bootstrap.controlPlane.zones,
                dataDir: this.bootstrap.controlPlane.dataDir,
                connected: contact.connected,
                lastContactAgeMs: Math.max(0, Math.round(this.#clock.monotonicMs() - contact.lastContactMs)),
              },
              partition: cfg
                ? {
                    mode: cfg.partition.mode,
                    decayAfterMs: cfg.partition.decayAfterMs,
                    withheld: Object.fromEntries(
                      destinations.filter((d) => d.withheld.size > 0).map((d) => [d.name, [...d.withheld]]),
                    ),
                  }
                : null,
              lastKnownGoodProblem: this.lastKnownGoodProblem ?? null,
            }),
          telemetryRestartNeeded: this.#telemetryPending !== undefined,
          lastRejectedSnapshot: rejected
            ? {
                version: rejected.version,
                reason: rejected.reason,
                details: rejected.details,
                at: new Date(rejected.atMs).toISOString(),
              }
            : null,
          lastReloadError: this.lastReloadError ?? null,
        });
        return;
      }
      case '/endpoints':
        json(
          200,
          Object.fromEntries(
            destinations.map((d) => [
              d.name,
              {
                eventual: d.eventual.snapshot(),
                ...(d.strong && { strong: d.strong.snapshot() }),
                degraded: d.isDegraded(this.#clock.monotonicMs()),
                ...(d.withheld.size > 0 && { withheld: [...d.withheld] }),
              },
            ]),
          ),
        );
        return;
      case '/stats':
        json(200, {
          inflight: this.#inflight,
          memory: process.memoryUsage(),
          counters: this.stats.toJSON(),
          destinations: Object.fromEntries(
            destinations.map((d) => [
              d.name,
              {
                bulkhead: d.bulkhead.stats(),
                retryBudget: d.budget.stats(),
                crossRegionBudget: d.crossRegionBudget.stats(),
                staleCache: d.staleCache.stats(),
              },
            ]),
          ),
          idempotency: this.#idempotency?.stats() ?? null,
        });
        return;
      case '/metrics': {
        // Gauges are set here, at scrape time, so the request path does no work for them.
        const ageMs = this.#configAgeMs();
        if (ageMs !== undefined)
          this.stats.set(
            'isthmus_config_age_seconds',
            'Age of the running configuration: since the control plane generated it, or since it was loaded from files.',
            {},
            Math.round(ageMs / 1000),
          );
        if (this.#contact)
          this.stats.set(
            'isthmus_control_plane_connected',
            'Whether the control-plane client reports a live connection (1) or not (0).',
            {},
            this.#contact.connected ? 1 : 0,
          );
        this.stats.set(
          'isthmus_inflight_requests',
          'Requests in flight across listeners.',
          {},
          this.#inflight,
        );
        this.#telemetry?.scrape();
        const text = this.stats.prometheus();
        res.writeHead(200, {
          'content-type': 'text/plain; version=0.0.4',
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
        return;
      }
      case '/degraded':
        json(200, this.degradation());
        return;
      case '/reload':
        if (req.method !== 'POST') {
          json(405, { error: 'method-not-allowed', message: 'POST /reload' });
          return;
        }
        void this.reload().then((r) => json(r.ok ? 200 : 422, r));
        return;
      default:
        json(404, {
          error: 'not-found',
          message: 'admin pages: /ready /config /endpoints /stats /metrics /degraded, POST /reload',
        });
    }
  }

  /** Age of the running configuration, ms: since generated (snapshots) or loaded (files). */
  #configAgeMs(): number | undefined {
    const cfg = this.#config;
    if (!cfg) return undefined;
    return Math.max(0, this.#clock.now() - (cfg.generatedAtMs ?? cfg.loadedAtMs));
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    const closing = this.#servers.map(
      ({ server }) =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
        }),
    );
    for (const s of this.#sockets) s.destroy();
    await Promise.all(closing);
    const retiring = [...this.#retiring];
    this.#retiring.clear();
    for (const [, timer] of retiring) clearTimeout(timer);
    await Promise.all(
      [...(this.#config?.destinations.values() ?? []), ...retiring.map(([d]) => d)].map((d) =>
        d.close().catch(() => undefined),
      ),
    );
    await this.#appPool?.close().catch(() => undefined);
    // Last: the requests just closed still write their spans and records.
    await this.#telemetry?.close().catch(() => undefined);
  }
}
