import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import type { Clock } from '../../core/clock.js';
import { IsthmusError } from '../../core/errors.js';
import { emptyStats, LinkConnection, type ConnectionHost, type LinkStats } from './connection.js';
import { toxicJson, type Toxic, type ToxicJson } from './toxics.js';

/** What a link is: Toxiproxy's proxy fields plus Isthmus' region labels. */
export interface LinkProxyConfig {
  /** Unique name of the link, e.g. `us-east->eu-west:data`. */
  name: string;
  /** HOST:PORT to listen on; port 0 picks a free port (the proxy then reports the bound one). */
  listen: string;
  /** HOST:PORT of the server the link leads to. */
  upstream: string;
  /** Listening and forwarding (default true). */
  enabled?: boolean;
  /** Region of the initiating side (Isthmus extension). */
  from?: string;
  /** Region of the accepting side (Isthmus extension; `global` for the global control plane). */
  to?: string;
  /** What the link carries: `data`, `control`, `telemetry` (Isthmus extension). */
  purpose?: string;
}

/** A proxy as the API shows it: Toxiproxy's shape, plus the Isthmus extensions. */
export interface LinkProxyJson {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
  toxics: ToxicJson[];
  from?: string;
  to?: string;
  purpose?: string;
  stats: LinkStats;
}

export function splitHostPort(text: string, field: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || port > 65535)
    throw new IsthmusError(
      'ISTHMUS_E_INVALID_VALUE',
      `${field}: "${text}" is not HOST:PORT (e.g. 127.0.0.1:7001)`,
    );
  return { host: (m[1] as string).replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port };
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * One directed link: a TCP listener that forwards each accepted connection to `upstream`
 * through the link's toxics. Disabled = not listening (connects are refused) and every open
 * connection closed, as in Toxiproxy.
 */
export class LinkProxy implements ConnectionHost {
  readonly stats: LinkStats = emptyStats();
  readonly #connections = new Set<LinkConnection>();
  #toxics: Toxic[] = [];
  #server: Server | undefined;
  #nextConnection = 0;
  #enabled: boolean;
  /** Serialises listener changes (enable, disable, reject on/off). */
  #listening: Promise<void> = Promise.resolve();
  #listen: string;
  #requestedListen: string;
  #upstream: string;
  upstreamAddress: { host: string; port: number };

  constructor(
    config: LinkProxyConfig,
    readonly seed: number,
    readonly clock: Clock,
  ) {
    this.name = config.name;
    this.#listen = config.listen;
    this.#requestedListen = config.listen;
    this.#upstream = config.upstream;
    this.upstreamAddress = splitHostPort(config.upstream, 'upstream');
    splitHostPort(config.listen, 'listen');
    this.#enabled = config.enabled ?? true;
    this.from = config.from;
    this.to = config.to;
    this.purpose = config.purpose;
  }

  readonly name: string;
  from: string | undefined;
  to: string | undefined;
  purpose: string | undefined;

  /** The bound listen address once listening (or the configured one before). */
  get listen(): string {
    return this.#listen;
  }

