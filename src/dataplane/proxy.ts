import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { systemClock, type Clock } from '../core/clock.js';
import { seededRandom, systemRandom, type Random } from '../core/random.js';
import { formatDurationMs, parseDurationMs, parseSizeBytes } from '../core/units.js';
import type { Diagnostic } from '../model/diagnostics.js';
import { formatLocality } from '../model/locality.js';
import { MeshIndex } from '../model/mesh.js';
import { canonical } from '../model/canonical.js';
import { splitHostPort } from './address.js';
import type { Bootstrap, StaticEndpoint } from './bootstrap.js';
import { localityBalancers } from './balancers.js';
import { Destination, type BalancerFactory } from './destination.js';
import type { Endpoint } from './endpoint.js';
import { H } from './http/headers.js';
import { UpstreamPool } from './http/upstream.js';
import { serveInbound, type InboundContext } from './inbound.js';
import { sendError, serveOutbound, type OutboundContext } from './outbound.js';
import { IdempotencyStore } from './resilience/idempotency-store.js';
import { loadConfigInWorker } from './load-config.js';
import { serviceHost } from './routing.js';
import { Stats } from './stats.js';

/** A loaded, validated configuration the proxy runs on. */
interface RunningConfig {
  version: string;
  loadedAtMs: number;
  source: string;
  mesh: MeshIndex;
  destinations: Map<string, Destination>;
}

export interface ProxyOptions {
  clock?: Clock;
  random?: Random;
  /** How often balancers run their periodic analysis, ms (default 250). */
  evaluateIntervalMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

export class ConfigError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(`configuration has ${diagnostics.filter((d) => d.severity === 'error').length} error(s)`);
  }
}

