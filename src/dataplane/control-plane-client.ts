import { randomUUID } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import { formatLocality } from '../model/locality.js';
import { PROTOCOL_VERSION, type EndpointRecord, type Snapshot } from '../protocol/messages.js';
import { applySnapshotDelta } from '../protocol/snapshot-delta.js';
import { StreamClient } from '../protocol/stream.js';
import { splitHostPort } from './address.js';
import type { Proxy } from './proxy.js';

/** Path of the proxy stream on a zone, used when a zone URL names no path. */
export const ZONE_PROXY_STREAM_PATH = '/v1/stream';

export interface ControlPlaneClientOptions {
  clock: Clock;
  random?: Random;
  log?: (event: Record<string, unknown>) => void;
}

/**
 * The proxy's side of the delivery protocol (docs/protocol.md): keeps a stream to its zone,
 * registers the local app's endpoint (renewed by the stream's heartbeats), applies snapshots —
 * one at a time, and only the newest when several arrive while one is being applied — and
 * answers each with ack or nack. Contact changes are reported to the proxy, which applies its
 * partition policy while the zone is unreachable.
 */
export class ControlPlaneClient {
  readonly nodeId: string;
  readonly #proxy: Proxy;
  readonly #stream: StreamClient;
  #pending: Snapshot | undefined;
  /** The last complete snapshot received (the base of the next delta). */
  #received: Snapshot | undefined;
  #applying = false;
  #contactTimer: NodeJS.Timeout | undefined;

  constructor(proxy: Proxy, urls: readonly string[], options: ControlPlaneClientOptions) {
    this.#proxy = proxy;
    const b = proxy.bootstrap;
    this.nodeId = `${b.name}-${process.pid}-${randomUUID().slice(0, 6)}`;
    this.#stream = new StreamClient({
      urls: urls.map(withStreamPath),
      hello: () => {
        const cfg = proxy.hasConfig ? proxy.config : undefined;
        return {
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          node: {
            id: this.nodeId,
            role: b.spec.mode === 'gateway' ? 'gateway' : 'proxy',
            locality: formatLocality(b.locality),
            ...(b.spec.service !== undefined && { service: b.spec.service }),
          },
          // Resume from what runs (a last-known-good start counts): the zone sends only news.
          ...(cfg && { resume: { version: cfg.version } }),
        };
      },
      onWelcome: (_welcome, client) => {
        const endpoint = this.endpoint();
        if (endpoint) client.send({ type: 'register', endpoint });
      },
      onMessage: (message) => {
        if (message.type === 'snapshot') this.#receive(message);
        else if (message.type === 'snapshot-delta') {
          // Deltas are relative to the last snapshot the zone sent, applied or not.
          const full = this.#received && applySnapshotDelta(this.#received, message);
          if (full) this.#receive(full);
          else
            this.#stream.send({
              type: 'nack',
              version: message.version,
              reason: `this proxy does not have the delta's base snapshot ${message.base}; send the complete snapshot`,
            });
        }
      },
      onState: (state) => {
        this.#report();
        options.log?.({
          event: state.connected ? 'zone-connected' : 'zone-disconnected',
          url: state.url,
          ...(state.lastError !== undefined && !state.connected && { reason: state.lastError }),
        });
      },
      clock: options.clock,
      ...(options.random && { random: options.random }),
      ...(options.log && { log: options.log }),
    });
  }

  start(): this {
    this.#stream.start();
    // Contact age advances between frames too: report it so the partition policy sees it.
    this.#contactTimer = setInterval(() => this.#report(), 500);
    this.#contactTimer.unref();
    return this;
  }

  get connected(): boolean {
    return this.#stream.connected;
  }

  /** The local app's endpoint as this proxy registers it (sidecars with an inbound listener). */
  endpoint(): EndpointRecord | undefined {
    const b = this.#proxy.bootstrap;
    const inbound = this.#proxy.addresses.inbound;
    if (b.spec.mode !== 'sidecar' || !b.spec.service || !inbound) return undefined;
    const { host, port } = splitHostPort(inbound);
    // A wildcard listener is reached at the address it was configured with, or loopback.
    const address = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return { service: b.spec.service, address, port, locality: formatLocality(b.locality), weight: 1 };
  }

  #report(): void {
    const last = this.#stream.state.lastContactMs;
    // Before any contact the proxy counts the partition grace period from its own start.
    if (last === undefined) return;
    this.#proxy.controlPlaneContact({ connected: this.#stream.connected, lastContactMs: last });
  }

  #receive(snapshot: Snapshot): void {
    this.#received = snapshot;
    this.#pending = snapshot;
    if (!this.#applying) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#applying = true;
    try {
      while (this.#pending) {
        const snapshot = this.#pending;
        this.#pending = undefined;
        const result = await this.#proxy.applySnapshot(snapshot, this.#stream.state.url);
        if (result.ok) {
          this.#stream.version = result.version;
          this.#stream.send({ type: 'ack', version: snapshot.version });
        } else {
          this.#stream.send({
            type: 'nack',
            version: snapshot.version,
            reason: result.reason.slice(0, 4000),
            details: result.details.slice(0, 100).map((d) => d.slice(0, 4000)),
          });
        }
      }
    } finally {
      this.#applying = false;
    }
  }

  /** Deregisters (so the endpoint leaves the inventory at once) and closes the stream. */
  async close(): Promise<void> {
    clearInterval(this.#contactTimer);
    const endpoint = this.endpoint();
    if (endpoint && this.#stream.connected)
      this.#stream.send({
        type: 'deregister',
        service: endpoint.service,
        address: endpoint.address,
        port: endpoint.port,
      });
    await this.#stream.close();
  }
}

function withStreamPath(url: string): string {
  const u = new URL(url);
  if (u.pathname === '' || u.pathname === '/') u.pathname = ZONE_PROXY_STREAM_PATH;
  return u.toString();
}