  get upstream(): string {
    return this.#upstream;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** True when `config` names the same listen and upstream (a port 0 matches any bound port). */
  sameAddresses(config: LinkProxyConfig): boolean {
    if (config.upstream !== this.#upstream) return false;
    if (config.listen === this.#listen || config.listen === this.#requestedListen) return true;
    const want = splitHostPort(config.listen, 'listen');
    const have = splitHostPort(this.#listen, 'listen');
    return want.port === 0 && want.host === have.host;
  }

  toxics(): readonly Toxic[] {
    return this.#toxics;
  }

  getToxic(name: string): Toxic {
    const t = this.#toxics.find((x) => x.name === name);
    if (!t)
      throw new IsthmusError(
        'ISTHMUS_E_NOT_FOUND',
        `toxic "${name}" does not exist on proxy ${this.name}${this.#toxics.length ? ` (toxics: ${this.#toxics.map((x) => x.name).join(', ')})` : ''}`,
      );
    return t;
  }

  /** The index the next accepted connection will get (for `scope: new`). */
  get nextConnection(): number {
    return this.#nextConnection;
  }

  async addToxic(toxic: Toxic): Promise<Toxic> {
    if (this.#toxics.some((t) => t.name === toxic.name))
      throw new IsthmusError(
        'ISTHMUS_E_EXISTS',
        `toxic "${toxic.name}" already exists on proxy ${this.name}`,
      );
    this.#toxics = [...this.#toxics, toxic];
    await this.#toxicsChanged();
    return toxic;
  }

  /** Adds or replaces a toxic of that name (the region helpers re-apply idempotently). */
  async setToxic(toxic: Toxic): Promise<void> {
    this.#toxics = [...this.#toxics.filter((t) => t.name !== toxic.name), toxic];
    await this.#toxicsChanged();
  }

  async replaceToxic(toxic: Toxic): Promise<Toxic> {
    this.getToxic(toxic.name);
    this.#toxics = this.#toxics.map((t) => (t.name === toxic.name ? toxic : t));
    await this.#toxicsChanged();
    return toxic;
  }

  async removeToxics(which: (t: Toxic) => boolean): Promise<number> {
    const before = this.#toxics.length;
    this.#toxics = this.#toxics.filter((t) => !which(t));
    if (this.#toxics.length !== before) await this.#toxicsChanged();
    return before - this.#toxics.length;
  }

  async removeToxic(name: string): Promise<void> {
    this.getToxic(name);
    await this.removeToxics((t) => t.name === name);
  }

  async #toxicsChanged(): Promise<void> {
    for (const conn of [...this.#connections]) conn.reconcile();
    await this.#syncListener();
  }

  /** A reject partition that covers every new connection closes the listener: clients get ECONNREFUSED. */
  #refusing(): boolean {
    return this.#toxics.some(
      (t) =>
        t.type === 'partition' &&
        t.attributes.mode === 'reject' &&
        t.stream === 'upstream' &&
        t.toxicity >= 1,
    );
  }

  async start(): Promise<void> {
    await this.#syncListener();
  }

  async update(changes: { enabled?: boolean; listen?: string; upstream?: string }): Promise<void> {
    const moved =
      (changes.listen !== undefined &&
        changes.listen !== this.#listen &&
        changes.listen !== this.#requestedListen) ||
      (changes.upstream !== undefined && changes.upstream !== this.#upstream);
    if (changes.upstream !== undefined) this.upstreamAddress = splitHostPort(changes.upstream, 'upstream');
    if (changes.listen !== undefined) splitHostPort(changes.listen, 'listen');
    if (moved) {
      // Toxiproxy restarts a proxy whose addresses change: open connections are closed.
      this.#enabled = false;
      await this.#syncListener();
      if (changes.listen !== undefined) {
        this.#listen = changes.listen;
        this.#requestedListen = changes.listen;
      }
      if (changes.upstream !== undefined) this.#upstream = changes.upstream;
      this.#enabled = true;
    }
    if (changes.enabled !== undefined) this.#enabled = changes.enabled;
    await this.#syncListener();
  }

  /** Enables the link and removes its toxics (Toxiproxy's reset). */
  async reset(): Promise<void> {
    this.#enabled = true;
    this.#toxics = [];
    await this.#toxicsChanged();
  }

  async close(): Promise<void> {
    this.#enabled = false;
    await this.#syncListener();
  }

  #syncListener(): Promise<void> {
    const next = this.#listening.then(async () => {
      const want = this.#enabled && !this.#refusing();
      if (!this.#enabled) for (const conn of [...this.#connections]) conn.destroy(false);
      if (want && !this.#server) await this.#startListening();
      else if (!want && this.#server) await this.#stopListening();
    });
    this.#listening = next.catch(() => undefined);
    return next;
  }

  async #startListening(): Promise<void> {
    const { host, port } = splitHostPort(this.#listen, 'listen');
    const server = net.createServer({ allowHalfOpen: true }, (client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new IsthmusError(
            'ISTHMUS_E_IO',
            `proxy ${this.name}: cannot listen on ${this.#listen}: ${err.message}`,
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    const a = server.address() as AddressInfo;
    // Later restarts (enable after disable, end of a reject) reuse the port first bound.
    this.#listen = formatHostPort(host, a.port);
    this.#server = server;
  }

  async #stopListening(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    // close() stops accepting at once; its callback would wait for open connections, which a
    // reject partition keeps, so wait only for the listening handle itself.
    await new Promise<void>((resolve) => {
      server?.close();
      setImmediate(resolve);
    });
  }

  #accept(client: Socket): void {
    if (!this.#server) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    client.on('error', () => undefined);
    const conn = new LinkConnection(this, this.#nextConnection++, client);
    this.stats.connections.total++;
    this.#connections.add(conn);
    this.stats.connections.active++;
    conn.reconcile(true);
  }

  connectionClosed(conn: LinkConnection): void {
    if (this.#connections.delete(conn)) this.stats.connections.active--;
  }

  toJSON(): LinkProxyJson {
    return {
      name: this.name,
      listen: this.#listen,
      upstream: this.#upstream,
      enabled: this.#enabled,
      toxics: this.#toxics.map(toxicJson),
      ...(this.from !== undefined && { from: this.from }),
      ...(this.to !== undefined && { to: this.to }),
      ...(this.purpose !== undefined && { purpose: this.purpose }),
      stats: structuredClone(this.stats),
    };
  }
}