function toEndpoints(
  list: readonly StaticEndpoint[],
  service: string,
  from: { region: string },
  mesh: MeshIndex,
  gateway: boolean,
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
    const gw = mesh.regions.get(region)?.resource.spec.gateway;
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
 * surface. Configuration comes from a bootstrap file (static mode); a reload that fails
 * validation keeps the running configuration.
 */
export class Proxy {
  readonly bootstrap: Bootstrap;
  readonly stats: Stats;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #options: ProxyOptions;
  readonly #balancers: BalancerFactory;
  readonly #servers: { name: string; server: Server }[] = [];
  readonly #deadlines = new Map<string, number>();
  readonly #sockets = new Set<Socket>();
  #config!: RunningConfig;
  #inflight = 0;
  #timer: NodeJS.Timeout | undefined;
  #appPool: UpstreamPool | undefined;
  #idempotency: IdempotencyStore | undefined;
  readonly addresses: Record<string, string> = {};
  lastReloadError: { atMs: number; diagnostics: Diagnostic[] } | undefined;

  private constructor(bootstrap: Bootstrap, options: ProxyOptions) {
    this.bootstrap = bootstrap;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#random =
      options.random ??
      (bootstrap.spec.seed !== undefined ? seededRandom(bootstrap.spec.seed) : systemRandom);
    this.stats = new Stats({ region: bootstrap.locality.region, zone: bootstrap.locality.zone ?? '' });
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

  static async start(bootstrap: Bootstrap, options: ProxyOptions): Promise<Proxy> {
    const proxy = new Proxy(bootstrap, options);
    proxy.#config = await proxy.#load();
    await proxy.#listen();
    proxy.#timer = setInterval(() => proxy.#tick(), options.evaluateIntervalMs ?? 250);
    proxy.#timer.unref();
    return proxy;
  }

  get config(): RunningConfig {
    return this.#config;
  }

  get #via(): string {
    return `1.1 isthmus-${this.bootstrap.name}`;
  }

  async #load(): Promise<RunningConfig> {
    const result = await loadConfigInWorker(this.bootstrap.resourcePaths);
    if (!result.ok) throw new ConfigError(result.diagnostics);
    const mesh = new MeshIndex(result.resources);
    const gateway = this.bootstrap.spec.mode === 'gateway';
    const destinations = new Map<string, Destination>();
    for (const name of mesh.services.keys()) {
      destinations.set(
        name,
        new Destination({
          name,
          mesh,
          from: this.bootstrap.locality,
          localOnly: gateway,
          endpoints: toEndpoints(this.bootstrap.endpoints, name, this.bootstrap.locality, mesh, gateway),
          clock: this.#clock,
          random: this.#random,
          balancer: this.#balancers,
        }),
      );
    }
    const version = createHash('sha256')
      .update(JSON.stringify(result.resources.map((r) => canonical(r.resource))))
      .update(JSON.stringify(this.bootstrap.endpoints))
      .digest('hex')
      .slice(0, 16);
    if (this.bootstrap.spec.mode === 'sidecar' && this.bootstrap.spec.service) {
      const idem = mesh.traffic(this.bootstrap.spec.service).value.idempotency;
      this.#idempotency = idem.enabled ? IdempotencyStore.fromSettings(idem, this.#clock) : undefined;
    }
    return {
      version,
      loadedAtMs: this.#clock.now(),
      source: `static:${this.bootstrap.file}`,
      mesh,
      destinations,
    };
  }

  /** Re-reads the resources; on any error the running configuration stays and the error is kept. */
  async reload(): Promise<{ ok: true; version: string } | { ok: false; diagnostics: Diagnostic[] }> {
    try {
      const next = await this.#load();
      const previous = this.#config;
      this.#config = next;
      // Let in-flight requests on the old pools finish before closing them.
      setTimeout(() => {
        for (const d of previous.destinations.values()) void d.close().catch(() => undefined);
      }, 30_000).unref();
      this.lastReloadError = undefined;
      this.#log({ event: 'config-reloaded', version: next.version });
      return { ok: true, version: next.version };
    } catch (err) {
      const diagnostics = err instanceof ConfigError ? err.diagnostics : [];
      this.lastReloadError = { atMs: this.#clock.now(), diagnostics };
      this.stats.inc('isthmus_config_rejected_total', 'Configurations rejected at reload.');
      this.#log({ event: 'config-rejected', errors: diagnostics.length, message: (err as Error).message });
      return { ok: false, diagnostics };
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
    for (const d of this.#config.destinations.values()) d.evaluate();
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
    for (const d of this.#config.destinations.values()) {
      if (!d.isDegraded(now)) continue;
      destinations.push(d.name);
      for (const f of d.serviceLevel.degradationFlags) flags.add(f);
    }
    return { destinations, flags: [...flags] };
  }

  /** Admission control across listeners: past maxInflight, shed at once. */
  #admit(res: ServerResponse): boolean {
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

  async #onOutbound(req: IncomingMessage, res: ServerResponse, mode: 'outbound' | 'gateway'): Promise<void> {
    if (!this.#admit(res)) return;
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
    const dest = this.#config.destinations.get(service);
    if (!dest) {
      const known = [...this.#config.destinations.keys()];
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
    await serveOutbound(this.#outboundContext(), dest, req, res, { path, authority });
  }

  #onConnect(req: IncomingMessage, socket: Socket, head: Buffer): void {
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
    const ext = [...this.#config.mesh.externalServices.values()].find((e) => {
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
    upstream.setTimeout(parseDurationMs(this.#config.mesh.traffic().value.timeouts.connect));
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

  #serve(
    name: string,
    listen: string,
    handler: (req: IncomingMessage, res: ServerResponse) => Promise<void> | void,
  ): Promise<void> {
    const limits = this.#limits();
    const server = http.createServer({
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks those timeouts on this period (30 s by default): check often enough to honour them.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeoutMs / 2)),
      keepAliveTimeout: 65_000,
      // Reject what Node's parser tolerates only for compatibility: obsolete line folding etc.
      insecureHTTPParser: false,
      maxHeaderSize: 16 * 1024,
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      Promise.resolve(handler(req, res)).catch((err: unknown) => {
        this.#log({
          event: 'handler-error',
          listener: name,
          message: err instanceof Error ? err.message : String(err),
        });
        if (!res.headersSent) sendError(res, 500, 'proxy-error', 'the proxy failed to handle the request');
        else res.destroy();
      });
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      this.stats.inc('isthmus_client_errors_total', 'Malformed or too slow client requests.', {
        listener: name,
        code: err.code ?? 'unknown',
      });
      if (!socket.writable) {
        socket.destroy();
        return;
      }
      const [status, text] =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large']
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'Request Timeout']
            : [400, 'Bad Request'];
      socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    });
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    if (name === 'outbound')
      server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) =>
        this.#onConnect(req, socket, head),
      );
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
      await this.#serve('admin', spec.admin.listen, (req, res) => this.#onAdmin(req, res));
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
    switch (url.pathname) {
      case '/ready':
        json(200, { ready: true, mode: this.bootstrap.spec.mode, listeners: this.addresses });
        return;
      case '/config':
        json(200, {
          version: cfg.version,
          source: cfg.source,
          loadedAt: new Date(cfg.loadedAtMs).toISOString(),
          ageMs: this.#clock.now() - cfg.loadedAtMs,
          age: formatDurationMs(Math.max(0, Math.round((this.#clock.now() - cfg.loadedAtMs) / 1000)) * 1000),
          locality: formatLocality(this.bootstrap.locality),
          services: [...cfg.destinations.keys()],
          lastReloadError: this.lastReloadError ?? null,
        });
        return;
      case '/endpoints':
        json(
          200,
          Object.fromEntries(
            [...cfg.destinations.values()].map((d) => [
              d.name,
              {
                eventual: d.eventual.snapshot(),
                ...(d.strong && { strong: d.strong.snapshot() }),
                degraded: d.isDegraded(this.#clock.monotonicMs()),
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
            [...cfg.destinations.values()].map((d) => [
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
        this.stats.set(
          'isthmus_config_age_seconds',
          'Age of the running configuration.',
          {},
          Math.round((this.#clock.now() - cfg.loadedAtMs) / 1000),
        );
        this.stats.set(
          'isthmus_inflight_requests',
          'Requests in flight across listeners.',
          {},
          this.#inflight,
        );
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
    await Promise.all(
      [...(this.#config?.destinations.values() ?? [])].map((d) => d.close().catch(() => undefined)),
    );
    await this.#appPool?.close().catch(() => undefined);
  }
}
